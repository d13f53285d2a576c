"""The micrograph view: the display image and the label overlays, in original pixels.

The image item is a binned, low-passed copy placed with a scale transform, so scene
coordinates are always original-micrograph pixels (x = column, y = row, y down) and label
positions never need converting. Rings are one ScatterPlotItem per kind with
``pxMode=False`` (their size is the particle diameter in micrograph pixels, so they scale
with zoom); ``setData`` replaces the whole set, which pyqtgraph's own benchmark shows is
the fast path (per-point items are far slower).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QPainter, QPixmap, QTransform
from PyQt6.QtWidgets import QGraphicsItem

from picker_gui.core.preprocess import DisplayImage
from picker_gui.gui.theme import BACKGROUND, NEGATIVE_COLOR, PICK_COLOR, POSITIVE_COLOR

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
#: Pick rings relative to the particle diameter (labels are drawn at 1).
PICK_SIZE = 0.85
#: Consensus rings relative to the particle diameter: outside the labels and picks.
CONSENSUS_SIZE = 1.15
#: The input sets' picks: crosses this fraction of the diameter across.
SET_CROSS_SIZE = 0.3


def votes_colour(votes: int, n_sets: int) -> tuple[int, int, int]:
    """Colour of a consensus pick found by ``votes`` of ``n_sets`` pickers: red for one, through
    yellow, to green for all of them."""
    if n_sets <= 1:
        return (80, 220, 120)
    f = (votes - 1) / (n_sets - 1)
    if f <= 0.5:
        return (255, int(90 + 2 * f * 150), 60)
    return (int(255 - 2 * (f - 0.5) * 175), 230, int(60 + 2 * (f - 0.5) * 60))


class LabelViewBox(pg.ViewBox):
    """A ViewBox whose left clicks and label drags become signals; other drags pan."""

    clicked = pyqtSignal(float, float, object, object)  # x, y, button, modifiers
    drag_started = pyqtSignal(float, float)
    drag_moved = pyqtSignal(float, float)
    drag_finished = pyqtSignal(float, float)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        #: Set by the canvas: returns True when (x, y) is on a label that can be dragged.
        self.grabbable = lambda x, y: False
        self._dragging = False

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            p = self.mapSceneToView(ev.scenePos())
            self.clicked.emit(p.x(), p.y(), ev.button(), ev.modifiers())
            ev.accept()
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton:
            if ev.isStart():
                start = self.mapSceneToView(ev.buttonDownScenePos())
                self._dragging = bool(self.grabbable(start.x(), start.y()))
                if self._dragging:
                    self.drag_started.emit(start.x(), start.y())
            if self._dragging:
                p = self.mapSceneToView(ev.scenePos())
                if ev.isFinish():
                    self._dragging = False
                    self.drag_finished.emit(p.x(), p.y())
                else:
                    self.drag_moved.emit(p.x(), p.y())
                ev.accept()
                return
        super().mouseDragEvent(ev, axis)


class PassiveScatter(pg.ScatterPlotItem):
    """Rings that never take the mouse: ScatterPlotItem accepts clicks on its points, which
    would hide them from the view, where a click on a ring must mean "remove it"."""

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        ev.ignore()


class RingsItem(pg.GraphicsObject):
    """Thousands of rings (or crosses), drawn fast: one ring pixmap (the diameter at the current zoom)
    stamped at every point with QPainter.drawPixmapFragments, as pyqtgraph draws
    screen-sized symbols, but with a size in data units, so rings scale with zoom.

    The points are set once (highest score first); a threshold only says how many of them
    are shown (:meth:`set_count`), so a slider step costs no more than a repaint.
    """

    def __init__(self, pen, shape: str = "ring") -> None:
        from pyqtgraph.Qt import internals

        super().__init__()
        if shape not in ("ring", "cross"):
            raise ValueError(f"shape must be 'ring' or 'cross', not {shape!r}")
        self._pen = pen
        self._shape = shape
        self._x = np.zeros(0)
        self._y = np.zeros(0)
        self._n = 0
        self._diameter = 64.0
        self._pixmap: tuple[int, object] | None = None
        self._fragments = internals.PrimitiveArray(QPainter.PixmapFragment, 10)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)  # clicks go to the view

    @property
    def data(self) -> np.ndarray:
        """The points shown, ``(n, 2)`` (for tests and tooltips)."""
        return np.stack([self._x[: self._n], self._y[: self._n]], axis=1)

    def set_points(self, x, y, count: int | None = None) -> None:
        self.prepareGeometryChange()
        self._x = np.asarray(x, dtype=np.float64)
        self._y = np.asarray(y, dtype=np.float64)
        self._n = len(self._x) if count is None else int(count)
        self.update()

    def set_count(self, count: int) -> None:
        count = max(0, min(int(count), len(self._x)))
        if count != self._n:
            self._n = count
            self.update()

    def set_diameter(self, diameter: float) -> None:
        self.prepareGeometryChange()
        self._diameter = float(diameter)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        if not len(self._x):
            return QRectF()
        r = self._diameter / 2 + 1
        x0, x1, y0, y1 = self._x.min(), self._x.max(), self._y.min(), self._y.max()
        return QRectF(x0 - r, y0 - r, x1 - x0 + 2 * r, y1 - y0 + 2 * r)

    def _ring(self, size_px: float):
        size = max(3, int(round(size_px)))
        if self._pixmap is None or self._pixmap[0] != size:
            margin = int(np.ceil(self._pen.widthF())) + 2
            pixmap = QPixmap(size + 2 * margin, size + 2 * margin)
            pixmap.fill(Qt.GlobalColor.transparent)
            q = QPainter(pixmap)
            q.setRenderHint(QPainter.RenderHint.Antialiasing)
            q.setPen(self._pen)
            if self._shape == "ring":
                q.drawEllipse(QRectF(margin, margin, size, size))
            else:
                mid = margin + size / 2
                q.drawLine(QPointF(margin, mid), QPointF(margin + size, mid))
                q.drawLine(QPointF(mid, margin), QPointF(mid, margin + size))
            q.end()
            self._pixmap = (size, pixmap)
        return self._pixmap[1]

    def paint(self, painter, *args) -> None:
        n = self._n
        if not n:
            return
        tr = painter.transform()
        x, y = self._x[:n], self._y[:n]
        dx = tr.m11() * x + tr.m21() * y + tr.dx()
        dy = tr.m12() * x + tr.m22() * y + tr.dy()
        size = self._diameter * float(np.hypot(tr.m11(), tr.m12()))
        pixmap = self._ring(size)
        vp = painter.viewport()
        inside = (dx > -size) & (dy > -size) & (dx < vp.width() + size) & (dy < vp.height() + size)
        dx, dy = dx[inside], dy[inside]
        self._fragments.resize(len(dx))
        frag = self._fragments.ndarray()
        frag[:, 0], frag[:, 1] = dx, dy  # the fragment's centre
        frag[:, 2:4] = 0
        frag[:, 4], frag[:, 5] = pixmap.width(), pixmap.height()
        frag[:, 6:8] = 1
        frag[:, 8] = 0
        frag[:, 9] = 1
        painter.save()
        painter.resetTransform()
        painter.drawPixmapFragments(self._fragments.instances(), pixmap)
        painter.restore()


class MicrographCanvas(pg.GraphicsView):
    """Shows one micrograph with positive, negative and picked overlays."""

    cursor_moved = pyqtSignal(float, float)  # original pixels

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=BACKGROUND)
        self.view = LabelViewBox()
        self.setCentralItem(self.view)
        self.image_item = pg.ImageItem()
        # Drawn once per zoom or pan into a device-sized cache, then blitted: a threshold step
        # repaints the rings over it without scaling the whole micrograph again.
        self.image_item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.view.addItem(self.image_item)
        self.diameter_px = 64.0
        self._pens = {
            "positive": pg.mkPen(POSITIVE_COLOR, width=2),
            "negative": pg.mkPen(NEGATIVE_COLOR, width=2),
            # Picks are the picker's, not the user's: another colour, dashed, a little smaller,
            # so that a label ring on a pick stays visible.
            "pick": pg.mkPen(PICK_COLOR, width=1.5, style=Qt.PenStyle.DashLine),
        }
        no_brush = pg.mkBrush(None)
        self.positive_item = PassiveScatter(pxMode=False, symbol="o", pen=self._pens["positive"], brush=no_brush)
        self.negative_item = PassiveScatter(pxMode=False, symbol="x", pen=self._pens["negative"], brush=pg.mkBrush(NEGATIVE_COLOR))
        self.pick_item = RingsItem(self._pens["pick"])
        for item, z in ((self.pick_item, 5), (self.positive_item, 10), (self.negative_item, 11)):
            item.setZValue(z)
            self.view.addItem(item)
        # Consensus: rings per vote count (each highest score first, so that the consensus
        # threshold is a count per ring item), and each visible input set's picks as crosses.
        self.consensus_items: dict[int, RingsItem] = {}
        self._consensus_scores: dict[int, np.ndarray] = {}
        self.set_items: dict[str, RingsItem] = {}
        self._shape: tuple[int, int] | None = None
        self._invert = False
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.setToolTip(
            "Click: add a particle (or a negative in negative mode) · click a ring: remove it · "
            "right-click: remove · drag a ring: move it · drag elsewhere: pan · wheel: zoom"
        )

    # -- image -------------------------------------------------------------------------
    def set_image(self, display: DisplayImage, original_shape: tuple[int, int], keep_view: bool = False) -> None:
        """Show a display image; the view fits the whole micrograph unless ``keep_view``."""
        self.image_item.setImage(display.image, levels=display.levels, autoLevels=False)
        self.image_item.setTransform(QTransform.fromScale(display.scale[1], display.scale[0]))
        self._apply_lut()
        first = self._shape is None or tuple(original_shape) != self._shape
        self._shape = tuple(original_shape)
        if first or not keep_view:
            self.fit()

    def clear_image(self) -> None:
        self.image_item.clear()

    def set_levels(self, levels: tuple[float, float]) -> None:
        self.image_item.setLevels(levels)

    def set_invert(self, invert: bool) -> None:
        self._invert = invert
        self._apply_lut()

    def _apply_lut(self) -> None:
        ramp = np.arange(256, dtype=np.uint8)
        lut = np.stack([ramp[::-1] if self._invert else ramp] * 3, axis=1)
        self.image_item.setLookupTable(lut)

    def fit(self) -> None:
        if self._shape is not None:
            h, w = self._shape
            self.view.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def zoom(self, factor: float) -> None:
        self.view.scaleBy((1 / factor, 1 / factor))

    def view_rect(self) -> list[float]:
        (x0, x1), (y0, y1) = self.view.viewRange()
        return [x0, y0, x1 - x0, y1 - y0]

    def set_view_rect(self, rect: list[float]) -> None:
        x, y, w, h = rect
        self.view.setRange(xRange=(x, x + w), yRange=(y, y + h), padding=0)

    # -- overlays ----------------------------------------------------------------------
    def set_diameter(self, diameter_px: float) -> None:
        self.diameter_px = float(diameter_px)
        self.pick_item.set_diameter(self.diameter_px * PICK_SIZE)
        for item in self.consensus_items.values():
            item.set_diameter(self.diameter_px * CONSENSUS_SIZE)
        for item in self.set_items.values():
            item.set_diameter(self.diameter_px * SET_CROSS_SIZE)

    def set_labels(self, positives: np.ndarray, negatives: np.ndarray) -> None:
        d = self.diameter_px
        self.positive_item.setData(x=positives[:, 0], y=positives[:, 1], size=d)
        self.negative_item.setData(x=negatives[:, 0], y=negatives[:, 1], size=d * 0.4)

    def set_picks(self, x: np.ndarray, y: np.ndarray, count: int | None = None) -> None:
        """The picks of the micrograph (original pixels, highest score first); ``count``: how
        many of them the threshold keeps (all by default)."""
        self.pick_item.set_points(x, y, count)

    def set_pick_count(self, count: int) -> None:
        """Show the first ``count`` picks (a threshold moved): no new points, a repaint."""
        self.pick_item.set_count(count)

    def set_overlay_visible(self, which: str, visible: bool) -> None:
        {"positive": self.positive_item, "negative": self.negative_item, "pick": self.pick_item}[which].setVisible(visible)

    def set_consensus(self, x: np.ndarray, y: np.ndarray, score: np.ndarray, votes: np.ndarray, n_sets: int,
                      threshold: float) -> None:
        """The consensus picks of the micrograph (highest score first), coloured by votes;
        those at or above ``threshold`` shown."""
        for v, item in list(self.consensus_items.items()):
            if v > n_sets:
                self.view.removeItem(item)
                del self.consensus_items[v]
                self._consensus_scores.pop(v, None)
        votes = np.asarray(votes)
        for v in range(1, n_sets + 1):
            item = self.consensus_items.get(v)
            if item is None or item.n_sets != n_sets:
                if item is not None:
                    self.view.removeItem(item)
                item = RingsItem(pg.mkPen(votes_colour(v, n_sets), width=2))
                item.n_sets = n_sets
                item.setZValue(6)
                item.set_diameter(self.diameter_px * CONSENSUS_SIZE)
                self.view.addItem(item)
                self.consensus_items[v] = item
            m = votes == v
            self._consensus_scores[v] = np.asarray(score)[m]
            item.set_points(np.asarray(x)[m], np.asarray(y)[m])
        self.set_consensus_threshold(threshold)

    def set_consensus_threshold(self, threshold: float) -> None:
        """Show the consensus picks at or above ``threshold``: a count per vote level."""
        for v, item in self.consensus_items.items():
            s = self._consensus_scores.get(v, np.zeros(0))
            item.set_count(int(np.searchsorted(-s, -threshold, side="right")))

    def consensus_shown(self) -> int:
        """How many consensus rings are drawn (for tests)."""
        return sum(len(item.data) for item in self.consensus_items.values() if item.isVisible())

    def set_consensus_visible(self, visible: bool) -> None:
        for item in (*self.consensus_items.values(), *self.set_items.values()):
            item.setVisible(visible)

    def set_input_sets(self, sets: list[tuple[str, tuple[int, int, int], np.ndarray, np.ndarray]]) -> None:
        """Each visible input set's picks on this micrograph, as crosses in its colour:
        ``(name, colour, x, y)``; sets not listed are removed."""
        names = {name for name, *_ in sets}
        for name in [n for n in self.set_items if n not in names]:
            self.view.removeItem(self.set_items.pop(name))
        for name, colour, x, y in sets:
            item = self.set_items.get(name)
            if item is None:
                # Thousands of crosses per set: stamped from one pixmap like the rings, so
                # that a consensus slider step (which repaints them too) stays cheap.
                item = RingsItem(pg.mkPen(colour, width=1.5), shape="cross")
                item.setZValue(7)
                self.view.addItem(item)
                self.set_items[name] = item
            item.set_diameter(self.diameter_px * SET_CROSS_SIZE)
            item.set_points(x, y)

    # -- mapping (for tests and tooltips) ----------------------------------------------
    def map_to_widget(self, x: float, y: float):
        """Viewport position of original-micrograph pixel (x, y)."""
        return self.mapFromScene(self.view.mapViewToScene(QPointF(x, y)))

    def _on_mouse_moved(self, scene_pos) -> None:
        p = self.view.mapSceneToView(scene_pos)
        self.cursor_moved.emit(p.x(), p.y())
