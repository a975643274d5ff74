"""Lesion maps against expert masks: voxel AUROC / AP, Dice at a transferred threshold, lesion-wise detection.

The expert reference is a white-matter-lesion mask (the Ljubljana MS consensus masks in ``paired/brain_ms_*``).
Every score map is compared inside the brain mask of ``brain_normalise`` only (outside it every method is 0 and the
expert mask is empty, so counting those voxels would inflate AUROC). Three maps are scored the same way:

* ``anomaly``: the shipped FLAIR anomaly map (``medscan.annotate.anomaly.anomaly_map``), brain-median units;
* ``flair_z``: the plain baseline, FLAIR z-score over the brain (mean and sd of the subject's own brain voxels);
* ``segmentation``: a lesion segmenter's probability (any fold's network through ``learned.segment_with``).

Leave-one-subject-out: a map's operating threshold is the value, among ``THRESHOLD_PERCENTILES`` of the OTHER
subject's in-brain scores (and, for probabilities, ``PROBABILITY_GRID``), with the highest Dice on that OTHER
subject; it is applied unchanged to the test subject, whose mask never chooses anything. Lesions are 26-connected
3-D components of a mask; one is detected when any predicted voxel touches it, and a predicted component that
touches no expert lesion is a false-positive component.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from medscan.annotate.anomaly import anomaly_map, auroc
from medscan.annotate.learned import BRAIN_MM, brain_normalise, segment_with
from medscan.io import load
from medscan.scan import MedscanError, Scan

if TYPE_CHECKING:
    import torch

CONNECTIVITY = np.ones((3, 3, 3), bool)  # 26-connected lesions, as findings.py
THRESHOLD_PERCENTILES = tuple(np.round(np.concatenate([np.arange(80.0, 99.0, 1.0), np.arange(99.0, 99.99, 0.05)]),
                                       3))
PROBABILITY_GRID = tuple(np.round(np.arange(0.1, 0.951, 0.05), 2))
THRESHOLD_RULE = ("the value with the highest Dice on the OTHER subject, among its in-brain scores' percentiles "
                  "80..99 (step 1) and 99..99.95 (step 0.05) (probability maps: also 0.10..0.95 in 0.05); "
                  "ties: the lower value")
METHODS = ("anomaly", "flair_z", "segmentation")


@dataclass
class LesionCase:
    """One subject: its FLAIR ``scan``, the ``brain`` mask and the expert ``lesions`` mask (scan grid, bool)."""

    name: str
    scan: Scan
    brain: np.ndarray
    lesions: np.ndarray
    normalised: np.ndarray  # brain_normalise(FLAIR): what the learned models see


def load_case(folder: str | Path, name: str | None = None) -> LesionCase:
    """``folder/flair.nii.gz`` and ``folder/lesions_consensus.nii.gz`` (voxel-aligned) as a :class:`LesionCase`.

    Raises:
        MedscanError: a file is missing, the two grids differ, or the mask is empty.
    """
    folder = Path(folder)
    scan = load(folder / "flair.nii.gz")
    mask = load(folder / "lesions_consensus.nii.gz")
    if mask.voxels.shape != scan.voxels.shape or not np.allclose(mask.affine, scan.affine, atol=1e-3):
        raise MedscanError(folder / "lesions_consensus.nii.gz", "lesion mask is not on the FLAIR's grid")
    lesions = mask.voxels > 0
    if not lesions.any():
        raise MedscanError(folder / "lesions_consensus.nii.gz", "lesion mask is empty")
    normalised, brain = brain_normalise(scan.voxels)
    return LesionCase(name or folder.name, scan, brain, lesions, normalised)


def flair_zscore(case: LesionCase) -> np.ndarray:
    """The baseline map: FLAIR z-score over the subject's brain voxels (0 outside the brain)."""
    values = case.scan.voxels.astype(np.float64)
    inside = values[case.brain]
    z = (values - inside.mean()) / max(float(inside.std()), 1e-6)
    return np.where(case.brain, z, 0.0).astype(np.float32)


def segmentation_probability(case: LesionCase, model: torch.nn.Module, patch: int) -> np.ndarray:
    """A lesion segmenter's foreground probability on the case's grid (0 outside the brain)."""
    _labels, probs = segment_with(model, case.scan, case.normalised, BRAIN_MM, roi=patch)
    return np.where(case.brain, probs[0], 0.0).astype(np.float32)


def score_maps(case: LesionCase, segmenter: tuple[torch.nn.Module, int] | None = None,
               anomaly_model: str | None = None, anomaly_folder: Path | None = None) -> dict[str, np.ndarray]:
    """Every method's map on the case's grid: ``anomaly``, ``flair_z`` and (with ``segmenter`` = (network, patch
    size)) ``segmentation``. ``anomaly_model``/``anomaly_folder`` pick another DAE than the shipped one."""
    maps = {"flair_z": flair_zscore(case)}
    if anomaly_model is None:
        maps["anomaly"] = anomaly_map(case.scan)
    else:
        maps["anomaly"] = anomaly_map(case.scan, anomaly_model, anomaly_folder)
    if segmenter is not None:
        maps["segmentation"] = segmentation_probability(case, *segmenter)
    return maps


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks; NaN when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return float(2 * (a & b).sum() / total) if total else float("nan")


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum over distinct score values (sklearn's definition:
    sum over thresholds of (recall gain) x precision; tied scores enter together). NaN without positives."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each distinct value
    tp = np.cumsum(labels)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float((recall_gain * precision).sum())


def lesion_detection(prediction: np.ndarray, lesions: np.ndarray) -> dict[str, Any]:
    """Lesion-wise figures: expert lesions hit by any predicted voxel, and predicted components hitting none.

    Returns:
        ``lesions`` (expert components), ``detected``, ``detection_rate`` (NaN without lesions),
        ``predicted_components`` and ``fp_components``.
    """
    prediction, lesions = np.asarray(prediction, bool), np.asarray(lesions, bool)
    truth, n_truth = ndimage.label(lesions, structure=CONNECTIVITY)
    pred, n_pred = ndimage.label(prediction, structure=CONNECTIVITY)
    detected = np.unique(truth[prediction & lesions]).size  # all > 0: those voxels are inside lesions
    hit_pred = np.unique(pred[prediction & lesions])
    return {"lesions": int(n_truth), "detected": int(detected),
            "detection_rate": float(detected / n_truth) if n_truth else float("nan"),
            "predicted_components": int(n_pred), "fp_components": int(n_pred - hit_pred.size)}


def choose_threshold(scores: np.ndarray, case: LesionCase, probability: bool = False) -> tuple[float, float]:
    """``THRESHOLD_RULE`` on ``case`` (the subject that is NOT tested): (threshold, its Dice on ``case``)."""
    return choose_threshold_mean([(scores, case)], probability)


def choose_threshold_mean(pairs: list[tuple[np.ndarray, LesionCase]], probability: bool = False
                          ) -> tuple[float, float]:
    """``THRESHOLD_RULE`` over several (map, case) pairs none of which is tested: candidates from every case's
    percentiles, the one with the highest MEAN Dice wins (each subject counts once, whatever its lesion load).

    Returns:
        (threshold, its mean Dice over the pairs).
    """
    candidates: set[float] = set()
    for scores, case in pairs:
        candidates |= set(np.percentile(scores[case.brain], THRESHOLD_PERCENTILES).tolist())
    if probability:
        candidates |= set(PROBABILITY_GRID)
    best, best_dice = 0.0, -1.0
    for value in sorted(candidates):
        d = float(np.mean([dice((scores >= value) & case.brain, case.lesions) for scores, case in pairs]))
        if d > best_dice:
            best, best_dice = float(value), d
    return best, best_dice


def evaluate_map(scores: np.ndarray, case: LesionCase, threshold: float) -> dict[str, Any]:
    """Figures of one map on the test ``case`` at a threshold chosen elsewhere."""
    inside, truth = scores[case.brain], case.lesions[case.brain]
    prediction = (scores >= threshold) & case.brain
    return {"auroc": auroc(inside, truth), "average_precision": average_precision(inside, truth),
            "dice": dice(prediction, case.lesions), "threshold": float(threshold),
            "predicted_ml": float(prediction.sum() * abs(np.linalg.det(case.scan.affine[:3, :3])) / 1000),
            **lesion_detection(prediction, case.lesions)}


def evaluate_subject(test: LesionCase, other: LesionCase, test_maps: dict[str, np.ndarray],
                     other_maps: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One held-out subject: per method in both map sets, the threshold chosen on ``other`` and the figures on
    ``test`` (see :func:`evaluate_map`); ``other_dice`` is the Dice that chose it.

    ``other_maps["segmentation"]`` must come from the SAME network as ``test_maps["segmentation"]`` (one trained on
    ``other``), so its threshold is chosen on that network's training subject.
    """
    rows = []
    for method in METHODS:
        if method not in test_maps or method not in other_maps:
            continue
        threshold, other_dice = choose_threshold(other_maps[method], other, probability=method == "segmentation")
        rows.append({"method": method, "subject": test.name, "threshold_from": other.name,
                     "other_dice": other_dice, "threshold_rule": THRESHOLD_RULE,
                     "reference_ml": float(test.lesions.sum() * abs(np.linalg.det(test.scan.affine[:3, :3])) / 1000),
                     **evaluate_map(test_maps[method], test, threshold)})
    return rows


def explanation_checks(case: LesionCase, model: torch.nn.Module, probability: np.ndarray, threshold: float,
                       max_slices: int = 24) -> dict[str, Any]:
    """Seg-Grad-CAM sanity checks of a lesion segmenter's findings against the expert mask (as tests/test_explain.py
    does for the tumour): on up to ``max_slices`` evenly spaced slices where the model's mask (``probability`` >=
    ``threshold``) touches an expert lesion, the finding is the model's 2-D pieces touching one; ``pointing_2px`` is
    the share of slices whose map maximum lies within 2 px of an expert lesion (pointing game), ``randomised_corr``
    the mean correlation with the map of the same network with re-drawn weights (Adebayo et al.; under 0.5 passes).
    """
    from medscan.annotate.explain import pointing_hit, randomised_copy, seg_gradcam_map
    from medscan.nets.volumes import canonical_volume

    image = canonical_volume(case.normalised, case.scan)
    lesions = canonical_volume(case.lesions, case.scan)
    prediction = canonical_volume((probability >= threshold) & case.brain, case.scan)
    touching = (prediction & lesions).sum(axis=(1, 2))
    slices = np.flatnonzero(touching >= 5)
    if slices.size > max_slices:
        slices = slices[np.linspace(0, slices.size - 1, max_slices).round().astype(int)]
    random_model = randomised_copy(model)
    hits, correlations = [], []
    for k in slices:
        pieces, _count = ndimage.label(prediction[k])
        finding = np.isin(pieces, np.unique(pieces[prediction[k] & lesions[k]]))
        trained = seg_gradcam_map(model, image[k], finding)
        hits.append(pointing_hit(trained, lesions[k], tolerance_px=2))
        randomised = seg_gradcam_map(random_model, image[k], finding)
        ok = trained.std() > 0 and randomised.std() > 0
        correlations.append(float(np.corrcoef(trained.ravel(), randomised.ravel())[0, 1]) if ok else 0.0)
    return {"subject": case.name, "slices": int(slices.size), "threshold": float(threshold),
            "pointing_2px": float(np.mean(hits)) if hits else float("nan"),
            "randomised_corr": float(np.mean(correlations)) if correlations else float("nan")}
