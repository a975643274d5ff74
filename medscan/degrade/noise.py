"""Noise models: Gaussian (CT after reconstruction, to first order), Rician (MR magnitude),
Poisson+Gaussian (photon counting plus electronics) and correlated CT noise (filtered back-projection
gives noise a ramp-shaped power spectrum, not white noise)."""

from __future__ import annotations

import torch


def _per_image(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)


def add_gaussian(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
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

