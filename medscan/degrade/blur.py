"""Blur by a known point-spread function: the input of deblurring (sharpen) training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 2-D Gaussian PSF (sigma in pixels), size 2*ceil(3 sigma)+1."""
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = torch.outer(g, g)
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Convolve (N, 1, H, W) with a Gaussian PSF; reflect padding keeps the image size and edges honest."""
    kernel = gaussian_kernel(sigma, x.device).to(x.dtype)
    pad = kernel.shape[-1] // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, kernel[None, None])
