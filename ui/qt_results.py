"""Results of Clean and Generate operations: the worker job, the one-slice preview input, and the list.

A result remembers what it was computed from (the series, or one slice of it in the plane on screen),
so choosing it later can show before and after exactly. Generated results are SYNTHETIC in their
list entry, the viewer overlay, the window title and the export file names - the Scan's own flag
says so; ``registry.run`` marks every result of an operation declared synthetic.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QGridLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from medscan.ops import Operation, Result
    from medscan.scan import Scan
    from medscan.view import Reformat
    from ui.qt_workers import JobContext

SYNTHETIC_COLOR = "#ff8a3d"
FLAGGED_COLOR = "#e05050"
PASSED_COLOR = "#5cc878"
_numbers = itertools.count(1)


def preview_scan(scan: Scan, stack: Reformat, slice_index: int, volume: int) -> Scan:
    """The slice on screen as a one-slice Scan with its true position (any plane, one volume of a 4-D series)."""
    from medscan.scan import ProvenanceEntry

    voxels = stack.voxels[volume] if stack.voxels.ndim == 4 else stack.voxels
    plane = voxels[slice_index:slice_index + 1].copy()
    affine = stack.affine.copy()
    affine[:3, 3] = affine[:3, 3] + affine[:3, 2] * slice_index
    entry = ProvenanceEntry("preview_slice", {"plane": stack.plane, "slice": slice_index, "volume": volume})
    return dataclasses.replace(scan.derive(plane, entry, affine=affine), volume_labels=[])


def leave_a_core_for_the_window() -> None:
    """Once torch is loaded (by the operation itself), let it use all cores but one: the event loop
    keeps a core, so the window answers while a model runs. Never imports torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        wanted = max(1, (os.cpu_count() or 2) - 1)
        if torch.get_num_threads() > wanted:
            torch.set_num_threads(wanted)


def operation_job(ctx: JobContext, name: str, scan: Scan, device: str, params: dict[str, Any]) -> Result:
    """Run one registered operation in a worker; cancelling raises inside the engine's progress callback."""
    import medscan.ops as ops

    ops.get(name)  # an unknown name fails here, before the "starting" report
    ctx.report(0, 0, "starting (the first run loads the model)")
    leave_a_core_for_the_window()

    def progress(done: int, total: int) -> None:
        leave_a_core_for_the_window()
        ctx.report(done, total, "planes")
        ctx.check()

    result = ops.run(name, scan, device=device, progress=progress, **params)  # refuses, and marks SYNTHETIC
    ctx.check()
    return result


@dataclass(eq=False)
class ResultEntry:
    """One result in the list with what is needed to compare, keep and export it."""

    operation: Operation
    result: Result
    before: Scan  # exactly what the operation received (the series, or the one-slice preview input)
    source: Scan  # the series shown when it was started
    source_summary: Any  # its SeriesSummary (for re-showing it), or None
    params: dict[str, Any]
    device: str
    origin: tuple[str, int, int] | None = None  # (plane, slice, volume) of a preview; None for a series
    kept: bool = False
    number: int = field(default_factory=lambda: next(_numbers))

    @property
    def after(self) -> Scan:
        return self.result.scan

    @property
    def synthetic(self) -> bool:
        return bool(self.result.scan.synthetic)  # registry.run marks every Generate result

    @property
    def flagged(self) -> bool:
        return bool(getattr(self.result.fidelity, "flagged", False))

    @property
    def scope(self) -> str:
        if self.origin is None:
            return "series"
        plane, index, _volume = self.origin
        return f"{plane} slice {index + 1}"

    def label(self) -> str:
        """List and title text, e.g. '#3 Denoise · series · strength 0.5' (parameters that differ from the defaults)."""
        bits = ["SYNTHETIC" if self.synthetic else "", f"#{self.number} {self.operation.title}", self.scope]
        defaults = self.operation.defaults()
        bits += [f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                 for name, value in self.params.items() if value != defaults.get(name)]
        if self.flagged:
            bits.append("flagged")
        return ("✓ " if self.kept else "") + " · ".join(bit for bit in bits if bit)

    def export_stem(self) -> str:
        """File name without extension: modality, series, operation, scope, and SYNTHETIC when generated."""
        scan = self.source
        scope = "series" if self.origin is None else f"{self.origin[0]}{self.origin[1] + 1}"
        number = [str(scan.series_number)] if scan.series_number is not None else []
        parts = [scan.modality, *number, self.operation.name, scope]
        if self.synthetic:
            parts.append("SYNTHETIC")
        return "_".join(parts)

    def details_html(self) -> str:
        """The fidelity report, notes and provenance, for the panel under the list."""
        lines = []
        if self.synthetic:
            lines.append(f"<p style='color:{SYNTHETIC_COLOR}'><b>SYNTHETIC</b> - generated, not acquired. "
                         "Do not measure on it or report from it.</p>")
        report = self.result.fidelity
        if report is not None:
            units = self.after.units
            numbers = (f"noise σ {report.noise_sd:.3g} → {report.noise_sd_after:.3g} {units} (estimated), "
                       f"coherent structure {report.structure_fraction * 100:.2f}% of the image, "
                       f"method noise σ {report.method_noise_std:.3g} {units}".strip())
            if report.flagged:
                reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in report.reasons)
                lines.append(f"<p style='color:{FLAGGED_COLOR}'><b>Flagged by the fidelity guard</b></p>"
                             f"<ul style='margin-top:0'>{reasons}</ul><p>{html.escape(numbers)}</p>")
            else:
                lines.append(f"<p style='color:{PASSED_COLOR}'><b>Passed the fidelity guard</b></p>"
                             f"<p>{html.escape(numbers)}</p>")
        elif not self.synthetic:
            lines.append("<p>No fidelity report for this operation.</p>")
        notes = [note for note in self.result.notes if not note.startswith("fidelity:")]
        lines += [f"<p>{html.escape(note)}</p>" for note in notes]
        if self.after.provenance:
            lines.append(f"<p style='color:#8b9099'>{html.escape(self.after.provenance[-1].describe())}"
                         f" · device {html.escape(self.device)}</p>")
        return "".join(lines)


class ResultsPanel(QWidget):
    """The results list with its report and the keep / discard / export buttons for the chosen one."""

    chosen = pyqtSignal(object)  # ResultEntry, or None when the selection is cleared
    keepRequested = pyqtSignal(object)
    discardRequested = pyqtSignal(object)
    exportRequested = pyqtSignal(object, str)  # entry, 'nifti' | 'dicom'

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setObjectName("resultsList")
        self.list.setMinimumHeight(70)
        self.list.setToolTip("Choose a result to compare it with its input")
        self.details = QTextBrowser()
        self.details.setObjectName("resultDetails")
        self.details.setMinimumHeight(80)
        self.details.setPlaceholderText("Choose a result to compare it.")
        self.keep_button = QPushButton("Keep")
        self.keep_button.setToolTip("Keep this result and continue working on it (a series result becomes the "
                                    "series shown)")
        self.discard_button = QPushButton("Discard")
        self.nifti_button = QPushButton("Export NIfTI…")
        self.nifti_button.setToolTip("Export this result as a NIfTI volume")
        self.dicom_button = QPushButton("Export DICOM…")
        self.dicom_button.setToolTip("Export this result as a derived DICOM series")
        buttons = QGridLayout()
        buttons.setSpacing(4)
        for index, button in enumerate((self.keep_button, self.discard_button, self.nifti_button, self.dicom_button)):
            buttons.addWidget(button, index // 2, index % 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.list, 2)
        layout.addLayout(buttons)
        layout.addWidget(self.details, 3)
        self.list.currentItemChanged.connect(self._on_current)
        self.keep_button.clicked.connect(lambda: self._request(self.keepRequested))
        self.discard_button.clicked.connect(lambda: self._request(self.discardRequested))
        self.nifti_button.clicked.connect(lambda: self._export("nifti"))
        self.dicom_button.clicked.connect(lambda: self._export("dicom"))
        self._update_buttons(None)

    def entries(self) -> list[ResultEntry]:
        return [self.list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.list.count())]

    def current(self) -> ResultEntry | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def add(self, entry: ResultEntry) -> None:
        """Append ``entry`` and choose it (which shows before/after)."""
        item = QListWidgetItem()
        item.setData(Qt.ItemDataRole.UserRole, entry)
        self.list.addItem(item)
        self.refresh(entry)
        self.list.setCurrentItem(item)

    def refresh(self, entry: ResultEntry) -> None:
        item = self._item(entry)
        if item is None:
            return
        item.setText(entry.label())
        item.setToolTip(entry.label())
        if entry.synthetic:
            item.setForeground(QColor(SYNTHETIC_COLOR))
        elif entry.flagged:
            item.setForeground(QColor(FLAGGED_COLOR))
        if entry is self.current():
            self._on_current(item)

    def remove(self, entry: ResultEntry) -> None:
        item = self._item(entry)
        if item is not None:
            self.list.takeItem(self.list.row(item))

    def _item(self, entry: ResultEntry) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) is entry:
                return self.list.item(row)
        return None

    def _on_current(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None = None) -> None:
        entry = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        self.details.setHtml(entry.details_html() if entry is not None else "")
        self._update_buttons(entry)
        self.chosen.emit(entry)

    def _update_buttons(self, entry: ResultEntry | None) -> None:
        for button in (self.discard_button, self.nifti_button, self.dicom_button):
            button.setEnabled(entry is not None)
        self.keep_button.setEnabled(entry is not None and entry.origin is None and not entry.kept)
        if entry is not None and entry.origin is not None:
            self.keep_button.setToolTip("A preview covers one slice: use Run on series to get a result to keep")

    def _request(self, signal) -> None:
        entry = self.current()
        if entry is not None:
            signal.emit(entry)

    def _export(self, fmt: str) -> None:
        entry = self.current()
        if entry is not None:
            self.exportRequested.emit(entry, fmt)
