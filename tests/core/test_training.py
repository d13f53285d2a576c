"""Training on a tiny synthetic set: every objective learns, cancel works, models reload."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.inference import extract_picks, score_map
from picker_gui.core.metrics import evaluate
from picker_gui.core.models import load_model, save_model
from picker_gui.core.objectives import GEBinomial, UNLABELED, POSITIVE, disc_pixels, pi_from_expected
from picker_gui.core.preprocess import Normalization, Preprocessed
from picker_gui.core.training import LabeledMicrograph, TrainConfig, run_training, select_device, split_validation, train

DIAMETER = 8.0  # px


def _blobs(seed: int, shape=(96, 128), n=30):
    """Noisy image with n soft discs (particles) and their centres."""
    rng = np.random.default_rng(seed)
    h, w = shape
    centres = []
    while len(centres) < n:
        c = rng.uniform(6, [w - 6, h - 6])
        if all(np.hypot(*(c - o)) > DIAMETER * 1.2 for o in centres):
            centres.append(c)
    centres = np.array(centres)
    yy, xx = np.mgrid[:h, :w]
    image = rng.normal(0, 1.0, size=shape)
    for cx, cy in centres:
        image += 1.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.5**2))
    prep = Preprocessed(Path(f"m{seed}.mrc"), image.astype(np.float32), (1.0, 1.0), shape, 1.0, Normalization("affine", 0, 1))
    return prep, CoordinateTable.from_arrays(f"m{seed}.mrc", centres[:, 0], centres[:, 1])


@pytest.fixture(scope="module")
def data():
    train_items = []
    for seed in range(3):
        prep, truth = _blobs(seed)
        train_items.append(LabeledMicrograph(prep, truth[:8]))  # sparse: 8 of 30 labelled
    return train_items, _blobs(100)


def _config(objective: str, **kw) -> TrainConfig:
    base = dict(
        particle_diameter_px=DIAMETER,
        objective=objective,
        expected_per_micrograph=30,
        architecture="conv31",
        width=8,
        tile=32,
        batch_tiles=8,
        learning_rate=3e-3,
        max_steps=120,
        max_seconds=60,
        eval_every=40,
        patience=10,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


def _run(gen):
    reports = []
    return reports, run_training(gen, reports.append)


def _test_ap(model, test) -> float:
    prep, truth = test
    picks = extract_picks(score_map(model, prep.image), prep, DIAMETER / 2, name=prep.path.name)
    return evaluate(picks, truth, DIAMETER / 2)["average_precision"]


@pytest.mark.parametrize("objective", ["ge-binomial", "ge-kl", "nnpu", "pn"])
def test_each_objective_learns_well_above_chance(data, objective):
    items, test = data
    reports, result = _run(train(items, _config(objective)))
    assert reports and reports[-1].step == result.metadata["steps"]
    assert all(np.isfinite(r.loss) for r in reports)
    # Chance: picks in random order give AP around the fraction of candidates that are true.
    torch.manual_seed(0)
    from picker_gui.core.models import PickerNet

    untrained = _test_ap(PickerNet("conv31", 8), test)
    trained = _test_ap(result.model, test)
    assert trained > 0.6 and trained > untrained + 0.3, (objective, untrained, trained)


def test_autoencoder_regulariser_trains_and_still_learns(data):
    items, test = data
    reports, result = _run(train(items, _config("ge-binomial", autoencoder=1.0)))
    assert result.metadata["autoencoder"] == 1.0
    assert all(np.isfinite(r.loss) for r in reports)
    assert _test_ap(result.model, test) > 0.6


def test_reports_carry_progress_and_validation(data):
    items, _ = data
    reports, result = _run(train(items, _config("ge-binomial", max_steps=80)))
    assert [r.step for r in reports] == list(range(1, 81))
    assert reports[0].message and "held out" in reports[0].message
    val = [r for r in reports if r.val_ap is not None]
    assert len(val) == 2 and all(0 <= r.val_ap <= 1 for r in val)
    assert reports[-1].device == "cpu" and reports[-1].elapsed_s > 0
    assert result.metadata["best_validation_ap"] == max(r.val_ap for r in val)


def test_cancel_stops_within_a_few_steps_and_keeps_a_model(data):
    items, _ = data
    stop = threading.Event()
    gen = train(items, _config("ge-binomial", max_steps=10_000, max_seconds=600), stop=stop)
    steps = []

    def on_report(report):
        steps.append(report.step)
        if report.step == 5:
            stop.set()  # as the GUI's Cancel button does, from another thread

    result = run_training(gen, on_report)
    assert steps == [1, 2, 3, 4, 5]
    assert result.stopped_by == "cancelled"
    assert result.metadata["steps"] == 5  # the step that saw the flag did no work
    assert score_map(result.model, items[0].prep.image).shape == items[0].prep.image.shape


def test_saved_model_reloads_with_identical_scores(data, tmp_path):
    items, test = data
    _, result = _run(train(items, _config("ge-binomial", max_steps=20)))
    path = save_model(tmp_path / "model.pt", result.model, result.metadata | {"downsample": 1.0})
    loaded = load_model(path)
    assert loaded.metadata["architecture"] == "conv31" and loaded.metadata["objective"] == "ge-binomial"
    assert loaded.metadata["downsample"] == 1.0 and loaded.metadata["n_positive_labels"] == 24
    prep, _ = test
    np.testing.assert_array_equal(score_map(result.model, prep.image), score_map(loaded.model, prep.image))


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    from picker_gui.core.errors import PickerError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(PickerError, match="bad.pt: not a picker-gui model"):
        load_model(bad)


def test_training_is_reproducible_on_cpu(data):
    items, test = data
    _, a = _run(train(items, _config("ge-binomial", max_steps=15, seed=3)))
    _, b = _run(train(items, _config("ge-binomial", max_steps=15, seed=3)))
    prep, _ = test
    np.testing.assert_array_equal(score_map(a.model, prep.image), score_map(b.model, prep.image))


def test_pi_from_expected_count_uses_a_2d_disc():
    assert disc_pixels(3) == 29  # Topaz 0.3.20 counts a 3-D ball (7x too many)
    assert pi_from_expected(100, 3, 1_000_000) == pytest.approx(100 * 29 / 1e6)
    with pytest.raises(ValueError):
        pi_from_expected(1e6, 3, 1000)


def test_ge_binomial_penalty_is_zero_mean_matched_and_grows_with_mismatch():
    obj = GEBinomial(pi=0.05)
    labels = torch.full((1000,), UNLABELED)
    labels[:10] = POSITIVE
    at_pi = torch.full((1000,), float(np.log(0.05 / 0.95)))
    too_many = torch.full((1000,), float(np.log(0.3 / 0.7)))
    _, parts_ok = obj.loss(at_pi, labels)
    _, parts_bad = obj.loss(too_many, labels)
    assert parts_ok["ge_penalty"] < 0.01
    assert parts_bad["ge_penalty"] > 10 * parts_ok["ge_penalty"] + 1


def test_validation_split_holds_out_whole_micrographs(data):
    items, _ = data
    train_idx, val_idx = split_validation(items, 0.2, np.random.default_rng(0))
    assert len(val_idx) == 1 and set(train_idx) | set(val_idx) == {0, 1, 2}
    assert split_validation(items[:1], 0.2, np.random.default_rng(0)) == ([0], [])


def test_unavailable_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, warning = select_device("cuda")
    assert device.type == "cpu" and "no CUDA device" in warning
    assert select_device("auto")[0].type in ("cpu", "mps")
    assert select_device("cpu") == (torch.device("cpu"), None)
