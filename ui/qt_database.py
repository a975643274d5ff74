"""Signing in to the study database from the window: a login dialog, and the open session it yields.

The engine does the work (``medscan.db.store.Database``); this module only asks for the database, the
account and the two passphrases, shows the one-line error when something is wrong, and remembers
which database was used last (never a passphrase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QObject, QSettings, pyqtSignal
from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medscan.scan import MedscanError


@dataclass
class DatabaseSession:
    """An open, signed-in database and the passphrase batch workers need to open it themselves."""

    database: Any
    passphrase: str

    @property
    def label(self) -> str:
        user = self.database.user
        return f"{self.database.label} ({user.name}, {user.role})" if user else self.database.label

    def close(self) -> None:
        self.database.close()


def open_session(target: str, blobs: str, user: str, passphrase: str, user_passphrase: str) -> DatabaseSession:
    """Open and sign in; raises MedscanError with one line a person can act on."""
    from medscan.db.store import Database

    if not target.strip():
        raise MedscanError("database", "choose a database file or enter a postgresql:// URL")
    database = Database.open(target.strip(), passphrase, blob_dir=blobs.strip() or None)
    try:
        database.login(user.strip(), user_passphrase)
    except MedscanError:
        database.close()
        raise
    return DatabaseSession(database, passphrase)


class LoginDialog(QDialog):
    """Database, account and passphrases; on success ``session`` holds the open database."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign in to the study database")
        self.settings = settings
        self.session: DatabaseSession | None = None
        self.target = QLineEdit(str(settings.value("database/target", "") or ""))
        self.target.setPlaceholderText("studies.db, or postgresql+psycopg://host/db")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(browse)
        self.blobs = QLineEdit(str(settings.value("database/blobs", "") or ""))
        self.blobs.setPlaceholderText("default: beside the database file (required for PostgreSQL)")
        self.user = QLineEdit(str(settings.value("database/user", "") or ""))
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.user_passphrase = QLineEdit()
        self.user_passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        form = QFormLayout()
        form.addRow("Database", row)
        form.addRow("Blob folder", self.blobs)
        form.addRow("User", self.user)
        form.addRow("Database passphrase", self.passphrase)
        form.addRow("Your passphrase", self.user_passphrase)
        self.error = QLabel()
        self.error.setObjectName("loginError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #ff8a80")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sign_in = buttons.addButton("Sign in", QDialogButtonBox.ButtonRole.AcceptRole)
        self.sign_in.setDefault(True)
        buttons.accepted.connect(self.try_sign_in)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())
        (self.user_passphrase if self.user.text() else self.user).setFocus()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Study database", self.target.text(),
                                              "medscan database (*.db);;All files (*)")
        if path:
            self.target.setText(path)

    def try_sign_in(self) -> bool:
        """Open the database; a wrong passphrase or account stays in the dialog as one red line."""
        try:
            self.session = open_session(self.target.text(), self.blobs.text(), self.user.text(),
                                        self.passphrase.text(), self.user_passphrase.text())
        except MedscanError as exc:
            self.error.setText(str(exc))
            self.user_passphrase.clear()
            return False
        self.settings.setValue("database/target", self.target.text().strip())
        self.settings.setValue("database/blobs", self.blobs.text().strip())
        self.settings.setValue("database/user", self.user.text().strip())
        self.accept()
        return True


def keep_job(_ctx: Any, database: Any, record: Any, path: str, result: Any, operation: str,
             parameters: dict[str, Any]) -> int:
    """Worker job: register the source series (DICOM record or NIfTI file), then keep the result."""
    from medscan.db.results import keep_result, register_source

    series_id = register_source(database, record, path, result.scan.modality)
    return keep_result(database, series_id, result, operation=operation, parameters=parameters)


class DatabaseController(QObject):
    """The window's side of the study database: sign in and out, keep results, see batch jobs."""

    sessionChanged = pyqtSignal(object)  # DatabaseSession or None
    kept = pyqtSignal(int)  # result id

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.session: DatabaseSession | None = None
        self.jobs_dialog: QDialog | None = None
        self.actionSignIn = QAction("Sign &in to study database…", window)
        self.actionSignIn.triggered.connect(self.sign_in)
        self.actionSignOut = QAction("Sign &out of study database", window)
        self.actionSignOut.triggered.connect(self.sign_out)
        self.actionBatchJobs = QAction("&Batch jobs…", window)
        self.actionBatchJobs.triggered.connect(self.show_batch_jobs)
        file_menu = window.menuFile
        file_menu.insertActions(window.actionQuit, [self.actionSignIn, self.actionSignOut])
        file_menu.insertSeparator(window.actionQuit)
        window.menuTools.addAction(self.actionBatchJobs)
        self.status = QLabel()
        window.statusbar.addPermanentWidget(self.status)
        self._update()

    def sign_in(self) -> bool:
        dialog = LoginDialog(self.window.settings, self.window)
        if not dialog.exec() or dialog.session is None:
            return False
        self.set_session(dialog.session)
        return True

    def set_session(self, session: DatabaseSession | None) -> None:
        if self.session is not None and self.session is not session:
            self.session.close()
        self.session = session
        self._update()
        self.sessionChanged.emit(session)

    def sign_out(self) -> None:
        if self.jobs_dialog is not None:
            self.jobs_dialog.close()
        self.set_session(None)

    def _update(self) -> None:
        signed_in = self.session is not None
        self.actionSignOut.setEnabled(signed_in)
        self.actionBatchJobs.setEnabled(signed_in)
        self.status.setText(f"DB: {self.session.label}" if signed_in else "No study database")

    def show_batch_jobs(self) -> None:
        from ui.qt_batch_jobs import BatchJobsDialog

        if self.session is None:
            return
        self.jobs_dialog = BatchJobsDialog(self.session.database, self.window)
        self.jobs_dialog.show()

    def keep(self, entry: Any) -> Any:
        """Keep a series result in the database too (when signed in): role checked, work in a job."""
        from medscan.db.results import PROCESS_ROLES

        if self.session is None or entry.origin is not None:
            return None
        summary = entry.source_summary
        path = summary.path if summary is not None else (entry.source.source_path or "")
        try:
            self.session.database.require_role("process", path, PROCESS_ROLES)
        except MedscanError as exc:
            self.window.report_error("Not kept in the database", str(exc))
            return None
        parameters = {**entry.params, "device": entry.device}
        job = self.window.jobs.run(f"Keeping {entry.operation.name} in the database", keep_job,
                                   self.session.database, getattr(summary, "record", None), path, entry.result,
                                   entry.operation.name, parameters, kind="export")
        job.succeeded.connect(self._on_kept)
        job.failed.connect(lambda message: self.window.report_error("Not kept in the database", message))
        return job

    def _on_kept(self, result_id: int) -> None:
        self.window.statusbar.showMessage(f"Kept as result {result_id} in {self.session.database.label}", 8000)
        self.kept.emit(result_id)

    def close(self) -> None:
        if self.jobs_dialog is not None:
            self.jobs_dialog.close()
        if self.session is not None:
            self.session.close()
            self.session = None
