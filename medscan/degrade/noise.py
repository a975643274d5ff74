"""Noise models: Gaussian (CT after reconstruction, to first order), Rician (MR magnitude),
Poisson+Gaussian (photon counting plus electronics) and correlated CT noise (filtered back-projection
gives noise a ramp-shaped power spectrum, not white noise)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _per_image(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)


def add_gaussian(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``x`` (N, 1, H, W) plus white Gaussian noise of standard deviation ``sigma`` (one value, or one per image)."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + _per_image(sigma, x) * noise


def add_rician(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Magnitude of a complex signal with Gaussian noise in both channels: the MR magnitude image."""
    s = _per_image(sigma, x)
    real = x + s * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    imag = s * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.sqrt(real**2 + imag**2)


def coil_noise_map(shape: tuple[int, ...], generator: torch.Generator | None = None,
                   spread: float = 0.35) -> torch.Tensor:
    """A smooth relative noise-level map (N, 1, H, W) with mean 1 per image, for MR whose noise varies in space.

    Parallel imaging amplifies noise by the g-factor, highest where the coils' sensitivities overlap least (often
    the centre), and a sum of coil images has less noise where many coils see the tissue. Both are slow: a random
    field on a 4 x 4 grid, interpolated and exponentiated (``spread`` is its log-standard deviation), stands for them.
    """
    n, _, h, w = shape
    coarse = torch.randn((n, 1, 4, 4), generator=generator) * spread
    field = torch.exp(F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False))
    return field / field.mean(dim=(-2, -1), keepdim=True)


def add_noncentral_chi(x: torch.Tensor, sigma: float | torch.Tensor, coils: int = 4,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum-of-squares magnitude of ``coils`` receive channels, each carrying ``x / sqrt(coils)`` and complex
    Gaussian noise of ``sigma`` per component (a scalar, one per image, or a (N, 1, H, W) map): the non-central chi
    noise of multi-coil MR. With one coil it is ``add_rician``; more coils lift the dark background further.
    """
    s = sigma if torch.is_tensor(sigma) and sigma.dim() == 4 else _per_image(sigma, x)
    signal = x / math.sqrt(coils)
    power = torch.zeros_like(x)
    for _ in range(coils):
        real = signal + s * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        imag = s * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        power = power + real**2 + imag**2
    return torch.sqrt(power)


def add_poisson_gaussian(
    x: torch.Tensor,
    photons: float | torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Signal-dependent shot noise (``photons`` counts at intensity 1) plus read-out Gaussian noise."""
    lam = x.clamp(min=0) * _per_image(photons, x)
    shot = torch.poisson(lam, generator=generator) / _per_image(photons, x)
    return add_gaussian(shot, sigma, generator)


def add_ct_noise(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Low-dose CT texture: white noise shaped by a ramp-like filter, scaled to standard deviation ``sigma``.

    Reduced dose raises this noise by sqrt(1/dose); callers choose sigma from the dose they simulate.
    """
    white = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    spectrum = torch.fft.rfft2(white)
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device).abs().reshape(-1, 1)
    fx = torch.fft.rfftfreq(x.shape[-1], device=x.device).reshape(1, -1)
    radius = torch.sqrt(fx**2 + fy**2)
    ramp = radius * torch.exp(-((radius / 0.35) ** 2))  # ramp filter apodised like a soft kernel
    shaped = torch.fft.irfft2(spectrum * ramp, s=x.shape[-2:])
    shaped = shaped / shaped.std(dim=(-2, -1), keepdim=True).clamp(min=1e-8)
    return x + _per_image(sigma, x) * shaped


def estimate_sigma(x: torch.Tensor) -> torch.Tensor:
    """Blind noise level per image: median absolute diagonal Haar detail / 0.6745 (Donoho's MAD).

    Fine-scale diagonal detail is mostly noise in medical images, so this needs no clean reference.
    Returns a tensor shaped (N,).
    """
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    y = x[..., :h, :w]
    detail = (y[..., 0::2, 0::2] - y[..., 0::2, 1::2] - y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 2
    flat = detail.reshape(detail.shape[0], -1).abs()
    return flat.median(dim=1).values / 0.6745



# Flat-region noise estimate: standard deviation of BLOCK_PX x BLOCK_PX blocks, the FLAT_QUANTILE-th quantile over
# the blocks that carry noise at all, scaled by FLAT_GAIN (calibrated so that white noise on real slices reads true).
BLOCK_PX = 8
DETREND_PX = 4.0
FLAT_QUANTILE = 0.2
FLAT_GAIN = 1.05
# Blocks flatter than this share of the white-noise estimate hold no noise (air clipped at -1024 HU, zero-filled
# background after skull stripping) and are left out.
NOISELESS_SHARE = 0.3
# Correlated CT noise reads at most this many times its finest-scale estimate (the softest kernel simulated reads
# 0.26-0.34 of its sd there); above it, the flat blocks of a quiet scan read anatomy, not noise, and the denoiser
# told so took bone texture and vessel edges.
CORRELATED_MAX_RATIO = 3.5
# Blocks whose mean lies in the lowest tenth of the image's range are background (air, outside the head).
BACKGROUND_SHARE = 0.1


def estimate_flat_sd(x: torch.Tensor) -> torch.Tensor:
    """Noise standard deviation per image (N, 1, H, W) -> (N,) from its flattest blocks, whatever the noise's spectrum.

    The pixel-to-pixel differences that ``estimate_sigma`` reads see only the finest scale: for white noise that
    is all of it, but CT noise after filtered back-projection is correlated (its power peaks at mid
    frequencies), and the finest scale holds a fraction of it. The spread of the flattest 8 x 8 blocks (fat, liver,
    fluid, white matter) holds nearly all of it, as a reader's ROI in flat tissue does.
    """
    white = estimate_sigma(x)
    n = x.shape[0]
    h, w = (x.shape[-2] // BLOCK_PX) * BLOCK_PX, (x.shape[-1] // BLOCK_PX) * BLOCK_PX
    if min(h, w) < 4 * BLOCK_PX:
        return white
    from medscan.degrade.blur import gaussian_blur

    y = x[..., :h, :w].double()
    # Smooth anatomy out first (a gradient across a block is not noise); what passes holds nearly all of the
    # power of CT noise, which peaks at mid frequencies, and a known share of white noise (in FLAT_GAIN).
    detail = y - gaussian_blur(y, DETREND_PX)
    mean = F.avg_pool2d(y, BLOCK_PX)
    local = F.avg_pool2d(detail, BLOCK_PX)
    var = (F.avg_pool2d(detail * detail, BLOCK_PX) - local * local).clamp(min=0) * (BLOCK_PX**2 / (BLOCK_PX**2 - 1))
    sd, mean = var.sqrt().reshape(n, -1), mean.reshape(n, -1)
    out = torch.empty(n, dtype=x.dtype)
    for i in range(n):
        lo, hi = torch.quantile(mean[i], 0.01), torch.quantile(mean[i], 0.99)
        # Inside the subject: the air around a CT patient is flat but gets less noise than tissue behind bone
        # and organs, and an MR background is Rayleigh noise with a lower spread than the noise in the tissue.
        inside = mean[i] > lo + BACKGROUND_SHARE * (hi - lo)
        noisy = sd[i][inside & (sd[i] > NOISELESS_SHARE * white[i])]
        out[i] = FLAT_GAIN * torch.quantile(noisy, FLAT_QUANTILE) if noisy.numel() >= 16 else white[i]
    return out.to(x.device)


def estimate_noise_sd(x: torch.Tensor, correlated: bool | torch.Tensor = False) -> torch.Tensor:
    """The noise level each image (N, 1, H, W) is denoised for, (N,).

    ``correlated`` (one flag, or one per image): the noise may be spatially correlated, as CT noise after filtered
    back-projection always is; then the larger of the finest-scale (``estimate_sigma``) and the flat-region
    estimate (``estimate_flat_sd``), which reads the noise's full standard deviation where the finest scale holds a
    fraction of it. Otherwise the finest-scale estimate alone: MR noise is white in k-space and so in the image,
    and in a brain at low noise no 8 x 8 block is flat enough to read it (they read cortex as noise).
    """
    white = estimate_sigma(x)
    flags = torch.as_tensor(correlated, dtype=torch.bool).reshape(-1).expand(x.shape[0])
    if not bool(flags.any()):
        return white
    flat = torch.zeros_like(white)
    flat[flags] = estimate_flat_sd(x[flags])
    flat = torch.minimum(flat, CORRELATED_MAX_RATIO * white)
    return torch.where(flags, torch.maximum(white, flat), white)


# Rayleigh noise (the background of a magnitude image) has mean / sd = sqrt(pi/2) / sqrt(2 - pi/2) = 1.91; the
# non-central chi of a multi-coil sum of squares more. Gaussian noise about zero has a mean near 0.
MAGNITUDE_RATIO_RANGE = (1.3, 8.0)
MIN_BACKGROUND_BLOCKS = 16


def looks_like_magnitude(volume: np.ndarray, max_planes: int = 8) -> bool:
    """Whether (..., H, W) data carry magnitude (Rician / non-central chi) noise: no negative values, and a dark
    background whose blocks have the mean-to-spread ratio of Rayleigh noise.

    Data that were not a plain magnitude image (after bias correction, skull stripping with zero fill,
    normalisation to zero mean, or with Gaussian noise added by a research pipeline) fail one of the two and are
    treated as Gaussian: removing a Rician noise floor there would move their background.
    """
    planes = np.asarray(volume, np.float32).reshape(-1, *np.shape(volume)[-2:])
    if planes.size == 0 or float(planes.min()) < 0:
        return False
    chosen = planes[np.linspace(0, len(planes) - 1, min(max_planes, len(planes))).round().astype(int)]
    b = BLOCK_PX
    h, w = (chosen.shape[1] // b) * b, (chosen.shape[2] // b) * b
    blocks = chosen[:, :h, :w].reshape(len(chosen), h // b, b, w // b, b).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(-1, b * b).astype(np.float64)
    mean, sd = blocks.mean(axis=1), blocks.std(axis=1, ddof=1)
    lo, hi = np.percentile(mean, [1, 99])
    background = (mean <= lo + BACKGROUND_SHARE * (hi - lo)) & (sd > 0)
    if background.sum() < MIN_BACKGROUND_BLOCKS:
        return False  # no noisy background to read (zero-filled or a field of view filled by the subject)
    ratio = float(np.median(mean[background] / sd[background]))
    return MAGNITUDE_RATIO_RANGE[0] <= ratio <= MAGNITUDE_RATIO_RANGE[1]
