"""Slice-wise inference for 2-D models: normalise each slice to its window, pad, batch, undo."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from medscan.degrade import estimate_noise_sd
from medscan.nets.device import autocast
from medscan.nets.normalize import intensity_window, window_span
from medscan.nets.volumes import pad_to as _pad_to
from medscan.ops.registry import ProgressCallback

_MODEL_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


def cached_model(name: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Load (and verify) a shipped model once per process and device."""
    from medscan.nets.weights import load_card, load_model

    key = (name, str(device))
    if key not in _MODEL_CACHE:
        model, _ = load_model(name)
        _MODEL_CACHE[key] = model.to(device)
    return _MODEL_CACHE[key], load_card(name).data


def constrain_residual(x: torch.Tensor, residual: torch.Tensor, sigma: torch.Tensor,
                       rician: bool = False, correlated: bool = False) -> torch.Tensor:
    """Keep only what can be noise: no slow change larger than noise carries, nothing where the input has none.

    A denoiser may take away fine-grained fluctuations, but a slow change (the local mean over about
    ``BIAS_SMOOTHING_PX``) only as large as white noise of that level itself carries at that scale: enough
    to take the noise's own low frequencies out (without them flat air and background keep a blotchy
    mottle), never a
    shift of the mean that could change HU over a region. Nothing goes from regions that carry no
    noise at all (air clipped to -1024 HU, zero-filled background), where any change would be invented texture.

    Magnitude (Rician) images are the one exception to the first rule: their noise lifts the mean of dark
    regions by up to sigma * sqrt(pi / 2) (the noise floor), so there a slowly varying residual between 0
    and that floor is noise too, and removing it is what puts empty background back at zero.

    ``correlated``: the noise is CT noise after filtered back-projection, whose power sits at lower frequencies
    than white noise's, so its slow part is larger (``CORRELATED_SLOW_SD``); the bound follows it.
    """
    from medscan.degrade import gaussian_blur

    slow = gaussian_blur(residual, BIAS_SMOOTHING_PX)
    residual = residual - slow
    sigma = sigma.reshape(-1, 1, 1, 1)
    explained = within_rician_floor(slow, sigma) if rician else torch.zeros_like(slow)
    limit = SLOW_LIMIT * (CORRELATED_SLOW_SD if correlated else SLOW_NOISE_SD) * sigma
    kept = torch.clamp(slow - explained, -limit, limit)
    # what survives the bound may still lean one way over a whole organ (-0.25 HU on the sample CT): not noise
    residual = residual + explained + kept - region_mean(kept)
    mean = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    square = F.avg_pool2d(x * x, 5, stride=1, padding=2, count_include_pad=False)
    local_sd = torch.sqrt(torch.clamp(square - mean * mean, min=0))
    # Full weight wherever the input is at least half as rough as its noise level: a 5x5 estimate of
    # the local spread scatters around sigma, and weighting by it alone would hold back real denoising.
    weight = torch.clamp(local_sd / (FLAT_SHARE * sigma + 1e-6), 0, 1)
    return residual * weight


def region_mean(x: torch.Tensor) -> torch.Tensor:
    """Gaussian mean over ``REGION_PX`` of an already smooth (N, 1, H, W) map, on a 4x coarser grid: 2 ms per 512x512
    slice instead of the full-resolution blur's 40 ms, which would cost the denoiser an eighth of its speed."""
    from medscan.degrade import gaussian_blur

    h, w = x.shape[-2:]
    coarse = F.avg_pool2d(x, 4, ceil_mode=True)
    return F.interpolate(gaussian_blur(coarse, REGION_PX / 4), size=(h, w), mode="bilinear", align_corners=False)


def within_rician_floor(slow: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The part of a slow change (N, 1, H, W) that the Rician noise floor explains: between 0 and the floor."""
    return torch.minimum(slow.clamp(min=0), RICIAN_FLOOR * sigma.reshape(-1, 1, 1, 1))


def windowed_planes(planes: np.ndarray, apply, device: torch.device, *, pad_multiple: int,
                    scale: tuple[int, int] = (1, 1), batch: int = 4,
                    progress: ProgressCallback | None = None) -> np.ndarray:
    """``apply`` (a (B, 1, H', W') tensor in [0, 1]-ish units -> output tensor) over (N, H, W) planes, each
    in its own intensity window, padded to ``pad_multiple``; returns (N, H*sy, W*sx) float32 in the planes' units.

    A flat plane (air above the body in a reformat) has no window: any positive span maps it to 0.
    """
    sy, sx = scale
    n, h, w = planes.shape
    out = np.empty((n, h * sy, w * sx), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = np.asarray(planes[start:start + batch], dtype=np.float32)
            windows = np.array([intensity_window(p) for p in chunk], np.float32).reshape(-1, 2, 1, 1)
            lo, hi = windows[:, 0], windows[:, 1]
            span = window_span(lo, hi)
            x = torch.from_numpy((chunk - lo) / span)[:, None].to(device)
            padded, _ = _pad_to(x, pad_multiple)
            y = apply(padded).float()[..., :h * sy, :w * sx]
            out[start:start + batch] = y[:, 0].cpu().numpy() * span + lo
            if progress is not None:
                progress(min(start + batch, n), n)
    return out


# Scale of the "slow" part of a residual, which is bounded by SLOW_NOISE_SD. Letting the network change
# everything up to 16 px freely took a 2 HU blotch from beside a bone on the low-noise sample CT (and a
# 278-pixel structure from the sample MR), which the guard rightly flags; the bound keeps such changes out.
BIAS_SMOOTHING_PX = 4.0
# Standard deviation of unit white noise after that Gaussian smoothing, 1 / (2 sqrt(pi) s) = 0.07; a slow
# change may be up to SLOW_LIMIT times that many sigma (0.5 HU on the low-noise sample CT, 21 HU at sigma 150 HU),
# and its mean over REGION_PX must be zero.
SLOW_NOISE_SD = 1 / (2 * math.sqrt(math.pi) * BIAS_SMOOTHING_PX)
SLOW_LIMIT = 2.0
# Standard deviation of simulated low-dose CT noise (sharp to soft kernels) after the same smoothing, as a share of
# its pixel standard deviation: 0.05-0.2 (scripts/simulate_low_dose_ct.py realisations); the upper end bounds it.
CORRELATED_SLOW_SD = 0.2
REGION_PX = 16.0
FLAT_SHARE = 0.5
# Pure Rician noise (Rayleigh) has mean sqrt(pi/2) sigma and spread sqrt(2 - pi/2) sigma; the blind estimate
# of sigma reads as low as that spread where background dominates, so the floor is bounded by their ratio.
RICIAN_FLOOR = math.sqrt(math.pi / 2) / math.sqrt(2 - math.pi / 2)


def denoise_planes(planes: np.ndarray, model: torch.nn.Module, device: torch.device, *, strength: float = 1.0,
                   rician: bool = False, correlated: bool = False, batch: int = 4,
                   progress: ProgressCallback | None = None) -> np.ndarray:
    """Denoise (N, H, W) planes in their own units; strength scales the removed noise (0 = unchanged).

    ``rician``: the planes are magnitude images (MR), whose noise lifts dark regions.
    ``correlated``: the noise may be spatially correlated (CT): its level is read from flat regions as well as
    from the finest scale (``estimate_noise_sd``).
    """
    out = np.empty_like(planes, dtype=np.float32)
    total = len(planes)
    model = model.to(memory_format=torch.channels_last)  # oneDNN's fast layout: about 20 % less time per slice
    for start in range(0, total, batch):
        chunk = planes[start:start + batch].astype(np.float32)
        windows = denoise_windows(chunk, rician)
        out[start:start + batch] = _denoise_chunk(chunk, windows, model, device, strength, rician, correlated)
        if progress is not None:
            progress(min(start + batch, total), total)
    return out


def denoise_windows(chunk: np.ndarray, rician: bool) -> list[tuple[float, float]]:
    """The windows the denoiser normalises (B, H, W) planes to: the clean estimate, the planes' own for Rician."""
    return [intensity_window(p) for p in chunk] if rician else clean_windows(chunk)


# Block size of the clean-window estimate: 4x4 means cut the noise sd 4x, a 3x3 median of them most of the rest.
WINDOW_BLOCK = 4


def clean_windows(chunk: np.ndarray) -> list[tuple[float, float]]:
    """Each plane's intensity window as its noise-free version would have it, not as its noise makes it.

    The model learned on slices normalised to their clean 0.5-99.5 percentile window. Noise widens a plane's own
    window by about 2.5 sigma at each end (a third of the contrast at 10 % noise) and lifts flat background (air at
    -1024 HU, zero outside the head) off the window's floor, where the model learned to flatten it; in the noisy
    window it leaves a faint mottle there. Percentiles of a 3x3 median of 4x4 block means sit close to the clean
    ones and cost about a millisecond, nearly what a first denoising pass at 1/16 of the pixels gains at a tenth of
    its cost (the figures are on the model's docs page).
    Not for magnitude (Rician) data, whose noisy floor already sits at the window's bottom like the clean zero.
    """
    from scipy import ndimage

    f = WINDOW_BLOCK
    h, w = (chunk.shape[1] // f) * f, (chunk.shape[2] // f) * f
    if min(h, w) < 16 * f:  # too few blocks for percentiles: the plane's own window
        return [intensity_window(p) for p in chunk]
    means = chunk[:, :h, :w].reshape(len(chunk), h // f, f, w // f, f).mean(axis=(2, 4))
    return [intensity_window(ndimage.median_filter(p, 3)) for p in means]


def _denoise_chunk(chunk: np.ndarray, windows: list[tuple[float, float]], model: torch.nn.Module,
                   device: torch.device, strength: float, rician: bool, correlated: bool = False) -> np.ndarray:
    """(B, H, W) planes denoised in ``windows`` (one (lo, hi) per plane), back in the planes' units."""
    lo = np.array([w[0] for w in windows], np.float32).reshape(-1, 1, 1)
    hi = np.array([w[1] for w in windows], np.float32).reshape(-1, 1, 1)
    with torch.inference_mode():
        x = torch.from_numpy((chunk - lo) / (hi - lo))[:, None].to(device)
        sigma = estimate_noise_sd(x, correlated)
        padded, (h, w) = _pad_to(x, 16)
        padded = padded.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            flag = torch.full((len(padded),), float(rician), device=device)
            residual = model(padded, sigma, flag).float()[..., :h, :w]
        residual = constrain_residual(x, residual, sigma, rician, correlated)
        cleaned = (x - strength * residual)[:, 0].cpu().numpy()
    return cleaned * (hi - lo) + lo
