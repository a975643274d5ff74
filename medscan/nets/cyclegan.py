"""Unpaired MR<->CT translation (CycleGAN-style, EXPERIMENTAL): a small ResNet generator and the fixed
normalisations both directions are trained and run with.

No paired CT+MR exists in this project, so the mapping is learned from two unrelated sets of slices with
adversarial + cycle-consistency losses (``scripts/train_pseudo_ct.py``); the discriminator is the shipped
``medscan.nets.esrgan.PatchDiscriminator``. One definition of the normalisation serves training and inference:

* CT: a fixed HU window ``CT_WINDOW_HU`` mapped linearly to [-1, 1] (clipped), so the output converts back to HU.
* MR: the volume's own 0.5-99.5 percentile window (MR units are arbitrary) mapped to [-1, 1].
* Pixel size: slices are resampled to ``GRID_MM`` in-plane before either network sees them.

The generator has no normalisation layers: it is trained on crops and run on whole slices, and per-image
statistics (instance norm) would differ between the two (a whole slice is mostly air).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CT_WINDOW_HU = (-1000.0, 1500.0)  # -> [-1, 1]; air is -1, water -0.2
GRID_MM = 2.0
MR_PERCENTILES = (0.5, 99.5)


def ct_to_unit(hu: np.ndarray) -> np.ndarray:
    """HU -> [-1, 1] over the fixed window (clipped)."""
    lo, hi = CT_WINDOW_HU
    return np.clip((np.asarray(hu, np.float32) - lo) / (hi - lo) * 2 - 1, -1, 1).astype(np.float32)


def unit_to_ct(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> HU over the fixed window."""
    lo, hi = CT_WINDOW_HU
    return ((np.clip(np.asarray(x, np.float32), -1, 1) + 1) / 2 * (hi - lo) + lo).astype(np.float32)


def mr_window(volume: np.ndarray) -> tuple[float, float]:
    """The MR volume's own window: percentiles of the whole volume (a slice window would flicker slice to slice)."""
    lo, hi = np.percentile(np.asarray(volume, np.float32), MR_PERCENTILES)
    return float(lo), float(max(hi, lo + 1e-6))


def mr_to_unit(volume: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """MR -> [-1, 1] over ``window`` (default: the volume's own percentile window), clipped."""
    lo, hi = window or mr_window(volume)
    return np.clip((np.asarray(volume, np.float32) - lo) / (hi - lo) * 2 - 1, -1, 1).astype(np.float32)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.b(F.leaky_relu(self.a(x), 0.2))


class TranslatorGenerator(nn.Module):
    """CycleGAN ResNet generator, small: 7x7 head, two stride-2 stages, ``blocks`` residual blocks at 1/4
    resolution (receptive field of about 100 px = 200 mm at 2 mm), two upsampling stages, tanh to [-1, 1].

    Inputs must have sides that are multiples of ``pad_multiple`` (callers pad).
    """

    pad_multiple = 4

    def __init__(self, features: int = 16, blocks: int = 6) -> None:
        super().__init__()
        f = features

        def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, padding_mode="reflect")

        self.head = conv(1, f, 7)
        self.down = nn.ModuleList([conv(f, 2 * f, 3, 2), conv(2 * f, 4 * f, 3, 2)])
        self.trunk = nn.Sequential(*[_Residual(4 * f) for _ in range(blocks)])
        self.up = nn.ModuleList([conv(4 * f, 2 * f), conv(2 * f, f)])
        self.tail = conv(f, 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` slices scaled to -1..1 -> the translated slices, same shape, in -1..1 (tanh)."""
        h = F.leaky_relu(self.head(x), 0.2)
        for layer in self.down:
            h = F.leaky_relu(layer(h), 0.2)
        h = self.trunk(h)
        for layer in self.up:
            h = F.leaky_relu(layer(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
        return torch.tanh(self.tail(h))
