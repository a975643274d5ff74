"""Derived DICOM series: values, geometry, identity and atomicity, checked on real scans."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import validate_file_meta
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage

from medscan.io import load
from medscan.io.export import choose_pixel_encoding, write_derived_series
from medscan.resources import shared_data_dir
from medscan.scan import LPS_TO_RAS, MedscanError, ProvenanceEntry, Scan, SourceRef, affine_from_dicom

DATA = shared_data_dir()
CT_DIR = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
MR_DIR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
DCM2NIIX = shutil.which("dcm2niix")
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix is not installed (pip install dcm2niix)")


# -- helpers ------------------------------------------------------------------------------------
def read_dicom_folder(folder: Path, *, modality: str, units: str = "") -> Scan:
    """A Scan built straight from pydicom, independent of medscan's own reader."""
    files = sorted(folder.glob("*.dcm"))
    assert files, f"test data missing: {folder}"
    datasets = [pydicom.dcmread(f) for f in files]
    iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, dtype=float))))
    voxels = np.stack(
        [d.pixel_array * float(d.get("RescaleSlope", 1)) + float(d.get("RescaleIntercept", 0)) for d in datasets]
    )
    first = np.array(datasets[0].ImagePositionPatient, dtype=float)
    second = np.array(datasets[1].ImagePositionPatient, dtype=float)
    spacing = [float(v) for v in datasets[0].PixelSpacing]
    affine = affine_from_dicom(first, iop[:3], iop[3:], spacing, second - first)
    refs = [
        SourceRef(
            str(d.get("SOPInstanceUID") or d.file_meta.MediaStorageSOPInstanceUID),
            str(d.get("SOPClassUID") or d.file_meta.MediaStorageSOPClassUID),
        )
        for d in datasets
    ]
    header = copy.deepcopy(datasets[0])
    del header.PixelData
    return Scan(
        voxels,
        affine,
        modality=modality,
        series_uid=str(header.get("SeriesInstanceUID", "")),
        series_number=int(header.SeriesNumber) if header.get("SeriesNumber") is not None else None,
        description=str(header.get("SeriesDescription", "")),
        source_refs=refs,
        header=header,
        units=units,
        source_path=str(folder),
    )


def read_back(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Instances sorted by InstanceNumber and the voxels rebuilt from raw bytes + rescale."""
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]  # no force: needs preamble + DICM
    datasets.sort(key=lambda d: int(d.InstanceNumber))
    planes = []
    for d in datasets:
        dtype = "<i2" if d.PixelRepresentation == 1 else "<u2"
        raw = np.frombuffer(d.PixelData, dtype=dtype).reshape(d.Rows, d.Columns)
        planes.append(raw * float(d.RescaleSlope) + float(d.RescaleIntercept))
    return datasets, np.stack(planes)


def dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    """Convert with dcm2niix and return the single NIfTI it writes, in closest-canonical form."""
    out.mkdir()
    result = subprocess.run(
        [DCM2NIIX, "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(folder)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    written = sorted(out.glob("*.nii"))
    assert len(written) == 1, [p.name for p in written]
    return nib.as_closest_canonical(nib.load(written[0]))


def expected_nifti(scan: Scan) -> nib.Nifti1Image:
    """The NIfTI the scan itself describes (RAS, x/y/z[/t]), in closest-canonical form."""
    data = np.moveaxis(scan.voxels, [-1, -2, -3], [0, 1, 2]) if scan.voxels.ndim == 4 else scan.voxels.T
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), LPS_TO_RAS @ scan.affine))


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array(
        [
            [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
            [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
            [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
        ]
    )


def with_affine(scan: Scan, affine: np.ndarray) -> Scan:
    """The same voxels on another grid, the way an operation that resamples hands them on."""
    return scan.derive(scan.voxels, ProvenanceEntry("regrid"), affine=affine)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct() -> Scan:
    return read_dicom_folder(CT_DIR, modality="CT", units="HU")


@pytest.fixture(scope="module")
def mr() -> Scan:
    return read_dicom_folder(MR_DIR, modality="MR")


@pytest.fixture(scope="module")
def ct_export(ct: Scan, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[pydicom.Dataset], np.ndarray]:
    out = write_derived_series(ct, tmp_path_factory.mktemp("ct") / "derived")
    return (out, *read_back(out))


@pytest.fixture
def small_ct(ct: Scan) -> Scan:
    """Six 128x96 slices of the real CT: enough for behaviour tests, fast to write."""
    return Scan(
        ct.voxels[5:11, 200:296, 180:308].copy(),
        ct.affine @ np.array([[1, 0, 0, 180], [0, 1, 0, 200], [0, 0, 1, 5], [0, 0, 0, 1]], float),
        modality="CT",
        series_number=ct.series_number,
        description=ct.description,
        source_refs=ct.source_refs[5:11],
        header=ct.header,
        units="HU",
    )


# -- values -------------------------------------------------------------------------------------
def test_integer_hu_round_trip_is_exact_int16(ct: Scan, ct_export) -> None:
    out, datasets, voxels = ct_export
    assert [p.name for p in sorted(out.iterdir())] == [f"IM_{n:05d}.dcm" for n in range(1, 21)]
    np.testing.assert_array_equal(voxels, ct.voxels)
    for d in datasets:
        assert (d.PixelRepresentation, d.BitsAllocated, d.BitsStored, d.HighBit) == (1, 16, 16, 15)
        assert (float(d.RescaleSlope), float(d.RescaleIntercept), d.RescaleType) == (1.0, 0.0, "HU")
        assert d.PhotometricInterpretation == "MONOCHROME2" and d.SamplesPerPixel == 1
    # pydicom's own pixel handler agrees with the raw decoding
    np.testing.assert_array_equal(pydicom.pixels.apply_rescale(datasets[3].pixel_array, datasets[3]), ct.voxels[3])


def test_non_integer_values_survive_within_half_a_quantum(small_ct: Scan, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = small_ct.voxels * 0.37 + rng.normal(0, 3.3, small_ct.voxels.shape)
    scan = Scan(values, small_ct.affine, modality="CT", header=small_ct.header, units="HU")
    datasets, voxels = read_back(write_derived_series(scan, tmp_path / "out"))
    slope = float(datasets[0].RescaleSlope)
    assert datasets[0].PixelRepresentation == 0
    assert slope == pytest.approx((scan.voxels.max() - scan.voxels.min()) / 65535, rel=1e-9)
    assert float(datasets[0].RescaleIntercept) == pytest.approx(scan.voxels.min(), abs=1e-6)
    error = np.abs(voxels - scan.voxels.astype(np.float64))
    assert error.max() <= slope / 2 + 1e-4, error.max()
    assert error.max() > slope / 100  # really quantised, not stored as something finer by accident


@pytest.mark.parametrize(
    ("values", "dtype", "slope"),
    [
        (np.array([-1024.0, 0.0, 3071.0]), np.int16, 1.0),
        (np.array([0.0, 40000.0, 65535.0]), np.uint16, 1.0),
        (np.array([-40000.0, 0.0, 40000.0]), np.uint16, 80000 / 65535),
        (np.array([2.5, 2.5]), np.uint16, 1.0),
        (np.array([0.0, 0.25, 1.0]), np.uint16, 1 / 65535),
    ],
)
def test_pixel_encoding_choice(values: np.ndarray, dtype: type, slope: float) -> None:
    encoding = choose_pixel_encoding(values)
    assert encoding.dtype == np.dtype(dtype)
    assert encoding.slope == pytest.approx(slope, rel=1e-9)
    assert float(encoding.slope_text) == encoding.slope and len(encoding.slope_text) <= 16
    rebuilt = encoding.encode(values).astype(float) * encoding.slope + encoding.intercept
    np.testing.assert_allclose(rebuilt, values, atol=encoding.slope / 2 if encoding.slope != 1 else 1e-9)


def test_nan_is_refused(small_ct: Scan, tmp_path: Path) -> None:
    voxels = small_ct.voxels.copy()
    voxels[0, 0, 0] = np.nan
    with pytest.raises(MedscanError, match="NaN"):
        write_derived_series(Scan(voxels, small_ct.affine, modality="CT"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -- geometry -----------------------------------------------------------------------------------
def assert_geometry(
    datasets: list[pydicom.Dataset], affine: np.ndarray, first_number: int = 1, thickness: float | None = None
) -> None:
    """``thickness``: the source's SliceThickness when it had one, else the slice spacing is expected."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    for k, d in enumerate(datasets):
        np.testing.assert_allclose(np.array(d.ImagePositionPatient, float), (affine @ [0, 0, k, 1])[:3], atol=1e-4)
        np.testing.assert_allclose(
            np.array(d.ImageOrientationPatient, float),
            np.concatenate([affine[:3, 0] / spacing[0], affine[:3, 1] / spacing[1]]),
            atol=1e-6,
        )
        np.testing.assert_allclose(np.array(d.PixelSpacing, float), [spacing[1], spacing[0]], atol=1e-4)
        assert float(d.SliceThickness) == pytest.approx(thickness or spacing[2], abs=1e-4)
        assert float(d.SpacingBetweenSlices) == pytest.approx(spacing[2], abs=1e-4)
        assert d.InstanceNumber == first_number + k


def test_geometry_of_axial_ct(ct: Scan, ct_export) -> None:
    assert_geometry(ct_export[1], ct.affine, thickness=float(ct.header.SliceThickness))


def test_geometry_of_sagittal_mr(mr: Scan, tmp_path: Path) -> None:
    datasets, voxels = read_back(write_derived_series(mr, tmp_path / "out"))
    assert mr.orientation_codes()[2] in "LR"  # really sagittal slices
    assert_geometry(datasets, mr.affine, thickness=float(mr.header.SliceThickness))
    np.testing.assert_array_equal(voxels, mr.voxels)


def test_geometry_of_oblique_anisotropic_scan(small_ct: Scan, tmp_path: Path) -> None:
    affine = small_ct.affine.copy()
    affine[:3, :3] = rotation([1, 2, 0.5], 23) @ affine[:3, :3] @ np.diag([0.8, 1.3, 2.5])
    scan = with_affine(small_ct, affine)
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "out"))
    assert_geometry(datasets, affine)


# -- identity, references and marking -----------------------------------------------------------
def test_new_series_in_the_same_study(mr: Scan, tmp_path: Path) -> None:
    datasets, _ = read_back(write_derived_series(mr, tmp_path / "out"))
    source = mr.header
    source_uids = {ref.sop_instance_uid for ref in mr.source_refs}
    sop_uids = {d.SOPInstanceUID for d in datasets}
    assert len(sop_uids) == len(datasets) and not sop_uids & source_uids
    for d in datasets:
        assert d.SOPClassUID == d.file_meta.MediaStorageSOPClassUID == MRImageStorage
        assert d.SOPInstanceUID == d.file_meta.MediaStorageSOPInstanceUID
        assert d.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert d.SeriesInstanceUID == datasets[0].SeriesInstanceUID != source.SeriesInstanceUID
        assert d.StudyInstanceUID == source.StudyInstanceUID
        assert d.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert (d.PatientName, d.PatientID, d.StudyDate) == (source.PatientName, source.PatientID, source.StudyDate)
        assert d.SeriesNumber == int(source.SeriesNumber) + 1000
        assert d.SeriesDescription == f"medscan {source.SeriesDescription}"
        assert list(d.ImageType) == ["DERIVED", "SECONDARY"]
        assert (d.ScanningSequence, list(d.SequenceVariant)) == (source.ScanningSequence, list(source.SequenceVariant))
        assert not any(element.tag.is_private for element in d)
        validate_file_meta(d.file_meta)


def test_source_image_sequence_points_at_each_slice(ct: Scan, ct_export) -> None:
    for d, ref in zip(ct_export[1], ct.source_refs, strict=True):
        (item,) = d.SourceImageSequence
        assert item.ReferencedSOPInstanceUID == ref.sop_instance_uid
        assert item.ReferencedSOPClassUID == ref.sop_class_uid == CTImageStorage
        assert "ReferencedFrameNumber" not in item


def test_referenced_frame_number_for_enhanced_sources(small_ct: Scan, tmp_path: Path) -> None:
    scan = copy.copy(small_ct)
    scan.source_refs = [SourceRef("1.2.3.4", "1.2.840.10008.5.1.4.1.1.2.1", frame=k + 1) for k in range(6)]
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "out"))
    assert [d.SourceImageSequence[0].ReferencedFrameNumber for d in datasets] == [1, 2, 3, 4, 5, 6]


def test_empty_study_uid_in_anonymised_source_gets_a_stable_new_one(ct: Scan, ct_export, tmp_path: Path) -> None:
    assert ct.header.StudyInstanceUID == ""  # this sample was anonymised down to empty UIDs
    first = ct_export[1][0]
    assert pydicom.uid.UID(first.StudyInstanceUID).is_valid
    again, _ = read_back(write_derived_series(ct, tmp_path / "again"))
    assert again[0].StudyInstanceUID == first.StudyInstanceUID  # repeated exports share one study
    assert again[0].SeriesInstanceUID != first.SeriesInstanceUID
    assert first.FrameOfReferenceUID == ct.header.FrameOfReferenceUID


def test_synthetic_scan_is_marked_everywhere(small_ct: Scan, tmp_path: Path) -> None:
    entries = [
        ProvenanceEntry("denoise", {"strength": 0.5}, model="unet2d", model_version="3"),
        ProvenanceEntry("super_resolution", {"factor": 2}),
    ]
    scan = small_ct.derive(small_ct.voxels, entries[0], synthetic=True).derive(small_ct.voxels, entries[1])
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "out", description_prefix="medscan sr"))
    for d in datasets:
        assert d.SeriesDescription == f"SYNTHETIC medscan sr {small_ct.description}"
        assert list(d.ImageType) == ["DERIVED", "SECONDARY", "SYNTHETIC"]
        assert d.DerivationDescription == "SYNTHETIC: " + "; ".join(e.describe() for e in entries)
        assert "SYNTHETIC" in d.ImageComments


def test_long_provenance_is_cut_to_the_st_limit(small_ct: Scan, tmp_path: Path) -> None:
    scan = small_ct
    for n in range(80):
        scan = scan.derive(scan.voxels, ProvenanceEntry("smooth", {"pass": n, "sigma": 0.75}))
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "out"))
    assert len(datasets[0].DerivationDescription) == 1024
    assert datasets[0].DerivationDescription.startswith("smooth pass=0 sigma=0.75; smooth pass=1")


def test_non_ascii_description_switches_to_utf8(small_ct: Scan, tmp_path: Path) -> None:
    scan = small_ct.derive(small_ct.voxels, ProvenanceEntry("gaussian", {"σ": 1.5}))
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "out"))
    assert datasets[0].SpecificCharacterSet == "ISO_IR 192"
    assert datasets[0].DerivationDescription == "gaussian σ=1.5"
    assert datasets[0].InstitutionAddress == small_ct.header.InstitutionAddress


def test_scan_without_header_starts_a_new_anonymous_study(small_ct: Scan, tmp_path: Path) -> None:
    scan = Scan(small_ct.voxels, small_ct.affine, modality="OT", description="from nifti")
    datasets, _ = read_back(write_derived_series(scan, tmp_path / "a"))
    other, _ = read_back(write_derived_series(scan, tmp_path / "b"))
    d = datasets[0]
    assert d.SOPClassUID == SecondaryCaptureImageStorage and d.ConversionType == "WSD"
    assert d.PatientName == "ANONYMOUS" and d.Modality == "OT" and d.SeriesNumber == 1000
    assert d.StudyInstanceUID != other[0].StudyInstanceUID  # no source: nothing to share
    assert pydicom.uid.UID(d.FrameOfReferenceUID).is_valid
    assert "SourceImageSequence" not in d
    assert_geometry(datasets, scan.affine)  # geometry tags are written for SC too


def test_window_kept_from_source_or_computed(ct: Scan, mr: Scan, ct_export, tmp_path: Path) -> None:
    d = ct_export[1][0]
    assert [float(v) for v in d.WindowCenter] == [float(v) for v in ct.header.WindowCenter]
    assert [float(v) for v in d.WindowWidth] == [float(v) for v in ct.header.WindowWidth]
    normalised = Scan(mr.voxels / mr.voxels.max() * 5.0, mr.affine, modality="MR", header=mr.header)
    datasets, _ = read_back(write_derived_series(normalised, tmp_path / "out"))
    center, width = float(datasets[0].WindowCenter), float(datasets[0].WindowWidth)
    lo, hi = np.percentile(normalised.voxels, [1, 99])
    assert center == pytest.approx((lo + hi) / 2, abs=0.05) and width == pytest.approx(max(hi - lo, 1), abs=0.1)


def test_four_d_series(small_ct: Scan, tmp_path: Path) -> None:
    voxels = np.stack([small_ct.voxels, small_ct.voxels + 10, small_ct.voxels - 7])
    scan = Scan(voxels, small_ct.affine, modality="CT", header=small_ct.header,
                source_refs=small_ct.source_refs, volume_labels=["arterial", "venous", "late"], units="HU")
    out = write_derived_series(scan, tmp_path / "out")
    datasets, stored = read_back(out)
    assert len(datasets) == 18
    np.testing.assert_array_equal(stored.reshape(voxels.shape), voxels)
    assert [d.TemporalPositionIdentifier for d in datasets] == [t for t in (1, 2, 3) for _ in range(6)]
    assert [d.AcquisitionNumber for d in datasets] == [t for t in (1, 2, 3) for _ in range(6)]
    assert {d.NumberOfTemporalPositions for d in datasets} == {3}
    assert "venous" in datasets[6].ImageComments
    assert ["SourceImageSequence" in d for d in datasets] == [True] * 6 + [False] * 12
    for t in range(3):
        assert_geometry(datasets[6 * t : 6 * t + 6], scan.affine, first_number=6 * t + 1,
                        thickness=float(scan.header.SliceThickness))


# -- atomic writing -----------------------------------------------------------------------------
def test_non_empty_out_dir_is_refused_and_untouched(small_ct: Scan, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(MedscanError, match="already exists and is not empty") as caught:
        write_derived_series(small_ct, out)
    assert caught.value.path == str(out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_empty_out_dir_is_used(small_ct: Scan, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert len(list(write_derived_series(small_ct, tmp_path / "out").iterdir())) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_midway_leaves_no_series_and_no_temp_folder(
    small_ct: Scan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_dcmwrite = pydicom.dcmwrite
    written: list[Path] = []

    def failing_dcmwrite(filename, dataset, *args, **kwargs):  # type: ignore[no-untyped-def]
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real_dcmwrite(filename, dataset, *args, **kwargs)
        written.append(Path(filename))

    monkeypatch.setattr(pydicom, "dcmwrite", failing_dcmwrite)
    with pytest.raises(OSError, match="No space left"):
        write_derived_series(small_ct, tmp_path / "out")
    assert len(written) == 3 and not any(p.exists() for p in written)
    assert list(tmp_path.iterdir()) == []


def test_input_scan_is_not_modified(small_ct: Scan, tmp_path: Path) -> None:
    before_voxels = small_ct.voxels.copy()
    before_header = copy.deepcopy(small_ct.header)
    before_fields = (list(small_ct.warnings), list(small_ct.provenance), list(small_ct.source_refs))
    write_derived_series(small_ct, tmp_path / "out")
    np.testing.assert_array_equal(small_ct.voxels, before_voxels)
    assert small_ct.header == before_header
    assert (small_ct.warnings, small_ct.provenance, small_ct.source_refs) == before_fields


def test_files_pass_pydicom_validation(
    small_ct: Scan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.RAISE)
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.RAISE)
    out = write_derived_series(small_ct.derive(small_ct.voxels * 0.5, ProvenanceEntry("halve")), tmp_path / "out")
    for path in sorted(out.iterdir()):
        ds = pydicom.dcmread(path)
        for element in ds.iterall():  # converts every raw element, validating VR and length
            assert element.VR != "UN", element
        validate_file_meta(ds.file_meta)


# -- medscan's own reader ------------------------------------------------------------------------
@pytest.mark.parametrize("folder", [CT_DIR, MR_DIR], ids=["ct", "mr"])
def test_round_trip_through_medscan_load(folder: Path, tmp_path: Path) -> None:
    source = load(folder)
    out = write_derived_series(source, tmp_path / "out")
    reloaded = load(out)
    assert reloaded.voxels.shape == source.voxels.shape
    np.testing.assert_array_equal(reloaded.voxels, source.voxels)
    np.testing.assert_allclose(reloaded.affine, source.affine, atol=1e-4)
    assert reloaded.modality == source.modality
    assert reloaded.series_number == (source.series_number or 0) + 1000
    assert reloaded.header.get("FrameOfReferenceUID") == source.header.get("FrameOfReferenceUID")
    datasets, _ = read_back(out)
    referenced = [(d.SourceImageSequence[0].ReferencedSOPInstanceUID, d.SourceImageSequence[0].ReferencedSOPClassUID)
                  for d in datasets]
    assert referenced == [(ref.sop_instance_uid, ref.sop_class_uid) for ref in source.source_refs]


# -- agreement with dcm2niix ----------------------------------------------------------------------
@needs_dcm2niix
def test_dcm2niix_reads_derived_ct_like_the_original(ct: Scan, ct_export, tmp_path: Path) -> None:
    original = dcm2niix(CT_DIR, tmp_path / "original")
    derived = dcm2niix(ct_export[0], tmp_path / "derived")
    np.testing.assert_allclose(derived.affine, original.affine, atol=0.01)
    np.testing.assert_array_equal(derived.get_fdata(), original.get_fdata())


@needs_dcm2niix
def test_dcm2niix_reads_derived_sagittal_mr_like_the_original(mr: Scan, tmp_path: Path) -> None:
    original = dcm2niix(MR_DIR, tmp_path / "original")
    derived = dcm2niix(write_derived_series(mr, tmp_path / "out"), tmp_path / "derived")
    np.testing.assert_allclose(derived.affine, original.affine, atol=0.01)
    np.testing.assert_array_equal(derived.get_fdata(), original.get_fdata())


@needs_dcm2niix
def test_dcm2niix_geometry_of_oblique_float_scan(small_ct: Scan, tmp_path: Path) -> None:
    affine = small_ct.affine.copy()
    affine[:3, :3] = rotation([0.3, -1, 0.7], 31) @ affine[:3, :3] @ np.diag([1.0, 1.25, 1.5])
    scan = Scan(small_ct.voxels * 0.37 + 0.1, affine, modality="CT", header=small_ct.header, units="HU")
    out = write_derived_series(scan, tmp_path / "out")
    slope = float(pydicom.dcmread(next(out.iterdir()), stop_before_pixels=True).RescaleSlope)
    converted = dcm2niix(out, tmp_path / "nifti")
    expected = expected_nifti(scan)
    np.testing.assert_allclose(converted.affine, expected.affine, atol=0.01)
    np.testing.assert_allclose(converted.get_fdata(), expected.get_fdata(), atol=slope / 2 + 1e-4)


@needs_dcm2niix
def test_dcm2niix_reads_four_d_series(small_ct: Scan, tmp_path: Path) -> None:
    voxels = np.stack([small_ct.voxels, small_ct.voxels + 100])
    scan = Scan(voxels, small_ct.affine, modality="CT", header=small_ct.header, units="HU")
    converted = dcm2niix(write_derived_series(scan, tmp_path / "out"), tmp_path / "nifti")
    expected = expected_nifti(scan)
    assert converted.shape == expected.shape == (128, 96, 6, 2)
    np.testing.assert_allclose(converted.affine, expected.affine, atol=0.01)
    np.testing.assert_array_equal(converted.get_fdata(), expected.get_fdata())
