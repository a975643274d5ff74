"""PNG snapshots: windowing, orientation (row 0 = j 0), slice choice and atomic writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medscan.io import png
from medscan.io.png import WINDOW_PRESETS, apply_window, default_window, save_png
from medscan.resources import shared_data_dir
from medscan.scan import MedscanError, ProvenanceEntry, Scan, affine_from_dicom

DATA = shared_data_dir()
CT_DIR = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
MR_DIR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"


def read_stack(folder: Path, modality: str) -> tuple[Scan, list[np.ndarray]]:
    """A Scan from a DICOM folder, plus each slice's pixel_array in physical units as pydicom gives it."""
    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    assert datasets, f"test data missing: {folder}"
    iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, dtype=float))))
    planes = [pydicom.pixels.apply_rescale(d.pixel_array, d).astype(np.float64) for d in datasets]
    first, second = (np.array(d.ImagePositionPatient, dtype=float) for d in datasets[:2])
    spacing = [float(v) for v in datasets[0].PixelSpacing]
    affine = affine_from_dicom(first, iop[:3], iop[3:], spacing, second - first)
    return Scan(np.stack(planes), affine, modality=modality), planes


@pytest.fixture(scope="module")
def ct() -> tuple[Scan, list[np.ndarray]]:
    return read_stack(CT_DIR, "CT")


@pytest.fixture(scope="module")
def mr() -> tuple[Scan, list[np.ndarray]]:
    return read_stack(MR_DIR, "MR")


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "L"
        return np.asarray(image)


# -- windowing ------------------------------------------------------------------------------------
def test_apply_window_maps_the_window_onto_0_255() -> None:
    values = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0, np.nan, -60.0])
    out = apply_window(values, 40, 400)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255, 0, 64]  # (-60 + 160) / 400 * 255 = 63.75


def test_apply_window_handles_narrow_float_windows() -> None:
    out = apply_window(np.array([0.0, 0.25, 0.5, 1.0]), 0.5, 1.0)
    assert out.tolist() == [0, 64, 128, 255]


@pytest.mark.parametrize("width", [0.0, -5.0, float("nan")])
def test_apply_window_rejects_bad_width(width: float) -> None:
    with pytest.raises(ValueError, match="positive width"):
        apply_window(np.zeros(3), 40, width)


def test_presets_are_the_usual_ct_windows() -> None:
    assert WINDOW_PRESETS["brain"] == (40, 80)
    assert WINDOW_PRESETS["subdural"] == (75, 215)
    assert WINDOW_PRESETS["lung"] == (-600, 1500)
    assert WINDOW_PRESETS["mediastinum"] == (50, 350)
    assert WINDOW_PRESETS["soft_tissue"] == WINDOW_PRESETS["abdomen"] == (40, 400)
    assert WINDOW_PRESETS["bone"] in ((400, 1800), (300, 1500))
    assert all(width > 0 for _, width in WINDOW_PRESETS.values())


# -- save_png -------------------------------------------------------------------------------------
def test_ct_middle_slice_uses_soft_tissue_window(ct, tmp_path: Path) -> None:
    scan, planes = ct
    out = save_png(scan, tmp_path / "ct.png")
    image = read_png(out)
    assert image.shape == (512, 512)
    np.testing.assert_array_equal(image, apply_window(planes[10], 40, 400))
    assert 0 < image.mean() < 255 and len(np.unique(image)) > 100  # a real picture, not flat
    with Image.open(out) as reopened:
        assert reopened.info["dpi"] == pytest.approx((25.4 / 0.9765625,) * 2, abs=0.01)


def test_row_zero_is_dicom_row_zero(ct, tmp_path: Path) -> None:
    """A non-square crop catches transposes and flips: PNG row r, column c = voxel [k, r, c]."""
    scan, planes = ct
    crop = Scan(scan.voxels[:, 100:220, 50:400], scan.affine, modality="CT")
    image = read_png(save_png(crop, tmp_path / "crop.png", slice_index=3, window=(-600, 1500)))
    expected = apply_window(planes[3][100:220, 50:400], -600, 1500)
    assert image.shape == (120, 350)
    np.testing.assert_array_equal(image, expected)
    assert not np.array_equal(image, expected[::-1]) and not np.array_equal(image, expected[:, ::-1])


def test_mr_default_window_is_the_1st_to_99th_percentile(mr, tmp_path: Path) -> None:
    scan, planes = mr
    low, high = np.percentile(scan.voxels, [1, 99])
    assert default_window(scan) == pytest.approx(((low + high) / 2, high - low))
    image = read_png(save_png(scan, tmp_path / "mr.png", slice_index=17))
    np.testing.assert_array_equal(image, apply_window(planes[17], (low + high) / 2, high - low))
    assert image.shape == (256, 256)


def test_volume_of_a_four_d_scan(ct, tmp_path: Path) -> None:
    scan, _ = ct
    four_d = Scan(np.stack([scan.voxels[:4], scan.voxels[:4] + 200]), scan.affine, modality="CT")
    first = read_png(save_png(four_d, tmp_path / "v0.png", slice_index=1, volume=0))
    second = read_png(save_png(four_d, tmp_path / "v1.png", slice_index=1, volume=1))
    np.testing.assert_array_equal(second, apply_window(scan.voxels[1] + 200, 40, 400))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"slice_index": 20}, "slice 20 does not exist; the scan has 20"),
    ({"slice_index": -1}, "slice -1 does not exist"),
    ({"volume": 1}, "volume 1 does not exist; the scan has 1"),
])
def test_bad_index_names_the_file(ct, tmp_path: Path, kwargs: dict, message: str) -> None:
    scan, _ = ct
    target = tmp_path / "bad.png"
    with pytest.raises(MedscanError) as caught:
        save_png(scan, target, **kwargs)
    assert caught.value.path == str(target) and message in str(caught.value)
    assert str(caught.value).startswith(str(target))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(ct, tmp_path: Path, monkeypatch) -> None:
    scan, _ = ct
    target = tmp_path / "snap.png"
    target.write_bytes(b"previous snapshot")

    def failing_save(self, fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        fp.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(png.Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_png(scan, target)
    assert target.read_bytes() == b"previous snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["snap.png"]


def test_existing_file_is_replaced(ct, tmp_path: Path) -> None:
    scan, planes = ct
    target = tmp_path / "snap.png"
    target.write_bytes(b"old")
    save_png(scan, target, slice_index=0, window=WINDOW_PRESETS["bone"])
    np.testing.assert_array_equal(read_png(target), apply_window(planes[0], *WINDOW_PRESETS["bone"]))
    assert [p.name for p in tmp_path.iterdir()] == ["snap.png"]


def test_beside_draws_a_before_after_pair_in_one_window(ct, mr, tmp_path: Path) -> None:
    scan, planes = ct
    after = scan.derive(scan.voxels + 100.0, ProvenanceEntry("brighten"))
    image = read_png(save_png(scan, tmp_path / "pair.png", window=(40, 400), beside=after))
    assert image.shape == (512, 512 * 2 + png.BESIDE_GAP_PX)
    np.testing.assert_array_equal(image[:, :512], apply_window(planes[10], 40, 400))
    np.testing.assert_array_equal(image[:, -512:], apply_window(planes[10] + 100.0, 40, 400))  # same window
    with pytest.raises(MedscanError, match="must share the grid"):
        save_png(scan, tmp_path / "bad.png", beside=mr[0])
    assert not (tmp_path / "bad.png").exists()
