"""Explanation sanity checks from the literature, on the held-out subject TCGA-DU-7294 (models trained on FG-6692).

* Model randomisation (Adebayo et al., NeurIPS 2018): an explanation that survives re-drawing the weights
  explains the image, not the model — the trained and randomised maps must correlate clearly less than 1.
* Pointing game (Zhang et al., ECCV 2016): the map's maximum falls inside the pseudo-label tumour on most
  positive slices. The full-subject hit rates are printed by scripts/evaluate_annotate.py and kept in the card.

The Grad-CAM layer and channel weighting were chosen on the TRAINING subjects (scripts/evaluate_annotate.py);
the pointing game runs on every positive held-out slice (38): on a fixed 8-slice sample one candidate scored 0.38
and 0.68 on every 2nd slice — too few slices to judge a floor.
IntegratedGradients and occlusion of a finding fail the randomisation check: kept as documented strict xfails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medscan.annotate import learned as L
from medscan.annotate.explain import (
    CAM_LAYER,
    CAM_WEIGHTING,
    SliceScore,
    explain_slice,
    gradcam_map,
    integrated_gradients_map,
    occlusion_map,
    pointing_hit,
    randomised_copy,
    seg_gradcam_map,
)
from medscan.io import load
from medscan.nets.weights import load_model
from medscan.train.data import DATA_ROOT

pytestmark = pytest.mark.model

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
    return scan, image, tumour, [int(k) for k in chosen], [int(k) for k in positive]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_gradcam_maps_are_slice_shaped_in_unit_range_and_point_at_the_tumour(heldout) -> None:
    _scan, image, tumour, _sample, positive = heldout
    classifier = SliceScore(load_model("tumour_seg2d")[0]).eval()
    assert (classifier.layer, classifier.weighting) == (CAM_LAYER, CAM_WEIGHTING) == ("decoder 1/4", "positive")
    hits = []
    for k in positive:
        cam = gradcam_map(classifier, image[k], pixel_mm=1.0)
        assert cam.shape == image[k].shape and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        hits.append(pointing_hit(cam, tumour[k]))
    rate = float(np.mean(hits))
    print(f"Grad-CAM pointing game on {len(positive)} held-out positive slices: {rate:.2f}")
    assert rate >= POINTING_FLOOR


def test_the_v1_gradcam_bottom_layer_signed_weights_misses_the_tumour(heldout) -> None:
    """What v1 shipped (LayerGradCam at the bottom unit): most maxima outside the tumour — the floor can fail."""
    _scan, image, tumour, sample, _positive = heldout
    v1 = SliceScore(load_model("tumour_seg2d")[0], layer="bottom 1/8", weighting="signed").eval()
    rate = float(np.mean([pointing_hit(gradcam_map(v1, image[k], pixel_mm=1.0), tumour[k]) for k in sample]))
    assert rate < POINTING_FLOOR


def test_gradcam_fails_the_randomisation_check_only_when_it_should(heldout) -> None:
    _scan, image, _tumour, slices, _positive = heldout
    classifier = SliceScore(load_model("tumour_seg2d")[0]).eval()
    randomised = randomised_copy(classifier)
    same = [correlation(gradcam_map(classifier, image[k], pixel_mm=1.0),
                        gradcam_map(classifier, image[k], pixel_mm=1.0)) for k in slices[:2]]
    assert min(same) > 0.99  # deterministic: the drop below is the weights, not noise
    drops = [correlation(gradcam_map(classifier, image[k], pixel_mm=1.0),
                         gradcam_map(randomised, image[k], pixel_mm=1.0)) for k in slices]
    print(f"Grad-CAM trained vs randomised correlation: mean {np.mean(drops):.2f}")
    assert np.mean(drops) < RANDOMISED_CORRELATION_CEILING


def test_seg_gradcam_of_a_finding_points_at_it_and_changes_with_randomised_weights(heldout) -> None:
    """The explanation medscan shows and keeps for a finding: both sanity checks on the held-out subject."""
    _scan, image, tumour, _sample, positive = heldout
    segmenter, _card = load_model("tumour_seg2d")
    randomised = randomised_copy(segmenter)
    hits, drops = [], []
    for k in positive[::2]:
        trained = seg_gradcam_map(segmenter, image[k], tumour[k])
        assert trained.shape == image[k].shape and trained.min() >= 0 and trained.max() == pytest.approx(1.0)
        hits.append(pointing_hit(trained, tumour[k]))
        drops.append(correlation(trained, seg_gradcam_map(randomised, image[k], tumour[k])))
    print(f"Seg-Grad-CAM on {len(hits)} held-out slices: pointing {np.mean(hits):.2f}, randomised corr "
          f"{np.mean(drops):.2f}")
    assert np.mean(hits) >= POINTING_FLOOR and np.mean(drops) < RANDOMISED_CORRELATION_CEILING


def test_integrated_gradients_for_a_finding_points_at_the_tumour(heldout) -> None:
    _scan, image, tumour, slices, _positive = heldout
    segmenter, _card = load_model("tumour_seg2d")
    hits = []
    for k in slices[::2]:
        trained = integrated_gradients_map(segmenter, image[k], tumour[k], steps=8)
        assert trained.shape == image[k].shape and trained.min() >= 0 and trained.max() == pytest.approx(1.0)
        hits.append(pointing_hit(trained, tumour[k], tolerance_px=2))
    assert np.mean(hits) >= POINTING_FLOOR


@pytest.mark.xfail(strict=True, reason="KNOWN FAILURE, so IntegratedGradients is not what medscan shows: IG of a "
                   "finding's summed logit stays ~0.75 correlated after weight randomisation with a zero or a blurred "
                   "baseline — the finding mask and the input decide the map, not the model (Adebayo et al.'s "
                   "warning); see the tumour_seg2d card")
@pytest.mark.parametrize("baseline", ["zero", "blurred"])
def test_integrated_gradients_for_a_finding_changes_with_randomised_weights(heldout, baseline) -> None:
    _scan, image, tumour, slices, _positive = heldout
    segmenter, _card = load_model("tumour_seg2d")
    k = slices[len(slices) // 2]
    trained = integrated_gradients_map(segmenter, image[k], tumour[k], steps=8, baseline=baseline)
    random_map = integrated_gradients_map(randomised_copy(segmenter), image[k], tumour[k], steps=8, baseline=baseline)
    assert correlation(trained, random_map) < RANDOMISED_CORRELATION_CEILING


@pytest.mark.xfail(strict=True, reason="KNOWN FAILURE, so occlusion is not what medscan shows for a brain finding: "
                   "occlusion of the finding's summed logit stays ~0.87 correlated after weight randomisation")
def test_occlusion_for_a_finding_changes_with_randomised_weights(heldout) -> None:
    _scan, image, tumour, slices, _positive = heldout
    segmenter, _card = load_model("tumour_seg2d")
    k = slices[len(slices) // 2]
    trained = occlusion_map(segmenter, image[k], tumour[k], window=24, stride=24)  # coarse: seconds, not a minute
    random_map = occlusion_map(randomised_copy(segmenter), image[k], tumour[k], window=24, stride=24)
    assert correlation(trained, random_map) < RANDOMISED_CORRELATION_CEILING


def test_explain_slice_on_a_scan(heldout) -> None:
    scan, _image, _tumour, slices, _positive = heldout
    k = slices[len(slices) // 2]
    maps = explain_slice(scan, k)
    assert set(maps) == {"gradcam"} and maps["gradcam"].shape == scan.voxels.shape[1:]
    assert maps["gradcam"].min() >= 0.0 and maps["gradcam"].max() <= 1.0
    tumour = load(HELDOUT / "tumour_seg_auto.nii.gz").voxels > 0  # the scan's own (unflipped) grid
    maps = explain_slice(scan, k, finding=tumour)
    assert set(maps) == {"gradcam", "seg_gradcam"} and maps["seg_gradcam"].shape == scan.voxels.shape[1:]
    assert pointing_hit(maps["seg_gradcam"], tumour[k], tolerance_px=2)  # flipped back onto the scan's grid
