"""Every Generate operation, through the CLI, leaves output that says SYNTHETIC wherever someone could look.

Walks the registry: an operation added without a case here fails the first test, so none escapes the check.
Inputs are small crops of a real held-out MR series so the whole walk stays quick on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medscan.cli import main
from medscan.io import load
from medscan.io.nifti import write_nifti
from medscan.ops import operations
from medscan.resources import shared_data_dir

pytestmark = pytest.mark.model

DATA = shared_data_dir()
MR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"

# Extra CLI arguments each Generate operation needs on the 5-slice crop (slice, row, column indices).
CASES: dict[str, list[list[str]]] = {
    "inpaint": [["--box", "1,40,40,3,80,90"]],
    "fill_slices": [["--slices", "2"]],
    "motion_correct": [[]],
    "super_resolve": [["--scale", "2"], ["--scale", "4", "--gan"]],
    "translate": [["--to", "T2", "--from", "T1"]],
}
# Operations that refuse the MR crop (translate needs a skull-stripped axial brain): the fixture they get instead.
INPUTS: dict[str, str] = {"translate": "brain_stack"}
PARTIAL = {"inpaint", "fill_slices"}  # only part of the output is generated: a SEG records which part


@pytest.fixture(scope="module")
def mr_crop(tmp_path_factory) -> Path:
    if not MR.is_dir():
        pytest.skip("shared MR series not present")
    scan = load(MR)
    k = scan.voxels.shape[0] // 2
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world([[64, 64, k - 2]])[0]
    scan.voxels = np.ascontiguousarray(scan.voxels[k - 2:k + 3, 64:192, 64:192])
    scan.affine = affine
    path = tmp_path_factory.mktemp("mr") / "mr_crop.nii.gz"
    write_nifti(scan, path)
    return path


@pytest.fixture(scope="module")
def brain_stack(tmp_path_factory) -> Path:
    """10 axial slices of the held-out skull-stripped paired T1 (paired/brain_tcga_fg_6692)."""
    source = DATA / "paired" / "brain_tcga_fg_6692" / "t1.nii.gz"
    if not source.exists():
        pytest.skip("shared paired data not present")
    scan = load(source)
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world([[0, 0, 70]])[0]
    scan.voxels = np.ascontiguousarray(scan.voxels[70:80])
    scan.affine = affine
    path = tmp_path_factory.mktemp("brain") / "t1_stack.nii.gz"
    write_nifti(scan, path)
    return path


def test_every_generate_operation_has_a_marking_case():
    assert {op.name for op in operations("generate")} <= set(CASES)


def _cases():
    return [(name, extra) for name, runs in CASES.items() for extra in runs]


@pytest.mark.parametrize(("name", "extra"), _cases(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_generate_output_through_the_cli_is_marked_synthetic_everywhere(name, extra, mr_crop, tmp_path, capsys,
                                                                        request):
    if name not in {op.name for op in operations("generate")}:
        pytest.skip(f"{name} is not installed")
    source = request.getfixturevalue(INPUTS[name]) if name in INPUTS else mr_crop
    out = tmp_path / "result"
    assert main(["generate", name.replace("_", "-"), str(source), "-o", str(out), "--modality", "MR",
                 *extra]) == 0
    folder = tmp_path / "result_synthetic"
    assert not out.exists() and folder.is_dir()
    assert str(folder) in capsys.readouterr().out
    names = sorted(p.name for p in folder.iterdir())
    assert names and all("SYNTHETIC" in n for n in names)
    images = [pydicom.dcmread(folder / n) for n in names if n.startswith("SYNTHETIC_IM_")]
    spreads = [pydicom.dcmread(folder / n) for n in names if n.startswith("SYNTHETIC_UNCERTAINTY_")]
    assert images and len(spreads) == len(images)
    for ds in images:
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "SYNTHETIC" in ds.ImageType
        assert ds.SeriesDescription.startswith("SYNTHETIC")
        assert ds.DerivationDescription.startswith("SYNTHETIC")
        assert "SYNTHETIC" in ds.ImageComments
    for ds in spreads:
        assert "UNCERTAINTY" in ds.SeriesDescription and "SYNTHETIC" in ds.ImageType
        assert ds.pixel_array.astype(float).min() * float(getattr(ds, "RescaleSlope", 1)) + float(
            getattr(ds, "RescaleIntercept", 0)) >= -1e-3
    seg = folder / "SYNTHETIC_SEG_generated_region.dcm"
    assert seg.exists() == (name in PARTIAL)
    if seg.exists():
        ds = pydicom.dcmread(seg)
        assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "Generated region"
        assert ds.pixel_array.any()
    # Reopened, the series is still synthetic (the mark lives in the files, not in medscan's memory).
    assert load(folder, series=str(images[0].SeriesInstanceUID)).synthetic


def test_a_generated_nifti_carries_its_companions_and_its_mark(mr_crop, tmp_path, capsys):
    out = tmp_path / "filled.nii.gz"
    assert main(["generate", "inpaint", str(mr_crop), "-o", str(out), "--modality", "MR",
                 "--box", "1,40,40,3,80,90"]) == 0
    image = tmp_path / "filled_synthetic.nii.gz"
    uncertainty = tmp_path / "filled_synthetic_uncertainty.nii.gz"
    generated = tmp_path / "filled_synthetic_generated.nii.gz"
    assert image.exists() and uncertainty.exists() and generated.exists() and not out.exists()
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in (image, uncertainty, generated))
    result, spread, region = load(image), load(uncertainty), load(generated)
    assert result.synthetic and spread.synthetic
    assert region.voxels[1:3, 40:80, 40:90].all() and region.voxels.sum() == 2 * 40 * 50
    # More uncertain where pixels were made up than where they were measured (copied through).
    inside = spread.voxels[region.voxels > 0]
    assert inside.mean() > 0 and np.all(spread.voxels[region.voxels == 0] == 0)


def test_a_kept_generated_result_keeps_its_maps_and_exports_them_beside_it(mr_crop, tmp_path):
    from medscan.db.results import keep_result, register_source
    from medscan.db.store import Database
    from medscan.ops import run

    database = Database.create(tmp_path / "study.db", "correct horse battery", scrypt_n=2**12)
    try:
        database.add_user("rad", "radiologist", "rad-pass")
        database.login("rad", "rad-pass")
        scan = load(mr_crop)
        result = run("inpaint", scan, box="1,40,40,3,80,90")
        series_id = register_source(database, None, mr_crop, "MR")
        result_id = keep_result(database, series_id, result, operation="inpaint", parameters={"box": "1,40,40,3,80,90"})
        overlays = database.load_overlays(result_id)
        assert set(overlays) == {"uncertainty", "generated"}
        assert overlays["generated"].sum() == 2 * 40 * 50
        np.testing.assert_array_equal(overlays["uncertainty"], result.maps["uncertainty"])
        written = database.export_result(result_id, tmp_path / "exported.nii.gz")
        assert written.name == "exported_synthetic.nii.gz"
        assert (tmp_path / "exported_synthetic_uncertainty.nii.gz").exists()
        assert (tmp_path / "exported_synthetic_generated.nii.gz").exists()
        assert load(written).synthetic
    finally:
        database.close()
