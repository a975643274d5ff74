"""Where a user waits, each row beside its anchor measured in the same run, with peak memory.

    python scripts/benchmark.py                    # both sections; model from MEDSCAN_MODELS or models/
    python scripts/benchmark.py --sections io      # start-up, open and convert, beside dcm2niix (~1 min)
    python scripts/benchmark.py --sections denoise --json runs/benchmark_denoise.json

Section ``io`` (issue 23): whole processes, alternated and repeated ``--runs`` times, median seconds and peak
resident memory of each (``os.wait4``'s rusage of that child):

* start-up: ``medscan --version`` and ``medscan info`` on samples/, beside the bare interpreter (``python -c pass``);
* convert: an uncompressed 80- and 275-file 512x512 CT series (the real Siemens CT ``train/ct01`` decompressed and
  its 20 slices repeated 1 mm apart: real headers and pixels, only the count is made up) to ``.nii`` and
  ``.nii.gz``, beside ``dcm2niix -z n`` / ``-z y`` on the same folder; the JPEG 2000 CT (ct01 itself) and an
  enhanced multi-frame MR conformance item beside dcm2niix too.

Section ``denoise`` — seconds per 512x512 slice and per 120-slice series, and peak memory, beside its baselines:

Issue 3 asks for a 120-slice 512x512 series in under 60 s on 2 CPU threads and under 4 GB. Here:

* ours = ``medscan.ops.run('denoise', scan)`` — the whole operation a user gets, fidelity guard included —
  on slices of ``train/ct01_upper_abdomen_siemens.nii.gz`` (20 slices of 512x512), torch on ``--threads``
  threads. A batch of ``--batch`` slices is timed; when that predicts a series under ``--measure-series-below``
  seconds, a real 120-slice series (ct01 tiled 6 times) is run and timed too, otherwise the series time is
  extrapolated and the table says so.
* BM3D, NLM and TV run per slice (normalised, Gaussian noise 5 % of the window, given the true sigma as in
  the evaluation); they are single-threaded implementations, so their series time is 120 x per slice
  (one core), and the table also shows the ideal two-process figure (half of that).
* Every method runs in its own fresh process, so ``ru_maxrss`` (peak resident memory) belongs to that method:
  the table gives the peak and the part above the process's footprint before the method ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CT_ITEM = "train/ct01_upper_abdomen_siemens.nii.gz"
CT_DICOM_ITEM = "train/ct01_upper_abdomen_siemens_dicom"  # real Siemens CT, 20 x 512 x 512, JPEG 2000
ENHANCED_MR_ITEM = "conformance/dcm_qa_enh/In"  # enhanced multi-frame MR (Philips, Siemens XA)
SERIES = 120
ROOT = Path(__file__).resolve().parents[1]


# -- section io: start-up, open and convert beside dcm2niix -------------------------------------------------------
def _uncompressed_series(count: int, folder: Path) -> Path:
    """``count`` uncompressed files: ct01's real slices and headers, repeated 1 mm apart as one new series."""
    import copy

    import pydicom
    from pydicom.uid import generate_uid

    from medscan.train.data import DATA_ROOT

    folder.mkdir(parents=True)
    slices = [pydicom.dcmread(p) for p in sorted((DATA_ROOT / CT_DICOM_ITEM).iterdir())]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    for ds in slices:
        ds.decompress()
    series, z0 = generate_uid(), float(slices[0].ImagePositionPatient[2])
    for index in range(count):
        ds = copy.deepcopy(slices[index % len(slices)])
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], z0 + index]
        ds.SliceLocation, ds.SliceThickness = z0 + index, 1.0
        ds.save_as(folder / f"IM{index:04d}.dcm", enforce_file_format=True)
    return folder


# A small launcher runs each timed command: Linux carries the peak RSS of the process that execs into the child's
# figure, so the child must not start as a copy of this (large) process. It prints wall seconds and peak KB.
_LAUNCHER = """
import os, sys, time
began = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - began, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


# The workstation offscreen: open a folder, wait for the first slice in the viewer (the middle one: the series streams
# in from there) and for the whole series. Into argv[2]: seconds from the open to the first slice, from the listed
# folder (the browser then loads its first series, as a click on it would) to the first slice, and to the whole series.
_GUI_OPEN = """
import os, sys, tempfile, time
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from ui.qt_main_window import MainWindow
settings = QSettings(os.path.join(tempfile.mkdtemp(), "gui.ini"), QSettings.Format.IniFormat)
window = MainWindow(settings=settings, persist=False)
window.resize(1200, 800)
window.show()
app.processEvents()
shown, listed, complete = [], [], []
window.folderListed.connect(lambda folder: listed.append(time.perf_counter()))
window.firstSliceShown.connect(lambda partial: (window.viewer.grab(), shown.append(time.perf_counter())))  # painted
window.scanShown.connect(lambda scan: (complete.append(time.perf_counter()), app.quit()))
window.errorReported.connect(lambda message: (print(message, file=sys.stderr), app.exit(1)))
began = time.perf_counter()
window.open_path(sys.argv[1])
code = app.exec()
first = shown[0] if shown else complete[0] if complete else float("nan")  # one-file series: no streaming
open(sys.argv[2], "w").write(f"{first - began} {first - listed[0]} {complete[0] - listed[0]}" if complete
                             else "nan nan nan")
os._exit(code)  # background screening of the shown series is not part of the time asked for
"""


def _timed(command: list[str], clean: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; ``clean`` is emptied first (outputs are not reused)."""
    if clean is not None:
        shutil.rmtree(clean, ignore_errors=True)
        clean.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *command], capture_output=True, text=True)
    seconds, peak_kb, code = result.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}): {result.stderr.strip()[-300:]}")
    return float(seconds), float(peak_kb) / 1024.0


def _io_section(runs: int) -> list[dict[str, Any]]:
    from medscan.train.data import DATA_ROOT

    dcm2niix = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    medscan = [sys.executable, "-m", "medscan"]  # run from the repository root: this checkout's medscan
    os.chdir(ROOT)
    work = Path(tempfile.mkdtemp(prefix="medscan-bench-"))
    out = work / "out"
    try:
        print("writing the uncompressed test series ...", flush=True)
        ct80, ct275 = _uncompressed_series(80, work / "ct80"), _uncompressed_series(275, work / "ct275")
        j2k, enhanced = DATA_ROOT / CT_DICOM_ITEM, DATA_ROOT / ENHANCED_MR_ITEM
        pigz = "pigz" if shutil.which("pigz") else "its internal zlib (no pigz here)"

        def d2n(folder: Path, gz: bool = False) -> list[str]:
            return [dcm2niix, "-z", "y" if gz else "n", "-b", "n", "-f", "%s", "-o", str(out), str(folder)]

        cases = [
            ("medscan --version", [*medscan, "--version"], "python -c pass", [sys.executable, "-c", "pass"], 0),
            ("medscan info samples/", [*medscan, "info", str(ROOT / "samples")],
             "python -c pass", [sys.executable, "-c", "pass"], 0),
            ("convert 80 files -> .nii", [*medscan, "convert", str(ct80), "-o", str(out / "a.nii")],
             "dcm2niix -z n", d2n(ct80), 80),
            ("convert 275 files -> .nii", [*medscan, "convert", str(ct275), "-o", str(out / "a.nii")],
             "dcm2niix -z n", d2n(ct275), 275),
            ("convert 275 files -> .nii.gz", [*medscan, "convert", str(ct275), "-o", str(out / "a.nii.gz")],
             f"dcm2niix -z y ({pigz})", d2n(ct275, gz=True), 275),
            ("convert JPEG 2000 CT (20 files) -> .nii", [*medscan, "convert", str(j2k), "-o", str(out / "a.nii")],
             "dcm2niix -z n", d2n(j2k), 20),
            ("convert enhanced MR (Philips, 1 file) -> .nii",
             [*medscan, "convert", str(enhanced / "Philips"), "--series", "801.1", "-o", str(out / "a.nii")],
             "dcm2niix -z n (both sub-series)", d2n(enhanced / "Philips"), 0),
        ]
        rows = []
        gui_seconds = work / "gui_seconds.txt"
        gui = [sys.executable, "-c", _GUI_OPEN, str(ct275), str(gui_seconds)]
        cases.append(("GUI: open 275 files -> first slice shown (whole process)", gui,
                      "dcm2niix -z n", d2n(ct275), 275))
        for name, ours, anchor_name, anchor, files in cases:
            ours_runs, anchor_runs, gui_runs = [], [], []
            for _ in range(runs):  # alternated, so a burst of load hits both alike
                ours_runs.append(_timed(ours, out))
                anchor_runs.append(_timed(anchor, out))
                if ours is gui:
                    gui_runs.append([float(v) for v in gui_seconds.read_text().split()])
            row = {"what": name, "anchor": anchor_name, "runs": runs, "files": files,
                   "seconds": float(np.median([r[0] for r in ours_runs])),
                   "peak_mb": max(r[1] for r in ours_runs),
                   "anchor_seconds": float(np.median([r[0] for r in anchor_runs])),
                   "anchor_peak_mb": max(r[1] for r in anchor_runs)}
            if ours is gui:
                (row["gui_open_to_shown_s"], row["gui_click_to_shown_s"],
                 row["gui_click_to_complete_s"]) = np.median(gui_runs, axis=0).tolist()
                row["what"] = name = (f"GUI offscreen, 275 files: first (middle) slice shown "
                                      f"{row['gui_open_to_shown_s']:.2f} s after the open, "
                                      f"{row['gui_click_to_shown_s']:.2f} s after the series is chosen, whole series "
                                      f"{row['gui_click_to_complete_s']:.2f} s after (whole process)")
            rows.append(row)
            print(f"{name}: {row['seconds']:.2f} s, {row['peak_mb']:.0f} MB; {anchor_name}: "
                  f"{row['anchor_seconds']:.2f} s, {row['anchor_peak_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    volume_mb = {n: n * 512 * 512 * 2 / 2**20 for n in (20, 80, 275)}
    print(f"\n| what (whole process, median of {runs} alternated runs) | medscan s | peak MB | anchor | anchor s | "
          "anchor peak MB | medscan / anchor |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        peak = f"{row['peak_mb']:.0f}"
        if row["files"] in volume_mb:
            peak += f" ({row['peak_mb'] / volume_mb[row['files']]:.2f}x the int16 volume)"
        print(f"| {row['what']} | {row['seconds']:.2f} | {peak} | {row['anchor']} | {row['anchor_seconds']:.2f} | "
              f"{row['anchor_peak_mb']:.0f} | {row['seconds'] / row['anchor_seconds']:.2f}x |")
    return rows


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load_ct():
    from medscan.io import load
    from medscan.train.data import DATA_ROOT

    return load(DATA_ROOT / CT_ITEM)


def _series(scan, count: int):
    """``count`` slices of the CT (tiled when it has fewer): the same geometry, so only timing is synthetic."""
    reps = -(-count // scan.voxels.shape[0])
    voxels = np.concatenate([scan.voxels] * reps, axis=0)[:count]
    return dataclasses.replace(scan, voxels=voxels, source_refs=[])


def _child_ours(slices: int, threads: int, models: str | None) -> dict[str, Any]:
    """Time the registry's denoise on ``slices`` slices; runs in a fresh process (its own peak memory)."""
    if models:
        os.environ["MEDSCAN_MODELS"] = models
    import torch

    import medscan.ops as ops
    from medscan.nets.device import cpu_has_fast_bf16
    from medscan.ops.clean import DENOISE_MODEL
    from medscan.ops.inference import cached_model, denoise_planes

    torch.set_num_threads(threads)
    scan = _load_ct()
    series = _series(scan, slices)
    ops.run("denoise", _series(scan, 1), device="cpu")  # warm-up: model load, hash check, kernel selection
    base = _rss_mb()
    began, cpu = time.perf_counter(), time.process_time()
    result = ops.run("denoise", series, device="cpu")
    total, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = _rss_mb()
    model, _ = cached_model(DENOISE_MODEL, torch.device("cpu"))
    began = time.perf_counter()
    denoise_planes(series.voxels.reshape(-1, *series.voxels.shape[-2:]), model, torch.device("cpu"))
    network_only = time.perf_counter() - began
    return {"slices": slices, "seconds": total, "cpu_seconds": cpu, "network_seconds": network_only,
            "peak_rss_mb": peak, "rss_before_mb": base, "bf16": cpu_has_fast_bf16(), "threads": torch.get_num_threads(),
            "flagged": bool(result.fidelity.flagged) if result.fidelity is not None else None}


def _child_baseline(method: str, slices: int, tv_weight: float) -> dict[str, Any]:
    """Time one classical method per slice on noisy normalised ct01 slices, in a fresh process."""
    from medscan.train.data import intensity_window

    scan = _load_ct()
    rng = np.random.default_rng(0)
    sigma = 0.05
    indices = np.linspace(0, scan.voxels.shape[0] - 1, slices + 2).round().astype(int)[1:-1]
    noisy = []
    for k in indices:
        lo, hi = intensity_window(scan.voxels[k])
        clean = (scan.voxels[k] - lo) / (hi - lo)
        noisy.append((clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32))
    if method == "bm3d":
        import bm3d

        def run(x: np.ndarray) -> np.ndarray:
            return bm3d.bm3d(x, sigma_psd=sigma)
    elif method == "nlm":
        from skimage.restoration import denoise_nl_means

        def run(x: np.ndarray) -> np.ndarray:
            return denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6)
    elif method == "tv":
        from skimage.restoration import denoise_tv_chambolle

        def run(x: np.ndarray) -> np.ndarray:
            return denoise_tv_chambolle(x, weight=tv_weight)
    else:
        raise ValueError(method)
    run(noisy[0][:64, :64])  # warm-up: library load
    base = _rss_mb()
    times, cpu = [], time.process_time()
    for x in noisy:
        began = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - began)
    cpu = time.process_time() - cpu
    return {"slices": slices, "per_slice": times, "seconds": float(np.sum(times)), "cpu_seconds": cpu,
            "peak_rss_mb": _rss_mb(),
            "rss_before_mb": base, "threads": 1}


def _in_child(function, *args: Any) -> dict[str, Any]:
    """Run ``function`` in a fresh spawned process so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=("io", "denoise"), default=["io", "denoise"])
    parser.add_argument("--runs", type=int, default=5, help="io: alternated runs per row (the median is shown)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for our model")
    parser.add_argument("--batch", type=int, default=10, help="slices in the timed batch of ours")
    parser.add_argument("--baseline-slices", type=int, default=2, help="slices timed per baseline (BM3D ~20 s each)")
    parser.add_argument("--measure-series-below", type=float, default=90.0,
                        help="run a real 120-slice series when the batch predicts fewer seconds than this")
    parser.add_argument("--tv-weight", type=float, default=0.035,
                        help="TV weight (evaluate_denoise.py tunes it per sigma on train items; its run time "
                             "depends on it only through Chambolle's stopping rule)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average {load_start:.2f}",
          flush=True)
    report: dict[str, Any] = {}
    if "io" in args.sections:
        report["io"] = _io_section(args.runs)
    if "denoise" in args.sections:
        code = _denoise_section(args, report)
        if code:
            return code
    load_end = os.getloadavg()[0]
    print(f"\nload average {load_start:.2f} -> {load_end:.2f} on {os.cpu_count()} cores (above ~0.5 means another "
          f"job shared the CPU and every time here is inflated)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "load_average": [load_start, load_end], "cpu_count": os.cpu_count(),
                                         "machine": platform.processor() or platform.machine()}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _denoise_section(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """Ours beside BM3D, NLM and TV, and the network alone (torch eager); fills ``report['denoise']``."""
    models = os.environ.get("MEDSCAN_MODELS")
    from medscan.nets.weights import load_card
    from medscan.ops.clean import DENOISE_MODEL
    from medscan.scan import MedscanError

    try:
        load_card(DENOISE_MODEL)
    except MedscanError as exc:  # fail before minutes of baselines, not inside a worker process
        print(f"{exc} (set MEDSCAN_MODELS to a folder holding it)", file=sys.stderr)
        return 2

    rows: dict[str, dict[str, Any]] = {}
    batch = _in_child(_child_ours, args.batch, args.threads, models)
    per_slice = batch["seconds"] / batch["slices"]
    print(f"ours: {batch['slices']} slices in {batch['seconds']:.2f} s ({batch['network_seconds']:.2f} s network "
          f"only), peak {batch['peak_rss_mb']:.0f} MB, bf16 {batch['bf16']}", flush=True)
    series_row: dict[str, Any] = {"series_s": per_slice * SERIES, "series_how": f"extrapolated from {args.batch}"}
    if per_slice * SERIES < args.measure_series_below:
        full = _in_child(_child_ours, SERIES, args.threads, models)
        series_row = {"series_s": full["seconds"], "series_how": "measured", "series_peak_rss_mb": full["peak_rss_mb"],
                      "series_rss_before_mb": full["rss_before_mb"], "series_network_s": full["network_seconds"],
                      "series_flagged": full["flagged"]}
        print(f"ours: {SERIES} slices in {full['seconds']:.1f} s, peak {full['peak_rss_mb']:.0f} MB", flush=True)
    rows["ours"] = {"per_slice_s": per_slice, "cpu_per_slice_s": batch["cpu_seconds"] / batch["slices"],
                    "network_per_slice_s": batch["network_seconds"] / batch["slices"],
                    "threads": batch["threads"], "peak_rss_mb": batch["peak_rss_mb"],
                    "rss_before_mb": batch["rss_before_mb"], "batch": batch, **series_row}
    for method in ("bm3d", "nlm", "tv"):
        result = _in_child(_child_baseline, method, args.baseline_slices, args.tv_weight)
        one = result["seconds"] / result["slices"]
        rows[method] = {"per_slice_s": one, "cpu_per_slice_s": result["cpu_seconds"] / result["slices"],
                        "series_s": one * SERIES, "series_how": f"{SERIES} x per slice",
                        "series_2proc_s": one * SERIES / 2, "threads": 1, "peak_rss_mb": result["peak_rss_mb"],
                        "rss_before_mb": result["rss_before_mb"], "per_slice_all": result["per_slice"]}
        print(f"{method}: {one:.2f} s/slice over {result['slices']} slices, peak {result['peak_rss_mb']:.0f} MB",
              flush=True)
    bm3d, bm3d_cpu = rows["bm3d"]["per_slice_s"], rows["bm3d"]["cpu_per_slice_s"]
    for row in rows.values():
        row["bm3d_over_this"] = bm3d / row["per_slice_s"]
        row["bm3d_over_this_cpu"] = bm3d_cpu / row["cpu_per_slice_s"]
        # What an idle machine would give if the threads shared the work perfectly: contention-free lower bound.
        row["series_uncontended_estimate_s"] = row["cpu_per_slice_s"] / row["threads"] * SERIES

    print("\n| method (512x512 CT) | threads | s/slice | CPU s/slice | s/120-slice series | series figure | "
          "series if uncontended (CPU/threads) | peak RSS MB (above start) | BM3D / this, wall | BM3D / this, CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    names = {"ours": "ours: ops.run('denoise')", "bm3d": "BM3D", "nlm": "NLM (fast)", "tv": "TV Chambolle"}
    for method, row in rows.items():
        series = f"{row['series_s']:.1f}"
        if "series_2proc_s" in row:
            series += f" ({row['series_2proc_s']:.1f} on 2 processes)"
        peak = row.get("series_peak_rss_mb", row["peak_rss_mb"])
        above = peak - row.get("series_rss_before_mb", row["rss_before_mb"])
        print(f"| {names[method]} | {row['threads']} | {row['per_slice_s']:.3f} | {row['cpu_per_slice_s']:.3f} | "
              f"{series} | {row['series_how']} | {row['series_uncontended_estimate_s']:.1f} | "
              f"{peak:.0f} ({above:+.0f}) | "
              f"{row['bm3d_over_this']:.1f}x | {row['bm3d_over_this_cpu']:.1f}x |")
    ours = rows["ours"]
    print(f"| anchor: torch eager, denoise_planes alone (network and residual bound, no guard) | {ours['threads']} | "
          f"{ours['network_per_slice_s']:.3f} | - | - | - | - | - | "
          f"{bm3d / ours['network_per_slice_s']:.1f}x | - |")
    print(f"\nours, network only (no fidelity guard): {ours['network_per_slice_s']:.3f} s/slice; "
          f"series target < 60 s: {'met' if ours['series_s'] < 60 else 'NOT met'} ({ours['series_s']:.1f} s, "
          f"{ours['series_how']}); memory target < 4096 MB: "
          f"{'met' if ours.get('series_peak_rss_mb', ours['peak_rss_mb']) < 4096 else 'NOT met'}")
    report["denoise"] = {"rows": rows, "series_slices": SERIES, "item": CT_ITEM}
    return 0


if __name__ == "__main__":
    sys.exit(main())
