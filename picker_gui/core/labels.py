"""The user's labels while they are being edited: per micrograph, positives and negatives.

Edits (add, remove, move) are plain method calls that return what is needed to undo them;
the window wraps them in undo commands and saves after each one. Listeners registered with
:meth:`LabelStore.subscribe` are called after every change with the keys of the micrographs
that changed (one for a click, all of them at once for an import), so views redraw only
what changed, once. Hit-testing (which label is under the cursor) lives here
too, so it is tested without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from picker_gui.core.coords import KINDS, NEGATIVE, PARTICLE, CoordinateTable, micrograph_key


@dataclass(frozen=True)
class Hit:
    micrograph: str
    kind: str
    index: int
    distance: float


class LabelStore:
    """Labels of every micrograph, as ``(n, 2)`` float arrays of x, y per kind."""

    def __init__(self) -> None:
        self._points: dict[str, dict[str, np.ndarray]] = {}
        self._names: dict[str, str] = {}  # key -> name as the micrograph list shows it
        self._listeners: list[Callable[[str], None]] = []

    # -- conversion ----------------------------------------------------------------------
    @classmethod
    def from_table(cls, table: CoordinateTable) -> "LabelStore":
        store = cls()
        for key, part in table.groupby_micrograph():
            store._names[key] = str(part.micrograph[0])
            for kind in KINDS:
                sel = part[part.kind == kind]
                store._arrays(key)[kind] = sel.xy().astype(np.float64)
        return store

    def frozen(self) -> "LabelStore":
        """A copy that later edits do not change, made in microseconds: edits replace a
        micrograph's arrays instead of writing into them, so the copy shares the arrays.
        A saving thread turns it into a table while the user goes on clicking."""
        copy = LabelStore()
        copy._points = {k: dict(v) for k, v in self._points.items()}
        copy._names = dict(self._names)
        return copy

    def to_table(self) -> CoordinateTable:
        """Every label as one table."""
        names, kinds, counts, arrays = [], [], [], []
        for key in sorted(self._points):
            for kind in KINDS:
                xy = self._points[key][kind]
                if len(xy):
                    names.append(self._names.get(key, key))
                    kinds.append(kind)
                    counts.append(len(xy))
                    arrays.append(xy)
        if not arrays:
            return CoordinateTable.empty()
        xy = np.concatenate(arrays)
        return CoordinateTable.from_arrays(
            np.repeat(np.array(names, dtype=object), counts), xy[:, 0], xy[:, 1],
            kind=np.repeat(np.array(kinds, dtype=object), counts), source="manual")

    # -- access --------------------------------------------------------------------------
    def _arrays(self, micrograph: str) -> dict[str, np.ndarray]:
        key = micrograph_key(micrograph)
        if key not in self._points:
            self._points[key] = {k: np.zeros((0, 2)) for k in KINDS}
            self._names.setdefault(key, micrograph)
        return self._points[key]

    def points(self, micrograph: str, kind: str = PARTICLE) -> np.ndarray:
        """``(n, 2)`` x, y of one kind on one micrograph (a copy-free view; do not modify)."""
        return self._points.get(micrograph_key(micrograph), {}).get(kind, np.zeros((0, 2)))

    def count(self, micrograph: str, kind: str = PARTICLE) -> int:
        return len(self.points(micrograph, kind))

    def total(self, kind: str = PARTICLE) -> int:
        return sum(len(p[kind]) for p in self._points.values())

    def micrographs(self) -> list[str]:
        return [k for k, p in self._points.items() if any(len(v) for v in p.values())]

    def hit(self, micrograph: str, x: float, y: float, radius: float, kinds: tuple[str, ...] = KINDS) -> Hit | None:
        """The nearest label within ``radius`` of (x, y), of the given kinds."""
        best: Hit | None = None
        for kind in kinds:
            xy = self.points(micrograph, kind)
            if not len(xy):
                continue
            d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
            i = int(np.argmin(d))
            if d[i] <= radius and (best is None or d[i] < best.distance):
                best = Hit(micrograph_key(micrograph), kind, i, float(d[i]))
        return best

    # -- edits ---------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        """``callback(keys)`` after every change, with the keys of the micrographs changed."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        self._listeners.remove(callback)

    def _changed(self, micrograph: str) -> None:
        self._notify((micrograph_key(micrograph),))

    def _notify(self, keys: tuple[str, ...]) -> None:
        for callback in list(self._listeners):
            callback(keys)

    def add(self, micrograph: str, x: float, y: float, kind: str = PARTICLE, index: int | None = None) -> int:
        """Add a label (at ``index``, to undo a removal); returns its index."""
        if kind not in KINDS:
            raise ValueError(f"unknown label kind {kind!r}")
        arrays = self._arrays(micrograph)
        xy = arrays[kind]
        index = len(xy) if index is None else index
        arrays[kind] = np.insert(xy, index, [x, y], axis=0)
        self._changed(micrograph)
        return index

    def remove(self, micrograph: str, kind: str, index: int) -> tuple[float, float]:
        """Remove a label; returns its position."""
        arrays = self._arrays(micrograph)
        x, y = arrays[kind][index]
        arrays[kind] = np.delete(arrays[kind], index, axis=0)
        self._changed(micrograph)
        return float(x), float(y)

    def move(self, micrograph: str, kind: str, index: int, x: float, y: float, notify: bool = True) -> tuple[float, float]:
        """Move a label; returns its old position. ``notify=False`` for live dragging."""
        arrays = self._arrays(micrograph)
        xy = arrays[kind].copy()  # never write into an array a frozen copy may share
        old = float(xy[index, 0]), float(xy[index, 1])
        xy[index] = (x, y)
        arrays[kind] = xy
        if notify:
            self._changed(micrograph)
        return old

    def replace(self, table: CoordinateTable) -> None:
        """Take every label from ``table`` (an import); listeners hear once, of every micrograph."""
        changed = set(self._points) | set(table.micrographs())
        fresh = LabelStore.from_table(table)
        self._points, self._names = fresh._points, {**self._names, **fresh._names}
        self._notify(tuple(sorted(changed)))


__all__ = ["Hit", "LabelStore", "PARTICLE", "NEGATIVE"]
