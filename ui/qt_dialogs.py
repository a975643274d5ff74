"""Small dialogs: About (versions and device), mouse/keyboard help, the DICOM header of a series."""

from __future__ import annotations

import html
from typing import Any

from PyQt6.QtCore import PYQT_VERSION_STR, QT_VERSION_STR, Qt
from PyQt6.QtGui import QFont, QFontDatabase
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from ui.system_info import DeviceGuess, software_versions

CONTROLS = [
    ("Wheel, Up / Down", "previous / next slice"),
    ("PageUp / PageDown, Home / End", "10 slices, first / last slice"),
    ("Left / Right", "previous / next volume (4-D series)"),
    ("Right-drag", "window: horizontal = width, vertical = level"),
    ("1 … 9", "window presets (View > Window presets)"),
    ("Ctrl+wheel, + / -", "zoom about the cursor"),
    ("Left- or middle-drag", "pan"),
    ("F, double-click", "fit to window"),
    ("A / C / S", "axial / coronal / sagittal"),
    ("Ctrl+O, Ctrl+Shift+O", "open a DICOM folder / a file"),
    ("Ctrl+E, Ctrl+Shift+E", "export NIfTI / PNG of the slice"),
    ("Ctrl+I", "DICOM header of the series"),
    ("Ctrl+P, Ctrl+R", "preview the chosen operation on the slice / run it on the series"),
    ("Ctrl+Shift+W", "close the before/after comparison"),
    ("Drag the swipe divider", "move the before/after boundary (Swipe mode)"),
    ("Space", "flip before/after by hand (Flicker mode)"),
    ("Esc", "cancel running jobs"),
]


def versions_html(device: DeviceGuess) -> str:
    versions = software_versions()
    versions["Qt"] = QT_VERSION_STR
    versions["PyQt6"] = PYQT_VERSION_STR
    rows = "".join(f"<tr><td style='padding-right:12px;color:#8b9099'>{html.escape(k)}</td>"
                   f"<td>{html.escape(v)}</td></tr>" for k, v in versions.items())
    device_text = html.escape(device.label) + ("" if device.confirmed else " (not yet confirmed)")
    return (
        "<h3 style='margin-bottom:2px'>medscan</h3>"
        "<p>Medical imaging workstation: clean and generate scans, with DICOM and NIfTI I/O that agrees "
        "with dcm2niix.<br>Not a medical device; generated images are marked synthetic.</p>"
        f"<table>{rows}<tr><td style='padding-right:12px;color:#8b9099'>Device</td><td>{device_text}"
        f"<br><span style='color:#8b9099'>{html.escape(device.detail)}</span></td></tr></table>"
        f"{model_cards_html()}"
    )


def model_cards_html() -> str:
    """The shipped models from their cards (name, version, task, first sentence, weights hash); JSON only."""
    from medscan.nets.weights import list_cards

    try:
        cards = list_cards()
    except Exception as exc:  # an unreadable card must not take the About box down with it
        from ui.qt_workers import describe_error

        return f"<h4>Models</h4><p style='color:#e05050'>{html.escape(describe_error(exc))}</p>"
    if not cards:
        return "<h4>Models</h4><p>No models installed.</p>"
    rows = []
    for card in cards:
        data = card.data
        summary = str(data.get("description", "")).split(". ")[0].rstrip(".")
        digest = str(data.get("sha256", ""))[:12]
        rows.append(f"<tr><td style='padding-right:12px'><b>{html.escape(card.name)}</b></td>"
                    f"<td>v{html.escape(card.version)} · {html.escape(str(data.get('task', '')))}"
                    f"<br><span style='color:#8b9099'>{html.escape(summary)}"
                    f"{' · sha256 ' + html.escape(digest) + '…' if digest else ''}</span></td></tr>")
    return f"<h4 style='margin-bottom:2px'>Models</h4><table>{''.join(rows)}</table>"


def show_about(parent: QWidget, device: DeviceGuess) -> None:
    QMessageBox.about(parent, "About medscan", versions_html(device))


def controls_html() -> str:
    rows = "".join(f"<tr><td nowrap style='padding-right:16px'><b>{html.escape(k)}</b></td>"
                   f"<td nowrap>{html.escape(v)}</td></tr>" for k, v in CONTROLS)
    return f"<table cellspacing=3>{rows}</table>"


def show_controls(parent: QWidget) -> None:
    box = QMessageBox(parent)
    box.setWindowTitle("Mouse and keyboard")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(controls_html())
    box.exec()


class HeaderDialog(QDialog):
    """The series' DICOM header (no pixel data) as text, with a filter box."""

    def __init__(self, title: str, header: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"DICOM header: {title}")
        self.resize(820, 640)
        self._lines = str(header).splitlines()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter (keyword, tag or value)")
        self.filter.setClearButtonEnabled(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.text.setFont(font)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.filter.textChanged.connect(self._apply_filter)
        self._apply_filter("")

    def _apply_filter(self, needle: str) -> None:
        needle = needle.strip().lower()
        lines = [line for line in self._lines if needle in line.lower()] if needle else self._lines
        self.text.setPlainText("\n".join(lines))
