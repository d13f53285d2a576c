from __future__ import annotations

import starfile

import numpy as np
import pytest

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.errors import PickerError
from picker_gui.core.project import LabelFileError, Project, load_labels, recent_projects, remember_project, save_labels


def _labels():
    pos = CoordinateTable.from_arrays(["a.mrc", "a.mrc", "b.mrc"], [10.5, 2000.25, 7.0], [1500.75, 3.0, 9.0], source="manual")
    neg = CoordinateTable.from_arrays("a.mrc", [400.0], [300.0], kind=NEGATIVE, source="manual")
    return CoordinateTable.concat([pos, neg])


def test_labels_round_trip_and_are_plain_star(tmp_path):
    path = tmp_path / "labels.star"
    save_labels(path, _labels())
    back = load_labels(path)
    assert back == _labels()
    blocks = starfile.read(path, always_dict=True)  # an independent reader
    assert list(blocks) == ["particles", "negatives"]
    assert blocks["particles"]["rlnCoordinateX"].tolist() == [10.5, 2000.25, 7.0]
    assert blocks["negatives"]["rlnMicrographName"].tolist() == ["a.mrc"]


def test_empty_labels_round_trip(tmp_path):
    save_labels(tmp_path / "l.star", CoordinateTable.empty())
    assert len(load_labels(tmp_path / "l.star")) == 0
    assert len(load_labels(tmp_path / "absent.star")) == 0


@pytest.mark.parametrize(
    "content",
    [
        "data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\na.mrc\t1.0\tnot-a-number\n",
        "data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\na.mrc\t1.0\n",
        "\x00\x01garbage that is not STAR at all\n",
    ],
)
def test_unreadable_labels_are_kept_aside_never_overwritten(tmp_path, content):
    path = tmp_path / "labels.star"
    path.write_text(content)
    with pytest.raises(LabelFileError) as err:
        load_labels(path)
    kept = err.value.kept_as
    assert kept is not None and kept.read_text() == content
    assert "labels.star" in str(err.value) and kept.name in str(err.value)
    assert not path.exists()  # the next save starts a new file; the old one stays as it was


def test_project_create_open_and_settings(tmp_path):
    mics = tmp_path / "mics"
    mics.mkdir()
    project = Project.create(tmp_path / "proj", mics, diameter_a=190.0)
    project.labels = _labels()
    project.settings.current_micrograph = "b.mrc"
    project.settings.skipped.append("c.mrc")
    project.save_labels()
    project.save_settings()
    again = Project.open(tmp_path / "proj")
    assert again.labels == _labels()
    assert again.settings.diameter_a == 190.0 and again.settings.current_micrograph == "b.mrc"
    assert again.settings.skipped == ["c.mrc"] and again.settings.micrograph_folder == str(mics.resolve())
    with pytest.raises(PickerError, match="already a picker-gui project"):
        Project.create(tmp_path / "proj", mics)
    with pytest.raises(PickerError, match="not a picker-gui project"):
        Project.open(mics)


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    project = Project.create(tmp_path / "p", tmp_path)
    for i in range(5):
        project.labels = CoordinateTable.from_arrays("a.mrc", np.arange(i), np.arange(i))
        project.save_labels()
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["labels.star", "project.json"]


def test_recent_projects_are_remembered_most_recent_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PICKER_GUI_CONFIG", str(tmp_path / "cfg"))
    a = Project.create(tmp_path / "a", tmp_path).folder
    b = Project.create(tmp_path / "b", tmp_path).folder
    remember_project(a)
    remember_project(b)
    remember_project(a)
    assert recent_projects() == [a.resolve(), b.resolve()]


# -- hardening: every way the project files could lose or hide a user's work -------------------
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from picker_gui.core.project import (  # noqa: E402
    LOCK_FILE,
    STALE_AFTER_S,
    ProjectLock,
    ProjectLockedError,
    read_labels,
    resolve_target,
)
from tests.conftest import write_mrc  # noqa: E402


def _mic_folder(tmp_path):
    folder = tmp_path / "mics"
    folder.mkdir()
    write_mrc(folder / "a.mrc", np.zeros((8, 12), np.float32) + np.arange(12, dtype=np.float32))
    return folder


@pytest.mark.parametrize("name", ["a b.mrc", "it's.mrc", 'q"z.mrc', "x#y.mrc", "#lead.mrc", "é ü_ß.mrc", "001"])
def test_labels_with_awkward_names_round_trip(tmp_path, name):
    table = CoordinateTable.concat([
        CoordinateTable.from_arrays(name, [10.5, 20.0], [30.25, 40.0], source="manual"),
        CoordinateTable.from_arrays(name, [5.0], [6.0], kind=NEGATIVE, source="manual"),
    ])
    save_labels(tmp_path / "labels.star", table)
    back, notes = read_labels(tmp_path / "labels.star")
    assert notes == [] and back == table
    assert not [p for p in tmp_path.iterdir() if "unreadable" in p.name]


def test_a_relion3_unnamed_block_is_read_and_the_original_kept(tmp_path):
    text = "\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\na.mrc 10 20\nb.mrc 30 40\n"
    (tmp_path / "labels.star").write_text(text)
    table, notes = read_labels(tmp_path / "labels.star")
    assert len(table) == 2 and sorted(table.micrographs()) == ["a", "b"]
    assert notes and "original is kept" in notes[0]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("labels.star.original")]
    assert len(kept) == 1 and kept[0].read_text() == text


def test_a_star_file_without_coordinates_is_not_read_as_zero_labels(tmp_path):
    text = "data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnVoltage #2\n1 300\n"
    (tmp_path / "labels.star").write_text(text)
    with pytest.raises(LabelFileError) as err:
        read_labels(tmp_path / "labels.star")
    assert err.value.kept_as.read_text() == text


@pytest.mark.parametrize("content", ["[]", '{"version": 1, "settings": null}', '{"settings": {"diameter_a": "big"}}',
                                     '{"settings": {"skipped": 3}}', "{not json"])
def test_a_project_json_of_the_wrong_shape_is_kept_and_recovered(tmp_path, content):
    mics = _mic_folder(tmp_path)
    project = Project.create(mics / "picker-gui", mics)
    project.labels = _labels()
    project.save_labels()
    (project.folder / "project.json").write_text(content)
    again = Project.open(project.folder)
    assert again.settings.micrograph_folder == str(mics.resolve())
    assert len(again.labels) == len(_labels())
    assert again.notes and "project.json" in again.notes[0] and "kept as" in again.notes[0]
    kept = [p for p in project.folder.iterdir() if p.name.startswith("project.json.unreadable")]
    assert len(kept) == 1 and kept[0].read_text() == content


def test_a_broken_project_json_away_from_its_micrographs_is_a_clear_error(tmp_path):
    project = Project.create(tmp_path / "somewhere", tmp_path)
    (project.folder / "project.json").write_text('{"settings": null}')
    with pytest.raises(PickerError, match="settings"):
        Project.open(project.folder)
    assert (project.folder / "project.json").read_text() == '{"settings": null}'


def test_resolve_target_creates_nothing_and_names_the_problem(tmp_path):
    with pytest.raises(PickerError, match="no such file or folder"):
        resolve_target(tmp_path / "typo" / "deeper")
    assert not (tmp_path / "typo").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PickerError, match="no micrographs"):
        resolve_target(empty)
    assert list(empty.iterdir()) == []
    mics = _mic_folder(tmp_path)
    t = resolve_target(mics / "a.mrc")
    assert t.select == "a" and not t.exists and t.n_micrographs == 1 and t.project == mics.resolve() / "picker-gui"


def test_lock_is_exclusive_between_windows_and_can_be_taken_over(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    first, second = ProjectLock(folder), ProjectLock(folder)
    assert first.acquire() is None and first.owned()
    with pytest.raises(ProjectLockedError) as err:
        second.acquire()
    assert "open in another picker-gui window" in str(err.value) and str(os.getpid()) in str(err.value)
    assert first.refresh()
    previous = second.acquire(take_over=True)
    assert previous is not None and previous.token == first.token
    assert first.refresh() is False and not first.owned()  # the first window learns it lost the project
    first.release()  # releasing a lock one no longer holds leaves the holder's alone
    assert second.owned()
    second.release()
    assert not (folder / LOCK_FILE).exists()


def test_a_lock_of_a_dead_process_or_an_old_one_is_stale(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path = folder / LOCK_FILE
    lock_path.write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "token": "t", "user": "u", "since": 1.0}))
    ours = ProjectLock(folder)
    assert ours.acquire().pid == dead.pid  # taken over without take_over=True
    lock_path.write_text(json.dumps({"host": "another-host", "pid": 1, "token": "t", "user": "u", "since": 1.0}))
    assert not ProjectLock(folder).holder().is_stale()
    old = time.time() - STALE_AFTER_S - 10
    os.utime(lock_path, (old, old))
    assert ProjectLock(folder).holder().is_stale()
    lock_path.write_text("garbage")
    assert ProjectLock(folder).acquire() is None  # an unreadable lock holds nothing


def test_a_labels_file_changed_behind_the_projects_back_is_kept_aside(tmp_path):
    project = Project.create(tmp_path / "p", tmp_path)
    project.labels = _labels()
    assert project.save_labels() is None
    other = project.labels_path.read_text() + "\n# someone else\n"
    project.labels_path.write_text(other)
    note = project.save_labels()
    assert note and "changed outside" in note
    kept = [p for p in project.folder.iterdir() if p.name.startswith("labels.star.other-")]
    assert len(kept) == 1 and kept[0].read_text() == other
    assert project.save_labels() is None  # our own write is not a conflict


def test_save_as_copies_settings_and_labels(tmp_path):
    project = Project.create(tmp_path / "p", tmp_path, diameter_a=210.0)
    copy = project.save_as(tmp_path / "q", _labels())
    again = Project.open(tmp_path / "q")
    assert again.labels == _labels() and again.settings.diameter_a == 210.0
    with pytest.raises(PickerError, match="already a picker-gui project"):
        project.save_as(copy.folder)


def test_a_missing_lock_is_written_again_by_its_window(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    lock = ProjectLock(folder)
    lock.acquire()
    (folder / LOCK_FILE).unlink()  # deleted by hand, or never written on a folder that was read-only then
    assert lock.refresh() is True and lock.owned()


def test_picks_round_trip_with_their_model_and_survive_a_reopen(tmp_path):
    project = Project.create(tmp_path / "p", tmp_path)
    picks = CoordinateTable.from_arrays(["a b.mrc", "a b.mrc", "c.mrc"], [1.5, 2.0, 3.0], [4.0, 5.0, 6.0], [0.5, -1.25, 3.0],
                                        source="picker-gui")
    project.save_picks(picks, "0123abcd")
    again = Project.open(project.folder)
    assert again.picks == picks and again.picks_model_id == "0123abcd"
    import starfile

    assert starfile.read(project.picks_path, always_dict=True)["picks"]["rlnAutopickFigureOfMerit"].tolist() == [0.5, -1.25, 3.0]


def test_unreadable_picks_are_kept_aside_and_the_project_opens(tmp_path):
    project = Project.create(tmp_path / "p", tmp_path)
    project.picks_path.write_text("data_picks\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\nm 1 2 3\n")
    again = Project.open(project.folder)
    assert len(again.picks) == 0 and again.notes and "picks" in again.notes[0]
    assert [p.name for p in project.folder.iterdir() if p.name.startswith("picks.star.unreadable")]
