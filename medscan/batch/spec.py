"""The batch spec: what to process, with which operation, and where results go (YAML or JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medscan.scan import MedscanError

OUTPUT_FORMATS = ("dicom", "nifti")
QUERY_KEYS = ("modality", "date_from", "date_to", "description")


@dataclass
class BatchSpec:
    """``inputs`` items: {"folder": PATH} (every series under it), {"series": [DB ids]} or
    {"query": {"modality": "CT", "date_from": "20240101", "date_to": "20241231", "description": "abd"}};
    ``output``: {"database": true} or {"folder": PATH, "format": "dicom" | "nifti"}."""

    operation: str
    inputs: list[dict[str, Any]]
    output: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    max_attempts: int = 3  # a task whose worker dies this often is failed, not retried again
    refuse_flagged: bool = False  # fail a task whose result the fidelity guard flags, instead of keeping it

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (how the database keeps it)."""
        return asdict(self)

    @property
    def to_database(self) -> bool:
        """True when results go into the study database (``output: {database: true}``) instead of a folder."""
        return bool(self.output.get("database"))


def load_spec(path: str | Path) -> BatchSpec:
    """Read and check a spec; every problem is one line naming the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MedscanError(path, f"cannot read the batch spec ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: report, never a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedscanError(path, f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {first}") \
            from None
    return parse_spec(raw, path)


def parse_spec(raw: Any, source: str | Path = "batch spec") -> BatchSpec:
    """Check a spec read from YAML or JSON and turn it into a :class:`BatchSpec`.

    The operation must exist in the registry and its parameters must pass its validation; unknown keys are
    refused rather than ignored.

    Args:
        raw: the loaded document.
        source: the spec's path, for error messages.

    Returns:
        The validated spec.

    Raises:
        MedscanError: one line naming ``source`` and the problem.
    """
    from medscan.ops import get

    def fail(problem: str) -> MedscanError:
        return MedscanError(source, problem)

    if not isinstance(raw, dict):
        raise fail("must be a mapping with operation, inputs and output")
    unknown = set(raw) - {"operation", "inputs", "output", "parameters", "device", "max_attempts", "refuse_flagged"}
    if unknown:
        raise fail(f"unknown key(s): {', '.join(sorted(unknown))}")
    for key in ("operation", "inputs", "output"):
        if key not in raw:
            raise fail(f"missing '{key}'")
    try:
        operation = get(str(raw["operation"]))
    except MedscanError as exc:
        raise fail(f"operation {exc.problem}") from None
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise fail("'parameters' must be a mapping")
    known = {p.name: p for p in operation.params}
    for name, value in parameters.items():
        if name not in known:
            raise fail(f"{operation.name} has no parameter '{name}' (has: {', '.join(known) or 'none'})")
        try:
            known[name].check(value)
        except MedscanError as exc:
            raise fail(f"parameter {name}: {exc.problem}") from None
    inputs = raw["inputs"]
    if isinstance(inputs, (str, dict)):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise fail("'inputs' must list at least one folder, series or query")
    checked = [_check_input(item, source, fail) for item in inputs]
    output = raw["output"]
    if not isinstance(output, dict) or ("database" in output) == ("folder" in output):
        raise fail("'output' must be {database: true} or {folder: PATH, format: dicom|nifti}")
    if "folder" in output:
        fmt = str(output.get("format", "dicom")).lower()
        if fmt not in OUTPUT_FORMATS:
            raise fail(f"output format {fmt!r} is not one of {', '.join(OUTPUT_FORMATS)}")
        output = {"folder": str(_resolve(output["folder"], source)), "format": fmt}
    elif output["database"] is not True:
        raise fail("'output: {database: true}' is the only database output")
    device = str(raw.get("device", "cpu"))
    if device not in ("auto", "cpu", "cuda"):
        raise fail(f"device {device!r} is not one of auto, cpu, cuda")
    attempts = raw.get("max_attempts", 3)
    if not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise fail("'max_attempts' must be an integer from 1 to 10")
    refuse = raw.get("refuse_flagged", False)
    if not isinstance(refuse, bool):
        raise fail("'refuse_flagged' must be true or false")
    return BatchSpec(operation=operation.name, inputs=checked, output=output, parameters=dict(parameters),
                     device=device, max_attempts=attempts, refuse_flagged=refuse)


def _resolve(value: Any, source: str | Path) -> Path:
    """Relative paths are relative to the spec file, so a spec travels with its study folder."""
    path = Path(str(value)).expanduser()
    base = Path(source).parent if isinstance(source, Path) else Path.cwd()
    return path if path.is_absolute() else (base / path).resolve()


def _check_input(item: Any, source: str | Path, fail: Any) -> dict[str, Any]:
    if isinstance(item, str):
        item = {"folder": item}
    if not isinstance(item, dict) or len(item) != 1:
        raise fail(f"input {item!r} must be one of folder: PATH, series: [ids], query: {{...}}")
    (kind, value), = item.items()
    if kind == "folder":
        return {"folder": str(_resolve(value, source))}
    if kind == "series":
        ids = value if isinstance(value, list) else [value]
        if not ids or not all(isinstance(v, int) for v in ids):
            raise fail("'series' must list database series ids (integers)")
        return {"series": ids}
    if kind == "query":
        if not isinstance(value, dict) or not value or set(value) - set(QUERY_KEYS):
            raise fail(f"'query' takes some of {', '.join(QUERY_KEYS)}")
        return {"query": {k: str(v) for k, v in value.items()}}
    raise fail(f"unknown input kind '{kind}' (use folder, series or query)")
