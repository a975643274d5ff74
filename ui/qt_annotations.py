"""The review panel: run a segmentation task on the shown series, review its findings as drafts, export SEG/SR.

The engine does the work (``medscan.annotate`` for tasks and findings, ``medscan.db.annotations`` for the
review state, audit and export); this panel only drives it. Drafts live in the study database, so the panel
needs a signed-in user — who accepted what is that user's action, audited. The label overlay is drawn over
the viewer's current plane (any plane) through ``viewer.layers``; Edit installs the window's mask brush
(``ui.qt_mask_brush.BrushTool``) on a copy of the draft's mask: left-drag paints, Shift+left-drag erases,
"Save edit" stores it as the user's MANUAL annotation. Explain keeps the finding's map in the database as an
overlay of its annotation (``medscan.db.annotations.store_explanation``); selecting a finding shows its kept map
again, under the same opacity control as the labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PyQt6.QtCore import QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QImage, QPainter, QTransform
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medscan.scan import MedscanError, Scan
from medscan.view import reformat
from ui.qt_mask_brush import BrushTool, MaskParamWidget

STATUS_RGB = {"draft": (255, 200, 40), "accepted": (40, 220, 90), "rejected": (230, 60, 60)}
SELECTED_RGB = (60, 200, 255)
COLUMNS = ("id", "finding", "status", "made by", "volume ml", "max diam mm", "mean")


def annotate_job(ctx: Any, database: Any, record: Any, path: str, scan: Scan, task_name: str,
                 min_volume_ml: float, max_per_label: int) -> tuple[int, list[int], list[str]]:
    """Worker: segment, measure, keep the findings as drafts; returns (series id, annotation ids, notes)."""
    from medscan.annotate import get_task
    from medscan.annotate.findings import find_findings
    from medscan.db.annotations import add_drafts
    from medscan.db.results import register_source

    task = get_task(task_name)
    ctx.report(0, 3, f"{task.title}: segmenting")
    segmentation = task.segment(scan)
    ctx.check()
    ctx.report(1, 3, "measuring findings")
    findings = find_findings(scan, segmentation, min_volume_ml=min_volume_ml, max_per_label=max_per_label)
    ctx.check()
    ctx.report(2, 3, "keeping drafts")
    series_id = register_source(database, record, path, scan.modality)
    ids = add_drafts(database, series_id, segmentation, findings, task=task.name) if findings else []
    return series_id, ids, list(segmentation.notes)


def export_job(_ctx: Any, database: Any, series_id: int, scan: Scan, seg_path: str, sr_path: str | None,
               accepted_only: bool) -> list[str]:
    from medscan.db.annotations import export

    return [str(p) for p in export(database, series_id, scan, seg_path, sr_path, accepted_only=accepted_only)]


def explain_job(ctx: Any, database: Any, scan: Scan, task_name: str, mask: np.ndarray, label: int, number: int,
                k: int) -> tuple[int, np.ndarray, str, int]:
    """Worker: the finding's explanation map on slice k (see ``medscan.annotate.explain_overlay``), kept in the
    database with annotation ``number``."""
    from types import SimpleNamespace

    from medscan.annotate import get_task
    from medscan.annotate.explain_overlay import explain_finding
    from medscan.db.annotations import store_explanation

    ctx.report(0, 2, "explaining")
    finding = SimpleNamespace(full_mask=lambda _shape: mask, label=label, number=number)
    heat, method = explain_finding(scan, get_task(task_name), None, finding, k, grid=4)  # 4x4: seconds, not minutes
    ctx.check()
    ctx.report(1, 2, "keeping the map")
    store_explanation(database, number, k, heat, method, {"task": task_name, "grid": 4})
    return k, heat, method, number


class LabelLayer:
    """Paints the annotations' masks over the viewer's current plane: colour by status, the selection in cyan."""

    def __init__(self, panel: AnnotationPanel) -> None:
        self.panel = panel
        self.opacity = 0.45

    def paint(self, painter: QPainter, transform: QTransform) -> None:
        self._paint_labels(painter, transform)
        self._paint_heat(painter, transform)

    def _paint_heat(self, painter: QPainter, transform: QTransform) -> None:
        """The explanation map (inferno; transparent where 0), on whatever plane shows slice k's voxels."""
        panel = self.panel
        viewer = panel.window.viewer
        if panel.heat is None or viewer.scan is None or panel.heat.shape != tuple(viewer.scan.volume_shape):
            return
        plane = np.asarray(reformat(panel.heat, viewer.scan.affine, viewer.plane).voxels[viewer.slice_index])
        if not plane.any():
            return
        from matplotlib import colormaps  # only with a map to show: importing it took 0.8 s of the first paint

        lut = (colormaps["inferno"](np.linspace(0, 1, 256)) * 255).astype(np.uint8)
        lut[:, 3] = (np.linspace(0, 1, 256) * 255 * min(1.0, self.opacity + 0.2)).astype(np.uint8)
        rgba = np.ascontiguousarray(lut[plane])
        image = QImage(rgba.data, plane.shape[1], plane.shape[0], 4 * plane.shape[1], QImage.Format.Format_RGBA8888)
        painter.save()
        painter.setTransform(transform)
        painter.drawImage(QPointF(0, 0), image.copy())
        painter.restore()

    def _paint_labels(self, painter: QPainter, transform: QTransform) -> None:
        panel = self.panel
        viewer = panel.window.viewer
        if not panel.show_overlay.isChecked() or panel.labels is None or viewer.scan is None:
            return
        if panel.labels.shape != tuple(viewer.scan.volume_shape):
            return
        plane = reformat(panel.labels, viewer.scan.affine, viewer.plane).voxels[viewer.slice_index]
        plane = np.asarray(plane).astype(np.int64)
        if not plane.any():
            return
        # A faint fill and a solid outline: the anatomy stays readable under large regions (body, air).
        fill = np.zeros((len(panel.views) + 1, 4), np.uint8)
        selected = panel.selected_id()
        for index, view in enumerate(panel.views, start=1):
            rgb = SELECTED_RGB if view.id == selected else STATUS_RGB.get(view.status, (200, 200, 200))
            weight = 0.0 if view.status == "rejected" or view.id == panel.editing else \
                (0.6 if view.id == selected else 0.3)
            fill[index] = (*rgb, int(255 * self.opacity * weight))
        index_plane = np.clip(plane, 0, len(panel.views))
        rgba = fill[index_plane]
        edge = np.zeros(plane.shape, bool)
        edge[1:, :] |= index_plane[1:, :] != index_plane[:-1, :]
        edge[:-1, :] |= index_plane[:-1, :] != index_plane[1:, :]
        edge[:, 1:] |= index_plane[:, 1:] != index_plane[:, :-1]
        edge[:, :-1] |= index_plane[:, :-1] != index_plane[:, 1:]
        edge &= (index_plane > 0) & (fill[index_plane, 3] > 0)
        rgba[edge, 3] = int(255 * min(1.0, 0.4 + self.opacity))
        rgba = np.ascontiguousarray(rgba)
        image = QImage(rgba.data, plane.shape[1], plane.shape[0], 4 * plane.shape[1], QImage.Format.Format_RGBA8888)
        painter.save()
        painter.setTransform(transform)
        painter.drawImage(QPointF(0, 0), image.copy())
        painter.restore()


class AnnotationPanel(QWidget):
    """Run / review / export; see the module docstring."""

    changed = pyqtSignal()  # the list of annotations was (re)loaded
    exported = pyqtSignal(list)  # paths written
    explained = pyqtSignal(str)  # the explanation method shown

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.series_id: int | None = None
        self.views: list[Any] = []
        self.labels: np.ndarray | None = None  # index into self.views (1-based) per voxel
        self.editing: int | None = None
        self.heat: np.ndarray | None = None  # uint8 explanation map (0..255) over the volume, one slice set
        self.heat_id: int | None = None
        self.brush = MaskParamWidget(self)
        self.brush.draw.hide()
        self.brush.clear.hide()
        self.brush.hide()  # shown while editing: brush size and the voxel count
        self.task = QComboBox()
        self.task.setToolTip("Segmentation task (those made for the shown modality)")
        self.run = QPushButton("Run")
        self.run.setToolTip("Segment the shown series; findings become drafts until you accept them")
        self.status = QLabel("Open a series and sign in to the study database to annotate")
        self.status.setObjectName("annotationStatus")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(self.status.fontMetrics().lineSpacing() * 3 + 4)  # room for two-line messages
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setMinimumWidth(120)
        self.accept_button = QPushButton("Accept")
        self.reject_button = QPushButton("Reject")
        self.edit_button = QPushButton("Edit")
        self.edit_button.setCheckable(True)
        self.edit_button.setToolTip("Brush the mask: left-drag paints, Shift+left-drag erases; then Save edit")
        self.save_edit = QPushButton("Save edit")
        self.explain = QPushButton("Explain")
        self.explain.setToolTip("Which image regions the finding depends on (occlusion, or Captum for learned "
                                "segmenters), drawn in a heat colour on its widest slice")
        self.show_overlay = QCheckBox("Show labels")
        self.show_overlay.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setToolTip("Label overlay opacity")
        self.export_accepted = QPushButton("Export accepted…")
        self.export_drafts = QPushButton("Export drafts…")

        top = QHBoxLayout()
        top.addWidget(self.task, 1)
        top.addWidget(self.run)
        review = QGridLayout()  # three a row: the panel stays as narrow as the Operations panel beside it
        for index, button in enumerate((self.accept_button, self.reject_button, self.explain, self.edit_button,
                                        self.save_edit)):
            review.addWidget(button, index // 3, index % 3)
        view = QHBoxLayout()
        view.addWidget(self.show_overlay)
        view.addWidget(self.opacity, 1)
        view.addWidget(self.brush)
        out = QHBoxLayout()
        out.addWidget(self.export_accepted)
        out.addWidget(self.export_drafts)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(review)
        layout.addLayout(view)
        layout.addLayout(out)

        self.layer = LabelLayer(self)
        window.viewer.layers.append(self.layer)
        self.run.clicked.connect(self.run_task)
        self.accept_button.clicked.connect(lambda: self._review("accept"))
        self.reject_button.clicked.connect(lambda: self._review("reject"))
        self.edit_button.toggled.connect(self.set_editing)
        self.save_edit.clicked.connect(self.save_current_edit)
        self.explain.clicked.connect(self.explain_selected)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.show_overlay.toggled.connect(lambda _on: window.viewer.update())
        self.opacity.valueChanged.connect(self._set_opacity)
        self.export_accepted.clicked.connect(lambda: self.ask_export(accepted_only=True))
        self.export_drafts.clicked.connect(lambda: self.ask_export(accepted_only=False))
        window.scanShown.connect(self.on_scan_shown)
        window.database.sessionChanged.connect(lambda _s: self.on_scan_shown(window.scan))
        self._update_enabled()

    # -- state ----------------------------------------------------------------------------------
    @property
    def database(self) -> Any:
        session = self.window.database.session
        return session.database if session is not None else None

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return int(self.table.item(rows[0].row(), 0).text())

    def select(self, annotation_id: int) -> None:
        for row in range(self.table.rowCount()):
            if int(self.table.item(row, 0).text()) == annotation_id:
                self.table.selectRow(row)
                return

    def on_scan_shown(self, scan: Scan | None) -> None:
        """A new series: tasks for its modality; its annotations when it is already in the database."""
        from medscan.annotate import tasks

        self.set_editing(False)
        self.task.clear()
        self.series_id, self.views, self.labels, self.heat = None, [], None, None
        if scan is not None:
            for task in tasks():
                if scan.modality in task.modalities:
                    self.task.addItem(task.title, task.name)
        self._fill_table()
        if scan is not None and self.database is not None:
            series_id = self._known_series_id(scan)
            if series_id is not None:
                self.series_id = series_id
                self.reload()
        self._update_enabled()

    def _known_series_id(self, scan: Scan) -> int | None:
        from sqlalchemy import select

        from medscan.db.models import Series

        key = scan.series_uid
        if not key:
            return None
        with self.database.transaction() as session:
            row = session.scalar(select(Series).where(Series.series_uid == key))
            return row.id if row is not None else None

    def _set_opacity(self, value: int) -> None:
        self.layer.opacity = value / 100.0
        self.window.viewer.update()

    def _update_enabled(self) -> None:
        has = self.window.scan is not None and self.task.count() > 0
        self.run.setEnabled(has)
        selected = self.selected_id()
        view = next((v for v in self.views if v.id == selected), None)
        self.accept_button.setEnabled(view is not None and view.status != "accepted" and self.editing is None)
        self.reject_button.setEnabled(view is not None and view.status != "rejected" and self.editing is None)
        self.edit_button.setEnabled(view is not None)
        self.save_edit.setEnabled(self.editing is not None)
        self.explain.setEnabled(view is not None and bool(view.task) and view.status != "rejected")
        self.export_accepted.setEnabled(any(v.status == "accepted" for v in self.views))
        self.export_drafts.setEnabled(any(v.status != "rejected" for v in self.views))

    # -- run ------------------------------------------------------------------------------------
    def run_task(self) -> Any:
        scan = self.window.scan
        if scan is None:
            return None
        if self.database is None and not self.window.database.sign_in():
            self.status.setText("Sign in to the study database: drafts and who accepted them are kept there")
            return None
        summary = self.window.current
        record = summary.record if summary is not None else None
        path = summary.path if summary is not None else scan.source_path
        from medscan.annotate import get_task

        name = self.task.currentData()
        job = self.window.jobs.run(f"Annotating ({name})", annotate_job, self.database, record, path, scan, name,
                                   get_task(name).min_finding_ml, 6, kind="annotate")
        job.succeeded.connect(self._on_annotated)
        job.failed.connect(lambda message: self.status.setText(f"Not annotated: {message}"))
        self.status.setText(f"Running {self.task.currentText()} …")
        self.run.setEnabled(False)
        return job

    def _on_annotated(self, payload: tuple[int, list[int], list[str]]) -> None:
        self.series_id, ids, notes = payload
        self.reload()
        extra = f" ({notes[-1]})" if notes and "smaller pieces" in notes[-1] else ""
        self.status.setText(f"{len(ids)} AI draft(s): nothing is accepted until you accept or edit it{extra}")
        self._update_enabled()

    def reload(self) -> None:
        """Annotations and their label volume from the database."""
        from medscan.db.annotations import list_annotations, load_mask

        if self.series_id is None or self.database is None or self.window.scan is None:
            return
        selected = self.selected_id()
        self.views = list_annotations(self.database, self.series_id)
        shape = tuple(self.window.scan.volume_shape)
        labels = np.zeros(shape, np.uint16)
        for index, view in enumerate(self.views, start=1):
            if view.status != "rejected":
                labels[load_mask(self.database, view.id, shape) & (labels == 0)] = index
        self.labels = labels
        self._fill_table()
        if selected is not None:
            self.select(selected)
        self.changed.emit()
        self.window.viewer.update()

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.views))
        for row, view in enumerate(self.views):
            m = view.measurements
            unit = f" {m.get('units')}" if m.get("units") else ""
            made = "AI" if view.source == "ai" else "human"
            made += f" ({view.algorithm_type.lower()})"
            status = view.status + (f" by {view.reviewed_by}" if view.reviewed_by and view.status != "draft" else "")
            cells = (str(view.id), view.label, status, made, f"{m.get('volume_ml', 0):.1f}",
                     f"{m.get('max_diameter_mm', 0):.1f}", f"{m.get('mean', 0):.0f}{unit}")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 2:
                    item.setForeground(Qt.GlobalColor.yellow if view.status == "draft" else
                                       Qt.GlobalColor.green if view.status == "accepted" else Qt.GlobalColor.red)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()

    def _on_selection(self) -> None:
        selected = self.selected_id()
        if self.heat is not None and selected != self.heat_id:  # an explanation belongs to its finding
            self.heat, self.heat_id = None, None
            self.status.setText("Explanation hidden: it belongs to the finding it was made for")
        view = next((v for v in self.views if v.id == selected), None)
        if view is not None:
            self._go_to(view)
            if self.heat is None:
                self.show_kept_explanation(view.id)
        self._update_enabled()
        self.window.viewer.update()

    def _go_to(self, view: Any) -> None:
        """Show the slice (of the viewer's plane) where the finding has most voxels."""
        viewer = self.window.viewer
        if self.labels is None or viewer.scan is None or self.labels.shape != tuple(viewer.scan.volume_shape):
            return
        index = next(i for i, v in enumerate(self.views, start=1) if v.id == view.id)
        stack = np.asarray(reformat(self.labels == index, viewer.scan.affine, viewer.plane).voxels)
        counts = stack.reshape(stack.shape[0], -1).sum(axis=1)
        if counts.any():
            viewer.set_slice(int(np.argmax(counts)))

    # -- review ---------------------------------------------------------------------------------
    def _review(self, action: str) -> None:
        from medscan.db import annotations as review

        annotation_id = self.selected_id()
        if annotation_id is None:
            return
        try:
            view = (review.accept if action == "accept" else review.reject)(self.database, annotation_id)
        except MedscanError as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"{view.label} #{view.id}: {view.status} by {self.database.user.name}")
        self.reload()
        self._update_enabled()

    def set_editing(self, on: bool) -> None:
        """Edit: the brush paints a copy of the selected draft's mask; off without saving discards it."""
        viewer = self.window.viewer
        if on and self.selected_id() is not None and self.window.scan is not None:
            # imported here, not for every series shown: SQLAlchemy took 0.9 s of the window's thread before the
            # first slice of a study was painted
            from medscan.db.annotations import load_mask

            self.editing = self.selected_id()
            self.brush.mask = load_mask(self.database, self.editing, tuple(self.window.scan.volume_shape))
            self.brush.note_change()
            viewer.tool = BrushTool(viewer, self.brush)
            self.brush.show()
            self.status.setText("Editing: left-drag paints, Shift+left-drag erases; Save edit keeps it as yours")
        else:
            if isinstance(viewer.tool, BrushTool) and viewer.tool.widget is self.brush:
                viewer.tool = None
            self.editing = None
            self.brush.mask = None
            self.brush.hide()
            if self.edit_button.isChecked():
                self.edit_button.blockSignals(True)
                self.edit_button.setChecked(False)
                self.edit_button.blockSignals(False)
        self._update_enabled()
        viewer.update()

    def save_current_edit(self) -> None:
        from medscan.db.annotations import edit

        if self.editing is None or self.brush.mask is None or self.window.scan is None:
            return
        annotation_id, mask = self.editing, self.brush.mask.copy()
        try:
            view = edit(self.database, annotation_id, mask, self.window.scan)
        except MedscanError as exc:
            self.status.setText(str(exc))
            return
        self.set_editing(False)
        self.status.setText(f"{view.label} #{view.id}: edited and accepted by {self.database.user.name} (MANUAL)")
        self.reload()

    # -- explain --------------------------------------------------------------------------------
    def explain_selected(self) -> Any:
        """Run the selected finding's explanation in the background; shown over its widest slice."""
        from medscan.db.annotations import load_mask

        view = next((v for v in self.views if v.id == self.selected_id()), None)
        scan = self.window.scan
        if view is None or scan is None or not view.task:
            return None
        shape = tuple(scan.volume_shape)
        mask = load_mask(self.database, view.id, shape)
        k = int(view.measurements.get("diameter_slice", int(np.argmax(mask.sum(axis=(1, 2))))))
        label = int(view.measurements.get("label", 1))
        job = self.window.jobs.run(f"Explaining {view.label} #{view.id}", explain_job, self.database, scan, view.task,
                                   mask, label, view.id, k, kind="explain")
        job.succeeded.connect(self._on_explained)
        job.failed.connect(lambda message: self.status.setText(f"No explanation: {message}"))
        self.status.setText(f"Explaining {view.label} #{view.id} on slice {k} …")
        return job

    def _on_explained(self, payload: tuple[int, np.ndarray, str, int]) -> None:
        k, heat, method, annotation_id = payload
        if annotation_id != self.selected_id():
            return
        if self._show_heat(annotation_id, k, heat):
            self.status.setText(f"Explanation ({method}, slice {k}), kept in the database: brighter = the finding "
                                "depends more on that region")
            self.explained.emit(method)

    def _show_heat(self, annotation_id: int, k: int, heat: np.ndarray) -> bool:
        """Draw ``heat`` (slice k's map, values in [0, 1]) and go to the slice that shows it."""
        scan = self.window.scan
        if scan is None or np.shape(heat) != tuple(scan.volume_shape)[1:]:
            return False
        volume = np.zeros(tuple(scan.volume_shape), np.uint8)
        volume[k] = np.clip(np.rint(np.asarray(heat) * 255), 0, 255).astype(np.uint8)
        self.heat, self.heat_id = volume, annotation_id
        stack = np.asarray(reformat(volume > 0, scan.affine, self.window.viewer.plane).voxels)
        counts = stack.reshape(stack.shape[0], -1).sum(axis=1)
        if counts.any():
            self.window.viewer.set_slice(int(np.argmax(counts)))
        self.window.viewer.update()
        return True

    def show_kept_explanation(self, annotation_id: int) -> bool:
        """Show the latest explanation the database keeps for the annotation (none: nothing drawn)."""
        from medscan.db.annotations import load_explanations

        if self.database is None:
            return False
        try:
            kept = load_explanations(self.database, annotation_id)
        except MedscanError:
            return False
        if not kept or not self._show_heat(annotation_id, kept[-1].k, kept[-1].heat):
            return False
        self.status.setText(f"Kept explanation ({kept[-1].method}, slice {kept[-1].k}, by "
                            f"{kept[-1].details.get('by', '?')})")
        return True

    # -- export ---------------------------------------------------------------------------------
    def ask_export(self, accepted_only: bool) -> None:
        kind = "accepted" if accepted_only else "draft"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind} annotations as DICOM SEG", "annotations_seg.dcm",
                                              "DICOM (*.dcm)")
        if path:
            sr = path[:-4] + "_sr.dcm" if path.lower().endswith(".dcm") else path + "_sr.dcm"
            self.export(path, sr, accepted_only=accepted_only)

    def export(self, seg_path: str, sr_path: str | None, *, accepted_only: bool) -> Any:
        if self.series_id is None or self.window.scan is None:
            return None
        job = self.window.jobs.run("Exporting annotations", export_job, self.database, self.series_id,
                                   self.window.scan, seg_path, sr_path, accepted_only, kind="export")
        job.succeeded.connect(self._on_exported)
        job.failed.connect(lambda message: self.status.setText(f"Not exported: {message}"))
        return job

    def _on_exported(self, paths: list[str]) -> None:
        self.status.setText("Wrote " + ", ".join(paths))
        self.exported.emit(paths)


def install(window: Any) -> AnnotationPanel:
    """Add the review panel as a dock on the right, with its toggle in the View menu."""
    panel = AnnotationPanel(window)
    dock = QDockWidget("Annotations", window)
    dock.setObjectName("annotationsDock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    if getattr(window, "opsDock", None) is not None:
        window.tabifyDockWidget(window.opsDock, dock)  # room for the findings table; a tab beside Operations
    dock.hide()  # opened from Tools > Annotate and review (or View): the window's layout is unchanged until then
    if hasattr(window, "menuView"):
        window.menuView.addAction(dock.toggleViewAction())
    if hasattr(window, "menuTools"):
        action = QAction("&Annotate and review…", window)
        action.setToolTip("Segment the shown series (AI drafts), review, explain and export SEG/SR")
        action.triggered.connect(lambda: (dock.show(), dock.raise_()))
        window.menuTools.addAction(action)
        panel.action = action
    panel.dock = dock
    return panel
