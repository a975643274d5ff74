"""Before/after: a view of a result linked to the original, with swipe, flicker and a difference overlay.

The after view is a :class:`SliceViewer` that also knows the *before* scan, so one widget can show
side by side (paired with the main viewer through a :class:`ViewLink`), a swipe (before left of a
draggable divider, after right of it) or a flicker (the two alternate in place, where the eye sees
what changed). A signed map - after minus before, or an operation's own map such as the method
noise - is drawn on top in orange (positive) and blue (negative) with an opacity control.

A result on another grid (super-resolution: more pixels or slices over the same field of view) is
compared side by side only: the views are drawn in millimetres, so zoom and pan already agree, and
the slice shown is the one nearest in patient position. Swipe, flicker and the difference need the
same pixels on both sides and are offered only then.

Only display work happens here (windowing, colouring); the maps come from the engine's Result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PyQt6.QtCore import QObject, QPointF, QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen, QTransform
from PyQt6.QtWidgets import QButtonGroup, QComboBox, QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

from medscan.view import Reformat, index_to_patient
from medscan.view import reformat as reformat_volume
from ui.qt_slice_viewer import SliceViewer, _shadow_text, format_value

if TYPE_CHECKING:
    from medscan.scan import Scan

MODES = {"side": "Side by side", "swipe": "Swipe", "flicker": "Flicker"}
DIFFERENCE = "difference"
FLICKER_MS = 700
POSITIVE_RGB = (255, 140, 40)
NEGATIVE_RGB = (60, 160, 255)
GENERATED = "generated"  # a Generate result's map of the voxels it made up
GENERATED_RGBA = (255, 40, 220, 230)


def map_title(name: str) -> str:
    """'method_noise' -> 'Method noise'; the difference overlay has its own wording."""
    return "Difference (after − before)" if name == DIFFERENCE else name.replace("_", " ").capitalize()


def signed_overlay(values: np.ndarray, opacity: float) -> tuple[np.ndarray, float]:
    """RGBA pixels for a signed map and the magnitude that is fully opaque (99.5th percentile of |map|).

    Zero is transparent, so the anatomy stays readable under the overlay; larger changes are more opaque.
    """
    magnitude = np.abs(np.nan_to_num(values.astype(np.float32)))
    scale = float(np.percentile(magnitude, 99.5)) if magnitude.size else 0.0
    if scale <= 0:
        scale = float(magnitude.max()) or 1.0
    rgba = np.zeros((*values.shape, 4), np.uint8)
    positive = values >= 0
    for channel in range(3):
        rgba[..., channel] = np.where(positive, POSITIVE_RGB[channel], NEGATIVE_RGB[channel])
    rgba[..., 3] = (np.clip(magnitude / scale, 0, 1) * opacity * 255).astype(np.uint8)
    return rgba, scale


def outline_rgba(mask: np.ndarray) -> np.ndarray:
    """RGBA pixels marking the border of ``mask`` (its pixels with a 4-neighbour outside it) in magenta."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask & ~interior] = GENERATED_RGBA
    return rgba


class CompareViewer(SliceViewer):
    """The after scan, with the before scan and the result's maps at hand for swipe, flicker and overlay."""

    swipeChanged = pyqtSignal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = "Choose a result to compare"
        self.before_scan: Scan | None = None
        self.before_stack: Reformat | None = None
        self.maps: dict[str, np.ndarray] = {}
        self.overlay_name = ""
        self.overlay_opacity = 0.6
        self.overlay_scale = 0.0
        self.mode = "side"
        self.swipe = 0.5
        self.showing_before = False
        self.covered = True
        self.uncovered_text = ""
        self.slice_proxy: Callable[[int], None] | None = None  # a preview's scrolling drives the main view
        self.slice_label = ""  # a preview's place in the series, instead of 'Im 1 / 1'
        self.same_grid = True  # before and after share pixels: swipe, flicker and difference possible
        self._swipe_drag = False
        self._cache: dict[str, tuple[tuple, np.ndarray, QImage]] = {}
        self._flicker = QTimer(self)
        self._flicker.setInterval(FLICKER_MS)
        self._flicker.timeout.connect(self.toggle_flicker)

    # -- what is compared ------------------------------------------------------------------------
    def set_comparison(self, before: Scan, after: Scan, maps: dict[str, np.ndarray], caption: str) -> None:
        """Show ``after`` with ``before`` and the maps that match its shape (on the same grid: also swipe,
        flicker and the difference)."""
        self.same_grid = before.voxels.shape == after.voxels.shape and np.allclose(before.affine, after.affine,
                                                                                   atol=1e-4)
        self.before_scan = before if self.same_grid else None
        self.maps = {name: m for name, m in maps.items() if np.shape(m) == after.voxels.shape}
        if self.overlay_name not in self.overlay_names():
            self.overlay_name = ""
        if not self.same_grid:
            self.set_mode("side")
        self.caption = caption
        self.covered = True
        self.set_scan(after)

    def clear_comparison(self) -> None:
        self._flicker.stop()
        self.before_scan, self.before_stack, self.maps = None, None, {}
        self.slice_proxy, self.slice_label = None, ""
        self.same_grid = True
        self.set_scan(None)

    def overlay_names(self) -> list[str]:
        return [DIFFERENCE, *self.maps] if self.same_grid else list(self.maps)

    def set_scan(self, scan: Scan | None, preset: str | None = None) -> None:
        super().set_scan(scan, preset)
        self._restack()

    def set_plane(self, plane: str) -> None:
        super().set_plane(plane)
        self._restack()

    def _restack(self) -> None:
        self._cache.clear()
        if self.before_scan is None or self.scan is None:
            self.before_stack = None
            return
        self.before_stack = reformat_volume(self.before_scan.voxels, self.before_scan.affine, self.plane)
        self.update()

    # -- display modes ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown compare mode {mode!r}")
        if mode != "side" and not self.same_grid:
            raise ValueError("swipe and flicker need before and after on the same grid")
        self.mode = mode
        self.showing_before = False
        if mode == "flicker" and self.before_stack is not None:  # only while something is compared
            self._flicker.start()
        else:
            self._flicker.stop()
        self.update()

    def toggle_flicker(self) -> None:
        self.showing_before = not self.showing_before
        self._refresh_readout()
        self.update()

    def set_swipe(self, fraction: float) -> None:
        self.swipe = float(np.clip(fraction, 0.0, 1.0))
        self.update()
        self.swipeChanged.emit(self.swipe)

    def set_overlay(self, name: str, opacity: float | None = None) -> None:
        if name and name not in self.overlay_names():
            raise ValueError(f"no overlay {name!r}")
        self.overlay_name = name
        if opacity is not None:
            self.overlay_opacity = float(np.clip(opacity, 0.0, 1.0))
        self._cache.pop("overlay", None)
        self.update()

    def set_covered(self, covered: bool, text: str = "") -> None:
        """A preview exists for one slice: elsewhere the view says so instead of showing stale pixels."""
        if (covered, text) != (self.covered, self.uncovered_text):
            self.covered, self.uncovered_text = covered, text
            self.update()

    # -- pixels ----------------------------------------------------------------------------------
    def _plane_of(self, voxels: np.ndarray) -> np.ndarray:
        return voxels[self.volume, self.slice_index] if voxels.ndim == 4 else voxels[self.slice_index]

    def before_plane(self) -> np.ndarray:
        """The before scan's pixels where the after view stands (same plane, slice and volume)."""
        if self.before_stack is None:
            raise RuntimeError("nothing to compare")
        return self._plane_of(self.before_stack.voxels)

    def overlay_plane(self) -> np.ndarray | None:
        """The signed map shown as overlay on the current slice, in the scan's units."""
        if not self.overlay_name or self.stack is None or self.scan is None:
            return None
        if self.overlay_name == DIFFERENCE:
            return self.current_plane() - self.before_plane()
        stack = reformat_volume(self.maps[self.overlay_name], self.scan.affine, self.plane)
        return self._plane_of(stack.voxels)

    def _cached(self, name: str, key: tuple, build: Callable[[], np.ndarray], fmt: QImage.Format) -> QImage:
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[2]
        pixels = np.ascontiguousarray(build())
        rows, cols = pixels.shape[:2]
        bytes_per_line = cols * (4 if fmt == QImage.Format.Format_RGBA8888 else 1)
        image = QImage(pixels.data, cols, rows, bytes_per_line, fmt)
        self._cache[name] = (key, pixels, image)  # the array keeps the image's buffer alive
        return image

    def _before_image(self) -> QImage:
        from medscan.io.png import apply_window

        key = (self.plane, self.volume, self.slice_index, self.window_center, self.window_width)
        return self._cached("before", key, lambda: apply_window(self.before_plane(), self.window_center,
                                                                self.window_width), QImage.Format.Format_Grayscale8)

    def _overlay_image(self) -> QImage | None:
        values = self.overlay_plane()
        if values is None or self.overlay_opacity <= 0:
            return None

        def build() -> np.ndarray:
            rgba, self.overlay_scale = signed_overlay(values, self.overlay_opacity)
            return rgba

        key = (self.overlay_name, self.plane, self.volume, self.slice_index, self.overlay_opacity)
        return self._cached("overlay", key, build, QImage.Format.Format_RGBA8888)

    def _generated_outline(self) -> QImage | None:
        """The border of the generated region on this slice, always drawn: made-up pixels are never unmarked."""
        if GENERATED not in self.maps or self.scan is None or self.stack is None:
            return None

        def build() -> np.ndarray:
            stack = reformat_volume(self.maps[GENERATED], self.scan.affine, self.plane)
            return outline_rgba(self._plane_of(stack.voxels).astype(bool))

        key = (self.plane, self.volume, self.slice_index)
        return self._cached(GENERATED, key, build, QImage.Format.Format_RGBA8888)

    # -- painting --------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        if self.scan is not None and not self.covered:
            painter = QPainter(self)
            painter.fillRect(self.rect(), QColor("#000000"))
            painter.setPen(QColor("#8b9099"))
            painter.drawText(QRectF(self.rect()).adjusted(20, 0, -20, 0),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.uncovered_text)
            return
        super().paintEvent(event)

    def paint_layers(self, painter: QPainter, transform: QTransform) -> None:
        if self.scan is None:
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, transform.m11() < 4)
        if self.before_stack is None:
            pass
        elif self.mode == "flicker" and self.showing_before:
            painter.setTransform(transform)
            painter.drawImage(QPointF(0, 0), self._before_image())
        elif self.mode == "swipe":
            painter.setClipRect(QRectF(0, 0, self.swipe_x(), self.height_px))  # widget coordinates
            painter.setTransform(transform)
            painter.drawImage(QPointF(0, 0), self._before_image())
            painter.setClipping(False)
        painter.setTransform(transform)
        overlay = self._overlay_image()
        if overlay is not None:
            painter.drawImage(QPointF(0, 0), overlay)
        outline = self._generated_outline()
        if outline is not None:
            painter.drawImage(QPointF(0, 0), outline)
        painter.restore()
        if self.mode == "swipe" and self.before_stack is not None:
            self._paint_divider(painter)

    def swipe_x(self) -> float:
        return self.swipe * self.width_px

    def _paint_divider(self, painter: QPainter) -> None:
        x = self.swipe_x()
        pen = QPen(QColor("#4ea1ff"))
        pen.setWidthF(2.0)
        painter.setPen(pen)
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height_px))
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        y = self.height_px / 2 - 24
        width = painter.fontMetrics().horizontalAdvance("BEFORE")
        _shadow_text(painter, QPointF(x - width - 8, y), "BEFORE", QColor("#4ea1ff"))
        _shadow_text(painter, QPointF(x + 8, y), "AFTER", QColor("#4ea1ff"))

    def overlay_text(self) -> dict[str, list[tuple[str, str]]]:
        caption = self.caption
        if self.mode == "flicker" and self.showing_before:
            self.caption = "BEFORE (flicker)"
        elif self.mode == "flicker":
            self.caption = f"{caption} (flicker)"
        try:
            texts = super().overlay_text()
        finally:
            self.caption = caption
        if self.slice_label:
            texts["bottom_left"] = [(self.slice_label, role) if text.startswith("Im ") else (text, role)
                                    for text, role in texts["bottom_left"]]
        if self.overlay_name and self.overlay_opacity > 0 and self.scan is not None:
            scale = format_value(self.overlay_scale, self.scan.units)
            texts["bottom_right"].insert(0, (f"{map_title(self.overlay_name)}  ±{scale}  "
                                             f"{self.overlay_opacity * 100:.0f}%", "readout"))
        if GENERATED in self.maps:
            texts["bottom_right"].insert(0, ("generated region outlined in magenta", "alert"))
        return texts

    # -- input -----------------------------------------------------------------------------------
    def step_slice(self, delta: int) -> None:
        if self.slice_proxy is not None:
            self.slice_proxy(delta)
        else:
            super().step_slice(delta)

    def keyPressEvent(self, event) -> None:
        """Space in flicker mode: flip by hand (and stop the timer), for a slow look at one change."""
        if self.mode == "flicker" and event.key() == Qt.Key.Key_Space:
            self._flicker.stop()
            self.toggle_flicker()
            event.accept()
            return
        super().keyPressEvent(event)

    def mousePressEvent(self, event) -> None:
        near_divider = abs(event.position().x() - self.swipe_x()) < 8
        if self.mode == "swipe" and event.button() == Qt.MouseButton.LeftButton and near_divider:
            self._swipe_drag = True
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._swipe_drag:
            self.set_swipe(event.position().x() / max(self.width_px, 1.0))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._swipe_drag:
            self._swipe_drag = False
            event.accept()
            return
        super().mouseReleaseEvent(event)


class ViewLink(QObject):
    """Keeps a CompareViewer on the main viewer's slice, plane, volume, window, zoom and pan (both ways).

    ``origin`` (plane, slice, volume) marks a one-slice preview: the after view then shows its slice
    only while the main view stands there, and scrolling in it scrolls the main view.
    """

    def __init__(self, leader: SliceViewer, follower: CompareViewer,
                 origin: tuple[str, int, int] | None = None) -> None:
        super().__init__(follower)
        self.leader, self.follower, self.origin = leader, follower, origin
        self._syncing = False
        self._connections = [
            (leader.sliceChanged, self._leader_moved), (leader.planeChanged, self._leader_moved),
            (leader.volumeChanged, self._leader_moved), (leader.windowChanged, self._leader_window),
            (leader.viewMoved, self._leader_view), (follower.windowChanged, self._follower_window),
            (follower.viewMoved, self._follower_view),
        ]
        if origin is None:
            self._connections.append((follower.sliceChanged, self._follower_slice))
        for signal, slot in self._connections:
            signal.connect(slot)
        follower.slice_proxy = leader.step_slice if origin is not None else None
        if origin is not None:
            follower.slice_label = f"Im {origin[1] + 1} / {leader.slice_count} · preview"
        self.sync()

    def sync(self) -> None:
        """Copy everything from the leader now."""
        self._leader_moved()
        self._leader_window(self.leader.window_center, self.leader.window_width, self.leader.preset)
        self._leader_view()

    def unlink(self) -> None:
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []
        self.follower.slice_proxy, self.follower.slice_label = None, ""

    def _guarded(self, action: Callable[[], None]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            action()
        finally:
            self._syncing = False

    def _leader_moved(self, *_args) -> None:
        leader, follower = self.leader, self.follower

        def follow() -> None:
            if self.origin is None:
                follower.set_plane(leader.plane)
                follower.set_volume(leader.volume)
                follower.set_slice(self._nearest(leader, follower))
                return
            plane, index, volume = self.origin
            here = (leader.plane, leader.slice_index, leader.volume) == self.origin
            four_d = leader.scan is not None and leader.scan.n_volumes > 1
            where = f"{plane} slice {index + 1}" + (f" of volume {volume + 1}" if four_d else "")
            follower.set_covered(here, f"The preview covers {where} only.\nGo back to it, or use Run on series.")

        self._guarded(follow)

    def _leader_window(self, center: float, width: float, preset: str) -> None:
        self._guarded(lambda: self.follower.set_window(center, width, preset))

    def _follower_window(self, center: float, width: float, preset: str) -> None:
        self._guarded(lambda: self.leader.set_window(center, width, preset))

    def _follower_slice(self, index: int, _count: int) -> None:
        self._guarded(lambda: self.leader.set_slice(self._nearest(self.follower, self.leader)))

    @staticmethod
    def _nearest(source: SliceViewer, target: SliceViewer) -> int:
        """The target slice nearest in patient position to the source's (the same index on the same grid)."""
        if source.stack is None or target.stack is None:
            return source.slice_index
        if source.stack.shape[0] == target.stack.shape[0] and np.allclose(source.stack.affine, target.stack.affine,
                                                                          atol=1e-4):
            return source.slice_index
        _, rows, cols = source.stack.shape
        centre = index_to_patient(source.stack.affine, (cols - 1) / 2, (rows - 1) / 2, source.slice_index)
        index = np.linalg.solve(target.stack.affine[:3, :3], centre - target.stack.affine[:3, 3])[2]
        return int(np.clip(round(float(index)), 0, target.slice_count - 1))

    def _leader_view(self) -> None:
        self.follower.set_view(self.leader.zoom, self.leader.pan)

    def _follower_view(self) -> None:
        self.leader.set_view(self.follower.zoom, self.follower.pan)


class CompareBar(QWidget):
    """Mode (side by side, swipe, flicker), overlay map and its opacity, and a way out."""

    modeChanged = pyqtSignal(str)
    overlayChanged = pyqtSignal(str, float)  # map name ('' for none), opacity 0..1
    closeRequested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareBar")
        self.mode_buttons = QButtonGroup(self)
        self.mode_buttons.setExclusive(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.setSpacing(6)
        for mode, title in MODES.items():
            button = QToolButton()
            button.setText(title)
            button.setCheckable(True)
            button.setObjectName(f"compare_{mode}")
            button.setChecked(mode == "side")
            button.clicked.connect(lambda _checked=False, m=mode: self.modeChanged.emit(m))
            self.mode_buttons.addButton(button)
            layout.addWidget(button)
        layout.addSpacing(8)
        self.overlay = QComboBox()
        self.overlay.setToolTip("A signed map drawn over the after image: orange where the value rose, blue where "
                                "it fell")
        self.overlay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.overlay.setMinimumContentsLength(13)
        self.overlay.currentIndexChanged.connect(self._emit_overlay)
        layout.addWidget(self.overlay)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setFixedWidth(80)
        self.opacity.setToolTip("Overlay opacity")
        self.opacity.valueChanged.connect(self._emit_overlay)
        self.opacity_label = QLabel("60%")
        self.opacity_label.setMinimumWidth(36)
        layout.addWidget(self.opacity)
        layout.addWidget(self.opacity_label)
        layout.addStretch(1)
        self.close_button = QToolButton()
        self.close_button.setText("Close")
        self.close_button.setToolTip("Close the comparison: back to the single view")
        self.close_button.clicked.connect(self.closeRequested)
        layout.addWidget(self.close_button)

    def set_overlays(self, names: list[str], current: str) -> None:
        self.overlay.blockSignals(True)
        self.overlay.clear()
        self.overlay.addItem("No overlay", "")
        for name in names:
            self.overlay.addItem(map_title(name), name)
        self.overlay.setCurrentIndex(max(0, self.overlay.findData(current)))
        self.overlay.blockSignals(False)

    def set_mode(self, mode: str) -> None:
        for button in self.mode_buttons.buttons():
            button.setChecked(button.objectName() == f"compare_{mode}")

    def set_modes_available(self, same_grid: bool) -> None:
        """Swipe and flicker only where before and after share pixels."""
        for mode in ("swipe", "flicker"):
            button = self.mode_button(mode)
            button.setEnabled(same_grid)
            button.setToolTip("" if same_grid else "The result is on another grid (e.g. super-resolved): side by "
                                                   "side only")

    def mode_button(self, mode: str) -> QToolButton:
        return next(b for b in self.mode_buttons.buttons() if b.objectName() == f"compare_{mode}")

    def _emit_overlay(self, *_args) -> None:
        self.opacity_label.setText(f"{self.opacity.value()}%")
        self.overlayChanged.emit(self.overlay.currentData() or "", self.opacity.value() / 100)
