"""``medscan batch run|resume|status|list|cancel``: parse, call medscan.batch, print."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _executor(args: argparse.Namespace) -> Any:
    from medscan.batch.executors import DaskExecutor, LocalExecutor

    if args.scheduler:
        return DaskExecutor(args.scheduler, slots=args.workers)
    return LocalExecutor(args.workers or 1)


def _run(database: Any, job_id: int, passphrase: str, executor: Any) -> int:
    """Run the job on ``executor`` (closed afterwards), printing a line per finished task."""
    from medscan.batch.jobs import job_status
    from medscan.batch.runner import run_job

    total = job_status(database, job_id).total
    print(f"job {job_id}: {total} task(s) on {executor.description}", flush=True)
    finished = job_status(database, job_id).finished

    def report(label: str, outcome: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        if outcome["state"] == "done":
            print(f"[{finished}/{total}] done   {label} ({outcome['seconds']:.1f} s)", flush=True)
        else:
            print(f"[{finished}/{total}] failed {outcome['error']}", flush=True)

    try:
        status = run_job(database, job_id, executor, passphrase, on_task=report)
    except KeyboardInterrupt:
        print(f"medscan: interrupted; finish it with 'medscan batch resume {job_id}'", file=sys.stderr)
        return 130
    finally:
        executor.close()
    _print_status(status)
    return 0 if status.state == "done" else 1


def cmd_run(args: argparse.Namespace) -> int:
    """``medscan batch run SPEC``: create a job from the spec (one task per input series) and run it on the
    local pool or the Dask scheduler given; an unreachable cluster is reported before any job is written.

    Args:
        args: the parsed command line (``--db``, ``--blobs``, ``--user`` and the sub-command's own options).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.batch.jobs import create_job
    from medscan.batch.spec import load_spec
    from medscan.db.cli import open_database

    spec = load_spec(args.spec)
    database, passphrase = open_database(args)
    with database:
        executor = _executor(args)  # an unreachable cluster is reported before any job is written
        try:
            job_id = create_job(database, spec, str(args.spec))
        except BaseException:
            executor.close()
            raise
        return _run(database, job_id, passphrase, executor)


def cmd_resume(args: argparse.Namespace) -> int:
    """``medscan batch resume JOB``: finish what a crashed or killed job left (``--retry-failed`` also queues
    its failed tasks again); a job already done or cancelled only prints its status.

    Args:
        args: the parsed command line (``--db``, ``--blobs``, ``--user`` and the sub-command's own options).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.batch.jobs import BATCH_ROLES, job_status, requeue_failed
    from medscan.db.cli import open_database

    database, passphrase = open_database(args)
    with database:
        database.require_role("batch", f"job {args.job}", BATCH_ROLES)
        if args.retry_failed:
            print(f"job {args.job}: {requeue_failed(database, args.job)} failed task(s) queued again")
        if job_status(database, args.job).state in ("done", "cancelled"):
            _print_status(job_status(database, args.job))
            return 0
        return _run(database, args.job, passphrase, _executor(args))


def cmd_status(args: argparse.Namespace) -> int:
    """``medscan batch status JOB``: print the job's progress and each failed task's one-line error.

    Args:
        args: the parsed command line (``--db``, ``--blobs``, ``--user`` and the sub-command's own options).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.batch.jobs import job_status
    from medscan.db.cli import open_database

    database, _ = open_database(args)
    with database:
        _print_status(job_status(database, args.job))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``medscan batch list``: one line per job (id, operation, state, done/total, created in UTC).

    Args:
        args: the parsed command line (``--db``, ``--blobs``, ``--user`` and the sub-command's own options).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.batch.jobs import list_jobs
    from medscan.db.cli import open_database

    database, _ = open_database(args)
    with database:
        print(f"{'job':>5}  {'operation':<12} {'state':<10} {'done':>9}  created (UTC)")
        for status in list_jobs(database):
            created = status.created_at.strftime("%Y-%m-%d %H:%M") if status.created_at else ""
            print(f"{status.job_id:>5}  {status.operation:<12} {status.state:<10} "
                  f"{status.counts.get('done', 0):>4}/{status.total:<4}  {created}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """``medscan batch cancel JOB``: stop the job; finished series stay, nothing is left half-written.

    Args:
        args: the parsed command line (``--db``, ``--blobs``, ``--user`` and the sub-command's own options).

    Returns:
        The exit status, 0 on success; problems are raised as one-line :class:`~medscan.scan.MedscanError`.
    """
    from medscan.batch.jobs import request_cancel
    from medscan.db.cli import open_database

    database, _ = open_database(args)
    with database:
        state = request_cancel(database, args.job)
    print(f"job {args.job}: {state}")
    return 0


def _print_status(status: Any) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status.counts.items()))
    print(f"job {status.job_id} ({status.operation}): {status.state}; {counts}")
    for _label, error in status.failures:
        print(f"  failed: {error}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medscan batch run|resume|status|list|cancel`` to the main parser.

    Args:
        subparsers: the ``medscan`` parser's sub-command collection.
    """
    from medscan.db.cli import add_database_arguments

    batch = subparsers.add_parser("batch", help="resumable batch jobs over many series (local pool or Dask)")
    sub = batch.add_subparsers(dest="batch_command", required=True)

    def add(name: str, help_text: str, func: Any, *, runs: bool = False) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        add_database_arguments(parser)
        if runs:
            parser.add_argument("--workers", type=int, help="local worker processes (default 1), or tasks in "
                                                              "flight on a Dask cluster (default: its threads)")
            parser.add_argument("--scheduler", help="run on this Dask scheduler, e.g. tcp://10.0.0.5:8786")
        parser.set_defaults(func=func)
        return parser

    add("run", "create a job from a YAML/JSON spec and run it", cmd_run, runs=True).add_argument("spec")
    resume = add("resume", "finish a job that was interrupted", cmd_resume, runs=True)
    resume.add_argument("job", type=int)
    resume.add_argument("--retry-failed", action="store_true",
                        help="run failed tasks again (e.g. after fixing their files); unreadable inputs stay failed")
    add("status", "progress and errors of a job", cmd_status).add_argument("job", type=int)
    add("list", "all jobs", cmd_list)
    add("cancel", "stop a job; finished series are kept, nothing half-written is left", cmd_cancel) \
        .add_argument("job", type=int)
