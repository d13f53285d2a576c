from __future__ import annotations

import numpy as np
import pytest
import torch

from picker_gui.core.inference import non_maximum_suppression, score_map
from picker_gui.core.models import PickerNet, known_architectures


def test_nms_keeps_a_hard_minimum_distance_and_ranks():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(120, 160)).astype(np.float32)
    x, y, s = non_maximum_suppression(scores, radius=6.0)
    assert np.all(np.diff(s) <= 0)
    d2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    np.fill_diagonal(d2, np.inf)
    assert d2.min() > 36.0
    # The global maximum is always the first pick.
    iy, ix = np.unravel_index(np.argmax(scores), scores.shape)
    assert (x[0], y[0]) == (ix, iy)


def test_nms_hand_case_on_a_non_square_map():
    scores = np.full((20, 30), -10.0, dtype=np.float32)
    scores[5, 20] = 3.0  # x=20, y=5
    scores[5, 23] = 2.0  # 3 px away: suppressed at radius 4, kept at radius 2
    scores[15, 4] = 1.0
    x, y, s = non_maximum_suppression(scores, radius=4.0, threshold=0.0)
    assert list(zip(x, y, s)) == [(20, 5, 3.0), (4, 15, 1.0)]
    x, _, _ = non_maximum_suppression(scores, radius=2.0, threshold=0.0)
    assert list(x) == [20, 23, 4]


def test_nms_threshold_is_a_floor():
    scores = np.zeros((10, 10), dtype=np.float32)
    scores[2, 2], scores[7, 7] = 5.0, -1.0
    x, y, s = non_maximum_suppression(scores, radius=1.0, threshold=0.5)
    assert list(s) == [5.0]


@pytest.mark.parametrize("arch", known_architectures())
def test_tiled_scoring_equals_one_pass(arch):
    torch.manual_seed(0)
    model = PickerNet(arch, width=8).eval()
    image = np.random.default_rng(1).normal(size=(70, 90)).astype(np.float32)
    whole = score_map(model, image, tile=1024)
    tiled = score_map(model, image, tile=32)
    assert whole.shape == image.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # an odd tile is made even (a pooled model pools on the same grid in every tile)
    np.testing.assert_allclose(score_map(model, image, tile=31), whole, atol=1e-5)
    # Valid convolutions: the model's output size is input - receptive field + 1.
    rf = model.receptive_field
    out = model(torch.zeros(1, 1, rf + 12, rf + 5))
    assert tuple(out.shape[-2:]) == (13, 6)


def test_a_pooled_model_is_saved_and_loaded_whole(tmp_path):
    from picker_gui.core.models import load_model, save_model

    torch.manual_seed(0)
    model = PickerNet("pool50", width=8).eval()
    save_model(tmp_path / "m.pt", model, {"note": "pooled"})
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.model.pooled and loaded.model.receptive_field == 50
    image = np.random.default_rng(2).normal(size=(64, 80)).astype(np.float32)
    np.testing.assert_array_equal(score_map(loaded.model, image), score_map(model, image))


@pytest.mark.parametrize("arch", ["conv31", "pool34"])
def test_augmented_scoring_is_the_mean_of_the_eight_views_and_turns_with_the_image(arch):
    torch.manual_seed(0)
    model = PickerNet(arch, 4).eval()
    image = np.random.default_rng(0).normal(size=(40, 52)).astype(np.float32)
    views = []
    for k in range(4):
        for flip in (False, True):
            v = np.rot90(image[:, ::-1] if flip else image, k)
            s = np.rot90(score_map(model, v), -k)
            views.append(s[:, ::-1] if flip else s)
    aug = score_map(model, image, augment=True)
    assert aug.shape == image.shape
    assert np.allclose(aug, np.mean(views, axis=0), atol=1e-5)
    # The eight views of a turned image are the same eight: the result turns with it.
    assert np.allclose(score_map(model, np.rot90(image).copy(), augment=True), np.rot90(aug), atol=1e-4)
    assert not np.allclose(aug, score_map(model, image), atol=1e-3)


@pytest.mark.parametrize("augment", [False, True])
def test_picking_scores_as_the_model_says_with_or_without_the_eight_views(tmp_path, augment):
    from picker_gui.core.inference import extract_picks, pick_file
    from picker_gui.core.mrc_io import write_mrc
    from picker_gui.core.preprocess import PreprocessParams, preprocess_file

    torch.manual_seed(0)
    model = PickerNet("pool34", 4).eval()
    rng = np.random.default_rng(3)
    path = write_mrc(tmp_path / "m.mrc", rng.normal(size=(96, 120)).astype(np.float32), 2.0)
    meta = {"downsample": 1.0, "normalization": "gmm", "particle_diameter_px": 8.0, "nms_radius_px": 4.0,
            "pick_augment": augment}
    picks, _ = pick_file(model, meta, path, candidates=True)
    prep = preprocess_file(path, PreprocessParams(downsample=1.0, normalization="gmm"))
    scores = score_map(model, prep.image, augment=augment)
    other = score_map(model, prep.image, augment=not augment)
    ranked = picks[np.argsort(-picks.score, kind="stable")]
    iy, ix = np.round(ranked.y[:5]).astype(int), np.round(ranked.x[:5]).astype(int)
    np.testing.assert_allclose(ranked.score[:5], scores[iy, ix], atol=1e-5)
    assert not np.allclose(ranked.score[:5], other[iy, ix], atol=1e-3)


def test_extracted_picks_stay_half_a_particle_radius_off_the_edges():
    """Peaks on the border rows (a particle cut by the edge, scored on padding) are not
    picks; one just inside the margin is, and coordinates come back in original pixels."""
    from pathlib import Path

    from picker_gui.core.inference import EDGE_MARGIN, extract_picks
    from picker_gui.core.preprocess import Normalization, Preprocessed

    scores = np.zeros((40, 60), dtype=np.float32)
    r = 8.0  # particle radius, downsampled px; the margin is 4 px
    scores[1, 30] = 9.0  # top edge
    scores[20, 58] = 8.0  # right edge
    scores[38, 10] = 7.0  # bottom edge
    scores[20, 4] = 6.0  # exactly at the margin: kept
    scores[20, 30] = 5.0  # inside
    prep = Preprocessed(Path("m.mrc"), scores, (2.0, 3.0), (80, 180), None, Normalization("gmm", 0.0, 1.0))
    picks = extract_picks(scores, prep, radius_px=r / 2, threshold=1.0, particle_radius_px=r)
    assert EDGE_MARGIN * r == 4.0
    assert picks.score.tolist() == [6.0, 5.0]
    assert picks.x.tolist() == [12.0, 90.0] and picks.y.tolist() == [40.0, 40.0]
    # Without particle_radius_px the NMS radius is the particle radius (margin 2 px): the
    # peak 2 px from the bottom edge stays out, one 2 px from the left edge comes in.
    scores[10, 2] = 4.0
    picks = extract_picks(scores, prep, radius_px=4.0, threshold=1.0)
    assert sorted(picks.score.tolist()) == [4.0, 5.0, 6.0]
