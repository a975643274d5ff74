"""Jobs and tasks in the study database: creating them from a spec, recovering after a crash, status.

A task moves queued -> running -> done | failed | cancelled. ``attempts`` is raised each time a
task is handed to a worker and fences the finish: only the worker holding the latest attempt can
mark it done, so a worker orphaned by a killed batch can never finish a task a second time.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from medscan.batch.spec import BatchSpec
from medscan.db.models import Instance, Job, Series, Study, Task
from medscan.db.store import Database
from medscan.scan import MedscanError

BATCH_ROLES = ("radiologist", "technician", "admin")
STAGING = ".medscan-staging"
HEARTBEAT_S = 10.0  # a running job whose coordinator has not written for this long is orphaned


@dataclass
class PlannedTask:
    """One task of a job before it is written: the series to process and where it came from.

    Attributes:
        label: what status lines show, e.g. the series' folder and number.
        inputs: how the worker finds the series (folder and series key, or a database series id).
        series_ref: the database series id when the input is in the database.
        error: non-empty for an input that could not be read: the task is written as failed with this message.
    """

    label: str
    inputs: dict[str, Any]
    series_ref: int | None = None
    error: str = ""  # an input that could not be read becomes a failed task, never a silent gap


@dataclass
class JobStatus:
    """A job's progress as ``medscan batch status`` and the window show it.

    Attributes:
        job_id: the job's id in the database.
        operation: the registry operation it runs.
        state: the job's state, e.g. ``queued``, ``running``, ``done``, ``cancelled``.
        counts: task state -> number of tasks.
        failures: ``(label, one-line error)`` of each failed task.
        created_at: creation time, naive UTC.
    """

    job_id: int
    operation: str
    state: str
    counts: dict[str, int]
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, error)
    created_at: dt.datetime | None = None

    @property
    def finished(self) -> int:
        """Tasks that will not run again: done, failed or cancelled."""
        return sum(self.counts.get(s, 0) for s in ("done", "failed", "cancelled"))

    @property
    def total(self) -> int:
        """All tasks of the job."""
        return sum(self.counts.values())


def safe_name(text: str) -> str:
    """A file-name-safe form of ``text``: runs of other characters become ``_``, at most 60 characters.

    Example:
        >>> safe_name("CT Body 3.0 / axial")
        'CT_Body_3.0_axial'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "series"


def output_path(output: dict[str, Any], task_id: int, label: str, operation: str) -> Path:
    """Where a folder job puts a task's series; the task id keeps names unique across jobs.

    A Generate operation's output is named synthetic (its companions are published before it, so the
    image existing means the whole output was published).
    """
    from medscan.io.result_files import synthetic_path
    from medscan.ops import get

    name = f"t{task_id:05d}_{safe_name(label)}"
    suffix = ".nii.gz" if output["format"] == "nifti" else ""
    path = Path(output["folder"]) / f"{name}{suffix}"
    return synthetic_path(path) if get(operation).synthetic else path


def staging_dir(output: dict[str, Any], task_id: int, attempt: int) -> Path:
    """The folder where attempt ``attempt`` of task ``task_id`` writes before its output is renamed into place.

    Args:
        output: the spec's output entry (``{"folder": ...}``).
    """
    return Path(output["folder"]) / STAGING / f"t{task_id:05d}-a{attempt}"


def create_job(database: Database, spec: BatchSpec, source: str) -> int:
    """Resolve the spec's inputs to series (importing folders) and store the job with its tasks."""
    from medscan.io.dicom import list_series

    database.require_role("batch", source, BATCH_ROLES)
    planned: list[PlannedTask] = []
    for item in spec.inputs:
        if "folder" in item:
            folder = Path(item["folder"])
            listing = list_series(folder)
            ids = database.import_listing(listing, str(folder))
            planned += [_planned(folder.name, record, series_id) for record, series_id in zip(listing.series, ids,
                                                                                             strict=True)]
            planned += [PlannedTask(label=line.split(": ", 1)[0], inputs={}, error=line) for line in listing.skipped]
        else:
            for series_id, files in _series_files(database, item, source):
                listing = list_series(f"series {series_id}", files=files)
                planned += [_planned(f"db{series_id}", record, series_id) for record in listing.series]
                planned += [PlannedTask(label=line.split(": ", 1)[0], inputs={}, series_ref=series_id, error=line)
                            for line in listing.skipped]
    unique: dict[tuple, PlannedTask] = {}
    for task in planned:  # a series named by two inputs is processed once
        named = tuple(sorted(task.inputs.get("identity", {}).items()))
        unique.setdefault((tuple(task.inputs.get("files", [])), named, task.error), task)
    if not unique:
        raise MedscanError(source, "the inputs hold no series to process")
    if not spec.to_database:
        Path(spec.output["folder"]).mkdir(parents=True, exist_ok=True)
    with database.transaction() as session:
        job = Job(kind=spec.operation, state="queued", parameters=spec.to_dict(), total=len(unique),
                  created_by=database.user.id if database.user else None)
        for position, task in enumerate(unique.values(), start=1):
            job.tasks.append(Task(position=position, label=task.label, series_ref=task.series_ref,
                                  inputs=task.inputs, state="failed" if task.error else "queued",
                                  error=task.error))
        session.add(job)
        session.flush()
        job_id = job.id
    database.audit("batch", source, detail=f"job {job_id}: {spec.operation} over {len(unique)} task(s)")
    return job_id


def _planned(prefix: str, record: Any, series_id: int) -> PlannedTask:
    label = f"{prefix} {record.key} {record.modality} {record.description}".strip()
    return PlannedTask(label=label, inputs={"files": record.files, "key": record.key, "identity": identity(record)},
                       series_ref=series_id)


def identity(record: Any) -> dict[str, Any]:
    """What names a series within its own files; a key like 'n2' depends on the rest of the folder."""
    return {"uid": record.series_uid, "number": record.series_number, "sub": record.sub_index}


def _series_files(database: Database, item: dict[str, Any], source: str) -> list[tuple[int, list[str]]]:
    with database.transaction() as session:
        if "series" in item:
            ids = item["series"]
            missing = [i for i in ids if session.get(Series, i) is None]
            if missing:
                raise MedscanError(source, f"no series with id {', '.join(map(str, missing))} in the database")
        else:
            query = item["query"]
            statement = select(Series.id).join(Study)
            if "modality" in query:
                statement = statement.where(Series.modality == query["modality"].upper())
            if "date_from" in query:
                statement = statement.where(Study.study_date >= query["date_from"])
            if "date_to" in query:
                statement = statement.where(Study.study_date <= query["date_to"])
            if "description" in query:
                statement = statement.where(Series.description.ilike(f"%{query['description']}%"))
            ids = list(session.scalars(statement.order_by(Series.id)))
        return [(i, sorted(set(session.scalars(select(Instance.path).where(Instance.series_ref == i)))))
                for i in ids]


def load_spec_of(database: Database, job_id: int) -> BatchSpec:
    """The :class:`BatchSpec` job ``job_id`` was created from (kept in the database).

    Raises:
        MedscanError: no such job.
    """
    with database.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise MedscanError(database.label, f"no batch job {job_id}")
        return BatchSpec(**job.parameters)


def recover(database: Database, job_id: int) -> int:
    """After a crash: adopt tasks whose output was published, requeue the other running ones.

    A folder task publishes its output by one rename just before its row commits; a crash between
    the two leaves a complete output and a running row, which is adopted here, not redone.
    Returns the number of tasks put back in the queue.
    """
    spec = load_spec_of(database, job_id)
    requeued = 0
    with database.transaction() as session:
        for task in session.scalars(select(Task).where(Task.job_ref == job_id, Task.state == "running")):
            final = None if spec.to_database else output_path(spec.output, task.id, task.label, spec.operation)
            if final is not None and final.exists():
                task.state, task.output = "done", str(final)
            else:
                task.state = "queued"
                requeued += 1
    if not spec.to_database:
        clean_staging(spec.output, job_id, database)
    return requeued


def requeue_failed(database: Database, job_id: int) -> int:
    """Queue the failed tasks of a job again (not those whose input could not even be listed)."""
    with database.transaction() as session:
        tasks = [t for t in session.scalars(select(Task).where(Task.job_ref == job_id, Task.state == "failed"))
                 if t.inputs.get("files")]
        for task in tasks:
            task.state, task.error = "queued", ""
        if tasks:
            session.execute(update(Job).where(Job.id == job_id).values(state="queued"))
        return len(tasks)


def clean_staging(output: dict[str, Any], job_id: int, database: Database) -> None:
    """Remove the half-written outputs of a job's unfinished attempts (never a published series)."""
    root = Path(output["folder"]) / STAGING
    if not root.is_dir():
        return
    with database.transaction() as session:
        ids = set(session.scalars(select(Task.id).where(Task.job_ref == job_id)))
    for entry in root.iterdir():
        match = re.fullmatch(r"t(\d+)-a\d+", entry.name)
        if match and int(match.group(1)) in ids:
            shutil.rmtree(entry, ignore_errors=True)
    if not any(root.iterdir()):
        root.rmdir()


def job_status(database: Database, job_id: int) -> JobStatus:
    """Count the job's tasks by state and collect the failures' errors.

    Raises:
        MedscanError: no such job.
    """
    with database.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise MedscanError(database.label, f"no batch job {job_id}")
        counts: dict[str, int] = {}
        failures = []
        for task in job.tasks:
            counts[task.state] = counts.get(task.state, 0) + 1
            if task.state == "failed":
                failures.append((task.label, task.error))
        return JobStatus(job.id, job.kind, job.state, counts, failures, job.created_at)


def list_jobs(database: Database) -> list[JobStatus]:
    """The status of every job in the database, oldest first."""
    with database.transaction() as session:
        ids = list(session.scalars(select(Job.id).order_by(Job.id)))
    return [job_status(database, i) for i in ids]


def set_job_state(database: Database, job_id: int, state: str) -> None:
    """Set the job's state (e.g. ``"done"``) and its update time, in one transaction."""
    with database.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=state, updated_at=utc_now()))


def request_cancel(database: Database, job_id: int) -> str:
    """Ask the running batch to stop; a job with no live coordinator is cancelled here and now."""
    database.require_role("batch-cancel", f"job {job_id}", BATCH_ROLES)
    with database.transaction() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise MedscanError(database.label, f"no batch job {job_id}")
        if job.state in ("done", "failed", "cancelled"):
            return job.state
        alive = job.state == "running" and (utc_now() - job.updated_at).total_seconds() < HEARTBEAT_S
        job.state = "cancelling"
    if not alive:
        finish_cancel(database, job_id)
    database.audit("batch-cancel", f"job {job_id}")
    return "cancelling" if alive else "cancelled"


def finish_cancel(database: Database, job_id: int) -> None:
    """Complete a cancel: queued and running tasks become cancelled (their attempt number is raised, so a
    straggling worker cannot commit a result), the job is marked cancelled and, for folder output, the staging
    folders are removed. Finished results stay.
    """
    spec = load_spec_of(database, job_id)
    with database.transaction() as session:
        session.execute(update(Task).where(Task.job_ref == job_id, Task.state.in_(("queued", "running")))
                        .values(state="cancelled", attempts=Task.attempts + 1))  # fences any straggler
        session.execute(update(Job).where(Job.id == job_id).values(state="cancelled"))
    if not spec.to_database:
        clean_staging(spec.output, job_id, database)


def utc_now() -> dt.datetime:
    """The current time in UTC as a naive datetime, as the database columns store it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
