"""Evaluate the EXPERIMENTAL pseudo-CT model (models/pseudo_ct_cyclegan2d) on what can be measured without paired data.

    python scripts/evaluate_pseudo_ct.py                   # print the tables (held-out data only)
    python scripts/evaluate_pseudo_ct.py --cards --figure  # also write the cards and docs/figures/pseudo_ct.png

There is no CT of the MR patients, so voxel-wise HU accuracy CANNOT be measured. What is measured:

1. Cycle consistency on held-out subjects: MR->CT->MR (PSNR, SSIM and MAE inside the body, MR window units 0..1)
   and CT->MR->CT (MAE in HU inside the body). High cycle scores only say the mapping is invertible, not that
   the HU are right (a CycleGAN can hide the MR in the pseudo-CT).
2. The HU distribution of three regions of the pseudo-CT against real head CT of other patients:
   air = outside the body mask (dilated 4 px), interior = the body mask eroded by 10 mm (brain / soft tissue),
   shell = the outer 10 mm of the body (scalp and skull: bone shows as the upper tail, p99 and % > 300 HU).
   The regions are cut on the MR input (pseudo-CT) and on the CT itself (real), with the same definitions.
   Distance: Wasserstein-1 in HU to the real head CT's region. Baseline: a monotone look-up table (quantile
   matching of the body voxels) from the training head T1 MR to the training head CT, with air (-1000 HU) outside
   the MR body mask — the best intensity mapping without anatomy, given the body mask the model must find itself.

Held out: MR ``train/mr03_brain_t1_2d_sag_siemens_dicom`` (T1 with skull, sagittal) and
``paired/brain_tcga_fg_6692/t1.nii.gz`` (skull-stripped: it has no skull to map; the operation refuses such input
because of what these rows show, the network is run on it here directly); CT
``train-extra/ct04_chest_philips_5mm_kernelB.nii.gz`` (chest). Real head CT reference: the two head CT files of
``conformance/pydicom_data`` (693_UNCR.dcm, eCT_Supplemental.dcm; three slices, patients not in any training
list). The only other head CT (ct03) is a training subject and is used only to fit the baseline LUT.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medscan.io import load
from medscan.nets.cyclegan import CT_WINDOW_HU, GRID_MM, ct_to_unit, mr_to_unit, mr_window, unit_to_ct
from medscan.ops.pseudo_ct import PSEUDO_CT_MODEL, grid_shape, mr_volume_to_ct, resample_planes, translate_unit_planes
from medscan.train.data import DATA_ROOT, TRAIN_ITEMS
from medscan.train.metrics import body_mask, choose_slices, psnr, ssim

CT2MR_MODEL = "pseudo_ct_cyclegan2d_ct2mr"
HELDOUT_MR = ("train/mr03_brain_t1_2d_sag_siemens_dicom", "paired/brain_tcga_fg_6692/t1.nii.gz")
HELDOUT_CT = ("train-extra/ct04_chest_philips_5mm_kernelB.nii.gz",)
HEAD_CT_REFERENCE = ("conformance/pydicom_data/693_UNCR.dcm", "conformance/pydicom_data/eCT_Supplemental.dcm")
BASELINE_MR = ("train/mr01_head_t1_3d_sag_uih.nii.gz", "paired/brain_tcga_du_7294/t1.nii.gz")
BASELINE_CT = ("train-extra/ct03_head_ge_4mm_detilted.nii.gz", "train-extra/ct03_head_ge_7mm_detilted.nii.gz")
SHELL_MM = 10.0
AIR_MARGIN_PX = 4
BONE_HU = 300.0
HEAD_CT_INVENTORY = (
    "Every CT in ../shared/data was checked. Head CT: train-extra/ct03 (one GE patient, 4 mm + 7 mm parts, 28 axial "
    "slices; a training subject); conformance/pydicom_data 693_UNCR / 693_UNCI / 693_J2KR (one 512x512 head slice in "
    "three encodings) and eCT_Supplemental.dcm (two head frames) - the held-out head reference here. No head CT in "
    "train/ (upper abdomen, abdomen-pelvis) or labelled/ (abdomen, aorta); ct04 is chest; conformance bad_sequence.dcm "
    "is a neck/spine slice and explicit_VR-UN.dcm an abdomen slice; the other conformance series are MR, US, CR, NM.")
LIMITATIONS = [
    "Unpaired: voxel-wise HU accuracy cannot be measured; cycle scores only show the mapping is invertible.",
    "One head-CT training patient and a 2-D network trained ~38 min on 1 CPU thread: the pseudo-CT is not closer "
    "to real head CT than a body-masked intensity LUT in the soft-tissue and skull regions (see verdicts).",
    "Skull-stripped MR comes out with bone HU inside the brain; the operation refuses it.",
    "The reference head CT is axial; the sagittal mr03 regions (10 mm erosion) include tangential skull in lateral "
    "slices, so its interior is not purely brain.",
    "CT->MR shows a checkerboard texture (CycleGAN hides information for the cycle); it is used only for evaluation.",
]
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "pseudo_ct.png"
SHORT = {"train/mr03_brain_t1_2d_sag_siemens_dicom": "mr03 T1 head (skull)",
         "paired/brain_tcga_fg_6692/t1.nii.gz": "fg_6692 T1 (skull-stripped)",
         "train-extra/ct04_chest_philips_5mm_kernelB.nii.gz": "ct04 chest",
         "head-ct-reference": "real head CT (3 slices)"}


def _volume(item: str):
    scan = load(DATA_ROOT / item)
    volume = scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0]
    return np.asarray(volume, np.float32), scan.spacing


def _grid(planes: np.ndarray, spacing) -> np.ndarray:
    return resample_planes(planes, grid_shape(planes.shape[1:], (spacing[1], spacing[0]), GRID_MM))


def _regions(body: np.ndarray, spacing_rc: tuple[float, float]) -> dict[str, np.ndarray]:
    """air / interior / shell masks of (N, H, W) body masks with (row, col) spacing in mm."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # in-plane only
    steps = max(1, round(SHELL_MM / float(np.mean(spacing_rc))))
    interior = ndimage.binary_erosion(body, structure, iterations=steps)
    air = ~ndimage.binary_dilation(body, structure, iterations=AIR_MARGIN_PX)
    return {"air": air, "interior (soft tissue)": interior, "shell 10 mm (scalp/skull)": body & ~interior}


def _stats(values: np.ndarray, reference: np.ndarray | None) -> dict[str, float]:
    from scipy.stats import wasserstein_distance

    p25, p50, p75, p99 = np.percentile(values, [25, 50, 75, 99])
    out = {"median": float(p50), "iqr": float(p75 - p25), "p99": float(p99),
           "bone_pct": float(100 * np.mean(values > BONE_HU)), "n": int(values.size)}
    if reference is not None:
        rng = np.random.default_rng(0)
        a = values if values.size <= 200_000 else rng.choice(values, 200_000, replace=False)
        b = reference if reference.size <= 200_000 else rng.choice(reference, 200_000, replace=False)
        out["w1"] = float(wasserstein_distance(a, b))
    return out


def _body_values(planes: np.ndarray, ct: bool) -> np.ndarray:
    return np.concatenate([p[body_mask(np.clip(p, -1024, 1500) if ct else p)] for p in planes])


def fit_lut() -> tuple[np.ndarray, np.ndarray]:
    """Quantile matching of the body voxels of training head T1 MR (volume-normalised, 2 mm) to those of the
    training head CT (HU, 2 mm)."""
    q = np.linspace(0, 1, 2001)
    mr = np.concatenate([_body_values(_grid(mr_to_unit(v), s), False) for v, s in map(_volume, BASELINE_MR)])
    ct = np.concatenate([_body_values(_grid(np.clip(v, -1024, 3071), s), True) for v, s in map(_volume, BASELINE_CT)])
    mr_q = np.quantile(mr, q)
    mr_q = mr_q + np.arange(q.size) * 1e-7  # strictly increasing for np.interp (flat runs)
    return mr_q, np.quantile(ct, q)


def lut_baseline(unit: np.ndarray, lut: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The LUT inside each plane's body mask, air outside."""
    out = np.full(unit.shape, -1000.0, np.float32)
    for k, plane in enumerate(unit):
        mask = body_mask(plane)
        out[k][mask] = np.interp(plane[mask], *lut)
    return out


def reference_head_ct() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Real head CT HU values per region (other patients, not trained on) and the planes for the figure."""
    values: dict[str, list[np.ndarray]] = {}
    planes = []
    for item in HEAD_CT_REFERENCE:
        volume, spacing = _volume(item)
        hu = np.clip(volume, -1024, 3071)  # -3024 padding outside the reconstruction circle is air
        body = np.stack([body_mask(np.clip(p, -1024, 1500)) for p in hu])
        for name, mask in _regions(body, (spacing[1], spacing[0])).items():
            values.setdefault(name, []).append(hu[mask])
        planes += list(_grid(hu, spacing))
    return planes, {k: np.concatenate(v) for k, v in values.items()}


def evaluate(g_ct, g_mr, device, per_item: int, figure: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    cycle_rows, hu_rows = [], []
    head_planes, reference = reference_head_ct()
    for name, values in reference.items():
        hu_rows.append({"region": name, "source": "real head CT (held-out patients)", "item": "head-ct-reference",
                        **_stats(values, None)})
    lut = fit_lut()
    shown = {}
    for item in HELDOUT_MR:
        volume, spacing = _volume(item)
        picks = choose_slices(volume, per_item)
        sub = volume[picks]
        unit_grid = _grid(mr_to_unit(volume)[picks], spacing)  # the volume's window, not the picks'
        fake, _ = translate_unit_planes(g_ct, unit_grid, device, flips=((),))
        back, _ = translate_unit_planes(g_mr, fake, device, flips=((),))
        scores = {"psnr": [], "ssim": [], "mae": []}
        for ref, est in zip((unit_grid + 1) / 2, (back + 1) / 2, strict=True):
            mask = body_mask(ref)
            scores["psnr"].append(psnr(ref, est, mask))
            scores["ssim"].append(ssim(ref, est, mask))
            scores["mae"].append(float(np.abs(ref - est)[mask].mean()))
        cycle_rows.append({"direction": "MR->CT->MR", "item": item, "slices": len(picks),
                           **{k: float(np.mean(v)) for k, v in scores.items()}, "unit": "MR window 0..1"})
        # The operation's own path (TTA, back on the input grid) for the HU distributions.
        window = mr_window(volume)
        hu, _ = mr_volume_to_ct(g_ct, sub, spacing, device, window=window)
        baseline = lut_baseline(mr_to_unit(sub, window), lut)
        body = np.stack([body_mask(p) for p in sub])
        for name, mask in _regions(body, (spacing[1], spacing[0])).items():
            for source, image in (("pseudo-CT (ours)", hu), ("LUT baseline", baseline)):
                hu_rows.append({"region": name, "source": source, "item": item,
                                **_stats(image[mask], reference[name])})
        if figure:
            middle = len(picks) // 2
            shown[item] = {"mr": (unit_grid[middle] + 1) / 2, "ct": unit_to_ct(fake[middle]),
                           "cycle": (back[middle] + 1) / 2, "lut": lut_baseline(unit_grid[middle:middle + 1], lut)[0]}
    for item in HELDOUT_CT:
        volume, spacing = _volume(item)
        picks = choose_slices(volume, per_item)
        hu_grid = _grid(np.clip(volume[picks], -1024, 3071), spacing)
        fake, _ = translate_unit_planes(g_mr, ct_to_unit(hu_grid), device, flips=((),))
        back, _ = translate_unit_planes(g_ct, fake, device, flips=((),))
        back_hu = unit_to_ct(back)
        target = unit_to_ct(ct_to_unit(hu_grid))  # the CT as the window can hold it
        mae = [float(np.abs(t - b)[body_mask(np.clip(t, -1024, 1500))].mean()) for t, b in zip(target, back_hu,
                                                                                               strict=True)]
        cycle_rows.append({"direction": "CT->MR->CT", "item": item, "slices": len(picks), "mae": float(np.mean(mae)),
                           "unit": "HU"})
    mae = []
    for k, plane in enumerate(head_planes):  # the reference slices differ in size: one at a time
        fake, _ = translate_unit_planes(g_mr, ct_to_unit(plane[None]), device, flips=((),))
        back, _ = translate_unit_planes(g_ct, fake, device, flips=((),))
        target, back_hu = unit_to_ct(ct_to_unit(plane)), unit_to_ct(back[0])
        mae.append(float(np.abs(target - back_hu)[body_mask(np.clip(target, -1024, 1500))].mean()))
        if figure and k == 0:
            shown["head-ct-reference"] = {"ct_in": target, "mr": (fake[0] + 1) / 2, "ct_back": back_hu}
    cycle_rows.append({"direction": "CT->MR->CT", "item": "head-ct-reference", "slices": len(head_planes),
                       "mae": float(np.mean(mae)), "unit": "HU"})
    return {"cycle": cycle_rows, "hu_regions": hu_rows}, shown


def verdicts(tables: dict[str, Any]) -> list[str]:
    """Ours against the LUT baseline, region by region: which is closer to the real head CT (W1)."""
    rows = {(r["region"], r["source"], r["item"]): r for r in tables["hu_regions"] if "w1" in r}
    out = []
    for (region, source, item), ours in rows.items():
        if source != "pseudo-CT (ours)":
            continue
        base = rows[(region, "LUT baseline", item)]
        word = "closer than" if ours["w1"] < base["w1"] else "FARTHER than"
        out.append(f"{region}, {SHORT[item]}: pseudo-CT W1 {ours['w1']:.0f} HU is {word} the LUT baseline's "
                   f"{base['w1']:.0f} HU")
    return out


def print_tables(tables: dict[str, Any]) -> None:
    print("\nCycle consistency (held-out subjects; body mask; MR->CT->MR in the MR window 0..1, CT->MR->CT in HU)")
    print("| direction | held-out item | slices | PSNR dB | SSIM | MAE |")
    print("|---|---|---|---|---|---|")
    for r in tables["cycle"]:
        if r["direction"] == "MR->CT->MR":
            print(f"| {r['direction']} | {SHORT[r['item']]} | {r['slices']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                  f"{r['mae']:.4f} |")
        else:
            print(f"| {r['direction']} | {SHORT[r['item']]} | {r['slices']} | – | – | {r['mae']:.1f} HU |")
    print("\nHU by region: pseudo-CT of held-out MR vs real head CT of other patients (W1 = Wasserstein-1 to the "
          "real head CT's region, HU; lower is closer)")
    print("| region | source | input | median HU | IQR HU | p99 HU | > 300 HU % | W1 HU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in tables["hu_regions"]:
        w1 = f"{r['w1']:.0f}" if "w1" in r else "–"
        print(f"| {r['region']} | {r['source']} | {SHORT[r['item']]} | {r['median']:.0f} | {r['iqr']:.0f} | "
              f"{r['p99']:.0f} | {r['bone_pct']:.1f} | {w1} |")
    print("\nAgainst the baseline (real head CT distribution, W1):")
    for line in verdicts(tables):
        print(f"- {line}")


def write_figure(shown: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct_window = {"vmin": -300, "vmax": 1300, "cmap": "gray"}
    fig, axes = plt.subplots(3, 4, figsize=(12, 9.4))
    for row, item in enumerate(HELDOUT_MR):
        s = shown[item]
        panels = [(s["mr"], {"vmin": 0, "vmax": 1, "cmap": "gray"}, f"MR input: {SHORT[item]}"),
                  (s["ct"], ct_window, "pseudo-CT (HU, W1600 L500)"),
                  (s["cycle"], {"vmin": 0, "vmax": 1, "cmap": "gray"}, "cycle MR (MR->CT->MR)"),
                  (s["lut"], ct_window, "baseline: intensity LUT")]
        for ax, (image, style, title) in zip(axes[row], panels, strict=True):
            ax.imshow(image, **style)
            ax.set_title(title, fontsize=9)
    s = shown["head-ct-reference"]
    panels = [(s["ct_in"], ct_window, "real head CT (held-out patient)"),
              (s["mr"], {"vmin": 0, "vmax": 1, "cmap": "gray"}, "CT->MR (generated)"),
              (s["ct_back"], ct_window, "cycle CT (CT->MR->CT)"), (None, None, "")]
    for ax, (image, style, title) in zip(axes[2], panels, strict=True):
        if image is not None:
            ax.imshow(image, **style)
        ax.set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("EXPERIMENTAL pseudo-CT — NOT VALIDATED (unpaired CycleGAN; no CT of these patients exists: "
                 "HU are not measured)", fontsize=11, color="darkred")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medscan.nets.weights import load_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=8, help="slices per held-out volume")
    parser.add_argument("--quick", action="store_true", help="3 slices per volume")
    parser.add_argument("--figure", action="store_true", help=f"write {FIGURE.relative_to(FIGURE.parents[2])}")
    parser.add_argument("--cards", action="store_true", help="write the tables into both model cards")
    parser.add_argument("--json", type=Path, help="also write the tables as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    assert not set(HELDOUT_MR + HELDOUT_CT) & set(TRAIN_ITEMS), "held-out items overlap the training items"
    per_item = 3 if args.quick else args.slices
    g_ct, card = load_model(PSEUDO_CT_MODEL)
    g_mr, _ = load_model(CT2MR_MODEL)
    began, cpu = time.time(), time.process_time()
    tables, shown = evaluate(g_ct, g_mr, torch.device("cpu"), per_item, args.figure)
    print_tables(tables)
    meta = {"command": "python " + " ".join(["scripts/evaluate_pseudo_ct.py", *(argv or sys.argv[1:])]),
            "slices_per_item": per_item, "heldout_mr": list(HELDOUT_MR), "heldout_ct": list(HELDOUT_CT),
            "head_ct_reference": list(HEAD_CT_REFERENCE), "baseline": "quantile LUT fitted on "
            f"{', '.join(BASELINE_MR)} -> {', '.join(BASELINE_CT)}", "ct_window_hu": list(CT_WINDOW_HU),
            "regions": f"air = outside the body mask dilated {AIR_MARGIN_PX} px; interior = body eroded {SHELL_MM:g} "
                       f"mm; shell = outer {SHELL_MM:g} mm of the body; bone = > {BONE_HU:g} HU",
            "not_measured": "voxel-wise HU error: no CT of the MR patients exists (unpaired)",
            "verdicts": verdicts(tables),
            "head_ct_inventory": HEAD_CT_INVENTORY,
            "limitations": LIMITATIONS,
            "seconds": round(time.time() - began, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "threads": 1, "steps": card.data.get("training", {}).get("steps_completed")}
    if args.figure:
        write_figure(shown, FIGURE)
        meta["figure"] = "docs/figures/pseudo_ct.png"
        print(f"wrote {FIGURE}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "tables": tables}, indent=2))
    if args.cards:
        from medscan.train.evaluation import write_card_figures

        for name in (PSEUDO_CT_MODEL, CT2MR_MODEL):
            print(f"wrote {write_card_figures(name, tables, meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
