"""ESRGAN-style super-resolution: a residual-in-residual dense generator, a spectral-norm patch discriminator
and a feature extractor taken from a network trained here (the shipped denoiser's encoder).

The generator is kept small for CPU training and inference (32 features, a few RRDBs, growth 16). Like
``ResidualUpsampler`` it adds its output to a bicubic up-sampling and its last layer starts at zero, so it begins
as bicubic and the short L1 phase only has to learn detail; the adversarial phase then adds the texture the
L1 optimum averages away. Its interface (``scale``, ``pad_multiple``, ``conditioned``, ``forward(x, condition)``)
matches ``ResidualUpsampler`` so ``medscan.ops.restore.run_planes`` runs either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from medscan.nets.upsampler import BASES, classical_upsample


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing all earlier feature maps; output scaled by 0.2 onto the input."""

    def __init__(self, features: int, growth: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1)
                                   for i in range(5))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Densely connected convolutions; returns ``x`` plus the scaled output of the last (shape of ``x``)."""
        maps = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(maps, dim=1))
            if i < 4:
                maps.append(F.leaky_relu(y, 0.2))
        return x + self.res_scale * y


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks with a scaled outer skip (no batch norm)."""

    def __init__(self, features: int, growth: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[DenseBlock(features, growth) for _ in range(3)])
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Three dense blocks with a scaled residual around them; same shape in and out."""
        return x + self.res_scale * self.blocks(x)


class ESRGANGenerator(nn.Module):
    """In-plane x2 / x4 generator: RRDB trunk at the input resolution, pixel-shuffle x2 stages, base + detail."""

    def __init__(self, scale: int = 4, features: int = 32, blocks: int = 3, growth: int = 16,
                 base: str = "bicubic") -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"ESRGAN generator scales by 2 or 4, not {scale}")
        if base not in BASES:
            raise ValueError(f"unknown base {base!r}")
        self.scale = (int(scale), int(scale))
        self.base = base
        self.pad_multiple = 1
        self.conditioned = False
        self.head = nn.Conv2d(1, features, 3, padding=1)
        self.trunk = nn.Sequential(*[RRDB(features, growth) for _ in range(blocks)],
                                   nn.Conv2d(features, features, 3, padding=1))
        self.up = nn.ModuleList(nn.Conv2d(features, 4 * features, 3, padding=1) for _ in range(scale // 2))
        self.refine = nn.Conv2d(features, features, 3, padding=1)
        self.tail = nn.Conv2d(features, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as exactly the classical up-sampling
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 1, h, w)`` slices -> ``(N, 1, h*scale, w*scale)``: the classical up-sampling plus the learned detail.

        Args:
            x: slices normalised to their intensity window.
            condition: unused; accepted so that every up-sampler is called the same way.
        """
        base = classical_upsample(x, self.scale, self.base)
        z = x - x.mean(dim=(-2, -1), keepdim=True)  # the learned part does not depend on the window's offset
        features = self.head(z)
        features = features + self.trunk(features)
        for conv in self.up:
            features = F.leaky_relu(F.pixel_shuffle(conv(features), 2), 0.2)
        return base + self.tail(F.leaky_relu(self.refine(features), 0.2))


class PatchDiscriminator(nn.Module):
    """Spectral-norm convolutional critic: one real/fake logit per receptive-field patch (about 30 px).

    ``in_channels`` > 1 makes it a conditional (pix2pix) critic: the candidate image with its condition planes.
    """

    def __init__(self, features: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        f = features

        def conv(cin: int, cout: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, 3, stride=stride, padding=1))

        self.body = nn.Sequential(conv(in_channels, f, 1), nn.LeakyReLU(0.2), conv(f, f, 2), nn.LeakyReLU(0.2),
                                  conv(f, 2 * f, 1), nn.LeakyReLU(0.2), conv(2 * f, 2 * f, 2), nn.LeakyReLU(0.2),
                                  conv(2 * f, 4 * f, 1), nn.LeakyReLU(0.2), conv(4 * f, 4 * f, 2),
                                  nn.LeakyReLU(0.2), conv(4 * f, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` slices in 0..1 -> ``(N, 1, H', W')`` real/fake logits, one per patch."""
        return self.body(x - 0.5)


class DenoiserFeatures(nn.Module):
    """The first two encoder stages of the shipped denoiser (``denoise_unet2d``), frozen, as a feature loss.

    The denoiser was trained here to tell noise from structure, so its early features respond to edges and
    fine texture at 1/2 and 1/4 resolution: a perceptual-style loss with no downloaded weights. It is fed
    the image with a zero noise-level map (a bias-free network: no noise to explain, so it only describes).
    """

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        unet = denoiser.backbone.model
        self.stage1 = unet[0]
        self.stage2 = unet[1].submodule[0]
        self.in_channels = int(getattr(denoiser, "in_channels", 2))
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 1, H, W)`` slices -> the feature maps of the denoiser's first two encoder stages (the noise-level
        channels are fed zeros).
        """
        zeros = torch.zeros_like(x).expand(-1, self.in_channels - 1, -1, -1)
        f1 = self.stage1(torch.cat([x, zeros], dim=1))
        return [f1, self.stage2(f1)]


def feature_loss(extractor: DenoiserFeatures, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of the extractor's features, each stage scaled by the target's mean feature magnitude."""
    total = prediction.new_zeros(())
    with torch.no_grad():
        wanted = extractor(target)
    for got, want in zip(extractor(prediction), wanted, strict=True):
        total = total + F.l1_loss(got, want) / (want.abs().mean() + 1e-6)
    return total / len(wanted)
