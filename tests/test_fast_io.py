"""The fast paths of loading and writing give the values the plain paths give.

Loading reads uncompressed pixel data from the offset the header pass found, decodes files on threads and keeps
int16 where the rescale is exact; writing streams blocks and compresses with ISA-L. Each test compares against an
independent reference: pydicom's own ``pixel_array`` with the rescale applied in float64, and nibabel's writer.
"""

from __future__ import annotations

import copy
import dataclasses
import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conformance import CONFORMANCE, DATA

from medscan.io import list_series, load
from medscan.io.dicom import load_series
from medscan.io.nifti import write_nifti
from medscan.scan import LPS_TO_RAS

CT_DICOM = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"  # real Siemens CT, JPEG 2000


def _uncompressed_copy(folder: Path, *, slope: float | None = None, intercept: float | None = None) -> Path:
    """The real ct01 series rewritten uncompressed (explicit VR little endian), optionally with another rescale."""
    folder.mkdir()
    for path in sorted(CT_DICOM.iterdir()):
        ds = pydicom.dcmread(path)
        ds.decompress()
        if slope is not None:
            ds.RescaleSlope = slope
        if intercept is not None:
            ds.RescaleIntercept = intercept
        ds.save_as(folder / path.name, enforce_file_format=True)
    return folder


def _pydicom_reference(folder: Path) -> np.ndarray:
    """Slices ordered along the normal, each ``float64(pixel_array) * slope + intercept`` as float32."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([(ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
                     .astype(np.float32) for ds in datasets])


@pytest.fixture(scope="module")
def uncompressed_ct(tmp_path_factory) -> Path:
    return _uncompressed_copy(tmp_path_factory.mktemp("ct") / "ct01")


def test_uncompressed_ct_is_read_in_place_as_exact_int16_hounsfield_units(uncompressed_ct) -> None:
    (record,) = list_series(uncompressed_ct).series
    assert all(f.native is not None and f.native.dtype == "<u2" and f.native.bits_stored == 12 for f in record.frames)
    scan = load_series(record)
    held = scan.exact_integers()
    assert held is not None and held.dtype == np.int16  # CT rescale 1, -1024 on 12-bit data: exact in int16
    reference = _pydicom_reference(uncompressed_ct)
    assert np.array_equal(held, reference)
    assert scan.voxels.dtype == np.float32 and np.array_equal(scan.voxels, reference)
    assert scan.exact_integers() is None  # read as float32 once: the int16 copy is gone, not kept beside it
    assert -1100 < float(reference.min()) < -900 and reference.max() > 1000  # air and bone: it is HU


def test_parallel_and_serial_decoding_agree_with_the_compressed_original(uncompressed_ct) -> None:
    (record,) = list_series(uncompressed_ct).series
    serial, parallel = load_series(record, workers=1), load_series(record, workers=2)
    (compressed,) = list_series(CT_DICOM).series
    original = load_series(compressed, workers=2)  # JPEG 2000 through pydicom's decoder, on the pool
    assert np.array_equal(serial.voxels, parallel.voxels) and np.array_equal(parallel.voxels, original.voxels)
    assert original.exact_integers() is None and original.voxels.dtype == np.float32


@pytest.mark.parametrize(("slope", "intercept"), [(0.5, -1024.0), (1.0, 31000.0)])
def test_a_rescale_int16_cannot_hold_gives_float32_with_the_same_values(tmp_path, slope, intercept) -> None:
    folder = _uncompressed_copy(tmp_path / "ct", slope=slope, intercept=intercept)
    scan = load(folder)
    assert scan.exact_integers() is None
    assert np.array_equal(scan.voxels, _pydicom_reference(folder))


def test_native_reads_match_pydicom_for_every_uncompressed_conformance_file() -> None:
    """Signed, unsigned, 8- and 16-bit, BitsStored below BitsAllocated, implicit and explicit VR."""
    checked = 0
    for folder in (CONFORMANCE / "pydicom_data", CONFORMANCE / "dcm_qa_ts"):
        for record in list_series(folder).series:
            frame = record.frames[0]
            if len(record.frames) != 1 or frame.native is None or not frame.integer_grey:
                continue  # one plane per file here; multi-frame and MOSAIC files are the conformance suite's
            scan = load_series(record)
            ds = pydicom.dcmread(record.files[0])
            pixels = ds.pixel_array.astype(np.float64)
            expected = (pixels * frame.slope + frame.intercept).astype(np.float32).reshape(scan.voxels.shape)
            assert np.array_equal(scan.voxels, expected), record.files[0]
            checked += 1
    assert checked >= 3


def test_written_nifti_is_nibabels_bytes_and_the_gzip_holds_the_same_bytes(tmp_path, uncompressed_ct) -> None:
    int16_scan = load(uncompressed_ct)
    float_scan = dataclasses.replace(load(uncompressed_ct), voxels=load(uncompressed_ct).voxels * 0.5 + 0.25)
    for name, scan in (("int16", int16_scan), ("float", float_scan)):
        plain, packed = write_nifti(scan, tmp_path / f"{name}.nii"), write_nifti(scan, tmp_path / f"{name}.nii.gz")
        data = scan.voxels.T.astype(np.int16 if name == "int16" else np.float32)
        image = nib.Nifti1Image(data, LPS_TO_RAS @ scan.affine)
        image.header.set_xyzt_units("mm", "sec")
        image.header["descrip"] = f"medscan modality={scan.modality}".encode()
        image.set_sform(LPS_TO_RAS @ scan.affine, code=1)
        image.set_qform(LPS_TO_RAS @ scan.affine, code=1)
        nib.save(image, tmp_path / f"{name}_nibabel.nii")
        assert plain.read_bytes() == (tmp_path / f"{name}_nibabel.nii").read_bytes()
        assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
        assert np.array_equal(np.asarray(nib.load(packed).dataobj), data)
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "int16.nii").stat().st_mode & 0o777 == 0o666 & ~mask  # not a temp file's 0600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".medscan-")]


def test_a_failed_write_leaves_no_file(tmp_path, uncompressed_ct) -> None:
    scan = load(uncompressed_ct)
    broken = copy.copy(scan)
    broken.affine = np.full((4, 4), np.nan)
    with pytest.raises(Exception):  # noqa: B017  (nibabel's own complaint about the affine)
        write_nifti(broken, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []
