"""Drawing a region on the scan with a brush: the GUI's value for an operation parameter of kind "mask".

The mask is one boolean volume ``[k, j, i]`` of the shown scan. The viewer paints into a reformatted
*view* of it (no copy), so a stroke in a coronal or sagittal view lands on the right voxels. Left-drag
paints, Shift+left-drag erases; the painted voxels are shown in magenta over the image. The operation
receives the whole volume (or, for a preview, the one plane previewed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PyQt6.QtCore import QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPen, QTransform
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from medscan.view import reformat

if TYPE_CHECKING:
    from ui.qt_slice_viewer import SliceViewer

MASK_RGBA = (255, 40, 220, 120)


class MaskParamWidget(QWidget):
    """Draw / Clear / brush size for a mask parameter; ``value()`` is the drawn mask or '' when none."""

    drawToggled = pyqtSignal(bool)
    changed = pyqtSignal(int)  # voxels in the mask

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mask: np.ndarray | None = None
        self.draw = QPushButton("Draw")
        self.draw.setCheckable(True)
        self.draw.setToolTip("Paint the region on the image: left-drag paints, Shift+left-drag erases")
        self.clear = QPushButton("Clear")
        self.size = QSpinBox()
        self.size.setRange(1, 100)
        self.size.setValue(8)
        self.size.setSuffix(" px")
        self.size.setToolTip("Brush radius in image pixels")
        self.status = QLabel("nothing drawn")
        self.status.setObjectName("maskStatus")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (self.draw, self.clear, self.size):
            row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.draw.toggled.connect(self.drawToggled.emit)
        self.clear.clicked.connect(self.reset)

    def ensure_shape(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The mask for a scan of volume ``shape``; a different scan starts a new, empty one."""
        if self.mask is None or self.mask.shape != shape:
            self.mask = np.zeros(shape, bool)
            self.note_change()
        return self.mask

    def reset(self) -> None:
        if self.mask is not None:
            self.mask[...] = False
        self.note_change()

    def note_change(self) -> None:
        count = int(self.mask.sum()) if self.mask is not None else 0
        self.status.setText(f"{count:,} voxels drawn" if count else "nothing drawn")
        self.changed.emit(count)

    def value(self) -> np.ndarray | str:
        return self.mask.copy() if self.mask is not None and self.mask.any() else ""


class BrushTool:
    """Paints into ``widget``'s mask through the viewer's current plane; installed as ``viewer.tool``."""

    def __init__(self, viewer: SliceViewer, widget: MaskParamWidget) -> None:
        self.viewer = viewer
        self.widget = widget
        self._last: tuple[float, float] | None = None
        self._erase = False

    def _view(self) -> np.ndarray | None:
        scan = self.viewer.scan
        if scan is None:
            return None
        mask = self.widget.ensure_shape(tuple(scan.volume_shape))
        return reformat(mask, scan.affine, self.viewer.plane).voxels[self.viewer.slice_index]

    def _image_point(self, pos: QPointF) -> tuple[float, float] | None:
        inverse, ok = self.viewer.image_transform().inverted()
        if not ok:
            return None
        point = inverse.map(QPointF(pos))
        return point.x(), point.y()

    def press(self, pos: QPointF, erase: bool) -> None:
        self._erase = erase
        self._last = None
        self.move(pos)

    def move(self, pos: QPointF) -> None:
        plane = self._view()
        point = self._image_point(pos)
        if plane is None or point is None:
            return
        radius = float(self.widget.size.value())
        start = self._last or point
        steps = max(1, int(np.hypot(point[0] - start[0], point[1] - start[1]) / max(radius / 2, 0.5)))
        rows, cols = plane.shape
        for t in np.linspace(0.0, 1.0, steps + 1):
            x = start[0] + t * (point[0] - start[0])
            y = start[1] + t * (point[1] - start[1])
            r0, r1 = max(0, int(y - radius)), min(rows, int(y + radius) + 1)
            c0, c1 = max(0, int(x - radius)), min(cols, int(x + radius) + 1)
            if r0 >= r1 or c0 >= c1:
                continue
            rr, cc = np.ogrid[r0:r1, c0:c1]
            disc = (rr + 0.5 - y) ** 2 + (cc + 0.5 - x) ** 2 <= radius * radius
            block = plane[r0:r1, c0:c1]
            block[disc] = not self._erase  # writes through the reformatted view into the volume
        self._last = point
        self.widget.note_change()
        self.viewer.update()

    def release(self) -> None:
        self._last = None

    def paint(self, painter: QPainter, transform: QTransform) -> None:
        plane = self._view()
        if plane is None or not plane.any():
            return
        rgba = np.zeros((*plane.shape, 4), np.uint8)
        rgba[plane] = MASK_RGBA
        image = QImage(rgba.data, plane.shape[1], plane.shape[0], 4 * plane.shape[1], QImage.Format.Format_RGBA8888)
        painter.save()
        painter.setTransform(transform)
        painter.drawImage(QPointF(0, 0), image.copy())
        painter.restore()

    def paint_cursor(self, painter: QPainter, pos: QPointF | None) -> None:
        if pos is None:
            return
        scale = self.viewer.image_transform().m11()
        painter.setPen(QPen(QColor(*MASK_RGBA[:3]), 1, Qt.PenStyle.DashLine))
        radius = self.widget.size.value() * scale
        painter.drawEllipse(pos, radius, radius)


def plane_of_mask(mask: np.ndarray, affine: np.ndarray, plane: str, slice_index: int) -> np.ndarray:
    """The (1, rows, cols) part of a volume mask shown as ``slice_index`` of ``plane`` (a preview's mask)."""
    return np.ascontiguousarray(reformat(mask, affine, plane).voxels[slice_index][None])
