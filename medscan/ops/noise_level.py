"""The noise a reader measures: standard deviation in small windows of homogeneous soft tissue.

CT noise is spatially correlated (filtered back-projection shapes its spectrum), so the finest-scale estimate
(``medscan.degrade.estimate_sigma``) sees a fraction of it, and at the noise of a routine scan the spread of small
blocks still reads anatomy. A radiologist measures noise as the standard deviation in a region of interest placed
in flat tissue (liver, muscle, fat); this does the same, automatically: windows of ``WINDOW_PX`` pixels wholly
inside homogeneous soft tissue, chosen on a smoothed copy so that the choice does not follow the noise. The
triage (``medscan screen``), the fidelity report and the denoising evaluation use this one estimator for CT.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medscan.ops.planes import map_planes

WINDOW_PX = 15
SOFT_TISSUE_HU = (-100.0, 150.0)  # fat excluded: its edges to muscle are sharp and it clips in some kernels
MIN_WINDOWS = 3


def homogeneous_mask(image: np.ndarray) -> np.ndarray:
    """Regions whose local standard deviation is in the lowest quartile: fat, liver, fluid, white matter.

    Chosen on a smoothed copy of the input, so that the choice does not follow the noise: picking
    the flattest-looking pixels of a noisy or cleaned image selects where the noise happened to
    cancel and reports a shift that is not there.
    """
    return _smoothed_and_homogeneous(image)[1]


def _smoothed_and_homogeneous(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the smoothed copy, ``homogeneous_mask``) of (..., H, W) ``image``; the planes are filtered on threads."""
    planes = np.asarray(image, dtype=np.float64).reshape(-1, *np.shape(image)[-2:])
    smooth = np.empty_like(planes)
    local_std = np.empty_like(planes)

    def smooth_and_spread(index: int) -> None:  # writes its own plane of the outputs
        ndimage.gaussian_filter(planes[index], 3, output=smooth[index])
        local_mean = ndimage.uniform_filter(smooth[index], 7)
        local_sq = ndimage.uniform_filter(smooth[index] ** 2, 7)
        np.sqrt(np.clip(local_sq - local_mean**2, 0, None), out=local_std[index])

    map_planes(smooth_and_spread, range(len(planes)))
    # Well clear of the background: air at the scanner's floor (-1024 HU) or an MR background plus a little
    # noise is the flattest thing in the image, and a cut close to it keeps just the pixels whose noise
    # happened to be positive (the perfect denoiser then "moved" tissue by -4 HU at 5 % noise).
    lo, hi = np.percentile(smooth, [1, 99])
    body = smooth > lo + 0.1 * (hi - lo)
    threshold = np.percentile(local_std[body], 25) if body.any() else np.percentile(local_std, 25)
    shape = np.shape(image)
    return smooth.reshape(shape), (body & (local_std <= threshold)).reshape(shape)


def flat_windows(plane_hu: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners of ``WINDOW_PX`` windows wholly inside homogeneous soft tissue of a (H, W) slice in HU.

    Homogeneous: the lowest quartile of local spread on a smoothed copy (``homogeneous_mask``); soft tissue:
    ``SOFT_TISSUE_HU`` on that copy. Windows tile the slice without overlap.
    """
    plane = np.asarray(plane_hu, np.float64)
    smooth, homogeneous = _smoothed_and_homogeneous(plane)
    mask = homogeneous & (smooth > SOFT_TISSUE_HU[0]) & (smooth < SOFT_TISSUE_HU[1])
    w = WINDOW_PX
    h, wd = (plane.shape[0] // w) * w, (plane.shape[1] // w) * w
    inside = mask[:h, :wd].reshape(h // w, w, wd // w, w).all(axis=(1, 3))
    return [(int(y) * w, int(x) * w) for y, x in zip(*np.nonzero(inside), strict=True)]


def window_sd(plane: np.ndarray, corners: list[tuple[int, int]]) -> float:
    """Median standard deviation of ``plane`` over the windows at ``corners`` (NaN without windows)."""
    w = WINDOW_PX
    if not corners:
        return float("nan")
    return float(np.median([np.std(plane[y:y + w, x:x + w]) for y, x in corners]))


def soft_tissue_noise_sd(plane_hu: np.ndarray) -> float:
    """Noise standard deviation in HU of one CT slice, as an ROI in flat soft tissue reads it; NaN when the slice
    has fewer than ``MIN_WINDOWS`` such windows (a slice through air, lung apex or skull only)."""
    corners = flat_windows(plane_hu)
    return window_sd(np.asarray(plane_hu, np.float64), corners) if len(corners) >= MIN_WINDOWS else float("nan")


def ct_noise_sd(volume_hu: np.ndarray, max_planes: int = 8) -> float:
    """Median of ``soft_tissue_noise_sd`` over up to ``max_planes`` slices spread through a (..., H, W) CT volume;
    NaN when none of them has flat soft tissue."""
    planes = np.asarray(volume_hu).reshape(-1, *np.shape(volume_hu)[-2:])
    chosen = np.linspace(0, len(planes) - 1, min(max_planes, len(planes))).round().astype(int)
    values = [soft_tissue_noise_sd(planes[k]) for k in chosen]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def ct_noise_before_after(before_hu: np.ndarray, after_hu: np.ndarray, max_planes: int = 8) -> tuple[float, float]:
    """(noise sd before, after) in HU of a CT and its cleaned version, read in the same flat soft-tissue windows
    (chosen on ``before``), as a reader compares one ROI before and after; NaNs when there are none."""
    before = np.asarray(before_hu).reshape(-1, *np.shape(before_hu)[-2:])
    after = np.asarray(after_hu).reshape(-1, *np.shape(after_hu)[-2:])
    chosen = np.linspace(0, len(before) - 1, min(max_planes, len(before))).round().astype(int)

    def pair(k: int) -> tuple[float, float] | None:
        corners = flat_windows(before[k])
        return (window_sd(before[k], corners), window_sd(after[k], corners)) if len(corners) >= MIN_WINDOWS else None

    pairs = [p for p in map_planes(pair, chosen) if p is not None]
    if not pairs:
        return float("nan"), float("nan")
    return float(np.median([p[0] for p in pairs])), float(np.median([p[1] for p in pairs]))
