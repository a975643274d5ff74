"""A missing slice from the measured slices either side of it, moved along their optical flow.

Interpolating intensities along the slice axis (linear, cubic) cross-fades two slices: where anatomy moves
between them (an edge that shifts a few pixels from one 5 mm slice to the next) it draws both positions at half
contrast. Optical flow between the two measured slices says where each structure goes; warping each slice part
of the way (``t``, the missing slice's place in the gap) puts it where it should be at that depth. Flow fails
where structures appear or vanish between the slices, so a U-Net sees both warped slices, the measured ones and
``t``, and predicts a correction to the flow blend. Farneback's dense flow (OpenCV) is cheap on a CPU and needs
no training; the network is small.
"""

from __future__ import annotations

import numpy as np
import torch

# Farneback settings: a 4-level pyramid follows shifts of ~30 px (thick slices), 15-px windows keep it smooth.
FARNEBACK = {"pyr_scale": 0.5, "levels": 4, "winsize": 15, "iterations": 5, "poly_n": 7, "poly_sigma": 1.5,
             "flags": 0}
IN_CHANNELS = 5  # before, after, before warped to t, after warped to t, t


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at x + flow(x) (bilinear, edges replicated)."""
    import cv2

    h, w = image.shape
    flow = np.asarray(flow, np.float32)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(np.ascontiguousarray(image, np.float32), gx + flow[..., 0], gy + flow[..., 1],
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_estimates(before: np.ndarray, after: np.ndarray, t: float) -> np.ndarray:
    """(2, H, W): ``before`` and ``after`` (normalised to 0..1 over one window) each warped to depth ``t`` in
    (0, 1) of the gap between them; their blend is the flow interpolation the network corrects."""
    import cv2

    b8, a8 = _to_u8(before), _to_u8(after)
    forward = cv2.calcOpticalFlowFarneback(b8, a8, None, **FARNEBACK)  # before(x) ~ after(x + forward(x))
    backward = cv2.calcOpticalFlowFarneback(a8, b8, None, **FARNEBACK)  # after(x) ~ before(x + backward(x))
    return np.stack([warp(before, t * backward), warp(after, (1.0 - t) * forward)])


def flow_fill(model: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, estimates: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) missing slices from (N, 1, H, W) neighbours, their (N, 2, H, W) flow estimates and (N,) depths.

    H and W must be multiples of the U-Net's total stride (callers pad).
    """
    depth = t.to(before.dtype).view(-1, 1, 1, 1)
    blend = (1 - depth) * estimates[:, :1] + depth * estimates[:, 1:]
    offset = blend.mean(dim=(-2, -1), keepdim=True)  # the correction must not depend on the window's offset
    x = torch.cat([before - offset, after - offset, estimates - offset, depth.expand_as(before)], dim=1)
    return blend + model(x)
