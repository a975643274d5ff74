"""Synthesize scans from noise (Generate tab and Tools menu): choose a class, sample, review a gallery, export.

The engine does the work (``medscan.synth``: sampling, the memorisation check, the SYNTHETIC export); this
dialog only drives it. Every tile is labelled SYNTHETIC; a slice the memorisation check refused (too close to
a training slice) is shown struck through in red and is never exported — the export writes only the slices
that passed, and says how many were held back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QAction, QColor, QFont, QIcon, QImage, QPainter, QPen, QPixmap
from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

TILE = 160
PREVIEW = 384
CT_WINDOWS = {"head": (40.0, 120.0), "brain": (40.0, 80.0)}  # (centre, width) HU; other regions: soft tissue
CT_SOFT_TISSUE = (40.0, 400.0)
REFUSED_RGB = (230, 60, 60)
SYNTHETIC_RGB = (255, 90, 220)


def synth_job(ctx: Any, modality: str, region: str, count: int, seed: int, steps: int, mask: str | None) -> Any:
    """Worker: sample ``count`` slices; cancelling stops between denoising steps."""
    from medscan.synth import synthesize

    def progress(done: int, total: int) -> None:
        ctx.check()
        ctx.report(done, total, f"denoising step {done} of {total}")

    return synthesize(modality, region, count, seed=seed, mask=mask or None, steps=steps, progress=progress)


def export_job(_ctx: Any, batch: Any, outdir: str, fmt: str) -> list[str]:
    from medscan.synth import export_synthetic_study

    return [str(p) for p in export_synthetic_study(batch, outdir, fmt=fmt)]


def display_window(batch: Any) -> tuple[float, float]:
    """CT by its region's usual window (HU are absolute); MR by the batch's 1st-99th percentile."""
    if batch.modality == "CT":
        return CT_WINDOWS.get(batch.region, CT_SOFT_TISSUE)
    low, high = np.percentile(batch.slices, [1.0, 99.0])
    return float(low + high) / 2.0, max(float(high - low), 1e-6)


def tile(image: np.ndarray, window: tuple[float, float], size: int, refused: bool) -> QPixmap:
    """The slice windowed to 8 bit, scaled, with the SYNTHETIC label (and a red strike when refused)."""
    from medscan.io.png import apply_window  # the engine's I/O loads only when a tile is drawn (fast start-up)

    grey = np.ascontiguousarray(apply_window(image, *window))
    qimage = QImage(grey.data, grey.shape[1], grey.shape[0], grey.shape[1], QImage.Format.Format_Grayscale8).copy()
    pixmap = QPixmap.fromImage(qimage).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation)
    painter = QPainter(pixmap)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(max(10, size // 14))
    painter.setFont(font)
    painter.setPen(QColor(*SYNTHETIC_RGB))
    painter.drawText(6, 4 + font.pixelSize(), "SYNTHETIC")
    if refused:
        painter.setPen(QPen(QColor(*REFUSED_RGB), max(3, size // 40)))
        painter.drawRect(1, 1, pixmap.width() - 2, pixmap.height() - 2)
        painter.drawLine(0, pixmap.height(), pixmap.width(), 0)
        painter.drawText(6, pixmap.height() - 8, "REFUSED: memorised")
    painter.end()
    return pixmap


class SynthesizeDialog(QDialog):
    """Choose class, count, seed, steps and an optional lesion mask; sample in the background; review; export."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.window_ = window
        self.batch: Any = None
        self.job: Any = None
        self.setWindowTitle("Synthesize scans from noise — SYNTHETIC")
        self.setObjectName("synthesizeDialog")
        self.klass = QComboBox()
        self.count = QSpinBox()
        self.count.setRange(1, 64)
        self.count.setValue(8)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The same class, seed and steps give the same slices")
        self.steps = QSpinBox()
        self.steps.setRange(5, 200)
        self.steps.setValue(25)
        self.steps.setToolTip("DDIM denoising steps: more is slower and usually cleaner")
        self.mask = QLineEdit()
        self.mask.setPlaceholderText("none — optional lesion mask (one 128x128 slice: NIfTI, DICOM or .npy)")
        self.mask.setReadOnly(True)
        choose, clear = QPushButton("Choose…"), QPushButton("Clear")
        choose.clicked.connect(self._choose_mask)
        clear.clicked.connect(self.mask.clear)
        mask_row = QHBoxLayout()
        mask_row.addWidget(self.mask, 1)
        mask_row.addWidget(choose)
        mask_row.addWidget(clear)
        form = QFormLayout()
        form.addRow("Class", self.klass)
        form.addRow("Slices", self.count)
        form.addRow("Seed", self.seed)
        form.addRow("Steps", self.steps)
        form.addRow("Lesion mask", mask_row)
        self.generate_button = QPushButton("Generate")
        self.export_dicom = QPushButton("Export DICOM…")
        self.export_nifti = QPushButton("Export NIfTI…")
        self.generate_button.clicked.connect(self.generate)
        self.export_dicom.clicked.connect(lambda: self.export("dicom"))
        self.export_nifti.clicked.connect(lambda: self.export("nifti"))
        buttons = QHBoxLayout()
        for button in (self.generate_button, self.export_dicom, self.export_nifti):
            buttons.addWidget(button)
        self.gallery = QListWidget()
        self.gallery.setObjectName("synthGallery")
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(TILE, TILE))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setMovement(QListWidget.Movement.Static)
        self.gallery.setSpacing(4)
        self.gallery.currentRowChanged.connect(self._show_large)
        self.large = QLabel("Generate to see samples here")
        self.large.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.large.setMinimumSize(PREVIEW, PREVIEW)
        self.status = QLabel()
        self.status.setWordWrap(True)
        views = QHBoxLayout()
        views.addWidget(self.gallery, 1)
        views.addWidget(self.large)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(views, 1)
        layout.addWidget(self.status)
        self.resize(1100, 640)
        self._load_classes()
        self._update_enabled()

    # -- set-up -----------------------------------------------------------------------------------------------
    def _load_classes(self) -> None:
        from medscan.scan import MedscanError
        from medscan.synth import available_classes

        try:
            classes = available_classes()
        except (MedscanError, OSError) as exc:
            self.status.setText(f"Synthesis is not available: {exc}")
            classes = []
        for modality, region in classes:
            self.klass.addItem(f"{modality} {region}", (modality, region))

    def _choose_mask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Lesion mask (one 128x128 slice)", "",
                                              "Masks (*.nii *.nii.gz *.dcm *.npy);;All files (*)")
        if path:
            self.mask.setText(path)

    def _update_enabled(self) -> None:
        running = self.job is not None
        self.generate_button.setEnabled(not running and self.klass.count() > 0)
        exportable = self.batch is not None and bool(np.any(self.batch.passed)) and not running
        self.export_dicom.setEnabled(exportable)
        self.export_nifti.setEnabled(exportable)

    # -- sampling ---------------------------------------------------------------------------------------------
    def generate(self) -> None:
        modality, region = self.klass.currentData()
        count, seed, steps = self.count.value(), self.seed.value(), self.steps.value()
        self.status.setText(f"Sampling {count} {modality} {region} slices (seed {seed}, {steps} steps)…")
        self.job = self.window_.jobs.run(f"Synthesizing {count} {modality} {region}", synth_job, modality, region,
                                         count, seed, steps, self.mask.text() or None, kind="synthesize")
        self.job.succeeded.connect(self._on_sampled)
        self.job.failed.connect(lambda message: self.status.setText(f"Not generated: {message}"))
        self.job.finished.connect(self._on_job_ended)
        self._update_enabled()

    def _on_job_ended(self) -> None:
        self.job = None
        self._update_enabled()

    def _on_sampled(self, batch: Any) -> None:
        self.batch = batch
        window = display_window(batch)
        self.gallery.clear()
        for i, image in enumerate(batch.slices):
            refused = bool(batch.memorised[i])
            verdict = ("REFUSED — closer to a training slice than any real different patient"
                       if refused else "passed the memorisation check")
            item = QListWidgetItem(QIcon(tile(image, window, TILE, refused)), f"#{i + 1}")
            item.setToolTip(f"SYNTHETIC {batch.class_name} #{i + 1}, seed {batch.seed}: nearest training slice "
                            f"SSIM {batch.nn_ssim[i]:.3f} (threshold {batch.threshold:.3f}) — {verdict}")
            self.gallery.addItem(item)
        refused = int(np.sum(batch.memorised))
        self.status.setText(f"{len(batch.slices)} SYNTHETIC {batch.class_name} slices, {batch.spacing_mm:.2f} mm "
                            f"pixels; {refused} refused by the memorisation check (never exported). Model "
                            f"{batch.model} {batch.model_sha256[:12]}.")
        self.gallery.setCurrentRow(0)

    def _show_large(self, row: int) -> None:
        if self.batch is None or not 0 <= row < len(self.batch.slices):
            return
        self.large.setPixmap(tile(self.batch.slices[row], display_window(self.batch), PREVIEW,
                                  bool(self.batch.memorised[row])))

    # -- export -----------------------------------------------------------------------------------------------
    def export(self, fmt: str, outdir: str | None = None) -> None:
        if self.batch is None:
            return
        if outdir is None:
            outdir = QFileDialog.getExistingDirectory(self, f"Export the SYNTHETIC study ({fmt.upper()}) into")
            if not outdir:
                return
        held_back = int(np.sum(self.batch.memorised))
        job = self.window_.jobs.run(f"Exporting SYNTHETIC {fmt.upper()}", export_job, self.batch, outdir, fmt,
                                    kind="synthesize")
        job.succeeded.connect(lambda paths: self.status.setText(
            f"Exported {len(paths)} files to {outdir} (SYNTHETIC^PATIENT, fresh UIDs); {held_back} memorised "
            f"slices held back."))
        job.failed.connect(lambda message: self.status.setText(f"Not exported: {message}"))


def install(window: Any) -> QAction:
    """Tools › Synthesize scans… and a button under the Generate tab, both opening one dialog."""
    action = QAction("&Synthesize scans from noise…", window)
    action.setToolTip("Generate SYNTHETIC slices (MR brain, CT head/chest/abdomen), check them for memorisation, "
                      "export a synthetic study")

    def open_dialog() -> None:
        dialog = getattr(window, "synthesize_dialog", None)
        if dialog is None:
            dialog = window.synthesize_dialog = SynthesizeDialog(window)
        dialog.show()
        dialog.raise_()

    action.triggered.connect(open_dialog)
    if hasattr(window, "menuTools"):
        window.menuTools.addAction(action)
    panel = getattr(getattr(window, "opsPanel", None), "panels", {}).get("generate")
    if panel is not None:
        button = QPushButton("Synthesize scans from noise…")
        button.setObjectName("synthesizeButton")
        button.setToolTip(action.toolTip())
        button.clicked.connect(action.trigger)
        panel.layout().addWidget(button)
    return action

