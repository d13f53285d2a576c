"""The ranked gallery widget, driven as a user does (offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtGui import QColor, QPixmap

from picker_gui.core.gallery import GalleryItem
from picker_gui.core.preprocess import DisplayImage
from picker_gui.gui.gallery import (
    BORDER_ROLE,
    DROPPED_COLOR,
    INDEX_ROLE,
    KEPT_COLOR,
    KEPT_ROLE,
    GalleryWidget,
    crops_for,
    thumbnail,
)

ITEMS = [
    GalleryItem("mic_a", 100.0, 50.0, 0.71, True),
    GalleryItem("mic_b", 220.0, 80.0, 0.62, True),
    GalleryItem("mic_a", 300.0, 150.0, 0.55, True),
    GalleryItem("mic_b", 40.0, 260.0, 0.48, False),
    GalleryItem("mic_c", 333.0, 111.0, 0.31, False),
]


def _crop(value: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=0.3, size=(64, 64)).astype(np.float32) + value
    c[24:40, 24:40] = value - 4.0  # a dark particle in the middle, 6 % of the pixels
    return c


@pytest.fixture
def gallery(qtbot):
    w = GalleryWidget()
    qtbot.addWidget(w)
    w.resize(700, 500)
    w.show()
    qtbot.waitExposed(w)
    return w


def _pixel(w: GalleryWidget, pos: QPoint) -> QColor:
    return w.view.viewport().grab().toImage().pixelColor(pos)


def _centre(w: GalleryWidget, index: int) -> QPoint:
    return w.view.visualItemRect(w.list_item(index)).center()


def test_clicking_a_thumbnail_says_which_pick(gallery, qtbot):
    gallery.set_items(ITEMS, {i: _crop(seed=i) for i in range(len(ITEMS))})
    for index in (0, 3, 4):  # kept, the first dropped (after the divider), the last
        with qtbot.waitSignal(gallery.item_activated, timeout=2000) as blocker:
            qtbot.mouseClick(gallery.view.viewport(), Qt.MouseButton.LeftButton, pos=_centre(gallery, index))
        item = ITEMS[index]
        assert blocker.args == [item.key, item.x, item.y]
        assert gallery.view.currentItem() is gallery.list_item(index)


def test_enter_on_the_current_thumbnail_also_activates_it(gallery, qtbot):
    gallery.set_items(ITEMS, {})
    gallery.view.setFocus()
    gallery.view.setCurrentItem(gallery.list_item(1))
    with qtbot.waitSignal(gallery.item_activated, timeout=2000) as blocker:
        qtbot.keyClick(gallery.view, Qt.Key.Key_Return)
    assert blocker.args == ["mic_b", 220.0, 80.0]


def test_the_divider_sits_between_kept_and_dropped_and_does_nothing(gallery, qtbot):
    gallery.set_items(ITEMS, {}, threshold=0.5)
    assert gallery.view.count() == len(ITEMS) + 1
    divider = gallery.view.item(3)
    assert divider.data(INDEX_ROLE) == -1
    assert not divider.flags() & Qt.ItemFlag.ItemIsSelectable
    with qtbot.assertNotEmitted(gallery.item_activated):
        qtbot.mouseClick(gallery.view.viewport(), Qt.MouseButton.LeftButton,
                         pos=gallery.view.visualItemRect(divider).center())
    # Divider and thumbnails flow in score order: the dropped ones come after it.
    rects = [gallery.view.visualItemRect(gallery.list_item(i)) for i in range(len(ITEMS))]
    div = gallery.view.visualItemRect(divider)
    order = lambda r: (r.top(), r.left())  # noqa: E731
    assert order(rects[2]) < order(div) < order(rects[3])


def test_kept_and_dropped_are_framed_in_different_colours(gallery, qtbot):
    gallery.set_items(ITEMS, {i: _crop(seed=i) for i in range(len(ITEMS))})
    delegate = gallery.view.itemDelegate()
    for index, item in enumerate(ITEMS):
        cell = gallery.list_item(index)
        assert cell.data(KEPT_ROLE) is item.above
        assert cell.data(BORDER_ROLE) == (KEPT_COLOR if item.above else DROPPED_COLOR)
        frame = delegate.frame_rect(gallery.view.visualItemRect(cell))
        on_frame = QPoint(frame.left() + 1, frame.center().y())
        assert _pixel(gallery, on_frame) == (KEPT_COLOR if item.above else DROPPED_COLOR)
    assert KEPT_COLOR != DROPPED_COLOR


def test_placeholders_until_the_crop_arrives(gallery, qtbot):
    crops = {0: _crop(seed=0), 2: _crop(seed=2)}
    gallery.set_items(ITEMS, crops)
    assert gallery.missing() == [1, 3, 4]
    cell = gallery.list_item(3)
    assert cell.data(Qt.ItemDataRole.DecorationRole) is None
    centre = gallery.view.itemDelegate().frame_rect(gallery.view.visualItemRect(cell)).center()
    placeholder = _pixel(gallery, centre)

    gallery.update_crop(3, _crop(seed=3))
    assert isinstance(cell.data(Qt.ItemDataRole.DecorationRole), QPixmap)
    assert gallery.missing() == [1, 4]
    qtbot.waitUntil(lambda: _pixel(gallery, centre) != placeholder, timeout=2000)
    # The particle in the middle is dark (not inverted).
    assert _pixel(gallery, centre).value() < 60
    gallery.update_crop(99, _crop())  # a stale index: ignored


def test_invert_shows_particles_white(gallery, qtbot):
    gallery.set_items(ITEMS, {i: _crop(seed=i) for i in range(len(ITEMS))})
    centre = gallery.view.itemDelegate().frame_rect(gallery.view.visualItemRect(gallery.list_item(0))).center()
    assert _pixel(gallery, centre).value() < 60
    gallery.set_invert(True)
    qtbot.waitUntil(lambda: _pixel(gallery, centre).value() > 195, timeout=2000)
    gallery.set_invert(False)
    qtbot.waitUntil(lambda: _pixel(gallery, centre).value() < 60, timeout=2000)


def test_a_new_set_of_items_reuses_cells_and_keeps_the_selected_pick(gallery, qtbot):
    gallery.set_items(ITEMS, {})
    qtbot.mouseClick(gallery.view.viewport(), Qt.MouseButton.LeftButton, pos=_centre(gallery, 2))
    # The threshold moves up: the same pick is now dropped, and fewer items come back.
    moved = [ITEMS[0], ITEMS[1], GalleryItem("mic_a", 300.0, 150.0, 0.55, False)]
    gallery.set_items(moved, {}, threshold=0.6)
    assert gallery.view.count() == 4
    assert gallery.view.currentItem() is gallery.list_item(2)
    assert gallery.list_item(2).data(KEPT_ROLE) is False
    assert gallery.items == moved
    gallery.set_items([], {})
    assert gallery.view.count() == 0
    assert "No picks" in gallery.caption.text()


def test_given_levels_replace_the_crops_percentiles():
    flat = np.full((8, 8), 5.0, dtype=np.float32)
    assert thumbnail(flat, levels=(0.0, 10.0)).pixelColor(4, 4).value() == 127
    assert thumbnail(flat, levels=(0.0, 10.0), invert=True).pixelColor(4, 4).value() == 128
    ramp = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (4, 1))
    img = thumbnail(ramp)
    assert img.pixelColor(0, 0).value() == 0 and img.pixelColor(49, 0).value() == 255
    nan = np.full((4, 4), np.nan, dtype=np.float32)
    assert thumbnail(nan).width() == 4  # no crash on a crop without data


def test_crops_for_uses_the_display_images_given():
    image = np.zeros((100, 150), dtype=np.float32)
    image[40, 120] = 9.0  # original (x, y) = (240, 80) at 2x binning
    images = {"mic_a": DisplayImage(image, (0.0, 1.0), (2.0, 2.0), None)}
    items = [GalleryItem("mic_a", 240.0, 80.0, 0.9, True), GalleryItem("mic_b", 1.0, 1.0, 0.1, False)]
    crops = crops_for(items, images, size_px=32, out=16)
    assert crops[1] is None
    assert crops[0].shape == (16, 16)
    assert np.unravel_index(np.argmax(crops[0]), crops[0].shape) == (8, 8)
