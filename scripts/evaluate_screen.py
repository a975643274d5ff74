"""Quality triage on degraded copies of every usable CT and MR volume in ../shared/data.

For each degradation and level the table gives the sensitivity (copies whose matching badge is at 'flag') and,
for the clean originals, the false-flag rate (originals with any badge at 'flag'). Nothing is trained, so
held-out and training volumes are all used. Degradations:

* noise — white Gaussian noise in HU (CT) or Rician noise with sigma a fraction of the body's 99th percentile (MR);
* motion (MR) — ``medscan.degrade.motion`` k-space simulation (mild/moderate/severe) along the header's
  phase-encoding axis (InPlanePhaseEncodingDirection), the vertical axis where the header has none;
* slices — 1/2/3 interior slices removed (the slice positions then have gaps, as the DICOM loader sees them), or one
  interior slice blanked; the two DICOM series also lose real files from a copy and go through the loader;
* crop — the field of view cut so that 10/20/30 % of the body's width is lost on one side.

Volumes longer than 64 slices are evaluated on every n-th slice (slice spacing scaled to match), to keep the run
within minutes on a shared 2-core machine; the DICOM series go through the loader unchanged.

Usage: ``python scripts/evaluate_screen.py [--data ../shared/data] [--quick] [--values]``
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medscan.io import load
from medscan.io.dicom import list_series
from medscan.resources import shared_data_dir
from medscan.scan import Scan
from medscan.screen import quality

DEFAULT_DATA = shared_data_dir()

CT_NOISE_HU = (25.0, 50.0, 100.0)
MR_NOISE = (0.02, 0.05, 0.10)
MOTION = ("mild", "moderate", "severe")
DELETE = (1, 2, 3)
CROP = (0.10, 0.20, 0.30)
MAX_SLICES = 64  # longer volumes are evaluated on every n-th slice (the screen samples 24 slices anyway)
# The level of each degradation from which on the target (>= 95 % flagged) is claimed: the detection floor.
# Originals whose source says they were cut from a larger scan: their field of view IS truncated, so they are scored
# as real truncation cases (the FOV badge must flag) and are excluded from the clean false-flag count for FOV only.
CROPPED_AT_SOURCE = {
    "labelled/ct_aorta_totalseg_example/ct.nii.gz": "labelled/SOURCES.md: TotalSegmentator's ct_cropped.nii.gz, "
                                                    "'chest/abdomen, cropped around the aorta'",
}
FLOOR = {"noise": "level 2", "motion": "moderate", "slices": "1 deleted", "crop": "10 %"}


def volumes(data: Path) -> list[str]:
    """Every CT/MR volume (no label maps; labelled/ brain copies duplicate paired/ and are skipped)."""
    items = [str(p) for p in sorted(data.glob("train/*.nii.gz"))]
    items += [str(p) for p in sorted(data.glob("train/*_dicom"))]
    items += [str(p) for p in sorted(data.glob("train-extra/*.nii.gz"))]
    items += [p for p in sorted(glob.glob(str(data / "paired/*/*.nii.gz"))) if "seg" not in p]
    items += [p for p in sorted(glob.glob(str(data / "labelled/ct_*/ct.nii.gz")))]
    return items


def with_voxels(scan: Scan, voxels: np.ndarray, affine: np.ndarray | None = None) -> Scan:
    from medscan.scan import ProvenanceEntry

    return scan.derive(voxels, ProvenanceEntry("degrade", {}), affine=affine)


def body_p99(scan: Scan) -> float:
    v = scan.voxels[:, ::4, ::4]
    return float(np.percentile(v[v > quality.body_threshold(scan, v)], 99))


def add_noise(scan: Scan, level: float, rng: np.random.Generator) -> Scan:
    v = scan.voxels.astype(np.float32)
    if scan.modality == "CT":
        return with_voxels(scan, v + rng.normal(0, level, v.shape).astype(np.float32))
    sigma = level * body_p99(scan)
    real = v + rng.normal(0, sigma, v.shape).astype(np.float32)
    imag = rng.normal(0, sigma, v.shape).astype(np.float32)
    return with_voxels(scan, np.sqrt(real**2 + imag**2))


def add_motion(scan: Scan, severity: str, seed: int) -> Scan:
    import torch

    from medscan.degrade.motion import add_motion as simulate

    torch.set_num_threads(1)
    # The simulator's phase-encoding axis is -2; a header saying ROW puts it on -1, so turn the slices for it.
    row = quality.phase_encoding_axes(scan)[0] == [-1]
    v = scan.voxels.transpose(0, 2, 1) if row else scan.voxels
    scale = float(np.percentile(v, 99.5)) or 1.0
    x = torch.from_numpy(np.ascontiguousarray(v / scale, dtype=np.float32))[:, None]
    out = simulate(x, severity, torch.Generator().manual_seed(seed))[:, 0].numpy() * scale
    return with_voxels(scan, out.transpose(0, 2, 1) if row else out)


def delete_slices(scan: Scan, count: int, rng: np.random.Generator) -> tuple[Scan, np.ndarray]:
    """Remove ``count`` non-adjacent interior slices; return the scan and its slice steps from the positions."""
    n = scan.voxels.shape[0]
    candidates = np.arange(2, n - 2, 3)
    drop = np.sort(rng.choice(candidates, size=min(count, candidates.size), replace=False))
    keep = np.setdiff1d(np.arange(n), drop)
    positions = scan.index_to_world(np.stack([np.zeros(keep.size), np.zeros(keep.size), keep], axis=1))
    normal = scan.direction[:, 2]
    steps = np.diff(positions @ normal)
    return with_voxels(scan, scan.voxels[keep], affine=scan.affine), np.abs(steps)


def blank_slice(scan: Scan, rng: np.random.Generator) -> Scan:
    v = scan.voxels.copy()
    v[int(rng.integers(v.shape[0] // 4, 3 * v.shape[0] // 4))] = float(v.min())
    return with_voxels(scan, v)


def crop_fov(scan: Scan, fraction: float) -> Scan:
    """Cut ``fraction`` of the body's width off one side along an in-plane axis that is not the long axis."""
    exempt = quality.exempt_edges(scan)
    axis = 2 if "left" not in exempt else 1
    sampled = quality._sample(scan)
    masks = np.any(sampled.masks, axis=0)
    extent = np.flatnonzero(masks.any(axis=0 if axis == 2 else 1)) * sampled.stride
    lo, hi = int(extent[0]), int(extent[-1]) + sampled.stride
    cut = lo + round(fraction * (hi - lo))
    v = scan.voxels[:, :, cut:] if axis == 2 else scan.voxels[:, cut:, :]
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world(np.array([[cut, 0, 0]] if axis == 2 else [[0, cut, 0]]))[0]
    return with_voxels(scan, v, affine=affine)


def dicom_delete(folder: str, count: int, rng: np.random.Generator) -> list[quality.Badge]:
    """Copy a DICOM series, delete ``count`` interior files, screen it through the loader."""
    record = list_series(folder).series[0]
    n = len(record.frames)
    order = sorted(record.frames, key=lambda f: float(np.dot(f.position, np.cross(f.row_cosine, f.column_cosine))))
    drop = {order[int(k)].path for k in rng.choice(np.arange(2, n - 2, 3), size=count, replace=False)}
    with tempfile.TemporaryDirectory() as tmp:
        for frame in record.frames:
            if frame.path not in drop:
                shutil.copy(frame.path, Path(tmp) / Path(frame.path).name)
        _, badges = quality.screen_record(list_series(tmp).series[0])
    return badges


def level_of(badges: list[quality.Badge], name: str) -> str:
    return next((b.level for b in badges if b.name == name), "n/a")


def value_of(badges: list[quality.Badge], name: str) -> float | None:
    return next((b.value for b in badges if b.name == name), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="first CT and first MR only")
    parser.add_argument("--values", action="store_true", help="print every measured value")
    args = parser.parse_args()
    items = volumes(args.data)
    if args.quick:
        items = [items[0], next(i for i in items if "mr" in i or "brain" in i)]
    rng = np.random.default_rng(0)
    flagged: dict[tuple[str, str], list[bool]] = defaultdict(list)
    clean_flags: list[str] = []
    started = time.time()
    for number, path in enumerate(items):
        name = os.path.relpath(path, args.data)
        if path.endswith("_dicom"):
            record = list_series(path).series[0]
            scan, badges = quality.screen_record(record)
        else:
            scan = load(path)
            badges = quality.screen_scan(scan)
        if scan.voxels.ndim != 3:
            continue
        if scan.voxels.shape[0] > MAX_SLICES:  # keep the run short: every n-th slice, geometry kept consistent
            step = -(-scan.voxels.shape[0] // MAX_SLICES)
            affine = scan.affine.copy()
            affine[:3, 2] *= step
            scan = with_voxels(scan, scan.voxels[::step], affine=affine)
            badges = quality.screen_scan(scan)
        bad = [f"{b.name}={b.value}" for b in badges if b.level == "flag"]
        if name in CROPPED_AT_SOURCE:  # a real truncated scan: the FOV flag is the right answer, nothing else is
            flagged[("crop", "at source")].append(level_of(badges, "field of view") == "flag")
            bad = [b for b in bad if not b.startswith("field of view=")]
        flagged[("clean", "original")].append(bool(bad))
        if bad:
            clean_flags.append(f"{name}: {', '.join(bad)}")
        if args.values:
            print(f"{name:55s} clean  " + "  ".join(f"{b.name[:6]}={b.value}" for b in badges), flush=True)
        cases: list[tuple[str, str, str, list[quality.Badge]]] = []
        levels = CT_NOISE_HU if scan.modality == "CT" else MR_NOISE
        for index, level in enumerate(levels, start=1):
            cases.append(("noise", f"level {index}", "noise", quality.screen_scan(add_noise(scan, level, rng))))
        if scan.modality == "MR":
            for severity in MOTION:
                cases.append(("motion", severity, "ghosting",
                              quality.screen_scan(add_motion(scan, severity, 1000 + number))))
        for count in DELETE:
            if path.endswith("_dicom"):
                cases.append(("slices", f"{count} deleted", "slices", dicom_delete(path, count, rng)))
            else:
                degraded, steps = delete_slices(scan, count, rng)
                cases.append(("slices", f"{count} deleted", "slices", quality.screen_scan(degraded, steps=steps)))
        cases.append(("slices", "1 blanked", "slices", quality.screen_scan(blank_slice(scan, rng))))
        for fraction in CROP:
            cases.append(("crop", f"{100 * fraction:.0f} %", "field of view",
                          quality.screen_scan(crop_fov(scan, fraction))))
        for kind, level, badge, result in cases:
            flagged[(kind, level)].append(level_of(result, badge) == "flag")
            if args.values:
                print(f"{'':55s} {kind:7s}{level:11s}{badge}={value_of(result, badge)} {level_of(result, badge)}",
                      flush=True)
    print(f"\nQuality triage on {len(items)} volumes ({time.time() - started:.0f} s); flag = badge level 'flag'")
    print(f"{'degradation':<12}{'level':<12}{'copies':>7}{'flagged':>9}{'rate':>9}  floor")
    for (kind, level), hits in flagged.items():
        floor = "*" if FLOOR.get(kind) == level or (kind == "noise" and level == "level 2") else ""
        label = "false flags" if kind == "clean" else "sensitivity"
        print(f"{kind:<12}{level:<12}{len(hits):>7}{sum(hits):>9}{100 * np.mean(hits):>8.1f}%  {floor} {label}")
    print("noise levels: CT white Gaussian " + "/".join(f"{x:g}" for x in CT_NOISE_HU)
          + " HU; MR Rician sigma " + "/".join(f"{100 * x:g}" for x in MR_NOISE) + " % of the body's p99")
    for line in clean_flags:
        print(f"clean original flagged: {line}")
    for name, why in CROPPED_AT_SOURCE.items():
        print(f"truncated at source, scored as a crop (FOV flag expected), not as a clean original: {name} — {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
