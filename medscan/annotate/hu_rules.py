"""CT tissue classes from Hounsfield-unit rules: the fallback segmentation that works on any CT, no model needed.

Labels (one per voxel; a voxel of the body that none of lungs/bone/fat claims stays "body"):

1 body   the patient: largest 3-D connected component above -500 HU, plus separate pieces of at least 50 ml
         that hold bone (arms beside the trunk), holes filled per axial slice (so the lungs, airways and bowel
         gas are inside it); the scanner table and blankets are separate components without bone.
2 lungs  air (below -400 HU) in connected pieces of at least 20 ml, except pure-gas pieces (median below
         -970 HU: the air around the patient, bowel and stomach gas; aerated lung parenchyma sits around -850).
         The trachea and main bronchi are included; vessels inside the lung fields (holes per slice) too.
         Only where the body is trunk-wide (>= 240 mm at the piece's largest slice, or cut by the field of view):
         paranasal sinuses and mastoid air in a head CT are not lungs.
3 bone   hysteresis: voxels >= +200 HU (cancellous bone) connected to seeds >= +600 HU. Iodinated contrast
         in vessels is typically +150..+450 HU, so a contrast-filled lumen has no seed and is excluded unless
         it touches bone or a calcification; 600 HU is therefore the stated lower bound for a bone seed.
         Holes per slice up to 15 cm² are filled (marrow inside the cortex; not the brain inside the skull);
         bone is kept inside the body only (not the table).
4 fat    -190..-30 HU inside the body (not lung).
5 air    below -500 HU outside the body.

Thresholds are fixed (not fitted): they are textbook HU ranges, stated above and in ``THRESHOLDS``.
"""

from __future__ import annotations

import numpy as np

from medscan.annotate.registry import Segmentation, SegmentationTask, register_task
from medscan.scan import MedscanError, Scan

# scipy.ndimage is imported in the functions that label: registering this task (``medscan --help``) stays cheap.

LABELS = {1: "body", 2: "lungs", 3: "bone", 4: "fat", 5: "air"}
THRESHOLDS = {
    "body_hu": -500.0, "air_hu": -400.0, "lung_min_ml": 20.0, "gas_median_hu": -970.0,
    "trunk_width_mm": 240.0, "bone_hu": 200.0, "bone_seed_hu": 600.0, "marrow_max_cm2": 15.0,
    "fat_hu": (-190.0, -30.0), "outside_air_hu": -500.0,
}
VERSION = "1"


def axial_axis(scan: Scan) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) closest to the patient's head-foot direction."""
    along_z = np.abs(scan.direction[2, :])  # z component of the i, j, k unit vectors
    return 2 - int(np.argmax(along_z))


def _in_plane(axis: int) -> np.ndarray:
    """A 3x3x3 structure connecting neighbours within the slice only (4-connectivity) for slices along ``axis``."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, 1)
    where = [slice(None)] * 3
    for offset in (0, 2):
        where[axis] = offset
        structure[tuple(where)] = False
    return structure


def _fill_per_slice(mask: np.ndarray, axis: int, max_hole: float | None = None) -> np.ndarray:
    """Fill enclosed holes slice by slice along ``axis``; with ``max_hole`` (pixels) only holes up to that size.

    One labelling of the background with in-plane connectivity does every slice at once: a background piece
    that does not reach the slice's edge is a hole.
    """
    from scipy import ndimage

    background, n = ndimage.label(~mask, structure=_in_plane(axis))
    if n == 0:
        return mask.copy()
    edge = np.zeros(n + 1, bool)
    for a in range(3):
        if a == axis:
            continue
        edge[np.take(background, 0, axis=a)] = True
        edge[np.take(background, -1, axis=a)] = True
    hole = ~edge
    hole[0] = False
    if max_hole is not None:
        hole &= np.bincount(background.ravel(), minlength=n + 1) <= max_hole
    return mask | hole[background]


def _with_limbs(mask: np.ndarray, dense: np.ndarray, voxel_ml: float) -> np.ndarray:
    """The largest component plus separate pieces of at least 50 ml holding at least 1 ml of bone (arms, legs).

    The scanner table, pads and blankets hold no bone and stay outside the body.
    """
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    bony = np.bincount(labels[dense], minlength=n + 1)
    keep = (sizes * voxel_ml >= 50.0) & (bony * voxel_ml >= 1.0)
    keep[int(np.argmax(sizes))] = True
    keep[0] = False
    return keep[labels]


def _in_trunk(piece: np.ndarray, body: np.ndarray, axis: int, spacing: tuple[float, float, float],
              min_width_mm: float) -> bool:
    """Whether an air piece lies where the body is trunk-wide (or cut by the field of view) at its largest slice."""
    counts = piece.sum(axis=tuple(a for a in range(3) if a != axis))
    where = [slice(None)] * 3
    where[axis] = int(np.argmax(counts))
    section = body[tuple(where)]
    if not section.any():
        return False
    if section[0].any() or section[-1].any() or section[:, 0].any() or section[:, -1].any():
        return True  # truncated field of view: the width cannot be judged, the air piece is kept
    in_plane = [s for a, s in zip((2, 1, 0), spacing, strict=True) if a != axis][::-1]  # (rows, columns) mm
    rows, cols = np.flatnonzero(section.any(axis=1)), np.flatnonzero(section.any(axis=0))
    width = max((rows[-1] - rows[0] + 1) * in_plane[0], (cols[-1] - cols[0] + 1) * in_plane[1])
    return width >= min_width_mm


def segment_hu(scan: Scan, *, device: str = "auto") -> Segmentation:
    """Label body, lungs, bone, fat and air of a CT volume in HU (``device`` is unused: numpy only)."""
    from scipy import ndimage

    del device
    hu = scan.voxels
    if hu.ndim != 3:
        raise MedscanError(scan.source_path or scan.description, "HU rules need one 3-D volume, not a 4-D series")
    t = THRESHOLDS
    axis = axial_axis(scan)
    voxel_ml = float(abs(np.linalg.det(scan.affine[:3, :3]))) / 1000.0

    # Body: a light opening first detaches thin blankets/table pads touching the skin.
    above = ndimage.binary_opening(hu > t["body_hu"], structure=np.ones((1, 3, 3), bool) if axis == 0 else None)
    body = _fill_per_slice(_with_limbs(above, hu >= t["bone_seed_hu"], voxel_ml), axis)

    # Lungs: big air pieces that are not pure gas. Not required to lie inside the filled body, because a field
    # of view cut through the chest opens the lung fields to the image edge (no hole left to fill).
    low_air = ndimage.binary_opening(hu < t["air_hu"], structure=np.ones((1, 3, 3), bool) if axis == 0 else None)
    pieces, n = ndimage.label(low_air)
    lungs = np.zeros_like(body)
    if n:
        sizes = np.bincount(pieces.ravel())
        index = np.flatnonzero(sizes[1:] * voxel_ml >= t["lung_min_ml"]) + 1
        if len(index):
            boxes = ndimage.find_objects(pieces)
            medians = np.array([np.median(hu[boxes[i - 1]][pieces[boxes[i - 1]] == i]) for i in index])
            keep = [i for i in index[medians >= t["gas_median_hu"]]
                    if _in_trunk(pieces == i, body, axis, scan.spacing, t["trunk_width_mm"])]
            if keep:
                lungs = _fill_per_slice(np.isin(pieces, keep), axis)  # vessels inside the lung fields count as lung
    body |= lungs

    # Bone: hysteresis from dense seeds into cancellous bone, inside the body only (no table).
    candidate = body & (hu >= t["bone_hu"])
    pieces, n = ndimage.label(candidate)
    bone = np.zeros_like(body)
    if n:
        seeded = np.unique(pieces[candidate & (hu >= t["bone_seed_hu"])])
        bone = np.isin(pieces, seeded[seeded > 0])
        in_plane_mm2 = float(np.prod([sp for a, sp in zip((2, 1, 0), scan.spacing, strict=True) if a != axis]))
        bone = _fill_per_slice(bone, axis, max_hole=t["marrow_max_cm2"] * 100.0 / in_plane_mm2) & body

    low, high = t["fat_hu"]
    fat = body & ~lungs & ~bone & (hu >= low) & (hu <= high)
    air = ~body & (hu < t["outside_air_hu"])

    labels = np.zeros(hu.shape, np.uint8)
    labels[body] = 1
    labels[fat] = 4
    labels[lungs] = 2
    labels[bone] = 3
    labels[air] = 5
    return Segmentation(labels=labels, names=dict(LABELS), source="rules", method="hu_rules", version=VERSION,
                        notes=[f"HU thresholds {THRESHOLDS}"])


def check_ct(scan: Scan) -> None:
    """HU rules need a volume in Hounsfield units with enough slices to follow connected structures."""
    where = scan.source_path or scan.description
    if scan.units and scan.units != "HU":
        raise MedscanError(where, f"HU rules need a CT in Hounsfield units, not {scan.units}")
    if scan.voxels.ndim != 3:
        raise MedscanError(where, "HU rules need one 3-D volume, not a 4-D series")
    if min(scan.volume_shape) < 3:
        raise MedscanError(where, f"HU rules need at least 3 slices, this series has shape {scan.volume_shape}")
    if float(np.percentile(scan.voxels, 1)) > -300:
        raise MedscanError(where, "values do not look like Hounsfield units (no air below -300); HU rules refused")


TASK = register_task(SegmentationTask(
    name="hu", title="CT tissue classes from HU rules", modalities=("CT",), labels=dict(LABELS),
    run=segment_hu, check=check_ct))
