"""Evaluate sharpen and super-resolve models against classical baselines on held-out scans (issue 3).

    python scripts/evaluate_restore.py sr_x2 sr_x4 sr_z2 sharpen --json runs/eval_restore.json --cards
    python scripts/evaluate_restore.py sr_x2 --quick          # smoke run: one CT and one MR slice

Protocol (shared with ``evaluate_denoise.py`` through ``medscan.train.metrics``):

* Items: ``HELDOUT_ITEMS`` only (split by subject), ``--slices`` slices per item spread over the slices with a
  substantial body section. Metrics on each clean slice's 0.5-99.5 percentile window (data_range 1), whole
  image and inside the body mask; mean +- sd over slices; wall and CPU seconds per output slice, one thread.
* Our models run exactly as the operations run them (``medscan.ops.restore.run_planes``: the degraded slice in
  physical units, normalised to its own window), so the figures are those a user gets.
* sharpen: clean slice blurred with a Gaussian PSF (sigma 1.0, 1.5, 2.0 px) plus 1 % Gaussian noise (seeded per
  slice). Ours is given the true PSF sigma (as RL is; the operation then adds 5 Landweber data-consistency
  iterations) and, in a second row, run blind. Baselines: Richardson-Lucy
  (``skimage.restoration.richardson_lucy``) given the true PSF, and unsharp mask; RL iterations and unsharp
  radius/amount are tuned per sigma on TRAIN slices (grid search, mean PSNR), never on held-out data.
* sr_x2 / sr_x4: the clean slice area-averaged over s x s blocks (what a coarser matrix measures), then restored
  to the original grid. Baselines: bicubic and Lanczos (OpenCV, pixel-centre aligned).
* sr_z2: the whole volume with pairs of slices box-averaged (a slice twice as thick), restored along the slice
  axis; scored on the original slices. Baselines: linear interpolation and Lanczos along the slice axis.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medscan.train.data import HELDOUT_ITEMS, intensity_window
from medscan.train.evaluation import heldout_parser, print_method_table, run_tasks
from medscan.train.metrics import (
    Timed,
    choose_slices,
    heldout_slices,
    in_plane_case,
    load_volume,
    normalise,
    psnr,
    resize,
    score_methods,
    slice_record,
    slice_seed,
    summarize,
    timed,
    warm_timed,
)

MODELS = {"sharpen": "sharpen_edsr2d", "sr_x2": "superres_x2", "sr_x4": "superres_x4", "sr_z2": "superres_z2"}
METHODS = {
    "sharpen": ("input", "ours", "ours_blind", "richardson_lucy", "unsharp"),
    "sr_x2": ("ours", "bicubic", "lanczos"),
    "sr_x4": ("ours", "bicubic", "lanczos"),
    "sr_z2": ("ours", "linear", "lanczos"),
}
PRIMARY_BASELINE = {"sharpen": "richardson_lucy", "sr_x2": "bicubic", "sr_x4": "bicubic", "sr_z2": "linear"}
TARGET_DB = {"sharpen": 0.0, "sr_x2": 1.5, "sr_x4": 1.0, "sr_z2": 1.5}
LABELS = {"input": "blurred input", "ours": "ours", "ours_blind": "ours, blind (PSF not given)",
          "richardson_lucy": "Richardson-Lucy (true PSF, tuned)",
          "unsharp": "unsharp mask (tuned)", "bicubic": "bicubic", "lanczos": "Lanczos", "linear": "linear"}
BLUR_SIGMAS = (1.0, 1.5, 2.0)
BLUR_NOISE = 0.01  # of the window: mild, like a standard-dose reconstruction
RL_GRID = (2, 4, 6, 10, 15, 25, 40, 60, 100)
UNSHARP_GRID = tuple((r, a) for r in (0.5, 1.0, 2.0) for a in (0.25, 0.5, 1.0, 2.0, 4.0))  # radius in PSF sigmas
TUNING_ITEMS = (
    "train/ct01_upper_abdomen_siemens.nii.gz",
    "train-extra/ct03_head_ge_4mm_detilted.nii.gz",
    "train/mr01_head_t1_3d_sag_uih.nii.gz",
    "paired/brain_tcga_du_7294/t2.nii.gz",
)


# --------------------------------------------------------------------------------------------------
# Degradations and classical methods (numpy, on one normalised slice)
# --------------------------------------------------------------------------------------------------

def blur(clean: np.ndarray, sigma: float, noise: float, seed: int) -> np.ndarray:
    """Gaussian-PSF blur plus seeded Gaussian noise, through the project's degradations."""
    import torch

    from medscan.degrade import add_gaussian, gaussian_blur

    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32))[None, None]
    return add_gaussian(gaussian_blur(x, sigma), noise, generator)[0, 0].numpy()


def richardson_lucy(blurred: np.ndarray, sigma: float, iterations: int) -> np.ndarray:
    """scikit-image's Richardson-Lucy with the true PSF; reflect padding and a positive offset make it fair.

    RL assumes positive data and zero outside the image: noise makes some pixels negative and the image edge
    is not zero, so the slice is shifted positive and padded by reflection, then shifted back and cropped.
    """
    from skimage.restoration import richardson_lucy as rl

    from medscan.degrade import gaussian_kernel

    psf = gaussian_kernel(sigma).numpy().astype(np.float64)
    pad = psf.shape[0]
    offset = max(0.0, -float(blurred.min())) + 0.01
    padded = np.pad(np.asarray(blurred, np.float64) + offset, pad, mode="reflect")
    restored = rl(padded, psf, num_iter=iterations, clip=False)
    return (restored[pad:-pad, pad:-pad] - offset).astype(np.float32)


def unsharp(blurred: np.ndarray, radius: float, amount: float) -> np.ndarray:
    from skimage.filters import unsharp_mask

    return unsharp_mask(np.asarray(blurred, np.float64), radius=radius, amount=amount,
                        preserve_range=True).astype(np.float32)


def tune_sharpen(per_item: int) -> dict[str, Any]:
    """RL iterations and unsharp (radius, amount) per sigma, by mean PSNR on TRAIN slices (never held-out)."""
    slices = []
    for item in TUNING_ITEMS:
        volume, _ = load_volume(item)
        slices += [normalise(volume[k], intensity_window(volume[k])) for k in choose_slices(volume, per_item)]
    tuned: dict[str, Any] = {"items": list(TUNING_ITEMS), "slices": len(slices), "rl_grid": list(RL_GRID),
                             "unsharp_grid": [list(g) for g in UNSHARP_GRID], "rl": {}, "unsharp": {}}
    for sigma in BLUR_SIGMAS:
        rl_scores, us_scores = np.zeros(len(RL_GRID)), np.zeros(len(UNSHARP_GRID))
        for index, clean in enumerate(slices):
            blurred = blur(clean, sigma, BLUR_NOISE, slice_seed("sharpen-tuning", index, sigma))
            for g, iterations in enumerate(RL_GRID):
                rl_scores[g] += psnr(clean, richardson_lucy(blurred, sigma, iterations)) / len(slices)
            for g, (radius, amount) in enumerate(UNSHARP_GRID):
                us_scores[g] += psnr(clean, unsharp(blurred, radius * sigma, amount)) / len(slices)
        tuned["rl"][str(sigma)] = RL_GRID[int(np.argmax(rl_scores))]
        radius, amount = UNSHARP_GRID[int(np.argmax(us_scores))]
        tuned["unsharp"][str(sigma)] = [radius * sigma, amount]
        print(f"tuned on {len(slices)} train slices, sigma {sigma}: RL {tuned['rl'][str(sigma)]} iterations "
              f"(PSNR {rl_scores.max():.2f}), unsharp radius {radius * sigma} amount {amount} "
              f"(PSNR {us_scores.max():.2f})", flush=True)
    return tuned


def _cached_tuning(path: Path, per_item: int) -> dict[str, Any]:
    """Baseline tuning depends only on train slices and the grids: computed once, reused while they match."""
    key = {"per_item": per_item, "rl_grid": list(RL_GRID), "unsharp_grid": [list(g) for g in UNSHARP_GRID],
           "sigmas": list(BLUR_SIGMAS), "noise": BLUR_NOISE, "items": list(TUNING_ITEMS)}
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            print(f"baseline tuning reused from {path}: {cached['tuned']['rl']} {cached['tuned']['unsharp']}")
            return cached["tuned"]
    tuned = tune_sharpen(per_item)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "tuned": tuned}, indent=2))
    return tuned


# --------------------------------------------------------------------------------------------------
# Evaluation per task: one record per (slice, condition)
# --------------------------------------------------------------------------------------------------

def _ours(model, planes_phys: np.ndarray, psf_sigma: float | None = None) -> Timed:
    """Our model as the operation runs it: ``sharpen_planes`` for deblurring (PSF sigma or 0 = blind)."""
    import torch

    from medscan.ops.restore import run_planes, sharpen_planes

    cpu = torch.device("cpu")

    def plain() -> np.ndarray:
        return run_planes(planes_phys, model, cpu, batch=1)

    if psf_sigma is None:
        return warm_timed(plain, planes_phys.shape)
    return warm_timed(lambda: sharpen_planes(planes_phys, model, cpu, psf_sigma=psf_sigma), planes_phys.shape,
                      warm=plain)


def evaluate_sharpen(items: tuple[str, ...], per_item: int, model, tuned: dict[str, Any]) -> list[dict[str, Any]]:
    records = []
    for item, modality, volume, k in heldout_slices(items, per_item):
        window = intensity_window(volume[k])
        lo, hi = window
        clean = normalise(volume[k], window)
        for sigma in BLUR_SIGMAS:
            blurred = blur(clean, sigma, BLUR_NOISE, slice_seed(item, k, "blur", sigma))
            ours = _ours(model, (blurred * (hi - lo) + lo)[None], psf_sigma=sigma)
            blind = _ours(model, (blurred * (hi - lo) + lo)[None], psf_sigma=0.0)
            radius, amount = tuned["unsharp"][str(sigma)]
            outputs = {
                "input": Timed(blurred, 0.0, 0.0),
                "ours": Timed(normalise(ours.output[0], window), ours.wall_s, ours.cpu_s),
                "ours_blind": Timed(normalise(blind.output[0], window), blind.wall_s, blind.cpu_s),
                "richardson_lucy": timed(lambda b=blurred, s=sigma: richardson_lucy(b, s, tuned["rl"][str(s)])),
                "unsharp": timed(lambda b=blurred, r=radius, a=amount: unsharp(b, r, a)),
            }
            record = slice_record(item, modality, k, f"blur sigma {sigma} px")
            score_methods(record, clean, outputs)
            records.append(record)
            _print_record(record)
    return records


def evaluate_in_plane(items: tuple[str, ...], per_item: int, model, scale: int) -> list[dict[str, Any]]:
    records = []
    for item, modality, volume, k in heldout_slices(items, per_item):
        low_phys, clean, low, window = in_plane_case(volume[k], scale)
        shape = clean.shape
        ours = _ours(model, low_phys[None])
        outputs = {
            "ours": Timed(normalise(ours.output[0], window), ours.wall_s, ours.cpu_s),
            "bicubic": timed(lambda lo=low, s=shape: resize(lo, s, "bicubic")),
            "lanczos": timed(lambda lo=low, s=shape: resize(lo, s, "lanczos")),
        }
        record = slice_record(item, modality, k, f"in-plane x{scale}")
        score_methods(record, clean, outputs)
        records.append(record)
        _print_record(record)
    return records


def evaluate_through_plane(items: tuple[str, ...], per_item: int, model) -> list[dict[str, Any]]:
    """Thick slices from pairs of slices; every method restores the whole volume, scored on chosen slices.

    Ours runs as the operation's output member does (``super_resolve`` through-plane: ``run_planes`` on the
    (H, K, W) reformats, rows along the slice axis); the operation's flipped copies for its uncertainty map are not
    timed, as in the in-plane rows."""
    import torch

    from medscan.ops.restore import run_planes

    def through_plane(thick: np.ndarray) -> np.ndarray:
        reformats = np.ascontiguousarray(thick.transpose(1, 0, 2))  # (H, K, W)
        return np.ascontiguousarray(run_planes(reformats, model, torch.device("cpu")).transpose(1, 0, 2))

    records = []
    for item in items:
        volume, modality = load_volume(item)
        volume = volume[: (volume.shape[0] // 2) * 2]
        thick = volume.reshape(-1, 2, *volume.shape[1:]).mean(axis=1)
        n_out = volume.shape[0]

        def classical(method: str, thick: np.ndarray = thick, n_out: int = n_out) -> np.ndarray:
            planes = thick.transpose(1, 0, 2)  # (H, K/2, W) reformats, rows along the slice axis
            out = np.stack([resize(p, (n_out, p.shape[1]), method) for p in planes])
            return out.transpose(1, 0, 2)

        ours = timed(lambda t=thick: through_plane(t))
        whole = {"ours": ours, "linear": timed(lambda: classical("linear")),
                 "lanczos": timed(lambda: classical("lanczos"))}
        for k in choose_slices(volume, per_item):
            window = intensity_window(volume[k])
            outputs = {m: Timed(normalise(t.output[k], window), t.wall_s, t.cpu_s) for m, t in whole.items()}
            record = slice_record(item, modality, k, "through-plane x2")
            score_methods(record, normalise(volume[k], window), outputs, per_slice=n_out)
            records.append(record)
            _print_record(record)
    return records


def _print_record(record: dict[str, Any]) -> None:
    text = " ".join(f"{m} {v['psnr']:.2f}" for m, v in record["methods"].items())
    print(f"  {record['item'].split('/')[-2 if record['item'].endswith('.gz') else -1][:28]:28s} slice "
          f"{record['slice']:3d} {record['condition']:18s} PSNR {text}", flush=True)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

def aggregate(task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean +- sd per condition (and over all conditions) and method, with the margin over the baseline."""
    groups: dict[str, list[dict[str, Any]]] = {"all": records}
    for record in records:
        groups.setdefault(record["condition"], []).append(record)
    if len(groups) == 2:  # a single condition: "all" is the same table
        del groups["all"]
    tables = {}
    baseline = PRIMARY_BASELINE[task]
    for condition, group in groups.items():
        table: dict[str, Any] = {"slices": len(group), "items": sorted({r["item"] for r in group}), "methods": {}}
        for method in METHODS[task]:
            table["methods"][method] = {metric: summarize([r["methods"][method][metric] for r in group])
                                        for metric in ("psnr", "psnr_body", "ssim", "ssim_body", "wall_s", "cpu_s")}
        ours, base = table["methods"]["ours"], table["methods"][baseline]
        table["ours_minus_baseline_db"] = ours["psnr"]["mean"] - base["psnr"]["mean"]
        table["ours_minus_baseline_db_body"] = ours["psnr_body"]["mean"] - base["psnr_body"]["mean"]
        for method in METHODS[task]:
            if method not in ("ours", "ours_blind", "input"):
                table[f"ours_minus_{method}_db"] = ours["psnr"]["mean"] - table["methods"][method]["psnr"]["mean"]
        table["baseline"] = baseline
        table["target_db"] = TARGET_DB[task]
        table["target_met"] = bool(table["ours_minus_baseline_db"] >= TARGET_DB[task]
                                   and (task != "sharpen" or table["ours_minus_baseline_db"] > 0))
        tables[condition] = table
    return tables


def print_tables(task: str, tables: dict[str, Any]) -> None:
    for condition, table in tables.items():
        print(f"\n### {MODELS[task]}: {condition} — {table['slices']} held-out slices from "
              f"{len(table['items'])} items\n")
        print_method_table(table, METHODS[task], LABELS)
        print(f"\nours − {LABELS[table['baseline']]}: {table['ours_minus_baseline_db']:+.2f} dB whole, "
              f"{table['ours_minus_baseline_db_body']:+.2f} dB body (target ≥ {table['target_db']:+.1f}: "
              f"{'met' if table['target_met'] else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = heldout_parser(__doc__, 6, "1 slice of one CT and one MR item")
    parser.add_argument("tasks", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--tuning-cache", type=Path, default=Path("runs/sharpen_baseline_tuning.json"),
                        help="reuse the baselines' tuning (train slices only) when grids and slices match")
    args = parser.parse_args(argv)
    if args.quick:
        items, per_item, tuning_per_item = (HELDOUT_ITEMS[0], HELDOUT_ITEMS[1]), 1, 1
    else:
        items, per_item, tuning_per_item = HELDOUT_ITEMS, args.slices, 2

    def evaluate(task: str, model: Any) -> tuple[list[dict], dict[str, Any]]:
        if task == "sharpen":
            tuned = _cached_tuning(args.tuning_cache, tuning_per_item)
            return evaluate_sharpen(items, per_item, model, tuned), {"tuning": tuned}
        if task == "sr_z2":
            return evaluate_through_plane(items, per_item, model), {}
        return evaluate_in_plane(items, per_item, model, 4 if task == "sr_x4" else 2), {}

    return run_tasks("evaluate_restore.py", argv, args, items, per_item, MODELS, evaluate, aggregate, print_tables)


if __name__ == "__main__":
    sys.exit(main())
