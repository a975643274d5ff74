"""Train the EXPERIMENTAL unpaired MR->CT (pseudo-CT) model shipped as models/pseudo_ct_cyclegan2d.

    python scripts/train_pseudo_ct.py --steps 3000 --minutes 38 --threads 1 --workdir runs/pseudo_ct  # resumes
    python scripts/train_pseudo_ct.py --workdir runs/pseudo_ct --export-checkpoint         # ship the latest checkpoint

No CT+MR pair of one patient exists here, so this is CycleGAN-style unpaired training on 2-D slices: two small
generators (MR->CT, CT->MR; ``medscan.nets.cyclegan.TranslatorGenerator``), two spectral-norm patch
discriminators (``medscan.nets.esrgan.PatchDiscriminator``, the one the GAN super-resolution trains), LSGAN
adversarial losses, cycle L1 (MR->CT->MR and CT->MR->CT) and identity L1. Its own loop, not the shared trainer's
(which trains one network on one task): four networks and two optimisers; checkpoints and the log (CSV + TensorBoard)
go through ``medscan.train.trainer`` (resumable, same random streams), export through ``medscan.train.runs``.

Data (split by subject, a subset of ``medscan.train.data.TRAIN_ITEMS``; nothing of ``HELDOUT_ITEMS`` is seen):
MR = the T1-weighted training volumes (head T1 with skull, one skull-stripped glioma T1 and T1c, one chest T1);
CT = every training CT (head GE, abdomen, abdomen-pelvis, aorta). The body regions do not match: the MR is
mostly brain, and the only head CT is one GE patient (28 slices), so head CT is sampled half of the time.
Volumes are resampled to 2 mm isotropic; slices of every orientation with both sides >= the crop are used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from medscan.io import load
from medscan.nets.builders import build_network, count_parameters
from medscan.nets.cyclegan import CT_WINDOW_HU, GRID_MM, MR_PERCENTILES, ct_to_unit, mr_to_unit
from medscan.nets.esrgan import PatchDiscriminator
from medscan.nets.weights import save_model
from medscan.train.data import DATA_ROOT, HELDOUT_ITEMS, TRAIN_ITEMS
from medscan.train.runs import (
    add_config_options,
    add_export_checkpoint,
    config_options,
    from_checkpoint,
    last_log_row,
    ship,
    training_command,
)
from medscan.train.trainer import load_checkpoint, open_log, save_checkpoint

NAME = "pseudo_ct_cyclegan2d"
NAME_CT2MR = "pseudo_ct_cyclegan2d_ct2mr"
# (item, sampling weight): T1-weighted MR only (one contrast: T2/FLAIR would make the MR domain ambiguous).
MR_ITEMS = (("train/mr01_head_t1_3d_sag_uih.nii.gz", 0.35), ("paired/brain_tcga_du_7294/t1.nii.gz", 0.25),
            ("paired/brain_tcga_du_7294/t1c.nii.gz", 0.15), ("train/mr02_chest_heart_t1_3d_siemens.nii.gz", 0.25))
CT_ITEMS = (("train-extra/ct03_head_ge_4mm_detilted.nii.gz", 0.25),
            ("train-extra/ct03_head_ge_7mm_detilted.nii.gz", 0.25),
            ("train/ct01_upper_abdomen_siemens.nii.gz", 0.1), ("train/ct02_abdomen_pelvis_3mm.nii.gz", 0.1),
            ("labelled/ct_abdomen_totalseg_example/ct.nii.gz", 0.1),
            ("labelled/ct_aorta_totalseg_example/ct.nii.gz", 0.2))
assert all(item in TRAIN_ITEMS for item, _ in (*MR_ITEMS, *CT_ITEMS)), "train only on TRAIN_ITEMS (subject split)"
LOG_FIELDS = ["step", "adv_g", "cycle", "identity", "d_ct", "d_mr", "lr", "seconds"]


@dataclass
class CycleConfig:
    name: str = NAME
    features: int = 12
    blocks: int = 5
    d_features: int = 16
    steps: int = 3000
    batch: int = 2
    patch: int = 80
    lr: float = 2e-4
    w_cycle: float = 10.0
    w_identity: float = 5.0
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 100
    minutes: float = 0.0  # wall-clock budget (0: none): the run ends at whichever of steps / minutes comes first
    mr_items: list[list[Any]] = field(default_factory=lambda: [list(x) for x in MR_ITEMS])
    ct_items: list[list[Any]] = field(default_factory=lambda: [list(x) for x in CT_ITEMS])

    @property
    def network(self) -> dict[str, Any]:
        return {"kind": "translator_generator", "args": {"features": self.features, "blocks": self.blocks}}

    def progress(self, step: int, seconds: float) -> float:
        """How far the run is (0..1): by steps, or by the wall-clock budget when that is nearer its end."""
        done = step / self.steps
        return max(done, seconds / (60 * self.minutes)) if self.minutes > 0 else done

    def lr_at(self, progress: float) -> float:
        """Constant for the first half, then linear decay to a tenth (CycleGAN's schedule, shortened)."""
        return self.lr if progress <= 0.5 else self.lr * (1 - 0.9 * min(1.0, (progress - 0.5) / 0.5))


def to_grid(volume: np.ndarray, spacing: tuple[float, float, float], order: int = 1) -> np.ndarray:
    """(slices, rows, cols) volume with spacing (col, row, slice) mm -> ``GRID_MM`` isotropic."""
    factors = (spacing[2] / GRID_MM, spacing[1] / GRID_MM, spacing[0] / GRID_MM)
    return ndimage.zoom(np.asarray(volume, np.float32), factors, order=order, prefilter=False)


@dataclass
class DomainBank:
    """Normalised 2 mm slices of one domain (all orientations), sampled per volume by weight as crops."""

    views: list[list[np.ndarray]]  # per volume: its slices
    weights: np.ndarray
    foreground: float  # a pixel above this (in [-1, 1]) is body, not air

    @classmethod
    def build(cls, items: list[list[Any]], modality: str, patch: int) -> DomainBank:
        views, weights = [], []
        for item, weight in items:
            scan = load(DATA_ROOT / item)
            volume = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0]
            grid = to_grid(volume, scan.spacing)
            unit = ct_to_unit(grid) if modality == "CT" else mr_to_unit(grid)
            slices = []
            for axis in range(3):
                view = np.moveaxis(unit, axis, 0)
                if min(view.shape[1:]) < patch:
                    continue
                body = (view > (-0.6 if modality == "CT" else -0.8)).mean(axis=(1, 2))
                slices += [np.ascontiguousarray(s) for s, b in zip(view, body, strict=True) if b > 0.1]
            if not slices:
                raise ValueError(f"{item}: no slice of at least {patch} px at {GRID_MM} mm")
            views.append(slices)
            weights.append(weight)
            print(f"{modality} {item}: {len(slices)} slices {unit.shape}", flush=True)
        w = np.asarray(weights, np.float64)
        return cls(views=views, weights=w / w.sum(), foreground=-0.6 if modality == "CT" else -0.8)

    def sample(self, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
        out = np.empty((n, 1, size, size), np.float32)
        filled = 0
        while filled < n:
            slices = self.views[int(rng.choice(len(self.views), p=self.weights))]
            image = slices[int(rng.integers(len(slices)))]
            h, w = image.shape
            y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
            crop = image[y:y + size, x:x + size]
            if (crop > self.foreground).mean() < 0.25 and rng.random() < 0.9:  # mostly body, some edges
                continue
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[filled, 0] = crop
            filled += 1
        return torch.from_numpy(out)


def _lsgan(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(logits, torch.full_like(logits, target))


def _critic(disc: PatchDiscriminator, x: torch.Tensor) -> torch.Tensor:
    return disc((x + 1) / 2)  # PatchDiscriminator expects [0, 1] images


def train(config: CycleConfig, workdir: Path) -> dict[str, Any]:
    """Train (or resume) in ``workdir``; returns both generators and the step reached."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    (workdir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    g_ct, g_mr = build_network(config.network), build_network(config.network)  # MR->CT, CT->MR
    d_ct, d_mr = PatchDiscriminator(config.d_features), PatchDiscriminator(config.d_features)
    opt_g = torch.optim.Adam([*g_ct.parameters(), *g_mr.parameters()], lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_ct.parameters(), *d_mr.parameters()], lr=config.lr, betas=(0.5, 0.999))
    rng = np.random.default_rng(config.seed)
    stream = torch.Generator().manual_seed(config.seed)
    parts = {"model": g_ct, "model_ct2mr": g_mr, "disc_ct": d_ct, "disc_mr": d_mr, "optimizer": opt_g,
             "optimizer_d": opt_d}
    checkpoint = workdir / "checkpoint.pt"
    start = load_checkpoint(checkpoint, rng, stream, **parts)
    mr_bank = DomainBank.build(config.mr_items, "MR", config.patch)
    ct_bank = DomainBank.build(config.ct_items, "CT", config.patch)
    log, writer = open_log(workdir / "log.csv", LOG_FIELDS, resume=start > 0)
    began = time.time() - log.seconds_logged  # a resumed run counts on: the card's seconds are the whole training
    history: dict[str, list[float]] = {k: [] for k in LOG_FIELDS[1:6]}
    step = start
    for step in range(start + 1, config.steps + 1):
        progress = config.progress(step, time.time() - began)
        lr = config.lr_at(progress)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        mr, ct = mr_bank.sample(config.batch, config.patch, rng), ct_bank.sample(config.batch, config.patch, rng)
        fake_ct, fake_mr = g_ct(mr), g_mr(ct)
        cycle = F.l1_loss(g_mr(fake_ct), mr) + F.l1_loss(g_ct(fake_mr), ct)
        identity = F.l1_loss(g_ct(ct), ct) + F.l1_loss(g_mr(mr), mr)
        for p in (*d_ct.parameters(), *d_mr.parameters()):
            p.requires_grad_(False)
        adv = _lsgan(_critic(d_ct, fake_ct), 1.0) + _lsgan(_critic(d_mr, fake_mr), 1.0)
        for p in (*d_ct.parameters(), *d_mr.parameters()):
            p.requires_grad_(True)
        loss = adv + config.w_cycle * cycle + config.w_identity * identity
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        loss_d_ct = 0.5 * (_lsgan(_critic(d_ct, ct), 1.0) + _lsgan(_critic(d_ct, fake_ct.detach()), 0.0))
        loss_d_mr = 0.5 * (_lsgan(_critic(d_mr, mr), 1.0) + _lsgan(_critic(d_mr, fake_mr.detach()), 0.0))
        opt_d.zero_grad(set_to_none=True)
        (loss_d_ct + loss_d_mr).backward()
        opt_d.step()
        for key, value in zip(LOG_FIELDS[1:6], (adv, cycle, identity, loss_d_ct, loss_d_mr), strict=True):
            history[key].append(float(value.detach()))
        last = step == config.steps or progress >= 1.0
        if step % 20 == 0 or last:
            means = [f"{np.mean(history[k][-20:]):.5f}" for k in LOG_FIELDS[1:6]]
            writer.writerow([step, *means, f"{lr:.2e}", f"{time.time() - began:.1f}"])
            log.flush()
            print(f"step {step} {time.time() - began:.0f}s: "
                  + " ".join(f"{k}={v}" for k, v in zip(LOG_FIELDS[1:6], means, strict=True)), flush=True)
        if step % config.checkpoint_every == 0 or last:
            save_checkpoint(checkpoint, step, rng, stream, **parts)
        if last:
            break
    log.close()
    g_ct.eval()
    g_mr.eval()
    return {"model": g_ct, "model_ct2mr": g_mr, "steps": step}


WARNING = ("EXPERIMENTAL, NOT VALIDATED: trained UNPAIRED (no CT and MR of the same patient exist here), on mostly "
           "brain MR and mostly chest/abdomen CT with one head CT patient; HU values are plausible-looking, not "
           "measured, and must not be used for dose planning, attenuation correction or diagnosis.")


def _card(config: CycleConfig, model: torch.nn.Module, steps: int, workdir: Path, command: str, *,
          direction: str) -> dict[str, Any]:
    last = last_log_row(workdir)
    mr_to_ct = direction == "MR->CT"
    return {
        "name": config.name if mr_to_ct else NAME_CT2MR,
        "version": "1",
        "task": "pseudo_ct" if mr_to_ct else "pseudo_ct_cycle",
        "experimental": True,
        "validated": False,
        "warning": WARNING,
        "description": (
            f"EXPERIMENTAL {direction} translation (CycleGAN-style, unpaired). "
            + ("Turns a T1-weighted MR slice into a pseudo-CT slice in HU. " if mr_to_ct else
               "The CT->MR generator of the same training: used only by scripts/evaluate_pseudo_ct.py for the "
               "cycle-consistency figures, never by an operation. ")
            + f"ResNet generator ({config.features} features, {config.blocks} residual blocks at 1/4 resolution, no "
            "normalisation layers, tanh), trained against spectral-norm patch discriminators with LSGAN + "
            f"{config.w_cycle:g} x cycle L1 + {config.w_identity:g} x identity L1. Slices at {GRID_MM:g} mm; CT "
            f"window {CT_WINDOW_HU[0]:g}..{CT_WINDOW_HU[1]:g} HU -> [-1, 1]; MR volume percentile window "
            f"{MR_PERCENTILES[0]:g}-{MR_PERCENTILES[1]:g} -> [-1, 1]. " + WARNING),
        "network": config.network,
        "parameters": count_parameters(model),
        "normalisation": {"ct_window_hu": list(CT_WINDOW_HU), "grid_mm": GRID_MM,
                          "mr_percentiles": list(MR_PERCENTILES)},
        "data": {"mr": [item for item, _ in config.mr_items], "ct": [item for item, _ in config.ct_items],
                 "split": "by subject; training items are a subset of medscan.train.data.TRAIN_ITEMS, nothing of "
                          f"HELDOUT_ITEMS ({', '.join(HELDOUT_ITEMS)}) is seen",
                 "body_region_mismatch": "MR: head (T1 with skull; skull-stripped glioma T1/T1c) and one chest; CT: "
                                         "one head patient (GE, 28 slices, ct03 4 mm + 7 mm parts) and four "
                                         "chest/abdomen volumes. No paired CT+MR."},
        "training": {**asdict(config), "command": command, "steps_completed": steps,
                     "seconds": round(float(last.get("seconds", 0))), "minutes": round(float(last.get("seconds", 0))
                                                                                   / 60, 1),
                     "final": last, "device": "cpu, 1 thread", "log": f"models/{config.name}.train_log.csv"},
        "evaluation": {},
    }


OPTIONS = ("steps", "batch", "patch", "features", "blocks", "d_features", "seed", "threads", "lr", "w_cycle",
           "w_identity", "minutes")  # CycleConfig fields set from the command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_options(parser, CycleConfig(), OPTIONS)
    parser.add_argument("--workdir", type=Path, default=Path("runs") / NAME)
    parser.add_argument("--models", type=Path, default=None, help="where to write the model (default: models/)")
    add_export_checkpoint(parser, "the models")
    args = parser.parse_args(argv)
    workdir = args.workdir
    command = training_command()
    if args.export_checkpoint:  # the run's own config, not this command line's defaults
        run = from_checkpoint(workdir, CycleConfig, parts=("model", "model_ct2mr"))
        config, g_ct, g_mr, steps = run["config"], run["model"], run["model_ct2mr"], run["steps"]
    else:
        config = CycleConfig(**config_options(args, OPTIONS))
        result = train(config, workdir)
        g_ct, g_mr, steps = result["model"], result["model_ct2mr"], result["steps"]
    path = ship(g_ct, _card(config, g_ct, steps, workdir, command, direction="MR->CT"), config.name, workdir,
                args.models)
    save_model(g_mr, _card(config, g_mr, steps, workdir, command, direction="CT->MR"), NAME_CT2MR, args.models)
    print(f"wrote {path} and {NAME_CT2MR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
