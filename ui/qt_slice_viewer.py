"""The slice viewer: one plane of a Scan, windowed, with the overlays a radiologist expects.

Interaction (the common PACS defaults):

* wheel, Up/Down, PageUp/PageDown (10 slices), Home/End - scroll slices;
* Left/Right - previous/next volume of a 4-D series (slices otherwise);
* right-drag - window (horizontal: width) and level (vertical: center);
* ctrl+wheel or +/- - zoom about the cursor; left- or middle-drag - pan; double-click - fit.

Geometry comes from :mod:`medscan.view` (reformat, edge labels, spacing), windowing from
:mod:`medscan.io.png` (presets, ``apply_window``, the percentile default for MR); this widget only
draws. The displayed image keeps the true aspect ratio of its pixels (e.g. 0.98 x 2 mm in a
coronal reformat of 2 mm slices).

Memory: the viewer shows a scan's int16 voxels as they are while it holds them (``Scan.exact_integers``)
and windows one slice at a time, so showing a series never makes a float32 copy of it.

A series still being decoded (``set_scan(..., loading=stream)``) is shown in its acquisition plane only;
a slice not decoded yet is drawn as a "loading" note and asked for first (``loading.prioritize``), and
``refresh_loaded()`` draws it once it has arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen, QTransform
from PyQt6.QtWidgets import QSizePolicy, QWidget

from medscan.view import Reformat, acquisition_plane, adjust_window, axis_spacing, edge_labels, index_to_patient
from medscan.view import reformat as reformat_volume

if TYPE_CHECKING:
    from medscan.scan import Scan

AUTO = "auto"
CUSTOM = "custom"
_PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # patient axis each plane's slices step along
_AXIS_NAME = "xyz"
ZOOM_LIMITS = (0.1, 40.0)


class SliceLoader(Protocol):
    """What the viewer needs of a series being decoded (``medscan.io.stream.SeriesStream`` is one)."""

    def is_ready(self, t: int, k: int) -> bool: ...

    def prioritize(self, t: int, k: int) -> None: ...

    def ready_mask(self) -> np.ndarray: ...


def display_voxels(scan: Scan) -> np.ndarray:
    """The voxels to draw from: the int16 array while the scan holds one (same values, half the memory, and
    reading ``voxels`` would copy it to float32), else the float32 voxels."""
    integers = scan.exact_integers()
    return integers if integers is not None else scan.voxels


def window_presets(modality: str) -> list[str]:
    """Preset names offered for a modality: the CT presets in HU, else the percentile 'auto'."""
    if modality == "CT":
        from medscan.io.png import WINDOW_PRESETS

        return list(WINDOW_PRESETS)
    return [AUTO]


def preset_label(name: str) -> str:
    if name == AUTO:
        return "Auto (1-99th percentile)"
    if name == CUSTOM:
        return "Custom"
    return name.replace("_", " ").capitalize()


def default_preset(modality: str) -> str:
    return "soft_tissue" if modality == "CT" else AUTO


def format_value(value: float, units: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if units == "HU":
        return f"{value:.0f} HU"
    return f"{value:.4g} {units}".strip()


@dataclass(frozen=True)
class Readout:
    """The voxel under the cursor: display and source indices, value and patient position."""

    col: int
    row: int
    slice: int
    source_ijk: tuple[int, int, int]
    value: float
    units: str
    lps_mm: tuple[float, float, float]

    @property
    def value_text(self) -> str:
        return format_value(self.value, self.units)

    @property
    def position_text(self) -> str:
        x, y, z = self.lps_mm
        return f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm"

    def text(self) -> str:
        i, j, k = self.source_ijk
        return f"{self.value_text}   voxel (i {i}, j {j}, k {k})   {self.position_text}"


class SliceViewer(QWidget):
    """Shows one slice of a Scan; emits what changed so the window can keep its controls in step."""

    sliceChanged = pyqtSignal(int, int)  # index, count
    volumeChanged = pyqtSignal(int, int)  # index, count
    planeChanged = pyqtSignal(str)
    windowChanged = pyqtSignal(float, float, str)  # center, width, preset name (or 'custom')
    readoutChanged = pyqtSignal(str)
    zoomChanged = pyqtSignal(float)
    viewMoved = pyqtSignal()  # zoom or pan changed (linked before/after views follow it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 200)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.scan: Scan | None = None
        self.stack: Reformat | None = None
        self.plane = "axial"
        self.volume = 0
        self.slice_index = 0
        self.window_center, self.window_width = 0.0, 1.0
        self.preset = AUTO
        self.zoom = 1.0
        self.pan = QPointF(0.0, 0.0)
        self.placeholder = "Open a DICOM folder (Ctrl+O) or a file (Ctrl+Shift+O)"
        self.caption = ""  # e.g. 'BEFORE' / 'AFTER' while comparing
        self._pixels: np.ndarray | None = None
        self._image: QImage | None = None
        self._readout: Readout | None = None
        self._cursor: QPointF | None = None
        self._drag: tuple[Qt.MouseButton, QPointF, float, float, QPointF] | None = None
        self._wheel_rest = 0
        self.tool: Any = None  # e.g. a mask brush: takes the left button while installed
        self.layers: list[Any] = []  # e.g. the review panel's labels: each .paint(painter, transform)
        self._tool_drag = False
        self.loading: SliceLoader | None = None  # the series shown is still being decoded
        self._waiting = False  # the slice on screen was not decoded when last drawn

    # ------------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------------
    def set_scan(self, scan: Scan | None, preset: str | None = None, loading: SliceLoader | None = None) -> None:
        """Show ``scan`` in its acquisition plane, middle slice, fitted; ``preset`` if it applies.

        ``loading``: ``scan`` is still being decoded; its planes are drawn once ``loading.is_ready`` says so, the
        plane cannot change and ``finish_loading`` swaps in the finished scan.
        """
        self.scan = scan
        self.loading = loading if scan is not None else None
        self._readout = None
        if scan is None:
            self.stack = None
            self._invalidate()
            return
        self.volume = 0
        self.plane = acquisition_plane(scan.affine)
        self.stack = reformat_volume(display_voxels(scan), scan.affine, self.plane)
        self.slice_index = self.stack.shape[0] // 2
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        presets = window_presets(scan.modality)
        self.apply_preset(preset if preset in presets else default_preset(scan.modality))
        self.planeChanged.emit(self.plane)
        self.sliceChanged.emit(self.slice_index, self.slice_count)
        self.volumeChanged.emit(self.volume, scan.n_volumes)
        self.zoomChanged.emit(self.zoom)
        self.viewMoved.emit()

    def finish_loading(self, scan: Scan) -> None:
        """The series shown while loading is complete: show ``scan`` (the same voxels, finished) keeping the slice,
        volume, window, zoom and pan the user chose meanwhile; an 'auto' window is read again on the whole volume."""
        self.loading = None
        self._waiting = False
        self.scan = scan
        self.stack = reformat_volume(display_voxels(scan), scan.affine, self.plane)
        self.slice_index = min(self.slice_index, self.slice_count - 1)
        if self.preset == AUTO:
            self.apply_preset(AUTO)
        self._invalidate()

    def rebind_loading(self, scan: Scan, loading: SliceLoader) -> None:
        """The loader replaced its array (decoding restarted as float32): draw from ``scan``'s, keep the view."""
        self.scan, self.loading = scan, loading
        self.stack = reformat_volume(display_voxels(scan), scan.affine, self.plane)
        self._invalidate()

    def slice_ready(self, index: int | None = None) -> bool:
        """Whether slice ``index`` (default: the one on screen) of the current volume is decoded."""
        if self.loading is None or self.stack is None:
            return True
        index = self.slice_index if index is None else index
        return self.loading.is_ready(self.volume, self.stack.source_index(0, 0, index)[2])

    def refresh_loaded(self) -> None:
        """Draw the slice on screen if it arrived since it was drawn as 'loading' (call on progress)."""
        if self._waiting and self.slice_ready():
            self._invalidate()

    @property
    def slice_count(self) -> int:
        return self.stack.shape[0] if self.stack is not None else 0

    def set_plane(self, plane: str) -> None:
        """Reformat to 'axial', 'coronal' or 'sagittal' (a view, no copy); middle slice, fitted.

        Ignored while the series is loading: a reformat needs every slice."""
        if self.scan is None or (plane == self.plane and self.stack is not None) or self.loading is not None:
            return
        self.stack = reformat_volume(display_voxels(self.scan), self.scan.affine, plane)
        self.plane = plane
        self.slice_index = self.stack.shape[0] // 2
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        self._invalidate()
        self.planeChanged.emit(plane)
        self.sliceChanged.emit(self.slice_index, self.slice_count)
        self.zoomChanged.emit(self.zoom)
        self.viewMoved.emit()

    def set_slice(self, index: int) -> None:
        if self.stack is None:
            return
        index = int(np.clip(index, 0, self.slice_count - 1))
        if index != self.slice_index:
            self.slice_index = index
            self._ask_for_current()
            self._invalidate()
            self.sliceChanged.emit(index, self.slice_count)

    def _ask_for_current(self) -> None:
        """Scrolled ahead of the decoder: the slice on screen is decoded next."""
        if not self.slice_ready():
            assert self.loading is not None and self.stack is not None
            self.loading.prioritize(self.volume, self.stack.source_index(0, 0, self.slice_index)[2])

    def step_slice(self, delta: int) -> None:
        self.set_slice(self.slice_index + delta)

    def set_volume(self, index: int) -> None:
        if self.scan is None:
            return
        index = int(np.clip(index, 0, self.scan.n_volumes - 1))
        if index != self.volume:
            self.volume = index
            self._ask_for_current()
            if self.preset == AUTO:
                self.apply_preset(AUTO)
            self._invalidate()
            self.volumeChanged.emit(index, self.scan.n_volumes)

    def set_window(self, center: float, width: float, preset: str = CUSTOM) -> None:
        width = float(width)
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
            return
        self.window_center, self.window_width, self.preset = float(center), width, preset
        self._invalidate()
        self.windowChanged.emit(self.window_center, self.window_width, preset)

    def apply_preset(self, name: str) -> None:
        """A named CT window (HU) or 'auto' (1st-99th percentile of the current volume, of its decoded slices
        while loading)."""
        if self.scan is None:
            return
        from medscan.io.png import WINDOW_PRESETS, percentile_window

        if name == AUTO:
            voxels = display_voxels(self.scan)
            volume = voxels[self.volume] if voxels.ndim == 4 else voxels
            if self.loading is not None:
                volume = volume[self.loading.ready_mask()[self.volume]]
            center, width = percentile_window(volume)
        elif name in WINDOW_PRESETS:
            center, width = WINDOW_PRESETS[name]
        else:
            raise ValueError(f"unknown window preset {name!r}")
        self.set_window(center, width, name)

    def fit(self) -> None:
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        self._refresh_readout()
        self.update()
        self.zoomChanged.emit(self.zoom)
        self.viewMoved.emit()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``anchor`` (default: centre) in place."""
        if self.stack is None:
            return
        anchor = anchor if anchor is not None else QPointF(self.width_px / 2, self.height_px / 2)
        inverse, ok = self.image_transform().inverted()
        if not ok:
            return
        fixed = inverse.map(anchor)
        self.zoom = float(np.clip(self.zoom * factor, *ZOOM_LIMITS))
        moved = self.image_transform().map(fixed)
        self.pan += anchor - moved
        self._refresh_readout()
        self.update()
        self.zoomChanged.emit(self.zoom)
        self.viewMoved.emit()

    # ------------------------------------------------------------------------------------------
    # What is shown
    # ------------------------------------------------------------------------------------------
    def current_plane(self) -> np.ndarray:
        """The slice shown now in physical units, ``[row, col]`` (a view into the scan: int16 while the scan
        holds int16 voxels, else float32). Zero where the slice is not decoded yet (see ``slice_ready``)."""
        if self.stack is None:
            raise RuntimeError("no scan shown")
        voxels = self.stack.voxels
        return voxels[self.volume, self.slice_index] if voxels.ndim == 4 else voxels[self.slice_index]

    def current_pixels(self) -> np.ndarray:
        """The windowed uint8 slice as drawn (before scaling to the screen)."""
        self._ensure_image()
        assert self._pixels is not None
        return self._pixels

    def edge_labels(self) -> dict[str, str]:
        return edge_labels(self.stack.affine) if self.stack is not None else {}

    @property
    def width_px(self) -> float:
        return float(self.width())

    @property
    def height_px(self) -> float:
        return float(self.height())

    def pixel_size_mm(self) -> tuple[float, float]:
        """(column, row) spacing in mm of the displayed slice."""
        assert self.stack is not None
        col_mm, row_mm, _ = axis_spacing(self.stack.affine)
        return col_mm or 1.0, row_mm or 1.0

    def image_transform(self) -> QTransform:
        """Maps slice pixel coordinates (col, row; pixel (c, r) covers [c, c+1) x [r, r+1)) to the widget."""
        transform = QTransform()
        if self.stack is None:
            return transform
        _, rows, cols = self.stack.shape
        col_mm, row_mm = self.pixel_size_mm()
        fit = min(self.width_px / (cols * col_mm), self.height_px / (rows * row_mm))
        scale = fit * self.zoom
        transform.translate(self.width_px / 2 + self.pan.x(), self.height_px / 2 + self.pan.y())
        transform.scale(scale * col_mm, scale * row_mm)
        transform.translate(-cols / 2, -rows / 2)
        return transform

    def image_to_widget(self, col: float, row: float) -> QPointF:
        """Widget position of the centre of pixel (col, row)."""
        return self.image_transform().map(QPointF(col + 0.5, row + 0.5))

    def readout_at(self, pos: QPointF) -> Readout | None:
        """The voxel under widget position ``pos``, or None outside the image."""
        if self.stack is None or self.scan is None:
            return None
        inverse, ok = self.image_transform().inverted()
        if not ok:
            return None
        point = inverse.map(QPointF(pos))
        col, row = math.floor(point.x()), math.floor(point.y())
        _, rows, cols = self.stack.shape
        if not (0 <= col < cols and 0 <= row < rows) or not self.slice_ready():
            return None
        value = float(self.current_plane()[row, col])
        lps = index_to_patient(self.stack.affine, col, row, self.slice_index)
        return Readout(col, row, self.slice_index, self.stack.source_index(col, row, self.slice_index), value,
                       self.scan.units, (float(lps[0]), float(lps[1]), float(lps[2])))

    @property
    def readout(self) -> Readout | None:
        return self._readout

    def slice_position_text(self) -> str:
        """Where the current slice lies along its normal, e.g. 'z -782.5 mm' for an axial slice."""
        if self.stack is None:
            return ""
        _, rows, cols = self.stack.shape
        axis = _PLANE_AXIS[self.plane]
        centre = index_to_patient(self.stack.affine, (cols - 1) / 2, (rows - 1) / 2, self.slice_index)
        return f"{_AXIS_NAME[axis]} {centre[axis]:.1f} mm"

    # ------------------------------------------------------------------------------------------
    # Rendering
    # ------------------------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._pixels = None
        self._image = None
        self._refresh_readout()
        self.update()

    def _ensure_image(self) -> None:
        if self._image is not None or self.stack is None:
            return
        self._waiting = not self.slice_ready()
        from medscan.io.png import apply_window

        pixels = np.ascontiguousarray(apply_window(self.current_plane(), self.window_center, self.window_width))
        rows, cols = pixels.shape
        self._pixels = pixels
        # QImage borrows the buffer: self._pixels keeps it alive as long as the image.
        self._image = QImage(pixels.data, cols, rows, cols, QImage.Format.Format_Grayscale8)

    def _refresh_readout(self) -> None:
        readout = self.readout_at(self._cursor) if self._cursor is not None else None
        if readout != self._readout:
            self._readout = readout
            self.readoutChanged.emit(readout.text() if readout else "")

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#000000"))
        if self.stack is None or self.scan is None:
            self._paint_placeholder(painter)
            return
        self._ensure_image()
        transform = self.image_transform()
        painter.save()
        painter.setTransform(transform)
        # Bilinear when shrinking or mildly enlarging; crisp voxels once they are big on screen.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, transform.m11() < 4)
        assert self._image is not None
        if not self._waiting:
            painter.drawImage(QPointF(0, 0), self._image)
        painter.restore()
        if self._waiting:
            self._paint_placeholder(painter, f"Loading slice {self.slice_index + 1} …")
        self.paint_layers(painter, transform)
        for layer in self.layers:
            layer.paint(painter, transform)
        if self.tool is not None:
            self.tool.paint(painter, transform)
            self.tool.paint_cursor(painter, self._cursor)
        self._paint_overlays(painter)

    def paint_layers(self, painter: QPainter, transform: QTransform) -> None:
        """Drawn between the image and the text overlays; the compare view adds swipe, flicker and maps."""

    def set_view(self, zoom: float, pan: QPointF) -> None:
        """Take another view's zoom and pan (linked views); emits nothing, so links cannot loop."""
        if (zoom, pan) != (self.zoom, self.pan):
            self.zoom, self.pan = zoom, QPointF(pan)
            self._refresh_readout()
            self.update()

    def _paint_placeholder(self, painter: QPainter, text: str | None = None) -> None:
        painter.setPen(QColor("#8b9099"))
        font = QFont(self.font())
        font.setPointSizeF(max(10.0, font.pointSizeF() + 1))
        painter.setFont(font)
        painter.drawText(QRectF(self.rect()), Qt.AlignmentFlag.AlignCenter, self.placeholder if text is None else text)

    def overlay_text(self) -> dict[str, list[tuple[str, str]]]:
        """Corner texts as (text, colour role) lines: top_left, top_right, bottom_left, bottom_right."""
        assert self.scan is not None and self.stack is not None
        scan = self.scan
        header = scan.header
        get = (lambda key: str(header.get(key, "") or "").strip()) if header is not None else (lambda key: "")
        name = get("PatientName").replace("^", " ").strip() or "Anonymous"
        patient_bits = [f"ID {get('PatientID')}" if get("PatientID") else "", get("PatientSex"), get("PatientAge")]
        study = " ".join(bit for bit in (format_dicom_date(get("StudyDate")), get("StudyDescription")) if bit)
        top_left = [(name, "title"), ("  ".join(b for b in patient_bits if b), "text"), (study, "text"),
                    (get("InstitutionName"), "muted")]
        series_no = scan.series_number if scan.series_number is not None else ""
        _, rows, cols = self.stack.shape
        col_mm, row_mm = self.pixel_size_mm()
        top_right = [
            (f"{scan.modality}  {scan.description}".strip(), "title"),
            (f"Series {series_no}".strip() if series_no != "" else "", "text"),
            (f"{self.plane.capitalize()}  {cols} x {rows}", "text"),
            (" ".join(bit for bit in (get("Manufacturer"), get("ManufacturerModelName")) if bit), "muted"),
        ]
        if scan.synthetic:
            top_right.insert(0, ("SYNTHETIC - not acquired", "alert"))
        if self.caption:
            top_right.insert(0, (self.caption, "caption"))
        bottom_left = []
        if self._readout is not None:
            i, j, k = self._readout.source_ijk
            bottom_left += [(self._readout.value_text, "readout"),
                            (f"i {i}  j {j}  k {k}   {self._readout.position_text}", "readout")]
        bottom_left.append((f"Im {self.slice_index + 1} / {self.slice_count}   {self.slice_position_text()}", "text"))
        if scan.n_volumes > 1:
            label = scan.volume_labels[self.volume] if self.volume < len(scan.volume_labels) else ""
            bottom_left.append((f"Vol {self.volume + 1} / {scan.n_volumes}  {label}".strip(), "text"))
        window = f"W {self.window_width:.4g}  L {self.window_center:.4g}"
        if self.preset != CUSTOM:
            window += f"   {preset_label(self.preset).split(' (')[0]}"
        bottom_right = [(window, "text"),
                        (f"Zoom {self.display_scale() * 100:.0f}%   {col_mm:.2f} x {row_mm:.2f} mm", "text")]
        return {"top_left": [line for line in top_left if line[0]],
                "top_right": [line for line in top_right if line[0]],
                "bottom_left": bottom_left, "bottom_right": bottom_right}

    def display_scale(self) -> float:
        """Screen pixels per image pixel along the columns (100% = one to one)."""
        return float(self.image_transform().m11())

    def _paint_overlays(self, painter: QPainter) -> None:
        colors = {"title": QColor("#f2f2f2"), "text": QColor("#d6d8dc"), "muted": QColor("#9aa0a8"),
                  "readout": QColor("#7fd3ff"), "alert": QColor("#ff8a3d"), "caption": QColor("#4ea1ff")}
        font = QFont(self.font())
        base = font.pointSizeF() if font.pointSizeF() > 0 else 9.0
        font.setPointSizeF(base)
        bold = QFont(font)
        bold.setBold(True)
        metrics = QFontMetricsF(font)
        line = metrics.height() + 1
        margin = 8.0
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        texts = self.overlay_text()

        def block_width(lines: list[tuple[str, str]]) -> float:
            return max((QFontMetricsF(bold if role in ("title", "alert", "caption") else font).horizontalAdvance(text)
                        for text, role in lines), default=0.0)

        def draw(lines: list[tuple[str, str]], x: float, y: float, right: bool, upward: bool) -> None:
            ordered = list(reversed(lines)) if upward else lines
            for index, (text, role) in enumerate(ordered):
                painter.setFont(bold if role in ("title", "alert", "caption") else font)
                fm = QFontMetricsF(painter.font())
                width = fm.horizontalAdvance(text)
                tx = x - width if right else x
                ty = (y - index * line) if upward else (y + index * line + fm.ascent())
                _shadow_text(painter, QPointF(tx, ty), text, colors[role])

        def clear_of(left: list[tuple[str, str]], right: list[tuple[str, str]], label: str, label_fm) -> int:
            """How many text lines the centred edge label must step over so as not to touch a corner block."""
            half = label_fm.horizontalAdvance(label) / 2 + 14
            hits = [len(block) for block, reach in ((left, margin + block_width(left)),
                                                    (right, self.width_px - margin - block_width(right)))
                    if (block is left and reach > self.width_px / 2 - half)
                    or (block is right and reach < self.width_px / 2 + half)]
            return max(hits, default=0)

        w, h = self.width_px, self.height_px
        draw(texts["top_left"], margin, margin, right=False, upward=False)
        draw(texts["top_right"], w - margin, margin, right=True, upward=False)
        bottom = h - margin - metrics.descent()
        draw(texts["bottom_left"], margin, bottom, right=False, upward=True)
        draw(texts["bottom_right"], w - margin, bottom, right=True, upward=True)

        labels = self.edge_labels()
        label_font = QFont(font)
        label_font.setPointSizeF(base + 3)
        label_font.setBold(True)
        painter.setFont(label_font)
        fm = QFontMetricsF(label_font)
        colour = QColor("#ffd24a")
        positions = {
            "left": QPointF(margin, h / 2 + fm.ascent() / 2),
            "right": QPointF(w - margin - fm.horizontalAdvance(labels.get("right", "")), h / 2 + fm.ascent() / 2),
            "top": QPointF(w / 2 - fm.horizontalAdvance(labels.get("top", "")) / 2,
                           margin + fm.ascent() + line * clear_of(texts["top_left"], texts["top_right"],
                                                                 labels.get("top", ""), fm)),
            "bottom": QPointF(w / 2 - fm.horizontalAdvance(labels.get("bottom", "")) / 2,
                              h - margin - fm.descent() - line * clear_of(texts["bottom_left"], texts["bottom_right"],
                                                                         labels.get("bottom", ""), fm)),
        }
        for edge, point in positions.items():
            _shadow_text(painter, point, labels.get(edge, ""), colour)
        self._paint_scale_bar(painter, font)

    def _paint_scale_bar(self, painter: QPainter, font: QFont) -> None:
        """A vertical ruler at the right edge: 1, 2, 5, 10, 20 or 50 mm steps, about a fifth of the height."""
        _, row_mm = self.pixel_size_mm()
        px_per_mm = self.image_transform().m22() / row_mm
        if px_per_mm <= 0:
            return
        target = self.height_px / 5 / px_per_mm
        length_mm = next((mm for mm in (10, 20, 50, 100, 200, 500) if mm >= target * 0.6), 500)
        length_px = length_mm * px_per_mm
        if length_px > self.height_px * 0.6 or length_px < 20:
            return
        x = self.width_px - 30
        y0 = self.height_px / 2 + 40
        pen = QPen(QColor("#d6d8dc"))
        pen.setWidthF(1.0)
        painter.setPen(pen)
        ticks = 5 if length_mm % 5 == 0 else 2
        painter.drawLine(QPointF(x, y0), QPointF(x, y0 + length_px))
        for t in range(ticks + 1):
            y = y0 + length_px * t / ticks
            painter.drawLine(QPointF(x - (6 if t in (0, ticks) else 3), y), QPointF(x, y))
        painter.setFont(font)
        text = f"{length_mm / 10:g} cm" if length_mm >= 10 else f"{length_mm} mm"
        fm = QFontMetricsF(font)
        _shadow_text(painter, QPointF(x - fm.horizontalAdvance(text) + 4, y0 + length_px + fm.ascent() + 3),
                     text, QColor("#d6d8dc"))

    # ------------------------------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:
        if self.stack is None:
            return
        self._wheel_rest += event.angleDelta().y()  # 120 per notch; touchpads send less, more often
        steps = int(self._wheel_rest / 120)
        self._wheel_rest -= steps * 120
        if steps == 0:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.15 ** steps, event.position())
        else:
            self.step_slice(-steps)  # wheel away from you goes toward the first slice, as in PACS
        event.accept()

    def keyPressEvent(self, event) -> None:
        key = event.key()
        keys = Qt.Key
        four_d = self.scan is not None and self.scan.n_volumes > 1
        if key in (keys.Key_Up,):
            self.step_slice(-1)
        elif key in (keys.Key_Down,):
            self.step_slice(1)
        elif key == keys.Key_PageUp:
            self.step_slice(-10)
        elif key == keys.Key_PageDown:
            self.step_slice(10)
        elif key == keys.Key_Home:
            self.set_slice(0)
        elif key == keys.Key_End:
            self.set_slice(self.slice_count - 1)
        elif key == keys.Key_Left:
            self.set_volume(self.volume - 1) if four_d else self.step_slice(-1)
        elif key == keys.Key_Right:
            self.set_volume(self.volume + 1) if four_d else self.step_slice(1)
        elif key in (keys.Key_Plus, keys.Key_Equal):
            self.zoom_by(1.25)
        elif key == keys.Key_Minus:
            self.zoom_by(1 / 1.25)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def mousePressEvent(self, event) -> None:
        button = event.button()
        if self.tool is not None and self.stack is not None and button == Qt.MouseButton.LeftButton:
            self._tool_drag = True
            self.tool.press(event.position(), bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
            event.accept()
            return
        if self.stack is not None and button in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton,
                                                 Qt.MouseButton.RightButton):
            self._drag = (button, event.position(), self.window_center, self.window_width, QPointF(self.pan))
            cursor = Qt.CursorShape.SizeAllCursor if button == Qt.MouseButton.RightButton else \
                Qt.CursorShape.ClosedHandCursor
            self.setCursor(cursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        position = event.position()
        if self._tool_drag and self.tool is not None:
            self.tool.move(position)
        if self._drag is not None:
            button, start, center, width, pan = self._drag
            delta = position - start
            if button == Qt.MouseButton.RightButton:
                sensitivity = max(width, 1e-6) / 256.0
                self.set_window(*adjust_window(center, width, delta.x(), delta.y(), sensitivity))
            else:
                self.pan = pan + delta
                self.update()
                self.viewMoved.emit()
        self._cursor = position
        self._refresh_readout()
        if self._readout is not None:
            self.update()
        if self._drag is None:
            self.setCursor(Qt.CursorShape.CrossCursor if self._readout is not None else Qt.CursorShape.ArrowCursor)
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        if self._tool_drag and event.button() == Qt.MouseButton.LeftButton:
            self._tool_drag = False
            if self.tool is not None:
                self.tool.release()
            event.accept()
            return
        if self._drag is not None and event.button() == self._drag[0]:
            self._drag = None
            self.setCursor(Qt.CursorShape.CrossCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.fit()
            event.accept()

    def leaveEvent(self, event) -> None:
        self._cursor = None
        self._refresh_readout()
        self.update()
        super().leaveEvent(event)

    def resizeEvent(self, event) -> None:
        self._refresh_readout()
        super().resizeEvent(event)


def _shadow_text(painter: QPainter, point: QPointF, text: str, colour: QColor) -> None:
    """Text with a dark outline, readable over any grey level."""
    if not text:
        return
    painter.setPen(QColor(0, 0, 0, 220))
    for dx, dy in ((1, 1), (-1, 1), (1, -1), (-1, -1), (0, 1)):
        painter.drawText(point + QPointF(dx, dy), text)
    painter.setPen(colour)
    painter.drawText(point, text)


def format_dicom_date(value: str) -> str:
    """'20221208' -> '2022-12-08'; anything else unchanged."""
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value
