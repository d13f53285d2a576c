"""The train and pick jobs that the command line, the window and the benchmarks all run.

Tiny micrographs on disk (the blobs of test_training, 128x96 px at 2 Å/px, 8-px = 16-Å
particles: no downsampling). Every training run is bounded by steps (``max_steps``; the time
cap is left huge): no test depends on how fast the machine is.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.errors import UsageError
from picker_gui.core.formats import read_coordinates
from picker_gui.core.inference import score_map
from picker_gui.core.jobs import (
    MODEL_CONTRACT,
    JobReport,
    PickJobResult,
    TrainJobResult,
    TrainSettings,
    pick_job,
    run_job,
    train_job,
)
from picker_gui.core.models import PickerNet, SavedModel, load_model, model_id, save_model
from tests.conftest import write_mrc
from tests.core.test_training import _blobs

NEVER = 1e9  # minutes: the time cap never ends a run here


def _settings(**kw) -> TrainSettings:
    base = dict(diameter_a=16.0, expected_per_micrograph=30, max_steps=6, max_minutes=NEVER, device="cpu")
    base.update(kw)
    return TrainSettings(**base)


@pytest.fixture(scope="module")
def mics(tmp_path_factory):
    """Three micrographs with 10 labels each (of 30 particles), and the truth."""
    folder = tmp_path_factory.mktemp("mics")
    paths, labels, truth = [], [], []
    for seed in range(3):
        prep, centres = _blobs(seed)
        paths.append(write_mrc(folder / f"m{seed}.mrc", prep.image, voxel_size=2.0))
        labels.append(centres[:10])
        truth.append(centres)
    return paths, CoordinateTable.concat(labels), CoordinateTable.concat(truth)


@pytest.fixture(scope="module")
def trained(mics):
    """A model trained for 20 steps (one validation, at the end), and its reports."""
    paths, labels, _ = mics
    reports: list[JobReport] = []
    result = run_job(train_job(paths, labels, None, _settings(max_steps=20)), reports.append)
    return result, reports


def _stop_when(stop: threading.Event, condition):
    def on_report(report: JobReport) -> None:
        if condition(report):
            stop.set()  # as the window's Stop button does, from another thread

    return on_report


# -- training ------------------------------------------------------------------------------------
def test_train_job_reports_each_stage_and_returns_a_model_with_the_contract(mics, trained):
    result, reports = trained
    assert isinstance(result, TrainJobResult)
    assert result.stopped_by == "max_steps" and result.failures == []
    preprocess = [r for r in reports if r.stage == "preprocess"]
    train = [r for r in reports if r.stage == "train"]
    assert [r.stage for r in reports] == ["preprocess"] * 4 + ["train"] * 20  # nothing else, in this order
    assert [(r.done, r.total) for r in preprocess] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [r.micrograph for r in preprocess[1:]] == ["m0", "m1", "m2"]
    assert [r.done for r in train] == list(range(1, 21)) and {r.total for r in train} == {20}
    assert [r.train.step for r in train] == list(range(1, 21))
    # The first step's message says what was chosen: the downsampling and why, the model, pi.
    first = train[0].message
    assert "no downsampling" in first and "conv31" in first and "pi = " in first
    assert all(r.message is None for r in train[1:])

    meta = result.saved.metadata
    for key in MODEL_CONTRACT:
        assert key in meta, key
    assert meta["downsample"] == 1.0 and meta["downsampled_pixel_size_a"] == pytest.approx(2.0)
    assert meta["original_pixel_size_a"] == pytest.approx(2.0) and meta["particle_diameter_a"] == 16.0
    assert meta["normalization"] == "gmm" and meta["particle_diameter_px"] == pytest.approx(8.0)
    assert meta["steps"] == 20 and meta["n_positive_labels"] == 30 and meta["n_micrographs"] == 3
    assert meta["best_validation_ap"] is not None
    model = result.saved.model
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_labels_on_micrographs_not_given_are_a_warning_and_none_given_is_refused(mics, caplog):
    paths, labels, _ = mics
    caplog.set_level("WARNING", logger="picker_gui")
    extra = CoordinateTable.from_arrays(["elsewhere.mrc"], [5.0], [5.0])
    gen = train_job(paths, CoordinateTable.concat([labels, extra]), None, _settings(max_steps=1))
    first = next(gen)
    assert first.stage == "preprocess" and first.done == 0
    assert "1 labelled micrograph(s) not among the given micrographs, ignored: elsewhere" in first.message
    assert "ignored: elsewhere" in caplog.text
    result = run_job(gen)
    assert result.saved.metadata["n_micrographs"] == 3 and any("elsewhere" in w for w in result.warnings)

    with pytest.raises(UsageError) as info:
        next(train_job(paths, extra, None, _settings()))
    assert info.value.option == "--labels" and "no label names one of the given micrographs" in str(info.value)
    assert "elsewhere" in str(info.value) and "m0" in str(info.value)


def test_labels_named_with_folders_and_suffixes_find_their_micrographs(mics):
    """RELION/crYOLO-style names (a job folder, _DW, _autopick) match the micrographs given."""
    paths, labels, _ = mics
    one = labels.for_micrograph("m0")
    renamed = one.replace(micrograph=np.full(len(one), "MotionCorr/job002/m0_DW_autopick.mrc", dtype=object))
    reports: list[JobReport] = []
    result = run_job(train_job(paths, renamed, None, _settings(max_steps=1)), reports.append)
    assert [r.micrograph for r in reports if r.stage == "preprocess" and r.done] == ["m0"]
    assert result.saved.metadata["n_positive_labels"] == len(one)
    assert not any("not among the given micrographs" in w for w in result.warnings)


def test_only_labelled_micrographs_are_used_and_duplicate_keys_are_refused(mics, tmp_path):
    paths, labels, _ = mics
    unlabelled = write_mrc(tmp_path / "other.mrc", np.zeros((96, 128), np.float32), voxel_size=2.0)
    reports: list[JobReport] = []
    run_job(train_job([unlabelled, *paths], labels.for_micrograph("m0"), None, _settings(max_steps=1)), reports.append)
    assert [r.micrograph for r in reports if r.stage == "preprocess" and r.done] == ["m0"]

    (tmp_path / "copy").mkdir()
    twin = write_mrc(tmp_path / "copy" / "m0.mrc", np.zeros((96, 128), np.float32), voxel_size=2.0)
    with pytest.raises(UsageError, match="'m0'"):
        next(train_job([*paths, twin], labels, None, _settings()))


def test_sizes_that_cannot_work_are_refused_before_any_preprocessing(mics, monkeypatch):
    import picker_gui.core.preprocess as preprocess

    paths, labels, _ = mics

    def refuse(*a, **k):
        raise AssertionError("preprocessing started; the problem should have been found before")

    monkeypatch.setattr(preprocess, "preprocess_file", refuse)
    for settings, option in ((_settings(diameter_a=100_000), "--diameter-a"), (_settings(downsample=500), "--downsample"),
                             (_settings(pi=0.9, expected_per_micrograph=None), "--pi"), (_settings(device="gpu"), "--device"),
                             (_settings(max_steps=0), "--epochs")):
        with pytest.raises(UsageError) as info:
            next(train_job(paths, labels, None, settings))
        assert info.value.option == option, (option, str(info.value))


def test_a_micrograph_that_fails_is_reported_and_the_others_train(mics, tmp_path):
    paths, labels, _ = mics
    bad = tmp_path / "m9.mrc"
    bad.write_bytes(b"\0" * 10)
    labels9 = CoordinateTable.concat([labels, CoordinateTable.from_arrays("m9.mrc", [10.0], [10.0])])
    reports: list[JobReport] = []
    result = run_job(train_job([bad, *paths], labels9, None, _settings(max_steps=1)), reports.append)
    failed = [r for r in reports if r.error]
    assert len(failed) == 1 and failed[0].stage == "preprocess" and failed[0].micrograph == "m9"
    assert str(bad) in failed[0].error and "\n" not in failed[0].error
    assert [f for f, _ in result.failures] == [str(bad)]
    assert result.saved.metadata["n_micrographs"] == 3 and result.saved.metadata["steps"] == 1

    with pytest.raises(UsageError, match=r"no labelled micrograph could be read: .*m9\.mrc"):
        run_job(train_job([bad], labels9, None, _settings()))


def test_stop_during_preprocessing_ends_after_that_micrograph_with_a_usable_untrained_model(mics):
    paths, labels, _ = mics
    stop = threading.Event()
    reports: list[JobReport] = []
    on_report = _stop_when(stop, lambda r: r.stage == "preprocess" and r.done == 1)
    result = run_job(train_job(paths, labels, None, _settings(), stop=stop), lambda r: (reports.append(r), on_report(r)))
    assert [(r.stage, r.done) for r in reports] == [("preprocess", 0), ("preprocess", 1)]
    assert result.stopped_by == "cancelled"
    meta = result.saved.metadata
    assert meta["steps"] == 0 and meta["stopped_by"] == "cancelled" and meta["n_micrographs"] == 1
    for key in (*MODEL_CONTRACT, "nms_radius_px", "particle_diameter_px", "pi"):
        assert meta[key] is not None, key
    image = np.zeros((96, 128), np.float32)
    assert score_map(result.saved.model, image).shape == image.shape


def test_stop_during_training_ends_at_the_next_step_and_keeps_the_model(mics):
    paths, labels, _ = mics
    stop = threading.Event()
    steps = []

    def on_report(report):
        if report.stage == "train":
            steps.append(report.done)
            if report.done == 3:
                stop.set()

    result = run_job(train_job(paths, labels, None, _settings(max_steps=10_000), stop=stop), on_report)
    assert steps == [1, 2, 3]
    assert result.stopped_by == "cancelled" and result.saved.metadata["steps"] == 3
    assert result.saved.metadata["best_step"] == 3  # the trained weights, validated once
    for key in MODEL_CONTRACT:
        assert key in result.saved.metadata


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fine_tuning_starts_from_the_models_weights(mics, trained):
    paths, labels, _ = mics
    base = trained[0].saved
    start = _weights(base.model)
    # Stopped before the first step: the starting model is the one given, weight for weight.
    stop = threading.Event()
    on_report = _stop_when(stop, lambda r: r.stage == "preprocess" and r.done == 3)
    result = run_job(train_job(paths, labels, None, _settings(), stop=stop, init=base), on_report)
    assert result.saved.metadata["steps"] == 0
    for k, v in result.saved.model.state_dict().items():
        assert torch.equal(v, start[k]), k
    assert result.saved.metadata["fine_tuned_from"] == model_id(base)
    # One step from there: the loss is well below that of the first step from scratch.
    scratch = []
    run_job(train_job(paths, labels, None, _settings(max_steps=1)), lambda r: r.train and scratch.append(r.train.loss))
    tuned = []
    result = run_job(train_job(paths, labels, None, _settings(max_steps=1), init=base),
                     lambda r: r.train and tuned.append(r.train.loss))
    assert tuned[0] < 0.9 * scratch[0], (tuned, scratch)
    assert {k: v for k, v in base.model.state_dict().items()}.keys() == result.saved.model.state_dict().keys()
    for k, v in base.model.state_dict().items():
        assert torch.equal(v, start[k]), "fine-tuning changed the model it started from"


def test_fine_tuning_keeps_the_models_architecture_and_preprocessing_and_says_so(mics, trained, caplog):
    paths, labels, _ = mics
    base = trained[0].saved
    caplog.set_level("INFO", logger="picker_gui")
    reports: list[JobReport] = []
    settings = _settings(max_steps=1, architecture="conv71", downsample=2.0)
    result = run_job(train_job(paths, labels, None, settings, init=base), reports.append)
    assert result.saved.model.architecture == "conv31" and result.saved.model.width == base.model.width
    assert result.saved.metadata["downsample"] == 1.0  # the model's pixel size, not x2
    message = next(r for r in reports if r.stage == "train").message
    assert "keeps the model's architecture conv31" in message and "conv71" in message
    assert "the downsampling asked for (x2) is not used" in message
    assert "keeps the model's architecture conv31" in caplog.text


# -- model identity ------------------------------------------------------------------------------
def test_model_id_is_stable_across_save_and_load_and_changes_with_a_weight(trained, tmp_path):
    saved = trained[0].saved
    before = model_id(saved)
    assert len(before) == 16 and int(before, 16) >= 0
    assert model_id(saved) == before  # the same twice
    path = save_model(tmp_path / "model.pt", saved.model, saved.metadata)
    loaded = load_model(path)
    assert loaded.metadata["model_id"] == before == model_id(loaded)
    assert torch.load(path, weights_only=True)["metadata"]["model_id"] == before

    changed = SavedModel(PickerNet(saved.model.architecture, saved.model.width), dict(saved.metadata))
    changed.model.load_state_dict(saved.model.state_dict())
    assert model_id(changed) == before
    with torch.no_grad():
        next(changed.model.parameters()).view(-1)[0] += 1e-3
    assert model_id(changed) != before
    assert model_id(SavedModel(saved.model, saved.metadata | {"pi": 0.5})) != before


# -- picking -------------------------------------------------------------------------------------
def test_pick_job_picks_in_the_order_given_and_reports_each(mics, trained):
    paths, _, _ = mics
    saved = trained[0].saved
    order = [paths[2], paths[0], paths[1]]
    reports: list[JobReport] = []
    result = run_job(pick_job(saved, order, device="cpu"), reports.append)
    assert isinstance(result, PickJobResult) and not result.stopped and result.failures == []
    assert [r.micrograph for r in reports] == ["m2", "m0", "m1"] == result.done
    assert [(r.stage, r.done, r.total) for r in reports] == [("pick", 1, 3), ("pick", 2, 3), ("pick", 3, 3)]
    for r in reports:
        assert len(r.picks) > 0 and set(r.picks.micrograph) == {f"{r.micrograph}.mrc"}
        assert np.all(np.diff(r.picks.score) <= 0)  # ranked
    assert list(dict.fromkeys(result.picks.micrograph)) == ["m2.mrc", "m0.mrc", "m1.mrc"]
    assert result.picks == CoordinateTable.concat([r.picks for r in reports])
    assert result.device == "cpu"


def test_pick_job_reports_a_failed_micrograph_and_goes_on(mics, trained, tmp_path):
    paths, _, _ = mics
    bad = tmp_path / "broken.mrc"
    bad.write_bytes(b"not an mrc file")
    reports: list[JobReport] = []
    result = run_job(pick_job(trained[0].saved, [paths[0], bad, paths[1]], device="cpu"), reports.append)
    assert [r.error is not None for r in reports] == [False, True, False]
    assert reports[1].micrograph == "broken" and str(bad) in reports[1].error and reports[1].picks is None
    assert result.done == ["m0", "m1"] and [f for f, _ in result.failures] == [str(bad)]


def test_stop_during_picking_returns_the_picks_so_far(mics, trained):
    paths, _, _ = mics
    stop = threading.Event()
    reports: list[JobReport] = []
    on_report = _stop_when(stop, lambda r: r.done == 1)
    result = run_job(pick_job(trained[0].saved, paths, device="cpu", stop=stop),
                     lambda r: (reports.append(r), on_report(r)))
    assert len(reports) == 1 and result.stopped and result.done == ["m0"]
    assert result.picks == reports[0].picks


def test_pick_job_refuses_duplicate_keys_and_leaves_the_model_where_it_was(mics, trained, tmp_path):
    paths, _, _ = mics
    (tmp_path / "copy").mkdir()
    twin = write_mrc(tmp_path / "copy" / "m1.mrc", np.zeros((96, 128), np.float32), voxel_size=2.0)
    with pytest.raises(UsageError, match="'m1'"):
        next(pick_job(trained[0].saved, [*paths, twin], device="cpu"))
    before = model_id(trained[0].saved)
    run_job(pick_job(trained[0].saved, paths[:1], device="cpu"))
    assert model_id(trained[0].saved) == before and not trained[0].saved.model.training


def test_the_command_line_writes_exactly_what_pick_job_returns(mics, trained, tmp_path):
    from picker_gui.cli import main

    paths, _, _ = mics
    model = save_model(tmp_path / "model.pt", trained[0].saved.model, trained[0].saved.metadata)
    out = tmp_path / "picks.csv"
    assert main(["pick", str(model), *map(str, paths), "--out", str(out), "--device", "cpu", "--radius-px", "5"]) == 0
    direct = run_job(pick_job(load_model(model), paths, device="cpu", radius_px=5)).picks
    written = read_coordinates(out)
    assert len(written) == len(direct) > 0
    assert list(written.keys) == list(direct.keys)
    np.testing.assert_array_equal(written.x, direct.x)
    np.testing.assert_array_equal(written.y, direct.y)
    np.testing.assert_allclose(written.score, direct.score, rtol=1e-12)


def test_labels_of_kind_negative_among_the_particles_are_used_as_negatives(mics):
    """A labels file of the window holds both kinds; a negative is never trained as a particle."""
    paths, labels, _ = mics
    marked = CoordinateTable.from_arrays("m1.mrc", [20.0, 40.0], [20.0, 30.0], kind="negative")
    reports: list[JobReport] = []
    result = run_job(train_job(paths, CoordinateTable.concat([labels, marked]), None, _settings(max_steps=1)),
                     reports.append)
    meta = result.saved.metadata
    assert meta["n_positive_labels"] == 30 and meta["n_negative_labels"] == 2
    assert "2 label(s) of kind 'negative' among the particle labels used as negatives" in next(
        r for r in reports if r.stage == "train").message


def test_the_model_names_the_labels_it_held_out():
    """Every labelled micrograph is trained on, with a fifth of its labels held out; the
    model names those labels, so the window's recall estimate uses labels it never saw."""
    from picker_gui.core.jobs import TrainSettings, run_job, train_job

    import tempfile
    from pathlib import Path

    from tests.conftest import write_mrc
    from tests.core.test_training import _blobs

    from picker_gui.core.coords import CoordinateTable

    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = [], []
        for seed in range(4):
            prep, truth = _blobs(seed)
            paths.append(write_mrc(Path(tmp) / f"m{seed}.mrc", prep.image, voxel_size=2.0))
            labels.append(truth[:10].replace(micrograph=f"m{seed}"))
        result = run_job(train_job(paths, CoordinateTable.concat(labels), None,
                                   TrainSettings(diameter_a=16.0, max_steps=3, max_minutes=1000.0)))
    held = result.saved.metadata["validation_labels"]
    assert set(held) == {"m0", "m1", "m2", "m3"}
    for key, points in held.items():
        given = labels[int(key[1:])]
        assert len(points) == 2  # a fifth of 10
        for x, y in points:  # each is one of the given labels (in original pixels)
            assert np.min(np.hypot(given.x - x, given.y - y)) < 1e-3
    assert result.saved.metadata["n_positive_labels"] == 40


def test_a_trained_model_carries_its_id():
    from picker_gui.core.jobs import _identified
    from picker_gui.core.models import PickerNet, model_id
    from picker_gui.core.training import TrainResult

    result = TrainResult(PickerNet("conv31", 4), {"steps": 1}, [], "max_steps", [])
    saved = _identified(result)
    assert saved.metadata["model_id"] == model_id(saved)


def test_picks_stay_off_the_edges_and_candidates_kept_apart_are_the_picks(mics, trained):
    from picker_gui.core.inference import EDGE_MARGIN
    from picker_gui.core.picks import keep_apart

    paths = mics[0]
    saved = trained[0].saved
    picks = run_job(pick_job(saved, paths[:1], device="cpu")).picks
    cands = run_job(pick_job(saved, paths[:1], device="cpu", candidates=True)).picks
    meta = saved.metadata
    margin = EDGE_MARGIN * 0.5 * meta["particle_diameter_px"] * meta["downsample"]
    h, w = 96, 128  # the test micrographs (original px = downsampled here)
    for table in (picks, cands):
        assert (table.x >= margin - 1e-6).all() and (table.y >= margin - 1e-6).all()
        assert (table.x <= w - 1 - margin + 1e-6).all() and (table.y <= h - 1 - margin + 1e-6).all()
    kept = keep_apart(cands.x, cands.y, 0.5 * meta["particle_diameter_a"] / meta["original_pixel_size_a"])
    assert np.array_equal(cands.x[kept], picks.x) and len(cands) > len(picks)
