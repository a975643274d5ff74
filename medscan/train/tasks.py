"""Tasks: how a clean batch becomes (inputs, target), and the loss. A new model adds one here."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medscan.degrade import add_ct_noise, add_gaussian, add_rician, estimate_sigma


class DenoiseTask:
    """Blind denoising over a range of noise levels and noise types (Gaussian, Rician, CT-textured)."""

    def __init__(self, sigma_range: tuple[float, float] = (0.005, 0.2)) -> None:
        self.sigma_range = sigma_range

    def make_batch(
        self, clean: torch.Tensor, generator: torch.Generator
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
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
        noisy = torch.where(is_rician.reshape(-1, 1, 1, 1), rician, noisy)
        noisy = torch.where((kind >= 8).reshape(-1, 1, 1, 1), ct, noisy)
        return (noisy, estimate_sigma(noisy), is_rician.float()), clean

    @staticmethod
    def predict(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        noisy, sigma, rician = inputs
        return noisy - model(noisy, sigma, rician)

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(prediction, target)


TASKS = {"denoise": DenoiseTask}
