"""Quality triage: clean real series pass, degraded copies are flagged (noise, motion, missing/blank slices,
truncation, orientation), badges are kept in the database, ``medscan screen`` prints them and refuses bad input
in one line, and the study browser shows a degraded series' flag."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medscan.cli import main
from medscan.io import load
from medscan.io.dicom import list_series
from medscan.resources import shared_data_dir
from medscan.scan import ProvenanceEntry, Scan
from medscan.screen import quality
from medscan.screen.quality import screen_record, screen_scan

ROOT = Path(__file__).resolve().parents[1]
DATA = shared_data_dir()
MR_DICOM = DATA / "train" / "mr03_brain_t1_2d_sag_siemens_dicom"
CT_HEAD = DATA / "train-extra" / "ct03_head_ge_4mm_detilted.nii.gz"
MR_T2 = DATA / "paired" / "brain_tcga_fg_6692" / "t2.nii.gz"
SAMPLE_MR = ROOT / "samples" / "mr_brain_t1_sag_siemens"
SAMPLE_CT = ROOT / "samples" / "ct_abdomen_siemens"

needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data not present")


def _badge(badges: list[quality.Badge], name: str) -> quality.Badge:
    return next(b for b in badges if b.name == name)


def _derive(scan: Scan, voxels: np.ndarray, affine: np.ndarray | None = None) -> Scan:
    return scan.derive(voxels, ProvenanceEntry("test-degrade"), affine=affine)


def _without_slice(src: Path, dst: Path, drop: int) -> Path:
    """Copy a DICOM series leaving out the ``drop``-th slice along the slice normal."""
    record = list_series(src).series[0]
    order = sorted(record.frames, key=lambda f: float(np.dot(f.position, np.cross(f.row_cosine, f.column_cosine))))
    dst.mkdir(parents=True)
    for index, frame in enumerate(order):
        if index != drop:
            shutil.copy(frame.path, dst / Path(frame.path).name)
    return dst


@needs_data
def test_clean_mr_series_has_no_flag_and_uses_the_header_phase_encoding():
    _, badges = screen_record(list_series(MR_DICOM).series[0])
    assert quality.worst(badges) == "ok", [b.message for b in badges]
    assert "ROW (header)" in _badge(badges, "ghosting").message
    assert {b.name for b in badges} == {"noise", "ghosting", "slices", "field of view", "orientation"}


@needs_data
def test_deleted_dicom_slice_is_flagged_through_the_loader(tmp_path):
    folder = _without_slice(MR_DICOM, tmp_path / "gap", drop=17)
    _, badges = screen_record(list_series(folder).series[0])
    slices = _badge(badges, "slices")
    assert slices.level == "flag" and slices.value == pytest.approx(2.0, abs=0.05)
    assert "1 slice(s) missing" in slices.message
    # Without the record, the loader's spacing warning alone still finds the gap.
    assert _badge(screen_scan(load(folder)), "slices").level == "flag"


@needs_data
def test_ct_noise_in_hu_and_blank_slice():
    scan = load(CT_HEAD)
    clean = screen_scan(scan)
    assert quality.worst(clean) == "ok" and _badge(clean, "noise").unit == "HU"
    rng = np.random.default_rng(1)
    noisy = _badge(screen_scan(_derive(scan, scan.voxels + rng.normal(0, 50, scan.voxels.shape))), "noise")
    assert noisy.level == "flag" and noisy.value > quality.CT_NOISE_FLAG_HU
    blanked = scan.voxels.copy()
    blanked[7] = -1024
    slices = _badge(screen_scan(_derive(scan, blanked)), "slices")
    assert slices.level == "flag" and "slice 8" in slices.message


@needs_data
def test_mr_motion_ghosting_and_cropped_field_of_view_are_flagged():
    torch = pytest.importorskip("torch")
    from medscan.degrade.motion import add_motion

    torch.set_num_threads(1)  # the machine is shared; the simulator is per-slice FFTs
    full = load(MR_T2)
    affine = full.affine.copy()
    affine[:3, 2] *= 20
    scan = _derive(full, full.voxels[40:140:20], affine=affine)  # 5 slices through the brain
    assert quality.worst(screen_scan(scan)) == "ok"
    scale = float(np.percentile(scan.voxels, 99.5))
    x = torch.from_numpy(scan.voxels / scale)[:, None]
    moved = add_motion(x, "moderate", torch.Generator().manual_seed(3))[:, 0].numpy() * scale
    assert _badge(screen_scan(_derive(scan, moved)), "ghosting").level == "flag"
    columns = np.flatnonzero((scan.voxels > 0).any(axis=(0, 1)))
    cut = int(columns[0] + 0.15 * (columns[-1] - columns[0]))
    shifted = scan.affine.copy()
    shifted[:3, 3] = scan.index_to_world(np.array([[cut, 0, 0]]))[0]
    cropped = _derive(scan, scan.voxels[:, :, cut:], affine=shifted)
    assert _badge(screen_scan(cropped), "field of view").level == "flag"


def test_orientation_badge_flags_sheared_and_degenerate_affines():
    voxels = np.zeros((4, 32, 32), np.float32)
    voxels[:, 8:24, 8:24] = 100
    sheared = np.eye(4)
    sheared[:3, 2] = [0.0, 0.5, 1.0]  # slices step 27 degrees off the normal
    assert quality.orientation_badge(Scan(voxels, sheared, modality="CT")).level == "flag"
    flat = np.eye(4)
    flat[:3, 2] = [1.0, 0.0, 0.0]
    assert "degenerate" in quality.orientation_badge(Scan(voxels, flat, modality="CT")).message
    tilted = Scan(voxels, sheared, modality="CT",
                  warnings=["gantry tilt or sheared stack: slices step 26.57 degrees off the slice normal"])
    assert quality.orientation_badge(tilted).level == "warn"  # measured by the loader: sound, but sheared
    noted = Scan(voxels, np.eye(4), modality="CT", warnings=["no patient geometry (2-D image): pixel grid only"])
    assert quality.orientation_badge(noted).level == "warn"
    assert quality.orientation_badge(Scan(voxels, np.eye(4), modality="CT")).level == "ok"


def test_badges_are_stored_and_replaced_in_the_database(target, tmp_path):
    from medscan.db.store import Database

    db, blobs = target
    nifti = tmp_path / "scan.nii.gz"
    nifti.write_bytes(b"")
    database = Database.create(db, "pass phrase", blob_dir=blobs, scrypt_n=2**12)
    with database:
        series_id = database.register_file(nifti, "CT")
        assert database.load_quality(series_id) is None
        first = [quality.Badge("noise", "flag", 60.0, 38.0, "noise 60 HU", "HU"),
                 quality.Badge("slices", "ok", 1.0, 1.5, "uniform", "step ratio")]
        database.store_quality(series_id, first, rules_version=quality.VERSION)
        stored = database.load_quality(series_id)
        assert stored["worst"] == "flag" and stored["rules_version"] == quality.VERSION
        assert [quality.Badge.from_dict(b) for b in stored["badges"]] == first
        database.store_quality(series_id, [first[1]])
        assert database.load_quality(series_id)["worst"] == "ok"
        assert len(database.load_quality(series_id)["badges"]) == 1


def test_cli_screen_keeps_badges_in_the_database(tmp_path, capsys, monkeypatch):
    from medscan.db.store import Database

    db = tmp_path / "studies.db"
    with Database.create(db, "db pass", scrypt_n=2**12) as database:
        database.add_user("tech", "technician", "tech pass")
    monkeypatch.setenv("MEDSCAN_DB_KEY", "db pass")
    monkeypatch.setenv("MEDSCAN_USER_KEY", "tech pass")
    folder = _without_slice(SAMPLE_MR, tmp_path / "mr", drop=4)
    assert main(["screen", str(folder), "--db", str(db), "--user", "tech", "--json"]) == 0
    series_id = json.loads(capsys.readouterr().out)[0]["database_series_id"]
    with Database.open(db, "db pass") as database:
        stored = database.load_quality(series_id)
    assert stored["worst"] == "flag" and stored["rules_version"] == quality.VERSION
    assert {b["name"]: b["level"] for b in stored["badges"]}["slices"] == "flag"


def test_cli_screen_json_text_and_findings_hook(tmp_path, capsys, monkeypatch):
    from medscan.annotate import registry

    folder = _without_slice(SAMPLE_MR, tmp_path / "mr", drop=4)
    fake = registry.SegmentationTask("brain-demo", "Demo brain task", ("MR",), {1: "x"},
                                     run=lambda scan, device="auto": None)
    monkeypatch.setattr(registry, "_TASKS", {"brain-demo": fake})
    assert main(["screen", str(folder), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 1 and entries[0]["worst"] == "flag"
    assert {b["name"]: b["level"] for b in entries[0]["badges"]}["slices"] == "flag"
    assert entries[0]["annotate_with"] == ["brain-demo"]
    assert main(["screen", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "quality: FLAG" in text and "annotate with: brain-demo" in text


def test_cli_screen_bad_input_is_one_line(tmp_path, capsys):
    assert main(["screen", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder" in err
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    assert main(["screen", str(junk)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no readable DICOM series" in err
    assert main(["screen", str(SAMPLE_MR), "--series", "99"]) == 1
    assert "no series '99'" in capsys.readouterr().err


@pytest.mark.skipif(os.environ.get("QT_QPA_PLATFORM") != "offscreen", reason="GUI test: QT_QPA_PLATFORM=offscreen")
def test_study_browser_shows_the_flag_badge_of_a_degraded_series(qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QApplication

    from ui.qt_main_window import MainWindow
    from ui.qt_theme import apply_dark_theme

    study = tmp_path / "study"
    shutil.copytree(SAMPLE_CT, study / "ct")
    _without_slice(SAMPLE_MR, study / "mr", drop=4)
    apply_dark_theme(QApplication.instance())
    win = MainWindow(settings=QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.resize(1280, 760)
    win.show()
    qtbot.waitExposed(win)
    win.open_path(study)
    qtbot.waitUntil(lambda: len(win.browser.series_items()) == 2, timeout=30_000)
    for index in (1, 0):  # the degraded MR (first in the tree) last, so that the viewer shows it
        win.browser.activate(index)
        summary = win.browser.summaries()[index]
        qtbot.waitUntil(lambda summary=summary: summary.quality is not None, timeout=60_000)
    by_modality = {s.modality: s for s in win.browser.summaries()}
    mr_item = win.browser.item_of(by_modality["MR"])
    column = win.browser.QUALITY_COLUMN
    assert mr_item.text(column) == "FLAG"
    assert "[FLAG] slices" in mr_item.toolTip(column) and "missing" in mr_item.toolTip(column)
    assert win.browser.item_of(by_modality["CT"]).text(column) != "FLAG"
    win.browser.setCurrentItem(mr_item)
    qtbot.wait(200)
    out = ROOT / "docs" / "screenshots" / "screen_badges.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert win.grab().save(str(out))
    win.close()


@needs_data
def test_a_scan_cropped_at_its_source_is_flagged_for_field_of_view_and_nothing_else():
    """TotalSegmentator's ct_cropped example was cut around the aorta: a real truncation the FOV badge must catch."""
    scan = load(DATA / "labelled" / "ct_aorta_totalseg_example" / "ct.nii.gz")
    badges = screen_scan(scan)
    assert _badge(badges, "field of view").level == "flag"
    assert [b.name for b in badges if b.level == "flag"] == ["field of view"]
