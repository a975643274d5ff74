"""Batch jobs: resumable after kill -9, the same results on a local pool and a Dask LocalCluster,
a corrupt input failing alone, cancel leaving nothing half-written, dead workers retried up to a bound."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from medscan.batch.executors import DaskExecutor, LocalExecutor, WorkerLost
from medscan.batch.jobs import STAGING, create_job, job_status, requeue_failed
from medscan.batch.runner import run_job
from medscan.batch.spec import load_spec, parse_spec
from medscan.batch.worker import execute_task
from medscan.db.models import Result, Task
from medscan.db.store import Database
from medscan.scan import MedscanError

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "mr_brain_t1_sag_siemens"  # 10 slices of 256x256
KEY = "batch test key"
USER, USER_KEY = "tech", "tech pass"


def _copy_series(target: Path, number: int) -> Path:
    """The sample MR series under new UIDs: a distinct series with the same pixels."""
    target.mkdir(parents=True)
    series_uid = generate_uid()
    for index, path in enumerate(sorted(SAMPLE.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, number
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(target / f"{index:03d}.dcm", enforce_file_format=True)
    return target


@pytest.fixture
def studies(tmp_path: Path):
    def make(n: int) -> list[Path]:
        return [_copy_series(tmp_path / "in" / f"s{i}", 100 + i) for i in range(n)]
    return make


def _open_new(target: str, blobs: str | None) -> Database:
    db = Database.create(target, KEY, blob_dir=blobs, scrypt_n=2**12)
    db.add_user(USER, "technician", USER_KEY)
    db.login(USER, USER_KEY)
    return db


@pytest.fixture
def database(tmp_path: Path):
    db = _open_new(str(tmp_path / "studies.db"), None)
    yield db
    db.close()


@pytest.fixture
def any_database(target):
    """The same batch on SQLCipher and on a real PostgreSQL server (a department's shared database)."""
    db = _open_new(*target)
    yield db
    db.close()


def _spec(folders: list[Path], output: dict, operation: str = "denoise", **extra) -> object:
    return parse_spec({"operation": operation, "inputs": [{"folder": str(f)} for f in folders],
                       "output": output, **extra})


def _cli_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MEDSCAN_DB_KEY": KEY, "MEDSCAN_USER": USER, "MEDSCAN_USER_KEY": USER_KEY,
            "PYTHONPATH": str(ROOT)}


def _counts(db: Database, job_id: int) -> dict[str, int]:
    return job_status(db, job_id).counts


def test_spec_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    bad = {
        "no_op.yaml": "inputs: [x]\noutput: {database: true}\n",
        "unknown_op.yaml": "operation: levitate\ninputs: [x]\noutput: {database: true}\n",
        "bad_param.yaml": "operation: denoise\ninputs: [x]\nparameters: {strength: 99}\noutput: {database: true}\n",
        "bad_output.yaml": "operation: denoise\ninputs: [x]\noutput: {folder: o, format: png}\n",
        "not_yaml.yaml": "operation: [denoise\n",
        "bad.json": "{\"operation\": ",
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(MedscanError) as info:
            load_spec(tmp_path / name)
        assert str(info.value).startswith(str(tmp_path / name)) and "\n" not in str(info.value), name
    good = tmp_path / "good.yaml"
    good.write_text("operation: denoise\ninputs: [study]\nparameters: {strength: 0.5}\n"
                    "output: {folder: out, format: nifti}\n")
    spec = load_spec(good)
    assert spec.inputs == [{"folder": str(tmp_path / "study")}]  # relative to the spec file
    assert spec.output == {"folder": str(tmp_path / "out"), "format": "nifti"}


def test_local_pool_and_dask_cluster_give_identical_results(studies, any_database) -> None:
    distributed = pytest.importorskip("distributed")
    database = any_database
    folders = studies(3)
    spec = _spec(folders, {"database": True})
    local_job = create_job(database, spec, "local")
    executor = LocalExecutor(2)
    try:
        assert run_job(database, local_job, executor, KEY).state == "done"
    finally:
        executor.close()
    dask_job = create_job(database, spec, "dask")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        executor = DaskExecutor(client)
        status = run_job(database, dask_job, executor, KEY)
        workers = {w for w in client.run(os.getpid).values()}
    assert status.state == "done" and status.counts == {"done": 3}

    def results(job_id: int) -> dict[int, tuple[np.ndarray, list]]:
        with database.transaction() as session:
            rows = session.execute(select(Task.series_ref, Task.result_ref, Task.worker)
                                   .where(Task.job_ref == job_id)).all()
        out = {}
        for series_ref, result_ref, _ in rows:
            result, voxels = database.load_result(result_ref)
            provenance = [{k: v for k, v in entry.items() if k != "timestamp"} for entry in result.provenance]
            out[series_ref] = (voxels, provenance)
        return out, {row.worker for row in rows}

    local, local_workers = results(local_job)
    remote, remote_workers = results(dask_job)
    assert sorted(local) == sorted(remote) and len(local) == 3
    for series_ref in local:
        np.testing.assert_array_equal(local[series_ref][0], remote[series_ref][0])
        assert local[series_ref][1] == remote[series_ref][1]
        assert local[series_ref][1][-1]["operation"] == "denoise"
    assert {int(w.rsplit(":", 1)[1]) for w in remote_workers} <= workers  # really ran on the Dask workers
    assert len(local_workers) >= 1 and not local_workers & remote_workers


def test_corrupt_inputs_fail_alone_with_one_line_errors(studies, database, tmp_path: Path) -> None:
    good = studies(2)
    truncated = tmp_path / "in" / "truncated"
    shutil.copytree(good[0], truncated)
    new_uid = generate_uid()
    for path in truncated.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = new_uid
        ds.save_as(path, enforce_file_format=True)
    victim = sorted(truncated.glob("*.dcm"))[4]
    victim.write_bytes(victim.read_bytes()[:-20000])  # pixel data cut short: the series cannot load
    garbage = tmp_path / "in" / "garbage"
    garbage.mkdir()
    (garbage / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    spec = _spec([*good, truncated, garbage], {"folder": str(tmp_path / "out"), "format": "nifti"},
                 operation="highlight")
    job = create_job(database, spec, "spec")
    executor = LocalExecutor(1)
    try:
        status = run_job(database, job, executor, KEY)
    finally:
        executor.close()
    assert status.state == "failed" and status.counts == {"done": 2, "failed": 2}
    errors = [error for _, error in status.failures]
    assert any(str(victim.parent) in e or "truncated" in e for e in errors), errors
    assert any(str(garbage / "broken.dcm") in e for e in errors), errors
    assert all("\n" not in e and "Traceback" not in e for e in errors)
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 2
    assert not (tmp_path / "out" / STAGING).exists()
    # Fix the truncated file and retry: the series task now succeeds; the unreadable file stays failed.
    shutil.copy(good[0] / victim.name, victim)
    ds = pydicom.dcmread(victim)
    ds.SeriesInstanceUID = new_uid
    ds.save_as(victim, enforce_file_format=True)
    assert requeue_failed(database, job) == 1
    executor = LocalExecutor(1)
    try:
        status = run_job(database, job, executor, KEY)
    finally:
        executor.close()
    assert status.counts == {"done": 3, "failed": 1} and len(list((tmp_path / "out").glob("*.nii.gz"))) == 3


def test_kill_9_mid_batch_then_resume_processes_every_series_once(studies, database, tmp_path: Path) -> None:
    folders = studies(5)
    spec = tmp_path / "spec.yaml"
    spec.write_text("operation: denoise\ninputs:\n" + "".join(f"  - folder: {f}\n" for f in folders)
                    + "output: {database: true}\n")
    db_path = str(tmp_path / "studies.db")
    command = [sys.executable, "-m", "medscan", "batch", "run", str(spec), "--db", db_path, "--workers", "1"]
    proc = subprocess.Popen(command, env=_cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        jobs = database.transaction
        with jobs() as session:
            done = session.scalar(select(func.count()).select_from(Task).where(Task.state == "done"))
        if done >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)  # the coordinator only: its pool worker must notice and stop
    proc.wait()
    time.sleep(1.5)
    with database.transaction() as session:
        finished_before = dict(session.execute(select(Task.id, Task.result_ref).where(Task.state == "done")).all())
    status = job_status(database, 1)
    assert status.state == "running" and status.counts.get("done", 0) < 5
    resumed = subprocess.run([sys.executable, "-m", "medscan", "batch", "resume", "1", "--db", db_path,
                              "--workers", "1"], env=_cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert job_status(database, 1).counts == {"done": 5}
    with database.transaction() as session:
        tasks = session.scalars(select(Task).where(Task.job_ref == 1)).all()
        results = session.scalars(select(Result)).all()
    assert len(results) == 5  # nothing processed twice, nothing lost
    assert sorted(t.result_ref for t in tasks) == sorted(r.id for r in results)
    assert sorted(r.series_ref for r in results) == sorted(t.series_ref for t in tasks)
    assert len({t.series_ref for t in tasks}) == 5
    for task in tasks:  # finished work was not redone
        if task.id in finished_before:
            assert task.attempts == 1 and task.result_ref == finished_before[task.id]
    database.collect_orphans(grace_s=0)  # the blob of a task killed before its row committed, if any
    assert set(database.blobs.ids()) == {r.blob_id for r in results}  # content-addressed: copies share one


def test_cancel_keeps_finished_series_and_leaves_nothing_half_written(studies, database, tmp_path: Path) -> None:
    # Enough series that the cancel (a second process, seconds to start) lands while some are still queued,
    # however fast denoising gets: with 4, a faster denoiser finished them all first.
    series = 10
    folders = studies(series)
    out = tmp_path / "out"
    spec = tmp_path / "spec.yaml"
    spec.write_text("operation: denoise\ninputs:\n" + "".join(f"  - folder: {f}\n" for f in folders)
                    + f"output: {{folder: {out}, format: dicom}}\n")
    db_path = str(tmp_path / "studies.db")
    env = _cli_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "medscan", "batch", "run", str(spec), "--db", db_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "done" in line:
            break
    cancel = subprocess.run([sys.executable, "-m", "medscan", "batch", "cancel", "1", "--db", db_path],
                            env=env, capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0 and "job 1: cancel" in cancel.stdout, cancel.stderr
    assert proc.wait(timeout=120) == 1
    status = job_status(database, 1)
    assert status.state == "cancelled"
    assert 1 <= status.counts["done"] < series and status.counts["cancelled"] == series - status.counts["done"]
    published = sorted(p for p in out.iterdir())
    assert len(published) == status.counts["done"]  # no staging folder, no partial series
    for folder in published:
        assert len(list(folder.glob("*.dcm"))) == 10


@dataclass
class _FlakyExecutor:
    """Runs tasks in this process; the workers of the tasks named in ``deaths`` die that many times."""

    deaths: dict[str, int]
    slots: int = 1
    description: str = "test"

    def submit(self, payload):
        if self.deaths.get(payload["label"], 0) > 0:
            self.deaths[payload["label"]] -= 1
            return _Handle(WorkerLost("the worker process died"))
        return _Handle(execute_task(payload))

    def wait(self, handles, timeout):
        return [(h, h.outcome) for h in handles]


class _Handle:
    def __init__(self, outcome) -> None:
        self.outcome = outcome


def test_dead_workers_are_retried_up_to_the_bound(studies, database, tmp_path: Path) -> None:
    folders = studies(2)
    spec = _spec(folders, {"folder": str(tmp_path / "out"), "format": "nifti"}, operation="highlight",
                 max_attempts=2)
    job = create_job(database, spec, "spec")
    with database.transaction() as session:
        first, second = session.scalars(select(Task.label).where(Task.job_ref == job).order_by(Task.position))
    status = run_job(database, job, _FlakyExecutor({first: 1, second: 5}), KEY, poll_s=0)
    assert status.counts == {"done": 1, "failed": 1}
    assert "died" in status.failures[0][1] and "2 attempt(s)" in status.failures[0][1]
    with database.transaction() as session:
        attempts = dict(session.execute(select(Task.label, Task.attempts).where(Task.job_ref == job)).all())
    assert attempts == {first: 2, second: 2}


def test_a_killed_worker_process_is_replaced_and_its_task_retried(studies, database, tmp_path: Path) -> None:
    import threading

    import psutil

    folders = studies(2)
    spec = _spec(folders, {"folder": str(tmp_path / "out"), "format": "nifti"})
    job = create_job(database, spec, "spec")
    executor = LocalExecutor(1)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(status=run_job(database, job, executor, KEY)))
    runner.start()
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:
            with database.transaction() as session:
                running = session.scalar(select(func.count()).select_from(Task).where(Task.state == "running"))
            workers = psutil.Process().children(recursive=True)
            busy = [w for w in workers if "python" in w.name().lower() and w.cpu_percent(0.2) > 5]
            if running and busy:
                victim = busy[0]
        assert victim is not None, "no busy worker process appeared"
        victim.kill()
        runner.join(timeout=300)
    finally:
        executor.close()
    status = outcome["status"]
    assert status.state == "done" and status.counts == {"done": 2}
    with database.transaction() as session:
        attempts = sorted(session.scalars(select(Task.attempts).where(Task.job_ref == job)))
    assert attempts[-1] == 2  # the task whose worker died ran again, on a new worker
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 2
