"""The fidelity guard: cleaning must remove noise, not anatomy, and must not add any.

What a denoiser takes away (the method noise, input minus output) should look like noise: no
spatially coherent structure, zero mean over homogeneous tissue. The method noise is smoothed and each
pixel compared with the spread of the smoothed map itself (a robust estimate, blind to a few
structures): wherever it stands far above that, something coherent — an edge, a vessel, or a pasted
structure — was removed or invented. Measuring the spread after smoothing, rather than predicting it
from white noise, keeps the guard calibrated on real scanners, whose noise is spatially correlated
(reconstruction kernels), so that it survives smoothing much better than white noise does.
The score is the fraction of the image where that happens.

The size limit on one coherent region applies inside the patient (the body mask, widened by a few pixels
so its edge counts): a nodule or vessel is anatomy, the couch and the air around it are not. A denoiser
softens the couch's long, razor-thin edges by a few HU, which at a low noise level stands far above the
method noise's spread and would flag every low-noise CT for something no reader looks at.

A coherent change must also be visible: at least ``VISIBLE_SHARE`` of the input's own noise level (blind
estimate per slice). On a quiet scan the smoothed method noise spreads over a fraction of a HU, so a 2 HU
softening beside a bone scored z > 5 — a change below one grey level of a soft-tissue window and far below
the noise the reader already sees. On noisy scans this floor stays under the z limit, so it costs nothing there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from medscan.ops.noise_level import homogeneous_mask
from medscan.ops.planes import map_planes

SMOOTHING_PX = 2.0
Z_LIMIT = 5.0
STRUCTURE_LIMIT = 0.02  # fraction of pixels with coherent method noise above which a result is flagged
HU_SHIFT_LIMIT = 1.0
# A pasted 6-px-radius disc (113 px) shows as a coherent region of 130-220 px; honest outputs of our
# denoiser on held-out slices stayed at or below 13 px (scripts/evaluate_denoise.py).
BLOB_LIMIT_PX = 60
VISIBLE_SHARE = 0.75
# A regional shift: the method noise averaged over REGION_SMOOTHING_PX moves by at least REGION_SHIFT_SHARE of the
# input's noise level over at least REGION_AREA_SHARE of the image. Noise averaged that widely is a few hundredths
# of its level, and the denoiser bounds its own slow changes below it (``constrain_residual``), so a shift this
# large is a moved background or organ: a Gaussian-noise brain denoised as Rician lost a third of its noise level
# in the background (and 3 dB).
REGION_SMOOTHING_PX = 16.0
REGION_SHIFT_SHARE = 0.25
REGION_AREA_SHARE = 0.05
# The method noise may not spread much more than the noise the input carries: at full strength it is the noise
# itself, at the highest strength (1.5) half as much again.
EXCESS_REMOVAL_RATIO = 2.0


@dataclass
class FidelityReport:
    """What the guard measured on one result (units: the scan's) and whether, and why, it objects."""

    structure_fraction: float  # share of pixels where the method noise is coherent structure
    largest_structure_px: int  # the largest connected coherent region in the body in one slice: a nodule
    mean_shift: float  # mean change over homogeneous regions, in the scan's units (HU for CT)
    method_noise_std: float
    noise_sd: float  # the input's estimated noise level (median over slices, flat-region estimate), scan's units
    noise_sd_after: float  # the same estimate on the output: the noise a reader still sees
    regional_shift_fraction: float  # share of the image whose widely averaged change exceeds half the noise level
    flagged: bool
    reasons: list[str]

    def as_dict(self) -> dict:
        """The report as plain JSON types (stored with kept results and written by the evaluation scripts)."""
        return asdict(self)


def noise_levels(image: np.ndarray) -> np.ndarray:
    """Blind noise level of each slice (..., H, W) -> (N,), in the image's units."""
    import torch

    from medscan.degrade import estimate_sigma

    planes = np.ascontiguousarray(image, np.float32).reshape(-1, 1, *np.shape(image)[-2:])
    return estimate_sigma(torch.from_numpy(planes)).numpy().astype(np.float64)


def structure_map(method_noise: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel z-score of the locally smoothed method noise, slice by slice (..., H, W).

    ``floor`` (one value per slice): smoothed changes smaller than it score 0, however coherent.
    """
    noise = np.asarray(method_noise, dtype=np.float64)
    out = np.empty_like(noise)
    flat, scores = noise.reshape(-1, *noise.shape[-2:]), out.reshape(-1, *noise.shape[-2:])

    def score(index: int) -> None:  # writes its own plane of ``out``
        plane = flat[index]
        smoothed = ndimage.gaussian_filter(plane, SMOOTHING_PX)
        touched = plane != 0  # air clipped at -1024 HU is left alone: its zeros say nothing of the spread
        spread = _robust_std(smoothed[touched]) if touched.sum() > 100 else _robust_std(smoothed)
        # Not centred on the median: a shift of the whole plane is itself a change to report.
        np.divide(np.abs(smoothed), max(spread, 1e-12), out=scores[index])
        if floor is not None:
            scores[index][np.abs(smoothed) < floor[index]] = 0.0

    map_planes(score, range(len(flat)))
    return out


BODY_MARGIN_PX = 3


def _largest_blob_in_body(coherent: np.ndarray, image: np.ndarray) -> int:
    from medscan.nets.volumes import body_mask

    def largest(plane: np.ndarray, picture: np.ndarray) -> int:
        if not plane.any():  # nothing coherent: no body to find (most slices of an honest result)
            return 0
        # found on a smoothed copy: at 10 % noise Otsu on the raw slice lost half of a brain to speckle
        smoothed = ndimage.gaussian_filter(np.asarray(picture, np.float64), SMOOTHING_PX)
        body = ndimage.binary_dilation(body_mask(smoothed), iterations=BODY_MARGIN_PX)
        labels, count = ndimage.label(plane & body)
        return int(np.bincount(labels.ravel())[1:].max()) if count else 0

    planes = np.asarray(image).reshape(-1, *image.shape[-2:])
    return max(map_planes(largest, coherent.reshape(-1, *coherent.shape[-2:]), planes), default=0)


def input_noise_levels(image: np.ndarray, correlated: bool = False) -> np.ndarray:
    """The noise level of each slice (..., H, W) -> (N,) as the denoiser estimates it (``estimate_noise_sd``;
    ``correlated`` for CT, whose noise the finest scale alone underestimates)."""
    import torch

    from medscan.degrade import estimate_noise_sd

    planes = np.asarray(image).reshape(-1, 1, *np.shape(image)[-2:])
    # A few planes at a time: the flat-region estimate works in float64 on detrended copies, which for a whole
    # 120-slice series held several GB at once.
    chunks = [planes[i:i + 4] for i in range(0, len(planes), 4)]
    levels = map_planes(lambda chunk: estimate_noise_sd(
        torch.from_numpy(np.ascontiguousarray(chunk, np.float32)), correlated).numpy(), chunks)
    return np.concatenate(levels).astype(np.float64) if levels else np.zeros(0)


def reported_noise(before: np.ndarray, after: np.ndarray, units: str, correlated: bool,
                   noise_sd: np.ndarray) -> tuple[float, float]:
    """(the input's noise level, the output's) in the scan's units, as the report states them: for CT the
    standard deviation in the same flat soft-tissue windows before and after (``ct_noise_before_after``, what
    a reader's ROI measures), else the median over slices of the denoiser's own estimate (``noise_sd``)."""
    if units == "HU":
        from medscan.ops.noise_level import ct_noise_before_after

        measured = ct_noise_before_after(before, after)
        if all(np.isfinite(measured)):
            return measured
    return float(np.median(noise_sd)), float(np.median(input_noise_levels(after, correlated)))


def regional_shift_fraction(checked: np.ndarray, noise_sd: np.ndarray) -> float:
    """Share of the image (..., H, W) where the change averaged over ``REGION_SMOOTHING_PX`` is at least
    ``REGION_SHIFT_SHARE`` of that slice's noise level: a region moved as a whole, not noise taken away."""
    planes = np.asarray(checked, np.float64).reshape(-1, *np.shape(checked)[-2:])

    def moved(plane: np.ndarray, sd: float) -> int:
        if sd <= 0:
            return 0
        wide = ndimage.gaussian_filter(plane, REGION_SMOOTHING_PX)
        return int(np.count_nonzero(np.abs(wide) >= REGION_SHIFT_SHARE * sd))

    return sum(map_planes(moved, planes, noise_sd)) / max(planes.size, 1)


def _robust_std(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))) / 0.6745)


def rician_floor_part(method_noise: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The part of the method noise that the Rician noise floor explains: slow, and between 0 and the floor
    (``sigma``: the input's noise level per slice).

    The denoiser removes exactly this from magnitude images (``constrain_residual``); it is a change of the
    background's mean by design, so the guard must not count it as structure — anything beyond it still counts.
    """
    import torch

    from medscan.degrade import gaussian_blur
    from medscan.ops.inference import BIAS_SMOOTHING_PX, within_rician_floor

    shape = method_noise.shape
    planes = torch.from_numpy(np.ascontiguousarray(method_noise, np.float32).reshape(-1, 1, *shape[-2:]))
    slow = gaussian_blur(planes, BIAS_SMOOTHING_PX)
    return within_rician_floor(slow, torch.from_numpy(sigma)).numpy().reshape(shape)


def coherent_changes(before: np.ndarray, after: np.ndarray,
                     rician: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(method noise, the part of it the guard checks, where that part is coherent and visible).

    ``rician``: the input is a magnitude image whose noise floor the output may remove (``rician_floor_part``).
    """
    method_noise = np.asarray(before, np.float64) - np.asarray(after, np.float64)
    sigma = noise_levels(before)
    checked = method_noise - rician_floor_part(method_noise, sigma) if rician else method_noise
    return method_noise, checked, structure_map(checked, VISIBLE_SHARE * sigma) > Z_LIMIT


def assess(before: np.ndarray, after: np.ndarray, *, units: str = "", rician: bool = False,
           correlated: bool = False) -> tuple[FidelityReport, np.ndarray]:
    """Compare input and output; returns the report and the method-noise map (input minus output).

    Args:
        before, after: the input and the cleaned volume (..., H, W), same shape and units.
        units: the scan's units ("HU" enables the HU mean-shift check).
        rician: the input is a magnitude image whose noise floor the output may remove.
        correlated: the input's noise may be spatially correlated (CT), for the noise-level estimate.
    """
    method_noise, checked, coherent = coherent_changes(before, after, rician)
    structure = float(np.mean(coherent))
    blob = _largest_blob_in_body(coherent, np.asarray(before))
    mask = homogeneous_mask(before)
    shift = float(-checked[mask].mean()) if mask.any() else 0.0
    reasons = []
    if structure > STRUCTURE_LIMIT:
        reasons.append(f"coherent structure in {structure:.1%} of the image was removed or added")
    if blob > BLOB_LIMIT_PX:
        reasons.append(f"a coherent structure of {blob} pixels was removed or added")
    if units == "HU" and abs(shift) > HU_SHIFT_LIMIT:
        reasons.append(f"mean value in homogeneous tissue moved by {shift:+.2f} HU")
    noise_sd = input_noise_levels(before, correlated)
    regional = regional_shift_fraction(checked, noise_sd)
    if regional > REGION_AREA_SHARE:
        reasons.append(f"{regional:.0%} of the image moved by at least {REGION_SHIFT_SHARE:g} of its noise level "
                       "(a regional shift, not noise)")
    level, level_after = reported_noise(before, after, units, correlated, noise_sd)
    removed = _robust_std(checked.ravel())
    if level > 0 and removed > EXCESS_REMOVAL_RATIO * level:
        reasons.append(f"removed {removed:.3g} {units or 'units'} of spread where the input carries "
                       f"{level:.3g} of noise")
    report = FidelityReport(structure_fraction=structure, largest_structure_px=blob, mean_shift=shift,
                            method_noise_std=_robust_std(method_noise.ravel()), noise_sd=level,
                            noise_sd_after=level_after, regional_shift_fraction=regional, flagged=bool(reasons),
                            reasons=reasons)
    return report, method_noise.astype(np.float32)
