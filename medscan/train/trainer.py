"""One training loop for every model: seeded, resumable from checkpoints, logged as CSV a person can plot and, with
the ``train`` extra installed, as TensorBoard event files beside it (``tensorboard --logdir runs/``)."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medscan.nets.builders import build_network, count_parameters
from medscan.train.data import LowDoseCtBank, MixedBank, SliceBank
from medscan.train.tasks import TASKS


@dataclass
class TrainConfig:
    """Everything one training run needs; the model card records it as the run's ``training`` entry.

    Attributes:
        name: the model name the run exports (``models/<name>.safetensors`` and ``.json``).
        task: the training task (``"denoise"``, ``"sharpen"``, ``"super_resolve"``, ``"inpaint"`` ...).
        network: the card's ``network`` entry (see :func:`medscan.nets.builders.build_network`).
        train_items: data items (paths under the data folder) to train on.
        heldout_items: data items kept out of training, for the evaluation.
        steps: optimiser steps.
        batch: patches per step.
        patch: patch side in pixels.
        lr: peak learning rate.
        seed: seed of the patch sampling and the task's random degradations.
        threads: torch CPU threads.
        checkpoint_every: steps between checkpoints (a killed run resumes from the last one).
        task_args: the task's own settings (e.g. ``{"loss": "mse"}``).
        neighbours: 2.5-D models: slices on either side sampled with each slice.
        flat_skip: share of flat (empty-air) patches redrawn.
        init_from: fine-tune from this shipped model's verified weights (same network), or ``None``.
        balance_items: draw every training item equally often instead of every slice.
        low_dose_ct: folder of precomputed low-dose CT slices (denoise only), or ``None``.
        low_dose_share: share of each batch drawn from ``low_dose_ct``.
    """

    name: str
    task: str
    network: dict[str, Any]
    train_items: list[str]
    heldout_items: list[str]
    steps: int = 1000
    batch: int = 16
    patch: int = 96
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 200
    task_args: dict[str, Any] = field(default_factory=dict)
    neighbours: int = 0  # 2.5-D models: slices on either side sampled with each slice (SliceBank neighbours)
    # Flat (empty-air) patches teach little anatomy, but a model that never sees them leaves mottle in the background;
    # which share each shipped model redrew is in its card (training.flat_skip).
    flat_skip: float = 0.9
    init_from: str | None = None  # fine-tune: start from this shipped model's verified weights (same network)
    balance_items: bool = False  # draw every training item equally often (SliceBank.item_weights)
    # Folder of precomputed projection-domain low-dose CT slices (LowDoseCtBank) and the share of each batch drawn
    # from it (denoise only).
    low_dose_ct: str | None = None
    low_dose_share: float = 0.0


def shipped_model(name: str) -> str:
    """``argparse`` type of ``--init-from``: a shipped model whose weights verify, else a one-line usage error
    before any data is loaded."""
    import argparse

    from medscan.nets.weights import load_model
    from medscan.scan import MedscanError

    try:
        load_model(name)
    except MedscanError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def fine_tune_record(base_model: str) -> dict[str, Any]:
    """What a fine-tuned model's card says about the weights it started from, since the shipped file is
    replaced: name, version, sha256 and how they were trained (nested when they were fine-tuned too)."""
    from medscan.nets.weights import load_card

    base = load_card(base_model).data
    base_training = base.get("training", {})
    return {"name": base_model, "version": base.get("version"), "sha256": base.get("sha256"),
            "command": base_training.get("command"), "steps": base_training.get("steps_completed"),
            "seconds": base_training.get("seconds"), "loss": base_training.get("task_args", {}).get("loss", "l1"),
            **({"fine_tuned_from": base_training["fine_tuned_from"]} if "fine_tuned_from" in base_training else {})}


def save_checkpoint(path: Path, step: int, rng: np.random.Generator, generator: torch.Generator,
                    **parts: Any) -> None:
    """Atomically save ``parts`` (anything with a state_dict: models, optimizers, schedulers), the step and both
    random streams, so a resumed run draws exactly the batches the uninterrupted one would have."""
    tmp = path.with_suffix(".tmp")
    torch.save({**{name: part.state_dict() for name, part in parts.items()}, "step": step,
                "rng": {"numpy": rng.bit_generator.state, "torch": generator.get_state()}}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, rng: np.random.Generator, generator: torch.Generator, **parts: Any) -> int:
    """Restore what ``save_checkpoint`` wrote into ``parts`` and the random streams; the step reached (0: none)."""
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]["numpy"]
    generator.set_state(state["rng"]["torch"])
    return int(state["step"])


_EVENTS_OFF_SAID = False


class TrainLog:
    """The log of one training run: ``log.csv`` (a row every few steps, a person can plot it) and, when the
    ``tensorboard`` package is installed (the ``train`` extra), TensorBoard event files beside it in the run
    folder, one scalar per numeric column (tagged with the column name) at the row's step.

    Without tensorboard the run still trains and writes the CSV; it says once per process that event files are
    off. Use it as ``log.writerow([...])`` in the header's column order (the first column is the step),
    ``log.flush()`` and ``log.close()``.

    Attributes:
        seconds_logged: the ``seconds`` column of the last row already in the log when resuming (0.0 for a
            new log or one without that column), so a resumed run can count its time on from there.
    """

    def __init__(self, path: Path, header: list[str], resume: bool) -> None:
        new_log = not path.exists() or not resume
        self.header = list(header)
        self.seconds_logged = 0.0
        if not new_log and "seconds" in header:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and rows[-1].get("seconds"):
                self.seconds_logged = float(rows[-1]["seconds"])
        self._file = open(path, "w" if new_log else "a", newline="")  # noqa: SIM115 - kept open for the run
        self._csv = csv.writer(self._file)
        if new_log:
            self._csv.writerow(header)
        self._events = _event_writer(path.parent)

    def writerow(self, row: list[Any]) -> None:
        """Append ``row`` to the CSV and its numeric columns (all but the step) to the event files."""
        self._csv.writerow(row)
        if self._events is None:
            return
        step = int(row[0])
        for tag, value in zip(self.header[1:], row[1:], strict=False):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            self._events.add_scalar(tag, number, step)

    def flush(self) -> None:
        """Write what is buffered to ``log.csv`` (and the event files), so a killed run loses no logged row."""
        self._file.flush()
        if self._events is not None:
            self._events.flush()

    def close(self) -> None:
        """Close ``log.csv`` and the event writer; the log is complete on disk afterwards."""
        self._file.close()
        if self._events is not None:
            self._events.close()


def _event_writer(folder: Path) -> Any:
    """A ``SummaryWriter`` on ``folder``, or None (said once) when tensorboard is not installed."""
    global _EVENTS_OFF_SAID
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when the package is missing
        if not _EVENTS_OFF_SAID:
            print("medscan: tensorboard is not installed: no event files, log.csv only "
                  "(pip install 'medscan[train]')", file=sys.stderr)
            _EVENTS_OFF_SAID = True
        return None
    return SummaryWriter(log_dir=str(folder))


def open_log(path: Path, header: list[str], resume: bool) -> tuple[TrainLog, TrainLog]:
    """The run's :class:`TrainLog` (appended to when resuming, else started with ``header``), returned twice as
    (log, writer) for loops written as ``log, writer = open_log(...)``: ``writer.writerow``, ``log.flush``."""
    log = TrainLog(path, header, resume)
    return log, log


def make_bank(config: TrainConfig) -> SliceBank | MixedBank:
    """The training slices of ``config``, mixed with its low-dose CT bank when it names one."""
    slices = SliceBank.from_items(config.train_items, neighbours=config.neighbours)
    if not config.low_dose_ct:
        return slices
    return MixedBank(slices, LowDoseCtBank.from_folder(Path(config.low_dose_ct)), config.low_dose_share)


def train(config: TrainConfig, workdir: Path, bank: SliceBank | MixedBank | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``config`` in ``workdir``; returns the final model and a summary for the card."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    (workdir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    task = TASKS[config.task](**config.task_args)
    model = build_network(config.network)
    if config.init_from:
        from medscan.nets.weights import load_model

        model.load_state_dict(load_model(config.init_from)[0].state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                    pct_start=0.05)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    checkpoint = workdir / "checkpoint.pt"
    start = load_checkpoint(checkpoint, rng, generator, model=model, optimizer=optimizer, scheduler=scheduler)
    bank = bank or make_bank(config)
    log, writer = open_log(workdir / "log.csv", ["step", "loss", "lr", "seconds"], resume=start > 0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=config.name, unit="step", mininterval=5)
    began = time.time()
    losses: list[float] = []
    model.train()
    for step in range(start + 1, config.steps + 1):
        clean = bank.sample(config.batch, config.patch, rng, flat_skip=config.flat_skip,
                            balance_items=config.balance_items)
        inputs, target = task.make_batch(clean, generator)
        loss = task.loss(task.predict(model, inputs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % 20 == 0 or step == config.steps:
            writer.writerow([step, f"{np.mean(losses[-20:]):.6f}", f"{scheduler.get_last_lr()[0]:.2e}",
                             f"{time.time() - began:.1f}"])
            log.flush()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, step, rng, generator, model=model, optimizer=optimizer, scheduler=scheduler)
    log.close()
    if bar is not None:
        bar.close()
    model.eval()
    return {"model": model, "parameters": count_parameters(model), "steps": config.steps,
            "seconds": time.time() - began, "losses": losses,
            "final_loss": float(np.mean(losses[-100:])) if losses else float("nan")}
