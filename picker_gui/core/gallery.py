"""The ranked gallery: the picks on either side of the score threshold, and their crops.

When the user moves the threshold, the picks that matter are the ones it passes: the
lowest-scoring picks still kept and the highest-scoring picks dropped. Shown side by side
in score order they tell at a glance whether the threshold sits where particles stop and
junk begins.

Ranking: all shown picks of the micrographs considered, by descending score; ties are
broken by micrograph (in the store's order) and then by a micrograph's own order, which
is what a stable sort of the micrographs' picks concatenated in store order gives. A pick
is *above* (kept) when its score is at least the threshold, as in :meth:`Picks.above`.

Coordinates are original-micrograph pixels (``x`` = column, ``y`` = row), as everywhere.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from picker_gui.core.coords import micrograph_key
from picker_gui.core.picks import PickStore

#: Roughly this many pixels (a strided subsample) estimate the fill value of a crop.
_FILL_SAMPLE = 16_384
#: At most this many samples per output pixel and axis when a crop shrinks the image.
_MAX_SUPERSAMPLE = 4


@dataclass(frozen=True, slots=True)
class GalleryItem:
    """One pick of the gallery: its micrograph key, position (original px) and score;
    ``above`` is True for a kept pick (score at least the threshold)."""

    key: str
    x: float
    y: float
    score: float
    above: bool


def around_threshold(
    store: PickStore,
    threshold: float,
    n_above: int = 12,
    n_below: int = 12,
    keys: Iterable[str] | None = None,
) -> list[GalleryItem]:
    """The picks next to ``threshold`` over all micrographs, highest score first.

    Parameters
    ----------
    store
        The picks; each micrograph's shown picks (:meth:`PickStore.picks`) are used.
    threshold
        Picks scoring at least this are kept (``above``).
    n_above, n_below
        How many of the lowest-scoring kept picks and of the highest-scoring dropped picks
        to return (fewer when there are fewer).
    keys
        Only these micrographs (names or keys; unknown ones are ignored); all by default.

    Returns
    -------
    list of GalleryItem
        At most ``n_above`` kept items followed by at most ``n_below`` dropped ones, in
        descending score order (ties: see the module docstring).

    Notes
    -----
    Each micrograph's scores are sorted, so one binary search finds its boundary; a heap
    over the micrographs then walks outwards from the boundaries, touching only
    ``O(micrographs + (n_above + n_below) log micrographs)`` entries. Nothing is
    concatenated, so the call is cheap enough for every move of the slider.
    """
    n_above, n_below = max(0, int(n_above)), max(0, int(n_below))
    if keys is None:
        order = store.keys()
    else:
        wanted = {micrograph_key(k) for k in keys}
        order = [k for k in store.keys() if k in wanted]
    threshold = float(threshold)
    picks = []  # the micrographs with picks, and their keys
    names: list[str] = []
    # Heaps of (rank key, micrograph number, index): popping yields picks walking away
    # from the threshold. Going down from the boundary the global order is reversed,
    # hence the negated micrograph number and index in the first heap.
    up: list[tuple[float, int, int]] = []
    down: list[tuple[float, int, int]] = []
    for key in order:
        p = store.picks(key)
        score = p.score
        if not len(score):
            continue
        # The number kept. Scores are descending; searching their reversed view (ascending)
        # with the array method costs a quarter of np.searchsorted on a negated copy.
        n = len(score) - int(score[::-1].searchsorted(threshold, side="left"))
        j = len(picks)
        picks.append(p)
        names.append(key)
        if n > 0 and n_above:
            up.append((float(score[n - 1]), -j, -(n - 1)))
        if n < len(score) and n_below:
            down.append((-float(score[n]), j, n))

    above = _walk(up, picks, n_above, step=-1)
    below = _walk(down, picks, n_below, step=1)
    items = [_item(names[j], picks[j], i, True) for j, i in reversed(above)]
    items += [_item(names[j], picks[j], i, False) for j, i in below]
    return items


def _walk(heap: list[tuple[float, int, int]], picks: list, count: int, step: int) -> list[tuple[int, int]]:
    """Pop ``count`` entries, each time pushing the popped micrograph's next pick."""
    heapq.heapify(heap)
    out: list[tuple[int, int]] = []
    while heap and len(out) < count:
        _, j, i = heapq.heappop(heap)
        j, i = abs(j), abs(i)
        out.append((j, i))
        nxt = i + step
        score = picks[j].score
        if 0 <= nxt < len(score):
            if step < 0:
                heapq.heappush(heap, (float(score[nxt]), -j, -nxt))
            else:
                heapq.heappush(heap, (-float(score[nxt]), j, nxt))
    return out


def _item(key: str, p, i: int, above: bool) -> GalleryItem:
    return GalleryItem(key, float(p.x[i]), float(p.y[i]), float(p.score[i]), above)


def crop(
    image: np.ndarray,
    scale: tuple[float, float],
    x: float,
    y: float,
    size_px: float,
    out: int = 64,
    *,
    fill: float | None = None,
) -> np.ndarray:
    """A square crop of a display image around ``(x, y)``, resampled to ``out`` x ``out``.

    Parameters
    ----------
    image
        The display image, ``[rows, cols]``.
    scale
        ``(scale_y, scale_x)``: original pixels per display pixel (:attr:`DisplayImage.scale`);
        display pixel ``j`` sits at ``j * scale`` in the original.
    x, y
        Centre in original pixels (``x`` = column, ``y`` = row).
    size_px
        Side of the square in original pixels.
    out
        Side of the result in pixels.
    fill
        Value outside the image; by default the image's median (estimated on a subsample),
        so that a pick near the edge shows a neutral border rather than failing.

    Returns
    -------
    ndarray
        float32 ``[out, out]``; the centre ``(x, y)`` lands on pixel ``[out // 2, out // 2]``.

    Notes
    -----
    Bilinear interpolation; when the crop shrinks the image by two or more, each output
    pixel averages a few bilinear samples across its footprint (up to 4 x 4), so that
    fine noise does not alias into the thumbnail.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {image.shape}")
    out = int(out)
    sy, sx = float(scale[0]), float(scale[1])
    if out < 1:
        raise ValueError(f"the crop must be at least 1 px, got {out}")
    if not (size_px > 0 and math.isfinite(size_px) and sy > 0 and sx > 0):
        raise ValueError(f"crop size and scale must be positive, got size {size_px} and scale {scale}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"crop centre must be finite, got ({x}, {y})")
    step = float(size_px) / out  # original px per output px
    k = min(_MAX_SUPERSAMPLE, max(1, int(step / min(sx, sy))))
    sub = ((np.arange(k) + 0.5) / k - 0.5) * step  # sub-sample offsets within an output pixel
    grid = ((np.arange(out) - out // 2) * step)[:, None] + sub[None, :]
    h, w = image.shape
    # Display coordinates of every sample; clamped one pixel beyond the image, where only
    # the fill is, so that a huge or far-away crop never allocates more than the image.
    rows = np.clip((y + grid) / sy, -1.0, h).ravel()
    cols = np.clip((x + grid) / sx, -1.0, w).ravel()

    # A window of the image covering every sample and its right/bottom neighbour,
    # padded with the fill value where it leaves the image.
    r0, c0 = math.floor(rows.min()), math.floor(cols.min())
    r1, c1 = math.floor(rows.max()) + 2, math.floor(cols.max()) + 2
    inside = image[max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)]
    if inside.shape == (r1 - r0, c1 - c0):
        window = inside.astype(np.float32, copy=False)
    else:
        if fill is None:
            s = max(1, int(math.sqrt(image.size / _FILL_SAMPLE)))
            fill = float(np.median(image[::s, ::s]))
        window = np.full((r1 - r0, c1 - c0), fill, dtype=np.float32)
        if inside.size:
            window[max(r0, 0) - r0:min(r1, h) - r0, max(c0, 0) - c0:min(c1, w) - c0] = inside

    rr, cc = rows - r0, cols - c0
    ri, ci = np.floor(rr).astype(np.intp), np.floor(cc).astype(np.intp)
    fr, fc = (rr - ri).astype(np.float32)[:, None], (cc - ci).astype(np.float32)[None, :]
    top = window[ri[:, None], ci[None, :]] * (1 - fc) + window[ri[:, None], ci[None, :] + 1] * fc
    bottom = window[ri[:, None] + 1, ci[None, :]] * (1 - fc) + window[ri[:, None] + 1, ci[None, :] + 1] * fc
    samples = top * (1 - fr) + bottom * fr  # [out * k, out * k]
    if k > 1:
        samples = samples.reshape(out, k, out, k).mean(axis=(1, 3))
    return np.ascontiguousarray(samples, dtype=np.float32)
