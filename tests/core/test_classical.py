"""The training-free difference-of-Gaussians picker."""

import numpy as np
import pytest

from picker_gui.core.classical import dog_picks, dog_score_map
from picker_gui.core.metrics import evaluate
from tests.core.test_training import _blobs


def test_dark_blobs_of_the_given_size_are_found_first():
    prep, truth = _blobs(3)  # bright discs of about 8 px on noise
    dark = type(prep)(prep.path, -prep.image, prep.scale, prep.original_shape, prep.pixel_size_a, prep.normalization)
    picks = dog_picks(dark, 8.0, name=truth.keys[0])
    result = evaluate(picks, truth, 3.0)
    assert result["average_precision"] > 0.8
    # the same blobs seen as bright: with the wrong polarity they are not found
    assert evaluate(dog_picks(prep, 8.0, name=truth.keys[0]), truth, 3.0)["average_precision"] < 0.3
    assert evaluate(dog_picks(prep, 8.0, bright=True, name=truth.keys[0]), truth, 3.0)["average_precision"] > 0.8


def test_picks_keep_the_particle_radius_apart_and_are_ranked():
    prep, truth = _blobs(4)
    picks = dog_picks(prep, 8.0, bright=True, name="m")
    assert np.all(np.diff(picks.score) <= 0)
    xy = np.stack([picks.x, picks.y], 1)
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + np.eye(len(xy)) * 1e9
    assert d.min() > 4.0


def test_a_diameter_that_is_no_size_is_refused():
    with pytest.raises(ValueError, match="positive"):
        dog_score_map(np.zeros((8, 8), np.float32), 0.0)
