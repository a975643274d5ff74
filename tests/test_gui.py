"""The workstation window, driven like a radiologist would, on the real sample studies.

Offscreen Qt (no display needed); every error dialog is captured instead of shown, and a test
fails if one appears unexpectedly.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PyQt6.QtGui import QMouseEvent, QWheelEvent
from PyQt6.QtWidgets import QApplication, QFileDialog, QMessageBox

ROOT = Path(__file__).resolve().parent.parent
CT = ROOT / "samples" / "ct_abdomen_siemens"
MR = ROOT / "samples" / "mr_brain_t1_sag_siemens"
LOAD_TIMEOUT_MS = 30_000


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "medscan-gui.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True)
def errors(monkeypatch):
    """Error dialogs, captured as (title, text) instead of blocking the test."""
    shown: list[tuple[str, str]] = []

    def critical(parent, title, text, *args, **kwargs):
        shown.append((title, text))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(critical))
    return shown


@pytest.fixture
def window(open_main_window, settings):
    return open_main_window(settings)


def open_and_show(qtbot, window, path):
    with qtbot.waitSignal(window.scanShown, timeout=LOAD_TIMEOUT_MS) as blocker:
        window.open_path(path)
    return blocker.args[0]


def send_mouse(widget, kind, pos, button=Qt.MouseButton.NoButton, buttons=Qt.MouseButton.NoButton):
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(QPointF(pos))), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def send_wheel(widget, pos, notches, modifiers=Qt.KeyboardModifier.NoModifier):
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(QPointF(pos))), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton, modifiers,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def hover(viewer, col, row):
    send_mouse(viewer, QEvent.Type.MouseMove, viewer.image_to_widget(col, row))
    return viewer.readout


# ----------------------------------------------------------------------------------------------
# Opening a study
# ----------------------------------------------------------------------------------------------
def test_open_folder_lists_the_series_and_shows_the_first(qtbot, window, errors):
    scan = open_and_show(qtbot, window, CT)
    browser = window.browser
    (summary,) = browser.summaries()
    assert (summary.modality, summary.images, summary.description) == ("CT", 20, "CT Body 3.0")
    item = browser.series_items()[0]
    assert (item.text(1), item.text(2)) == ("CT", "20")
    assert "2022-12-08" in browser.topLevelItem(0).text(0)
    assert "no SeriesInstanceUID" in item.toolTip(0)  # the loader's warning is visible
    assert scan.voxels.shape == (20, 512, 512)
    viewer = window.viewer
    assert (viewer.plane, viewer.slice_count, viewer.slice_index) == ("axial", 20, 10)
    assert window.sliceSlider.maximum() == 19 and window.sliceLabel.text() == "11 / 20"
    assert viewer.edge_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert "CT Body 3.0" in window.windowTitle()
    assert window.deviceLabel.text().startswith("Device: ")
    assert window.memoryLabel.text().startswith("Memory ")
    qtbot.waitUntil(lambda: not window.jobs.active, timeout=60_000)  # the quality triage runs in the background
    assert item.text(item.columnCount() - 1) and errors == []  # ... and leaves its badge in the browser


def test_folder_with_two_series_lists_both_and_clicking_loads_the_other(qtbot, window, errors, tmp_path):
    import shutil

    for sample in (CT, MR):  # samples/ itself holds more series than these two
        shutil.copytree(sample, tmp_path / sample.name)
    open_and_show(qtbot, window, tmp_path)
    summaries = window.browser.summaries()
    assert sorted(s.modality for s in summaries) == ["CT", "MR"]
    other = next(s for s in summaries if s is not window.current)
    with qtbot.waitSignal(window.scanShown, timeout=LOAD_TIMEOUT_MS) as blocker:
        window.browser.activate(summaries.index(other))
    assert blocker.args[0].modality == other.modality
    assert errors == []


# ----------------------------------------------------------------------------------------------
# Scrolling, windowing, readout, zoom
# ----------------------------------------------------------------------------------------------
def test_wheel_keys_and_slider_scroll_slices(qtbot, window):
    open_and_show(qtbot, window, CT)
    viewer = window.viewer
    before = viewer.current_pixels().copy()
    centre = QPointF(viewer.width() / 2, viewer.height() / 2)
    send_wheel(viewer, centre, -1)  # toward the user: next slice
    assert viewer.slice_index == 11
    assert window.sliceSlider.value() == 11 and window.sliceLabel.text() == "12 / 20"
    assert not np.array_equal(viewer.current_pixels(), before)
    qtbot.keyClick(viewer, Qt.Key.Key_Down)
    assert viewer.slice_index == 12
    qtbot.keyClick(viewer, Qt.Key.Key_Up)
    qtbot.keyClick(viewer, Qt.Key.Key_Up)
    assert viewer.slice_index == 10
    window.sliceSlider.setValue(3)
    assert viewer.slice_index == 3
    qtbot.keyClick(viewer, Qt.Key.Key_End)
    assert viewer.slice_index == 19 and window.sliceSlider.value() == 19
    np.testing.assert_array_equal(viewer.current_plane(), window.scan.voxels[19])


def test_window_presets_and_right_drag_change_the_pixels(qtbot, window, settings):
    scan = open_and_show(qtbot, window, CT)
    viewer = window.viewer
    assert viewer.preset == "soft_tissue"
    lung_action = next(a for a in window.presetGroup.actions() if a.data() == "lung")
    lung_action.trigger()
    lung = viewer.current_pixels().copy()
    assert (viewer.window_center, viewer.window_width) == (-600.0, 1500.0)
    assert window.presetCombo.currentText() == "Lung"
    window.presetCombo.setCurrentIndex(window.presetCombo.findData("bone"))
    window.presetCombo.activated.emit(window.presetCombo.currentIndex())
    bone = viewer.current_pixels()
    assert not np.array_equal(lung, bone)
    # Same HU mapping as the engine's PNG writer: windowing is not duplicated in the GUI.
    from medscan.io.png import apply_window

    np.testing.assert_array_equal(bone, apply_window(scan.voxels[viewer.slice_index], 400.0, 1800.0))
    assert settings.value("preset/CT") == "bone"

    start = QPointF(viewer.width() / 2, viewer.height() / 2)
    send_mouse(viewer, QEvent.Type.MouseButtonPress, start, Qt.MouseButton.RightButton, Qt.MouseButton.RightButton)
    send_mouse(viewer, QEvent.Type.MouseMove, start + QPointF(64, 32), Qt.MouseButton.NoButton,
               Qt.MouseButton.RightButton)
    send_mouse(viewer, QEvent.Type.MouseButtonRelease, start + QPointF(64, 32), Qt.MouseButton.RightButton)
    assert viewer.window_width > 1800.0 and viewer.window_center > 400.0
    assert viewer.preset == "custom" and window.presetCombo.currentText() == "Custom"
    assert settings.value("preset/CT") == "bone"  # a custom drag does not overwrite the saved preset


def test_readout_shows_hu_and_patient_position_under_the_cursor(qtbot, window):
    scan = open_and_show(qtbot, window, CT)
    viewer = window.viewer
    k = viewer.slice_index
    col, row = 300, 260
    readout = hover(viewer, col, row)
    expected = float(scan.voxels[k, row, col])
    assert readout.source_ijk == (col, row, k)
    assert readout.value == expected and readout.units == "HU"
    assert f"{expected:.0f} HU" in window.readoutLabel.full_text()
    np.testing.assert_allclose(readout.lps_mm, scan.index_to_world([col, row, k])[0], atol=1e-6)
    x, y, z = scan.index_to_world([col, row, k])[0]
    assert f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm" in window.readoutLabel.full_text()

    # Zooming about the cursor keeps the same voxel under it; panning moves the image.
    pos = viewer.image_to_widget(col, row)
    send_wheel(viewer, pos, 3, Qt.KeyboardModifier.ControlModifier)
    assert viewer.zoom == pytest.approx(1.15**3)
    assert viewer.readout_at(pos).source_ijk == (col, row, k)
    viewer.fit()
    assert viewer.zoom == 1.0
    start = viewer.image_to_widget(col, row)
    send_mouse(viewer, QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
    send_mouse(viewer, QEvent.Type.MouseMove, start + QPointF(40, 0), Qt.MouseButton.NoButton,
               Qt.MouseButton.LeftButton)
    send_mouse(viewer, QEvent.Type.MouseButtonRelease, start + QPointF(40, 0), Qt.MouseButton.LeftButton)
    assert viewer.readout_at(start + QPointF(40, 0)).source_ijk == (col, row, k)
    assert viewer.readout_at(QPointF(2, 2)) is None  # outside the image: no readout


def test_coronal_and_sagittal_reformat_with_true_aspect(qtbot, window):
    scan = open_and_show(qtbot, window, CT)
    viewer = window.viewer
    window.actionCoronal.trigger()
    assert viewer.plane == "coronal" and window.coronalButton.isChecked()
    assert viewer.stack.voxels.shape == (512, 20, 512)
    assert viewer.current_pixels().shape == (20, 512)
    assert viewer.edge_labels() == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert window.sliceSlider.maximum() == 511
    col_mm, row_mm = viewer.pixel_size_mm()
    assert (col_mm, row_mm) == pytest.approx((0.9765625, 2.0))
    transform = viewer.image_transform()
    assert transform.m22() / transform.m11() == pytest.approx(2.0 / 0.9765625)  # 2 mm rows drawn taller
    readout = hover(viewer, 100, 5)
    i, j, k = readout.source_ijk
    assert readout.value == scan.voxels[k, j, i]
    assert k == 19 - 5  # superior at the top: row 5 is the 6th slice from the top of the stack

    window.actionSagittal.trigger()
    assert viewer.stack.voxels.shape == (512, 20, 512)
    assert viewer.edge_labels() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    window.actionAxial.trigger()
    assert viewer.stack.voxels.shape == (20, 512, 512)


def test_mr_gets_auto_window_and_no_hu(qtbot, window):
    scan = open_and_show(qtbot, window, MR)
    viewer = window.viewer
    assert viewer.plane == "sagittal"  # shown as acquired
    assert viewer.edge_labels() == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert [window.presetCombo.itemData(i) for i in range(window.presetCombo.count())] == ["auto"]
    from medscan.io.png import default_window

    assert (viewer.window_center, viewer.window_width) == pytest.approx(default_window(scan))
    readout = hover(viewer, 128, 128)
    assert readout.units == "" and "HU" not in window.readoutLabel.full_text()
    assert not window.volumeSpin.isVisible()


def test_4d_series_gets_a_volume_selector(qtbot, window):
    from medscan.scan import Scan

    voxels = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    scan = Scan(voxels=voxels, affine=np.diag([1.0, 1.0, 3.0, 1.0]), modality="MR",
                volume_labels=["b0", "b1000 x", "b1000 y"])
    window.show_scan(scan)
    viewer = window.viewer
    assert window.volumeSpin.isVisible() and window.volumeSpin.maximum() == 3
    window.volumeSpin.setValue(2)
    assert viewer.volume == 1
    np.testing.assert_array_equal(viewer.current_plane(), voxels[1, viewer.slice_index])
    assert "b1000 x" in window.volumeInfo.text()
    qtbot.keyClick(viewer, Qt.Key.Key_Right)
    assert viewer.volume == 2 and window.volumeSpin.value() == 3


# ----------------------------------------------------------------------------------------------
# Errors, jobs, export, settings
# ----------------------------------------------------------------------------------------------
def test_corrupt_file_shows_a_readable_error_and_the_app_stays_usable(qtbot, window, errors, tmp_path):
    broken = tmp_path / "broken_ct"
    shutil.copytree(CT, broken)
    victim = sorted(broken.iterdir())[4]
    with open(victim, "r+b") as stream:
        stream.truncate(80_000)  # header intact, pixel data cut short
    with qtbot.waitSignal(window.errorReported, timeout=LOAD_TIMEOUT_MS):
        window.open_path(broken)
    assert len(errors) == 1
    _title, text = errors[0]
    assert victim.name in text and "truncated" in text
    assert "Traceback" not in text and "\n" not in text
    assert window.isVisible() and window.scan is None

    scan = open_and_show(qtbot, window, CT)  # still usable
    assert scan.voxels.shape == (20, 512, 512) and len(errors) == 1


@pytest.mark.slow  # a timing measurement: on the shared 2-core CI box it flaked once in ~30 runs
def test_the_window_answers_within_100_ms_while_a_series_loads(qtbot, window):
    """Loading runs in a worker: the event loop keeps ticking (issue 4: answers within 100 ms)."""
    from PyQt6.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    job = window.open_path(CT)
    with qtbot.waitSignal(window.scanShown, timeout=LOAD_TIMEOUT_MS):
        pass
    timer.stop()
    assert job is not None and job.worker_done
    gaps = np.diff(ticks)
    longest = f"longest pause {gaps.max() * 1000:.0f} ms at tick {gaps.argmax()} of {len(gaps)}"
    assert len(ticks) > 20 and gaps.max() < 0.100, longest


def test_missing_path_is_a_dialog_not_a_crash(window, errors):
    window.open_path("/no/such/folder")
    assert errors == [("Cannot open", "/no/such/folder: no such file or folder")]


def test_a_running_job_can_be_cancelled_from_the_jobs_panel(qtbot, window):
    def endless(ctx):
        while True:
            ctx.check()
            time.sleep(0.01)

    job = window.jobs.run("Endless test job", endless)
    (row,) = window.jobsPanel.rows()
    assert row.title.full_text() == "Endless test job"
    with qtbot.waitSignals([job.cancelled, job.finished], timeout=1000):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert window.jobsPanel.rows() == [] and not window.jobs.active
    qtbot.waitUntil(lambda: job.worker_done, timeout=2000)  # the worker saw the flag and stopped


def test_export_nifti_dicom_and_png_of_the_reformatted_slice(qtbot, window, monkeypatch, tmp_path):
    from medscan.io import load

    scan = open_and_show(qtbot, window, CT)
    for action, target in ((window.actionExportNifti, tmp_path / "ct.nii"),
                           (window.actionExportDicom, tmp_path / "ct_derived")):
        monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, t=target, **k: (str(t), "")))
        with qtbot.waitSignal(window.exported, timeout=LOAD_TIMEOUT_MS):
            action.trigger()
        back = load(target)
        assert back.voxels.shape == scan.voxels.shape
        np.testing.assert_allclose(back.voxels, scan.voxels, atol=0.5)

    window.actionCoronal.trigger()
    png = tmp_path / "coronal.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(png), "")))
    with qtbot.waitSignal(window.exported, timeout=LOAD_TIMEOUT_MS):
        window.actionExportPng.trigger()
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (512, 20)  # width = columns (x), height = rows (z)
        np.testing.assert_array_equal(np.asarray(image), window.viewer.current_pixels())


def test_about_names_the_versions_without_importing_torch(window, monkeypatch):
    torch_was_loaded = "torch" in sys.modules
    shown = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda parent, title, text: shown.append(text)))
    window.actionAbout.trigger()
    (text,) = shown
    for name in ("medscan", "Python", "Qt", "PyQt6", "pydicom", "numpy", "torch", "Device"):
        assert f">{name}<" in text
    assert window.device.label in text
    assert torch_was_loaded or "torch" not in sys.modules


def test_about_confirms_a_possible_gpu_in_the_background(qtbot, window, monkeypatch):
    import ui.qt_main_window as main_window
    from ui.system_info import DeviceGuess

    window.device = DeviceGuess("CUDA: NVIDIA H100 80GB HBM3", "guessed from the driver", False, True)
    monkeypatch.setattr(main_window, "confirm_device",
                        lambda: DeviceGuess("CUDA: NVIDIA H100 80GB HBM3", "torch says so", True, True))
    shown = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda parent, title, text: shown.append(text)))
    window.actionAbout.trigger()
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=5000)
    assert "torch says so" in shown[0]
    assert window.deviceLabel.text() == "Device: CUDA: NVIDIA H100 80GB HBM3"


def test_settings_remember_recent_paths_and_the_preset(qtbot, settings):
    from ui.qt_main_window import MainWindow

    first = MainWindow(settings=settings)
    qtbot.addWidget(first)
    first.show()
    open_and_show(qtbot, first, CT)
    first.viewer.apply_preset("brain")
    first.close()
    second = MainWindow(settings=settings)
    qtbot.addWidget(second)
    assert second.recent_paths()[0] == str(CT.resolve())
    open_and_show(qtbot, second, CT)
    assert second.viewer.preset == "brain"
    second.close()


# ----------------------------------------------------------------------------------------------
# The medscan-gui entry point
# ----------------------------------------------------------------------------------------------
def run_gui(*args, timeout=90):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ui.app", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_screenshot_entry_point_writes_the_window(tmp_path):
    from PIL import Image

    out = tmp_path / "shots" / "main.png"
    result = run_gui(CT, "--screenshot", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (1440, 900)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20  # a real scan, not an empty window


def test_screenshot_of_a_bad_path_is_one_line_on_stderr(tmp_path):
    out = tmp_path / "never.png"
    result = run_gui(tmp_path / "missing", "--screenshot", out)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"medscan-gui: {tmp_path / 'missing'}: no such file or folder"]
    assert not out.exists()


def test_start_up_loads_no_heavy_engine_modules():
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from PyQt6.QtWidgets import QApplication\n"
        "from ui.qt_main_window import MainWindow\n"
        "app = QApplication([]); w = MainWindow(persist=False); w.show(); app.processEvents()\n"
        "heavy = sorted(m for m in ('torch', 'pydicom', 'nibabel') if m in sys.modules)\n"
        "print(round(time.perf_counter() - t, 2), *heavy)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    seconds, *heavy = result.stdout.split()
    assert heavy == []  # pydicom, nibabel and torch load later, in workers
    assert float(seconds) < 3.0
