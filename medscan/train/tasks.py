"""Tasks: how a clean batch becomes (inputs, target), and the loss. A new model adds one here."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medscan.degrade import (
    add_ct_noise,
    add_gaussian,
    add_noncentral_chi,
    add_rician,
    blur_each,
    coil_noise_map,
    downsample,
    downsample_rows,
    estimate_noise_sd,
)

# Range of factors on a simulated low-dose realisation (made at 15-60 HU): about 8 to 90 HU of soft-tissue noise.
LOW_DOSE_SCALE = (0.5, 1.5)
MULTICOIL_CHANNELS = (2, 4, 8)  # receive channels of the simulated sum-of-squares magnitude images


class DenoiseTask:
    """Blind denoising over a range of noise levels and noise types (Gaussian, Rician, CT-textured)."""

    def __init__(self, sigma_range: tuple[float, float] = (0.005, 0.2), loss: str = "l1",
                 smooth: float = 0.0, smooth_range: tuple[float, float] = (0.3, 1.0), multicoil: float = 0.0) -> None:
        """``smooth``: share of clean patches first blurred by a Gaussian of ``smooth_range`` px, like a soft
        reconstruction kernel or thicker slices. Our few CT items are sharp or carry their own noise, so without
        it the model learns that flat tissue always has texture to keep (what it did when tried is on the model's
        docs page). ``multicoil``: share of the magnitude (Rician) samples given multi-coil non-central chi noise
        with a spatially varying level instead (``add_noncentral_chi``, ``coil_noise_map``)."""
        if loss not in ("l1", "mse"):
            raise ValueError(f"unknown loss {loss!r}")
        if not 0.0 <= smooth <= 1.0:
            raise ValueError(f"smooth must be a share between 0 and 1, not {smooth}")
        self.sigma_range, self.loss_kind = sigma_range, loss
        if not 0.0 <= multicoil <= 1.0:
            raise ValueError(f"multicoil must be a share between 0 and 1, not {multicoil}")
        self.smooth, self.smooth_range, self.multicoil = smooth, smooth_range, multicoil

    def soften(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A ``smooth`` share of the clean patches blurred by a Gaussian of width drawn from ``smooth_range``."""
        chosen = torch.rand(clean.shape[0], generator=generator) < self.smooth
        widths = torch.empty(clean.shape[0]).uniform_(*self.smooth_range, generator=generator)
        return blur_each(clean, torch.where(chosen, widths, 0.0))

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(noisy, its estimated noise level, Rician flag), clean. ``clean`` is (N, 1, H, W), or (N, 2, H, W) from a
        ``MixedBank``: channel 1 then holds simulated low-dose CT noise (NaN where there is none), which is scaled
        to between LOW_DOSE_SCALE times its exposure-control level and replaces the synthetic noise there."""
        realistic = None
        if clean.shape[1] == 2:
            clean, realistic = clean[:, :1], clean[:, 1:]
        if self.smooth:
            clean = self.soften(clean, generator)
        n = clean.shape[0]
        lo, hi = self.sigma_range
        # Log-uniform noise levels: low noise matters as much as high noise.
        sigma = torch.exp(torch.empty(n).uniform_(torch.log(torch.tensor(lo)), torch.log(torch.tensor(hi)),
                                                  generator=generator))
        kind = torch.randint(0, 10, (n,), generator=generator)
        noisy = add_gaussian(clean, sigma, generator)
        rician = add_rician(clean, sigma, generator)
        ct = add_ct_noise(clean, sigma, generator)
        is_rician = (kind >= 5) & (kind < 8)
        if self.multicoil:
            # Multi-coil magnitude data: non-central chi noise whose level varies over the image (g-factor).
            coils = int(MULTICOIL_CHANNELS[int(torch.randint(0, len(MULTICOIL_CHANNELS), (1,), generator=generator))])
            level = sigma.reshape(-1, 1, 1, 1) * coil_noise_map(clean.shape, generator)
            chosen = (torch.rand(n, generator=generator) < self.multicoil).reshape(-1, 1, 1, 1)
            rician = torch.where(chosen, add_noncentral_chi(clean, level, coils, generator), rician)
        noisy = torch.where(is_rician.reshape(-1, 1, 1, 1), rician, noisy)
        correlated = kind >= 8
        noisy = torch.where(correlated.reshape(-1, 1, 1, 1), ct, noisy)
        if realistic is not None:
            has = ~torch.isnan(realistic[:, 0, 0, 0])
            scale = torch.exp(torch.empty(n).uniform_(*torch.log(torch.tensor(LOW_DOSE_SCALE)).tolist(),
                                                      generator=generator)).reshape(-1, 1, 1, 1)
            low_dose = clean + scale * torch.nan_to_num(realistic)
            noisy = torch.where(has.reshape(-1, 1, 1, 1), low_dose, noisy)
            is_rician = is_rician & ~has
            correlated = correlated | has
        return (noisy, estimate_noise_sd(noisy, correlated), is_rician.float()), clean

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The denoised batch: the noisy input minus the noise the residual network predicts."""
        noisy, sigma, rician = inputs
        return noisy - model(noisy, sigma, rician)

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The configured pixel loss (``l1`` or ``mse``) against the clean batch."""
        return pixel_loss(self.loss_kind, prediction, target)


def pixel_loss(kind: str, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 trains robustly from scratch; MSE is what PSNR measures, so fine-tuning ends on it."""
    if kind == "mse":
        return F.mse_loss(prediction, target)
    if kind == "l1":
        return F.l1_loss(prediction, target)
    raise ValueError(f"unknown loss {kind!r} (l1 or mse)")


TASKS = {"denoise": DenoiseTask}


CLEAN_RANGE = (-0.5, 2.0)  # a near-empty slice's percentile window can blow a few pixels up to 1e6


class SharpenTask:
    """Blind deblurring: Gaussian PSF of a random width (scanner/reconstruction blur) plus mild noise.

    The network is told the PSF sigma when it is known (like Richardson-Lucy) and 0 for a ``blind_fraction`` of
    the batch, so one model serves a user who knows the scanner's PSF and one who does not.
    """

    def __init__(self, sigma_range: tuple[float, float] = (0.5, 2.5), noise_range: tuple[float, float] = (0.0, 0.02),
                 blind_fraction: float = 0.25):
        self.sigma_range = sigma_range
        self.noise_range = noise_range
        self.blind_fraction = blind_fraction

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((blurred and noisy batch, the PSF sigma told or 0 when blind), clean batch)."""
        clean = clean.clamp(*CLEAN_RANGE)
        n = clean.shape[0]
        lo, hi = self.sigma_range
        sigmas = torch.empty(n).uniform_(lo, hi, generator=generator)
        blurred = blur_each(clean, sigmas)
        noise = torch.empty(n).uniform_(*self.noise_range, generator=generator)
        blind = torch.rand(n, generator=generator) < self.blind_fraction
        return (add_gaussian(blurred, noise, generator), torch.where(blind, 0.0, sigmas)), clean

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's deblurred batch from (blurred batch, PSF sigma)."""
        return model(*inputs)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 against the clean batch."""
        return F.l1_loss(prediction, target)


class SuperResolveTask:
    """Super-resolution from what a coarser acquisition measures: area averages over the larger voxel.

    ``axis="in-plane"`` averages ``scale`` x ``scale`` blocks (a coarser matrix); ``axis="through-plane"``
    averages ``scale`` rows only (thick slices seen in a reformatted view, a box slice profile).
    """

    def __init__(self, scale: int = 2, axis: str = "in-plane", noise_range: tuple[float, float] = (0.0, 0.005)):
        if axis not in ("in-plane", "through-plane"):
            raise ValueError(f"unknown axis {axis!r}")
        self.scale, self.axis, self.noise_range = scale, axis, noise_range

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((the coarser acquisition of the batch, with mild noise),), clean batch."""
        clean = clean.clamp(*CLEAN_RANGE)
        low = downsample(clean, self.scale) if self.axis == "in-plane" else downsample_rows(clean, self.scale)
        noise = torch.empty(clean.shape[0]).uniform_(*self.noise_range, generator=generator)
        return (add_gaussian(low, noise, generator),), clean

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's refined batch from the coarse one."""
        return model(inputs[0])

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 against the clean batch."""
        return F.l1_loss(prediction, target)


TASKS.update({"sharpen": SharpenTask, "super_resolve": SuperResolveTask})
