"""The main window: layout from ``main_window.ui``, behaviour here.

It observes engine objects and sends every slow call to the job pool: opening a folder lists its
series (headers only), choosing a series decodes it, exporting writes files - each in a worker,
with progress and cancel in the Jobs panel, errors as one-line dialogs. Nothing here computes on
images; the viewer draws what the engine returns.

A chosen DICOM series is streamed (``medscan.io.stream``): its middle slice is on screen as soon as
it is decoded (``firstSliceShown``), the rest fills in outward from it with a progress bar in the
status bar, and only the finished volume becomes ``self.scan`` (``scanShown``). Until then ``scan`` is
None, so exports, operations and everything else that acts on a series stay disabled: nothing ever
runs on a half-loaded volume.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PyQt6 import uic
from PyQt6.QtCore import QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence
from PyQt6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar

from ui import qt_dialogs
from ui.qt_compare import CompareBar, CompareViewer
from ui.qt_database import DatabaseController
from ui.qt_mask_brush import BrushTool, MaskParamWidget
from ui.qt_operations import OperationsPanel
from ui.qt_result_workflow import ResultWorkflow
from ui.qt_slice_viewer import CUSTOM, SliceViewer, preset_label, window_presets
from ui.qt_study_browser import FolderSummary, SeriesSummary, StudyBrowser, details_html, summarize_folder
from ui.qt_workers import ElidedLabel, Job, JobContext, JobManager
from ui.system_info import confirm_device, format_bytes, guess_device, process_memory_bytes

if TYPE_CHECKING:
    from medscan.scan import Scan

UI_FILE = Path(__file__).with_name("main_window.ui")
RECENT_LIMIT = 10
PLANES = ("axial", "coronal", "sagittal")


def default_settings() -> QSettings:
    """Per-user settings in an INI file on every platform (easy to inspect and to reset)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "medscan", "medscan-gui")


# -- worker jobs (run in the pool; no widgets touched here) -----------------------------------------
def open_job(ctx: JobContext, path: str) -> FolderSummary | tuple[SeriesSummary, Scan]:
    """A NIfTI file is loaded at once; anything else is listed as DICOM series."""
    from medscan.io.nifti import is_nifti, read_nifti
    from ui.qt_study_browser import summary_from_scan

    if Path(path).is_file() and is_nifti(path):
        ctx.report(0, 0, "reading NIfTI")
        scan = read_nifti(path)
        return summary_from_scan(scan, path), scan
    return summarize_folder(ctx, path)


STREAM_REPORT_S = 0.03  # progress at most this often (a slice scrolled to shows up within about a frame of it)


def load_job(ctx: JobContext, record: Any) -> Scan:
    """Decode ``record`` middle slice first: publishes the SeriesStream once that slice is ready, reports planes
    decoded as progress, returns the finished Scan (its int16 voxels kept: no float32 copy is made here)."""
    from medscan.io.stream import SeriesStream

    ctx.report(0, 0, f"decoding {len(record.frames)} image(s)")
    stream = SeriesStream(record).start()
    try:
        stream.wait_ready(0, stream.middle)
        ctx.check()
        if stream.error is None:
            ctx.publish(stream)
        reported = -1
        while not stream.wait(STREAM_REPORT_S):
            ctx.check()
            done, total = stream.progress()
            if done != reported:
                ctx.report(done, total, "decoding")
                reported = done
        ctx.check()
        scan = stream.result()
        ctx.report(stream.total, stream.total, "decoded")
        return scan
    finally:
        stream.cancel()  # after a cancel or an error: start no more files


def export_job(ctx: JobContext, scan: Scan, target: str, maps: dict[str, Any] | None = None) -> str:
    """The scan (a generated one with its uncertainty and generated-region companions); returns its path."""
    from medscan.io.result_files import save_result

    ctx.report(0, 0, "writing")
    return str(save_result(scan, maps or {}, target)[0])


def png_job(ctx: JobContext, scan: Scan, target: str, slice_index: int, volume: int,
            window: tuple[float, float]) -> str:
    from medscan.io.png import save_png

    ctx.report(0, 0, "writing")
    return str(save_png(scan, target, slice_index=slice_index, volume=volume, window=window))


def device_job(ctx: JobContext) -> Any:
    ctx.report(0, 0, "importing torch")
    return confirm_device()


class MainWindow(QMainWindow):
    """The workstation window. Signals let tests and the screenshot mode wait for real events."""

    folderListed = pyqtSignal(object)  # FolderSummary
    firstSliceShown = pyqtSignal(object)  # the partial Scan of a series being streamed, its middle slice drawn
    scanShown = pyqtSignal(object)  # Scan (a streamed series: once complete)
    exported = pyqtSignal(str)  # path written
    errorReported = pyqtSignal(str)  # the one-line message

    # Children created by main_window.ui (listed for readers and type checkers).
    viewer: SliceViewer
    browser: StudyBrowser
    afterViewer: CompareViewer
    compareBar: CompareBar
    opsPanel: OperationsPanel

    def __init__(self, settings: QSettings | None = None, persist: bool = True) -> None:
        super().__init__()
        uic.loadUi(str(UI_FILE), self)
        self.settings = settings if settings is not None else default_settings()
        self.persist = persist
        self.jobs = JobManager(self)
        self.jobsPanel.bind(self.jobs)
        self.scan: Scan | None = None
        self.current: SeriesSummary | None = None
        self.folder: FolderSummary | None = None
        self.opened_path: str | None = None
        self.device = guess_device()
        self.error_handler = self._error_dialog  # the screenshot mode swaps in stderr + exit
        self._loading: SeriesSummary | None = None
        self._load_job: Job | None = None  # the load whose stream is (or will be) on screen
        self.stream: Any = None  # the SeriesStream on screen while it is being decoded, else None
        self._shown_generation = 0  # the stream's array generation the viewer draws from
        self.showing_result = False  # a kept operation result stands in for the current series

        self._setup_status_bar()
        self._setup_actions()
        self._setup_viewer_controls()
        self._setup_operations()
        self.database = DatabaseController(self)
        from ui.qt_annotations import install as install_annotations

        self.annotations = install_annotations(self)
        from ui.qt_synthesize import install as install_synthesize

        self.actionSynthesize = install_synthesize(self)
        from ui.qt_pacs import install as install_pacs

        self.actionQueryRetrieve, self.actionSendToPacs = install_pacs(self)
        self.resizeDocks([self.studyDock, self.jobsDock], [620, 110], Qt.Orientation.Vertical)
        self.resizeDocks([self.studyDock, self.opsDock], [300, 330], Qt.Orientation.Horizontal)
        self.seriesDetails.setHtml("")
        self.setAcceptDrops(True)
        self._restore_settings()
        self._on_volume_changed(0, 1)
        self._update_enabled()

    # ------------------------------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------------------------------
    def _setup_status_bar(self) -> None:
        self.readoutLabel = ElidedLabel("")
        self.readoutLabel.setObjectName("readoutLabel")
        self.deviceLabel = QLabel()
        self.memoryLabel = QLabel()
        self.statusbar.addWidget(self.readoutLabel, 1)
        self.loadProgress = QProgressBar()
        self.loadProgress.setObjectName("loadProgress")
        self.loadProgress.setFixedWidth(180)  # room for "1000 / 1000 slices" beside the memory label
        # no taller than the labels beside it: a status bar keeps room for its hidden widgets too, and a taller
        # bar would shrink the viewer by a few pixels for good
        self.loadProgress.setMaximumHeight(max(self.memoryLabel.sizeHint().height(), 14))
        self.loadProgress.setFormat("%v / %m slices")
        self.loadProgress.setToolTip("Loading the series: the slices on screen first, the rest outward from them")
        self.loadProgress.hide()
        self.statusbar.addPermanentWidget(self.loadProgress)
        self.statusbar.addPermanentWidget(self.deviceLabel)
        self.statusbar.addPermanentWidget(self.memoryLabel)
        self._show_device()
        self._memory_timer = QTimer(self)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start(2000)
        self._update_memory()

    def _setup_actions(self) -> None:
        self.actionOpenFolder.triggered.connect(self.open_folder_dialog)
        self.actionOpenFile.triggered.connect(self.open_file_dialog)
        self.actionExportNifti.triggered.connect(self.export_nifti)
        self.actionExportDicom.triggered.connect(self.export_dicom)
        self.actionExportPng.triggered.connect(self.export_png)
        self.actionQuit.triggered.connect(self.close)
        self.actionFit.triggered.connect(self.viewer.fit)
        self.actionSeriesHeader.triggered.connect(self.show_header)
        self.actionCancelJobs.triggered.connect(lambda: self.jobs.cancel())
        self.actionAbout.triggered.connect(self.show_about)
        self.actionShortcuts.triggered.connect(lambda: qt_dialogs.show_controls(self))

        self.planeGroup = QActionGroup(self)
        for plane, action, button in zip(
            PLANES, (self.actionAxial, self.actionCoronal, self.actionSagittal),
            (self.axialButton, self.coronalButton, self.sagittalButton), strict=True,
        ):
            self.planeGroup.addAction(action)
            action.setData(plane)
            action.triggered.connect(lambda _checked=False, p=plane: self.viewer.set_plane(p))
            button.setDefaultAction(action)
            button.setAutoExclusive(False)
        self.presetGroup = QActionGroup(self)
        self.menuView.addAction(self.studyDock.toggleViewAction())
        self.menuView.addAction(self.jobsDock.toggleViewAction())
        self.menuRecent.aboutToShow.connect(self._fill_recent_menu)
        self.fitButton.setDefaultAction(self.actionFit)
        self.fitButton.setText("Fit")

    def _setup_viewer_controls(self) -> None:
        viewer = self.viewer
        viewer.sliceChanged.connect(self._on_slice_changed)
        viewer.planeChanged.connect(self._on_plane_changed)
        viewer.windowChanged.connect(self._on_window_changed)
        viewer.volumeChanged.connect(self._on_volume_changed)
        viewer.readoutChanged.connect(self.readoutLabel.setText)
        self.sliceSlider.valueChanged.connect(viewer.set_slice)
        self.volumeSpin.valueChanged.connect(lambda value: viewer.set_volume(value - 1))
        self.presetCombo.activated.connect(self._on_preset_chosen)
        self.browser.seriesActivated.connect(self.load_series)
        self.browser.seriesSelected.connect(
            lambda summary: self.seriesDetails.setHtml(details_html(summary, self.folder)))

    def _setup_operations(self) -> None:
        """Clean/Generate tabs from the registry, the device choice (remembered) and before/after."""
        self.workflow = ResultWorkflow(self)
        for mask_widget in self.mask_widgets():
            mask_widget.drawToggled.connect(lambda on, w=mask_widget: self.set_brush(w, on))
        self.opsPanel.set_device_choice(self.settings.value("ops/device", "auto", type=str))
        self.opsPanel.deviceChanged.connect(self._on_device_choice)
        self.opsPanel.set_modality(None)
        self.menuView.addAction(self.opsDock.toggleViewAction())
        first = self.menuTools.actions()[0] if self.menuTools.actions() else None
        self.actionPreview = QAction("&Preview on slice", self, shortcut=QKeySequence("Ctrl+P"))
        self.actionRunSeries = QAction("&Run on series", self, shortcut=QKeySequence("Ctrl+R"))
        self.actionCloseCompare = QAction("&Close comparison", self, shortcut=QKeySequence("Ctrl+Shift+W"))
        self.actionPreview.triggered.connect(lambda: self.opsPanel.request("preview"))
        self.actionRunSeries.triggered.connect(lambda: self.opsPanel.request("run"))
        self.actionCloseCompare.triggered.connect(self.workflow.close)
        self.menuTools.insertActions(first, [self.actionPreview, self.actionRunSeries, self.actionCloseCompare])
        self.menuTools.insertSeparator(first)
        self._show_device()

    def _on_device_choice(self, choice: str) -> None:
        if self.persist:
            self.settings.setValue("ops/device", choice)
        self._show_device()

    # ------------------------------------------------------------------------------------------
    # Opening and loading
    # ------------------------------------------------------------------------------------------
    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._last_folder())
        if folder:
            self.open_path(folder)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open file", self._last_folder(),
            "Images (*.dcm *.DCM *.ima *.IMA *.nii *.nii.gz);;NIfTI (*.nii *.nii.gz);;DICOM (*.dcm *.ima);;"
            "All files (*)",
        )
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> Job | None:
        """Open a DICOM folder or file, or a NIfTI file; the first series is shown when listed."""
        path = Path(path).expanduser()
        if not path.exists():
            self.report_error("Cannot open", f"{path}: no such file or folder")
            return None
        path = path.resolve()
        self.opened_path = str(path)
        self._remember(path)
        self.jobs.cancel("open")
        self.jobs.cancel("load")
        job = self.jobs.run(f"Opening {path.name or path}", open_job, str(path), kind="open")
        job.succeeded.connect(self._on_opened)
        job.failed.connect(lambda message: self.report_error("Cannot open", message))
        self.statusbar.showMessage(f"Reading {path} …")
        return job

    def _on_opened(self, result: FolderSummary | tuple[SeriesSummary, Scan]) -> None:
        self.statusbar.clearMessage()
        if isinstance(result, tuple):
            summary, scan = result
            self.folder = FolderSummary(path=summary.path, series=[summary], skipped=[], ignored=0)
            self.browser.set_folder(self.folder)
            self.folderListed.emit(self.folder)
            self.browser.setCurrentItem(self.browser.series_items()[0])
            self.show_scan(scan, summary)
            return
        self.folder = result
        self.browser.set_folder(result)
        self.seriesDetails.setHtml(details_html(None, result))
        self.folderListed.emit(result)
        if not result.series:
            detail = f"; skipped {len(result.skipped)}: {result.skipped[0]}" if result.skipped else ""
            self.report_error("Nothing to show", f"{result.path}: no readable DICOM series found{detail}")
            return
        self.browser.activate(0)

    def load_series(self, summary: SeriesSummary) -> Job | None:
        """Decode a listed series in the background and show it (a newer choice cancels an older one)."""
        shown = summary is self.current and self.scan is not None and not self.showing_result
        if summary.record is None or summary is self._loading or shown:
            return None
        self.jobs.cancel("load")
        self._loading = summary
        job = self.jobs.run(f"Loading {summary.modality} {summary.title}", load_job, summary.record, kind="load")
        self._load_job = job
        job.published.connect(lambda stream: self._show_streaming(job, stream, summary))
        job.progressed.connect(lambda done, total, _text: self._on_load_progress(job, done, total))
        job.succeeded.connect(lambda scan: self._finish_streaming(job, scan, summary))
        job.failed.connect(lambda message: (self._drop_stream(job), self.report_error("Cannot load series", message)))
        job.cancelled.connect(lambda: self._drop_stream(job))
        job.finished.connect(lambda: setattr(self, "_loading", None) if self._loading is summary else None)
        return job

    def _show_streaming(self, job: Job, stream: Any, summary: SeriesSummary) -> None:
        """The middle slice of ``summary``'s series is decoded: show it; the series is not ``self.scan`` yet."""
        if job is not self._load_job:
            return
        self.workflow.close()
        self._forget_drawn_masks()
        self.scan, self.current, self.showing_result, self.stream = None, summary, False, stream
        partial = stream.partial_scan()
        self._shown_generation = stream.generation
        preset = self.settings.value(f"preset/{partial.modality}", "", type=str) or None
        self._fill_presets(partial.modality)
        self.viewer.set_scan(partial, preset, loading=stream)
        self._set_volume_range(partial.n_volumes)
        self.update_title()
        self.opsPanel.set_modality(None)
        done, total = stream.progress()
        self.loadProgress.setRange(0, total)
        self.loadProgress.setValue(done)
        self.loadProgress.show()
        self._update_enabled()
        self.viewer.setFocus()
        self.firstSliceShown.emit(partial)

    def _on_load_progress(self, job: Job, done: int, total: int) -> None:
        stream = self.stream
        if job is not self._load_job or stream is None or total <= 0:
            return
        if stream.generation != self._shown_generation:  # decoding restarted as float32: a new array to draw from
            self._shown_generation = stream.generation
            self.viewer.rebind_loading(stream.partial_scan(), stream)
        self.loadProgress.setValue(done)
        self.viewer.refresh_loaded()

    def _finish_streaming(self, job: Job, scan: Scan, summary: SeriesSummary) -> None:
        """The whole series is decoded: it becomes ``self.scan``, the view stays as the user left it."""
        if job is not self._load_job:
            return
        self._load_job = None
        if self.stream is None:  # finished before its middle slice was published (an error, or one file)
            self.show_scan(scan, summary)
            return
        self.loadProgress.setValue(self.loadProgress.maximum())
        self.loadProgress.hide()
        self.stream = None
        self.scan, self.current = scan, summary
        self.viewer.finish_loading(scan)
        self.update_title()
        self._scan_ready(scan, summary, result=False)

    def _drop_stream(self, job: Job) -> None:
        """A load failed or was cancelled: a half-decoded series does not stay on screen."""
        if job is not self._load_job:
            return
        self._load_job = None
        self.loadProgress.hide()
        if self.stream is not None:
            self.stream = None
            self.current = None
            self.viewer.set_scan(None)
            self.update_title()
            self._update_enabled()

    def show_scan(self, scan: Scan, summary: SeriesSummary | None = None, result: bool = False) -> None:
        """Put ``scan`` in the viewer with the preset last chosen for its modality.

        ``result`` marks a kept result of ``summary``'s series: choosing that series again reloads it.
        """
        self.workflow.close()
        if scan is not self.scan:
            self._forget_drawn_masks()
        self.scan = scan
        self.current = summary
        self.showing_result = result
        preset = self.settings.value(f"preset/{scan.modality}", "", type=str) or None
        self._fill_presets(scan.modality)
        self.stream = None
        self.loadProgress.hide()
        self.viewer.set_scan(scan, preset)
        self._set_volume_range(scan.n_volumes)
        self.update_title()
        self._scan_ready(scan, summary, result)

    def _set_volume_range(self, count: int) -> None:
        self.volumeSpin.blockSignals(True)
        self.volumeSpin.setRange(1, count)
        self.volumeSpin.setValue(1)
        self.volumeSpin.blockSignals(False)
        self._on_volume_changed(0, count)

    def _scan_ready(self, scan: Scan, summary: SeriesSummary | None, result: bool) -> None:
        """``scan`` is complete and shown: enable what acts on it, start its triage, say so (``scanShown``)."""
        self.opsPanel.set_modality(scan.modality)
        if scan.warnings:
            self.statusbar.showMessage(f"{len(scan.warnings)} warning(s) from the loader: {scan.warnings[0]}", 8000)
        self._update_enabled()
        self.viewer.setFocus()
        if not result:  # quality triage of the loaded series, in the background (badges in the browser)
            self.browser.screen(self.jobs, scan, summary, getattr(self.database.session, "database", None))
        self.scanShown.emit(scan)

    # ------------------------------------------------------------------------------------------
    # Drawing a mask parameter (e.g. the region to inpaint)
    # ------------------------------------------------------------------------------------------
    def mask_widgets(self) -> list[MaskParamWidget]:
        return self.opsPanel.findChildren(MaskParamWidget)

    def set_brush(self, widget: MaskParamWidget, on: bool) -> None:
        """Left-drag on the viewer paints ``widget``'s mask while its Draw button is down (one at a time)."""
        if on:
            for other in self.mask_widgets():
                if other is not widget and other.draw.isChecked():
                    other.draw.setChecked(False)
            self.viewer.tool = BrushTool(self.viewer, widget)
            self.statusbar.showMessage("Drawing the region: left-drag paints, Shift+left-drag erases", 8000)
        elif self.viewer.tool is not None and self.viewer.tool.widget is widget:
            self.viewer.tool = None
        self.viewer.update()

    def _forget_drawn_masks(self) -> None:
        for widget in self.mask_widgets():
            widget.mask = None
            widget.note_change()

    def update_title(self) -> None:
        """Series and patient; SYNTHETIC for a generated scan; the result being compared, if any."""
        scan, summary = self.scan, self.current
        if scan is None and self.stream is not None:
            scan = self.viewer.scan
        if scan is None:
            self.setWindowTitle("medscan")
            return
        title = summary.title if summary is not None else scan.description
        patient = summary.patient_name if summary is not None and summary.patient_name else "Anonymous"
        text = f"medscan — {'SYNTHETIC ' if scan.synthetic else ''}{scan.modality} {title} — {patient}"
        if self.showing_result and scan.provenance:
            text += f" — kept {scan.provenance[-1].operation} result"
        shown = self.workflow.shown
        if shown is not None:
            text += f" — comparing {shown.label()}"
        self.setWindowTitle(text)

    # ------------------------------------------------------------------------------------------
    # Viewer controls
    # ------------------------------------------------------------------------------------------
    def _fill_presets(self, modality: str) -> None:
        self.presetCombo.blockSignals(True)
        self.presetCombo.clear()
        self.menuPresets.clear()
        for action in self.presetGroup.actions():
            self.presetGroup.removeAction(action)
        from medscan.io.png import WINDOW_PRESETS

        for number, name in enumerate(window_presets(modality), start=1):
            label = preset_label(name)
            if name in WINDOW_PRESETS:
                center, width = WINDOW_PRESETS[name]
                label_full = f"{label}   (W {width:g} / L {center:g})"
            else:
                label_full = label
            self.presetCombo.addItem(label, name)
            action = QAction(label_full, self, checkable=True)
            action.setData(name)
            if number <= 9:
                action.setShortcut(QKeySequence(str(number)))
            action.triggered.connect(lambda _checked=False, n=name: self.viewer.apply_preset(n))
            self.presetGroup.addAction(action)
            self.menuPresets.addAction(action)
        self.presetCombo.blockSignals(False)

    def _on_preset_chosen(self, index: int) -> None:
        name = self.presetCombo.itemData(index)
        if name and name != CUSTOM:
            self.viewer.apply_preset(name)
            self.viewer.setFocus()

    def _on_window_changed(self, center: float, width: float, preset: str) -> None:
        combo = self.presetCombo
        custom_index = combo.findData(CUSTOM)
        if preset == CUSTOM:
            if custom_index < 0:
                combo.addItem(preset_label(CUSTOM), CUSTOM)
                custom_index = combo.count() - 1
            combo.setCurrentIndex(custom_index)
        else:
            if custom_index >= 0:
                combo.removeItem(custom_index)
            combo.setCurrentIndex(max(0, combo.findData(preset)))
            shown = self.scan if self.scan is not None else self.viewer.scan  # a series still loading too
            if shown is not None and self.persist:
                self.settings.setValue(f"preset/{shown.modality}", preset)
        for action in self.presetGroup.actions():
            action.setChecked(action.data() == preset)

    def _on_slice_changed(self, index: int, count: int) -> None:
        slider = self.sliceSlider
        slider.blockSignals(True)
        slider.setRange(0, max(0, count - 1))
        slider.setValue(index)
        slider.blockSignals(False)
        self.sliceLabel.setText(f"{index + 1} / {count}" if count else "– / –")

    def _on_plane_changed(self, plane: str) -> None:
        for action in self.planeGroup.actions():
            action.setChecked(action.data() == plane)

    def _on_volume_changed(self, index: int, count: int) -> None:
        self.volumeSpin.blockSignals(True)
        self.volumeSpin.setValue(index + 1)
        self.volumeSpin.blockSignals(False)
        shown = self.scan if self.scan is not None else self.viewer.scan
        labels = shown.volume_labels if shown is not None else []
        label = labels[index] if index < len(labels) else ""
        self.volumeInfo.setText(f"of {count}  {label}".strip() if count > 1 else "")
        four_d = count > 1
        for widget in (self.volumeLabel, self.volumeSpin, self.volumeInfo):
            widget.setVisible(four_d)

    def _update_enabled(self) -> None:
        """Viewing (scroll, window, fit) works on a series still loading; everything that acts on the series
        (exports, operations, other planes, its header) waits for ``self.scan``, the complete volume."""
        has_scan = self.scan is not None
        viewing = has_scan or self.viewer.scan is not None
        for action in (self.actionExportNifti, self.actionExportDicom, self.actionExportPng,
                       *self.planeGroup.actions()):
            action.setEnabled(has_scan)
        self.actionFit.setEnabled(viewing)
        volume = has_scan and min(self.scan.volume_shape) > 1  # type: ignore[union-attr]
        for action in self.planeGroup.actions():
            action.setEnabled(bool(volume))
        self.actionSeriesHeader.setEnabled(has_scan and self.scan.header is not None)  # type: ignore[union-attr]
        self.presetCombo.setEnabled(viewing)
        self.sliceSlider.setEnabled(viewing)
        for action in (self.actionPreview, self.actionRunSeries):
            action.setEnabled(has_scan)

    # ------------------------------------------------------------------------------------------
    # Export
    # ------------------------------------------------------------------------------------------
    def _suggested_name(self) -> str:
        scan = self.scan
        stem = f"{scan.modality}_{scan.series_number or 'series'}" if scan is not None else "scan"
        if scan is not None and scan.synthetic:
            stem += "_SYNTHETIC"
        return str(Path(self._last_folder()) / stem)

    def export_nifti(self) -> Job | None:
        return self.export_scan(self.scan, "nifti", self._suggested_name()) if self.scan is not None else None

    def export_dicom(self) -> Job | None:
        return self.export_scan(self.scan, "dicom", self._suggested_name()) if self.scan is not None else None

    def export_scan(self, scan: Scan, fmt: str, stem: str, maps: dict[str, Any] | None = None) -> Job | None:
        """Ask where, then write ``scan`` as a NIfTI volume ('nifti') or a derived DICOM series ('dicom').

        ``maps``: a result's maps; a generated result's uncertainty and generated region are written with it.
        """
        if fmt == "nifti":
            path, _ = QFileDialog.getSaveFileName(self, "Export NIfTI volume", stem + ".nii.gz",
                                                  "NIfTI (*.nii.gz *.nii)")
            if path and not path.lower().endswith((".nii", ".nii.gz")):
                path += ".nii.gz"
            title = "Exporting NIfTI"
        else:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export derived DICOM series into a new folder", stem + "_derived",
                "Folder (new or empty)", options=QFileDialog.Option.DontConfirmOverwrite)
            title = "Exporting DICOM series"
        if not path:
            return None
        return self._export(f"{title} {Path(path).name}", export_job, scan, path, maps)

    def export_png(self) -> Job | None:
        """The slice on screen - in the plane and with the window on screen - as a PNG."""
        if self.scan is None or self.viewer.stack is None:
            return None
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG of the current slice",
                                              self._suggested_name() + f"_{self.viewer.plane}.png", "PNG (*.png)")
        if not path:
            return None
        if not path.lower().endswith(".png"):
            path += ".png"
        stack = self.viewer.stack
        shown = dataclasses.replace(self.scan, voxels=stack.voxels, affine=stack.affine, source_refs=[])
        window = (self.viewer.window_center, self.viewer.window_width)
        return self._export(f"Exporting PNG {Path(path).name}", png_job, shown, path,
                            self.viewer.slice_index, self.viewer.volume, window)

    def _export(self, title: str, fn: Any, *args: Any) -> Job:
        job = self.jobs.run(title, fn, *args, kind="export")
        job.succeeded.connect(self._on_exported)
        job.failed.connect(lambda message: self.report_error("Export failed", message))
        return job

    def _on_exported(self, path: str) -> None:
        self._remember_folder(Path(path).parent)
        self.statusbar.showMessage(f"Exported {path}", 8000)
        self.exported.emit(path)

    # ------------------------------------------------------------------------------------------
    # Tools, status, errors
    # ------------------------------------------------------------------------------------------
    def show_header(self) -> None:
        if self.scan is None or self.scan.header is None:
            return
        dialog = qt_dialogs.HeaderDialog(self.current.title if self.current else self.scan.description,
                                         self.scan.header, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def report_error(self, title: str, message: str) -> None:
        """Show a person-readable error; the window stays usable."""
        self.statusbar.showMessage(message, 10000)
        self.errorReported.emit(message)
        self.error_handler(title, message)

    def _error_dialog(self, title: str, message: str) -> None:
        QMessageBox.critical(self, title, message)

    def _show_device(self) -> None:
        choice = self.opsPanel.device_choice()
        label = "CPU (chosen)" if choice == "cpu" else self.device.label
        if choice == "cuda" and not self.device.label.startswith("CUDA"):
            label = f"CUDA chosen, but {self.device.label}"
        self.deviceLabel.setText(f"Device: {label}")
        self.deviceLabel.setToolTip(f"{self.device.detail}; operations run on: {choice}")

    def show_about(self) -> None:
        """About box; on a CUDA build of torch it first asks torch about the GPU (in a worker)."""
        if self.device.may_have_cuda and not self.device.confirmed:
            job = self.jobs.run("Checking the GPU", device_job, kind="device")
            job.succeeded.connect(self._set_device)
            job.finished.connect(lambda: qt_dialogs.show_about(self, self.device))
            return
        qt_dialogs.show_about(self, self.device)

    def _set_device(self, device: Any) -> None:
        self.device = device
        self._show_device()

    def _update_memory(self) -> None:
        self.memoryLabel.setText(f"Memory {format_bytes(process_memory_bytes())}")

    # ------------------------------------------------------------------------------------------
    # Settings
    # ------------------------------------------------------------------------------------------
    def _last_folder(self) -> str:
        return self.settings.value("paths/last_folder", str(Path.home()), type=str)

    def last_folder(self) -> str:
        """Where file dialogs start: the folder last opened or exported to."""
        return self._last_folder()

    def _remember_folder(self, folder: Path) -> None:
        if self.persist:
            self.settings.setValue("paths/last_folder", str(folder))

    def recent_paths(self) -> list[str]:
        value = self.settings.value("paths/recent", [], type=list)
        return [str(v) for v in value if v]

    def _remember(self, path: Path) -> None:
        if not self.persist:
            return
        self._remember_folder(path if path.is_dir() else path.parent)
        recent = [str(path), *(p for p in self.recent_paths() if p != str(path))][:RECENT_LIMIT]
        self.settings.setValue("paths/recent", recent)

    def _fill_recent_menu(self) -> None:
        menu = self.menuRecent
        menu.clear()
        recent = self.recent_paths()
        for path in recent:
            action = menu.addAction(path)
            action.setEnabled(Path(path).exists())
            action.triggered.connect(lambda _checked=False, p=path: self.open_path(p))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear list", lambda: self.settings.setValue("paths/recent", []))
        else:
            menu.addAction("No recent folders or files").setEnabled(False)

    def _restore_settings(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None and self.persist:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None and self.persist:
            self.restoreState(state)

    def save_settings(self) -> None:
        if self.persist:
            self.settings.setValue("window/geometry", self.saveGeometry())
            self.settings.setValue("window/state", self.saveState())
            self.settings.sync()

    # ------------------------------------------------------------------------------------------
    # Qt events
    # ------------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.save_settings()
        self._memory_timer.stop()
        self.workflow.close()
        self.jobs.shutdown()
        self.database.close()
        super().closeEvent(event)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_path(paths[0])
            event.acceptProposedAction()
