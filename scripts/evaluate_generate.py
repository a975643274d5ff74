"""Evaluate the filling models against classical baselines on held-out scans (issue 8, items 1 and 2).

    python scripts/evaluate_generate.py inpaint fill_slices --json runs/eval_generate.json --cards
    python scripts/evaluate_generate.py inpaint --quick          # smoke run: one CT and one MR slice

Protocol (shared with ``evaluate_restore.py`` through ``medscan.train.metrics``):

* Items: ``HELDOUT_ITEMS`` only (split by subject; CT and MR), slices spread over the body section, metrics on
  each clean slice's 0.5-99.5 percentile window (data_range 1); mean +- sd over slices; seconds per output slice
  (wall and process CPU) on one thread. Our models run exactly as the operations run them
  (``medscan.ops.fill.fill_with_uncertainty``: physical units, the slice's own window, four flips averaged).
* inpaint: one seeded hole per slice covering 10-25 % of the slice, its shape cycling through blob, ellipse,
  box, strokes and truncated-FOV edge (``medscan.degrade.masks.region_mask``). PSNR and SSIM INSIDE the hole
  (SSIM map averaged over the hole). Two cases for ours: ``in-slice`` (the neighbouring slices intact) and
  ``slab`` (the same hole on both neighbours, i.e. pure 2-D). Baselines (2-D, so the same in both cases):
  biharmonic (``skimage.restoration.inpaint_biharmonic``) and OpenCV Telea (``cv2.inpaint``, radius 5, on the
  slice mapped to 16 bits).
* fill_slices: the whole volume with slices removed — every other slice (odd indices; the last kept), and
  seeded single-slice gaps — refilled along the slice axis; scored on generated slices only (up to ``--slices``
  per item, spread over the body section). Baselines: linear and cubic-spline interpolation along the slice
  axis through the measured slices (``np.interp``-equivalent, ``scipy.interpolate.CubicSpline``).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from medscan.degrade.masks import REGION_KINDS, row_mask
from medscan.ops.fill import interpolate_slices
from medscan.train.data import HELDOUT_ITEMS, intensity_window
from medscan.train.evaluation import heldout_parser, run_tasks
from medscan.train.metrics import (
    Timed,
    body_mask,
    choose_slices,
    load_volume,
    normalise,
    pm,
    psnr,
    slice_record,
    slice_seed,
    ssim,
    summarize,
    timed,
)

MODELS = {"inpaint": "inpaint_unet2d", "fill_slices": "fillslices_flow2d"}
METHODS = {"inpaint": ("ours", "biharmonic", "telea"), "fill_slices": ("ours", "linear", "cubic")}
PRIMARY_BASELINE = {"inpaint": "biharmonic", "fill_slices": "cubic"}
TARGET_DB = {"inpaint": 2.0, "fill_slices": 1.5}
TARGET_SSIM = {"inpaint": 0.05, "fill_slices": None}
LABELS = {"ours": "ours", "biharmonic": "biharmonic (skimage)", "telea": "Telea (OpenCV)",
          "linear": "linear along z", "cubic": "cubic spline along z"}
HOLE_AREA = (0.10, 0.25)
TELEA_RADIUS = 5


# --------------------------------------------------------------------------------------------------
# Inpainting
# --------------------------------------------------------------------------------------------------

def biharmonic(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(np.where(hole, 0.0, image).astype(np.float64), hole).astype(np.float32)


def telea(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """OpenCV Telea on the slice mapped to 16 bits (its float32 path returns garbage in the hole: -0.7 dB)."""
    import cv2

    known = image[~hole]
    lo, hi = float(known.min()), float(known.max())
    scale = 65535.0 / max(hi - lo, 1e-6)
    source = np.round((np.where(hole, lo, image) - lo) * scale).astype(np.uint16)
    filled = cv2.inpaint(source, hole.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    return (filled.astype(np.float32) / scale + lo).astype(np.float32)


_WARMED: set[tuple[int, ...]] = set()


def _ours_fill(model, stacks: np.ndarray, masks: np.ndarray) -> Timed:
    """Our model exactly as the operation runs it (TTA mean); oneDNN's first call per shape kept out of timing."""
    import torch

    from medscan.ops.fill import fill_with_uncertainty

    cpu = torch.device("cpu")
    if stacks.shape not in _WARMED:
        fill_with_uncertainty(stacks[:1], masks[:1], model, cpu)
        _WARMED.add(stacks.shape)
    return timed(lambda: fill_with_uncertainty(stacks, masks, model, cpu)[0])


def _ours_fill_slices(model, volume: np.ndarray, missing: np.ndarray) -> Timed:
    """The missing-slice model exactly as the operation runs it (TTA mean), after one warm-up slice."""
    import torch

    from medscan.ops.fill import fill_missing_slices

    cpu = torch.device("cpu")
    if volume.shape not in _WARMED:
        first = int(np.flatnonzero(missing)[0])
        fill_missing_slices(volume[first - 1:first + 2], np.array([False, True, False]), model, cpu)
        _WARMED.add(volume.shape)
    return timed(lambda: fill_missing_slices(volume, missing, model, cpu)[0])


def evaluate_inpaint(items: tuple[str, ...], per_item: int, model) -> list[dict[str, Any]]:
    from medscan.degrade.masks import region_mask

    records = []
    count = 0
    for item in items:
        volume, modality = load_volume(item)
        for k in choose_slices(volume[1:-1], per_item):
            k += 1  # both neighbours exist
            kind = REGION_KINDS[count % len(REGION_KINDS)]
            count += 1
            rng = np.random.default_rng(slice_seed(item, k, "inpaint"))
            hole = region_mask(volume.shape[1:], rng, HOLE_AREA, kind)
            window = intensity_window(volume[k])
            clean = normalise(volume[k], window)
            baselines = {"biharmonic": timed(lambda c=clean, h=hole: biharmonic(c, h)),
                         "telea": timed(lambda c=clean, h=hole: telea(c, h))}
            stacks = volume[k - 1:k + 2][None]
            for case, extent in (("in-slice hole", (False, True, False)), ("slab hole (pure 2-D)", (True,) * 3)):
                masks = np.stack([hole if on else np.zeros_like(hole) for on in extent])[None]
                ours = _ours_fill(model, stacks, masks)
                outputs = {"ours": Timed(normalise(ours.output[0], window), ours.wall_s, ours.cpu_s), **baselines}
                record = slice_record(item, modality, k, case, mask_kind=kind, mask_fraction=float(hole.mean()))
                for method, result in outputs.items():
                    record["methods"][method] = {"psnr": psnr(clean, result.output, hole),
                                                 "ssim": ssim(clean, result.output, hole),
                                                 "wall_s": result.wall_s, "cpu_s": result.cpu_s}
                records.append(record)
                _print_record(record)
    return records


# --------------------------------------------------------------------------------------------------
# Missing slices
# --------------------------------------------------------------------------------------------------

def evaluate_fill_slices(items: tuple[str, ...], per_item: int, model) -> list[dict[str, Any]]:
    records = []
    for item in items:
        volume, modality = load_volume(item)
        k = volume.shape[0]
        alternate = np.zeros(k, bool)
        alternate[1:k - 1:2] = True
        single = row_mask(k, np.random.default_rng(slice_seed(item, "single gaps")), "single")
        for condition, missing in (("every other slice removed", alternate), ("single-slice gaps", single)):
            holed = np.where(missing[:, None, None], 0.0, volume).astype(np.float32)
            whole = {"ours": _ours_fill_slices(model, holed, missing),
                     "linear": timed(lambda h=holed, m=missing: interpolate_slices(h, m, "linear")),
                     "cubic": timed(lambda h=holed, m=missing: interpolate_slices(h, m, "cubic"))}
            generated = np.flatnonzero(missing)
            chosen = [int(generated[i]) for i in choose_slices(volume[generated], per_item)]
            for z in chosen:
                window = intensity_window(volume[z])
                clean = normalise(volume[z], window)
                body = body_mask(clean)
                record = slice_record(item, modality, z, condition, generated_slices=int(missing.sum()))
                for method, result in whole.items():
                    estimate = normalise(result.output[z], window)
                    record["methods"][method] = {"psnr": psnr(clean, estimate), "ssim": ssim(clean, estimate),
                                                 "psnr_body": psnr(clean, estimate, body) if body.any() else np.nan,
                                                 "wall_s": result.wall_s / len(generated),
                                                 "cpu_s": result.cpu_s / len(generated)}
                records.append(record)
                _print_record(record)
    return records


def _print_record(record: dict[str, Any]) -> None:
    text = " ".join(f"{m} {v['psnr']:.2f}/{v['ssim']:.3f}" for m, v in record["methods"].items())
    name = record["item"].split("/")[-2 if record["item"].endswith("t1.nii.gz") or record["item"].endswith(
        "t2.nii.gz") else -1][:28]
    print(f"  {name:28s} slice {record['slice']:3d} {record['condition'][:26]:26s} PSNR/SSIM {text}", flush=True)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

def aggregate(task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean +- sd per condition and modality, and the margins over the primary baseline."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["condition"], []).append(record)
        groups.setdefault(f"{record['condition']}, {record['modality']}", []).append(record)
    metrics = ("psnr", "ssim", "wall_s", "cpu_s") + (("psnr_body",) if task == "fill_slices" else ())
    baseline = PRIMARY_BASELINE[task]
    tables = {}
    for condition, group in groups.items():
        table: dict[str, Any] = {"slices": len(group), "items": sorted({r["item"] for r in group}), "methods": {}}
        for method in METHODS[task]:
            table["methods"][method] = {metric: summarize([r["methods"][method][metric] for r in group])
                                        for metric in metrics}
        ours = table["methods"]["ours"]
        for method in METHODS[task][1:]:
            other = table["methods"][method]
            table[f"ours_minus_{method}_db"] = ours["psnr"]["mean"] - other["psnr"]["mean"]
            table[f"ours_minus_{method}_ssim"] = ours["ssim"]["mean"] - other["ssim"]["mean"]
        table["baseline"] = baseline
        table["target_db"] = TARGET_DB[task]
        table["target_ssim"] = TARGET_SSIM[task]
        met = table[f"ours_minus_{baseline}_db"] >= TARGET_DB[task]
        if TARGET_SSIM[task] is not None:
            met = met and table[f"ours_minus_{baseline}_ssim"] >= TARGET_SSIM[task]
        table["target_met"] = bool(met)
        tables[condition] = table
    return tables


def print_tables(task: str, tables: dict[str, Any]) -> None:
    where = "inside the hole" if task == "inpaint" else "on the generated slices"
    for condition, table in tables.items():
        print(f"\n### {MODELS[task]}: {condition} — {table['slices']} held-out slices from "
              f"{len(table['items'])} items (PSNR/SSIM {where})\n")
        print("| method | PSNR dB | SSIM | s/slice wall | s/slice CPU |")
        print("|---|---|---|---|---|")
        for method in METHODS[task]:
            m = table["methods"][method]
            print(f"| {LABELS[method]} | {pm(m['psnr'], 2)} | {pm(m['ssim'], 4)} | {pm(m['wall_s'], 3)} | "
                  f"{pm(m['cpu_s'], 3)} |")
        baseline = table["baseline"]
        target = f"≥ {table['target_db']:+.1f} dB" + (f" and {table['target_ssim']:+.2f} SSIM"
                                                     if table["target_ssim"] is not None else "")
        others = ", ".join(f"{LABELS[m]} {table[f'ours_minus_{m}_db']:+.2f} dB / {table[f'ours_minus_{m}_ssim']:+.4f}"
                           for m in METHODS[task][1:])
        print(f"\nours − {others} (target over {LABELS[baseline]} {target}: "
              f"{'met' if table['target_met'] else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = heldout_parser(__doc__, 5, "1 slice of one CT and one MR item")
    parser.add_argument("tasks", nargs="+", choices=sorted(MODELS))
    args = parser.parse_args(argv)
    if args.quick:
        items, per_item = (HELDOUT_ITEMS[0], HELDOUT_ITEMS[2]), 1
    else:
        items, per_item = HELDOUT_ITEMS, args.slices

    def evaluate(task: str, model: Any) -> tuple[list[dict], dict[str, Any]]:
        return (evaluate_inpaint if task == "inpaint" else evaluate_fill_slices)(items, per_item, model), {}

    return run_tasks("evaluate_generate.py", argv, args, items, per_item, MODELS, evaluate, aggregate, print_tables)


if __name__ == "__main__":
    sys.exit(main())
