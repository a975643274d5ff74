"""Down-sampling as a scanner does it: averaging over the larger voxel, not dropping samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """In-plane: (N, 1, H, W) -> (N, 1, H/f, W/f) by area averaging (H, W multiples of f)."""
    return F.avg_pool2d(x, factor)


def downsample_slices(volume: torch.Tensor, factor: int) -> torch.Tensor:
    """Through-plane: (K, H, W) -> (K/f, H, W) by averaging f neighbouring slices (a thick slice)."""
    k = (volume.shape[0] // factor) * factor
    return volume[:k].reshape(k // factor, factor, *volume.shape[1:]).mean(dim=1)


def downsample_rows(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Through-plane on a reformatted slice: (N, 1, H, W) -> (N, 1, H/f, W), each row the box average of f rows.

    A thick slice integrates signal over its whole thickness (a box slice profile), so pairs of thin rows are
    averaged, not sub-sampled; the in-plane axis (W) keeps its resolution.
    """
    return F.avg_pool2d(x, (factor, 1))
