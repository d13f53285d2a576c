"""Training on a tiny synthetic set: every objective learns, cancel works, models reload,
settings and labels that cannot work are refused before training.

Every run is bounded by steps (``max_seconds`` infinite): no test depends on how fast the
machine is."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.inference import extract_picks, score_map
from picker_gui.core.metrics import evaluate
from picker_gui.core.models import PickerNet, load_model, save_model
from picker_gui.core.objectives import GEBinomial, UNLABELED, POSITIVE, disc_pixels, pi_from_expected
from picker_gui.core.preprocess import Normalization, Preprocessed
from picker_gui.core import training
from picker_gui.core.training import LabeledMicrograph, TrainConfig, run_training, select_device, split_labels, split_validation, train

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
        max_seconds=float("inf"),  # bounded by steps: no test may depend on the machine's speed
        eval_every=40,
        patience=10,
        selection="near-best",
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
    # The model kept is the latest whose validation AP is within the tolerance of the best.
    best = max(r.val_ap for r in val)
    kept = [r for r in val if r.val_ap >= best * (1 - training.selection_tolerance(6))][-1]  # 6 held out
    assert result.metadata["best_validation_ap"] == kept.val_ap
    assert result.metadata["best_step"] == kept.step


def test_the_latest_model_near_the_best_validation_is_kept(data, monkeypatch):
    """Validation APs 0.50, 0.60, 0.57, 0.40 (6 held-out labels: tolerance 30 %): 0.57 is
    within it of 0.60 and later, so its weights are kept; 0.40 is not."""
    from picker_gui.core import training

    items, _ = data
    aps = iter([0.5, 0.6, 0.57, 0.4])
    monkeypatch.setattr(training, "_validation_ap", lambda *a, **k: next(aps))
    reports, result = _run(train(items, _config("ge-binomial", max_steps=80, eval_every=20)))
    assert result.metadata["best_step"] == 60 and result.metadata["best_validation_ap"] == 0.57


def test_cancel_stops_within_a_few_steps_and_keeps_a_model(data):
    items, _ = data
    stop = threading.Event()
    gen = train(items, _config("ge-binomial", max_steps=10_000), stop=stop)
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


def test_label_split_trains_on_every_micrograph_and_holds_out_a_fifth_of_each(data):
    items, _ = data  # 3 micrographs with 8 labels each
    train_items, vset = split_labels(items, 0.25, np.random.default_rng(0))
    assert [it.name for it in train_items] == [it.name for it in items]
    assert vset.held_out and [it.name for it in vset.items] == [it.name for it in items]
    for it, kept, held, known in zip(items, train_items, vset.held, vset.known):
        assert len(held) == 2 and len(kept.positives) == 6
        # held and kept are disjoint and together are the given labels
        together = np.sort(np.concatenate([held.x, kept.positives.x]))
        assert np.array_equal(together, np.sort(it.positives.x))
        assert np.array_equal(np.sort(known.x), np.sort(kept.positives.x))


def test_label_split_with_too_few_labels_validates_on_the_training_labels(data):
    items, _ = data
    few = [LabeledMicrograph(it.prep, it.positives[:2]) for it in items]  # 1 held out of each: 3 < 6
    train_items, vset = split_labels(few, 0.5, np.random.default_rng(0))
    assert not vset.held_out and "training labels" in vset.description
    assert [len(it.positives) for it in train_items] == [2, 2, 2]


def test_the_selection_tolerance_follows_the_number_of_held_out_labels():
    assert training.selection_tolerance(4) == 0.3 and training.selection_tolerance(1000) == 0.1
    assert training.selection_tolerance(40) == pytest.approx(40 ** -0.5)


def test_validation_leaves_out_picks_on_training_labels():
    """A pick on a training label is neither right nor wrong: with it counted as a false pick
    the AP of a perfect ranking of the held-out particles would drop."""
    from picker_gui.core import training

    prep, truth = _blobs(5)
    held, known = truth[:5], truth[5:]
    item = LabeledMicrograph(prep, truth)
    vset = training.ValidationSet([item], [held], [known], "test")

    class Oracle(torch.nn.Module):  # scores training labels highest, then held-out ones
        receptive_field = 1

        def forward(self, x):
            out = torch.full(x.shape, -5.0)
            for table, value in ((held, 1.0), (known, 5.0)):
                for cx, cy in zip(table.x, table.y):
                    out[..., int(round(cy)), int(round(cx))] = value
            return out

    ap = training._validation_ap(Oracle(), vset, "cpu", _config("ge-binomial"))
    assert ap == pytest.approx(1.0)
    counted = training.ValidationSet([item], [held], [known[:0]], "test")
    assert training._validation_ap(Oracle(), counted, "cpu", _config("ge-binomial")) < 0.5


def test_unavailable_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, warning = select_device("cuda")
    # Neutral wording: picking calls this too.
    assert device.type == "cpu" and "no CUDA device" in warning and "using the CPU" in warning
    assert "training" not in warning
    assert select_device("auto")[0].type in ("cpu", "mps")
    assert select_device("cpu") == (torch.device("cpu"), None)


# -- settings and labels that cannot work --------------------------------------------------
def _raises_usage(option: str, *words: str):
    """Context: a UsageError naming ``option`` whose message holds every word."""
    from picker_gui.core.errors import UsageError

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(UsageError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.ctx.__exit__(*exc)
            err = self.info.value
            assert err.option == option, (err.option, str(err))
            assert str(err).startswith(f"{option}: ")
            for word in words:
                assert word in err.message, (word, err.message)
            return handled

    return _Check()


def _first(gen):
    """Run a train generator to its first report (validation happens before it)."""
    return next(gen)


def test_pi_outside_zero_to_half_is_refused_and_explained(data):
    items, _ = data
    for pi in (0.9, 0.0, -0.1):
        with _raises_usage("--pi", "fraction of the unlabelled pixels", "(0, 0.5]"):
            _first(train(items, _config("ge-binomial", expected_per_micrograph=None, pi=pi)))
    assert _first(train(items, _config("ge-binomial", expected_per_micrograph=None, pi=0.5, max_steps=1))).step == 1


def test_expected_count_that_makes_pi_above_half_says_the_most_that_fits(data):
    items, _ = data
    # 96 x 128 px, radius-3 discs of 29 px: pi = 0.5 at 211 particles.
    with _raises_usage("--expected-per-micrograph", "At most 211", "half"):
        _first(train(items, _config("ge-binomial", expected_per_micrograph=100_000)))
    assert _first(train(items, _config("ge-binomial", expected_per_micrograph=211, max_steps=1))).step == 1


def test_negative_autoencoder_weight_and_unknown_device_are_refused(data):
    items, _ = data
    with _raises_usage("--autoencoder", "0 (off) or positive"):
        _first(train(items, _config("ge-binomial", autoencoder=-5)))
    with _raises_usage("--device", "bogus", "cuda:N"):
        _first(train(items, _config("ge-binomial", device="bogus")))
    for name in ("bogus", "cuda:x", "gpu"):
        with _raises_usage("--device", "unknown device"):
            select_device(name)


def test_particle_too_small_or_as_large_as_the_micrograph_is_refused(data):
    items, _ = data
    with _raises_usage("--diameter-a", "0.5 px across", "at least 4"):
        _first(train(items, _config("ge-binomial", particle_diameter_px=0.5)))
    with _raises_usage("--diameter-a", "not smaller than the micrograph"):
        _first(train(items, _config("ge-binomial", particle_diameter_px=500)))


def _shifted(items, dx: float, n: int | None = None):
    """Items whose first ``n`` (default all) labels are moved by ``dx`` pixels in x."""
    out = []
    for it in items:
        x = it.positives.x.copy()
        x[: len(x) if n is None else n] += dx
        out.append(LabeledMicrograph(it.prep, it.positives.replace(x=x), it.negatives))
    return out


def test_labels_all_outside_their_micrographs_are_refused_with_the_fix(data):
    items, _ = data
    # As picks made on a 4x-binned image and read without --scale would be, but the other way.
    with _raises_usage("--labels", "all 24 particle labels fall outside", "--scale", "--flip-y", "128x96"):
        _first(train(_shifted(items, 1000), _config("ge-binomial")))


def test_some_labels_outside_give_a_warning_with_the_count(data, caplog):
    items, _ = data
    caplog.set_level("WARNING", logger="picker_gui")
    gen = train(_shifted(items, -500, n=2), _config("ge-binomial", max_steps=3))
    reports, result = _run(gen)
    expected = "6 of 24 particle labels fall outside their micrographs"
    assert any(expected in w for w in result.warnings)
    assert expected in reports[0].message  # the window shows the first report's message
    assert expected in caplog.text and "m0.mrc (2 of 8)" in caplog.text


def test_validation_ap_that_stays_zero_is_warned_about(data, monkeypatch, caplog):
    import picker_gui.core.training as training

    items, _ = data
    caplog.set_level("WARNING", logger="picker_gui")
    monkeypatch.setattr(training, "_validation_ap", lambda *a, **k: 0.0)
    _, result = _run(train(items, _config("ge-binomial", max_steps=40)))
    assert result.metadata["best_validation_ap"] == 0.0
    assert any("validation AP stayed 0" in w for w in result.warnings)
    assert "validation AP stayed 0" in caplog.text


def test_cancel_before_the_first_validation_keeps_a_validated_trained_model(data):
    items, _ = data
    stop = threading.Event()
    gen = train(items, _config("ge-binomial", max_steps=10_000), stop=stop)

    def on_report(report):
        if report.step == 3:
            stop.set()

    result = run_training(gen, on_report)
    assert result.stopped_by == "cancelled" and result.metadata["steps"] == 3
    # Not the untrained start: the weights of step 3, with their validation AP.
    assert result.metadata["best_step"] == 3
    assert 0.0 <= result.metadata["best_validation_ap"] <= 1.0


def test_init_state_is_where_training_starts_and_must_fit_the_architecture(data):
    from picker_gui.core.models import PickerNet
    from picker_gui.core.training import untrained_result

    items, _ = data
    torch.manual_seed(123)
    start = PickerNet("conv31", 8)
    state = {k: v.clone() for k, v in start.state_dict().items()}
    stop = threading.Event()
    stop.set()  # stopped before the first step: the starting weights come back
    result = run_training(train(items, _config("ge-binomial"), stop=stop, init_state=state))
    assert result.metadata["steps"] == 0 and result.stopped_by == "cancelled"
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # The same without setting up a run (a caller stopped while preprocessing).
    quick = untrained_result(items, _config("ge-binomial"), state, {"downsample": 1.0})
    assert quick.metadata["steps"] == 0 and quick.metadata["downsample"] == 1.0 and quick.metadata["pi"] > 0
    for k, v in quick.model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(ValueError, match="do not fit the conv47 architecture"):
        next(train(items, _config("ge-binomial", architecture="conv47"), init_state=state))


# -- saving and loading ----------------------------------------------------------------------
def test_save_model_is_atomic_and_leaves_no_temporary_file(data, tmp_path, monkeypatch):
    items, _ = data
    from picker_gui.core.models import PickerNet

    model = PickerNet("conv31", 8)
    path = save_model(tmp_path / "model.pt", model, {"downsample": 1.0})
    before = path.read_bytes()

    def failing_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a mod")
        raise OSError(28, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_model(path, model, {"downsample": 2.0})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_file_that_is_not_a_model_says_so_without_torch_internals(tmp_path):
    from picker_gui.core.errors import PickerError

    for name, content in (("zeros.pt", b"\0" * 20), ("empty.pt", b""), ("text.pt", b"not a model")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(PickerError) as info:
            load_model(tmp_path / name)
        message = str(info.value)
        assert message == f"{tmp_path / name}: not a picker-gui model (not a file saved by 'picker-gui train')"
    # A torch file of the wrong content: the missing entry is worth saying.
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(PickerError, match=r"not a file saved by 'picker-gui train'; no 'state_dict' and no 'metadata' entry"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(PickerError, match="is a folder"):
        load_model(tmp_path)


def test_weight_averaging_is_kept_when_asked():
    from picker_gui.core.training import _ema_update

    torch.manual_seed(0)
    a, m = PickerNet("conv31", 4), PickerNet("conv31", 4)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    _ema_update(a, m, 0.9)
    for k, v in a.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * before[k] + 0.1 * m.state_dict()[k])
        else:
            assert torch.equal(v, m.state_dict()[k])  # counters are copied


def test_training_with_weight_averaging_validates_and_returns_the_average(data):
    train_items, _ = data
    seen = []
    reports, result = _run(train(train_items, _config("ge-binomial", ema=0.9, max_steps=40, selection="last"),
                                 on_validation=lambda r, m: seen.append({k: v.clone() for k, v in m.state_dict().items()})))
    assert result.metadata["steps"] == 40 and seen
    # The model validated last is the one returned: the average, not the raw weights.
    final = result.model.state_dict()
    assert all(torch.equal(final[k].cpu(), seen[-1][k].cpu()) for k in final)


def test_validation_that_decides_nothing_is_rationed_to_its_share_of_the_time(data):
    items, _ = data
    base = dict(max_steps=60, eval_every=20, patience=None, selection="last")

    def checks(**kw):
        reports, _ = _run(train(items, _config("ge-binomial", **{**base, **kw})))
        return [r.step for r in reports if r.val_ap is not None]

    assert checks(validation_share=None) == [20, 40, 60]
    # Any validation takes more than a billionth of the time: after the first check, the
    # ones due are postponed; the final model is still validated.
    assert checks(validation_share=1e-9) == [20, 60]
    # Validation that stops the run or picks the model is never postponed.
    assert checks(validation_share=1e-9, patience=50) == [20, 40, 60]
    assert checks(validation_share=1e-9, selection="near-best") == [20, 40, 60]
