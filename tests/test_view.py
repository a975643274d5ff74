"""Display geometry (medscan.view), headless: reformat planes, edge labels, window drags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medscan.scan import affine_from_dicom
from medscan.view import (
    acquisition_plane,
    adjust_window,
    axis_spacing,
    direction_label,
    edge_labels,
    index_to_patient,
    reformat,
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def axial_affine() -> np.ndarray:
    """A plain axial CT: rows along +x (left), columns along +y (posterior), 2 mm slices up."""
    return affine_from_dicom(
        position=np.array([-100.0, -120.0, -50.0]), row_cosine=np.array([1.0, 0, 0]),
        column_cosine=np.array([0, 1.0, 0]), pixel_spacing=(0.8, 0.7), slice_vector=np.array([0, 0, 2.0]),
    )


def sagittal_affine() -> np.ndarray:
    """A sagittal MR as the scanner writes it: i toward posterior, j toward inferior, k toward left."""
    return affine_from_dicom(
        position=np.array([-40.0, -110.0, 90.0]), row_cosine=np.array([0, 1.0, 0]),
        column_cosine=np.array([0, 0, -1.0]), pixel_spacing=(1.0, 1.0), slice_vector=np.array([4.8, 0, 0]),
    )


def random_volume(shape=(6, 7, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("make_affine", [axial_affine, sagittal_affine])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_reformat_keeps_every_voxel_at_its_patient_position(make_affine, plane):
    affine = make_affine()
    voxels = random_volume()
    stack = reformat(voxels, affine, plane)
    rng = np.random.default_rng(1)
    n_slice, n_row, n_col = stack.shape
    for _ in range(25):
        col, row, sl = int(rng.integers(n_col)), int(rng.integers(n_row)), int(rng.integers(n_slice))
        i, j, k = stack.source_index(col, row, sl)
        assert stack.voxels[sl, row, col] == voxels[k, j, i]
        np.testing.assert_allclose(index_to_patient(stack.affine, col, row, sl), index_to_patient(affine, i, j, k))


def test_reformat_of_axial_ct_follows_the_radiological_convention():
    voxels = random_volume((20, 30, 40))
    affine = axial_affine()
    assert acquisition_plane(affine) == "axial"
    axial = reformat(voxels, affine, "axial")
    assert axial.voxels.shape == (20, 30, 40)
    assert np.shares_memory(axial.voxels, voxels)  # a view, not a copy
    assert edge_labels(axial.affine) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}

    coronal = reformat(voxels, affine, "coronal")
    assert coronal.voxels.shape == (30, 20, 40)  # slices along y, rows along z, columns along x
    assert edge_labels(coronal.affine) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    # Superior at the top: row 0 of the coronal slice is the last (highest) axial slice.
    np.testing.assert_array_equal(coronal.voxels[5, 0], voxels[-1, 5])
    col_mm, row_mm, slice_mm = axis_spacing(coronal.affine)
    assert (col_mm, row_mm, slice_mm) == pytest.approx((0.7, 2.0, 0.8))

    sagittal = reformat(voxels, affine, "sagittal")
    assert sagittal.voxels.shape == (40, 20, 30)
    assert edge_labels(sagittal.affine) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_sagittal_acquisition_is_shown_as_acquired():
    voxels = random_volume((10, 25, 26))
    affine = sagittal_affine()
    assert acquisition_plane(affine) == "sagittal"
    stack = reformat(voxels, affine, "sagittal")
    assert stack.flipped == (False, False, False)
    np.testing.assert_array_equal(stack.voxels, voxels)
    assert edge_labels(stack.affine) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    axial = reformat(voxels, affine, "axial")
    assert axial.voxels.shape == (25, 26, 10)
    assert edge_labels(axial.affine) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def test_flipped_acquisition_is_turned_to_the_convention():
    affine = axial_affine()
    affine[:3, 0] *= -1  # columns run toward the patient's right
    voxels = random_volume((4, 5, 6))
    stack = reformat(voxels, affine, "axial")
    assert stack.flipped == (True, False, False)
    np.testing.assert_array_equal(stack.voxels[:, :, 0], voxels[:, :, -1])
    assert edge_labels(stack.affine)["left"] == "R"


def test_reformat_of_4d_keeps_time_first():
    voxels = random_volume((3, 4, 5, 6))
    stack = reformat(voxels, axial_affine(), "coronal")
    assert stack.voxels.shape == (3, 5, 4, 6)
    np.testing.assert_array_equal(stack.voxels[2, 1, 0], voxels[2, -1, 1])


def test_oblique_labels_name_both_directions():
    assert direction_label(np.array([1.0, 0, 0])) == "L"
    assert direction_label(np.array([0, -1.0, 0])) == "A"
    assert direction_label(np.array([0.9, -0.5, 0.05])) == "LA"
    assert direction_label(np.zeros(3)) == ""
    theta = np.deg2rad(30)
    affine = axial_affine()
    affine[:3, 1] = np.array([0, np.cos(theta), np.sin(theta)]) * 0.8  # rows tilt toward superior
    assert edge_labels(affine)["bottom"] == "PS"
    assert acquisition_plane(affine) == "axial"


def test_unknown_plane_is_refused():
    with pytest.raises(ValueError, match="unknown plane"):
        reformat(random_volume(), axial_affine(), "oblique")


def test_window_drag():
    center, width = adjust_window(40, 400, dx=10, dy=-5, sensitivity=2.0)
    assert (center, width) == (30.0, 420.0)
    _, narrow = adjust_window(40, 10, dx=-1000, dy=0, sensitivity=2.0)
    assert narrow == 2.0  # never zero or negative


def test_real_sagittal_mr_geometry():
    pytest.importorskip("pydicom")
    from medscan.io import load

    scan = load(SAMPLES / "mr_brain_t1_sag_siemens")
    assert acquisition_plane(scan.affine) == "sagittal"
    stack = reformat(scan.voxels, scan.affine, "sagittal")
    assert stack.voxels.shape == scan.voxels.shape
    assert edge_labels(stack.affine) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    coronal = reformat(scan.voxels, scan.affine, "coronal")
    assert coronal.shape == (256, 256, 10)
