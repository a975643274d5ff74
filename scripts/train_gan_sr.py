"""Train the GAN super-resolution model (ESRGAN-style) shipped as models/superres_gan_x<scale>.

    python scripts/train_gan_sr.py --scale 4 --pretrain-steps 1200 --steps 2400 --workdir runs/gan_x4  # resumes
    python scripts/train_gan_sr.py --scale 4 --workdir runs/gan_x4 --export-checkpoint  # ship the latest checkpoint

Phase 1 (steps 1..pretrain-steps): the generator alone, L1 to the original slice (a fidelity start).
Phase 2: L1 + relativistic-average adversarial loss from a spectral-norm patch discriminator + a feature loss
from the encoder of the shipped denoiser ``denoise_unet2d`` (trained here; no downloaded perceptual weights).
The degradation is the one of the fidelity model: area averaging over scale x scale blocks plus faint noise
(``SuperResolveTask``), on the same subject split (``TRAIN_ITEMS``; ``HELDOUT_ITEMS`` never seen).
Its own loop, not the shared trainer's (one network, one loss): a generator and a discriminator with two optimisers
and a two-phase schedule; checkpoints and the log (CSV + TensorBoard) go through ``medscan.train.trainer``, export
through ``medscan.train.runs``.
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
from medscan.nets.esrgan import DenoiserFeatures, PatchDiscriminator, feature_loss
from medscan.nets.weights import load_model
from medscan.train.data import HELDOUT_ITEMS, TRAIN_ITEMS, SliceBank
from medscan.train.runs import (
    add_config_options,
    add_export_checkpoint,
    config_options,
    from_checkpoint,
    last_log_row,
    ship,
    training_command,
)
from medscan.train.tasks import SuperResolveTask
from medscan.train.trainer import load_checkpoint, open_log, save_checkpoint

FEATURE_MODEL = "denoise_unet2d"
LOG_FIELDS = ["step", "phase", "l1", "feature", "adversarial", "discriminator", "hf_ratio", "lr", "seconds"]


@dataclass
class GanConfig:
    name: str
    scale: int = 4
    features: int = 32
    blocks: int = 3
    growth: int = 16
    pretrain_steps: int = 1200
    steps: int = 2400
    batch: int = 8
    patch: int = 96
    lr_pretrain: float = 5e-4
    lr: float = 1e-4
    w_l1: float = 0.1
    w_feature: float = 1.0
    w_adversarial: float = 0.01
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100
    train_items: list[str] = field(default_factory=lambda: list(TRAIN_ITEMS))
    heldout_items: list[str] = field(default_factory=lambda: list(HELDOUT_ITEMS))

    @property
    def network(self) -> dict[str, Any]:
        return {"kind": "esrgan_generator", "args": {"scale": self.scale, "features": self.features,
                                                     "blocks": self.blocks, "growth": self.growth,
                                                     "base": "bicubic"}}

    def generator_lr(self, step: int) -> float:
        """Phase 1: short warm-up then cosine decay to a fifth; phase 2: the constant GAN rate."""
        if step > self.pretrain_steps:
            return self.lr
        warm = min(1.0, step / 50)
        progress = step / max(1, self.pretrain_steps)
        return self.lr_pretrain * warm * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * progress)))


def gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared finite difference along rows and columns: how much fine detail an image carries."""
    return (x.diff(dim=-1) ** 2).mean() + (x.diff(dim=-2) ** 2).mean()


def _relativistic(real: torch.Tensor, fake: torch.Tensor, real_is_real: bool) -> torch.Tensor:
    """RaGAN loss: real logits judged against the mean fake one and vice versa (ESRGAN's discriminator)."""
    ones, zeros = torch.ones_like(real), torch.zeros_like(real)
    a, b = (ones, zeros) if real_is_real else (zeros, ones)
    return (F.binary_cross_entropy_with_logits(real - fake.mean(), a)
            + F.binary_cross_entropy_with_logits(fake - real.mean(), b)) / 2


def train(config: GanConfig, workdir: Path) -> dict[str, Any]:
    """Train (or resume) in ``workdir``; returns the generator and a summary for the card."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    (workdir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    task = SuperResolveTask(scale=config.scale, axis="in-plane")
    generator_net = build_network(config.network)
    critic = PatchDiscriminator(config.features)
    extractor = DenoiserFeatures(load_model(FEATURE_MODEL)[0])
    opt_g = torch.optim.Adam(generator_net.parameters(), lr=config.lr_pretrain, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(config.seed)
    stream = torch.Generator().manual_seed(config.seed)
    checkpoint = workdir / "checkpoint.pt"
    parts = {"model": generator_net, "discriminator": critic, "optimizer": opt_g, "optimizer_d": opt_d}
    start = load_checkpoint(checkpoint, rng, stream, **parts)
    bank = SliceBank.from_items(config.train_items)
    log, writer = open_log(workdir / "log.csv", LOG_FIELDS, resume=start > 0)
    began = time.time() - log.seconds_logged  # a resumed run counts on: the card's seconds are the whole training
    history: dict[str, list[float]] = {k: [] for k in LOG_FIELDS[2:7]}
    generator_net.train()
    for step in range(start + 1, config.steps + 1):
        lr = config.generator_lr(step)
        for group in opt_g.param_groups:
            group["lr"] = lr
        (low,), clean = task.make_batch(bank.sample(config.batch, config.patch, rng), stream)
        fake = generator_net(low)
        l1 = F.l1_loss(fake, clean)
        adversarial_phase = step > config.pretrain_steps
        if adversarial_phase:
            feat = feature_loss(extractor, fake, clean)
            for p in critic.parameters():
                p.requires_grad_(False)
            adv = _relativistic(critic(clean), critic(fake), real_is_real=False)
            for p in critic.parameters():
                p.requires_grad_(True)
            loss = config.w_l1 * l1 + config.w_feature * feat + config.w_adversarial * adv
        else:
            feat = adv = torch.zeros(())
            loss = l1
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator_net.parameters(), 1.0)
        opt_g.step()
        d_loss = torch.zeros(())
        if adversarial_phase:
            d_loss = _relativistic(critic(clean), critic(fake.detach()), real_is_real=True)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        with torch.no_grad():
            hf = float(gradient_energy(fake) / (gradient_energy(clean) + 1e-12))
        for key, value in zip(LOG_FIELDS[2:7], (l1, feat, adv, d_loss, hf), strict=True):
            history[key].append(float(value.detach()) if torch.is_tensor(value) else value)
        if step % 20 == 0 or step == config.steps:
            means = [f"{np.mean(history[k][-20:]):.5f}" for k in LOG_FIELDS[2:7]]
            writer.writerow([step, 2 if adversarial_phase else 1, *means, f"{lr:.2e}", f"{time.time() - began:.1f}"])
            log.flush()
            print(f"step {step}: " + " ".join(f"{k}={v}" for k, v in zip(LOG_FIELDS[2:7], means, strict=True)),
                  flush=True)
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, step, rng, stream, **parts)
    log.close()
    generator_net.eval()
    return {"model": generator_net, "steps": config.steps, "seconds": time.time() - began}


def _card(config: GanConfig, model: torch.nn.Module, steps: int, workdir: Path, command: str) -> dict[str, Any]:
    last = last_log_row(workdir)
    feature_card = json.loads((Path(__file__).resolve().parents[1] / "models" / f"{FEATURE_MODEL}.json").read_text())
    return {
        "name": config.name,
        "version": "1",
        "task": "super_resolve",
        "task_args": {"scale": config.scale, "axis": "in-plane", "gan": True},
        "description": (f"GAN in-plane x{config.scale} super-resolution (ESRGAN-style: {config.blocks} residual-in-"
                        f"residual dense blocks, {config.features} features, growth {config.growth}, pixel-shuffle "
                        "up-sampling, output added to bicubic). Trained on area-averaged slices with L1, a "
                        "relativistic spectral-norm patch discriminator and a feature loss from the first two "
                        f"encoder stages of the shipped denoiser {FEATURE_MODEL} (trained in this project; no "
                        "downloaded perceptual weights). It adds plausible high-frequency detail the fidelity "
                        "model superres_x4 averages away: sharper, at a PSNR cost; the detail is GENERATED. "
                        "Slices are normalised to their 0.5-99.5 percentile window and written back in the "
                        "input's units."),
        "network": config.network,
        "parameters": count_parameters(model),
        "feature_loss": {"model": FEATURE_MODEL, "sha256": feature_card.get("sha256"),
                         "stages": "backbone.model[0] and model[1].submodule[0] (1/2 and 1/4 resolution)",
                         "input": "image plus zero noise-level channels"},
        "training": {**asdict(config), "command": command, "steps_completed": steps,
                     "seconds": round(float(last.get("seconds", 0))), "final": last, "device": "cpu",
                     "log": f"models/{config.name}.train_log.csv"},
        "evaluation": {},
    }


OPTIONS = ("pretrain_steps", "steps", "batch", "patch", "blocks", "features", "seed", "threads", "lr_pretrain", "lr",
           "w_l1", "w_feature", "w_adversarial")  # GanConfig fields set from the command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=(2, 4), default=4)
    add_config_options(parser, GanConfig(name=""), OPTIONS)
    parser.add_argument("--workdir", type=Path)
    add_export_checkpoint(parser)
    args = parser.parse_args(argv)
    name = f"superres_gan_x{args.scale}"
    workdir = args.workdir or Path("runs") / name
    if args.export_checkpoint:  # the run's own config, not this command line's defaults
        run = from_checkpoint(workdir, GanConfig)
        config, model, steps = run["config"], run["model"], run["steps"]
    else:
        config = GanConfig(name=name, scale=args.scale, **config_options(args, OPTIONS))
        result = train(config, workdir)
        model, steps = result["model"], result["steps"]
    path = ship(model, _card(config, model, steps, workdir, training_command()), name, workdir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
