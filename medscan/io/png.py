"""One slice of a Scan as an 8-bit greyscale PNG, windowed the way a radiologist would view it.

Row 0 of the image is row j=0 of the slice and column 0 is i=0: the DICOM display convention,
so a PNG of an axial CT looks like the PACS (patient's right on the viewer's left, anterior up).
The PNG's physical pixel size (pHYs) is set from the voxel spacing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image

from medscan.scan import MedscanError, Scan

__all__ = ["WINDOW_PRESETS", "apply_window", "default_window", "save_png"]

# (center, width) in HU, as commonly used in radiology reading rooms.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}


BESIDE_GAP_PX = 4  # white gap between a before/after pair


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map ``values`` linearly so [center - width/2, center + width/2] spans 0..255 (uint8).

    Values outside the window are clipped; NaN becomes 0. Unlike the DICOM VOI formula this
    accepts widths below 1, which float data normalised to [0, 1] needs.
    """
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise ValueError(f"window needs a finite center and a positive width, got ({center}, {width})")
    low = float(center) - float(width) / 2.0
    scaled = (np.asarray(values, dtype=np.float64) - low) / float(width) * 255.0
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def default_window(scan: Scan, volume: int = 0) -> tuple[float, float]:
    """CT soft tissue for CT; otherwise the 1st-99th percentile of the volume, since MR and
    derived data have no absolute scale."""
    if scan.modality == "CT":
        return WINDOW_PRESETS["soft_tissue"]
    data = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[volume]
    return percentile_window(data)


def percentile_window(values: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 1st-99th percentile of the finite ``values`` (any dtype; integers are not
    copied to float first); (0, 1) when none is finite, a tiny positive width for a flat image."""
    finite = values if values.dtype.kind in "iu" else values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1.0, 99.0])
    width = float(high - low)
    if width <= 0:  # flat image: any positive width shows it as mid-grey
        width = max(abs(float(low)) * 1e-3, 1e-6)
    return float(low + high) / 2.0, width


def save_png(
    scan: Scan,
    path: str | Path,
    *,
    slice_index: int | None = None,
    volume: int = 0,
    window: tuple[float, float] | None = None,
    beside: Scan | None = None,
) -> Path:
    """Write slice ``slice_index`` (default: the middle one) of ``volume`` as a greyscale PNG.

    ``window`` is (center, width) in the scan's units; see ``default_window`` for the default.
    ``beside``: a scan on the same grid (e.g. the result of a Clean operation) whose same slice is drawn to the
    right in the same window, so that a before/after pair is compared at one contrast.
    The file appears complete or not at all (temporary file + ``os.replace``). Returns ``path``.
    """
    path = Path(path)
    n_slices = scan.volume_shape[0]
    if not 0 <= volume < scan.n_volumes:
        count = scan.n_volumes
        raise MedscanError(path, f"volume {volume} does not exist; the scan has {count} (0..{count - 1})")
    if slice_index is None:
        slice_index = n_slices // 2
    if not 0 <= slice_index < n_slices:
        raise MedscanError(path, f"slice {slice_index} does not exist; the scan has {n_slices} (0..{n_slices - 1})")
    center, width = window if window is not None else default_window(scan, volume)
    plane = scan.voxels[slice_index] if scan.voxels.ndim == 3 else scan.voxels[volume, slice_index]
    try:
        pixels = apply_window(plane, center, width)
        if beside is not None:
            if beside.voxels.shape != scan.voxels.shape:
                raise MedscanError(path, f"cannot draw a {beside.voxels.shape} series beside a {scan.voxels.shape} "
                                         "one: they must share the grid")
            other = beside.voxels[slice_index] if beside.voxels.ndim == 3 else beside.voxels[volume, slice_index]
            gap = np.full((pixels.shape[0], BESIDE_GAP_PX), 255, np.uint8)
            pixels = np.concatenate([pixels, gap, apply_window(other, center, width)], axis=1)
    except ValueError as exc:
        raise MedscanError(path, str(exc)) from exc

    column_mm, row_mm, _ = scan.spacing
    image = Image.fromarray(pixels)  # 2-D uint8 -> mode "L"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "xb") as stream:  # ordinary permissions, unlike mkstemp's 0600
            image.save(stream, format="PNG", dpi=(25.4 / column_mm, 25.4 / row_mm))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
