"""Try, compare, keep or discard, export: what happens between the Operations dock and the viewers.

Preview runs the chosen operation on the slice on screen (a one-slice Scan in that plane, geometry
kept), Run on series on the whole series; both are jobs with progress and cancel. A finished result
joins the list and opens before/after: the main viewer shows the input (BEFORE), the compare view
the output (AFTER), linked so that slice, window, zoom and pan stay the same in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtWidgets import QMainWindow

from ui.qt_compare import MODES, ViewLink
from ui.qt_mask_brush import plane_of_mask
from ui.qt_results import ResultEntry, operation_job, preview_scan

if TYPE_CHECKING:
    from medscan.ops import Result
    from medscan.scan import Scan
    from ui.qt_workers import Job


class ResultWorkflow(QObject):
    """Owns the results of this session and the before/after comparison."""

    resultAdded = pyqtSignal(object)  # ResultEntry
    resultShown = pyqtSignal(object)  # ResultEntry now compared
    comparisonClosed = pyqtSignal()

    def __init__(self, window: QMainWindow) -> None:
        """``window``: the MainWindow (its operations panel, viewers, compare bar, jobs and settings); typed as
        its Qt base so that this module, which the window imports, does not import the window back."""
        super().__init__(window)
        self.window = window
        self.panel = window.opsPanel
        self.results = window.opsPanel.results
        self.after = window.afterViewer
        self.bar = window.compareBar
        self.link: ViewLink | None = None
        self.shown: ResultEntry | None = None
        self.mode = "side"
        self.panel.previewRequested.connect(self.preview)
        self.panel.runRequested.connect(self.run_series)
        self.results.chosen.connect(self.show)
        self.results.keepRequested.connect(self.keep)
        self.results.discardRequested.connect(self.discard)
        self.results.exportRequested.connect(self.export)
        self.bar.modeChanged.connect(self.set_mode)
        self.bar.overlayChanged.connect(self._on_overlay)
        self.bar.closeRequested.connect(self.close)
        if window.persist:  # the last compare mode and overlay opacity (not for reproducible screenshots)
            mode = window.settings.value("compare/mode", "side", type=str)
            self.set_mode(mode if mode in MODES else "side")
            self.bar.opacity.setValue(window.settings.value("compare/opacity", 60, type=int))

    # -- running ---------------------------------------------------------------------------------
    def preview(self, name: str, params: dict[str, Any] | None = None) -> Job | None:
        """Run ``name`` on the slice on screen (plane, slice and volume as shown)."""
        viewer = self.window.viewer
        if self.window.scan is None or viewer.stack is None:
            return None
        origin = (viewer.plane, viewer.slice_index, viewer.volume)
        scan = self.window.scan
        single = preview_scan(scan, viewer.stack, viewer.slice_index, viewer.volume)
        # A drawn region (mask parameter) is cut to the previewed plane like the image itself.
        params = {k: plane_of_mask(v, scan.affine, viewer.plane, viewer.slice_index) if isinstance(v, np.ndarray)
                  else v for k, v in (params or {}).items()}
        return self._start(name, params, single, origin)

    def run_series(self, name: str, params: dict[str, Any] | None = None) -> Job | None:
        """Run ``name`` on every slice (and volume) of the series shown."""
        scan = self.window.scan
        if scan is None:
            return None
        # A region drawn on a 4-D series applies to every volume of it.
        params = {k: np.broadcast_to(v, scan.voxels.shape) if isinstance(v, np.ndarray) else v
                  for k, v in (params or {}).items()}
        return self._start(name, params, scan, None)

    def _start(self, name: str, params: dict[str, Any] | None, scan: Scan,
               origin: tuple[str, int, int] | None) -> Job | None:
        from medscan.ops import get
        from medscan.ops.registry import recordable
        from medscan.scan import MedscanError

        window = self.window
        try:
            operation = get(name)
        except MedscanError as exc:
            window.report_error("Cannot run", str(exc))
            return None
        values = {**operation.defaults(), **(params or {})}
        device = self.panel.device_choice()
        source, summary = window.scan, window.current
        scope = "series" if origin is None else f"{origin[0]} slice {origin[1] + 1}"
        job = window.jobs.run(f"{operation.title} · {scope}", operation_job, name, scan, device, values,
                              kind="operation")

        def done(result: Result) -> None:
            self._add(ResultEntry(operation, result, scan, source, summary, recordable(values), device, origin))

        job.succeeded.connect(done)
        job.failed.connect(lambda message: window.report_error(f"{operation.title} failed", message))
        return job

    def _add(self, entry: ResultEntry) -> None:
        self.resultAdded.emit(entry)
        self.results.add(entry)  # choosing it shows before/after
        if entry.flagged:
            self.window.statusbar.showMessage(f"{entry.operation.title}: flagged by the fidelity guard - "
                                              f"{'; '.join(entry.result.fidelity.reasons)}", 10000)

    # -- comparing -------------------------------------------------------------------------------
    def show(self, entry: ResultEntry | None) -> None:
        """Compare ``entry``'s input and output, linked; None closes the comparison."""
        if entry is None:
            self.close()
            return
        window = self.window
        if window.scan is not entry.source:
            window.show_scan(entry.source, entry.source_summary)  # closes any comparison
        self._unlink()
        viewer = window.viewer
        if entry.origin is not None:
            plane, index, volume = entry.origin
            viewer.set_plane(plane)
            viewer.set_volume(volume)
            viewer.set_slice(index)
        caption = f"AFTER · {entry.operation.title}" + (" · SYNTHETIC" if entry.synthetic else "")
        self.after.set_comparison(entry.before, entry.after, entry.result.maps, caption)
        self.bar.set_modes_available(self.after.same_grid)
        self.after.set_mode(self.mode if self.after.same_grid else "side")
        self.bar.set_mode(self.after.mode)
        viewer.caption = "BEFORE"
        viewer.update()
        self.link = ViewLink(viewer, self.after, entry.origin)
        self.bar.set_overlays(self.after.overlay_names(), self.after.overlay_name)
        self.shown = entry
        self._layout()
        window.update_title()
        self.resultShown.emit(entry)

    def set_mode(self, mode: str) -> None:
        """'side' (two linked views), 'swipe' or 'flicker' (one view, before and after in place)."""
        self.mode = mode
        if self.after.same_grid:
            self.after.set_mode(mode)
        self.bar.set_mode(self.after.mode)
        self._layout()
        if self.window.persist:
            self.window.settings.setValue("compare/mode", mode)

    def _on_overlay(self, name: str, opacity: float) -> None:
        self.after.set_overlay(name, opacity)
        if self.window.persist:
            self.window.settings.setValue("compare/opacity", round(opacity * 100))

    def close(self) -> None:
        if self.shown is None:
            return
        self._unlink()
        self.shown = None
        self.after.clear_comparison()
        self.window.viewer.caption = ""
        self.window.viewer.update()
        self._layout()
        self.results.list.setCurrentRow(-1)
        self.window.update_title()
        self.comparisonClosed.emit()

    def _unlink(self) -> None:
        if self.link is not None:
            self.link.unlink()
            self.link.deleteLater()
            self.link = None

    def _layout(self) -> None:
        comparing = self.shown is not None
        self.bar.setVisible(comparing)
        self.after.setVisible(comparing)
        self.window.viewer.setVisible(not comparing or self.after.mode == "side")

    # -- keep, discard, export -------------------------------------------------------------------
    def keep(self, entry: ResultEntry) -> None:
        """A kept series result becomes the series shown, so the next operation works on it."""
        if entry.origin is not None:
            return
        entry.kept = True
        self.results.refresh(entry)
        self.window.database.keep(entry)  # also in the study database, when signed in
        self.close()
        self.window.show_scan(entry.after, entry.source_summary, result=True)
        self.window.statusbar.showMessage(f"Kept {entry.label()}: now showing the result", 8000)

    def discard(self, entry: ResultEntry) -> None:
        if entry is self.shown:
            self.close()
        self.results.remove(entry)

    def export(self, entry: ResultEntry, fmt: str) -> Job | None:
        """NIfTI or derived DICOM through the window's export jobs, named after the result."""
        stem = str(Path(self.window.last_folder()) / entry.export_stem())
        return self.window.export_scan(entry.after, fmt, stem, entry.result.maps)
