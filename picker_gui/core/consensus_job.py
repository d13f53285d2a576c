"""The consensus job: several pickers' sets -> clusters -> (optionally) the Deep Consensus
network -> every OR pick scored. What ``picker-gui consensus`` and the window's consensus
panel run.

Like the other jobs (:mod:`picker_gui.core.jobs`), it takes plain arguments, yields
:class:`~picker_gui.core.jobs.JobReport` (stage ``"preprocess"`` per micrograph, stage
``"consensus"`` per minibatch of the network, with its
:class:`~picker_gui.core.consensus_net.ConsensusReport`), checks a stop flag and returns
its result. Sizes are in Å and converted with the micrographs' pixel size.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Generator, Sequence

import numpy as np

from picker_gui.core.consensus import (
    MERGE_FRACTION_OF_BOX,
    MIN_AND_FOR_TRAINING,
    POSITIVE_RANK_QUANTILE,
    REJECTED_FRACTION,
    ConsensusSets,
    PickSet,
    align_to_micrographs,
    check_enough,
    extra_positives,
    merge_sets,
    negatives,
    off_centre_negatives,
    rank_guided_examples,
)
from picker_gui.core.coords import NEGATIVE, CoordinateTable, micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.jobs import JobReport, _failure_line, listed_names, _stop_checker
from picker_gui.core.mrc_io import read_header, require_unique_micrographs
from picker_gui.core.preprocess import PreprocessParams

if TYPE_CHECKING:
    from picker_gui.core.cache import PreprocessCache
    from picker_gui.core.consensus_net import ConsensusModel
    from picker_gui.core.preprocess import Preprocessed

logger = logging.getLogger(__name__)

#: The built-in picker's set name.
DOG_SET = "DoG"
#: Passes over the larger class for a rank-guided network (ConsensusConfig.max_epochs: 5).
RANK_GUIDED_MAX_EPOCHS = 20.0
#: The box around a particle, as a multiple of its diameter, when none is given.
BOX_PER_DIAMETER = 1.5


@dataclass(frozen=True)
class ConsensusSettings:
    """Every knob of a consensus run, in plain values (Å)."""

    diameter_a: float
    box_a: float | None = None  # default BOX_PER_DIAMETER x diameter
    merge_radius_a: float | None = None  # default MERGE_FRACTION_OF_BOX x box
    min_votes: int | None = None  # the positives: found by at least this many sets (default: all: AND)
    train: bool = True
    #: Without training: score every OR pick by its mean rank in these sets
    #: (:meth:`ConsensusSets.rank_scores`; an empty tuple: every set). None: by its votes.
    #: With training: the ranks also choose the network's examples (rank-guided, below).
    rank: tuple[str, ...] | None = None
    dog: bool = False  # add the built-in difference-of-Gaussians picker as a set
    expected_per_micrograph: float | None = None  # the built-in picker keeps this many per micrograph
    min_positives: int = MIN_AND_FOR_TRAINING
    pixel_size_a: float | None = None  # overrides the headers
    ensemble: int = 3
    max_minutes: float = 5.0
    input_px: int = 64
    #: NEG also half to three quarters of a diameter off each positive (see
    #: consensus.off_centre_negatives); False: Xmipp's NEG only.
    off_centre_negatives: bool = True
    #: With ``rank`` and training (rank-guided): this fraction of the OR picks, the lowest by
    #: their mean rank in the ranked sets, joins NEG, and agreed picks below this quantile of
    #: the mean ranks are no positives (consensus.rank_guided_examples).
    rejected_fraction: float = REJECTED_FRACTION
    positive_rank_quantile: float = POSITIVE_RANK_QUANTILE
    seed: int = 0
    device: str = "auto"

    @property
    def box(self) -> float:
        return self.box_a if self.box_a else BOX_PER_DIAMETER * self.diameter_a

    @property
    def merge_radius(self) -> float:
        return self.merge_radius_a if self.merge_radius_a else MERGE_FRACTION_OF_BOX * self.box


@dataclass
class ConsensusJobResult:
    """What :func:`consensus_job` returns.

    Attributes
    ----------
    sets
        The clusters (OR) with their votes (once scored, one per particle: see
        :meth:`ConsensusSets.fold_duplicates`); ``sets.table.score`` is the network's P(particle)
        when it was trained, else the fraction of sets that found the pick.
    negatives
        NEG: the random spots and user negatives the network learnt from (empty without it).
    model
        The trained ensemble, or None.
    failures
        ``(micrograph path, one line naming it and what is wrong)``.
    unmatched
        Per set name, the micrograph names in its file that matched no micrograph.
    warnings
        Also logged and in the reports' messages.
    """

    sets: ConsensusSets
    negatives: CoordinateTable
    model: ConsensusModel | None
    failures: list[tuple[str, str]] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    stopped: bool = False


def dog_cut(scores: np.ndarray, n_micrographs: int, expected_per_micrograph: float | None) -> float:
    """The built-in picker's default threshold: the score of its ``expected x micrographs``-th
    pick when the expected count is known (its highest scores are often junk, so a cut by
    count comes within a few percent of its best F1 on the benchmark sets, where Otsu's and
    mean + std cuts keep a handful of picks), else the median candidate."""
    s = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])[::-1]
    if not len(s):
        return -math.inf
    if expected_per_micrograph and expected_per_micrograph > 0:
        k = int(round(expected_per_micrograph * max(1, n_micrographs)))
        return float(s[min(max(k, 1), len(s)) - 1])
    return float(np.median(s))


def _pixel_size(path: Path, settings: ConsensusSettings) -> float:
    px = settings.pixel_size_a or read_header(path).pixel_size_a
    if not px:
        raise UsageError(f"{path}: no pixel size in the header; give --pixel-size (Å) so that the diameter and box "
                         f"in Å can be converted to pixels")
    return float(px)


def _each_preprocessed(paths, params, cache, should_stop, failures: list):
    """``(index, path, key, preprocessed or None, failure line or None)`` per micrograph until
    ``should_stop()``; failures are also appended to ``failures``. Returns True when stopped."""
    from picker_gui.core.preprocess import preprocess_file

    for i, path in enumerate(paths):
        if should_stop():
            return True
        key = micrograph_key(path)
        try:
            if not (params.pixel_size_a or read_header(path).pixel_size_a):
                raise MicrographError(path, "no pixel size in the header; give the pixel size")
            prep = preprocess_file(path, params, cache)
        except MicrographError as exc:
            line = _failure_line(path, exc)
            failures.append((str(path), line))
            yield i, path, key, None, line
            continue
        yield i, path, key, prep, None
    return False


def dog_job(
    micrographs: Sequence[str | PathLike],
    diameter_a: float,
    *,
    pixel_size_a: float | None = None,
    expected_per_micrograph: float | None = None,
    stop: threading.Event | None = None,
    cache: PreprocessCache | None = None,
) -> Generator[JobReport, None, tuple[CoordinateTable, float, list[tuple[str, str]]]]:
    """The built-in difference-of-Gaussians picker on every micrograph (stage ``"pick"``,
    one report per micrograph with its picks). Returns every candidate (ranked, original
    pixels), the set's default threshold (:func:`dog_cut`) and the failures."""
    from picker_gui.core.classical import dog_picks

    should_stop = _stop_checker(stop)
    paths = require_unique_micrographs(micrographs)
    if not (diameter_a > 0 and math.isfinite(diameter_a)):
        raise UsageError(f"must be a positive number of Å, got {diameter_a:g}", option="--diameter-a")
    params = PreprocessParams(diameter_a=diameter_a, pixel_size_a=pixel_size_a)
    tables, failures = [], []
    for i, path, key, prep, line in _each_preprocessed(paths, params, cache, should_stop, failures):
        if prep is None:
            yield JobReport("pick", i + 1, len(paths), message=line, micrograph=key, error=line)
            continue
        picks = dog_picks(prep, diameter_a / prep.pixel_size_a, name=path.name)
        tables.append(picks)
        yield JobReport("pick", i + 1, len(paths), micrograph=key, picks=picks)
    table = CoordinateTable.concat(tables) if tables else CoordinateTable.empty()
    return table, dog_cut(table.score, len(tables), expected_per_micrograph), failures


def _each_preprocessed_reported(paths, params, cache, should_stop, failures, preps, message, dog_diameter_a, dog_tables):
    """Preprocess every micrograph into ``preps`` (and its DoG picks into ``dog_tables`` when
    ``dog_diameter_a``), a report each; True when stopped."""
    from picker_gui.core.classical import dog_picks

    for i, path, key, prep, line in _each_preprocessed(paths, params, cache, should_stop, failures):
        if prep is None:
            yield JobReport("preprocess", i + 1, len(paths), message=line, micrograph=key, error=line)
            continue
        preps[key] = prep
        if dog_diameter_a:
            dog_tables.append(dog_picks(prep, dog_diameter_a / prep.pixel_size_a, name=str(path)))
        yield JobReport("preprocess", i + 1, len(paths), message=message, micrograph=key)
        message = None
    return should_stop()


def consensus_job(
    micrographs: Sequence[str | PathLike],
    sets: Sequence[PickSet],
    settings: ConsensusSettings,
    *,
    user_negatives: CoordinateTable | None = None,
    user_positives: CoordinateTable | None = None,
    stop: threading.Event | None = None,
    cache: PreprocessCache | None = None,
) -> Generator[JobReport, None, ConsensusJobResult]:
    """Merge ``sets`` on ``micrographs`` and, with ``settings.train``, train the Deep Consensus
    network on AND (or k-of-N) against NEG and score every OR pick.

    Once scored, a pick within the particle radius of a higher-scored one folds into it
    (:meth:`ConsensusSets.fold_duplicates`): the result has one pick per particle.

    ``user_negatives`` (the user's negative labels) join NEG; ``user_positives`` (the user's
    particle labels) join the positives where no agreed pick already lies within the merge
    radius: what a user clicked is a particle, whatever the pickers agreed on.

    Raises
    ------
    UsageError
        No set and no built-in picker; settings that cannot work; a set whose names match
        none of the micrographs; too few positives to train on (with the counts).
    """
    should_stop = _stop_checker(stop)
    paths = require_unique_micrographs(micrographs)
    if not paths:
        raise UsageError("no micrographs to take the consensus on")
    if not sets and not settings.dog:
        raise UsageError("consensus needs coordinate sets (or the built-in picker: --dog)")
    if not (settings.diameter_a > 0 and math.isfinite(settings.diameter_a)):
        raise UsageError(f"must be a positive number of Å, got {settings.diameter_a:g}", option="--diameter-a")
    n_sets = len(sets) + (1 if settings.dog else 0)
    if settings.min_votes is not None and not (1 <= settings.min_votes <= n_sets):
        raise UsageError(f"must be between 1 and the number of sets ({n_sets}), got {settings.min_votes}",
                         option="--min-votes")
    warnings: list[str] = []
    unmatched: dict[str, list[str]] = {}
    aligned: list[PickSet] = []
    names = [str(p) for p in paths]
    for s in sets:
        table, missing = align_to_micrographs(s.table, names)
        if missing:
            unmatched[s.name] = missing
            warnings.append(f"set {s.name!r}: {len(missing)} micrograph name(s) match none of the micrographs, "
                            f"their picks are left out: {listed_names(missing)}")
        if len(s.table) and not len(table):
            raise UsageError(f"set {s.name!r}: none of its micrograph names ({listed_names(missing)}) matches a micrograph "
                             f"given (e.g. {paths[0].name})")
        aligned.append(PickSet(s.name, table, s.threshold))
    for w in warnings:
        logger.warning("%s", w)

    pixel = _pixel_size(paths[0], settings)
    params = PreprocessParams(diameter_a=settings.diameter_a, pixel_size_a=settings.pixel_size_a)
    preps: dict[str, Preprocessed] = {}
    failures: list[tuple[str, str]] = []
    dog_tables = []
    message = "; ".join(warnings) or None
    stopped = yield from _each_preprocessed_reported(paths, params, cache, should_stop, failures, preps, message,
                                                      settings.dog and settings.diameter_a, dog_tables)
    if not preps:
        raise UsageError("no micrograph could be read: " + "; ".join(line for _, line in failures[:3]))
    if settings.dog:
        dog = CoordinateTable.concat(dog_tables)
        cut = dog_cut(dog.score, len(dog_tables), settings.expected_per_micrograph)
        aligned.append(PickSet(DOG_SET, dog, cut))
        logger.info("built-in DoG picker: %d candidates, threshold %.3g keeps %d", len(dog), cut,
                    int((dog.score >= cut).sum()))

    for s in aligned:
        if not len(s.kept()):
            warnings.append(f"set {s.name!r} has no picks above its threshold ({s.threshold:g}): it votes nowhere, "
                            f"so nothing is found by every set" if s.threshold is not None else
                            f"set {s.name!r} has no picks on these micrographs")
            logger.warning("%s", warnings[-1])
    done = [str(paths[[micrograph_key(p) for p in paths].index(k)]) for k in preps]
    radius_px = settings.merge_radius / pixel
    cons = merge_sets(aligned, radius_px, done)
    k = settings.min_votes or cons.n_sets
    counts = cons.counts(k)["total"]
    logger.info("consensus of %d set(s) on %d micrograph(s): OR %d, AND %d, %d-of-%d %d", cons.n_sets, len(done),
                counts["or"], counts["and"], k, cons.n_sets, counts[f"{k}-of-{cons.n_sets}"])
    if not settings.train and settings.rank is not None:
        # One particle, one pick, as after the network: unmerged centres of one particle fold.
        cons = cons.with_scores(cons.rank_scores(settings.rank or None)).fold_duplicates(settings.diameter_a / 2 / pixel)
        logger.info("OR scored by the mean rank in %s: %d pick(s) after folding duplicates",
                    ", ".join(settings.rank or cons.set_names), len(cons.table))
    if not settings.train or stopped:
        return ConsensusJobResult(cons, CoordinateTable.empty(), None, failures, unmatched, warnings, stopped)

    extra = extra_positives(cons, k, user_positives, radius_px)
    check_enough(cons, settings.min_positives, k, len(extra))
    if len(extra):
        logger.info("%d of your particle labels join the %d agreed picks as positives", len(extra),
                    int(cons.at_least(k).sum()))
    from picker_gui.core.consensus_net import ConsensusConfig, extract_crops, train_consensus

    rng = np.random.default_rng(settings.seed)
    box_px = settings.box / pixel  # original pixels
    shapes = {key: prep.original_shape for key, prep in preps.items()}
    neg = negatives(cons, shapes, box_px, rng, user_negatives)
    positive = cons.at_least(k)

    def crops(table: CoordinateTable) -> np.ndarray:
        out = []
        for key, rows in table.groupby_micrograph():
            prep = preps[key]
            x, y = prep.to_downsampled(rows.x, rows.y)
            out.append(extract_crops(prep.image, x, y, box_px / prep.scale[1], settings.input_px))
        return np.concatenate(out) if out else np.zeros((0, settings.input_px, settings.input_px), np.float32)

    rejected = CoordinateTable.empty()
    if settings.rank is not None:
        positive, low = rank_guided_examples(cons, positive, settings.rank or None, settings.rejected_fraction,
                                             settings.positive_rank_quantile)
        rejected = cons.table[low].replace(kind=np.full(len(low), NEGATIVE, dtype=object),
                                           source=np.full(len(low), "rejected", dtype=object))
        logger.info("ranked by %s: %d agreed picks are positives; the %d OR picks ranked lowest join NEG",
                    ", ".join(settings.rank or cons.set_names), int(positive.sum()), len(low))
        if int(positive.sum()) + len(extra) < settings.min_positives:
            raise UsageError(f"only {int(positive.sum())} agreed picks in the top {1 - settings.positive_rank_quantile:.0%} "
                             f"by mean rank{f' and {len(extra)} of your labels' if len(extra) else ''} to train the "
                             f"consensus network on (at least {settings.min_positives} are needed; OR has "
                             f"{len(cons.table)}): add micrographs, lower the sets' thresholds or ask for fewer votes")
    pos_table = CoordinateTable.concat([cons.table[positive], extra]) if len(extra) else cons.table[positive]
    if settings.off_centre_negatives:
        off = off_centre_negatives(pos_table, cons, shapes, settings.diameter_a / pixel, box_px, rng)
        logger.info("NEG: %d random spots, %d off-centre spots beside the positives", len(neg), len(off))
        neg = CoordinateTable.concat([neg, off])
    if len(rejected):
        neg = CoordinateTable.concat([neg, rejected])
    pos_crops = crops(pos_table)
    neg_crops = crops(neg)
    # Rank-guided: the picks the pickers rejected make a harder task than empty ice, and 5
    # passes ended every network before its own criteria (aspire-small: 448 minibatches, MCC
    # 0.43; 20 passes: converged after 850-1350, 0.47).
    epochs = {"max_epochs": RANK_GUIDED_MAX_EPOCHS} if settings.rank is not None else {}
    config = ConsensusConfig(**epochs, input_px=settings.input_px, ensemble=settings.ensemble, max_seconds=60 * settings.max_minutes,
                             seed=settings.seed, device=settings.device)
    gen = train_consensus(pos_crops, neg_crops, config, stop)
    steps = 0
    while True:
        try:
            report = next(gen)
        except StopIteration as end:
            model = end.value
            break
        steps += 1
        yield JobReport("consensus", steps, None, message=report.message, consensus=report)
    scores = np.zeros(len(cons.table))
    distinct, codes = cons.table._key_codes
    for i, key in enumerate(distinct):
        m = np.flatnonzero(codes == i)
        rows = cons.table[m]
        prep = preps[str(key)]
        x, y = prep.to_downsampled(rows.x, rows.y)
        scores[m] = model.score(extract_crops(prep.image, x, y, box_px / prep.scale[1], settings.input_px))
    # One particle, one pick: the network scores two pickers' unmerged centres of a particle
    # alike, so the lower-scored folds into the higher within the particle radius.
    scored = cons.with_scores(scores).fold_duplicates(settings.diameter_a / 2 / pixel)
    if len(scored.table) < len(cons.table):
        logger.info("%d of the %d OR picks lay within a particle radius of a higher-scored one: folded into it",
                    len(cons.table) - len(scored.table), len(cons.table))
    return ConsensusJobResult(scored, neg, model, failures, unmatched, warnings,
                              stopped or "cancelled" in model.stopped_by)
