"""Train the learned annotate models, leave-one-subject-out (two subjects per task; the held-out one is never read).

    python scripts/train_annotate.py tumour --train fg_6692 --steps 1500 --threads 1 [--ship tumour_seg2d]
    python scripts/train_annotate.py organs --train abdomen|aorta|both --steps 800 [--ship organ_seg2d]
    python scripts/train_annotate.py dae --train du_7294 --steps 800          # normal-appearance model (anomaly)
    python scripts/train_annotate.py classifier --train fg_6692 --steps 600   # slice-level tumour classifier
    python scripts/train_annotate.py lesions --train ms19 --steps 600 --patch 80  # MS white-matter lesions (FLAIR)

Checkpoints go to runs/annotate/<model>_<train>/ (resumable); the final fold weights are written with their card
to models/folds/<model>_<train> (not listed as shipped models), and with ``--ship NAME`` also into models/.
Evaluation of the held-out subject is done only after training, by scripts/evaluate_annotate.py — no model
selection ever looks at the held-out subject.
Its own loop, not the shared trainer's (restoration tasks on SliceBank patches): the batches are patches with label
masks of one subject (segmentation, classification, a denoising autoencoder); the log (CSV + TensorBoard) is the
trainer's ``TrainLog``, shipping ``medscan.train.runs.ship``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medscan.annotate import learned as L  # noqa: E402
from medscan.annotate.synthetic_lesions import cut_tumour, insert_lesion  # noqa: E402
from medscan.io import load  # noqa: E402
from medscan.nets.builders import build_network, count_parameters  # noqa: E402
from medscan.nets.weights import save_model  # noqa: E402
from medscan.train.data import DATA_ROOT  # noqa: E402
from medscan.train.runs import ship  # noqa: E402
from medscan.train.trainer import TrainLog  # noqa: E402

BRAIN_SUBJECTS = {"du_7294": "labelled/brain_tumour_tcga_du_7294", "fg_6692": "labelled/brain_tumour_tcga_fg_6692"}
CT_SUBJECTS = {"abdomen": "labelled/ct_abdomen_totalseg_example", "aorta": "labelled/ct_aorta_totalseg_example"}
MS_SUBJECTS = {"ms07": "paired/brain_ms_patient07", "ms19": "paired/brain_ms_patient19"}  # expert consensus masks

UNET_SEG = {"arch": "UNet", "spatial_dims": 2, "in_channels": 1, "channels": [16, 32, 64, 128],
            "strides": [2, 2, 2], "num_res_units": 1, "norm": "INSTANCE", "dropout": 0.1}


# -- data -------------------------------------------------------------------------------------------------------------
def load_brain(subject: str) -> dict[str, np.ndarray]:
    """Brain-normalised FLAIR (K, H, W) on the canonical grid, brain mask and whole-tumour mask."""
    folder = DATA_ROOT / BRAIN_SUBJECTS[subject]
    scan = load(folder / "flair.nii.gz")
    seg = load(folder / "tumour_seg_auto.nii.gz").voxels > 0
    image, brain = L.brain_normalise(scan.voxels)
    return {"image": L.canonical_volume(image, scan), "brain": L.canonical_volume(brain, scan),
            "tumour": L.canonical_volume(seg, scan)}


UNENHANCED_BLOOD_HU = (30.0, 50.0)  # the abdomen CT's aorta (TotalSegmentator id 52) is unenhanced: 42 HU
ENHANCED_BLOOD_HU = (150.0, 450.0)  # arterial-phase contrast (the angiogram's lumen averages 265 HU)


def swap_aorta_contrast(image: np.ndarray, aorta: np.ndarray, enhanced: bool, rng: np.random.Generator
                        ) -> np.ndarray:
    """The crop's aorta with the other contrast phase: contrast -> unenhanced blood, unenhanced -> contrast.

    Why: the two CT subjects show the aorta as 265 HU contrast (angiogram) and as 42 HU blood (unenhanced abdomen,
    the same as liver); one channel fitted to both appearances ended up below 0.5 on both (Dice 0), and a fold
    trained on one phase found nothing in the other. The mask is known, so the other phase can be synthesised
    (a uniform blood value with 12 HU texture) on every aorta slice of either subject.
    """
    if not aorta.any():
        return image
    lo, hi = L.CT_WINDOW
    low, high = UNENHANCED_BLOOD_HU if enhanced else ENHANCED_BLOOD_HU
    value = (rng.uniform(low, high) - lo) / (hi - lo)
    texture = rng.normal(0.0, 12.0 / (hi - lo), image.shape).astype(np.float32)
    out = image.copy()
    out[aorta] = value + texture[aorta]
    return out


def organ_pos_weight(datas: list[dict]) -> torch.Tensor:
    """Per-organ BCE foreground weight sqrt(background / foreground) over the labelled subjects, in [1, 8]."""
    fg, total = np.zeros(4), np.zeros(4)
    for d in datas:
        fg += d["masks"].sum(axis=(0, 2, 3)) * d["labelled"]
        total += d["masks"][:, 0].size * d["labelled"]
    ratio = np.where(fg > 0, (total - fg) / np.maximum(fg, 1), 1.0)
    return torch.from_numpy(np.clip(np.sqrt(ratio), 1.0, 8.0)).float()


def organ_thresholds(model: torch.nn.Module, train: str, patch: int) -> dict[str, float]:
    """Per-organ probability threshold that maximises Dice on the TRAINING subject(s) (pooled), 0.1..0.9 in 0.05.

    Chosen on training data only: the held-out subject never sets an operating point.
    """
    subjects = ["abdomen", "aorta"] if train == "both" else [train]
    grid = np.round(np.arange(0.1, 0.91, 0.05), 2)
    inter = np.zeros((4, grid.size))
    sums = np.zeros((4, grid.size))
    model.eval()
    for subject in subjects:
        d = load_ct(subject)
        probs = L.predict_planes(model, d["image"], torch.device("cpu"), roi=patch)
        for c in range(4):
            if d["labelled"][c] == 0:
                continue
            truth = d["masks"][:, c] > 0.5
            for g, t in enumerate(grid):
                pred = probs[:, c] >= t
                inter[c, g] += (pred & truth).sum()
                sums[c, g] += pred.sum() + truth.sum()
    out = {}
    for c in range(4):
        if sums[c].max() > 0:
            scores = 2 * inter[c] / np.maximum(sums[c], 1)
            out[L.ORGAN_NAMES[c + 1]] = float(grid[int(np.argmax(scores))])
    print("organs: thresholds chosen on the training data " + str(out), flush=True)
    return out


def load_ct(subject: str) -> dict[str, np.ndarray]:
    """CT windowed to [0, 1] at 2 mm in-plane, (4, K, H, W) organ masks and which organs are labelled."""
    folder = DATA_ROOT / CT_SUBJECTS[subject]
    scan = load(folder / "ct.nii.gz")
    image = L.canonical_volume(L.ct_normalise(scan.voxels), scan)
    if subject == "abdomen":  # TotalSegmentator v2 "total" ids: spleen 1, kidneys 2/3, liver 5, aorta 52
        seg = load(folder / "organs_seg_auto.nii.gz").voxels.astype(int)
        masks = [seg == 5, seg == 1, (seg == 2) | (seg == 3), seg == 52]
        labelled = [1.0, 1.0, 1.0, 1.0]
    else:  # aorta crop: 1 aorta wall/rest, 2 true lumen, 3 false lumen -> aorta
        seg = load(folder / "aorta_seg_auto.nii.gz").voxels.astype(int)
        zeros = np.zeros(seg.shape, bool)
        masks, labelled = [zeros, zeros, zeros, seg > 0], [0.0, 0.0, 0.0, 1.0]
    masks = np.stack([L.canonical_volume(m.astype(np.float32), scan) for m in masks])
    spacing = scan.spacing[:2]
    image = L.resample_planes(image, spacing, L.CT_MM)
    k = masks.shape[1]
    masks = L.resample_planes(masks.transpose(1, 0, 2, 3).reshape(k, 4, *masks.shape[2:]), spacing, L.CT_MM)
    masks = (masks > 0.5).astype(np.float32)
    slices_with = [np.flatnonzero(masks[:, c].sum(axis=(1, 2)) > 0) for c in range(4)]
    return {"image": image, "masks": masks, "labelled": np.asarray(labelled, np.float32),
            "slices_with": slices_with, "enhanced_aorta": subject == "aorta"}


def crop(arrays: list[np.ndarray], size: int, centre: tuple[int, int] | None, rng: np.random.Generator
         ) -> list[np.ndarray]:
    """Same ``size`` x ``size`` window from each (..., H, W) array, zero-padded; around ``centre`` when given."""
    h, w = arrays[0].shape[-2:]
    if centre is None:
        cj, ci = rng.integers(0, max(h, 1)), rng.integers(0, max(w, 1))
    else:
        jitter = rng.integers(-size // 3, size // 3 + 1, 2)
        cj, ci = centre[0] + jitter[0], centre[1] + jitter[1]
    j0, i0 = int(cj) - size // 2, int(ci) - size // 2
    out = []
    for a in arrays:
        pad = [(0, 0)] * (a.ndim - 2) + [(size, size), (size, size)]
        p = np.pad(a, pad)
        out.append(p[..., j0 + size:j0 + 2 * size, i0 + size:i0 + 2 * size])
    return out


def augment(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, flips: bool, rotate: float,
            intensity: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation/scale (same warp for image and masks), flips, intensity scale, gamma and noise."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    for b in range(n):
        a = math.radians(rng.uniform(-rotate, rotate))
        s = rng.uniform(0.85, 1.15)
        theta[b, :, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * s
        if flips and rng.random() < 0.5:
            theta[b, :, 0] *= -1
        if flips and rng.random() < 0.3:
            theta[b, :, 1] *= -1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    y = (F.grid_sample(y, grid, align_corners=False, padding_mode="zeros") > 0.5).float()
    if intensity:
        scale = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 1, 1, 1))).float()
        gamma = torch.from_numpy(rng.uniform(0.7, 1.45, (n, 1, 1, 1))).float()
        top = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        x = (x.clamp_min(0) / top) ** gamma * top * scale
        x = x + torch.randn_like(x) * torch.from_numpy(rng.uniform(0, 0.06, (n, 1, 1, 1))).float()
    return x, y


def tumour_bank(data: dict[str, np.ndarray]) -> dict[str, list]:
    areas = data["tumour"].sum(axis=(1, 2))
    brain_areas = data["brain"].sum(axis=(1, 2))
    positive = [int(k) for k in np.flatnonzero(areas >= 30)]
    healthy = [int(k) for k in np.flatnonzero((areas == 0) & (brain_areas > 4000))]
    cuts = [c for k in positive if (c := cut_tumour(data["image"][k], data["tumour"][k])) is not None]
    anywhere = [int(k) for k in np.flatnonzero(brain_areas > 1500)]
    return {"positive": positive, "healthy": healthy, "cuts": cuts, "anywhere": anywhere}


def draw_brain_slice(data: dict, bank: dict, rng: np.random.Generator, split: tuple[float, float], real_cut: float
                     ) -> tuple[int, np.ndarray, np.ndarray]:
    """One training slice and its tumour mask (slice index, FLAIR, mask): for a uniform draw r, a slice with tumour
    when r < split[0], a healthy slice with a lesion inserted when r < split[1] (a real tumour cut with probability
    ``real_cut``, else a procedural lesion), else any brain slice."""
    r = rng.random()
    if r < split[0]:
        k = bank["positive"][rng.integers(len(bank["positive"]))]
        return k, data["image"][k], data["tumour"][k]
    if r < split[1]:
        k = bank["healthy"][rng.integers(len(bank["healthy"]))]
        use_real = real_cut > 0 and rng.random() < real_cut
        cut = bank["cuts"][rng.integers(len(bank["cuts"]))] if use_real else None
        return k, *insert_lesion(data["image"][k], data["brain"][k], rng, cut)
    k = bank["anywhere"][rng.integers(len(bank["anywhere"]))]
    return k, data["image"][k], data["tumour"][k]


def sample_brain(data: dict, bank: dict, n: int, size: int, rng: np.random.Generator, *, synthetic_only_procedural=False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A batch of FLAIR patches and tumour masks: real tumour slices, synthetic insertions, any brain slice."""
    xs, ys = [], []
    for _ in range(n):
        k, image, mask = draw_brain_slice(data, bank, rng, (0.4, 0.8), 0.0 if synthetic_only_procedural else 0.6)
        if mask.any() and rng.random() < 0.8:
            js, is_ = np.nonzero(mask)
            centre = (int(js.mean()), int(is_.mean()))
        else:
            js, is_ = np.nonzero(data["brain"][k])
            pick = rng.integers(js.size)
            centre = (int(js[pick]), int(is_[pick]))
        xi, yi = crop([image, mask.astype(np.float32)], size, centre, rng)
        xs.append(xi)
        ys.append(yi)
    return np.stack(xs)[:, None], np.stack(ys)[:, None]


# -- losses ------------------------------------------------------------------------------------------------------------
def dice_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE + soft Dice per class over the batch; ``weight`` (N, C) zeroes classes a subject has no label for;
    ``pos_weight`` (C,) up-weights a small class's foreground pixels in the BCE (class imbalance)."""
    if weight is None:
        weight = torch.ones(logits.shape[:2])
    w = weight[:, :, None, None].expand_as(logits)
    pw = None if pos_weight is None else pos_weight[None, :, None, None]
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pw)
    bce = (bce * w).sum() / w.sum().clamp_min(1)
    p = torch.sigmoid(logits) * w
    t = target * w
    inter = (p * t).sum(dim=(0, 2, 3))
    denom = (p + t).sum(dim=(0, 2, 3))
    has = weight.sum(dim=0) > 0
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return bce + dice[has].mean()


# -- training loop -----------------------------------------------------------------------------------------------------
def train_loop(name: str, network_cfg: dict, batch_fn, loss_fn, steps: int, lr: float, out: Path,
               log_every: int = 25, init: dict | None = None) -> torch.nn.Module:
    """Adam with cosine decay; resumable from ``out/checkpoint.pt``; a CSV log of the training loss.

    ``init``: a state dict to start from (fine-tuning a shipped model with a fresh optimiser and schedule).
    """
    out.mkdir(parents=True, exist_ok=True)
    model = build_network(network_cfg)
    if init is not None:
        model.load_state_dict(init)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start, ckpt = 0, out / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]
        print(f"resumed {name} at step {start}", flush=True)
    log = TrainLog(out / "train_log.csv", ["step", "loss", "lr", "seconds"], resume=start > 0)
    t0, running = time.time(), []
    model.train()
    for step in range(start, steps):
        loss = loss_fn(model, *batch_fn(step))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            log.writerow([step + 1, f"{np.mean(running):.5f}", f"{sched.get_last_lr()[0]:.2e}",
                          f"{time.time() - t0:.1f}"])
            log.flush()
            print(f"{name} step {step + 1}/{steps} loss {np.mean(running):.4f} {time.time() - t0:.0f}s", flush=True)
            running = []
        if (step + 1) % 200 == 0 or step + 1 == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step + 1}, ckpt)
    log.close()
    model.eval()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["tumour", "organs", "dae", "classifier", "lesions"])
    parser.add_argument("--train", required=True, help="training subject (du_7294/fg_6692; abdomen/aorta/both; "
                                                        "ms07/ms19/ms_both)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", default="", help="also write models/<NAME>.safetensors + card")
    parser.add_argument("--init", default="", help="fine-tune from this model (models/folds/NAME, else models/NAME): "
                                                   "its weights, a fresh optimiser and schedule")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fold = f"{args.model}_{args.train}"
    out = ROOT / "runs" / "annotate" / (f"{fold}_from_{args.init}" if args.init else fold)
    command = "python " + " ".join(sys.argv)
    t0 = time.time()
    if args.model == "tumour":
        model, card = train_tumour(args, rng, out)
    elif args.model == "organs":
        model, card = train_organs(args, rng, out)
    elif args.model == "dae":
        model, card = train_dae(args, rng, out)
    elif args.model == "lesions":
        model, card = train_lesions(args, rng, out)
    else:
        model, card = train_classifier(args, rng, out)
    card.update({"version": "1", "command": command, "train_subject": args.train, "steps": args.steps,
                 "batch": args.batch, "patch": args.patch, "lr": args.lr, "threads": args.threads,
                 "train_minutes": round((time.time() - t0) / 60, 1), "parameters": count_parameters(model)})
    if args.init:
        card.update(init_card(args.init))
    if args.model == "organs":
        card["thresholds"] = organ_thresholds(model, args.train, int(args.patch))
    save_model(model, card, fold, ROOT / "models" / "folds")  # every fold, for scripts/evaluate_annotate.py
    if args.ship:
        ship(model, {**card, "name": args.ship}, args.ship, out, log_name="train_log.csv")
    print(f"done {out.name} in {(time.time() - t0) / 60:.1f} min", flush=True)


def init_weights(name: str) -> dict | None:
    """The state dict of model ``name`` (models/folds first, then models/), or None without --init."""
    if not name:
        return None
    from medscan.nets.weights import load_model

    folder = ROOT / "models" / "folds"
    model, _card = load_model(name, folder if (folder / f"{name}.json").exists() else None)
    return model.state_dict()


def init_card(name: str) -> dict:
    """What a fine-tuned card says about the run it started from (its command, steps and minutes)."""
    from medscan.nets.weights import load_model

    folder = ROOT / "models" / "folds"
    _model, card = load_model(name, folder if (folder / f"{name}.json").exists() else None)
    keys = ("name", "command", "steps", "train_minutes", "sha256", "fine_tuned_from")
    return {"fine_tuned_from": {k: card.data.get(k) for k in keys if k in card.data}}


def train_tumour(args, rng, out):
    data = load_brain(args.train)
    bank = tumour_bank(data)
    print(f"tumour: {len(bank['positive'])} tumour slices, {len(bank['healthy'])} healthy slices", flush=True)
    network = {"kind": "plain", "backbone": {**UNET_SEG, "out_channels": 1}}

    def batch(step):
        x, y = sample_brain(data, bank, args.batch, args.patch, rng)
        return augment(torch.from_numpy(x), torch.from_numpy(y), rng, flips=True, rotate=20)

    model = train_loop("tumour", network, batch, lambda m, x, y: dice_bce(m(x), y), args.steps, args.lr, out,
                       init=init_weights(args.init))
    return model, {"task": "segment", "segmentation_task": "brain-tumour", "network": network,
                   "description": "2-D whole-tumour segmentation of skull-stripped axial FLAIR at 1 mm (brain-median "
                                  "normalised); trained on one BraTS-Toolkit pseudo-labelled subject with flips, "
                                  "rotation/scale, gamma, intensity scale, noise and synthetic lesion insertion "
                                  "(the training subject's tumour and procedural lesions pasted into its tumour-free "
                                  "slices).",
                   "input": "FLAIR only (a single series is what a user has; T1c is not used)",
                   "agreement_note": "Dice is agreement with BraTS-Toolkit fusion pseudo-labels, not clinical accuracy"}


def train_organs(args, rng, out):
    subjects = ["abdomen", "aorta"] if args.train == "both" else [args.train]
    datas = [load_ct(s) for s in subjects]
    network = {"kind": "plain", "backbone": {**UNET_SEG, "out_channels": 4}}
    pos_weight = organ_pos_weight(datas)
    print("organs: BCE foreground weights " + ", ".join(f"{L.ORGAN_NAMES[c + 1]} {w:.1f}"
                                                       for c, w in enumerate(pos_weight.tolist())), flush=True)

    def batch(step):
        xs, ys, ws = [], [], []
        for _ in range(args.batch):
            d = datas[rng.integers(len(datas))]
            labelled = [c for c in range(4) if d["labelled"][c] > 0]
            if rng.random() < 0.8:  # class-balanced: an organ uniformly, then a slice with it, centred on it
                organ = labelled[rng.integers(len(labelled))]
                k = int(rng.choice(d["slices_with"][organ]))
                js, is_ = np.nonzero(d["masks"][k, organ])
                pick = rng.integers(js.size)
                centre = (int(js[pick]), int(is_[pick]))
            else:
                k, centre = int(rng.integers(d["image"].shape[0])), None
            m = d["masks"][k]
            xi, yi = crop([d["image"][k], m], args.patch, centre, rng)
            if d["labelled"][3] > 0 and rng.random() < 0.5:
                xi = swap_aorta_contrast(xi, yi[3] > 0.5, d["enhanced_aorta"], rng)
            xs.append(xi[None])
            ys.append(yi)
            ws.append(d["labelled"])
        x, y = augment(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), rng, flips=False,
                       rotate=12, intensity=False)
        x = x * torch.from_numpy(rng.uniform(0.9, 1.1, (len(x), 1, 1, 1))).float()
        x = x + torch.from_numpy(rng.uniform(-0.05, 0.05, (len(x), 1, 1, 1))).float()
        x = x + 0.03 * torch.rand(len(x), 1, 1, 1) * torch.randn_like(x)
        return x, y, torch.from_numpy(np.stack(ws))

    model = train_loop("organs", network, batch, lambda m, x, y, w: dice_bce(m(x), y, w, pos_weight), args.steps,
                       args.lr, out, init=init_weights(args.init))
    return model, {"task": "segment", "segmentation_task": "organs", "network": network,
                   "labels": {str(k): v for k, v in L.ORGAN_NAMES.items()},
                   "bce_pos_weight": {L.ORGAN_NAMES[c + 1]: round(float(w), 2) for c, w in enumerate(pos_weight)},
                   "description": "2-D multi-label organ segmentation of axial CT (HU window -250..350, 2 mm "
                                  "in-plane, LPS in-plane orientation): liver, spleen, kidneys, aorta. Partial labels: "
                                  "the aorta CT contributes only the aorta channel (other channels are masked out "
                                  "of its loss). Class-balanced crops (an organ uniformly, then a slice with it), "
                                  "BCE foreground weight sqrt(background/foreground) capped at 8 per organ, and the "
                                  "aorta given the other contrast phase in half of the crops (angiogram -> unenhanced "
                                  "blood 30-50 HU, unenhanced -> contrast 150-450 HU, textured) so that one aorta "
                                  "channel learns both appearances.",
                   "agreement_note": "Dice is agreement with TotalSegmentator pseudo-labels, not clinical accuracy"}


DAE_CFG = {"arch": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [16, 32, 64, 128],
           "strides": [2, 2, 2], "num_res_units": 1, "norm": "INSTANCE"}
ANOMALY_MM = 2.0


def brain_planes_2mm(data: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = L.resample_planes(data["image"], (1.0, 1.0), ANOMALY_MM)
    brain = L.resample_planes(data["brain"].astype(np.float32), (1.0, 1.0), ANOMALY_MM) > 0.5
    tumour = L.resample_planes(data["tumour"].astype(np.float32), (1.0, 1.0), ANOMALY_MM) > 0.5
    return image, brain, tumour


def coarse_noise(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Kascenas et al. (2022) coarse noise: low-resolution Gaussian noise upsampled, two scales."""
    total = torch.zeros(n, 1, size, size)
    for res, sd in ((8, 0.25), (16, 0.15)):
        low = torch.from_numpy(rng.standard_normal((n, 1, res, res))).float() * sd
        total += F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return total


def train_dae(args, rng, out):
    from scipy import ndimage

    data = load_brain(args.train)
    image, brain, tumour = brain_planes_2mm(data)
    keep = np.flatnonzero(brain.sum(axis=(1, 2)) > 400)
    # the training subject's own tumour (dilated) is excluded from the loss: normal appearance only
    normal = brain & ~ndimage.binary_dilation(tumour, iterations=3, structure=np.ones((1, 3, 3)))
    size = 128
    network = {"kind": "plain", "backbone": dict(DAE_CFG)}

    def batch(step):
        ks = rng.choice(keep, args.batch)
        x = torch.from_numpy(np.stack([np.pad(image[k], ((0, size - image.shape[1]), (0, size - image.shape[2])))
                                       for k in ks]))[:, None]
        w = torch.from_numpy(np.stack([np.pad(normal[k], ((0, size - image.shape[1]), (0, size - image.shape[2])))
                                       for k in ks]).astype(np.float32))[:, None]
        b = torch.from_numpy(np.stack([np.pad(brain[k], ((0, size - image.shape[1]), (0, size - image.shape[2])))
                                       for k in ks]).astype(np.float32))[:, None]
        if rng.random() < 0.5:
            x, w, b = x.flip(-1), w.flip(-1), b.flip(-1)
        noisy = x + coarse_noise(len(x), size, rng) * b
        return noisy, x, w

    def loss(m, noisy, clean, w):
        return ((m(noisy) - clean).abs() * w).sum() / w.sum().clamp_min(1)

    model = train_loop("dae", network, batch, loss, args.steps, args.lr, out)
    return model, {"task": "anomaly", "network": network, "pixel_mm": ANOMALY_MM,
                   "description": "Denoising autoencoder (coarse noise, Kascenas et al. 2022) of normal FLAIR "
                                  "appearance at 2 mm, trained only on the training subject's brain outside its "
                                  "(dilated) tumour; the positive reconstruction residual is the anomaly map."}


def load_ms(subject: str) -> dict:
    """An MS subject's brain-normalised FLAIR, brain and expert lesion mask on the canonical grid, and its lesions
    as (k, j, i) voxel lists, one per 3-D connected component (26-connected)."""
    from scipy import ndimage

    folder = DATA_ROOT / MS_SUBJECTS[subject]
    scan = load(folder / "flair.nii.gz")
    lesions = load(folder / "lesions_consensus.nii.gz").voxels > 0
    image, brain = L.brain_normalise(scan.voxels)
    lesions = L.canonical_volume(lesions, scan)
    labels, count = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    voxels = [np.argwhere(labels == n) for n in range(1, count + 1)]
    return {"image": L.canonical_volume(image, scan), "brain": L.canonical_volume(brain, scan), "lesions": lesions,
            "components": voxels, "slices": np.flatnonzero(L.canonical_volume(brain, scan).sum(axis=(1, 2)) > 1500)}


# box of a procedural lesion: mostly small (2-10 mm across; most consensus lesions are under 60 voxels), a third
# confluent-sized (10-30 mm), so that a subject with only small lesions still shows the network large ones (v1, small
# only: the fold trained on patient07 missed most of patient19's 47 mL confluent lesion)
MS_SYNTHETIC_PX = ((4, 14), (14, 40))
MS_ATTRIBUTION = ("Ljubljana MS database, CC BY (via muschellij2/open_ms_data): Lesjak Z, Galimzianova A, Koren A, "
                  "et al. A novel public MR image dataset of multiple sclerosis patients with lesion segmentations "
                  "based on multi-rater consensus. Neuroinformatics 2018;16:51-63. "
                  "https://doi.org/10.1007/s12021-017-9348-7")
MS_LARGE_SHARE = 0.35


def sample_ms(datas: list[dict], n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """FLAIR patches and lesion masks: 45% centred on an expert lesion (a lesion uniformly, then one of its voxels:
    the many small lesions count as much as the large confluent one), 25% a procedural lesion (``MS_SYNTHETIC_PX``)
    pasted into any brain slice (its mask added to the expert one), 30% anywhere in the brain."""
    xs, ys = [], []
    for _ in range(n):
        d = datas[rng.integers(len(datas))]
        r = rng.random()
        if r < 0.45 and d["components"]:
            voxels = d["components"][rng.integers(len(d["components"]))]
            k, cj, ci = (int(v) for v in voxels[rng.integers(len(voxels))])
            image, mask = d["image"][k], d["lesions"][k]
        else:
            k = int(d["slices"][rng.integers(len(d["slices"]))])
            image, mask = d["image"][k], d["lesions"][k]
            pasted = np.zeros(mask.shape, bool)
            if r < 0.7:
                size_px = MS_SYNTHETIC_PX[int(rng.random() < MS_LARGE_SHARE)]
                image, pasted = insert_lesion(image, d["brain"][k], rng, None, size_px=size_px)
                mask = mask | pasted
            js, is_ = np.nonzero(pasted if pasted.any() else d["brain"][k])
            pick = rng.integers(js.size)
            cj, ci = int(js[pick]), int(is_[pick])
        xi, yi = crop([image, mask.astype(np.float32)], size, (cj, ci), rng)
        xs.append(xi)
        ys.append(yi)
    return np.stack(xs)[:, None], np.stack(ys)[:, None]


def train_lesions(args, rng, out):
    subjects = ["ms07", "ms19"] if args.train == "ms_both" else [args.train]
    datas = [load_ms(s) for s in subjects]
    print("lesions: " + ", ".join(f"{s} {int(d['lesions'].sum())} lesion voxels in {len(d['components'])} lesions"
                                  for s, d in zip(subjects, datas, strict=True)), flush=True)
    network = {"kind": "plain", "backbone": {**UNET_SEG, "out_channels": 1}}

    def batch(step):
        x, y = sample_ms(datas, args.batch, args.patch, rng)
        return augment(torch.from_numpy(x), torch.from_numpy(y), rng, flips=True, rotate=15)

    model = train_loop("lesions", network, batch, lambda m, x, y: dice_bce(m(x), y), args.steps, args.lr, out,
                       init=init_weights(args.init))
    return model, {"task": "segment", "segmentation_task": "brain-lesions", "network": network,
                   "train_subjects": [MS_SUBJECTS[s] for s in subjects],
                   "split": ("both MS subjects: no held-out MS subject remains (figures: the two folds)"
                             if len(subjects) > 1 else f"trained on {MS_SUBJECTS[subjects[0]]} only; "
                             f"{MS_SUBJECTS[{'ms07': 'ms19', 'ms19': 'ms07'}[subjects[0]]]} never read (held out)"),
                   "description": "2-D white-matter lesion segmentation of skull-stripped axial FLAIR at 1 mm "
                                  "(brain-histogram normalised, as the tumour model); trained on the Ljubljana MS "
                                  "expert consensus masks of the training subject(s) only, with flips, rotation/scale, "
                                  "gamma, intensity scale, noise and procedural lesions (2-10 mm, a third 10-30 mm) "
                                  "pasted into brain slices.",
                   "input": "FLAIR only (a single series is what a user has)",
                   "data_attribution": MS_ATTRIBUTION,
                   "agreement_note": "Dice against the Ljubljana expert multi-rater consensus (real manual "
                                     "annotation) of 1-2 subjects: a small-sample figure, not a clinical validation"}


CLS_CFG = {"channels": [16, 32, 64]}


def train_classifier(args, rng, out):
    data = load_brain(args.train)
    bank = tumour_bank(data)
    network = {"kind": "slice_classifier", "args": dict(CLS_CFG)}
    size = 128

    def batch(step):
        xs, ys = [], []
        for _ in range(args.batch):
            _, img, msk = draw_brain_slice(data, bank, rng, (0.35, 0.55), 0.5)
            img = L.resample_planes(img[None], (1.0, 1.0), ANOMALY_MM)[0]
            xs.append(np.pad(img, ((0, size - img.shape[0]), (0, size - img.shape[1]))))
            ys.append(float(msk.sum() >= 50))
        x = torch.from_numpy(np.stack(xs))[:, None]
        y = torch.tensor(ys)[:, None, None, None].expand_as(x).contiguous()
        x, _ = augment(x, y, rng, flips=True, rotate=15)
        return x, torch.tensor(ys)

    def loss(m, x, y):
        return F.binary_cross_entropy_with_logits(m(x)[:, 0], y)

    model = train_loop("classifier", network, batch, loss, args.steps, args.lr, out)
    return model, {"task": "classify", "network": network, "pixel_mm": ANOMALY_MM,
                   "description": "Slice-level tumour classifier (tiny CNN, global average pool) on brain-normalised "
                                  "FLAIR at 2 mm; positive = at least 50 mm^2 of pseudo-label tumour in the slice; "
                                  "trained with synthetic lesion insertion. Explained with LayerGradCam."}


if __name__ == "__main__":
    main()
