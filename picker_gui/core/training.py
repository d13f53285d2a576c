"""Training the picker from sparse labels, as a generator of progress reports.

``train(...)`` yields a :class:`TrainReport` after every step (cheap numbers only, safe to
send to a GUI thread) and returns a :class:`TrainResult` with the best model by validation
average precision. A caller stops it by setting ``stop`` (checked between steps) or by
closing the generator; either way the best model so far is kept. ``init_state`` starts
from a trained model's weights (fine-tuning). It trains on micrographs already
preprocessed and labelled; :func:`picker_gui.core.jobs.train_job` is the whole job (labels
matched to files, sizes checked, preprocessing, the saved model's metadata) that the
command line and the window run.

How a minibatch is made (the fully convolutional counterpart of Topaz's balanced crops):

- half of the tiles are centred near a labelled particle and contribute only their
  labelled pixels (positives, negatives): these carry the scarce positive signal;
- the other tiles are drawn uniformly over the micrographs and contribute every pixel;
  only these feed the unlabelled part of the objective, so that the expected positive rate
  among them is the ``pi`` of the whole data, as the GE criterion assumes;
- every tile gets a random flip and 90-degree rotation.

Labels are pixels within ``radius_px`` (downsampled) of a labelled centre; labelled
negatives mark a disc of half the particle radius. Validation holds out a fifth of the
positive labels of every labelled micrograph (every micrograph is trained on: with 5
labelled micrographs, holding out whole ones would train on 3) and measures the average
precision of the extracted picks against the held-out labels, picks on training labels
left out; with sparse labels it is a fraction of the true AP, and on dense data with few
labels it is too noisy to stop on or to pick a checkpoint by, so by default the run uses
its budget and keeps the final model (``patience`` and ``selection="near-best"`` turn
those on). Validation that only informs is then rationed to a tenth of the training time
(``validation_share``): scoring whole micrographs every 40 steps took most of a CPU's
budget.

Defaults come from ablations on four datasets (benchmarks/README.md): start from the
shipped general model where it fits (:mod:`picker_gui.core.general`; its output shifted to
the run's pi first) and train 600 steps, since from there the test AP peaks within a few
hundred steps on sparse labels and then falls; from fresh weights, a pooled model of width
16 (several times the steps of a full-resolution one in the same time) for up to 3000
steps; a learning rate that decays along a cosine over the budget (steps or 2.5 minutes,
whichever comes first); picks averaged over the eight views of each micrograph.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from picker_gui.core.coords import CoordinateTable, micrograph_key
from picker_gui.core.errors import UsageError
from picker_gui.core.inference import extract_picks, score_map
from picker_gui.core.metrics import average_precision, match_picks
from picker_gui.core.models import PickerNet, choose_architecture
from picker_gui.core.objectives import IGNORE, NEGATIVE, POSITIVE, UNLABELED, disc_pixels, make_objective, pi_from_expected
from picker_gui.core.preprocess import HARD_MIN_PARTICLE_PX, Preprocessed

logger = logging.getLogger(__name__)


# -- device ------------------------------------------------------------------------------
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def check_device_name(requested: str | None) -> str:
    """The device name in lower case, or :class:`UsageError` (``--device``) for one that
    names no device picker-gui can use; nothing is initialised."""
    req = (requested or "auto").strip().lower()
    if req in ("auto", "cpu", "cuda", "mps"):
        return req
    if req.startswith("cuda:") and req[5:].isdigit():
        return req
    raise UsageError(f"unknown device {requested!r}; expected {DEVICE_CHOICES}", option="--device")


def select_device(requested: str = "auto") -> tuple[torch.device, str | None]:
    """CUDA, else Apple MPS, else CPU; an asked-for GPU that fails falls back to the CPU.

    Returns the device and a warning to show the user (None when all went as asked). The
    wording is neutral ("using the CPU"): training and picking both call this.

    Raises
    ------
    UsageError
        For a name that is no device (option ``--device``).
    """
    req = check_device_name(requested)
    if req == "cpu":
        return torch.device("cpu"), None
    candidates = []
    if req in ("auto", "cuda") or req.startswith("cuda:"):
        if torch.cuda.is_available():
            candidates.append(torch.device(req if req.startswith("cuda") else "cuda"))
        elif req != "auto":
            return torch.device("cpu"), f"{requested} asked for but no CUDA device is available; using the CPU"
    if req in ("auto", "mps"):
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            candidates.append(torch.device("mps"))
        elif req == "mps":
            return torch.device("cpu"), "MPS asked for but not available; using the CPU"
    for dev in candidates:
        try:  # a broken driver shows up on the first real kernel, not in is_available()
            (torch.ones(8, device=dev) * 2).sum().item()
            return dev, None
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            return torch.device("cpu"), f"{dev} failed ({type(exc).__name__}: {exc}); using the CPU"
    return torch.device("cpu"), None


# -- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, with defaults a user can leave alone."""

    particle_diameter_px: float  # in downsampled pixels
    objective: str = "ge-binomial"
    pi: float | None = None
    expected_per_micrograph: float | None = None
    radius_px: float = 3.0
    architecture: str | None = None  # None: chosen from the diameter
    #: Choose from the pooled architectures (a strided first layer, a half-resolution
    #: trunk): several times the steps of the full-resolution trunk in the same time, which
    #: is what sparse labels and a few minutes need (benchmarks/README.md, ablations).
    pooled: bool = True
    width: int = 16
    #: "general": start from the shipped general model (:mod:`picker_gui.core.general`)
    #: when it fits (pooled regime, same width, no architecture asked for); "scratch":
    #: fresh weights. A run that fine-tunes a given model (``init_state``) ignores this.
    start: str = "general"
    #: Another general model file than the shipped one (tests, the build script).
    general_model_path: str | None = None
    slack: float = 1.0
    negative_weight: float = 1.0
    tile: int = 64
    batch_tiles: int = 16
    positive_fraction: float = 0.5  # of the tiles, centred near a labelled particle
    learning_rate: float = 1e-3
    #: "constant", or "cosine": the rate decays to a tenth along a cosine over the run's
    #: budget (the time cap, or max_steps when that comes first), so that a run stopped by
    #: its budget ends on small steps.
    lr_schedule: str = "cosine"
    weight_decay: float = 1e-5
    #: Weight of a penalty on the squared distance of the weights from where the run
    #: started (L2-SP: fine-tuning that stays near the general model's features); only for
    #: a run that starts from given or general weights. 0: off.
    anchor: float = 0.0
    #: Validate and keep an exponential moving average of the weights (this decay per
    #: step; None: the weights as they are). It averages out the noise of small,
    #: sparsely labelled minibatches.
    ema: float | None = None
    #: At most this many steps; None: :data:`GENERAL_STEPS` when the run starts from the
    #: general model, :data:`SCRATCH_STEPS` from fresh weights (see :func:`planned_steps`).
    max_steps: int | None = None
    max_seconds: float = 150.0
    eval_every: int = 40
    #: When validation only informs (``selection="last"``, no ``patience``), it may take
    #: at most this share of the training time: a check falling due every ``eval_every``
    #: steps is postponed while validation so far has taken more. Scoring whole
    #: micrographs every 40 steps took most of a CPU's budget, and on sparse labels the
    #: number of steps decides most (benchmarks/README.md). None: every check runs.
    validation_share: float | None = 0.1
    #: Stop after this many validation checks clearly below the best; None: never (the run
    #: uses its budget, ending on the decayed learning rate). Off by default: with sparse
    #: labels the validation AP is too noisy to stop on (benchmarks/README.md).
    patience: int | None = None
    #: "last": keep the final model (the cosine schedule ends on small steps); "near-best":
    #: the latest within the selection tolerance of the best validation AP.
    selection: str = "last"
    #: Picks with this model average the scores of the eight rotations and flips of each
    #: micrograph (8 x the scoring time, a fraction of picking's, which preprocessing
    #: dominates): +0.005-0.05 test AP in every benchmark run (benchmarks/README.md).
    #: Stored in the model (``metadata["pick_augment"]``), so every way of picking with it
    #: (window, command line, batch) does the same.
    pick_augment: bool = True
    autoencoder: float = 0.0  # weight of the reconstruction loss; Topaz finds it helps below ~250 labels
    validation_fraction: float = 0.2
    #: "labels": hold out a fraction of the positive labels of every labelled micrograph and
    #: train on all micrographs; "micrographs": hold out whole micrographs.
    validation: str = "labels"
    seed: int = 0
    device: str = "auto"

    @property
    def nms_radius_px(self) -> float:
        return self.particle_diameter_px / 2.0


@dataclass(frozen=True)
class TrainReport:
    """One step's progress: plain numbers, safe to hand to another thread."""

    step: int
    epoch: int
    loss: float
    ge_penalty: float | None
    val_ap: float | None  # set on validation steps
    best_val_ap: float | None
    elapsed_s: float
    device: str
    message: str | None = None
    #: The run's step budget (a progress bar's total; the run may stop before it).
    total_steps: int | None = None


@dataclass
class TrainResult:
    model: PickerNet  # on the CPU, in eval mode, with the best weights
    metadata: dict[str, Any]
    history: list[TrainReport] = field(default_factory=list)
    stopped_by: str = ""  # "converged", "max_steps", "max_seconds", "cancelled"
    warnings: list[str] = field(default_factory=list)  # also logged; for a window to show


@dataclass(frozen=True)
class LabeledMicrograph:
    """A preprocessed micrograph and its labels in original-micrograph pixels."""

    prep: Preprocessed
    positives: CoordinateTable
    negatives: CoordinateTable = field(default_factory=CoordinateTable.empty)

    @property
    def name(self) -> str:
        return self.prep.path.name


def _disc(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius


def _paint(label_map: np.ndarray, xs: np.ndarray, ys: np.ndarray, radius: float, value: int) -> None:
    disc = _disc(radius)
    r = disc.shape[0] // 2
    h, w = label_map.shape
    for x, y in zip(np.rint(xs).astype(int), np.rint(ys).astype(int)):
        y0, y1, x0, x1 = y - r, y + r + 1, x - r, x + r + 1
        cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
        if cy0 >= cy1 or cx0 >= cx1:
            continue
        sub = disc[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        label_map[cy0:cy1, cx0:cx1][sub] = value


def label_map(item: LabeledMicrograph, radius_px: float, negative_radius_px: float) -> np.ndarray:
    """Per-pixel labels on the downsampled grid of one micrograph."""
    labels = np.full(item.prep.image.shape, UNLABELED, dtype=np.int8)
    nx, ny = item.prep.to_downsampled(item.negatives.x, item.negatives.y)
    _paint(labels, nx, ny, negative_radius_px, NEGATIVE)
    px, py = item.prep.to_downsampled(item.positives.x, item.positives.y)
    _paint(labels, px, py, radius_px, POSITIVE)  # a positive wins over a nearby negative
    return labels


def split_validation(items: Sequence[LabeledMicrograph], fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Hold out whole micrographs with about ``fraction`` of the positive labels."""
    with_pos = [i for i, it in enumerate(items) if len(it.positives)]
    if len(with_pos) < 2 or fraction <= 0:
        return list(range(len(items))), []
    order = rng.permutation(with_pos)
    total = sum(len(items[i].positives) for i in with_pos)
    held, count = [], 0
    for i in order:
        if count >= fraction * total or len(held) >= len(with_pos) - 1:
            break
        held.append(int(i))
        count += len(items[i].positives)
    train = [i for i in range(len(items)) if i not in held]
    return train, sorted(held)


@dataclass(frozen=True)
class ValidationSet:
    """What a model is validated on: per micrograph, the held-out positives (the truth) and
    the training positives (picks on them are neither right nor wrong, and are left out)."""

    items: list[LabeledMicrograph]
    held: list[CoordinateTable]
    known: list[CoordinateTable]
    description: str
    held_out: bool = True  # False: validated on the training labels

    @property
    def n_held(self) -> int:
        return int(sum(len(h) for h in self.held))


#: A pooled model sees the particle at half resolution: below this diameter (downsampled
#: pixels) it would be a few pixels across there, and the full-resolution models learn faster.
POOLED_MIN_DIAMETER_PX = 16.0
#: The model kept is the latest whose validation AP is within a tolerance of the best one:
#: with sparse held-out labels the AP is noisy, and a later model has trained longer. The
#: tolerance is the relative standard error of a mean over the held-out labels,
#: 1 / sqrt(n), kept between these bounds (40 held-out labels: 16 %).
SELECTION_TOLERANCE = (0.1, 0.3)


def selection_tolerance(n_held: int) -> float:
    """How far below the best validation AP a later model may be and still be kept."""
    lo, hi = SELECTION_TOLERANCE
    return float(min(hi, max(lo, 1.0 / math.sqrt(max(n_held, 1)))))

#: Fewer held-out labels than this and validation measures noise: validate on the training
#: labels instead (and say so).
MIN_HELD_OUT_LABELS = 6
#: Validation scores whole micrographs; beyond this many it would cost more than training.
MAX_VALIDATION_MICROGRAPHS = 8


def split_labels(items: Sequence[LabeledMicrograph], fraction: float,
                 rng: np.random.Generator) -> tuple[list[LabeledMicrograph], ValidationSet]:
    """Hold out about ``fraction`` of the positive labels of the labelled micrographs.

    Every micrograph stays in training with the rest of its labels; the held-out particles
    are unlabelled there, as any unlabelled particle is, so the model is judged on how it
    ranks particles it was never told about, with every micrograph's labels used. With few
    labels this beats holding out whole micrographs (5 labelled micrographs would train on
    3). Labels are held out on at most :data:`MAX_VALIDATION_MICROGRAPHS` micrographs (the
    most labelled), since validation scores each of them; with fewer than
    :data:`MIN_HELD_OUT_LABELS` held-out labels in all, nothing is held out and validation
    uses the training labels.
    """
    held_idx: dict[int, np.ndarray] = {}
    most = sorted(range(len(items)), key=lambda i: -len(items[i].positives))[:MAX_VALIDATION_MICROGRAPHS]
    for i in sorted(most):
        it = items[i]
        n = len(it.positives)
        k = int(round(fraction * n)) if n >= 2 else 0
        k = min(k, n - 1)
        if k > 0:
            held_idx[i] = rng.choice(n, k, replace=False)
    if fraction <= 0 or sum(len(v) for v in held_idx.values()) < MIN_HELD_OUT_LABELS:
        pos = [i for i, it in enumerate(items) if len(it.positives)][:MAX_VALIDATION_MICROGRAPHS]
        return list(items), ValidationSet([items[i] for i in pos], [items[i].positives for i in pos],
                                          [CoordinateTable.empty() for _ in pos],
                                          "validation on the training labels (too few labels to hold any out)", False)
    train_items = []
    for i, it in enumerate(items):
        if i in held_idx:
            keep = np.ones(len(it.positives), bool)
            keep[held_idx[i]] = False
            train_items.append(LabeledMicrograph(it.prep, it.positives[keep], it.negatives))
        else:
            train_items.append(it)
    order = sorted(held_idx)
    mask = {i: np.isin(np.arange(len(items[i].positives)), held_idx[i]) for i in order}
    n_all = sum(len(v) for v in held_idx.values())
    return train_items, ValidationSet(
        [items[i] for i in order], [items[i].positives[mask[i]] for i in order],
        [items[i].positives[~mask[i]] for i in order],
        f"{n_all} of the positive labels held out for validation (on {len(held_idx)} micrograph(s), all of them "
        f"trained on)")


def micrograph_validation(items: Sequence[LabeledMicrograph], fraction: float,
                          rng: np.random.Generator) -> tuple[list[LabeledMicrograph], ValidationSet]:
    """Hold out whole micrographs (:func:`split_validation`), as a :class:`ValidationSet`."""
    train_idx, val_idx = split_validation(items, fraction, rng)
    train_items = [items[i] for i in train_idx]
    if not val_idx:
        return train_items, ValidationSet(train_items, [it.positives for it in train_items],
                                          [CoordinateTable.empty() for _ in train_items],
                                          "validation on the training labels (too few labelled micrographs to hold any out)", False)
    val = [items[i] for i in val_idx]
    return train_items, ValidationSet(val, [it.positives for it in val], [CoordinateTable.empty() for _ in val],
                                      f"{len(val)} micrograph(s) held out for validation")


# -- the loop ----------------------------------------------------------------------------
class _Sampler:
    """Draws augmented (input tile, label tile) pairs from padded micrographs."""

    def __init__(self, items, labels, rf: int, tile: int, rng: np.random.Generator):
        self.rng = rng
        self.rf = rf
        half = rf // 2
        self.tiles = []
        self.images = []
        for it in items:
            h, w = it.prep.image.shape
            t = min(tile, h, w)
            self.tiles.append(t)
            img = torch.from_numpy(np.ascontiguousarray(it.prep.image, dtype=np.float32))[None, None]
            mode = "reflect" if min(h, w) > half else "replicate"
            self.images.append(F.pad(img, (half, rf - 1 - half, half, rf - 1 - half), mode=mode)[0, 0].numpy())
        self.labels = labels
        self.positive_pixels = [np.argwhere(lab == POSITIVE) for lab in labels]
        self.with_pos = [i for i, p in enumerate(self.positive_pixels) if len(p)]
        self.areas = np.array([lab.size for lab in labels], dtype=np.float64)

    def _tile(self, i: int, oy: int, ox: int, only_labeled: bool) -> tuple[np.ndarray, np.ndarray]:
        t = self.tiles[i]
        x = self.images[i][oy : oy + t + self.rf - 1, ox : ox + t + self.rf - 1]
        y = self.labels[i][oy : oy + t, ox : ox + t].copy()
        if only_labeled:
            y[y == UNLABELED] = IGNORE
        k = int(self.rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if self.rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def batch(self, n: int, tile: int, positive_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        n_pos = 0 if positive_fraction <= 0 or not self.with_pos else min(n - 1, max(1, int(round(n * positive_fraction))))
        for j in range(n):
            if j < n_pos:
                i = int(self.rng.choice(self.with_pos))
                py, px = self.positive_pixels[i][self.rng.integers(len(self.positive_pixels[i]))]
                h, w = self.labels[i].shape
                t = self.tiles[i]
                oy = int(np.clip(py - self.rng.integers(t), 0, h - t))
                ox = int(np.clip(px - self.rng.integers(t), 0, w - t))
                x, y = self._tile(i, oy, ox, only_labeled=True)
            else:
                i = int(self.rng.choice(len(self.labels), p=self.areas / self.areas.sum()))
                h, w = self.labels[i].shape
                t = self.tiles[i]
                x, y = self._tile(i, int(self.rng.integers(h - t + 1)), int(self.rng.integers(w - t + 1)), only_labeled=False)
            if x.shape[0] != tile + self.rf - 1 or x.shape[1] != tile + self.rf - 1:
                # A micrograph smaller than the tile: pad its labels with IGNORE.
                x = np.pad(x, ((0, tile + self.rf - 1 - x.shape[0]), (0, tile + self.rf - 1 - x.shape[1])))
                y = np.pad(y, ((0, tile - y.shape[0]), (0, tile - y.shape[1])), constant_values=IGNORE)
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys))


class AutoencoderHead(torch.nn.Module):
    """Topaz's autoencoder regulariser, for a fully convolutional model.

    From the features at an output pixel, a 1x1 convolution predicts the image patch around
    that pixel (about the particle's size, at most 15 px across); the squared error of that
    reconstruction, on every fourth pixel in each direction, is added to the loss. The
    features then have to describe the local image, not only separate the few labelled
    positives, which is what helps when labels are scarce. It is used in training only and
    is not saved with the model.
    """

    def __init__(self, width: int, diameter_px: float, receptive_field: int, stride: int = 4) -> None:
        super().__init__()
        p = int(min(15, max(5, round(diameter_px)) | 1))
        self.patch, self.stride, self.half = p, stride, receptive_field // 2
        self.head = torch.nn.Conv2d(width, p * p, 1)

    def loss(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s, p = self.stride, self.patch
        f = features[:, :, ::s, ::s]
        t = features.shape[-1]
        # Output pixel (i, j) sits on input pixel (i + half, j + half); its patch starts p // 2 before.
        start = self.half - p // 2
        region = x[:, :, start : start + t + p - 1, start : start + t + p - 1]
        target = F.unfold(region, p, stride=s)  # [B, p*p, n]
        pred = self.head(f).flatten(2)
        n = min(pred.shape[-1], target.shape[-1])
        return F.mse_loss(pred[..., :n], target[..., :n])


def estimate_pi(config: TrainConfig, items: Sequence[LabeledMicrograph]) -> tuple[float, str]:
    """pi for the unlabelled pixels, given directly or from the expected particle count."""
    if config.pi is not None:
        return config.pi, f"pi = {config.pi:g} as given"
    mean_area = float(np.mean([it.prep.image.size for it in items]))
    if config.expected_per_micrograph is not None:
        n = config.expected_per_micrograph
        pi = pi_from_expected(n, config.radius_px, mean_area)
        return pi, f"pi = {pi:.4g} from {n:g} particles per micrograph of {mean_area:.0f} px with radius {config.radius_px:g}"
    # Neither: assume particles packed at a moderate density (a tenth of the area covered),
    # which is the typical single-particle field of view.
    particle_area = math.pi * (config.particle_diameter_px / 2) ** 2
    n = 0.1 * mean_area / particle_area
    pi = pi_from_expected(n, config.radius_px, mean_area)
    return pi, f"pi = {pi:.4g} assuming {n:.0f} particles per micrograph (10 % of the area); give the expected count for better"


# -- validation of the settings and the labels ---------------------------------------------
#: Fewer pixels across the particle after downsampling and there is nothing to learn from
#: (the hard floor :func:`~picker_gui.core.preprocess.check_sizes` applies too).
MIN_TRAINABLE_PARTICLE_PX = HARD_MIN_PARTICLE_PX
#: Above this, more than half of the unlabelled pixels would be particles: not a PU problem.
MAX_PI = 0.5


def check_config(config: TrainConfig) -> None:
    """Refuse settings that cannot work whatever the data (no micrograph needed).

    Raises
    ------
    UsageError
        Naming the command-line option (``--pi``, ``--expected-per-micrograph``,
        ``--autoencoder``, ``--radius``, ``--device``, ``--diameter-a``); the window shows
        the message beside its own control.
    """
    if config.pi is not None and not (0 < config.pi <= MAX_PI):
        raise UsageError(
            f"pi is the fraction of the unlabelled pixels that are particle centres (within the label "
            f"radius of one), so it must be in (0, {MAX_PI:g}]; it is usually 0.001-0.05; got {config.pi:g}. "
            f"Or give the expected number of particles per micrograph and let pi follow from it",
            option="--pi",
        )
    n = config.expected_per_micrograph
    if n is not None and not (math.isfinite(n) and n > 0):
        raise UsageError(f"must be a positive number of particles, got {n:g}", option="--expected-per-micrograph")
    if not (math.isfinite(config.autoencoder) and config.autoencoder >= 0):
        raise UsageError(
            f"the weight of the autoencoder regulariser must be 0 (off) or positive (try 1), got {config.autoencoder:g}",
            option="--autoencoder",
        )
    if not (math.isfinite(config.radius_px) and config.radius_px > 0):
        raise UsageError(f"the label radius must be positive, got {config.radius_px:g}", option="--radius")
    check_device_name(config.device)
    d = config.particle_diameter_px
    if not (math.isfinite(d) and d >= MIN_TRAINABLE_PARTICLE_PX):
        raise UsageError(
            f"the particle would be {d:.3g} px across after downsampling; the picker needs at least "
            f"{MIN_TRAINABLE_PARTICLE_PX:g}. Check the diameter (in Å, not pixels) and the pixel size, or downsample less",
            option="--diameter-a",
        )


def labels_outside(items: Sequence[LabeledMicrograph]) -> list[tuple[str, int, int]]:
    """Per labelled micrograph, ``(name, positives outside the image, positives)`` for those
    with any outside (the image in original-micrograph pixels)."""
    found = []
    for it in items:
        if not len(it.positives):
            continue
        h = it.prep.image.shape[0] * it.prep.scale[0]
        w = it.prep.image.shape[1] * it.prep.scale[1]
        x, y = it.positives.x, it.positives.y
        outside = int(np.count_nonzero(~((x >= 0) & (x < w) & (y >= 0) & (y < h))))
        if outside:
            found.append((it.name, outside, len(it.positives)))
    return found


def validate_training(config: TrainConfig, items: Sequence[LabeledMicrograph]) -> list[str]:
    """Check the settings against the labelled micrographs before any training.

    Returns
    -------
    list of str
        Warnings for things that will train but probably not well (some labels outside
        their micrographs); the caller shows them.

    Raises
    ------
    UsageError
        For what cannot work: every check of :func:`check_config`; no positive label; a
        particle as large as the micrographs; an expected particle count that makes pi
        larger than 0.5 (the message says the most that fits); every label outside its
        micrograph (the message names the likely causes and the ``convert`` options that
        fix them).
    """
    check_config(config)
    if not items or not any(len(it.positives) for it in items):
        raise UsageError("no positive labels on the given micrographs: label some particles first", option="--labels")
    smallest = min(items, key=lambda it: min(it.prep.image.shape))
    h, w = smallest.prep.image.shape
    if config.particle_diameter_px >= min(h, w):
        raise UsageError(
            f"the particle ({config.particle_diameter_px:.1f} px across after downsampling) is not smaller than "
            f"the micrograph {smallest.name} ({w}x{h} px after downsampling). Check the diameter (in Å, not "
            f"pixels) and the pixel size, or downsample less",
            option="--diameter-a",
        )
    n = config.expected_per_micrograph
    if config.pi is None and n is not None:
        mean_area = float(np.mean([it.prep.image.size for it in items]))
        disc = disc_pixels(config.radius_px)
        pi = n * disc / mean_area
        if pi > MAX_PI:
            most = int(MAX_PI * mean_area / disc)
            raise UsageError(
                f"{n:g} particles per micrograph cannot be right: each particle labels a disc of {disc} px "
                f"(radius {config.radius_px:g}) and the micrographs have {mean_area:.0f} px after downsampling, "
                f"so pi would be {pi:.3g}: more than half of the unlabelled pixels would be particles. At most "
                f"{most} fit (pi = {MAX_PI:g}: half the micrograph area / the labelled disc area); a typical "
                f"micrograph holds far fewer",
                option="--expected-per-micrograph",
            )
    warnings = []
    outside = labels_outside(items)
    n_out = sum(k for _, k, _ in outside)
    n_pos = sum(len(it.positives) for it in items)
    if outside:
        fix = ("wrong scale (picks made on a binned image) or y measured from the other edge? "
               "'picker-gui convert --scale F' or 'picker-gui convert --flip-y' fixes the file")
        if n_out == n_pos:
            xs = np.concatenate([it.positives.x for it in items])
            ys = np.concatenate([it.positives.y for it in items])
            sizes = sorted({(round(it.prep.image.shape[1] * it.prep.scale[1]), round(it.prep.image.shape[0] * it.prep.scale[0]))
                            for it in items})
            raise UsageError(
                f"all {n_pos} particle labels fall outside their micrographs (labels span x {xs.min():.0f} to "
                f"{xs.max():.0f}, y {ys.min():.0f} to {ys.max():.0f}; micrographs "
                f"{', '.join(f'{a}x{b}' for a, b in sizes[:3])} px): {fix}",
                option="--labels",
            )
        listed = ", ".join(f"{name} ({k} of {m})" for name, k, m in outside[:5]) + (", ..." if len(outside) > 5 else "")
        warnings.append(
            f"{n_out} of {n_pos} particle labels fall outside their micrographs and teach nothing: {listed}; {fix}"
        )
    return warnings


def _validation_ap(model, vset: ValidationSet, device, config) -> float:
    """Average precision of the picks on the validation micrographs against the held-out
    labels, leaving out picks on training labels. With sparse labels an unlabelled particle
    counts as a false pick, so the figure is roughly the labelled fraction times the true AP:
    lower, but it ranks models the same way."""
    picks, truth = [], []
    scale = vset.items[0].prep.scale[1]
    radius = config.nms_radius_px * scale  # within the particle radius, in original pixels
    for it, held, known in zip(vset.items, vset.held, vset.known):
        scores = score_map(model, it.prep.image, device)
        p = extract_picks(scores, it.prep, config.nms_radius_px, name=it.name)
        if len(known) and len(p):
            d2 = (p.x[:, None] - known.x[None]) ** 2 + (p.y[:, None] - known.y[None]) ** 2
            p = p[~(d2.min(axis=1) <= radius * radius)]
        picks.append(p)
        truth.append(held.replace(micrograph=it.name))
    return average_precision(match_picks(CoordinateTable.concat(picks), CoordinateTable.concat(truth), radius))


@torch.no_grad()
def calibrate_bias(model: PickerNet, sampler: "_Sampler", config: TrainConfig, pi: float, device) -> float:
    """Shift the bias of the model's last layer so that the mean predicted probability over
    tiles drawn uniformly from the training micrographs is ``pi``; returns the shift."""
    was_training = model.training
    model.eval()
    x, _ = sampler.batch(config.batch_tiles, config.tile, positive_fraction=0.0)
    logits = model(x.to(device)).flatten()
    lo, hi = -40.0, 40.0
    for _ in range(60):  # bisection: the mean of sigmoid(logits + shift) grows with shift
        mid = 0.5 * (lo + hi)
        if float(torch.sigmoid(logits + mid).mean()) > pi:
            hi = mid
        else:
            lo = mid
    shift = 0.5 * (lo + hi)
    model.classifier[-1].bias += shift
    model.train(was_training)
    return shift


#: Steps of a run from the general model (or fine-tuning a trained one): its test AP peaks after a few hundred steps on
#: 200 sparse labels and then falls as it learns the labelled particles alone (betagal,
#: aspire-small); 600 steps are about a minute on 2 CPU cores (benchmarks/README.md).
GENERAL_STEPS = 600
#: Steps of a run from fresh weights (the time cap usually comes first on a CPU).
SCRATCH_STEPS = 3000


def planned_steps(config: TrainConfig, fine_tuning: bool = False) -> int:
    """The step budget of a run: ``config.max_steps``, or the default for its start
    (:data:`GENERAL_STEPS` from the general model or, ``fine_tuning``, from given weights)."""
    if config.max_steps is not None:
        return int(config.max_steps)
    return GENERAL_STEPS if fine_tuning or _general_start(config) is not None else SCRATCH_STEPS


def _general_start(config: TrainConfig):
    """The general model this run starts from, or None (see ``TrainConfig.start``)."""
    if config.start != "general" or config.architecture is not None or not config.pooled:
        return None
    from picker_gui.core.general import general_fits

    return general_fits(config.particle_diameter_px, config.width, config.general_model_path)


def choose_model(config: TrainConfig, general=None) -> tuple[str, str]:
    """The architecture a run uses, and why (as asked, that of ``general``, the general
    model the run starts from, or from the particle diameter)."""
    if config.architecture is not None:
        return config.architecture, "as asked"
    if general is not None:
        return general.model.architecture, "the general model's"
    pooled = config.pooled and config.particle_diameter_px >= POOLED_MIN_DIAMETER_PX
    return choose_architecture(config.particle_diameter_px, pooled)


def initial_model(config: TrainConfig, init_state: dict[str, torch.Tensor] | None = None) -> tuple[PickerNet, str]:
    """The model a run starts from, and why that architecture: fresh weights (seeded by
    ``config.seed``), or ``init_state`` loaded into the same architecture and width.

    Raises
    ------
    ValueError
        When ``init_state`` does not fit the architecture and width of ``config`` (the
        caller takes them from the model it fine-tunes).
    """
    model, reason, _ = _starting_model(config, init_state)
    return model, reason


def _starting_model(config: TrainConfig, init_state: dict[str, torch.Tensor] | None):
    """:func:`initial_model`, and the general model it started from (None if it did not)."""
    general = _general_start(config) if init_state is None else None
    arch, reason = choose_model(config, general)
    torch.manual_seed(config.seed)
    model = PickerNet(arch, config.width)
    if general is not None:
        model.load_state_dict(general.model.state_dict())
        reason += f", starting from the general model {general.metadata['model_id']}"
    elif init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError:
            raise ValueError(f"the starting weights do not fit the {arch} architecture of width {config.width}; "
                             f"give the architecture and width of the model they come from") from None
        reason += ", starting from the given weights"
    return model, reason, general


def _result_metadata(config: TrainConfig, items: Sequence[LabeledMicrograph], objective: str, pi: float | None, *,
                     best_ap: float | None, best_step: int, steps: int, stopped_by: str,
                     metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What a run adds to the caller's metadata (preprocessing, pixel size): the entries a
    saved model carries about its training."""
    meta = dict(metadata or {})
    meta.update(
        objective=objective,
        autoencoder=config.autoencoder,
        pi=pi,
        radius_px=config.radius_px,
        particle_diameter_px=config.particle_diameter_px,
        nms_radius_px=config.nms_radius_px,
        n_positive_labels=int(sum(len(it.positives) for it in items)),
        n_negative_labels=int(sum(len(it.negatives) for it in items)),
        n_micrographs=len(items),
        best_validation_ap=best_ap,
        best_step=best_step,
        steps=steps,
        stopped_by=stopped_by,
        seed=config.seed,
        pick_augment=config.pick_augment,
    )
    return meta


def untrained_result(
    items: Sequence[LabeledMicrograph],
    config: TrainConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> TrainResult:
    """What :func:`train` returns when it is stopped before its first step, without setting
    up a run: the starting model (on the CPU, in eval mode) with the metadata of a run of
    0 steps, ``stopped_by="cancelled"``. For a caller stopped before it could train (during
    preprocessing); ``items`` may be empty (pi is then None unless given)."""
    model, _ = initial_model(config, init_state)
    pi = config.pi
    if pi is None and items:
        pi, _ = estimate_pi(config, items)
    objective = config.objective.lower().replace("_", "-")  # as make_objective names it
    meta = _result_metadata(config, items, objective, pi, best_ap=None, best_step=0, steps=0, stopped_by="cancelled",
                            metadata=metadata)
    return TrainResult(model.eval(), meta, [], "cancelled", [])


def train(
    items: Sequence[LabeledMicrograph],
    config: TrainConfig,
    stop: threading.Event | Callable[[], bool] | None = None,
    metadata: dict[str, Any] | None = None,
    on_validation: Callable[[TrainReport, PickerNet], None] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> Generator[TrainReport, None, TrainResult]:
    """Train a picker; yields a report per step and returns the best model.

    Parameters
    ----------
    items
        Preprocessed micrographs with their labels (original-micrograph pixels). At least
        one positive label is needed.
    stop
        Checked between steps; when set (or returning True) training ends cleanly and the
        best model so far is returned (``stopped_by="cancelled"``; stopped before the first
        validation, the weights as they are are validated once and kept).
    metadata
        Extra entries for the saved model (preprocessing parameters, pixel size, ...).
    on_validation
        Called with the report and the model (in eval mode, on its device) after every
        validation; benchmarks use it to follow accuracy against time. Must not keep or
        modify the model.
    init_state
        Fine-tuning: a state_dict loaded into the new model before the first step (see
        :func:`initial_model`; ``config`` must give its architecture and width). Stopped
        before the first step, these weights are what comes back.

    Raises
    ------
    UsageError
        On the first ``next()``, before any training, for settings or labels that cannot
        work (see :func:`validate_training`); warnings from it are logged, put in the
        first report's message and kept in :attr:`TrainResult.warnings`, as is a warning
        when the validation AP stayed 0.
    """
    warnings = validate_training(config, items)
    for text in warnings:
        logger.warning("%s", text)
    should_stop = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    device, warning = select_device(config.device)
    if warning:
        logger.warning("%s", warning)
        warnings.append(warning)

    model, arch_reason, general = _starting_model(config, init_state)
    arch = model.architecture
    model = model.to(device)
    rf = model.receptive_field
    pi, pi_reason = estimate_pi(config, items)
    kwargs: dict[str, Any] = {"negative_weight": config.negative_weight}
    if config.objective in ("ge-binomial", "ge-kl"):
        kwargs["slack"] = config.slack
    objective = make_objective(config.objective, pi, **kwargs)

    if config.validation == "micrographs":
        train_items, vset = micrograph_validation(items, config.validation_fraction, rng)
    else:
        train_items, vset = split_labels(items, config.validation_fraction, rng)
    negative_radius = max(config.radius_px, config.particle_diameter_px / 4)
    labels = [label_map(it, config.radius_px, negative_radius) for it in train_items]
    sampler = _Sampler(train_items, labels, rf, config.tile, rng)
    if general is not None:
        # The general model was trained with every particle labelled and its own pi: shift
        # its output so that its positive rate on this data is this run's pi, or the first
        # steps of the new objective tear down what it knows (benchmarks/README.md).
        shift = calibrate_bias(model, sampler, config, pi, device)
        arch_reason += f", its output shifted by {shift:+.2f} to the positive rate pi"
    n_pos = sum(len(it.positives) for it in train_items)
    n_neg = sum(len(it.negatives) for it in train_items)
    start_msg = (
        f"model {arch} ({arch_reason}), width {config.width}; objective {objective.name}, {pi_reason}; "
        f"{n_pos} positive and {n_neg} negative labels on {len(train_items)} micrograph(s) for training; "
        f"{vset.description}; device {device}"
    )
    logger.info("%s", start_msg)

    decoder = AutoencoderHead(config.width, config.particle_diameter_px, rf).to(device) if config.autoencoder > 0 else None
    params = list(model.parameters()) + (list(decoder.parameters()) if decoder is not None else [])
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    started_from_weights = init_state is not None or general is not None
    anchor = ([(p, p.detach().clone()) for p in model.parameters()] if config.anchor > 0 and started_from_weights
              else [])
    # The model validated and kept: the weights as trained, or their moving average.
    kept = model if not config.ema else copy.deepcopy(model)
    best_ap: float | None = None
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checkpoints: list[tuple[int, float, dict[str, torch.Tensor]]] = []  # (step, validation AP, weights)
    tolerance = selection_tolerance(vset.n_held)
    since_best = 0
    history: list[TrainReport] = []
    stopped_by = "max_steps"
    max_steps = planned_steps(config, fine_tuning=started_from_weights)
    message: str | None = "; ".join([*warnings, start_msg])
    step = done = best_step = 0
    excluded = 0.0
    validation_time = 0.0
    # Validation that decides nothing (no early stop, the last model kept) is rationed.
    rationed = bool(config.validation_share) and config.selection == "last" and config.patience is None
    try:
        for step in range(1, max_steps + 1):
            if should_stop():
                stopped_by = "cancelled"
                break
            model.train()
            if config.lr_schedule == "cosine":
                progress = max(step / max_steps, (time.perf_counter() - t0 - excluded) / config.max_seconds)
                factor = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate * factor
            x, y = sampler.batch(config.batch_tiles, config.tile, config.positive_fraction)
            x = x.to(device)
            if decoder is None:
                logits = model(x)[:, 0]
            else:
                features = model.trunk(x)
                logits = model.classifier(features)[:, 0]
            loss, parts = objective.loss(logits, y.to(device))
            if anchor:
                drift = sum(((p - p0) ** 2).sum() for p, p0 in anchor)
                loss = loss + config.anchor * drift
                parts["anchor"] = float(drift.detach())
            if decoder is not None:
                recon = decoder.loss(features, x)
                loss = loss + config.autoencoder * recon
                parts["reconstruction"] = float(recon.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if kept is not model:
                _ema_update(kept, model, min(config.ema, (1 + step) / (10 + step)))
            done = step

            val_ap = None
            elapsed = time.perf_counter() - t0 - excluded
            out_of_time = elapsed >= config.max_seconds
            due = step % config.eval_every == 0
            if due and rationed and validation_time > config.validation_share * elapsed:
                due = False  # postponed: validation has had its share of the time
            if due or out_of_time or step == max_steps:
                t_val = time.perf_counter()
                val_ap = _validation_ap(kept, vset, device, config)
                validation_time += time.perf_counter() - t_val
                best_ap = val_ap if best_ap is None else max(best_ap, val_ap)
                # Patience counts checks that fall clearly below the best (beyond the
                # tolerance): sparse-label validation is noisy, and a run still improving
                # must not stop on one lucky check.
                since_best = 0 if val_ap >= best_ap * (1 - tolerance) else since_best + 1
                checkpoints.append((step, val_ap, {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}))
                if config.selection == "last":
                    checkpoints = checkpoints[-1:]  # only the final weights can be kept
                else:
                    checkpoints = [c for c in checkpoints if c[1] >= best_ap * (1 - tolerance)]
            report = TrainReport(
                step=step,
                epoch=step // config.eval_every,
                loss=parts["loss"],
                ge_penalty=parts.get("ge_penalty"),
                val_ap=val_ap,
                best_val_ap=best_ap,
                elapsed_s=time.perf_counter() - t0 - excluded,
                device=str(device),
                message=message,
                total_steps=max_steps,
            )
            message = None
            history.append(report)
            if val_ap is not None and on_validation is not None:
                kept.eval()
                t_cb = time.perf_counter()
                on_validation(report, kept)
                excluded += time.perf_counter() - t_cb  # the caller's time is not training time
            yield report
            if config.patience is not None and since_best >= config.patience:
                stopped_by = "converged"
                break
            if out_of_time:
                stopped_by = "max_seconds"
                break
        if config.selection == "last" and done > 0 and (not checkpoints or checkpoints[-1][0] != done):
            # Stopped between checks: the final weights are kept, validated once.
            val_ap = _validation_ap(kept, vset, device, config)
            best_ap = val_ap if best_ap is None else max(best_ap, val_ap)
            checkpoints.append((done, val_ap, {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}))
        elif stopped_by == "cancelled" and best_ap is None and done > 0:
            # Stopped before the first validation: validate the weights as they are, so that
            # what is kept is the trained model (with an AP), not the untrained start.
            best_ap = _validation_ap(kept, vset, device, config)
            checkpoints.append((done, best_ap, {k: v.detach().cpu().clone() for k, v in kept.state_dict().items()}))
    finally:
        if checkpoints:  # the latest model within the tolerance of the best validation AP
            best_step, best_ap, best_state = checkpoints[-1]
        model.load_state_dict(best_state)
        model.cpu().eval()

    meta = _result_metadata(config, items, objective.name, pi, best_ap=best_ap, best_step=best_step, steps=done,
                            stopped_by=stopped_by, metadata=metadata)
    if general is not None:
        meta["started_from"] = f"general model {general.metadata['model_id']}"
    # What the model never trained on: a fair recall estimate for the window's threshold.
    if not vset.held_out:
        meta["validation_micrographs"] = []
    elif config.validation == "micrographs":
        meta["validation_micrographs"] = [micrograph_key(it.name) for it in vset.items]
    else:  # the held-out positive labels (original pixels), by micrograph
        meta["validation_labels"] = {micrograph_key(it.name): np.round(np.stack([h.x, h.y], 1), 3).tolist()
                                     for it, h in zip(vset.items, vset.held)}
    logger.info(
        "training stopped (%s) after %d steps, %.0f s; best validation AP %s",
        stopped_by,
        done,
        time.perf_counter() - t0,
        "n/a" if best_ap is None else f"{best_ap:.3f}",
    )
    if best_ap is not None and best_ap <= 0:
        text = (
            "validation AP stayed 0: no pick on the validation micrograph(s) came within the particle radius "
            "of a label, so the model has learned nothing useful. Check that the labels sit on particles "
            "(scale, y flipped: 'picker-gui convert --scale/--flip-y'), the particle diameter and the pixel size"
        )
        logger.warning("%s", text)
        warnings.append(text)
    return TrainResult(model, meta, history, stopped_by, warnings)


@torch.no_grad()
def _ema_update(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``average = decay * average + (1 - decay) * model``, parameters and float buffers
    (BatchNorm statistics) alike; integer buffers are copied."""
    for a, m in zip(average.state_dict().values(), model.state_dict().values()):
        if a.dtype.is_floating_point:
            a.mul_(decay).add_(m.detach(), alpha=1 - decay)
        else:
            a.copy_(m)


def run_training(gen: Generator[TrainReport, None, TrainResult], on_report: Callable[[TrainReport], None] | None = None) -> TrainResult:
    """Drive a :func:`train` generator to its end (headless callers), passing each report on;
    the same as :func:`picker_gui.core.jobs.run_job`."""
    from picker_gui.core.jobs import run_job

    return run_job(gen, on_report)
