"""The consensus the window shows, as a Qt-free model with events (see :mod:`picker_gui.core.state`).

The input sets (files, our own picks at a threshold, the built-in picker), the merge
radius and the votes asked for are the state; the merged clusters follow every change of
them (:meth:`ConsensusState.merge`), and the network's scores replace the vote fractions
when a consensus job returns. The consensus threshold is a slider over the scored OR set:
per micrograph the clusters are kept sorted by score, so that what a threshold keeps is
a slice and every count a binary search, as for the picks (:mod:`picker_gui.core.picks`).

Events (``state.events.merged.connect(callback)``):

=========  =====================  =============================================================
event      argument               when
=========  =====================  =============================================================
sets       names of the sets      a set was added, removed, or its threshold or visibility changed
merged     the ConsensusSets      the clusters were merged again, or scored by the network
threshold  the new threshold      the consensus threshold moved
=========  =====================  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from picker_gui.core.consensus import ConsensusSets, PickSet, merge_sets
from picker_gui.core.coords import CoordinateTable, micrograph_key
from picker_gui.core.state import Signal

#: Colours of the input sets, in the order added (RGB), distinct on a grey micrograph.
SET_COLOURS = ((255, 170, 0), (0, 200, 255), (255, 80, 200), (120, 255, 80), (255, 255, 90), (170, 120, 255))


class ConsensusEvents:
    def __init__(self) -> None:
        self.sets = Signal()
        self.merged = Signal()
        self.threshold = Signal()


@dataclass(frozen=True)
class InputSet:
    """One picker's set as the window holds it."""

    name: str
    table: CoordinateTable
    threshold: float | None = None
    visible: bool = True
    origin: str = "file"  # "file", "picks" (ours), "dog" (built-in)
    colour: tuple[int, int, int] = SET_COLOURS[0]

    @property
    def has_scores(self) -> bool:
        return self.table.has_scores

    def as_pick_set(self) -> PickSet:
        return PickSet(self.name, self.table, self.threshold)


@dataclass(frozen=True)
class Sorted:
    """One micrograph's clusters, highest score first."""

    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    votes: np.ndarray

    def count(self, threshold: float) -> int:
        return int(np.searchsorted(-self.score, -threshold, side="right"))


_EMPTY = Sorted(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))


class ConsensusState:
    """Input sets, merge settings, the merged (and maybe scored) clusters and their threshold."""

    def __init__(self, micrographs: list[str] | None = None) -> None:
        self.events = ConsensusEvents()
        self.sets: list[InputSet] = []
        self.micrographs: list[str] = list(micrographs or [])
        self.radius_px = 0.0  # original pixels; 0: not set yet
        self.min_votes: int | None = None  # None: all sets (AND)
        self.result: ConsensusSets | None = None
        self.scored = False  # the scores are the network's (or ranks), not vote fractions
        self.negatives = CoordinateTable.empty()
        self._threshold = 0.5
        self._sorted: dict[str, Sorted] = {}

    # -- sets ---------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        names = {s.name for s in self.sets}
        if name not in names:
            return name
        i = 2
        while f"{name} ({i})" in names:
            i += 1
        return f"{name} ({i})"

    def add_set(self, name: str, table: CoordinateTable, *, threshold: float | None = None, origin: str = "file") -> str:
        """Add a set (named uniquely); merges again. Returns the name it got."""
        name = self._unique(name)
        used = {s.colour for s in self.sets}
        colour = next((c for c in SET_COLOURS if c not in used), SET_COLOURS[len(self.sets) % len(SET_COLOURS)])
        self.sets.append(InputSet(name, table, threshold, True, origin, colour))
        self.events.sets.emit((name,))
        self.merge()
        return name

    def replace_set(self, name: str, table: CoordinateTable) -> None:
        """New picks for a set (our picks again at another threshold); merges again."""
        self._update(name, table=table)
        self.merge()

    def remove_set(self, name: str) -> None:
        self.sets = [s for s in self.sets if s.name != name]
        self.events.sets.emit((name,))
        self.merge()

    def get(self, name: str) -> InputSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    def _update(self, name: str, **changes) -> None:
        self.sets = [replace(s, **changes) if s.name == name else s for s in self.sets]
        self.events.sets.emit((name,))

    def set_set_threshold(self, name: str, threshold: float | None) -> None:
        self._update(name, threshold=threshold)
        self.merge()

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide a set's own picks on the micrograph (display only: no merge)."""
        self._update(name, visible=visible)

    def set_picks_of(self, name: str, key: str) -> CoordinateTable:
        """The picks of set ``name`` on micrograph ``key`` that take part (above its threshold)."""
        kept = self.get(name).as_pick_set().kept()
        return kept.for_micrograph(key) if len(kept) else kept

    # -- merge settings -------------------------------------------------------------------
    def set_radius(self, radius_px: float) -> None:
        if radius_px > 0 and radius_px != self.radius_px:
            self.radius_px = float(radius_px)
            self.merge()

    def set_min_votes(self, k: int | None) -> None:
        if k != self.min_votes:
            self.min_votes = k
            self.events.merged.emit(self.result)  # the counts change, not the clusters

    @property
    def k(self) -> int:
        n = len(self.sets)
        return max(1, min(self.min_votes or n, n)) if n else 1

    # -- the clusters -----------------------------------------------------------------------
    def merge(self) -> None:
        """Merge the sets again (the network's scores are dropped: they were for other clusters)."""
        self.result = self._merged()
        self.scored = False
        self.negatives = CoordinateTable.empty()
        self._resort()
        self.events.merged.emit(self.result)

    def _merged(self) -> ConsensusSets | None:
        if not self.sets or not self.radius_px > 0:
            return None
        return merge_sets([s.as_pick_set() for s in self.sets], self.radius_px, self.micrographs or None)

    def set_result(self, result: ConsensusSets, negatives: CoordinateTable | None = None, scored: bool = True) -> None:
        """The clusters as a consensus job returned them, scored by its network."""
        self.result = result
        self.scored = scored
        self.negatives = negatives if negatives is not None else CoordinateTable.empty()
        self._resort()
        self.events.merged.emit(self.result)

    def rank(self, names: list[str] | None = None, fold_radius_px: float = 0.0) -> list[str]:
        """Score the clusters, without training, by their mean rank in the sets ``names``
        (default: every set with scores, else every set; see
        :meth:`~picker_gui.core.consensus.ConsensusSets.rank_scores`), folding a cluster
        within ``fold_radius_px`` of a higher-scored one into it, as after the network.
        Returns the sets ranked by (none when there is nothing to rank)."""
        merged = self._merged() if self.result is not None else None  # the clusters as merged, not as folded
        if merged is None or not len(merged.table):
            return []
        if names is None:
            names = [s.name for s in self.sets if s.has_scores] or [s.name for s in self.sets]
        cons = merged.with_scores(merged.rank_scores(names))
        if fold_radius_px > 0:
            cons = cons.fold_duplicates(fold_radius_px)
        self.set_result(cons, None, scored=True)
        return list(names)

    def _resort(self) -> None:
        self._sorted = {}
        if self.result is None or not len(self.result.table):
            return
        t, votes = self.result.table, self.result.votes
        distinct, codes = t._key_codes
        order = np.lexsort((-t.score, codes))  # by micrograph, then highest score first
        bounds = np.searchsorted(codes[order], np.arange(len(distinct) + 1))
        for i, key in enumerate(distinct):
            idx = order[bounds[i]:bounds[i + 1]]
            self._sorted[str(key)] = Sorted(t.x[idx], t.y[idx], t.score[idx], votes[idx])

    def clusters(self, key: str) -> Sorted:
        """Micrograph ``key``'s clusters, highest score first."""
        return self._sorted.get(micrograph_key(key), _EMPTY)

    # -- the consensus threshold ----------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if value != self._threshold:
            self._threshold = value
            self.events.threshold.emit(value)

    def scores(self) -> np.ndarray:
        return self.result.table.score if self.result is not None else np.zeros(0)

    def kept_count(self, key: str | None = None) -> int:
        """Clusters at or above the threshold: on ``key``, or in all."""
        if key is not None:
            return self.clusters(key).count(self._threshold)
        return sum(s.count(self._threshold) for s in self._sorted.values())

    def kept_counts(self) -> dict[str, int]:
        return {k: s.count(self._threshold) for k, s in self._sorted.items()}

    def counts(self, key: str | None = None) -> dict[str, int]:
        """OR, AND, k-of-N, NEG (after training) and kept, on ``key`` or in all."""
        n = len(self.sets)
        if self.result is None:
            return {"or": 0, "and": 0, "k": 0, "neg": 0, "kept": 0}
        if key is None:
            votes = self.result.votes
            neg = len(self.negatives)
        else:
            votes = self.clusters(key).votes
            neg = int((self.negatives.keys == micrograph_key(key)).sum()) if len(self.negatives) else 0
        return {"or": int(len(votes)), "and": int((votes >= n).sum()), "k": int((votes >= self.k).sum()), "neg": neg,
                "kept": self.kept_count(key)}

    def kept_table(self) -> CoordinateTable:
        """Every cluster at or above the threshold (for export)."""
        if self.result is None:
            return CoordinateTable.empty()
        t = self.result.table
        return t[t.score >= self._threshold]
