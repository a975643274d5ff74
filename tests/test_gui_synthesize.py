"""Synthesize scans from noise in the window: the Generate tab's button, a gallery of SYNTHETIC tiles, export.

Runs the shipped synthesis model with few slices and few denoising steps (the gallery, not image quality, is
under test here; tests/test_synth.py and scripts/evaluate_synth.py measure the model). The screenshot in
docs/screenshots/synthesize.png comes from here.
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
from PyQt6.QtWidgets import QPushButton
from test_gui_operations import make_window  # noqa: F401 - fixture

settings = test_gui.settings
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "screenshots" / "synthesize.png"
needs_model = pytest.mark.skipif(not (ROOT / "models" / "synth_diffusion2d.json").exists(),
                                 reason="models/synth_diffusion2d not shipped")


@needs_model
def test_generate_tab_opens_the_gallery_samples_marks_and_exports(qtbot, make_window, tmp_path) -> None:  # noqa: F811
    from medscan.io import load
    from ui.qt_synthesize import SynthesizeDialog

    window = make_window()
    button = window.opsPanel.panels["generate"].findChild(QPushButton, "synthesizeButton")
    assert button is not None
    button.click()
    dialog = window.synthesize_dialog
    assert isinstance(dialog, SynthesizeDialog) and dialog.isVisible()
    classes = [dialog.klass.itemData(i) for i in range(dialog.klass.count())]
    assert ("MR", "brain") in classes
    assert not dialog.export_dicom.isEnabled()  # nothing to export before sampling

    dialog.klass.setCurrentIndex(classes.index(("MR", "brain")))
    dialog.count.setValue(4)
    dialog.steps.setValue(10)
    dialog.seed.setValue(7)
    dialog.generate()
    qtbot.waitUntil(lambda: dialog.batch is not None and dialog.job is None, timeout=180_000)
    batch = dialog.batch
    assert dialog.gallery.count() == 4 and batch.slices.shape[0] == 4
    tip = dialog.gallery.item(0).toolTip()
    assert tip.startswith("SYNTHETIC MR brain #1, seed 7") and "nearest training slice SSIM" in tip
    assert "refused by the memorisation check" in dialog.status.text()
    dialog.grab().save(str(SCREENSHOT))

    passed = int(np.sum(batch.passed))
    if passed == 0:
        pytest.skip("both samples were refused as memorised; export is tested in tests/test_synth.py")
    dialog.export("dicom", str(tmp_path / "export"))
    qtbot.waitUntil(lambda: dialog.status.text().startswith(("Exported", "Not exported")), timeout=60_000)
    assert dialog.status.text().startswith("Exported"), dialog.status.text()
    files = sorted((tmp_path / "export").rglob("*.dcm"))
    assert len(files) == passed
    header = pydicom.dcmread(files[0])
    assert str(header.PatientName) == "SYNTHETIC^PATIENT" and "SYNTHETIC" in header.SeriesDescription
    scan = load(files[0].parent)
    assert scan.voxels.shape[0] == passed


def test_a_refused_tile_is_struck_through_in_red(qtbot) -> None:
    from ui.qt_synthesize import REFUSED_RGB, tile

    image = np.linspace(0, 1000, 128 * 128, dtype=np.float32).reshape(128, 128)
    shown = tile(image, (500.0, 1000.0), 160, refused=False).toImage()
    refused = tile(image, (500.0, 1000.0), 160, refused=True).toImage()
    corner = refused.pixelColor(1, 80)  # the red frame on the left edge
    assert (corner.red(), corner.green(), corner.blue()) == REFUSED_RGB
    plain = shown.pixelColor(1, 80)
    assert plain.red() == plain.green() == plain.blue()  # grey image, no frame
