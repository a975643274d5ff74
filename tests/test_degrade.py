"""Degradations are seeded and do what their physics says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscan.degrade import (
    add_ct_noise,
    add_gaussian,
    add_poisson_gaussian,
    add_rician,
    downsample,
    downsample_slices,
    estimate_sigma,
    gaussian_blur,
    gaussian_kernel,
)


def smooth_image(n: int = 128) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    return (0.3 + 0.4 * torch.sin(3 * x) * torch.cos(2 * y)).reshape(1, 1, n, n)


def test_gaussian_noise_has_the_requested_level_and_is_reproducible() -> None:
    clean = smooth_image().repeat(4, 1, 1, 1)
    sigma = torch.tensor([0.01, 0.05, 0.1, 0.2])
    noisy = add_gaussian(clean, sigma, torch.Generator().manual_seed(3))
    measured = (noisy - clean).std(dim=(1, 2, 3))
    np.testing.assert_allclose(measured.numpy(), sigma.numpy(), rtol=0.05)
    again = add_gaussian(clean, sigma, torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)


def test_rician_noise_biases_dark_regions_upwards() -> None:
    dark = torch.zeros(1, 1, 128, 128)
    noisy = add_rician(dark, 0.1, torch.Generator().manual_seed(0))
    # The magnitude of pure complex noise follows a Rayleigh law: mean sigma*sqrt(pi/2).
    assert float(noisy.mean()) == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.05)
    assert float(noisy.min()) >= 0


def test_poisson_noise_grows_with_signal() -> None:
    image = torch.cat([torch.full((1, 1, 64, 64), 0.1), torch.full((1, 1, 64, 64), 0.9)])
    noisy = add_poisson_gaussian(image, 200.0, 0.0, torch.Generator().manual_seed(0))
    low, high = (noisy - image).std(dim=(1, 2, 3))
    assert float(high / low) == pytest.approx(3.0, rel=0.15)  # sqrt(0.9 / 0.1)


def test_ct_noise_is_correlated_not_white() -> None:
    flat = torch.zeros(1, 1, 128, 128)
    noise = add_ct_noise(flat, 0.05, torch.Generator().manual_seed(0))[0, 0]
    assert float(noise.std()) == pytest.approx(0.05, rel=0.02)
    white = add_gaussian(flat, 0.05, torch.Generator().manual_seed(0))[0, 0]
    def neighbour_corr(n):
        return float(torch.corrcoef(torch.stack([n[:, :-1].flatten(), n[:, 1:].flatten()]))[0, 1])
    assert abs(neighbour_corr(white)) < 0.05 and abs(neighbour_corr(noise)) > 0.2


def test_blind_noise_estimate_is_close_to_the_truth() -> None:
    clean = smooth_image(256).repeat(3, 1, 1, 1)
    sigma = torch.tensor([0.02, 0.05, 0.1])
    estimate = estimate_sigma(add_gaussian(clean, sigma, torch.Generator().manual_seed(1)))
    np.testing.assert_allclose(estimate.numpy(), sigma.numpy(), rtol=0.08)


def test_blur_and_downsampling() -> None:
    noisy = add_gaussian(smooth_image(), 0.1, torch.Generator().manual_seed(0))
    blurred = gaussian_blur(noisy, 2.0)
    assert blurred.shape == noisy.shape and float(blurred.std()) < float(noisy.std())
    assert torch.allclose(blurred.mean(), noisy.mean(), atol=1e-3)  # a normalised PSF keeps the mean
    kernel = gaussian_kernel(2.0)  # the two 1-D passes equal one 2-D convolution with the PSF
    pad = kernel.shape[-1] // 2
    direct = torch.nn.functional.conv2d(torch.nn.functional.pad(noisy, (pad,) * 4, mode="reflect"), kernel[None, None])
    torch.testing.assert_close(blurred, direct, rtol=1e-4, atol=1e-5)
    assert downsample(noisy, 2).shape == (1, 1, 64, 64)
    volume = torch.arange(12.0).reshape(6, 1, 2).expand(6, 2, 2)
    thick = downsample_slices(volume, 3)
    assert thick.shape == (2, 2, 2) and float(thick[0, 0, 0]) == pytest.approx((0 + 2 + 4) / 3)


@pytest.mark.parametrize("shape", [(3, 1, 96, 80), (2, 1, 5, 40)], ids=["reflect", "replicate-border"])
def test_blur_is_the_same_on_scipy_and_in_autograd(shape) -> None:
    """The CPU inference path (SciPy) and the differentiable path (conv2d) blur alike, borders included."""
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fast = gaussian_blur(image, 2.0)
    differentiable = gaussian_blur(image.clone().requires_grad_(True), 2.0)
    assert differentiable.requires_grad and fast.dtype == image.dtype
    torch.testing.assert_close(fast, differentiable.detach(), rtol=0, atol=1e-12)
