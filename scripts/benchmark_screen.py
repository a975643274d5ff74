"""Seconds for ``medscan screen`` on a 120-slice 512x512 CT, on 2 CPU threads (issue 10: under 30 s).

The study is ``train/ct01_upper_abdomen_siemens_dicom`` (20 JPEG 2000 slices of 512x512) tiled 6 times along
the table, like ``scripts/benchmark.py`` tiles ct01: each copy's ImagePositionPatient moves on by the stack's
length and gets new UIDs, so the loader sees one 120-slice series and decodes every slice. Timed:

* ``medscan screen FOLDER --json`` end to end in a fresh process (start-up, header walk, JPEG 2000 decoding of
  120 slices, the triage) — the figure the issue asks for;
* the same on a 120-slice NIfTI of the same voxels (no decoding);
* ``screen_scan`` alone on the loaded scan, in this process (the triage's own cost).

Threads: OMP/MKL/OpenBLAS/numexpr limited to ``--threads`` (default 2); numpy/scipy work here is single-threaded
anyway. On a shared machine wall time depends on the load, so CPU seconds are printed beside it.

Usage: ``python scripts/benchmark_screen.py [--threads 2] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medscan.resources import shared_data_dir

DATA = shared_data_dir()
SOURCE = DATA / "train" / "ct01_upper_abdomen_siemens_dicom"
SERIES = 120
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def tile_dicom(out: Path, count: int = SERIES) -> int:
    """Write ``count`` slices: the source series repeated along its slice normal with fresh UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    files = sorted(p for p in SOURCE.rglob("*") if p.is_file())
    datasets = [pydicom.dcmread(p) for p in files]
    normal = np.cross(*(np.asarray(datasets[0].ImageOrientationPatient, float).reshape(2, 3)))
    heights = [float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)) for ds in datasets]
    order = np.argsort(heights)
    step = (heights[order[-1]] - heights[order[0]]) / (len(files) - 1)
    length = step * len(files)
    series_uid = generate_uid()
    written = 0
    for rep in range(-(-count // len(files))):
        for index in order:
            if written == count:
                return written
            ds = pydicom.dcmread(files[index])
            ds.ImagePositionPatient = [float(v) for v in np.asarray(ds.ImagePositionPatient, float)
                                       - rep * length * normal]
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesInstanceUID = series_uid
            ds.InstanceNumber = written + 1
            ds.save_as(out / f"slice{written:03d}.dcm")
            written += 1
    return written


def run_cli(path: Path, threads: int) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, worst level) for ``medscan screen PATH --json`` in a fresh process."""
    import json
    import resource

    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medscan", "screen", str(path), "--json"], env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    entries = json.loads(done.stdout)
    return wall, cpu, ",".join(f"{e['slices']} slices {e['worst']}" for e in entries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(args.threads)
    from medscan.io import load, save
    from medscan.screen.quality import screen_scan

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ct120"
        folder.mkdir()
        count = tile_dicom(folder)
        scan = load(folder)
        assert scan.volume_shape == (SERIES, 512, 512), scan.volume_shape
        nifti = save(scan, Path(tmp) / "ct120.nii.gz")
        for label, path in (("medscan screen DICOM folder (JPEG 2000, decode + triage)", folder),
                            ("medscan screen NIfTI (.nii.gz read + triage)", nifti)):
            runs = [run_cli(path, args.threads) for _ in range(args.repeats)]
            walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
            rows.append((label, float(np.median(walls)), float(min(walls)), float(np.median(cpus)), runs[0][2]))
        walls, cpus = [], []
        for _ in range(args.repeats):
            started, cpu0 = time.perf_counter(), time.process_time()
            badges = screen_scan(scan)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu0)
        worst = max((b.level for b in badges), key=("ok", "warn", "flag").index)
        rows.append(("screen_scan only (loaded scan, in process)", float(np.median(walls)), float(min(walls)),
                     float(np.median(cpus)), f"{SERIES} slices {worst}"))
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{count}-slice 512x512 CT (ct01 tiled), {args.threads} threads, {args.repeats} runs each; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"| {'what':<58} | median s | best s | CPU s | result |")
    print(f"|{'-' * 60}|---------:|-------:|------:|--------|")
    for label, median, best, cpu, result in rows:
        print(f"| {label:<58} | {median:8.2f} | {best:6.2f} | {cpu:5.2f} | {result} |")
    target = rows[0][1]
    verdict = "met" if target < 30 else "NOT met"
    print(f"\nissue 10 target: under 30 s on 2 threads -> {verdict} ({target:.1f} s median, end to end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
