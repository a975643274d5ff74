"""The model factory: a tiny training run lowers the loss; weights load only with the right hash."""

from __future__ import annotations

import numpy as np
import pytest

from medscan.nets.weights import load_model, save_model
from medscan.scan import MedscanError
from medscan.train.data import HELDOUT_ITEMS, TRAIN_ITEMS, SliceBank
from medscan.train.trainer import TrainConfig, train

TINY = {"kind": "residual_denoiser",
        "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 2, "out_channels": 1,
                     "channels": [8, 16], "strides": [2], "num_res_units": 1}}


def test_split_is_by_subject() -> None:
    subjects = {item.split("/")[1].split("_t")[0] if item.startswith("paired") else item for item in HELDOUT_ITEMS}
    for item in TRAIN_ITEMS:
        assert item not in HELDOUT_ITEMS
        assert not any(s in item for s in subjects if s.startswith("brain_tcga"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    bank = SliceBank.from_items(["train/ct02_abdomen_pelvis_3mm.nii.gz"])
    config = TrainConfig(name="tiny", task="denoise", network=TINY, train_items=[], heldout_items=[],
                         steps=60, batch=8, patch=48, lr=3e-3, checkpoint_every=30)
    workdir = tmp_path_factory.mktemp("run")
    return train(config, workdir, bank=bank, progress=False), workdir, config, bank


def test_a_tiny_training_run_lowers_the_loss(tiny_run) -> None:
    result, workdir, _, _ = tiny_run
    losses = result["losses"]
    assert np.mean(losses[-15:]) < 0.8 * np.mean(losses[:5])
    log = (workdir / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds" and log[-1].startswith("60,")
    assert (workdir / "checkpoint.pt").exists()


def test_resume_continues_from_the_checkpoint(tiny_run) -> None:
    _, workdir, config, bank = tiny_run
    config.steps = 70  # ten more steps on top of the finished run
    again = train(config, workdir, bank=bank, progress=False)
    assert len(again["losses"]) == 10


def test_weights_round_trip_and_hash_check(tiny_run, tmp_path) -> None:
    result, _, _, _ = tiny_run
    save_model(result["model"], {"network": TINY, "version": "1"}, "tiny", tmp_path)
    _, card = load_model("tiny", tmp_path)
    assert card.data["sha256"] and card.weights_path.stat().st_size == card.data["weights_bytes"]
    weights = tmp_path / "tiny.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MedscanError, match="does not match the model card"):
        load_model("tiny", tmp_path)
    with pytest.raises(MedscanError, match="no model card"):
        load_model("absent", tmp_path)
