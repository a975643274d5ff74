"""GAN super-resolution as a Generate operation: a real held-out slice, geometry, marks, uncertainty, sharpness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medscan.io import load
from medscan.ops import run
from medscan.ops.restore import upsampled_affine
from medscan.scan import MedscanError, ProvenanceEntry
from medscan.train.data import DATA_ROOT, HELDOUT_ITEMS
from medscan.train.metrics import spectrum_match

pytestmark = pytest.mark.model

HELDOUT_CT = DATA_ROOT / HELDOUT_ITEMS[0]  # a subject never seen in training
SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"


@pytest.fixture(scope="module")
def coarse_and_original():
    """One mid-volume held-out CT slice (cropped to 256x256 to stay fast) and its 4x4 area-averaged version."""
    scan = load(HELDOUT_CT)
    k = scan.voxels.shape[0] // 2
    y0, x0 = 128, 128
    shifted = scan.affine.copy()
    shifted[:3, 3] += k * shifted[:3, 2] + y0 * shifted[:3, 1] + x0 * shifted[:3, 0]
    original = scan.derive(scan.voxels[k:k + 1, y0:y0 + 256, x0:x0 + 256].copy(), ProvenanceEntry("crop"),
                           affine=shifted)
    low = original.voxels.reshape(1, 64, 4, 64, 4).mean(axis=(2, 4))
    coarse = original.derive(low, ProvenanceEntry("coarse"), affine=upsampled_affine(original.affine, (0.25, 0.25, 1)))
    return coarse, original


@pytest.fixture(scope="module")
def results(coarse_and_original):
    coarse, _ = coarse_and_original
    return run("super_resolve", coarse, scale="4", gan=True), run("super_resolve", coarse, scale="4")


def test_gan_x4_is_a_synthetic_result_on_the_same_field_of_view(coarse_and_original, results) -> None:
    _, original = coarse_and_original
    gan, fidelity = results
    out = gan.scan
    assert out.voxels.shape == original.voxels.shape == (1, 256, 256)
    assert np.allclose(out.affine, original.affine)  # the refined grid lands exactly on the original grid
    assert out.synthetic and gan.synthetic and out.units == "HU"
    step = out.provenance[-1]
    assert step.operation == "super_resolve" and step.model == "superres_gan_x4"
    assert step.parameters["gan"] is True and step.parameters["synthetic"] is True
    assert "measurement_consistency" in step.parameters
    assert any("GAN" in note for note in gan.notes) and any("SYNTHETIC" in note for note in gan.notes)
    plain = fidelity.scan.provenance[-1]
    assert plain.model == "superres_x4" and plain.parameters["gan"] is False
    for result in (gan, fidelity):  # both paths carry the test-time-augmentation spread
        uncertainty = result.maps["uncertainty"]
        assert uncertainty.shape == result.scan.voxels.shape
        assert np.isfinite(uncertainty).all() and uncertainty.min() >= 0 and uncertainty.max() > 0


def test_gan_output_carries_more_high_frequency_energy_than_the_fidelity_model(coarse_and_original, results) -> None:
    _, original = coarse_and_original
    gan, fidelity = results
    band = (0.125, 0.5)  # beyond the coarse grid's Nyquist: only generated detail lives here
    _, gan_db = spectrum_match(original.voxels[0], gan.scan.voxels[0], band)
    _, fidelity_db = spectrum_match(original.voxels[0], fidelity.scan.voxels[0], band)
    assert gan_db > fidelity_db  # less of the original's upper-band energy missing
    # ...and still faithful to what was measured: every coarse voxel's mean kept, so the HU level too.
    body = original.voxels > -500
    assert abs(float(gan.scan.voxels[body].mean() - original.voxels[body].mean())) < 5.0
    coarse, _ = coarse_and_original
    back = gan.scan.voxels.reshape(1, 64, 4, 64, 4).mean(axis=(2, 4))
    assert float(np.abs(back - coarse.voxels).max()) < 5.0


def test_gan_without_a_model_for_the_request_is_a_one_line_error(coarse_and_original, tmp_path) -> None:
    coarse, _ = coarse_and_original
    with pytest.raises(MedscanError, match="GAN model exists for in-plane x4 only"):
        run("super_resolve", coarse, scale="2", gan=True)
    with pytest.raises(MedscanError, match="not through-plane x2"):
        run("super_resolve", coarse, scale="2", axis="through-plane", gan=True)
    out = tmp_path / "sr"
    done = subprocess.run([sys.executable, "-m", "medscan.cli", "generate", "super-resolve", str(SAMPLE_CT), "-o",
                           str(out), "--scale", "2", "--gan"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "GAN model exists" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()


def test_gan_card_verifies_and_names_its_feature_network() -> None:
    from medscan.nets.weights import load_card, load_model, sha256_of

    model, card = load_model("superres_gan_x4")  # refuses weights whose sha256 differs from the card
    assert sha256_of(card.weights_path) == card.data["sha256"] == load_card("superres_gan_x4").data["sha256"]
    assert card.data["network"]["kind"] == "esrgan_generator" and tuple(model.scale) == (4, 4)
    assert card.data["feature_loss"]["model"] == "denoise_unet2d"
    assert card.data["task_args"]["gan"] is True
