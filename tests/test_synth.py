"""Synthetic slices from noise: seeded sampling, units, the lesion mask, the memorisation check, the SYNTHETIC
export (DICOM and NIfTI, no real header) and the CLI's one-line refusals.

Few slices and few denoising steps: this tests behaviour, not image quality (scripts/evaluate_synth.py measures it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medscan.cli import main
from medscan.nets.weights import models_dir
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
DATA = shared_data_dir()
needs_model = pytest.mark.skipif(not (models_dir() / "synth_diffusion2d.json").exists(),
                                 reason="models/synth_diffusion2d not shipped")
STEPS = 4


@pytest.fixture(scope="module")
def batch():
    """MR brain: the class with a held-out subject whose samples pass the memorisation check (CT samples of the
    shipped model are refused: see the model card)."""
    from medscan.synth import synthesize

    return synthesize("MR", "brain", 2, seed=5, steps=STEPS)


@needs_model
def test_sampling_is_seeded_and_in_physical_units(batch) -> None:
    from medscan.synth import synthesize

    calls = []
    again = synthesize("MR", "brain", 2, seed=5, steps=STEPS, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_array_equal(again.slices, batch.slices)
    assert calls[-1] == (STEPS, STEPS) and len(calls) == STEPS
    assert batch.slices.shape == (2, 128, 128) and batch.slices.dtype == np.float32
    assert batch.slices.min() >= 0 and batch.slices.max() <= 1000 and batch.units == ""
    assert batch.spacing_mm == pytest.approx(240 / 128)
    one = synthesize("MR", "brain", 1, seed=5, steps=STEPS)  # slice i does not depend on the batch size
    np.testing.assert_allclose(one.slices[0], batch.slices[0], atol=0.05)  # float rounding differs per batch
    assert not np.array_equal(batch.slices[0], batch.slices[1])
    ct = synthesize("CT", "chest", 1, seed=1, steps=STEPS)
    assert ct.slices.min() >= -1024 and ct.slices.max() <= 1024 and ct.units == "HU"
    assert ct.spacing_mm == pytest.approx(400 / 128)
    assert batch.nn_ssim.shape == (2,) and batch.passed.dtype == bool


def _heldout_lesion_mask() -> np.ndarray:
    """The largest tumour cross-section of the held-out subject, on the MR brain grid."""
    from medscan.synth.data import extract_slices

    slices = extract_slices({"paired/brain_tcga_fg_6692/flair.nii.gz": "MR brain"}, stride=4)
    areas = slices.masks.reshape(len(slices.masks), -1).sum(1)
    return slices.masks[int(np.argmax(areas))].astype(bool)


@needs_model
@pytest.mark.skipif(not (DATA / "paired").exists(), reason="shared data not present")
def test_a_lesion_mask_changes_the_slice_where_it_says() -> None:
    from medscan.synth import synthesize

    mask = _heldout_lesion_mask()
    assert mask.sum() > 100
    steps = 10
    with_mask = synthesize("MR", "brain", 2, seed=11, steps=steps, mask=mask)
    without = synthesize("MR", "brain", 2, seed=11, steps=steps)
    inside_with = with_mask.slices[:, mask].mean()
    inside_without = without.slices[:, mask].mean()
    # the lesion (bright on FLAIR/T2, enhancing on T1c) makes the masked region brighter than the same seeds without
    assert inside_with > inside_without
    assert "px" in with_mask.parameters()["mask"]


@needs_model
def test_memorisation_refuses_a_planted_training_slice_and_a_noised_copy(batch, tmp_path) -> None:
    import dataclasses

    from medscan.synth import export_synthetic_study
    from medscan.synth.api import _cached_reference
    from medscan.synth.data import from_unit
    from medscan.synth.memorisation import nearest_training

    reference = _cached_reference(str(models_dir() / "synth_diffusion2d.trainref.npz"))
    n = len(reference.index) // 2
    row = int(np.flatnonzero(reference.labels[:n] == batch.label)[3])
    copy64 = reference.images[row, 0].numpy()
    planted = np.kron(copy64, np.ones((2, 2), np.float32))  # the training slice back on the 128 grid
    noisy = np.clip(planted + np.random.default_rng(0).normal(0, 0.03, planted.shape), -1, 1).astype(np.float32)
    mirrored = planted[:, ::-1]
    nn, which = nearest_training(np.stack([planted, noisy, mirrored]), reference)
    assert np.all(which == row) and nn.min() >= batch.threshold

    batch = dataclasses.replace(
        batch, slices=np.concatenate([batch.slices, from_unit(np.stack([planted, noisy]), "MR")]),
        nn_ssim=np.concatenate([batch.nn_ssim, nn[:2]]), nn_index=np.concatenate([batch.nn_index, which[:2]]))
    assert list(batch.memorised[2:]) == [True, True]
    kept = int(batch.passed.sum())
    if kept == 0:
        with pytest.raises(MedscanError, match="memorisation"):
            export_synthetic_study(batch, tmp_path / "none", "dicom")
        assert not (tmp_path / "none").exists()
        return
    files = export_synthetic_study(batch, tmp_path / "study", "dicom")
    assert len(files) == kept  # the planted copies are never written
    written = np.stack([pydicom.dcmread(f).pixel_array for f in files])
    assert written.shape[0] == kept


def _real_identifiers() -> set[str]:
    """PatientName / PatientID / Study and Frame of Reference UIDs of the real DICOM series in the shared data."""
    values = set()
    for folder in ("train/ct01_upper_abdomen_siemens_dicom", "train/mr03_brain_t1_2d_sag_siemens_dicom"):
        files = sorted((DATA / folder).rglob("*"))
        for path in [p for p in files if p.is_file()][:1]:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "FrameOfReferenceUID"):
                value = str(ds.get(keyword, "")).strip()
                if value:
                    values.add(value)
    return values


@needs_model
def test_dicom_export_is_a_synthetic_series_medscan_and_pydicom_read(batch, tmp_path) -> None:
    from medscan.io import load
    from medscan.synth import export_synthetic_study

    if not batch.passed.any():
        pytest.skip("both samples refused as memorised (export of refused slices is tested above)")
    files = export_synthetic_study(batch, tmp_path / "study", "dicom")
    assert len(files) == int(batch.passed.sum()) and all(f.name.startswith("SYNTHETIC_IM_") for f in files)
    scan = load(tmp_path / "study")
    assert scan.synthetic and scan.modality == "MR" and scan.voxels.shape == (len(files), 128, 128)
    np.testing.assert_allclose(scan.voxels, batch.slices[batch.passed], atol=0.02)
    assert scan.spacing[0] == pytest.approx(batch.spacing_mm, rel=1e-6)
    real = _real_identifiers()
    uids = set()
    for path in files:
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == "SYNTHETIC^PATIENT" and ds.PatientID == "SYNTHETIC"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "SYNTHETIC"]
        assert "SYNTHETIC" in ds.SeriesDescription and ds.DerivationDescription.startswith("SYNTHETIC")
        assert "model=synth_diffusion2d" in ds.DerivationDescription and "seed=5" in ds.DerivationDescription
        assert f"steps={STEPS}" in ds.DerivationDescription and "sha256=" in ds.DerivationDescription
        assert "SYNTHETIC" in ds.ImageComments
        for element in ds.iterall():
            if element.tag != 0x7FE00010:
                assert str(element.value).strip() not in real, element.keyword
        uids.add(ds.StudyInstanceUID)
    assert len(uids) == 1
    again = export_synthetic_study(batch, tmp_path / "study2", "dicom")
    assert pydicom.dcmread(again[0]).StudyInstanceUID not in uids  # fresh UIDs on every export


@needs_model
def test_nifti_export_carries_the_mark_and_the_parameters(batch, tmp_path) -> None:
    from medscan.io import load
    from medscan.synth import export_synthetic_study

    if not batch.passed.any():
        pytest.skip("both samples refused as memorised")
    image, sidecar = export_synthetic_study(batch, tmp_path / "nii", "nifti")
    assert "synthetic" in image.name and image.name.endswith(".nii.gz")
    scan = load(image)
    assert scan.synthetic and scan.voxels.shape[0] == int(batch.passed.sum())
    record = json.loads(sidecar.read_text())
    assert record["patient"] == "SYNTHETIC^PATIENT" and record["seed"] == 5 and record["steps"] == STEPS
    assert record["model"] == "synth_diffusion2d" and len(record["model_sha256"]) == 64


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["generate", "synthesize", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@needs_model
def test_cli_refuses_unknown_classes_and_bad_masks_in_one_line(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((64, 64), bool))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((128, 128), bool))
    good = tmp_path / "good.npy"
    mask = np.zeros((128, 128), bool)
    mask[50:70, 50:70] = True
    np.save(good, mask)
    cases = [
        (["--modality", "MR", "--region", "knee"], "never trained on MR knee"),
        (["--modality", "CT", "--region", "brain"], "never trained on CT brain"),
        (["--modality", "MR", "--region", "brain", "--mask", str(tmp_path / "missing.nii.gz")], "not found"),
        (["--modality", "MR", "--region", "brain", "--mask", str(wrong)], "expected one 128x128 slice"),
        (["--modality", "MR", "--region", "brain", "--mask", str(empty)], "empty"),
        (["--modality", "CT", "--region", "chest", "--mask", str(good)], "only learned for MR brain"),
    ]
    for args, reason in cases:
        rc, stdout, err = _cli(capsys, "-o", str(out), "--count", "1", "--steps", "2", *args)
        assert rc == 1 and reason in err, err
        assert err.count("\n") == 1 and err.startswith("medscan: ") and not stdout
        assert not out.exists()


@needs_model
def test_cli_writes_a_synthetic_study_and_says_how_many_were_refused(capsys, tmp_path) -> None:
    out = tmp_path / "study"
    rc, stdout, err = _cli(capsys, "-o", str(out), "--modality", "MR", "--region", "brain", "--count", "2",
                           "--steps", "2", "--seed", "3", "--format", "nifti")
    assert "refused" in stdout + err
    if rc == 1:  # every slice refused: nothing written
        assert "memorisation" in err and not any(out.glob("*"))
        return
    assert rc == 0 and "SYNTHETIC MR brain" in stdout
    assert len(list(out.glob("synthetic_mr_brain.nii.gz"))) == 1
