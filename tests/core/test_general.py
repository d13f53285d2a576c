"""The general model: where training starts when asked, and when it is not used."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from picker_gui.core import general
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.models import PickerNet, model_id, SavedModel, save_model
from picker_gui.core.preprocess import Normalization, Preprocessed
from picker_gui.core.training import LabeledMicrograph, TrainConfig, initial_model, run_training, train

DIAMETER = 18.0  # px: the pooled regime the general model serves


def _items(n_mics: int = 2, shape=(160, 160)):
    rng = np.random.default_rng(0)
    items = []
    for m in range(n_mics):
        image = rng.normal(0, 1, shape).astype(np.float32)
        xs, ys = rng.uniform(20, shape[1] - 20, 6), rng.uniform(20, shape[0] - 20, 6)
        prep = Preprocessed(Path(f"g{m}.mrc"), image, (1.0, 1.0), shape, 1.0, Normalization("affine", 0, 1))
        items.append(LabeledMicrograph(prep, CoordinateTable.from_arrays(f"g{m}.mrc", xs, ys)))
    return items


@pytest.fixture
def general_file(tmp_path):
    torch.manual_seed(7)
    model = PickerNet("pool74", 8)
    path = save_model(tmp_path / "general.pt", model, {"general": True})
    return path, model


def _config(path, **kw) -> TrainConfig:
    base = dict(particle_diameter_px=DIAMETER, expected_per_micrograph=6, width=8, tile=32, batch_tiles=4,
                max_steps=2, max_seconds=float("inf"), eval_every=2, device="cpu", start="general",
                general_model_path=str(path))
    base.update(kw)
    return TrainConfig(**base)


def test_training_starts_from_the_general_model_and_says_so(general_file):
    path, model = general_file
    cfg = _config(path)  # the diameter alone would choose pool50
    start, reason = initial_model(cfg)
    assert start.architecture == "pool74" and "general model" in reason
    for k, v in start.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    stop = threading.Event()
    stop.set()  # stopped before the first step: the starting weights come back
    result = run_training(train(_items(), cfg, stop=stop))
    assert result.model.architecture == "pool74"
    result = run_training(train(_items(), cfg))
    assert result.metadata["pick_augment"] is True  # picks average the eight views by default
    assert result.metadata["started_from"] == f"general model {model_id(SavedModel(model, {'general': True}))}"
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in result.model.state_dict().items()), \
        "training must move the weights it started from"


def test_fresh_weights_when_the_general_model_does_not_fit(general_file, tmp_path):
    path, model = general_file
    for cfg in (_config(path, start="scratch"),            # asked for fresh weights
                _config(path, width=16),                   # another width
                _config(path, architecture="pool50"),      # an architecture asked for
                _config(path, particle_diameter_px=10.0),  # full-resolution regime
                _config(tmp_path / "missing.pt")):         # no file
        start, reason = initial_model(cfg)
        assert "general" not in reason, cfg
        assert start.architecture != "pool74" or not torch.equal(
            start.state_dict()["stem.0.weight"], model.state_dict()["stem.0.weight"])


def test_fine_tuning_a_given_model_ignores_the_general_one(general_file):
    path, _ = general_file
    torch.manual_seed(1)
    mine = PickerNet("pool50", 8)
    start, reason = initial_model(_config(path, architecture="pool50"), mine.state_dict())
    assert "general" not in reason
    assert torch.equal(start.state_dict()["stem.0.weight"], mine.state_dict()["stem.0.weight"])


def test_an_unreadable_general_model_is_skipped_with_a_warning(tmp_path, caplog):
    bad = tmp_path / "general.pt"
    bad.write_bytes(b"not a model")
    assert general.general_model(bad) is None
    assert "general model not used" in caplog.text
    start, reason = initial_model(_config(bad))
    assert "general" not in reason


def test_the_general_models_output_is_shifted_to_the_runs_positive_rate(general_file):
    from picker_gui.core.training import calibrate_bias

    _, model = general_file
    model.eval()
    x = torch.from_numpy(np.random.default_rng(4).normal(size=(3, 1, 74 + 31, 74 + 31)).astype(np.float32))

    class Tiles:  # the same tiles every time
        def batch(self, n, tile, positive_fraction=0.5):
            assert positive_fraction == 0.0  # drawn uniformly, not around labels
            return x, None

    cfg = _config("unused")
    for pi in (0.002, 0.05):
        shift = calibrate_bias(model, Tiles(), cfg, pi, "cpu")
        with torch.no_grad():
            assert abs(float(torch.sigmoid(model(x)).mean()) - pi) < 1e-5, (pi, shift)
    first = next(train(_items(), _config(general_file[0])))
    assert "output shifted by" in first.message


def test_an_anchor_keeps_fine_tuning_near_the_weights_it_started_from(general_file):
    path, _ = general_file

    def drift(anchor):
        cfg = _config(path, anchor=anchor, max_steps=6, eval_every=6, learning_rate=1e-2)
        start, _ = initial_model(cfg)
        result = run_training(train(_items(), cfg))
        # The classifier's bias is shifted before training (calibration): compare the rest.
        return max(float((v - start.state_dict()[k]).abs().max()) for k, v in result.model.state_dict().items()
                   if k.endswith("weight") and not k.startswith("classifier.2"))

    free, held = drift(0.0), drift(1e4)
    assert held < 0.2 * free, (held, free)


def test_the_step_budget_follows_the_start(general_file):
    from picker_gui.core.training import GENERAL_STEPS, SCRATCH_STEPS, planned_steps

    path, _ = general_file
    assert planned_steps(_config(path, max_steps=None)) == GENERAL_STEPS
    assert planned_steps(_config(path, max_steps=None, start="scratch")) == SCRATCH_STEPS
    assert planned_steps(_config(path, max_steps=None, start="scratch"), fine_tuning=True) == GENERAL_STEPS
    assert planned_steps(_config(path, max_steps=77)) == 77
    assert GENERAL_STEPS < SCRATCH_STEPS
