"""What the window shows, as a Qt-free model with events (napari's ``ViewerModel`` in spirit).

The window is a view of a :class:`PickerState`: it changes the state (a click adds a label,
the slider sets the threshold, a finished pick job fills the picks) and redraws when the
state says what changed. Everything here runs without Qt, so the logic behind the window
(which picks a threshold keeps, what recall it costs, which micrograph to pick next) is
tested without a display, and the command line could drive the same state.

Events (each a :class:`Signal`; ``state.events.threshold.connect(callback)``):

============  ==================================  ============================================
event         argument                            when
============  ==================================  ============================================
project       the Project                         a project was opened (everything replaced)
current       micrograph key or None              the micrograph shown changed
labels        keys of the micrographs changed     a label was added, moved, removed, imported
picks         keys of the micrographs changed     picks arrived, were cleared or re-filtered
threshold     the new threshold                   the threshold moved
model         the SavedModel or None              a model was trained, loaded or dropped
============  ==================================  ============================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, micrograph_key
from picker_gui.core.labels import LabelStore
from picker_gui.core.picks import PickStore


class Signal:
    """A list of callbacks called in order with the same arguments (psygnal in miniature)."""

    def __init__(self) -> None:
        self._slots: list[Callable[..., Any]] = []

    def connect(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        self._slots.append(slot)
        return slot

    def disconnect(self, slot: Callable[..., Any]) -> None:
        self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            slot(*args)


class StateEvents:
    def __init__(self) -> None:
        self.project = Signal()
        self.current = Signal()
        self.labels = Signal()
        self.picks = Signal()
        self.threshold = Signal()
        self.model = Signal()


@dataclass(frozen=True)
class ThresholdCost:
    """What a threshold keeps and loses, shown beside the slider.

    ``recall`` is the fraction of the reference labels with a pick at or above the threshold
    within the match radius; ``reference`` says which labels: those of the micrographs the
    model held out from training (a fair estimate), or all labels when it held none out.
    """

    picks: int  # picks shown in all
    micrographs: int  # micrographs that have picks
    per_micrograph: float  # mean picks per picked micrograph
    expected: float | None  # the expected count per micrograph, when set
    recall: float | None  # None: no labelled particle on a picked micrograph
    n_reference: int
    reference: str  # "held-out labels", "labels", "" (none)


class PickerState:
    """The open project, its labels and picks, the threshold and the micrograph shown."""

    def __init__(self, project=None) -> None:
        self.events = StateEvents()
        self.project = None
        self.labels = LabelStore()
        self.picks = PickStore()
        self.model = None  # SavedModel
        #: Pixel size of the micrographs (Å), when the project does not set it: the window
        #: fills it from the headers it reads.
        self.pixel_size_a: float | None = None
        self._current: str | None = None
        self._threshold = 0.0
        self._label_best: tuple[np.ndarray, np.ndarray] | None = None  # (held-out flags, best pick score near each label)
        self._labels_listener = lambda keys: self._on_labels(keys)
        self._picks_listener = lambda keys: self._on_picks(keys)
        if project is not None:
            self.open(project)

    # -- the project -------------------------------------------------------------------
    def open(self, project) -> None:
        """Show ``project``: its labels, its saved picks (when they were made by the model it
        names), its threshold and least distance."""
        self.project = project
        s = project.settings
        self.labels = LabelStore.from_table(project.labels)  # new stores: the old ones' listeners go with them
        self.picks = PickStore(s.min_distance_px or 0.0)
        if len(project.picks):
            self.picks.set_table(project.picks, project.picks_model_id)
        self.model = None
        self._threshold = float(s.threshold if s.threshold is not None else 0.0)
        self._current = None
        self._label_best = None
        self.labels.subscribe(self._labels_listener)
        self.picks.subscribe(self._picks_listener)
        self.events.project.emit(project)

    # -- the micrograph shown ------------------------------------------------------------
    @property
    def current(self) -> str | None:
        return self._current

    @current.setter
    def current(self, key: str | None) -> None:
        key = None if key is None else micrograph_key(key)
        if key != self._current:
            self._current = key
            if self.project is not None:
                self.project.settings.current_micrograph = key
            self.events.current.emit(key)

    # -- threshold and least distance ------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value == self._threshold:
            return
        self._threshold = value
        if self.project is not None:
            self.project.settings.threshold = value
        self.events.threshold.emit(value)

    @property
    def min_distance_px(self) -> float:
        return self.picks.min_distance_px

    @min_distance_px.setter
    def min_distance_px(self, value: float) -> None:
        if self.project is not None:
            self.project.settings.min_distance_px = float(value)
        self.picks.set_min_distance(value)  # notifies: picks event

    def set_model(self, saved) -> None:
        """A new model (trained, loaded) or None. Picks made by another model are dropped:
        picks are always those of the model shown."""
        self.model = saved
        if saved is not None and self.picks.model_id not in (None, saved.metadata.get("model_id")):
            self.picks.clear()
        self.events.model.emit(saved)

    # -- counts -------------------------------------------------------------------------
    def label_count(self, key: str) -> tuple[int, int]:
        return self.labels.count(key), self.labels.count(key, NEGATIVE)

    def pick_count(self, key: str) -> int | None:
        """Picks on a micrograph at the threshold; None when it has not been picked."""
        return self.picks.count(key, self._threshold) if key in self.picks else None

    def pick_counts(self) -> dict[str, int]:
        return self.picks.counts(self._threshold)

    def picking_order(self, keys: Iterable[str], current: str | None = None, skipped: Iterable[str] = ()) -> list[str]:
        """The order to pick micrographs in: the one shown first, then its neighbours
        outwards, then the rest; skipped and already picked ones left out."""
        keys = [micrograph_key(k) for k in keys]
        done = set(self.picks.keys()) | {micrograph_key(k) for k in skipped}
        current = micrograph_key(current) if current else (self._current or (keys[0] if keys else None))
        if current not in keys:
            order = keys
        else:
            i = keys.index(current)
            order = [current]
            for d in range(1, len(keys)):
                order += [keys[j] for j in (i + d, i - d) if 0 <= j < len(keys)]
        return [k for k in order if k not in done]

    def expected_hint(self) -> tuple[float | None, int]:
        """Particles per micrograph as the labels suggest: the median count on the micrographs
        labelled densely (at least half as many labels as the most labelled one, and at least
        5), and how many such micrographs there are. Sparse labelling (a few per micrograph)
        says nothing about the true count: then (None, 0)."""
        counts = [self.labels.count(k) for k in self.labels.micrographs()]
        counts = [c for c in counts if c > 0]
        if not counts:
            return None, 0
        dense = [c for c in counts if c >= max(5, 0.5 * max(counts))]
        if not dense:
            return None, 0
        return float(np.median(dense)), len(dense)

    # -- what the threshold costs ----------------------------------------------------------
    def _on_labels(self, keys) -> None:
        self._label_best = None
        self.events.labels.emit(keys)

    def _on_picks(self, keys) -> None:
        self._label_best = None
        self.events.picks.emit(keys)

    def _best_scores_near_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """For every positive label on a picked micrograph: whether the model was trained
        without it (a held-out label, or a label on a held-out micrograph), and the best score of a shown pick within the match radius (-inf
        when none). Computed once per change of labels or picks, so that moving the threshold
        costs one comparison per label."""
        if self._label_best is None:
            meta = self.model.metadata if self.model is not None else {}
            held_out = set(meta.get("validation_micrographs") or [])
            held_labels = {k: np.asarray(v, dtype=float).reshape(-1, 2) for k, v in (meta.get("validation_labels") or {}).items()}
            radius = self.match_radius_px()
            flags, best = [], []
            for key in self.labels.micrographs():
                if key not in self.picks:
                    continue
                xy = self.labels.points(key, PARTICLE)
                if not len(xy):
                    continue
                p = self.picks.picks(key)
                if len(p):
                    d = np.hypot(xy[:, 0, None] - p.x[None], xy[:, 1, None] - p.y[None])
                    near = np.where(d <= radius, p.score[None], -np.inf).max(axis=1)
                else:
                    near = np.full(len(xy), -np.inf)
                best.append(near)
                if key in held_labels and len(held_labels[key]):
                    h = held_labels[key]  # the labels the model was not trained on, as it saved them
                    d = np.hypot(xy[:, 0, None] - h[None, :, 0], xy[:, 1, None] - h[None, :, 1])
                    flags.append(d.min(axis=1) <= 0.01)
                else:
                    flags.append(np.full(len(xy), key in held_out))
            self._label_best = (np.concatenate(flags) if flags else np.zeros(0, bool),
                                np.concatenate(best) if best else np.zeros(0))
        return self._label_best

    def match_radius_px(self) -> float:
        """A pick finds a labelled particle within half its diameter (original pixels)."""
        meta = self.model.metadata if self.model is not None else {}
        if meta.get("original_pixel_size_a") and meta.get("particle_diameter_a"):
            return 0.5 * meta["particle_diameter_a"] / meta["original_pixel_size_a"]
        s = self.project.settings if self.project is not None else None
        pixel = (s.pixel_size_a if s else None) or self.pixel_size_a
        if s is not None and pixel:
            return 0.5 * s.diameter_a / pixel
        return max(self.picks.min_distance_px, 1.0)

    def threshold_cost(self, threshold: float | None = None) -> ThresholdCost:
        t = self._threshold if threshold is None else float(threshold)
        counts = self.picks.counts(t)
        picked = len(counts)
        total = sum(counts.values())
        flags, best = self._best_scores_near_labels()
        if flags.any():
            ref, name = best[flags], "held-out labels"
        elif len(best):
            ref, name = best, "labels"
        else:
            ref, name = best, ""
        expected = self.project.settings.expected_per_micrograph if self.project is not None else None
        return ThresholdCost(total, picked, total / picked if picked else 0.0, expected,
                             float(np.mean(ref >= t)) if len(ref) else None, int(len(ref)), name)
