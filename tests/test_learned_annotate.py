"""The learned annotate tasks on real held-out data: agreement floors, refusals with one line, verified weights.

Figures are agreement with pseudo-labels (BraTS-Toolkit / TotalSegmentator). The shipped brain models were
trained on subject TCGA-FG-6692 only, so every brain check here runs on TCGA-DU-7294, which they never saw.
The shipped organ model saw both CT subjects and no held-out CT subject shares a transferable label with it, so its
test is a resubstitution pipeline check, said so (the held-out fold figures are in the card).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medscan.annotate import get_task
from medscan.annotate import learned as L
from medscan.io import load
from medscan.nets.weights import load_model, models_dir
from medscan.scan import MedscanError, Scan
from medscan.train.data import DATA_ROOT

pytestmark = pytest.mark.model

HELDOUT_BRAIN = DATA_ROOT / "labelled" / "brain_tumour_tcga_du_7294"
ABDOMEN = DATA_ROOT / "labelled" / "ct_abdomen_totalseg_example"
TUMOUR_DICE_FLOOR = 0.55  # held-out slab; the whole-volume held-out Dice is in models/tumour_seg2d.json
RESUBSTITUTION_LIVER_FLOOR = 0.80  # organs: training subject (no transferable held-out CT exists)
RESUBSTITUTION_AORTA_FLOOR = 0.50  # v1 scored 0.000 here (the bug); the whole-volume figure is in the card
ANOMALY_AUROC_FLOOR = 0.80


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def slab(scan: Scan, k0: int, k1: int) -> Scan:
    """Slices k0..k1-1 as their own series (the affine's origin moves to slice k0)."""
    affine = scan.affine.copy()
    affine[:3, 3] = scan.affine[:3, :3] @ np.array([0.0, 0.0, k0]) + scan.affine[:3, 3]
    return dataclasses.replace(scan, voxels=scan.voxels[k0:k1].copy(), affine=affine, source_refs=[])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def brain_slab() -> tuple[Scan, np.ndarray]:
    scan = load(HELDOUT_BRAIN / "flair.nii.gz")
    tumour = load(HELDOUT_BRAIN / "tumour_seg_auto.nii.gz").voxels > 0
    centre = int(np.argmax(tumour.sum(axis=(1, 2))))
    return slab(scan, centre - 8, centre + 8), tumour[centre - 8:centre + 8]


def test_brain_tumour_task_agrees_on_the_heldout_subject(brain_slab) -> None:
    scan, tumour = brain_slab
    result = get_task("brain-tumour").segment(scan, device="cpu")
    assert result.labels.shape == scan.voxels.shape and result.source == "ai" and result.method == "tumour_seg2d"
    assert result.probabilities is not None and result.probabilities.shape == (1, *scan.voxels.shape)
    score = dice(result.labels > 0, tumour)
    print(f"brain-tumour held-out slab Dice {score:.3f} (floor {TUMOUR_DICE_FLOOR})")
    assert score >= TUMOUR_DICE_FLOOR


def test_anomaly_map_ranks_the_heldout_tumour(brain_slab) -> None:
    from medscan.annotate.anomaly import anomaly_map, auroc

    scan, tumour = brain_slab
    amap = anomaly_map(scan)
    brain = L.brain_normalise(scan.voxels)[1]
    assert amap.shape == scan.voxels.shape and np.all(amap[~brain] == 0)
    score = auroc(amap[brain], tumour[brain])
    print(f"anomaly voxel AUROC on the held-out slab {score:.3f}")
    assert score >= ANOMALY_AUROC_FLOOR


def test_organs_task_on_the_abdomen_ct_resubstitution() -> None:
    """NOT a held-out figure: no CT subject here is both unseen and labelled for an organ the model can transfer
    (the only organ both label, the aorta, is unenhanced in one and a CT angiogram in the other; the held-out
    fold Dice is ~0 and is reported as such). This checks the registered pipeline end to end — orientation
    flips, 3 mm -> 2 mm resampling, windows and label values — on the subject the shipped model was trained on."""
    scan = load(ABDOMEN / "ct.nii.gz")
    seg = load(ABDOMEN / "organs_seg_auto.nii.gz").voxels.astype(int)
    part, truth = slab(scan, 5, 25), seg[5:25]
    result = get_task("organs").segment(part, device="cpu")
    assert result.labels.shape == part.voxels.shape and result.names == L.ORGAN_NAMES
    scores = {organ: dice(result.labels == value, np.isin(truth, ids)) for value, organ, ids in
              ((1, "liver", [5]), (2, "spleen", [1]), (3, "kidneys", [2, 3]), (4, "aorta", [52]))}
    print(f"organs on its training subject (resubstitution): {scores}")
    assert scores["liver"] >= RESUBSTITUTION_LIVER_FLOOR
    assert scores["aorta"] >= RESUBSTITUTION_AORTA_FLOOR  # TotalSegmentator v2 id 52, unenhanced (42 HU)


@pytest.mark.parametrize(("task", "item", "expected"), [
    ("organs", "labelled/brain_tumour_tcga_du_7294/flair.nii.gz", "made for CT, not MR"),
    ("brain-tumour", "labelled/ct_abdomen_totalseg_example/ct.nii.gz", "made for MR, not CT"),
    ("brain-tumour", "train/mr03_brain_t1_2d_sag_siemens_dicom", "sagittal"),
    ("brain-tumour", "paired/brain_tcga_du_7294/t2.nii.gz", "trained on FLAIR"),
    ("brain-lesions", "paired/brain_ms_patient07/t2.nii.gz", "brain-lesions was trained on FLAIR"),
    ("organs", "train-extra/ct03_head_ge_4mm_detilted.nii.gz", "head"),
])
def test_tasks_refuse_series_they_were_not_made_for(task, item, expected) -> None:
    scan = load(DATA_ROOT / item)
    with pytest.raises(MedscanError) as info:
        get_task(task).segment(scan, device="cpu")
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_too_few_slices_are_refused() -> None:
    scan = load(ABDOMEN / "ct.nii.gz")
    with pytest.raises(MedscanError, match="at least 10 slices") as info:
        get_task("organs").segment(slab(scan, 10, 16), device="cpu")
    assert "\n" not in str(info.value)


def test_shipped_and_fold_weights_verify_and_a_tampered_copy_is_refused(tmp_path) -> None:
    for name in ("tumour_seg2d", "organ_seg2d", "anomaly_dae2d"):
        load_model(name)
    for card in sorted((models_dir() / "folds").glob("*.json")):
        load_model(card.stem, models_dir() / "folds")
    for suffix in (".json", ".safetensors"):
        shutil.copy(models_dir() / f"tumour_seg2d{suffix}", tmp_path / f"tumour_seg2d{suffix}")
    weights = Path(tmp_path / "tumour_seg2d.safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MedscanError, match="does not match the model card"):
        load_model("tumour_seg2d", tmp_path)
