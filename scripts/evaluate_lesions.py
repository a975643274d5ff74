"""Lesion maps against the experts: the two Ljubljana MS subjects, leave-one-subject-out; ``--cards`` writes them in.

    python scripts/evaluate_lesions.py [--cards] [--json runs/eval_lesions.json] [--threads 1]
    python scripts/evaluate_lesions.py --extra DIR [DIR ...]   # also subjects no model or threshold has seen

For each MS subject held out, inside the brain (``medscan.annotate.lesion_eval``): voxel AUROC and average
precision, Dice at the threshold chosen on the OTHER subject, and lesion-wise detection (expert lesions hit,
false-positive predicted components) of

* the shipped anomaly map (``anomaly_dae2d``: a DAE of normal FLAIR trained on TCGA-FG-6692, no MS subject);
* the plain FLAIR-intensity baseline (FLAIR z-score over the brain);
* the lesion segmenter fold trained on the OTHER MS subject (``models/folds/lesions_ms07|ms19``, written by
  ``scripts/train_annotate.py lesions``); its threshold is chosen on its own training subject. Its findings'
  Seg-Grad-CAM is checked on the held-out subject too (pointing game, weight randomisation:
  ``lesion_eval.explanation_checks``).

``--extra DIR`` (a folder with ``flair.nii.gz`` and ``lesions_consensus.nii.gz``, e.g. another Ljubljana subject)
adds rows for a subject nothing was chosen on: the shipped ``lesion_seg2d`` at its card threshold, the anomaly map
and the baseline at the thresholds with the best mean Dice over the two MS subjects here.

The figures go into ``models/anomaly_dae2d.json`` and ``models/lesion_seg2d.json`` (key ``ms_lesions`` of the
evaluation; scripts/evaluate_annotate.py keeps it when it rewrites the rest).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medscan.annotate import lesion_eval as E  # noqa: E402
from medscan.nets.weights import load_model, models_dir  # noqa: E402
from medscan.train.data import DATA_ROOT  # noqa: E402
from medscan.train.evaluation import edit_card  # noqa: E402

FOLDS = models_dir() / "folds"
MS = {"ms07": "paired/brain_ms_patient07", "ms19": "paired/brain_ms_patient19"}
OTHER = {"ms07": "ms19", "ms19": "ms07"}
LABELS = {"anomaly": "anomaly map (anomaly_dae2d)", "flair_z": "FLAIR z-score (baseline)",
          "segmentation": "lesion segmenter (fold trained on the other subject)"}
CARDS = ("anomaly_dae2d", "lesion_seg2d")


def load_cases() -> dict[str, E.LesionCase]:
    """Both MS subjects, named by their short keys."""
    return {key: E.load_case(DATA_ROOT / folder, key) for key, folder in MS.items()}


def fold_segmenter(train: str) -> tuple[torch.nn.Module, int] | None:
    """The lesion fold trained on ``train`` with its patch size, or None when it was not trained."""
    name = f"lesions_{train}"
    if not (FOLDS / f"{name}.json").exists():
        print(f"(no {name} in models/folds: the segmenter is left out)")
        return None
    model, card = load_model(name, FOLDS)
    return model, int(card.data.get("patch", 96))


def evaluate_held_out(test: str, cases: dict[str, E.LesionCase]) -> list[dict]:
    """``test`` held out: every method's threshold chosen on the other subject, figures on ``test``."""
    other = OTHER[test]
    segmenter = fold_segmenter(other)  # trained on the other subject: never saw ``test``
    test_maps = E.score_maps(cases[test], segmenter)
    other_maps = E.score_maps(cases[other], segmenter)
    rows = E.evaluate_subject(cases[test], cases[other], test_maps, other_maps)
    for row in rows:
        row.pop("threshold_rule")
        if row["method"] == "segmentation":
            row["model"] = f"lesions_{other}"
            checks = E.explanation_checks(cases[test], segmenter[0], test_maps["segmentation"], row["threshold"])
            row["seg_gradcam_pointing_2px"] = checks["pointing_2px"]
            row["seg_gradcam_randomised_corr"] = checks["randomised_corr"]
            row["seg_gradcam_slices"] = checks["slices"]
    return rows


SHIPPED_RULE = ("the probability (0.10..0.95 in 0.05) with the highest mean Dice over its two TRAINING subjects "
                "(both MS subjects: resubstitution; the held-out figures are the folds')")


def shipped_threshold(cases: dict[str, E.LesionCase]) -> dict | None:
    """``SHIPPED_RULE`` for ``models/lesion_seg2d`` (trained on both subjects): its threshold and training Dice."""
    if not (models_dir() / "lesion_seg2d.json").exists():
        return None
    model, card = load_model("lesion_seg2d")
    patch = int(card.data.get("patch", 96))
    maps = {key: E.segmentation_probability(case, model, patch) for key, case in cases.items()}
    scores = {float(t): {key: E.dice((maps[key] >= t) & case.brain, case.lesions) for key, case in cases.items()}
              for t in E.PROBABILITY_GRID}
    best = max(scores, key=lambda t: (np.mean(list(scores[t].values())), -t))
    return {"threshold": best, "training_dice": scores[best], "rule": SHIPPED_RULE}


def evaluate_extra(folder: Path, cases: dict[str, E.LesionCase]) -> list[dict]:
    """A subject outside both folds: every threshold from the two MS subjects here (the shipped segmenter's from
    its card), figures on ``folder``'s expert mask."""
    test = E.load_case(folder, folder.name)
    segmenter = None
    if (models_dir() / "lesion_seg2d.json").exists():
        model, card = load_model("lesion_seg2d")
        segmenter = (model, int(card.data.get("patch", 96)))
    test_maps = E.score_maps(test, segmenter)
    known = {key: E.score_maps(case) for key, case in cases.items()}
    rows = []
    for method in E.METHODS:
        if method not in test_maps:
            continue
        if method == "segmentation":
            threshold, chosen_dice = float(card.data.get("threshold", 0.5)), float("nan")
            source = "lesion_seg2d card (both MS subjects)"
        else:
            threshold, chosen_dice = E.choose_threshold_mean([(known[k][method], cases[k]) for k in cases])
            source = "mean Dice over " + ", ".join(cases)
        rows.append({"method": method, "subject": test.name, "threshold_from": source, "other_dice": chosen_dice,
                     "model": {"segmentation": "lesion_seg2d", "anomaly": "anomaly_dae2d"}.get(method, ""),
                     "reference_ml": float(test.lesions.sum() * abs(np.linalg.det(test.scan.affine[:3, :3])) / 1000),
                     **E.evaluate_map(test_maps[method], test, threshold)})
    return rows


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    """The Markdown report: one row per (held-out subject, method), the baseline beside each method."""
    lines = ["Leave-one-subject-out on the Ljubljana MS expert consensus masks (2 subjects; brain_ms_patient07: "
             "37 lesions, 1.3 mL; brain_ms_patient19: 98 lesions, 49.8 mL). Inside the brain only. Threshold: "
             f"{E.THRESHOLD_RULE}; the held-out subject never chose anything. Lesions: 26-connected components; "
             "detected = touched by a predicted voxel; FP components = predicted components touching no expert "
             "lesion.", "",
             "| held-out subject | method | voxel AUROC | AP | Dice | threshold (Dice on the other subject) | "
             "lesions detected | FP components | predicted mL / expert mL | Seg-Grad-CAM pointing 2 px / randomised "
             "corr (slices) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label = LABELS[r["method"]]
        if r.get("model") == "lesion_seg2d":
            label = "lesion segmenter (lesion_seg2d: both MS subjects; threshold from its card)"
        lines.append(f"| {r['subject']} | {label} | {fmt(r['auroc'])} | {fmt(r['average_precision'])} "
                     f"| {fmt(r['dice'])} | {fmt(r['threshold'], 3)} ({fmt(r['other_dice'])}) | "
                     f"{r['detected']}/{r['lesions']} ({fmt(r['detection_rate'], 2)}) | {r['fp_components']} | "
                     f"{r['predicted_ml']:.1f} / {r['reference_ml']:.1f} | " +
                     (f"{fmt(r['seg_gradcam_pointing_2px'], 2)} / {fmt(r['seg_gradcam_randomised_corr'], 2)} "
                      f"({r['seg_gradcam_slices']})" if "seg_gradcam_slices" in r else "") + " |")
    return "\n".join(lines)


def write_cards(rows: list[dict], shipped: dict | None) -> None:
    """The rows into each card's evaluation (``ms_lesions``; the docs render them as a table), the rest of the card
    untouched; ``lesion_seg2d`` also gets its operating threshold (``shipped``)."""
    def add_rows(card: dict, name: str) -> None:
        evaluation = card.setdefault("evaluation", {})
        evaluation["ms_lesions"] = {
            "script": "scripts/evaluate_lesions.py",
            "note": "against the Ljubljana MS expert multi-rater consensus (real manual annotation), 2 subjects, "
                    "leave-one-subject-out, inside the brain: small-sample figures. flair_z is the plain "
                    "FLAIR-intensity baseline; segmentation is the fold trained on the other subject",
            "threshold_rule": E.THRESHOLD_RULE,
            "lesions": "26-connected components of a mask; detected = touched by a predicted voxel; "
                       "fp_components = predicted components touching no expert lesion",
            "rows": [{"subject": r["subject"], "method": r["method"], **{k: v for k, v in r.items()
                                                                        if k not in ("subject", "method")}}
                     for r in rows]}
        if name == "lesion_seg2d" and shipped is not None:
            card["threshold"] = shipped["threshold"]
            card["postprocessing_note"] = (
                f"probability >= {shipped['threshold']:.2f} inside the brain, every piece kept; the threshold is "
                f"{SHIPPED_RULE} (training Dice " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                               shipped["training_dice"].items()) + ")")
            evaluation["ms_lesions"]["shipped_model"] = (
                "trained on BOTH MS subjects, so no held-out subject is left for it here: the segmentation rows are "
                "its two leave-one-subject-out folds (models/folds/lesions_ms07, lesions_ms19), same recipe")

    for name in CARDS:
        edit_card(name, lambda card, name=name: add_rows(card, name), "ms_lesions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", action="store_true", help="write the figures into the model cards")
    parser.add_argument("--json", default=str(ROOT / "runs" / "eval_lesions.json"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra", nargs="*", default=[], type=Path,
                        help="more expert-annotated subject folders (flair.nii.gz + lesions_consensus.nii.gz)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    cases = load_cases()
    rows = evaluate_held_out("ms07", cases) + evaluate_held_out("ms19", cases)
    extra = [row for folder in args.extra for row in evaluate_extra(folder, cases)]
    text = table(rows + extra)
    print(text)
    print(f"\n(evaluated in {time.time() - t0:.0f} s)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows + extra, indent=2))
    if args.cards:
        shipped = shipped_threshold(cases)
        print(f"lesion_seg2d operating threshold: {shipped}")
        write_cards(rows, shipped)


if __name__ == "__main__":
    main()
