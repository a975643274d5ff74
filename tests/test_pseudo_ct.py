"""Pseudo-CT (EXPERIMENTAL MR->CT): HU output on the input's grid, SYNTHETIC + EXPERIMENTAL marks, uncertainty,
and a CT input refused in one line — directly and through ``medscan generate translate --to CT``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from test_generate_fill import one_thread  # noqa: F401 - autouse fixture: one torch thread for the module

from medscan.io import load, save
from medscan.ops.pseudo_ct import EXPERIMENTAL_NOTE, PSEUDO_CT_MODEL, pseudo_ct
from medscan.scan import MedscanError
from medscan.train.data import DATA_ROOT, HELDOUT_ITEMS
from medscan.train.metrics import body_mask

MR_ITEM = "train/mr03_brain_t1_2d_sag_siemens_dicom"  # held out: T1 head with skull, sagittal
CT_ITEM = "labelled/ct_abdomen_totalseg_example/ct.nii.gz"  # small CT
pytestmark = [pytest.mark.model,
              pytest.mark.skipif(not (DATA_ROOT / MR_ITEM).exists(), reason="shared data not available")]


@pytest.fixture(scope="module")
def mr_slab():
    """Three central sagittal slices of the held-out MR as a Scan of their own (geometry shifted to match)."""
    assert MR_ITEM in HELDOUT_ITEMS
    scan = load(DATA_ROOT / MR_ITEM)
    start = scan.voxels.shape[0] // 2 - 1
    affine = scan.affine.copy()
    affine[:3, 3] += start * affine[:3, 2]
    return dataclasses.replace(scan, voxels=scan.voxels[start:start + 3], affine=affine,
                               source_refs=scan.source_refs[start:start + 3])


@pytest.fixture(scope="module")
def result(mr_slab):
    return pseudo_ct(mr_slab, device="cpu")


def test_output_in_hu_on_the_input_grid(mr_slab, result):
    out = result.scan
    assert out.voxels.shape == mr_slab.voxels.shape
    assert np.allclose(out.affine, mr_slab.affine) and out.spacing == pytest.approx(mr_slab.spacing)
    assert out.modality == "CT" and out.units == "HU"
    assert out.voxels.min() >= -1024 and out.voxels.max() <= 3071  # int16-safe
    body = np.stack([body_mask(p) for p in mr_slab.voxels])
    outside = ~ndimage.binary_dilation(body, iterations=5)
    interior = np.stack([ndimage.binary_erosion(b, iterations=12) for b in body])  # ~12 mm inside the head
    assert np.median(out.voxels[outside]) < -900, "air outside the head must be about -1000 HU"
    soft = np.median(out.voxels[interior])
    assert -100 < soft < 150, f"brain / soft tissue median {soft:.0f} HU is not soft tissue"


def test_marked_synthetic_and_experimental(result):
    from medscan.io.export import _derivation_description, _series_description

    out = result.scan
    assert out.synthetic
    assert _series_description(out, "").startswith("SYNTHETIC EXPERIMENTAL pseudo-CT")
    assert "not validated" in out.description
    entry = out.provenance[-1]
    assert entry.model == PSEUDO_CT_MODEL and entry.parameters["synthetic"] is True
    assert entry.parameters["validated"] is False
    assert "EXPERIMENTAL" in _derivation_description(out)
    assert any("EXPERIMENTAL" in note for note in result.notes) and any("SYNTHETIC" in n for n in result.notes)
    assert "EXPERIMENTAL" in EXPERIMENTAL_NOTE and "\n" not in EXPERIMENTAL_NOTE


def test_uncertainty_map(result):
    spread = result.maps["uncertainty"]
    assert spread.shape == result.scan.voxels.shape
    assert np.isfinite(spread).all() and spread.min() >= 0 and spread.max() > 0
    assert float(np.median(spread)) < 200  # HU: the flips mostly agree


def test_ct_input_refused_in_one_line():
    scan = load(DATA_ROOT / CT_ITEM)
    with pytest.raises(MedscanError) as info:
        pseudo_ct(scan, device="cpu")
    message = str(info.value)
    assert "already CT" in message and "ct.nii.gz" in message and "\n" not in message


def test_skull_stripped_mr_refused():
    scan = load(DATA_ROOT / "paired/brain_tcga_fg_6692/t1.nii.gz")
    with pytest.raises(MedscanError) as info:
        pseudo_ct(scan, device="cpu")
    assert "skull-stripped" in str(info.value) and "t1.nii.gz" in str(info.value) and "\n" not in str(info.value)


def test_t2_mr_refused():
    scan = load(DATA_ROOT / "paired/brain_tcga_fg_6692/t2.nii.gz")
    with pytest.raises(MedscanError) as info:
        pseudo_ct(scan, device="cpu")
    assert "T1-weighted" in str(info.value) and "t2.nii.gz" in str(info.value) and "\n" not in str(info.value)


def test_translate_to_ct_through_the_cli(tmp_path, capsys, mr_slab):
    pytest.importorskip("medscan.ops.translate")
    from medscan.cli import main

    out = tmp_path / "ct_out.nii.gz"
    assert main(["generate", "translate", str(DATA_ROOT / CT_ITEM), "-o", str(out), "--to", "CT"]) == 1
    err = capsys.readouterr().err.strip()
    assert "translate works on MR, not CT" in err and "ct.nii.gz" in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.iterdir())
    source = save(mr_slab, tmp_path / "mr_slab.nii.gz")
    produced = tmp_path / "pseudo_ct.nii.gz"
    assert main(["generate", "translate", str(source), "-o", str(produced), "--to", "CT"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    back = load(next(tmp_path / name for name in written if name.endswith(".nii.gz") and "pseudo_ct" in name))
    assert back.synthetic and back.modality == "CT" and back.voxels.shape == mr_slab.voxels.shape
