"""Evaluate the GAN super-resolution model against bicubic and the fidelity-first model on held-out scans.

    python scripts/evaluate_gan_sr.py --json runs/eval_gan_sr.json --cards   # writes into models/superres_gan_x4.json
    python scripts/evaluate_gan_sr.py --quick                               # smoke run: one CT and one MR slice

Protocol: that of ``evaluate_restore.py sr_x4`` (whose helpers it uses): ``HELDOUT_ITEMS`` only, ``--slices``
slices per item, each clean slice area-averaged over 4 x 4 blocks and restored to the original grid; every model
runs as the operation runs it (``run_planes``, the output the operation returns; for the GAN followed by the
operation's measurement-consistency back-projection, ``measurement_consistent``). Reference metrics: PSNR and SSIM
on the clean slice's 0.5-99.5 percentile window, whole image and body.

Sharpness (no-reference, judged against the high-resolution original's own statistics, not pixel by pixel):

* gradient energy ratio: mean squared finite difference of the output over that of the original, inside the
  body; 1 = as much fine detail as the original, below 1 too smooth;
* upper-band spectrum match: the radially averaged power spectrum (Hann-windowed) of output vs original over
  the frequencies the 4x coarser grid cannot carry (0.125-0.5 cycles/pixel of the fine grid): the log-spectral
  distance (RMS of 10·log10 of the power ratio over radial bins; 0 = the original's energy at every frequency)
  and the signed mean (negative = missing energy).

TARGET: the GAN's log-spectral distance below the fidelity model's and its gradient energy ratio closer to 1;
the PSNR/SSIM cost is printed beside it. ``--timing`` adds seconds per 512x512 output slice at 2 threads
(single pass and the operation's 4-pass test-time augmentation), with the load average at the time.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from medscan.train.data import HELDOUT_ITEMS, TRAIN_ITEMS
from medscan.train.evaluation import heldout_parser, write_card_figures
from medscan.train.metrics import (
    Timed,
    area_downsample,
    body_mask,
    gradient_energy,
    heldout_slices,
    in_plane_case,
    load_volume,
    normalise,
    pm,
    resize,
    score_methods,
    slice_record,
    spectrum_match,
    summarize,
    timed,
    warm_timed,
)

SCALE = 4
GAN_MODEL, FIDELITY_MODEL = "superres_gan_x4", "superres_x4"
METHODS = ("bicubic", "fidelity", "gan")
LABELS = {"bicubic": "bicubic", "fidelity": f"fidelity-first ({FIDELITY_MODEL})", "gan": f"GAN ({GAN_MODEL})"}
UPPER_BAND = (0.5 / SCALE, 0.5)  # cycles/pixel of the fine grid beyond the coarse grid's Nyquist frequency
PROTOCOL = ("held-out slices area-averaged 4x4 and restored; models run as the operation runs them (run_planes, one "
            "pass; the GAN then through measurement_consistent, 5 back-projection passes); metrics on the clean "
            "slice's 0.5-99.5 percentile window; sharpness: body gradient energy over the original's, and the "
            "radially averaged power spectrum over 0.125-0.5 cycles/px vs the original (log-spectral distance)")
METRICS = ("psnr", "psnr_body", "ssim", "ssim_body", "ge_ratio", "lsd_upper_db", "upper_power_db", "wall_s",
           "cpu_s")


def _sharpness(record: dict[str, Any], clean: np.ndarray, outputs: dict[str, Timed]) -> None:
    body = body_mask(clean)
    reference = gradient_energy(clean, body)
    for method, result in outputs.items():
        lsd, mean_db = spectrum_match(clean, result.output, UPPER_BAND)
        record["methods"][method].update({"ge_ratio": gradient_energy(result.output, body) / reference,
                                          "lsd_upper_db": lsd, "upper_power_db": mean_db})


def _ours(model, planes_phys: np.ndarray) -> Timed:
    """A model as the operation runs it (``run_planes``, one pass)."""
    import torch

    from medscan.ops.restore import run_planes

    return warm_timed(lambda: run_planes(planes_phys, model, torch.device("cpu"), batch=1), planes_phys.shape)


def _consistent(raw: Timed, low_phys: np.ndarray) -> Timed:
    """The GAN output as the operation returns it: pulled back onto the measurement (``measurement_consistent``)."""
    from medscan.ops.restore import measurement_consistent

    done = timed(lambda: measurement_consistent(raw.output, low_phys[None]))
    return Timed(done.output, raw.wall_s + done.wall_s, raw.cpu_s + done.cpu_s)


def evaluate(items: tuple[str, ...], per_item: int, fidelity, gan) -> list[dict[str, Any]]:
    records = []
    for item, modality, volume, k in heldout_slices(items, per_item):
        low_phys, clean, low, window = in_plane_case(volume[k], SCALE)
        shape = clean.shape
        runs = {"fidelity": _ours(fidelity, low_phys[None]),
                "gan": _consistent(_ours(gan, low_phys[None]), low_phys)}
        outputs = {"bicubic": timed(lambda lo=low, s=shape: resize(lo, s, "bicubic")),
                   **{m: Timed(normalise(r.output[0], window), r.wall_s, r.cpu_s) for m, r in runs.items()}}
        record = slice_record(item, modality, k, f"in-plane x{SCALE}")
        score_methods(record, clean, outputs)
        _sharpness(record, clean, outputs)
        records.append(record)
        print(f"  {item.split('/')[-2 if item.endswith('.gz') else -1][:28]:28s} slice {k:3d} " + " ".join(
            f"{m}: PSNR {v['psnr']:.2f} GE {v['ge_ratio']:.2f} LSD {v['lsd_upper_db']:.1f}"
            for m, v in record["methods"].items()), flush=True)
    return records


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {"slices": len(records), "items": sorted({r["item"] for r in records}),
                             "upper_band_cycles_per_px": list(UPPER_BAND), "methods": {}}
    for method in METHODS:
        table["methods"][method] = {m: summarize([r["methods"][method][m] for r in records]) for m in METRICS}
    gan, fid = table["methods"]["gan"], table["methods"]["fidelity"]
    table["gan_minus_fidelity_db"] = gan["psnr"]["mean"] - fid["psnr"]["mean"]
    table["gan_minus_fidelity_db_body"] = gan["psnr_body"]["mean"] - fid["psnr_body"]["mean"]
    table["gan_minus_fidelity_ssim"] = gan["ssim"]["mean"] - fid["ssim"]["mean"]
    table["gan_minus_bicubic_db"] = gan["psnr"]["mean"] - table["methods"]["bicubic"]["psnr"]["mean"]
    # Per slice, so one very sharp slice cannot hide a smooth majority.
    closer = [abs(np.log(r["methods"]["gan"]["ge_ratio"])) < abs(np.log(r["methods"]["fidelity"]["ge_ratio"]))
              for r in records]
    lower = [r["methods"]["gan"]["lsd_upper_db"] < r["methods"]["fidelity"]["lsd_upper_db"] for r in records]
    table["gan_gradient_energy_closer_slices"] = int(sum(closer))
    table["gan_lower_lsd_slices"] = int(sum(lower))
    table["target"] = ("GAN sharper than the fidelity model: lower upper-band log-spectral distance to the original "
                       "and gradient energy ratio closer to 1 (mean over slices)")
    table["target_met"] = bool(gan["lsd_upper_db"]["mean"] < fid["lsd_upper_db"]["mean"]
                               and abs(np.log(gan["ge_ratio"]["mean"])) < abs(np.log(fid["ge_ratio"]["mean"])))
    return table


def print_table(table: dict[str, Any]) -> None:
    print(f"\n### {GAN_MODEL}: in-plane x{SCALE} — {table['slices']} held-out slices from {len(table['items'])} "
          f"items\n")
    print("| method | PSNR dB | PSNR body dB | SSIM | SSIM body | gradient energy / HR (body) | upper-band LSD dB | "
          "upper-band power vs HR dB | s/slice CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in METHODS:
        m = table["methods"][method]
        print(f"| {LABELS[method]} | {pm(m['psnr'], 2)} | {pm(m['psnr_body'], 2)} | {pm(m['ssim'], 4)} | "
              f"{pm(m['ssim_body'], 4)} | {pm(m['ge_ratio'], 3)} | {pm(m['lsd_upper_db'], 2)} | "
              f"{pm(m['upper_power_db'], 2)} | {pm(m['cpu_s'], 3)} |")
    n = table["slices"]
    print(f"\nupper band = {UPPER_BAND[0]:.3f}-{UPPER_BAND[1]:.1f} cycles/px (beyond the x{SCALE} coarser grid's "
          f"Nyquist). GAN − fidelity: {table['gan_minus_fidelity_db']:+.2f} dB PSNR whole, "
          f"{table['gan_minus_fidelity_db_body']:+.2f} dB body, {table['gan_minus_fidelity_ssim']:+.4f} SSIM; "
          f"GAN − bicubic {table['gan_minus_bicubic_db']:+.2f} dB.")
    print(f"GAN lower LSD on {table['gan_lower_lsd_slices']}/{n} slices, gradient energy closer to HR on "
          f"{table['gan_gradient_energy_closer_slices']}/{n}. Target ({table['target']}): "
          f"{'met' if table['target_met'] else 'NOT met'}")


def time_models(models: dict[str, Any], threads: int = 2, repeats: int = 3) -> dict[str, Any]:
    """Seconds per 512x512 output slice (a 128x128 input) at ``threads`` threads: one pass and the operation's
    test-time augmentation (4 passes + spread); the median of ``repeats``, with the load average."""
    import torch

    from medscan.ops.restore import generate_planes, run_planes

    torch.set_num_threads(threads)
    volume, _ = load_volume(HELDOUT_ITEMS[0])
    plane = area_downsample(volume[len(volume) // 2][:512, :512], SCALE)[None]
    cpu = torch.device("cpu")
    out: dict[str, Any] = {"threads": threads, "input": list(plane.shape[1:]), "output": [512, 512],
                           "load_average_start": os.getloadavg()[0]}
    for name, model in models.items():
        run_planes(plane, model, cpu)  # warm-up: kernel choice stays out of the timing
        single = [timed(lambda m=model: run_planes(plane, m, cpu)).wall_s for _ in range(repeats)]
        tta = [timed(lambda m=model, c=name == "gan": generate_planes(plane, m, cpu, consistent=c)[0]).wall_s
               for _ in range(repeats)]
        out[name] = {"single_pass_s": float(np.median(single)), "operation_tta_s": float(np.median(tta))}
    out["load_average_end"] = os.getloadavg()[0]
    torch.set_num_threads(1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = heldout_parser(__doc__, 6, "1 slice of one CT and one MR item")
    parser.add_argument("--timing", action="store_true", help="also time a 512x512 slice at 2 threads")
    args = parser.parse_args(argv)

    import torch

    from medscan.nets.weights import load_model
    from medscan.scan import MedscanError

    torch.set_num_threads(1)
    items, per_item = ((HELDOUT_ITEMS[0], HELDOUT_ITEMS[1]), 1) if args.quick else (HELDOUT_ITEMS, args.slices)
    assert not set(items) & set(TRAIN_ITEMS), "held-out items overlap the training items"
    try:
        gan, gan_card = load_model(GAN_MODEL)
        fidelity, fidelity_card = load_model(FIDELITY_MODEL)
    except MedscanError as exc:
        print(f"{exc} (train it: python scripts/train_gan_sr.py --scale {SCALE})", file=sys.stderr)
        return 2
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    print(f"## GAN {gan_card.name} v{gan_card.version} sha256 {gan_card.data['sha256'][:12]}; fidelity "
          f"{fidelity_card.name} v{fidelity_card.version} sha256 {fidelity_card.data['sha256'][:12]}", flush=True)
    records = evaluate(items, per_item, fidelity, gan)
    table = aggregate(records)
    print_table(table)
    meta: dict[str, Any] = {
        "script": "python scripts/evaluate_gan_sr.py " + " ".join(argv or sys.argv[1:]), "items": list(items),
        "slices_per_item": per_item, "threads": 1, "seconds": round(time.perf_counter() - started),
        "load_average_start": load_start, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "protocol": PROTOCOL, "fidelity_model": {"name": fidelity_card.name,
                                                       "sha256": fidelity_card.data["sha256"]}}
    if args.timing:
        meta["timing_512"] = time_models({"fidelity": fidelity, "gan": gan})
        t = meta["timing_512"]
        print(f"\nseconds per 512x512 output slice at {t['threads']} threads (load average "
              f"{t['load_average_start']:.1f} → {t['load_average_end']:.1f}): " + "; ".join(
                  f"{LABELS[m]} {t[m]['single_pass_s']:.3f} s one pass, {t[m]['operation_tta_s']:.3f} s with the "
                  "operation's 4-pass TTA uncertainty" for m in ("fidelity", "gan")))
    if args.cards and not args.quick:
        print(f"figures written to {write_card_figures(GAN_MODEL, {f'in-plane x{SCALE}': table}, meta)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "table": table, "per_slice": records}, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
