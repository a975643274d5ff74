"""The Generate tab's drawn regions and what a generated result carries: brush, preview crop, overlays, export.

A stand-in operation with a mask parameter (filled with the mean of the measured pixels) keeps this about
the window, not a model; the real Generate operations are walked in tests/test_generate_marks.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

import test_gui
from PyQt6.QtCore import QEvent, QPointF, Qt
from PyQt6.QtWidgets import QFileDialog
from test_gui_operations import crop, make_window, register, show  # noqa: F401 - fixtures

errors = test_gui.errors
settings = test_gui.settings
seen_masks: list[np.ndarray] = []


def fake_fill(scan, *, region, device, progress):
    """Fill the drawn region with the mean of the measured pixels; uncertainty = 1 inside, 0 outside."""
    from medscan.ops.generated import synthetic_result
    from medscan.scan import MedscanError, ProvenanceEntry

    if isinstance(region, str):
        raise MedscanError("--region", "draw a region first")
    seen_masks.append(region.copy())
    voxels = scan.voxels.copy()
    voxels[region] = voxels[~region].mean()
    return synthetic_result(scan, voxels, ProvenanceEntry("fake_fill", {}), uncertainty=region.astype(np.float32),
                            generated=region)


@pytest.fixture
def fill_window(monkeypatch, make_window):  # noqa: F811 - the fixture imported above
    from medscan.ops import Operation, Param

    register(monkeypatch, Operation(
        name="fake_fill", family="generate", title="Fake fill", summary="Fills a drawn region for a test.",
        params=(Param("region", "mask", "", "the region to fill"),), function=fake_fill, synthetic=True))
    seen_masks.clear()
    return make_window()


def drag_brush(viewer, start: QPointF, end: QPointF, shift: bool = False) -> None:
    from PyQt6.QtGui import QMouseEvent
    from PyQt6.QtWidgets import QApplication

    modifiers = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    left = Qt.MouseButton.LeftButton
    for kind, pos, button, buttons in ((QEvent.Type.MouseButtonPress, start, left, left),
                                       (QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, left),
                                       (QEvent.Type.MouseButtonRelease, end, left, Qt.MouseButton.NoButton)):
        event = QMouseEvent(kind, pos, QPointF(viewer.mapToGlobal(pos)), button, buttons, modifiers)
        QApplication.sendEvent(viewer, event)


def test_a_drawn_region_is_painted_previewed_on_its_plane_run_on_the_series_and_exported_with_companions(
        qtbot, fill_window, tmp_path, monkeypatch, errors):
    from test_gui_operations import RUN_TIMEOUT_MS

    from medscan.io import load

    window = fill_window
    scan = crop(load(test_gui.CT), 8, 3)
    show(qtbot, window, scan)
    generate = window.opsPanel.panels["generate"]
    window.opsPanel.tabs.setCurrentWidget(generate)
    generate.select("fake_fill")
    mask_widget = generate.forms["fake_fill"].widgets["region"]
    assert mask_widget.value() == ""

    viewer = window.viewer
    centre = viewer.image_to_widget(256, 256)
    qtbot.mouseClick(mask_widget.draw, Qt.MouseButton.LeftButton)
    assert viewer.tool is not None
    drag_brush(viewer, centre, centre + QPointF(40, 0))
    drawn = mask_widget.value()
    assert isinstance(drawn, np.ndarray) and drawn.shape == scan.voxels.shape
    painted = np.argwhere(drawn)
    assert set(painted[:, 0]) == {viewer.slice_index}  # only the slice on screen
    assert abs(painted[:, 1].mean() - 256) < 3  # where the brush went, in image rows
    # Shift erases what was painted under the brush.
    drag_brush(viewer, centre, centre, shift=True)
    assert 0 < mask_widget.value().sum() < drawn.sum()
    shown = viewer.grab().toImage()
    pixel = shown.pixelColor(int(centre.x() + 30), int(centre.y()))
    assert pixel.red() > pixel.green() + 40  # the magenta region is drawn over the image

    # Preview: the mask given to the operation is the previewed plane only.
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(generate.preview_button, Qt.MouseButton.LeftButton)
    on_screen = mask_widget.value()[viewer.slice_index]
    assert seen_masks[-1].shape == (1, 512, 512) and seen_masks[-1].sum() == on_screen.sum()
    entry = blocker.args[0]
    assert entry.synthetic and set(entry.result.maps) >= {"uncertainty", "generated"}
    overlays = [window.compareBar.overlay.itemText(i) for i in range(window.compareBar.overlay.count())]
    assert "Uncertainty" in overlays and "Generated" in overlays
    after = window.afterViewer
    assert any("generated region" in t for t, _ in after.overlay_text()["bottom_right"])
    edge = after.image_to_widget(*np.argwhere(seen_masks[-1][0])[0][::-1])  # a border pixel (row, col -> col, row)
    shot = after.grab().toImage().pixelColor(int(edge.x()), int(edge.y()))
    assert shot.red() > 150 and shot.blue() > 120 and shot.green() < 120  # outlined in magenta
    after.grab().save(str(tmp_path / "generated_outline.png"))

    # The whole series: the full drawn volume.
    window.workflow.close()
    with qtbot.waitSignal(window.workflow.resultShown, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(generate.run_button, Qt.MouseButton.LeftButton)
    assert seen_masks[-1].shape == scan.voxels.shape
    entry = blocker.args[0]

    target = tmp_path / "filled"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    with qtbot.waitSignal(window.exported, timeout=RUN_TIMEOUT_MS) as exported:
        qtbot.mouseClick(window.opsPanel.results.dicom_button, Qt.MouseButton.LeftButton)
    folder = Path(exported.args[0])
    assert folder.name == "filled_synthetic"
    names = sorted(p.name for p in folder.iterdir())
    assert all("SYNTHETIC" in n for n in names)
    assert sum(n.startswith("SYNTHETIC_IM_") for n in names) == 3
    assert sum(n.startswith("SYNTHETIC_UNCERTAINTY_") for n in names) == 3
    seg = pydicom.dcmread(folder / "SYNTHETIC_SEG_generated_region.dcm")
    assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "Generated region"
    assert not errors

    # Another series: the drawing belonged to the old one.
    show(qtbot, window, crop(load(test_gui.CT), 2, 2))
    assert mask_widget.value() == ""
    qtbot.mouseClick(mask_widget.draw, Qt.MouseButton.LeftButton)
    assert viewer.tool is None
