"""Picking accuracy against a set of true (or held-out) particle centres.

A pick is a true positive when it lies within ``radius`` pixels of a true centre on the same
micrograph that no higher-scoring pick has claimed yet (greedy matching in score order, as
detection benchmarks do); each true centre is matched at most once, so duplicate picks on
one particle count as false positives. Ranking the picks by score gives the
precision-recall curve; average precision is the area under its step function, the
definition scikit-learn and Topaz use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from picker_gui.core.coords import CoordinateTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Matching:
    """Picks ranked by descending score, each marked true or false positive."""

    scores: np.ndarray  # descending
    is_true: np.ndarray  # bool, same order
    n_truth: int

    @property
    def n_picks(self) -> int:
        return len(self.scores)


def _match_one(px: np.ndarray, py: np.ndarray, tx: np.ndarray, ty: np.ndarray, radius: float) -> np.ndarray:
    """Greedy matching on one micrograph; picks must already be in descending score order."""
    hit = np.zeros(len(px), dtype=bool)
    if len(px) == 0 or len(tx) == 0:
        return hit
    taken = np.zeros(len(tx), dtype=bool)
    r2 = radius * radius
    # Candidate pairs within the radius, found in blocks to bound memory.
    for start in range(0, len(px), 2048):
        stop = min(start + 2048, len(px))
        d2 = (px[start:stop, None] - tx[None, :]) ** 2 + (py[start:stop, None] - ty[None, :]) ** 2
        d2[d2 > r2] = np.inf
        for i in np.flatnonzero(np.isfinite(d2).any(axis=1)):
            row = np.where(taken, np.inf, d2[i])
            j = int(np.argmin(row))
            if np.isfinite(row[j]):
                taken[j] = True
                hit[start + i] = True
    return hit


def match_picks(
    picks: CoordinateTable,
    truth: CoordinateTable,
    radius: float,
    *,
    only_truth_micrographs: bool = True,
) -> Matching:
    """Match picks to true centres within ``radius`` pixels.

    Parameters
    ----------
    picks
        Scored picks (NaN scores rank last).
    truth
        True centres; micrographs are matched by key.
    radius
        Matching radius in the pixels of the coordinates (original-micrograph pixels).
    only_truth_micrographs
        Ignore picks on micrographs that have no entry in ``truth`` (unlabelled ones), so
        that evaluating a subset is fair. Micrographs in ``truth`` with no picks still count.
    """
    if radius <= 0:
        raise ValueError(f"matching radius must be positive, got {radius}")
    truth_keys = truth.keys
    pick_keys = picks.keys
    micrographs = set(truth_keys)
    if not only_truth_micrographs:
        micrographs |= set(pick_keys)
    elif len(picks):
        dropped = int(np.count_nonzero(~np.isin(pick_keys, list(micrographs))))
        if dropped:
            logger.info("ignoring %d pick(s) on micrographs with no true centres", dropped)
    scores, hits = [], []
    for key in sorted(micrographs):
        p = picks[pick_keys == key]
        order = np.argsort(-np.nan_to_num(p.score, nan=-np.inf), kind="stable")
        p = p[order]
        t = truth[truth_keys == key]
        hits.append(_match_one(p.x, p.y, t.x, t.y, radius))
        scores.append(np.nan_to_num(p.score, nan=-np.inf))
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_hits = np.concatenate(hits) if hits else np.zeros(0, dtype=bool)
    order = np.argsort(-all_scores, kind="stable")
    return Matching(all_scores[order], all_hits[order], int(np.isin(truth_keys, list(micrographs)).sum()))


def precision_recall_curve(m: Matching) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall after each distinct score, highest threshold first.

    Returns ``precision, recall, thresholds`` where entry ``k`` is what keeping every pick
    with ``score >= thresholds[k]`` gives.
    """
    if m.n_picks == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    tp = np.cumsum(m.is_true)
    k = np.arange(1, m.n_picks + 1)
    # Ties: only the last pick of a run of equal scores is a valid cut point.
    last_of_tie = np.append(m.scores[1:] != m.scores[:-1], True)
    precision = (tp / k)[last_of_tie]
    recall = (tp / max(m.n_truth, 1))[last_of_tie]
    return precision, recall, m.scores[last_of_tie]


def average_precision(m: Matching) -> float:
    """Area under the precision-recall step function: ``sum (R_k - R_{k-1}) P_k``."""
    precision, recall, _ = precision_recall_curve(m)
    if len(precision) == 0 or m.n_truth == 0:
        return 0.0
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def at_threshold(m: Matching, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the picks with ``score >= threshold``."""
    keep = m.scores >= threshold
    n = int(keep.sum())
    tp = int(m.is_true[keep].sum())
    precision = tp / n if n else 0.0
    recall = tp / m.n_truth if m.n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1, "n_picks": n}


def best_f1(m: Matching) -> dict[str, float]:
    """The threshold with the highest F1, and its precision, recall and pick count."""
    precision, recall, thresholds = precision_recall_curve(m)
    if len(precision) == 0:
        return {"threshold": float("nan"), "precision": 0.0, "recall": 0.0, "f1": 0.0, "n_picks": 0}
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    i = int(np.argmax(f1))
    return at_threshold(m, float(thresholds[i]))


def evaluate(picks: CoordinateTable, truth: CoordinateTable, radius: float) -> dict[str, float]:
    """Average precision and the best-F1 operating point, as plain numbers (for JSON)."""
    m = match_picks(picks, truth, radius)
    best = best_f1(m)
    return {
        "average_precision": average_precision(m),
        "best_f1": best["f1"],
        "best_f1_threshold": best["threshold"],
        "best_f1_precision": best["precision"],
        "best_f1_recall": best["recall"],
        "best_f1_n_picks": best["n_picks"],
        "n_picks": m.n_picks,
        "n_truth": m.n_truth,
        "radius_px": float(radius),
    }
