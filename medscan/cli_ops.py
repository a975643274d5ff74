"""``medscan clean ...`` and ``medscan generate ...``: subcommands and flags generated from the registry."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from medscan.console import progress_bar
from medscan.scan import MedscanError, Scan

FAMILIES = {"clean": "improve a measured scan (never invents anatomy)",
            "generate": "create what was not measured (marked SYNTHETIC)"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medscan clean <operation>`` and ``medscan generate <operation>`` for every registered operation.

    Each operation's parameters become flags (``--name``, ``_`` written ``-``) with its defaults, types, choices
    and help; ``generate synthesize`` is added beside them.

    Args:
        subparsers: the ``medscan`` parser's sub-command collection.
    """
    from medscan.ops import operations

    for family, help_text in FAMILIES.items():
        ops = operations(family)
        if not ops:
            continue
        family_parser = subparsers.add_parser(family, help=help_text)
        family_sub = family_parser.add_subparsers(dest="operation", required=True)
        for op in ops:
            parser = family_sub.add_parser(op.name.replace("_", "-"), help=op.summary, description=op.summary)
            parser.add_argument("path", help="DICOM file or folder, or NIfTI file")
            parser.add_argument("-o", "--output", required=True,
                                help=".nii/.nii.gz for NIfTI, otherwise a folder for a derived DICOM series "
                                     "(one sub-folder per series when PATH holds several)")
            parser.add_argument("--series", help="only this series (UID, number or key from medscan info)")
            parser.add_argument("--modality", choices=("CT", "MR"), help="override the modality (NIfTI input)")
            parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
            parser.add_argument("--refuse-flagged", action="store_true",
                                help="write nothing when the fidelity guard flags the result (default: warn)")
            parser.add_argument("--db", help="also keep the result in this study database (SQLite file or URL)")
            parser.add_argument("--blobs", help="with --db: blob folder (default: <db>.blobs; required for PostgreSQL)")
            parser.add_argument("--user", help="with --db: account name (default: MEDSCAN_USER or the login name)")
            for param in op.params:
                flag = "--" + param.name.replace("_", "-")
                kwargs = {"dest": f"param_{param.name}", "default": param.default, "help": param.help}
                if param.kind == "bool":
                    kwargs["action"] = "store_true"
                else:
                    kwargs["type"] = {"float": float, "int": int}.get(param.kind, str)
                    if param.choices:
                        kwargs["choices"] = param.choices
                parser.add_argument(flag, **kwargs)
            parser.set_defaults(func=run_operation_command, operation_name=op.name)
        if family == "generate":  # noise-to-image takes no input PATH: its own entry
            from medscan.synth.cli import add_synthesize

            add_synthesize(family_sub)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "series"


def run_operation_command(args: argparse.Namespace) -> int:
    """Run one operation from the command line on every selected series of PATH and write the results.

    NIfTI output for a NIfTI input or ``-o *.nii[.gz]``, else a derived DICOM series (one sub-folder per series
    when PATH holds several); Generate results go with their uncertainty and generated-region files; with
    ``--db`` results are also kept in the study database. ``--refuse-flagged`` writes nothing for a result the
    fidelity guard flags.

    Returns:
        The exit status: 0 when every series was written; 1 when PATH held several series and any of them failed
        (each failure is printed as one line and the others are still written).

    Raises:
        MedscanError: PATH does not exist, or its only series fails.
    """
    from medscan.io import list_series, load
    from medscan.io.dicom import select_series
    from medscan.io.nifti import is_nifti

    path, out = Path(args.path), Path(args.output)
    if not path.exists():
        raise MedscanError(path, "no such file or folder")
    params = {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_")}
    if path.is_file() and is_nifti(path):
        jobs: list[tuple[str, Scan | None, object]] = [("", load(path), None)]
    else:
        listing = list_series(path)
        records = [select_series(listing, path, args.series)] if args.series or len(listing.series) <= 1 \
            else listing.series
        if not records:
            raise MedscanError(path, "no readable DICOM series found")
        jobs = [(record.key, None, record) for record in records]
    several = len(jobs) > 1
    if several and is_nifti(out):
        raise MedscanError(out, f"{len(jobs)} series found: give a folder, or choose one with --series")
    if several and out.exists() and any(out.iterdir()):
        raise MedscanError(out, "already exists and is not empty; choose a new folder")
    database = _open_database(args, path)
    try:
        return _run_jobs(args, path, out, jobs, params, database)
    finally:
        if database is not None:
            database.close()


def _open_database(args: argparse.Namespace, path: Path):
    """With --db: the database, signed in and allowed to process (checked before any work is done)."""
    if not args.db:
        return None
    from medscan.db.cli import open_database
    from medscan.db.results import PROCESS_ROLES

    database, _ = open_database(args)
    try:
        database.require_role("process", str(path), PROCESS_ROLES)
    except MedscanError:
        database.close()
        raise
    return database


def _keep(database, args: argparse.Namespace, path: Path, record, result, params: dict) -> int:
    """Store ``result`` with what produced it; the input series is registered first (DICOM or NIfTI)."""
    from medscan.db.results import keep_result, register_source

    series_id = register_source(database, record, path, result.scan.modality)
    return keep_result(database, series_id, result, operation=args.operation_name,
                       parameters={**params, "device": args.device})


def _run_jobs(args: argparse.Namespace, path: Path, out: Path, jobs: list, params: dict, database) -> int:
    from medscan.io.dicom import load_series
    from medscan.io.result_files import save_result
    from medscan.ops import run

    several = len(jobs) > 1
    failures = 0
    for index, (key, scan, record) in enumerate(jobs, start=1):
        try:
            scan = scan if scan is not None else load_series(record)
            if args.modality:
                scan.modality, scan.units = args.modality, "HU" if args.modality == "CT" else ""
            bar, update = progress_bar(f"{args.operation_name} {key or path.name} ({index}/{len(jobs)})")
            try:
                result = run(args.operation_name, scan, device=args.device, progress=update, **params)
            finally:
                bar.close()
            report = result.fidelity
            if report is not None and report.flagged and args.refuse_flagged:
                raise MedscanError(path, "fidelity guard refused the result: " + "; ".join(report.reasons))
            target = out / _safe_name(f"{key}_{scan.description}") if several else out
            written, *companions = save_result(result.scan, result.maps, target)
            summary = ""
            if report is not None:
                units = f" {scan.units}" if scan.units else ""
                summary = (f" (noise sd {report.noise_sd:.3g} -> {report.noise_sd_after:.3g}{units}, estimated; "
                           f"method noise sd {report.method_noise_std:.3g}, structure {report.structure_fraction:.2%})")
            print(f"wrote {written}{summary}")
            for path in companions:
                print(f"wrote {path}")
            if database is not None:
                result_id = _keep(database, args, path, record, result, params)
                print(f"kept result {result_id} in {database.label}")
            for note in result.notes:
                print(f"medscan: warning: {note}", file=sys.stderr)
        except MedscanError as exc:
            if not several:
                raise
            failures += 1
            print(f"medscan: {exc}", file=sys.stderr)
    return 1 if failures else 0
