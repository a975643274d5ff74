"""``medscan screen PATH [--json] [--series S] [--db DB]``: quality badges of every series, then findings.

Each series is decoded and screened on its own, so one unreadable series is reported on its line and the others
still screen. With ``--db`` the badges are kept in the study database (the series registered first).
Findings hook: after the badges, the segmentation tasks registered in ``medscan.annotate.registry`` that accept
the series are listed ("annotate with: ..."); the annotation tasks add their findings there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medscan.scan import MedscanError, Scan

if TYPE_CHECKING:
    from medscan.screen.quality import Badge

MARKS = {"ok": "ok", "warn": "WARN", "flag": "FLAG"}


def annotation_tasks(scan: Scan) -> tuple[list[str], list[str]]:
    """Findings hook: (tasks that accept this series, 'task: why not' for those of its modality that refuse it)."""
    try:
        import medscan.annotate  # noqa: F401  (registers the built-in tasks)
        from medscan.annotate.registry import tasks
    except ImportError:
        return [], []
    offered, refused = [], []
    for task in tasks():
        if scan.modality not in task.modalities:
            continue
        try:
            if task.check is not None:
                task.check(scan)
        except MedscanError as exc:
            refused.append(f"{task.name}: {exc.problem}")
            continue
        offered.append(task.name)
    return offered, refused


def _format_value(badge: Badge) -> str:
    if badge.value is None:
        return "-"
    if badge.unit == "HU":
        return f"{badge.value:.1f} HU"
    if badge.unit in ("fraction", "edge fraction"):
        return f"{100 * badge.value:.1f} %"
    if badge.unit == "deg":
        return f"{badge.value:.2f} deg"
    if badge.unit == "step ratio":
        return f"{badge.value:.2f}x"
    return f"{badge.value:g}"


def screen_path(path: Path, series: str | None = None) -> list[dict[str, Any]]:
    """Screen every series under ``path`` (or the one chosen); one entry per series, errors included."""
    from medscan.io.dicom import list_series, select_series
    from medscan.io.nifti import is_nifti, read_nifti
    from medscan.screen.quality import screen_record, screen_scan

    if not path.exists():
        raise MedscanError(path, "no such file or folder")
    entries = []
    if path.is_file() and is_nifti(path):
        started = time.perf_counter()
        scan = read_nifti(path)
        entries.append(_entry(scan, screen_scan(scan), key=path.name, seconds=time.perf_counter() - started))
        return entries
    listing = list_series(path)
    records = [select_series(listing, path, series)] if series is not None else listing.series
    if not records:
        detail = f"; skipped {len(listing.skipped)}: {listing.skipped[0]}" if listing.skipped else ""
        raise MedscanError(path, f"no readable DICOM series found{detail}")
    for record in records:
        started = time.perf_counter()
        try:
            scan, badges = screen_record(record)
        except MedscanError as exc:
            entries.append({"key": record.key, "series_uid": record.series_uid, "modality": record.modality,
                            "description": record.description, "error": exc.problem, "record": record})
            continue
        entry = _entry(scan, badges, key=record.key, seconds=time.perf_counter() - started)
        entry["record"] = record
        entries.append(entry)
    return entries


def _entry(scan: Scan, badges: list[Badge], *, key: str, seconds: float) -> dict[str, Any]:
    from medscan.screen.quality import VERSION, worst

    offered, refused = annotation_tasks(scan)
    return {
        "key": key, "series_uid": scan.series_uid, "modality": scan.modality, "description": scan.description,
        "slices": scan.volume_shape[0], "worst": worst(badges), "badges": [b.to_dict() for b in badges],
        "annotate_with": offered, "annotate_refused": refused, "rules_version": VERSION,
        "seconds": round(seconds, 2), "source_path": scan.source_path,
    }


def _store(args: argparse.Namespace, path: Path, entries: list[dict[str, Any]]) -> None:
    from medscan.db.cli import open_database
    from medscan.db.results import register_source
    from medscan.screen.quality import VERSION

    database, _ = open_database(args)
    with database:
        database.require_role("screen", str(path), ("radiologist", "technician", "admin"))
        for entry in entries:
            if "error" in entry:
                continue
            series_id = register_source(database, entry.get("record"), path, entry["modality"])
            database.store_quality(series_id, entry["badges"], rules_version=VERSION)
            entry["database_series_id"] = series_id


def cmd_screen(args: argparse.Namespace) -> int:
    """``medscan screen PATH``: print the quality badges of every series (or ``--series``), as text or ``--json``,
    and with ``--db`` keep them in the study database.

    Returns:
        The exit status, 0 on success.
    """
    from medscan.screen.quality import Badge

    path = Path(args.path)
    entries = screen_path(path, args.series)
    if args.db:
        _store(args, path, entries)
    for entry in entries:
        entry.pop("record", None)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        title = f"series {entry['key']}  {entry['modality']}  {entry['description']}".rstrip()
        if "error" in entry:
            print(f"{title}: cannot be screened: {entry['error']}")
            continue
        print(f"{title}  ({entry['slices']} slices, {entry['seconds']:.1f} s)  quality: {entry['worst'].upper()}")
        for badge in entry["badges"]:
            print(f"  {MARKS[badge['level']]:<5} {badge['name']:<14} {_format_value(Badge.from_dict(badge)):>10}  "
                  f"{badge['message']}")
        if entry["annotate_with"]:
            print(f"  annotate with: {', '.join(entry['annotate_with'])}  (medscan annotate PATH --task NAME)")
        for line in entry["annotate_refused"]:
            print(f"  not offered: {line}")
        if "database_series_id" in entry:
            print(f"  stored in the database as series {entry['database_series_id']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``screen`` to the main parser's subcommands."""
    screen = subparsers.add_parser("screen", help="quality triage badges (noise, ghosting, slices, field of view, "
                                   "orientation) of every series, and the annotation tasks on offer")
    screen.add_argument("path", help="DICOM file or folder, or a NIfTI file")
    screen.add_argument("--json", action="store_true", help="machine-readable: one object per series")
    screen.add_argument("--series", help="series UID, number, or number.sub (see medscan info)")
    screen.add_argument("--db", help="also keep the badges in this study database (SQLite file or postgresql:// URL)")
    screen.add_argument("--blobs", help="blob folder of --db (default: <db>.blobs; required for PostgreSQL)")
    screen.add_argument("--user", help="account name for --db (default: MEDSCAN_USER or the login name)")
    screen.set_defaults(func=cmd_screen)
