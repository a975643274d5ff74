"""Precompute projection-domain low-dose CT noise for training the denoiser (never into the repository).

    python scripts/simulate_low_dose_ct.py --out runs/low_dose_ct            # resumes: finished slices are kept
    python scripts/simulate_low_dose_ct.py --out runs/ldct_heldout --heldout  # the evaluation's slices

Each chosen axial slice of a full-dose CT gets one realisation per kernel (sharp, standard, soft), each at an
exposure-control target drawn log-uniformly between 15 and 60 HU of soft-tissue noise (about routine to a
tenth of routine dose). One file per slice: the clean slice (HU), the noise maps (HU, float16), their kernels,
targets and I0.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from medscan.degrade.low_dose_ct import KERNEL_FILTERS, line_integrals, photons_for_noise
from medscan.io import load
from medscan.resources import shared_data_dir
from medscan.train.data import LOW_DOSE_CT_HELDOUT_ITEMS, LOW_DOSE_CT_TRAIN_ITEMS

TARGET_RANGE_HU = (15.0, 60.0)


def body_slices(volume: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` slice indices spread evenly over the slices with at least half the largest body section."""
    body = (volume > -500).reshape(len(volume), -1).sum(axis=1)
    candidates = np.flatnonzero(body >= 0.5 * body.max())
    if len(candidates) <= count:
        return [int(i) for i in candidates]
    return [int(candidates[i]) for i in np.linspace(0, len(candidates) - 1, count).round().astype(int)]


def simulate_item(item: str, out: Path, per_item: int, seed: int) -> int:
    scan = load(shared_data_dir() / item)
    volume = np.asarray(scan.voxels if scan.voxels.ndim == 3 else scan.voxels[0], np.float32)
    pixel_mm = float(scan.spacing[0])
    made = 0
    for index in body_slices(volume, per_item):
        path = out / f"{item.replace('/', '__')}__{index:03d}.npz"
        if path.exists():
            continue
        rng = np.random.default_rng([seed, zlib.crc32(item.encode()), index])
        clean = np.clip(volume[index], -1024, None)  # below -1024: outside the reconstruction circle
        sinogram = line_integrals(clean, pixel_mm)
        kernels = list(KERNEL_FILTERS)
        targets = np.exp(rng.uniform(*np.log(TARGET_RANGE_HU), len(kernels)))
        noises, photons = [], []
        for kernel, target in zip(kernels, targets, strict=True):
            dose, noise = photons_for_noise(clean, sinogram, pixel_mm, float(target), kernel, rng)
            noises.append(noise.astype(np.float16))
            photons.append(dose)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, clean=clean, noise=np.stack(noises), kernels=np.array(kernels), targets=targets,
                 photons=np.array(photons), item=item, index=index, pixel_mm=pixel_mm)
        tmp.replace(path)
        made += 1
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/low_dose_ct"))
    parser.add_argument("--per-item", type=int, default=8, help="slices per CT volume (single-slice files give one)")
    parser.add_argument("--heldout", action="store_true", help="the held-out subjects instead of the training ones")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard", default="0/1", help="I/N: this process takes every N-th item from the I-th")
    args = parser.parse_args(argv)
    items = LOW_DOSE_CT_HELDOUT_ITEMS if args.heldout else LOW_DOSE_CT_TRAIN_ITEMS
    try:
        shard, shards = (int(part) for part in args.shard.split("/"))
        if not 0 <= shard < shards:
            raise ValueError
    except ValueError:
        parser.error(f"--shard {args.shard!r}: expected I/N with 0 <= I < N")
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    for item in items[shard::shards]:
        made = simulate_item(item, args.out, args.per_item, args.seed)
        print(f"{item}: {made} slice(s) simulated ({time.time() - began:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
