"""Masked filling (inpainting) with a plain U-Net: a cheap classical fill first, the network corrects it, measured
pixels stay.

Each hole is filled by a push-pull pyramid (a smooth membrane-like fill, as cheap as a few poolings) and the U-Net
gets the slice and its neighbours (z-1, z+1) each with its own mask channel, so it can copy anatomy across slices
where the neighbours were measured and must work from the slice alone where they were not. The network predicts
a correction to the classical fill and the result replaces only the masked pixels: every measured pixel is
returned bit-identical. (Missing whole slices are filled along optical flow instead: ``slice_flow``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def push_pull_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels of (N, C, H, W) ``image`` from the known ones (``known`` 0/1, same shape).

    Push: average the known pixels down a pyramid until every coarse pixel has support. Pull: going back up,
    each unknown pixel takes the bilinear upsample of the coarser filled level; known pixels keep their value.
    """
    known = known.to(image.dtype)
    h, w = image.shape[-2:]
    if min(h, w) <= 2:  # the top of the pyramid: the mean of what is known (0 when nothing is)
        total = known.sum(dim=(-2, -1), keepdim=True)
        mean = (image * known).sum(dim=(-2, -1), keepdim=True) / total.clamp(min=1)
        return torch.where(known > 0, image, mean.expand_as(image))
    weight = F.avg_pool2d(known, 2, ceil_mode=True)
    coarse = F.avg_pool2d(image * known, 2, ceil_mode=True) / weight.clamp(min=1e-6)
    coarse = push_pull_fill(coarse, (weight > 0).to(image.dtype))
    up = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return torch.where(known > 0, image, up)


def masked_fill(model: torch.nn.Module, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images (channel C//2 the slice to fill, the others its neighbours) and their masks
    (True = missing) -> (N, 1, H, W): measured pixels of the centre slice copied, masked ones generated.

    H and W must be multiples of the U-Net's total stride (callers pad).
    """
    mask = mask.bool()
    centre = image.shape[1] // 2
    base = push_pull_fill(torch.where(mask, torch.zeros_like(image), image), ~mask)
    # Centre on the measured mean so the correction does not depend on the window's offset.
    known = (~mask[:, centre:centre + 1]).to(image.dtype)
    offset = (base[:, centre:centre + 1] * known).sum(dim=(-2, -1), keepdim=True) / known.sum(
        dim=(-2, -1), keepdim=True).clamp(min=1)
    correction = model(torch.cat([base - offset, mask.to(image.dtype)], dim=1))
    generated = base[:, centre:centre + 1] + correction
    return torch.where(mask[:, centre:centre + 1], generated, image[:, centre:centre + 1])
