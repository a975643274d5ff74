"""Seconds per slice (512x512 unless the table says otherwise) for every registered operation (Clean and Generate),
on CPU and on CUDA if present.

    python scripts/benchmark_ops.py --threads 2 --json runs/benchmark_ops.json

Each operation runs through ``medscan.ops.run`` — the whole operation a user gets (fidelity guard, test-time
augmentation for the uncertainty map, writing back in the input's units) — on a 3-slice 512x512 volume, after
one warm-up run (model load, hash check, kernel choice). CT operations get slices of
``train/ct01_upper_abdomen_siemens.nii.gz``; MR-only ones a held-out MR series resampled to 512x512 (the
timing depends on the pixel count, not on the content). Seconds per slice = wall time / input slices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SLICES = 3
SIZE = 512
# Parameters for operations that need more than their defaults (a region, a slice to replace, a scale).
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "inpaint": [{"box": f"0,150,150,{SLICES},350,330"}],  # about 14 % of every slice
    "fill_slices": [{"slices": "1"}],
    "super_resolve": [{"scale": "2"}, {"scale": "4"}, {"scale": "4", "gan": True},
                      {"scale": "2", "axis": "through-plane"}],
    "translate": [{"to": "T2", "from": "T1"}, {"to": "FLAIR", "from": "T1"}],
}
# Operations that refuse the generic inputs get their own: translate needs >= 10 axial slices of a skull-stripped
# brain, so it runs on the held-out paired T1 at its native 240x240, 1 mm (the model's grid).
INPUT_OF: dict[str, str] = {"translate": "BRAIN"}
BRAIN_SLICES = 10


def _volumes() -> dict[str, Any]:
    from scipy.ndimage import zoom

    from medscan.io import load
    from medscan.train.data import DATA_ROOT

    ct = load(DATA_ROOT / "train/ct01_upper_abdomen_siemens.nii.gz")
    ct = dataclasses.replace(ct, voxels=np.ascontiguousarray(ct.voxels[7:7 + SLICES]), source_refs=[])
    mr = load(DATA_ROOT / "train/mr03_brain_t1_2d_sag_siemens_dicom")
    k = mr.voxels.shape[0] // 2
    planes = mr.voxels[k - SLICES // 2:k - SLICES // 2 + SLICES]
    factor = (1, SIZE / planes.shape[1], SIZE / planes.shape[2])
    affine = mr.affine.copy()
    affine[:3, :2] /= np.array([factor[2], factor[1]])
    mr = dataclasses.replace(mr, voxels=zoom(planes, factor, order=1).astype(np.float32), affine=affine,
                             source_refs=[])
    brain = load(DATA_ROOT / "paired/brain_tcga_fg_6692/t1.nii.gz")
    brain = dataclasses.replace(brain, voxels=np.ascontiguousarray(brain.voxels[70:70 + BRAIN_SLICES]),
                                source_refs=[])
    return {"CT": ct, "MR": mr, "BRAIN": brain}


def _cases(modality_of: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    from medscan.ops import operations

    cases = []
    for op in operations():
        modality = INPUT_OF.get(op.name, "CT" if "CT" in op.modalities else op.modalities[0])
        if modality not in modality_of:
            continue
        for params in EXAMPLES.get(op.name, [{}]):
            cases.append((op.name, params, modality))
    return cases


def _time(name: str, scan, params: dict[str, Any], device: str) -> tuple[float, float]:
    import torch

    from medscan.ops import run

    run(name, scan, device=device, **params)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    run(name, scan, device=device, **params)
    if device == "cuda":
        torch.cuda.synchronize()
    slices = scan.volume_shape[0]
    return (time.perf_counter() - start) / slices, (time.process_time() - cpu) / slices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="operation names to time (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    scans = _volumes()
    rows = []
    load_start = os.getloadavg()[0]
    for name, params, modality in _cases(scans):
        if args.only and name not in args.only:
            continue
        label = name + "".join(f" {k}={v}" for k, v in params.items() if k not in ("box", "slices"))
        rows_cols = "x".join(str(n) for n in scans[modality].volume_shape[1:])
        row: dict[str, Any] = {"operation": label, "input": modality, "size": rows_cols}
        for device in devices:
            try:
                wall, cpu = _time(name, scans[modality], params, device)
                row[device] = {"s_per_slice": wall, "cpu_s_per_slice": cpu}
            except Exception as exc:  # a benchmark reports what failed and goes on
                row[device] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        rows.append(row)
        print(_line(row, devices), flush=True)
    print()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"load average at start {load_start:.2f}")
    header = "| operation | input | " + " | ".join(f"{d.upper()} s/slice" for d in devices) + " |"
    print(header)
    print("|" + "---|" * (2 + len(devices)))
    for row in rows:
        print(_line(row, devices))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows, "load_average_start": load_start,
                                         "torch": torch.__version__}, indent=2))
    return 0


def _line(row: dict[str, Any], devices: list[str]) -> str:
    cells = []
    for device in devices:
        cell = row.get(device, {})
        cells.append(cell["error"] if "error" in cell else f"{cell['s_per_slice']:.3f}")
    return f"| {row['operation']} | {row['input']} {row.get('size', '512x512')} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
