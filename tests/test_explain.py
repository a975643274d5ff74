"""Explanation sanity checks from the literature, on the held-out subject TCGA-DU-7294 (models trained on FG-6692).

* Model randomisation (Adebayo et al., NeurIPS 2018): an explanation that survives re-drawing the weights
  explains the image, not the model — the trained and randomised maps must correlate clearly less than 1.
* Pointing game (Zhang et al., ECCV 2016): the map's maximum falls inside the pseudo-label tumour on most
  positive slices. The full-subject hit rates are printed by scripts/evaluate_annotate.py and kept in the card.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscan.annotate import learned as L
from medscan.explain import (
    SliceScore,
    explain_slice,
    gradcam_map,
    integrated_gradients_map,
    pointing_hit,
    randomised_copy,
)
from medscan.io import load
from medscan.nets.weights import load_model
from medscan.train.data import DATA_ROOT

HELDOUT = DATA_ROOT / "labelled" / "brain_tumour_tcga_du_7294"
POINTING_FLOOR = 0.6  # "most" positive slices
RANDOMISED_CORRELATION_CEILING = 0.5


@pytest.fixture(scope="module")
def heldout():
    torch.set_num_threads(1)
    scan = load(HELDOUT / "flair.nii.gz")
    tumour = L.canonical_volume(load(HELDOUT / "tumour_seg_auto.nii.gz").voxels > 0, scan)
    image = L.canonical_volume(L.brain_normalise(scan.voxels)[0], scan)
    areas = tumour.sum(axis=(1, 2))
    positive = np.flatnonzero(areas >= 50)
    chosen = positive[np.linspace(0, positive.size - 1, 8).round().astype(int)]
    return scan, image, tumour, [int(k) for k in chosen]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.xfail(strict=True, reason="KNOWN FAILURE: Grad-CAM of the pooled segmenter (bottom layer) peaks outside "
                   "the pseudo-label tumour on most held-out slices (1 of 8 here); see the tumour_seg2d card")
def test_gradcam_maps_are_slice_shaped_in_unit_range_and_point_at_the_tumour(heldout) -> None:
    _scan, image, tumour, slices = heldout
    classifier = SliceScore(load_model("tumour_seg2d")[0]).eval()
    hits = []
    for k in slices:
        cam = gradcam_map(classifier, image[k], pixel_mm=1.0)
        assert cam.shape == image[k].shape and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        hits.append(pointing_hit(cam, tumour[k]))
    rate = float(np.mean(hits))
    print(f"Grad-CAM pointing game on {len(slices)} held-out positive slices: {rate:.2f}")
    assert rate >= POINTING_FLOOR


def test_gradcam_fails_the_randomisation_check_only_when_it_should(heldout) -> None:
    _scan, image, _tumour, slices = heldout
    classifier = SliceScore(load_model("tumour_seg2d")[0]).eval()
    randomised = randomised_copy(classifier)
    same = [correlation(gradcam_map(classifier, image[k], pixel_mm=1.0),
                        gradcam_map(classifier, image[k], pixel_mm=1.0)) for k in slices[:2]]
    assert min(same) > 0.99  # deterministic: the drop below is the weights, not noise
    drops = [correlation(gradcam_map(classifier, image[k], pixel_mm=1.0),
                         gradcam_map(randomised, image[k], pixel_mm=1.0)) for k in slices]
    print(f"Grad-CAM trained vs randomised correlation: mean {np.mean(drops):.2f}")
    assert np.mean(drops) < RANDOMISED_CORRELATION_CEILING


def test_integrated_gradients_for_a_finding_points_at_the_tumour(heldout) -> None:
    _scan, image, tumour, slices = heldout
    segmenter, _card = load_model("tumour_seg2d")
    hits = []
    for k in slices[::2]:
        trained = integrated_gradients_map(segmenter, image[k], tumour[k], steps=8)
        assert trained.shape == image[k].shape and trained.min() >= 0 and trained.max() == pytest.approx(1.0)
        hits.append(pointing_hit(trained, tumour[k], tolerance_px=2))
    assert np.mean(hits) >= POINTING_FLOOR


@pytest.mark.xfail(strict=True, reason="KNOWN FAILURE: IntegratedGradients of a finding's summed logit stays ~0.75 "
                   "correlated after weight randomisation — the map is dominated by the finding mask and the input, "
                   "not the model (Adebayo et al.'s warning); see the tumour_seg2d card")
def test_integrated_gradients_for_a_finding_changes_with_randomised_weights(heldout) -> None:
    _scan, image, tumour, slices = heldout
    segmenter, _card = load_model("tumour_seg2d")
    k = slices[len(slices) // 2]
    trained = integrated_gradients_map(segmenter, image[k], tumour[k], steps=8)
    random_map = integrated_gradients_map(randomised_copy(segmenter), image[k], tumour[k], steps=8)
    assert correlation(trained, random_map) < RANDOMISED_CORRELATION_CEILING


def test_explain_slice_on_a_scan(heldout) -> None:
    scan, _image, _tumour, slices = heldout
    k = slices[len(slices) // 2]
    maps = explain_slice(scan, k)
    assert set(maps) == {"gradcam"} and maps["gradcam"].shape == scan.voxels.shape[1:]
    assert maps["gradcam"].min() >= 0.0 and maps["gradcam"].max() <= 1.0
