"""Consensus of several pickers: merge their picks into clusters, AND / k-of-N / OR sets, NEG.

Deep Consensus (Sanchez-Garcia et al., IUCrJ 2018) starts from several pickers' coordinate
sets of the same micrographs. Picks of different pickers that lie within a *merge radius*
of one another are one particle found by several pickers: a *cluster* with one *vote* per
picker that found it. AND is the clusters every picker found, k-of-N those at least ``k``
found, OR all of them; NEG are random positions away from every OR pick (negatives for the
network, with the user's own negative labels).

The merge here differs from Xmipp's on purpose (its flaws are in ../shared/FIELD.md):

* **order-independent**: candidate pairs are joined closest first (ties broken by their
  coordinates, never by which picker came first), so the clusters do not depend on the
  order the sets were given in;
* **one vote per picker**: a cluster never takes two picks of the same picker;
* **no chaining**: two clusters join only when every pick of one is within the radius of
  every pick of the other (complete linkage), so a row of particles never collapses into
  one cluster;
* **self-consensus first**: duplicates inside one set (within the radius) are merged
  before anything else, keeping the highest-scoring one, so a picker that reports a
  particle twice still votes once.

The centre of a cluster is the mean of its picks. Coordinates are original-micrograph
pixels throughout; the radius and box are in the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterable, Mapping, Sequence

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable, micrograph_key
from picker_gui.core.errors import UsageError

#: Default merge radius as a fraction of the box (Xmipp: 0.1 x box size).
MERGE_FRACTION_OF_BOX = 0.1
#: Fewer AND particles than this make a weak network (Xmipp refuses <= 256).
MIN_AND_FOR_TRAINING = 256


@dataclass(frozen=True)
class PickSet:
    """One picker's picks: a name the user knows it by, its table, and the least score a
    pick must have to take part (``None``: all picks; sets without scores ignore it)."""

    name: str
    table: CoordinateTable
    threshold: float | None = None

    def kept(self) -> CoordinateTable:
        t = self.table[self.table.kind == PARTICLE] if len(self.table) else self.table
        if self.threshold is None or not len(t) or not np.isfinite(t.score).any():
            return t
        return t[~(t.score < self.threshold)]  # NaN scores (no score) stay


# -- pairs within a radius --------------------------------------------------------------
def _pairs_within(xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with ``|xy[i] - xy[j]| <= radius``: (i, j, distance), from a k-d tree."""
    from scipy.spatial import cKDTree

    if len(xy) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    pairs = cKDTree(xy).query_pairs(radius * (1 + 1e-12), output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    dist = np.sqrt(((xy[i] - xy[j]) ** 2).sum(1))
    keep = dist <= radius + 1e-9
    return i[keep], j[keep], dist[keep]


def self_consensus(xy: np.ndarray, scores: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the picks of one set kept after merging its duplicates: greedily the
    highest score first (picks without a score rank after scored ones, then by position),
    dropping every other pick within ``radius`` of a kept one."""
    n = len(xy)
    if n < 2:
        return np.arange(n)
    s = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.lexsort((xy[:, 1], xy[:, 0], -s))
    i, j, _ = _pairs_within(xy, radius)
    if not len(i):
        return np.arange(n)
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(i.tolist(), j.tolist()):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    dropped = np.zeros(n, dtype=bool)
    keep = []
    for k in order.tolist():
        if dropped[k]:
            continue
        keep.append(k)
        for m in neighbours.get(k, ()):
            dropped[m] = True
    return np.sort(np.asarray(keep, dtype=np.int64))


# -- merging one micrograph -------------------------------------------------------------
@dataclass(frozen=True)
class Clusters:
    """The merged picks of one micrograph.

    Attributes
    ----------
    x, y : float arrays
        Cluster centres (the mean of their picks), original pixels.
    found_by : bool array, (n, n_sets)
        Which sets voted for each cluster.
    scores : float array, (n, n_sets)
        Each voting set's score for the cluster (NaN where it did not vote or has none).
    """

    x: np.ndarray
    y: np.ndarray
    found_by: np.ndarray
    scores: np.ndarray

    @property
    def votes(self) -> np.ndarray:
        return self.found_by.sum(axis=1)

    def __len__(self) -> int:
        return len(self.x)


def merge_micrograph(points: Sequence[tuple[np.ndarray, np.ndarray]], radius: float) -> Clusters:
    """Merge one micrograph's picks from several sets.

    Parameters
    ----------
    points
        Per set, ``(xy, scores)``: an ``(n, 2)`` array of centres and ``n`` scores (NaN
        when the set has none).
    radius
        Picks of different sets at most this far apart can be one particle.
    """
    n_sets = len(points)
    xys, sets, scores = [], [], []
    for k, (xy, sc) in enumerate(points):
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        sc = np.asarray(sc, dtype=np.float64).reshape(-1)
        keep = self_consensus(xy, sc, radius)
        xys.append(xy[keep])
        scores.append(sc[keep])
        sets.append(np.full(len(keep), k, dtype=np.int64))
    xy = np.concatenate(xys) if xys else np.zeros((0, 2))
    set_of = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)
    score = np.concatenate(scores) if scores else np.zeros(0)
    n = len(xy)
    i, j, d = _pairs_within(xy, radius)
    other_set = set_of[i] != set_of[j]
    i, j, d = i[other_set], j[other_set], d[other_set]
    # Closest pairs first; ties by the pair's coordinates, which do not depend on set order.
    lo = np.minimum(xy[i, 0] * 1e6 + xy[i, 1], xy[j, 0] * 1e6 + xy[j, 1])
    hi = np.maximum(xy[i, 0] * 1e6 + xy[i, 1], xy[j, 0] * 1e6 + xy[j, 1])
    order = np.lexsort((hi, lo, d))
    parent = list(range(n))
    members: dict[int, list[int]] = {k: [k] for k in range(n)}
    mask = [1 << int(k) for k in set_of.tolist()]  # the sets in each cluster, as bits
    xs, ys = xy[:, 0].tolist(), xy[:, 1].tolist()

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    r2 = radius * radius + 1e-9
    for a, b in zip(i[order].tolist(), j[order].tolist()):
        ra, rb = find(a), find(b)
        if ra == rb or mask[ra] & mask[rb]:
            continue  # already one cluster, or one vote per picker
        ma, mb = members[ra], members[rb]
        # Complete linkage: every pick of one within the radius of every pick of the other (no chains).
        if any((xs[p] - xs[q]) ** 2 + (ys[p] - ys[q]) ** 2 > r2 for p in ma for q in mb):
            continue
        if len(ma) < len(mb):
            ra, rb, ma, mb = rb, ra, mb, ma
        parent[rb] = ra
        members[ra] = ma + mb
        mask[ra] |= mask[rb]
        del members[rb]
    roots = np.array([find(k) for k in range(n)], dtype=np.int64)
    uniq, inv = np.unique(roots, return_inverse=True) if n else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    m = len(uniq)
    size = np.bincount(inv, minlength=m).astype(np.float64)
    cx = np.bincount(inv, xy[:, 0], minlength=m) / np.maximum(size, 1)
    cy = np.bincount(inv, xy[:, 1], minlength=m) / np.maximum(size, 1)
    found = np.zeros((m, n_sets), dtype=bool)
    cscore = np.full((m, n_sets), np.nan)
    found[inv, set_of] = True
    cscore[inv, set_of] = score
    # Clusters in the order of their centres (x, then y): the same whatever the order of the sets.
    by_position = np.lexsort((np.round(cy, 6), np.round(cx, 6)))
    cx, cy, found, cscore = cx[by_position], cy[by_position], found[by_position], cscore[by_position]
    return Clusters(cx, cy, found, cscore)


# -- every micrograph -------------------------------------------------------------------
@dataclass(frozen=True)
class ConsensusSets:
    """The clusters of every micrograph, as one table with their votes.

    ``table`` holds the cluster centres (micrograph, x, y; ``score`` the consensus score
    once a network has scored them, else the fraction of sets that found it); ``found_by``
    and ``set_scores`` are ``(n, n_sets)`` as in :class:`Clusters`.
    """

    set_names: tuple[str, ...]
    table: CoordinateTable
    found_by: np.ndarray
    set_scores: np.ndarray
    radius: float
    micrographs: tuple[str, ...] = field(default=())

    @property
    def n_sets(self) -> int:
        return len(self.set_names)

    @property
    def votes(self) -> np.ndarray:
        return self.found_by.sum(axis=1)

    def at_least(self, k: int) -> np.ndarray:
        """Mask of the clusters found by at least ``k`` sets (k-of-N; 1: OR, N: AND)."""
        return self.votes >= k

    def and_mask(self) -> np.ndarray:
        return self.at_least(self.n_sets)

    def counts(self, k: int | None = None) -> dict[str, dict[str, int]]:
        """Per micrograph (and ``"total"``): the OR, AND and (with ``k``) k-of-N counts."""
        keys = self.table.keys if len(self.table) else np.zeros(0, dtype=object)
        votes = self.votes
        out: dict[str, dict[str, int]] = {}
        names = list(self.micrographs) or sorted(set(keys.tolist()))
        for name in names:
            m = keys == micrograph_key(name)
            row = {"or": int(m.sum()), "and": int((m & (votes >= self.n_sets)).sum())}
            if k is not None:
                row[f"{k}-of-{self.n_sets}"] = int((m & (votes >= k)).sum())
            out[micrograph_key(name)] = row
        total = {"or": int(len(votes)), "and": int((votes >= self.n_sets).sum())}
        if k is not None:
            total[f"{k}-of-{self.n_sets}"] = int((votes >= k).sum())
        out["total"] = total
        return out

    def rank_scores(self, names: Sequence[str] | None = None) -> np.ndarray:
        """A score for every cluster without training: the mean over sets of the cluster's
        rank in each set, in [0, 1].

        A set's rank of a cluster it found is the fraction of that set's clusters scoring
        no higher (ties share their mean rank; the best scores 1); a pick without a score
        ties with the set's lowest, so a set without scores ranks all its picks alike (about
        ½: its vote, halved); a set that did not find the cluster adds 0.

        Where independent pickers agree, each ranks a particle high, and its mean rank stays
        high; what one picker alone ranks high (its junk) drops. With two ranked pickers of
        similar strength this beat each of them on F1 in 6 runs of 6 and on MCC in 5
        (benchmarks/README.md, consensus); a weak set that shares another's junk adds noise,
        so ``names`` chooses the sets (default: all).
        """
        chosen = list(self.set_names) if names is None else list(names)
        unknown = [n for n in chosen if n not in self.set_names]
        if unknown:
            raise UsageError(f"no set named {', '.join(map(repr, unknown))} (the sets are "
                             f"{', '.join(map(repr, self.set_names))})")
        if not chosen:
            raise UsageError("name at least one set to rank by")
        total = np.zeros(len(self.table))
        for name in chosen:
            i = self.set_names.index(name)
            found = np.flatnonzero(self.found_by[:, i])
            if not len(found):
                continue
            s = self.set_scores[found, i].astype(np.float64)
            s = np.where(np.isfinite(s), s, -np.inf)  # no score: the set's lowest rank
            order = np.sort(s)
            # Mean rank of ties: the mean of (count below) + 1 and (count at or below).
            below = np.searchsorted(order, s, side="left")
            upto = np.searchsorted(order, s, side="right")
            total[found] += (below + 1 + upto) / 2.0 / len(found)
        return total / len(chosen)

    def with_scores(self, scores: np.ndarray) -> "ConsensusSets":
        return ConsensusSets(self.set_names, self.table.replace(score=np.asarray(scores, dtype=np.float64)),
                             self.found_by, self.set_scores, self.radius, self.micrographs)

    def fold_duplicates(self, radius: float) -> "ConsensusSets":
        """One particle, one pick: on each micrograph, in descending score, a cluster within
        ``radius`` (inclusive) of one kept before it is the same particle and folds into that
        one, which takes the union of their votes and each set's best score.

        The merge radius (a tenth of a box) leaves two pickers' centres of one particle
        apart when they differ by more; a network scores both crops alike, so without this
        every such particle would be kept twice. ``radius``: the particle radius, as a
        picker's non-maximum suppression uses."""
        if not len(self.table) or not radius > 0:
            return self
        keep = np.ones(len(self.table), dtype=bool)
        found = self.found_by.copy()
        best = self.set_scores.copy()
        xy = self.table.xy()
        r2 = float(radius) ** 2
        distinct, codes = self.table._key_codes
        for i in range(len(distinct)):
            idx = np.flatnonzero(codes == i)
            idx = idx[np.argsort(-np.nan_to_num(self.table.score[idx], nan=-np.inf), kind="stable")]
            p = xy[idx]
            alive = np.ones(len(idx), dtype=bool)
            for a in range(len(idx)):
                if not alive[a]:
                    continue
                later = np.flatnonzero(alive[a + 1:] & (((p[a + 1:] - p[a]) ** 2).sum(axis=1) <= r2)) + a + 1
                if len(later):
                    found[idx[a]] |= found[idx[later]].any(axis=0)
                    best[idx[a]] = np.fmax(best[idx[a]], np.nanmax(best[idx[later]], axis=0, initial=-np.inf))
                    alive[later] = False
            keep[idx[~alive]] = False
        best[np.isneginf(best)] = np.nan
        return ConsensusSets(self.set_names, self.table[keep], found[keep], best[keep], self.radius, self.micrographs)


def merge_sets(sets: Sequence[PickSet], radius: float, micrographs: Iterable[str] | None = None) -> ConsensusSets:
    """Merge every micrograph's picks of ``sets`` (see :func:`merge_micrograph`).

    ``micrographs``: the micrographs to merge (names or keys; default: every micrograph any
    set has picks on). Picks are matched to micrographs by key (:func:`micrograph_key`);
    match names that differ in more than their extension and folder first with
    :func:`match_names`. A set with no picks on a micrograph simply has no vote there.
    """
    if not sets:
        raise UsageError("consensus needs at least one coordinate set")
    if not (radius > 0 and math.isfinite(radius)):
        raise UsageError(f"the merge radius must be a positive number of pixels, got {radius!r}")
    kept = [s.kept() for s in sets]
    if micrographs is None:
        names = sorted({k for t in kept for k in (t.keys.tolist() if len(t) else [])})
    else:  # rows are named by the micrograph's file name, as picks are
        names = list({micrograph_key(m): PurePath(str(m)).name for m in micrographs}.values())
    by_set = [dict(t.groupby_micrograph()) if len(t) else {} for t in kept]
    nothing = (np.zeros((0, 2)), np.zeros(0))
    tables, founds, scores = [], [], []
    for name in names:
        points = []
        for groups in by_set:
            sub = groups.get(micrograph_key(name))
            points.append((sub.xy(), sub.score) if sub is not None else nothing)
        cl = merge_micrograph(points, radius)
        tables.append(CoordinateTable.from_arrays(name, cl.x, cl.y, cl.votes / max(1, len(sets)), source="consensus"))
        founds.append(cl.found_by)
        scores.append(cl.scores)
    n_sets = len(sets)
    table = CoordinateTable.concat(tables)
    found = np.concatenate(founds) if founds else np.zeros((0, n_sets), dtype=bool)
    set_scores = np.concatenate(scores) if scores else np.zeros((0, n_sets))
    return ConsensusSets(tuple(s.name for s in sets), table, found, set_scores, float(radius), tuple(names))


# -- negatives --------------------------------------------------------------------------
def _at_least(cand: np.ndarray, points: np.ndarray, distance: float) -> np.ndarray:
    """Mask of the ``cand`` positions at least ``distance`` from every one of ``points``
    (both ``(n, 2)``), computed in blocks to bound memory."""
    ok = np.ones(len(cand), dtype=bool)
    for start in range(0, len(points), 4096):
        d2 = ((cand[:, None, :] - points[None, start:start + 4096, :]) ** 2).sum(-1)
        ok &= (d2 >= distance * distance).all(1)
    return ok


def sample_negatives(
    or_xy: np.ndarray,
    shape: tuple[int, int],
    box: float,
    n: int,
    rng: np.random.Generator,
    max_tries: int = 50,
) -> np.ndarray:
    """Xmipp's NEG for one micrograph: up to ``n`` uniform random positions at least half a
    box from every OR pick and from the edges (``shape`` is (height, width) in the same
    pixels). Fewer come back when the micrograph has no more room."""
    h, w = shape
    half = box / 2
    if n <= 0 or w - 2 * half <= 0 or h - 2 * half <= 0:
        return np.zeros((0, 2))
    or_xy = np.asarray(or_xy, dtype=np.float64).reshape(-1, 2)
    out: list[np.ndarray] = []
    got = 0
    for _ in range(max_tries):
        m = max(64, 2 * (n - got))
        cand = np.column_stack([rng.uniform(half, w - half, m), rng.uniform(half, h - half, m)])
        cand = cand[_at_least(cand, or_xy, half)][: n - got]
        out.append(cand)
        got += len(cand)
        if got >= n:
            break
    return np.concatenate(out) if out else np.zeros((0, 2))


#: Off-centre negatives lie this far from a positive, in diameters: the crop still holds much
#: of the particle, but it is not centred on it.
OFF_CENTRE_RANGE = (0.5, 0.75)


def off_centre_negatives(positives: CoordinateTable, cons: ConsensusSets, shapes: Mapping[str, tuple[int, int]],
                         diameter: float, box: float, rng: np.random.Generator) -> CoordinateTable:
    """For each positive, a spot :data:`OFF_CENTRE_RANGE` diameters off it in a random
    direction, kept when it is at least half a diameter from every OR pick and every
    positive (else it may be another particle's centre) and half a box inside the edges.

    Xmipp's NEG lies half a box from every pick, so its network never sees a crop that holds
    part of a particle off its centre and learns "a particle in the box", which keeps a
    picker's pick on a particle's edge or between two particles. These teach it where the
    centre is. ``shapes``: micrograph key -> (height, width), in the pixels of the picks."""
    if not len(positives) or not diameter > 0:
        return CoordinateTable.empty()
    lo, hi = OFF_CENTRE_RANGE
    half = box / 2
    or_by_key = {str(k): rows.xy() for k, rows in cons.table.groupby_micrograph()} if len(cons.table) else {}
    tables = []
    for key, rows in positives.groupby_micrograph():
        key = str(key)
        if key not in shapes:
            continue
        h, w = shapes[key]
        xy = rows.xy()
        r = rng.uniform(lo, hi, len(xy)) * diameter
        a = rng.uniform(0, 2 * np.pi, len(xy))
        cand = xy + np.column_stack([r * np.cos(a), r * np.sin(a)])
        ok = (cand[:, 0] >= half) & (cand[:, 0] <= w - half) & (cand[:, 1] >= half) & (cand[:, 1] <= h - half)
        ok &= _at_least(cand, np.concatenate([or_by_key.get(key, np.zeros((0, 2))), xy]), diameter / 2)
        if ok.any():
            tables.append(CoordinateTable.from_arrays(rows.micrograph[0], cand[ok, 0], cand[ok, 1], kind=NEGATIVE,
                                                      source="off-centre"))
    return CoordinateTable.concat(tables) if tables else CoordinateTable.empty()


def negatives(cons: ConsensusSets, shapes: Mapping[str, tuple[int, int]], box: float, rng: np.random.Generator,
              user_negatives: CoordinateTable | None = None) -> CoordinateTable:
    """NEG for every micrograph of ``cons``: as many as its OR picks (see
    :func:`sample_negatives`), plus the user's negative labels (``kind == negative``) on
    those micrographs. ``shapes``: micrograph key -> (height, width) in original pixels."""
    tables = []
    keys = cons.table.keys if len(cons.table) else np.zeros(0, dtype=object)
    for name in cons.micrographs:
        key = micrograph_key(name)
        if key not in shapes:
            continue
        m = keys == key
        or_xy = cons.table.xy()[m] if m.any() else np.zeros((0, 2))
        xy = sample_negatives(or_xy, shapes[key], box, int(m.sum()), rng)
        tables.append(CoordinateTable.from_arrays(name, xy[:, 0], xy[:, 1], kind=NEGATIVE, source="random"))
    if user_negatives is not None and len(user_negatives):
        mine, _ = align_to_micrographs(user_negatives[user_negatives.kind == NEGATIVE], list(cons.micrographs))
        if len(mine):
            tables.append(mine.replace(source=np.full(len(mine), "user", dtype=object)))
    return CoordinateTable.concat(tables)


#: Rank-guided training (``--train --rank``): the lowest fraction of the OR picks by mean rank
#: that join NEG, and the quantile of the mean ranks below which an agreed pick is no positive.
REJECTED_FRACTION = 0.3
POSITIVE_RANK_QUANTILE = 0.5


def rank_guided_examples(cons: ConsensusSets, positive: np.ndarray, names: Sequence[str] | None = None,
                         rejected_fraction: float = REJECTED_FRACTION,
                         positive_quantile: float = POSITIVE_RANK_QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """The network's examples chosen by the ranked sets ``names`` as well as by the votes.

    ``positive``: a mask of the agreed clusters (k-of-N). Returns ``(positive, rejected)``:
    the agreed clusters whose mean rank (:meth:`ConsensusSets.rank_scores`) is at least the
    ``positive_quantile`` of all clusters' and that are not rejected, and the indices of the
    ``rejected_fraction`` of clusters ranked lowest (ties broken by order), which join NEG.

    Xmipp's NEG are random spots away from every pick, so its network learns "a particle or
    empty ice" and never sees the picks a picker got wrong, which are what it must reject;
    and agreements of two weak pickers on the same junk are positives. Where strong ranked
    pickers rank a pick lowest, it is mostly junk (aspire-small: the lowest 20 % by the mean
    rank of ours and Topaz trained are 11 % true); their top half of the agreed picks is
    95 % true against 79 % for 2-of-4 (benchmarks/README.md, consensus)."""
    positive = np.asarray(positive, dtype=bool)
    n = len(cons.table)
    if not n:
        return positive.copy(), np.zeros(0, dtype=np.intp)
    if not (0 <= rejected_fraction < 1) or not (0 <= positive_quantile < 1):
        raise UsageError(f"rank-guided fractions must lie in [0, 1), got {rejected_fraction:g} and "
                         f"{positive_quantile:g}")
    r = cons.rank_scores(names)
    rejected = np.sort(np.argsort(r, kind="stable")[:int(round(rejected_fraction * n))])
    keep = positive.copy()
    if positive_quantile > 0:
        keep &= r >= np.quantile(r, positive_quantile)
    keep[rejected] = False
    return keep, rejected


def extra_positives(cons: ConsensusSets, k: int, user_positives: CoordinateTable | None, radius: float) -> CoordinateTable:
    """The user's positive labels (``kind == particle``) on the micrographs of ``cons`` that
    are not already positives: farther than ``radius`` from every cluster found by at least
    ``k`` sets. The particles a user clicked are particles, whatever the pickers agreed on;
    those the pickers agreed on too are not counted twice."""
    if user_positives is None or not len(user_positives):
        return CoordinateTable.empty()
    mine, _ = align_to_micrographs(user_positives[user_positives.kind == PARTICLE], list(cons.micrographs))
    if not len(mine):
        return CoordinateTable.empty()
    agreed = cons.table[cons.at_least(k)] if len(cons.table) else cons.table
    by_key = {str(key): rows.xy() for key, rows in agreed.groupby_micrograph()} if len(agreed) else {}
    parts = []
    for key, rows in mine.groupby_micrograph():
        xy = rows.xy()
        keep = np.ones(len(xy), dtype=bool)
        a = by_key.get(str(key))
        if a is not None and len(a):
            d2 = ((xy[:, None, :] - a[None, :, :]) ** 2).sum(-1)
            keep = d2.min(1) > radius * radius
        if keep.any():
            parts.append(rows[keep].replace(source=np.full(int(keep.sum()), "user", dtype=object)))
    return CoordinateTable.concat(parts) if parts else CoordinateTable.empty()


def check_enough(cons: ConsensusSets, minimum: int = MIN_AND_FOR_TRAINING, k: int | None = None, extra: int = 0) -> None:
    """Raise a clear :class:`UsageError` with the counts when the positives (AND, or k-of-N,
    plus ``extra`` of the user's positive labels) are too few to train the consensus network on."""
    k = cons.n_sets if k is None else k
    n_pos = int(cons.at_least(k).sum()) + int(extra)
    if n_pos >= minimum:
        return
    counts = cons.counts(k)
    per = ", ".join(f"{name}: {c[f'{k}-of-{cons.n_sets}'] if f'{k}-of-{cons.n_sets}' in c else c['and']}"
                    for name, c in counts.items() if name != "total")
    which = "AND" if k == cons.n_sets else f"{k}-of-{cons.n_sets}"
    raise UsageError(
        f"only {n_pos} {which} particle(s){f' (with {extra} of your labels)' if extra else ''} to train the consensus network on (at least {minimum} are needed; "
        f"OR has {counts['total']['or']}). Per micrograph: {per or 'no micrographs'}. Add micrographs, lower the "
        f"sets' thresholds, raise the merge radius or ask for fewer votes (--min-votes)")


# -- names --------------------------------------------------------------------------------
#: Suffixes motion-correction and picking programs add to a micrograph's name.
NAME_SUFFIXES = ("_dw", "_doseweighted", "_noDW", "_aligned", "_sum", "_avg", "_corrected", "_autopick",
                 "_manualpick", "_pick", "_picks", "_coords", "_topaz", "_cryolo", "_manual", "_ctf", "_fractions")


_COORDINATE_EXTENSIONS = (".star", ".box", ".cbox", ".txt", ".csv", ".cs", ".coord", ".json")


def _bare(key: str) -> str:
    k = key.lower()
    for ext in _COORDINATE_EXTENSIONS:
        if k.endswith(ext):
            k = k[: -len(ext)]
            break
    changed = True
    while changed:
        changed = False
        for suffix in NAME_SUFFIXES:
            if k.endswith(suffix.lower()) and len(k) > len(suffix):
                k = k[: -len(suffix)]
                changed = True
    return k


def match_names(names: Iterable[str], micrographs: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Match the micrograph names of a coordinate set to the micrographs open.

    Each name matches by its key (folder and image extension dropped); failing that, by the
    key with common suffixes (``_DW``, ``_aligned``, ``_autopick``, ...) removed on both
    sides, case-insensitively. A name that matches no micrograph, or more than one, is
    left out.

    Returns
    -------
    mapping, unmatched
        ``{key of name: micrograph name}`` for the names that matched, and the keys that did not.
    """
    mics = list(dict.fromkeys(micrographs))
    by_key = {micrograph_key(m): m for m in mics}
    by_bare: dict[str, list[str]] = {}
    for m in mics:
        by_bare.setdefault(_bare(micrograph_key(m)), []).append(m)
    mapping: dict[str, str] = {}
    unmatched: list[str] = []
    for name in dict.fromkeys(micrograph_key(n) for n in names):
        if name in by_key:
            mapping[name] = by_key[name]
        elif len(by_bare.get(_bare(name), [])) == 1:
            mapping[name] = by_bare[_bare(name)][0]
        else:
            unmatched.append(name)
    return mapping, unmatched


def align_to_micrographs(table: CoordinateTable, micrographs: Sequence[str]) -> tuple[CoordinateTable, list[str]]:
    """The rows of ``table`` renamed to the micrographs they match (:func:`match_names`),
    and the keys of names that matched none (their rows are dropped)."""
    if not len(table):
        return table, []
    mapping, unmatched = match_names(table.micrograph.tolist(), micrographs)
    renamed = table.named_by_key(mapping)
    keep = np.isin(renamed.keys, [micrograph_key(m) for m in mapping.values()])
    return renamed[keep], unmatched


# -- the full table -------------------------------------------------------------------------
def write_consensus_csv(cons: ConsensusSets, path, keep: np.ndarray | None = None) -> int:
    """Write every cluster (or those in ``keep``) as CSV: micrograph, x, y, score, votes,
    then per set whether it found the pick (0/1) and its score there. Coordinate readers
    read it as a scored set (the ``csv`` format). Atomic. Returns the rows written."""
    import csv
    import io

    from picker_gui.core.paths import atomic_write_text

    t, found, scores = cons.table, cons.found_by, cons.set_scores
    if keep is not None:
        t, found, scores = t[keep], found[keep], scores[keep]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["micrograph", "x", "y", "score", "votes", *(f"found_by_{n}" for n in cons.set_names),
                *(f"score_{n}" for n in cons.set_names)])
    votes = found.sum(1)
    for i in range(len(t)):
        w.writerow([t.micrograph[i], f"{t.x[i]:.2f}", f"{t.y[i]:.2f}", f"{t.score[i]:.6g}", int(votes[i]),
                    *(int(v) for v in found[i]), *("" if not np.isfinite(s) else f"{s:.6g}" for s in scores[i])])
    atomic_write_text(path, buf.getvalue())
    return len(t)
