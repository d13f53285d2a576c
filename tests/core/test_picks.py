"""The pick store: candidates, least distance, threshold slices and counts."""

from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.inference import non_maximum_suppression
from picker_gui.core.picks import PickStore, keep_apart


def _store(n_mics=5, n=50, seed=0):
    rng = np.random.default_rng(seed)
    store = PickStore()
    for m in range(n_mics):
        store.set(f"mic_{m}.mrc", rng.uniform(0, 1000, n), rng.uniform(0, 800, n), rng.normal(size=n))
    return store


def test_picks_above_a_threshold_are_the_highest_scores():
    store = _store()
    p = store.picks("mic_2", 0.5)
    assert np.all(p.score >= 0.5) and np.all(np.diff(p.score) <= 0)
    everything = store.picks("mic_2.mrc")
    assert len(p) == int(np.sum(everything.score >= 0.5))
    assert store.count("mic_2", 0.5) == len(p)
    assert store.counts(0.5)["mic_2"] == len(p)
    assert store.total(-np.inf) == 5 * 50


def test_keep_apart_matches_non_maximum_suppression_on_a_score_map():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(120, 160)).astype(np.float32)
    x, y, s = non_maximum_suppression(scores, 2.0)  # candidates at a small distance
    for radius in (4.0, 7.5):
        kept = keep_apart(x, y, radius)
        xk, yk = x[kept], y[kept]
        d = np.hypot(xk[:, None] - xk[None], yk[:, None] - yk[None]) + np.eye(len(xk)) * 1e9
        assert d.min() > radius  # no two kept within the distance
        # Every dropped candidate is near a kept one that scores at least as high.
        dropped = np.setdiff1d(np.arange(len(x)), kept)
        for i in dropped[:50]:
            near = np.hypot(xk - x[i], yk - y[i]) <= radius
            assert near.any() and s[kept][near].max() >= s[i]
        direct = non_maximum_suppression(scores, radius)
        assert abs(len(kept) - len(direct[0])) <= 0.1 * len(direct[0])


def test_min_distance_filters_again_and_notifies_every_micrograph():
    store = _store(n=400)
    seen = []
    store.subscribe(seen.append)
    before = store.total(-np.inf)
    store.set_min_distance(60.0)
    assert seen and set(seen[-1]) == set(store.keys())
    after = store.total(-np.inf)
    assert after < before
    for key in store.keys():
        p = store.picks(key)
        d = np.hypot(p.x[:, None] - p.x[None], p.y[:, None] - p.y[None]) + np.eye(len(p)) * 1e9
        assert d.min() >= 60.0
    store.set_min_distance(0.0)
    assert store.total(-np.inf) == before


def test_table_round_trip_and_model_id():
    store = _store(n_mics=3, n=10)
    table = store.to_table()
    again = PickStore()
    again.set_table(table, model_id="abc")
    assert again.model_id == "abc" and again.total(-np.inf) == 30
    assert again.to_table(0.0) == store.to_table(0.0)


def test_a_frozen_copy_keeps_its_picks():
    store = _store(n_mics=2, n=10)
    frozen = store.frozen()
    store.set("mic_0.mrc", [1.0], [2.0], [3.0])
    assert len(frozen.picks("mic_0")) == 10 and len(store.picks("mic_0")) == 1


def test_an_unknown_micrograph_has_no_picks():
    store = PickStore()
    assert len(store.picks("nothing")) == 0 and store.counts(0.0) == {} and len(store.scores()) == 0
    assert len(store.to_table()) == 0


@pytest.mark.parametrize("distance", [0.0, 25.0])
def test_scores_are_those_shown(distance):
    store = _store(n=100)
    store.set_min_distance(distance)
    assert len(store.scores()) == store.total(-np.inf)


def test_kept_indices_given_with_the_candidates_are_the_ones_worked_out():
    rng = np.random.default_rng(7)
    x, y, s = rng.uniform(0, 500, 300), rng.uniform(0, 400, 300), rng.normal(size=300)
    order = np.argsort(-s, kind="stable")
    kept = keep_apart(x[order], y[order], 30.0)  # as a pick job gives them: candidates ranked
    a, b = PickStore(30.0), PickStore(30.0)
    a.set("m", x[order], y[order], s[order], kept=(30.0, kept))
    b.set("m", x, y, s)
    pa, pb = a.picks("m"), b.picks("m")
    assert np.array_equal(pa.x, pb.x) and np.array_equal(pa.score, pb.score)
