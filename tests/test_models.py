"""The model factory: a tiny training run lowers the loss; weights load only with the right hash."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from medscan.nets.builders import build_network
from medscan.nets.weights import load_model, save_model
from medscan.scan import MedscanError
from medscan.train.data import HELDOUT_ITEMS, TRAIN_ITEMS, SliceBank
from medscan.train.tasks import DenoiseTask
from medscan.train.trainer import TrainConfig, fine_tune_record, shipped_model, train

pytestmark = pytest.mark.model

TINY = {"kind": "residual_denoiser",
        "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 1,
                     "channels": [8, 16], "strides": [2], "num_res_units": 1, "norm": None, "bias": False}}


def test_bias_free_denoiser_is_scale_equivariant() -> None:
    """Why the shipped denoiser has no biases or norms: a study's intensity scale cannot shift its output."""
    import torch

    model = build_network(TINY).eval()
    with torch.no_grad():
        model.gain.fill_(0.7)
        x, sigma, flag = torch.rand(2, 1, 32, 32), torch.tensor([0.05, 0.1]), torch.tensor([0.0, 1.0])
        plain = model(x, sigma, flag)
        scaled = model(3.5 * x, 3.5 * sigma, flag)
        assert plain.abs().mean() > 1e-4
        torch.testing.assert_close(scaled, 3.5 * plain, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(model(x, sigma, 1 - flag), plain)  # the noise model is heard


def test_split_is_by_subject() -> None:
    subjects = {item.split("/")[1].split("_t")[0] if item.startswith("paired") else item for item in HELDOUT_ITEMS}
    for item in TRAIN_ITEMS:
        assert item not in HELDOUT_ITEMS
        assert not any(s in item for s in subjects if s.startswith("brain_tcga"))


class InterruptedBank:
    """A slice bank that dies after ``limit`` batches, like a training process killed mid-run."""

    def __init__(self, bank: SliceBank, limit: int) -> None:
        self.bank, self.limit, self.calls = bank, limit, 0

    def sample(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt
        return self.bank.sample(*args, **kwargs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    bank = SliceBank.from_items(["train/ct02_abdomen_pelvis_3mm.nii.gz"])
    config = TrainConfig(name="tiny", task="denoise", network=TINY, train_items=[], heldout_items=[],
                         steps=80, batch=8, patch=48, lr=3e-3, checkpoint_every=40,
                         task_args={"sigma_range": (0.1, 0.2)})
    workdir = tmp_path_factory.mktemp("run")
    with pytest.raises(KeyboardInterrupt):
        train(config, workdir, bank=InterruptedBank(bank, 45), progress=False)
    resumed = train(config, workdir, bank=bank, progress=False)  # picks up at the step-40 checkpoint
    return resumed, workdir, config, bank


def _held_loss(model, bank: SliceBank) -> float:
    import torch

    task = DenoiseTask((0.1, 0.2))
    clean = bank.sample(32, 48, np.random.default_rng(123))
    inputs, target = task.make_batch(clean, torch.Generator().manual_seed(123))
    with torch.no_grad():
        return float(task.loss(task.predict(model, inputs), target))


def test_a_tiny_training_run_lowers_the_loss(tiny_run) -> None:
    result, workdir, _, bank = tiny_run
    untrained = build_network(TINY).eval()  # starts as the identity: removes nothing
    assert _held_loss(result["model"], bank) < 0.9 * _held_loss(untrained, bank)
    log = (workdir / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds" and log[-1].startswith("80,")
    assert (workdir / "checkpoint.pt").exists()


def test_resume_continues_from_the_checkpoint(tiny_run) -> None:
    result, _, _, _ = tiny_run
    assert len(result["losses"]) == 40  # steps 41..80 only: the first 40 came from the checkpoint


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


def test_fine_tuning_starts_from_the_shipped_weights(tiny_run, tmp_path, monkeypatch) -> None:
    import torch

    result, _, config, bank = tiny_run
    save_model(result["model"], {"network": TINY, "version": "1"}, "tiny", tmp_path)
    monkeypatch.setenv("MEDSCAN_MODELS", str(tmp_path))
    tuned_config = TrainConfig(**{**config.__dict__, "steps": 1, "lr": 1e-9, "init_from": "tiny",
                                  "task_args": {"sigma_range": (0.1, 0.2), "loss": "mse"}})
    tuned = train(tuned_config, tmp_path / "finetune", bank=bank, progress=False)
    for name, value in result["model"].state_dict().items():
        torch.testing.assert_close(tuned["model"].state_dict()[name], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        DenoiseTask(loss="l3")
    assert fine_tune_record("tiny")["sha256"] == load_model("tiny")[1].data["sha256"]
    # --init-from of the training scripts: a missing or corrupt model is a one-line usage error, not a traceback.
    assert shipped_model("tiny") == "tiny"
    (tmp_path / "tiny.safetensors").write_bytes(b"corrupt")
    for name, message in (("tiny", "does not match the model card"), ("absent", "no model card")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            shipped_model(name)


def test_a_fine_tuned_card_names_the_weights_it_started_from_though_they_were_replaced_meanwhile(
        tiny_run, tmp_path, monkeypatch, load_script) -> None:
    """Two fine-tunes of one shipped model side by side: the first to finish ships over the base, and the second's
    card must still name the weights it really started from (it named the first one's once)."""
    from medscan.nets.weights import load_card

    script = load_script("train_denoise")
    result, _, _, _ = tiny_run
    save_model(result["model"], {"network": TINY, "version": "1"}, "tiny", tmp_path)
    monkeypatch.setenv("MEDSCAN_MODELS", str(tmp_path))
    started_from = load_card("tiny").data["sha256"]

    def train_while_another_run_ships(config, workdir):
        other = build_network(TINY)
        other.load_state_dict({k: v + 0.01 for k, v in result["model"].state_dict().items()})
        save_model(other, {"network": TINY, "version": "2"}, "tiny", tmp_path)
        return {"model": result["model"], "parameters": 1, "steps": config.steps, "seconds": 1.0, "final_loss": 0.1}

    monkeypatch.setattr(script, "train", train_while_another_run_ships)
    argv = ["--init-from", "tiny", "--name", "tuned", "--steps", "1", "--workdir", str(tmp_path / "run")]
    assert script.main(argv) == 0
    assert load_card("tiny").data["version"] == "2"
    base = load_card("tuned").data["training"]["fine_tuned_from"]
    assert base["version"] == "1" and base["sha256"] == started_from


def test_balanced_sampling_gives_every_item_that_fits_an_equal_share() -> None:
    items = ["train/ct01_upper_abdomen_siemens.nii.gz", "train/ct02_abdomen_pelvis_3mm.nii.gz",
             "train/mr01_head_t1_3d_sag_uih.nii.gz"]
    bank = SliceBank.from_items(items)
    weights = bank.item_weights(128)
    share = {item: float(weights[np.array(bank.sources) == item].sum()) for item in items}
    # ct02's slices (122 x 101) cannot give a 128-px patch; ct01 (512 px) and mr01 (460 x 512) split the draws,
    # although mr01 has more than twice as many slices as ct01.
    assert share[items[1]] == 0.0
    assert share[items[0]] == pytest.approx(0.5) and share[items[2]] == pytest.approx(0.5)
    drawn = bank.sample(64, 128, np.random.default_rng(0), flat_skip=0.0, balance_items=True)
    assert drawn.shape == (64, 1, 128, 128)
    with pytest.raises(ValueError, match="at least 600 px"):
        bank.item_weights(600)


def test_softened_patches_are_blurred_targets_not_blurred_inputs() -> None:
    import torch

    clean = SliceBank.from_items(["train/ct01_upper_abdomen_siemens.nii.gz"]).sample(
        16, 64, np.random.default_rng(1), flat_skip=1.0)
    task = DenoiseTask((0.05, 0.05), loss="mse", smooth=0.5)
    (noisy, _, _), target = task.make_batch(clean, torch.Generator().manual_seed(2))
    changed = (target - clean).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert 0 < int(changed.sum()) < 16  # about half the patches are softened, the rest left as they are
    # The noise is added to the softened image, so the network is never taught to blur.
    assert float((noisy - target).std()) == pytest.approx(0.05, rel=0.1)
    with pytest.raises(ValueError, match="share between 0 and 1"):
        DenoiseTask(smooth=1.5)
