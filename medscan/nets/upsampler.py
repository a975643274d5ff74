"""Residual restoration on top of a classical interpolation: super-resolution and deblurring share one network.

The output is ``classical(x) + learned(x)``: the classical part (bicubic, linear, or the identity for
deblurring) carries the measured intensities, so the network only learns the missing detail, starts as
exactly the classical method (zero-initialised last layer) and trains fast on a CPU. The body works at
the input's resolution (or half of it, via pixel-unshuffle) and emits the output grid as sub-pixel
channels, which costs ``scale**2`` times less than convolving at the output resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BASES = ("bicubic", "linear", "identity")


class ResBlock(nn.Module):
    """EDSR block: conv-ReLU-conv with a scaled skip (no batch norm: it shifts intensities)."""

    def __init__(self, features: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Two convolutions with a scaled residual around them; same shape in and out (``condition`` unused)."""
        return x + self.res_scale * self.body(x)


def classical_upsample(x: torch.Tensor, scale: tuple[int, int], base: str) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, h*sy, w*sx) with pixel-centre alignment (align_corners=False, like a scanner grid)."""
    sy, sx = scale
    if base == "identity" or (sy, sx) == (1, 1):
        return x
    mode = {"bicubic": "bicubic", "linear": "bilinear"}[base]
    return F.interpolate(x, size=(x.shape[-2] * sy, x.shape[-1] * sx), mode=mode, align_corners=False)


def _to_grid(x: torch.Tensor, ry: int, rx: int) -> torch.Tensor:
    """(N, ry*rx, h, w) sub-pixel channels -> (N, 1, h*ry, w*rx); pixel-shuffle for unequal factors."""
    n, _, h, w = x.shape
    return x.reshape(n, ry, rx, h, w).permute(0, 3, 1, 4, 2).reshape(n, 1, h * ry, w * rx)


class ResidualUpsampler(nn.Module):
    """``scale`` (rows, cols) super-resolution or, with scale (1, 1), deblurring, as a residual over ``base``.

    ``unshuffle`` folds 2x2 input pixels into channels first so a same-size task (deblurring) runs its
    body at quarter cost with twice the receptive field. ``conditioned`` adds one input channel holding a
    per-image degradation level (the PSF sigma for deblurring; 0 means unknown, i.e. blind).
    """

    def __init__(self, scale: tuple[int, int] | list[int] = (2, 2), base: str = "bicubic", features: int = 32,
                 blocks: int = 6, unshuffle: int = 1, conditioned: bool = False) -> None:
        super().__init__()
        if base not in BASES:
            raise ValueError(f"unknown base {base!r}")
        self.scale = (int(scale[0]), int(scale[1]))
        self.base = base
        self.unshuffle = int(unshuffle)
        self.ry, self.rx = self.scale[0] * self.unshuffle, self.scale[1] * self.unshuffle
        self.conditioned = bool(conditioned)
        self.head = nn.Conv2d(self.unshuffle**2 + int(self.conditioned), features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(features) for _ in range(blocks)],
                                  nn.Conv2d(features, features, 3, padding=1))
        self.tail = nn.Conv2d(features, self.ry * self.rx, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as exactly the classical method
        nn.init.zeros_(self.tail.bias)

    @property
    def pad_multiple(self) -> int:
        """Height and width of an input must be a multiple of this (the pixel-unshuffle factor); pad to it."""
        return self.unshuffle

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 1, h, w)`` -> ``(N, 1, h*sy, w*sx)``: the classical up-sampling (``base``) plus the learned residual.

        Args:
            x: slices normalised to their intensity window; ``h`` and ``w`` multiples of :attr:`pad_multiple`.
            condition: ``(N,)`` a known degradation level (e.g. the PSF sigma in px) for a conditioned model; 0 when
                ``None`` (blind).
        """
        base = classical_upsample(x, self.scale, self.base)
        # Centre the input so the learned part does not depend on the window's offset.
        mean = x.mean(dim=(-2, -1), keepdim=True)
        z = x - mean
        if self.unshuffle > 1:
            z = F.pixel_unshuffle(z, self.unshuffle)
        if self.conditioned:
            level = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype) if condition is None else condition
            z = torch.cat([z, level.to(z.dtype).reshape(-1, 1, 1, 1).expand(-1, 1, *z.shape[-2:])], dim=1)
        features = self.head(z)
        features = features + self.body(features)
        return base + _to_grid(self.tail(features), self.ry, self.rx)
