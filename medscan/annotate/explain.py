"""Explanations a radiologist can check: Captum attributions as overlays the same shape as the slice, in [0, 1].

* ``gradcam_map``: Grad-CAM of the slice-level tumour classifier — "which region made the model call this slice
  abnormal". The classifier is the segmenter with a pooled head (``SliceScore``: mean of the top 0.5% tumour
  logits); a separately trained tiny CNN only learned the class prior in the time available, so it is not shipped.
  The layer and the channel weighting were chosen on the TRAINING subjects (scripts/evaluate_annotate.py): the
  decoder block at 1/4 resolution, channels weighted by their mean POSITIVE gradient (the ReLU-of-gradients
  weighting of Grad-CAM++, Chattopadhay et al., WACV 2018, without its second-order coefficients). Plain
  Grad-CAM (mean signed gradient) at the bottom unit pointed at the tumour on 18% of held-out slices: where the
  pooled score's signed channel weights sum negative everywhere, ReLU leaves an empty map.
* ``seg_gradcam_map``: the same Grad-CAM for ONE finding of the segmenter (Seg-Grad-CAM, Vinogradova et al.,
  AAAI 2020: the score is the segmenter's top logits inside the finding) — the explanation medscan shows and keeps
  for a brain-tumour finding.
* ``integrated_gradients_map`` and ``occlusion_map`` of the finding's summed logit: measured, not shown — both stay
  ~0.75-0.87 correlated with their maps under randomised weights (the finding's mask and the image decide them;
  Adebayo et al.'s warning about gradient x input), so they fail the randomisation check.

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
    brain_normalise,
    check_brain,
)
from medscan.nets.volumes import axial_flips, canonical_volume, resample_planes
from medscan.scan import MedscanError, Scan

# Where Grad-CAM looks in the MONAI UNet (channels 16-32-64-128, strides 2-2-2): candidate layers by name.
CAM_LAYERS = {
    "encoder 1/2": lambda unet: unet.model[0],  # first down block, 16 channels
    "bottom 1/8": lambda unet: unet.model[1].submodule[1].submodule[1].submodule,  # 128 channels
    "decoder 1/4": lambda unet: unet.model[1].submodule[1].submodule[2],  # up block after the bottom, 32 channels
    "decoder 1/2": lambda unet: unet.model[1].submodule[2],  # next up block, 16 channels
}
CAM_WEIGHTINGS = ("signed", "positive")  # Grad-CAM's mean gradient, or the mean of its positive part
# Chosen by scripts/evaluate_annotate.py's rule on the TRAINING subjects only (each fold's model on its own
# training subject): the highest mean pointing-game hit rate among the candidates whose mean trained-vs-randomised
# correlation stays under 0.5; a tie goes to the lower correlation.
CAM_LAYER = "decoder 1/4"
CAM_WEIGHTING = "positive"


class SliceScore(torch.nn.Module):
    """Slice-level "tumour in this slice" logit from a segmenter: the mean of its top ``fraction`` pixel logits."""

    def __init__(self, segmenter: torch.nn.Module, fraction: float = 0.005, layer: str = CAM_LAYER,
                 weighting: str = CAM_WEIGHTING) -> None:
        super().__init__()
        if layer not in CAM_LAYERS or weighting not in CAM_WEIGHTINGS:
            raise ValueError(f"unknown Grad-CAM layer {layer!r} or weighting {weighting!r}")
        self.segmenter, self.fraction, self.layer, self.weighting = segmenter, fraction, layer, weighting

    @property
    def cam_layer(self) -> torch.nn.Module:
        """The segmenter layer Grad-CAM weighs (``CAM_LAYER`` unless another was named)."""
        return CAM_LAYERS[self.layer](self.segmenter)

    def _top(self, logits: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        k = max(1, int(self.fraction * logits.shape[1]))
        if keep is not None:
            k = max(1, min(k, int(keep.sum(dim=1).min())))
            logits = torch.where(keep, logits, torch.full_like(logits, -1e4))
        return logits.topk(k, dim=1).values.mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` segmenter input -> ``(1, 1)`` score: the mean of its top ``fraction`` tumour logits."""
        return self._top(self.segmenter(x)[:, 0].flatten(1))


class FindingScore(SliceScore):
    """One finding's score: the mean of the top ``fraction`` of the slice's pixel logits INSIDE the finding
    (the Seg-Grad-CAM target for one region of a segmenter's output)."""

    def __init__(self, segmenter: torch.nn.Module, mask: torch.Tensor, fraction: float = 0.005,
                 layer: str = CAM_LAYER, weighting: str = CAM_WEIGHTING) -> None:
        super().__init__(segmenter, fraction, layer, weighting)
        self.register_buffer("mask", mask.reshape(mask.shape[0], -1) > 0.5, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` input -> ``(1, 1)`` score: the mean of the top tumour logits inside the finding's mask."""
        return self._top(self.segmenter(x)[:, 0].flatten(1), self.mask)


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


def gradcam_map(model: SliceScore, plane: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                pixel_mm: float = BRAIN_MM) -> np.ndarray:
    """Grad-CAM of ``model``'s score at its layer: ReLU(sum_c w_c A_c), w_c the mean (signed or positive part of
    the) gradient of channel c; upsampled to the plane, in [0, 1]. Signed weights are Captum's LayerGradCam."""
    from captum.attr import LayerActivation, LayerGradCam, LayerGradientXActivation

    x, size = _to_model_grid(plane, spacing, pixel_mm)
    layer = model.cam_layer
    if getattr(model, "weighting", "signed") == "signed":
        cam = LayerGradCam(model, layer).attribute(x, target=0, relu_attributions=True).detach()
    else:
        gradients = LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(x, target=0)
        activations = LayerActivation(model, layer).attribute(x)
        weights = gradients.detach().clamp_min(0).mean(dim=(2, 3), keepdim=True)
        cam = (weights * activations.detach()).sum(dim=1, keepdim=True).clamp_min(0)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    return normalise_map(_back(cam, size, plane.shape, pixel_mm))


def seg_gradcam_map(segmenter: torch.nn.Module, plane: np.ndarray, finding: np.ndarray,
                    spacing: tuple[float, float] = (1.0, 1.0), pixel_mm: float = BRAIN_MM,
                    layer: str = CAM_LAYER, weighting: str = CAM_WEIGHTING) -> np.ndarray:
    """Seg-Grad-CAM of one finding (``FindingScore`` through ``gradcam_map``), the plane's shape, in [0, 1]."""
    m, _ = _to_model_grid(finding.astype(np.float32), spacing, pixel_mm)
    if not (m > 0.5).any():
        raise ValueError("the finding has no pixels on the model's grid")
    return gradcam_map(FindingScore(segmenter, m[:, 0], layer=layer, weighting=weighting).eval(), plane, spacing,
                       pixel_mm)


def _finding_score(model: torch.nn.Module, mask: torch.Tensor):
    def forward(x: torch.Tensor) -> torch.Tensor:
        return (model(x)[:, 0] * mask).sum(dim=(1, 2))[:, None]

    return forward


def integrated_gradients_map(model: torch.nn.Module, plane: np.ndarray, finding: np.ndarray,
                             spacing: tuple[float, float] = (1.0, 1.0), pixel_mm: float = BRAIN_MM,
                             steps: int = 16, baseline: str = "zero") -> np.ndarray:
    """Positive IntegratedGradients of the finding's summed logit w.r.t. the slice, smoothed 1 px, in [0, 1].

    ``baseline``: "zero" (an empty slice) or "blurred" (the slice Gaussian-blurred, sigma 10 px: Sturmfels et al.,
    Distill 2020). Neither passes the randomisation check (see the module docstring)."""
    from captum.attr import IntegratedGradients
    from scipy import ndimage

    x, size = _to_model_grid(plane, spacing, pixel_mm)
    m, _ = _to_model_grid(finding.astype(np.float32), spacing, pixel_mm)
    ig = IntegratedGradients(_finding_score(model, (m[:, 0] > 0.5).float()))
    if baseline == "zero":
        reference = torch.zeros_like(x)
    elif baseline == "blurred":
        reference = torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, 10, 10)))
    else:
        raise ValueError(f"unknown baseline {baseline!r}")
    attribution = ig.attribute(x, baselines=reference, target=0, n_steps=steps, internal_batch_size=steps)
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
    "seg_gradcam" (the segmenter's Seg-Grad-CAM for that finding's pixels on this slice).
    """
    check_brain(scan)
    if not 0 <= index < scan.volume_shape[0]:
        raise MedscanError(scan.source_path or "series", f"slice {index} is outside 0..{scan.volume_shape[0] - 1}")
    normalised, _brain = brain_normalise(scan.voxels)
    canon = canonical_volume(normalised, scan)[index]
    spacing = scan.spacing[:2]
    flip_rows, flip_cols = axial_flips(scan)

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
        try:
            maps["seg_gradcam"] = back(seg_gradcam_map(segmenter, canon, flipped, spacing))
        except ValueError as exc:  # a sliver that vanishes on the model's 1 mm grid
            raise MedscanError(scan.source_path or "series", f"slice {index}: {exc}") from None
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
