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

    def __init__(self, backbone: nn.Module, in_channels: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        self.in_channels = in_channels
        # Start as the identity (zero predicted noise, ReZero-style gain): training then only ever
        # learns to remove, instead of first unlearning the large random residuals of a fresh network.
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor, rician: torch.Tensor | None = None) -> torch.Tensor:
        """``rician`` (N,) is 1 for magnitude images (MR), whose noise is not zero-mean in dark regions.

        A blind model cannot tell the two apart in a dark patch, so a three-channel model is told; the
        flag enters as ``flag * sigma`` so that a bias-free backbone stays scale-equivariant.
        """
        sigma_map = sigma.reshape(-1, 1, 1, 1).expand_as(noisy)
        channels = [noisy, sigma_map]
        if self.in_channels == 3:
            flag = torch.zeros(len(noisy), device=noisy.device) if rician is None else rician.to(noisy)
            channels.append(flag.reshape(-1, 1, 1, 1) * sigma_map)
        return self.gain * self.backbone(torch.cat(channels, dim=1))


def build_network(config: dict[str, Any]) -> nn.Module:
    """``config`` is the card's ``network`` entry: {"kind": ..., "backbone": {...MONAI kwargs}}."""
    kind = config["kind"]
    if kind == "residual_upsampler":  # super-resolve and sharpen: {"kind": ..., "args": {scale, base, ...}}
        from medscan.nets.upsampler import ResidualUpsampler

        return ResidualUpsampler(**config.get("args", {}))
    if kind == "esrgan_generator":  # GAN super-resolve: {"kind": ..., "args": {scale, features, blocks, growth}}
        from medscan.nets.esrgan import ESRGANGenerator

        return ESRGANGenerator(**config.get("args", {}))
    if kind == "translator_generator":  # unpaired MR<->CT (pseudo-CT): {"kind": ..., "args": {features, blocks}}
        from medscan.nets.cyclegan import TranslatorGenerator

        return TranslatorGenerator(**config.get("args", {}))
    if kind == "translator_unet":  # contrast translation: {"kind": ..., "args": {features, levels}}
        from medscan.nets.translator import TranslatorUNet

        return TranslatorUNet(**config.get("args", {}))
    if kind == "slice_classifier":  # explanations: {"kind": ..., "args": {channels}}
        from medscan.nets.classifier import SliceClassifier

        return SliceClassifier(**config.get("args", {}))
    if kind == "synth_denoiser":  # synthetic slices: {"kind": ..., "args": {channels, attention, unshuffle, ...}}
        from medscan.nets.diffusion import ConditionalDenoiser

        return ConditionalDenoiser(**config.get("args", {}))
    backbone_cfg = dict(config["backbone"])
    arch = backbone_cfg.pop("arch", "UNet")
    from monai.networks import nets  # imported lazily: MONAI is heavy and only needed for inference

    backbone = getattr(nets, arch)(**backbone_cfg)
    if kind == "residual_denoiser":
        return ResidualDenoiser(backbone, in_channels=int(config["backbone"].get("in_channels", 2)))
    if kind == "plain":
        return backbone
    if kind == "residual_corrector":  # motion correction: input + gain * backbone(input or its k-space bands)
        from medscan.nets.residual import ResidualCorrector

        return ResidualCorrector(backbone, **config.get("args", {}))
    raise ValueError(f"unknown network kind {kind!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not), as the model card records it."""
    return sum(p.numel() for p in model.parameters())
