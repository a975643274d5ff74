"""Leave-one-subject-out evaluation of the MR contrast translator against the best intensity look-up table.

    python scripts/evaluate_translate.py                 # all four folds, every 4th brain slice of the test subject
    python scripts/evaluate_translate.py --folds ms19 --json runs/tr_ms19.json   # one fold
    python scripts/evaluate_translate.py --merge runs/tr_*.json --cards  # record the tables and the verdicts
    python scripts/evaluate_translate.py --figure docs/figures/translate_before_after.png

Fold <S>: the model ``models/folds/translate_loso_<S>`` trained on the three other paired subjects; the LUTs are
fitted on the same three (brain voxels pooled); both are scored on S, which no training step saw. The folds cross
centres: a glioma (TCGA) subject is tested with one glioma and both MS (Ljubljana) subjects in training, and the
other way round. ``models/translate_mr2d`` is fold ms19 shipped (trained on du_7294, fg_6692 and ms07). With
``--cards`` each direction gets a verdict in the shipped card: SUPPORTED only if ours beats the fold's best LUT in
PSNR and in SSIM in EVERY fold; the operation refuses the other directions.

Scored inside the brain mask (voxels non-zero in all four skull-stripped contrasts of the held-out subject), on
axial slices with at least ``MIN_BRAIN_PIXELS`` brain pixels, every ``--stride``-th one. Intensities are those the
model works in: each volume divided by the median of its brain, so MAE is in units of the brain median and
PSNR/SSIM use a data range of 1 (PSNR = 10 log10(median^2 / MSE): lower than peak-based PSNRs elsewhere, since
bright tissue reaches 1.5-4 x the median; differences between methods are unaffected). "ours" is what the
operation returns: the mean over four flipped copies. Four LUTs fitted on the training subjects (see
``medscan.train.task_translate``): the conditional mean per source-intensity bin (non-monotone) and the best
monotone map, each applied directly and after histogram-matching the held-out source to the training subjects';
ours is compared with the LUT of the highest held-out PSNR for PSNR and with the LUT of the highest held-out SSIM
for SSIM (choices made on the test subject, which favour the baseline). s/slice: one thread, the test subject's
axial grid at 1 mm (240x240 TCGA, 218x182 MS).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medscan.train.evaluation import write_card_figures
from medscan.train.metrics import psnr, ssim, summarize
from medscan.train.task_translate import (
    DIRECTIONS,
    MIN_BRAIN_PIXELS,
    SUBJECTS,
    brain_values,
    fit_luts,
    item,
    load_subject,
    training_subjects,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "translate_mr2d"
FIGURE_FOLD = "ms19"  # the figure's test subject: an MS patient, lesions in the FLAIR
TARGET_DB, TARGET_SSIM = 2.0, 0.05
TARGET_DIRECTIONS = (("T1", "T2"), ("T1", "FLAIR"), ("T2", "FLAIR"))


def fold_model(heldout: str):
    """(network, card) of the fold that left ``heldout`` out."""
    from medscan.nets.weights import load_model

    return load_model(f"translate_loso_{heldout}", ROOT / "models" / "folds")


def pooled_training(heldout: str) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Normalised volumes and brains of the fold's training subjects (what its LUTs are fitted on)."""
    loaded = [load_subject(s) for s in training_subjects(heldout)]
    return [v for v, _ in loaded], [b for _, b in loaded]


def _scores(real: np.ndarray, estimate: np.ndarray, brain: np.ndarray) -> tuple[float, float, float]:
    return (float(np.abs(real - estimate)[brain].mean()), psnr(real, estimate, brain), ssim(real, estimate, brain))


def evaluate_fold(test_subject: str, stride: int, quick: bool = False) -> dict[str, Any]:
    """Per-slice scores of ours and the four LUTs for every direction on ``test_subject``, which the fold left out."""
    import torch

    from medscan.ops.translate import card_prior, translate_planes

    model, card = fold_model(test_subject)
    train_vols, train_brains = pooled_training(test_subject)
    test_vols, test_brain = load_subject(test_subject)
    slices = np.flatnonzero(test_brain.sum(axis=(1, 2)) >= MIN_BRAIN_PIXELS)[::stride]
    if quick:
        slices = slices[len(slices) // 2:len(slices) // 2 + 2]
    fold: dict[str, Any] = {"train": list(training_subjects(test_subject)), "test": test_subject,
                            "slices": [int(k) for k in slices], "model_sha256": card.data.get("sha256"),
                            "directions": {}}
    device = torch.device("cpu")
    for source, target in DIRECTIONS:
        luts = fit_luts(brain_values(train_vols, train_brains, source), brain_values(train_vols, train_brains, target))
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
    print(f"\n## fold {fold['test']}: trained on {', '.join(fold['train'])}, tested on {fold['test']} "
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


def verdicts(tables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per direction: SUPPORTED only if ours beats the fold's best LUT in PSNR and in SSIM in every fold.

    ``tables`` maps each fold's test subject to ``summarise_fold``'s table. The shipped card records the result;
    ``medscan.ops.translate`` refuses a direction that is not supported, with the worst fold's figures as reason.
    """
    out: dict[str, dict[str, Any]] = {}
    for direction in next(iter(tables.values())):
        gains = {subject: table[direction]["gain_over_best_lut"] for subject, table in tables.items()}
        worst = min(gains, key=lambda subject: gains[subject]["PSNR_dB"])
        worst_ssim = min(gains, key=lambda subject: gains[subject]["SSIM"])
        out[direction] = {
            "supported": all(g["PSNR_dB"] > 0 and g["SSIM"] > 0 for g in gains.values()),
            "target_met": all(g["target_met"] for g in gains.values()),
            "folds": sorted(gains),
            "worst_fold_psnr": {"test": worst, "PSNR_dB": gains[worst]["PSNR_dB"]},
            "worst_fold_ssim": {"test": worst_ssim, "SSIM": gains[worst_ssim]["SSIM"]},
        }
    return out


def figure(path: Path, heldout: str = FIGURE_FOLD) -> None:
    """Held-out slice through the lesions / tumour of ``heldout``: T1 or T2 input | LUT | ours | real, one row per
    target direction (the fold that never saw ``heldout``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from medscan.io import load
    from medscan.nets.volumes import canonical_volume
    from medscan.ops.translate import card_prior, translate_planes

    model, card = fold_model(heldout)
    train_vols, train_brains = pooled_training(heldout)
    test_vols, test_brain = load_subject(heldout)
    folder = item(heldout, "T1").parent
    seg_path = next(p for p in (folder / "lesions_consensus.nii.gz", folder / "tumour_seg_auto.nii.gz") if p.exists())
    seg = load(seg_path)
    lesion = canonical_volume(seg.voxels, seg) > 0
    k = int(np.argmax(lesion.sum(axis=(1, 2))))
    brain = test_brain[k:k + 1]
    rows_, cols = np.nonzero(brain[0])
    crop = (slice(max(rows_.min() - 5, 0), rows_.max() + 6), slice(max(cols.min() - 5, 0), cols.max() + 6))
    fig, axes = plt.subplots(len(TARGET_DIRECTIONS), 4, figsize=(12, 3.6 * len(TARGET_DIRECTIONS)))
    for r, (source, target) in enumerate(TARGET_DIRECTIONS):
        src = test_vols[source][k:k + 1]
        real = test_vols[target][k:k + 1]
        luts = fit_luts(brain_values(train_vols, train_brains, source), brain_values(train_vols, train_brains, target))
        lut = max(luts, key=lambda f: psnr(real[0], f(src[0], test_vols[source][test_brain]) * brain[0], brain[0]))
        mapped = lut(src, test_vols[source][test_brain]) * brain
        ours, _ = translate_planes(model, src, brain, source, target, torch.device("cpu"),
                                   prior=card_prior(card.data, source, target))
        panels = [(src[0], f"{source} input -> {target}"),
                  (mapped[0], f"LUT ({lut.kind}) {psnr(real[0], mapped[0], brain[0]):.1f} dB"),
                  (ours[0], f"ours {psnr(real[0], ours[0], brain[0]):.1f} dB"),
                  (real[0], f"real {target}")]
        for c, (image, title) in enumerate(panels):
            ax = axes[r, c]
            top = float(np.percentile((src if c == 0 else real)[0][brain[0]], 99.5))  # outputs in the real's window
            ax.imshow(image[crop], cmap="gray", vmin=0, vmax=top)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"Held-out subject {heldout}, axial slice {k} (fold trained on "
                 f"{', '.join(training_subjects(heldout))}); PSNR inside the brain", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", choices=SUBJECTS, default=list(SUBJECTS),
                        help="test subjects of the leave-one-subject-out folds to evaluate")
    parser.add_argument("--stride", type=int, default=4, help="score every n-th brain slice")
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
                                                  "the brain for T1->T2, T1->FLAIR and T2->FLAIR in every fold",
            "target_met": all(tables[s][f"{a}->{b}"]["gain_over_best_lut"]["target_met"]
                              for s in tables for a, b in TARGET_DIRECTIONS)}
    print(f"\ndone-when (>= {TARGET_DB:g} dB and >= {TARGET_SSIM:g} SSIM over the best LUT, "
          f"{', '.join(f'{a}->{b}' for a, b in TARGET_DIRECTIONS)}, folds {', '.join(sorted(tables))}): "
          f"{'MET' if meta['target_met'] else 'NOT met'}")
    verdict = verdicts(tables)
    for direction, v in verdict.items():
        print(f"{direction}: {'SUPPORTED' if v['supported'] else 'REFUSED'} (worst fold {v['worst_fold_psnr']['test']}"
              f" {v['worst_fold_psnr']['PSNR_dB']:+.2f} dB, {v['worst_fold_ssim']['test']} "
              f"{v['worst_fold_ssim']['SSIM']:+.3f} SSIM)")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "folds": folds, "tables": tables}, indent=2))
    if args.cards and not args.quick:
        named = {f"fold {s} (trained on {', '.join(folds[s]['train'])}, tested on {s})": tables[s] for s in tables}
        for subject in tables:
            path = write_card_figures(f"translate_loso_{subject}", named, {**meta, "this_fold": subject},
                                      folder=ROOT / "models" / "folds")
            print(f"figures written to {path}")
        if set(tables) == set(SUBJECTS):  # a verdict needs every fold
            path = write_card_figures(SHIPPED, named, {**meta, "verdicts": verdict})
            print(f"figures and verdicts written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
