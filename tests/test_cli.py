"""The CLI contract other tools rely on: info --json fields, convert to NIfTI and DICOM, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
from conformance import CONFORMANCE, DATA

from medscan.io import load

MR_DICOM = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
CT_DICOM = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"


def medscan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medscan.cli", *args], capture_output=True, text=True, timeout=300)


def test_info_json_fields() -> None:
    result = medscan("info", str(MR_DICOM), "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["series_number"] == 3 and entry["modality"] == "MR"
    assert entry["series_uid"].startswith("1.3.12.2.1107.5.2.43")
    assert entry["shape"] == [256, 256, 35]  # NIfTI order
    assert np.allclose(entry["spacing"], [1.015625, 1.015625, 4.8], atol=1e-4)
    assert entry["description"] == "t1_fl2d_sag" and entry["warnings"] == []


def test_info_lists_every_series_of_a_study_folder() -> None:
    result = medscan("info", str(CONFORMANCE / "dcm_qa" / "In"), "--json")
    entries = json.loads(result.stdout)
    assert {e["series_number"] for e in entries} == set(range(6, 27))
    fmri = next(e for e in entries if e["series_number"] == 25)
    assert fmri["shape"] == [86, 86, 36, 2]


def test_info_on_nifti_and_on_a_single_file() -> None:
    (entry,) = json.loads(medscan("info", str(DATA / "train" / "ct02_abdomen_pelvis_3mm.nii.gz"), "--json").stdout)
    assert entry["shape"] == [122, 101, 112] and entry["modality"] == "CT"
    (single,) = json.loads(medscan("info", str(sorted(MR_DICOM.iterdir())[0]), "--json").stdout)
    assert single["shape"] == [256, 256, 1]


def test_convert_to_nifti_then_dicom_and_back(tmp_path) -> None:
    nifti = tmp_path / "ct.nii.gz"
    assert medscan("convert", str(CT_DICOM), "-o", str(nifti)).returncode == 0
    assert nib.load(nifti).shape == (512, 512, 20)
    out = tmp_path / "derived"
    result = medscan("convert", str(CT_DICOM), "-o", str(out))
    assert result.returncode == 0, result.stderr
    original, again = load(CT_DICOM), load(out)
    np.testing.assert_array_equal(again.voxels, original.voxels)  # integer HU: exact
    # 3 mm reconstructions 2 mm apart: both facts survive.
    first = pydicom.dcmread(sorted(out.iterdir())[0])
    assert float(first.SliceThickness) == 3.0 and float(first.SpacingBetweenSlices) == 2.0
    np.testing.assert_allclose(again.affine, original.affine, atol=1e-4)
    assert again.modality == "CT" and again.units == "HU"


def test_mr_round_trip_through_dicom_within_one_quantum(tmp_path) -> None:
    out = tmp_path / "mr"
    assert medscan("convert", str(MR_DICOM), "-o", str(out)).returncode == 0
    original, again = load(MR_DICOM), load(out)
    np.testing.assert_allclose(again.voxels, original.voxels, atol=0.5)
    np.testing.assert_allclose(again.affine, original.affine, atol=1e-4)


def test_four_d_and_philips_float_values_survive_dicom_round_trip(tmp_path) -> None:
    source = CONFORMANCE / "dcm_qa_philips" / "In" / "Magdeburg_2014"
    original = load(source)
    out = tmp_path / "philips"
    assert medscan("convert", str(source), "-o", str(out)).returncode == 0
    again = load(out)
    assert again.voxels.shape == original.voxels.shape == (3, 9, 64, 64)
    quantum = float(original.voxels.max() - original.voxels.min()) / 65535
    np.testing.assert_allclose(again.voxels, original.voxels, atol=quantum / 2 + 1e-3 * quantum)
    np.testing.assert_allclose(again.affine, original.affine, atol=1e-4)
    # Every derived plane points at the instance it came from, volume by volume.
    assert len(original.source_refs) == 27
    referenced = []
    for path in sorted(out.iterdir()):
        ds = pydicom.dcmread(path)
        referenced.append(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
    assert sorted(referenced) == sorted(r.sop_instance_uid for r in original.source_refs)


def test_png_of_a_slice(tmp_path) -> None:
    out = tmp_path / "slice.png"
    result = medscan("png", str(CT_DICOM), "-o", str(out), "--preset", "lung", "--slice", "3")
    assert result.returncode == 0, result.stderr
    from PIL import Image

    image = Image.open(out)
    assert image.size == (512, 512) and image.mode == "L"
