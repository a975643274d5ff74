"""A chosen series streams in: middle slice first, the rest outward with a progress bar, nothing acts on it early.

The streaming test runs in this process (pytest-qt, offscreen) with decoding slowed by a fixed sleep per file, so
the order of events does not depend on how busy the machine is. The timing and memory tests run the workstation in
a fresh interpreter on synthetic series made of real CT slices (``scripts/benchmark.py``'s series: ct01's slices
and headers decompressed and repeated 1 mm apart as a new series).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtWidgets import QMessageBox

from medscan.resources import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT / "samples" / "ct_abdomen_siemens"
SLOW_FILE_S = 0.08  # per decoded file: 20 files on 2 threads take about 0.8 s


@pytest.fixture(autouse=True)
def errors(monkeypatch):
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "critical",
                        staticmethod(lambda parent, title, text, *a, **k: shown.append((title, text))))
    return shown


@pytest.fixture
def window(open_main_window, tmp_path):
    return open_main_window(QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat), dark=False,
                            persist=False)


@pytest.fixture
def slow_decoding(monkeypatch):
    """Every file takes SLOW_FILE_S longer to decode (a slow disk), on two threads."""
    import medscan.io.stream as stream_module

    real = stream_module._decode_cells

    def slow(voxels, cells, notes, lock):
        time.sleep(SLOW_FILE_S)
        real(voxels, cells, notes, lock)

    monkeypatch.setattr(stream_module, "_decode_cells", slow)
    monkeypatch.setattr(stream_module, "decode_workers", lambda files: 2)


def _acting_controls(window) -> dict[str, bool]:
    """Whether each control that acts on the series (rather than viewing it) is enabled."""
    controls = {name: getattr(window, name).isEnabled() for name in (
        "actionExportNifti", "actionExportDicom", "actionExportPng", "actionPreview", "actionRunSeries",
        "actionSeriesHeader", "actionCoronal", "actionSagittal")}
    for family, panel in window.opsPanel.panels.items():
        if panel.run_button is not None:
            controls[f"{family} run"] = panel.run_button.isEnabled()
            controls[f"{family} preview"] = panel.preview_button.isEnabled()
    return controls


def test_series_streams_in_middle_first_and_operations_wait_for_the_whole_volume(qtbot, window, slow_decoding,
                                                                                   errors):
    from medscan.io import load
    from medscan.io.png import apply_window

    reference = load(CT).exact_integers()
    progress: list[int] = []
    window.loadProgress.valueChanged.connect(progress.append)
    first: dict = {}
    shown: list = []

    def on_first(_partial) -> None:
        viewer = window.viewer
        first.update(index=viewer.slice_index, count=viewer.slice_count, ready=viewer.slice_ready(),
                     progress=window.stream.progress(), scan=window.scan, controls=_acting_controls(window),
                     bar=window.loadProgress.isVisible(), export=window.export_nifti(),
                     run=window.workflow.run_series("denoise"), pixels=viewer.current_pixels().copy(),
                     window=(viewer.window_center, viewer.window_width), slider=window.sliceSlider.isEnabled())

    window.firstSliceShown.connect(on_first)
    window.scanShown.connect(shown.append)
    window.open_path(CT)
    qtbot.waitUntil(lambda: bool(first), timeout=60_000)

    # The middle slice, on screen before the rest is decoded, as load() decodes it.
    assert (first["index"], first["count"], first["ready"]) == (10, 20, True)
    done, total = first["progress"]
    assert total == 20 and done < total and first["bar"] and first["slider"]
    np.testing.assert_array_equal(first["pixels"], apply_window(reference[10], *first["window"]))
    # Nothing acts on a half-loaded volume: no scan, every acting control disabled, direct calls refused.
    assert first["scan"] is None and first["export"] is None and first["run"] is None
    assert not any(first["controls"].values()), first["controls"]

    # Scrolling to a slice not decoded yet shows a note, asks for that slice first and draws it once it arrives.
    viewer = window.viewer
    qtbot.keyClick(viewer, Qt.Key.Key_Home)
    assert viewer.slice_index == 0 and not viewer.slice_ready()
    viewer.grab()  # one paint: the 'loading' note
    assert viewer.readout_at(viewer.image_to_widget(256, 256)) is None  # no value read from an empty slice
    expected = apply_window(reference[0], viewer.window_center, viewer.window_width)
    qtbot.waitUntil(lambda: np.array_equal(viewer.current_pixels(), expected), timeout=30_000)
    assert not shown, "slice 0 (last in the planned order) arrived only when the whole volume was decoded"

    qtbot.waitUntil(lambda: bool(shown), timeout=60_000)
    scan = shown[0]
    assert scan is window.scan and window.stream is None and not window.loadProgress.isVisible()
    assert progress[-1] == max(progress) == window.loadProgress.maximum() == 20  # the bar reached 100 %
    integers = scan.exact_integers()  # bit-identical to a plain load of the same series: conformance untouched
    assert integers is not None and integers.dtype == reference.dtype
    np.testing.assert_array_equal(integers, reference)
    assert viewer.slice_index == 0 and viewer.loading is None  # the view stays where the user took it
    controls = _acting_controls(window)
    assert all(v for k, v in controls.items() if k.startswith("action")), controls
    for family, panel in window.opsPanel.panels.items():  # an operation's buttons: enabled if it takes CT
        if panel.run_button is not None:
            accepts = panel.current_operation().accepts("CT")
            assert controls[f"{family} run"] == controls[f"{family} preview"] == accepts, controls
    assert any(v for k, v in controls.items() if not k.startswith("action")), controls
    qtbot.waitUntil(lambda: not window.jobs.active, timeout=60_000)  # the triage of the complete series
    assert errors == []


def test_choosing_another_series_while_streaming_drops_the_first(qtbot, window, slow_decoding, tmp_path):
    import shutil

    for sample in (CT, ROOT / "samples" / "mr_brain_t1_sag_siemens"):
        shutil.copytree(sample, tmp_path / sample.name)
    firsts: list = []
    window.firstSliceShown.connect(firsts.append)
    shown: list = []
    window.scanShown.connect(shown.append)
    window.open_path(tmp_path)
    qtbot.waitUntil(lambda: bool(firsts), timeout=60_000)
    other = next(s for s in window.browser.summaries() if s is not window.current)
    window.browser.activate(window.browser.summaries().index(other))
    qtbot.waitUntil(lambda: bool(shown), timeout=60_000)
    assert [s.modality for s in shown] == [other.modality] and window.scan is shown[0]
    assert window.viewer.scan is window.scan and window.current is other


# -- a 275-slice series in a fresh process: first slice within a second of the click ---------------------------------
FIRST_SLICE_SCRIPT = """
import json, os, resource, sys, tempfile, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from ui.qt_main_window import MainWindow

window = MainWindow(settings=QSettings(os.path.join(tempfile.mkdtemp(), "g.ini"), QSettings.Format.IniFormat),
                    persist=False)
window.resize(1200, 800)
window.show()
app.processEvents()
seen = {}


def rss_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


window.folderListed.connect(lambda folder: seen.update(listed=time.perf_counter()))
window.firstSliceShown.connect(lambda partial: seen.update(painted=window.viewer.grab().width(),  # timed once painted
                                                           first=time.perf_counter(), index=window.viewer.slice_index,
                                                           count=window.viewer.slice_count))
window.scanShown.connect(lambda scan: seen.update(complete=time.perf_counter()))
window.errorReported.connect(lambda message: (seen.update(error=message), app.exit(1)))
window.jobs.idle.connect(lambda: app.quit() if "complete" in seen else None)  # after the triage too
seen["rss_before_kb"] = rss_kb()
began = time.perf_counter()
window.open_path(sys.argv[1])
app.exec()
print(json.dumps({"open_to_first_s": seen.get("first", 0) - began, "click_to_first_s": seen.get("first", 0)
                  - seen.get("listed", 0), "open_to_complete_s": seen.get("complete", 0) - began,
                  "index": seen.get("index"), "count": seen.get("count"), "error": seen.get("error"),
                  "rss_before_kb": seen["rss_before_kb"],
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)
os._exit(0)
"""


def open_in_fresh_process(folder: Path) -> dict:
    """Open ``folder`` in a fresh offscreen workstation; seconds to the first slice and complete, peak RSS."""
    result = subprocess.run([sys.executable, "-c", FIRST_SLICE_SCRIPT, str(folder)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["error"] is None, seen
    return seen


def _synthetic_ct(load_script, count: int, folder: Path) -> Path:
    if not (shared_data_dir() / "train" / "ct01_upper_abdomen_siemens_dicom").is_dir():
        pytest.skip("../shared/data/train/ct01_upper_abdomen_siemens_dicom is missing")
    return load_script("benchmark")._uncompressed_series(count, folder)


def test_first_slice_of_a_275_slice_series_within_a_second_of_the_click(load_script, tmp_path):
    seen = open_in_fresh_process(_synthetic_ct(load_script, 275, tmp_path / "ct275"))
    assert (seen["index"], seen["count"]) == (137, 275)
    assert seen["click_to_first_s"] < 1.0, seen
    assert seen["click_to_first_s"] < seen["open_to_complete_s"]


@pytest.mark.slow
def test_a_1000_slice_series_opens_in_about_one_and_a_half_times_its_int16_volume(load_script, tmp_path):
    folder = _synthetic_ct(load_script, 1000, tmp_path / "ct1000")
    seen = open_in_fresh_process(folder)
    volume_kb = 1000 * 512 * 512 * 2 / 1024
    assert (seen["index"], seen["count"]) == (500, 1000)
    # the whole process at its peak, Qt and the triage of the complete series included (no float32 copy anywhere)
    assert seen["peak_kb"] <= 1.5 * volume_kb, seen
