"""Evaluate the synthetic-slice generator on held-out subjects; calibrate and record its memorisation check.

    python scripts/evaluate_synth.py --count 48 --steps 25 --cards

* Fréchet distance (FD) and k-NN precision/recall (k = 3) in the feature space of ``models/slice_type2d`` (its
  penultimate layer, 128 features) between REAL HELD-OUT slices and generated ones, per class that has a held-out
  subject (MR brain: TCGA fg_6692, 4 contrasts; CT chest: Philips ct04), against simple baselines sampled and
  embedded the same way: PCA-Gaussian (8 / 32 / 128 components) and a 10-component diagonal GMM on 32 PCA
  coefficients, all fitted on the training slices of the class. "best baseline" is the one with the lowest FD on
  the held-out slices (chosen with the held-out data: an optimistic baseline).
* The slice-type classifier's accuracy on generated slices of every class (and on real held-out slices).
* Memorisation: nearest-training-slice SSIM of held-out real slices (the calibration: per-class threshold = the
  largest value a different patient reaches) and of generated slices; how many generated slices would be refused.
* Lesion conditioning: held-out tumour masks given to the MR brain model; mean intensity inside the mask minus
  the rest of the brain, with and without the mask (same seeds).
* Sampling seconds per slice at ``--threads`` threads (DDIM, ``--steps`` steps, batches of 8).

``--cards`` writes the memorisation reference (models/synth_diffusion2d.trainref.npz), the thresholds and all
tables into the synth_diffusion2d card; ``--figure`` writes the real-vs-generated grid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medscan.synth.data import (  # noqa: E402
    CLASSES,
    NONE_CLASS,
    SYNTH_HELDOUT,
    SYNTH_TRAIN,
    SynthSlices,
    cached_slices,
    from_unit,
    items_key,
)

MODEL, ENCODER = "synth_diffusion2d", "slice_type2d"
REFERENCE = f"{MODEL}.trainref.npz"


def display(unit: np.ndarray, modality: str) -> np.ndarray:
    """8-bit view: CT at W400/L40 HU, MR over its full range."""
    if modality == "CT":
        hu = from_unit(unit, "CT")
        return np.clip((hu + 160) / 400 * 255, 0, 255).astype(np.uint8)
    return np.clip((unit + 1) / 2 * 255 / 0.8, 0, 255).astype(np.uint8)


def write_figure(path: Path, rows: list[tuple[str, str, list[np.ndarray], list[np.ndarray], list]]) -> None:
    """rows: (label, modality, real tiles, generated tiles, masks or None per generated tile)."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    tile, gap, left, top = 128, 4, 120, 22
    cols = max(len(r[2]) + len(r[3]) for r in rows)
    width = left + cols * (tile + gap) + gap * 4
    height = top + len(rows) * (tile + gap)
    canvas = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    n_real = max(len(r[2]) for r in rows)
    draw.text((left, 4), "real (held-out subject; CT head/abdomen: training)", fill=(220, 220, 220))
    draw.text((left + n_real * (tile + gap) + gap * 4, 4), "generated (synth_diffusion2d, DDIM)", fill=(255, 200, 80))
    for r, (label, modality, real, generated, masks) in enumerate(rows):
        y = top + r * (tile + gap)
        draw.text((4, y + tile // 2 - 12), label, fill=(220, 220, 220))
        for c, image in enumerate(real):
            canvas.paste(Image.fromarray(display(image, modality)).convert("RGB"), (left + c * (tile + gap), y))
        x0 = left + n_real * (tile + gap) + gap * 4
        for c, image in enumerate(generated):
            rgb = np.repeat(display(image, modality)[..., None], 3, axis=2)
            if masks and masks[c] is not None:
                edge = masks[c] & ~ndimage.binary_erosion(masks[c])
                rgb[edge] = (255, 40, 40)
            canvas.paste(Image.fromarray(rgb), (x0 + c * (tile + gap), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def lesion_masks(heldout: SynthSlices, count: int) -> list[np.ndarray]:
    """The ``count`` largest held-out tumour masks of distinct slices (MR brain, any contrast: same subject grid)."""
    area = heldout.masks.reshape(len(heldout.masks), -1).sum(1)
    order = np.argsort(-area)
    chosen, seen = [], set()
    for i in order:
        if area[i] == 0 or heldout.positions[i] in seen:
            continue
        seen.add(int(heldout.positions[i]))
        if len(seen) % 3 == 1:  # every third distinct slice: spread over the tumour
            chosen.append(heldout.masks[i].astype(bool))
        if len(chosen) == count:
            break
    return chosen


def lesion_contrast(images: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Mean (model units) inside the mask minus the mean of the rest of the head (pixels above background)."""
    out = []
    for image, mask in zip(images, masks, strict=True):
        tissue = image > -0.9
        rest = tissue & ~mask
        out.append(float(image[mask].mean() - image[rest].mean()) if rest.any() else float("nan"))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=48, help="generated slices per class")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lesions", type=int, default=6)
    parser.add_argument("--cards", action="store_true")
    parser.add_argument("--quick", action="store_true", help="every 8th held-out slice (a smoke run; not for cards)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "synth_grid.png")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    from medscan.nets.weights import load_model, models_dir, sha256_of
    from medscan.synth.memorisation import Reference, calibrate, distribution, nearest_training, to_check_grid
    from medscan.synth.quality import (
        SLICE_TYPES,
        encode,
        frechet_distance,
        gmm_pca_baseline,
        pca_gaussian_baseline,
        precision_recall,
        slice_type,
        type_to_class,
    )
    from medscan.synth.sampler import ddim_sample

    torch.set_num_threads(args.threads)
    began = time.time()
    train = cached_slices(SYNTH_TRAIN, ROOT / "runs", "synth_train")
    heldout = cached_slices(SYNTH_HELDOUT, ROOT / "runs", "synth_heldout")
    assert not set(SYNTH_TRAIN) & set(SYNTH_HELDOUT)
    if args.quick:
        keep = np.arange(0, len(heldout.labels), 8)
        heldout = SynthSlices(heldout.images[keep], heldout.labels[keep], heldout.masks[keep],
                              [heldout.sources[i] for i in keep], heldout.positions[keep])
    model, _ = load_model(MODEL)
    encoder, _ = load_model(ENCODER)

    # --- memorisation calibration on real held-out slices ---
    reference = Reference.build(to_check_grid(train.images), train.labels)
    modalities = [c.modality for c in CLASSES]
    # depends only on the data (both sides of the split), not on the model
    cache = ROOT / "runs" / f"synth_heldout_nn_ssim-{items_key(SYNTH_TRAIN)}-{items_key(SYNTH_HELDOUT)}.npy"
    nn_heldout = np.load(cache) if cache.exists() and not args.quick else None
    if nn_heldout is None or len(nn_heldout) != len(heldout.labels):
        nn_heldout, _ = nearest_training(heldout.images, reference)
        if not args.quick:
            np.save(cache, nn_heldout)
    calibration = calibrate(heldout.images, heldout.labels, reference, modalities, nn_ssim=nn_heldout)
    print(f"calibrated on {len(nn_heldout)} held-out slices", flush=True)
    thresholds = calibration["thresholds"]

    # --- sampling ---
    generated: dict[int, np.ndarray] = {}
    timing = []
    for label in range(len(CLASSES)):
        t0 = time.perf_counter()
        generated[label] = ddim_sample(model, np.full(args.count, label), seed=1000 + label, steps=args.steps)
        timing.append((time.perf_counter() - t0) / args.count)
        print(f"sampled {args.count} {CLASSES[label].name}: {timing[-1]:.2f} s/slice", flush=True)
    unconditional = ddim_sample(model, np.full(args.count, NONE_CLASS), seed=2000, steps=args.steps)
    masks = lesion_masks(heldout, args.lesions)
    brain = [c.name for c in CLASSES].index("MR brain")
    with_mask = np.stack([ddim_sample(model, [brain], seed=3000 + i, steps=args.steps, mask=m)[0]
                          for i, m in enumerate(masks)])
    without_mask = np.stack([ddim_sample(model, [brain], seed=3000 + i, steps=args.steps)[0]
                             for i in range(len(masks))])

    # --- quality ---
    real_feats, real_pred = encode(encoder, heldout.images)
    rows: list[dict[str, Any]] = []
    for label in np.unique(heldout.labels):
        name = CLASSES[label].name
        real = real_feats[heldout.labels == label]
        candidates: dict[str, np.ndarray] = {"synth_diffusion2d": generated[label]}
        train_images = train.images[train.labels == label]
        for n in (8, 32, 128):
            candidates[f"PCA-Gaussian {n}"] = pca_gaussian_baseline(train_images, args.count, n, seed=label)
        candidates["PCA32-GMM10"] = gmm_pca_baseline(train_images, args.count, 32, 10, seed=label)
        for method, images in candidates.items():
            feats, _ = encode(encoder, images)
            precision, recall = precision_recall(real, feats)
            rows.append({"class": name, "method": method, "real": len(real), "generated": len(images),
                         "fd": frechet_distance(real, feats), "precision": precision, "recall": recall})
        baselines = [r for r in rows if r["class"] == name and r["method"] != "synth_diffusion2d"]
        best = min(baselines, key=lambda r: r["fd"])
        rows.append({**best, "method": f"best baseline ({best['method']})"})
    accuracy = []
    for label in range(len(CLASSES)):
        _, pred = encode(encoder, generated[label])
        acc_gen = float(np.mean(type_to_class(pred) == label))
        real_mask = heldout.labels == label
        acc_real = float(np.mean(type_to_class(real_pred[real_mask]) == label)) if real_mask.any() else None
        accuracy.append({"class": CLASSES[label].name, "generated": acc_gen, "real_heldout": acc_real,
                         "n_generated": args.count, "n_real": int(real_mask.sum())})
    _, pred_unc = encode(encoder, unconditional)
    unconditional_mix = {CLASSES[c].name: int(np.sum(type_to_class(pred_unc) == c)) for c in range(len(CLASSES))}
    held_types = np.array([slice_type(lab, src) for lab, src in zip(heldout.labels, heldout.sources, strict=True)])
    type_accuracy_real = float(np.mean(real_pred == held_types))

    # --- memorisation of generated slices ---
    memo_rows = []
    for label in range(len(CLASSES)):
        nn, _ = nearest_training(generated[label], reference)
        refused = int(np.sum(nn >= thresholds[label]))
        memo_rows.append({"class": CLASSES[label].name, "threshold": thresholds[label],
                          "heldout": calibration["heldout_nn_ssim"].get(label, {"n": 0}),
                          "generated": distribution(nn), "refused": refused, "n": args.count})
    nn_unc, _ = nearest_training(unconditional, reference)

    # --- lesion conditioning ---
    contrast_with = lesion_contrast(with_mask, masks)
    contrast_without = lesion_contrast(without_mask, masks)
    flair = [i for i, s in enumerate(heldout.sources) if s.endswith("flair.nii.gz")]
    real_contrast = lesion_contrast(heldout.images[flair], [m.astype(bool) for m in heldout.masks[flair]]) \
        if flair else np.array([])
    real_contrast = real_contrast[np.isfinite(real_contrast) & (heldout.masks[flair].reshape(len(flair), -1).sum(1)
                                                                 > 0)]
    lesion = {"masks": len(masks), "mean_contrast_with_mask": float(np.nanmean(contrast_with)),
              "mean_contrast_without_mask": float(np.nanmean(contrast_without)),
              "higher_with_mask": int(np.sum(contrast_with > contrast_without)),
              "real_heldout_flair_contrast": float(np.mean(real_contrast)) if real_contrast.size else None}

    # --- timing at the requested threads, one batch of 8 ---
    t0 = time.perf_counter()
    ddim_sample(model, np.zeros(8, int), seed=9, steps=args.steps)
    seconds_per_slice = (time.perf_counter() - t0) / 8

    # --- print ---
    print()
    print(f"Held-out quality in {ENCODER} feature space (128-d penultimate layer); {args.steps} DDIM steps")
    print("| class | method | real | generated | FD | precision | recall |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['class']} | {r['method']} | {r['real']} | {r['generated']} | {r['fd']:.2f} | "
              f"{r['precision']:.2f} | {r['recall']:.2f} |")
    print()
    print("| class | classifier accuracy on generated | on real held-out |")
    print("|---|---|---|")
    for a in accuracy:
        real = "-" if a["real_heldout"] is None else f"{a['real_heldout']:.2f} (n={a['n_real']})"
        print(f"| {a['class']} | {a['generated']:.2f} (n={a['n_generated']}) | {real} |")
    print(f"unconditional samples classified as: {unconditional_mix}; 7-type accuracy on real held-out "
          f"{type_accuracy_real:.2f}")
    print()
    print("| class | threshold (max held-out NN-SSIM) | held-out NN-SSIM min/median/max | generated NN-SSIM "
          "min/median/max | refused |")
    print("|---|---|---|---|---|")
    for m in memo_rows:
        h, g = m["heldout"], m["generated"]
        held = f"{h['min']:.3f} / {h['median']:.3f} / {h['max']:.3f} (n={h['n']})" if h.get("n") else "- (none)"
        print(f"| {m['class']} | {m['threshold']:.3f} | {held} | {g['min']:.3f} / {g['median']:.3f} / "
              f"{g['max']:.3f} | {m['refused']}/{m['n']} |")
    print(f"unconditional: generated NN-SSIM {distribution(nn_unc)}")
    print()
    print(f"lesion conditioning (MR brain, {len(masks)} held-out masks): intensity inside mask minus rest of head "
          f"{lesion['mean_contrast_with_mask']:+.3f} with mask vs {lesion['mean_contrast_without_mask']:+.3f} "
          f"without (higher in {lesion['higher_with_mask']}/{len(masks)}); real held-out FLAIR "
          f"{lesion['real_heldout_flair_contrast']:+.3f}")
    print(f"sampling: {seconds_per_slice:.2f} s per 128x128 slice ({args.steps} DDIM steps, {args.threads} threads, "
          f"batch 8, load average {os.getloadavg()[0]:.1f})")
    minutes = (time.time() - began) / 60
    print(f"evaluation took {minutes:.1f} min")

    # --- figure ---
    fig_rows = []
    for label, cls in enumerate(CLASSES):
        real_pool = heldout.images[heldout.labels == label]
        source = "held-out"
        if not len(real_pool):
            real_pool, source = train.images[train.labels == label], "train"
        pick = np.linspace(0, len(real_pool) - 1, 6)[1:5].astype(int)
        fig_rows.append((f"{cls.name}\n(real: {source})", cls.modality, list(real_pool[pick]),
                         list(generated[label][:5]), None))
    fig_rows.append(("MR brain\n+ lesion mask", "MR", [], list(with_mask[:5]), list(masks[:5])))
    fig_rows.append(("MR brain\nsame seeds,\nno mask", "MR", [], list(without_mask[:5]), None))
    fig_rows.append(("unconditional", "MR", [], list(unconditional[:5]), None))
    write_figure(args.figure, fig_rows)
    print(f"wrote {args.figure}")

    payload = {"quality": rows, "classifier_accuracy": accuracy, "unconditional_mix": unconditional_mix,
               "memorisation": memo_rows, "lesion_conditioning": lesion,
               "sampling_seconds_per_slice": {"value": round(seconds_per_slice, 3), "threads": args.threads,
                                              "steps": args.steps, "batch": 8,
                                              "load_average": round(os.getloadavg()[0], 2)},
               "encoder": f"{ENCODER}: SliceClassifier penultimate layer (128 global-average-pooled features), "
                          f"7 types {list(SLICE_TYPES)}",
               "steps": args.steps, "count_per_class": args.count}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=float))
    if args.cards:
        from medscan.train.evaluation import edit_card, write_card_figures

        ref_path = models_dir() / REFERENCE
        reference.save(ref_path)
        memorisation = {
            "method": "SSIM on the 64x64 grid (2x2 averages of the 128x128 slice, 7x7 Gaussian window sigma 1.5, "
                      "data range 2) against every training slice and its left-right mirror",
            "reference": REFERENCE, "reference_sha256": sha256_of(ref_path),
            "thresholds": {str(k): round(float(v), 4) for k, v in thresholds.items()},
            "threshold_rule": "per class: the largest nearest-training SSIM of any held-out (different-patient) real "
                              "slice; classes without held-out slices take the largest of their modality",
            "heldout_nn_ssim": {CLASSES[k].name: v for k, v in calibration["heldout_nn_ssim"].items()},
            "generated_nn_ssim": {m["class"]: {**m["generated"], "refused": m["refused"]} for m in memo_rows},
        }
        edit_card(MODEL, lambda card: card.update(memorisation=memorisation), what=None)
        meta = {"script": "scripts/evaluate_synth.py", "command": "python scripts/evaluate_synth.py "
                + " ".join(argv if argv is not None else sys.argv[1:]), "minutes": round(minutes, 1),
                "figure": "docs/figures/synth_grid.png", "heldout_items": list(SYNTH_HELDOUT),
                "done_when": "FD of synth_diffusion2d below the best baseline's for every class with held-out data",
                "met": all(r["fd"] < next(b["fd"] for b in rows if b["class"] == r["class"]
                                          and b["method"].startswith("best baseline"))
                           for r in rows if r["method"] == "synth_diffusion2d")}
        write_card_figures(MODEL, payload, meta)
        print(f"wrote {ref_path} and the evaluation into models/{MODEL}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
