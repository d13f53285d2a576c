"""The window's state without a window: events, counts, picking order, what a threshold costs."""

from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.models import PickerNet, SavedModel
from picker_gui.core.project import Project
from picker_gui.core.state import PickerState


@pytest.fixture
def project(tmp_path):
    p = Project.create(tmp_path / "p", tmp_path, diameter_a=40.0, expected_per_micrograph=3.0)
    p.labels = CoordinateTable.from_arrays(["a.mrc", "a.mrc", "b.mrc"], [100.0, 300.0, 50.0], [100.0, 300.0, 50.0], source="manual")
    return p


def _picks(state):
    state.picks.set("a.mrc", [101.0, 302.0, 500.0, 700.0], [99.0, 301.0, 500.0, 700.0], [2.0, -1.0, 0.5, -3.0])
    state.picks.set("c.mrc", [10.0], [10.0], [1.0])


def test_events_tell_what_changed(project):
    state = PickerState(project)
    seen = []
    for name in ("current", "labels", "picks", "threshold"):
        getattr(state.events, name).connect(lambda *a, n=name: seen.append((n, a)))
    state.current = "a.mrc"
    state.labels.add("a.mrc", 1.0, 2.0)
    _picks(state)
    state.threshold = 0.25
    state.threshold = 0.25  # no change, no event
    assert [s[0] for s in seen] == ["current", "labels", "picks", "picks", "threshold"]
    assert seen[0][1] == ("a",) and seen[-1][1] == (0.25,)
    assert project.settings.threshold == 0.25 and project.settings.current_micrograph == "a"


def test_counts_and_cost_at_a_threshold(project):
    state = PickerState(project)
    state.pixel_size_a = 2.0  # 40 Å particles: labels found within 10 px
    _picks(state)
    state.threshold = 0.0
    assert state.pick_count("a") == 2 and state.pick_count("b") is None and state.pick_counts() == {"a": 2, "c": 1}
    cost = state.threshold_cost()
    assert (cost.picks, cost.micrographs, cost.per_micrograph, cost.expected) == (3, 2, 1.5, 3.0)
    # Labels on picked micrographs: two on "a"; one found at 0 (score 2), the other only at -1.
    assert cost.reference == "labels" and cost.n_reference == 2 and cost.recall == 0.5
    assert state.threshold_cost(-2.0).recall == 1.0 and state.threshold_cost(3.0).recall == 0.0


def test_recall_uses_the_held_out_labels_when_the_model_held_some_out(project):
    state = PickerState(project)
    _picks(state)
    state.picks.set("b.mrc", [51.0], [49.0], [-0.5])
    state.set_model(SavedModel(PickerNet("conv31", 4), {"validation_micrographs": ["b"], "model_id": None,
                                                         "particle_diameter_a": 40.0, "original_pixel_size_a": 2.0}))
    cost = state.threshold_cost(0.0)
    assert cost.reference == "held-out labels" and cost.n_reference == 1 and cost.recall == 0.0
    assert state.threshold_cost(-1.0).recall == 1.0


def test_recall_uses_the_labels_the_model_held_out(project):
    """A model trained on every micrograph with some labels held out names those labels:
    only they measure recall (the label at (300, 300) on a was held out; the one at (100, 100)
    was trained on, and its pick scores high)."""
    state = PickerState(project)
    _picks(state)
    state.set_model(SavedModel(PickerNet("conv31", 4), {"validation_labels": {"a": [[300.0, 300.0]]}, "model_id": None,
                                                         "particle_diameter_a": 40.0, "original_pixel_size_a": 2.0}))
    cost = state.threshold_cost(0.0)
    assert cost.reference == "held-out labels" and cost.n_reference == 1 and cost.recall == 0.0
    assert state.threshold_cost(-1.5).recall == 1.0


def test_picks_of_another_model_are_dropped_when_a_model_is_set(project):
    state = PickerState(project)
    _picks(state)
    state.picks.model_id = "old"
    state.set_model(SavedModel(PickerNet("conv31", 4), {"model_id": "new"}))
    assert state.picks.keys() == []


def test_picking_order_is_current_then_neighbours_then_the_rest(project):
    state = PickerState(project)
    keys = [f"m{i}" for i in range(7)]
    state.picks.set("m4", [1.0], [1.0], [0.0])
    assert state.picking_order(keys, current="m3", skipped=["m1"]) == ["m3", "m2", "m5", "m6", "m0"]


def test_opening_a_project_shows_its_saved_picks_and_settings(project):
    picks = CoordinateTable.from_arrays(["a.mrc", "a.mrc"], [1.0, 50.0], [1.0, 50.0], [0.3, 0.9])
    project.save_picks(picks, "m1")
    project.settings.threshold = 0.5
    project.settings.min_distance_px = 10.0
    project.save_settings()
    state = PickerState(Project.open(project.folder))
    assert state.threshold == 0.5 and state.min_distance_px == 10.0
    assert state.pick_count("a") == 1 and state.picks.model_id == "m1"
    state.min_distance_px = 100.0
    assert state.project.settings.min_distance_px == 100.0 and state.pick_count("a") == 1
    assert np.isclose(state.picks.picks("a").score[0], 0.9)


def test_expected_hint_is_the_median_of_densely_labelled_micrographs(project):
    state = PickerState(project)
    assert state.expected_hint() == (None, 0)  # 2 and 1 labels: sparse, no hint
    for key, n in (("d1", 40), ("d2", 50), ("d3", 44), ("sparse", 3)):
        for i in range(n):
            state.labels.add(key, float(i), float(i))
    assert state.expected_hint() == (44.0, 3)
