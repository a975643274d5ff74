"""The ``medscan`` command: thin — parse, call the engine, print. Errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from medscan.scan import MedscanError, ProvenanceEntry, Scan


def _series_entries(path: Path) -> tuple[list[dict], list[str]]:
    """Everything ``info`` reports, from headers only (no pixel decoding)."""
    from medscan.io.dicom import list_series, series_shape
    from medscan.io.nifti import is_nifti, read_nifti

    if path.is_file() and is_nifti(path):
        scan = read_nifti(path)
        return [_entry_from_scan(scan)], []
    listing = list_series(path)
    entries = []
    for record in listing.series:
        try:
            shape, spacing, warnings = series_shape(record)
        except MedscanError as exc:
            shape, spacing, warnings = None, None, [f"cannot be loaded: {exc.problem}"]
        entries.append({
            "series_uid": record.series_uid,
            "series_number": record.series_number,
            "key": record.key,
            "modality": record.modality,
            "description": record.description,
            "shape": list(shape) if shape else None,
            "spacing": [round(s, 6) for s in spacing] if spacing else None,
            "images": len(record.frames),
            "files": len(record.files),
            "patient_id": str(record.header.get("PatientID", "")),
            "study_date": str(record.header.get("StudyDate", "")),
            "warnings": warnings,
        })
    return entries, listing.skipped


def _entry_from_scan(scan: Scan) -> dict:
    return {
        "series_uid": scan.series_uid,
        "series_number": scan.series_number,
        "key": "",
        "modality": scan.modality,
        "description": scan.description,
        "shape": list(scan.nifti_shape),
        "spacing": [round(s, 6) for s in scan.spacing],
        "images": int(scan.voxels.shape[-3]) * scan.n_volumes,
        "files": 1,
        "patient_id": "",
        "study_date": "",
        "warnings": list(scan.warnings),
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``medscan info PATH``: list every series of a DICOM file or folder, or a NIfTI file (``--json``: one
    object per series); unreadable files are reported as warnings and skipped.

    Args:
        args: the parsed command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    path = Path(args.path)
    if not path.exists():
        raise MedscanError(path, "no such file or folder")
    entries, skipped = _series_entries(path)
    for line in skipped:
        print(f"medscan: warning: skipped {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0 if entries else 1
    if not entries:
        raise MedscanError(path, "no readable DICOM series found")
    print(f"{'series':>8}  {'mod':<4} {'shape (x,y,z[,t])':<20} {'spacing mm':<22} description")
    for e in entries:
        shape = "x".join(str(n) for n in e["shape"]) if e["shape"] else "-"
        spacing = "x".join(f"{s:.3g}" for s in e["spacing"]) if e["spacing"] else "-"
        print(f"{e['key'] or '-':>8}  {e['modality']:<4} {shape:<20} {spacing:<22} {e['description']}")
        for warning in e["warnings"]:
            print(f"{'':>10}warning: {warning}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``medscan convert PATH -o OUT``: write a series as NIfTI (``.nii``/``.nii.gz``) or as a derived DICOM
    series (a folder), with its geometry, units and identity.

    Args:
        args: the parsed command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.io import load, save
    from medscan.io.nifti import is_nifti

    scan = load(args.path, series=args.series)
    out = Path(args.output)
    if not is_nifti(out):  # a derived DICOM series records the software version (looked up only here)
        from medscan import __version__

        scan = scan.derive(scan.voxels, ProvenanceEntry("convert", {}, software=f"medscan {__version__}"))
    written = save(scan, out)
    for warning in scan.warnings:
        print(f"medscan: warning: {warning}", file=sys.stderr)
    print(f"wrote {written}")
    return 0


def cmd_png(args: argparse.Namespace) -> int:
    """``medscan png PATH -o OUT.png``: one slice (default the middle one) as an 8-bit PNG, windowed by
    ``--window CENTER WIDTH``, ``--preset`` or the modality's default.

    Args:
        args: the parsed command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.io import load
    from medscan.io.png import WINDOW_PRESETS, save_png

    scan = load(args.path, series=args.series)
    window = tuple(args.window) if args.window else None
    if args.preset:
        if args.preset not in WINDOW_PRESETS:
            raise MedscanError(args.preset, f"unknown window preset; choose from {', '.join(WINDOW_PRESETS)}")
        window = WINDOW_PRESETS[args.preset]
    beside = load(args.beside) if args.beside else None
    written = save_png(scan, args.output, slice_index=args.slice, volume=args.volume, window=window, beside=beside)
    print(f"wrote {written}")
    return 0


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for (importlib.metadata is slow to import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from medscan import __version__

        print(f"medscan {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The ``medscan`` argument parser with every sub-command (info, convert, png, the registry's operations,
    database, batch, annotation, screening ...).
    """
    parser = argparse.ArgumentParser(prog="medscan", description="medscan imaging engine")
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (models, decoders, sample, database) and exit")
    sub = parser.add_subparsers(dest="command")

    info = sub.add_parser("info", help="list the series in a DICOM file/folder or a NIfTI file")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="one JSON object per series")
    info.set_defaults(func=cmd_info)

    series_help = "series UID, number, or number.sub for a split series (see medscan info)"
    convert = sub.add_parser("convert", help="write NIfTI (.nii/.nii.gz) or a derived DICOM series (folder)")
    convert.add_argument("path")
    convert.add_argument("-o", "--output", required=True)
    convert.add_argument("--series", help=series_help)
    convert.set_defaults(func=cmd_convert)

    png = sub.add_parser("png", help="write one slice as a windowed 8-bit PNG")
    png.add_argument("path")
    png.add_argument("-o", "--output", required=True)
    png.add_argument("--series", help=series_help)
    png.add_argument("--slice", type=int, help="slice index k (default: middle)")
    png.add_argument("--volume", type=int, default=0, help="volume index t of a 4-D series")
    png.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"))
    png.add_argument("--preset", help="named window, e.g. lung, bone, brain")
    png.add_argument("--beside", metavar="OTHER", help="draw the same slice of OTHER (same grid, e.g. a denoised "
                                                        "result) to the right, in the same window")
    png.set_defaults(func=cmd_png)

    from medscan.batch.cli import register as register_batch_commands
    from medscan.cli_annotate import register as register_annotate_commands
    from medscan.cli_ops import register as register_operation_commands
    from medscan.db.cli import register as register_db_commands

    register_operation_commands(sub)
    register_db_commands(sub)
    register_batch_commands(sub)
    register_annotate_commands(sub)
    from medscan.screen.cli import register as register_screen_command

    register_screen_command(sub)
    from medscan.net.cli import register as register_network_commands

    register_network_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``medscan`` command.

    Args:
        argv: the arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 on success, 1 after a one-line ``medscan: <path>: <problem>`` on stderr, 130 when
        interrupted. An unexpected exception is also reported in one line unless ``MEDSCAN_DEBUG`` is set.

    Example:
        >>> main(["info", "samples/", "--json"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.self_test:
        from medscan.selftest import run_self_test

        return run_self_test()
    if args.command is None:
        parser.error("the following arguments are required: command")
    # Library warnings about non-conformant headers are noise here; medscan reports what matters.
    warnings.simplefilter("ignore")
    try:
        return int(args.func(args))
    except MedscanError as exc:
        print(f"medscan: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medscan: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback
        if os.environ.get("MEDSCAN_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"medscan: {getattr(args, 'path', '')}: unexpected {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
