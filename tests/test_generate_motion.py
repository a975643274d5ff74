"""Motion correct: the k-space simulator, the operation on a held-out MR slice, the CLI refusing CT, the card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medscan.degrade.motion import SEVERITIES, add_motion
from medscan.io import load
from medscan.nets.normalize import intensity_window
from medscan.ops import run
from medscan.scan import MedscanError, Scan
from medscan.train.data import DATA_ROOT
from medscan.train.metrics import psnr

pytestmark = pytest.mark.model

HELDOUT_MR = DATA_ROOT / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"  # held out of training (by subject)
SAMPLE_CT = Path(__file__).resolve().parents[1] / "samples" / "ct_abdomen_siemens"


@pytest.fixture(scope="module")
def mr() -> Scan:
    if not HELDOUT_MR.exists():
        pytest.skip(f"{HELDOUT_MR} not available")
    return load(HELDOUT_MR)


def _slice(scan: Scan, k: int = 17) -> np.ndarray:
    image = scan.voxels[k]
    lo, hi = intensity_window(image)
    return np.clip((image - lo) / (hi - lo), 0, None).astype(np.float32)


def test_simulator_is_seeded_and_error_grows_with_severity(mr) -> None:
    clean = torch.from_numpy(_slice(mr))[None, None]
    first = add_motion(clean, "moderate", torch.Generator().manual_seed(7))
    again = add_motion(clean, "moderate", torch.Generator().manual_seed(7))
    other = add_motion(clean, "moderate", torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == clean.shape and float(first.min()) >= 0.0  # a magnitude image
    errors = {name: np.mean([float(((add_motion(clean, name, torch.Generator().manual_seed(s)) - clean) ** 2).mean())
                             for s in range(3)]) for name in SEVERITIES}
    assert 0 < errors["mild"] < errors["moderate"] < errors["severe"]
    # Motion ghosts run along the phase-encoding axis (-2): the error spreads over rows, not columns.
    diff = (first - clean)[0, 0].abs()
    body_cols = clean[0, 0].amax(dim=0) > 0.2
    assert float(diff[:, body_cols].mean()) > float(diff[:, ~body_cols].mean())


def test_motion_correct_improves_a_held_out_slice_and_is_synthetic(mr) -> None:
    clean = _slice(mr)
    # mr03 is phase encoded along its rows (header ROW): simulate along that axis, as the scanner would.
    assert str(mr.header.get("InPlanePhaseEncodingDirection")) == "ROW"
    corrupted = add_motion(torch.from_numpy(clean.T.copy())[None, None], "moderate",
                           torch.Generator().manual_seed(3))[0, 0].numpy().T.copy()
    scan = Scan(voxels=corrupted[None], affine=mr.affine, modality="MR", header=mr.header,
                source_path=str(HELDOUT_MR))
    result = run("motion_correct", scan, device="cpu")
    out = result.scan.voxels[0]
    assert psnr(clean, out) > psnr(clean, corrupted) + 0.3  # +0.6 dB on this slice (held-out mean: +1.4 dB)
    assert result.scan.synthetic
    entry = result.scan.provenance[-1]
    assert entry.operation == "motion_correct" and entry.parameters["synthetic"] is True
    assert entry.parameters["phase_encoding"] == "ROW"
    assert entry.parameters["phase_encoding_source"] == "DICOM header"
    uncertainty = result.maps["uncertainty"]
    assert uncertainty.shape == result.scan.voxels.shape and np.all(uncertainty >= 0) and uncertainty.max() > 0
    # strength 0 gives back the input; the CT refusal is a one-line MedscanError.
    assert np.allclose(run("motion_correct", scan, device="cpu", strength=0.0).scan.voxels, corrupted, atol=1e-5)
    with pytest.raises(MedscanError, match="MR"):
        run("motion_correct", Scan(voxels=corrupted[None], affine=mr.affine, modality="CT"), device="cpu")


def test_phase_encoding_is_estimated_from_the_ghosts_when_no_header_says() -> None:
    from medscan.ops.motion import estimate_phase_encoding

    path = DATA_ROOT / "paired" / "brain_tcga_fg_6692" / "t1.nii.gz"  # held out; NIfTI carries no direction
    if not path.exists():
        pytest.skip(f"{path} not available")
    volume = load(path).voxels
    clean = _slice(load(path), volume.shape[0] // 2)
    assert estimate_phase_encoding(clean[None]) == "COL"  # no ghosts: the usual default
    x = torch.from_numpy(clean)[None, None]
    along_cols = add_motion(x, "moderate", torch.Generator().manual_seed(0))[0, 0].numpy()
    along_rows = add_motion(x.transpose(-1, -2).contiguous(), "moderate",
                            torch.Generator().manual_seed(0))[0, 0].numpy().T
    assert estimate_phase_encoding(along_cols[None]) == "COL"
    assert estimate_phase_encoding(along_rows[None]) == "ROW"


def test_cli_refuses_ct_with_one_line_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "corrected.nii.gz"
    done = subprocess.run([sys.executable, "-m", "medscan.cli", "generate", "motion-correct", str(SAMPLE_CT),
                           "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "MR" in lines[0] and "Traceback" not in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_shipped_model_card_hash_verifies() -> None:
    from medscan.nets.weights import load_card, load_model

    model, card = load_model("motion_unet2d")  # raises when the weights do not match the card's sha256
    assert card.data["task"] == "motion_correct" and card.data["sha256"]
    assert load_card("motion_unet2d").weights_path.stat().st_size == card.data["weights_bytes"]
    assert sum(p.numel() for p in model.parameters()) == card.data["parameters"] < 1_500_000
    held_out = set(card.data["training"]["heldout_items"])
    assert {"train/mr03_brain_t1_2d_sag_siemens_dicom", "paired/brain_tcga_fg_6692/t1.nii.gz"} <= held_out
    assert not held_out & set(card.data["training"]["train_items"])


def test_motion_task_trains_on_the_loss_its_card_names() -> None:
    """The fine-tuning loss is a task argument recorded in the card: MSE is what PSNR measures."""
    from medscan.train.task_motion import MotionCorrectTask

    prediction, target = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)
    assert float(MotionCorrectTask().loss(prediction, target)) == pytest.approx(0.5)
    assert float(MotionCorrectTask(loss="mse").loss(prediction, target)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown loss"):
        MotionCorrectTask(loss="huber").loss(prediction, target)
