"""The window's study database: signing in (wrong passphrase stays in the dialog), and the batch jobs
view showing the jobs ``medscan batch`` keeps in the database, with their errors and a working cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QSettings

from medscan.batch.jobs import create_job, job_status
from medscan.batch.spec import parse_spec
from medscan.db.store import Database

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
KEY, USER, USER_KEY = "gui db key", "rad", "rad pass"


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "medscan-gui.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "studies.db"
    with Database.create(path, KEY, scrypt_n=2**12) as database:
        database.add_user(USER, "radiologist", USER_KEY)
    return path


def test_login_refuses_a_wrong_passphrase_in_place_then_signs_in(qtbot, settings, db_path) -> None:
    from ui.qt_database import LoginDialog

    dialog = LoginDialog(settings)
    qtbot.addWidget(dialog)
    dialog.target.setText(str(db_path))
    dialog.user.setText(USER)
    dialog.passphrase.setText("not the key")
    dialog.user_passphrase.setText(USER_KEY)
    assert not dialog.try_sign_in()
    assert "wrong passphrase" in dialog.error.text() and "\n" not in dialog.error.text()
    assert dialog.session is None and dialog.result() == 0  # still open, nothing accepted
    dialog.passphrase.setText(KEY)
    dialog.user_passphrase.setText("not mine")
    assert not dialog.try_sign_in()
    assert "unknown user or wrong passphrase" in dialog.error.text()
    dialog.user_passphrase.setText(USER_KEY)
    assert dialog.try_sign_in()
    session = dialog.session
    assert session.database.user.name == USER and session.passphrase == KEY and "radiologist" in session.label
    session.close()
    assert settings.value("database/target") == str(db_path) and settings.value("database/user") == USER
    stored = {key: settings.value(key) for key in settings.allKeys()}
    assert KEY not in stored.values() and USER_KEY not in stored.values()  # never a passphrase


def test_batch_jobs_view_shows_progress_errors_and_cancels(qtbot, db_path, tmp_path) -> None:
    from ui.qt_batch_jobs import BatchJobsDialog

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 64)
    database = Database.open(db_path, KEY)
    database.login(USER, USER_KEY)
    spec = parse_spec({"operation": "highlight", "inputs": [{"folder": str(SAMPLES / "mr_brain_t1_sag_siemens")},
                                                            {"folder": str(garbage)}],
                       "output": {"folder": str(tmp_path / "out"), "format": "nifti"}})
    job = create_job(database, spec, "gui test")
    dialog = BatchJobsDialog(database)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 1
    assert dialog.table.item(0, 0).text() == str(job) and dialog.table.item(0, 2).text() == "queued"
    bar = dialog.table.cellWidget(0, 3)
    assert bar.maximum() == 2 and bar.value() == 1  # the unreadable file is a finished (failed) task
    assert dialog.table.item(0, 4).text() == "1"
    dialog.table.selectRow(0)
    assert "broken.dcm" in dialog.errors.toPlainText()
    assert dialog.cancel_button.isEnabled()
    dialog.cancel_selected()  # no batch process is running it: cancelled at once
    assert job_status(database, job).state == "cancelled"
    assert dialog.table.item(0, 2).text() == "cancelled" and not dialog.cancel_button.isEnabled()
    dialog.timer.stop()
    database.close()


def test_kept_series_result_goes_to_the_database_when_signed_in(qtbot, tmp_path, db_path) -> None:
    from medscan.db.models import Result
    from ui.qt_database import open_session
    from ui.qt_main_window import MainWindow

    settings = QSettings(str(tmp_path / "window.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, persist=False)
    qtbot.addWidget(window)
    assert not window.database.actionBatchJobs.isEnabled() and "No study database" in window.database.status.text()
    window.database.set_session(open_session(str(db_path), "", USER, KEY, USER_KEY))
    assert window.database.actionBatchJobs.isEnabled() and USER in window.database.status.text()
    with qtbot.waitSignal(window.scanShown, timeout=60_000):
        window.open_path(SAMPLES / "mr_brain_t1_sag_siemens")
    with qtbot.waitSignal(window.workflow.resultShown, timeout=120_000):
        window.workflow.run_series("highlight")
    entry = window.workflow.shown
    with qtbot.waitSignal(window.database.kept, timeout=60_000) as kept:
        window.workflow.keep(entry)
    database = window.database.session.database
    result, voxels = database.load_result(kept.args[0])
    assert result.operation == "highlight" and voxels.shape == entry.after.voxels.shape
    assert result.provenance[-1]["operation"] == "highlight"
    with database.transaction() as session:
        assert session.query(Result).count() == 1
    window.close()
