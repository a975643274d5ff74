"""Held-out evaluation of the MR contrast translator against the best intensity look-up table, both folds.

    python scripts/evaluate_translate.py                 # both folds, every 2nd brain slice of the held-out subject
    python scripts/evaluate_translate.py --cards         # also record the tables in the model cards
    python scripts/evaluate_translate.py --figure docs/figures/translate_before_after.png

Fold <S>: the model ``models/folds/translate_<S>`` trained on subject S only; the LUTs are fitted on S only; both
are scored on the OTHER subject. ``models/translate_mr2d`` is fold du_7294 shipped.

Scored inside the brain mask (voxels non-zero in all four skull-stripped contrasts of the held-out subject), on
axial slices with at least ``MIN_BRAIN_PIXELS`` brain pixels, every ``--stride``-th one. Intensities are those the
model works in: each volume divided by the median of its brain, so MAE is in units of the brain median and
PSNR/SSIM use a data range of 1 (PSNR = 10 log10(median^2 / MSE): lower than peak-based PSNRs elsewhere, since
bright tissue reaches 1.5-4 x the median; differences between methods are unaffected). "ours" is what the
operation returns: the mean over four flipped copies. Four LUTs fitted on the training subject (see
``medscan.train.task_translate``): the conditional mean per source-intensity bin (non-monotone) and the best
monotone map, each applied directly and after histogram-matching the held-out source to the training subject's;
ours is compared with the LUT of the highest held-out PSNR for PSNR and with the LUT of the highest held-out SSIM
for SSIM (choices made on the test subject, which favour the baseline). s/slice: one thread, 240x240 at 1 mm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_restore import write_card_figures

from medscan.train.metrics import psnr, ssim, summarize
from medscan.train.task_translate import (
    DIRECTIONS,
    MIN_BRAIN_PIXELS,
    SUBJECTS,
    fit_luts,
    load_subject,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "translate_mr2d"
SHIPPED_FOLD = "du_7294"
TARGET_DB, TARGET_SSIM = 2.0, 0.05
TARGET_DIRECTIONS = (("T1", "T2"), ("T1", "FLAIR"))


def _scores(real: np.ndarray, estimate: np.ndarray, brain: np.ndarray) -> tuple[float, float, float]:
    return (float(np.abs(real - estimate)[brain].mean()), psnr(real, estimate, brain), ssim(real, estimate, brain))


def evaluate_fold(train_subject: str, stride: int, quick: bool = False) -> dict[str, Any]:
    """Per-slice scores of ours and both LUTs for every direction, trained on ``train_subject``."""
    import torch

    from medscan.nets.weights import load_model
    from medscan.ops.translate import card_prior, translate_planes

    test_subject = next(s for s in SUBJECTS if s != train_subject)
    model, card = load_model(f"translate_{train_subject}", ROOT / "models" / "folds")
    train_vols, train_brain = load_subject(train_subject)
    test_vols, test_brain = load_subject(test_subject)
    slices = np.flatnonzero(test_brain.sum(axis=(1, 2)) >= MIN_BRAIN_PIXELS)[::stride]
    if quick:
        slices = slices[len(slices) // 2:len(slices) // 2 + 2]
    fold: dict[str, Any] = {"train": train_subject, "test": test_subject, "slices": [int(k) for k in slices],
                            "model_sha256": card.data.get("sha256"), "directions": {}}
    device = torch.device("cpu")
    for source, target in DIRECTIONS:
        luts = fit_luts(train_vols[source], train_vols[target], train_brain)
        src, real, brain = test_vols[source][slices], test_vols[target][slices], test_brain[slices]
        began = time.perf_counter()
        ours, spread = translate_planes(model, src, brain, source, target, device,
                                        prior=card_prior(card.data, source, target))
        ours_time = (time.perf_counter() - began) / len(slices)
        rows: dict[str, Any] = {}
        for lut in luts:
            began = time.perf_counter()
            mapped = lut(src, test_vols[source][test_brain]) * brain
            elapsed = (time.perf_counter() - began) / len(slices)
            rows[f"LUT ({lut.kind})"] = {"per_slice": [_scores(real[i], mapped[i], brain[i]) for i in range(len(src))],
                                         "seconds_per_slice": elapsed}
        rows["ours"] = {"per_slice": [_scores(real[i], ours[i], brain[i]) for i in range(len(src))],
                        "seconds_per_slice": ours_time,
                        "mean_uncertainty": float(spread[brain].mean())}
        fold["directions"][f"{source}->{target}"] = rows
    return fold


def summarise_fold(fold: dict[str, Any]) -> dict[str, Any]:
    """mean ± sd per metric and method, the best LUT, and ours minus it."""
    table: dict[str, Any] = {}
    for direction, rows in fold["directions"].items():
        entry: dict[str, Any] = {}
        for method, row in rows.items():
            values = np.asarray(row["per_slice"])
            entry[method] = {"MAE": summarize(values[:, 0].tolist()), "PSNR": summarize(values[:, 1].tolist()),
                             "SSIM": summarize(values[:, 2].tolist()),
                             "seconds_per_slice": round(row["seconds_per_slice"], 4)}
        luts = [m for m in entry if m.startswith("LUT")]
        best = max(luts, key=lambda m: entry[m]["PSNR"]["mean"])
        best_ssim = max(luts, key=lambda m: entry[m]["SSIM"]["mean"])  # each metric against its own best table
        gain_db = entry["ours"]["PSNR"]["mean"] - entry[best]["PSNR"]["mean"]
        gain_ssim = entry["ours"]["SSIM"]["mean"] - entry[best_ssim]["SSIM"]["mean"]
        entry["best_lut"] = best
        entry["best_lut_ssim"] = best_ssim
        entry["gain_over_best_lut"] = {"PSNR_dB": round(gain_db, 3), "SSIM": round(gain_ssim, 4),
                                       "target_met": bool(gain_db >= TARGET_DB and gain_ssim >= TARGET_SSIM)}
        table[direction] = entry
    return table


def print_fold(fold: dict[str, Any], table: dict[str, Any], stride: int) -> None:
    n = len(fold["slices"])
    print(f"\n## fold {fold['train']}: trained on {fold['train']}, tested on {fold['test']} "
          f"({n} axial slices, stride {stride} over the brain slices; inside the brain mask)\n")
    print("| direction | method | MAE | PSNR (dB) | SSIM | s/slice |")
    print("|---|---|---|---|---|---|")
    for direction, entry in table.items():
        for method in [m for m in entry if m.startswith("LUT")] + ["ours"]:
            e = entry[method]
            print(f"| {direction} | {method} | {e['MAE']['mean']:.4f} ± {e['MAE']['sd']:.4f} | "
                  f"{e['PSNR']['mean']:.2f} ± {e['PSNR']['sd']:.2f} | {e['SSIM']['mean']:.3f} ± {e['SSIM']['sd']:.3f}"
                  f" | {e['seconds_per_slice']:.3f} |")
    print()
    for direction, entry in table.items():
        gain = entry["gain_over_best_lut"]
        mark = ""
        if tuple(direction.split("->")) in TARGET_DIRECTIONS:
            mark = " — target (>= 2 dB and >= 0.05) " + ("MET" if gain["target_met"] else "NOT met")
        print(f"{direction}: ours {gain['PSNR_dB']:+.2f} dB PSNR over {entry['best_lut']}, {gain['SSIM']:+.3f} SSIM "
              f"over {entry['best_lut_ssim']}{mark}")


def figure(path: Path) -> None:
    """Held-out fg_6692 slice through the tumour: T1 | LUT | ours | real, rows T2 and FLAIR (shipped fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from medscan.nets.weights import load_model
    from medscan.ops.translate import card_prior, translate_planes

    train_subject, test_subject = SHIPPED_FOLD, next(s for s in SUBJECTS if s != SHIPPED_FOLD)
    model, card = load_model(SHIPPED)
    train_vols, train_brain = load_subject(train_subject)
    test_vols, test_brain = load_subject(test_subject)
    from medscan.io import load
    from medscan.train.task_translate import item

    seg = load(item(test_subject, "T1").with_name("tumour_seg_auto.nii.gz"))
    from medscan.nets.volumes import canonical_volume

    tumour = canonical_volume(seg.voxels, seg) > 0
    k = int(np.argmax(tumour.sum(axis=(1, 2))))
    brain = test_brain[k:k + 1]
    rows_, cols = np.nonzero(brain[0])
    crop = (slice(max(rows_.min() - 5, 0), rows_.max() + 6), slice(max(cols.min() - 5, 0), cols.max() + 6))
    fig, axes = plt.subplots(2, 4, figsize=(13, 7.6))
    for r, target in enumerate(("T2", "FLAIR")):
        src = test_vols["T1"][k:k + 1]
        real = test_vols[target][k:k + 1]
        lut = max(fit_luts(train_vols["T1"], train_vols[target], train_brain),
                  key=lambda f: psnr(real[0], f(src[0], test_vols["T1"][test_brain]) * brain[0], brain[0]))
        mapped = lut(src, test_vols["T1"][test_brain]) * brain
        ours, _ = translate_planes(model, src, brain, "T1", target, torch.device("cpu"),
                                   prior=card_prior(card.data, "T1", target))
        panels = [(src[0], "T1 input (held-out subject)"),
                  (mapped[0], f"LUT ({lut.kind}) {psnr(real[0], mapped[0], brain[0]):.1f} dB"),
                  (ours[0], f"ours {psnr(real[0], ours[0], brain[0]):.1f} dB"),
                  (real[0], f"real {target}")]
        for c, (image, title) in enumerate(panels):
            ax = axes[r, c]
            top = float(np.percentile((src if c == 0 else real)[0][brain[0]], 99.5))  # outputs in the real's window
            ax.imshow(image[crop], cmap="gray", vmin=0, vmax=top)
            ax.set_title(title if c else f"{title}\n-> {target}", fontsize=10)
            ax.axis("off")
    fig.suptitle(f"T1 -> T2 / FLAIR on held-out subject {test_subject}, axial slice {k} (model trained on "
                 f"{train_subject}); PSNR inside the brain", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", choices=SUBJECTS, default=list(SUBJECTS),
                        help="training subjects of the folds to evaluate")
    parser.add_argument("--stride", type=int, default=2, help="score every n-th brain slice")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 slices per fold")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every figure (and per-slice values) here")
    parser.add_argument("--cards", action="store_true", help="record the tables in the model cards")
    parser.add_argument("--figure", type=Path, help="write the before/after figure here (and skip the tables)")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="print (and with --cards record) the folds of earlier --json files instead of re-running")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.figure:
        figure(args.figure)
        return 0
    folds, tables = {}, {}
    if args.merge:
        for path in args.merge:
            saved = json.loads(path.read_text())
            args.stride, args.quick = saved["meta"]["stride"], saved["meta"]["quick"]
            folds.update(saved["folds"])
    else:
        folds = {subject: evaluate_fold(subject, args.stride, args.quick) for subject in args.folds}
    for subject, fold in sorted(folds.items()):
        tables[subject] = summarise_fold(fold)
        print_fold(fold, tables[subject], args.stride)
    meta = {"protocol": __doc__.split("\n\n", 2)[2].strip(), "stride": args.stride, "quick": args.quick,
            "threads": args.threads, "done_when": "ours beats the best LUT by >= 2 dB PSNR and >= 0.05 SSIM inside "
                                                  "the brain for T1->T2 and T1->FLAIR in both folds",
            "target_met": all(tables[s][f"{a}->{b}"]["gain_over_best_lut"]["target_met"]
                              for s in tables for a, b in TARGET_DIRECTIONS)}
    print(f"\ndone-when (>= {TARGET_DB:g} dB and >= {TARGET_SSIM:g} SSIM over the best LUT, T1->T2 and T1->FLAIR, "
          f"folds {', '.join(sorted(tables))}): {'MET' if meta['target_met'] else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "folds": folds, "tables": tables}, indent=2))
    if args.cards and not args.quick:
        named = {f"fold {s} (trained on {s}, tested on {folds[s]['test']})": tables[s] for s in tables}
        for subject in tables:
            path = write_card_figures(f"translate_{subject}", named, {**meta, "this_fold": subject},
                                      folder=ROOT / "models" / "folds")
            print(f"figures written to {path}")
        if SHIPPED_FOLD in tables:
            print(f"figures written to {write_card_figures(SHIPPED, named, {**meta, 'this_fold': SHIPPED_FOLD})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
