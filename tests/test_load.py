"""A radiologist points medscan at a folder: right shape, spacing, units, geometry and metadata."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conformance import DATA

from medscan.io import list_series, load, save
from medscan.io.nifti import _guess_modality as nifti_modality_guess

CT_DICOM = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
CT_NIFTI_TWIN = DATA / "train" / "ct01_upper_abdomen_siemens.nii.gz"  # converted independently with SimpleITK
MR_DICOM = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"  # stands in for the VS-SEG MR series


def test_siemens_ct_loads_in_hounsfield_units() -> None:
    scan = load(CT_DICOM)
    assert scan.voxels.shape == (20, 512, 512)
    assert scan.modality == "CT" and scan.units == "HU"
    np.testing.assert_allclose(scan.spacing, (0.976562, 0.976562, 2.0), atol=1e-5)
    # Air outside the body is about -1000 HU; the series holds bone too.
    corner = scan.voxels[:, :20, :20]
    assert -1100 < float(np.median(corner)) < -900
    assert float(scan.voxels.max()) > 1000
    assert len(scan.source_refs) == 20 and all(r.sop_instance_uid for r in scan.source_refs)
    # Slices run feet to head along +z (LPS) whatever the file order.
    assert scan.orientation_codes() == "LPS"


def test_siemens_ct_agrees_with_independent_simpleitk_conversion() -> None:
    scan = load(CT_DICOM)
    twin = nib.as_closest_canonical(nib.load(CT_NIFTI_TWIN))
    mine = nib.as_closest_canonical(read_back(scan))
    np.testing.assert_array_equal(mine.get_fdata(), twin.get_fdata())
    np.testing.assert_allclose(mine.affine, twin.affine, atol=0.01)


def read_back(scan):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = save(scan, Path(tmp) / "ct.nii.gz")
        image = nib.load(out)
        return nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header)


def test_mr_series_loads_with_spacing_and_orientation() -> None:
    scan = load(MR_DICOM)
    assert scan.voxels.shape == (35, 256, 256)
    assert scan.modality == "MR" and scan.units == ""
    np.testing.assert_allclose(scan.spacing[:2], (1.015625, 1.015625), atol=1e-6)
    assert scan.spacing[2] == pytest.approx(4.8, abs=1e-3)
    # A sagittal stack: rows run head to foot, slices run across the patient.
    assert scan.orientation_codes()[2] in "LR"
    assert scan.header.PatientID and scan.header.StudyInstanceUID


def test_listing_reads_headers_only_and_sorts_by_position(tmp_path) -> None:
    # Copy the CT files under shuffled names: file names and order must not matter.
    import shutil

    files = sorted(CT_DICOM.iterdir())
    for index, src in enumerate(reversed(files)):
        shutil.copy(src, tmp_path / f"{(index * 7) % 20:02d}_{index}.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    listing = list_series(tmp_path)
    assert len(listing.series) == 1 and listing.ignored == 1 and not listing.skipped
    np.testing.assert_array_equal(load(tmp_path).voxels, load(CT_DICOM).voxels)


def test_nifti_round_trip_keeps_values_geometry_and_modality(tmp_path) -> None:
    scan = load(CT_DICOM)
    out = save(scan, tmp_path / "ct.nii.gz")
    again = load(out)
    np.testing.assert_array_equal(again.voxels, scan.voxels)
    np.testing.assert_allclose(again.affine, scan.affine, atol=1e-4)
    assert again.modality == "CT" and not again.warnings
    # On disk the affine is RAS: i still runs to the patient's left, j posterior, k superior.
    assert nib.aff2axcodes(nib.load(out).affine) == ("L", "P", "S")
    np.testing.assert_allclose(nib.load(out).affine[:2, 3], -scan.affine[:2, 3], atol=1e-4)


def test_nifti_from_elsewhere_gets_a_modality_guess_with_warning() -> None:
    scan = load(DATA / "train" / "ct02_abdomen_pelvis_3mm.nii.gz")
    assert scan.modality == "CT" and any("guessed" in w for w in scan.warnings)
    mr = load(DATA / "paired" / "brain_tcga_du_7294" / "t1.nii.gz")
    assert mr.modality == "MR"


def test_a_ge_ct_with_padding_outside_the_circle_is_read_as_ct() -> None:
    """dcm2niix keeps GE's -3024 (and other vendors' -2048) outside the reconstruction circle: a quarter of the
    pixels below air, which once made the guess MR (and the denoiser and the synthesis data treat it as MR)."""
    folder = DATA / "train-extra" / "ct05_sbu_covid19"
    files = sorted(folder.glob("*.nii.gz"))
    assert len(files) == 48
    padded = [f for f in files if float(np.asarray(nib.load(f).dataobj).min()) <= -2048]
    assert padded  # the case this guards
    for path in files:
        scan = load(path)
        assert scan.modality == "CT" and scan.units == "HU", path.name
    phase = np.random.default_rng(0).integers(-4096, 4096, (4, 64, 64)).astype(np.int16)
    assert nifti_modality_guess(phase) == "MR"  # integers far below air without one padding value: not CT


def test_four_d_series_orders_volumes_and_keeps_repetition_time(tmp_path) -> None:
    scan = load(DATA / "conformance" / "dcm_qa_nih" / "In" / "20180918GE" / "mr_0004")
    assert scan.voxels.shape == (10, 15, 64, 64)
    assert scan.repetition_time_s == pytest.approx(5.0, abs=0.01)
    out = save(scan, tmp_path / "epi.nii.gz")
    image = nib.load(out)
    assert image.shape == (64, 64, 15, 10)
    assert image.header.get_zooms()[3] == pytest.approx(5.0, abs=0.01)


def test_resampling_through_plane_drops_the_source_slice_thickness() -> None:
    from medscan.scan import ProvenanceEntry

    scan = load(CT_DICOM)
    same = scan.derive(scan.voxels * 0, ProvenanceEntry("zero"))
    assert float(same.header.SliceThickness) == 3.0 and same.provenance[-1].operation == "zero"
    affine = scan.affine.copy()
    affine[:3, 2] /= 2
    finer = scan.derive(np.repeat(scan.voxels, 2, axis=0), ProvenanceEntry("upsample_z"), affine=affine)
    assert "SliceThickness" not in finer.header and "SliceThickness" in scan.header
    assert finer.source_refs == [] and finer.spacing[2] == pytest.approx(1.0)
