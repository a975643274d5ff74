"""Learned 2-D segmenters: brain tumour on skull-stripped axial FLAIR MR, abdominal organs on axial CT.

Both run slice by slice on a canonical in-plane grid (columns toward patient left, rows toward posterior, a fixed
pixel size) so that one network sees every scanner's slices the same way; probabilities are resampled back to the
input grid, so labels share the scan's shape and affine. Training (``scripts/train_annotate.py``) uses the same
preprocessing functions as inference — there is one definition of what the network sees.

Each task refuses a series it was not made for (``check``): the labels are pseudo-labels from reference algorithms
(BraTS-Toolkit fusion, TotalSegmentator) on two subjects each, so a confident answer on another body region or
contrast would be a guess.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from medscan.annotate.registry import Segmentation, SegmentationTask, register_task
from medscan.nets.volumes import (
    axial_flips,
    canonical_volume,
    require_axial_stack,
    require_brain_foreground,
    resample_planes,
)
from medscan.scan import MedscanError, Scan

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that run the networks: registering these tasks (``medscan --help``,
# ``medscan screen``) must not load it.

TUMOUR_MODEL = "tumour_seg2d"
ORGAN_MODEL = "organ_seg2d"
BRAIN_MM = 1.0  # working pixel size of the tumour model (the BraTS grid)
CT_MM = 2.0  # working pixel size of the organ model
CT_WINDOW = (-250.0, 350.0)  # HU window fed to the organ model (soft tissue and contrast-filled vessels)
ORGAN_NAMES = {1: "liver", 2: "spleen", 3: "kidneys", 4: "aorta"}
TUMOUR_NAMES = {1: "tumour (FLAIR abnormality)"}
LESION_MODEL = "lesion_seg2d"
LESION_NAMES = {1: "white-matter lesion (FLAIR)"}
LESION_MIN_ML = 0.02  # a lesion finding: 20 voxels at 1 mm (about 3 mm across); most MS lesions are under 0.5 mL
BRAIN_LANDMARKS_PCT = (2, 10, 25, 50, 75, 90)  # brain-histogram landmarks (percentiles) ...
BRAIN_LANDMARKS_STD = (0.2, 0.6, 0.9, 1.0, 1.1, 1.25)  # ... and the standard values they are mapped to


# -- geometry shared by training and inference ------------------------------------------------------------------
def brain_normalise(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLAIR on a standard scale by brain-histogram landmarks (Nyúl-Udupa), and the brain mask.

    The 2nd..90th percentiles of the brain (the skull-stripped non-zero region) map piecewise-linearly onto fixed
    values; above the 90th the last segment's slope continues, so a lesion's brightness RELATIVE to the subject's
    own grey/white matter is kept. Landmarks stop at the 90th percentile because the tumour (a few % of the brain)
    would move the upper ones. A plain median scale was not enough: one subject's grey matter sat above the other's
    tumour threshold.
    """
    volume = np.asarray(volume, np.float32)
    positive = volume[volume > 0]
    if positive.size == 0:
        return np.zeros_like(volume), np.zeros(volume.shape, bool)
    brain = volume > 0.05 * np.percentile(positive, 99)
    marks = np.percentile(volume[brain], BRAIN_LANDMARKS_PCT).astype(np.float64)
    marks = np.maximum.accumulate(marks + np.arange(marks.size) * 1e-6 * max(marks[-1], 1e-6))
    standard = np.asarray(BRAIN_LANDMARKS_STD)
    out = np.interp(volume, marks, standard)
    low = volume < marks[0]
    out[low] = volume[low] / max(marks[0], 1e-6) * standard[0]
    high = volume > marks[-1]
    slope = (standard[-1] - standard[-2]) / max(marks[-1] - marks[-2], 1e-6)
    out[high] = standard[-1] + (volume[high] - marks[-1]) * slope
    return np.clip(out, 0.0, 6.0).astype(np.float32), brain


def ct_normalise(volume: np.ndarray) -> np.ndarray:
    """CT in HU to the organ model's input scale: clipped to ``CT_WINDOW`` and mapped linearly to 0..1.

    Args:
        volume: CT voxels in HU, any shape.

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    lo, hi = CT_WINDOW
    return ((np.clip(volume, lo, hi) - lo) / (hi - lo)).astype(np.float32)


# -- checks: what each model was made for ------------------------------------------------------------------------

def check_brain(scan: Scan, task: str = "brain-tumour") -> None:
    """Axial, skull-stripped brain FLAIR with a brain-sized non-zero region (BraTS-style preprocessing).

    A series described as another contrast (T1, T2, DWI...) is refused; an undescribed one cannot be told apart.
    ``task`` names the task in the refusal.
    """
    require_axial_stack(scan, task, max_thickness=3.0)
    where = scan.where
    described = f"{scan.description} {getattr(scan.header, 'SeriesDescription', '') or ''}".lower()
    if "flair" not in described and re.search(r"(^|[^a-z0-9])(t1|t2|dwi|adc|swi|mprage|tof|dti)", described):
        raise MedscanError(where, f"{task} was trained on FLAIR; this series is described as "
                                  f"{scan.description!r} — load the FLAIR series")
    require_brain_foreground(scan, task)


def check_brain_lesions(scan: Scan) -> None:
    """As :func:`check_brain`, refusals naming the brain-lesions task."""
    check_brain(scan, "brain-lesions")


def _looks_like_head(volume: np.ndarray, spacing: tuple[float, float, float]) -> bool:
    """A skull ring: body sections under 350 cm² with over 6% dense bone (>700 HU; head CT 9-10%, body CT <3%)."""
    body = volume > -300
    bone = volume > 700
    area = body.sum(axis=(1, 2)) * spacing[0] * spacing[1] / 100.0
    fraction = bone.sum(axis=(1, 2)) / np.maximum(body.sum(axis=(1, 2)), 1)
    middle = slice(volume.shape[0] // 4, max(volume.shape[0] // 4 + 1, 3 * volume.shape[0] // 4))
    return bool(np.median(area[middle]) < 350 and np.median(fraction[middle]) > 0.06)


def check_abdomen(scan: Scan) -> None:
    """Axial CT in HU, at most 5 mm slices, not a head."""
    require_axial_stack(scan, "organs", max_thickness=5.0)
    where = scan.where
    if scan.units and scan.units != "HU":
        raise MedscanError(where, f"organs needs CT in HU, not {scan.units}")
    if float(np.percentile(scan.voxels, 1)) > -500:
        raise MedscanError(where, "organs: no air below -500 HU in the series — not CT in Hounsfield units")
    if _looks_like_head(scan.voxels, scan.spacing):
        raise MedscanError(where, "organs was trained on chest/abdomen CT; this series is a head (skull ring found)")


# -- inference -----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _model(name: str) -> tuple[torch.nn.Module, dict]:
    from medscan.nets.weights import load_model

    model, card = load_model(name)
    return model, card.data


def _device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def predict_planes(model: torch.nn.Module, planes: np.ndarray, device: torch.device, roi: int = 96,
                   batch: int = 32) -> np.ndarray:
    """(N, H, W) normalised planes -> (N, C, H, W) sigmoid probabilities by Gaussian-weighted sliding windows.

    Windows of the training patch size, not whole slices: the networks use instance normalisation, whose statistics
    over a whole slice (mostly background) differ from those over a training patch — whole-slice inference
    over-segmented by an order of magnitude.
    """
    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None].to(device)
    with torch.no_grad():
        out = sliding_window_inference(x, (roi, roi), batch, model, overlap=0.5, mode="gaussian")
    return torch.sigmoid(out).float().cpu().numpy()


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 3-D connected component (26-connected): one lesion per study, scattered specks dropped."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def card_thresholds(card: dict, names: dict[int, str], default: float = 0.5) -> np.ndarray:
    """Per-class operating thresholds from a model card: its "thresholds" by class name (organs, each chosen on the
    training data), else its single "threshold", else ``default``."""
    single = float(card.get("threshold", default))
    per_class = card.get("thresholds", {})
    return np.array([float(per_class.get(names[value], single)) for value in sorted(names)], np.float32)


def _segment(scan: Scan, model_name: str, normalised: np.ndarray, target_mm: float, device: str,
             names: dict[int, str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Labels (argmax of the classes above their card thresholds) and class probabilities on the scan's grid."""
    model, card = _model(model_name)
    labels, probs = segment_with(model, scan, normalised, target_mm, _device(device), card_thresholds(card, names),
                                 int(card.get("patch", 96)))
    return labels, probs, card


def segment_with(model: torch.nn.Module, scan: Scan, normalised: np.ndarray, target_mm: float,
                 device: torch.device | None = None, threshold: float | np.ndarray = 0.5, roi: int = 96
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Any fold's network over a normalised volume: (labels, (C, K, H, W) probabilities) on the scan's grid."""
    import torch

    dev = device or torch.device("cpu")
    model.to(dev)
    canon = canonical_volume(normalised, scan)
    spacing = scan.spacing[:2]
    work = resample_planes(canon, spacing, target_mm)
    probs = predict_planes(model, work, dev, roi=roi)
    probs = resample_planes(probs, (target_mm, target_mm), target_mm, shape=canon.shape[1:])
    flip_rows, flip_cols = axial_flips(scan)
    if flip_rows:
        probs = probs[:, :, ::-1]
    if flip_cols:
        probs = probs[:, :, :, ::-1]
    probs = np.ascontiguousarray(np.moveaxis(probs, 1, 0))  # (C, K, H, W)
    # a class counts where it reaches its own threshold; among those, the most probable wins
    limits = np.broadcast_to(np.asarray(threshold, np.float32), (probs.shape[0],)).reshape(-1, 1, 1, 1)
    above = np.where(probs >= limits, probs, -1.0)
    best = above.argmax(axis=0)
    labels = np.where(above.max(axis=0) >= 0, best + 1, 0).astype(np.uint8)
    return labels, probs.astype(np.float32)


def run_tumour(scan: Scan, *, device: str = "auto") -> Segmentation:
    """Segment the whole brain tumour on a skull-stripped axial FLAIR with ``tumour_seg2d``.

    Labels outside the brain are cleared and, as the card asks, only the largest 3-D component is kept.

    Args:
        scan: skull-stripped FLAIR series (intensities in arbitrary MR units).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        A :class:`Segmentation` on the scan's grid with per-voxel probabilities; its notes say the figures are
        agreement with pseudo-labels, not accuracy.
    """
    normalised, brain = brain_normalise(scan.voxels)
    labels, probs, card = _segment(scan, TUMOUR_MODEL, normalised, BRAIN_MM, device, TUMOUR_NAMES)
    labels[~brain] = 0
    if card.get("largest_component", False):
        labels = np.where(largest_component(labels > 0), labels, 0).astype(np.uint8)
    return Segmentation(labels=labels, names=dict(TUMOUR_NAMES), source="ai", method=TUMOUR_MODEL,
                        version=str(card.get("version", "1")), probabilities=probs,
                        notes=[card.get("agreement_note", "Agreement with BraTS-Toolkit pseudo-labels, not accuracy.")])


def run_lesions(scan: Scan, *, device: str = "auto") -> Segmentation:
    """Segment white-matter lesions (MS-like FLAIR hyperintensities) on a skull-stripped axial FLAIR with
    ``lesion_seg2d``, at the card's threshold, inside the brain; every piece is kept (lesions are many and small).

    Args:
        scan: skull-stripped FLAIR series (intensities in arbitrary MR units).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        A :class:`Segmentation` on the scan's grid with per-voxel probabilities (the uncertainty the review panel
        and SEG export carry); its notes give the card's figures' basis (two expert-annotated MS subjects).
    """
    normalised, brain = brain_normalise(scan.voxels)
    labels, probs, card = _segment(scan, LESION_MODEL, normalised, BRAIN_MM, device, LESION_NAMES)
    labels[~brain] = 0
    return Segmentation(labels=labels, names=dict(LESION_NAMES), source="ai", method=LESION_MODEL,
                        version=str(card.get("version", "1")), probabilities=probs,
                        notes=[card.get("agreement_note", "Trained on expert-annotated MS subjects (see its card).")])


def run_organs(scan: Scan, *, device: str = "auto") -> Segmentation:
    """Segment liver, spleen, kidneys and aorta on an axial CT with ``organ_seg2d``.

    Args:
        scan: CT series in HU.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        A :class:`Segmentation` on the scan's grid; voxels below -500 HU (air) are never labelled.
    """
    labels, probs, card = _segment(scan, ORGAN_MODEL, ct_normalise(scan.voxels), CT_MM, device, ORGAN_NAMES)
    labels[scan.voxels < -500] = 0  # organs are never air
    return Segmentation(labels=labels, names=dict(ORGAN_NAMES), source="ai", method=ORGAN_MODEL,
                        version=str(card.get("version", "1")), probabilities=probs,
                        notes=[card.get("agreement_note", "Agreement with TotalSegmentator pseudo-labels.")])


register_task(SegmentationTask(
    name="brain-tumour", title="Brain tumour (FLAIR, learned 2-D)", modalities=("MR",), labels=dict(TUMOUR_NAMES),
    run=run_tumour, check=check_brain))
register_task(SegmentationTask(
    name="brain-lesions", title="Brain white-matter lesions (FLAIR, learned 2-D)", modalities=("MR",),
    labels=dict(LESION_NAMES), run=run_lesions, check=check_brain_lesions, min_finding_ml=LESION_MIN_ML))
register_task(SegmentationTask(
    name="organs", title="Abdominal organs (CT, learned 2-D)", modalities=("CT",), labels=dict(ORGAN_NAMES),
    run=run_organs, check=check_abdomen))
