"""Fill-slices by slice spacing and gap pattern on held-out subjects, against linear and cubic interpolation
measured in the same run (issue 25). The table it writes into the model card is what the ``fill_slices``
operation reads to decide where the model fills and where a cubic spline does
(``medscan.ops.fill.choose_fill_method``).

    python scripts/evaluate_fill_spacing.py --json runs/eval_fill_spacing.json --cards
    python scripts/evaluate_fill_spacing.py --quick        # smoke run: two items, two slices each

Protocol:

* Items: ``SPACING_HELDOUT_ITEMS``: subjects that no slice of the model's training came from (the card's
  ``train_items``, ``medscan.train.data.TRAIN_ITEMS``; checked at start), thin (1 mm glioma fg_6692 and MS
  patient 19 resampled to atlas space, 1.5 mm MPRAGE VS-SEG-001, the 1 mm Colin27 average) and thick (5 mm
  chest CT, 4.8 mm brain MR). ``TRAINING_SUBJECT_ITEMS`` (the 1.5 mm aorta CT angiography, 2 and 3 mm abdomen
  CT, and the one MR acquired at 1 mm as it is stored, the UIH 3D GRE) are scored too, apart: they are the
  only CT below 5 mm, the held-out 1 mm MR were resampled to an atlas grid, and a loss there vetoes the model
  (a model that loses on what it saw loses on new subjects), while a win there counts for nothing.
* Spacings: each volume along its stored slice axis at its native step, and re-sliced by keeping every k-th
  slice (k = 2, 3, 5; ``RESLICE``), so the step is physical: 1 mm volumes give 2, 3 and 5 mm, the 1.5 mm
  MPRAGE 3, 4.5 and 7.5 mm, the 5 mm CT 10 mm. The slices stay as thin as measured (gaps between them), which is
  what a thin-slice acquisition sampled at a coarser step looks like, not a thick-slice reconstruction. Steps are
  grouped to the nearest 0.5 mm (4.8 mm counts as 5 mm).
* Patterns (``medscan.degrade.masks.row_mask``, seeded by item, step and pattern): single-slice gaps (1 slice
  missing, 1-5 measured slices between gaps), every other slice (odd indices missing), 2-3-slice gaps. The
  first and last slices stay measured.
* Methods: ours exactly as the operation runs it (``fill_missing_slices``: the pair either side, flow, U-Net,
  four flips averaged; each gap computed on its own, which is what the operation computes too), linear
  interpolation and a cubic spline through all measured slices (``interpolate_slices``, scipy's CubicSpline).
* Metrics: on up to ``--slices`` generated slices per item, step and pattern, spread over the body section;
  each clean slice's 0.5-99.5 percentile window maps to 0..1; PSNR over the whole slice and inside the body mask,
  SSIM (Wang et al.). Mean over slices; the gain is ours minus cubic, pooled and per modality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medscan.degrade.masks import row_mask
from medscan.ops.fill import (
    PATTERNS,
    choose_fill_method,
    fill_missing_slices,
    interpolate_slices,
    measured_win,
)
from medscan.train.data import TRAIN_ITEMS, intensity_window
from medscan.train.metrics import body_mask, choose_slices, load_volume, normalise, psnr, slice_seed, ssim

MODEL = "fillslices_flow2d"
SPACING_HELDOUT_ITEMS = (
    "paired/brain_tcga_fg_6692/t1.nii.gz",
    "paired/brain_tcga_fg_6692/t2.nii.gz",
    "paired/brain_ms_patient19/t1.nii.gz",
    "paired/brain_ms_patient19/t2.nii.gz",
    "train-extra/mr04_brain_t1c_mprage_vsseg001.nii.gz",
    "train-extra/mr05_brain_t1_colin27_average.nii.gz",
    "train-extra/ct04_chest_philips_5mm_kernelB.nii.gz",
    "train/mr03_brain_t1_2d_sag_siemens_dicom",
)
TRAINING_SUBJECT_ITEMS = (
    "labelled/ct_aorta_totalseg_example/ct.nii.gz",
    "train/ct01_upper_abdomen_siemens.nii.gz",
    "train/ct02_abdomen_pelvis_3mm.nii.gz",
    "train/mr01_head_t1_3d_sag_uih.nii.gz",
)
RESLICE = (1, 2, 3, 5)
MAX_SPACING_MM = 10.5
MIN_SLICES = 12
ROW_PATTERN = {"single-slice gaps": "single", "every other slice": "alternate", "2-3-slice gaps": "short"}
METHODS = ("ours", "cubic", "linear")


def native_step(item: str) -> float:
    """The slice step (mm) along the stored slice axis of a data item."""
    from medscan.io import load
    from medscan.train.data import DATA_ROOT

    return float(np.linalg.norm(load(DATA_ROOT / item).affine[:3, 2]))


def pattern_mask(k: int, pattern: str, seed: int) -> np.ndarray:
    """(k,) missing slices of ``pattern``; every other slice is the odd indices (the last slice kept)."""
    if pattern == "every other slice":
        missing = np.zeros(k, bool)
        missing[1:k - 1:2] = True
        return missing
    return row_mask(k, np.random.default_rng(seed), ROW_PATTERN[pattern])


def ours_on_gaps(model, volume: np.ndarray, missing: np.ndarray, slices: list[int]) -> dict[int, np.ndarray]:
    """Our fill of each slice in ``slices``, computed on its gap alone (the measured slices either side and the
    missing ones between): what ``fill_missing_slices`` computes for the whole volume, slice for slice."""
    import torch

    measured = np.flatnonzero(~missing)
    out: dict[int, np.ndarray] = {}
    for z in slices:
        if z in out:
            continue
        before, after = int(measured[measured < z].max()), int(measured[measured > z].min())
        filled, _ = fill_missing_slices(volume[before:after + 1], missing[before:after + 1], model,
                                        torch.device("cpu"))
        for offset in range(1, after - before):
            out[before + offset] = filled[offset]
    return out


def evaluate_item(item: str, role: str, model, per_item: int, patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per-slice records of one item at every spacing and pattern."""
    volume, modality = load_volume(item)
    step0 = native_step(item)
    records = []
    for k in RESLICE:
        spacing = step0 * k
        sub = np.ascontiguousarray(volume[::k])
        if spacing > MAX_SPACING_MM or len(sub) < MIN_SLICES:
            continue
        for pattern in patterns:
            missing = pattern_mask(len(sub), pattern, slice_seed(item, k, pattern))
            holed = np.where(missing[:, None, None], 0.0, sub).astype(np.float32)
            generated = np.flatnonzero(missing)
            chosen = [int(generated[i]) for i in choose_slices(sub[generated], per_item)]
            baselines = {m: interpolate_slices(holed, missing, m) for m in ("cubic", "linear")}
            ours = ours_on_gaps(model, holed, missing, chosen)
            for z in chosen:
                window = intensity_window(sub[z])
                clean = normalise(sub[z], window)
                body = body_mask(clean)
                record: dict[str, Any] = {"item": item, "role": role, "modality": modality, "pattern": pattern,
                                          "spacing_mm": round(spacing * 2) / 2, "step_mm": round(spacing, 3),
                                          "slice": z, "methods": {}}
                for method, output in (("ours", ours[z]), *((m, baselines[m][z]) for m in ("cubic", "linear"))):
                    estimate = normalise(output, window)
                    record["methods"][method] = {
                        "psnr": psnr(clean, estimate), "ssim": ssim(clean, estimate),
                        "psnr_body": psnr(clean, estimate, body) if body.any() else float("nan")}
                records.append(record)
            last = records[-1]["methods"] if records else {}
            name = "/".join(item.split("/")[-2:])[-36:]
            print(f"  {name:36s} {spacing:5.2f} mm {pattern:18s} {len(chosen)} slices; last: "
                  + " ".join(f"{m} {v['psnr']:.2f}" for m, v in last.items()), flush=True)
    return records


def subject(item: str) -> str:
    """The subject of a data item: its case folder for paired/ and labelled/ (one subject, several contrasts),
    else the file or DICOM folder itself (every held-out file here is its own subject)."""
    parts = item.split("/")
    return "/".join(parts[:2]) if parts[0] in ("paired", "labelled") else item


def _mean(records: list[dict], method: str, metric: str) -> float:
    values = np.array([r["methods"][method][metric] for r in records], float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (pattern, spacing): held-out means of each method, the gains over cubic (pooled, inside
    the body, per modality) and the training subjects' gain per modality where measured; the rows the operation
    reads. Missing figures are None."""
    rows = []
    keys = sorted({(r["pattern"], r["spacing_mm"]) for r in records}, key=lambda k: (PATTERNS.index(k[0]), k[1]))
    modalities = ("CT", "MR")

    def gain(part: list[dict]) -> float | None:
        return round(_mean(part, "ours", "psnr") - _mean(part, "cubic", "psnr"), 2) if part else None

    for pattern, spacing in keys:
        group = [r for r in records if (r["pattern"], r["spacing_mm"]) == (pattern, spacing)]
        held = [r for r in group if r["role"] == "held-out"]
        trained = [r for r in group if r["role"] == "training subject"]
        row: dict[str, Any] = {"pattern": pattern, "spacing_mm": spacing, "slices": len(held),
                               "items": len({r["item"] for r in held}),
                               "subjects": len({subject(r["item"]) for r in held})}
        for method in METHODS:
            row[f"{method}_psnr"] = round(_mean(held, method, "psnr"), 2) if held else None
        row["gain_db"] = gain(held)
        row["gain_over_linear_db"] = (round(row["ours_psnr"] - row["linear_psnr"], 2) if held else None)
        row["gain_body_db"] = (round(_mean(held, "ours", "psnr_body") - _mean(held, "cubic", "psnr_body"), 2)
                               if held else None)
        row["ours_ssim"] = round(_mean(held, "ours", "ssim"), 4) if held else None
        row["cubic_ssim"] = round(_mean(held, "cubic", "ssim"), 4) if held else None
        for modality in modalities:
            row[f"gain_{modality}_db"] = gain([r for r in held if r["modality"] == modality])
        row["training_slices"] = len(trained)
        for modality in modalities:
            row[f"training_gain_{modality}_db"] = gain([r for r in trained if r["modality"] == modality])
        for modality in modalities:
            row[f"model_beats_cubic_{modality}"] = ("yes" if measured_win(row, modality)[0] else "no") if held \
                else "veto only"
        rows.append(row)
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("\n| pattern | spacing mm | held-out slices | ours dB | cubic dB | linear dB | gain dB | gain body dB | "
          "per modality | training-subject gain dB | model beats cubic CT / MR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{k[5:-3]} {v:+.2f}" for k, v in r.items()
                        if k.startswith("gain_") and k[5:-3] in ("CT", "MR") and v is not None)
        trained = ", ".join(f"{k[14:-3]} {v:+.2f}" for k, v in r.items()
                            if k.startswith("training_gain_") and v is not None)

        def f(key: str, sign: bool = False, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "" if v is None else (f"{v:+.2f}" if sign else f"{v:.2f}")

        print(f"| {r['pattern']} | {r['spacing_mm']:.1f} | {r['slices']} | {f('ours_psnr')} | {f('cubic_psnr')} | "
              f"{f('linear_psnr')} | {f('gain_db', True)} | {f('gain_body_db', True)} | {per} | "
              f"{trained} | {r['model_beats_cubic_CT']} / {r['model_beats_cubic_MR']} |")


DECISION_SPACINGS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0)


def decision_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the operation does with this table: the method per pattern and modality at common slice steps."""
    card = {"evaluation": {"by_spacing": {"rows": rows}}}
    out = []
    for pattern in PATTERNS:
        for modality in ("CT", "MR"):
            record: dict[str, Any] = {"pattern": pattern, "modality": modality}
            for spacing in DECISION_SPACINGS:
                method, _ = choose_fill_method(card, pattern, spacing, modality)
                record[f"{spacing:g} mm"] = "model" if method == "model" else "cubic"
            out.append(record)
    return out


def write_card(rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path | None:
    """Put the table under ``evaluation.by_spacing`` in the model card, keeping the other evaluations (only the
    card changes, so the weights' sha256 still holds); None when the model has no card."""
    from medscan.train.evaluation import edit_card

    def add(card: dict[str, Any]) -> None:
        by_spacing = {**meta, "rows": rows, "decisions": decision_rows(rows)}
        card["evaluation"] = {**(card.get("evaluation") or {}), "by_spacing": by_spacing}

    return edit_card(MODEL, add, what=None)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medscan.nets.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=6, help="scored slices per item, spacing and pattern")
    parser.add_argument("--quick", action="store_true", help="smoke run: two items, two slices, one pattern")
    parser.add_argument("--json", type=Path, help="write the rows and per-slice values here")
    parser.add_argument("--cards", action="store_true", help="record the table in the model card")
    parser.add_argument("--rows-from", type=Path, metavar="JSON",
                        help="rebuild the table from the per-slice values of an earlier --json run (no inference)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, card = load_model(MODEL)
    trained_on = set(card.data.get("training", {}).get("train_items") or TRAIN_ITEMS)
    if set(SPACING_HELDOUT_ITEMS) & trained_on:
        raise SystemExit(f"held-out items overlap the training items: {set(SPACING_HELDOUT_ITEMS) & trained_on}")
    items = [(i, "held-out") for i in SPACING_HELDOUT_ITEMS]
    items += [(i, "training subject") for i in TRAINING_SUBJECT_ITEMS]
    patterns = PATTERNS
    per_item = args.slices
    if args.quick:
        items, patterns, per_item = [items[4], items[8]], PATTERNS[:1], 2
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    print(f"## {MODEL} v{card.version} sha256 {card.data['sha256'][:12]}", flush=True)
    if args.rows_from:
        earlier = json.loads(args.rows_from.read_text())
        if earlier.get("sha256") != card.data["sha256"]:
            raise SystemExit(f"{args.rows_from}: measured on other weights than the shipped {MODEL}")
        records, argv = earlier["per_slice"], earlier["script"].split()[2:]
        per_item, started = earlier["slices_per_item"], time.perf_counter() - earlier["seconds"]
        load_start = earlier["load_average_start"]
    else:
        records = [r for item, role in items for r in evaluate_item(item, role, model, per_item, patterns)]
    rows = table_rows(records)
    print_rows(rows)
    for record in decision_rows(rows):
        print(record)
    meta = {"script": "python scripts/evaluate_fill_spacing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "split": "held out by subject: no slice of these subjects is in the model's train_items "
                     "(glioma fg_6692, MS patient 19, VS-SEG-001, Colin27, Philips chest CT, mr03); the training "
                     "subjects (thin CT, the 1 mm UIH MR) were trained on and can only veto the model",
            "heldout_items": list(SPACING_HELDOUT_ITEMS), "training_subject_items": list(TRAINING_SUBJECT_ITEMS),
            "resampling": "every k-th slice (k = 1, 2, 3, 5) of each volume along its stored slice axis; steps "
                          "grouped to the nearest 0.5 mm",
            "slices_per_item": per_item, "threads": 1, "seconds": round(time.perf_counter() - started),
            "load_average_start": load_start, "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "sha256": card.data["sha256"],
            "decision": "medscan.ops.fill.choose_fill_method"}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "rows": rows, "per_slice": records}, indent=2, default=float))
        print(f"wrote {args.json}")
    if args.cards and not args.quick:
        print(f"table written to {write_card(rows, meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
