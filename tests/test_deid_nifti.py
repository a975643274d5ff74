"""De-identified NIfTI export: the file holds the series' voxels and geometry and no text that could
identify anyone; risky images are refused; nothing half-written is ever left behind."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medscan.deid_nifti import check_anonymous_nifti, deidentify_to_nifti
from medscan.io import load
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError

DATA = shared_data_dir()
MR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
US = DATA / "conformance" / "pydicom_data" / "gdcm-US-ALOKA-16.dcm"

pytestmark = pytest.mark.skipif(not MR.is_dir(), reason="../shared/data is not present")


def _parser() -> argparse.ArgumentParser:
    from medscan.db.cli import register

    parser = argparse.ArgumentParser(prog="medscan")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def _identifying_strings(folder: Path) -> set[bytes]:
    """Values of the source headers that must not reach the export (names, IDs, dates, UIDs, places)."""
    needles: set[bytes] = set()
    for file in sorted(p for p in folder.rglob("*") if p.is_file())[:3]:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyInstanceUID",
                        "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "InstitutionName",
                        "StationName", "AccessionNumber", "SeriesDescription", "StudyDescription"):
            value = str(ds.get(keyword, "") or "").strip()
            if len(value) >= 5:  # shorter strings occur by chance in voxel bytes
                needles.add(value.encode("latin-1", "ignore"))
    return needles


def test_cli_writes_a_nifti_with_the_same_volume_and_no_identifying_text(tmp_path):
    out = tmp_path / "mr.nii.gz"
    args = _parser().parse_args(["deidentify", str(MR), "-o", str(out)])
    assert args.func(args) == 0
    check_anonymous_nifti(out)
    header = nib.load(out).header
    assert header["descrip"].tobytes().strip(b"\0") == b"medscan modality=MR"
    for field in ("aux_file", "intent_name", "db_name"):
        assert header[field].tobytes().strip(b"\0 ") == b""
    raw = gzip.decompress(out.read_bytes())
    needles = _identifying_strings(MR)
    assert len(needles) >= 5  # the source does carry a name, an ID, dates and UIDs
    for needle in needles:
        assert needle not in raw, needle
    assert out.read_bytes()[3] & 0x08 == 0  # no file name stored in the gzip header
    source, exported = load(MR), load(out)
    np.testing.assert_array_equal(exported.voxels, source.voxels)
    np.testing.assert_allclose(exported.affine, source.affine, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["mr.nii.gz"]  # no temporary file left


def test_several_series_need_a_choice_and_an_existing_file_is_never_replaced(tmp_path):
    with pytest.raises(MedscanError, match="2 series found; choose one with --series"):
        deidentify_to_nifti(DATA / "train", tmp_path / "x.nii.gz")
    (tmp_path / "taken.nii").write_bytes(b"mine")
    with pytest.raises(MedscanError, match="already exists"):
        deidentify_to_nifti(MR, tmp_path / "taken.nii")
    assert (tmp_path / "taken.nii").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nii"]


def test_burned_in_ultrasound_is_refused_unless_allowed(tmp_path):
    if not US.is_file():
        pytest.skip("pydicom_data is not present")
    with pytest.raises(MedscanError, match="burned-in"):
        deidentify_to_nifti(US, tmp_path / "us.nii")
    assert list(tmp_path.iterdir()) == []
    out, warnings = deidentify_to_nifti(US, tmp_path / "us.nii", allow_burned_in=True)
    assert out.is_file() and warnings and "burned-in" in warnings[0]


def test_header_text_from_another_writer_is_caught(tmp_path):
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    image.header["aux_file"] = b"Doe^John"
    nib.save(image, tmp_path / "other.nii")
    with pytest.raises(MedscanError, match="aux_file"):
        check_anonymous_nifti(tmp_path / "other.nii")
    image.header["aux_file"] = b""
    image.header["descrip"] = b"converted from Doe^John 2019-03-04"
    nib.save(image, tmp_path / "other2.nii")
    with pytest.raises(MedscanError, match="descrip"):
        check_anonymous_nifti(tmp_path / "other2.nii")
