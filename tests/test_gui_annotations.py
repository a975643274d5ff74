"""The review panel: run the HU task on the shown CT in the background, accept / reject / brush-edit the drafts,
export the accepted ones as SEG + SR; the screenshot in docs/screenshots/annotations.png comes from here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtCore import QSettings

from medscan.db.store import Database
from medscan.io.seg_sr import read_seg, read_sr
from medscan.train.data import DATA_ROOT
from medscan.view import reformat

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"
SCREENSHOT = ROOT / "docs" / "screenshots" / "annotations.png"
KEY, USER, USER_KEY = "gui annotate key", "rad", "rad pass"


def _signed_in_window(qtbot, tmp_path: Path, study: Path):
    """The main window with a radiologist signed in to a new encrypted database and ``study`` open."""
    from ui.qt_database import open_session
    from ui.qt_main_window import MainWindow

    db_path = tmp_path / "studies.db"
    with Database.create(db_path, KEY, scrypt_n=2**12) as database:
        database.add_user(USER, "radiologist", USER_KEY)
    window = MainWindow(settings=QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat), persist=False)
    qtbot.addWidget(window)
    window.resize(1500, 900)
    window.show()
    window.database.set_session(open_session(str(db_path), "", USER, KEY, USER_KEY))
    with qtbot.waitSignal(window.scanShown, timeout=60_000):
        window.open_path(study)
    return window


def test_review_panel_runs_hu_then_accept_reject_edit_and_export(qtbot, tmp_path):
    from medscan.db.annotations import list_annotations
    from ui.qt_mask_brush import BrushTool

    window = _signed_in_window(qtbot, tmp_path, SAMPLE_CT)
    panel = window.annotations
    assert not panel.dock.isVisible()  # the window's layout is unchanged until the user opens the panel
    panel.action.trigger()  # Tools > Annotate and review: the Annotations tab beside Operations
    assert panel.dock.isVisible()
    panel.task.setCurrentIndex(panel.task.findData("hu"))
    with qtbot.waitSignal(panel.changed, timeout=120_000):
        panel.run_task()
    rows = panel.table.rowCount()
    assert rows >= 4 and {v.status for v in panel.views} == {"draft"}
    assert "nothing is accepted until you accept or edit it" in panel.status.text()
    assert not panel.export_accepted.isEnabled()  # drafts only: nothing to export as accepted
    ids = [v.id for v in panel.views]

    panel.select(ids[0])
    panel.accept_button.click()
    panel.select(ids[-1])  # the smallest listed piece of outside air: not a finding anyone wants
    panel.reject_button.click()
    status = {v.id: v.status for v in panel.views}
    assert status[ids[0]] == "accepted" and status[ids[-1]] == "rejected"
    assert panel.export_accepted.isEnabled()

    # Edit the bone draft with the window's brush: Shift-drag erases across the vertebra on the shown slice.
    bone = next(v for v in panel.views if v.label == "bone")
    panel.select(bone.id)
    panel.edit_button.setChecked(True)
    viewer = window.viewer
    assert isinstance(viewer.tool, BrushTool) and panel.brush.mask is not None
    before = int(panel.brush.mask.sum())
    plane = np.asarray(panel.brush.mask)  # the acquired (axial) plane is shown: k is the viewer's slice
    k = viewer.slice_index
    jj, ii = np.nonzero(plane[k])
    assert jj.size, "the bone draft is on the shown slice"
    panel.brush.size.setValue(12)
    row, col = float(np.median(jj)), float(np.median(ii))
    viewer.tool.press(viewer.image_to_widget(col - 20, row), erase=True)
    for step in range(0, 41, 4):
        viewer.tool.move(viewer.image_to_widget(col - 20 + step, row))
    viewer.tool.release()
    after = int(panel.brush.mask.sum())
    assert 0 < after < before
    edited_mask = panel.brush.mask.copy()
    panel.save_edit.click()
    edited = next(v for v in panel.views if v.id == bone.id)
    assert (edited.status, edited.source, edited.algorithm_type) == ("accepted", "human", "MANUAL")
    assert viewer.tool is None and "MANUAL" in panel.status.text()

    # Explain a small bone draft: occlusion over the HU task, drawn in a heat colour over its widest slice.
    small_bone = next(v for v in panel.views if v.label == "bone" and v.status == "draft")
    panel.select(small_bone.id)
    with qtbot.waitSignal(panel.explained, timeout=120_000) as explained:
        panel.explain.click()
    assert "occlusion sensitivity over hu" in explained.args[0] and panel.heat is not None
    assert panel.heat.max() == 255 and panel.heat[small_bone.measurements["diameter_slice"]].any()
    shown_plane = reformat(panel.heat, window.scan.affine, viewer.plane).voxels[viewer.slice_index]
    assert np.asarray(shown_plane).any()  # the viewer went to the explained slice
    from medscan.db.annotations import load_explanations

    k = small_bone.measurements["diameter_slice"]
    kept = load_explanations(window.database.session.database, small_bone.id)  # stored as the annotation's overlay
    assert [e.k for e in kept] == [k] and "occlusion sensitivity over hu" in kept[0].method
    assert np.array_equal(np.rint(kept[0].heat * 255).astype(np.uint8), panel.heat[k])
    shown_heat = panel.heat.copy()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOT.with_name("annotations_explain.png")))

    # The label overlay is drawn over the image (accepted green, drafts amber, selection cyan).
    panel.select(ids[0])
    assert panel.heat is None  # the explanation belonged to the other finding
    panel.select(small_bone.id)  # ... and comes back from the database when its finding is selected again
    assert panel.heat is not None and np.array_equal(panel.heat, shown_heat) and "Kept explanation" in \
        panel.status.text()
    panel.opacity.setValue(80)  # the one opacity control drives the kept map too
    assert panel.layer.opacity == pytest.approx(0.8)
    panel.opacity.setValue(45)
    panel.select(ids[0])
    assert panel.heat is None
    panel.dock.raise_()
    qtbot.wait(50)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOT))
    shown = viewer.grab().toImage()
    pixel = viewer.image_to_widget(col + 30, row - 60)
    assert shown.pixelColor(int(pixel.x()), int(pixel.y())).isValid()

    seg_path, sr_path = tmp_path / "seg.dcm", tmp_path / "sr.dcm"
    with qtbot.waitSignal(panel.exported, timeout=60_000):
        panel.export(str(seg_path), str(sr_path), accepted_only=True)
    labels, segments = read_seg(seg_path, window.scan)
    assert sorted(s["algorithm_type"] for s in segments.values()) == ["AUTOMATIC", "MANUAL"]
    number = next(n for n, s in segments.items() if s["algorithm_type"] == "MANUAL")
    assert np.array_equal(labels == number, edited_mask)
    report = read_sr(sr_path)
    assert report["verified"] and report["verifying_observer"] == USER
    database = window.database.session.database
    assert {v.status for v in list_annotations(database, panel.series_id)} == {"draft", "accepted", "rejected"}
    window.close()



MS_FLAIR = DATA_ROOT / "paired" / "brain_ms_patient19" / "flair.nii.gz"


@pytest.mark.model
@pytest.mark.skipif(not MS_FLAIR.exists(), reason="../shared/data/paired/brain_ms_patient19 not present")
def test_review_panel_explains_an_ms_lesion_finding_over_the_flair(qtbot, tmp_path):
    """An MS patient's FLAIR: the brain-lesions task drafts lesion findings (AI, with probabilities), and Explain draws
    the chosen finding's occlusion map over its slice; docs/screenshots/annotations_ms_lesion.png comes from here."""
    import torch

    from medscan.db.annotations import load_explanations

    torch.set_num_threads(1)
    window = _signed_in_window(qtbot, tmp_path, MS_FLAIR)
    panel = window.annotations
    panel.action.trigger()
    index = panel.task.findData("brain-lesions")
    assert index >= 0, "the lesion task is offered for an MR series"
    panel.task.setCurrentIndex(index)
    with qtbot.waitSignal(panel.changed, timeout=300_000):
        panel.run_task()
    views = panel.views
    assert views and {v.label for v in views} == {"white-matter lesion (FLAIR)"}
    assert {(v.status, v.source) for v in views} == {("draft", "ai")}
    largest = max(views, key=lambda v: v.measurements["volume_ml"])
    assert largest.measurements["volume_ml"] > 5  # the confluent periventricular lesion (expert: 46.9 mL)
    small = min(views, key=lambda v: v.measurements["volume_ml"])
    assert small.measurements["volume_ml"] < 0.5  # the task lists lesions far under the 0.5 mL organ floor
    panel.select(largest.id)
    with qtbot.waitSignal(panel.explained, timeout=300_000) as explained:
        panel.explain.click()
    assert "occlusion sensitivity over brain-lesions" in explained.args[0]
    k = largest.measurements["diameter_slice"]
    assert panel.heat is not None and panel.heat[k].max() == 255
    assert not panel.heat[np.arange(panel.heat.shape[0]) != k].any()  # one slice: the finding's widest
    kept = load_explanations(window.database.session.database, largest.id)
    assert [e.k for e in kept] == [k]
    mask = panel.labels == 1 + next(i for i, v in enumerate(panel.views) if v.id == largest.id)
    heat = panel.heat[k].astype(np.float32)
    assert heat[mask[k]].mean() > heat[~mask[k] & (heat > 0)].mean()  # the map is hottest on the finding itself
    panel.dock.raise_()
    qtbot.wait(50)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOT.with_name("annotations_ms_lesion.png")))
    window.close()
