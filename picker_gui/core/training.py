"""Training the picker from sparse labels, as a generator of progress reports.

``train(...)`` yields a :class:`TrainReport` after every step (cheap numbers only, safe to
send to a GUI thread) and returns a :class:`TrainResult` with the best model by validation
average precision. A caller stops it by setting ``stop`` (checked between steps) or by
closing the generator; either way the best model so far is kept.

How a minibatch is made (the fully convolutional counterpart of Topaz's balanced crops):

- half of the tiles are centred near a labelled particle and contribute only their
  labelled pixels (positives, negatives): these carry the scarce positive signal;
- the other tiles are drawn uniformly over the micrographs and contribute every pixel;
  only these feed the unlabelled part of the objective, so that the expected positive rate
  among them is the ``pi`` of the whole data, as the GE criterion assumes;
- every tile gets a random flip and 90-degree rotation.

Labels are pixels within ``radius_px`` (downsampled) of a labelled centre; labelled
negatives mark a disc of half the particle radius. Validation holds out whole micrographs
(by label count, about a fifth) and measures average precision of the extracted picks
against their labels; with sparse labels it is a lower bound, but it ranks models.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.inference import extract_picks, score_map
from picker_gui.core.metrics import average_precision, match_picks
from picker_gui.core.models import PickerNet, choose_architecture
from picker_gui.core.objectives import IGNORE, NEGATIVE, POSITIVE, UNLABELED, make_objective, pi_from_expected
from picker_gui.core.preprocess import Preprocessed

logger = logging.getLogger(__name__)


# -- device ------------------------------------------------------------------------------
def select_device(requested: str = "auto") -> tuple[torch.device, str | None]:
    """CUDA, else Apple MPS, else CPU; an asked-for GPU that fails falls back to the CPU.

    Returns the device and a warning to show the user (None when all went as asked).
    """
    req = (requested or "auto").lower()
    if req == "cpu":
        return torch.device("cpu"), None
    candidates = []
    if req in ("auto", "cuda") or req.startswith("cuda:"):
        if torch.cuda.is_available():
            candidates.append(torch.device(req if req.startswith("cuda") else "cuda"))
        elif req != "auto":
            return torch.device("cpu"), f"{requested} asked for but no CUDA device is available; training on the CPU"
    if req in ("auto", "mps"):
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            candidates.append(torch.device("mps"))
        elif req == "mps":
            return torch.device("cpu"), "MPS asked for but not available; training on the CPU"
    if req not in ("auto", "cuda", "mps") and not req.startswith("cuda:"):
        raise ValueError(f"unknown device {requested!r}; expected auto, cpu, cuda, cuda:N or mps")
    for dev in candidates:
        try:  # a broken driver shows up on the first real kernel, not in is_available()
            (torch.ones(8, device=dev) * 2).sum().item()
            return dev, None
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            return torch.device("cpu"), f"{dev} failed ({type(exc).__name__}: {exc}); training on the CPU"
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
    width: int = 32
    slack: float = 1.0
    negative_weight: float = 1.0
    tile: int = 64
    batch_tiles: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    max_steps: int = 3000
    max_seconds: float = 110.0
    eval_every: int = 40
    patience: int = 6
    autoencoder: float = 0.0  # weight of the reconstruction loss; Topaz finds it helps below ~250 labels
    validation_fraction: float = 0.2
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


@dataclass
class TrainResult:
    model: PickerNet  # on the CPU, in eval mode, with the best weights
    metadata: dict[str, Any]
    history: list[TrainReport] = field(default_factory=list)
    stopped_by: str = ""  # "converged", "max_steps", "max_seconds", "cancelled"


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

    def batch(self, n: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        n_pos = n // 2 if self.with_pos else 0
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


def _validation_ap(model, items, device, config) -> float:
    aps_picks, truth = [], []
    for it in items:
        scores = score_map(model, it.prep.image, device)
        aps_picks.append(extract_picks(scores, it.prep, config.nms_radius_px, name=it.name))
        truth.append(it.positives.replace(micrograph=it.name))
    picks = CoordinateTable.concat(aps_picks)
    truth_table = CoordinateTable.concat(truth)
    # Match within the particle radius in original pixels.
    scale = items[0].prep.scale[1]
    return average_precision(match_picks(picks, truth_table, config.nms_radius_px * scale))


def train(
    items: Sequence[LabeledMicrograph],
    config: TrainConfig,
    stop: threading.Event | Callable[[], bool] | None = None,
    metadata: dict[str, Any] | None = None,
    on_validation: Callable[[TrainReport, PickerNet], None] | None = None,
) -> Generator[TrainReport, None, TrainResult]:
    """Train a picker; yields a report per step and returns the best model.

    Parameters
    ----------
    items
        Preprocessed micrographs with their labels (original-micrograph pixels). At least
        one positive label is needed.
    stop
        Checked between steps; when set (or returning True) training ends cleanly.
    metadata
        Extra entries for the saved model (preprocessing parameters, pixel size, ...).
    on_validation
        Called with the report and the model (in eval mode, on its device) after every
        validation; benchmarks use it to follow accuracy against time. Must not keep or
        modify the model.
    """
    if not any(len(it.positives) for it in items):
        raise ValueError("no positive labels: label some particles first")
    should_stop = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    device, warning = select_device(config.device)
    if warning:
        logger.warning("%s", warning)

    arch = config.architecture
    arch_reason = "as asked"
    if arch is None:
        arch, arch_reason = choose_architecture(config.particle_diameter_px)
    model = PickerNet(arch, config.width).to(device)
    rf = model.receptive_field
    pi, pi_reason = estimate_pi(config, items)
    kwargs: dict[str, Any] = {"negative_weight": config.negative_weight}
    if config.objective in ("ge-binomial", "ge-kl"):
        kwargs["slack"] = config.slack
    objective = make_objective(config.objective, pi, **kwargs)

    train_idx, val_idx = split_validation(items, config.validation_fraction, rng)
    train_items = [items[i] for i in train_idx]
    val_items = [items[i] for i in val_idx] or train_items
    negative_radius = max(config.radius_px, config.particle_diameter_px / 4)
    labels = [label_map(it, config.radius_px, negative_radius) for it in train_items]
    sampler = _Sampler(train_items, labels, rf, config.tile, rng)
    n_pos = sum(len(it.positives) for it in train_items)
    n_neg = sum(len(it.negatives) for it in train_items)
    start_msg = (
        f"model {arch} ({arch_reason}), width {config.width}; objective {objective.name}, {pi_reason}; "
        f"{n_pos} positive and {n_neg} negative labels on {len(train_items)} micrograph(s) for training, "
        + (f"{len(val_items)} held out for validation" if val_idx else "validation on the training labels (too few labelled micrographs to hold any out)")
        + f"; device {device}"
    )
    logger.info("%s", start_msg)

    decoder = AutoencoderHead(config.width, config.particle_diameter_px, rf).to(device) if config.autoencoder > 0 else None
    params = list(model.parameters()) + (list(decoder.parameters()) if decoder is not None else [])
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    best_ap: float | None = None
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    since_best = 0
    history: list[TrainReport] = []
    stopped_by = "max_steps"
    message: str | None = "; ".join(m for m in (warning, start_msg) if m)
    step = done = 0
    excluded = 0.0
    try:
        for step in range(1, config.max_steps + 1):
            if should_stop():
                stopped_by = "cancelled"
                break
            model.train()
            x, y = sampler.batch(config.batch_tiles, config.tile)
            x = x.to(device)
            features = model.features(x)
            logits = model.classifier(features)[:, 0]
            loss, parts = objective.loss(logits, y.to(device))
            if decoder is not None:
                recon = decoder.loss(features, x)
                loss = loss + config.autoencoder * recon
                parts["reconstruction"] = float(recon.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done = step

            val_ap = None
            elapsed = time.perf_counter() - t0 - excluded
            out_of_time = elapsed >= config.max_seconds
            if step % config.eval_every == 0 or out_of_time or step == config.max_steps:
                val_ap = _validation_ap(model, val_items, device, config)
                if best_ap is None or val_ap > best_ap:
                    best_ap, since_best = val_ap, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                else:
                    since_best += 1
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
            )
            message = None
            history.append(report)
            if val_ap is not None and on_validation is not None:
                model.eval()
                t_cb = time.perf_counter()
                on_validation(report, model)
                excluded += time.perf_counter() - t_cb  # the caller's time is not training time
            yield report
            if since_best >= config.patience:
                stopped_by = "converged"
                break
            if out_of_time:
                stopped_by = "max_seconds"
                break
    finally:
        model.load_state_dict(best_state)
        model.cpu().eval()

    meta = dict(metadata or {})
    meta.update(
        objective=objective.name,
        autoencoder=config.autoencoder,
        pi=pi,
        radius_px=config.radius_px,
        particle_diameter_px=config.particle_diameter_px,
        nms_radius_px=config.nms_radius_px,
        n_positive_labels=int(sum(len(it.positives) for it in items)),
        n_negative_labels=int(sum(len(it.negatives) for it in items)),
        n_micrographs=len(items),
        best_validation_ap=best_ap,
        steps=done,
        stopped_by=stopped_by,
        seed=config.seed,
    )
    logger.info(
        "training stopped (%s) after %d steps, %.0f s; best validation AP %s",
        stopped_by,
        done,
        time.perf_counter() - t0,
        "n/a" if best_ap is None else f"{best_ap:.3f}",
    )
    return TrainResult(model, meta, history, stopped_by)


def run_training(gen: Generator[TrainReport, None, TrainResult], on_report: Callable[[TrainReport], None] | None = None) -> TrainResult:
    """Drive a :func:`train` generator to its end (headless callers), passing each report on."""
    while True:
        try:
            report = next(gen)
        except StopIteration as end:
            return end.value
        if on_report is not None:
            on_report(report)
