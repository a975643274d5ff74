"""File › Query/Retrieve… and Send to PACS…, offscreen, against the real Orthanc of tests/conftest.py."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
from pathlib import Path

import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings
from PyQt6.QtWidgets import QMessageBox

from medscan.net import scu
from medscan.net.nodes import parse_node

ROOT = Path(__file__).resolve().parent.parent
MR = ROOT / "samples" / "mr_brain_t1_sag_siemens"
TIMEOUT_MS = 60_000


@pytest.fixture
def errors(monkeypatch):
    shown: list[tuple[str, str]] = []

    def critical(parent, title, text, *args, **kwargs):
        shown.append((title, text))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(critical))
    return shown


@pytest.fixture
def window(open_main_window, tmp_path, errors, orthanc, monkeypatch):
    monkeypatch.setenv("MEDSCAN_NODES", str(tmp_path / "no-nodes.toml"))
    settings = QSettings(str(tmp_path / "medscan-gui.ini"), QSettings.Format.IniFormat)
    settings.setValue("pacs/nodes", json.dumps([{"name": "orthanc", "ae": "ORTHANC", "host": "127.0.0.1",
                                                 "port": orthanc.dicom_port}]))
    settings.setValue("pacs/retrieve_dir", str(tmp_path / "retrieved"))
    return open_main_window(settings)


def test_query_retrieve_dialog_with_orthanc(qtbot, window, orthanc, errors, tmp_path):
    if not MR.is_dir():
        pytest.skip("samples/ missing")
    assert scu.send(parse_node(orthanc.node), [MR]).sent > 0
    window.actionQueryRetrieve.trigger()
    dialog = window.query_retrieve_dialog
    qtbot.waitExposed(dialog)
    assert dialog.nodeCombo.currentText() == "orthanc"
    dialog.modality.setCurrentText("MR")
    with qtbot.waitSignal(dialog.searched, timeout=TIMEOUT_MS) as blocker:
        dialog.searchButton.click()
    studies = blocker.args[0]
    assert len(studies) == 1 and studies[0].modalities == ["MR"]
    assert dialog.table.rowCount() == 1
    mr_files = sum(1 for p in MR.rglob("*") if p.is_file())
    assert dialog.table.item(0, 5).text() == str(mr_files)
    with qtbot.waitSignal(window.folderListed, timeout=TIMEOUT_MS) as listed:
        dialog.retrieveButton.click()
    folder = listed.args[0]
    assert Path(folder.path) == tmp_path / "retrieved" / studies[0].study_uid
    assert sum(len(s.record.files) for s in folder.series) == mr_files
    assert dialog.progress.value() == mr_files and "Retrieved" in dialog.status.text()
    shot = os.environ.get("MEDSCAN_SCREENSHOT_DIR")  # docs/screenshots/pacs_query_retrieve.png comes from here
    assert dialog.grab().save(str(Path(shot) / "pacs_query_retrieve.png") if shot else str(tmp_path / "qr.png"))
    qtbot.waitUntil(lambda: window.scan is not None, timeout=TIMEOUT_MS)

    # Send the shown series back, de-identified, to the same node: Orthanc then holds a second MR study.
    from ui.qt_pacs import SendDialog, send_current

    send = SendDialog(window, "series")
    send.deidentify.setChecked(True)
    send.show()
    job = send_current(window, send)
    outcome: list = []
    job.succeeded.connect(outcome.append)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS):
        pass
    assert not errors, errors
    assert outcome[0].sent == mr_files
    assert len(orthanc.rest("/studies")) == 2  # de-identified copies carry new UIDs: a second study

    # A kept result shown in the window goes as a derived DICOM series (new series and instance UIDs).
    from medscan.scan import ProvenanceEntry

    orthanc.clear()
    window.scan = window.scan.derive(window.scan.voxels[...] * 0.5, ProvenanceEntry("test-halve", {}))
    window.showing_result = True
    send = SendDialog(window, "result")
    send.show()
    job = send_current(window, send)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS):
        pass
    assert not errors, errors
    tags = [orthanc.rest(f"/instances/{i}/tags?simplify") for i in orthanc.rest("/instances")]
    assert len(tags) == mr_files and all(t["ImageType"].startswith("DERIVED\\SECONDARY") for t in tags)
    assert "test-halve" in tags[0]["DerivationDescription"]


def test_query_error_is_one_line_in_the_dialog(qtbot, window, errors):
    import socket

    from ui.qt_pacs import save_gui_nodes

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    save_gui_nodes(window.settings, {"gone": parse_node(f"GONE@127.0.0.1:{port}")})
    window.actionQueryRetrieve.trigger()
    dialog = window.query_retrieve_dialog
    dialog.nodeCombo.setCurrentText(f"GONE@127.0.0.1:{port}")
    qtbot.waitUntil(lambda: dialog.searchButton.isEnabled(), timeout=TIMEOUT_MS)
    dialog.searchButton.click()
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT_MS)
    assert errors == [("PACS", f"GONE@127.0.0.1:{port}: connection refused on port {port} (nothing listening)")]
    assert dialog.status.text() == errors[0][1]


def test_nodes_dialog_stores_nodes_in_the_settings(qtbot, window):
    from ui.qt_pacs import NodesDialog, load_gui_nodes

    dialog = NodesDialog(window)
    qtbot.addWidget(dialog)
    dialog.add_row("research", "RESEARCH", "10.0.0.9", 2762)
    dialog.ourAe.setText("WORKSTATION1")
    dialog.movePort.setValue(11113)
    dialog.accept()
    nodes = load_gui_nodes(window.settings)
    assert nodes["research"].address == "RESEARCH@10.0.0.9:2762" and "orthanc" in nodes
    assert window.settings.value("pacs/ae") == "WORKSTATION1"
    assert int(window.settings.value("pacs/move_port")) == 11113
    bad = NodesDialog(window)
    qtbot.addWidget(bad)
    bad.add_row("broken", "X", "host", 0)
    bad.accept()
    assert "port must be a number" in bad.status.text() and bad.result() == 0
