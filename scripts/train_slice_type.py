"""Train the slice-type classifier (models/slice_type2d): the encoder of the synthetic-slice quality measures.

    python scripts/train_slice_type.py --threads 1 --steps 600

Seven types (``medscan.synth.quality.SLICE_TYPES``) on the synthesis training slices (128 x 128 class grids, model
units); augmented with flips, small shifts, contrast (gamma) changes and noise so that it scores anatomy and
contrast, not the exact training pixels. Accuracy on the held-out subjects goes into the card.
Its own loop, not the shared trainer's (restoration tasks on SliceBank patches): a classifier with class-balanced
draws from the cached synthesis slices; the log (CSV + TensorBoard) is the trainer's ``TrainLog`` in ``--workdir``,
shipping ``medscan.train.runs.ship``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medscan.nets.builders import build_network, count_parameters  # noqa: E402
from medscan.synth.data import SYNTH_HELDOUT, SYNTH_TRAIN, cached_slices  # noqa: E402
from medscan.synth.quality import SLICE_TYPES, encode, slice_type  # noqa: E402
from medscan.train.runs import ship  # noqa: E402
from medscan.train.trainer import TrainLog  # noqa: E402

NAME = "slice_type2d"
NETWORK = {"kind": "slice_classifier", "args": {"channels": [16, 32, 64, 128], "outputs": len(SLICE_TYPES)}}


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(images)
    for i, image in enumerate(images):
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = np.roll(image, tuple(rng.integers(-8, 9, 2)), axis=(0, 1))
        unit = np.clip((image + 1) / 2, 0, 1) ** float(np.exp(rng.normal(0, 0.2)))
        unit = unit + rng.normal(0, rng.uniform(0, 0.03), unit.shape)
        out[i] = unit * 2 - 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / NAME, help="where the run's log goes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    train = cached_slices(SYNTH_TRAIN, ROOT / "runs", "synth_train")
    heldout = cached_slices(SYNTH_HELDOUT, ROOT / "runs", "synth_heldout")
    types = np.array([slice_type(label, src) for label, src in zip(train.labels, train.sources, strict=True)])
    counts = np.bincount(types, minlength=len(SLICE_TYPES))
    probabilities = (1.0 / counts[types]) / (1.0 / counts[types]).sum()  # class-balanced batches
    model = build_network(NETWORK)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps)
    args.workdir.mkdir(parents=True, exist_ok=True)
    began, log = time.time(), TrainLog(args.workdir / "log.csv", ["step", "loss", "lr", "seconds"], resume=False)
    losses = []
    model.train()
    for step in range(1, args.steps + 1):
        index = rng.choice(len(types), args.batch, p=probabilities)
        x = torch.from_numpy(augment(train.images[index], rng))[:, None]
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(types[index]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 20 == 0:
            row = [step, f"{np.mean(losses[-20:]):.5f}", f"{schedule.get_last_lr()[0]:.2e}",
                   f"{time.time() - began:.1f}"]
            log.writerow(row)
            log.flush()
            print(",".join(map(str, row)), flush=True)
    log.close()
    model.eval()
    held_types = np.array([slice_type(label, src) for label, src in zip(heldout.labels, heldout.sources, strict=True)])
    _, predicted = encode(model, heldout.images)
    per_type = {SLICE_TYPES[t]: round(float(np.mean(predicted[held_types == t] == t)), 3)
                for t in np.unique(held_types)}
    card = {
        "name": NAME, "version": "1", "task": "slice_type",
        "description": ("Slice-type classifier (7 types: MR brain T1/T1c/T2/FLAIR, CT head/chest/abdomen) on the "
                        "128 x 128 synthesis grids. Its penultimate layer (128 global-average-pooled features) is the "
                        "encoder of the synthetic-slice quality measures (Fréchet distance, precision/recall)."),
        "network": NETWORK, "parameters": count_parameters(model), "types": list(SLICE_TYPES),
        "training": {"train_items": SYNTH_TRAIN, "heldout_items": SYNTH_HELDOUT, "steps": args.steps,
                     "batch": args.batch, "lr": args.lr, "threads": args.threads,
                     "minutes": round((time.time() - began) / 60, 1),
                     "command": f"/work/notes/trainslot python scripts/train_slice_type.py --threads {args.threads} "
                                f"--steps {args.steps}"},
        "evaluation": {"heldout_accuracy": round(float(np.mean(predicted == held_types)), 3),
                       "heldout_accuracy_per_type": per_type, "heldout_slices": len(held_types)},
    }
    print("held-out accuracy", card["evaluation"])
    print("wrote", ship(model, card, NAME, args.workdir, args.models))


if __name__ == "__main__":
    main()
