"""Display geometry for slice viewers: reformat a volume to axial, coronal or sagittal planes,
label the edges of a slice with patient directions, and adjust a window by dragging.

Pure numpy and no Qt, so that everything a viewer shows about geometry is tested headless and any
front end (the Qt workstation, a notebook, a PNG writer) gets the same answer.

Conventions (see ``medscan.scan`` for the affine): a *display stack* is an array indexed
``[..., slice, row, col]`` together with a 4x4 affine that maps ``(col, row, slice, 1)`` to LPS
millimetres, i.e. exactly the Scan convention with (i, j, k) = (col, row, slice). So a reformatted
stack can be read out, labelled and exported with the same code as the acquired one.

Reformatting is a permutation and flip of the voxel axes, never a resampling: each display axis
uses the voxel axis closest to the wanted patient axis. The screen orientation follows the
radiological convention used by PACS:

* axial    - patient's right on the viewer's left, anterior at the top;
* coronal  - patient's right on the viewer's left, superior at the top;
* sagittal - anterior on the viewer's left, superior at the top.

The slice axis keeps the order of the source voxels, so in the acquisition plane slice index k
is the scan's k. For an oblique acquisition the planes are the nearest orthogonal ones; the edge
labels are then computed from the true directions (for example ``"LA"``), so they stay honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PLANES",
    "Reformat",
    "acquisition_plane",
    "adjust_window",
    "axis_spacing",
    "direction_label",
    "edge_labels",
    "index_to_patient",
    "patient_axis_assignment",
    "reformat",
]

PLANES = ("axial", "coronal", "sagittal")

# For each plane: (patient axis, wanted sign) of the screen columns (left -> right) and rows
# (top -> bottom), then the patient axis that the slices step along. Patient axes are LPS:
# 0 = x (+ toward the patient's left), 1 = y (+ posterior), 2 = z (+ superior).
_PLANE_AXES: dict[str, tuple[tuple[int, int], tuple[int, int], int]] = {
    "axial": ((0, +1), (1, +1), 2),
    "coronal": ((0, +1), (2, -1), 1),
    "sagittal": ((1, +1), (2, -1), 0),
}

# Letters for the negative and positive direction of each LPS axis.
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


def axis_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Step in mm along the three index axes (col/i, row/j, slice/k) of an affine."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))  # type: ignore[return-value]


def index_to_patient(affine: np.ndarray, col: float, row: float, slice_: float) -> np.ndarray:
    """LPS millimetres (x, y, z) of the voxel centre (col, row, slice)."""
    affine = np.asarray(affine, float)
    return affine[:3, :3] @ np.array([col, row, slice_], float) + affine[:3, 3]


def patient_axis_assignment(affine: np.ndarray) -> dict[int, tuple[int, int]]:
    """For each patient axis (0=x, 1=y, 2=z): the voxel axis (0=i, 1=j, 2=k) closest to it and
    the sign (+1/-1) with which that voxel axis points along it.

    The assignment is one-to-one (largest cosine first), so even a strongly oblique volume gets
    three distinct axes.
    """
    affine = np.asarray(affine, float)
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / np.where(norms > 0, norms, 1.0)
    weight = np.abs(direction)
    result: dict[int, tuple[int, int]] = {}
    free_patient, free_voxel = {0, 1, 2}, {0, 1, 2}
    while free_patient:
        patient, voxel = max(((p, v) for p in free_patient for v in free_voxel), key=lambda pv: weight[pv])
        result[patient] = (voxel, 1 if direction[patient, voxel] >= 0 else -1)
        free_patient.discard(patient)
        free_voxel.discard(voxel)
    return result


def acquisition_plane(affine: np.ndarray) -> str:
    """The plane whose slices are the acquired ones: the plane whose slice axis is voxel axis k."""
    assignment = patient_axis_assignment(affine)
    for plane, (_, _, slice_axis) in _PLANE_AXES.items():
        if assignment[slice_axis][0] == 2:
            return plane
    raise AssertionError("unreachable: one patient axis is always assigned to k")


@dataclass(frozen=True)
class Reformat:
    """A display stack: ``voxels[..., slice, row, col]`` (a view of the source, no copy) and its affine."""

    voxels: np.ndarray
    affine: np.ndarray
    plane: str
    source_axes: tuple[int, int, int]  # source voxel axis (0=i, 1=j, 2=k) shown as col, row, slice
    flipped: tuple[bool, bool, bool]  # whether col, row, slice run against that source axis

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, cols) of the stack."""
        return tuple(int(n) for n in self.voxels.shape[-3:])  # type: ignore[return-value]

    def source_index(self, col: int, row: int, slice_: int) -> tuple[int, int, int]:
        """The source voxel index (i, j, k) shown at (col, row, slice) of this stack."""
        source = [0, 0, 0]
        sizes = self.shape[::-1]  # cols, rows, slices
        for value, axis, flip, size in zip((col, row, slice_), self.source_axes, self.flipped, sizes, strict=True):
            source[axis] = size - 1 - int(value) if flip else int(value)
        return source[0], source[1], source[2]


def reformat(voxels: np.ndarray, affine: np.ndarray, plane: str) -> Reformat:
    """Present ``voxels`` (``[k, j, i]`` or ``[t, k, j, i]``) as a stack of ``plane`` slices.

    Returns views into ``voxels`` (transpose and reversed strides), so switching planes costs no
    memory; the new affine keeps every displayed pixel at its true patient position, with the
    true (possibly anisotropic) spacing along rows and columns.
    """
    if plane not in _PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; choose one of {', '.join(PLANES)}")
    voxels = np.asarray(voxels)
    if voxels.ndim not in (3, 4):
        raise ValueError(f"voxels must be 3-D or 4-D, got shape {voxels.shape}")
    affine = np.asarray(affine, float)
    assignment = patient_axis_assignment(affine)
    (col_patient, col_sign), (row_patient, row_sign), slice_patient = _PLANE_AXES[plane]
    col_axis, col_has = assignment[col_patient]
    row_axis, row_has = assignment[row_patient]
    slice_axis, _ = assignment[slice_patient]
    axes = (col_axis, row_axis, slice_axis)
    flipped = (col_has != col_sign, row_has != row_sign, False)

    lead = voxels.ndim - 3
    sizes_ijk = voxels.shape[::-1][:3]  # n_i, n_j, n_k

    def numpy_axis(voxel_axis: int) -> int:
        return lead + 2 - voxel_axis

    order = [*range(lead), numpy_axis(slice_axis), numpy_axis(row_axis), numpy_axis(col_axis)]
    stack = voxels.transpose(order)
    index = [slice(None)] * voxels.ndim
    if flipped[0]:
        index[-1] = slice(None, None, -1)
    if flipped[1]:
        index[-2] = slice(None, None, -1)
    stack = stack[tuple(index)]

    new = np.eye(4)
    new[:3, 3] = affine[:3, 3]
    for display_axis, (voxel_axis, flip) in enumerate(zip(axes, flipped, strict=True)):
        column = affine[:3, voxel_axis]
        if flip:
            new[:3, 3] += column * (sizes_ijk[voxel_axis] - 1)
            column = -column
        new[:3, display_axis] = column
    return Reformat(voxels=stack, affine=new, plane=plane, source_axes=axes, flipped=flipped)


def direction_label(vector: np.ndarray, threshold: float = 0.3) -> str:
    """Anatomical letters for an LPS direction, strongest first: ``L`` for +x, ``AS`` for an
    oblique vector pointing mostly anterior and partly superior. Components whose cosine is
    below ``threshold`` are left out; a zero vector gives ``""``."""
    vector = np.asarray(vector, float)
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        return ""
    unit = vector / norm
    order = np.argsort(-np.abs(unit), kind="stable")
    letters = [_LETTERS[axis][1 if unit[axis] > 0 else 0] for axis in order if abs(unit[axis]) >= threshold]
    return "".join(letters)


def edge_labels(affine: np.ndarray) -> dict[str, str]:
    """Letters for the four screen edges of a slice drawn with columns left-to-right and rows
    top-to-bottom: ``{"left", "right", "top", "bottom"}``."""
    affine = np.asarray(affine, float)
    col, row = affine[:3, 0], affine[:3, 1]
    return {
        "left": direction_label(-col),
        "right": direction_label(col),
        "top": direction_label(-row),
        "bottom": direction_label(row),
    }


def adjust_window(
    center: float, width: float, dx: float, dy: float, sensitivity: float, min_width: float | None = None,
) -> tuple[float, float]:
    """Window after a drag of (dx, dy) screen pixels: right widens, down raises the level
    (the image gets darker), as in most PACS viewers. ``sensitivity`` is units per pixel; pass
    a value proportional to the window at the start of the drag so that CT (HU) and MR
    (arbitrary scale) feel the same. The width never drops below ``min_width`` (default: one
    pixel's worth of drag), so it stays positive."""
    floor = min_width if min_width is not None else max(abs(sensitivity), 1e-6)
    return float(center + dy * sensitivity), float(max(floor, width + dx * sensitivity))
