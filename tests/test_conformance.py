"""The dcm2niix regression folders are the spec: decode everything, match every reference."""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import pytest
from conformance import CONFORMANCE, RefItem, reference_items

from medscan.io import list_series, load
from medscan.io.dicom import iter_files, load_series
from medscan.io.nifti import write_nifti
from medscan.scan import MedscanError

NOT_DICOM_SUFFIXES = (".nii", ".nii.gz", ".json", ".bval", ".bvec", ".txt", ".pdf", ".md")
# Files we refuse on purpose, with the reason a user would see.
DELIBERATELY_REJECTED = {
    "pydicom_data/emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
}


def _dicom_files() -> list[str]:
    files = []
    for path in iter_files(CONFORMANCE):
        name = path.rsplit("/", 1)[-1]
        if name.lower().endswith(NOT_DICOM_SUFFIXES) or name.startswith("LICENSE") or "/Ref/" in path:
            continue
        files.append(path)
    return files


def test_every_conformance_file_decodes() -> None:
    files = _dicom_files()
    assert len(files) > 400
    failures, rejected = [], []
    for path in files:
        relative = path.split("/conformance/", 1)[1]
        try:
            listing = list_series(path)
            assert not listing.skipped, listing.skipped
            assert listing.series, f"{relative}: no series"
            for record in listing.series:
                scan = load_series(record)
                assert scan.voxels.dtype == np.float32
                assert np.all(np.isfinite(scan.voxels))
                assert scan.voxels.shape[-2:] == (record.frames[0].rows, record.frames[0].columns)
        except MedscanError as exc:
            if relative in DELIBERATELY_REJECTED:
                assert DELIBERATELY_REJECTED[relative] in str(exc)
                rejected.append(relative)
            else:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)
    assert sorted(rejected) == sorted(DELIBERATELY_REJECTED)


@functools.cache
def _listing(source):
    return list_series(source)


def _canonical_nifti(scan, tmp_path) -> nib.Nifti1Image:
    out = tmp_path / "medscan.nii.gz"
    write_nifti(scan, out)
    return nib.as_closest_canonical(nib.load(out))


@pytest.mark.parametrize("item", reference_items(), ids=lambda item: item.name)
def test_matches_dcm2niix_reference(item: RefItem, tmp_path) -> None:
    """Same voxel values and world geometry as dcm2niix, compared after reorienting both to RAS.

    The input folder may hold several series with this number (dcm_qa_nih mixes GE and Siemens) or a
    series that splits into sub-series (magnitude/field map): exactly one candidate must match.
    """
    reference = nib.as_closest_canonical(nib.load(item.ref))
    expected = reference.get_fdata()
    candidates = [r for r in _listing(item.source).series if r.series_number == item.series_number]
    assert candidates, f"no series {item.series_number} under {item.source}"
    matches = []
    for record in candidates:
        mine = _canonical_nifti(load_series(record), tmp_path)
        if mine.shape != reference.shape:
            continue
        values = mine.get_fdata()
        # dcm2niix stores scaled values as int16 with float32 scl_slope/scl_inter: equal up to that rounding.
        tolerance = 2e-5 * float(np.abs(expected).max()) + 1e-6
        geometry_error = float(np.abs(mine.affine - reference.affine).max())
        value_error = float(np.abs(values - expected).max())
        if value_error <= tolerance:
            assert geometry_error <= 0.01, f"{record.key}: affine differs by {geometry_error:.4f} mm"
            matches.append(record.key)
    assert len(matches) == 1, f"{item.name}: matching series {matches} among {[r.key for r in candidates]}"


def test_reference_list_covers_the_hard_cases() -> None:
    names = " ".join(item.name for item in reference_items())
    for needle in ("dcm_qa/", "dcm_qa_enh/", "dcm_qa_ge/", "dcm_qa_nih/", "dcm_qa_philips/", "dcm_qa_ts/", "fMRI_MB"):
        assert needle in names


def test_jpeg_and_jpeg2000_mosaic_copies_agree_with_uncompressed() -> None:
    """axmb holds lossless JPEG and JPEG 2000 mosaics; dcm_qa_ts one image in nine transfer syntaxes."""
    first = load(CONFORMANCE / "dcm_qa_ts" / "In" / "1.dcm")
    for number in range(2, 10):
        other = load(CONFORMANCE / "dcm_qa_ts" / "In" / f"{number}.dcm")
        np.testing.assert_array_equal(other.voxels, first.voxels)
        np.testing.assert_allclose(other.affine, first.affine, atol=1e-6)
