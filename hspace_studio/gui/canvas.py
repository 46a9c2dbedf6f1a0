"""The image canvas: original / edited / side by side, crisp zoom, mask overlay, brush cursor.

Images are shown with nearest-neighbour scaling at integer zoom (the models are
small: 64x64 pixels are shown as 8x8 blocks, not a blur); "fit" picks the largest
integer zoom that fits and only scales smoothly when the image must shrink. The wheel
zooms about the cursor; the middle button (or Space + left button) pans.

With the brush tool on, the left button paints and the right button erases (or the
reverse in erase mode); the canvas only reports strokes in image coordinates
(``strokeBegin``, ``strokeMove``, ``strokeEnd``), the mask controller changes the mask.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

ZOOM_LEVELS = (0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
VIEWS = ("edited", "original", "split")


def qimage_from_array(a: np.ndarray) -> QImage:
    """A QImage (own copy) from uint8 (H, W, 3) RGB or (H, W, 4) RGBA."""
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    fmt = QImage.Format.Format_RGB888 if a.shape[2] == 3 else QImage.Format.Format_RGBA8888
    return QImage(a.data, w, h, a.strides[0], fmt).copy()


def array_from_qimage(img: QImage) -> np.ndarray:
    """uint8 (H, W, 3) RGB copy of a QImage."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.sizeInBytes())
    return buf.reshape(h, img.bytesPerLine())[:, :w * 3].reshape(h, w, 3).copy()


class Canvas(QWidget):
    strokeBegin = Signal(QPointF, bool)  # image position, erase
    strokeMove = Signal(QPointF)
    strokeEnd = Signal()
    zoomChanged = Signal(float)
    hoverChanged = Signal(int, int)  # image pixel under the cursor, (-1, -1) outside
    imageShown = Signal()  # the edited image changed
    painted = Signal()  # a paint of the images ended (the GUI's slider latencies stop here)

    GAP = 12  # pixels between the two images side by side

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self._original: Optional[QImage] = None
        self._edited: Optional[QImage] = None
        self._edited_interim = False
        self._overlay: Optional[QImage] = None
        self._mask: Optional[np.ndarray] = None
        self.mask_color = QColor(255, 40, 90)
        self.mask_opacity = 0.45
        self.mask_visible = True
        self.view = "edited"
        self.zoom = 1.0
        self.fit_mode = True
        self.pan = QPointF(0, 0)
        self.brush_enabled = True
        self.brush_radius = 3.0
        self.erase_mode = False
        self._cursor: Optional[QPointF] = None
        self._stroking = False
        self._panning: Optional[QPointF] = None
        self._space = False
        self.info_text = ""
        self.placeholder = "No image yet"

    def sizeHint(self) -> QSize:
        return QSize(560, 560)

    # -- content ---------------------------------------------------------------------
    def image_size(self):
        img = self._original or self._edited
        return (img.width(), img.height()) if img is not None else None

    def set_original(self, a: Optional[np.ndarray]) -> None:
        old = self.image_size()
        self._original = qimage_from_array(a) if a is not None else None
        if self.image_size() != old:
            self.fit_mode = True
        self._relayout()

    def set_edited(self, a: Optional[np.ndarray], interim: bool = False, text: str = "") -> None:
        self._edited = qimage_from_array(a) if a is not None else None
        self._edited_interim = interim
        self.info_text = text
        self.update()
        if not interim:
            self.imageShown.emit()

    def mark_pending(self, text: str) -> None:
        """Keep the image shown, labelled as not (yet) the exact one with ``text``."""
        self._edited_interim = True
        self.info_text = text
        self.update()

    def edited_image(self) -> Optional[QImage]:
        return self._edited

    def original_image(self) -> Optional[QImage]:
        return self._original

    def edited_array(self) -> Optional[np.ndarray]:
        return array_from_qimage(self._edited) if self._edited is not None else None

    def set_mask(self, mask: Optional[np.ndarray]) -> None:
        self._mask = mask
        if mask is None:
            self._overlay = None
        else:
            c = self.mask_color
            rgba = np.zeros((*mask.shape, 4), dtype=np.uint8)
            rgba[mask] = (c.red(), c.green(), c.blue(), 255)
            self._overlay = qimage_from_array(rgba)
        self.update()

    def set_mask_opacity(self, value: float) -> None:
        self.mask_opacity = max(0.0, min(1.0, float(value)))
        self.update()

    def set_mask_visible(self, on: bool) -> None:
        self.mask_visible = bool(on)
        self.update()

    def set_view(self, view: str) -> None:
        if view not in VIEWS:
            raise ValueError(view)
        self.view = view
        self._relayout()

    def set_brush_radius(self, r: float) -> None:
        self.brush_radius = max(0.5, float(r))
        self.update()

    # -- zoom and layout ---------------------------------------------------------------
    def _content_size(self, z: float):
        size = self.image_size()
        if size is None:
            return 0.0, 0.0
        w, h = size
        if self.view == "split":
            return 2 * w * z + self.GAP, h * z
        return w * z, h * z

    def fit_zoom(self) -> float:
        size = self.image_size()
        if size is None:
            return 1.0
        cw, ch = self._content_size(1.0)
        avail_w = max(1, self.width() - 16 - (self.GAP if self.view == "split" else 0))
        avail_h = max(1, self.height() - 16)
        z = min(avail_w / (cw - (self.GAP if self.view == "split" else 0)), avail_h / ch)
        return float(int(z)) if z >= 1 else z

    def _relayout(self) -> None:
        if self.fit_mode:
            self.zoom = self.fit_zoom()
            self.pan = QPointF(0, 0)
        self.zoomChanged.emit(self.zoom)
        self.update()

    def fit(self) -> None:
        self.fit_mode = True
        self._relayout()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, z: float, anchor: Optional[QPointF] = None) -> None:
        z = max(ZOOM_LEVELS[0], min(ZOOM_LEVELS[-1], float(z)))
        if anchor is not None and self.image_size() is not None:
            # keep the image point under ``anchor`` where it is
            before = self._to_image_any(anchor)
            self.zoom, self.fit_mode = z, False
            after = self._to_image_any(anchor)
            if before is not None and after is not None:
                self.pan += QPointF((after.x() - before.x()) * z, (after.y() - before.y()) * z)
        else:
            self.zoom, self.fit_mode = z, False
        self.zoomChanged.emit(self.zoom)
        self.update()

    def zoom_in(self, anchor=None) -> None:
        nxt = [z for z in ZOOM_LEVELS if z > self.zoom + 1e-6]
        self.set_zoom(nxt[0] if nxt else ZOOM_LEVELS[-1], anchor)

    def zoom_out(self, anchor=None) -> None:
        prv = [z for z in ZOOM_LEVELS if z < self.zoom - 1e-6]
        self.set_zoom(prv[-1] if prv else ZOOM_LEVELS[0], anchor)

    def panel_rects(self):
        """Rectangles (widget coordinates) of the shown panels: [(kind, QRectF)]."""
        size = self.image_size()
        if size is None:
            return []
        w, h = size
        z = self.zoom
        cw, ch = self._content_size(z)
        x0 = (self.width() - cw) / 2 + self.pan.x()
        y0 = (self.height() - ch) / 2 + self.pan.y()
        if self.view == "split":
            return [("original", QRectF(x0, y0, w * z, h * z)),
                    ("edited", QRectF(x0 + w * z + self.GAP, y0, w * z, h * z))]
        return [(self.view, QRectF(x0, y0, w * z, h * z))]

    def _to_image_any(self, pos: QPointF) -> Optional[QPointF]:
        rects = self.panel_rects()
        if not rects:
            return None
        best = rects[0][1]
        for _, r in rects:
            if r.left() - self.GAP / 2 <= pos.x() <= r.right() + self.GAP / 2:
                best = r
        return QPointF((pos.x() - best.left()) / self.zoom, (pos.y() - best.top()) / self.zoom)

    def widget_to_image(self, pos: QPointF) -> Optional[QPointF]:
        """Image coordinates (floats, pixel centres at +0.5) of a widget position."""
        return self._to_image_any(QPointF(pos))

    def image_to_widget(self, p: QPointF, panel: int = -1) -> Optional[QPointF]:
        rects = self.panel_rects()
        if not rects:
            return None
        r = rects[panel][1]
        return QPointF(r.left() + p.x() * self.zoom, r.top() + p.y() * self.zoom)

    # -- events ----------------------------------------------------------------------
    def resizeEvent(self, e) -> None:
        if self.fit_mode:
            self._relayout()
        super().resizeEvent(e)

    def wheelEvent(self, e) -> None:
        dy = e.angleDelta().y()
        if dy == 0:
            return
        if self.fit_mode:
            self.zoom = self.fit_zoom()
        (self.zoom_in if dy > 0 else self.zoom_out)(e.position())
        e.accept()

    def keyPressEvent(self, e) -> None:
        if e.key() == Qt.Key.Key_Space and not e.isAutoRepeat():
            self._space = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(e)

    def keyReleaseEvent(self, e) -> None:
        if e.key() == Qt.Key.Key_Space and not e.isAutoRepeat():
            self._space = False
            self.unsetCursor()
            return
        super().keyReleaseEvent(e)

    def mousePressEvent(self, e) -> None:
        pos = e.position()
        pan = e.button() == Qt.MouseButton.MiddleButton or (
            e.button() == Qt.MouseButton.LeftButton and (self._space or not self.brush_enabled))
        if pan:
            self._panning = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if self.brush_enabled and e.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            p = self.widget_to_image(pos)
            if p is None:
                return
            erase = (e.button() == Qt.MouseButton.RightButton) != self.erase_mode
            self._stroking = True
            self.strokeBegin.emit(p, erase)
            e.accept()

    def mouseMoveEvent(self, e) -> None:
        pos = e.position()
        self._cursor = pos
        if self._panning is not None:
            self.pan += pos - self._panning
            self._panning = pos
            self.fit_mode = False
        elif self._stroking:
            p = self.widget_to_image(pos)
            if p is not None:
                self.strokeMove.emit(p)
        p = self.widget_to_image(pos)
        size = self.image_size()
        if p is not None and size is not None and 0 <= p.x() < size[0] and 0 <= p.y() < size[1]:
            self.hoverChanged.emit(int(p.x()), int(p.y()))
        else:
            self.hoverChanged.emit(-1, -1)
        self.update()

    def mouseReleaseEvent(self, e) -> None:
        if self._panning is not None and e.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._panning = None
            self.unsetCursor()
            return
        if self._stroking:
            self._stroking = False
            self.strokeEnd.emit()

    def leaveEvent(self, e) -> None:
        self._cursor = None
        self.hoverChanged.emit(-1, -1)
        self.update()

    # -- painting ----------------------------------------------------------------------
    def paintEvent(self, e) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 40, 44))
        rects = self.panel_rects()
        if not rects:
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            p.end()
            return
        crisp = self.zoom >= 1 and abs(self.zoom - round(self.zoom)) < 1e-6
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not crisp and self.zoom < 1)
        for kind, r in rects:
            img = self._original if kind == "original" else (self._edited or self._original)
            p.fillRect(r.adjusted(-1, -1, 1, 1), QColor(20, 20, 22))
            if img is not None:
                p.drawImage(r, img)
            if self._overlay is not None and self.mask_visible and self.mask_opacity > 0:
                p.setOpacity(self.mask_opacity)
                p.drawImage(r, self._overlay)
                p.setOpacity(1.0)
            if self.view == "split":
                p.setPen(QColor(200, 200, 200))
                label = "original" if kind == "original" else "edited"
                p.drawText(QRectF(r.left(), r.top() - 18, r.width(), 16),
                           Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, label)
        if self.info_text:
            p.setPen(QColor(230, 230, 230))
            p.drawText(self.rect().adjusted(8, 6, -8, -6),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, self.info_text)
        if self.brush_enabled and self._cursor is not None and self._panning is None:
            rad = self.brush_radius * self.zoom
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(QColor(0, 0, 0, 200), 3))
            p.drawEllipse(self._cursor, rad, rad)
            p.setPen(QPen(QColor(255, 255, 255) if not self.erase_mode else QColor(120, 200, 255), 1))
            p.drawEllipse(self._cursor, rad, rad)
        p.end()
        self.painted.emit()
