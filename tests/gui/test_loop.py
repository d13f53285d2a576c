"""The whole loop in the window, on tiny data with real training: label → Train → picks appear
→ drag the threshold → accept a pick → stop → reopen shows the picks."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtWidgets import QAbstractSlider

from picker_gui.core.project import Project
from picker_gui.gui.picking import PREVIEW
from tests.conftest import write_mrc
from tests.core.test_training import _blobs

from picker_gui.core.formats import read_coordinates

from .helpers import answer_dialog, menu_action
from .test_window import click

GUARD_MS = 600_000  # a hung job fails the test instead of hanging it; never a speed limit


@pytest.fixture
def blob_folder(tmp_path):
    folder = tmp_path / "blobs"
    folder.mkdir()
    truths = {}
    for seed in range(3):
        prep, truth = _blobs(seed)
        write_mrc(folder / f"m{seed}.mrc", prep.image, voxel_size=2.0)
        truths[f"m{seed}"] = truth
    return folder, truths


def _window(qtbot, folder):
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    opened = open_target(folder, new_settings={"diameter_a": 16.0})  # 8 px particles at 2 Å/px
    win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=20_000)
    win.picker.train_overrides = {"max_steps": 80, "max_minutes": 1000.0, "seed": 0}
    return win


def test_label_train_pick_threshold_and_accept_a_pick(qtbot, blob_folder):
    folder, truths = blob_folder
    win = _window(qtbot, folder)
    for key, truth in truths.items():
        for x, y in zip(truth.x[:10], truth.y[:10]):  # sparse labels, as a user clicks them
            win.store.add(win.paths[key].name, float(x), float(y))
    assert win.act_finetune.isEnabled() is False
    menu_action(win, "Picker", "Train").trigger()
    assert win.picker.training and win.train_panel.running
    qtbot.waitUntil(lambda: len(win.state.picks.keys()) == 3 and not win.picker.picking, timeout=GUARD_MS)
    # The model was saved in the project and its picks are on screen and in the list.
    model_path = win.project.settings.model_path
    assert model_path and (win.project.models_folder in __import__("pathlib").Path(model_path).parents)
    assert win.train_panel.best() is not None
    shown = len(win.canvas.pick_item.data)
    assert shown == win.state.pick_count(win.current) > 0
    assert win.mic_list.model.entry(win.current).picks == shown
    # Drag the threshold up: fewer picks on screen, in the list and in the panel's count.
    tp = win.threshold_panel
    before_total = win.state.threshold_cost().picks
    for _ in range(300):
        tp.slider.triggerAction(QAbstractSlider.SliderAction.SliderPageStepAdd)
    assert win.state.threshold == pytest.approx(tp.spin.value())
    assert len(win.canvas.pick_item.data) == win.state.pick_count(win.current)
    assert win.state.threshold_cost().picks < before_total
    assert win.mic_list.model.entry(win.current).picks == win.state.pick_count(win.current)
    # Lower it again and accept the best pick of the micrograph shown with a click.
    for _ in range(600):
        tp.slider.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)
    assert win.state.threshold == pytest.approx(tp.slider.minimum() * 0.01 + tp._k_lo * 0.01, abs=0.02)
    best = win.state.picks.picks(win.current, win.state.threshold)
    n_labels = win.store.count(win.current)
    far = [(x, y) for x, y in zip(best.x, best.y)
           if win.store.hit(win.current, x, y, radius=16) is None]
    assert far, "every pick is on a label already"
    x, y = far[0]
    click(qtbot, win, x + 1.0, y - 1.0)  # a click near a pick puts the label on the pick
    assert win.store.count(win.current) == n_labels + 1
    added = win.store.points(win.current)[-1]
    assert tuple(added) == (pytest.approx(x), pytest.approx(y))
    win.undo_stack.undo()
    assert win.store.count(win.current) == n_labels
    # Export through the dialog, as a user does; the command line gives the same bytes.
    out = folder.parent / "exported.star"

    def fill(dialog) -> None:
        dialog.format.setCurrentIndex(dialog.format.findData("star-particles"))
        dialog.destination.setText(str(out))
        dialog.threshold.setValue(0.0)

    answer_dialog("Export", then=fill)
    menu_action(win, "File", "Export picks").trigger()
    assert out.exists()
    table = read_coordinates(out)
    assert len(table) == win.state.threshold_cost(0.0).picks and (table.score >= 0.0).all()
    folder_project = win.project.folder
    shown = win.state.picks.to_table()  # every pick shown at any threshold
    win.close()
    from picker_gui.cli import main

    # The command line picks what the window shows, from the same model.
    cli_picks = folder.parent / "cli_picks.star"
    assert main(["pick", win.project.settings.model_path, str(folder), "--out", str(cli_picks)]) == 0
    back = read_coordinates(cli_picks)

    def rows(table):
        return sorted(zip(table.keys, np.round(table.x, 2), np.round(table.y, 2), table.score))

    a, b = rows(back), rows(shown)
    assert len(a) == len(b) > 0 and [r[:3] for r in a] == [r[:3] for r in b]  # the same picks
    assert np.allclose([r[3] for r in a], [r[3] for r in b], atol=1e-5)  # with the same scores (6 decimals in STAR)

    cli_out = folder.parent / "cli.star"
    assert main(["export", str(folder_project), "--out", str(cli_out), "--threshold", "0"]) == 0
    assert cli_out.read_bytes() == out.read_bytes()
    # Reopening shows the picks without scoring again (tied to the model that made them).
    again = Project.open(folder_project)
    assert len(again.picks) > 0 and again.picks_model_id is not None


def test_stop_during_training_keeps_a_usable_model_and_picks(qtbot, blob_folder):
    folder, truths = blob_folder
    win = _window(qtbot, folder)
    win.picker.train_overrides = {"max_steps": 100_000, "max_minutes": 1000.0, "patience": 10_000}
    for key, truth in truths.items():
        for x, y in zip(truth.x[:10], truth.y[:10]):
            win.store.add(win.paths[key].name, float(x), float(y))
    reports = []
    win.picker.training_report.connect(lambda r: reports.append(r) if r.train is not None else None)
    win.start_training()
    qtbot.waitUntil(lambda: len(reports) >= 3, timeout=GUARD_MS)
    # While it learns, the micrograph on screen shows the picks of the best model so far.
    qtbot.waitUntil(lambda: win.state.picks.model_id == PREVIEW and win.current in win.state.picks, timeout=GUARD_MS)
    assert len(win.canvas.pick_item.data) == win.state.pick_count(win.current)
    assert win.picker.training
    win.act_stop.trigger()  # Esc / Picker → Stop
    qtbot.waitUntil(lambda: win.state.model is not None, timeout=GUARD_MS)
    assert win.state.model.metadata["stopped_by"] == "cancelled"
    assert win.state.model.metadata["steps"] < 100_000
    # Picking starts with the kept model; stopping it keeps the picks made so far.
    qtbot.waitUntil(lambda: len(win.state.picks.keys()) >= 1, timeout=GUARD_MS)
    win.act_stop.trigger()
    qtbot.waitUntil(lambda: not win.picker.picking, timeout=GUARD_MS)
    done = len(win.state.picks.keys())
    assert 1 <= done <= 3
    win.close()
    assert len(Project.open(win.project.folder).picks.micrographs()) == done


def test_a_saved_model_can_be_loaded_and_picks(qtbot, blob_folder, tmp_path, monkeypatch):
    from PyQt6.QtWidgets import QFileDialog

    folder, truths = blob_folder
    win = _window(qtbot, folder)
    for key, truth in truths.items():
        for x, y in zip(truth.x[:10], truth.y[:10]):
            win.store.add(win.paths[key].name, float(x), float(y))
    win.start_training()
    qtbot.waitUntil(lambda: len(win.state.picks.keys()) == 3 and not win.picker.picking, timeout=GUARD_MS)
    saved = tmp_path / "mine.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(saved), "")))
    menu_action(win, "Picker", "Save model as").trigger()
    assert saved.exists()
    win.state.picks.clear()
    win.state.set_model(None)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(saved), "")))
    menu_action(win, "Picker", "Load model").trigger()
    qtbot.waitUntil(lambda: len(win.state.picks.keys()) == 3 and not win.picker.picking, timeout=GUARD_MS)
    assert np.isfinite(win.state.picks.scores()).all()
    win.close()


def test_the_general_model_suggests_picks_before_any_label(qtbot, tmp_path):
    from pathlib import Path

    from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    folder = tmp_path / "mics"
    folder.mkdir()
    truths = {}
    for m in generate_micrographs(2, SyntheticConfig(shape=(768, 768)), seed=21):
        write_mrc(folder / f"{m.name}.mrc", m.image, voxel_size=m.pixel_size_a)
        truths[m.name] = m.particles
    opened = open_target(folder, new_settings={"diameter_a": 150.0})
    win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=20_000)
    assert win.state.model is None and win.act_pick.isEnabled() is False
    menu_action(win, "Picker", "Suggest picks with the general model").trigger()
    qtbot.waitUntil(lambda: len(win.state.picks.keys()) == 2 and not win.picker.picking, timeout=GUARD_MS)
    assert win.state.model.metadata["zero_shot"] is True
    assert Path(win.project.settings.model_path).parent == win.project.models_folder
    assert len(win.canvas.pick_item.data) == win.state.pick_count(win.current) > 0
    # The suggestions sit on particles: the best-scored ones, as many as there are particles,
    # find most of them.
    for key, truth in truths.items():
        picks = win.state.picks.picks(key, -np.inf)  # highest score first
        n = len(truth)
        d = np.hypot(picks.x[:n, None] - truth.x[None], picks.y[:n, None] - truth.y[None])
        assert (d.min(axis=0) < 22).mean() > 0.8, key
    # Label a few of the suggestions and train: the run starts from the general model and
    # its picks replace the suggestions.
    for key, truth in truths.items():
        for x, y in zip(truth.x[:8], truth.y[:8]):
            win.store.add(win.paths[key].name, float(x), float(y))
    win.picker.train_overrides = {"max_steps": 20, "max_minutes": 1000.0, "seed": 0}
    suggested = win.state.model.metadata["model_id"]
    menu_action(win, "Picker", "Train").trigger()
    qtbot.waitUntil(lambda: not win.picker.training and win.state.model.metadata["model_id"] != suggested
                    and len(win.state.picks.keys()) == 2 and not win.picker.picking, timeout=GUARD_MS)
    assert not win.state.model.metadata.get("zero_shot")
    assert win.state.model.metadata["started_from"].startswith("general model")
    assert win.state.picks.model_id == win.state.model.metadata["model_id"]
