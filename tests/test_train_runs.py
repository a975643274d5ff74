"""The shared training library: a run logs as CSV and as TensorBoard event files, a run folder rebuilds its model
(``--export-checkpoint``), and shipping puts the card and the training log beside the weights."""

from __future__ import annotations

import csv
import sys

import pytest
import torch

from medscan.nets.weights import load_model
from medscan.train.data import SliceBank
from medscan.train.runs import add_export_checkpoint, from_checkpoint, ship, training_command
from medscan.train.trainer import TrainConfig, TrainLog, train

TINY = {"kind": "residual_denoiser",
        "backbone": {"arch": "UNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 1,
                     "channels": [4, 8], "strides": [2], "num_res_units": 1, "norm": None, "bias": False}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """40 steps of a tiny denoiser on a real CT (seconds on one thread)."""
    bank = SliceBank.from_items(["train/ct02_abdomen_pelvis_3mm.nii.gz"])
    config = TrainConfig(name="tiny", task="denoise", network=TINY, train_items=[], heldout_items=[],
                         steps=40, batch=4, patch=32, lr=3e-3, threads=1, checkpoint_every=20,
                         task_args={"sigma_range": (0.1, 0.2)})
    workdir = tmp_path_factory.mktemp("run")
    return train(config, workdir, bank=bank, progress=False), workdir


def _csv(workdir):
    with open(workdir / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_trainer_writes_event_files_beside_the_csv(tiny_run) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, workdir = tiny_run
    rows = _csv(workdir)
    assert [int(r["step"]) for r in rows] == [20, 40]
    events = sorted(workdir.glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file beside log.csv"
    accumulator = EventAccumulator(str(workdir))
    accumulator.Reload()
    assert {"loss", "lr", "seconds"} <= set(accumulator.Tags()["scalars"])
    logged = accumulator.Scalars("loss")
    assert [e.step for e in logged] == [20, 40]
    assert [e.value for e in logged] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)


def test_without_tensorboard_a_run_still_logs_its_csv_and_says_so_once(tmp_path, monkeypatch, capsys) -> None:
    import medscan.train.trainer as trainer

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when it is not installed
    monkeypatch.setattr(trainer, "_EVENTS_OFF_SAID", False)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        log = TrainLog(tmp_path / run / "log.csv", ["step", "loss"], resume=False)
        log.writerow([20, "0.5"])
        log.close()
        assert (tmp_path / run / "log.csv").read_text().splitlines() == ["step,loss", "20,0.5"]
        assert not list((tmp_path / run).glob("events.out.tfevents.*"))
    assert capsys.readouterr().err.count("tensorboard is not installed") == 1


def test_a_resumed_log_counts_its_time_on(tmp_path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,seconds\n20,0.5,12.5\n40,0.4,30.0\n")
    log = TrainLog(path, ["step", "loss", "seconds"], resume=True)
    log.writerow([60, "0.3", "41.0"])
    log.close()
    assert log.seconds_logged == 30.0
    assert path.read_text().splitlines()[-1] == "60,0.3,41.0"
    assert TrainLog(path, ["step", "loss", "seconds"], resume=False).seconds_logged == 0.0


def test_a_run_folder_rebuilds_its_model_and_ships_it_with_its_log(tiny_run, tmp_path) -> None:
    result, workdir = tiny_run
    run = from_checkpoint(workdir, TrainConfig)
    assert run["config"].name == "tiny" and run["steps"] == 40
    for key, value in result["model"].state_dict().items():
        torch.testing.assert_close(run["model"].state_dict()[key], value)
    last = _csv(workdir)[-1]
    assert run["final_loss"] == float(last["loss"]) and run["seconds"] == float(last["seconds"])
    path = ship(run["model"], {"name": "tiny", "version": "1", "network": TINY}, "tiny", workdir, tmp_path)
    assert path == tmp_path / "tiny.json" and (tmp_path / "tiny.safetensors").exists()
    assert (tmp_path / "tiny.train_log.csv").read_text() == (workdir / "log.csv").read_text()
    model, card = load_model("tiny", tmp_path)
    assert card.data["version"] == "1" and card.data["sha256"]
    for key, value in run["model"].state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_the_export_flag_is_left_out_of_the_recorded_command() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_export_checkpoint(parser)
    assert parser.parse_args(["--export-checkpoint"]).export_checkpoint
    assert not parser.parse_args([]).export_checkpoint
    argv = ["scripts/train_denoise.py", "--export-checkpoint", "--workdir", "runs/denoise"]
    assert training_command(argv) == "python scripts/train_denoise.py --workdir runs/denoise"


def test_config_options_are_typed_and_defaulted_by_the_config() -> None:
    import argparse
    from dataclasses import dataclass

    from medscan.train.runs import add_config_options, config_options

    @dataclass
    class Config:
        pretrain_steps: int = 600
        lr: float = 2e-4

    parser = argparse.ArgumentParser()
    add_config_options(parser, Config(), ("pretrain_steps", "lr"))
    assert config_options(parser.parse_args([]), ("pretrain_steps", "lr")) == {"pretrain_steps": 600, "lr": 2e-4}
    args = parser.parse_args(["--pretrain-steps", "12", "--lr", "1e-3"])
    assert Config(**config_options(args, ("pretrain_steps", "lr"))) == Config(12, 1e-3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--pretrain-steps", "1.5"])  # an int field takes no fraction


def test_no_script_imports_another_script() -> None:
    """What scripts share lives in medscan.train (runs, evaluation, metrics): a script that imported a sibling
    through sys.path would break when run from elsewhere and hide shared code in a script."""
    import ast
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    names = {p.stem for p in scripts.glob("*.py")}
    offenders = []
    for path in sorted(scripts.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in names:
                offenders.append(f"{path.name}: from {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in names]
    assert offenders == []


def test_card_edits_keep_the_weights_loadable(tiny_run, tmp_path, capsys) -> None:
    from medscan.train.evaluation import edit_card, write_card_figures

    result, _ = tiny_run
    nested = {"by_spacing": {"script": "other.py", "rows": [1]}}  # another script's evaluation, kept
    ship(result["model"], {"name": "tiny", "version": "1", "network": TINY, "evaluation": nested}, "tiny", tmp_path,
         tmp_path)
    write_card_figures("tiny", {"all": {"psnr": 30.0}}, {"script": "this.py"}, tmp_path)
    path = edit_card("tiny", lambda card: card.update(threshold=0.5), "the threshold", tmp_path)
    assert path == tmp_path / "tiny.json"
    assert "wrote the threshold into tiny.json" in capsys.readouterr().out
    _, card = load_model("tiny", tmp_path)  # the sha256 still matches: only the card changed
    assert card.data["threshold"] == 0.5
    assert card.data["evaluation"] == {"script": "this.py", "tables": {"all": {"psnr": 30.0}}, **nested}
    assert edit_card("absent", lambda card: None, folder=tmp_path) is None
    assert "no card absent.json" in capsys.readouterr().out
