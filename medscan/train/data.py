"""Training data: every slice of the chosen items, normalised to its own intensity window, sampled as patches.

Items are named by their path under ``../shared/data``; the split is by subject (see ``SPLITS``), so no
slice of a held-out subject is ever seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medscan.io import load
from medscan.nets.normalize import intensity_window

DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Subjects, not files: ct01/ct02/ct_abdomen_totalseg may be one patient; paired/ and labelled/ brain
# folders are the same two patients. Held out: one CT subject (Philips chest) and two MR subjects.
TRAIN_ITEMS = (
    "train/ct01_upper_abdomen_siemens.nii.gz",
    "train/ct02_abdomen_pelvis_3mm.nii.gz",
    "labelled/ct_abdomen_totalseg_example/ct.nii.gz",
    "labelled/ct_aorta_totalseg_example/ct.nii.gz",
    "train-extra/ct03_head_ge_4mm_detilted.nii.gz",
    "train-extra/ct03_head_ge_7mm_detilted.nii.gz",
    "train/mr01_head_t1_3d_sag_uih.nii.gz",
    "train/mr02_chest_heart_t1_3d_siemens.nii.gz",
    "paired/brain_tcga_du_7294/t1.nii.gz",
    "paired/brain_tcga_du_7294/t1c.nii.gz",
    "paired/brain_tcga_du_7294/t2.nii.gz",
    "paired/brain_tcga_du_7294/flair.nii.gz",
)
HELDOUT_ITEMS = (
    "train-extra/ct04_chest_philips_5mm_kernelB.nii.gz",
    "train/mr03_brain_t1_2d_sag_siemens_dicom",
    "paired/brain_tcga_fg_6692/t1.nii.gz",
    "paired/brain_tcga_fg_6692/t2.nii.gz",
)


@dataclass
class SliceBank:
    """Normalised slices (float32, 0..1 over each slice's window) of several volumes, any sizes."""

    slices: list[np.ndarray]
    sources: list[str]

    @classmethod
    def from_items(cls, items: tuple[str, ...] | list[str], root: Path = DATA_ROOT, min_size: int = 64) -> SliceBank:
        slices, sources = [], []
        for item in items:
            scan = load(root / item)
            volume = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0]
            # Slices in all three orientations: in-plane and reformatted views widen what the model sees.
            views = [volume] + [np.moveaxis(volume, axis, 0) for axis in (1, 2)]
            volume_lo, volume_hi = intensity_window(volume)
            for view in views:
                for image in view:
                    if min(image.shape) < min_size or float(image.std()) == 0.0:
                        continue
                    lo, hi = intensity_window(image)
                    if hi - lo < 0.05 * (volume_hi - volume_lo):
                        continue  # a nearly empty edge slice: its window would blow stray pixels up to 1e6
                    slices.append(((image - lo) / (hi - lo)).astype(np.float32))
                    sources.append(item)
        return cls(slices=slices, sources=sources)

    def sample(self, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        """``n`` random patches (n, 1, size, size) with random flips and 90-degree turns, avoiding empty air."""
        patches = np.empty((n, 1, size, size), dtype=np.float32)
        filled = 0
        while filled < n:
            image = self.slices[int(rng.integers(len(self.slices)))]
            h, w = image.shape
            if h < size or w < size:
                continue
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            patch = image[y:y + size, x:x + size]
            if patch.std() < 0.02 and rng.random() < 0.9:  # mostly skip flat background
                continue
            patch = np.rot90(patch, int(rng.integers(4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            gamma = float(np.exp(rng.normal(0, 0.25)))  # vary contrast like other windows and sequences
            patches[filled, 0] = np.clip(patch, 0, None) ** gamma if gamma != 1 else patch
            filled += 1
        return torch.from_numpy(patches)
