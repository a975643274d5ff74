"""The evaluation's metric helpers on tiny synthetic cases: if these are wrong, every table is wrong."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ev(load_script) -> ModuleType:
    return load_script("evaluate_denoise")


def phantom(size: int = 64) -> np.ndarray:
    """A body-like slice on 0..1: dark background, a bright ellipse with a dark hole and a smaller bright insert."""
    yy, xx = np.mgrid[:size, :size] / size
    image = np.zeros((size, size), np.float32)
    image[((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.35) ** 2 <= 1] = 0.6
    image[(yy - 0.45) ** 2 + (xx - 0.4) ** 2 <= 0.01] = 0.1  # "lung" hole inside the body
    image[(yy - 0.6) ** 2 + (xx - 0.62) ** 2 <= 0.005] = 1.0
    return image


def test_psnr_identical_is_infinite_and_summary_skips_it(ev: ModuleType) -> None:
    image = phantom()
    assert ev.psnr(image, image) == math.inf
    stats = ev.summarize([math.inf, 30.0, 32.0])
    assert stats["n"] == 3 and stats["n_infinite"] == 1
    assert stats["mean"] == pytest.approx(31.0)
    assert stats["sd"] == pytest.approx(math.sqrt(2.0))


def test_psnr_known_value_and_mask(ev: ModuleType) -> None:
    image = phantom()
    shifted = image + 0.1  # MSE 0.01 over data range 1 -> exactly 20 dB
    assert ev.psnr(image, shifted) == pytest.approx(20.0)
    mask = np.zeros_like(image, bool)
    mask[:8] = True
    worse = image.copy()
    worse[mask] += 0.01  # error only inside the mask: 40 dB there, higher over the whole image
    assert ev.psnr(image, worse, mask) == pytest.approx(40.0)
    assert ev.psnr(image, worse) > 40.0
    with pytest.raises(ValueError):
        ev.psnr(image, worse, np.zeros_like(mask))


def test_ssim_identical_is_one_and_noise_lowers_it(ev: ModuleType) -> None:
    image = phantom()
    mask = ev.body_mask(image)
    assert ev.ssim(image, image) == pytest.approx(1.0)
    assert ev.ssim(image, image, mask) == pytest.approx(1.0)
    noisy = image + 0.1 * np.random.default_rng(0).standard_normal(image.shape)
    assert ev.ssim(image, noisy) < 0.9
    assert ev.ssim(image, noisy, mask) < 0.9


def test_body_mask_fills_holes_and_drops_small_blobs(ev: ModuleType) -> None:
    image = phantom()
    image[2:5, 2:5] = 0.9  # a small bright blob in the air (a marker): not the body
    mask = ev.body_mask(image)
    assert not mask[3, 3]
    assert mask[int(0.45 * 64), int(0.4 * 64)]  # the dark hole is inside the body
    assert mask[32, 32] and not mask[0, 32]
    ellipse_area = math.pi * 0.4 * 0.35 * 64 * 64
    assert abs(mask.sum() - ellipse_area) < 0.1 * ellipse_area


def test_noise_is_seeded_and_at_the_asked_level(ev: ModuleType) -> None:
    clean = np.full((128, 128), 0.5, np.float32)
    a = ev.add_noise(clean, "gaussian", 0.05, ev.slice_seed("item", 3, "gaussian_5"))
    b = ev.add_noise(clean, "gaussian", 0.05, ev.slice_seed("item", 3, "gaussian_5"))
    c = ev.add_noise(clean, "gaussian", 0.05, ev.slice_seed("item", 4, "gaussian_5"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert float((a - clean).std()) == pytest.approx(0.05, rel=0.05)
    rician_zero = ev.add_noise(np.zeros_like(clean), "rician", 0.05, 1)
    assert float(rician_zero.min()) >= 0.0  # magnitude images are never negative
    assert float(rician_zero.mean()) == pytest.approx(0.05 * math.sqrt(math.pi / 2), rel=0.05)  # Rayleigh floor


def test_bm3d_beats_the_noisy_input(ev: ModuleType) -> None:
    from scipy import ndimage

    clean = ndimage.gaussian_filter(phantom(64), 1.0)  # band-limited like a reconstructed slice
    noisy = ev.add_noise(clean, "gaussian", 0.1, 7)
    mask = ev.body_mask(clean)
    denoised = ev.run_bm3d(noisy, 0.1)
    assert ev.psnr(clean, denoised) > ev.psnr(clean, noisy) + 3.0
    assert ev.psnr(clean, denoised, mask) > ev.psnr(clean, noisy, mask)
    assert ev.ssim(clean, denoised) > ev.ssim(clean, noisy)


def test_paste_disc_lands_inside_tissue(ev: ModuleType) -> None:
    image = phantom(96)
    mask = ev.body_mask(image)
    faked, (cy, cx) = ev.paste_disc(image, mask, 6, 5.0)
    changed = faked == 5.0
    assert mask[cy, cx]
    assert changed.sum() == pytest.approx(math.pi * 36, rel=0.15)
    assert mask[changed].all()
    assert np.array_equal(faked[~changed], image[~changed])


def test_the_card_verdict_needs_psnr_ssim_and_speed_in_every_condition(ev) -> None:
    def table(psnr: float, ssim: float, cpu: float) -> dict:
        stat = lambda v: {"mean": v}  # noqa: E731
        methods = {"ours": {"psnr": stat(psnr), "psnr_body": stat(psnr), "ssim": stat(ssim), "ssim_body": stat(ssim),
                            "cpu_s": stat(cpu)},
                   "bm3d": {"psnr": stat(30.0), "psnr_body": stat(30.0), "ssim": stat(0.9), "ssim_body": stat(0.9),
                            "cpu_s": stat(10.0)}}
        return {"methods": methods, "ours_minus_bm3d_db": psnr - 30.0, "ours_minus_bm3d_db_body": psnr - 30.0,
                "speedup_vs_bm3d_cpu": 10.0 / cpu}

    good = table(30.5, 0.91, 0.1)
    assert ev.card_summary({"CT a": good, "MR b": good})["target_met"]
    for bad in (table(29.9, 0.95, 0.1), table(31.0, 0.89, 0.1), table(31.0, 0.95, 0.25)):
        summary = ev.card_summary({"CT a": good, "MR b": bad})
        assert not summary["target_met"] and summary["ours_minus_bm3d"]["CT a"]["met"]
