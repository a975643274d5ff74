"""The coordinator: hands queued tasks to an executor, records outcomes, honours cancel, finishes the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from medscan.batch.executors import WorkerLost
from medscan.batch.jobs import (
    JobStatus,
    clean_staging,
    finish_cancel,
    job_status,
    load_spec_of,
    recover,
    set_job_state,
    utc_now,
)
from medscan.db.models import Job, Task
from medscan.db.store import Database

TaskCallback = Callable[[str, dict[str, Any]], None]  # (label, outcome) after each finished task


def worker_target(database: Database) -> dict[str, str | None]:
    """How a worker opens this same database (the password travels with the payload only)."""
    url = database.engine.url
    if database.engine.dialect.name == "sqlite":
        return {"target": url.database, "blob_dir": str(database.blobs.root)}
    return {"target": url.render_as_string(hide_password=False), "blob_dir": str(database.blobs.root)}


def run_job(database: Database, job_id: int, executor: Any, passphrase: str, *,
            on_task: TaskCallback | None = None, poll_s: float = 1.0) -> JobStatus:
    """Run every queued task of ``job_id``; safe to call again after a crash (that is ``resume``)."""
    spec = load_spec_of(database, job_id)
    recover(database, job_id)
    if job_status(database, job_id).state == "cancelling":
        finish_cancel(database, job_id)
        return job_status(database, job_id)
    set_job_state(database, job_id, "running")
    with database.transaction() as session:
        queue = list(session.execute(select(Task.id, Task.label, Task.series_ref, Task.inputs)
                                     .where(Task.job_ref == job_id, Task.state == "queued")
                                     .order_by(Task.position)).all())
    base = {"job_id": job_id, "operation": spec.operation, "parameters": spec.parameters, "device": spec.device,
            "output": spec.output, "refuse_flagged": spec.refuse_flagged, "db": worker_target(database),
            "passphrase": passphrase, "user_id": database.user.id if database.user else None}
    in_flight: dict[Any, tuple[Any, int]] = {}
    cancelled = False
    while (queue and not cancelled) or in_flight:
        cancelled = cancelled or _cancel_requested(database, job_id)
        while queue and not cancelled and len(in_flight) < executor.slots:
            row = queue.pop(0)
            attempt = _mark_running(database, row.id)
            payload = {**base, "task_id": row.id, "attempt": attempt, "label": row.label,
                       "series_ref": row.series_ref, "inputs": row.inputs}
            in_flight[executor.submit(payload)] = (row, attempt)
        for handle, outcome in executor.wait(list(in_flight), timeout=poll_s):
            row, attempt = in_flight.pop(handle)
            if isinstance(outcome, WorkerLost):
                if attempt < spec.max_attempts and not cancelled:
                    _set_task(database, row.id, attempt, state="queued")
                    queue.insert(0, row)
                    continue
                outcome = {"state": "failed", "error": f"{row.label}: {outcome} ({attempt} attempt(s))"}
            if outcome["state"] == "failed":
                _set_task(database, row.id, attempt, state="failed", error=outcome["error"],
                          worker=outcome.get("worker", ""))
            if on_task is not None and outcome["state"] != "superseded":
                on_task(row.label, outcome)
        _heartbeat(database, job_id)
    if cancelled:
        finish_cancel(database, job_id)
    else:
        if not spec.to_database:
            clean_staging(spec.output, job_id, database)
        counts = job_status(database, job_id).counts
        set_job_state(database, job_id, "failed" if counts.get("failed") else "done")
    return job_status(database, job_id)


def _mark_running(database: Database, task_id: int) -> int:
    with database.transaction() as session:
        task = session.get(Task, task_id)
        task.state, task.attempts = "running", task.attempts + 1
        return task.attempts


def _set_task(database: Database, task_id: int, attempt: int, **values: Any) -> None:
    with database.transaction() as session:
        session.execute(update(Task).where(Task.id == task_id, Task.attempts == attempt, Task.state == "running")
                        .values(**values))


def _cancel_requested(database: Database, job_id: int) -> bool:
    with database.transaction() as session:
        return session.scalar(select(Job.state).where(Job.id == job_id)) == "cancelling"


def _heartbeat(database: Database, job_id: int) -> None:
    """Tell ``cancel`` that a coordinator is alive (it cancels orphaned jobs itself)."""
    with database.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.state == "running").values(updated_at=utc_now()))
