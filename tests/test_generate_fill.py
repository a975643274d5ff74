"""Inpaint and fill-slices on real scans: only the missing voxels change, the output is SYNTHETIC with an
uncertainty map that is larger where voxels were generated, bad requests are one-line errors that write nothing,
and a DICOM series with deleted slices comes back complete on its own grid.

Scans are crops of real series from ../shared/data (a few slices, 96-128 px) so the suite stays fast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medscan.cli import main
from medscan.degrade.masks import REGION_KINDS, region_mask, row_mask
from medscan.io import load, save
from medscan.ops import get, run
from medscan.scan import MedscanError, Scan
from medscan.train.data import DATA_ROOT

pytestmark = pytest.mark.model

CT_DICOM = DATA_ROOT / "train" / "ct01_upper_abdomen_siemens_dicom"
MR_DICOM = DATA_ROOT / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"


def _crop(scan: Scan, slices: slice, rows: slice, cols: slice) -> Scan:
    """A sub-volume with the affine moved to its first voxel, so geometry stays exact."""
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world(np.array([[cols.start, rows.start, slices.start]]))[0]
    return dataclasses.replace(scan, voxels=np.ascontiguousarray(scan.voxels[slices, rows, cols]), affine=affine,
                               source_refs=[], source_path="")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads spin against other jobs and run 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scans() -> dict[str, Scan]:
    return {"CT": _crop(load(CT_DICOM), slice(6, 12), slice(200, 328), slice(180, 308)),
            "MR": _crop(load(MR_DICOM), slice(14, 20), slice(70, 166), slice(80, 176))}


@pytest.fixture(scope="module")
def ct_file(scans, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fill") / "ct.nii.gz"
    save(scans["CT"], path)
    return path


def _assert_filled(result, scan: Scan, region: np.ndarray) -> None:
    out, generated, uncertainty = result.scan.voxels, result.maps["generated"], result.maps["uncertainty"]
    assert result.synthetic and result.scan.synthetic and result.scan.provenance[-1].parameters["synthetic"]
    assert np.array_equal(generated, region)
    assert np.array_equal(out[~region], scan.voxels[~region])  # measured voxels bit-identical
    assert np.all(np.isfinite(out)) and not np.array_equal(out[region], scan.voxels[region])
    assert float(uncertainty[~region].max()) == 0.0 and float(uncertainty[region].mean()) > 0.0
    assert np.allclose(result.scan.affine, scan.affine) and result.scan.units == scan.units


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_inpaint_box_fills_the_box_with_plausible_values_and_nothing_else(scans, modality) -> None:
    scan = scans[modality]
    holed = scan.derive(scan.voxels.copy(), _entry())
    region = np.zeros(scan.voxels.shape, bool)
    region[2:4, 40:80, 30:70] = True
    holed.voxels[region] = 0.0  # what a zero-filled block looks like
    result = run("inpaint", holed, box="2,40,30,4,80,70")
    _assert_filled(result, holed, region)
    truth = scan.voxels[region]
    # Closer to the truth than the zero fill, and inside the slice's range of values.
    assert np.abs(result.scan.voxels[region] - truth).mean() < 0.5 * np.abs(truth).mean()
    assert scan.voxels.min() - 1 <= result.scan.voxels[region].min() <= result.scan.voxels[region].max() \
        <= scan.voxels.max() + 0.2 * np.ptp(scan.voxels)


def _entry():
    from medscan.scan import ProvenanceEntry

    return ProvenanceEntry("crop")


def test_inpaint_mask_file_and_auto_through_the_cli(scans, ct_file, tmp_path) -> None:
    scan = scans["CT"]
    hole = np.zeros(scan.voxels.shape, bool)
    hole[3] = region_mask(scan.voxels.shape[1:], np.random.default_rng(3), (0.1, 0.25), "blob")
    mask_path = tmp_path / "mask.nii.gz"
    save(scan.derive(hole.astype(np.float32), _entry()), mask_path)
    out = tmp_path / "from_mask.nii.gz"
    assert main(["generate", "inpaint", str(ct_file), "-o", str(out), "--mask", str(mask_path)]) == 0
    written = load(_written(tmp_path, "from_mask"))
    assert np.array_equal(written.voxels[~hole], load(ct_file).voxels[~hole])
    # --auto finds a zero-filled band on one slice (a truncated field of view) and fills only that.
    blanked = scan.derive(scan.voxels.copy(), _entry())
    blanked.voxels[4, :, :30] = 0.0
    result = run("inpaint", blanked, auto=True)
    found = result.maps["generated"]
    assert found[4, :, :30].mean() > 0.9 and not found[:4].any() and not found[5:].any()
    assert np.array_equal(result.scan.voxels[~found], blanked.voxels[~found])
    assert result.maps["uncertainty"][found].mean() > result.maps["uncertainty"][~found].mean()


def _written(folder: Path, stem: str) -> Path:
    """The image the CLI wrote for ``-o <stem>.nii.gz`` (export may mark the name synthetic; maps lie beside it)."""
    images = [p for p in folder.glob(f"{stem}*.nii.gz") if "uncertainty" not in p.name and "generated" not in p.name]
    assert len(images) == 1, images
    return images[0]


def _write_mask(path: Path, data: np.ndarray, scan: Scan) -> Path:
    save(scan.derive(data.astype(np.float32), _entry()), path)
    return path


@pytest.mark.parametrize("case", ["other_shape", "empty", "whole", "box_outside", "box_and_auto", "none",
                                  "auto_nothing", "bad_box"])
def test_inpaint_bad_requests_are_one_line_errors_and_write_nothing(scans, ct_file, tmp_path, capsys, case) -> None:
    scan = scans["CT"]
    shape = scan.voxels.shape
    args = {
        "other_shape": ["--mask", str(_write_mask(tmp_path / "small.nii.gz", np.ones((2, 8, 8)), _crop(
            scan, slice(0, 2), slice(0, 8), slice(0, 8))))],
        "empty": ["--mask", str(_write_mask(tmp_path / "empty.nii.gz", np.zeros(shape), scan))],
        "whole": ["--mask", str(_write_mask(tmp_path / "whole.nii.gz", np.ones(shape), scan))],
        "box_outside": ["--box", f"0,0,0,{shape[0] + 1},10,10"],
        "box_and_auto": ["--box", "1,1,1,2,2,2", "--auto"],
        "none": [],
        "auto_nothing": ["--auto"],
        "bad_box": ["--box", "1,2,3"],
    }[case]
    needle = {"other_shape": "shape", "empty": "empty", "whole": "whole image", "box_outside": "outside",
              "box_and_auto": "exactly one", "none": "exactly one", "auto_nothing": "found no", "bad_box": "six"}[case]
    out = tmp_path / "out.nii.gz"
    capsys.readouterr()
    assert main(["generate", "inpaint", str(ct_file), "-o", str(out), *args]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medscan: ") and needle in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob("out*"))


def _cropped_series(folder: Path, keep: range, drop: set[int], r0: int = 70, c0: int = 80, size: int = 96) -> Path:
    """Copies of real MR DICOM files (slices ``keep`` minus the ``drop``-th of them), pixels cropped to ``size`` px."""
    folder.mkdir()
    files = sorted(MR_DICOM.iterdir(), key=lambda p: float(np.dot(
        np.cross(*np.reshape(pydicom.dcmread(p, stop_before_pixels=True).ImageOrientationPatient, (2, 3))),
        pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient)))
    for index in keep:
        if index - keep.start in drop:
            continue
        ds = pydicom.dcmread(files[index])
        cosines = np.reshape(np.array(ds.ImageOrientationPatient, float), (2, 3))
        row_step, col_step = (float(v) for v in ds.PixelSpacing)
        position = np.array(ds.ImagePositionPatient, float) + cosines[0] * c0 * col_step + cosines[1] * r0 * row_step
        pixels = np.ascontiguousarray(ds.pixel_array[r0:r0 + size, c0:c0 + size])
        ds.PixelData, ds.Rows, ds.Columns = pixels.tobytes(), size, size
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.save_as(folder / files[index].name)
    return folder


def test_inpaint_reads_the_dicom_seg_of_a_generated_region(tmp_path) -> None:
    from medscan.io.result_files import save_result

    scan = load(_cropped_series(tmp_path / "mr", range(10, 16), set(), size=64))
    first = run("inpaint", scan, box="2,10,10,4,40,30")
    save_result(first.scan, first.maps, tmp_path / "out")
    seg = next(tmp_path.rglob("*SEG*.dcm"))
    again = run("inpaint", scan, mask=str(seg))  # the SEG drawn on this series is the same region
    assert np.array_equal(again.maps["generated"], first.maps["generated"])


def test_fill_slices_restores_a_dicom_series_with_deleted_slices(tmp_path) -> None:
    full = load(_cropped_series(tmp_path / "full", range(10, 22), set()))
    gappy_folder = _cropped_series(tmp_path / "gappy", range(10, 22), {4, 7, 8})  # indices 14, 17, 18
    gappy = load(gappy_folder)
    assert gappy.voxels.shape[0] == 9 and any("non-uniform slice spacing" in w for w in gappy.warnings)
    result = run("fill_slices", gappy)
    out = result.scan
    assert out.voxels.shape == full.voxels.shape and out.synthetic
    assert np.allclose(out.affine, full.affine, atol=1e-3)  # the real grid: measured slices did not move
    missing = np.array([i in (4, 7, 8) for i in range(12)])
    assert np.array_equal(out.voxels[~missing], full.voxels[~missing])  # measured slices bit-identical
    assert np.array_equal(result.maps["generated"].any(axis=(1, 2)), missing)
    uncertainty = result.maps["uncertainty"]
    assert uncertainty[missing].mean() > 0 and uncertainty[~missing].max() == 0
    truth, measured_mean = full.voxels[missing], gappy.voxels.mean(axis=0)
    assert np.abs(out.voxels[missing] - truth).mean() < 0.9 * np.abs(measured_mean - truth).mean()
    # Through the CLI: a complete series, and a complete series is refused with one line, nothing written.
    target = tmp_path / "filled.nii.gz"
    assert main(["generate", "fill-slices", str(gappy_folder), "-o", str(target)]) == 0
    assert nib.load(str(_written(tmp_path, "filled"))).shape[2] == 12
    refused = tmp_path / "refused.nii.gz"
    assert main(["generate", "fill-slices", str(tmp_path / "full"), "-o", str(refused)]) != 0
    assert not refused.exists()


def test_fill_slices_replaces_named_and_blank_slices_on_a_nifti(scans) -> None:
    scan = scans["MR"]
    blank = scan.derive(scan.voxels.copy(), _entry())
    blank.voxels[2] = 0.0
    result = run("fill_slices", blank, slices="4")
    assert result.scan.voxels.shape == scan.voxels.shape and np.allclose(result.scan.affine, scan.affine)
    changed = result.maps["generated"].any(axis=(1, 2))
    assert changed.tolist() == [False, False, True, False, True, False]
    assert np.array_equal(result.scan.voxels[~changed], blank.voxels[~changed])
    with pytest.raises(MedscanError, match="both"):
        run("fill_slices", scan, slices="0")
    with pytest.raises(MedscanError, match="no missing slices"):
        run("fill_slices", scan)


def test_fill_slices_beats_interpolation_on_a_held_out_thick_slice_ct() -> None:
    """Every other 5 mm slice of a chest CT the model never saw, removed and filled: closer to the truth than
    linear interpolation along the slice axis (which cross-fades anatomy that moves between slices)."""
    scan = load(DATA_ROOT / "train-extra" / "ct04_chest_philips_5mm_kernelB.nii.gz")
    z0 = scan.voxels.shape[0] // 2 - 3
    full = _crop(scan, slice(z0, z0 + 7), slice(150, 310), slice(170, 330))
    missing = np.array([False, True, False, True, False, True, False])
    blanked = full.derive(np.where(missing[:, None, None], -1024.0, full.voxels).astype(np.float32), _entry())
    result = run("fill_slices", blanked)
    out = result.scan.voxels
    assert out.shape == full.voxels.shape and np.allclose(result.scan.affine, full.affine)
    assert np.array_equal(out[~missing], full.voxels[~missing])
    linear = 0.5 * (full.voxels[:-2:2] + full.voxels[2::2])
    ours_error = np.abs(out[missing] - full.voxels[missing]).mean()
    linear_error = np.abs(linear - full.voxels[missing]).mean()
    assert ours_error < 0.9 * linear_error, (ours_error, linear_error)


@pytest.mark.parametrize("depth", [0.5, 0.25])
def test_flow_estimates_put_a_moving_structure_where_it_is_at_the_missing_depth(depth) -> None:
    """An ellipse 8 px further right in the next slice: at depth t the flow estimate draws it 8t px on, where
    a cross-fade (linear interpolation) draws two half-contrast copies."""
    from scipy import ndimage

    from medscan.nets.slice_flow import flow_estimates

    rows, cols = np.mgrid[:128, :128]
    texture = ndimage.gaussian_filter(np.random.default_rng(0).random((128, 128)), 3)
    image = (0.7 * (((rows - 64) / 30) ** 2 + ((cols - 60) / 20) ** 2 < 1) + texture).astype(np.float32)

    def shifted(dx: float) -> np.ndarray:
        return ndimage.shift(image, (0, dx), order=1, mode="nearest")

    before, after, truth = shifted(-4), shifted(4), shifted(-4 + 8 * depth)
    estimates = flow_estimates(before, after, depth)
    inner = (slice(8, -8), slice(8, -8))
    flow_error = np.abs((1 - depth) * estimates[0] + depth * estimates[1] - truth)[inner].mean()
    fade_error = np.abs((1 - depth) * before + depth * after - truth)[inner].mean()
    assert flow_error < 0.2 * fade_error
    assert all(np.abs(e - truth)[inner].mean() < 0.35 * fade_error for e in estimates)


def test_masks_have_the_asked_sizes_and_rows_keep_their_ends() -> None:
    rng = np.random.default_rng(0)
    for kind in REGION_KINDS:
        fractions = [region_mask((96, 128), rng, (0.10, 0.25), kind).mean() for _ in range(5)]
        assert all(0.07 <= f <= 0.3 for f in fractions), (kind, fractions)
    for pattern in ("alternate", "single", "short"):
        rows = row_mask(30, rng, pattern)
        assert not rows[0] and not rows[-1] and rows.any()
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(int), [0]]))))[::2]
        assert runs.max() <= (3 if pattern == "short" else 1)


def test_generate_operations_are_registered_and_their_models_verify() -> None:
    from medscan.nets.weights import load_model

    for name, model in (("inpaint", "inpaint_unet2d"), ("fill_slices", "fillslices_flow2d")):
        op = get(name)
        assert op.family == "generate" and op.synthetic
        _, card = load_model(model)  # refuses weights whose sha256 differs from the card
        assert card.data["sha256"] and card.data["training"]["steps_completed"] > 0


# -- where the model fills and where a cubic spline does (the card's by-spacing table) ---------------------------

def _thin_and_thick(name: str, slices: int, rows: slice, cols: slice) -> Scan:
    scan = load(DATA_ROOT / name)
    z0 = scan.voxels.shape[0] // 2 - slices // 2
    return _crop(scan, slice(z0, z0 + slices), rows, cols)


def _assert_synthetic(result, scan: Scan, missing: np.ndarray) -> None:
    out, uncertainty = result.scan.voxels, result.maps["uncertainty"]
    assert result.synthetic and result.scan.synthetic and result.scan.provenance[-1].parameters["synthetic"]
    assert any("SYNTHETIC" in note for note in result.notes)
    assert np.array_equal(result.maps["generated"].any(axis=(1, 2)), missing)
    assert np.array_equal(out[~missing], scan.voxels[~missing])  # measured slices bit-identical
    assert float(uncertainty[~missing].max()) == 0.0 and float(uncertainty[missing].mean()) > 0.0


@pytest.mark.parametrize(("name", "rows", "cols", "step"), [
    ("paired/brain_tcga_fg_6692/t1.nii.gz", slice(56, 184), slice(56, 184), 1.0),  # held-out 1 mm brain MR
    ("train/ct01_upper_abdomen_siemens.nii.gz", slice(200, 328), slice(180, 308), 2.0),  # 3 mm slices 2 mm apart
])
def test_fill_slices_on_thin_slices_is_the_cubic_spline_and_the_provenance_says_why(name, rows, cols, step) -> None:
    """Single-slice gaps in real thin-slice volumes: the card measured the model not beating cubic at this step,
    so the missing slices are exactly the cubic spline through the measured ones, still SYNTHETIC."""
    from medscan.ops.fill import interpolate_slices

    scan = _thin_and_thick(name, 9, rows, cols)
    assert abs(np.linalg.norm(scan.affine[:3, 2]) - step) < 0.01
    missing = np.zeros(9, bool)
    missing[[3, 6]] = True
    result = run("fill_slices", scan, slices="3,6")
    entry = result.scan.provenance[-1]
    assert entry.parameters["filled_by"] == "cubic spline" and entry.model is None
    assert entry.parameters["slices_by_cubic"] == 2 and entry.parameters["slices_by_model"] == 0
    reason = entry.parameters["method_reason"]
    assert reason.startswith(f"cubic spline: the model does not beat it for single-slice gaps at {step:.1f} mm"), \
        reason
    assert any(reason in note for note in result.notes)
    cubic = interpolate_slices(np.where(missing[:, None, None], 0.0, scan.voxels), missing, "cubic")
    assert np.array_equal(result.scan.voxels[missing], cubic[missing])
    _assert_synthetic(result, scan, missing)


def test_fill_slices_on_a_thick_ct_is_the_model() -> None:
    """The same request on the held-out 5 mm chest CT: the card measured the model ahead there, so it fills."""
    from medscan.ops.fill import interpolate_slices

    scan = _thin_and_thick("train-extra/ct04_chest_philips_5mm_kernelB.nii.gz", 9, slice(150, 310),
                           slice(170, 330))
    missing = np.zeros(9, bool)
    missing[[3, 6]] = True
    result = run("fill_slices", scan, slices="3,6")
    entry = result.scan.provenance[-1]
    assert entry.parameters["filled_by"] == "model" and entry.model == "fillslices_flow2d"
    assert entry.parameters["method_reason"].startswith("model: it beats cubic spline for single-slice gaps at 5.0")
    cubic = interpolate_slices(scan.voxels, missing, "cubic")
    assert np.abs(result.scan.voxels[missing] - cubic[missing]).mean() > 1.0  # HU: not the spline
    _assert_synthetic(result, scan, missing)


def test_the_shipped_card_falls_back_to_cubic_on_thin_ct_and_keeps_the_model_on_thick_slices() -> None:
    """What the reviewer measured: chest CT single-slice gaps lose to cubic at 1 mm and win at 2 mm and more."""
    from medscan.nets.weights import load_card
    from medscan.ops.fill import choose_fill_method

    card = load_card("fillslices_flow2d").data
    assert choose_fill_method(card, "single-slice gaps", 1.0, "CT")[0] == "cubic"
    assert choose_fill_method(card, "every other slice", 1.0, "CT")[0] == "cubic"
    for spacing in (5.0, 7.0):
        assert choose_fill_method(card, "single-slice gaps", spacing, "CT")[0] == "model"
    assert choose_fill_method(card, "longer gaps", 5.0, "CT")[0] == "cubic"  # never measured
    assert choose_fill_method(card, "single-slice gaps", 5.0, "US")[0] == "cubic"


def test_choose_fill_method_is_conservative_between_and_beyond_measured_spacings() -> None:
    from medscan.ops.fill import choose_fill_method

    def row(spacing: float, gain: float, **extra: float) -> dict:
        return {"pattern": "single-slice gaps", "spacing_mm": spacing, "slices": 8, "subjects": 2, "gain_db": gain,
                "gain_body_db": gain, "gain_MR_db": gain, **extra}

    card = {"evaluation": {"by_spacing": {"rows": [row(1.0, -0.6), row(2.0, 1.0), row(3.0, 2.0),
                                                   row(5.0, 0.1), row(8.0, 2.5, training_gain_CT_db=1.0)]}}}

    def method(spacing: float, modality: str = "MR") -> str:
        return choose_fill_method(card, "single-slice gaps", spacing, modality)[0]

    assert method(1.0) == "cubic" and method(1.04) == "cubic" and method(0.5) == "cubic"
    assert method(1.5) == "cubic"  # between a loss and a win
    assert method(2.0) == "model" and method(2.5) == "model" and method(3.0) == "model"
    assert method(4.0) == "cubic" and method(5.0) == "cubic"  # +0.1 dB is inside the margin
    assert method(8.0) == "model" and method(12.0) == "model"  # beyond the thickest: the thickest decides
    assert method(3.0, "CT") == "cubic"  # CT measured only from 8 mm on: thinner than that falls back
    training_loss = {"pattern": "single-slice gaps", "spacing_mm": 2.5, "slices": 0, "gain_db": None,
                     "training_gain_MR_db": -1.0}
    card["evaluation"]["by_spacing"]["rows"].append(training_loss)
    assert method(2.5) == "cubic" and method(2.2) == "cubic"  # a training-subject loss between two wins
    assert method(2.5, "CT") == "cubic" and method(2.0) == "model"
    card["evaluation"]["by_spacing"]["rows"].append({**row(9.0, -0.5), "subjects": 1})
    assert method(8.5) == "model"  # one subject does not decide beyond 8 mm ...
    assert method(12.0) == "cubic"  # ... but its loss at 9 mm vetoes from there on
    why = choose_fill_method(card, "single-slice gaps", 1.0, "MR")[1]
    assert why == "cubic spline: the model does not beat it for single-slice gaps at 1.0 mm (card: -0.6 dB)"
    vetoed = {"evaluation": {"by_spacing": {"rows": [row(2.0, 3.0, training_gain_CT_db=-0.4)]}}}
    assert choose_fill_method(vetoed, "single-slice gaps", 2.0, "CT")[0] == "cubic"  # a training-subject loss
    assert choose_fill_method(vetoed, "single-slice gaps", 2.0, "MR")[0] == "model"  # on CT says nothing on MR


def test_gap_patterns_name_single_alternating_short_and_long_gaps() -> None:
    from medscan.ops.fill import gap_patterns

    missing = np.array([0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0], bool)
    patterns = gap_patterns(missing)
    assert patterns[1] == "single-slice gaps" and patterns[0] is None
    assert patterns[4] == patterns[6] == patterns[8] == "every other slice"
    assert patterns[11] == patterns[12] == "2-3-slice gaps"
    assert patterns[14] == patterns[17] == "longer gaps"
