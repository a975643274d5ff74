"""Keeping an operation's result in the study database: one way for the CLI, batch workers and the GUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.orm import Session

PROCESS_ROLES = ("radiologist", "technician", "admin")  # who may add results to a database
# A generated result is kept with what says where it is unsure and what was made up.
KEPT_MAPS = ("uncertainty", "generated")


def register_source(database: Any, record: Any, path: str | Path, modality: str) -> int:
    """The database series a result derives from: a DICOM series record, or (record None) a NIfTI file."""
    if record is None:
        return database.register_file(path, modality)
    return database.import_listing(SimpleNamespace(series=[record]), str(path))[0]


def keep_result(database: Any, series_id: int, result: Any, *, operation: str, parameters: dict[str, Any],
                before_commit: Callable[[Session, int], None] | None = None) -> int:
    """Store ``result`` (a ``medscan.ops.Result``) for ``series_id`` with what produced it; returns its id.

    The model named is the one of the operation's own provenance entry; the fidelity report (and any
    notes) become the result's quality figures; a Generate operation's output is always synthetic.
    """
    from medscan.ops import get

    entries = [e for e in result.scan.provenance if e.operation == operation] or [None]
    last = entries[-1]
    quality = result.fidelity.as_dict() if result.fidelity is not None else {}
    if result.notes:
        quality["notes"] = list(result.notes)
    return database.store_result(
        series_id, result.scan.voxels, operation=operation, affine=result.scan.affine,
        model_name=last.model if last else None, model_version=last.model_version if last else None,
        parameters=parameters, quality=quality, synthetic=result.synthetic or get(operation).synthetic,
        provenance=[asdict(e) for e in result.scan.provenance], before_commit=before_commit,
        overlays={k: v for k, v in result.maps.items() if k in KEPT_MAPS},
    )
