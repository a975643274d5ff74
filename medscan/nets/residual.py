"""A backbone wrapped to predict a correction of its input: output = input + gain * backbone(features).

The gain starts at 0 (ReZero-style), so a fresh model is exactly the identity: training then only learns to
change what it can correct, instead of first unlearning the large random output of a fresh network.

With ``bands`` the backbone sees the slice split into band-pass images along the phase-encoding axis (-2):
band j keeps the k-space lines with |ky| / (H/2) in [bands[j], bands[j+1]) and the bands sum to the slice.
Motion moves whole blocks of phase-encoding lines, so in this split a ghost spread over the whole field of
view becomes a local misalignment between band images, which a small convolutional network can see and undo.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def phase_encode_bands(x: torch.Tensor, edges: Sequence[float]) -> torch.Tensor:
    """(N, 1, H, W) real slices -> (N, len(edges)-1, H, W) real band-pass images along axis -2 (sum = x)."""
    h = x.shape[-2]
    spectrum = torch.fft.fft(x.float(), dim=-2)
    ky = torch.fft.fftfreq(h, device=x.device).abs() * 2  # |ky| / (H/2), symmetric: band images stay real
    ky = ky.clamp(max=1.0 - 1e-6)
    masks = torch.stack([(ky >= lo) & (ky < hi) for lo, hi in itertools.pairwise(edges)])
    banded = spectrum * masks[None, :, :, None].to(spectrum.dtype)  # (N, B, H, W)
    return torch.fft.ifft(banded, dim=-2).real.to(x.dtype)


class ResidualCorrector(nn.Module):
    """Same-shape image-to-image correction (motion artefacts): the input plus a learned, gated residual."""

    adds_input = True  # callers must not add the input again

    def __init__(self, backbone: nn.Module, bands: Sequence[float] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.bands = tuple(float(b) for b in bands) if bands else None
        self.gain = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` slices -> corrected slices of the same shape: ``x + gain * backbone(features)``, where the
        features are the phase-encoding band-pass images when ``bands`` is set, else ``x`` itself.
        """
        features = phase_encode_bands(x, self.bands) if self.bands else x
        return x + self.gain * self.backbone(features)


def apply_model(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The still estimate: a ``residual_corrector`` adds its input itself, a ``plain`` backbone predicts the
    correction only."""
    out = model(x)
    return out if getattr(model, "adds_input", False) else x + out
