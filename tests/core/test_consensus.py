"""Consensus sets: merges computed by hand, NEG sampling, name matching, clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from picker_gui.core.consensus import (
    PickSet,
    align_to_micrographs,
    check_enough,
    extra_positives,
    match_names,
    merge_micrograph,
    merge_sets,
    negatives,
    off_centre_negatives,
    rank_guided_examples,
    sample_negatives,
    self_consensus,
)
from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.errors import UsageError


def _pts(*xy, scores=None):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return xy, (np.full(len(xy), np.nan) if scores is None else np.asarray(scores, dtype=float))


def _as_set(clusters):
    """Clusters as a set of (rounded centre, frozenset of voting sets)."""
    return {((round(x, 6), round(y, 6)), frozenset(np.flatnonzero(f).tolist()))
            for x, y, f in zip(clusters.x, clusters.y, clusters.found_by)}


def test_two_pickers_by_hand():
    a = _pts((10, 10), (50, 50), (90, 90))
    b = _pts((12, 10), (50, 55), (200, 200))
    cl = merge_micrograph([a, b], radius=4)
    # (10,10)+(12,10) merge -> (11,10); (50,50)/(50,55) are 5 apart > 4: separate.
    assert _as_set(cl) == {
        ((11.0, 10.0), frozenset({0, 1})),
        ((50.0, 50.0), frozenset({0})),
        ((50.0, 55.0), frozenset({1})),
        ((90.0, 90.0), frozenset({0})),
        ((200.0, 200.0), frozenset({1})),
    }
    assert sorted(cl.votes.tolist()) == [1, 1, 1, 1, 2]


def test_radius_edge_is_inclusive():
    a = _pts((0, 0))
    b = _pts((3, 4))  # exactly 5 apart
    assert len(merge_micrograph([a, b], radius=5.0)) == 1
    assert len(merge_micrograph([a, b], radius=4.999)) == 2


def test_one_vote_per_picker():
    # Picker 0 has two picks 3 apart (not duplicates at radius 2); picker 1 has one pick
    # between them: it joins the closer one only, never both.
    a = _pts((0, 0), (3, 0))
    b = _pts((1, 0))
    cl = merge_micrograph([a, b], radius=2)
    assert _as_set(cl) == {((0.5, 0.0), frozenset({0, 1})), ((3.0, 0.0), frozenset({0}))}
    assert cl.found_by.sum(1).max() == 2  # no cluster has 3 members


def test_no_chaining_complete_linkage():
    # Three pickers in a row, each step 3 px, radius 4: A-B and B-C are within the radius
    # but A-C (6 px) is not, so A, B and C are never one cluster.
    a, b, c = _pts((0, 0)), _pts((3, 0)), _pts((6, 0))
    cl = merge_micrograph([a, b, c], radius=4)
    assert cl.votes.max() == 2
    assert len(cl) == 2


def test_order_independence():
    rng = np.random.default_rng(3)
    sets = []
    truth = rng.uniform(0, 300, (40, 2))
    for _ in range(3):  # each picker finds most true particles, jittered, plus false ones
        found = truth[rng.random(40) < 0.8] + rng.normal(0, 1.5, (1, 2))
        xy = np.concatenate([found + rng.normal(0, 1.5, found.shape), rng.uniform(0, 300, (15, 2))])
        sets.append(_pts(*xy, scores=rng.normal(size=len(xy))))
    ref = merge_micrograph(sets, radius=6)
    ref_set = _as_set(ref)
    assert max(len(f) for _, f in ref_set) == 3  # the random sets do agree somewhere
    for perm in itertools.permutations(range(3)):
        cl = merge_micrograph([sets[p] for p in perm], radius=6)
        # Map the permuted set indices back to the original ones.
        back = {((x, y), frozenset(perm[i] for i in f)) for (x, y), f in _as_set(cl)}
        assert back == ref_set


def test_self_consensus_keeps_the_best_duplicate():
    xy, s = _pts((10, 10), (11, 10), (40, 40), scores=[0.2, 0.9, 0.5])
    keep = self_consensus(xy, s, radius=3)
    assert keep.tolist() == [1, 2]
    # A picker that reports one particle twice still votes once.
    cl = merge_micrograph([(xy, s), _pts((10.5, 10))], radius=3)
    assert sorted(cl.votes.tolist()) == [1, 2]


def test_merge_sets_counts_and_empty_picker():
    a = CoordinateTable.from_arrays(["m1"] * 3 + ["m2"] * 2, [10, 50, 90, 10, 50], [10, 50, 90, 10, 50], source="a")
    b = CoordinateTable.from_arrays(["m1.mrc"] * 2, [11, 50], [10, 51], source="b")  # nothing on m2
    cons = merge_sets([PickSet("a", a), PickSet("b", b)], radius=3, micrographs=["m1.mrc", "m2.mrc", "m3.mrc"])
    counts = cons.counts(k=1)
    assert counts["m1"] == {"or": 3, "and": 2, "1-of-2": 3}
    assert counts["m2"] == {"or": 2, "and": 0, "1-of-2": 2}
    assert counts["m3"] == {"or": 0, "and": 0, "1-of-2": 0}
    assert counts["total"] == {"or": 5, "and": 2, "1-of-2": 5}
    assert cons.and_mask().sum() == 2


def test_set_threshold_applies_to_scored_sets_only():
    a = CoordinateTable.from_arrays("m", [10, 50], [10, 50], score=[0.1, 0.9])
    b = CoordinateTable.from_arrays("m", [10, 50], [10, 50])  # no scores
    cons = merge_sets([PickSet("a", a, threshold=0.5), PickSet("b", b, threshold=0.5)], radius=2)
    assert sorted(cons.votes.tolist()) == [1, 2]


def test_negatives_never_near_or_and_edges():
    rng = np.random.default_rng(0)
    or_xy = rng.uniform(0, 500, (60, 2))
    box = 40
    neg = sample_negatives(or_xy, (500, 600), box, 60, rng)
    assert len(neg) > 0
    d = np.sqrt(((neg[:, None, :] - or_xy[None]) ** 2).sum(-1))
    assert d.min() >= box / 2
    assert (neg[:, 0] >= box / 2).all() and (neg[:, 0] <= 600 - box / 2).all()
    assert (neg[:, 1] >= box / 2).all() and (neg[:, 1] <= 500 - box / 2).all()
    assert len(neg) <= 60


def test_negatives_match_or_count_and_keep_user_negatives():
    a = CoordinateTable.from_arrays("m1", [100, 300], [100, 300])
    cons = merge_sets([PickSet("a", a)], radius=5, micrographs=["m1"])
    user = CoordinateTable.from_arrays("m1.mrc", [400], [50], kind=NEGATIVE)
    neg = negatives(cons, {"m1": (500, 500)}, 40, np.random.default_rng(1), user)
    assert (neg.source == "random").sum() == 2
    assert (neg.source == "user").sum() == 1
    assert (neg.kind == NEGATIVE).all()


def test_too_few_and_particles_is_a_clear_message():
    a = CoordinateTable.from_arrays("m1", [10, 50], [10, 50])
    cons = merge_sets([PickSet("a", a), PickSet("b", a)], radius=3)
    with pytest.raises(UsageError, match=r"only 2 AND particle\(s\).*at least 256.*m1: 2"):
        check_enough(cons)


def test_fold_duplicates_keeps_the_best_scored_pick_of_a_particle_with_every_vote():
    a = CoordinateTable.from_arrays("m1", [100, 300, 500], [100, 100, 100], score=[0.9, 0.8, 0.7])
    b = CoordinateTable.from_arrays("m1", [106, 300, 509], [100, 100, 100], score=[0.4, 0.6, 0.2])
    c = CoordinateTable.from_arrays("m2", [100], [100])  # no scores, another micrograph
    cons = merge_sets([PickSet("a", a), PickSet("b", b), PickSet("c", c)], radius=3)
    # Merged at 3 px: 100/106 and 500/509 stay apart (a duplicate each), 300 is one cluster.
    assert len(cons.table) == 6
    # Network scores: 106 (b's) above 100 (a's); 500 above 509; m2's (100, 100) low.
    net = {("m1", 100): 0.5, ("m1", 106): 0.8, ("m1", 300): 0.9, ("m1", 500): 0.7, ("m1", 509): 0.1, ("m2", 100): 0.2}
    scored = cons.with_scores([net[(k, int(x))] for k, x in zip(cons.table.keys, cons.table.x)])
    folded = scored.fold_duplicates(9.0)  # inclusive: 509 is exactly 9 px from 500
    got = {(k, int(x)): (f.tolist(), s) for k, x, f, s in zip(folded.table.keys, folded.table.x, folded.found_by,
                                                            folded.set_scores.tolist())}
    nan = got[("m2", 100)][1][0]
    assert set(got) == {("m1", 106), ("m1", 300), ("m1", 500), ("m2", 100)}
    assert got[("m1", 106)][0] == [True, True, False] and got[("m1", 106)][1][:2] == [0.9, 0.4]
    assert got[("m1", 500)][0] == [True, True, False] and got[("m1", 500)][1][:2] == [0.7, 0.2]
    assert got[("m1", 300)][0] == [True, True, False]
    assert got[("m2", 100)][0] == [False, False, True] and nan != nan  # c has no scores
    assert folded.micrographs == cons.micrographs and folded.n_sets == 3
    assert len(scored.fold_duplicates(8.9).table) == 5  # 509 stays apart below 9 px
    assert scored.fold_duplicates(0) is scored


def test_off_centre_negatives_lie_beside_positives_never_on_a_pick():
    rng = np.random.default_rng(3)
    d, box = 20.0, 30.0
    xy = rng.uniform(40, 460, (80, 2))
    a = CoordinateTable.from_arrays("m1", xy[:, 0], xy[:, 1])
    b = CoordinateTable.from_arrays("m1", xy[:40, 0] + 1, xy[:40, 1])
    cons = merge_sets([PickSet("a", a), PickSet("b", b)], radius=3, micrographs=["m1.mrc"])
    pos = cons.table[cons.at_least(2)]
    off = off_centre_negatives(pos, cons, {"m1": (500, 500)}, d, box, rng)
    assert 0 < len(off) <= len(pos)
    assert (off.kind == NEGATIVE).all() and (off.source == "off-centre").all()
    o = off.xy()
    to_pos = np.sqrt(((o[:, None] - pos.xy()[None]) ** 2).sum(-1)).min(1)
    to_or = np.sqrt(((o[:, None] - cons.table.xy()[None]) ** 2).sum(-1)).min(1)
    assert (to_pos >= 0.5 * d - 1e-9).all() and (to_pos <= 0.75 * d + 1e-9).all()
    assert (to_or >= 0.5 * d - 1e-9).all()
    assert ((o >= box / 2) & (o <= 500 - box / 2)).all()
    # A positive crowded by OR picks all round gets none; no positives, none at all.
    ring = np.array([[250 + 12 * np.cos(t), 250 + 12 * np.sin(t)] for t in np.linspace(0, 2 * np.pi, 24, endpoint=False)])
    crowd = merge_sets([PickSet("a", CoordinateTable.from_arrays("m1", [250, *ring[:, 0]], [250, *ring[:, 1]]))],
                       radius=1, micrographs=["m1.mrc"])
    centre = crowd.table[(crowd.table.x == 250) & (crowd.table.y == 250)]
    assert not len(off_centre_negatives(centre, crowd, {"m1": (500, 500)}, d, box, rng))
    assert not len(off_centre_negatives(CoordinateTable.empty(), cons, {"m1": (500, 500)}, d, box, rng))


def test_user_particles_join_the_positives_unless_already_agreed():
    a = CoordinateTable.from_arrays("m1", [100, 300, 450], [100, 300, 450])
    b = CoordinateTable.from_arrays("m1", [101, 300], [100, 302])  # agree on two; 450 found by a only
    cons = merge_sets([PickSet("a", a), PickSet("b", b)], radius=5, micrographs=["/data/m1.mrc", "/data/m2.mrc"])
    user = CoordinateTable.from_arrays(["m1.mrc"] * 4 + ["m2_DW.mrc", "m9.mrc"],
                                       [103, 300, 450, 200, 60, 60], [100, 306, 450, 200, 60, 60],
                                       kind=[PARTICLE, PARTICLE, PARTICLE, NEGATIVE, PARTICLE, PARTICLE])
    extra = extra_positives(cons, 2, user, radius=5)
    # (103, 100): 2.5 px from the agreed (100.5, 100): already a positive. (300, 306): 5 px
    # from (300, 301): the radius is inclusive, so it is too. (450, 450) was found by one set
    # only: the user's click makes it a positive. The negative is not a particle; m2_DW
    # matches /data/m2.mrc; m9 is no micrograph of the consensus.
    assert sorted(zip(extra.x.tolist(), extra.y.tolist())) == [(60.0, 60.0), (450.0, 450.0)]
    assert set(extra.keys.tolist()) == {"m1", "m2"}
    assert (extra.source == "user").all()
    with pytest.raises(UsageError, match=r"only 4 AND particle\(s\) \(with 2 of your labels\)"):
        check_enough(cons, 5, 2, len(extra))
    check_enough(cons, 4, 2, len(extra))  # two agreed and two clicked are enough for 4
    assert not len(extra_positives(cons, 2, None, radius=5))


def test_names_differing_by_suffix_and_folder_match():
    mics = ["/data/MotionCorr/job3/Movies/FoilHole_1_DW.mrc", "/data/MotionCorr/job3/Movies/FoilHole_2_DW.mrc"]
    mapping, unmatched = match_names(["FoilHole_1.mrc", "other/FoilHole_2_DW.mrc", "FoilHole_9"], mics)
    assert mapping == {"FoilHole_1": mics[0], "FoilHole_2_DW": mics[1]}
    assert unmatched == ["FoilHole_9"]
    table = CoordinateTable.from_arrays(["FoilHole_1_autopick.star", "FoilHole_9"], [1, 2], [1, 2])
    aligned, missing = align_to_micrographs(table, mics)
    assert aligned.micrograph.tolist() == [mics[0]] and missing == ["FoilHole_9"]


def test_ambiguous_name_is_not_guessed():
    mapping, unmatched = match_names(["mic1"], ["a/mic1_DW.mrc", "b/mic1_aligned.mrc"])
    assert mapping == {} and unmatched == ["mic1"]


def test_rank_scores_by_hand():
    """Each set ranks the clusters it found (best 1, ties share their mean rank, a pick
    without a score ties with the lowest); a set that missed a cluster adds 0."""
    a = CoordinateTable.from_arrays("m1", [10, 50, 90, 130], [10, 10, 10, 10], score=[0.9, 0.5, 0.1, 0.7])
    b = CoordinateTable.from_arrays("m1", [10, 50, 200], [10, 10, 10], score=[0.2, 0.8, 0.5])
    c = CoordinateTable.from_arrays("m1", [10, 300], [10, 10])  # no scores
    cons = merge_sets([PickSet("a", a), PickSet("b", b), PickSet("c", c)], radius=3)
    assert cons.table.x.tolist() == [10, 50, 90, 130, 200, 300]
    # a ranks x=10, 50, 90, 130 as 4/4, 2/4, 1/4, 3/4; b ranks x=10, 50, 200 as 1/3, 3/3, 2/3.
    np.testing.assert_allclose(cons.rank_scores(["a", "b"]), [(1 + 1 / 3) / 2, (0.5 + 1) / 2, 0.125, 0.375, 1 / 6 * 2, 0])
    # c's two picks tie: mean rank (1 + 2) / 2 of 2 = 0.75 each.
    np.testing.assert_allclose(cons.rank_scores(), [(1 + 1 / 3 + 0.75) / 3, 1.5 / 3, 0.25 / 3, 0.75 / 3, (2 / 3) / 3, 0.75 / 3])
    # Order of the sets does not matter; a higher score never lowers a rank.
    np.testing.assert_allclose(cons.rank_scores(["b", "a"]), cons.rank_scores(["a", "b"]))
    with pytest.raises(UsageError, match="no set named 'z'"):
        cons.rank_scores(["z"])


def test_rank_guided_examples_by_hand():
    """The ranked sets choose the network's examples: the lowest-ranked fraction of OR joins
    NEG (agreed or not), and agreed picks below the quantile of the ranks are no positives."""
    a = CoordinateTable.from_arrays("m1", [10, 50, 90, 130], [10, 10, 10, 10], score=[0.9, 0.5, 0.1, 0.7])
    b = CoordinateTable.from_arrays("m1", [10, 50, 200], [10, 10, 10], score=[0.2, 0.8, 0.5])
    c = CoordinateTable.from_arrays("m1", [10, 300], [10, 10])
    cons = merge_sets([PickSet("a", a), PickSet("b", b), PickSet("c", c)], radius=3)
    agreed = cons.at_least(2)
    assert agreed.tolist() == [True, True, False, False, False, False]
    # Mean ranks in a and b: x=10 0.667, 50 0.75, 90 0.125, 130 0.375, 200 0.333, 300 0.
    pos, rej = rank_guided_examples(cons, agreed, ["a", "b"], rejected_fraction=1 / 3, positive_quantile=0.5)
    assert rej.tolist() == [2, 5] and pos.tolist() == agreed.tolist()
    # A higher quantile (0.708) leaves out x=10, agreed by all three sets but ranked below it.
    pos, _ = rank_guided_examples(cons, agreed, ["a", "b"], rejected_fraction=1 / 3, positive_quantile=0.9)
    assert pos.tolist() == [False, True, False, False, False, False]
    # Ranked by b alone, x=10 (b's lowest) is among the 4 lowest: rejected, so no positive.
    pos, rej = rank_guided_examples(cons, agreed, ["b"], rejected_fraction=4 / 6, positive_quantile=0)
    assert rej.tolist() == [0, 2, 3, 5] and pos.tolist() == [False, True, False, False, False, False]
    # Nothing to reject, no quantile: the agreed picks as they were; the input is not changed.
    pos, rej = rank_guided_examples(cons, agreed, None, rejected_fraction=0, positive_quantile=0)
    assert not len(rej) and pos.tolist() == agreed.tolist() and pos is not agreed
    with pytest.raises(UsageError, match="in \\[0, 1\\)"):
        rank_guided_examples(cons, agreed, None, rejected_fraction=1.0)
