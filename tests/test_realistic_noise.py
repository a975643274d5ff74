"""Noise as scanners make it: projection-domain low-dose CT, the noise estimate for correlated noise, the MR noise
model chosen from the data, and the guard's checks for a moved background or over-removal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medscan.degrade import estimate_noise_sd, estimate_sigma, looks_like_magnitude
from medscan.degrade.low_dose_ct import (
    LowDoseSetting,
    line_integrals,
    noise_from_sinogram,
    photons_for_noise,
    simulate_low_dose,
    soft_tissue_sd,
)
from medscan.io import load
from medscan.ops import run
from medscan.ops.fidelity import assess
from medscan.resources import shared_data_dir

pytestmark = pytest.mark.model

DATA = shared_data_dir()
CT = DATA / "train" / "ct01_upper_abdomen_siemens.nii.gz"
BRAIN = DATA / "paired" / "brain_tcga_fg_6692" / "t1.nii.gz"  # skull-stripped: zero outside the brain
MAGNITUDE_MR = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"  # a scanner's magnitude image


def _half(image: np.ndarray) -> np.ndarray:
    """2x2 block mean: a 256-px slice keeps the tests' projections quick (pixel size doubles)."""
    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def ct_slice(sample_ct) -> tuple[np.ndarray, float]:
    scan = sample_ct
    return _half(np.clip(scan.voxels[10], -1024, None)), 2 * float(scan.spacing[0])


@pytest.fixture(scope="module")
def sinogram(ct_slice) -> np.ndarray:
    image, pixel_mm = ct_slice
    return line_integrals(image, pixel_mm)


def _planes(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]


def test_low_dose_ct_reaches_the_exposure_controls_noise_target_without_moving_hu(ct_slice, sinogram) -> None:
    image, pixel_mm = ct_slice
    tissue = (image > -150) & (image < 150)
    for target in (25.0, 50.0):
        noisy, photons = simulate_low_dose(image, pixel_mm, target, "standard", np.random.default_rng(1),
                                           sinogram=sinogram)
        noise = noisy - image
        assert noisy.shape == image.shape and noisy.dtype == np.float32
        assert soft_tissue_sd(image, noise) == pytest.approx(target, rel=0.15)
        assert abs(float(noise[tissue].mean())) < 0.1 * target  # noise, not a change of HU
        assert photons > 0
    # Lower dose, more noise: the doses the exposure control chose follow 1/sd^2 roughly.
    low = photons_for_noise(image, sinogram, pixel_mm, 50.0, "standard", np.random.default_rng(2))[0]
    high = photons_for_noise(image, sinogram, pixel_mm, 25.0, "standard", np.random.default_rng(2))[0]
    assert 2.5 < high / low < 6


def test_the_soft_kernel_gives_correlated_noise_that_the_finest_scale_underestimates() -> None:
    scan = load(CT)
    image, pixel_mm = np.clip(scan.voxels[10], -1024, None), float(scan.spacing[0])
    sinogram = line_integrals(image, pixel_mm)
    rng = np.random.default_rng(3)
    setting = LowDoseSetting(photons=2e5, kernel="soft")
    soft = noise_from_sinogram(sinogram, image.shape, pixel_mm, setting, rng)
    sharp = noise_from_sinogram(sinogram, image.shape, pixel_mm, dataclasses.replace(setting, kernel="sharp"), rng)
    tissue = (image > -150) & (image < 150)
    true_sd = float(soft[tissue].std())  # about 40 HU, four times the scan's own noise
    noisy = _planes(image + soft)
    finest = float(estimate_sigma(noisy)[0])
    flat = float(estimate_noise_sd(noisy, correlated=True)[0])
    assert finest < 0.6 * true_sd  # what the old blind estimate told the network
    assert 0.8 * true_sd < flat < 1.6 * true_sd
    assert float(sharp[tissue].std()) > 1.3 * true_sd  # the ramp filter passes more noise than Hann
    with pytest.raises(ValueError, match="unknown CT kernel"):
        noise_from_sinogram(sinogram, image.shape, pixel_mm, dataclasses.replace(setting, kernel="B70f"), rng)


def test_white_noise_reads_the_same_with_either_estimate() -> None:
    image = load(CT).voxels[10]
    noisy = image + np.random.default_rng(4).normal(0, 30, image.shape)
    white = float(estimate_noise_sd(_planes(noisy))[0])
    correlated = float(estimate_noise_sd(_planes(noisy), correlated=True)[0])
    assert white == pytest.approx(31, rel=0.1)  # 30 HU added to a scan with ~10 HU of its own
    assert correlated == pytest.approx(white, rel=0.15)


def test_magnitude_data_are_told_apart_from_gaussian_noise_data() -> None:
    brain = load(BRAIN).voxels[70:73]
    sigma = 0.05 * float(np.percentile(brain, 99.5))
    rng = np.random.default_rng(5)
    assert not looks_like_magnitude(brain + rng.normal(0, sigma, brain.shape))  # negative values
    assert not looks_like_magnitude(brain)  # zero-filled background: no Rayleigh noise to read
    magnitude = load(MAGNITUDE_MR).voxels
    assert looks_like_magnitude(magnitude)  # the scanner's own background noise
    real, imaginary = brain + rng.normal(0, sigma, brain.shape), rng.normal(0, sigma, brain.shape)
    assert looks_like_magnitude(np.hypot(real, imaginary))
    assert not looks_like_magnitude(load(CT).voxels)


def _noisy_brain() -> tuple:
    scan = load(BRAIN)
    clean = scan.voxels[75]
    sigma = 0.05 * float(np.percentile(clean, 99.5))
    noisy = clean + np.random.default_rng(6).normal(0, sigma, clean.shape).astype(np.float32)
    return dataclasses.replace(scan, voxels=noisy[None], source_refs=[], provenance=[]), clean


def _psnr(reference: np.ndarray, image: np.ndarray) -> float:
    span = float(np.percentile(reference, 99.5) - np.percentile(reference, 0.5))
    return float(10 * np.log10(span**2 / np.mean((reference - image) ** 2)))


def test_auto_noise_model_never_makes_a_gaussian_noise_mr_worse_and_the_guard_flags_the_wrong_model() -> None:
    scan, clean = _noisy_brain()
    auto = run("denoise", scan, noise="auto")
    assert auto.scan.provenance[-1].parameters["noise"] == "gaussian"
    assert _psnr(clean, auto.scan.voxels[0]) > _psnr(clean, scan.voxels[0]) + 3
    assert not auto.fidelity.flagged, auto.fidelity.reasons
    assert auto.scan.provenance[-1].parameters["noise_sd"] > 0  # the estimate travels with the result
    wrong = run("denoise", scan, noise="rician")  # what the modality alone used to choose
    assert wrong.fidelity.flagged
    assert any("regional shift" in reason for reason in wrong.fidelity.reasons), wrong.fidelity.reasons


def test_the_guard_flags_removal_far_above_the_noise_the_input_carries() -> None:
    scan, _ = _noisy_brain()
    noisy = scan.voxels
    sigma = float(np.median(estimate_noise_sd(_planes(noisy[0]))))
    # Take away three times the noise there is, as white noise: no structure, no shift, only too much.
    overdone = noisy - np.random.default_rng(7).normal(0, 3 * sigma, noisy.shape).astype(np.float32)
    report, _ = assess(noisy, overdone)
    assert report.flagged
    assert any(reason.startswith("removed") for reason in report.reasons), report.reasons


def test_multi_coil_magnitude_noise_lifts_the_background_more_and_varies_in_space() -> None:
    from medscan.degrade import add_noncentral_chi, add_rician, coil_noise_map

    generator = torch.Generator().manual_seed(8)
    empty = torch.zeros(1, 1, 128, 128)
    one = add_rician(empty, 0.1, generator)
    four = add_noncentral_chi(empty, 0.1, 4, generator)
    assert float(one.mean()) == pytest.approx(0.1 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh
    assert float(four.mean()) > 2 * float(one.mean())  # chi with 8 degrees of freedom
    level = coil_noise_map(empty.shape, generator)
    assert float(level.mean()) == pytest.approx(1.0, abs=1e-4) and float(level.max() / level.min()) > 1.3
    varying = add_noncentral_chi(empty, 0.1 * level, 4, generator)[0, 0].numpy()
    quiet, loud = level[0, 0].numpy() < 0.9, level[0, 0].numpy() > 1.1
    assert varying[loud].mean() > varying[quiet].mean()
    brain = torch.from_numpy(load(BRAIN).voxels[75:76][None])
    multi_coil = add_noncentral_chi(brain, 0.05 * float(brain.max()), 4, generator)
    assert looks_like_magnitude(multi_coil[0].numpy())


def test_training_batches_mix_simulated_low_dose_ct_with_synthetic_noise(tmp_path, ct_slice, sinogram) -> None:
    from medscan.train.data import LowDoseCtBank, MixedBank, SliceBank
    from medscan.train.tasks import DenoiseTask

    image, pixel_mm = ct_slice
    _, noise = photons_for_noise(image, sinogram, pixel_mm, 30.0, "soft", np.random.default_rng(9))
    np.savez(tmp_path / "slice.npz", clean=image, noise=noise[None].astype(np.float16))
    low_dose = LowDoseCtBank.from_folder(tmp_path)
    slices = SliceBank(slices=[np.clip((image + 1024) / 2000, 0, 1)], sources=["ct"])
    bank = MixedBank(slices, low_dose, share=0.5)
    batch = bank.sample(16, 64, np.random.default_rng(10), flat_skip=0.0)
    realistic = ~torch.isnan(batch[:, 1, 0, 0])
    assert batch.shape == (16, 2, 64, 64) and 0 < int(realistic.sum()) < 16
    (noisy, sigma, rician), clean = DenoiseTask(loss="mse").make_batch(batch, torch.Generator().manual_seed(11))
    added = (noisy - clean)[realistic]
    ratio = added / torch.nan_to_num(batch[realistic, 1:])
    assert float(ratio.std(dim=(1, 2, 3)).max()) < 1e-3  # the simulated noise itself, scaled
    assert not bool(rician[realistic].any()) and bool((sigma > 0).all())
    with pytest.raises(FileNotFoundError, match="no simulated low-dose CT"):
        LowDoseCtBank.from_folder(tmp_path / "empty")
