"""The study browser: the series of the opened folder, grouped by patient and study.

The listing itself (headers only, no pixel decoding) runs in a worker via :func:`summarize_folder`;
the tree shows patient, study date, series key and description, modality, image count and the
loader's warnings (an icon, the tooltip and the details pane). Clicking a series (or Enter) emits
``seriesActivated``; the window then loads it in the background.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QTreeWidget, QTreeWidgetItem, QWidget

from ui.qt_slice_viewer import format_dicom_date

if TYPE_CHECKING:
    from medscan.scan import Scan
    from ui.qt_workers import JobContext

ROLE = Qt.ItemDataRole.UserRole


@dataclass
class SeriesSummary:
    """What the browser shows about one series; ``record`` is the engine's SeriesRecord
    (None for a NIfTI file, which is loaded from ``path``)."""

    key: str
    modality: str
    description: str
    images: int
    path: str
    record: Any = None
    shape: tuple[int, ...] | None = None  # NIfTI order (x, y, z[, t])
    spacing: tuple[float, float, float] | None = None
    warnings: list[str] = field(default_factory=list)
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    study_description: str = ""
    study_uid: str = ""
    series_uid: str = ""
    quality: list[Any] | None = None  # medscan.screen Badges once the series has been screened
    quality_note: str = ""  # whether the badges were kept in the study database

    @property
    def title(self) -> str:
        return f"{self.key}  {self.description}".strip()

    @property
    def study_key(self) -> tuple[str, str, str]:
        return (self.patient_id or self.patient_name, self.study_uid or self.study_date, self.study_date)


@dataclass
class FolderSummary:
    path: str
    series: list[SeriesSummary]
    skipped: list[str]
    ignored: int


def _text(header: Any, keyword: str) -> str:
    if header is None:
        return ""
    return str(header.get(keyword, "") or "").strip()


def summarize_folder(ctx: JobContext, path: str) -> FolderSummary:
    """Worker job: list the series under ``path`` from their headers (no pixel decoding)."""
    from medscan.io.dicom import list_series, series_shape
    from medscan.scan import MedscanError

    ctx.report(0, 0, "reading headers")
    listing = list_series(path)
    ctx.check()
    summaries = []
    for number, record in enumerate(listing.series, start=1):
        ctx.report(number, len(listing.series), "checking geometry")
        ctx.check()
        header = record.header
        try:
            shape, spacing, warnings = series_shape(record)
        except MedscanError as exc:  # listed but not loadable: say why, let the user see it
            shape, spacing, warnings = None, None, [*record.warnings, f"cannot be loaded: {exc.problem}"]
        summaries.append(SeriesSummary(
            key=record.key, modality=record.modality, description=record.description, images=len(record.frames),
            path=str(path), record=record, shape=shape, spacing=spacing, warnings=list(warnings),
            patient_name=_text(header, "PatientName").replace("^", " ").strip(), patient_id=_text(header, "PatientID"),
            study_date=_text(header, "StudyDate"), study_description=_text(header, "StudyDescription"),
            study_uid=_text(header, "StudyInstanceUID"), series_uid=record.series_uid,
        ))
    return FolderSummary(path=str(path), series=summaries, skipped=list(listing.skipped), ignored=listing.ignored)


def summary_from_scan(scan: Scan, path: str) -> SeriesSummary:
    """A browser entry for a file loaded directly (NIfTI)."""
    header = scan.header
    return SeriesSummary(
        key=Path(path).name, modality=scan.modality, description=scan.description or "NIfTI volume",
        images=scan.volume_shape[0] * scan.n_volumes, path=path, shape=scan.nifti_shape, spacing=scan.spacing,
        warnings=list(scan.warnings), patient_name=_text(header, "PatientName").replace("^", " ").strip(),
        patient_id=_text(header, "PatientID"), study_date=_text(header, "StudyDate"),
        series_uid=scan.series_uid,
    )


def screen_job(ctx: JobContext, scan: Scan, record: Any = None, database: Any = None,
               path: str = "") -> tuple[list[Any], str]:
    """Worker job: the quality triage badges of a loaded series (exact slice positions from the record), kept in
    the study database when one is signed in; returns (badges, a note on storing them)."""
    from medscan.scan import MedscanError
    from medscan.screen.quality import VERSION, screen_scan, slice_steps_from_record

    ctx.report(0, 0, "screening quality")
    steps = slice_steps_from_record(record) if record is not None else None
    badges = screen_scan(scan, steps=steps, split_note=getattr(record, "split_note", "") or "")
    if database is None:
        return badges, ""
    from medscan.db.results import register_source

    try:
        series_id = register_source(database, record, path or scan.source_path, scan.modality)
        database.store_quality(series_id, badges, rules_version=VERSION)
    except MedscanError as exc:
        return badges, f"not kept in the study database: {exc}"
    return badges, f"kept in the study database (series {series_id})"


QUALITY_COLOURS = {"ok": "#4caf50", "warn": "#e0a030", "flag": "#e05050"}


def quality_text(badges: list[Any] | None) -> tuple[str, str]:
    """Short column text and its level: 'OK', 'WARN' or 'FLAG' (the badges' names are in the tooltip;
    the column stays narrow so the series titles keep their room)."""
    if badges is None:
        return "…", ""
    from medscan.screen.quality import worst

    level = worst(badges)
    return level.upper(), level


def _dot(colour: str) -> QIcon:
    """A filled circle in the level's colour: an icon keeps its colour on a selected (highlighted) row."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(colour))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


def quality_tooltip(badges: list[Any]) -> str:
    return "Quality triage:\n" + "\n".join(f"[{b.level.upper()}] {b.name}: {b.message}" for b in badges)


def details_html(summary: SeriesSummary | None, folder: FolderSummary | None = None) -> str:
    """The details pane under the tree: identity, geometry and every warning in full."""
    if summary is None:
        if folder is None:
            return ""
        text = f"<b>{len(folder.series)}</b> series in {html.escape(folder.path)}"
        if folder.skipped:
            text += f"<br><span style='color:#e0a030'>{len(folder.skipped)} unreadable file(s) skipped</span>"
        return text
    rows = [
        ("Patient", summary.patient_name or "Anonymous"),
        ("Patient ID", summary.patient_id),
        ("Study", " ".join(b for b in (format_dicom_date(summary.study_date), summary.study_description) if b)),
        ("Series", summary.title),
        ("Modality", summary.modality),
        ("Images", str(summary.images)),
    ]
    if summary.shape:
        rows.append(("Matrix", " x ".join(str(n) for n in summary.shape)))
    if summary.spacing:
        rows.append(("Voxel", " x ".join(f"{s:.3g}" for s in summary.spacing) + " mm"))
    body = "".join(
        f"<tr><td style='color:#8b9099;padding-right:8px'>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in rows if v
    )
    warnings = "".join(f"<p style='margin:4px 0 0 0'>⚠ {html.escape(w)}</p>" for w in summary.warnings)
    if warnings:
        warnings = f"<div style='color:#e0a030'>{warnings}</div>"
    quality = "".join(
        f"<p style='margin:4px 0 0 0'><span style='color:{QUALITY_COLOURS[b.level]}'>● {b.level.upper()}</span> "
        f"{html.escape(b.name)}: {html.escape(b.message)}</p>" for b in summary.quality or []
    )
    return f"<table cellspacing=0>{body}</table>{warnings}{quality}"


class StudyBrowser(QTreeWidget):
    """Patients/studies as top-level rows, their series beneath; unreadable files listed last."""

    seriesActivated = pyqtSignal(object)  # SeriesSummary
    seriesSelected = pyqtSignal(object)  # SeriesSummary or None (for the details pane)

    COLUMNS = ("Series", "Modality", "Images", "Quality")
    QUALITY_COLUMN = 3

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: FolderSummary | None = None
        self.setColumnCount(len(self.COLUMNS))
        self.setHeaderLabels(list(self.COLUMNS))
        self.setRootIsDecorated(True)
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setExpandsOnDoubleClick(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.itemClicked.connect(self._on_clicked)
        self.itemActivated.connect(self._on_clicked)
        self.currentItemChanged.connect(lambda current, _previous: self.seriesSelected.emit(self.summary_of(current)))

    @staticmethod
    def summary_of(item: QTreeWidgetItem | None) -> SeriesSummary | None:
        data = item.data(0, ROLE) if item is not None else None
        return data if isinstance(data, SeriesSummary) else None

    def set_folder(self, folder: FolderSummary) -> None:
        self.clear()
        self.folder = folder
        warning_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        studies: dict[tuple[str, str, str], QTreeWidgetItem] = {}
        for summary in folder.series:
            parent = studies.get(summary.study_key)
            if parent is None:
                label = "  ·  ".join(bit for bit in (summary.patient_name or "Anonymous",
                                                      format_dicom_date(summary.study_date)) if bit)
                parent = QTreeWidgetItem(self, [label])
                parent.setFirstColumnSpanned(True)
                tip = [summary.study_description, f"Patient ID {summary.patient_id}" if summary.patient_id else ""]
                parent.setToolTip(0, "\n".join(t for t in tip if t) or label)
                font = parent.font(0)
                font.setBold(True)
                parent.setFont(0, font)
                parent.setFlags(parent.flags() & ~Qt.ItemFlag.ItemIsSelectable)
                studies[summary.study_key] = parent
            item = QTreeWidgetItem(parent, [summary.title, summary.modality, str(summary.images)])
            item.setData(0, ROLE, summary)
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            tooltip = summary.title
            if summary.warnings:
                item.setIcon(0, warning_icon)
                tooltip += "\n\nWarnings:\n" + "\n".join(f"- {w}" for w in summary.warnings)
            for column in range(3):
                item.setToolTip(column, tooltip)
            self._show_quality(item, summary)
        if folder.skipped:
            skipped = QTreeWidgetItem(self, [f"{len(folder.skipped)} unreadable file(s) skipped"])
            skipped.setIcon(0, warning_icon)
            skipped.setFirstColumnSpanned(True)
            skipped.setFlags(skipped.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            for reason in folder.skipped:
                child = QTreeWidgetItem(skipped, [Path(reason.split(": ", 1)[0]).name + ": " +
                                                  (reason.split(": ", 1)[1] if ": " in reason else reason)])
                child.setToolTip(0, reason)
                child.setFirstColumnSpanned(True)
                child.setFlags(child.flags() & ~Qt.ItemFlag.ItemIsSelectable)
        self.expandAll()
        if folder.skipped:
            self.topLevelItem(self.topLevelItemCount() - 1).setExpanded(False)
        self.seriesSelected.emit(None)

    def _show_quality(self, item: QTreeWidgetItem, summary: SeriesSummary) -> None:
        text, level = quality_text(summary.quality)
        item.setText(self.QUALITY_COLUMN, text if summary.quality is not None else "")
        if level:
            item.setForeground(self.QUALITY_COLUMN, QBrush(QColor(QUALITY_COLOURS[level])))
            item.setIcon(self.QUALITY_COLUMN, _dot(QUALITY_COLOURS[level]))
        tip = quality_tooltip(summary.quality) if summary.quality else "Quality triage runs when the series is loaded"
        item.setToolTip(self.QUALITY_COLUMN, f"{tip}\n\n{summary.quality_note}" if summary.quality_note else tip)

    def item_of(self, summary: SeriesSummary) -> QTreeWidgetItem | None:
        return next((item for item in self.series_items() if self.summary_of(item) is summary), None)

    def set_quality(self, summary: SeriesSummary, badges: list[Any], note: str = "") -> None:
        """Show a series' triage badges (coloured short text, messages as tooltip; details pane refreshed)."""
        summary.quality = list(badges)
        summary.quality_note = note
        item = self.item_of(summary)
        if item is None:
            return
        self._show_quality(item, summary)
        if self.currentItem() is item:
            self.seriesSelected.emit(summary)

    def screen(self, jobs: Any, scan: Scan, summary: SeriesSummary | None, database: Any = None) -> Any:
        """Triage a just-loaded series in the background (once per series); badges appear when done and are
        kept in ``database`` (the signed-in study database) when given."""
        if summary is None or summary.quality is not None or scan.synthetic:
            return None
        item = self.item_of(summary)
        if item is not None:
            item.setText(self.QUALITY_COLUMN, "…")
        job = jobs.run(f"Screening {summary.title}", screen_job, scan, summary.record, database, summary.path,
                       kind="screen")
        job.succeeded.connect(lambda out: self.set_quality(summary, *out))
        return job

    def series_items(self) -> list[QTreeWidgetItem]:
        items = []
        for index in range(self.topLevelItemCount()):
            top = self.topLevelItem(index)
            items += [top.child(c) for c in range(top.childCount()) if self.summary_of(top.child(c)) is not None]
        return items

    def summaries(self) -> list[SeriesSummary]:
        return [summary for item in self.series_items() if (summary := self.summary_of(item)) is not None]

    def activate(self, index: int = 0) -> SeriesSummary | None:
        """Select series ``index`` (in tree order) and emit ``seriesActivated`` as a click would."""
        items = self.series_items()
        if not 0 <= index < len(items):
            return None
        self.setCurrentItem(items[index])
        self._on_clicked(items[index])
        return self.summary_of(items[index])

    def _on_clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        summary = self.summary_of(item)
        if summary is not None:
            self.seriesActivated.emit(summary)
