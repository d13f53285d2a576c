from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.metrics import at_threshold, average_precision, best_f1, evaluate, match_picks, precision_recall_curve


def _table(rows, with_score=True):
    mic = [r[0] for r in rows]
    x = [r[1] for r in rows]
    y = [r[2] for r in rows]
    score = [r[3] for r in rows] if with_score else None
    return CoordinateTable.from_arrays(mic, x, y, score)


TRUTH = _table([("m1", 100, 100), ("m1", 200, 100), ("m2", 50, 60), ("m2", 300, 300)], with_score=False)


def test_hand_computed_ranking():
    # Ranked: hit, miss, hit, duplicate of the first (miss), hit on m2.mrc (extension ignored)
    picks = _table(
        [
            ("m1", 102, 99, 0.9),
            ("m1", 500, 500, 0.8),
            ("m1", 198, 103, 0.7),
            ("m1", 101, 101, 0.6),
            ("m2.mrc", 52, 58, 0.5),
        ]
    )
    m = match_picks(picks, TRUTH, radius=5)
    assert m.is_true.tolist() == [True, False, True, False, True]
    assert m.n_truth == 4
    precision, recall, thresholds = precision_recall_curve(m)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall, [1 / 4, 1 / 4, 2 / 4, 2 / 4, 3 / 4])
    # AP = 1/4*1 + 1/4*2/3 + 1/4*3/5
    assert average_precision(m) == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5))
    best = best_f1(m)
    # F1 at each cut: .4, .333, .571, .5, .667 -> keep all five
    assert best["threshold"] == pytest.approx(0.5)
    assert best["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    at = at_threshold(m, 0.65)
    assert (at["precision"], at["recall"], at["n_picks"]) == (pytest.approx(2 / 3), 0.5, 3)


def test_radius_is_a_hard_limit():
    picks = _table([("m1", 105.1, 100, 1.0)])
    assert match_picks(picks, TRUTH, radius=5).is_true.tolist() == [False]
    assert match_picks(picks, TRUTH, radius=5.2).is_true.tolist() == [True]


def test_higher_score_claims_the_particle_first():
    picks = _table([("m1", 100, 100, 0.1), ("m1", 103, 100, 0.9)])
    m = match_picks(picks, TRUTH, radius=5)
    assert m.scores.tolist() == [0.9, 0.1] and m.is_true.tolist() == [True, False]


def test_perfect_picker_has_ap_one_and_random_one_is_poor():
    rng = np.random.default_rng(0)
    tx, ty = rng.uniform(0, 1000, 200), rng.uniform(0, 1000, 200)
    truth = CoordinateTable.from_arrays("m", tx, ty)
    fx, fy = rng.uniform(0, 1000, 800), rng.uniform(0, 1000, 800)
    perfect = CoordinateTable.from_arrays(
        "m", np.concatenate([tx, fx]), np.concatenate([ty, fy]), np.concatenate([np.ones(200) + 1, np.zeros(800)])
    )
    assert evaluate(perfect, truth, 3)["average_precision"] > 0.97
    shuffled = perfect.replace(score=rng.permutation(perfect.score))
    assert evaluate(shuffled, truth, 3)["average_precision"] < 0.35


def test_picks_on_unlabelled_micrographs_are_ignored():
    picks = _table([("m1", 100, 100, 1.0), ("m9", 5, 5, 2.0)])
    result = evaluate(picks, TRUTH, 5)
    assert result["n_picks"] == 1 and result["n_truth"] == 4
    assert result["average_precision"] == pytest.approx(0.25)


def test_no_picks():
    result = evaluate(CoordinateTable.empty(), TRUTH, 5)
    assert result["average_precision"] == 0.0 and result["best_f1"] == 0.0
