"""Training data: every slice of the chosen items, normalised to its own intensity window, sampled as patches.

Items are named by their path under the data folder (``MEDSCAN_DATA``, default ``../shared/data``); the split
is by subject (see ``SPLITS``), so no slice of a held-out subject is ever seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medscan.io import load
from medscan.nets.normalize import intensity_window
from medscan.resources import CT05_HELDOUT_SUBJECTS, CT05_TRAIN_SUBJECTS, ct05_axial, shared_data_dir

DATA_ROOT = shared_data_dir()  # $MEDSCAN_DATA, default ../shared/data beside the checkout

# Subjects, not files: ct_abdomen_totalseg's slices are ct02's, bit for bit (one patient), and ct01 may be
# that patient too; paired/ and labelled/ brain folders are the same two patients; both time points of a
# ct05 subject are one patient. Held out: CT subjects Philips chest and two of the eight ct05 patients; MR
# subjects mr03, the glioma fg_6692 and the MS patient 19 (another centre and scanner than the glioma pairs).
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
# What the denoiser learns from since the data gained more subjects: the items above plus eight more CT patients
# (soft kernels), a 1.5 mm MPRAGE, the averaged near-noise-free T1 and one MS subject in four contrasts.
DENOISE_TRAIN_ITEMS = (
    *TRAIN_ITEMS,
    "train-extra/mr04_brain_t1c_mprage_vsseg001.nii.gz",
    "train-extra/mr05_brain_t1_colin27_average.nii.gz",
    "paired/brain_ms_patient07/t1.nii.gz",
    "paired/brain_ms_patient07/t1c.nii.gz",
    "paired/brain_ms_patient07/t2.nii.gz",
    "paired/brain_ms_patient07/flair.nii.gz",
    *ct05_axial(CT05_TRAIN_SUBJECTS),
)
DENOISE_HELDOUT_ITEMS = (
    *HELDOUT_ITEMS,
    "paired/brain_ms_patient19/t1.nii.gz",
    "paired/brain_ms_patient19/flair.nii.gz",
    *ct05_axial(CT05_HELDOUT_SUBJECTS),
)
# Full-dose CT volumes whose axial slices get projection-domain low-dose noise (one patient once: ct02's
# slices are also ct_abdomen_totalseg's).
LOW_DOSE_CT_TRAIN_ITEMS = (
    "train/ct01_upper_abdomen_siemens.nii.gz",
    "train/ct02_abdomen_pelvis_3mm.nii.gz",
    "labelled/ct_aorta_totalseg_example/ct.nii.gz",
    "train-extra/ct03_head_ge_4mm_detilted.nii.gz",
    "train-extra/ct03_head_ge_7mm_detilted.nii.gz",
    *ct05_axial(CT05_TRAIN_SUBJECTS),
)
LOW_DOSE_CT_HELDOUT_ITEMS = ("train-extra/ct04_chest_philips_5mm_kernelB.nii.gz", *ct05_axial(CT05_HELDOUT_SUBJECTS))


@dataclass
class SliceBank:
    """Normalised slices (float32, 0..1 over each slice's window) of several volumes, any sizes.

    With ``neighbours`` k > 0 (2.5-D models), each sample is a stack of the slice and its k neighbours on
    either side, all in the centre slice's window; the views are kept as volumes and stacks cut on demand.
    """

    slices: list[np.ndarray]
    sources: list[str]
    neighbours: int = 0
    views: list[np.ndarray] = field(default_factory=list)  # neighbour mode: (K, H, W) views of the volumes
    stacks: list[tuple[int, int, float, float]] = field(default_factory=list)  # (view, slice, lo, hi)
    # item_weights by patch size, computed on first use
    _weights: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_items(cls, items: tuple[str, ...] | list[str], root: Path = DATA_ROOT, min_size: int = 64,
                   neighbours: int = 0) -> SliceBank:
        """Load the items and keep every slice in all three orientations, each normalised to its volume's
        intensity window.

        Args:
            items: paths under ``root``, e.g. ``TRAIN_ITEMS``.
            root: the data folder (``MEDSCAN_DATA``, default ``../shared/data``).
            min_size: slices smaller than this (pixels, either side) are left out, and so are constant ones.
            neighbours: 2.5-D: stack each slice with this many neighbours on either side.

        Returns:
            The bank.
        """
        slices, sources = [], []
        if neighbours:
            return cls._stack_bank(items, root, min_size, neighbours)
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

    @classmethod
    def _stack_bank(cls, items: tuple[str, ...] | list[str], root: Path, min_size: int, k: int) -> SliceBank:
        views: list[np.ndarray] = []
        stacks: list[tuple[int, int, float, float]] = []
        sources: list[str] = []
        for item in items:
            scan = load(root / item)
            volume = np.asarray(scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0], np.float32)
            volume_lo, volume_hi = intensity_window(volume)
            for view in [volume] + [np.moveaxis(volume, axis, 0) for axis in (1, 2)]:  # views share memory
                if min(view.shape[1:]) < min_size or view.shape[0] < 2 * k + 1:
                    continue
                views.append(view)
                for index in range(k, view.shape[0] - k):
                    image = view[index]
                    lo, hi = intensity_window(image)
                    if float(image.std()) == 0.0 or hi - lo < 0.05 * (volume_hi - volume_lo):
                        continue
                    stacks.append((len(views) - 1, index, lo, hi))
                    sources.append(item)
        return cls(slices=[], sources=sources, neighbours=k, views=views, stacks=stacks)

    def item_weights(self, size: int) -> np.ndarray:
        """Slice probabilities giving every item that has slices of at least ``size`` an equal share.

        Drawing slices uniformly lets the items with many small slices crowd out the rest: at 128-px patches the
        four sequences of one brain MR filled 92 % of the draws and the three 512-px CT items under 3 %.
        """
        fits = np.array([min(image.shape) >= size for image in self.slices])
        sources = np.array(self.sources)
        weights = np.zeros(len(self.slices))
        for source in set(sources[fits]):
            chosen = fits & (sources == source)
            weights[chosen] = 1.0 / chosen.sum()
        if not weights.any():
            raise ValueError(f"no training slice is at least {size} px on each side")
        return weights / weights.sum()

    def sample(self, n: int, size: int, rng: np.random.Generator, flat_skip: float = 0.9,
               balance_items: bool = False) -> torch.Tensor:
        """``n`` random patches (n, 1, size, size) with random flips and 90-degree turns, mostly avoiding empty
        air: a flat patch is redrawn with probability ``flat_skip``. With ``balance_items`` each item is drawn
        equally often (``item_weights``) instead of each slice.

        In neighbour mode (n, 2k+1, size, size): the same crop, turn, flip and contrast for the whole stack.
        """
        channels = 2 * self.neighbours + 1
        patches = np.empty((n, channels, size, size), dtype=np.float32)
        if balance_items and self.neighbours:
            raise ValueError("item balancing is not implemented for neighbour stacks")
        weights = None
        if balance_items:
            if size not in self._weights:
                self._weights[size] = self.item_weights(size)
            weights = self._weights[size]
        filled = 0
        while filled < n:
            if self.neighbours:
                view, index, lo, hi = self.stacks[int(rng.integers(len(self.stacks)))]
                image = self.views[view][index]
            elif weights is not None:
                image = self.slices[int(rng.choice(len(self.slices), p=weights))]
            else:
                image = self.slices[int(rng.integers(len(self.slices)))]
            h, w = image.shape
            if h < size or w < size:
                continue
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            if self.neighbours:
                block = self.views[view][index - self.neighbours:index + self.neighbours + 1, y:y + size, x:x + size]
                patch = (np.asarray(block, np.float32) - lo) / (hi - lo)
            else:
                patch = image[y:y + size, x:x + size][None]
            centre = patch[self.neighbours]
            if centre.std() < 0.02 and rng.random() < flat_skip:
                continue
            patch = np.rot90(patch, int(rng.integers(4)), axes=(1, 2))
            if rng.random() < 0.5:
                patch = patch[:, :, ::-1]
            if self.neighbours and rng.random() < 0.5:
                patch = patch[::-1]  # the slice direction has no preferred sense
            gamma = float(np.exp(rng.normal(0, 0.25)))  # vary contrast like other windows and sequences
            patches[filled] = np.clip(patch, 0, None) ** gamma if gamma != 1 else patch
            filled += 1
        return torch.from_numpy(patches)


@dataclass
class LowDoseCtBank:
    """Full-dose CT slices with their projection-domain low-dose noise maps (``scripts/simulate_low_dose_ct.py``),
    both normalised to the clean slice's intensity window, so a patch's noise is the one its anatomy would get."""

    slices: list[np.ndarray]
    noises: list[np.ndarray]  # (K, H, W) float16, one realisation per kernel

    @classmethod
    def from_folder(cls, folder: Path) -> LowDoseCtBank:
        """Load the simulated low-dose CT slices (``*.npz`` with ``clean`` and ``noise``) written by
        ``scripts/simulate_low_dose_ct.py``, normalised to each clean slice's intensity window.

        Raises:
            FileNotFoundError: the folder holds no such slices.
        """
        files = sorted(Path(folder).glob("*.npz"))
        if not files:
            raise FileNotFoundError(f"{folder}: no simulated low-dose CT slices (run scripts/simulate_low_dose_ct.py)")
        slices, noises = [], []
        for path in files:
            with np.load(path) as data:
                clean = data["clean"].astype(np.float32)
                lo, hi = intensity_window(clean)
                slices.append((clean - lo) / (hi - lo))
                noises.append((data["noise"].astype(np.float32) / (hi - lo)).astype(np.float16))
        return cls(slices, noises)

    def sample(self, n: int, size: int, rng: np.random.Generator, flat_skip: float = 0.9) -> torch.Tensor:
        """(n, 2, size, size): clean patches and one of their noise realisations, cropped, turned and flipped alike
        (no contrast change: the noise belongs to these HU)."""
        patches = np.empty((n, 2, size, size), dtype=np.float32)
        filled = 0
        while filled < n:
            index = int(rng.integers(len(self.slices)))
            image, noise = self.slices[index], self.noises[index][int(rng.integers(len(self.noises[index])))]
            h, w = image.shape
            if h < size or w < size:
                continue
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            patch = np.stack([image[y:y + size, x:x + size], noise[y:y + size, x:x + size].astype(np.float32)])
            if patch[0].std() < 0.02 and rng.random() < flat_skip:
                continue
            patch = np.rot90(patch, int(rng.integers(4)), axes=(1, 2))
            patches[filled] = patch[:, :, ::-1] if rng.random() < 0.5 else patch
            filled += 1
        return torch.from_numpy(patches)


@dataclass
class MixedBank:
    """Draws a ``share`` of each batch from a ``LowDoseCtBank`` and the rest from a ``SliceBank``; (n, 2, s, s) with
    the realistic noise in channel 1, NaN for the patches that have none (the task adds its own noise there)."""

    slices: SliceBank
    low_dose: LowDoseCtBank
    share: float

    def sample(self, n: int, size: int, rng: np.random.Generator, flat_skip: float = 0.9,
               balance_items: bool = False) -> torch.Tensor:
        """Draw ``n`` patches of ``size`` pixels: about ``share`` of them from the low-dose CT bank, the rest from
        the slice bank.

        Returns:
            ``(n, 2, size, size)``: the clean patch in channel 0 and its low-dose noise in channel 1 (NaN where the
            task is to add its own noise).
        """
        m = int(rng.binomial(n, self.share))
        plain = self.slices.sample(n - m, size, rng, flat_skip=flat_skip, balance_items=balance_items)
        plain = torch.cat([plain, torch.full_like(plain, float("nan"))], dim=1)
        return torch.cat([self.low_dose.sample(m, size, rng, flat_skip=flat_skip), plain]) if m else plain
