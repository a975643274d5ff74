"""Time medscan's DICOM networking on loopback against a real Orthanc and beside dcmtk's storescu.

    python scripts/benchmark_pacs.py [--slices 275] [--node-slices 120] [--skip-node]

Builds a CT series of N slices from ../shared/data train/ct01 (20 Siemens JPEG 2000 slices, cycled, each with its own
UIDs and position) plus an uncompressed copy, then measures in one run: storescu vs ``medscan pacs send`` (whole
commands, process start included) for both encodings, retrieve by C-GET and by C-MOVE, the one-line error latencies,
and, unless --skip-node, ``medscan listen --run`` (denoise) from storescu until the derived series is in Orthanc.
Needs the Debian packages orthanc and dcmtk (scripts/setup.sh --dev). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def dcmtk(tool: str) -> str:
    """dcmtk's own ``tool`` (storescu, echoscu): the first compiled program of that name on PATH. pynetdicom installs
    Python apps of the same names into every venv, which come first once one is activated and word errors
    differently."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as stream:
                if stream.read(4) == b"\x7fELF":
                    return str(candidate)
    return shutil.which(tool) or tool


STORESCU, ECHOSCU = dcmtk("storescu"), dcmtk("echoscu")


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _conftest():
    spec = importlib.util.spec_from_file_location("medscan_test_conftest", ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_series(out: Path, slices: int, *, compressed: bool) -> Path:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    from medscan.resources import shared_data_dir

    sources = sorted((shared_data_dir() / "train" / "ct01_upper_abdomen_siemens_dicom").iterdir())
    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    first = dcmread(sources[0])
    if not compressed:
        first.decompress(generate_instance_uid=False)
    z0 = float(first.ImagePositionPatient[2])
    for i in range(slices):
        ds = dcmread(sources[i % len(sources)])
        if not compressed:
            ds.decompress(generate_instance_uid=False)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, "BENCH"
        ds.ImagePositionPatient = [*first.ImagePositionPatient[:2], z0 - 3.0 * i]
        ds.InstanceNumber = i + 1
        ds.save_as(out / f"{i:04d}.dcm")
    return out


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - started, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=275)
    parser.add_argument("--node-slices", type=int, default=120)
    parser.add_argument("--skip-node", action="store_true")
    args = parser.parse_args()
    conftest = _conftest()
    work = Path(tempfile.mkdtemp(prefix="medscan-bench-pacs-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    medscan = [sys.executable, "-m", "medscan"]
    server = conftest.start_orthanc()
    try:
        print(f"Orthanc {server.node}; CPU threads 1; series built from ct01", flush=True)
        for compressed in (True, False):
            series = make_series(work / f"ct{args.slices}{'_j2k' if compressed else '_raw'}", args.slices,
                                 compressed=compressed)
            label = "JPEG 2000" if compressed else "uncompressed"
            propose = ["-xv"] if compressed else []
            for attempt in (1, 2):
                server.clear()
                t_dcmtk, done = timed([STORESCU, "-aec", "ORTHANC", *propose, "+sd", "127.0.0.1",
                                       str(server.dicom_port), str(series)])
                assert done.returncode == 0, done.stderr
                server.clear()
                t_ours, done = timed([*medscan, "pacs", "send", str(series), "--pacs", server.node], env)
                assert done.returncode == 0, done.stderr
                print(f"send {args.slices} {label} slices (try {attempt}): storescu {t_dcmtk:.2f} s, "
                      f"medscan pacs send {t_ours:.2f} s, ratio {t_ours / t_dcmtk:.2f}", flush=True)
            study = str(__import__("pydicom").dcmread(next(series.iterdir()), stop_before_pixels=True)
                        .StudyInstanceUID)
            for method in ("get", "move"):
                out = work / f"get-{method}-{label[:4]}"
                t, done = timed([*medscan, "pacs", "get", "--pacs", server.node, "--study", study, "-o", str(out),
                                 "--method", method, "--port", str(server.move_port)], env)
                assert done.returncode == 0, done.stderr
                print(f"retrieve {args.slices} {label} slices by C-{method.upper()}: {t:.2f} s (command); "
                      f"{done.stdout.strip()}", flush=True)
        port = conftest._free_port()
        for what, node in (("closed port", f"PACS@127.0.0.1:{port}"), ("unknown host", "PACS@no-such.invalid:104")):
            t, done = timed([*medscan, "pacs", "echo", "--pacs", node], env)
            print(f"error, {what}: {t:.2f} s, exit {done.returncode}: {done.stderr.strip()}", flush=True)
        if not args.skip_node:
            node_study(conftest, server, work, args.node_slices, env)
    finally:
        conftest.stop_orthanc(server)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def node_study(conftest, server, work: Path, slices: int, env: dict) -> None:
    from medscan.db.store import Database

    series = make_series(work / f"node{slices}", slices, compressed=True)
    db = work / "node.db"
    with Database.create(db, "k", scrypt_n=2**12) as database:
        database.add_user("node", "technician", "np")
    spec = work / "node.yaml"
    spec.write_text(f"operation: denoise\noutput: {{folder: {work / 'derived'}, format: dicom}}\n")
    port = conftest._free_port()
    server.clear()
    process = subprocess.Popen([sys.executable, "-m", "medscan", "listen", "--port", str(port), "--ae", "NODE",
                                "-o", str(work / "in"), "--quiet", "2", "--run", str(spec), "--forward", server.node,
                                "--db", str(db), "--user", "node"], cwd=ROOT,
                               env={**env, "MEDSCAN_DB_KEY": "k", "MEDSCAN_USER_KEY": "np"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while subprocess.run([ECHOSCU, "-aec", "NODE", "127.0.0.1", str(port)], capture_output=True).returncode:
            time.sleep(0.3)
        started = time.perf_counter()
        subprocess.run([STORESCU, "-aec", "NODE", "-xv", "+sd", "127.0.0.1", str(port), str(series)], check=True,
                       capture_output=True)
        sent = time.perf_counter() - started
        while len(server.rest("/instances")) < slices:
            if process.poll() is not None:
                raise SystemExit(process.stdout.read())
            time.sleep(0.5)
        total = time.perf_counter() - started
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    print(f"listen --run denoise --forward: {slices}-slice CT, storescu done after {sent:.1f} s, derived series in "
          f"Orthanc after {total:.1f} s (quiet period 2 s included)", flush=True)
    print("  node log: " + " | ".join(line for line in output.splitlines() if line.startswith("study")), flush=True)


if __name__ == "__main__":
    sys.exit(main())
