"""Build a network from the plain-dict config stored in its model card: one place knows the classes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ResidualDenoiser(nn.Module):
    """Predicts the noise (residual) from the noisy slice and a noise-level map, FFDNet-style.

    Feeding the estimated noise level as a channel lets one blind network behave like a family of
    non-blind ones; predicting the residual keeps the output anchored to the measured image.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        # Start as the identity (zero predicted noise, ReZero-style gain): training then only ever
        # learns to remove, instead of first unlearning the large random residuals of a fresh network.
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma_map = sigma.reshape(-1, 1, 1, 1).expand_as(noisy)
        return self.gain * self.backbone(torch.cat([noisy, sigma_map], dim=1))


def build_network(config: dict[str, Any]) -> nn.Module:
    """``config`` is the card's ``network`` entry: {"kind": ..., "backbone": {...MONAI kwargs}}."""
    kind = config["kind"]
    backbone_cfg = dict(config["backbone"])
    arch = backbone_cfg.pop("arch", "UNet")
    from monai.networks import nets  # imported lazily: MONAI is heavy and only needed for inference

    backbone = getattr(nets, arch)(**backbone_cfg)
    if kind == "residual_denoiser":
        return ResidualDenoiser(backbone)
    if kind == "plain":
        return backbone
    raise ValueError(f"unknown network kind {kind!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
