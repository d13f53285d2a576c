"""The ranked gallery's core: the picks around the threshold, and crops of a display image."""

from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core.gallery import GalleryItem, around_threshold, crop
from picker_gui.core.picks import PickStore


def _hand_store() -> PickStore:
    store = PickStore()
    store.set("a.mrc", [10, 11, 12, 13], [20, 21, 22, 23], [0.9, 0.5, 0.2, 0.6])
    store.set("b.mrc", [30, 31, 32], [40, 41, 42], [0.55, 0.45, 0.1])
    store.set("c.mrc", [], [], [])
    return store


def _reference(store: PickStore, threshold, n_above, n_below, keys=None):
    """Every pick concatenated in store order, stably sorted by descending score."""
    rows = []
    for key in store.keys() if keys is None else keys:
        p = store.picks(key)
        rows += [(key, float(x), float(y), float(s)) for x, y, s in zip(p.x, p.y, p.score)]
    rows.sort(key=lambda r: -r[3])  # stable: ties keep store order, then the micrograph's order
    kept = [r for r in rows if r[3] >= threshold]
    dropped = [r for r in rows if r[3] < threshold]
    window = (kept[len(kept) - n_above:] if n_above else []) + dropped[:n_below]
    return [GalleryItem(k, x, y, s, s >= threshold) for k, x, y, s in window]


def test_the_picks_next_to_the_threshold_in_descending_order():
    items = around_threshold(_hand_store(), 0.5, n_above=2, n_below=2)
    assert [(i.key, i.score, i.above) for i in items] == [
        ("b", 0.55, True), ("a", 0.5, True), ("b", 0.45, False), ("a", 0.2, False)]
    assert items[0] == GalleryItem("b", 30.0, 40.0, 0.55, True)
    assert items[2] == GalleryItem("b", 31.0, 41.0, 0.45, False)


def test_the_kept_picks_are_the_lowest_scoring_ones_across_micrographs():
    items = around_threshold(_hand_store(), 0.5, n_above=3, n_below=0)
    assert [i.score for i in items] == [0.6, 0.55, 0.5]
    assert [i.key for i in items] == ["a", "b", "a"]
    assert all(i.above for i in items)


def test_fewer_picks_than_asked_gives_all_of_them():
    items = around_threshold(_hand_store(), 0.5, n_above=50, n_below=50)
    assert len(items) == 7
    assert [i.score for i in items] == sorted((i.score for i in items), reverse=True)
    assert [i.above for i in items] == [True] * 4 + [False] * 3


@pytest.mark.parametrize("threshold, n_kept", [(5.0, 0), (-5.0, 7), (np.inf, 0), (-np.inf, 7)])
def test_a_threshold_beyond_every_score(threshold, n_kept):
    items = around_threshold(_hand_store(), threshold, n_above=3, n_below=3)
    above = [i for i in items if i.above]
    below = [i for i in items if not i.above]
    assert len(above) == min(3, n_kept) and len(below) == min(3, 7 - n_kept)
    if n_kept == 0:
        assert [i.score for i in below] == [0.9, 0.6, 0.55]
    else:
        assert [i.score for i in above] == [0.45, 0.2, 0.1]


def test_a_score_equal_to_the_threshold_is_kept():
    items = around_threshold(_hand_store(), 0.45, n_above=1, n_below=1)
    assert [(i.score, i.above) for i in items] == [(0.45, True), (0.2, False)]


def test_ties_follow_store_order_then_the_micrographs_order():
    store = PickStore()
    store.set("m1", [1, 2, 3], [0, 0, 0], [0.5, 0.5, 0.5])
    store.set("m2", [4, 5], [0, 0], [0.5, 0.5])
    store.set("m3", [6], [0], [0.5])
    for n_above, n_below, t in [(2, 0, 0.5), (0, 2, 0.6), (4, 4, 0.5), (3, 3, 0.6)]:
        got = around_threshold(store, t, n_above=n_above, n_below=n_below)
        assert got == _reference(store, t, n_above, n_below)
    # The two lowest kept of six equal scores are the last two in order: m2's second and m3's.
    assert [(i.key, i.x) for i in around_threshold(store, 0.5, 2, 0)] == [("m2", 5.0), ("m3", 6.0)]
    assert [(i.key, i.x) for i in around_threshold(store, 0.6, 0, 2)] == [("m1", 1.0), ("m1", 2.0)]


@pytest.mark.parametrize("seed", range(6))
def test_matches_sorting_everything(seed):
    rng = np.random.default_rng(seed)
    store = PickStore()
    for m in range(rng.integers(1, 30)):
        n = int(rng.integers(0, 40))
        # Rounded scores make many ties.
        store.set(f"mic_{m}.mrc", rng.uniform(0, 100, n), rng.uniform(0, 100, n), np.round(rng.normal(size=n), 1))
    for t in (-0.3, 0.0, 0.25, 1.0):
        for n_above, n_below in [(12, 12), (0, 5), (5, 0), (1, 1), (40, 3)]:
            assert around_threshold(store, t, n_above, n_below) == _reference(store, t, n_above, n_below)


def test_only_the_given_micrographs():
    store = _hand_store()
    items = around_threshold(store, 0.5, n_above=5, n_below=5, keys=["b.mrc", "nowhere"])
    assert {i.key for i in items} == {"b"}
    assert [i.score for i in items] == [0.55, 0.45, 0.1]
    assert around_threshold(store, 0.5, keys=[]) == []


def test_shown_picks_respect_the_least_distance():
    store = PickStore(min_distance_px=5)
    store.set("m", [0, 1, 50], [0, 0, 0], [0.9, 0.8, 0.1])  # the 0.8 pick is suppressed
    assert [i.score for i in around_threshold(store, 0.5)] == [0.9, 0.1]


def test_empty_store():
    assert around_threshold(PickStore(), 0.5) == []


# -- crops ----------------------------------------------------------------------------------
def _dot(shape, row, col, value=10.0):
    image = np.zeros(shape, dtype=np.float32)
    image[row, col] = value
    return image


@pytest.mark.parametrize("out", [64, 33])
def test_a_bright_pixel_at_the_centre_lands_in_the_middle(out):
    image = _dot((50, 80), 20, 60)  # non-square: x is the column, y the row
    c = crop(image, (1.0, 1.0), x=60, y=20, size_px=out, out=out)
    assert c.shape == (out, out) and c.dtype == np.float32
    assert np.unravel_index(np.argmax(c), c.shape) == (out // 2, out // 2)
    assert c[out // 2, out // 2] == pytest.approx(10.0)


def test_x_is_the_column_and_y_the_row():
    image = _dot((50, 80), 20, 60)
    c = crop(image, (1.0, 1.0), x=55, y=22, size_px=16, out=16)
    # The dot is 5 px right of and 2 px above the centre.
    assert np.unravel_index(np.argmax(c), c.shape) == (8 - 2, 8 + 5)


def test_the_scale_maps_original_to_display_pixels():
    # A display image binned 4x in y and 2x in x: display pixel (10, 30) is original (40, 60).
    image = _dot((25, 40), 10, 30)
    c = crop(image, (4.0, 2.0), x=60, y=40, size_px=32, out=32)
    assert np.unravel_index(np.argmax(c), c.shape) == (16, 16)
    # Moving 8 original px to the right is 4 display px; the dot moves left by 8 output px.
    c = crop(image, (4.0, 2.0), x=68, y=40, size_px=32, out=32)
    assert np.unravel_index(np.argmax(c), c.shape) == (16, 8)


def test_shrinking_averages_instead_of_skipping_pixels():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(400, 600)).astype(np.float32)
    c = crop(image, (1.0, 1.0), x=300, y=200, size_px=256, out=32)
    # 8x shrinking averages 4 x 4 samples: noise drops by about 4x.
    assert c.std() < 0.5


def test_edges_are_padded_with_the_median():
    image = np.full((30, 50), 3.0, dtype=np.float32)
    image[:, :25] = 1.0  # median 3 (ties) or between: the fill is the median of the image
    median = float(np.median(image))
    c = crop(image, (1.0, 1.0), x=0, y=0, size_px=20, out=20)
    assert c.shape == (20, 20)
    assert np.allclose(c[:9, :], median) and np.allclose(c[:, :9], median)
    assert np.allclose(c[11:, 11:], 1.0)
    far = crop(image, (1.0, 1.0), x=1e6, y=-1e6, size_px=1e5, out=8)
    assert np.allclose(far, median)


def test_bottom_right_edge_of_a_non_square_image():
    image = _dot((30, 70), 29, 69)
    c = crop(image, (1.0, 1.0), x=69, y=29, size_px=12, out=12)
    assert np.unravel_index(np.argmax(c), c.shape) == (6, 6)
    assert np.allclose(c[8:, :], 0.0) and np.allclose(c[:, 8:], 0.0)


def test_an_explicit_fill():
    c = crop(np.ones((10, 10), np.float32), (1.0, 1.0), x=-100, y=5, size_px=4, out=4, fill=-7.0)
    assert np.all(c == -7.0)


@pytest.mark.parametrize("kwargs", [{"size_px": 0}, {"size_px": np.nan}, {"x": np.nan}, {"out": 0},
                                    {"scale": (0.0, 1.0)}])
def test_bad_arguments_are_refused(kwargs):
    args = {"image": np.ones((10, 10)), "scale": (1.0, 1.0), "x": 5.0, "y": 5.0, "size_px": 4.0, "out": 4}
    args.update(kwargs)
    with pytest.raises(ValueError):
        crop(**args)
