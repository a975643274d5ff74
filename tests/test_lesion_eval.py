"""Lesion maps against the MS experts' consensus masks: the metric helpers on tiny cases with known answers, and the
leave-one-subject-out evaluation run for real on one held-out subject (brain_ms_patient07, thresholds from
brain_ms_patient19). The full two-subject tables are in models/anomaly_dae2d.json and models/lesion_seg2d.json."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscan.annotate import lesion_eval as E
from medscan.scan import Scan
from medscan.train.data import DATA_ROOT

MS07 = DATA_ROOT / "paired" / "brain_ms_patient07"
MS19 = DATA_ROOT / "paired" / "brain_ms_patient19"


def test_average_precision_matches_the_step_definition_with_ties() -> None:
    # sorted by score: 0.9 (pos), 0.8 (neg), 0.8 (pos, tied with the neg), 0.1 (neg)
    scores, labels = np.array([0.8, 0.9, 0.1, 0.8]), np.array([0, 1, 0, 1])
    # thresholds 0.9 -> recall 1/2 at precision 1; 0.8 -> recall 1 at precision 2/3 (the tie enters together)
    assert E.average_precision(scores, labels) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert E.average_precision(np.array([3.0, 2, 1]), np.array([1, 1, 0])) == pytest.approx(1.0)
    assert np.isnan(E.average_precision(np.array([1.0, 2]), np.array([0, 0])))


def test_lesion_detection_counts_hit_lesions_and_false_positive_pieces() -> None:
    lesions = np.zeros((8, 20, 20), bool)
    lesions[2:4, 2:5, 2:5] = True  # lesion A
    lesions[5, 12:15, 12:15] = True  # lesion B
    lesions[6, 3, 17] = True  # lesion C: one voxel
    prediction = np.zeros_like(lesions)
    prediction[3, 4, 4] = True  # touches A with one voxel
    prediction[6, 3, 16:18] = True  # covers C and spills over
    prediction[1, 15:18, 2:4] = True  # nowhere near a lesion: a false-positive piece
    prediction[7, 18, 18] = True  # another one
    result = E.lesion_detection(prediction, lesions)
    assert result == {"lesions": 3, "detected": 2, "detection_rate": pytest.approx(2 / 3),
                      "predicted_components": 4, "fp_components": 2}


def _toy_case(seed: int, lesion_value: float) -> tuple[E.LesionCase, np.ndarray]:
    rng = np.random.default_rng(seed)
    brain = np.zeros((6, 24, 24), bool)
    brain[:, 2:22, 2:22] = True
    lesions = np.zeros_like(brain)
    lesions[2:4, 8:12, 8:12] = True
    scores = np.where(brain, rng.normal(0.0, 0.3, brain.shape), 0.0) + lesions * lesion_value
    scan = Scan(voxels=scores.astype(np.float32), affine=np.eye(4), modality="MR")
    return E.LesionCase("toy", scan, brain, lesions, scores.astype(np.float32)), scores.astype(np.float32)


def test_the_threshold_comes_from_the_other_subject_and_is_applied_unchanged() -> None:
    other, other_map = _toy_case(1, 3.0)
    test, test_map = _toy_case(2, 0.8)  # dimmer lesions: the other subject's threshold misses most of them
    threshold, other_dice = E.choose_threshold(other_map, other)
    assert other_dice > 0.8  # the percentile grid is coarse for 32 lesion voxels; well separated all the same
    rows = E.evaluate_subject(test, other, {"flair_z": test_map}, {"flair_z": other_map})
    assert [r["method"] for r in rows] == ["flair_z"]
    row = rows[0]
    assert row["threshold"] == threshold and row["other_dice"] == other_dice
    assert row["dice"] == pytest.approx(E.dice((test_map >= threshold) & test.brain, test.lesions))
    assert row["dice"] < E.choose_threshold(test_map, test)[1]  # the test subject's own best would score higher


@pytest.mark.model
@pytest.mark.skipif(not MS07.exists() or not MS19.exists(), reason="../shared/data/paired MS subjects not present")
def test_held_out_ms_subject_against_the_expert_mask() -> None:
    """brain_ms_patient07 held out: the anomaly map, the FLAIR z-score baseline and the lesion segmenter fold trained
    on brain_ms_patient19 only; every threshold chosen on brain_ms_patient19."""
    from medscan.nets.weights import load_model, models_dir

    torch.set_num_threads(1)
    test, other = E.load_case(MS07, "ms07"), E.load_case(MS19, "ms19")
    model, card = load_model("lesions_ms19", models_dir() / "folds")
    assert card.data["train_subject"] == "ms19"  # the fold never saw the held-out subject
    segmenter = (model, int(card.data["patch"]))
    test_maps, other_maps = E.score_maps(test, segmenter), E.score_maps(other, segmenter)
    rows = {r["method"]: r for r in E.evaluate_subject(test, other, test_maps, other_maps)}
    assert set(rows) == {"anomaly", "flair_z", "segmentation"}
    for method, row in rows.items():
        # Dice was computed at the threshold the OTHER subject chose, and that is not the test subject's own best
        threshold, other_dice = E.choose_threshold(other_maps[method], other, probability=method == "segmentation")
        assert (row["threshold"], row["other_dice"], row["threshold_from"]) == (threshold, other_dice, "ms19")
        prediction = (test_maps[method] >= threshold) & test.brain
        assert row["dice"] == pytest.approx(E.dice(prediction, test.lesions))
        assert row["threshold"] != E.choose_threshold(test_maps[method], test, method == "segmentation")[0]
        assert row["lesions"] == 37 and 0 <= row["detected"] <= 37
        print(f"ms07 {method}: AUROC {row['auroc']:.3f} AP {row['average_precision']:.3f} Dice {row['dice']:.3f} "
              f"detected {row['detected']}/37 FP components {row['fp_components']}")
    assert 0.85 < rows["flair_z"]["auroc"] < 1.0  # lesions are FLAIR-bright: the baseline is strong
    assert 0.6 < rows["anomaly"]["auroc"] < rows["flair_z"]["auroc"]  # measured: the DAE map loses to the baseline
    assert rows["segmentation"]["auroc"] > 0.9
    assert rows["segmentation"]["dice"] > rows["flair_z"]["dice"]
