"""Train the synthetic-slice diffusion model (models/synth_diffusion2d) on a time budget, resumably.

    python scripts/train_synth.py --threads 1 --minutes 40            # train (resumes from runs/synth_diffusion2d)
    python scripts/train_synth.py --export-only                       # write the card from the last checkpoint

Epsilon-prediction DDPM (1000 steps, scaled-linear betas) on 128 x 128 axial slices of ``SYNTH_TRAIN``; the class
label is replaced by "none" 15 % of the time and the lesion mask (where the slice has one) is given 70 % of the time,
so one network samples unconditionally, per class, and with a lesion mask. The learning rate follows a cosine over
the time budget (not a step count: the machine's speed varies), and the shipped weights are the EMA of the weights.
Its own loop, not the shared trainer's (a restoration task on patches, by step count): a diffusion model with a noise
schedule, EMA weights and a time budget; checkpoints and the log (CSV + TensorBoard) go through
``medscan.train.trainer``, export through ``medscan.train.runs``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medscan.nets.builders import build_network, count_parameters  # noqa: E402
from medscan.nets.weights import sha256_of  # noqa: E402
from medscan.resources import CT05_HELDOUT_SUBJECTS  # noqa: E402
from medscan.synth.data import (  # noqa: E402
    CLASSES,
    CT_WINDOW,
    GRID,
    LESION_MASKS,
    MR_UNITS,
    NONE_CLASS,
    SYNTH_HELDOUT,
    SYNTH_TRAIN,
    SynthSlices,
    cached_slices,
    subject_of,
)
from medscan.synth.sampler import SCHEDULE  # noqa: E402
from medscan.train.runs import add_export_checkpoint, ship  # noqa: E402
from medscan.train.trainer import load_checkpoint, open_log, save_checkpoint  # noqa: E402

NAME = "synth_diffusion2d"
NETWORK = {"kind": "synth_denoiser", "args": {"channels": [32, 64, 64], "attention": [False, False, False],
                                              "res_blocks": 1, "num_classes": NONE_CLASS + 1, "unshuffle": 4}}


def sampling_weights(labels: np.ndarray, sources: list[str]) -> np.ndarray:
    """Per-slice probabilities. Classes are weighted by the square root of their size (small classes seen more
    often than their share, but not so often that 28 CT head slices are learned by heart); within a class, each
    patient by the square root of its slices, so the patients with one or two slices (Stony Brook) add anatomy
    that a 100-slice volume would otherwise drown."""
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    per_class = np.sqrt(counts) / np.sqrt(counts).sum()
    subjects = np.array([f"{label}:{subject_of(source)}" for label, source in zip(labels, sources, strict=True)])
    _, inverse, per_subject = np.unique(subjects, return_inverse=True, return_counts=True)
    weights = 1.0 / np.sqrt(per_subject[inverse])
    for label in range(len(CLASSES)):
        members = labels == label
        if members.any():
            weights[members] *= per_class[label] / weights[members].sum()
    return weights / weights.sum()


def make_batch(data: SynthSlices, probabilities: np.ndarray, batch: int, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    index = rng.choice(len(data.labels), size=batch, p=probabilities)
    images = data.images[index].copy()
    masks = data.masks[index].astype(np.float32)
    flip = rng.random(batch) < 0.5  # left-right mirror: anatomy is near-symmetric, lesions are not tied to a side
    images[flip] = images[flip, :, ::-1]
    masks[flip] = masks[flip, :, ::-1]
    has_mask = masks.reshape(batch, -1).max(1) > 0
    masks[has_mask & (rng.random(batch) >= 0.7)] = 0.0
    labels = data.labels[index].copy()
    labels[rng.random(batch) < 0.15] = NONE_CLASS
    return (torch.from_numpy(np.ascontiguousarray(images))[:, None], torch.from_numpy(labels),
            torch.from_numpy(np.ascontiguousarray(masks))[:, None])


def history(workdir: Path, ema_start: int) -> str:
    """What the weights started from: other weights (``--init``) and/or an earlier target (``--reset-ema``)."""
    parts = []
    init = workdir / "init.json"
    if init.exists():
        source = json.loads(init.read_text())
        parts.append(f"initialised from {Path(source['weights']).name} (sha256 {source['sha256'][:12]})")
    if ema_start:
        parts.append(f"steps 1-{ema_start} epsilon-prediction, then v-prediction from those weights (EMA restarted)")
    return "; ".join(parts)


def logged_loss(log: Path, rows: int = 5) -> float | None:
    """Mean training loss of the last ``rows`` log rows (20 steps each): the card's figure for --export-only."""
    if not log.exists():
        return None
    lines = log.read_text().strip().splitlines()[1:]
    values = [float(line.split(",")[1]) for line in lines[-rows:]]
    return float(np.mean(values)) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=40.0, help="training time budget (wall clock)")
    parser.add_argument("--until", default="", help="UTC HH:MM: stop then at the latest (a late slot shortens the run)")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / NAME)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    add_export_checkpoint(parser, "models/synth_diffusion2d (the EMA weights)")
    parser.add_argument("--export-only", dest="export_checkpoint", action="store_true", help="the same")
    parser.add_argument("--init", type=Path, default=None,
                        help="start a new run from these weights (e.g. models/synth_diffusion2d.safetensors)")
    parser.add_argument("--reset-ema", action="store_true",
                        help="restart the weight average from the current weights (after changing the target)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = cached_slices(SYNTH_TRAIN, args.workdir.parent, "synth_train")
    probabilities = sampling_weights(data.labels, data.sources)
    model = build_network(NETWORK)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    checkpoint = args.workdir / "checkpoint.pt"
    elapsed_file = args.workdir / "elapsed.json"
    start = load_checkpoint(checkpoint, rng, generator, model=model, ema=ema, optimizer=optimizer)
    if args.init and not start:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(args.init))
        ema.load_state_dict(model.state_dict())
        (args.workdir / "init.json").write_text(json.dumps({"weights": str(args.init),
                                                            "sha256": sha256_of(args.init)}))
    commands_file = args.workdir / "commands.json"  # a resumed run's card lists every run that made its weights
    commands = json.loads(commands_file.read_text()) if start and commands_file.exists() else []
    if not args.export_checkpoint:
        commands.append("python scripts/train_synth.py " + " ".join(sys.argv[1:]))
        commands_file.write_text(json.dumps(commands, indent=1))
    elapsed = json.loads(elapsed_file.read_text())["seconds"] if start and elapsed_file.exists() else 0.0
    budget = args.minutes * 60
    if args.until:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        hour, minute = (int(v) for v in args.until.split(":"))
        stop = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        budget = max(60.0, min(budget, elapsed + (stop - now).total_seconds()))
        print(f"time budget {budget / 60:.1f} min", flush=True)
    from monai.networks.schedulers import DDPMScheduler

    scheduler = DDPMScheduler(**SCHEDULE)
    log, writer = open_log(args.workdir / "log.csv", ["step", "loss", "lr", "seconds"], resume=start > 0)
    step, losses, began = start, [], time.time() - elapsed
    ema_start_file = args.workdir / "ema_start.json"
    if args.reset_ema and not args.export_checkpoint:
        ema.load_state_dict(model.state_dict())
        ema_start_file.write_text(json.dumps({"step": start}))
    ema_start = json.loads(ema_start_file.read_text())["step"] if ema_start_file.exists() else 0
    model.train()
    while not args.export_checkpoint and time.time() - began < budget:
        step += 1
        fraction = (time.time() - began) / budget
        lr = args.lr * min(1.0, step / 100) * (0.5 * (1 + np.cos(np.pi * min(fraction, 1.0))) * 0.95 + 0.05)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels, masks = make_batch(data, probabilities, args.batch, rng)
        noise = torch.randn(images.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.num_train_timesteps, (len(images),), generator=generator)
        noisy = scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
        target = (scheduler.get_velocity(images, noise, timesteps) if SCHEDULE["prediction_type"] == "v_prediction"
                  else noise)
        loss = torch.nn.functional.mse_loss(model(noisy, timesteps, labels, masks), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(0.998, (1 + step - ema_start) / (10 + step - ema_start))
        with torch.no_grad():
            for target, source in zip(ema.parameters(), model.parameters(), strict=True):
                target.lerp_(source, 1 - decay)
            for target, source in zip(ema.buffers(), model.buffers(), strict=True):
                target.copy_(source)
        losses.append(loss.item())
        if step % 20 == 0:
            writer.writerow([step, f"{np.mean(losses[-20:]):.6f}", f"{lr:.2e}", f"{time.time() - began:.1f}"])
            log.flush()
            print(f"step {step} loss {np.mean(losses[-20:]):.4f} lr {lr:.2e} {time.time() - began:.0f}s", flush=True)
        if step % 100 == 0:
            save_checkpoint(checkpoint, step, rng, generator, model=model, ema=ema, optimizer=optimizer)
            elapsed_file.write_text(json.dumps({"seconds": time.time() - began}))
    if not args.export_checkpoint:
        save_checkpoint(checkpoint, step, rng, generator, model=model, ema=ema, optimizer=optimizer)
        elapsed_file.write_text(json.dumps({"seconds": time.time() - began}))
    log.close()
    seconds = json.loads(elapsed_file.read_text())["seconds"] if elapsed_file.exists() else 0.0
    counts = {cls.name: int((data.labels == i).sum()) for i, cls in enumerate(CLASSES)}
    card = {
        "name": NAME, "version": "2", "task": "synthesize",
        "description": ("Denoising diffusion model (DDPM training, DDIM sampling) of 128 x 128 axial slices, "
                        "conditioned on modality + body region (or 'none': unconditional) and optionally on a lesion "
                        "mask. Outputs are synthetic: CT in HU through a fixed window, MR in arbitrary units."),
        "network": NETWORK, "parameters": count_parameters(ema),
        "classes": [{"modality": c.modality, "region": c.region, "fov_mm": c.fov_mm,
                     "train_slices": counts[c.name]} for c in CLASSES],
        "grid": GRID, "ct_window_hu": list(CT_WINDOW), "mr_units": MR_UNITS, "schedule": SCHEDULE,
        "training": {"train_items": SYNTH_TRAIN, "heldout_items": SYNTH_HELDOUT,
                     "split": ("by subject: held out TCGA fg_6692 (MR brain, 4 contrasts), the Philips chest CT ct04 "
                               f"and the Stony Brook COVID-19 patients {', '.join(CT05_HELDOUT_SUBJECTS)} (torso CT); "
                               "CT head has no held-out subject"),
                     "lesion_masks": {folder: mask for folder, mask in LESION_MASKS.items()
                                      if any(item.startswith(folder) for item in SYNTH_TRAIN)},
                     "steps": step, "batch": args.batch, "lr": args.lr, "ema_decay": 0.998,
                     "prediction": SCHEDULE["prediction_type"],
                     "history": history(args.workdir, ema_start),
                     "class_dropout": 0.15, "mask_given": 0.7, "threads": args.threads,
                     "minutes": round(seconds / 60, 1),
                     "final_loss": float(np.mean(losses[-100:])) if losses else logged_loss(args.workdir / "log.csv"),
                     "command": " ; then ".join(commands)},
    }
    print("wrote", ship(ema, card, NAME, args.workdir, args.models))


if __name__ == "__main__":
    main()
