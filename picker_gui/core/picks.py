"""Scored picks per micrograph: the live store behind the threshold slider.

The picker extracts *candidates* once per micrograph, ranked by score, with a small least
distance between them (``candidate_distance_px``) and a score floor. What the user sees is
then decided here, without scoring again:

- the least distance between picks (``min_distance_px``, Topaz's NMS radius), applied to the
  candidates greedily in score order, as non-maximum suppression does (exact for distances
  at least the candidate distance, up to candidates that the first suppression already
  removed);
- the threshold: every pick scoring at least it.

Everything a slider needs is per micrograph and cheap: a micrograph's picks above a
threshold are a slice of its score-sorted arrays (``O(rows of that micrograph)``), and the
counts of every micrograph are one binary search each. Listeners registered with
:meth:`PickStore.subscribe` hear which micrographs changed.

Coordinates are original-micrograph pixels, as everywhere (see :mod:`picker_gui.core.coords`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from picker_gui.core.coords import PARTICLE, CoordinateTable, micrograph_key

#: Candidates are extracted this close together, as a fraction of the least distance asked
#: for, so that the least distance shown can be changed without scoring again.
CANDIDATE_FRACTION = 0.5
#: At most this many candidates per micrograph, as a multiple of the particles that fit on it
#: (the lowest-scoring ones beyond it are never shown at any sensible threshold).
CANDIDATES_PER_FIT = 3


@dataclass(frozen=True)
class Picks:
    """One micrograph's picks, highest score first (arrays are shared: do not modify)."""

    x: np.ndarray
    y: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def above(self, threshold: float) -> "Picks":
        """The picks scoring at least ``threshold``: a slice, no copy."""
        n = int(np.searchsorted(-self.score, -threshold, side="right"))
        return Picks(self.x[:n], self.y[:n], self.score[:n])

    def count(self, threshold: float) -> int:
        return int(np.searchsorted(-self.score, -threshold, side="right"))


_EMPTY = Picks(np.zeros(0), np.zeros(0), np.zeros(0))


def keep_apart(x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    """Indices of the points kept by greedy suppression in the given order (highest score
    first): a point is dropped when it lies within ``distance`` of a point kept before.

    A grid of cells ``distance`` wide limits each test to the 3 x 3 neighbouring cells.
    """
    n = len(x)
    if n == 0 or not distance > 0:
        return np.arange(n)
    r2 = distance * distance
    cx = np.floor(np.asarray(x) / distance).astype(np.int64)
    cy = np.floor(np.asarray(y) / distance).astype(np.int64)
    grid: dict[tuple[int, int], list[int]] = {}
    kept: list[int] = []
    xs, ys = np.asarray(x, dtype=np.float64).tolist(), np.asarray(y, dtype=np.float64).tolist()
    for i, (gx, gy) in enumerate(zip(cx.tolist(), cy.tolist())):
        xi, yi = xs[i], ys[i]
        near = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in grid.get((gx + dx, gy + dy), ()):
                    ex, ey = xs[j] - xi, ys[j] - yi
                    if ex * ex + ey * ey <= r2:  # as NMS's disc: a pick at exactly the distance goes too
                        near = True
                        break
                if near:
                    break
            if near:
                break
        if not near:
            kept.append(i)
            grid.setdefault((gx, gy), []).append(i)
    return np.asarray(kept, dtype=np.int64)


class PickStore:
    """Candidates and visible picks of every micrograph.

    Parameters
    ----------
    min_distance_px
        Least distance between the picks shown, in original-micrograph pixels (0: the
        candidates as extracted).
    """

    def __init__(self, min_distance_px: float = 0.0) -> None:
        self._candidates: dict[str, Picks] = {}
        self._names: dict[str, str] = {}
        self._visible: dict[str, Picks] = {}  # candidates kept apart at min_distance_px
        self._min_distance = float(min_distance_px)
        self._all_scores: np.ndarray | None = None
        self._listeners: list[Callable[[tuple[str, ...]], None]] = []
        #: The model that made the picks (see models.model_id); None when there are none.
        self.model_id: str | None = None

    # -- events -------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        """``callback(keys)`` after every change, with the keys of the micrographs changed."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        self._listeners.remove(callback)

    def _notify(self, keys: Iterable[str]) -> None:
        self._all_scores = None
        keys = tuple(keys)
        for callback in list(self._listeners):
            callback(keys)

    # -- filling ------------------------------------------------------------------------
    def set(self, micrograph: str, x, y, score, *, notify: bool = True,
            kept: tuple[float, np.ndarray] | None = None) -> None:
        """Replace one micrograph's candidates (any order; kept highest score first).

        ``kept``: (distance, indices of the candidates kept apart at it, in the order given),
        when the caller worked them out already (a pick job does, on its own thread)."""
        key = micrograph_key(micrograph)
        score = np.asarray(score, dtype=np.float64)
        order = np.argsort(-score, kind="stable")
        c = Picks(np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order], score[order])
        self._candidates[key] = c
        self._names.setdefault(key, str(micrograph))
        self._visible.pop(key, None)
        if kept is not None and math.isclose(kept[0], self._min_distance):
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            keep = np.sort(rank[np.asarray(kept[1], dtype=np.int64)])
            self._visible[key] = Picks(c.x[keep], c.y[keep], c.score[keep])
        if notify:
            self._notify((key,))

    def set_table(self, table: CoordinateTable, model_id: str | None = None) -> None:
        """Take every micrograph of ``table`` (a pick job's output, or picks read back from
        the project); micrographs not in it keep theirs."""
        keys = []
        for key, part in table.groupby_micrograph():
            self.set(str(part.micrograph[0]), part.x, part.y, part.score, notify=False)
            keys.append(key)
        if model_id is not None:
            self.model_id = model_id
        self._notify(keys)

    def clear(self) -> None:
        keys = tuple(self._candidates)
        self._candidates.clear()
        self._visible.clear()
        self.model_id = None
        self._notify(keys)

    # -- the least distance between picks --------------------------------------------------
    @property
    def min_distance_px(self) -> float:
        return self._min_distance

    def set_min_distance(self, distance_px: float) -> None:
        """Change the least distance between shown picks (original pixels); every micrograph
        is filtered again when next asked."""
        distance_px = max(0.0, float(distance_px))
        if math.isclose(distance_px, self._min_distance):
            return
        self._min_distance = distance_px
        self._visible.clear()
        self._notify(tuple(self._candidates))

    # -- access -------------------------------------------------------------------------
    def __contains__(self, micrograph: str) -> bool:
        return micrograph_key(micrograph) in self._candidates

    def keys(self) -> list[str]:
        return list(self._candidates)

    def name(self, key: str) -> str:
        return self._names.get(micrograph_key(key), key)

    def candidates(self, micrograph: str) -> Picks:
        return self._candidates.get(micrograph_key(micrograph), _EMPTY)

    def picks(self, micrograph: str, threshold: float = -np.inf) -> Picks:
        """The picks shown on a micrograph at ``threshold``, highest score first."""
        visible = self._visible.get(micrograph)  # a key already: no name to normalise (the fast path)
        if visible is None:
            key = micrograph_key(micrograph)
            visible = self._visible.get(key)
        if visible is None:
            c = self._candidates.get(key)
            if c is None:
                return _EMPTY
            keep = keep_apart(c.x, c.y, self._min_distance)
            visible = c if len(keep) == len(c) else Picks(c.x[keep], c.y[keep], c.score[keep])
            self._visible[key] = visible
        return visible.above(threshold) if threshold > -np.inf else visible

    def count(self, micrograph: str, threshold: float) -> int:
        return self.picks(micrograph).count(threshold)

    def counts(self, threshold: float) -> dict[str, int]:
        """Picks per micrograph at ``threshold``: one binary search each."""
        return {key: self.picks(key).count(threshold) for key in self._candidates}

    def total(self, threshold: float) -> int:
        return sum(self.counts(threshold).values())

    def scores(self) -> np.ndarray:
        """Scores of every shown pick (for the histogram), computed once per change."""
        if self._all_scores is None:
            parts = [self.picks(k).score for k in self._candidates]
            self._all_scores = np.concatenate(parts) if parts else np.zeros(0)
        return self._all_scores

    def to_table(self, threshold: float = -np.inf, *, candidates: bool = False,
                 keys: Iterable[str] | None = None) -> CoordinateTable:
        """The shown picks (or every candidate) as a table, micrograph by micrograph."""
        parts = []
        for key in (self._candidates if keys is None else [micrograph_key(k) for k in keys]):
            if key not in self._candidates:
                continue
            p = self.candidates(key) if candidates else self.picks(key, threshold)
            if candidates and threshold > -np.inf:
                p = p.above(threshold)
            if len(p):
                parts.append(CoordinateTable.from_arrays(self._names.get(key, key), p.x, p.y, p.score,
                                                         kind=PARTICLE, source="picker-gui"))
        return CoordinateTable.concat(parts)

    def frozen(self) -> "PickStore":
        """A copy later changes do not touch (arrays are replaced, never written into), for
        a saving thread."""
        copy = PickStore(self._min_distance)
        copy._candidates = dict(self._candidates)
        copy._names = dict(self._names)
        copy._visible = dict(self._visible)
        copy.model_id = self.model_id
        return copy


__all__ = ["PickStore", "Picks", "keep_apart"]
