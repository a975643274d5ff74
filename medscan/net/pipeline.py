"""The AI node: each study the listener publishes goes through a batch spec, and the derived series are forwarded.

The spec is an ordinary batch spec (``medscan batch run``) whose ``inputs`` may be left out: each received study
folder is the input. Forwarding needs ``output: {folder: ..., format: dicom}``; the derived series keep the
DERIVED/SECONDARY image type and provenance the DICOM writer gives them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscan.net.nodes import Node
from medscan.scan import MedscanError


def load_node_spec(path: str | Path, *, forwarding: bool) -> Any:
    """A batch spec for the listener; ``inputs`` is optional (the received study replaces it)."""
    import yaml

    from medscan.batch.spec import parse_spec

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise MedscanError(path, f"cannot read the batch spec ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise MedscanError(path, f"not valid YAML: {str(exc).strip().splitlines()[0]}") from None
    if isinstance(raw, dict):
        raw.setdefault("inputs", [str(path.parent)])
    spec = parse_spec(raw, path)
    if forwarding and (spec.to_database or spec.output.get("format") != "dicom"):
        raise MedscanError(path, "--forward sends DICOM: the spec's output must be {folder: PATH, format: dicom}")
    return spec


def study_pipeline(spec: Any, database: Any, passphrase: str, *, forward: Node | None = None,
                   calling_ae: str = "MEDSCAN", log: Callable[[str], None] = print,
                   deidentifier: Any = None) -> Callable[[Path, Any], None]:
    """The listener's ``on_study``: run ``spec`` over the study folder, then C-STORE what it wrote to ``forward``."""

    def process(folder: Path, _arrival: Any) -> None:
        from sqlalchemy import select

        from medscan.batch.executors import LocalExecutor
        from medscan.batch.jobs import create_job
        from medscan.batch.runner import run_job
        from medscan.db.models import Task

        started = time.perf_counter()
        job_spec = dataclasses.replace(spec, inputs=[{"folder": str(folder)}])
        job_id = create_job(database, job_spec, f"listen {folder.name}")
        executor = LocalExecutor(1)
        try:
            status = run_job(database, job_id, executor, passphrase)
        finally:
            executor.close()
        for _label, error in status.failures:
            log(f"medscan: {error}")
        with database.transaction() as session:
            outputs = [row for row in session.scalars(select(Task.output).where(Task.job_ref == job_id,
                                                                                  Task.state == "done"))
                       if row]
        log(f"study {folder.name}: job {job_id} {status.state}, {len(outputs)} derived series "
            f"in {time.perf_counter() - started:.1f} s")
        if forward is not None and outputs:
            from medscan.net.scu import send

            report = send(forward, outputs, calling_ae=calling_ae, audit=database.audit, deidentifier=deidentifier)
            log(f"study {folder.name}: forwarded {report.sent} instance(s) to {forward.name} "
                f"({time.perf_counter() - started:.1f} s after the study was complete)")

    return process
