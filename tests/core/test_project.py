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
