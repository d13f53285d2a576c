"""The Consensus dock, driven as a user does: add two pickers' files through the menu, read
the counts, hide a set, move the consensus slider, train the network, export through the
dialog; the built-in picker as a set; a file that matches no micrograph."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QAbstractSlider, QFileDialog

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.formats import read_coordinates, write_coordinates
from tests.conftest import write_mrc
from tests.core.test_consensus_job import PIXEL, _micrograph

from .helpers import answer_dialog, menu_action

GUARD_MS = 600_000  # a hung job fails the test instead of hanging it; never a speed limit


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "mics"
    folder.mkdir()
    rng = np.random.default_rng(7)
    truth = {}
    for i in range(3):
        image, centres = _micrograph(rng)
        write_mrc(folder / f"mic{i}.mrc", image, voxel_size=PIXEL)
        truth[f"mic{i}"] = centres
    files = {}
    for name, found, seed, suffix in (("cryolo", 0.9, 1, "_DW"), ("topaz", 0.85, 2, "")):
        r = np.random.default_rng(seed)
        parts = []
        for key, c in truth.items():
            keep = r.random(len(c)) < found
            xy = np.concatenate([c[keep] + r.normal(0, 0.3, (keep.sum(), 2)), r.uniform(10, 182, (12, 2))])
            parts.append(CoordinateTable.from_arrays(f"{key}{suffix}.mrc", xy[:, 0], xy[:, 1], score=r.random(len(xy))))
        files[name] = tmp_path / f"{name}.star"
        write_coordinates(CoordinateTable.concat(parts), files[name], "star-particles")
    return folder, truth, files


def _window(qtbot, folder):
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    opened = open_target(folder, new_settings={"diameter_a": 8 * PIXEL})
    win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
    qtbot.addWidget(win)
    win.resize(1300, 850)
    win.show()
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=20_000)
    win.consensus.controller.overrides = {"ensemble": 1, "max_minutes": 1000.0, "input_px": 16, "min_positives": 30,
                                          "box_a": 16 * PIXEL, "seed": 0}
    return win


def _add_file(win, monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    menu_action(win, "Consensus", "Add set from file").trigger()


def test_add_two_sets_see_counts_move_the_slider_train_and_export(qtbot, project, monkeypatch, tmp_path):
    folder, truth, files = project
    win = _window(qtbot, folder)
    view, panel = win.consensus, win.consensus_panel
    _add_file(win, monkeypatch, files["cryolo"])
    _add_file(win, monkeypatch, files["topaz"])
    assert win.docks["Consensus"].isVisible()
    assert [s.name for s in view.state.sets] == ["cryolo", "topaz"]
    assert panel.table.rowCount() == 2
    # Counts for the micrograph shown and in all; names with _DW matched the micrographs.
    total = view.state.counts()
    assert total["and"] > 60 and total["or"] > total["and"]
    text = panel.counts.text()
    assert f"AND {total['and']:,}" in text and f"OR {total['or']:,}" in text and "This micrograph" in text
    # Rings on the micrograph, coloured by votes, and each set's crosses.
    here = view.state.counts(win.current)
    assert win.canvas.consensus_shown() == here["kept"] == here["or"]  # vote fractions 0.5 and 1 >= 0.5
    assert set(win.canvas.set_items) == {"cryolo", "topaz"}
    # Hide a set: its crosses go, the consensus stays.
    panel.table.item(0, 0).setCheckState(Qt.CheckState.Unchecked)
    assert set(win.canvas.set_items) == {"topaz"}
    # The consensus slider: up to 1.0 keeps AND only, on screen and in the counts.
    slider = panel.threshold.slider
    for _ in range(20):
        slider.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepAdd)
    assert view.state.threshold == pytest.approx(1.0)
    assert win.canvas.consensus_shown() == view.state.counts(win.current)["and"] == view.state.kept_count(win.current)
    assert "kept" in panel.threshold.count_label.text()
    # Train the network from the menu: scores in [0, 1], a validation curve drawn.
    menu_action(win, "Consensus", "Train consensus").trigger()
    assert view.controller.training
    qtbot.waitUntil(lambda: _trained(view, panel), timeout=GUARD_MS)
    assert panel.validation_points()
    scores = view.state.scores()
    assert ((scores >= 0) & (scores <= 1)).all() and len(np.unique(np.round(scores, 4))) > 3
    for _ in range(20):  # 0.1 a step: down to 0, then up to 0.5
        slider.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepSub)
    for _ in range(5):
        slider.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepAdd)
    assert view.state.threshold == pytest.approx(0.5)
    kept = view.state.kept_count()
    assert 0 < kept < total["or"]
    # Export through the dialog, as a user does.
    out = tmp_path / "consensus.star"

    def fill(dialog) -> None:
        dialog.format.setCurrentIndex(dialog.format.findData("star-particles"))
        dialog.destination.setText(str(out))

    answer_dialog("Export", then=fill)
    menu_action(win, "Consensus", "Export consensus").trigger()
    table = read_coordinates(out)
    assert len(table) == kept and (table.score >= 0.5).all()


def test_the_built_in_picker_and_a_file_for_other_micrographs(qtbot, project, monkeypatch, tmp_path):
    folder, truth, files = project
    win = _window(qtbot, folder)
    view = win.consensus
    # A file whose micrographs are not these: a clear message, no set.
    other = tmp_path / "other.star"
    write_coordinates(CoordinateTable.from_arrays("elsewhere.mrc", [1.0], [2.0]), other, "star-particles")
    seen = []
    answer_dialog("OK", seen=seen)
    _add_file(win, monkeypatch, other)
    qtbot.waitUntil(lambda: bool(seen), timeout=20_000)
    assert not view.state.sets
    # The built-in picker runs in the background and becomes a set with its own cut.
    menu_action(win, "Consensus", "Add the built-in picker").trigger()
    qtbot.waitUntil(lambda: len(view.state.sets) == 1 and not view.controller.finding, timeout=GUARD_MS)
    dog = view.state.sets[0]
    assert dog.origin == "dog" and dog.threshold is not None and len(dog.table) > 0
    _add_file(win, monkeypatch, files["topaz"])
    assert view.state.counts()["and"] > 30


def test_rank_by_sets_scores_the_picks_without_training(qtbot, project, monkeypatch):
    folder, truth, files = project
    win = _window(qtbot, folder)
    view, panel = win.consensus, win.consensus_panel
    assert not menu_action(win, "Consensus", "Rank by sets").isEnabled()  # nothing to rank yet
    _add_file(win, monkeypatch, files["cryolo"])
    _add_file(win, monkeypatch, files["topaz"])
    n_or = view.state.counts()["or"]
    assert not view.state.scored
    menu_action(win, "Consensus", "Rank by sets").trigger()
    assert view.state.scored and not view.controller.training  # no job: at once
    assert "mean rank in cryolo, topaz" in panel.status.text()
    t = view.state.result.table
    votes = view.state.result.votes
    assert ((t.score > 0) & (t.score <= 1)).all() and len(t) <= n_or
    # Found by both pickers: the mean of two ranks; by one: half of one rank.
    assert t.score[votes == 2].mean() > t.score[votes == 1].mean() + 0.15
    # The slider works on the ranks: at 0.5, fewer picks than OR, every one on screen counted.
    slider = panel.threshold.slider
    for _ in range(20):
        slider.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepSub)
    for _ in range(5):
        slider.triggerAction(QAbstractSlider.SliderAction.SliderSingleStepAdd)
    assert view.state.threshold == pytest.approx(0.5)
    assert 0 < view.state.kept_count() < len(t)
    assert win.canvas.consensus_shown() == view.state.kept_count(win.current)
    # The panel's button does the same; merging again (a set removed) drops the ranks.
    before = np.sort(view.state.scores())
    qtbot.mouseClick(panel.rank, Qt.MouseButton.LeftButton)
    assert view.state.scored
    np.testing.assert_array_equal(np.sort(view.state.scores()), before)  # ranked from the merge again, not the last ranks
    view.state.remove_set("topaz")
    assert not view.state.scored


def _trained(view, panel) -> bool:
    """Training over as the user sees it: the job's thread ends before its queued "finished"
    reaches the window, so wait for the panel's Train button to come back as well."""
    return not view.controller.training and view.state.scored and panel.train.isEnabled()


def test_training_guided_by_the_sets_ranks(qtbot, project, monkeypatch):
    """Tick "Train guided by the sets' ranks", train from the menu: the lowest-ranked picks
    are the network's negatives, and the status line says so."""
    folder, truth, files = project
    win = _window(qtbot, folder)
    view, panel = win.consensus, win.consensus_panel
    _add_file(win, monkeypatch, files["cryolo"])
    _add_file(win, monkeypatch, files["topaz"])
    n_or = view.state.counts()["or"]
    assert not panel.guided.isChecked()
    qtbot.mouseClick(panel.guided, Qt.MouseButton.LeftButton)
    assert panel.guided.isChecked() and view.controller.settings().rank == ("cryolo", "topaz")
    menu_action(win, "Consensus", "Train consensus").trigger()
    assert not panel.guided.isEnabled()  # not while training
    qtbot.waitUntil(lambda: _trained(view, panel), timeout=GUARD_MS)
    rejected = view.state.negatives[view.state.negatives.source == "rejected"]
    assert len(rejected) == round(0.3 * n_or)
    assert f"the {len(rejected):,} picks the sets ranked lowest" in panel.status.text()
    assert panel.guided.isEnabled()
    # Unticked: plain Deep Consensus again.
    qtbot.mouseClick(panel.guided, Qt.MouseButton.LeftButton)
    assert view.controller.settings().rank is None
