"""Segmentation tasks: one declaration per task (HU rules, learned organ and tumour segmenters).

``medscan annotate --task NAME``, ``medscan screen`` and the GUI's review panel look tasks up here, so a new
segmenter needs no new plumbing. A task refuses a series it was not made for (``check``) with a one-line
MedscanError saying so — never a confident guess on a modality or body region it has not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medscan.scan import MedscanError, Scan


@dataclass
class Segmentation:
    """A label volume over a scan (same shape as ``scan.voxels``; 0 = background) and where it came from."""

    labels: np.ndarray
    names: dict[int, str]  # label value -> name, e.g. {1: "liver"}
    source: str  # "ai" (a model), "rules" (HU thresholds), "human"
    method: str  # e.g. "hu_rules" or the model's name
    version: str = ""
    probabilities: np.ndarray | None = None  # (labels, ...) softmax or per-class scores, when a model gives them
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SegmentationTask:
    """One annotation task: what it segments, for which modalities, and the function that does it.

    Attributes:
        name: CLI name, e.g. ``"organs"``, ``"brain-tumour"``, ``"hu"``.
        title: name shown to people.
        modalities: DICOM modalities it accepts, e.g. ``("CT",)``.
        labels: label value -> label name.
        run: ``run(scan, *, device="auto") -> Segmentation``.
        check: optional; raises :class:`~medscan.scan.MedscanError` for a series the task was not made for.
        min_finding_ml: the smallest connected piece listed as a finding when the user does not say (MS lesions
            are mostly far under the 0.5 mL that suits organs and tumours).
    """

    name: str  # CLI name, e.g. "organs", "brain-tumour", "hu"
    title: str
    modalities: tuple[str, ...]
    labels: dict[int, str]
    run: Callable[..., Segmentation]  # run(scan, *, device="auto") -> Segmentation
    check: Callable[[Scan], None] | None = None  # raises MedscanError for a series the task was not made for
    min_finding_ml: float = 0.5

    def segment(self, scan: Scan, *, device: str = "auto") -> Segmentation:
        """Check the series, run the task and check its result.

        Args:
            scan: the series to segment.
            device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

        Returns:
            The task's :class:`Segmentation`, labels of the same shape as ``scan.voxels``.

        Raises:
            MedscanError: wrong modality, or the task's ``check`` refuses the series.
            ValueError: the task returned labels of another shape (a bug in the task).
        """
        where = scan.source_path or scan.description
        if scan.modality not in self.modalities:
            raise MedscanError(where, f"{self.title} is made for {', '.join(self.modalities)}, not {scan.modality}")
        if self.check is not None:
            self.check(scan)
        result = self.run(scan, device=device)
        if result.labels.shape != scan.voxels.shape:
            raise ValueError(f"{self.name}: labels {result.labels.shape} differ from the scan {scan.voxels.shape}")
        return result


_TASKS: dict[str, SegmentationTask] = {}


def register_task(task: SegmentationTask) -> SegmentationTask:
    """Add a task to the registry (done at import by the modules that define tasks).

    Returns:
        The task itself, so it can be used as ``TASK = register_task(SegmentationTask(...))``.

    Raises:
        ValueError: a task of that name is registered already.
    """
    if task.name in _TASKS:
        raise ValueError(f"segmentation task {task.name!r} registered twice")
    _TASKS[task.name] = task
    return task


def tasks() -> list[SegmentationTask]:
    """Every registered task, in registration order."""
    return list(_TASKS.values())


def get_task(name: str) -> SegmentationTask:
    """The registered task called ``name``.

    Raises:
        MedscanError: no such task; the message lists the ones there are.
    """
    if name not in _TASKS:
        raise MedscanError(f"--task {name}", f"no such segmentation task (have: {', '.join(sorted(_TASKS))})")
    return _TASKS[name]
