"""The ranked gallery: thumbnails of the picks on either side of the threshold.

The picks come from :func:`picker_gui.core.gallery.around_threshold` in descending score
order and flow left to right, then down. Kept picks (score at least the threshold) have an
accent-coloured frame, dropped ones an orange frame, and a divider cell marks the
threshold between them. Clicking a thumbnail (or pressing Enter on it) emits
:attr:`GalleryWidget.item_activated` with the micrograph key and the pick's position in
original pixels, for the viewer to jump to.

Crops arrive separately (:meth:`GalleryWidget.update_crop`), since a micrograph's display
image may still be loading; until then its thumbnails show a placeholder.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QModelIndex, QRect, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QImage, QKeyEvent, QPainter, QPen, QPixmap
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from picker_gui.core.gallery import GalleryItem, crop
from picker_gui.core.preprocess import DisplayImage
from picker_gui.gui import theme

#: Item data roles. ``INDEX_ROLE`` is the item's index in :meth:`GalleryWidget.set_items`'s
#: list (-1 on the divider); ``KEPT_ROLE`` is True for a kept pick; ``BORDER_ROLE`` holds
#: the frame colour.
INDEX_ROLE = Qt.ItemDataRole.UserRole
KEPT_ROLE = Qt.ItemDataRole.UserRole + 1
BORDER_ROLE = Qt.ItemDataRole.UserRole + 2
NAME_ROLE = Qt.ItemDataRole.UserRole + 3

KEPT_COLOR = QColor(theme.ACCENT)
DROPPED_COLOR = QColor(*theme.NEGATIVE_COLOR)
_DIM_TEXT = QColor("#a8abb0")
_PLACEHOLDER = QColor("#34363a")
#: Contrast limits of a crop when no levels are given: its own percentiles.
CROP_PERCENTILES = (1.0, 99.0)
#: Side of a thumbnail on screen, and of the crops :func:`crops_for` makes by default.
THUMB_PX = 96
_FRAME = 3  # px of coloured frame around a thumbnail
_PAD = 6  # px between cells


def crops_for(items: list[GalleryItem], images: dict[str, DisplayImage], size_px: float,
              out: int = THUMB_PX) -> dict[int, np.ndarray | None]:
    """Crops of ``size_px`` original pixels around each item, from the display images given
    (by micrograph key); None for the items whose micrograph has none yet."""
    crops: dict[int, np.ndarray | None] = {}
    for i, item in enumerate(items):
        disp = images.get(item.key)
        crops[i] = None if disp is None else crop(disp.image, disp.scale, item.x, item.y, size_px, out)
    return crops


def thumbnail(crop_image: np.ndarray, levels: tuple[float, float] | None = None, invert: bool = False) -> QImage:
    """A grey 8-bit image of a float crop: ``levels`` map to black and white (by default
    the crop's own 1st and 99th percentiles); ``invert`` swaps them."""
    a = np.asarray(crop_image, dtype=np.float32)
    finite = np.isfinite(a)
    if levels is None:
        lo, hi = np.percentile(a[finite], CROP_PERCENTILES) if finite.any() else (0.0, 1.0)
    else:
        lo, hi = levels
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    grey = np.clip((np.where(finite, a, lo) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    if invert:
        grey = 255 - grey
    grey = np.ascontiguousarray(grey)
    h, w = grey.shape
    # QImage only borrows the buffer: copy it before the array goes away.
    return QImage(grey.data, w, h, w, QImage.Format.Format_Grayscale8).copy()


class _ThumbDelegate(QStyledItemDelegate):
    """Draws a cell: the thumbnail in its coloured frame, the score, the micrograph name."""

    def __init__(self, thumb_px: int, parent=None) -> None:
        super().__init__(parent)
        self.thumb_px = thumb_px
        self.threshold: float | None = None

    def fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont]:
        small = QFont(option.font)
        small.setPointSizeF(max(7.0, option.font.pointSizeF() - 1.5))
        bold = QFont(small)
        bold.setBold(True)
        return bold, small

    def cell_size(self, font: QFont) -> QSize:
        line = QFontMetrics(font).height()
        side = self.thumb_px + 2 * _FRAME
        return QSize(side + 2 * _PAD, side + 2 * _PAD + 2 * line + 6)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return self.cell_size(option.font)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        try:
            if index.data(INDEX_ROLE) == -1:
                self._paint_divider(painter, option)
            else:
                self._paint_thumb(painter, option, index)
        finally:
            painter.restore()

    def frame_rect(self, cell: QRect) -> QRect:
        """Where a cell's coloured frame (thumbnail included) is drawn."""
        side = self.thumb_px + 2 * _FRAME
        return QRect(cell.left() + (cell.width() - side) // 2, cell.top() + _PAD, side, side)

    def _paint_thumb(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        cell = option.rect
        state = option.state
        if state & QStyle.StateFlag.State_Selected:
            painter.fillRect(cell.adjusted(1, 1, -1, -1), QColor("#3d4350"))
        elif state & QStyle.StateFlag.State_MouseOver:
            painter.fillRect(cell.adjusted(1, 1, -1, -1), QColor("#303236"))
        color = index.data(BORDER_ROLE) or QColor(theme.TEXT)
        frame = self.frame_rect(cell)
        painter.fillRect(frame, color)
        inner = frame.adjusted(_FRAME, _FRAME, -_FRAME, -_FRAME)
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            painter.drawPixmap(inner, pixmap)
        else:
            painter.fillRect(inner, _PLACEHOLDER)
            painter.setPen(_DIM_TEXT)
            painter.drawText(inner, Qt.AlignmentFlag.AlignCenter, "loading…")
        if state & QStyle.StateFlag.State_Selected:
            painter.setPen(QPen(QColor("#ffffff"), 1))
            painter.drawRect(frame.adjusted(-2, -2, 1, 1))

        bold, small = self.fonts(option)
        line = QFontMetrics(small).height()
        text = QRect(cell.left() + 2, frame.bottom() + 3, cell.width() - 4, line)
        painter.setFont(bold)
        painter.setPen(color)
        painter.drawText(text, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                         index.data(Qt.ItemDataRole.DisplayRole) or "")
        painter.setFont(small)
        painter.setPen(_DIM_TEXT)
        name = QFontMetrics(small).elidedText(index.data(NAME_ROLE) or "", Qt.TextElideMode.ElideMiddle, text.width())
        # Top-aligned in a taller box: a centred underscore falls just outside the line box.
        painter.drawText(text.translated(0, line).adjusted(0, 0, 0, 4),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, name)

    def _paint_divider(self, painter: QPainter, option: QStyleOptionViewItem) -> None:
        cell = option.rect
        frame = self.frame_rect(cell)
        x = cell.center().x()
        painter.setPen(QPen(QColor("#8a8d93"), 2, Qt.PenStyle.DashLine))
        painter.drawLine(x, cell.top() + _PAD, x, cell.bottom() - _PAD)
        bold, small = self.fonts(option)
        line = QFontMetrics(bold).height()
        box = QRect(cell.left() + 4, frame.center().y() - (3 * line) // 2 - 2, cell.width() - 8, 3 * line + 4)
        painter.fillRect(box, QColor(theme.BACKGROUND))
        painter.setFont(bold)
        rows = [("◀ kept", KEPT_COLOR),
                ("threshold" if self.threshold is None else f"≥ {self.threshold:.3g}", QColor(theme.TEXT)),
                ("dropped ▶", DROPPED_COLOR)]
        for i, (label, color) in enumerate(rows):
            painter.setPen(color)
            painter.drawText(QRect(box.left(), box.top() + 2 + i * line, box.width(), line),
                             Qt.AlignmentFlag.AlignCenter, label)


class _ThumbList(QListWidget):
    enter_pressed = pyqtSignal(QListWidgetItem)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentItem() is not None:
            self.enter_pressed.emit(self.currentItem())
            return
        super().keyPressEvent(event)


class GalleryWidget(QWidget):
    """Thumbnails of the picks around the threshold, highest score first.

    Signals
    -------
    item_activated(key, x, y)
        The user clicked a thumbnail (or pressed Enter on it): the micrograph key and the
        pick's position in original pixels.
    """

    item_activated = pyqtSignal(str, float, float)

    def __init__(self, parent: QWidget | None = None, thumb_px: int = THUMB_PX) -> None:
        super().__init__(parent)
        self._items: list[GalleryItem] = []
        self._crops: list[np.ndarray | None] = []
        self._levels: dict[str, tuple[float, float]] = {}
        self._invert = False
        self._rows: list[int] = []  # list row of each item (the divider shifts the dropped ones)

        self.caption = QLabel("No picks around the threshold")
        self.caption.setStyleSheet(f"color: {_DIM_TEXT.name()};")
        self.view = _ThumbList()
        self._delegate = _ThumbDelegate(int(thumb_px), self.view)
        self.view.setItemDelegate(self._delegate)
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setFlow(QListView.Flow.LeftToRight)
        self.view.setWrapping(True)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setGridSize(self._delegate.cell_size(self.view.font()))
        self.view.setSpacing(0)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.NoDragDrop)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setMouseTracking(True)
        self.view.setStyleSheet(f"QListWidget {{ background: {theme.BACKGROUND}; border: none; }}")
        self.view.itemClicked.connect(self._on_view_item_clicked)
        self.view.enter_pressed.connect(self._on_view_item_clicked)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 2, 2)
        layout.setSpacing(2)
        layout.addWidget(self.caption)
        layout.addWidget(self.view, 1)

    # -- API ----------------------------------------------------------------------------
    @property
    def items(self) -> list[GalleryItem]:
        return list(self._items)

    def set_items(
        self,
        items: list[GalleryItem],
        crops: dict[int, np.ndarray | None],
        levels: dict[str, tuple[float, float]] | None = None,
        threshold: float | None = None,
    ) -> None:
        """Show ``items`` (from :func:`around_threshold`) with their crops by item index
        (missing or None: a placeholder until :meth:`update_crop`). ``levels`` gives the
        contrast limits per micrograph key (by default each crop's own percentiles);
        ``threshold``, when given, is written on the divider."""
        selected = self._selected_pick()
        self._items = list(items)
        self._crops = [crops.get(i) for i in range(len(self._items))]
        self._levels = dict(levels or {})
        self._delegate.threshold = threshold

        n_kept = sum(1 for it in self._items if it.above)
        self._rows = [i if i < n_kept else i + 1 for i in range(len(self._items))]
        n_rows = len(self._items) + 1 if self._items else 0
        # Reuse the list's items rather than clearing it: no flicker, and the scroll
        # position survives a threshold move.
        while self.view.count() > n_rows:
            self.view.takeItem(self.view.count() - 1)
        while self.view.count() < n_rows:
            self.view.addItem(QListWidgetItem())
        if self._items:
            divider = self.view.item(n_kept)
            divider.setData(INDEX_ROLE, -1)
            divider.setData(Qt.ItemDataRole.DecorationRole, None)
            divider.setData(Qt.ItemDataRole.DisplayRole, "")
            divider.setToolTip("The threshold: picks before it are kept, picks after it dropped")
            divider.setFlags(Qt.ItemFlag.NoItemFlags)
        for i in range(len(self._items)):
            self._fill(i)

        self.view.clearSelection()
        self.view.setCurrentItem(None)
        if selected is not None:
            for i, it in enumerate(self._items):
                if (it.key, it.x, it.y) == selected:
                    self.view.setCurrentRow(self._rows[i])
                    break
        self._update_caption(n_kept)

    def update_crop(self, index: int, crop_image: np.ndarray | None) -> None:
        """Fill in (or replace) the crop of item ``index``; ignored when out of range."""
        if 0 <= index < len(self._items):
            self._crops[index] = crop_image
            self.view.item(self._rows[index]).setData(Qt.ItemDataRole.DecorationRole, self._pixmap(index))

    def set_invert(self, invert: bool) -> None:
        """Show particles white (``True``) or as recorded, dark (``False``)."""
        invert = bool(invert)
        if invert != self._invert:
            self._invert = invert
            for i in range(len(self._items)):
                self.view.item(self._rows[i]).setData(Qt.ItemDataRole.DecorationRole, self._pixmap(i))

    def missing(self) -> list[int]:
        """Indices of the items still without a crop."""
        return [i for i, c in enumerate(self._crops) if c is None]

    def list_item(self, index: int) -> QListWidgetItem:
        """The list's cell showing item ``index``."""
        return self.view.item(self._rows[index])

    # -- internals ----------------------------------------------------------------------
    def _fill(self, i: int) -> None:
        it = self._items[i]
        cell = self.view.item(self._rows[i])
        cell.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        cell.setData(INDEX_ROLE, i)
        cell.setData(KEPT_ROLE, it.above)
        cell.setData(BORDER_ROLE, KEPT_COLOR if it.above else DROPPED_COLOR)
        cell.setData(NAME_ROLE, it.key)
        cell.setData(Qt.ItemDataRole.DisplayRole, f"{it.score:.3f}")
        cell.setData(Qt.ItemDataRole.DecorationRole, self._pixmap(i))
        cell.setToolTip(f"{it.key}  x {it.x:.0f}, y {it.y:.0f}\nscore {it.score:.4g} "
                        f"({'kept' if it.above else 'dropped'}); click to show it")

    def _pixmap(self, i: int) -> QPixmap | None:
        c = self._crops[i]
        if c is None:
            return None
        pixmap = QPixmap.fromImage(thumbnail(c, self._levels.get(self._items[i].key), self._invert))
        side = self._delegate.thumb_px
        if pixmap.width() != side or pixmap.height() != side:
            pixmap = pixmap.scaled(side, side, Qt.AspectRatioMode.IgnoreAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        return pixmap

    def _selected_pick(self) -> tuple[str, float, float] | None:
        cell = self.view.currentItem()
        if cell is None or not cell.isSelected():
            return None
        i = cell.data(INDEX_ROLE)
        if i is None or not 0 <= i < len(self._items):
            return None
        it = self._items[i]
        return it.key, it.x, it.y

    def _update_caption(self, n_kept: int) -> None:
        n = len(self._items)
        if not n:
            self.caption.setText("No picks around the threshold")
        else:
            self.caption.setText(f"{n_kept} lowest kept · {n - n_kept} highest dropped — click one to show it")

    def _on_view_item_clicked(self, cell: QListWidgetItem) -> None:
        i = cell.data(INDEX_ROLE)
        if i is None or not 0 <= i < len(self._items):
            return
        it = self._items[i]
        self.item_activated.emit(it.key, it.x, it.y)


__all__ = ["GalleryWidget", "crops_for", "thumbnail", "INDEX_ROLE", "KEPT_ROLE", "BORDER_ROLE"]
