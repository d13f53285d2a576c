"""``picker-gui export``: the same bytes as the window's export of the same project, the
project's settings as defaults, and refusals in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from picker_gui.cli import main
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.exporting import ExportRequest, export_picks
from picker_gui.core.formats import read_coordinates
from picker_gui.core.picks import PickStore
from picker_gui.core.project import Project

THRESHOLD, MIN_DISTANCE, SKIPPED = 0.4, 45.0, ["mic_c"]


def _picks(per_mic: int = 150) -> CoordinateTable:
    """Full-precision candidates on non-square micrographs, as a pick job leaves them."""
    rng = np.random.default_rng(7)
    parts = [CoordinateTable.from_arrays(f"{name}.mrc", rng.uniform(0, 3838, per_mic), rng.uniform(0, 3710, per_mic),
                                         rng.normal(0, 2, per_mic), source="picker-gui")
             for name in ("mic_a", "mic_b", "mic_c", "mic_d")]
    return CoordinateTable.concat(parts)


@pytest.fixture
def project(tmp_path) -> Project:
    mics = tmp_path / "mics"
    mics.mkdir()
    project = Project.create(tmp_path / "proj", mics, diameter_a=150.0)
    project.save_picks(_picks(), "model-1")
    project.settings.threshold = THRESHOLD
    project.settings.min_distance_px = MIN_DISTANCE
    project.settings.skipped = list(SKIPPED)
    project.save_settings()
    return project


def _window_export(out: Path, fmt: str, **kw) -> list[Path]:
    """What the window does: its PickStore (filled from the pick job, full precision) with the
    project's least distance, and the dialog's request."""
    store = PickStore(MIN_DISTANCE)
    store.set_table(_picks(), "model-1")
    request = ExportRequest(path=out, fmt=fmt, threshold=kw.pop("threshold", THRESHOLD), skipped=tuple(SKIPPED), **kw)
    return export_picks(store, request).files


def _bytes(files, root: Path) -> dict:
    return {Path(f).relative_to(root): Path(f).read_bytes() for f in files}


def _tree(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt,name,extra", [
    ("star-particles", "particles.star", []),
    ("relion", "relion", []),
    ("box", "boxes", ["--box-size", "256"]),
    ("csv", "picks.csv", []),
])
def test_cli_writes_the_same_bytes_as_the_window(tmp_path, project, capsys, fmt, name, extra):
    cli_root, win_root = tmp_path / "cli", tmp_path / "win"
    rc = main(["export", str(project.folder), "--out", str(cli_root / name), "--format", fmt, *extra])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote ") and "1 skipped micrograph left out" in line
    box = {"box_size": 256.0} if fmt == "box" else {}
    window_files = _window_export(win_root / name, fmt, **box)
    assert _tree(cli_root) == _bytes(window_files, win_root) and _tree(cli_root)
    back = read_coordinates(cli_root / name, fmt, box_size=256)
    assert "mic_c" not in back.micrographs() and np.all(back.x < 3838 + 1) and np.all(back.y < 3710 + 1)


def test_cli_options_override_the_project_settings(tmp_path, project, capsys):
    args = ["--threshold", "-1.5", "--min-distance-px", "0", "--include-skipped", "--micrographs", "mic_b", "mic_c.mrc"]
    assert main(["export", str(project.folder), "--out", str(tmp_path / "cli.csv"), *args]) == 0
    window = _window_export(tmp_path / "win.csv", "csv", threshold=-1.5, micrographs=("mic_b", "mic_c"),
                            exclude_skipped=False)
    # Not the window's least distance: the option's 0 wins over the project's 45.
    store = PickStore(0.0)
    store.set_table(_picks())
    expected = export_picks(store, ExportRequest(tmp_path / "exp.csv", "csv", -1.5, micrographs=("mic_b", "mic_c"),
                                                 exclude_skipped=False))
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "exp.csv").read_bytes()
    assert (tmp_path / "cli.csv").read_bytes() != window[0].read_bytes()
    assert read_coordinates(tmp_path / "cli.csv").micrographs() == ["mic_b", "mic_c"]
    assert f"wrote {expected.n_particles:,} particles on 2 micrographs" in capsys.readouterr().out


def test_cli_takes_the_micrograph_folder_and_the_remembered_relion_star(tmp_path, capsys):
    mics = tmp_path / "mics"
    (mics / "MotionCorr" / "job002" / "Movies").mkdir(parents=True)
    for key in ("mic_a", "mic_b", "mic_c", "mic_d"):
        (mics / "MotionCorr" / "job002" / "Movies" / f"{key}.mrc").write_bytes(b"")
    star = mics / "micrographs_ctf.star"
    star.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\n"
                    + "".join(f"MotionCorr/job002/Movies/mic_{k}.mrc\n" for k in "abcd"))
    project = Project.create(mics / "picker-gui", mics)
    project.save_picks(_picks(), "model-1")
    project.settings.relion_micrographs = str(star)
    project.save_settings()
    out = mics / "AutoPick" / "job099" / "autopick.star"
    assert main(["export", str(mics), "--out", str(out), "--format", "relion-list"]) == 0
    text = out.read_text()
    assert "MotionCorr/job002/Movies/mic_a.mrc" in text and "AutoPick/job099/coordinates/mic_a_autopick.star" in text
    assert "to " + str(out) in capsys.readouterr().out


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_refuses_a_project_without_picks(tmp_path, capsys):
    mics = tmp_path / "mics"
    mics.mkdir()
    project = Project.create(tmp_path / "proj", mics)
    assert main(["export", str(project.folder), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no picks" in _error(capsys)
    assert not (tmp_path / "x.csv").exists()


def test_cli_refuses_a_folder_that_is_not_a_project(tmp_path, capsys):
    (tmp_path / "mics").mkdir()
    (tmp_path / "mics" / "a.mrc").write_bytes(b"")
    assert main(["export", str(tmp_path / "mics"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no picker-gui project" in _error(capsys)


def test_cli_refuses_an_output_that_is_an_input(project, capsys):
    labels_before = project.labels_path.read_bytes()
    picks_before = project.picks_path.read_bytes()
    assert main(["export", str(project.folder), "--out", str(project.labels_path), "--format", "labels"]) == 2
    assert "also an input" in _error(capsys)
    assert main(["export", str(project.folder), "--out", str(project.picks_path), "--format", "star-particles"]) == 2
    assert "also an input" in _error(capsys)
    assert main(["export", str(project.folder), "--out", str(project.folder), "--format", "relion"]) == 2
    assert "where the input" in _error(capsys)
    assert project.labels_path.read_bytes() == labels_before and project.picks_path.read_bytes() == picks_before
    assert not list(project.folder.glob("*_autopick.star"))


def test_cli_refuses_unknown_micrographs_and_an_empty_selection(tmp_path, project, capsys):
    assert main(["export", str(project.folder), "--out", str(tmp_path / "x.csv"), "--micrographs", "nope"]) == 2
    assert "--micrographs" in _error(capsys)
    assert main(["export", str(project.folder), "--out", str(tmp_path / "x.csv"), "--threshold", "100"]) == 2
    assert "nothing to export" in _error(capsys)
    assert not (tmp_path / "x.csv").exists()
    assert main(["export", str(project.folder), "--out", str(tmp_path / "b"), "--format", "box"]) == 2
    assert "--box-size" in _error(capsys)
