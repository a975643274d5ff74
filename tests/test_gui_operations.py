"""The Clean and Generate tabs, before/after, keep/discard/export - driven on the real sample CT.

Offscreen Qt. Denoise runs for real (the shipped model on CPU): one slice for a preview, a four-slice
crop of the sample series for a whole-series run, so the suite stays quick on a small machine.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

import test_gui
from PyQt6.QtCore import QEvent, QPointF, Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLineEdit,
    QMessageBox,
    QSpinBox,
)
from test_gui import CT, ROOT, run_gui, send_mouse

# The window tests' fixtures, shared: error dialogs captured (autouse), a private QSettings file.
errors = test_gui.errors
settings = test_gui.settings

RUN_TIMEOUT_MS = 120_000


# ----------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def make_window(open_main_window, settings):
    """Build the window when the test says so (after registering any test operations)."""

    def make(**kwargs):
        return open_main_window(kwargs.pop("settings", settings), size=(1440, 900), **kwargs)

    return make


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture(scope="module")
def ct_scan(sample_ct):
    return sample_ct


def show(qtbot, window, scan):
    with qtbot.waitSignal(window.scanShown, timeout=5000):
        window.show_scan(scan)
    return scan


def crop(scan, first, count):
    """Slices first..first+count-1 of the sample series, positioned where they really are."""
    affine = scan.affine.copy()
    affine[:3, 3] = scan.index_to_world([[0, 0, first]])[0]
    return dataclasses.replace(scan, voxels=scan.voxels[first:first + count].copy(), affine=affine,
                               source_refs=scan.source_refs[first:first + count])


def wait_for_result(qtbot, window, start):
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        job = start()
        assert job is not None
    return blocker.args[0]


def drag(widget, button, start, end):
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, button, button)
    send_mouse(widget, QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, button)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, button)


def register(monkeypatch, operation):
    """Register a test operation for this test only."""
    from medscan.ops import registry

    monkeypatch.setitem(registry._REGISTRY, operation.name, operation)
    return operation


# ----------------------------------------------------------------------------------------------
# The tabs come from the registry
# ----------------------------------------------------------------------------------------------
def test_clean_tab_is_built_from_the_registry_and_generate_explains_it_is_empty(window):
    from medscan.ops import get, operations

    panel = window.opsPanel
    clean = panel.panels["clean"]
    assert [clean.chooser.itemData(i) for i in range(clean.chooser.count())] == [
        op.name for op in operations("clean")]
    clean.select("denoise")
    form = clean.forms["denoise"]
    strength = form.widgets["strength"]
    param = next(p for p in get("denoise").params if p.name == "strength")
    assert isinstance(strength, QDoubleSpinBox)
    assert (strength.minimum(), strength.maximum(), strength.value()) == (param.minimum, param.maximum, param.default)
    assert param.help in strength.toolTip()
    assert isinstance(form.widgets["model"], QLineEdit) and form.widgets["model"].text() == "denoise_unet2d"
    assert form.values() == get("denoise").defaults()
    assert clean.summary.text() == get("denoise").summary
    assert not clean.preview_button.isEnabled()  # nothing shown yet

    assert [panel.tabs.tabText(i) for i in range(panel.tabs.count())] == ["Clean", "Generate"]


def test_operations_are_offered_only_for_the_modalities_they_support(qtbot, window):
    from medscan.scan import Scan

    pet = Scan(voxels=np.ones((2, 8, 8), np.float32), affine=np.eye(4), modality="PT")
    show(qtbot, window, pet)
    clean = window.opsPanel.panels["clean"]
    clean.select("denoise")
    assert not clean.preview_button.isEnabled() and not clean.run_button.isEnabled()
    assert "Not for PT" in clean.summary.text()
    window.actionPreview.trigger()  # the shortcut does nothing either
    assert not window.jobs.active


def test_translate_says_beside_its_summary_which_directions_the_model_runs(window):
    from medscan.ops import get

    generate = window.opsPanel.panels["generate"]
    generate.select("translate")
    text = generate.summary.text()
    assert text.startswith(get("translate").summary) and get("translate").availability_note() in text
    assert "T1->T2" in text and "refused" in text


def test_generate_tab_explains_itself_when_no_generate_operation_is_installed(make_window, monkeypatch):
    from medscan.ops import registry

    clean_only = {name: op for name, op in registry._REGISTRY.items() if op.family != "generate"}
    monkeypatch.setattr(registry, "_REGISTRY", clean_only)
    generate = make_window().opsPanel.panels["generate"]
    assert generate.operations == [] and generate.preview_button is None
    assert "No Generate operations are installed" in generate.empty.text() and "SYNTHETIC" in generate.empty.text()


def test_device_choice_is_remembered_and_passed_to_the_operation(qtbot, make_window, settings, ct_scan, monkeypatch):
    import medscan.ops as ops

    seen = []
    real_run = ops.run
    monkeypatch.setattr(ops, "run", lambda name, scan, **kw: seen.append(kw["device"]) or real_run(name, scan, **kw))
    first = make_window()
    first.opsPanel.device.setCurrentIndex(first.opsPanel.device.findData("cpu"))
    assert settings.value("ops/device") == "cpu"
    assert first.deviceLabel.text() == "Device: CPU (chosen)"
    first.close()
    second = make_window()
    assert second.opsPanel.device_choice() == "cpu"
    show(qtbot, second, crop(ct_scan, 10, 1))
    second.opsPanel.panels["clean"].select("highlight")
    with qtbot.waitSignal(second.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        second.actionPreview.trigger()  # Ctrl+P
    entry = blocker.args[0]
    assert entry.operation.name == "highlight" and entry.device == "cpu" and seen == ["cpu"]


# ----------------------------------------------------------------------------------------------
# Preview on a slice, compare before/after
# ----------------------------------------------------------------------------------------------
def test_denoise_preview_on_the_slice_opens_a_linked_before_after(qtbot, window, ct_scan, errors):
    show(qtbot, window, ct_scan)
    viewer, after = window.viewer, window.afterViewer
    viewer.set_slice(12)
    clean = window.opsPanel.panels["clean"]
    clean.select("denoise")
    assert clean.preview_button.isEnabled()
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(clean.preview_button, Qt.MouseButton.LeftButton)
    entry = blocker.args[0]

    # The operation saw exactly the slice on screen, with its true position; the output keeps it.
    assert entry.origin == ("axial", 12, 0) and entry.before.voxels.shape == (1, 512, 512)
    np.testing.assert_array_equal(entry.before.voxels[0], ct_scan.voxels[12])
    np.testing.assert_allclose(entry.after.affine, entry.before.affine)
    np.testing.assert_allclose(entry.before.index_to_world([[7, 9, 0]]), ct_scan.index_to_world([[7, 9, 12]]))
    assert entry.after.units == "HU" and not np.array_equal(entry.after.voxels, entry.before.voxels)

    # Before/after side by side: BEFORE is the series at that slice, AFTER the result.
    assert viewer.isVisible() and after.isVisible() and window.compareBar.isVisible()
    assert viewer.caption == "BEFORE" and after.caption.startswith("AFTER · Denoise")
    np.testing.assert_array_equal(after.current_plane(), entry.after.voxels[0])
    np.testing.assert_array_equal(after.before_plane(), viewer.current_plane())
    assert "comparing #" in window.windowTitle() and "Denoise" in window.windowTitle()

    # The fidelity report is shown with the result, whichever way the guard decided.
    details = window.opsPanel.results.details.toPlainText()
    report = entry.result.fidelity
    assert ("Flagged by the fidelity guard" if report.flagged else "Passed the fidelity guard") in details
    assert all(reason in details for reason in report.reasons)
    assert ("flagged" in window.opsPanel.results.list.currentItem().text()) == report.flagged

    # Linked: window, zoom and pan follow both ways.
    window.viewer.apply_preset("lung")
    assert (after.window_center, after.window_width, after.preset) == (-600.0, 1500.0, "lung")
    centre = QPointF(after.width() / 2, after.height() / 2)
    drag(after, Qt.MouseButton.RightButton, centre, centre + QPointF(30, 10))
    assert (viewer.window_center, viewer.window_width) == (after.window_center, after.window_width)
    after.zoom_by(2.0)
    assert viewer.zoom == pytest.approx(2.0)
    drag(after, Qt.MouseButton.LeftButton, centre, centre + QPointF(25, -15))
    assert (viewer.pan.x(), viewer.pan.y()) == pytest.approx((after.pan.x(), after.pan.y()))

    # Elsewhere in the series the preview says what it covers; scrolling in it scrolls the series.
    qtbot.keyClick(after, Qt.Key.Key_Down)
    assert viewer.slice_index == 13 and not after.covered and "slice 13 only" in after.uncovered_text
    qtbot.keyClick(after, Qt.Key.Key_Up)
    assert viewer.slice_index == 12 and after.covered
    assert errors == []


def test_preview_in_a_reformatted_plane_and_a_4d_volume_takes_what_is_on_screen(qtbot, window, ct_scan):
    from medscan.scan import Scan

    show(qtbot, window, crop(ct_scan, 6, 6))
    window.actionCoronal.trigger()
    window.viewer.set_slice(300)
    entry = wait_for_result(qtbot, window, lambda: window.workflow.preview("highlight"))
    assert entry.origin == ("coronal", 300, 0) and entry.before.voxels.shape == (1, 6, 512)
    np.testing.assert_array_equal(entry.before.voxels[0], window.viewer.current_plane())
    assert window.afterViewer.plane == "coronal" and window.afterViewer.covered
    np.testing.assert_array_equal(window.afterViewer.before_plane(), window.viewer.current_plane())

    voxels = np.stack([ct_scan.voxels[4:7], ct_scan.voxels[4:7] + 100.0])
    four_d = Scan(voxels=voxels, affine=ct_scan.affine, modality="CT", units="HU", volume_labels=["a", "b"])
    show(qtbot, window, four_d)
    window.volumeSpin.setValue(2)
    entry = wait_for_result(qtbot, window, lambda: window.workflow.preview("highlight"))
    assert entry.origin == ("axial", 1, 1) and entry.before.voxels.shape == (1, 512, 512)
    np.testing.assert_array_equal(entry.before.voxels[0], voxels[1, 1])
    window.volumeSpin.setValue(1)
    assert not window.afterViewer.covered and "of volume 2" in window.afterViewer.uncovered_text


def test_swipe_flicker_and_the_method_noise_overlay(qtbot, window, ct_scan):
    show(qtbot, window, crop(ct_scan, 10, 1))
    entry = wait_for_result(qtbot, window, lambda: window.workflow.preview("denoise"))
    after, bar = window.afterViewer, window.compareBar

    qtbot.mouseClick(bar.mode_button("swipe"), Qt.MouseButton.LeftButton)
    assert after.mode == "swipe" and not window.viewer.isVisible() and after.isVisible()
    x = after.swipe_x()
    drag(after, Qt.MouseButton.LeftButton, QPointF(x, 100), QPointF(after.width() * 0.25, 100))
    assert after.swipe == pytest.approx(0.25, abs=0.01)

    qtbot.mouseClick(bar.mode_button("flicker"), Qt.MouseButton.LeftButton)
    assert after.mode == "flicker" and after._flicker.isActive()
    with qtbot.waitSignal(after._flicker.timeout, timeout=3000):
        pass
    assert after.showing_before and after.overlay_text()["top_right"][0][0].startswith("BEFORE")
    after.toggle_flicker()
    assert not after.showing_before
    qtbot.keyClick(after, Qt.Key.Key_Space)  # by hand: the timer stops
    assert after.showing_before and not after._flicker.isActive()

    qtbot.mouseClick(bar.mode_button("side"), Qt.MouseButton.LeftButton)
    assert window.viewer.isVisible() and not after._flicker.isActive()

    # Overlays: the difference (after - before) and the operation's own method-noise map.
    names = [bar.overlay.itemData(i) for i in range(bar.overlay.count())]
    assert names == ["", "difference", "method_noise"]
    bar.overlay.setCurrentIndex(names.index("difference"))
    np.testing.assert_allclose(after.overlay_plane(), entry.after.voxels[0] - entry.before.voxels[0])
    bar.overlay.setCurrentIndex(names.index("method_noise"))
    bar.opacity.setValue(35)
    assert after.overlay_opacity == pytest.approx(0.35)
    np.testing.assert_array_equal(after.overlay_plane(), entry.result.maps["method_noise"][0])
    after.grab()  # paints the overlay
    assert after.overlay_scale > 0
    assert any(text.startswith("Method noise") for text, _ in after.overlay_text()["bottom_right"])

    qtbot.mouseClick(bar.close_button, Qt.MouseButton.LeftButton)
    assert not after.isVisible() and not bar.isVisible() and window.viewer.caption == ""
    assert "comparing" not in window.windowTitle()


def test_compare_mode_and_overlay_opacity_are_remembered(make_window, settings):
    first = make_window()
    first.workflow.set_mode("flicker")
    first.compareBar.opacity.setValue(40)
    first.close()
    second = make_window()
    assert second.workflow.mode == "flicker" and second.compareBar.mode_button("flicker").isChecked()
    assert second.afterViewer.overlay_opacity == pytest.approx(0.4)
    assert not second.afterViewer.isVisible() and not second.afterViewer._flicker.isActive()  # nothing compared


def test_signed_overlay_is_transparent_where_nothing_changed():
    from ui.qt_compare import signed_overlay

    values = np.zeros((4, 4), np.float32)
    values[0, 0], values[1, 1] = 10.0, -10.0
    rgba, scale = signed_overlay(values, 0.5)
    assert scale == pytest.approx(10.0, rel=0.1)
    assert rgba[2, 2, 3] == 0 and rgba[0, 0, 3] == rgba[1, 1, 3] > 100
    assert rgba[0, 0, 0] > rgba[0, 0, 2] and rgba[1, 1, 2] > rgba[1, 1, 0]  # orange up, blue down


# ----------------------------------------------------------------------------------------------
# Run on the series, keep, export, discard
# ----------------------------------------------------------------------------------------------
def test_denoise_on_the_series_compare_export_keep_and_discard(qtbot, window, ct_scan, monkeypatch, tmp_path,
                                                              errors):
    from medscan.io import load

    series = show(qtbot, window, crop(ct_scan, 8, 4))
    clean = window.opsPanel.panels["clean"]
    clean.select("denoise")
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(clean.run_button, Qt.MouseButton.LeftButton)
    entry = blocker.args[0]
    assert entry.origin is None and entry.before is series
    assert entry.after.voxels.shape == series.voxels.shape
    np.testing.assert_allclose(entry.after.affine, series.affine)

    viewer, after = window.viewer, window.afterViewer
    for index in (0, 3):  # scrolling either view moves both
        window.sliceSlider.setValue(index)
        assert after.slice_index == index
        np.testing.assert_array_equal(after.current_plane(), entry.after.voxels[index])
        np.testing.assert_array_equal(after.before_plane(), series.voxels[index])
    qtbot.keyClick(after, Qt.Key.Key_Up)
    assert viewer.slice_index == 2 and window.sliceLabel.text() == "3 / 4"
    window.actionCoronal.trigger()
    assert after.plane == "coronal" and after.current_plane().shape == viewer.current_plane().shape

    results = window.opsPanel.results
    assert results.keep_button.isEnabled()
    target = tmp_path / "denoised.nii.gz"
    suggested = []

    def save_dialog(parent, caption, directory, *args, **kwargs):
        suggested.append(directory)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    with qtbot.waitSignal(window.exported, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(results.nifti_button, Qt.MouseButton.LeftButton)
    assert Path(suggested[0]).name == "CT_denoise_series.nii.gz"
    back = load(target)
    np.testing.assert_allclose(back.voxels, entry.after.voxels, atol=0.01)
    np.testing.assert_allclose(back.affine, entry.after.affine, atol=1e-4)
    target = tmp_path / "denoised_dicom"
    with qtbot.waitSignal(window.exported, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(results.dicom_button, Qt.MouseButton.LeftButton)
    assert Path(suggested[1]).name == "CT_denoise_series_derived"
    back = load(target)
    np.testing.assert_allclose(back.voxels, entry.after.voxels, atol=0.5)  # integer pixels with rescale
    import pydicom

    written = pydicom.dcmread(sorted(target.iterdir())[0], stop_before_pixels=True)
    assert "DERIVED" in written.ImageType and "denoise" in written.DerivationDescription

    qtbot.mouseClick(results.keep_button, Qt.MouseButton.LeftButton)
    assert window.scan is entry.after and not after.isVisible()
    assert results.list.item(0).text().startswith("✓ ")
    assert [p.operation for p in window.scan.provenance][-1] == "denoise"

    results.list.setCurrentRow(0)  # choosing it again compares it with its input once more
    assert window.workflow.shown is entry and window.scan is series
    qtbot.mouseClick(results.discard_button, Qt.MouseButton.LeftButton)
    assert results.entries() == [] and window.workflow.shown is None and not after.isVisible()
    assert errors == []


def test_a_kept_result_stands_in_for_its_series_until_the_series_is_chosen_again(qtbot, window):
    from test_gui import open_and_show

    original = open_and_show(qtbot, window, CT)
    entry = wait_for_result(qtbot, window, lambda: window.workflow.run_series("highlight"))
    window.workflow.keep(entry)
    assert window.scan is entry.after and window.showing_result
    assert window.windowTitle().endswith("kept highlight result")
    with qtbot.waitSignal(window.scanShown, timeout=RUN_TIMEOUT_MS) as blocker:
        window.browser.activate(0)  # the series itself, as loaded from disk
    reloaded = blocker.args[0]
    assert reloaded.provenance == [] and not window.showing_result
    np.testing.assert_array_equal(reloaded.voxels, original.voxels)


def test_cancelling_a_series_denoise_stops_the_engine(qtbot, window, ct_scan):
    show(qtbot, window, ct_scan)
    job = window.workflow.run_series("denoise")
    reported = []
    job._progress_from_worker.connect(lambda done, total, _text: reported.append((done, total)))
    (row,) = window.jobsPanel.rows()
    assert row.title.full_text() == "Denoise · series"
    qtbot.waitUntil(lambda: job.progress[1] > 0, timeout=RUN_TIMEOUT_MS)  # the model is loaded and running
    with qtbot.waitSignals([job.cancelled, job.finished], timeout=1000):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert window.jobsPanel.rows() == [] and not window.jobs.active
    qtbot.waitUntil(lambda: job.worker_done, timeout=RUN_TIMEOUT_MS)
    done, total = reported[-1]
    assert done < total == 20  # the progress callback raised: the rest of the series was never computed
    assert window.opsPanel.results.entries() == []


# ----------------------------------------------------------------------------------------------
# Generate: SYNTHETIC everywhere; errors from operations
# ----------------------------------------------------------------------------------------------
def fake_generate(scan, *, factor, method, sharpen, steps, note, device, progress):
    """A stand-in generative model: it forgets to set the synthetic flag, which the GUI must not."""
    from medscan.ops import Result
    from medscan.scan import ProvenanceEntry

    if progress is not None:
        progress(1, 1)
    entry = ProvenanceEntry("fake_generate", {"factor": factor, "method": method})
    return Result(scan=scan.derive(scan.voxels * factor, entry), notes=[f"made up by {method}: {note}"])


def test_generate_results_are_synthetic_in_list_overlay_title_and_export_name(qtbot, make_window, ct_scan,
                                                                              monkeypatch, tmp_path):
    from medscan.ops import Operation, Param

    register(monkeypatch, Operation(
        name="fake_generate", family="generate", title="Fake upsample", summary="Invents pixels for a test.",
        params=(Param("factor", "float", 2.0, "scale", 0.5, 4.0),
                Param("method", "choice", "cubic", "how", choices=("linear", "cubic")),
                Param("sharpen", "bool", True, "sharpen"), Param("steps", "int", 3, "steps", 1, 10),
                Param("note", "str", "hello", "free text")),
        function=fake_generate, synthetic=True))
    window = make_window()
    generate = window.opsPanel.panels["generate"]
    generate.select("fake_generate")
    assert generate.empty is None and generate.chooser.currentText() == "SYNTHETIC · Fake upsample"
    widgets = generate.forms["fake_generate"].widgets
    assert isinstance(widgets["method"], QComboBox) and widgets["method"].currentText() == "cubic"
    assert isinstance(widgets["sharpen"], QCheckBox) and widgets["sharpen"].isChecked()
    steps = widgets["steps"]
    assert isinstance(steps, QSpinBox) and (steps.minimum(), steps.maximum()) == (1, 10)
    widgets["method"].setCurrentText("linear")

    show(qtbot, window, crop(ct_scan, 5, 2))
    window.opsPanel.tabs.setCurrentWidget(generate)
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(generate.preview_button, Qt.MouseButton.LeftButton)
    entry = blocker.args[0]
    assert entry.params["method"] == "linear" and entry.after.synthetic and entry.synthetic

    results = window.opsPanel.results
    label = f"SYNTHETIC · #{entry.number} Fake upsample · axial slice 2 · method linear"
    assert results.list.currentItem().text() == label
    assert "SYNTHETIC" in results.details.toPlainText() and "made up by linear" in results.details.toPlainText()
    overlay = [text for text, _ in window.afterViewer.overlay_text()["top_right"]]
    assert "SYNTHETIC - not acquired" in overlay and any("SYNTHETIC" in t and "AFTER" in t for t in overlay)
    assert "SYNTHETIC" in window.windowTitle()
    assert entry.export_stem().endswith("_SYNTHETIC")

    suggested = []

    def cancelled_dialog(parent, caption, directory, *args, **kwargs):
        suggested.append(directory)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(cancelled_dialog))
    qtbot.mouseClick(results.dicom_button, Qt.MouseButton.LeftButton)
    assert Path(suggested[0]).name == "CT_fake_generate_axial2_SYNTHETIC_derived"
    assert not window.jobs.active  # cancelled in the dialog: nothing runs


def fake_through_plane(scan, *, device, progress):
    """A stand-in super-resolution: twice the slices over the same extent, so a new grid."""
    from medscan.ops import Result
    from medscan.scan import ProvenanceEntry

    affine = scan.affine.copy()
    affine[:3, 2] /= 2
    voxels = np.repeat(scan.voxels, 2, axis=-3)
    result = scan.derive(voxels, ProvenanceEntry("fake_through_plane"), affine=affine, synthetic=True)
    return Result(scan=result, maps={"uncertainty": np.ones_like(voxels)})


def test_a_result_on_a_finer_grid_is_compared_side_by_side_by_position(qtbot, make_window, ct_scan, monkeypatch):
    from medscan.ops import Operation

    register(monkeypatch, Operation(name="fake_through_plane", family="generate", title="Fake slices",
                                    summary="Twice the slices.", params=(), function=fake_through_plane,
                                    synthetic=True))
    window = make_window()
    series = show(qtbot, window, crop(ct_scan, 4, 4))
    entry = wait_for_result(qtbot, window, lambda: window.workflow.run_series("fake_through_plane"))
    viewer, after, bar = window.viewer, window.afterViewer, window.compareBar
    assert entry.after.voxels.shape == (8, 512, 512) and not after.same_grid
    assert not bar.mode_button("swipe").isEnabled() and not bar.mode_button("flicker").isEnabled()
    assert [bar.overlay.itemData(i) for i in range(bar.overlay.count())] == ["", "uncertainty"]
    window.workflow.set_mode("swipe")  # refused quietly: side by side stays
    assert after.mode == "side" and viewer.isVisible()

    viewer.set_slice(3)
    assert after.slice_index == 6  # the same position: 2 mm slices became 1 mm slices
    np.testing.assert_allclose(entry.after.index_to_world([[0, 0, 6]]), series.index_to_world([[0, 0, 3]]))
    after.set_slice(4)
    assert viewer.slice_index == 2
    viewer.zoom_by(1.5)
    assert after.zoom == pytest.approx(1.5)  # both drawn in millimetres: the same anatomy on screen
    # The two views may differ by a pixel in width (an odd split), so the same scale within 1 %.
    assert after.image_transform().m11() == pytest.approx(viewer.image_transform().m11(), rel=0.01)


def test_an_unexpected_error_in_the_window_is_a_dialog_not_an_abort(window, monkeypatch, errors):
    from ui.app import install_error_hook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    install_error_hook(window)
    try:
        raise KeyError("overlay")
    except KeyError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert errors == [("Unexpected error", "KeyError: 'overlay'")]
    assert window.isVisible()


def test_an_operation_error_is_one_line_in_a_dialog_and_the_window_stays_usable(qtbot, make_window, ct_scan,
                                                                               monkeypatch, errors):
    from medscan.ops import Operation, Param
    from medscan.scan import MedscanError

    def refuse(scan, *, level, device, progress):
        raise MedscanError(scan.description, f"level {level} needs a contrast series")

    register(monkeypatch, Operation(name="refuse", family="clean", title="Refuse", summary="Always fails.",
                                    params=(Param("level", "int", 2, "level", 0, 5),), function=refuse))
    window = make_window()
    show(qtbot, window, crop(ct_scan, 3, 1))
    job = window.workflow.preview("refuse")
    with qtbot.waitSignal(window.errorReported, timeout=RUN_TIMEOUT_MS):
        pass
    assert job.ended and errors == [("Refuse failed", "CT Body 3.0: level 2 needs a contrast series")]
    assert window.opsPanel.results.entries() == []
    entry = wait_for_result(qtbot, window, lambda: window.workflow.preview("highlight"))  # still usable
    assert entry.operation.name == "highlight" and len(errors) == 1


# ----------------------------------------------------------------------------------------------
# Responsiveness, About, the screenshot entry point, start-up
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow  # a timing measurement over a ~20 s CPU denoise of the whole sample series
def test_the_window_answers_within_100_ms_while_the_whole_series_is_denoised(qtbot, window, ct_scan):
    """Inference runs in a worker on all cores but one, so the event loop keeps ticking.

    Measured once the model is loaded (a preview first, as a reader would): importing torch the
    first time holds Python's GIL in C code for up to a few hundred ms, which no thread can avoid.
    """
    from PyQt6.QtCore import QTimer

    show(qtbot, window, ct_scan)
    wait_for_result(qtbot, window, lambda: window.workflow.preview("denoise"))
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS):
        job = window.workflow.run_series("denoise")
    timer.stop()
    assert job.worker_done
    gaps = np.diff(ticks)
    longest = f"longest pause {gaps.max() * 1000:.0f} ms at tick {gaps.argmax()} of {len(gaps)}"
    assert len(ticks) > 100 and gaps.max() < 0.100, longest


def test_about_lists_the_model_cards(window, monkeypatch):
    from medscan.nets.weights import list_cards

    shown = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda parent, title, text: shown.append(text)))
    window.actionAbout.trigger()
    (text,) = shown
    cards = list_cards()
    assert cards and all(f"<b>{card.name}</b>" in text and f"v{card.version}" in text for card in cards)


def test_screenshot_with_an_operation_shows_before_and_after(tmp_path):
    from PIL import Image

    out = tmp_path / "before_after.png"
    result = run_gui(CT, "--screenshot", out, "--operation", "denoise")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (1440, 900)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20

    bad = run_gui(CT, "--screenshot", tmp_path / "never.png", "--operation", "nope")
    assert bad.returncode == 1 and not (tmp_path / "never.png").exists()
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("medscan-gui: nope: no such operation (have: ") and "denoise" in line


def test_start_up_builds_the_operation_tabs_without_torch():
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from PyQt6.QtWidgets import QApplication\n"
        "from ui.qt_main_window import MainWindow\n"
        "app = QApplication([]); w = MainWindow(persist=False); w.show(); app.processEvents()\n"
        "seconds = time.perf_counter() - t\n"
        "assert w.opsPanel.panels['clean'].forms, 'no Clean operations built'\n"
        "heavy = sorted(m for m in ('torch', 'pydicom', 'nibabel', 'scipy') if m in sys.modules)\n"
        "print(round(seconds, 2), *heavy)\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    seconds, *heavy = result.stdout.split()
    assert heavy == []  # torch loads with the first operation, in a worker
    assert float(seconds) < 3.0
