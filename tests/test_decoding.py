"""Every encoding of the same pixels decodes to the same numbers; display conventions are normalised."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conformance import CONFORMANCE, DATA

from medscan.io import list_series, load
from medscan.io.dicom import load_series

PYDICOM_DATA = CONFORMANCE / "pydicom_data"


def _voxels(name: str) -> np.ndarray:
    (record,) = list_series(PYDICOM_DATA / name).series
    return load_series(record).voxels


@pytest.mark.parametrize(
    ("reference", "variants"),
    [
        # 1-bit segmentations: deflated image frames and 1-bit RLE are decoded by medscan itself.
        ("liver.dcm", ["liver_deflate.dcm", "liver_expb.dcm", "liver_j2k.dcm", "liver_rle.dcm"]),
        ("liver_nonbyte_aligned.dcm",
         ["liver_nonbyte_aligned_deflate.dcm", "liver_nonbyte_aligned_j2k.dcm", "liver_nonbyte_aligned_rle.dcm"]),
        ("emri_small.dcm", ["emri_small_RLE.dcm", "emri_small_big_endian.dcm",
                            "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm"]),
        ("693_UNCR.dcm", ["693_J2KR.dcm"]),
    ],
)
def test_lossless_encodings_agree(reference: str, variants: list[str]) -> None:
    expected = _voxels(reference)
    for name in variants:
        np.testing.assert_array_equal(_voxels(name), expected, err_msg=name)


def test_one_bit_segmentation_holds_a_plausible_mask() -> None:
    mask = _voxels("liver.dcm")
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert 0.01 < mask.mean() < 0.5


def test_monochrome1_is_inverted_so_brighter_means_higher() -> None:
    raw = pydicom.dcmread(PYDICOM_DATA / "RG3_J2KR.dcm")
    stored = raw.pixel_array.astype(np.float64)
    scan = load(PYDICOM_DATA / "RG3_J2KR.dcm")
    top = 2 ** int(raw.BitsStored) - 1
    np.testing.assert_array_equal(scan.voxels[0], (top - stored).astype(np.float32))
    assert any("MONOCHROME1" in w for w in scan.warnings)
    assert any("no patient geometry" in w for w in scan.warnings)  # a radiograph is a 2-D picture


def test_colour_and_palette_images_become_luminance() -> None:
    for name in ("SC_rgb.dcm", "OBXXXX1A.dcm", "HTJ2KLossless_08_RGB.dcm", "SC_ybr_full_uncompressed.dcm"):
        scan = load(PYDICOM_DATA / name)
        assert scan.voxels.ndim == 3 and scan.voxels.shape[0] == 1
        assert any("greyscale" in w for w in scan.warnings), name
        assert scan.voxels.min() >= 0 and scan.voxels.max() <= 255


def test_enhanced_ct_uses_per_frame_rescale() -> None:
    scan = load(PYDICOM_DATA / "eCT_Supplemental.dcm")
    ds = pydicom.dcmread(PYDICOM_DATA / "eCT_Supplemental.dcm")
    groups = ds.PerFrameFunctionalGroupsSequence
    for index in range(int(ds.NumberOfFrames)):
        transform = groups[index].get("PixelValueTransformationSequence") or \
            ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence
        slope, intercept = float(transform[0].RescaleSlope), float(transform[0].RescaleIntercept)
        expected = ds.pixel_array[index] * slope + intercept
        plane = scan.voxels.reshape(-1, *scan.voxels.shape[-2:])
        assert any(np.array_equal(p, expected.astype(np.float32)) for p in plane)


def test_gantry_tilt_and_uneven_spacing_are_reported(tmp_path) -> None:
    source = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
    by_height = sorted(source.iterdir(), key=lambda p: -float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for index, path in enumerate(by_height):
        ds = pydicom.dcmread(path)
        z = float(ds.ImagePositionPatient[2])
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], float(ds.ImagePositionPatient[1]) + 0.3 * index, z]
        ds.save_as(tmp_path / path.name)
    scan = load(tmp_path)
    assert any("gantry tilt" in w for w in scan.warnings)
    # The sheared stack keeps its true geometry: slice k sits where its ImagePositionPatient says.
    last = scan.index_to_world([0, 0, scan.voxels.shape[0] - 1])[0]
    first = scan.index_to_world([0, 0, 0])[0]
    assert last[1] - first[1] == pytest.approx(-0.3 * 19, abs=1e-3)
