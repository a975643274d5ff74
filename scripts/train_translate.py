"""Train the conditional MR contrast translator (pix2pix-style), leave one paired subject out.

    python scripts/train_translate.py --heldout ms19 --threads 1   # fold -> models/folds/translate_loso_ms19
    python scripts/train_translate.py --heldout none --ship translate_mr2d   # all four subjects, shipped
    python scripts/train_translate.py --heldout ms19 --export-checkpoint     # write the latest checkpoint

One generator (``translator_unet``: source slice + source/target one-hot planes) covers every direction of
``DIRECTIONS``. Phase 1 (steps 1..pretrain-steps): L1 only. Phase 2: pix2pix loss, ``w_l1`` * L1 (100) plus the
non-saturating adversarial loss of the shared spectral-norm ``PatchDiscriminator`` (medscan.nets.esrgan), made
conditional: it sees the candidate target with the source slice and the target one-hot planes. Crops are
1 mm axial; the output is zeroed outside the brain (the non-zero region of the skull-stripped source). Resumes
from ``runs/translate_<train>/checkpoint.pt``.
Its own loop, not the shared trainer's (one network, one loss): a generator and a conditional discriminator with two
optimisers and a two-phase schedule; checkpoints and the log (CSV + TensorBoard) go through ``medscan.train.trainer``,
export through ``medscan.train.runs``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medscan.nets.builders import build_network, count_parameters
from medscan.nets.esrgan import PatchDiscriminator
from medscan.nets.translator import CONTRASTS
from medscan.train.runs import (
    add_config_options,
    add_export_checkpoint,
    config_options,
    from_checkpoint,
    last_log_row,
    ship,
    training_command,
)
from medscan.train.task_translate import (
    DIRECTIONS,
    FOLDERS,
    SUBJECTS,
    PairedBank,
    fit_priors,
    load_subject,
    training_subjects,
)
from medscan.train.trainer import load_checkpoint, open_log, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LOG_FIELDS = ["step", "phase", "l1", "adversarial", "discriminator", "lr", "seconds"]


@dataclass
class TranslateConfig:
    name: str
    train_subjects: list[str]
    heldout_subject: str  # "" for the model trained on every subject
    features: int = 12
    levels: int = 4
    norm: str = "batch"
    prior: bool = True  # predict a correction to the training subject's conditional-mean LUT
    d_features: int = 16
    pretrain_steps: int = 600
    steps: int = 1000
    batch: int = 8
    patch: int = 96
    lr_pretrain: float = 1e-3
    lr: float = 2e-4
    w_l1: float = 100.0
    w_adversarial: float = 1.0
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 50
    directions: list[list[str]] = field(default_factory=lambda: [list(d) for d in DIRECTIONS])

    @property
    def network(self) -> dict[str, Any]:
        return {"kind": "translator_unet", "args": {"features": self.features, "levels": self.levels,
                                                    "norm": self.norm, "prior": self.prior}}

    def generator_lr(self, step: int) -> float:
        """Phase 1: warm-up then cosine to a tenth; phase 2: pix2pix's constant 2e-4 halving at the end."""
        if step > self.pretrain_steps:
            return self.lr * (0.5 if step > (self.pretrain_steps + self.steps) / 2 else 1.0)
        warm = min(1.0, step / 30)
        progress = step / max(1, self.pretrain_steps)
        return self.lr_pretrain * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def critic_input(source: torch.Tensor, image: torch.Tensor, target_code: torch.Tensor) -> torch.Tensor:
    """What the conditional critic judges: (source, candidate, target one-hot planes)."""
    b, _, h, w = image.shape
    onehot = F.one_hot(target_code, len(CONTRASTS)).to(image.dtype)[:, :, None, None].expand(b, -1, h, w)
    return torch.cat([source, image, onehot], dim=1)


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def train(config: TranslateConfig, workdir: Path) -> dict[str, Any]:
    """Train (or resume) in ``workdir``; returns the generator and the step count."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    (workdir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    net = build_network(config.network)
    critic = PatchDiscriminator(config.d_features, in_channels=2 + len(CONTRASTS))
    opt_g = torch.optim.Adam(net.parameters(), lr=config.lr_pretrain, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(config.seed)
    stream = torch.Generator().manual_seed(config.seed)
    checkpoint = workdir / "checkpoint.pt"
    parts = {"model": net, "discriminator": critic, "optimizer": opt_g, "optimizer_d": opt_d}
    start = load_checkpoint(checkpoint, rng, stream, **parts)
    bank = PairedBank.from_subjects(config.train_subjects)
    priors = fit_priors(bank.volumes, bank.brains, directions=tuple(tuple(d) for d in config.directions)) \
        if config.prior else None
    directions = tuple(tuple(d) for d in config.directions)
    log, writer = open_log(workdir / "log.csv", LOG_FIELDS, resume=start > 0)
    began = time.time() - log.seconds_logged  # a resumed run counts on: the card's seconds are the whole training
    history: dict[str, list[float]] = {k: [] for k in LOG_FIELDS[2:5]}
    net.train()
    for step in range(start + 1, config.steps + 1):
        lr = config.generator_lr(step)
        for group in opt_g.param_groups:
            group["lr"] = lr
        source, target, brain, a, t, prior = bank.sample(config.batch, config.patch, rng, directions, priors)
        fake = net(source, a, t, prior) * brain
        l1 = F.l1_loss(fake, target)
        adversarial_phase = step > config.pretrain_steps
        adv = d_loss = torch.zeros(())
        if adversarial_phase:
            for p in critic.parameters():
                p.requires_grad_(False)
            adv = _bce(critic(critic_input(source, fake, t)), real=True)
            for p in critic.parameters():
                p.requires_grad_(True)
            loss = config.w_l1 * l1 + config.w_adversarial * adv
        else:
            loss = l1
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt_g.step()
        if adversarial_phase:
            d_loss = (_bce(critic(critic_input(source, target, t)), real=True)
                      + _bce(critic(critic_input(source, fake.detach(), t)), real=False)) / 2
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        for key, value in zip(LOG_FIELDS[2:5], (l1, adv, d_loss), strict=True):
            history[key].append(float(value.detach()))
        if step % 20 == 0 or step == config.steps:
            means = [f"{np.mean(history[k][-20:]):.5f}" for k in LOG_FIELDS[2:5]]
            writer.writerow([step, 2 if adversarial_phase else 1, *means, f"{lr:.2e}", f"{time.time() - began:.1f}"])
            log.flush()
            print(f"step {step}: " + " ".join(f"{k}={v}" for k, v in zip(LOG_FIELDS[2:5], means, strict=True))
                  + f" {time.time() - began:.0f}s", flush=True)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, step, rng, stream, **parts)
    log.close()
    net.eval()
    return {"model": net, "steps": config.steps, "priors": priors}


def card(config: TranslateConfig, model: torch.nn.Module, steps: int, workdir: Path, command: str,
         priors: dict | None) -> dict[str, Any]:
    last = last_log_row(workdir)
    directions = ", ".join(f"{a}->{b}" for a, b in config.directions)
    trained = ", ".join(config.train_subjects)
    files = [f"paired/{FOLDERS[s]}/{{t1,t1c,t2,flair}}.nii.gz" for s in config.train_subjects]
    split = (f"by subject: trained on every brain slice of {trained}; " + (
        f"no slice of {config.heldout_subject} seen in training (leave-one-subject-out fold)"
        if config.heldout_subject else "all four paired subjects; its figures are those of the leave-one-subject-out "
                                       "folds in models/folds/translate_loso_*, which never saw their test subject")
        + ". Two TCGA-LGG glioma subjects (BraTS-Toolkit, CC BY 3.0) and two Ljubljana MS subjects (CC BY).")
    return {
        "name": config.name,
        "version": "2",
        "task": "translate",
        "description": ("Conditional MR contrast translation (pix2pix-style): a U-Net "
                        + ("predicting a correction to an intensity look-up table fitted on the training subject "
                           "(the table's answer is also an input channel) " if config.prior else "") +
                        f"({config.levels} stride-2 levels, {config.features} base features, norm: {config.norm}; "
                        "batch norm runs on its running statistics at inference) fed the source slice "
                        "plus one-hot planes naming the source and the target contrast, so one network covers "
                        f"{directions}. Loss: {config.w_l1:g} x L1 + the non-saturating adversarial loss of a "
                        "conditional spectral-norm patch discriminator (source, candidate, target one-hot) after "
                        f"{config.pretrain_steps} L1-only steps. Axial 1 mm slices of a skull-stripped brain; each "
                        "volume divided by the median of its brain (non-zero voxels); output zero outside "
                        "the brain. The output is GENERATED contrast, not a measurement."),
        "network": config.network,
        "parameters": count_parameters(model),
        "contrasts": list(CONTRASTS),
        "directions": [list(d) for d in config.directions],
        "grid_mm": 1.0,
        "normalisation": "volume / median of its non-zero (brain) voxels, negatives clipped to 0",
        "priors": ({key: lut.to_json() for key, lut in priors.items()} if priors else None),
        "priors_note": ("the network's extra input and the base it corrects: per direction, the conditional mean of "
                        f"the target per source-intensity bin on {trained}, brain voxels pooled (256 quantile bins)"),
        "data": {"train": files,
                 "heldout": ([f"paired/{FOLDERS[config.heldout_subject]}/{{t1,t1c,t2,flair}}.nii.gz"]
                             if config.heldout_subject else []),
                 "split": split},
        "training": {**asdict(config), "command": command, "steps_completed": steps,
                     "seconds": round(float(last.get("seconds", 0))),
                     "minutes": round(float(last.get("seconds", 0)) / 60, 1), "final": last, "device": "cpu",
                     "log": f"models/{config.name}.train_log.csv"},
        "evaluation": {},
    }


OPTIONS = ("features", "levels", "d_features", "pretrain_steps", "steps", "batch", "patch", "seed", "threads",
           "lr_pretrain", "lr", "w_l1", "w_adversarial")  # TranslateConfig fields set from the command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", choices=(*SUBJECTS, "none"), required=True,
                        help="the subject left out (the fold); none: train on all four (the shipped model)")
    defaults = TranslateConfig(name="", train_subjects=[], heldout_subject="")
    add_config_options(parser, defaults, OPTIONS)
    parser.add_argument("--norm", choices=("none", "batch"), default=defaults.norm)
    parser.add_argument("--no-prior", dest="prior", action="store_false", help="no LUT prior input")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--ship", default="", help="also write models/<SHIP> (the shipped model)")
    add_export_checkpoint(parser, "the cards")
    args = parser.parse_args(argv)
    heldout = "" if args.heldout == "none" else args.heldout
    name = f"translate_loso_{heldout}" if heldout else "translate_all"
    workdir = args.workdir or ROOT / "runs" / name
    command = training_command()
    if args.export_checkpoint:  # the run's own config, not this command line's defaults
        run = from_checkpoint(workdir, TranslateConfig)
        config, model, steps = run["config"], run["model"], run["steps"]
        directions = tuple(tuple(d) for d in config.directions)
        loaded = [load_subject(s) for s in config.train_subjects]
        priors = fit_priors([v for v, _ in loaded], [b for _, b in loaded], directions=directions) \
            if config.prior else None
    else:
        trained = list(training_subjects(heldout)) if heldout else list(SUBJECTS)
        config = TranslateConfig(name=name, train_subjects=trained, heldout_subject=heldout, norm=args.norm,
                                 prior=args.prior, **config_options(args, OPTIONS))
        result = train(config, workdir)
        model, steps, priors = result["model"], result["steps"], result["priors"]
    targets = [(config.name, ROOT / "models" / "folds")] if heldout else []
    if args.ship:
        targets.append((args.ship, ROOT / "models"))
    for out_name, folder in targets:
        data = card(config, model, steps, workdir, command, priors)
        data["name"] = out_name
        data["training"]["log"] = f"models/{'' if folder.name == 'models' else 'folds/'}{out_name}.train_log.csv"
        path = ship(model, data, out_name, workdir, folder)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
