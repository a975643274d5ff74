"""The batch jobs of the study database, as ``medscan batch status`` sees them: progress, errors, cancel.

Jobs run in ``medscan batch`` processes on this or other machines; the window only reads their state
from the database every few seconds and can ask a job to stop.
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medscan.scan import MedscanError

COLUMNS = ("Job", "Operation", "State", "Progress", "Failed", "Created (UTC)")
REFRESH_MS = 2000


class BatchJobsDialog(QDialog):
    def __init__(self, database: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch jobs")
        self.database = database
        self.statuses: list[Any] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._show_errors)
        self.errors = QPlainTextEdit()
        self.errors.setReadOnly(True)
        self.errors.setPlaceholderText("Errors of the selected job's failed tasks")
        self.errors.setMaximumHeight(120)
        self.cancel_button = QPushButton("Cancel job")
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.message = QLabel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.cancel_button)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.errors)
        layout.addLayout(buttons)
        self.resize(760, 420)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(REFRESH_MS)
        self.refresh()

    def refresh(self) -> None:
        from medscan.batch.jobs import list_jobs

        selected = self.selected_job()
        try:
            self.statuses = list_jobs(self.database)
        except MedscanError as exc:
            self.message.setText(str(exc))
            return
        self.table.setRowCount(len(self.statuses))
        for row, status in enumerate(self.statuses):
            created = status.created_at.strftime("%Y-%m-%d %H:%M") if status.created_at else ""
            values = (str(status.job_id), status.operation, status.state, "",
                      str(status.counts.get("failed", 0)), created)
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column in (0, 4):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
            bar = QProgressBar()
            bar.setRange(0, max(1, status.total))
            bar.setValue(status.finished)
            bar.setFormat(f"{status.counts.get('done', 0)} done / {status.total}")
            self.table.setCellWidget(row, 3, bar)
            if status.job_id == selected:
                self.table.selectRow(row)
        self._update_buttons()

    def selected_job(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.statuses):
            return None
        return self.statuses[rows[0].row()].job_id

    def _status(self, job_id: int | None) -> Any:
        return next((s for s in self.statuses if s.job_id == job_id), None)

    def _update_buttons(self) -> None:
        status = self._status(self.selected_job())
        self.cancel_button.setEnabled(status is not None and status.state in ("queued", "running"))

    def _show_errors(self) -> None:
        status = self._status(self.selected_job())
        self.errors.setPlainText("\n".join(error for _, error in status.failures) if status else "")
        self._update_buttons()

    def cancel_selected(self) -> None:
        from medscan.batch.jobs import request_cancel

        job_id = self.selected_job()
        if job_id is None:
            return
        try:
            state = request_cancel(self.database, job_id)
        except MedscanError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText(f"job {job_id}: {state}")
        self.refresh()
