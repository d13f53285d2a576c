"""The project on disk while the window works: failed saves, two windows, changed files,
names that need quoting, labels files in other formats. Each was a way to lose labels."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PyQt6.QtWidgets import QFileDialog

from picker_gui.core.project import LOCK_FILE, Project, load_labels
from picker_gui.gui import storage
from picker_gui.gui.main_window import MainWindow
from tests.conftest import write_mrc

from .conftest import COLS, ROWS
from .helpers import answer_dialog, menu_action, texts_of
from .test_window import click


def _open_window(qtbot, folder, **kwargs):
    from picker_gui.gui.opening import open_target

    opened = open_target(folder, new_settings={"diameter_a": 40.0}, **kwargs)
    assert opened is not None
    win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only, select=opened.select)
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=10_000)
    return win


@pytest.fixture
def broken_disk(monkeypatch):
    """Project.save_labels fails as on a full disk until ``fixed()`` is called; with
    ``only`` set to a folder, only that project's saves fail (its disk is the full one)."""
    real = Project.save_labels
    state = {"broken": True, "only": None}

    def save(self, labels=None):
        if state["broken"] and state["only"] in (None, self.folder):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.labels_path))
        return real(self, labels)

    monkeypatch.setattr(Project, "save_labels", save)
    state["fixed"] = lambda: state.update(broken=False)
    return state


def test_a_failed_save_is_shown_kept_retried_and_the_edits_survive(qtbot, window, broken_disk):
    before = window.project.labels_path.read_text()
    click(qtbot, window, 100, 100)
    click(qtbot, window, 200, 150)
    qtbot.waitUntil(lambda: window.saver.state == storage.FAILED, timeout=10_000)
    assert window.banner.isVisible() and "not saved" in window.banner.label.text().lower()
    assert "No space left" in window.banner.label.text()
    assert "NOT SAVED" in window.windowTitle()
    assert window.project.labels_path.read_text() == before  # the old file is intact
    assert window.store.count(window.current) == 2  # the edits are kept
    broken_disk["fixed"]()
    window.banner.buttons["Retry now"].click()
    qtbot.waitUntil(lambda: window.saver.state == storage.SAVED, timeout=10_000)
    assert not window.banner.isVisible()
    assert len(load_labels(window.project.labels_path)) == 2


def test_failed_saves_are_retried_by_themselves(qtbot, window, broken_disk):
    window.saver._retry.setInterval(50)
    click(qtbot, window, 100, 100)
    qtbot.waitUntil(lambda: window.saver.state == storage.FAILED, timeout=10_000)
    broken_disk["fixed"]()
    qtbot.waitUntil(lambda: window.saver.state == storage.SAVED, timeout=10_000)
    assert len(load_labels(window.project.labels_path)) == 1


def test_closing_with_unsaved_edits_asks_and_save_elsewhere_keeps_them(qtbot, window, broken_disk, tmp_path, monkeypatch):
    click(qtbot, window, 120, 90)
    qtbot.waitUntil(lambda: window.saver.state == storage.FAILED, timeout=10_000)
    # Cancel: the window stays open with its edits.
    answer_dialog("Cancel")
    assert window.close() is False
    assert window.isVisible() and window.store.count(window.current) == 1
    # Save project as…: a new folder gets the settings and every label.
    elsewhere = tmp_path / "rescued"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(elsewhere)))
    broken_disk["only"] = window.project.folder  # the new folder is on a disk that works
    answer_dialog("Save project as")
    assert window.close() is True
    rescued = Project.open(elsewhere)
    assert len(rescued.labels) == 1 and rescued.settings.diameter_a == 40.0
    assert rescued.settings.micrograph_folder == window.project.settings.micrograph_folder


def test_closing_can_discard_unsaved_edits_when_the_user_says_so(qtbot, window, broken_disk):
    click(qtbot, window, 120, 90)
    qtbot.waitUntil(lambda: window.saver.state == storage.FAILED, timeout=10_000)
    seen: list = []
    answer_dialog("Discard", seen=seen)
    assert window.close() is True
    assert "not saved" in texts_of(seen[0])


def test_saving_runs_off_the_gui_thread(qtbot, window, monkeypatch):
    threads = []
    real = Project.save_labels

    def save(self, labels=None):
        threads.append(threading.current_thread())
        return real(self, labels)

    monkeypatch.setattr(Project, "save_labels", save)
    click(qtbot, window, 100, 100)
    qtbot.waitUntil(lambda: bool(threads), timeout=10_000)
    assert threads[0] is not threading.main_thread()


def test_a_second_window_opens_read_only_and_changes_nothing(qtbot, window, mic_folder, monkeypatch):
    from picker_gui.gui import dialogs

    click(qtbot, window, 100, 100)
    assert window.save_labels()
    asked = []
    monkeypatch.setattr(dialogs, "ask_locked", lambda parent, err: asked.append(err) or "read-only")
    second = _open_window(qtbot, mic_folder)
    assert asked and "open in another picker-gui window" in str(asked[0])
    assert second.saver.state == storage.READ_ONLY and second.banner.isVisible()
    assert "[read-only]" in second.windowTitle()
    click(qtbot, second, 250, 200)
    assert second.store.count(second.current) == 1  # the click changed nothing
    click(qtbot, window, 300, 220)  # the first window goes on saving
    assert window.save_labels()
    second.close()
    assert len(load_labels(window.project.labels_path)) == 2


def test_taking_over_stops_the_first_window_from_writing(qtbot, window, mic_folder, monkeypatch):
    from picker_gui.gui import dialogs

    click(qtbot, window, 100, 100)
    assert window.save_labels()
    monkeypatch.setattr(dialogs, "ask_locked", lambda parent, err: "take-over")
    second = _open_window(qtbot, mic_folder)
    assert second.saver.state == storage.SAVED
    click(qtbot, second, 250, 200)
    assert second.save_labels()
    # The first window notices at its heartbeat (or its next save) and stops writing.
    assert window.saver.check_lock() is False
    assert window.saver.state == storage.LOST and window.banner.isVisible()
    click(qtbot, window, 300, 50)  # refused: the project is no longer this window's
    assert len(load_labels(second.project.labels_path)) == 2
    second.close()


def test_a_stale_lock_is_taken_over_without_asking(qtbot, mic_folder, monkeypatch, tmp_path):
    from picker_gui.gui import dialogs
    from picker_gui.gui.opening import open_target

    first = open_target(mic_folder, new_settings={"diameter_a": 40.0})
    first.project.lock.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = first.project.folder / LOCK_FILE
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "token": "x", "user": "u", "since": 0}))
    monkeypatch.setattr(dialogs, "ask_locked", lambda *a: pytest.fail("asked about a stale lock"))
    again = open_target(mic_folder)
    assert again is not None and not again.read_only
    assert any("stale" in w for w in again.warnings)
    assert again.project.lock.owned()


def test_a_labels_file_changed_by_someone_else_is_kept_not_overwritten(qtbot, window):
    click(qtbot, window, 100, 100)
    assert window.save_labels()
    path = window.project.labels_path
    other = path.read_text().replace("data_negatives", "data_negatives\n# edited elsewhere")
    path.write_text(other)
    os.utime(path, ns=(1, 1))  # and its time, so size and time both changed
    click(qtbot, window, 200, 100)
    assert window.save_labels()
    kept = [p for p in path.parent.iterdir() if p.name.startswith("labels.star.other-")]
    assert len(kept) == 1 and kept[0].read_text() == other
    assert window.banner.isVisible() and "changed outside" in window.banner.label.text()
    assert len(load_labels(path)) == 2


@pytest.mark.parametrize("name", ["mic a.mrc", "it's #1.mrc", "é ü.mrc"])
def test_names_that_need_quoting_keep_their_labels_across_a_reopen(qtbot, tmp_path, name):
    folder = tmp_path / "awkward"
    folder.mkdir()
    write_mrc(folder / name, np.random.default_rng(1).normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=2.0)
    win = _open_window(qtbot, folder)
    click(qtbot, win, 100, 100)
    click(qtbot, win, 200, 120)
    win.close()
    again = _open_window(qtbot, folder)
    assert again.store.count(again.current) == 2
    assert not [p for p in (folder / "picker-gui").iterdir() if "unreadable" in p.name]
    again.close()


def test_a_relion3_labels_file_is_read_and_never_overwritten_empty(qtbot, mic_folder):
    project_folder = mic_folder / "picker-gui"
    win = _open_window(qtbot, mic_folder)
    win.close()
    relion3 = ("\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
               "mic_0.mrc 100.0 120.0\nmic_0.mrc 200.0 50.0\nmic_1.mrc 30.0 40.0\n")
    (project_folder / "labels.star").write_text(relion3)
    again = _open_window(qtbot, mic_folder)
    assert again.store.total() == 3
    originals = [p for p in project_folder.iterdir() if p.name.startswith("labels.star.original")]
    assert len(originals) == 1 and originals[0].read_text() == relion3
    again.close()
    assert len(load_labels(project_folder / "labels.star")) == 3


def test_save_project_as_from_the_file_menu(qtbot, window, tmp_path, monkeypatch):
    click(qtbot, window, 100, 100)
    target = tmp_path / "copy"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(target)))
    menu_action(window, "File", "Save project as").trigger()
    assert window.project.folder == target
    click(qtbot, window, 150, 100)
    assert window.save_labels()
    assert len(Project.open(target).labels) == 2


def test_micrographs_that_differ_only_in_extension_are_reported_not_merged(qtbot, mic_folder):
    import shutil

    from PyQt6.QtWidgets import QMessageBox

    shutil.copy(mic_folder / "mic_1.mrc", mic_folder / "mic_1.map")
    win = _open_window(qtbot, mic_folder)
    assert sorted(win.paths) == ["mic_0", "mic_1", "mic_2"]
    assert win.paths["mic_1"].name == "mic_1.mrc"
    notices = [w for w in win.findChildren(QMessageBox) if "mic_1.map" in w.text()]
    qtbot.waitUntil(lambda: any(n.isVisible() for n in notices), timeout=5000)
    assert "cannot be told apart" in notices[0].text()
    win.close()
