"""The window driven through its menus, shortcuts and dialogs, as a user drives it (the
methods behind them are tested elsewhere; these catch what only the real path breaks, such as
QAction.triggered passing ``checked=False`` into a slot's first argument)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QDialog, QFileDialog, QToolBar, QToolButton

from picker_gui.core.formats import read_coordinates, write_coordinates
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.project import Project, remember_project
from picker_gui.gui import dialogs
from tests.conftest import write_mrc

from .conftest import COLS, ROWS
from .helpers import answer_dialog, menu_action, texts_of
from .test_window import click, points


@pytest.fixture
def accept_import(monkeypatch):
    """The import options dialog answers OK with its defaults."""
    monkeypatch.setattr(dialogs.ImportDialog, "exec", lambda self: QDialog.DialogCode.Accepted)


def _coords_file(tmp_path, window, n=3) -> Path:
    name = window.paths[window.current].name
    table = CoordinateTable.from_arrays(name, 30 + 40 * np.arange(n), 50 + 20 * np.arange(n))
    path = tmp_path / "picks.star"
    write_coordinates(table, path, "star-particles")
    return path


def test_file_import_from_the_menu_imports(qtbot, window, tmp_path, monkeypatch, accept_import):
    path = _coords_file(tmp_path, window)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    menu_action(window, "File", "Import labels").trigger()
    assert len(points(window)) == 3


def test_import_of_json_picks_from_the_menu(qtbot, window, tmp_path, monkeypatch, accept_import):
    """Magellon-style ``<micrograph>_picks.json`` through File > Import labels; the dialog offers .json."""
    stem = window.paths[window.current].stem
    path = tmp_path / f"{stem}_picks.json"
    path.write_text('[{"x": 30, "y": 50, "score": 2.5, "id": "tp-0"}, {"x": 90, "y": 70, "score": 1.0, "id": "tp-1"}]')
    offered = []

    def fake_dialog(*args, **kwargs):
        offered.append(args[3] if len(args) > 3 else kwargs.get("filter", ""))
        return str(path), ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_dialog))
    menu_action(window, "File", "Import labels").trigger()
    assert "*.json" in offered[0]
    assert sorted(map(tuple, np.round(points(window)).tolist())) == [(30.0, 50.0), (90.0, 70.0)]


def test_import_matches_suffixed_names_and_reports_the_rest(qtbot, window, tmp_path, monkeypatch, accept_import):
    """Names match as the consensus sets' do (``<mic>_DW_autopick``), and the status line says
    which micrographs of the file are not in the project."""
    stem = window.paths[window.current].stem
    table = CoordinateTable.from_arrays([f"MotionCorr/job002/{stem}_DW.mrc", "elsewhere/other_mic.mrc"], [40, 60], [50, 70])
    path = tmp_path / "picked.star"
    write_coordinates(table, path, "star-particles")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    menu_action(window, "File", "Import labels").trigger()
    assert np.round(points(window)).tolist() == [[40.0, 50.0]]
    assert "other_mic" in window.statusBar().currentMessage()


def test_import_by_its_shortcut_and_undo_from_the_edit_menu(qtbot, window, tmp_path, monkeypatch, accept_import):
    path = _coords_file(tmp_path, window, n=2)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    qtbot.keyClick(window, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert len(points(window)) == 2
    menu_action(window, "Edit", "Undo Import picks.star").trigger()
    assert len(points(window)) == 0
    menu_action(window, "Edit", "Redo Import picks.star").trigger()
    assert len(points(window)) == 2


@pytest.mark.parametrize("filter_index, fmt, name", [(0, "star-particles", "out.star"), (3, "box", "boxes"), (5, "csv", "out.csv")])
def test_file_export_from_the_menu_writes_the_chosen_format(qtbot, window, tmp_path, monkeypatch, filter_index, fmt, name):
    from picker_gui.gui.main_window import MainWindow

    click(qtbot, window, 100, 100)
    click(qtbot, window, 220, 150)
    chosen = list(MainWindow.EXPORT_FILTERS)[filter_index]
    target = tmp_path / name
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), chosen)))
    menu_action(window, "File", "Export labels").trigger()
    back = read_coordinates(target, fmt if fmt == "box" else None)
    assert sorted(np.round(back.x)) == [100, 220]


def test_export_by_its_shortcut(qtbot, window, tmp_path, monkeypatch):
    click(qtbot, window, 100, 100)
    target = tmp_path / "picks.txt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "Topaz text (*.txt)")))
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert len(read_coordinates(target)) == 1


def _second_folder(tmp_path) -> Path:
    folder = tmp_path / "other"
    folder.mkdir()
    write_mrc(folder / "b_0.mrc", np.random.default_rng(5).normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=2.0)
    return folder


def test_open_from_the_menu_asks_for_the_new_projects_size_and_switches(qtbot, window, tmp_path, monkeypatch):
    click(qtbot, window, 100, 100)
    first = window.project.folder
    folder = _second_folder(tmp_path)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    seen: list = []

    def fill(dialog) -> None:
        dialog.diameter.setValue(222)

    answer_dialog("Create project", then=fill, seen=seen)
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert isinstance(seen[0], dialogs.NewProjectDialog)
    assert "2 Å/px" in texts_of(seen[0]) and "from the header" in texts_of(seen[0])
    assert window.project.folder == folder / "picker-gui"
    assert window.project.settings.diameter_a == 222
    assert list(window.paths) == ["b_0"]
    assert len(Project.open(first).labels) == 1  # the first project was saved before switching


def test_cancelling_the_new_project_dialog_makes_nothing(qtbot, window, tmp_path, monkeypatch):
    folder = _second_folder(tmp_path)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    answer_dialog("Cancel")
    menu_action(window, "File", "Open folder or project").trigger()
    assert not (folder / "picker-gui").exists()
    assert window.project.folder != folder / "picker-gui"


def test_recent_projects_are_in_the_file_menu(qtbot, window, tmp_path):
    from picker_gui.gui.opening import open_target

    other = open_target(_second_folder(tmp_path), new_settings={"diameter_a": 60.0})
    other.project.lock.release()
    remember_project(other.project.folder)
    menu_action(window, "File", "Open recent").menu().aboutToShow.emit()  # as opening the submenu does
    recent = [a for a in window.recent_menu.actions() if "other" in a.toolTip()]
    assert recent
    recent[0].trigger()
    assert window.project.folder == other.project.folder and window.project.settings.diameter_a == 60.0


def test_a_mistyped_folder_creates_nothing_and_says_so(qtbot, tmp_path):
    from picker_gui.gui.opening import open_target

    errors: list[str] = []
    missing = tmp_path / "no" / "such" / "folder"
    assert open_target(missing, errors=errors) is None
    assert "no such file or folder" in errors[0] and str(missing) in errors[0]
    assert not (tmp_path / "no").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert open_target(empty, errors=errors) is None
    assert "no micrographs" in errors[1]
    assert list(empty.iterdir()) == []
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert open_target(text, errors=errors) is None
    assert "notes.txt" in errors[2] and "not a folder of micrographs" in errors[2]


def test_the_command_line_shows_a_bad_folder_in_the_start_choice(qtbot, tmp_path, monkeypatch):
    from picker_gui.gui import app

    shown = []

    def fake_exec(self):
        shown.append(texts_of(self))
        return QDialog.DialogCode.Rejected

    monkeypatch.setattr(dialogs.StartDialog, "exec", fake_exec)
    missing = tmp_path / "mistyped"
    assert app.run(str(missing)) == 1
    assert shown and str(missing) in shown[0] and "no such file or folder" in shown[0]
    assert not missing.exists()


def test_a_micrograph_path_opens_its_folder_on_that_micrograph(qtbot, mic_folder):
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    opened = open_target(mic_folder / "mic_2.mrc", new_settings={"diameter_a": 40.0})
    win = MainWindow(opened.project, opened.warnings, select=opened.select)
    qtbot.addWidget(win)
    assert win.current == "mic_2"
    win.close()


def test_start_choice_lists_recent_projects_and_opens_one(qtbot, mic_folder, monkeypatch):
    from picker_gui.gui import app, opening
    from picker_gui.gui.opening import open_target

    opened = open_target(mic_folder, new_settings={"diameter_a": 40.0})
    opened.project.lock.release()
    remember_project(opened.project.folder)
    seen: list = []
    answer_dialog("Open project", seen=seen)
    chosen = opening.choose_start(app.create_app())
    assert chosen is not None and chosen.project.folder == opened.project.folder
    assert seen[0].recent.count() == 1
    chosen.project.lock.release()


def test_the_demo_project_opens_with_its_sparse_labels(qtbot, tmp_path):
    from picker_gui.core.demo_data import demo_project_setup, write_sparse_labels
    from picker_gui.core.synthetic import SyntheticConfig, write_demo_dataset
    from picker_gui.gui.opening import open_target
    import dataclasses

    config = dataclasses.replace(SyntheticConfig(), shape=(256, 320))
    dataset = write_demo_dataset(tmp_path / "demo", n_micrographs=4, seed=0, config=config)
    labels = write_sparse_labels(tmp_path / "demo", dataset.particles, 5, 0)
    settings, table = demo_project_setup(tmp_path / "demo")

    def add(project):
        project.labels = table
        project.save_labels()

    opened = open_target(tmp_path / "demo" / "micrographs", new_settings=settings, on_create=add)
    assert len(opened.project.labels) == len(labels) > 0
    assert opened.project.settings.diameter_a == dataset.diameter_a
    opened.project.lock.release()


def test_the_negative_mode_button_names_itself(qtbot, window):
    toolbar = window.findChild(QToolBar, "main toolbar")
    button = toolbar.widgetForAction(window.act_negative)
    assert isinstance(button, QToolButton)
    assert button.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonTextBesideIcon
    assert button.text() == "Negatives"


def test_long_micrograph_names_are_elided_in_the_middle(qtbot, window):
    assert window.mic_list.table.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_an_unexpected_error_is_shown_in_the_window(qtbot, monkeypatch):
    from PyQt6.QtWidgets import QMessageBox

    from picker_gui.gui import app

    app.create_app()
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: shown.append((self.text(), self.detailedText())))
    try:
        raise KeyError("boom")
    except KeyError as exc:
        app.show_unexpected_error(type(exc), exc, exc.__traceback__)
    assert shown and "KeyError" in shown[0][0] and "Traceback" in shown[0][1]


def test_export_for_relion_asks_for_the_micrographs_star_and_matches_its_names(qtbot, window, tmp_path, monkeypatch):
    import starfile

    from picker_gui.gui.main_window import MainWindow

    project = tmp_path / "relion"
    movies = project / "MotionCorr" / "job002" / "Movies"
    movies.mkdir(parents=True)
    for key in window.paths:
        (movies / f"{key}.mrc").write_bytes(b"")
    star = project / "CtfFind" / "job003" / "micrographs_ctf.star"
    star.parent.mkdir(parents=True)
    star.write_text("data_micrographs\nloop_\n_rlnMicrographName #1\n" + "".join(f"MotionCorr/job002/Movies/{k}.mrc\n" for k in window.paths))
    click(qtbot, window, 100, 100)
    out = project / "AutoPick" / "job010" / "autopick.star"
    chosen = [f for f, fmt in MainWindow.EXPORT_FILTERS.items() if fmt == "relion-list"][0]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), chosen)))
    seen: list = []

    def fill(dialog) -> None:
        dialog.star.setText(str(star))
        dialog._check()

    answer_dialog("Export", then=fill, seen=seen)
    menu_action(window, "File", "Export labels").trigger()
    assert isinstance(seen[0], dialogs.RelionNamesDialog) and "1 of 1" in seen[0].status.text()
    listed = starfile.read(out)
    assert listed["rlnMicrographName"].tolist() == [f"MotionCorr/job002/Movies/{window.current}.mrc"]
    assert (project / listed["rlnMicrographCoordinates"][0]).is_file()
    assert window.project.settings.relion_micrographs == str(star)  # remembered for the next export


def test_clicking_a_pick_in_the_gallery_shows_it_in_the_viewer(qtbot, window):
    """The gallery of picks around the threshold, as the user uses it: click one, see it."""
    import numpy as np
    from PyQt6.QtCore import Qt

    rng = np.random.default_rng(2)
    for key in window.paths:
        window.state.picks.set(window.paths[key].name, rng.uniform(30, 370, 40), rng.uniform(30, 270, 40), rng.normal(size=40))
    window.state.threshold = 0.0
    window._refresh_scores()
    qtbot.waitUntil(lambda: window.docks["Gallery"].isVisible() and len(window.gallery.items) > 0, timeout=10_000)
    items = window.gallery.items
    target = next(i for i, it in enumerate(items) if it.key != window.current)
    window.gallery.view.scrollToItem(window.gallery.list_item(target))
    rect = window.gallery.view.visualItemRect(window.gallery.list_item(target))
    qtbot.mouseClick(window.gallery.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.current == items[target].key and window.displayed == window.current, timeout=10_000)
    x0, y0, w, h = window.canvas.view_rect()
    assert x0 < items[target].x < x0 + w and y0 < items[target].y < y0 + h
    assert w < 400  # zoomed in on it
