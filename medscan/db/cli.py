"""``medscan deidentify`` and ``medscan db ...``: parse, call the engine, print.

``register(subparsers)`` adds both to the main parser. Passphrases come from the environment
(MEDSCAN_DB_KEY for the database, MEDSCAN_USER_KEY for the account, MEDSCAN_DEID_KEY for repeatable
pseudonyms), for the database also from the OS keyring (``db init --keyring``), or from a prompt,
never from the command line where other users could read them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from medscan.scan import MedscanError


def _secret(env: str, prompt: str, *, confirm: bool = False) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise MedscanError(env, f"not set and no terminal to ask for the {prompt}")
    value = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass(f"{prompt} (again): ") != value:
        raise MedscanError(prompt, "the two entries differ")
    return value


def cmd_deidentify(args: argparse.Namespace) -> int:
    """``medscan deidentify PATH -o OUT``: de-identify a folder outside any database (PS3.15 Annex E).

    A DICOM output copies every series of PATH; a NIfTI output (``.nii``/``.nii.gz``) takes one series
    (``--series``). ``MEDSCAN_DEID_KEY`` makes UIDs and pseudonyms repeatable between runs.

    Returns:
        The exit status, 0 on success.
    """
    from medscan.deid import DeidOptions, deidentify_folder
    from medscan.io.nifti import is_nifti

    if is_nifti(args.output):
        return _deidentify_to_nifti(args)
    if args.series:
        raise MedscanError("--series", "only for a NIfTI output; a DICOM export copies every series of PATH")
    key = os.environ.get("MEDSCAN_DEID_KEY")
    options = DeidOptions(date_shift=args.date_shift, keep_descriptors=args.keep_descriptors,
                          retain_safe_private=not args.remove_all_private, allow_burned_in=args.allow_burned_in)
    secret = key.encode("utf-8").ljust(16, b"\0") if key else None
    report = deidentify_folder(args.path, args.output, options, secret=secret)
    for line in report.skipped:
        print(f"medscan: warning: skipped {line}", file=sys.stderr)
    for line in report.warnings:
        print(f"medscan: warning: {line}", file=sys.stderr)
    if not key:
        print("medscan: note: MEDSCAN_DEID_KEY not set: pseudonyms and UIDs will differ on the next run",
              file=sys.stderr)
    print(f"wrote {report.written} de-identified file(s) to {report.out_dir}")
    return 0


def _deidentify_to_nifti(args: argparse.Namespace) -> int:
    """One series to one NIfTI file: the format has no place for identity, dates or descriptions."""
    from medscan.deid_nifti import deidentify_to_nifti

    if args.date_shift or args.keep_descriptors:
        print("medscan: note: NIfTI keeps no dates or descriptions: --date-shift/--keep-descriptors do nothing",
              file=sys.stderr)
    out, warnings = deidentify_to_nifti(args.path, args.output, series=args.series,
                                        allow_burned_in=args.allow_burned_in)
    for line in warnings:
        print(f"medscan: warning: {line}", file=sys.stderr)
    print(f"wrote de-identified {out}")
    return 0


def _db_passphrase(target: str, prompt: str) -> str:
    """MEDSCAN_DB_KEY, else the OS keyring's entry for this database, else a prompt."""
    from medscan.db import keys

    if os.environ.get("MEDSCAN_DB_KEY"):
        return os.environ["MEDSCAN_DB_KEY"]
    return keys.get_passphrase(target) or _secret("MEDSCAN_DB_KEY", prompt)


def _open(args: argparse.Namespace, *, login: bool = True):
    return open_database(args, login=login)[0]


def open_database(args: argparse.Namespace, *, login: bool = True):
    """The database named by ``--db``/``--blobs``, signed in as ``--user``; also its passphrase,
    which batch workers need to open the same database themselves."""
    from medscan.db.store import Database

    passphrase = _db_passphrase(args.db, "database passphrase")
    database = Database.open(args.db, passphrase, blob_dir=args.blobs)
    if login:
        user = args.user or os.environ.get("MEDSCAN_USER") or getpass.getuser()
        database.login(user, _secret("MEDSCAN_USER_KEY", f"passphrase of {user}"))
    return database, passphrase


def cmd_db_init(args: argparse.Namespace) -> int:
    """``medscan db init``: create an encrypted database and its first administrator (the current user, or
    ``--user``); with ``--keyring`` the passphrase is also kept in the OS keyring.

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.db import keys
    from medscan.db.store import Database

    if args.keyring and not keys.keyring_available():
        raise MedscanError(args.db, "no OS keyring is available here; leave out --keyring")
    passphrase = _secret("MEDSCAN_DB_KEY", "new database passphrase", confirm=True)
    with Database.create(args.db, passphrase, blob_dir=args.blobs) as database:
        admin = args.user or os.environ.get("MEDSCAN_USER") or getpass.getuser()
        database.add_user(admin, "admin", _secret("MEDSCAN_USER_KEY", f"passphrase for {admin}", confirm=True))
    if args.keyring:
        keys.store_passphrase(args.db, passphrase)
    held = " (passphrase held in the OS keyring)" if args.keyring else ""
    print(f"created {args.db} with administrator {admin}{held}")
    return 0


def cmd_db_add_user(args: argparse.Namespace) -> int:
    """``medscan db add-user NAME --role ROLE``: add an account (admins only; audited).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    with _open(args) as database:
        database.require_role("add-user", args.name, ("admin",))
        database.add_user(args.name, args.role, _secret("MEDSCAN_NEW_USER_KEY", f"passphrase for {args.name}",
                                                         confirm=True))
    print(f"added {args.name} ({args.role})")
    return 0


def cmd_db_import(args: argparse.Namespace) -> int:
    """``medscan db import PATH``: register every series under PATH (references and headers, not pixels).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    with _open(args) as database:
        ids = database.import_folder(args.path)
    print(f"imported {len(ids)} series")
    return 0


def cmd_db_list(args: argparse.Namespace) -> int:
    """``medscan db list``: one line per series (``--results``: per kept result).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from sqlalchemy import select

    from medscan.db.models import Series, Study

    if args.results:
        return _list_results(args)
    with _open(args) as database, database.transaction() as session:
        database.audit("open", "series list")
        rows = session.execute(select(Series, Study).join(Study)).all()
        print(f"{'id':>5}  {'mod':<4} {'number':>6}  {'study date':<10} description")
        for series, study in rows:
            print(f"{series.id:>5}  {series.modality:<4} {series.number if series.number is not None else '-':>6}  "
                  f"{study.study_date:<10} {series.description}")
    return 0


def _list_results(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from medscan.db.models import Result

    with _open(args) as database, database.transaction() as session:
        database.audit("open", "result list")
        print(f"{'id':>5}  {'series':>6}  {'operation':<12} {'model':<28} created")
        for result in session.scalars(select(Result).order_by(Result.id)):
            model = f"{result.model_name or '-'} {result.model_version or ''}".strip()
            mark = "  SYNTHETIC" if result.synthetic else ""
            print(f"{result.id:>5}  {result.series_ref:>6}  {result.operation:<12} {model:<28} "
                  f"{result.created_at:%Y-%m-%d %H:%M}{mark}")
    return 0


def cmd_db_export(args: argparse.Namespace) -> int:
    """``medscan db export ID -o OUT`` or ``--result ID``: write a series de-identified (``--identifiable``
    keeps identity, not for researchers) as DICOM or one NIfTI file, or a kept result as NIfTI.

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    key = os.environ.get("MEDSCAN_DEID_KEY")
    if (args.series is None) == (args.result is None):
        raise MedscanError(args.output, "give a series id or --result ID (not both)")
    with _open(args) as database:
        if args.result is not None:
            out = database.export_result(args.result, args.output)
            print(f"exported result {args.result} to {out}")
            return 0
        out = database.export_series(args.series, args.output, identifiable=args.identifiable,
                                     deid_secret=key.encode("utf-8").ljust(16, b"\0") if key else None)
    print(f"exported series {args.series} to {out}")
    return 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    """``medscan db backup -o FILE``: an encrypted archive of the database and its blobs (admins only).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    with _open(args) as database:
        database.require_role("backup", args.output, ("admin",))
        out = database.backup(args.output)
    print(f"wrote {out}")
    return 0


def cmd_db_restore(args: argparse.Namespace) -> int:
    """``medscan db restore BACKUP``: recreate the database at ``--db`` from a backup (its passphrase is asked).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.db.store import restore

    restore(args.backup, args.db, _secret("MEDSCAN_DB_KEY", "database passphrase")).close()
    print(f"restored {args.backup} into {args.db}")
    return 0


def cmd_db_rekey(args: argparse.Namespace) -> int:
    """``medscan db rekey``: change the database passphrase (admins only; the new one from ``MEDSCAN_DB_NEW_KEY``
    or a prompt). Only the wrapped 32-byte data key is re-encrypted; a passphrase held in the keyring follows.

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.db import keys

    old = _db_passphrase(args.db, "current database passphrase")
    new = _secret("MEDSCAN_DB_NEW_KEY", "new database passphrase", confirm=True)
    with _open(args) as database:
        database.require_role("rekey", str(args.db), ("admin",))
        database.rekey(old, new)
    if args.keyring or keys.get_passphrase(args.db) is not None:  # a held passphrase must follow the change
        keys.store_passphrase(args.db, new)
        print(f"changed the passphrase of {args.db} (held in the OS keyring)")
        return 0
    print(f"changed the passphrase of {args.db}")
    return 0


def cmd_db_collect(args: argparse.Namespace) -> int:
    """``medscan db collect``: remove blobs that no row references and that are older than ``--grace`` seconds
    (what a crash can leave; admins only).

    Args:
        args: the parsed command line, with ``--db``, ``--blobs`` and ``--user``; passphrases come from the
            environment (``MEDSCAN_DB_KEY``, ``MEDSCAN_USER_KEY``), the OS keyring or a prompt, never the command line.

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    with _open(args) as database:
        database.require_role("collect", str(args.db), ("admin",))
        removed = database.collect_orphans(grace_s=args.grace)
    print(f"removed {removed} unreferenced blob(s)")
    return 0


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """--db, --blobs and --user, as every command that opens the study database takes them."""
    parser.add_argument("--db", required=True, help="SQLite file, or a postgresql:// URL")
    parser.add_argument("--blobs", help="blob folder (default: <db>.blobs; required for PostgreSQL)")
    parser.add_argument("--user", help="account name (default: MEDSCAN_USER or the login name)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``deidentify`` and ``db`` to the main parser's subcommands."""
    deid = subparsers.add_parser("deidentify", help="de-identified copies of a DICOM folder (PS3.15 Basic Profile)")
    deid.add_argument("path")
    deid.add_argument("-o", "--output", required=True,
                      help="new folder (must not exist or be empty), or a .nii/.nii.gz file for one series")
    deid.add_argument("--series", help="with a NIfTI output: the series to write (UID, number or key)")
    deid.add_argument("--date-shift", action="store_true",
                      help="keep intervals: shift every date of a patient by the same number of days")
    deid.add_argument("--keep-descriptors", action="store_true",
                      help="keep study/series descriptions with names, IDs and dates scrubbed")
    deid.add_argument("--remove-all-private", action="store_true",
                      help="drop the safe private tags too (MOSAIC and Philips scaling are then lost)")
    deid.add_argument("--allow-burned-in", action="store_true",
                      help="export images that may show burned-in text (ultrasound, captures), with a warning")
    deid.set_defaults(func=cmd_deidentify)

    db = subparsers.add_parser("db", help="the encrypted study database")
    db_sub = db.add_subparsers(dest="db_command", required=True)

    def add(name: str, help_text: str, func) -> argparse.ArgumentParser:
        parser = db_sub.add_parser(name, help=help_text)
        add_database_arguments(parser)
        parser.set_defaults(func=func)
        return parser

    add("init", "create a database and its administrator", cmd_db_init).add_argument(
        "--keyring", action="store_true", help="hold the passphrase in the OS keyring (then no prompt is needed)")
    add_user = add("add-user", "add an account (administrators only)", cmd_db_add_user)
    add_user.add_argument("name")
    add_user.add_argument("--role", required=True, choices=("radiologist", "technician", "researcher", "admin"))
    add("import", "register the series of a DICOM folder", cmd_db_import).add_argument("path")
    add("list", "list the series (or, with --results, the kept results)", cmd_db_list).add_argument(
        "--results", action="store_true", help="list results kept by clean/generate --db instead")
    export = add("export", "export a series (de-identified unless --identifiable) or a stored result", cmd_db_export)
    export.add_argument("series", type=int, nargs="?", help="series id from 'medscan db list'")
    export.add_argument("--result", type=int, help="a stored result (from clean/generate --db) instead, as NIfTI")
    export.add_argument("-o", "--output", required=True,
                        help="new folder for DICOM, or a .nii/.nii.gz file (always de-identified)")
    export.add_argument("--identifiable", action="store_true", help="original files (not for researchers)")
    add("backup", "write an encrypted backup archive", cmd_db_backup).add_argument("-o", "--output", required=True)
    add("restore", "restore a backup into a new database file", cmd_db_restore).add_argument("backup", type=Path)
    add("rekey", "change the database passphrase (new one from MEDSCAN_DB_NEW_KEY or a prompt)", cmd_db_rekey
        ).add_argument("--keyring", action="store_true", help="hold the new passphrase in the OS keyring")
    collect = add("collect", "remove blobs no row refers to", cmd_db_collect)
    collect.add_argument("--grace", type=float, default=3600.0, help="only blobs older than this many seconds")
