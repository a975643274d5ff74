"""Leave-one-subject-out evaluation of the learned annotate models; prints the tables, ``--cards`` writes them in.

    python scripts/evaluate_annotate.py [--cards] [--json runs/eval_annotate.json] [--threads 1]

* Brain tumour segmenter: Dice (whole tumour) of each fold's model on the subject it never saw.
* CT organs: per fold, the organs the held-out subject has labels for (see the fold table's "measurable").
* Anomaly map: voxel AUROC inside the brain and slice-level sensitivity/specificity on the held-out subject, the
  slice threshold calibrated on the TRAINING subject's tumour-free slices; raw FLAIR intensity as a baseline.
* Explanations: pointing-game hit rate (Grad-CAM of the slice classifier = segmenter with a pooled head;
  IntegratedGradients of the segmenter's finding) on the held-out subject's positive slices, and the
  model-randomisation correlation.

All figures are agreement with pseudo-labels (BraTS-Toolkit fusion, TotalSegmentator), not clinical accuracy.
Fold weights live in models/folds/ (written by scripts/train_annotate.py).
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

from medscan.annotate import anomaly as A  # noqa: E402
from medscan.annotate import learned as L  # noqa: E402
from medscan.io import load  # noqa: E402
from medscan.nets.weights import load_model, models_dir  # noqa: E402
from medscan.train.data import DATA_ROOT  # noqa: E402

FOLDS = models_dir() / "folds"
BRAIN = {"du_7294": "labelled/brain_tumour_tcga_du_7294", "fg_6692": "labelled/brain_tumour_tcga_fg_6692"}
CT_SUBJECTS = {"abdomen": "labelled/ct_abdomen_totalseg_example", "aorta": "labelled/ct_aorta_totalseg_example"}
OTHER = {"du_7294": "fg_6692", "fg_6692": "du_7294"}
SHIPPED_BRAIN_FOLD = "fg_6692"  # tumour_seg2d, tumour_cls2d and anomaly_dae2d are the models trained on this subject
MIN_POSITIVE_PX = 50  # a "positive slice" has at least 50 mm^2 of pseudo-label tumour (the classifier's label)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def brain_case(subject: str) -> dict:
    folder = DATA_ROOT / BRAIN[subject]
    scan = load(folder / "flair.nii.gz")
    tumour = load(folder / "tumour_seg_auto.nii.gz").voxels > 0
    normalised, brain = L.brain_normalise(scan.voxels)
    return {"scan": scan, "tumour": tumour, "normalised": normalised, "brain": brain}


def evaluate_tumour(cases: dict) -> list[dict]:
    rows = []
    for train, test in (("fg_6692", "du_7294"), ("du_7294", "fg_6692")):
        model, card = load_model(f"tumour_{train}", FOLDS)
        case = cases[test]
        _, probs = L.segment_with(model, case["scan"], case["normalised"], L.BRAIN_MM, roi=int(card.data["patch"]))
        threshold = float(card.data.get("threshold", 0.5))
        raw = (probs[0] >= 0.5) & case["brain"]
        labels = L.largest_component((probs[0] >= threshold) & case["brain"]).astype(np.uint8)
        case.setdefault("labels_by_fold", {})[train] = labels
        rows.append({"fold": f"train {train}", "evaluated_on": test, "dice": dice(labels > 0, case["tumour"]),
                     "dice_p0.5_raw": dice(raw, case["tumour"]),
                     "dice_p0.5_largest": dice(L.largest_component(raw), case["tumour"]), "threshold": threshold,
                     "reference_ml": float(case["tumour"].sum() / 1000),
                     "predicted_ml": float((labels > 0).sum() / 1000),
                     "shipped": train == SHIPPED_BRAIN_FOLD, "train_steps": card.data.get("steps"),
                     "train_minutes": card.data.get("train_minutes")})
    return rows


def ct_case(subject: str) -> dict:
    folder = DATA_ROOT / CT_SUBJECTS[subject]
    scan = load(folder / "ct.nii.gz")
    if subject == "abdomen":
        seg = load(folder / "organs_seg_auto.nii.gz").voxels.astype(int)
        truth = {"liver": seg == 5, "spleen": seg == 1, "kidneys": (seg == 2) | (seg == 3), "aorta": seg == 52}
    else:
        truth = {"aorta": load(folder / "aorta_seg_auto.nii.gz").voxels > 0}
    return {"scan": scan, "truth": truth}


def evaluate_organs() -> list[dict]:
    cases = {s: ct_case(s) for s in ("abdomen", "aorta")}
    rows = []
    plans = [("abdomen", "aorta", "held-out"), ("aorta", "abdomen", "held-out"),
             ("both", "abdomen", "training data (resubstitution, NOT held-out)"),
             ("both", "aorta", "training data (resubstitution, NOT held-out)")]
    for train, test, kind in plans:
        model, card = load_model(f"organs_{train}", FOLDS)
        case = cases[test]
        scan = case["scan"]
        # per-channel probability >= 0.5: a fold's never-trained channels must not out-vote a trained one
        _, probs = L.segment_with(model, scan, L.ct_normalise(scan.voxels), L.CT_MM, roi=int(card.data["patch"]))
        probs[:, scan.voxels < -500] = 0
        trained_on = {"abdomen": {"liver", "spleen", "kidneys", "aorta"}, "aorta": {"aorta"},
                      "both": {"liver", "spleen", "kidneys", "aorta"}}[train]
        for value, organ in L.ORGAN_NAMES.items():
            if organ in case["truth"] and organ in trained_on:
                rows.append({"fold": f"train {train}", "evaluated_on": test, "organ": organ, "kind": kind,
                             "dice": dice(probs[value - 1] >= 0.5, case["truth"][organ])})
            else:
                why = ("no reference label in the test subject" if organ not in case["truth"]
                       else "never labelled in training")
                rows.append({"fold": f"train {train}", "evaluated_on": test, "organ": organ, "kind": kind,
                             "dice": None, "why": why})
    return rows


def evaluate_anomaly(cases: dict) -> list[dict]:
    rows = []
    for test in ("du_7294", "fg_6692"):
        train = OTHER[test]
        model, card = load_model(f"dae_{train}", FOLDS)
        pixel = float(card.data.get("pixel_mm", 2.0))
        scores = {}
        for subject in (test, train):
            case = cases[subject]
            canon = L.canonical_volume(case["normalised"], case["scan"])
            brain = L.canonical_volume(case["brain"], case["scan"])
            scores[subject] = (A.residual_map(canon, brain, model, pixel), brain,
                               L.canonical_volume(case["tumour"], case["scan"]), canon)
        amap, brain, tumour, image = scores[test]
        voxel_auroc = A.auroc(amap[brain], tumour[brain])
        baseline = A.auroc(image[brain], tumour[brain])
        # slice threshold from the training subject only: 95th percentile of its tumour-free slices' scores
        t_map, t_brain, t_tumour, _ = scores[train]
        t_scores = A.slice_scores(t_map, t_brain)
        t_free = (t_tumour.sum(axis=(1, 2)) == 0) & (t_brain.sum(axis=(1, 2)) >= 200)
        threshold = float(np.percentile(t_scores[t_free], 95))
        s = A.slice_scores(amap, brain)
        has_brain = brain.sum(axis=(1, 2)) >= 200
        positive = (tumour.sum(axis=(1, 2)) >= MIN_POSITIVE_PX) & has_brain
        negative = (tumour.sum(axis=(1, 2)) == 0) & has_brain
        rows.append({"subject": test, "model_trained_on": train, "voxel_auroc": voxel_auroc,
                     "intensity_baseline_auroc": baseline, "slice_threshold": threshold,
                     "slice_sensitivity": float((s[positive] > threshold).mean()),
                     "slice_specificity": float((s[negative] <= threshold).mean()) if negative.any() else float("nan"),
                     "positive_slices": int(positive.sum()), "negative_slices": int(negative.sum())})
    return rows


def evaluate_explanations(cases: dict) -> dict:
    from medscan.explain import SliceScore, gradcam_map, integrated_gradients_map, pointing_hit, randomised_copy

    test = OTHER[SHIPPED_BRAIN_FOLD]
    case = cases[test]
    segmenter, _ = load_model(f"tumour_{SHIPPED_BRAIN_FOLD}", FOLDS)
    classifier = SliceScore(segmenter).eval()
    pixel = L.BRAIN_MM
    canon = L.canonical_volume(case["normalised"], case["scan"])
    tumour = L.canonical_volume(case["tumour"], case["scan"])
    labels = L.canonical_volume(case["labels_by_fold"][SHIPPED_BRAIN_FOLD], case["scan"])
    positive = [int(k) for k in np.flatnonzero(tumour.sum(axis=(1, 2)) >= MIN_POSITIVE_PX)]
    random_cls = randomised_copy(classifier)
    cam_hits, correlations = [], []
    for k in positive:
        trained = gradcam_map(classifier, canon[k], pixel_mm=pixel)
        cam_hits.append(pointing_hit(trained, tumour[k]))
        randomised = gradcam_map(random_cls, canon[k], pixel_mm=pixel)
        ok = trained.std() > 0 and randomised.std() > 0
        correlations.append(float(np.corrcoef(trained.ravel(), randomised.ravel())[0, 1]) if ok else 0.0)
    ig_hits, ig_missing = [], 0
    for k in positive[::4]:
        finding = labels[k] > 0
        if not finding.any():
            ig_missing += 1
            ig_hits.append(False)
            continue
        ig_hits.append(pointing_hit(integrated_gradients_map(segmenter, canon[k], finding, steps=8), tumour[k]))
    with torch.no_grad():
        probs = torch.sigmoid(classifier(torch.from_numpy(canon[positive])[:, None]))[:, 0].numpy()
    return {"subject": test, "classifier_trained_on": SHIPPED_BRAIN_FOLD, "positive_slices": len(positive),
            "gradcam_pointing_hit_rate": float(np.mean(cam_hits)),
            "gradcam_randomised_correlation_mean": float(np.mean(correlations)),
            "ig_slices": len(ig_hits), "ig_pointing_hit_rate": float(np.mean(ig_hits)), "ig_no_finding": ig_missing,
            "classifier_sensitivity_at_0.5": float((probs >= 0.5).mean())}


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def tables(results: dict) -> str:
    lines = ["## Brain tumour segmenter (FLAIR, whole tumour) — Dice = agreement with BraTS-Toolkit pseudo-labels",
             "", "| fold | evaluated on (held-out) | Dice (p>=0.9, largest component) | Dice p>=0.5 largest | "
             "Dice p>=0.5 raw | reference mL | predicted mL | shipped |", "|---|---|---|---|---|---|---|---|"]
    for r in results["tumour"]:
        lines.append(f"| {r['fold']} | {r['evaluated_on']} | {fmt(r['dice'])} | {fmt(r['dice_p0.5_largest'])} | "
                     f"{fmt(r['dice_p0.5_raw'])} | {r['reference_ml']:.1f} | "
                     f"{r['predicted_ml']:.1f} | {'yes (tumour_seg2d)' if r['shipped'] else ''} |")
    lines += ["", "## CT organs — Dice = agreement with TotalSegmentator pseudo-labels", "",
              "| fold | evaluated on | kind | liver | spleen | kidneys | aorta |", "|---|---|---|---|---|---|---|"]
    by_fold: dict[tuple, dict] = {}
    for r in results["organs"]:
        by_fold.setdefault((r["fold"], r["evaluated_on"], r["kind"]), {})[r["organ"]] = r["dice"]
    for (fold, test, kind), organs in by_fold.items():
        cells = " | ".join(fmt(organs.get(o)) for o in ("liver", "spleen", "kidneys", "aorta"))
        lines.append(f"| {fold} | {test} | {kind} | {cells} |")
    lines += ["", "n/a: not measurable (the held-out subject has no reference label for the organ, or the fold's "
              "training subject never had it labelled).", "",
              "## Anomaly map (normal-appearance DAE trained on the other subject)", "",
              "| subject | DAE trained on | voxel AUROC (in brain) | FLAIR-intensity baseline AUROC | "
              "slice sensitivity | slice specificity | positive / negative slices |", "|---|---|---|---|---|---|---|"]
    for r in results["anomaly"]:
        lines.append(f"| {r['subject']} | {r['model_trained_on']} | {fmt(r['voxel_auroc'])} | "
                     f"{fmt(r['intensity_baseline_auroc'])} | {fmt(r['slice_sensitivity'])} | "
                     f"{fmt(r['slice_specificity'])} | {r['positive_slices']} / {r['negative_slices']} |")
    e = results["explanations"]
    lines += ["", f"## Explanations (held-out subject {e['subject']}, models trained on {e['classifier_trained_on']})",
              "", "| measure | value |", "|---|---|",
              f"| Grad-CAM pointing-game hit rate ({e['positive_slices']} positive slices) | "
              f"{fmt(e['gradcam_pointing_hit_rate'])} |",
              f"| IntegratedGradients pointing-game hit rate ({e['ig_slices']} slices, {e['ig_no_finding']} without "
              f"a finding) | {fmt(e['ig_pointing_hit_rate'])} |",
              f"| Grad-CAM correlation trained vs randomised weights (mean) | "
              f"{fmt(e['gradcam_randomised_correlation_mean'])} |",
              "| slice classifier (segmenter top-0.5% logit) sensitivity on positive slices | "
              f"{fmt(e['classifier_sensitivity_at_0.5'])} |"]
    return "\n".join(lines)


def write_cards(results: dict, text: str) -> None:
    """Evaluation figures into the shipped cards (JSON only: the weights and their sha256 are untouched)."""
    sections = {"tumour_seg2d": {"tumour_dice_loso": results["tumour"], "explanations": results["explanations"]},
                "organ_seg2d": {"organ_dice": results["organs"]},
                "anomaly_dae2d": {"anomaly": results["anomaly"]}}
    for name, section in sections.items():
        path = models_dir() / f"{name}.json"
        if not path.exists():
            print(f"(no card {path.name}; skipped)")
            continue
        card = json.loads(path.read_text())
        card["evaluation"] = {**section, "script": "scripts/evaluate_annotate.py", "tables": text,
                              "note": "agreement with pseudo-labels (BraTS-Toolkit / TotalSegmentator), not accuracy"}
        path.write_text(json.dumps(card, indent=2))
        print(f"wrote evaluation into {path.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", action="store_true", help="write the figures into the shipped model cards")
    parser.add_argument("--json", default=str(ROOT / "runs" / "eval_annotate.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    cases = {s: brain_case(s) for s in BRAIN}
    results = {"tumour": evaluate_tumour(cases), "organs": evaluate_organs(), "anomaly": evaluate_anomaly(cases),
               "explanations": evaluate_explanations(cases)}
    text = tables(results)
    print(text)
    print(f"\n(evaluated in {time.time() - t0:.0f} s)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    if args.cards:
        write_cards(results, text)


if __name__ == "__main__":
    main()
