"""What runs on a worker (a local pool process or a Dask worker): one task, start to finish.

Each worker process opens the database and loads the model once and keeps them. The task's
output and its 'done' row are committed together, fenced by the attempt number (see jobs.py).
Any failure comes back as a one-line error; only the death of the process itself escapes.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from typing import Any

from medscan.scan import MedscanError

_DATABASES: dict[tuple[str, str | None], Any] = {}
_THREADS_SET = False


class Superseded(Exception):
    """A newer attempt owns the task (the batch was resumed or cancelled meanwhile)."""


def init_local_worker(threads: int, parent_pid: int) -> None:
    """Pool initializer: share the cores instead of oversubscribing them; die with the batch."""
    global _THREADS_SET
    _set_threads(threads)
    _THREADS_SET = True

    def watch() -> None:  # a worker orphaned by a killed batch must not go on writing
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    if os.name == "posix":
        threading.Thread(target=watch, daemon=True).start()


def _set_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def _threads_for_dask_worker() -> None:
    global _THREADS_SET
    if _THREADS_SET:
        return
    try:
        from distributed import get_worker

        _set_threads(max(1, get_worker().state.nthreads))
    except (ImportError, ValueError):
        pass
    _THREADS_SET = True


def _database(payload: dict[str, Any]) -> Any:
    from medscan.db.models import User
    from medscan.db.store import Database

    key = (payload["db"]["target"], payload["db"]["blob_dir"])
    if key not in _DATABASES:
        database = Database.open(payload["db"]["target"], payload["passphrase"], blob_dir=payload["db"]["blob_dir"])
        _DATABASES[key] = database
    database = _DATABASES[key]
    if payload.get("user_id") is not None and (database.user is None or database.user.id != payload["user_id"]):
        with database.transaction() as session:
            database.user = session.get(User, payload["user_id"])
    return database


def _claim(session: Any, payload: dict[str, Any], **values: Any) -> None:
    """Mark the task done inside the caller's transaction, if this attempt still owns it."""
    from sqlalchemy import update

    from medscan.db.models import Task

    statement = (update(Task).where(Task.id == payload["task_id"], Task.state == "running",
                                    Task.attempts == payload["attempt"]).values(state="done", error="", **values))
    if session.execute(statement).rowcount != 1:
        raise Superseded


def _load(payload: dict[str, Any]) -> Any:
    from medscan.batch.jobs import identity
    from medscan.io.dicom import list_series, load_series

    inputs = payload["inputs"]
    listing = list_series(payload["label"], files=inputs["files"])
    for record in listing.series:
        if identity(record) == inputs["identity"]:
            return load_series(record)
    reason = listing.skipped[0] if listing.skipped else f"series {inputs['key']} is no longer there"
    raise MedscanError(payload["label"], reason)


def execute_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one task; returns {'task_id', 'attempt', 'state': done|failed|superseded, ...}."""
    from medscan.ops import run

    _threads_for_dask_worker()
    started = time.perf_counter()
    outcome = {"task_id": payload["task_id"], "attempt": payload["attempt"], "worker": _worker_name()}
    staging = None
    try:
        database = _database(payload)
        scan = _load(payload)
        result = run(payload["operation"], scan, device=payload["device"], **payload["parameters"])
        report = result.fidelity
        if report is not None and report.flagged and payload.get("refuse_flagged"):
            raise MedscanError(payload["label"], "fidelity guard refused the result: " + "; ".join(report.reasons))
        done = {"worker": outcome["worker"]}
        if payload["output"].get("database"):
            from medscan.db.results import keep_result

            done["seconds"] = time.perf_counter() - started
            keep_result(database, payload["series_ref"], result, operation=payload["operation"],
                        parameters={**payload["parameters"], "device": payload["device"]},
                        before_commit=lambda session, result_id: _claim(session, payload, result_ref=result_id, **done))
            outcome["output"] = "database"
        else:
            from medscan.batch.jobs import output_path, staging_dir
            from medscan.io.result_files import save_result

            final = output_path(payload["output"], payload["task_id"], payload["label"], payload["operation"])
            staging = staging_dir(payload["output"], payload["task_id"], payload["attempt"])
            staging.mkdir(parents=True, exist_ok=True)
            image, *companions = save_result(result.scan, result.maps, staging / final.name)
            done["seconds"] = time.perf_counter() - started
            with database.transaction() as session:
                _claim(session, payload, output=str(final), **done)
                for path in companions:  # a synthetic NIfTI's uncertainty and generated-region files
                    os.rename(path, final.parent / path.name)
                os.rename(image, final)  # publish: the last step before the row commits
            database.audit("process", payload["label"], detail=f"{payload['operation']} -> {final}")
            outcome["output"] = str(final)
        outcome.update(state="done", seconds=time.perf_counter() - started)
    except Superseded:
        outcome.update(state="superseded")
    except MedscanError as exc:
        outcome.update(state="failed", error=str(exc))
    except MemoryError:
        outcome.update(state="failed", error=f"{payload['label']}: out of memory")
    except Exception as exc:  # anything else is still one line for the task list, not a dead batch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        outcome.update(state="failed", error=f"{payload['label']}: {type(exc).__name__}: {first}"[:500])
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return outcome


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
