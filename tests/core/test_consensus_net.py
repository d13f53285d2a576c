"""The Deep Consensus network: crops, a toy task it must learn, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from picker_gui.core.consensus_net import (
    ConsensusConfig,
    ConsensusNet,
    extract_crops,
    filters_for,
    train_consensus,
)
from picker_gui.core.errors import UsageError
from picker_gui.core.jobs import run_job


def _toy(n: int, rng: np.random.Generator, particle: bool, px: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[:px, :px] - (px - 1) / 2
    disc = (xx**2 + yy**2 <= (px / 5) ** 2).astype(np.float32)
    out = rng.normal(0, 1, (n, px, px)).astype(np.float32)
    if particle:
        out -= 2.0 * disc  # a dark blob in the centre
    return out


def test_filters_scale_with_positives():
    assert filters_for(300) == (2, 16)
    assert filters_for(5000) == (4, 32)
    assert filters_for(50000) == (8, 64)


def test_network_shapes_for_any_input_size():
    for px in (32, 64, 128):
        net = ConsensusNet(px, (2, 16))
        assert net(torch.zeros(3, 1, px, px)).shape == (3,)


def test_crops_are_centred_and_resized():
    img = np.zeros((100, 120), dtype=np.float32)
    img[40, 70] = 1.0  # one bright pixel
    crops = extract_crops(img, np.array([70.0]), np.array([40.0]), box=16, input_px=16)
    assert crops.shape == (1, 16, 16)
    iy, ix = np.unravel_index(np.argmax(crops[0]), crops[0].shape)
    assert (iy, ix) in {(7, 7), (7, 8), (8, 7), (8, 8)}
    # A crop over the edge repeats the edge, no error.
    assert extract_crops(img, np.array([0.0]), np.array([0.0]), 30, 8).shape == (1, 8, 8)


def test_augmentation_turns_crops_by_at_most_ten_degrees_beyond_flips_and_quarter_turns():
    import torch

    from picker_gui.core.consensus_net import augment_batch

    # A bar through the centre along x: after augmentation its angle is within 10 degrees of
    # a multiple of 90 (flips and quarter turns keep it on an axis), and not always on one.
    px = 33
    img = np.zeros((px, px), dtype=np.float32)
    img[16, 4:29] = 1.0
    rng = np.random.default_rng(0)
    out = augment_batch(torch.from_numpy(np.repeat(img[None, None], 64, 0)), rng).numpy()[:, 0]
    yy, xx = np.mgrid[:px, :px] - 16.0
    angles = []
    for o in out:
        w = np.clip(o, 0, None)
        cov = np.cov(np.stack([xx.ravel(), yy.ravel()]), aweights=w.ravel())
        evals, evecs = np.linalg.eigh(cov)
        v = evecs[:, -1]
        a = np.degrees(np.arctan2(v[1], v[0])) % 90
        angles.append(min(a, 90 - a))
    angles = np.array(angles)
    assert angles.max() <= 10.5 and angles.max() > 5
    # Energy is kept (rotation about the centre, nothing cut off the bar).
    assert np.allclose(out.sum((1, 2)), img.sum(), rtol=0.1)


def test_learns_a_toy_task():
    rng = np.random.default_rng(0)
    pos, neg = _toy(300, rng, True), _toy(300, rng, False)
    config = ConsensusConfig(input_px=16, ensemble=2, batch=32, check_every=10, max_epochs=6, max_seconds=1e6,
                             seed=1, device="cpu", stop_accuracy=0.97)
    gen = train_consensus(pos, neg, config)
    reports = []
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as done:
            model = done.value
            break
    assert len(model.nets) == 2
    assert {r.member for r in reports} == {0, 1}
    test_pos, test_neg = _toy(100, rng, True), _toy(100, rng, False)
    sp, sn = model.score(test_pos), model.score(test_neg)
    assert ((sp >= 0) & (sp <= 1)).all()
    accuracy = ((sp > 0.5).sum() + (sn <= 0.5).sum()) / 200
    assert accuracy > 0.9
    assert min(model.val_accuracy) > 0.85


def test_cancel_ends_at_once_with_what_was_trained():
    rng = np.random.default_rng(0)
    pos, neg = _toy(100, rng, True), _toy(100, rng, False)
    stop = threading.Event()
    gen = train_consensus(pos, neg, ConsensusConfig(input_px=16, ensemble=3, device="cpu"), stop)
    steps = 0
    while True:
        try:
            next(gen)
            steps += 1
            if steps == 5:
                stop.set()
        except StopIteration as done:
            model = done.value
            break
    assert steps == 5
    assert len(model.nets) == 1 and model.stopped_by == ["cancelled"]


def test_too_few_crops_is_a_clear_message():
    with pytest.raises(UsageError, match="1 AND and 5 NEG"):
        next(train_consensus(np.zeros((1, 16, 16), np.float32), np.zeros((5, 16, 16), np.float32)))


class _Constant(torch.nn.Module):
    """A 'network' that says the same for every crop."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x),), self.logit)


def test_balanced_validation_accuracy_sees_through_the_class_imbalance():
    # NEG outnumbers AND nine to one: a network that calls everything background is right on
    # 90 % of the crops (plain accuracy), but has learnt nothing (balanced accuracy 0.5).
    from picker_gui.core.consensus_net import _accuracy

    x = torch.zeros((100, 1, 8, 8))
    y = np.r_[np.ones(10), np.zeros(90)]
    assert _accuracy(_Constant(-1.0), x, y, "cpu") == pytest.approx(0.9)
    assert _accuracy(_Constant(+1.0), x, y, "cpu") == pytest.approx(0.1)
    assert _accuracy(_Constant(-1.0), x, y, "cpu", balanced=True) == pytest.approx(0.5)
    assert _accuracy(_Constant(+1.0), x, y, "cpu", balanced=True) == pytest.approx(0.5)


def test_filters_can_be_set():
    rng = np.random.default_rng(0)
    pos, neg = _toy(40, rng, True), _toy(40, rng, False)
    config = ConsensusConfig(input_px=16, ensemble=1, min_steps=2, max_epochs=0.01, filters=(4, 8), device="cpu")
    model = run_job(train_consensus(pos, neg, config))
    assert model.nets[0].filters == (4, 8)
