"""Signing in to the study database from the window: a login dialog, and the open session it yields.

The engine does the work (``medscan.db.store.Database``); this module only asks for the database, the
account and the two passphrases, shows the one-line error when something is wrong, and remembers
which database was used last (never a passphrase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QSettings
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
