"""The consensus job on small synthetic micrographs: two imperfect pickers, the built-in
picker, suffixes in names, training the network and scoring OR, cancel, clear errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from picker_gui.core.consensus import PickSet
from picker_gui.core.consensus_job import DOG_SET, ConsensusSettings, consensus_job, dog_cut
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.errors import UsageError
from picker_gui.core.jobs import run_job
from tests.conftest import write_mrc

PIXEL = 4.0  # Å/px
DIAMETER_PX = 8.0


def _micrograph(rng, shape=(192, 192), n=40):
    h, w = shape
    centres = []
    while len(centres) < n:
        c = rng.uniform(12, [w - 12, h - 12])
        if all(np.hypot(*(c - o)) > DIAMETER_PX * 1.6 for o in centres):
            centres.append(c)
    centres = np.array(centres)
    yy, xx = np.mgrid[:h, :w]
    image = rng.normal(0, 1.0, size=shape)
    for cx, cy in centres:
        image -= 2.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.5**2))  # dark particles
    return image.astype(np.float32), centres


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cons")
    rng = np.random.default_rng(0)
    paths, truth = [], []
    for i in range(4):
        image, centres = _micrograph(rng)
        paths.append(write_mrc(folder / f"mic{i}_DW.mrc", image, voxel_size=PIXEL))
        truth.append(CoordinateTable.from_arrays(f"mic{i}_DW.mrc", centres[:, 0], centres[:, 1]))

    def picker(found: float, n_false: int, seed: int, suffix: str) -> CoordinateTable:
        r = np.random.default_rng(seed)
        parts = []
        for i, t in enumerate(truth):
            keep = r.random(len(t)) < found
            x = np.concatenate([t.x[keep] + r.normal(0, 0.4, keep.sum()), r.uniform(10, 182, n_false)])
            y = np.concatenate([t.y[keep] + r.normal(0, 0.4, keep.sum()), r.uniform(10, 182, n_false)])
            parts.append(CoordinateTable.from_arrays(f"Movies/mic{i}{suffix}.mrc", x, y, score=r.random(len(x))))
        return CoordinateTable.concat(parts)

    a = picker(0.9, 12, 1, "")  # names without _DW
    b = picker(0.85, 12, 2, "_DW")
    return paths, CoordinateTable.concat(truth), a, b


def _settings(**kw):
    base = dict(diameter_a=DIAMETER_PX * PIXEL, box_a=2 * DIAMETER_PX * PIXEL, min_positives=50, ensemble=1,
                input_px=16, max_minutes=1000.0, device="cpu")  # epochs end it, never the clock
    base.update(kw)
    return ConsensusSettings(**base)


def _true_mask(table: CoordinateTable, truth: CoordinateTable, radius: float = 3.0) -> np.ndarray:
    out = np.zeros(len(table), dtype=bool)
    for key, rows in table.groupby_micrograph():
        t = truth.for_micrograph(key).xy()
        idx = np.flatnonzero(table.keys == key)
        d = np.sqrt(((rows.xy()[:, None] - t[None]) ** 2).sum(-1))
        out[idx] = d.min(1) <= radius
    return out


def test_sets_without_training_count_and_match_names(data):
    paths, truth, a, b = data
    result = run_job(consensus_job(paths, [PickSet("a", a), PickSet("b", b)], _settings(train=False)))
    cons = result.sets
    counts = cons.counts()
    assert set(counts) == {"mic0_DW", "mic1_DW", "mic2_DW", "mic3_DW", "total"}  # matched through the suffix
    assert result.unmatched == {}
    true = _true_mask(cons.table, truth)
    # AND is far cleaner than OR.
    and_mask = cons.and_mask()
    assert true[and_mask].mean() > 0.95
    assert true.mean() < 0.85
    assert counts["total"]["and"] == and_mask.sum() > 100
    # Without the network, a pick's score is the fraction of sets that found it.
    assert set(np.round(cons.table.score, 3).tolist()) <= {0.5, 1.0}


def test_training_scores_or_with_true_picks_above_false_ones(data):
    paths, truth, a, b = data
    reports = []
    result = run_job(consensus_job(paths, [PickSet("a", a), PickSet("b", b)], _settings()), reports.append)
    assert result.model is not None and len(result.model.nets) == 1
    assert any(r.stage == "consensus" and r.consensus.val_accuracy is not None for r in reports)
    cons = result.sets
    assert ((cons.table.score >= 0) & (cons.table.score <= 1)).all()
    true = _true_mask(cons.table, truth)
    assert cons.table.score[true].mean() > cons.table.score[~true].mean() + 0.2
    # NEG: random spots, as many as OR picks before duplicates folded (at least as many as
    # after), and off-centre spots beside the positives, none on a pick.
    neg = result.negatives
    random, off = neg[neg.source == "random"], neg[neg.source == "off-centre"]
    assert len(random) + len(off) == len(neg)
    assert len(cons.table) <= len(random) <= 1.05 * (len(a) + len(b))
    assert 0 < len(off) <= len(random)  # at most one per positive, and positives are OR picks
    d = np.sqrt(((off.xy()[:, None] - cons.table.xy()[None]) ** 2).sum(-1))
    d[~(off.keys[:, None] == cons.table.keys[None])] = np.inf
    assert (d.min(1) >= DIAMETER_PX / 2 - 1e-6).all()


def test_rank_guided_training_learns_the_picks_the_ranked_sets_reject(data):
    """With rank and training, the OR picks ranked lowest join NEG as "rejected" and the
    network scores the true picks above the false ones."""
    paths, truth, a, b = data
    # Scores that rank true picks higher, but not perfectly (the fixture's are random).
    rng = np.random.default_rng(5)
    a, b = (t.replace(score=0.5 * _true_mask(t.replace(micrograph=[m.split("/")[-1].replace(".mrc", "_DW.mrc")
                                                                    if "_DW" not in m else m for m in t.micrograph]),
                                             truth) + rng.random(len(t))) for t in (a, b))
    sets = [PickSet("a", a), PickSet("b", b)]
    settings = _settings(rank=("a", "b"), rejected_fraction=0.2, positive_rank_quantile=0.3)
    result = run_job(consensus_job(paths, sets, settings))
    merged = run_job(consensus_job(paths, sets, _settings(train=False))).sets
    neg = result.negatives
    rejected = neg[neg.source == "rejected"]
    assert len(rejected) == round(0.2 * len(merged.table))
    # They are OR picks (the merged clusters), the lowest ranked: mostly false ones.
    for x, y, key in zip(rejected.x, rejected.y, rejected.keys):
        at = merged.table[(merged.table.keys == key) & (merged.table.x == x) & (merged.table.y == y)]
        assert len(at) == 1
    assert _true_mask(rejected, truth).mean() < 0.2
    cons = result.sets
    true = _true_mask(cons.table, truth)
    assert cons.table.score[true].mean() > cons.table.score[~true].mean() + 0.2


def test_the_built_in_picker_is_a_set(data):
    paths, truth, a, _ = data
    result = run_job(consensus_job(paths, [PickSet("a", a)], _settings(train=False, dog=True, expected_per_micrograph=40)))
    assert result.sets.set_names == ("a", DOG_SET)
    # The DoG picker finds dark blobs: most agreed picks are true particles.
    true = _true_mask(result.sets.table, truth)
    assert result.sets.and_mask().sum() > 80
    assert true[result.sets.and_mask()].mean() > 0.9


def test_cancel_during_training_ends_with_the_sets(data):
    paths, _, a, b = data
    stop = threading.Event()

    def on_report(r):
        if r.stage == "consensus" and r.done >= 3:
            stop.set()

    result = run_job(consensus_job(paths, [PickSet("a", a), PickSet("b", b)], _settings(ensemble=3), stop=stop), on_report)
    assert result.stopped
    assert len(result.model.nets) == 1
    assert len(result.sets.table) > 0


def test_clear_errors(data):
    paths, _, a, b = data
    with pytest.raises(UsageError, match=r"only \d+ AND particle\(s\).*at least 100000"):
        run_job(consensus_job(paths, [PickSet("a", a), PickSet("b", b)], _settings(min_positives=100000)))
    other = a.replace(micrograph=np.full(len(a), "elsewhere.mrc", dtype=object))
    with pytest.raises(UsageError, match="set 'x': none of its micrograph names"):
        run_job(consensus_job(paths, [PickSet("x", other)], _settings(train=False)))
    with pytest.raises(UsageError, match="--min-votes"):
        run_job(consensus_job(paths, [PickSet("a", a)], _settings(min_votes=3)))
    with pytest.raises(UsageError, match="coordinate sets"):
        run_job(consensus_job(paths, [], _settings()))


def test_the_built_in_cut_keeps_the_expected_count_or_half():
    v = np.arange(100.0)
    assert dog_cut(v, 4, 10) == 60.0  # the 40th highest of 100
    assert dog_cut(v, 4, 1000) == 0.0  # more than there are: all
    assert dog_cut(v, 4, None) == 49.5  # unknown: the median
