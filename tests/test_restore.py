"""Sharpen and super-resolve: degradations, geometry of the refined grid, training, operations and CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F

from medscan.degrade import downsample, downsample_rows, downsample_slices, gaussian_blur
from medscan.io import load
from medscan.nets.builders import build_network
from medscan.ops import get, run
from medscan.ops.restore import upsampled_affine
from medscan.scan import MedscanError, ProvenanceEntry
from medscan.train.data import SliceBank
from medscan.train.tasks import SharpenTask, SuperResolveTask
from medscan.train.trainer import TrainConfig, train

pytestmark = pytest.mark.model

SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"


@pytest.fixture(scope="module")
def ct(sample_ct):
    return sample_ct


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


# -- degradations ------------------------------------------------------------------------------

def test_thick_slices_are_box_averages_that_keep_the_mean(ct) -> None:
    volume = torch.from_numpy(ct.voxels[:20].copy())
    thick = downsample_slices(volume, 2)
    assert thick.shape == (10, 512, 512)
    assert torch.allclose(thick[3], (volume[6] + volume[7]) / 2)
    assert abs(float(thick.mean()) - float(volume.mean())) < 1e-3
    plane = volume[:, 200, :][None, None]  # a coronal reformat: rows run along the slice axis
    rows = downsample_rows(plane, 2)
    assert rows.shape == (1, 1, 10, 512)
    assert torch.allclose(rows[0, 0], thick[:, 200, :], atol=1e-4)
    assert torch.allclose(downsample(plane[..., :512], 2).mean(), plane.mean(), atol=1e-3)


def test_blur_psf_is_normalised_and_has_the_asked_width() -> None:
    impulse = torch.zeros(1, 1, 41, 41)
    impulse[0, 0, 20, 20] = 1
    psf = gaussian_blur(impulse, 2.0)[0, 0]
    assert abs(float(psf.sum()) - 1) < 1e-5
    ys = torch.arange(41, dtype=torch.float32) - 20
    variance = float((psf.sum(dim=1) * ys**2).sum())
    assert abs(variance - 4.0) < 0.05


# -- geometry ----------------------------------------------------------------------------------

def _fov_corners(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """Patient positions of the outer faces of the first and last voxel (index -0.5 and n-0.5)."""
    k, j, i = shape
    ijk = np.array([[-0.5, -0.5, -0.5], [i - 0.5, j - 0.5, k - 0.5]])
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@pytest.mark.parametrize("factors", [(2, 2, 1), (4, 4, 1), (1, 1, 2)])
def test_refined_grid_covers_the_same_field_of_view(ct, factors) -> None:
    new = upsampled_affine(ct.affine, factors)
    k, j, i = ct.volume_shape
    shape = (k * factors[2], j * factors[1], i * factors[0])
    assert np.allclose(_fov_corners(shape, new), _fov_corners(ct.volume_shape, ct.affine))
    assert np.allclose(np.linalg.norm(new[:3, :3], axis=0), np.asarray(ct.spacing) / np.asarray(factors))
    # The mean of each block of new voxel centres is the old voxel centre.
    centres = np.array([[(f - 1) / 2 for f in factors]]) @ new[:3, :3].T + new[:3, 3]
    assert np.allclose(centres, ct.affine[:3, 3])


# -- network and training ----------------------------------------------------------------------

def test_untrained_upsampler_is_exactly_the_classical_method() -> None:
    x = torch.rand(2, 1, 12, 16)
    x2 = build_network({"kind": "residual_upsampler", "args": {"scale": [2, 2], "base": "bicubic"}})
    assert torch.allclose(x2(x), F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False), atol=1e-6)
    z2 = build_network({"kind": "residual_upsampler", "args": {"scale": [2, 1], "base": "linear"}})
    assert z2(x).shape == (2, 1, 24, 16)
    sharp = build_network({"kind": "residual_upsampler",
                           "args": {"scale": [1, 1], "base": "identity", "unshuffle": 2, "conditioned": True}})
    assert torch.equal(sharp(x, torch.tensor([1.0, 0.0])), x) and torch.equal(sharp(x), x)


@pytest.mark.parametrize("task, task_args, net", [
    ("super_resolve", {"scale": 2, "axis": "through-plane"}, {"scale": [2, 1], "base": "linear"}),
    ("sharpen", {"sigma_range": (1.5, 2.0)}, {"scale": [1, 1], "base": "identity", "unshuffle": 2,
                                              "conditioned": True}),
])
def test_a_tiny_training_run_lowers_the_loss(tmp_path, task, task_args, net) -> None:
    bank = SliceBank.from_items(["train/ct02_abdomen_pelvis_3mm.nii.gz"])
    network = {"kind": "residual_upsampler", "args": {**net, "features": 16, "blocks": 2}}
    config = TrainConfig(name="tiny", task=task, network=network, train_items=[], heldout_items=[], steps=60,
                         batch=8, patch=48, lr=3e-3, checkpoint_every=60, task_args=task_args)
    task_obj = {"super_resolve": SuperResolveTask, "sharpen": SharpenTask}[task](**task_args)
    clean = bank.sample(32, 48, np.random.default_rng(7))
    inputs, target = task_obj.make_batch(clean, torch.Generator().manual_seed(7))

    def held_loss(model) -> float:
        with torch.no_grad():
            return float(task_obj.loss(task_obj.predict(model, inputs), target))

    before = held_loss(build_network(network))  # zero-initialised: the classical method
    result = train(config, tmp_path, bank=bank, progress=False)
    assert held_loss(result["model"]) < 0.97 * before
    assert (tmp_path / "log.csv").exists() and (tmp_path / "checkpoint.pt").exists()


# -- operations on the sample study -----------------------------------------------------------

def test_sharpen_undoes_blur_in_hu_and_keeps_geometry(ct) -> None:
    clean = ct.voxels[8:12]
    blurred = gaussian_blur(torch.from_numpy(clean.copy())[:, None], 1.5)[:, 0].numpy()
    scan = ct.derive(np.concatenate([ct.voxels[:8], blurred, ct.voxels[12:]]), ProvenanceEntry("blur"))
    result = run("sharpen", scan, psf_sigma=1.5)
    out = result.scan
    assert out.voxels.shape == ct.voxels.shape and np.allclose(out.affine, ct.affine) and out.units == "HU"
    assert not out.synthetic and out.provenance[-1].operation == "sharpen"
    body = clean > -500
    assert _rmse(out.voxels[8:12][body], clean[body]) < 0.85 * _rmse(blurred[body], clean[body])
    assert result.fidelity is not None and result.maps["method_noise"].shape == ct.voxels.shape
    blind = run("sharpen", scan).scan.voxels  # PSF not given
    assert _rmse(blind[8:12][body], clean[body]) < 0.95 * _rmse(blurred[body], clean[body])
    assert out.provenance[-1].parameters["psf_sigma_px"] == 1.5
    gentle = run("sharpen", scan, strength=0.0).scan.voxels
    assert np.allclose(gentle, scan.voxels)


def test_super_resolve_in_plane_beats_bicubic_and_is_synthetic(ct) -> None:
    import cv2

    shifted = ct.affine.copy()
    shifted[:3, 3] += 9 * shifted[:3, 2]  # slices 9 and 10
    subset = ct.derive(ct.voxels[9:11], ProvenanceEntry("subset"), affine=shifted)
    low = np.stack([v.reshape(256, 2, 256, 2).mean(axis=(1, 3)) for v in subset.voxels])
    coarse = subset.derive(low, ProvenanceEntry("coarse"), affine=upsampled_affine(subset.affine, (0.5, 0.5, 1)))
    result = run("super_resolve", coarse, scale="2")
    out = result.scan
    assert out.voxels.shape == (2, 512, 512) and out.synthetic and result.synthetic and out.units == "HU"
    assert np.allclose(out.affine, subset.affine)  # refining the coarse grid lands on the original grid
    assert out.provenance[-1].operation == "super_resolve" and out.provenance[-1].model == "superres_x2"
    bicubic = np.stack([cv2.resize(v, (512, 512), interpolation=cv2.INTER_CUBIC) for v in low])
    body = subset.voxels > -500
    assert _rmse(out.voxels[body], subset.voxels[body]) < 0.9 * _rmse(bicubic[body], subset.voxels[body])
    assert get("super_resolve").synthetic


def test_super_resolve_through_plane_restores_thin_slices(ct) -> None:
    thick = ct.voxels.reshape(10, 2, 512, 512).mean(axis=1)
    coarse = ct.derive(thick, ProvenanceEntry("thick"), affine=upsampled_affine(ct.affine, (1, 1, 0.5)))
    out = run("super_resolve", coarse, scale="2", axis="through-plane").scan
    assert out.voxels.shape == ct.voxels.shape and np.allclose(out.affine, ct.affine) and out.synthetic
    linear = np.repeat(thick, 2, axis=0)  # nearest neighbour along k: the thick slices as a reader sees them
    body = ct.voxels > -500
    assert _rmse(out.voxels[body], ct.voxels[body]) < _rmse(linear[body], ct.voxels[body])
    assert abs(float(out.voxels.mean()) - float(ct.voxels.mean())) < 5.0  # HU level kept


def test_bad_requests_are_one_line_errors(ct) -> None:
    with pytest.raises(MedscanError, match="x2 only"):
        run("super_resolve", ct, scale="4", axis="through-plane")
    with pytest.raises(MedscanError, match="not one of"):
        run("super_resolve", ct, scale="3")
    other = ct.derive(ct.voxels, ProvenanceEntry("x"))
    other.modality = "US"
    with pytest.raises(MedscanError, match="sharpen works on CT and MR, not US"):
        run("sharpen", other)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medscan.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_super_resolve_writes_a_synthetic_dicom_series(tmp_path) -> None:
    done = _cli("generate", "super-resolve", str(SAMPLE_CT), "-o", str(tmp_path / "sr"), "--scale", "2",
                "--axis", "through-plane")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "sr_synthetic"  # a generated series is named so, with its uncertainty series beside it
    files = sorted(folder.glob("SYNTHETIC_IM_*.dcm"))
    assert len(files) == 40 and len(list(folder.glob("SYNTHETIC_UNCERTAINTY_*.dcm"))) == 40
    ds = pydicom.dcmread(files[0])
    assert "SYNTHETIC" in list(ds.ImageType) and "super_resolve" in ds.DerivationDescription
    again, original = load(folder, series=str(ds.SeriesInstanceUID)), load(SAMPLE_CT)
    assert again.voxels.shape == (40, 512, 512) and again.units == "HU"
    assert np.isclose(again.spacing[2], original.spacing[2] / 2, atol=1e-3)


def test_cli_sharpen_round_trips_through_nifti(tmp_path) -> None:
    nifti = tmp_path / "sharp.nii.gz"
    done = _cli("clean", "sharpen", str(SAMPLE_CT), "-o", str(nifti), "--strength", "0.5")
    assert done.returncode == 0, done.stderr
    again, original = load(nifti), load(SAMPLE_CT)
    assert again.voxels.shape == original.voxels.shape
    assert np.allclose(again.affine, original.affine, atol=1e-3)


def test_cli_rejects_an_unknown_scale(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "medscan.cli", "generate", "super-resolve", str(SAMPLE_CT),
                           "-o", str(tmp_path / "x.nii.gz"), "--scale", "3"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "3" in done.stderr


def test_sharpen_guard_passes_a_consistent_restoration_and_flags_a_pasted_one(ct) -> None:
    from medscan.ops.fidelity import assess
    from medscan.ops.restore import reblur

    clean = ct.voxels[9:11]
    rng = np.random.default_rng(3)
    blurred = gaussian_blur(torch.from_numpy(clean.copy())[:, None], 1.5)[:, 0].numpy()
    noisy = (blurred + rng.normal(0, 10, clean.shape)).astype(np.float32)
    shifted = ct.affine.copy()
    shifted[:3, 3] += 9 * shifted[:3, 2]
    scan = ct.derive(noisy, ProvenanceEntry("blur"), affine=shifted)  # every slice blurred by the stated PSF
    result = run("sharpen", scan, psf_sigma=1.5)
    assert not result.fidelity.flagged, result.fidelity.reasons
    restored = result.scan.voxels.copy()
    yy, xx = np.mgrid[:512, :512]
    restored[0][(yy - 300) ** 2 + (xx - 200) ** 2 < 8**2] += 300  # an invented bright nodule
    faked, _ = assess(noisy, reblur(restored, 1.5), units="HU")
    assert faked.flagged
