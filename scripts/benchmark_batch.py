"""Series per minute for a batch of the same N series: one CLI call per series vs ``medscan batch``
on a local pool of 1 and 2 workers and on a Dask LocalCluster of 2 worker processes (loopback).

    python scripts/benchmark_batch.py                       # 20 copies of the bundled MR sample
    python scripts/benchmark_batch.py --count 8 --operation highlight

The series are the bundled sample MR (10 slices of 256x256) under fresh UIDs, so each is a distinct
series with the same pixels; every configuration writes NIfTI into its own folder. Times are wall
clock including process start, model loading and writing; the CLI baseline runs the calls one after
another, as a shell loop would. On a machine with 2 cores, 2 workers share the same 2 cores that one
worker's torch already uses (2 threads vs 2 x 1 thread), so expect little gain from 1 to 2 workers here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "mr_brain_t1_sag_siemens"
KEY, USER, USER_KEY = "benchmark key", "bench", "bench pass"


def make_series(root: Path, count: int) -> list[Path]:
    import pydicom
    from pydicom.uid import generate_uid

    folders = []
    for number in range(count):
        folder = root / f"series{number:02d}"
        folder.mkdir(parents=True)
        uid = generate_uid()
        for index, path in enumerate(sorted(SAMPLE.glob("*.dcm"))):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.SeriesNumber = uid, 100 + number
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"{index:03d}.dcm", enforce_file_format=True)
        folders.append(folder)
    return folders


def _env() -> dict[str, str]:
    return {**os.environ, "MEDSCAN_DB_KEY": KEY, "MEDSCAN_USER": USER, "MEDSCAN_USER_KEY": USER_KEY}


def cli_per_series(folders: list[Path], out: Path, operation: str) -> float:
    out.mkdir()
    start = time.perf_counter()
    for folder in folders:
        subprocess.run([sys.executable, "-m", "medscan", "clean", operation, str(folder), "-o",
                        str(out / f"{folder.name}.nii.gz")], check=True, env=_env(), capture_output=True)
    return time.perf_counter() - start


def batch(folders: list[Path], work: Path, name: str, operation: str, extra: list[str]) -> float:
    spec = work / f"{name}.yaml"
    spec.write_text(f"operation: {operation}\ninputs:\n" + "".join(f"  - folder: {f}\n" for f in folders)
                    + f"output: {{folder: {work / name}, format: nifti}}\n")
    db = work / f"{name}.db"
    subprocess.run([sys.executable, "-m", "medscan", "db", "init", "--db", str(db)], check=True, env=_env(),
                   capture_output=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medscan", "batch", "run", str(spec), "--db", str(db), *extra],
                   check=True, env=_env(), capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--operation", default="denoise")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from distributed import LocalCluster

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="medscan-bench-") as tmp:
        work = Path(tmp)
        folders = make_series(work / "in", args.count)
        rows.append(("CLI, one call per series", cli_per_series(folders, work / "cli", args.operation)))
        rows.append(("batch, local pool, 1 worker", batch(folders, work, "local1", args.operation, ["--workers", "1"])))
        rows.append(("batch, local pool, 2 workers", batch(folders, work, "local2", args.operation,
                                                           ["--workers", "2"])))
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            rows.append(("batch, Dask LocalCluster, 2 processes", batch(folders, work, "dask2", args.operation,
                                                                        ["--scheduler", cluster.scheduler_address])))
    baseline = rows[0][1]
    print(f"{args.count} series ({args.operation}, sample MR 10x256x256), {os.cpu_count()} CPU cores")
    print(f"| {'configuration':<40} | {'seconds':>8} | {'series/min':>10} | {'vs CLI':>6} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 12}|{'-' * 8}|")
    for name, seconds in rows:
        print(f"| {name:<40} | {seconds:8.1f} | {60 * args.count / seconds:10.1f} | {baseline / seconds:5.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "operation": args.operation, "cores": os.cpu_count(),
                                         "rows": [{"configuration": n, "seconds": s} for n, s in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
