"""Explanations a radiologist can check: Captum attributions as overlays the same shape as the slice, in [0, 1].

* ``gradcam_map``: LayerGradCam of the slice-level tumour classifier at its deepest layer — "which region made
  the model call this slice abnormal". The classifier is the segmenter's encoder-decoder with a pooled head
  (``SliceScore``: mean of the top 0.5% tumour logits; positive when > 0): a separately trained tiny CNN only
  learned the class prior in the time available, so it is not shipped.
* ``integrated_gradients_map``: IntegratedGradients of the segmenter (``models/tumour_seg2d``) for one finding —
  the summed tumour logit inside the finding's mask, against an all-zero (empty brain) baseline.
* ``occlusion_map``: Occlusion of the same finding score (model-agnostic, slower; a cross-check).

The sanity checks from the literature are tests (tests/test_explain.py): the maps change when the weights are
randomised (Adebayo et al., NeurIPS 2018), and the map's maximum falls inside the lesion on most positive
slices of the held-out subject (pointing game, Zhang et al., ECCV 2016).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medscan.annotate.learned import (
    BRAIN_MM,
    TUMOUR_MODEL,
    _axial_flips,
    brain_normalise,
    canonical_volume,
    check_brain,
    resample_planes,
)
from medscan.scan import MedscanError, Scan


class SliceScore(torch.nn.Module):
    """Slice-level "tumour in this slice" logit from a segmenter: the mean of its top ``fraction`` pixel logits."""

    def __init__(self, segmenter: torch.nn.Module, fraction: float = 0.005) -> None:
        super().__init__()
        self.segmenter, self.fraction = segmenter, fraction

    @property
    def cam_layer(self) -> torch.nn.Module:
        """The MONAI UNet's bottom residual unit (1/8 resolution, 128 channels)."""
        return self.segmenter.model[1].submodule[1].submodule[1].submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmenter(x)[:, 0].flatten(1)
        k = max(1, int(self.fraction * logits.shape[1]))
        return logits.topk(k, dim=1).values.mean(dim=1, keepdim=True)



def normalise_map(attribution: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (an all-equal map becomes zeros): overlays share one opacity scale."""
    attribution = np.nan_to_num(np.asarray(attribution, np.float32))
    lo, hi = float(attribution.min()), float(attribution.max())
    if hi - lo < 1e-12:
        return np.zeros_like(attribution)
    return ((attribution - lo) / (hi - lo)).astype(np.float32)


def _to_model_grid(plane: np.ndarray, spacing: tuple[float, float], pixel_mm: float) -> tuple[torch.Tensor, tuple]:
    small = resample_planes(plane[None], spacing, pixel_mm)[0]
    h, w = small.shape
    x = F.pad(torch.from_numpy(np.ascontiguousarray(small))[None, None], (0, (-w) % 16, 0, (-h) % 16))
    return x, (h, w)


def _back(map_small: np.ndarray, size: tuple[int, int], shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
    cropped = map_small[: size[0], : size[1]]
    return resample_planes(cropped[None], (pixel_mm, pixel_mm), pixel_mm, shape=shape)[0]


def gradcam_map(model: torch.nn.Module, plane: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                pixel_mm: float = 2.0) -> np.ndarray:
    """LayerGradCam (ReLU of the channel-weighted last block) for "tumour in slice", upsampled to the plane."""
    from captum.attr import LayerGradCam

    x, size = _to_model_grid(plane, spacing, pixel_mm)
    layer = model.cam_layer
    cam = LayerGradCam(model, layer).attribute(x, target=0, relu_attributions=True)
    cam = F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    return normalise_map(_back(cam, size, plane.shape, pixel_mm))


def _finding_score(model: torch.nn.Module, mask: torch.Tensor):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return (model(x)[:, 0] * mask).sum(dim=(1, 2))[:, None]

    return forward


def integrated_gradients_map(model: torch.nn.Module, plane: np.ndarray, finding: np.ndarray,
                             spacing: tuple[float, float] = (1.0, 1.0), pixel_mm: float = BRAIN_MM,
                             steps: int = 16) -> np.ndarray:
    """Positive IntegratedGradients of the finding's summed logit w.r.t. the slice, smoothed 1 px, in [0, 1]."""
    from captum.attr import IntegratedGradients
    from scipy import ndimage

    x, size = _to_model_grid(plane, spacing, pixel_mm)
    m, _ = _to_model_grid(finding.astype(np.float32), spacing, pixel_mm)
    ig = IntegratedGradients(_finding_score(model, (m[:, 0] > 0.5).float()))
    attribution = ig.attribute(x, baselines=torch.zeros_like(x), target=0, n_steps=steps, internal_batch_size=steps)
    result = np.clip(attribution.detach()[0, 0].numpy(), 0, None)  # evidence FOR the finding
    return normalise_map(ndimage.gaussian_filter(_back(result, size, plane.shape, pixel_mm), 1.0))


def occlusion_map(model: torch.nn.Module, plane: np.ndarray, finding: np.ndarray,
                  spacing: tuple[float, float] = (1.0, 1.0), pixel_mm: float = BRAIN_MM, window: int = 16,
                  stride: int = 8) -> np.ndarray:
    """Occlusion (zero patches) of the finding's summed logit: how much each region supports the finding."""
    from captum.attr import Occlusion

    x, size = _to_model_grid(plane, spacing, pixel_mm)
    m, _ = _to_model_grid(finding.astype(np.float32), spacing, pixel_mm)
    occ = Occlusion(_finding_score(model, (m[:, 0] > 0.5).float()))
    attribution = occ.attribute(x, target=0, sliding_window_shapes=(1, window, window), strides=(1, stride, stride),
                                baselines=0.0)
    result = np.clip(attribution.detach()[0, 0].numpy(), 0, None)
    return normalise_map(_back(result, size, plane.shape, pixel_mm))


@lru_cache(maxsize=4)
def _shipped(name: str, folder: str | None = None) -> tuple[torch.nn.Module, dict]:
    from medscan.nets.weights import load_model

    model, card = load_model(name, Path(folder) if folder else None)
    return model, card.data


def explain_slice(scan: Scan, index: int, finding: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Explanation overlays for slice ``index`` (k) of a brain FLAIR scan, each the shape of that slice, in [0, 1].

    Always "gradcam" (slice classifier); with ``finding`` (a bool mask of the scan's shape, or of the slice) also
    "integrated_gradients" (segmenter, that finding's pixels on this slice).
    """
    check_brain(scan)
    if not 0 <= index < scan.volume_shape[0]:
        raise MedscanError(scan.source_path or "series", f"slice {index} is outside 0..{scan.volume_shape[0] - 1}")
    normalised, _brain = brain_normalise(scan.voxels)
    canon = canonical_volume(normalised, scan)[index]
    spacing = scan.spacing[:2]
    flip_rows, flip_cols = _axial_flips(scan)

    def back(image: np.ndarray) -> np.ndarray:
        image = image[::-1] if flip_rows else image
        return np.ascontiguousarray(image[:, ::-1] if flip_cols else image)

    segmenter, _ = _shipped(TUMOUR_MODEL)
    maps = {"gradcam": back(gradcam_map(SliceScore(segmenter).eval(), canon, spacing, BRAIN_MM))}
    if finding is not None:
        plane = finding[index] if finding.ndim == 3 else finding
        if not plane.any():
            raise MedscanError(scan.source_path or "series", f"the finding has no voxels on slice {index}")
        flipped = plane[::-1] if flip_rows else plane
        flipped = flipped[:, ::-1] if flip_cols else flipped
        maps["integrated_gradients"] = back(integrated_gradients_map(segmenter, canon, flipped, spacing))
    return maps


def randomised_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture with every parameter re-drawn (Adebayo et al.'s full model randomisation)."""
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in clone.parameters():
            if parameter.ndim > 1:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return clone.eval()


def pointing_hit(attribution: np.ndarray, lesion: np.ndarray, tolerance_px: int = 0) -> bool:
    """Pointing game: is the map's maximum inside the lesion (dilated by ``tolerance_px``)?"""
    from scipy import ndimage

    target = ndimage.binary_dilation(lesion, iterations=tolerance_px) if tolerance_px else lesion
    j, i = np.unravel_index(int(np.argmax(attribution)), attribution.shape)
    return bool(target[j, i])
