"""Privacy check for synthetic slices: is a generated slice a copy of a training slice?

For every generated slice the nearest training slice is found by SSIM, computed on the 64 x 64 grid (the
128 x 128 slices averaged 2 x 2, which makes the check about anatomy, not pixel noise) against every training
slice and its left-right mirror (training used mirrored slices). The SSIM uses the usual 7 x 7 Gaussian window
(sigma 1.5) with constants for the model's [-1, 1] range.

The threshold is calibrated on real data: for every held-out slice (subjects the model never saw) the nearest
training slice's SSIM is what a DIFFERENT real patient gets; the largest such value in the slice's class is the
threshold, and a generated slice at least that close to a training slice is treated as memorised and is never
exported. Classes with no held-out subject (CT head) use the largest threshold of their modality.

The reference — the training slices on the 64 x 64 grid as uint8 — ships beside the weights
(``models/<model>.trainref.npz``, sha256 in the card), so the check runs without the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medscan.scan import MedscanError

_WINDOW, _SIGMA = 7, 1.5
_C1, _C2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2  # data range 2: the model's [-1, 1]


def to_check_grid(images: np.ndarray) -> np.ndarray:
    """(N, 128, 128) in [-1, 1] -> (N, 64, 64) 2 x 2 averages."""
    images = np.asarray(images, np.float32)
    n, h, w = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian filtering of (N, 1, H, W) as two matrix products (one BLAS call each: fast on a CPU)."""
    g = torch.arange(_WINDOW, dtype=torch.float32) - (_WINDOW - 1) / 2
    g = torch.exp(-g ** 2 / (2 * _SIGMA ** 2))
    g = g / g.sum()
    h, w = x.shape[-2:]
    rows = torch.zeros(h - _WINDOW + 1, h)
    cols = torch.zeros(w - _WINDOW + 1, w)
    for i in range(len(rows)):
        rows[i, i:i + _WINDOW] = g
    for i in range(len(cols)):
        cols[i, i:i + _WINDOW] = g
    return rows @ x @ cols.T


@dataclass
class Reference:
    """Training slices on the check grid, their mirrors, and per-slice local statistics (computed once)."""

    images: torch.Tensor  # (M, 1, 64, 64) with mirrors
    labels: np.ndarray  # (M,) synthesis class of each (mirrored copies repeat)
    index: np.ndarray  # (M,) row in the training set (mirrors point at the same row)
    mu: torch.Tensor
    var: torch.Tensor

    @classmethod
    def build(cls, images64: np.ndarray, labels: np.ndarray) -> Reference:
        """Build the reference from training slices on the 64 x 64 check grid.

        Args:
            images64: ``(N, 64, 64)`` slices scaled to -1..1; they are quantised to 8 bits exactly as :meth:`save`
                stores them, so a reference built here and one loaded from disk give the same answers.
            labels: ``(N,)`` class label of each slice.

        Returns:
            A reference holding each slice and its mirror image, with the local means and variances SSIM needs.
        """
        # quantised exactly as stored (uint8), so calibration and the shipped check see the same reference
        images64 = np.round((np.asarray(images64, np.float32) + 1) / 2 * 255) / 255 * 2 - 1
        both = np.concatenate([images64, images64[:, :, ::-1]])
        x = torch.from_numpy(np.ascontiguousarray(both, np.float32))[:, None]
        mu = _blur(x)
        var = _blur(x * x) - mu * mu
        idx = np.arange(len(images64))
        return cls(images=x, labels=np.concatenate([labels, labels]), index=np.concatenate([idx, idx]), mu=mu,
                   var=var)

    def save(self, path: Path) -> None:
        """Write the training slices (not their mirrors) as 8-bit images and their labels to a ``.npz``."""
        n = len(self.index) // 2
        unit = self.images[:n, 0].numpy()
        np.savez_compressed(path, images=np.round((unit + 1) / 2 * 255).astype(np.uint8), labels=self.labels[:n])

    @classmethod
    def load(cls, path: Path) -> Reference:
        """Read a reference written by :meth:`save`.

        Raises:
            MedscanError: the file is missing or not such a reference.
        """
        try:
            data = np.load(path)
            images = data["images"].astype(np.float32) / 255 * 2 - 1
            return cls.build(images, data["labels"])
        except (OSError, KeyError, ValueError) as exc:
            raise MedscanError(path, f"unreadable memorisation reference ({exc})") from None


@torch.no_grad()
def nearest_training(images: np.ndarray, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """For each slice (N, 128, 128) in [-1, 1]: (SSIM of its nearest training slice, that slice's training row)."""
    grid = to_check_grid(images)
    best = np.empty(len(grid), np.float64)
    which = np.empty(len(grid), np.int64)
    for i, image in enumerate(grid):
        y = torch.from_numpy(image)[None, None]
        mu_y = _blur(y)
        var_y = _blur(y * y) - mu_y * mu_y
        cov = _blur(reference.images * y) - reference.mu * mu_y
        ssim_map = ((2 * reference.mu * mu_y + _C1) * (2 * cov + _C2)
                    / ((reference.mu ** 2 + mu_y ** 2 + _C1) * (reference.var + var_y + _C2)))
        scores = ssim_map.mean(dim=(1, 2, 3)).numpy()
        j = int(np.argmax(scores))
        best[i], which[i] = float(scores[j]), int(reference.index[j])
    return best, which


def calibrate(heldout_images: np.ndarray, heldout_labels: np.ndarray, reference: Reference,
              class_modalities: list[str], nn_ssim: np.ndarray | None = None) -> dict[str, object]:
    """Per-class thresholds from held-out real slices, and the distribution they come from.

    Returns {"thresholds": {class index: ssim}, "heldout_nn_ssim": {class index: summary}}; classes without
    held-out slices take the largest threshold among classes of the same modality.
    """
    if nn_ssim is None:  # (the caller may pass them when already computed: minutes on a busy CPU)
        nn_ssim, _ = nearest_training(heldout_images, reference)
    thresholds: dict[int, float] = {}
    summary: dict[int, dict[str, float]] = {}
    for label in np.unique(heldout_labels):
        values = nn_ssim[heldout_labels == label]
        thresholds[int(label)] = float(values.max())
        summary[int(label)] = distribution(values)
    for label, modality in enumerate(class_modalities):
        if label not in thresholds:
            same = [thresholds[c] for c in thresholds if class_modalities[c] == modality]
            thresholds[label] = max(same) if same else max(thresholds.values())
    return {"thresholds": thresholds, "heldout_nn_ssim": summary}


def distribution(values: np.ndarray) -> dict[str, float]:
    """min / 5 % / median / 95 % / max of nearest-neighbour SSIMs, for the card."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"n": 0}
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return {"n": int(values.size), "min": round(float(q[0]), 4), "p05": round(float(q[1]), 4),
            "median": round(float(q[2]), 4), "p95": round(float(q[3]), 4), "max": round(float(q[4]), 4)}
