"""What every Generate operation shares: an uncertainty map, the record of where pixels were generated,
and a SYNTHETIC result.

Uncertainty is the spread of the model's answers over test-time augmentations (flips of the plane, and
optionally small perturbations of the input): where the answer depends on how the question was posed, the
model is unsure. Measured voxels a Generate operation copies through unchanged have zero uncertainty by
construction; the ``generated`` mask says which voxels were created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from medscan.ops.registry import Result
from medscan.scan import MedscanError, ProvenanceEntry, Scan

PlanesFn = Callable[[np.ndarray], np.ndarray]  # (N, H, W) -> (N, H', W') in the same units

# Flips along rows and/or columns commute with every in-plane and through-plane grid operation we run
# (scales apply per axis), so every model can use them; a transpose would swap per-axis scales.
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def tta_planes(predict: PlanesFn, planes: np.ndarray, flips: Sequence[tuple[int, ...]] = FLIPS
               ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of ``predict`` over flipped copies of (N, H, W) ``planes``.

    Each flipped prediction is flipped back before averaging, so the mean is the usual TTA ensemble and the
    spread the per-pixel disagreement between its members (0 where they all agree).
    """
    if not flips:
        raise ValueError("tta_planes needs at least one flip (use ((),) for none)")
    total: np.ndarray | None = None
    square: np.ndarray | None = None
    for axes in flips:
        x = np.flip(planes, axis=axes) if axes else planes
        y = np.asarray(predict(np.ascontiguousarray(x)), dtype=np.float64)
        y = np.flip(y, axis=axes) if axes else y
        total = y if total is None else total + y
        square = y * y if square is None else square + y * y
    n = len(flips)
    mean = total / n
    spread = np.sqrt(np.maximum(square / n - mean * mean, 0.0))
    return mean.astype(np.float32), spread.astype(np.float32)


def synthetic_result(scan: Scan, voxels: np.ndarray, entry: ProvenanceEntry, *, uncertainty: np.ndarray,
                     generated: np.ndarray | None = None, affine: np.ndarray | None = None,
                     notes: Sequence[str] = (), experimental: str = "") -> Result:
    """The derived, SYNTHETIC scan with its ``uncertainty`` map (same shape as the output voxels) and, when
    only part of the output was generated, the boolean ``generated`` mask; unmarked voxels are measured.

    ``experimental`` (a one-line warning) marks a model that is not validated: the word EXPERIMENTAL goes into
    the provenance (hence DerivationDescription), the series description and the notes.

    The generated region's size goes into the provenance so a DICOM reader sees how much was made up.
    """
    voxels = np.asarray(voxels, dtype=np.float32)
    if uncertainty.shape != voxels.shape:
        raise ValueError(f"uncertainty {uncertainty.shape} differs from the output {voxels.shape}")
    maps = {"uncertainty": np.asarray(uncertainty, dtype=np.float32)}
    parameters = dict(entry.parameters)
    parameters["synthetic"] = True
    if experimental:
        parameters["experimental"] = experimental
    if generated is not None:
        generated = np.asarray(generated, dtype=bool)
        if generated.shape != voxels.shape:
            raise ValueError(f"generated mask {generated.shape} differs from the output {voxels.shape}")
        if not generated.any():
            raise MedscanError(scan.where, f"{entry.operation}: nothing to generate")
        maps["generated"] = generated
        parameters["generated_voxels"] = int(generated.sum())
        parameters["generated_fraction"] = round(float(generated.mean()), 6)
    entry = ProvenanceEntry(entry.operation, parameters, entry.model, entry.model_version, entry.software,
                            entry.timestamp)
    derived = scan.derive(voxels, entry, affine=affine, synthetic=True)
    if experimental:
        derived.description = f"EXPERIMENTAL {derived.description}".strip()
        warning = experimental if "EXPERIMENTAL" in experimental else f"EXPERIMENTAL — {experimental}"
        notes = [f"{entry.operation}: {warning}", *notes]
    return Result(scan=derived, maps=maps, notes=[*notes, f"{entry.operation}: SYNTHETIC — generated pixels, "
                                                          "not measured; see the uncertainty map"])
