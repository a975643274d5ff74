"""One declaration per operation: its parameters become CLI flags and GUI widgets; ``run`` executes it.

An operation takes a Scan and returns a Result: the derived Scan (provenance entry appended, geometry
and units kept), the method-noise map and the fidelity report that proves nothing was invented.

A declaration names its implementation by reference (``"medscan.ops.clean:denoise"``, as napari manifests do):
listing operations, building CLI flags or GUI widgets imports no implementation module and no model stack;
the module is imported the first time the operation runs.

The safety rules live here, once, for the CLI, batch jobs, the GUI and the self-test alike (they all call
``run``): an operation runs only on the modalities it declares, and every result of a Generate operation
is marked SYNTHETIC whatever the operation's own code did.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medscan.scan import MedscanError, Scan

ProgressCallback = Callable[[int, int], None]  # (done, total); raise to cancel


@dataclass(frozen=True)
class Param:
    """One parameter of an operation: it becomes a CLI flag, a GUI control and a validation rule.

    Attributes:
        name: the keyword the operation's function takes (``--name`` on the CLI, ``_`` written ``-``).
        kind: ``"float"``, ``"int"``, ``"choice"``, ``"bool"``, ``"str"`` or ``"mask"`` (a file path on the CLI,
            a drawn region in the window).
        default: the value when none is given.
        help: one line for ``--help`` and the GUI tooltip.
        minimum: lowest allowed value (numbers), or ``None``.
        maximum: highest allowed value (numbers), or ``None``.
        choices: allowed values of a ``"choice"``.
    """

    name: str
    kind: str  # "float" | "int" | "choice" | "bool" | "str" | "mask"
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """Convert and validate a value from the CLI or GUI; raise a message naming the parameter."""
        if self.kind == "mask" and isinstance(value, np.ndarray):
            return value.astype(bool, copy=False)  # drawn in the GUI; the CLI gives a file path instead
        try:
            if self.kind == "float":
                value = float(value)
            elif self.kind == "int":
                value = int(value)
            elif self.kind == "bool":
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise MedscanError(f"--{self.name}", f"expects a {self.kind}, got {value!r}") from None
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise MedscanError(f"--{self.name}", f"{value} is outside {self.minimum}..{self.maximum}")
        if self.choices and value not in self.choices:
            raise MedscanError(f"--{self.name}", f"{value!r} is not one of {', '.join(self.choices)}")
        return value


@dataclass
class Result:
    """What an operation returns.

    Attributes:
        scan: the derived scan (provenance entry appended; geometry and units kept by Clean operations).
        maps: named per-voxel maps of the scan's shape, e.g. ``"method_noise"``, ``"uncertainty"``,
            ``"generated"``.
        fidelity: the fidelity guard's report (Clean operations), else ``None``.
        notes: warnings for the user, one line each.
    """

    scan: Scan
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "method_noise", "uncertainty"
    fidelity: Any = None  # FidelityReport for Clean operations
    notes: list[str] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        """True when the result's scan is marked SYNTHETIC (every Generate result is)."""
        return self.scan.synthetic


@dataclass(frozen=True)
class Operation:
    """A registered operation. ``family`` "generate" means its output is not measured: ``synthetic`` must be
    True, and ``run`` marks every result SYNTHETIC. ``modalities`` are the DICOM modalities it accepts."""

    name: str
    family: str  # "clean" | "generate"
    title: str
    summary: str
    params: tuple[Param, ...]
    function: Callable[..., Result] | str  # the implementation, or "package.module:function" imported on first run
    modalities: tuple[str, ...] = ("CT", "MR")
    synthetic: bool = False
    # "package.module:function" of a ``() -> str`` saying what the shipped model will run (e.g. which translation
    # directions its held-out evaluation supports), shown beside the summary; None where everything is offered.
    availability: str | None = None

    def defaults(self) -> dict[str, Any]:
        """Every parameter's default value, by name."""
        return {p.name: p.default for p in self.params}

    def accepts(self, modality: str | None) -> bool:
        """Whether this operation runs on a series of ``modality`` (e.g. "CT"); the one rule CLI, batch and
        GUI apply."""
        return modality is not None and modality in self.modalities

    def refusal(self, modality: str | None) -> str:
        """The one-line reason a series of ``modality`` is refused."""
        return f"{self.name} works on {' and '.join(self.modalities)}, not {modality or 'an unknown modality'}"

    def availability_note(self) -> str:
        """One line on what the shipped model supports, from ``availability`` ("" when there is none)."""
        return "" if self.availability is None else str(self._resolve(self.availability)())

    def implementation(self) -> Callable[..., Result]:
        """The function that runs this operation; a reference is imported here (the first run pays for it)."""
        return self.function if callable(self.function) else self._resolve(self.function)

    def _resolve(self, declared: str) -> Callable[..., Any]:
        """The function a ``"package.module:function"`` reference of this operation names, imported now."""
        module_name, _, attribute = declared.partition(":")
        function = getattr(importlib.import_module(module_name), attribute, None)
        if not callable(function):
            raise ValueError(f"operation {self.name!r}: {declared!r} names no function")
        return function


def reference(function: Callable[..., Any]) -> str:
    """``"package.module:function"``: how a declaration names ``function`` without importing its module."""
    return f"{function.__module__}:{function.__qualname__}"


_REGISTRY: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Add ``operation``; its ``function`` may be a ``"module:function"`` reference (see ``Operation.implementation``).

    A module that registers an operation already declared by reference to that module's own function is accepted
    when both declarations agree (the declaration stays); any other second registration of a name is an error.
    """
    if operation.family == "generate" and not operation.synthetic:
        raise ValueError(f"operation {operation.name!r}: a Generate operation must be declared synthetic")
    existing = _REGISTRY.get(operation.name)
    if existing is not None:
        if (isinstance(existing.function, str) and callable(operation.function)
                and existing.function == reference(operation.function)):
            if existing != dataclasses.replace(operation, function=existing.function):
                raise ValueError(f"operation {operation.name!r}: {existing.function.partition(':')[0]} registers "
                                 "it differently from its declaration in medscan.ops.catalog; make them agree")
            return existing
        raise ValueError(f"operation {operation.name!r} registered twice")
    _REGISTRY[operation.name] = operation
    return operation


def operations(family: str | None = None) -> list[Operation]:
    """The registered operations, in registration order; only ``family``'s when given."""
    return [op for op in _REGISTRY.values() if family is None or op.family == family]


def get(name: str) -> Operation:
    """The operation called ``name``; a MedscanError listing the known names when there is none."""
    if name not in _REGISTRY:
        raise MedscanError(name, f"no such operation (have: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def recordable(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as they can be shown, stored as JSON and compared: a drawn mask becomes its size."""
    return {k: f"drawn region, {int(np.count_nonzero(v))} voxels" if isinstance(v, np.ndarray) else v
            for k, v in params.items()}


def run(name: str, scan: Scan, *, device: str = "auto", progress: ProgressCallback | None = None,
        **params: Any) -> Result:
    """Run operation ``name`` on ``scan`` with validated parameters (defaults for the ones not given).

    Refuses (MedscanError, before any work) a parameter the operation does not have, a value outside its
    range, and a series whose modality the operation does not declare. The result of a synthetic (Generate)
    operation always comes back with ``scan.synthetic`` set.
    """
    operation = get(name)
    known = {p.name: p for p in operation.params}
    unknown = set(params) - set(known)
    if unknown:
        raise MedscanError(name, f"unknown parameter(s): {', '.join(sorted(unknown))}")
    values = {p.name: p.check(params.get(p.name, p.default)) for p in operation.params}
    if not operation.accepts(scan.modality):
        raise MedscanError(scan.where, operation.refusal(scan.modality))
    result = operation.implementation()(scan, device=device, progress=progress, **values)
    if operation.synthetic and not result.scan.synthetic:  # the flag must never get lost on the way
        result.scan = dataclasses.replace(result.scan, synthetic=True)
    return result
