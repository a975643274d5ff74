"""``medscan annotate`` (segment, list findings, write DICOM SEG/SR of the drafts), ``medscan review`` (accept,
reject, list, export accepted annotations in a study database) and ``medscan explain`` (a finding's explanation
overlay as PNG; with ``--db`` the map is also kept with the finding's annotation, as ``annotate --db --explain``
does for every finding).

Everything is checked before anything is written: a series a task was not made for gets the task's one-line
message and no file; SEG/SR need the DICOM series the scan was read from (a NIfTI input can write its labels as
``-o OUT.nii.gz`` instead).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from medscan.scan import MedscanError, Scan

SERIES_HELP = "series UID, number or key (see medscan info)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medscan annotate``, ``medscan review`` and ``medscan explain`` to the main parser.

    Args:
        subparsers: the ``medscan`` parser's sub-command collection; ``--task`` offers every registered task.
    """
    from medscan.annotate import tasks

    names = sorted(t.name for t in tasks())
    annotate = subparsers.add_parser(
        "annotate", help="segment a series (AI drafts), list findings, write DICOM SEG (+ SR) or a NIfTI label map")
    annotate.add_argument("path", help="DICOM file or folder, or NIfTI file")
    annotate.add_argument("-o", "--output", required=True,
                          help="OUT.dcm: DICOM SEG over the source series; OUT.nii.gz: label map (NIfTI input)")
    annotate.add_argument("--task", choices=names, help="segmentation task (default: the first made for the modality)")
    annotate.add_argument("--sr", help="also write the findings' measurements as DICOM SR (TID 1500)")
    annotate.add_argument("--series", help=SERIES_HELP)
    annotate.add_argument("--min-volume", type=float,
                          help="smallest finding in ml (default: the task's, 0.5; brain-lesions 0.02)")
    annotate.add_argument("--max-per-label", type=int, default=10, help="largest N findings per label (default 10)")
    annotate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    annotate.add_argument("--json", action="store_true", help="print the findings as JSON")
    annotate.add_argument("--explain", action="store_true",
                          help="with --db: explain every finding on its widest slice and keep the map with it")
    _db_args(annotate)
    annotate.set_defaults(func=cmd_annotate)

    review = subparsers.add_parser("review", help="review AI annotations kept in a study database")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    for name, text in (("list", "list a series' annotations"), ("accept", "accept annotations (radiologist)"),
                       ("reject", "reject annotations (radiologist)"),
                       ("export", "write the accepted annotations as DICOM SEG (+ SR)")):
        parser = review_sub.add_parser(name, help=text)
        parser.add_argument("path", help="the DICOM series the annotations belong to")
        parser.add_argument("--series", help=SERIES_HELP)
        if name in ("accept", "reject"):
            parser.add_argument("ids", type=int, nargs="+", help="annotation ids (medscan review list)")
        if name == "export":
            parser.add_argument("-o", "--output", required=True, help="OUT.dcm (DICOM SEG)")
            parser.add_argument("--sr", help="also write DICOM SR (TID 1500)")
        _db_args(parser, required=True)
        parser.set_defaults(func=cmd_review)

    explain = subparsers.add_parser("explain", help="a finding's explanation overlay over its slice, as PNG")
    explain.add_argument("path", help="DICOM file or folder, or NIfTI file")
    which = explain.add_mutually_exclusive_group(required=True)
    which.add_argument("--finding", type=int, help="finding number as listed by medscan annotate")
    which.add_argument("--annotation", type=int, help="with --db: an annotation kept there (medscan review list)")
    explain.add_argument("-o", "--output", required=True, help="OUT.png")
    explain.add_argument("--task", choices=names, help="segmentation task (default: as medscan annotate)")
    explain.add_argument("--series", help=SERIES_HELP)
    explain.add_argument("--slice", type=int, help="slice k (default: where the finding is widest)")
    explain.add_argument("--opacity", type=float, default=0.5, help="overlay opacity 0..1 (default 0.5)")
    explain.add_argument("--min-volume", type=float, help="smallest finding in ml (default: as medscan annotate)")
    explain.add_argument("--max-per-label", type=int, default=10)
    explain.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _db_args(explain)
    explain.set_defaults(func=cmd_explain)


def _db_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--db", required=required,
                        help="study database (SQLite file or URL): keep the drafts (and explanations) there")
    parser.add_argument("--blobs", help="with --db: blob folder (default: <db>.blobs)")
    parser.add_argument("--user", help="with --db: account name (default: MEDSCAN_USER or the login name)")


# -- shared steps -----------------------------------------------------------------------------------
def load_input(path: str | Path, series: str | None) -> tuple[Scan, Any]:
    """The scan and its DICOM series record (None for NIfTI), as the database registers it."""
    from medscan.io import list_series, load
    from medscan.io.dicom import load_series, select_series
    from medscan.io.nifti import is_nifti

    path = Path(path)
    if not path.exists():
        raise MedscanError(path, "no such file or folder")
    if path.is_file() and is_nifti(path):
        return load(path), None
    listing = list_series(path)
    record = select_series(listing, path, series)
    return load_series(record), record


def choose_task(scan: Scan, name: str | None) -> Any:
    """The named task, or the first registered task made for the scan's modality (learned before rules)."""
    from medscan.annotate import get_task, tasks

    if name:
        return get_task(name)
    made_for = [t for t in tasks() if scan.modality in t.modalities]
    if not made_for:
        raise MedscanError(scan.source_path or scan.description,
                           f"no segmentation task is made for {scan.modality} (have: "
                           + ", ".join(f"{t.name} for {'/'.join(t.modalities)}" for t in tasks()) + ")")
    for task in sorted(made_for, key=lambda t: t.name == "hu"):  # a learned task first, the HU rules last
        try:
            if task.check is not None:
                task.check(scan)
            return task
        except MedscanError:
            continue
    return made_for[0]  # its check will say why it does not fit


def segment_and_measure(scan: Scan, task: Any, *, device: str = "auto", min_volume_ml: float = 0.5,
                        max_per_label: int | None = 10) -> tuple[Any, list[Any]]:
    """Run a segmentation task on a scan and list its findings.

    Args:
        scan: the series to segment.
        task: a :class:`~medscan.annotate.registry.SegmentationTask`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        min_volume_ml: connected pieces smaller than this (millilitres) are not findings.
        max_per_label: keep at most this many findings per label, largest first (``None``: all).

    Returns:
        ``(segmentation, findings)``: the label map (same shape as ``scan.voxels``) and its findings with volume,
        diameter and intensity measurements.

    Raises:
        MedscanError: the task was not made for this series (modality, orientation).
    """
    from medscan.annotate.findings import find_findings

    segmentation = task.segment(scan, device=device)
    return segmentation, find_findings(scan, segmentation, min_volume_ml=min_volume_ml, max_per_label=max_per_label)


def _refuse_existing(*paths: str | Path | None) -> None:
    for path in paths:
        if path is not None and Path(path).exists():
            raise MedscanError(path, "already exists; choose a new name")


def _print_findings(findings: list[Any], segmentation: Any, task: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"task": task.name, "method": segmentation.method, "version": segmentation.version,
                          "status": "draft", "notes": segmentation.notes,
                          "findings": [f.measurements() for f in findings]}, indent=1))
        return
    print(f"{task.title} ({segmentation.method} {segmentation.version}): {len(findings)} finding(s), AI drafts "
          "until a person accepts them")
    for finding in findings:
        print("  " + finding.describe())
    for note in segmentation.notes:
        print(f"  note: {note}")


# -- annotate ----------------------------------------------------------------------------------------

def open_for_drafts(args: argparse.Namespace, action: str) -> Any:
    """The study database of ``args.db``, refused (and closed) unless the user may draft annotations."""
    from medscan.db.annotations import DRAFT_ROLES
    from medscan.db.cli import open_database

    database, _ = open_database(args)
    try:
        database.require_role(action, str(args.path), DRAFT_ROLES)
    except MedscanError:
        database.close()
        raise
    return database

def cmd_annotate(args: argparse.Namespace) -> int:
    """``medscan annotate``: segment a series into AI drafts and write a DICOM SEG (+ SR) or a NIfTI label map.

    With ``--db`` every finding is also kept as a draft annotation for review. Nothing is written when the
    output exists already or the input cannot be read.

    Returns:
        The exit status, 0 on success; errors are raised as :class:`~medscan.scan.MedscanError`.
    """
    from medscan.io.nifti import is_nifti

    out = Path(args.output)
    _refuse_existing(out, args.sr)
    nifti_out = is_nifti(out)
    if args.sr and nifti_out:
        raise MedscanError(args.sr, "an SR references a DICOM SEG; write -o OUT.dcm to get one")
    scan, record = load_input(args.path, args.series)
    if not nifti_out:
        from medscan.io.seg_sr import source_datasets

        source_datasets(scan)  # refuses a NIfTI input or missing source files before any work
    task = choose_task(scan, args.task)
    if args.explain and not args.db:
        raise MedscanError(args.path, "--explain keeps each finding's map with its annotation: give --db")
    database = None
    if args.db:
        database = open_for_drafts(args, "annotate")
    try:
        min_volume = task.min_finding_ml if args.min_volume is None else args.min_volume
        segmentation, findings = segment_and_measure(scan, task, device=args.device, min_volume_ml=min_volume,
                                                     max_per_label=args.max_per_label)
        if not findings:
            raise MedscanError(args.path, f"{task.title}: no finding of {min_volume} ml or more; nothing written")
        _print_findings(findings, segmentation, task, args.json)
        if nifti_out:
            written = [_write_label_nifti(scan, segmentation, task, out)]
        elif database is not None:
            from medscan.db import annotations as review
            from medscan.db.results import register_source

            series_id = register_source(database, record, args.path, scan.modality)
            ids = review.add_drafts(database, series_id, segmentation, findings, task=task.name)
            print(f"kept as draft annotation(s) {', '.join(map(str, ids))} of series {series_id} in {args.db}")
            if args.explain:
                for finding, annotation_id in zip(findings, ids, strict=True):
                    _, method, k = explain_and_keep(database, annotation_id, scan, task, finding,
                                                    finding.diameter_slice, args.device)
                    print(f"  explanation of #{finding.number} kept with annotation {annotation_id} ({method}, "
                          f"slice {k})")
            written = review.export(database, series_id, scan, out, args.sr, accepted_only=False)
        else:
            written = _write_drafts(scan, segmentation, findings, out, args.sr)
    finally:
        if database is not None:
            database.close()
    for path in written:
        print(f"wrote {path}")
    return 0


def draft_items(scan: Scan, segmentation: Any, findings: list[Any]) -> list[Any]:
    """The findings of an AI segmentation as SEG/SR items with status ``draft`` and algorithm type AUTOMATIC.

    Args:
        scan: the segmented series (gives the mask shape).
        segmentation: the task's result (its method and version are recorded).
        findings: the findings to write, one segment each.

    Returns:
        One :class:`~medscan.io.seg_sr.SegmentItem` per finding, in the order given.
    """
    from medscan.io.seg_sr import SegmentItem

    return [SegmentItem(mask=f.full_mask(scan.voxels.shape), name=f.name, label_text=f"#{f.number} {f.name}",
                        algorithm_type="AUTOMATIC", method=segmentation.method, version=segmentation.version,
                        status="draft", measurements=f.measurements()) for f in findings]


def _write_drafts(scan: Scan, segmentation: Any, findings: list[Any], out: Path, sr: str | None) -> list[Path]:
    from medscan.io.seg_sr import write_annotation_seg, write_measurement_sr

    items = draft_items(scan, segmentation, findings)
    written: list[Path] = []
    try:
        seg = write_annotation_seg(scan, items, out, draft=True)
        written.append(out)
        if sr:
            write_measurement_sr(scan, seg, items, sr)
            written.append(Path(sr))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _write_label_nifti(scan: Scan, segmentation: Any, task: Any, out: Path) -> Path:
    from medscan.io.nifti import write_nifti
    from medscan.scan import ProvenanceEntry

    entry = ProvenanceEntry(f"annotate {task.name}", {"labels": segmentation.names, "status": "AI draft"},
                            model=segmentation.method, model_version=segmentation.version)
    labels = scan.derive(segmentation.labels.astype(np.float32), entry)
    labels.units = ""
    labels.description = f"AI DRAFT labels {task.name}"[:64]
    return write_nifti(labels, out)


# -- review ------------------------------------------------------------------------------------------
def cmd_review(args: argparse.Namespace) -> int:
    """``medscan review list|accept|reject|export``: the radiologist's side of the kept annotations.

    Opens the study database (``--db``), registers the series if needed and lists, accepts or rejects
    annotations (audited), or exports the accepted ones as SEG (+ SR VERIFIED).

    Returns:
        The exit status, 0 on success.
    """
    from medscan.db import annotations as review
    from medscan.db.cli import open_database
    from medscan.db.results import register_source

    if args.review_command == "export":
        _refuse_existing(args.output, args.sr)
    scan, record = load_input(args.path, args.series)
    database, _ = open_database(args)
    try:
        series_id = register_source(database, record, args.path, scan.modality)
        if args.review_command == "list":
            views = review.list_annotations(database, series_id)
            print(f"series {series_id}: {len(views)} annotation(s)")
            for view in views:
                print("  " + view.describe())
        elif args.review_command in ("accept", "reject"):
            change = review.accept if args.review_command == "accept" else review.reject
            for annotation_id in args.ids:
                print("  " + change(database, annotation_id).describe())
        else:
            for path in review.export(database, series_id, scan, args.output, args.sr, accepted_only=True):
                print(f"wrote {path}")
    finally:
        database.close()
    return 0


# -- explain -----------------------------------------------------------------------------------------
def explain_and_keep(database: Any, annotation_id: int, scan: Scan, task: Any, finding: Any, k: int,
                     device: str = "auto", grid: int = 6) -> tuple[np.ndarray, str, int]:
    """Explain ``finding`` on slice k and keep the map as an overlay of annotation ``annotation_id``."""
    from medscan.annotate.explain_overlay import explain_finding
    from medscan.db.annotations import store_explanation

    heat, method = explain_finding(scan, task, None, finding, k, device=device, grid=grid)
    store_explanation(database, annotation_id, k, heat, method, {"task": task.name})
    return heat, method, k


class KeptFinding:
    """A finding as the database keeps it (an annotation's mask and label), for ``explain_finding``."""

    def __init__(self, view: Any, mask: np.ndarray) -> None:
        self.number, self.name, self.mask = view.id, view.label, mask
        self.label = int(view.measurements.get("label", 1))
        kk = np.flatnonzero(mask.any(axis=(1, 2)))
        self.slice_range = (int(kk.min()), int(kk.max())) if kk.size else (0, -1)
        self.diameter_slice = int(view.measurements.get("diameter_slice", int(np.argmax(mask.sum(axis=(1, 2))))))

    def full_mask(self, _shape: tuple[int, ...]) -> np.ndarray:
        """The annotation's mask; it is already stored at the series' full shape, so the shape is not used."""
        return self.mask

    def describe(self) -> str:
        """One line naming the kept annotation, e.g. ``"annotation 3 Liver"``."""
        return f"annotation {self.number} {self.name}"


def _kept_annotation(database: Any, series_id: int, annotation_id: int, scan: Scan) -> tuple[Any, KeptFinding]:
    from medscan.db import annotations as review

    view = next((v for v in review.list_annotations(database, series_id) if v.id == annotation_id), None)
    if view is None:
        raise MedscanError(database.label, f"series {series_id} has no annotation {annotation_id} "
                                           "(see medscan review list)")
    if not view.task:
        raise MedscanError(f"annotation {annotation_id}", "was not made by a segmentation task; nothing to explain")
    return view, KeptFinding(view, review.load_mask(database, annotation_id, scan.voxels.shape))


def _matching_annotation(database: Any, series_id: int, task: Any, finding: Any) -> int:
    """The kept (not rejected) AI annotation of this series that is ``finding`` (same task, label and box)."""
    from medscan.db import annotations as review

    box = finding.measurements()["box"]
    for view in review.list_annotations(database, series_id, include_rejected=False):
        if view.task == task.name and view.label == finding.name[:128] and view.measurements.get("box") == box:
            return view.id
    raise MedscanError(database.label, f"finding {finding.number} is not kept in the database: run medscan annotate "
                                       "--db first, or name a kept one with --annotation")


def cmd_explain(args: argparse.Namespace) -> int:
    """``medscan explain``: write a PNG of a finding's (or a kept annotation's) explanation over its slice.

    Refuses an output that is not ``.png``, an ``--opacity`` outside 0..1 and ``--annotation`` without ``--db``.

    Returns:
        The exit status, 0 on success.
    """
    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise MedscanError(out, "explain writes a PNG: give OUT.png")
    _refuse_existing(out)
    if not 0.0 <= args.opacity <= 1.0:
        raise MedscanError(str(args.opacity), "--opacity must be between 0 and 1")
    if args.annotation is not None and not args.db:
        raise MedscanError(str(args.annotation), "--annotation names an annotation kept in a database: give --db")
    scan, record = load_input(args.path, args.series)
    database = None
    if args.db:
        database = open_for_drafts(args, "annotation-explain")
    try:
        annotation_id = None
        if args.annotation is not None:
            from medscan.annotate import get_task
            from medscan.db.results import register_source

            series_id = register_source(database, record, args.path, scan.modality)
            view, finding = _kept_annotation(database, series_id, args.annotation, scan)
            task, annotation_id = get_task(view.task), view.id
        else:
            task = choose_task(scan, args.task)
            _segmentation, findings = segment_and_measure(scan, task, device=args.device,
                                                          min_volume_ml=task.min_finding_ml if args.min_volume is None
                                                          else args.min_volume,
                                                          max_per_label=args.max_per_label)
            if not 1 <= args.finding <= len(findings):
                raise MedscanError(args.path, f"no finding {args.finding}: {task.title} found {len(findings)} "
                                              f"(numbered 1..{len(findings)}, see medscan annotate)")
            finding = findings[args.finding - 1]
            if database is not None:
                from medscan.db.results import register_source

                series_id = register_source(database, record, args.path, scan.modality)
                annotation_id = _matching_annotation(database, series_id, task, finding)
        k = finding.diameter_slice if args.slice is None else args.slice
        if not finding.slice_range[0] <= k <= finding.slice_range[1]:
            raise MedscanError(args.path, f"finding {finding.number} spans slices {finding.slice_range[0]}-"
                                          f"{finding.slice_range[1]}, not {k}")
        from medscan.annotate.explain_overlay import explain_finding, render_overlay

        if database is not None and annotation_id is not None:
            heat, method, _ = explain_and_keep(database, annotation_id, scan, task, finding, k, args.device)
        else:
            heat, method = explain_finding(scan, task, None, finding, k, device=args.device)
        render_overlay(scan, k, heat, finding.full_mask(scan.voxels.shape)[k], out, opacity=args.opacity,
                       title=f"finding {finding.number} {finding.name} - {method} (slice {k})")
    finally:
        if database is not None:
            database.close()
    print(f"{finding.describe()}\nexplanation: {method}, slice {k}\nwrote {out}")
    if annotation_id is not None:
        print(f"kept with annotation {annotation_id} in {args.db}")
    return 0
