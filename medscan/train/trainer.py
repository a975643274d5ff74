"""One training loop for every model: seeded, resumable from checkpoints, logged as CSV a person can plot."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medscan.nets.builders import build_network, count_parameters
from medscan.train.data import SliceBank
from medscan.train.tasks import TASKS


@dataclass
class TrainConfig:
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


def _save_checkpoint(path: Path, model, optimizer, scheduler, step: int, rng_state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "rng": rng_state}, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, workdir: Path, bank: SliceBank | None = None, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``config`` in ``workdir``; returns the final model and a summary for the card."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    (workdir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    task = TASKS[config.task](**config.task_args)
    model = build_network(config.network)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                    pct_start=0.05)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    checkpoint = workdir / "checkpoint.pt"
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        rng.bit_generator.state = state["rng"]["numpy"]
        generator.set_state(state["rng"]["torch"])
    bank = bank or SliceBank.from_items(config.train_items)
    log_path = workdir / "log.csv"
    new_log = not log_path.exists() or start == 0
    log = open(log_path, "w" if new_log else "a", newline="")  # noqa: SIM115 - kept open for the whole run
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "loss", "lr", "seconds"])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=config.name, unit="step", mininterval=5)
    began = time.time()
    losses: list[float] = []
    model.train()
    for step in range(start + 1, config.steps + 1):
        clean = bank.sample(config.batch, config.patch, rng)
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
            _save_checkpoint(checkpoint, model, optimizer, scheduler, step,
                             {"numpy": rng.bit_generator.state, "torch": generator.get_state()})
    log.close()
    if bar is not None:
        bar.close()
    model.eval()
    return {"model": model, "parameters": count_parameters(model), "steps": config.steps,
            "seconds": time.time() - began, "losses": losses,
            "final_loss": float(np.mean(losses[-100:])) if losses else float("nan")}
