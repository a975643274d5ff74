"""Anomaly pre-screening on brain FLAIR: where does the slice not look like normal anatomy?

A denoising autoencoder trained on normal FLAIR appearance only (coarse-noise DAE, Kascenas et al., MIDL 2022)
reconstructs each slice as it would look if normal; the positive residual (FLAIR lesions are hyperintense),
smoothed and restricted to the brain, is the anomaly map in brain-median units. It never saw the subject it is
applied to in the evaluation (leave-one-subject-out; see scripts/evaluate_annotate.py). The inpainting model
``models/inpaint_unet2d`` is NOT used: its training split contains subject TCGA-DU-7294's FLAIR, lesion included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medscan.annotate.learned import (
    brain_normalise,
    check_brain,
)
from medscan.nets.volumes import axial_flips, canonical_volume, resample_planes
from medscan.scan import Scan

ANOMALY_MODEL = "anomaly_dae2d"


def reconstruct_normal(model: torch.nn.Module, planes: np.ndarray, batch: int = 8) -> np.ndarray:
    """(N, H, W) brain-normalised planes at the model's pixel size -> the model's normal-appearance version."""
    n, h, w = planes.shape
    ph, pw = (-h) % 16, (-w) % 16
    out = []
    with torch.no_grad():
        for start in range(0, n, batch):
            x = F.pad(torch.from_numpy(np.ascontiguousarray(planes[start:start + batch]))[:, None], (0, pw, 0, ph))
            out.append(model(x)[:, 0, :h, :w].numpy())
    return np.concatenate(out).astype(np.float32)


def residual_map(image: np.ndarray, brain: np.ndarray, model: torch.nn.Module, pixel_mm: float) -> np.ndarray:
    """Anomaly map of a canonical 1 mm brain-normalised volume (K, H, W): smoothed positive residual in the brain."""
    small = resample_planes(image, (1.0, 1.0), pixel_mm)
    small_brain = resample_planes(brain.astype(np.float32), (1.0, 1.0), pixel_mm) > 0.5
    recon = reconstruct_normal(model, small * small_brain)
    residual = np.clip(small - recon, 0, None) * small_brain
    residual = ndimage.gaussian_filter(residual, sigma=(0, 1.0, 1.0))
    full = resample_planes(residual, (pixel_mm, pixel_mm), pixel_mm, shape=image.shape[1:])
    return (np.clip(full, 0, None) * brain).astype(np.float32)


def anomaly_map(scan: Scan, model_name: str = ANOMALY_MODEL, folder: Path | None = None) -> np.ndarray:
    """The anomaly map of a skull-stripped axial FLAIR series, on the scan's own grid (0 outside the brain)."""
    from medscan.nets.weights import load_model

    check_brain(scan)
    model, card = load_model(model_name, folder)
    normalised, brain = brain_normalise(scan.voxels)
    canon_img, canon_brain = canonical_volume(normalised, scan), canonical_volume(brain, scan)
    spacing = scan.spacing[:2]
    if any(abs(s - 1.0) > 0.05 for s in spacing):  # the DAE works at 2 mm from a 1 mm grid
        canon_img = resample_planes(canon_img, spacing, 1.0)
        canon_brain = resample_planes(canon_brain.astype(np.float32), spacing, 1.0) > 0.5
    result = residual_map(canon_img, canon_brain, model, float(card.data.get("pixel_mm", 2.0)))
    result = resample_planes(result, (1.0, 1.0), 1.0, shape=scan.volume_shape[1:])
    flip_rows, flip_cols = axial_flips(scan)
    if flip_rows:
        result = result[:, ::-1]
    if flip_cols:
        result = result[:, :, ::-1]
    return np.ascontiguousarray(result * brain, dtype=np.float32)


def slice_scores(anomaly: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Per-slice score: the 99.5th percentile of the anomaly map inside the brain (0 for slices without brain)."""
    scores = np.zeros(anomaly.shape[0], np.float32)
    for k in range(anomaly.shape[0]):
        values = anomaly[k][brain[k]]
        if values.size >= 200:
            scores[k] = np.percentile(values, 99.5)
    return scores


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
