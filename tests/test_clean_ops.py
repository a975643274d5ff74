"""Clean operations on the sample study, through the registry the CLI and GUI share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medscan.io import load
from medscan.ops import get, operations, run
from medscan.ops.fidelity import BLOB_LIMIT_PX, Z_LIMIT, assess, structure_map
from medscan.scan import MedscanError

pytestmark = pytest.mark.model

SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"


@pytest.fixture(scope="module")
def ct(sample_ct):
    return sample_ct


def test_registry_declares_parameters_for_cli_and_gui() -> None:
    names = {op.name for op in operations("clean")}
    assert {"denoise", "highlight"} <= names
    strength = next(p for p in get("denoise").params if p.name == "strength")
    assert strength.check("0.5") == 0.5
    with pytest.raises(MedscanError, match="outside"):
        strength.check(9)
    with pytest.raises(MedscanError, match="no such operation"):
        get("levitate")


def test_denoise_lowers_the_error_of_a_noisy_ct_and_keeps_geometry(ct) -> None:
    rng = np.random.default_rng(0)
    clean = ct.voxels[8:12]
    noise = rng.normal(0, 40, ct.voxels.shape).astype(np.float32)
    noisy_scan = ct.derive(ct.voxels + noise, _entry("add_noise"))
    result = run("denoise", noisy_scan)
    out = result.scan
    assert out.voxels.shape == ct.voxels.shape and np.allclose(out.affine, ct.affine) and out.units == "HU"
    entry = out.provenance[-1]
    assert entry.operation == "denoise" and entry.model == "denoise_unet2d"
    body = clean > -500
    noisy_error = np.abs(noisy_scan.voxels[8:12] - clean)[body].mean()
    denoised_error = np.abs(out.voxels[8:12] - clean)[body].mean()
    assert denoised_error < 0.8 * noisy_error
    assert result.maps["method_noise"].shape == ct.voxels.shape and result.fidelity is not None


def test_magnitude_noise_floor_is_removed_only_for_rician_data() -> None:
    """MR magnitude noise lifts empty background to sigma*sqrt(pi/2); told the data is Rician, the denoiser
    puts it back near zero, and inside the brain it changes the mean by a small fraction of sigma."""
    import torch

    from medscan.degrade import add_rician
    from medscan.ops.inference import cached_model, denoise_planes
    from medscan.train.data import DATA_ROOT

    volume = load(DATA_ROOT / "paired/brain_tcga_fg_6692/t1.nii.gz").voxels  # a held-out subject
    clean = np.asarray(volume[volume.shape[0] // 2], np.float32)
    sigma = 0.05 * float(np.percentile(clean, 99.5))
    noisy = add_rician(torch.from_numpy(clean)[None, None], sigma, torch.Generator().manual_seed(0))[0, 0].numpy()
    model, _ = cached_model("denoise_unet2d", torch.device("cpu"))
    rician = denoise_planes(noisy[None], model, torch.device("cpu"), rician=True)[0]
    gaussian = denoise_planes(noisy[None], model, torch.device("cpu"), rician=False)[0]
    from scipy import ndimage

    background = ndimage.binary_erosion(clean == 0, iterations=3)
    brain = ndimage.binary_erosion(clean > 0.3 * clean.max(), iterations=3)
    assert noisy[background].mean() > 1.1 * sigma  # the floor is there
    assert abs(rician[background].mean()) < 0.3 * sigma
    assert gaussian[background].mean() > 0.8 * sigma  # not removed when the data is not magnitude
    assert abs(rician[brain].mean() - clean[brain].mean()) < 0.1 * sigma
    # the guard knows the floor: its removal is no structure, a structure pasted into the brain still is
    passed, _ = assess(noisy[None], rician[None], rician=True)
    assert not passed.flagged, passed.reasons
    assert assess(noisy[None], rician[None])[0].flagged  # seen as Gaussian data, the floor's removal is coherent
    depth = ndimage.distance_transform_edt(brain)
    cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    yy, xx = np.mgrid[: clean.shape[0], : clean.shape[1]]
    faked = rician + 0.5 * float(np.percentile(clean, 99.5)) * ((yy - cy) ** 2 + (xx - cx) ** 2 <= 6**2)
    assert assess(noisy[None], faked[None], rician=True)[0].flagged


def _held_out_slice_at_10_percent(item: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The middle slice of a held-out item, it with Gaussian noise of 10 % of its window (seeded), and the window."""
    import torch

    from medscan.degrade import add_gaussian
    from medscan.nets.normalize import intensity_window
    from medscan.train.data import DATA_ROOT

    volume = load(DATA_ROOT / item).voxels
    clean = np.asarray(volume[volume.shape[0] // 2], np.float32)
    lo, hi = intensity_window(clean)
    noisy = add_gaussian(torch.from_numpy(clean)[None, None], 0.1 * (hi - lo),
                         torch.Generator().manual_seed(0))[0, 0].numpy()
    return clean, noisy, (lo, hi)


def test_denoise_normalises_by_the_clean_window_not_the_noisy_one() -> None:
    """Noise widens a slice's percentile window and lifts the air off its floor; the denoiser's estimate of the
    clean window (percentiles of block means) recovers it, and the result on a held-out CT at 10 % noise is
    closer to the truth than denoising in the noisy slice's own window."""
    import torch

    from medscan.nets.normalize import intensity_window
    from medscan.ops.inference import _denoise_chunk, cached_model, clean_windows, denoise_planes
    from medscan.train.metrics import psnr

    clean, noisy, (lo, hi) = _held_out_slice_at_10_percent("train-extra/ct04_chest_philips_5mm_kernelB.nii.gz")
    device = torch.device("cpu")
    model, _ = cached_model("denoise_unet2d", device)
    (est_lo, est_hi), = clean_windows(noisy[None])
    noisy_lo, noisy_hi = intensity_window(noisy)
    # the floor (air) is what matters: there the noisy window is 2 sigma off; the top, set by small bright bone
    # that block means soften, is still within a tenth of the window
    assert abs(est_lo - lo) < 0.1 * abs(noisy_lo - lo) and abs(est_hi - hi) < 0.1 * (hi - lo)
    ours = denoise_planes(noisy[None], model, device)[0]
    in_noisy_window = _denoise_chunk(noisy[None], [(noisy_lo, noisy_hi)], model, device, 1.0, False)[0]
    scale = hi - lo
    assert psnr(clean / scale, ours / scale) > psnr(clean / scale, in_noisy_window / scale) + 0.1


def test_denoise_takes_the_slow_part_of_noise_but_never_a_regional_shift() -> None:
    """White noise has slow fluctuations too; left in, they mottle flat air and background. The denoiser may
    remove them up to the size noise itself gives them, and nothing that leans one way over a region."""
    import torch

    from medscan.degrade import gaussian_blur
    from medscan.ops.inference import BIAS_SMOOTHING_PX, SLOW_LIMIT, SLOW_NOISE_SD, constrain_residual

    sigma = 0.1
    noise = sigma * torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    x = 0.5 + noise
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    bump = 3 * sigma * torch.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / (2 * 12.0 ** 2))  # a structure, not noise
    leaning = 0.3 * sigma  # a network that would shift the whole region

    def kept(residual: torch.Tensor, image: torch.Tensor = x) -> torch.Tensor:
        return constrain_residual(image, residual, torch.tensor([sigma]))

    def slow_sd(t: torch.Tensor) -> float:
        return float(gaussian_blur(t, BIAS_SMOOTHING_PX)[..., 32:-32, 32:-32].std())

    assert slow_sd(noise - kept(noise)) < 0.5 * slow_sd(noise)  # the noise's slow part mostly goes
    assert abs(float(kept(noise + leaning)[..., 32:-32, 32:-32].mean())) < 0.02 * sigma  # a shift does not
    taken = kept(noise + bump, x + bump) - kept(noise)
    centre = (..., slice(118, 138), slice(118, 138))
    assert float(taken[centre].mean()) < 0.1 * float(bump[centre].mean())  # nor a structure
    assert float(taken.abs().max()) < 0.1 * 3 * sigma + SLOW_LIMIT * SLOW_NOISE_SD * sigma


def test_removing_the_slow_noise_clears_the_background_of_a_held_out_mr(monkeypatch) -> None:
    import torch

    import medscan.ops.inference as inference
    from medscan.train.metrics import body_mask, psnr, ssim

    clean, noisy, (lo, hi) = _held_out_slice_at_10_percent("paired/brain_tcga_fg_6692/t2.nii.gz")
    model, _ = inference.cached_model("denoise_unet2d", torch.device("cpu"))
    ours = inference.denoise_planes(noisy[None], model, torch.device("cpu"))[0]
    monkeypatch.setattr(inference, "SLOW_LIMIT", 0.0)  # the earlier rule: no slow change at all
    strict = inference.denoise_planes(noisy[None], model, torch.device("cpu"))[0]
    unit = [(image - lo) / (hi - lo) for image in (clean, ours, strict)]
    body = body_mask(unit[0])
    assert psnr(unit[0], unit[1]) > psnr(unit[0], unit[2]) + 0.1
    assert ssim(unit[0], unit[1]) > ssim(unit[0], unit[2]) + 0.02
    assert psnr(unit[0], unit[1], body) > psnr(unit[0], unit[2], body) - 0.02


def _entry(name: str):
    from medscan.scan import ProvenanceEntry

    return ProvenanceEntry(name)


def test_fidelity_map_lights_up_a_pasted_structure(ct) -> None:
    rng = np.random.default_rng(1)
    clean = ct.voxels[10:11].astype(np.float64)
    noisy = clean + rng.normal(0, 30, clean.shape)
    honest, _ = assess(noisy, clean, units="HU")
    pasted = clean.copy()
    yy, xx = np.mgrid[:512, :512]
    pasted[0][(yy - 300) ** 2 + (xx - 200) ** 2 < 8**2] += 300  # an invented bright nodule
    faked, method_noise = assess(noisy, pasted, units="HU")
    zmap = structure_map(method_noise)
    assert zmap[0, 300, 200] > Z_LIMIT
    assert faked.flagged and faked.largest_structure_px > 100
    assert not honest.flagged and abs(honest.mean_shift) < 1.0  # removing pure noise moves no mean HU


def test_denoising_the_low_noise_sample_study_passes_the_guard(ct) -> None:
    """The README demo: the couch's thin edges soften a little outside the patient; inside it nothing
    coherent is removed, so the guard passes the result, and it would still flag a structure pasted there."""
    result = run("denoise", ct)
    assert result.fidelity is not None and not result.fidelity.flagged, result.fidelity.reasons
    after = result.scan.voxels[10:11].astype(np.float64)
    yy, xx = np.mgrid[:512, :512]
    after[0][(yy - 300) ** 2 + (xx - 200) ** 2 < 6**2] += 100  # a faint invented nodule in the liver
    faked, _ = assess(ct.voxels[10:11], after, units="HU")
    assert faked.flagged and faked.largest_structure_px > BLOB_LIMIT_PX


def test_highlight_changes_only_the_displayed_window(ct) -> None:
    result = run("highlight", ct, strength=3.0, center=40, width=400)
    outside = (ct.voxels < -160) | (ct.voxels > 240)
    assert np.array_equal(result.scan.voxels[outside], ct.voxels[outside])
    assert np.abs(result.maps["change"]).max() > 0
    assert result.scan.provenance[-1].parameters["quantitative"] is False


def test_cli_denoise_writes_a_marked_derived_series(tmp_path) -> None:
    out = tmp_path / "denoised"
    result = subprocess.run([sys.executable, "-m", "medscan.cli", "clean", "denoise", str(SAMPLE_CT), "-o", str(out),
                             "--strength", "0.8"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    files = sorted(out.iterdir())
    assert len(files) == 20
    ds = pydicom.dcmread(files[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "denoise model=denoise_unet2d" in ds.DerivationDescription and "strength=0.8" in ds.DerivationDescription
    again = load(out)
    assert again.voxels.shape == (20, 512, 512) and again.units == "HU"
