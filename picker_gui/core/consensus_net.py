"""The Deep Consensus network: a CNN trained on agreed picks (AND) against random spots (NEG)
that scores every candidate (OR) in [0, 1].

After Sanchez-Garcia et al. (IUCrJ 2018) and Xmipp's implementation (facts in
../shared/FIELD.md): crops of one box around each pick from the normalised, downsampled
micrograph, resized to :attr:`ConsensusConfig.input_px`; four blocks of Conv+ReLU,
Conv+BatchNorm+ReLU (kernels 15, 7, 3, 3 at 128 px, scaled to the input; max-pool with
stride 2 after blocks 1-3), average pooling, a dense layer of 512, dropout 0.5 and one
logit; filters 2-16 below 1,500 positives, 4-32 up to 20,000 and 8-64 above. Balanced
minibatches (half positive), flips, 90-degree and +-10-degree rotations, Adam with L2 1e-5, 10 % held
out; the learning rate drops tenfold after ``lr_patience`` checks without a gain in
validation accuracy (to at most a thousandth), training stops after ``stop_patience``
such checks, at ``stop_accuracy``, at ``max_epochs`` passes over the larger class (at least
``min_steps`` minibatches) or at the time budget. An ensemble of ``ensemble`` networks, each from its own seed and its own
held-out split, scores by the mean probability.

Everything here works on arrays: crops come from :func:`extract_crops`; the job in
:mod:`picker_gui.core.jobs` reads micrographs and picks and calls :func:`train_consensus`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsensusConfig:
    """Every knob of the consensus network, with the paper's defaults where they fit a CPU."""

    input_px: int = 64  # crops are resized to this (the paper: 128; 64 is 4x cheaper)
    ensemble: int = 3
    batch: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    validation_fraction: float = 0.1
    check_every: int = 50  # minibatches between validation checks
    lr_patience: int = 3
    stop_patience: int = 10
    stop_accuracy: float = 0.99
    max_epochs: float = 5.0
    #: At least this many minibatches per network (5 epochs of a few hundred crops are a few
    #: dozen minibatches: too few to learn from, as the demo data showed).
    min_steps: int = 300
    max_seconds: float = 300.0  # for the whole ensemble
    #: (first, last) filter counts; None: by the number of positives, as the paper (filters_for)
    filters: tuple[int, int] | None = None
    #: Validate on balanced accuracy (the mean over AND and NEG) rather than plain accuracy.
    #: NEG outnumbers AND ~8:1, so plain accuracy reaches ``stop_accuracy`` in 250-450
    #: minibatches; balanced accuracy trains 4-10x longer and, on three benchmark sets, scored
    #: no better (benchmarks/README.md, "Consensus"), so it is off by default.
    balanced_validation: bool = False
    seed: int = 0
    device: str = "auto"


def filters_for(n_positives: int) -> tuple[int, int]:
    """(first, last) filter counts by the number of positives, as the paper scales them."""
    if n_positives < 1500:
        return 2, 16
    if n_positives <= 20000:
        return 4, 32
    return 8, 64


def _odd(k: float) -> int:
    k = max(3, int(round(k)))
    return k if k % 2 else k + 1


class ConsensusNet(nn.Module):
    """The paper's network for ``input_px``-pixel crops, with ``filters`` = (first, last)."""

    def __init__(self, input_px: int = 64, filters: tuple[int, int] = (2, 16)) -> None:
        super().__init__()
        scale = input_px / 128
        kernels = [_odd(15 * scale), _odd(7 * scale), 3, 3]
        pools = [_odd(7 * scale), _odd(5 * scale), 3]
        first, last = filters
        widths = [first, first * 2, first * 4, last]
        layers: list[nn.Module] = []
        c_in = 1
        for i, (k, c) in enumerate(zip(kernels, widths)):
            layers += [nn.Conv2d(c_in, c, k, padding=k // 2), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(pools[i], stride=2, padding=pools[i] // 2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(last, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, 1))
        self.input_px = input_px
        self.filters = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(F.adaptive_avg_pool2d(f, 1))[:, 0]


# -- crops ----------------------------------------------------------------------------------
def extract_crops(image: np.ndarray, x: np.ndarray, y: np.ndarray, box: float, input_px: int) -> np.ndarray:
    """Crops of ``box`` pixels centred on (x, y) (pixels of ``image``), resized to
    ``input_px`` square: ``(n, input_px, input_px)`` float32. Outside the image is the
    edge pixel repeated."""
    n = len(x)
    if n == 0:
        return np.zeros((0, input_px, input_px), dtype=np.float32)
    h, w = image.shape
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if box / input_px > 1.5:  # shrinking: low-pass first so the resampling does not alias
        from picker_gui.core.classical import _gaussian_blur

        img = _gaussian_blur(img, 0.5 * box / input_px)
    # Sample a grid of input_px points spanning the box around each centre (bilinear).
    t = (torch.arange(input_px, dtype=torch.float32) + 0.5) / input_px - 0.5  # -0.5 .. 0.5
    offs = t * box
    cx = torch.as_tensor(np.asarray(x, dtype=np.float32))[:, None, None] + offs[None, None, :]
    cy = torch.as_tensor(np.asarray(y, dtype=np.float32))[:, None, None] + offs[None, :, None]
    gx = (2 * cx + 1) / w - 1  # align_corners=False normalisation
    gy = (2 * cy + 1) / h - 1
    grid = torch.stack([gx.expand(n, input_px, input_px), gy.expand(n, input_px, input_px)], dim=-1)
    out = []
    for start in range(0, n, 512):
        g = grid[start:start + 512]
        out.append(F.grid_sample(img.expand(len(g), -1, -1, -1), g, mode="bilinear", padding_mode="border",
                                 align_corners=False)[:, 0])
    return torch.cat(out).numpy()


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    k = int(rng.integers(4))
    x = torch.rot90(x, k, dims=(-2, -1))
    if rng.random() < 0.5:
        x = torch.flip(x, dims=(-1,))
    return x


#: The small rotations of Deep Consensus's augmentation, on top of flips and 90-degree turns.
SMALL_ROTATION_DEG = 10.0


def augment_batch(xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flips, 90-degree rotations and a rotation of up to +-10 degrees about the centre
    (bilinear, edge pixels repeated), each crop of ``(n, 1, s, s)`` its own, as the paper."""
    xb = torch.stack([_augment(c, rng) for c in xb])
    theta = np.deg2rad(rng.uniform(-SMALL_ROTATION_DEG, SMALL_ROTATION_DEG, len(xb)))
    c, s = np.cos(theta), np.sin(theta)
    mats = torch.from_numpy(np.stack([np.stack([c, -s, np.zeros_like(c)], 1), np.stack([s, c, np.zeros_like(c)], 1)],
                                     1)).to(xb.dtype)
    grid = F.affine_grid(mats, list(xb.shape), align_corners=False)
    return F.grid_sample(xb, grid, mode="bilinear", padding_mode="border", align_corners=False)


# -- training ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConsensusReport:
    """One step of training the ensemble: plain values, safe to hand to a GUI thread."""

    member: int  # 0-based index in the ensemble
    members: int
    step: int
    loss: float
    val_accuracy: float | None = None
    best_val_accuracy: float | None = None
    elapsed_s: float = 0.0
    message: str | None = None


@dataclass
class ConsensusModel:
    """A trained ensemble: its networks (eval mode, CPU) and how they were trained."""

    nets: list[ConsensusNet]
    input_px: int
    val_accuracy: list[float] = field(default_factory=list)
    stopped_by: list[str] = field(default_factory=list)

    @torch.no_grad()
    def score(self, crops: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
        """Mean P(particle) of the ensemble for ``(n, input_px, input_px)`` crops."""
        if not len(crops):
            return np.zeros(0)
        total = np.zeros(len(crops))
        for net in self.nets:
            net.eval().to(device)
            for start in range(0, len(crops), 256):
                x = torch.from_numpy(crops[start:start + 256][:, None]).to(device)
                total[start:start + 256] += torch.sigmoid(net(x)).double().cpu().numpy()
            net.cpu()
        return total / len(self.nets)


def train_consensus(
    positives: np.ndarray,
    negatives: np.ndarray,
    config: ConsensusConfig = ConsensusConfig(),
    stop: threading.Event | Callable[[], bool] | None = None,
) -> Generator[ConsensusReport, None, ConsensusModel]:
    """Train the ensemble on crops: AND (``positives``) against NEG (``negatives``), each
    ``(n, input_px, input_px)``; yields a report per minibatch, returns the ensemble.

    A stop request ends the member in training at once; the members trained so far (and
    that one as it is) make the ensemble.
    """
    from picker_gui.core.training import select_device

    should_stop = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    if len(positives) < 2 or len(negatives) < 2:
        from picker_gui.core.errors import UsageError

        raise UsageError(f"the consensus network needs positives and negatives to learn from "
                         f"(got {len(positives)} AND and {len(negatives)} NEG crops)")
    device, warning = select_device(config.device)
    if warning:
        logger.warning("%s", warning)
    t0 = time.perf_counter()
    filters = tuple(config.filters) if config.filters else filters_for(len(positives))
    nets: list[ConsensusNet] = []
    accuracies: list[float] = []
    stopped: list[str] = []
    per_member = config.max_seconds / config.ensemble
    for member in range(config.ensemble):
        rng = np.random.default_rng(config.seed * 1000 + member)
        torch.manual_seed(config.seed * 1000 + member)
        pos_val, pos_train = _split(len(positives), config.validation_fraction, rng)
        neg_val, neg_train = _split(len(negatives), config.validation_fraction, rng)
        net = ConsensusNet(config.input_px, filters).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        lr = config.learning_rate
        half = config.batch // 2
        # An epoch: every crop of the larger class once (the batches are balanced, so the
        # positives are seen several times when NEG is larger); never fewer than min_steps.
        per_epoch = max(len(pos_train), len(neg_train)) / half
        max_steps = max(config.min_steps, int(math.ceil(config.max_epochs * per_epoch)))
        val_x = torch.from_numpy(np.concatenate([positives[pos_val], negatives[neg_val]])[:, None])
        val_y = np.concatenate([np.ones(len(pos_val)), np.zeros(len(neg_val))])
        best_acc, best_state, since = -1.0, None, 0
        t_member = time.perf_counter()
        how = "max_epochs"
        message = (f"consensus network {member + 1}/{config.ensemble}: filters {filters[0]}-{filters[1]}, "
                   f"{len(pos_train)} AND / {len(neg_train)} NEG crops for training, "
                   f"{len(pos_val)} / {len(neg_val)} held out; device {device}")
        logger.info("%s", message)
        step = 0
        for step in range(1, max_steps + 1):
            if should_stop():
                how = "cancelled"
                break
            net.train()
            ip = pos_train[rng.integers(len(pos_train), size=half)]
            ineg = neg_train[rng.integers(len(neg_train), size=config.batch - half)]
            xb = torch.from_numpy(np.concatenate([positives[ip], negatives[ineg]])[:, None])
            xb = augment_batch(xb, rng).to(device)
            yb = torch.cat([torch.ones(half), torch.zeros(config.batch - half)]).to(device)
            loss = F.binary_cross_entropy_with_logits(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc = None
            out_of_time = time.perf_counter() - t_member >= per_member
            if step % config.check_every == 0 or step == max_steps or out_of_time:
                acc = _accuracy(net, val_x, val_y, device, config.balanced_validation)
                if acc > best_acc + 1e-9:
                    best_acc, since = acc, 0
                    best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                else:
                    since += 1
                    if since % config.lr_patience == 0 and lr > config.learning_rate * 1e-3 * 1.0001:
                        lr = max(lr * 0.1, config.learning_rate * 1e-3)
                        for g in opt.param_groups:
                            g["lr"] = lr
            yield ConsensusReport(member, config.ensemble, step, float(loss.detach()), acc,
                                  best_acc if best_acc >= 0 else None, time.perf_counter() - t0, message)
            message = None
            if acc is not None:
                if best_acc >= config.stop_accuracy:
                    how = "accurate"
                    break
                if since >= config.stop_patience:
                    how = "converged"
                    break
            if out_of_time:
                how = "max_seconds"
                break
        if best_state is None:  # stopped before the first check: validate as it is
            best_acc = _accuracy(net, val_x, val_y, device, config.balanced_validation) if step else 0.5
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(best_state)
        nets.append(net.cpu().eval())
        accuracies.append(best_acc)
        stopped.append(how)
        logger.info("consensus network %d/%d: validation accuracy %.3f after %d minibatches (%s)",
                    member + 1, config.ensemble, best_acc, step, how)
        if how == "cancelled":
            break
    return ConsensusModel(nets, config.input_px, accuracies, stopped)


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    k = max(1, int(round(n * fraction)))
    k = min(k, n - 1)
    return np.sort(order[:k]), np.sort(order[k:])


@torch.no_grad()
def _accuracy(net: ConsensusNet, x: torch.Tensor, y: np.ndarray, device, balanced: bool = False) -> float:
    """The share of ``x`` classified as ``y`` says; ``balanced``: the mean of the shares on
    the positives and on the negatives (NEG outnumbers AND several times)."""
    net.eval()
    out = []
    for start in range(0, len(x), 512):
        out.append(net(x[start:start + 512].to(device)).cpu().numpy())
    pred = np.concatenate(out) > 0
    truth = y > 0.5
    if not balanced:
        return float((pred == truth).mean())
    per_class = [float((pred[truth == c] == c).mean()) for c in (True, False) if (truth == c).any()]
    return float(np.mean(per_class))
