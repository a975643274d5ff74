"""``medscan pacs echo|find|get|send`` and ``medscan listen``: parse, call medscan.net, print.

pynetdicom is imported only when one of these commands runs; none of them imports torch (``listen --run`` does,
in its batch workers, when a study is processed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from medscan.scan import MedscanError


@contextlib.contextmanager
def _maybe_database(args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    """The study database when ``--db`` is given (every network action is then audited), else (None, "")."""
    if not getattr(args, "db", None):
        yield None, ""
        return
    from medscan.db.cli import open_database

    database, passphrase = open_database(args)
    with database:
        yield database, passphrase


def _audit_of(database: Any) -> Any:
    return database.audit if database is not None else None


def _node(args: argparse.Namespace) -> Any:
    from medscan.net.nodes import parse_node

    return parse_node(args.pacs)


def _progress(what: str) -> Any:
    """A tqdm bar on a terminal, nothing when stderr is a pipe; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(desc=what, unit="inst", disable=None, file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar.close


def cmd_echo(args: argparse.Namespace) -> int:
    """``medscan pacs echo NODE``: C-ECHO the node and print the round trip in ms.

    Args:
        args: the parsed command line (the node by name from the nodes file or as ``AE@host:port``, ``--ae``,
            ``--timeout``; ``--db`` to audit in the study database).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.net.scu import echo

    node = _node(args)
    seconds = echo(node, calling_ae=args.ae, timeout=args.timeout)
    print(f"{node.name}: C-ECHO ok ({seconds * 1000:.0f} ms)")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    """``medscan pacs find NODE``: study-level C-FIND by patient id or name, study date, modality or accession
    (``--series``: with each study's series), as a table or ``--json`` lines.

    Args:
        args: the parsed command line (the node by name from the nodes file or as ``AE@host:port``, ``--ae``,
            ``--timeout``; ``--db`` to audit in the study database).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.net.scu import find_studies

    node = _node(args)
    with _maybe_database(args) as (database, _):
        studies = find_studies(node, patient_id=args.patient_id or "", patient_name=args.patient_name or "",
                               study_date=args.study_date or "", modality=args.modality or "",
                               accession=args.accession or "", with_series=args.series, calling_ae=args.ae,
                               timeout=args.timeout, audit=_audit_of(database))
    if args.json:
        for study in studies:
            print(json.dumps(study.to_dict()))
        return 0
    if not studies:
        print("no matching studies")
        return 0
    print(f"{'date':<8}  {'patient id':<16} {'mod':<8} {'ser':>3} {'inst':>5}  {'description':<28} study uid")
    for s in studies:
        print(f"{s.study_date:<8}  {s.patient_id[:16]:<16} {'/'.join(s.modalities)[:8]:<8} "
              f"{s.series_count if s.series_count is not None else '-':>3} "
              f"{s.instances if s.instances is not None else '-':>5}  {s.description[:28]:<28} {s.study_uid}")
        for series in s.series:
            print(f"{'':>10}series {series.number or '-':>4} {series.modality:<4} {series.instances or '-':>5}  "
                  f"{series.description[:28]:<28} {series.series_uid}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """``medscan pacs get NODE STUDY_UID -o FOLDER``: retrieve a study (or ``--series``) by C-GET, falling back to
    C-MOVE to this machine's ``--port`` when the node refuses C-GET.

    Args:
        args: the parsed command line (the node by name from the nodes file or as ``AE@host:port``, ``--ae``,
            ``--timeout``; ``--db`` to audit in the study database).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.net.scu import retrieve

    node = _node(args)
    with _maybe_database(args) as (database, _):
        update, close = _progress("retrieve")
        try:
            report = retrieve(node, args.study, args.output, series_uid=args.series, calling_ae=args.ae,
                              port=args.port, method=args.method, timeout=args.timeout, progress=update,
                              audit=_audit_of(database))
        finally:
            close()
        print(f"retrieved {report.received} of {report.expected} instances by {report.method} in "
              f"{report.seconds:.1f} s -> {report.folder}")
        if database is not None:
            ids = database.import_folder(report.folder)
            print(f"imported {len(ids)} series into {args.db}")
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    """``medscan pacs send NODE PATH...``: C-STORE the DICOM files under the paths, each in its own transfer syntax
    when the node accepts it, else decompressed to explicit VR little endian; optionally de-identified first.

    Args:
        args: the parsed command line (the node by name from the nodes file or as ``AE@host:port``, ``--ae``,
            ``--timeout``; ``--db`` to audit in the study database).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.net.scu import send

    node = _node(args)
    with _maybe_database(args) as (database, _):
        update, close = _progress("send")
        try:
            report = send(node, args.paths, calling_ae=args.ae, timeout=args.timeout, progress=update,
                          deidentifier=_deidentifier(args), audit=_audit_of(database))
        finally:
            close()
    for line in report.skipped[:5]:
        print(f"medscan: warning: skipped {line}", file=sys.stderr)
    if len(report.skipped) > 5:
        print(f"medscan: warning: skipped {len(report.skipped) - 5} more file(s)", file=sys.stderr)
    extra = f" ({report.transcoded} decompressed: the peer accepts only uncompressed)" if report.transcoded else ""
    print(f"sent {report.sent} of {report.total} instances to {node.name} in {report.seconds:.1f} s{extra}")
    return 0


def _deidentifier(args: argparse.Namespace) -> Any:
    if not getattr(args, "deidentify", False):
        return None
    import secrets

    from medscan.deid import Deidentifier, DeidOptions

    key = os.environ.get("MEDSCAN_DEID_KEY")
    if not key:
        print("medscan: note: MEDSCAN_DEID_KEY not set: pseudonyms and UIDs will differ on the next send",
              file=sys.stderr)
    secret = key.encode("utf-8").ljust(16, b"\0") if key else secrets.token_bytes(32)
    return Deidentifier(secret, DeidOptions())


def cmd_listen(args: argparse.Namespace) -> int:
    """``medscan listen``: run a Storage SCP that writes received studies to a folder, only for callers the
    ``--allow`` rules admit (TLS optional); ``--run SPEC`` runs a batch job on each arrived study and
    ``--forward NODE`` sends its results on.

    Args:
        args: the parsed command line (the node by name from the nodes file or as ``AE@host:port``, ``--ae``,
            ``--timeout``; ``--db`` to audit in the study database).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.net.nodes import check_ae_title, parse_node
    from medscan.net.scp import Listener, parse_allow, server_ssl_context

    check_ae_title(args.ae)
    allow = parse_allow(args.allow or [])
    tls = server_ssl_context(args.tls_cert, args.tls_key, args.tls_ca)
    forward = parse_node(args.forward) if args.forward else None
    if args.run and not args.db:
        raise MedscanError("--run", "a batch spec runs as a job in the study database: give --db (and --user)")
    if forward is not None and not args.run:
        raise MedscanError("--forward", "forwards the series a --run spec derives; give --run SPEC.yaml")

    def log(line: str) -> None:
        print(line, file=sys.stderr if line.startswith("medscan:") else sys.stdout, flush=True)

    with _maybe_database(args) as (database, passphrase):
        on_study = None
        if args.run:
            from medscan.net.pipeline import load_node_spec, study_pipeline

            spec = load_node_spec(args.run, forwarding=forward is not None)
            on_study = study_pipeline(spec, database, passphrase, forward=forward, calling_ae=args.ae, log=log,
                                      deidentifier=_deidentifier(args))
        listener = Listener(args.output, ae_title=args.ae, port=args.port, bind=args.bind, allow=allow,
                            ssl_context=tls, quiet_s=args.quiet, on_study=on_study, audit=_audit_of(database),
                            log=log, timeout=args.timeout)
        listener.start()
        import signal

        def interrupt(_signum: int, _frame: Any) -> None:  # a service manager's stop is a Ctrl-C
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        who = ", ".join(rule.text for rule in allow) if allow else "loopback peers only"
        log(f"listening as {args.ae} on port {listener.port}{' (TLS)' if tls else ''}; accepting {who}; "
            f"a study is complete after {args.quiet:g} s without a new instance; Ctrl-C stops")
        try:
            listener.serve_forever()
        except KeyboardInterrupt:
            log(f"stopped: {listener.received} instance(s) received, {len(listener.published)} study(ies) filed, "
                f"{listener.refused} association(s) refused")
    return 0


def _optional_database(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("audit (optional)", "with --db every query, retrieve, send and receive is "
                                                          "recorded in the study database's audit log")
    group.add_argument("--db", help="SQLite file or postgresql:// URL of the study database")
    group.add_argument("--blobs", help="blob folder (default: <db>.blobs; required for PostgreSQL)")
    group.add_argument("--user", help="account name (default: MEDSCAN_USER or the login name)")


def _common(parser: argparse.ArgumentParser, *, remote: bool = True) -> None:
    if remote:
        parser.add_argument("--pacs", required=True, metavar="NODE",
                            help="AE@host:port, or a node name from the nodes file ($MEDSCAN_NODES or "
                                 "~/.config/medscan/nodes.toml)")
    parser.add_argument("--ae", default="MEDSCAN", help="our AE title (default MEDSCAN)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a connection, an association or a reply (default 10)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pacs`` and ``listen`` to the main parser's subcommands."""
    pacs = subparsers.add_parser("pacs", help="query, retrieve from and send to a PACS (DICOM network)")
    sub = pacs.add_subparsers(dest="pacs_command", required=True)

    echo = sub.add_parser("echo", help="C-ECHO: is the node there and does it accept us?")
    _common(echo)
    echo.set_defaults(func=cmd_echo, path="")

    find = sub.add_parser("find", help="C-FIND studies (study level; --series lists their series)")
    _common(find)
    find.add_argument("--patient-id")
    find.add_argument("--patient-name", help="DICOM wildcards allowed, e.g. 'DOE^*'")
    find.add_argument("--study-date", help="YYYYMMDD or a range: 20240101-20241231, 20240101-, -20241231")
    find.add_argument("--modality", help="e.g. CT, MR")
    find.add_argument("--accession")
    find.add_argument("--series", action="store_true", help="also list each study's series")
    find.add_argument("--json", action="store_true", help="one JSON object per study and line")
    _optional_database(find)
    find.set_defaults(func=cmd_find, path="")

    get = sub.add_parser("get", help="retrieve a study or series (C-GET, else C-MOVE to us on --port)")
    _common(get)
    get.add_argument("--study", required=True, help="Study Instance UID")
    get.add_argument("--series", help="Series Instance UID (default: the whole study)")
    get.add_argument("-o", "--output", required=True, help="folder; the study lands in OUTPUT/<study uid>/")
    get.add_argument("--port", type=int, help="our port for a C-MOVE when the PACS refuses C-GET (it must know our "
                                              "AE title at this host and port)")
    get.add_argument("--method", choices=("auto", "get", "move"), default="auto",
                     help="auto: C-GET, falling back to C-MOVE (default)")
    _optional_database(get)
    get.set_defaults(func=cmd_get, path="")

    send = sub.add_parser("send", help="C-STORE DICOM files or folders (a study, a derived result)")
    send.add_argument("paths", nargs="+", metavar="PATH")
    _common(send)
    send.add_argument("--deidentify", action="store_true",
                      help="send de-identified copies (PS3.15 Annex E basic profile; MEDSCAN_DEID_KEY keeps "
                           "pseudonyms repeatable)")
    _optional_database(send)
    send.set_defaults(func=cmd_send, path="")

    listen = subparsers.add_parser("listen", help="a Storage SCP that files received studies (and can process "
                                                  "and forward them: an AI node)")
    _common(listen, remote=False)
    listen.add_argument("--port", type=int, required=True)
    listen.add_argument("--bind", default="", help="address to listen on (default: all)")
    listen.add_argument("-o", "--output", required=True, help="folder; studies land in OUTPUT/<study uid>/")
    listen.add_argument("--allow", nargs="+", action="extend", metavar="AE@HOST",
                        help="peers allowed to send: AE@host, *@host or AE@*; default: any AE from loopback only")
    listen.add_argument("--quiet", type=float, default=10.0,
                        help="seconds without a new instance after which a study is complete (default 10)")
    listen.add_argument("--run", metavar="SPEC.yaml", help="run this batch spec over each complete study "
                                                            "(needs --db)")
    listen.add_argument("--forward", metavar="NODE", help="send the series --run derives on to this node")
    listen.add_argument("--deidentify", action="store_true", help="forward de-identified copies")
    listen.add_argument("--tls-cert", help="our certificate (PEM): the listener then speaks TLS only")
    listen.add_argument("--tls-key", help="its private key (PEM)")
    listen.add_argument("--tls-ca", help="CA (PEM) that must have signed each peer's certificate")
    _optional_database(listen)
    listen.set_defaults(func=cmd_listen, path="")
