"""MR contrast translation (T1->T2, T1->FLAIR, T2->FLAIR, T2->T1, T1c<->T1): data, normalisation and the LUT baseline.

One definition of what the translator sees, shared by training (``scripts/train_translate.py``), evaluation
(``scripts/evaluate_translate.py``) and the Generate operation (``medscan.ops.translate``):

* the brain is the non-zero region of the skull-stripped volume (BraTS-style preprocessing, as in paired/);
* every volume is divided by the MEDIAN of its brain (negative interpolation ripple clipped to 0), so source and
  target are on a scale where typical brain tissue is 1. Not a high percentile: the bright end of T2 is CSF and
  oedema, whose share differs between subjects (the 99th percentile of T2 is 3.7 x the median in du_7294, 2.4 x
  in fg_6692), so a percentile scale put the same tissue 50% apart in two subjects;
* slices are axial, turned to the LPS in-plane orientation (``medscan.annotate.learned.canonical_volume``), 1 mm.

Four paired subjects from two centres (two TCGA-LGG glioma subjects in SRI-24 space, two Ljubljana MS subjects in
MNI space); training and evaluation are leave-one-subject-out, so every fold is tested on a subject whose centre
and scanner at most one training subject shares.

The baseline is the best intensity mapping without anatomy: a piecewise-linear look-up table fitted on the
TRAINING subjects (their brain voxels pooled) from source to target intensity inside the brain. Two forms are
fitted: the conditional mean of the target in each source-intensity bin (the L2-optimal map of intensity alone,
non-monotone allowed) and its best monotone version (isotonic regression, increasing or decreasing, whichever
fits the training subjects better: T1->T2 inverts the tissue order), each also applied after histogram-matching
the new subject's source to the training subjects' (brain voxels, 1001 quantiles). The evaluation reports all four
and compares with the strongest on the held-out subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medscan.nets.translator import CONTRASTS
from medscan.nets.volumes import CLIP, QUANTILES, IntensityLUT, brain_scale, canonical_volume
from medscan.train.data import DATA_ROOT

FOLDERS = {"du_7294": "brain_tcga_du_7294", "fg_6692": "brain_tcga_fg_6692",  # glioma, TCGA-LGG, SRI-24 space
           "ms07": "brain_ms_patient07", "ms19": "brain_ms_patient19"}  # MS, Ljubljana, MNI space
SUBJECTS = tuple(FOLDERS)
FILES = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}
DIRECTIONS: tuple[tuple[str, str], ...] = (("T1", "T2"), ("T1", "FLAIR"), ("T2", "FLAIR"), ("T2", "T1"),
                                           ("T1c", "T1"), ("T1", "T1c"))
MIN_BRAIN_PIXELS = 500  # slices with less brain (the vertex, the foramen magnum) are skipped in training and scoring
LUT_BINS = 256


def item(subject: str, contrast: str) -> Path:
    """Path of one contrast of a paired subject, e.g. ``item("du_7294", "T2")``, under the data folder."""
    return DATA_ROOT / "paired" / FOLDERS[subject] / f"{FILES[contrast]}.nii.gz"


def training_subjects(heldout: str) -> tuple[str, ...]:
    """The subjects a leave-one-subject-out fold trains on: every paired subject but ``heldout``."""
    if heldout not in FOLDERS:
        raise ValueError(f"unknown paired subject {heldout!r} (known: {', '.join(SUBJECTS)})")
    return tuple(s for s in SUBJECTS if s != heldout)


def load_subject(subject: str, contrasts: tuple[str, ...] = CONTRASTS) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Normalised canonical (K, H, W) volumes of one paired subject and the brain mask common to all of them."""
    from medscan.io import load

    volumes, brain = {}, None
    for contrast in contrasts:
        scan = load(item(subject, contrast))
        normalised, mask, _ = brain_scale(canonical_volume(scan.voxels, scan))
        volumes[contrast] = normalised
        brain = mask if brain is None else brain & mask
    return volumes, brain


def code(contrast: str) -> int:
    """Index of ``contrast`` in ``CONTRASTS`` (the one-hot plane the network is given)."""
    return CONTRASTS.index(contrast)


@dataclass
class PairedBank:
    """Every brain slice of the training subject(s), sampled as aligned (source, target, brain) crops."""

    volumes: list[dict[str, np.ndarray]]
    brains: list[np.ndarray]
    slices: list[tuple[int, int]]  # (subject index, slice)

    @classmethod
    def from_subjects(cls, subjects: list[str] | tuple[str, ...]) -> PairedBank:
        """Load every contrast of each subject and keep the slices with enough brain in them.

        Args:
            subjects: paired subject ids, e.g. ``["du_7294"]``.
        """
        volumes, brains, slices = [], [], []
        for s, subject in enumerate(subjects):
            vols, brain = load_subject(subject)
            volumes.append(vols)
            brains.append(brain)
            slices += [(s, k) for k in np.flatnonzero(brain.sum(axis=(1, 2)) >= MIN_BRAIN_PIXELS)]
        return cls(volumes, brains, slices)

    def sample(self, n: int, size: int, rng: np.random.Generator, directions=DIRECTIONS,
               priors: dict[str, IntensityLUT] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(source, target, brain) (n,1,size,size) crops with (source, target) contrast codes (n,), and with
        ``priors`` ({"T1->T2": LUT}) the prior crops: each direction's table applied to the augmented source.

        Crops are centred on a random brain pixel (so they hold brain, not background), flipped at random, and
        the source gets a random intensity scale (0.9-1.1) and gamma (0.85-1.15): the per-volume percentile
        scale of another scanner's series never lands exactly where the training subject's did.
        """
        src = np.zeros((n, 1, size, size), np.float32)
        tgt = np.zeros_like(src)
        msk = np.zeros_like(src)
        codes = np.zeros((2, n), np.int64)
        for b in range(n):
            s, k = self.slices[rng.integers(len(self.slices))]
            a, t = directions[rng.integers(len(directions))]
            brain = self.brains[s][k]
            rows, cols = np.nonzero(brain)
            pick = rng.integers(len(rows))
            h, w = brain.shape
            r0 = int(np.clip(rows[pick] - size // 2, 0, max(0, h - size)))
            c0 = int(np.clip(cols[pick] - size // 2, 0, max(0, w - size)))
            window = (slice(r0, r0 + size), slice(c0, c0 + size))
            planes = [self.volumes[s][a][k][window], self.volumes[s][t][k][window], brain[window].astype(np.float32)]
            if rng.random() < 0.5:
                planes = [p[:, ::-1] for p in planes]
            if rng.random() < 0.5:
                planes = [p[::-1, :] for p in planes]
            gain, gamma = rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)
            ph, pw = planes[0].shape
            src[b, 0, :ph, :pw] = np.clip(gain * planes[0] ** gamma, 0, CLIP)
            tgt[b, 0, :ph, :pw] = planes[1]
            msk[b, 0, :ph, :pw] = planes[2]
            codes[:, b] = code(a), code(t)
        prior = None
        if priors is not None:
            prior = np.zeros_like(src)
            for b in range(n):
                lut = priors[f"{CONTRASTS[codes[0, b]]}->{CONTRASTS[codes[1, b]]}"]
                prior[b] = lut(src[b]) * msk[b]
            prior = torch.from_numpy(prior)
        return (torch.from_numpy(src), torch.from_numpy(tgt), torch.from_numpy(msk),
                torch.from_numpy(codes[0]), torch.from_numpy(codes[1]), prior)


# -- the look-up-table baseline -----------------------------------------------------------------------------------
def _isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``y`` (pool-adjacent-violators)."""
    values, weights, counts = [], [], []
    for yi, wi in zip(y, w, strict=True):
        values.append(yi)
        weights.append(wi)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            wsum = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / max(wsum, 1e-12)
            c = counts[-2] + counts[-1]
            values[-2:], weights[-2:], counts[-2:] = [merged], [wsum], [c]
    return np.repeat(values, counts)


def brain_values(volumes: list[dict[str, np.ndarray]], brains: list[np.ndarray], contrast: str) -> np.ndarray:
    """Brain voxels of ``contrast`` of several subjects, pooled (the same voxel order for every contrast)."""
    return np.concatenate([v[contrast][b] for v, b in zip(volumes, brains, strict=True)])


def fit_priors(volumes: list[dict[str, np.ndarray]], brains: list[np.ndarray],
               directions=DIRECTIONS) -> dict[str, IntensityLUT]:
    """The translator's prior per direction: the training subjects' pooled conditional-mean LUT (applied directly)."""
    return {f"{a}->{b}": fit_luts(brain_values(volumes, brains, a), brain_values(volumes, brains, b))[0]
            for a, b in directions}


def fit_luts(source: np.ndarray, target: np.ndarray, bins: int = LUT_BINS) -> list[IntensityLUT]:
    """The conditional-mean LUT and the best monotone LUT of target given source.

    Args:
        source, target: the same brain voxels in the two contrasts (1-D, see ``brain_values``), normalised.
        bins: source-intensity quantile bins (equal voxel counts, so the sparse bright end is not one noisy bin).
    """
    s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1).astype(np.float64)
    keep = counts > 0
    sums = np.bincount(which, weights=t, minlength=len(edges) - 1)
    centres = (np.bincount(which, weights=s, minlength=len(edges) - 1)[keep] / counts[keep])
    mean = sums[keep] / counts[keep]
    w = counts[keep]
    luts = [IntensityLUT(centres, mean, "conditional mean")]
    best = None
    for sign in (1.0, -1.0):
        fit = sign * _isotonic(sign * mean, w)
        err = float(np.sum(w * (fit - mean) ** 2))
        if best is None or err < best[0]:
            best = (err, fit, "monotone increasing" if sign > 0 else "monotone decreasing")
    luts.append(IntensityLUT(centres, best[1], best[2]))
    reference = np.quantile(s, QUANTILES)
    luts += [IntensityLUT(lut.centres, lut.values, f"{lut.kind}, histogram-matched", reference) for lut in luts]
    return luts
