"""Training and picking as whole jobs: what the command line, the window, the benchmarks and
the tests all run.

A job takes plain arguments (micrograph paths, coordinate tables, a :class:`TrainSettings`;
never an argparse namespace), is a generator of :class:`JobReport` (one per micrograph
preprocessed or picked and one per training step: plain values, safe to hand to a GUI
thread) and returns its result; :func:`run_job` drives one to its end. A
``threading.Event`` given as ``stop`` is checked before every micrograph and every training
step: the job then ends cleanly with what it has (the best model so far, the picks so far).

:func:`train_job` owns the contract of a saved model's metadata (:data:`MODEL_CONTRACT`):
the preprocessing that :func:`pick_job` must repeat on new micrographs (downsampling,
downsampled and original pixel size, normalisation) and the particle diameter, to which
:func:`~picker_gui.core.training.train` adds what it chose (objective, pi, radii, label
counts, steps) and :func:`~picker_gui.core.models.save_model` the architecture and the
:func:`~picker_gui.core.models.model_id`.

Warnings (labelled micrographs that were not given, doubtful sizes, a GPU that is not
there) are logged here and also put in a report's message, for a window to show; a
micrograph that fails is not logged but reported (``JobReport.error``) and collected in
the result's ``failures``, for the caller to list with the rest of the batch.

torch is imported on first use, not with this module: a window can build settings and
read reports before it loads torch.
"""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Sequence, TypeVar

from picker_gui.core.coords import NEGATIVE, CoordinateTable, micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.mrc_io import MicrographHeader, read_header, require_unique_micrographs
from picker_gui.core.preprocess import PreprocessParams, check_sizes, downsampled_shape

if TYPE_CHECKING:
    from picker_gui.core.cache import PreprocessCache
    from picker_gui.core.consensus_net import ConsensusReport
    from picker_gui.core.models import SavedModel
    from picker_gui.core.training import LabeledMicrograph, TrainConfig, TrainReport

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: Metadata entries :func:`train_job` sets on every model; picking needs them to preprocess
#: new micrographs the same way.
MODEL_CONTRACT = ("downsample", "downsampled_pixel_size_a", "normalization", "particle_diameter_a", "original_pixel_size_a")
#: How many failed micrographs an error message lists before "and N more".
_SHOW_FAILURES = 3


# -- reports, settings, results --------------------------------------------------------------
@dataclass(frozen=True)
class JobReport:
    """One piece of a job's progress: plain values, safe to hand to another thread.

    Attributes
    ----------
    stage
        ``"preprocess"``, ``"train"``, ``"pick"`` or ``"consensus"``.
    done, total
        Items finished in this stage (micrographs, or training steps) and how many there
        are when known (for training, the most steps the run may take).
    message
        A line for a status bar or a log: the warnings and choices of the job so far (also
        logged), the training start message, the micrograph just done.
    train
        Stage ``"train"``: the step's :class:`~picker_gui.core.training.TrainReport`.
    micrograph
        Stages ``"preprocess"`` and ``"pick"``: the key of the micrograph just finished
        (or failed).
    picks
        Stage ``"pick"``: its picks, every candidate ranked by score.
    error
        A micrograph that failed: one line naming it; the job goes on with the others.
    """

    stage: str
    done: int
    total: int | None
    message: str | None = None
    train: TrainReport | None = None
    micrograph: str | None = None
    picks: CoordinateTable | None = None
    error: str | None = None
    #: Stage ``"pick"`` with candidates: the least distance (original px) and the indices of
    #: the candidates kept apart at it (the picks), worked out on the job's thread so that a
    #: window need not.
    kept: tuple[float, np.ndarray] | None = None
    #: Stage ``"consensus"``: the minibatch's report of the consensus network.
    consensus: ConsensusReport | None = None


@dataclass(frozen=True)
class TrainSettings:
    """Every knob of a training run, in plain values, with defaults a user can leave.

    Sizes are in Å; ``radius_px`` (the label disc) in downsampled pixels, as
    ``--radius``. ``max_steps=None`` leaves the cap of
    :class:`~picker_gui.core.training.TrainConfig`; training stops earlier by itself when
    the validation AP has not improved for ``patience`` checks.
    """

    diameter_a: float
    expected_per_micrograph: float | None = None
    pi: float | None = None
    objective: str = "ge-binomial"
    downsample: float | None = None
    pixel_size_a: float | None = None
    architecture: str | None = None
    radius_px: float = 3.0
    autoencoder: float = 0.0
    max_steps: int | None = None
    max_minutes: float = 2.5
    patience: int | None = None
    device: str = "auto"
    seed: int = 0
    #: "general" (start from the shipped general model where it fits), "scratch", or None
    #: for the default of :class:`~picker_gui.core.training.TrainConfig`.
    start: str | None = None


@dataclass
class TrainJobResult:
    """What :func:`train_job` returns.

    Attributes
    ----------
    saved
        The model (on the CPU, in eval mode) with its metadata: what
        :func:`~picker_gui.core.models.save_model` writes and :func:`pick_job` uses.
        ``saved.metadata["steps"] == 0`` when the job was stopped before it trained: the
        starting model, which a caller would not save.
    failures
        ``(micrograph path, one line naming it and what is wrong)`` for every labelled
        micrograph that could not be used.
    stopped_by
        ``"converged"``, ``"max_steps"``, ``"max_seconds"`` or ``"cancelled"``.
    warnings
        Everything the job warned about (also logged, and in the reports' messages).
    """

    saved: SavedModel
    failures: list[tuple[str, str]]
    stopped_by: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class PickJobResult:
    """What :func:`pick_job` returns.

    Attributes
    ----------
    picks
        Every micrograph's picks, in the order they were done.
    failures
        ``(micrograph path, one line naming it and what is wrong)``.
    done
        The keys of the micrographs picked, in order.
    stopped
        The job was stopped before it had done every micrograph.
    device
        The device the picking ran on (``"cpu"`` when a GPU asked for was not there).
    """

    picks: CoordinateTable
    failures: list[tuple[str, str]]
    done: list[str]
    stopped: bool
    device: str = "cpu"


def run_job(gen: Generator[Any, None, R], on_report: Callable[[Any], None] | None = None) -> R:
    """Drive a job generator (or :func:`~picker_gui.core.training.train`) to its end, passing
    each report to ``on_report``; return the job's result."""
    try:
        while True:
            try:
                report = next(gen)
            except StopIteration as end:
                return end.value
            if on_report is not None:
                on_report(report)
    finally:
        gen.close()  # when on_report raised: the job's own clean-up runs now, not at garbage collection


def _stop_checker(stop: threading.Event | None) -> Callable[[], bool]:
    return stop.is_set if stop is not None else (lambda: False)


def _failure_line(path: Path, exc: Exception) -> str:
    """One line naming the micrograph and what is wrong with it."""
    text = str(exc)
    return text if str(path) in text else f"{path}: {text}"


# -- the first header: sizes that cannot work, refused before any work ------------------------
@dataclass(frozen=True)
class FirstMicrograph:
    """What the first readable header says: the header, the downsampling factor it gets
    (None when there is no pixel size to size from) and warnings about doubtful sizes."""

    header: MicrographHeader
    factor: float | None
    warnings: list[str]


def check_first_micrograph(
    paths: Sequence[str | PathLike],
    params: PreprocessParams,
    *,
    pixel_size_a: float | None,
    diameter_a: float | None,
    option: str,
    need_pixel_size: bool = False,
) -> FirstMicrograph | None:
    """Refuse a downsampling, diameter or pixel size that cannot work, on the first
    micrograph whose header reads (a bad file is reported later, with the batch).

    Parameters
    ----------
    pixel_size_a
        The user's pixel size (overrides the headers).
    option
        The option the downsampling factor comes from, for the messages.
    need_pixel_size
        Refuse a header with no pixel size when the user gave none (training sizes the
        particle in pixels from it).

    Returns
    -------
    FirstMicrograph or None
        None when no header could be read (then every micrograph will fail, each with its
        own reason). The warnings are not logged: the caller shows them.

    Raises
    ------
    UsageError
        From :func:`~picker_gui.core.preprocess.check_sizes`; ``--pixel-size`` for a missing
        pixel size when it is needed.
    """
    for raw in paths:
        path = Path(raw)
        try:
            header = read_header(path, pixel_size_a)
        except MicrographError:
            continue
        if header.pixel_size_a is None and need_pixel_size:
            raise UsageError(f"{path}: no pixel size in the header; give the pixel size in Å", option="--pixel-size")
        try:
            factor, _ = params.factor_for(header.pixel_size_a)
        except ValueError:  # no pixel size to size from: each micrograph reports it
            factor = None
        warnings = check_sizes(header.shape, header.pixel_size_a, diameter_a, factor, downsample_option=option)
        return FirstMicrograph(header, factor, warnings)
    return None


# -- training --------------------------------------------------------------------------------
def _check_settings(settings: TrainSettings) -> None:
    """What :func:`~picker_gui.core.training.check_config` cannot see: the settings a run
    is built from (named by the command line's options)."""
    from picker_gui.core.models import ARCHITECTURES
    from picker_gui.core.objectives import OBJECTIVES

    if settings.objective.lower().replace("_", "-") not in OBJECTIVES:
        raise UsageError(f"unknown objective {settings.objective!r}; expected one of {', '.join(OBJECTIVES)}",
                         option="--objective")
    if settings.architecture is not None and settings.architecture not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {settings.architecture!r}; expected one of {', '.join(sorted(ARCHITECTURES))}",
                         option="--model")
    if settings.max_steps is not None and settings.max_steps < 1:
        raise UsageError(f"training needs at least one step, got {settings.max_steps}", option="--epochs")
    if not settings.max_minutes > 0:  # also refuses NaN
        raise UsageError(f"the time cap must be positive, got {settings.max_minutes:g} minutes", option="--max-minutes")
    if settings.patience is not None and settings.patience < 1:
        raise UsageError(f"must be at least 1 check, got {settings.patience}", option="--patience")


def _preprocess_params(settings: TrainSettings, init: SavedModel | None) -> tuple[PreprocessParams, list[str]]:
    """How the labelled micrographs are preprocessed, and what was chosen against the
    settings when fine-tuning (the model's pixel size and normalisation win)."""
    if init is None:
        return PreprocessParams(downsample=settings.downsample, diameter_a=settings.diameter_a,
                                pixel_size_a=settings.pixel_size_a), []
    meta = init.metadata
    normalization = meta.get("normalization", "gmm")
    target = meta.get("downsampled_pixel_size_a")
    if target:
        # The same pixel size after downsampling, whatever the new micrographs' pixel size.
        params = PreprocessParams(target_pixel_size_a=target, normalization=normalization, pixel_size_a=settings.pixel_size_a)
        how = f"to {target:.4g} Å/px"
    elif meta.get("downsample"):
        params = PreprocessParams(downsample=meta["downsample"], normalization=normalization, pixel_size_a=settings.pixel_size_a)
        how = f"x{meta['downsample']:g}"
    else:
        raise UsageError("the model to fine-tune says nothing of its downsampling (no 'downsample' in its metadata); "
                         "train a new model instead")
    note = f"fine-tuning: micrographs downsampled {how} and normalised ({normalization}) as the model was trained"
    if settings.downsample is not None:
        note += f"; the downsampling asked for (x{settings.downsample:g}) is not used"
    return params, [note]


def train_config(settings: TrainSettings, diameter_px: float, init: SavedModel | None = None) -> TrainConfig:
    """The :class:`~picker_gui.core.training.TrainConfig` of a run, for a particle of
    ``diameter_px`` downsampled pixels (fine-tuning ``init``: its architecture and width).
    For a caller that trains on micrographs it preprocessed itself (a benchmark that feeds
    two pickers the same pixels) and wants the settings a user's run would have."""
    from picker_gui.core.training import TrainConfig

    architecture, width = settings.architecture, TrainConfig.width
    if init is not None:  # fine-tuning keeps the model's shape: its weights must fit
        architecture, width = init.model.architecture, init.model.width
    return TrainConfig(
        particle_diameter_px=diameter_px,
        objective=settings.objective,
        pi=settings.pi,
        expected_per_micrograph=settings.expected_per_micrograph,
        radius_px=settings.radius_px,
        architecture=architecture,
        width=width,
        autoencoder=settings.autoencoder,
        max_steps=None if settings.max_steps is None else int(settings.max_steps),
        max_seconds=settings.max_minutes * 60,
        patience=settings.patience,
        seed=settings.seed,
        device=settings.device,
        start=TrainConfig.start if settings.start is None else settings.start,
    )


def _matched(labels: CoordinateTable, micrographs: Sequence[str | PathLike]) -> CoordinateTable:
    """Labels renamed to the micrographs their names match as the consensus sets' do (folder,
    extension and suffixes such as _DW or _autopick do not matter); the rest keep their names."""
    if not len(labels):
        return labels
    from picker_gui.core.consensus import match_names

    mapping, _ = match_names(labels.micrograph.tolist(), [str(p) for p in micrographs])
    return labels.named_by_key(mapping)


def _labelled(micrographs: Sequence[str | PathLike], positives: CoordinateTable,
              negatives: CoordinateTable) -> tuple[list[Path], list[str]]:
    """The given micrographs that carry a label (in the order given), and the labelled keys
    that name none of them."""
    labelled = set(positives.keys) | set(negatives.keys)
    paths = [Path(p) for p in micrographs if micrograph_key(p) in labelled]
    if not paths:
        given = sorted({micrograph_key(p) for p in micrographs})
        raise UsageError(
            f"no label names one of the given micrographs (names match by file name without extension or suffixes "
            f"such as _DW or _autopick; labels name "
            f"{listed_names(sorted(labelled))}, micrographs are {listed_names(given) if given else 'none'})",
            option="--labels",
        )
    paths = require_unique_micrographs(paths)
    missing = sorted(labelled - {micrograph_key(p) for p in paths})
    return paths, missing


def listed_names(names: Sequence[str], show: int = 5) -> str:
    """The first ``show`` names, comma-separated, and "..." when there are more (for messages)."""
    return ", ".join(names[:show]) + (", ..." if len(names) > show else "")


def _sizes(items: Sequence[LabeledMicrograph], first: FirstMicrograph, params: PreprocessParams) -> tuple[float, float, float, str]:
    """(original pixel size, downsampling factor, downsampled pixel size, why that factor):
    from the first preprocessed micrograph, or from the first header before any is."""
    if items:
        prep = items[0].prep
        original = prep.pixel_size_a / prep.scale[1]
        factor, reason = params.factor_for(original)
        return original, factor, prep.pixel_size_a, reason
    header = first.header
    original = header.pixel_size_a
    factor, reason = params.factor_for(original)
    cols = downsampled_shape(header.shape, factor)[1]
    return original, factor, original * header.shape[1] / cols, reason


def train_job(
    micrographs: Sequence[str | PathLike],
    positives: CoordinateTable,
    negatives: CoordinateTable | None,
    settings: TrainSettings,
    *,
    stop: threading.Event | None = None,
    cache: PreprocessCache | None = None,
    init: SavedModel | None = None,
    on_validation: Callable[[TrainReport, Any], None] | None = None,
    on_improved: Callable[[SavedModel], None] | None = None,
) -> Generator[JobReport, None, TrainJobResult]:
    """Train a picker on the labelled micrographs: match labels to micrographs, check sizes,
    preprocess, train; a report per micrograph and per step.

    Parameters
    ----------
    micrographs
        Candidate micrographs; those that carry a label (by micrograph key) are used, in
        the order given.
    positives, negatives
        Particle centres and things that are not particles, in original-micrograph pixels.
    settings
        Every knob of the run.
    stop
        Checked before every micrograph and every step. Set during training, the best
        model so far comes back (``stopped_by="cancelled"``); set before the first step,
        the starting model, with ``metadata["steps"] == 0``.
    cache
        Preprocessed micrographs are read from and written to it when given.
    init
        Fine-tuning: start from this model's weights, with its architecture and width, on
        micrographs preprocessed to the pixel size and normalisation it was trained at.
        An architecture in ``settings`` that differs is not used (a message says so).
    on_validation
        Passed to :func:`~picker_gui.core.training.train`.
    on_improved
        Called on the job's thread after every validation that improved the best model,
        with that model (in eval mode, on its device) and the metadata picking needs: a
        window scores the micrograph on screen with it, so that picks appear while the
        picker learns. Its time is not training time. It must not keep or change the model.

    Yields
    ------
    JobReport
        Stage ``"preprocess"``: one with ``done=0`` whose message holds the warnings so
        far, then one per micrograph (``error`` set for one that failed). Stage
        ``"train"``: one per step, with the step's report; the first one's message says
        what the run chose.

    Returns
    -------
    TrainJobResult

    Raises
    ------
    UsageError
        Before any preprocessing: labels that name none of the micrographs (``--labels``),
        two labelled micrographs with one key, settings and sizes that cannot work (from
        the first header). After it: ``"no labelled micrograph could be read"`` with the
        first failures, and everything :func:`~picker_gui.core.training.train` refuses
        before its first step.
    """
    from picker_gui.core.models import SavedModel, model_id
    from picker_gui.core.preprocess import preprocess_file
    from picker_gui.core.training import LabeledMicrograph, check_config, train, untrained_result

    should_stop = _stop_checker(stop)
    _check_settings(settings)
    micrographs = list(micrographs)
    negatives = CoordinateTable.empty() if negatives is None else negatives
    choices: list[str] = []  # logged at INFO; in the first training report's message
    marked = positives.kind == NEGATIVE
    if marked.any():
        # A labels file of the window (or a csv) holds both kinds: never train a negative as a particle.
        negatives = CoordinateTable.concat([negatives, positives[marked]])
        positives = positives[~marked]
        choices.append(f"{int(marked.sum())} label(s) of kind 'negative' among the particle labels used as negatives")
    negatives = negatives.with_kind(NEGATIVE)
    positives, negatives = _matched(positives, micrographs), _matched(negatives, micrographs)
    paths, missing = _labelled(micrographs, positives, negatives)
    warnings: list[str] = []
    if missing:
        warnings.append(f"{len(missing)} labelled micrograph(s) not among the given micrographs, ignored: {listed_names(missing)}")
    params, notes = _preprocess_params(settings, init)
    choices += notes
    if init is not None and settings.architecture not in (None, init.model.architecture):
        choices.append(f"fine-tuning keeps the model's architecture {init.model.architecture} "
                       f"(width {init.model.width}), not {settings.architecture}")
    option = "--downsample" if settings.downsample and init is None else "--diameter-a"
    first = check_first_micrograph(paths, params, pixel_size_a=settings.pixel_size_a, diameter_a=settings.diameter_a,
                                   option=option, need_pixel_size=True)
    if first is not None:
        warnings += first.warnings
    if first is not None and first.factor is not None:
        # Sizes from the header: settings that cannot work are refused before any preprocessing
        # (train() checks again, exactly, on the preprocessed micrographs).
        check_config(train_config(settings, settings.diameter_a / (first.header.pixel_size_a * first.factor), init))
    for text in warnings:
        logger.warning("%s", text)
    for text in choices:
        logger.info("%s", text)

    n = len(paths)
    yield JobReport("preprocess", 0, n, message="; ".join([*warnings, f"preprocessing {n} labelled micrograph(s)"]))
    items: list[LabeledMicrograph] = []
    failures: list[tuple[str, str]] = []
    stopped = False
    for i, path in enumerate(paths):
        # With no readable header every micrograph fails at once, and there is no size to
        # build a starting model from: then the stop waits for the (quick) end of the batch.
        if first is not None and should_stop():
            stopped = True
            break
        key = micrograph_key(path)
        try:
            prep = preprocess_file(path, params, cache)
        except (MicrographError, ValueError) as exc:  # ValueError: no pixel size to size this one from
            line = _failure_line(path, exc)
            failures.append((str(path), line))
            logger.debug("%s", line)
            yield JobReport("preprocess", i + 1, n, message=line, micrograph=key, error=line)
            continue
        items.append(LabeledMicrograph(prep, positives.for_micrograph(key), negatives.for_micrograph(key)))
        logger.debug("preprocessed %s (%d of %d)", path.name, i + 1, n)
        yield JobReport("preprocess", i + 1, n, message=f"preprocessed {path.name} ({i + 1} of {n})", micrograph=key)

    if not items and not stopped:
        listed = "; ".join(line for _, line in failures[:_SHOW_FAILURES])
        more = f"; and {len(failures) - _SHOW_FAILURES} more" if len(failures) > _SHOW_FAILURES else ""
        raise UsageError(f"no labelled micrograph could be read: {listed}{more}")
    if items and items[0].prep.pixel_size_a is None:
        raise UsageError(f"{items[0].prep.path}: no pixel size in the header; give the pixel size in Å", option="--pixel-size")
    original, factor, pixel, reason = _sizes(items, first, params)
    logger.info("%s", reason)
    choices.insert(0, reason)
    config = train_config(settings, settings.diameter_a / pixel, init)
    # The contract of a saved model: what picking needs to preprocess new micrographs the same way.
    metadata: dict[str, Any] = {
        "downsample": factor,
        "downsampled_pixel_size_a": pixel,
        "normalization": params.normalization,
        "particle_diameter_a": settings.diameter_a,
        "original_pixel_size_a": original,
    }
    init_state = None
    if init is not None:
        metadata["fine_tuned_from"] = model_id(init)
        init_state = init.model.state_dict()

    if stopped or should_stop():
        logger.debug("stopped before the first training step")
        result = untrained_result(items, config, init_state, metadata)
        return TrainJobResult(_identified(result), failures, result.stopped_by, warnings)

    def validated(report: TrainReport, model) -> None:
        if on_validation is not None:
            on_validation(report, model)
        if on_improved is not None and report.val_ap is not None and report.val_ap == report.best_val_ap:
            on_improved(SavedModel(model, dict(metadata, nms_radius_px=config.nms_radius_px,
                                               particle_diameter_px=config.particle_diameter_px)))

    hook = validated if (on_validation is not None or on_improved is not None) else None
    gen = train(items, config, stop=stop, metadata=metadata, on_validation=hook, init_state=init_state)
    try:
        pending: list[str] | None = choices
        while True:
            try:
                report = next(gen)
            except StopIteration as end:
                result = end.value
                break
            message = report.message
            if pending is not None:
                message = "; ".join([*pending, *([message] if message else [])])
                pending = None
            yield JobReport("train", report.step, report.total_steps, message=message, train=report)
    finally:
        gen.close()
    return TrainJobResult(_identified(result), failures, result.stopped_by, warnings + result.warnings)


def _identified(result) -> "SavedModel":
    """The trained model with ``metadata["model_id"]``, the id picks made with it carry (the
    same one :func:`~picker_gui.core.models.save_model` stores)."""
    from picker_gui.core.models import SavedModel, model_id

    saved = SavedModel(result.model, result.metadata)
    saved.metadata["model_id"] = model_id(saved)
    return saved


# -- picking ---------------------------------------------------------------------------------
def pick_job(
    saved: SavedModel,
    micrographs: Sequence[str | PathLike],
    *,
    threshold: float = -math.inf,
    radius_px: float | None = None,
    pixel_size_a: float | None = None,
    device: str = "auto",
    stop: threading.Event | None = None,
    cache: PreprocessCache | None = None,
    candidates: bool = False,
) -> Generator[JobReport, None, PickJobResult]:
    """Pick micrographs in the order given, each preprocessed as the model was trained.

    Parameters
    ----------
    saved
        The model; it is copied to the device, never moved (a window may keep using it).
    micrographs
        In the order to pick them (a window passes the current micrograph first).
    threshold
        Keep picks scoring at least this (default: every candidate, ranked).
    radius_px
        Least distance between two picks, in *original-micrograph* pixels (default: the
        particle radius the model was trained with).
    pixel_size_a
        Overrides the headers (see :func:`~picker_gui.core.inference.pick_file`).
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a GPU that is not there falls
        back to the CPU with a warning, in the first report's message and the log.
    stop
        Checked before every micrograph: the picks so far come back, ``stopped=True``.
    candidates
        Report the candidates a window keeps (see :func:`~picker_gui.core.inference.pick_file`)
        instead of the picks; kept apart at ``radius_px`` they are exactly the picks.

    Yields
    ------
    JobReport
        Stage ``"pick"``, one per micrograph: its key and picks, or ``error`` for one that
        failed (the others go on).

    Raises
    ------
    UsageError
        Before any picking: two micrographs with one key, a device name that is no device,
        a radius that is not positive.
    """
    import copy

    from picker_gui.core.inference import pick_file
    from picker_gui.core.training import select_device

    should_stop = _stop_checker(stop)
    paths = require_unique_micrographs(micrographs)
    if radius_px is not None and not (radius_px > 0 and math.isfinite(radius_px)):
        raise UsageError(f"must be a positive number of pixels, got {radius_px:g}", option="--radius-px")
    dev, warning = select_device(device)
    notes = []
    if warning:
        logger.warning("%s", warning)
        notes.append(warning)
    model = copy.deepcopy(saved.model).to(dev).eval()
    n = len(paths)
    tables: list[CoordinateTable] = []
    failures: list[tuple[str, str]] = []
    done: list[str] = []
    stopped = False
    for i, path in enumerate(paths):
        if should_stop():
            stopped = True
            break
        key = micrograph_key(path)
        try:
            picks, assumed = pick_file(model, saved.metadata, path, device=dev, threshold=threshold, radius_px=radius_px,
                                       pixel_size_a=pixel_size_a, cache=cache, candidates=candidates)
        except MicrographError as exc:
            line = _failure_line(path, exc)
            failures.append((str(path), line))
            yield JobReport("pick", i + 1, n, message="; ".join([*notes, line]), micrograph=key, error=line)
            notes = []
            continue
        tables.append(picks)
        done.append(key)
        logger.debug("%s: %d picks", path.name, len(picks))
        kept = None
        if candidates:
            from picker_gui.core.inference import default_min_distance_px
            from picker_gui.core.picks import keep_apart

            distance = float(radius_px) if radius_px is not None else default_min_distance_px(saved.metadata)
            kept = (distance, keep_apart(picks.x, picks.y, distance))
        yield JobReport("pick", i + 1, n, message="; ".join([*notes, *assumed, f"{path.name}: {len(picks)} picks"]),
                        micrograph=key, picks=picks, kept=kept)
        notes = []
    if stopped:
        logger.info("picking stopped after %d of %d micrograph(s)", len(done) + len(failures), n)
    picks = CoordinateTable.concat(tables) if tables else CoordinateTable.empty()
    return PickJobResult(picks, failures, done, stopped, str(dev))
