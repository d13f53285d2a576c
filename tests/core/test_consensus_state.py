"""The consensus state: sets in, clusters out, counts and a live threshold, with events."""

from __future__ import annotations

import numpy as np

from picker_gui.core.consensus_state import ConsensusState
from picker_gui.core.coords import CoordinateTable


def _tables():
    a = CoordinateTable.from_arrays(["m1"] * 3 + ["m2"], [10, 50, 90, 10], [10, 50, 90, 10], score=[0.9, 0.5, 0.1, 0.7])
    b = CoordinateTable.from_arrays(["m1.mrc"] * 2, [11, 50], [10, 51])
    return a, b


def test_sets_merge_and_count_with_events():
    state = ConsensusState(["m1.mrc", "m2.mrc"])
    state.set_radius(3.0)
    merged, sets = [], []
    state.events.merged.connect(merged.append)
    state.events.sets.connect(sets.append)
    a, b = _tables()
    assert state.add_set("a", a) == "a"
    assert state.add_set("a", b) == "a (2)"  # names stay unique
    assert len(merged) == 2 and merged[-1] is state.result
    assert state.counts() == {"or": 4, "and": 2, "k": 2, "neg": 0, "kept": 4}  # unscored: vote fractions 0.5, 1
    assert state.counts("m2")["or"] == 1 and state.counts("m2")["and"] == 0
    assert state.get("a").colour != state.get("a (2)").colour
    # A set threshold drops a's weakest pick: (90, 90) is gone.
    state.set_set_threshold("a", 0.3)
    assert state.counts()["or"] == 3
    # k-of-N changes the counts, not the clusters.
    state.set_min_votes(1)
    assert state.counts()["k"] == 3
    state.remove_set("a (2)")
    assert state.counts()["and"] == 3 and state.result.n_sets == 1  # one set: everything is AND


def test_threshold_slices_sorted_clusters():
    state = ConsensusState(["m1", "m2"])
    state.set_radius(3.0)
    a, b = _tables()
    state.add_set("a", a)
    state.add_set("b", b)
    # Scores from a "network": the threshold keeps a prefix of each micrograph's clusters.
    scores = np.linspace(0.1, 0.9, len(state.result.table))
    state.set_result(state.result.with_scores(scores))
    seen = []
    state.events.threshold.connect(seen.append)
    state.threshold = 0.45
    assert seen == [0.45]
    kept = state.kept_table()
    assert (kept.score >= 0.45).all() and len(kept) == state.kept_count() == (scores >= 0.45).sum()
    c = state.clusters("m1")
    assert list(c.score) == sorted(c.score, reverse=True)
    assert state.kept_counts()["m1"] == (c.score >= 0.45).sum()
    # Merging again drops the network's scores.
    state.set_radius(4.0)
    assert not state.scored
