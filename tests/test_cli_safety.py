"""The command line never writes over its inputs, checks its outputs and options before any
work, explains settings that cannot work, reports every expected error in one line, and
saves the best model on Ctrl-C.

No test here depends on how fast the machine is: training runs are bounded by steps, and
the only timeout (waiting for a subprocess) is a generous guard against a hang.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from picker_gui.cli import main
from picker_gui.core.models import PickerNet, load_model, save_model
from tests.conftest import write_mrc

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _error_line(capsys) -> str:
    """The one error line, after any warnings that came before it; never a traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


def _star(path: Path, names, xs, ys) -> Path:
    starfile.write(
        {"particles": pd.DataFrame({"rlnMicrographName": list(names), "rlnCoordinateX": list(xs), "rlnCoordinateY": list(ys)})},
        path,
    )
    return path


@pytest.fixture
def blobs(tmp_path):
    """Three 128x96 micrographs at 2 Å/px with 8-px (16 Å) particles; 10 labels on each."""
    from tests.core.test_training import _blobs

    mics = tmp_path / "mics"
    mics.mkdir()
    rows = []
    for seed in range(3):
        prep, truth = _blobs(seed)
        write_mrc(mics / f"m{seed}.mrc", prep.image, voxel_size=2.0)
        rows += [(f"m{seed}.mrc", x, y) for x, y in list(zip(truth.x, truth.y))[:10]]
    names, xs, ys = zip(*rows)
    labels = _star(tmp_path / "labels.star", names, xs, ys)
    return mics, labels


def _train_args(mics, labels, out, *extra) -> list[str]:
    return ["train", str(mics), "--labels", str(labels), "--diameter-a", "16", "--device", "cpu",
            "--epochs", "1", "--max-minutes", "10000", "--out", str(out), *extra]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a training step starts: the error must come before."""
    import picker_gui.core.training as training

    def refuse(*a, **k):
        raise AssertionError("training started; the problem should have been found before")

    monkeypatch.setattr(training._Sampler, "batch", refuse)


@pytest.fixture
def no_picking(monkeypatch):
    import picker_gui.core.batch as batch

    def refuse(*a, **k):
        raise AssertionError("picking started; the problem should have been found before")

    monkeypatch.setattr(batch, "batch_pick_job", refuse)


@pytest.fixture
def model_x2(tmp_path):
    """An (untrained) model saved as if trained on 1 Å/px micrographs downsampled x2."""
    meta = {
        "downsample": 2.0,
        "downsampled_pixel_size_a": 2.0,
        "original_pixel_size_a": 1.0,
        "normalization": "affine",
        "particle_diameter_a": 16.0,
        "particle_diameter_px": 8.0,
        "nms_radius_px": 4.0,
    }
    return save_model(tmp_path / "model.pt", PickerNet("conv31", 8), meta)


# -- item 1: outputs are never inputs, and are checked before the work ----------------------
def test_preprocess_into_its_input_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a", "b"):
        write_mrc(raw / f"{name}.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=1.0)
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    assert main(["preprocess", str(raw), "--out", str(raw), "--downsample", "2"]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: --out: ") and "never overwritten" in line
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before  # no preprocess.json either


def test_preprocess_out_that_is_a_file_is_one_line(tmp_path, capsys):
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=1.0)
    (tmp_path / "taken").write_text("x")
    assert main(["preprocess", str(tmp_path / "a.mrc"), "--out", str(tmp_path / "taken")]) == 2
    assert "--out" in _one_line(capsys) and (tmp_path / "taken").read_text() == "x"


def test_preprocess_refuses_two_micrographs_with_the_same_name(tmp_path, capsys):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        write_mrc(tmp_path / folder / "a.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=1.0)
    out = tmp_path / "prep"
    assert main(["preprocess", str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(out)]) == 2
    assert "'a'" in _one_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_preprocess_json_is_written_atomically(tmp_path, monkeypatch, capsys):
    """A disk that fills while preprocess.json is written leaves the previous one whole."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file is being synced")
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=1.0)
    out = tmp_path / "prep"
    assert main(["preprocess", str(tmp_path / "a.mrc"), "--out", str(out), "--downsample", "2", "--no-cache"]) == 0
    before = (out / "preprocess.json").read_text()
    real_fsync = os.fsync

    def fsync(fd):
        if ".preprocess.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    capsys.readouterr()
    assert main(["preprocess", str(tmp_path / "a.mrc"), "--out", str(out), "--downsample", "4", "--no-cache"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (out / "preprocess.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".preprocess.json")]


def test_convert_onto_its_own_input_is_refused(tmp_path, capsys):
    star = _star(tmp_path / "p.star", ["m1.mrc"], [10.0], [20.0])
    before = star.read_bytes()
    assert main(["convert", str(star), str(star)]) == 2
    assert "OUTPUT: " in _one_line(capsys) and star.read_bytes() == before
    boxes = tmp_path / "boxes"
    assert main(["convert", str(star), str(boxes), "--to", "box", "--box-size", "32"]) == 0
    before = {p.name: p.read_bytes() for p in boxes.iterdir()}
    capsys.readouterr()
    assert main(["convert", str(boxes), str(boxes), "--from", "box", "--to", "box", "--box-size", "64"]) == 2
    assert "never overwritten" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in boxes.iterdir()} == before


def test_convert_checks_the_output_format_before_reading(tmp_path, capsys):
    bad = tmp_path / "bad.star"  # malformed: reading it would be the error if it came first
    bad.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 abc\n")
    assert main(["convert", str(bad), str(tmp_path / "out"), "--to", "box"]) == 2
    assert _one_line(capsys).startswith("error: --box-size: ")
    assert main(["convert", str(bad), str(tmp_path / "out")]) == 2  # a folder name: which format?
    assert _one_line(capsys).startswith("error: --to: ")
    (tmp_path / "file.txt").write_text("x")
    assert main(["convert", str(bad), str(tmp_path / "file.txt"), "--to", "relion"]) == 2
    assert "one file per micrograph into a folder" in _one_line(capsys)
    (tmp_path / "folder").mkdir()
    assert main(["convert", str(bad), str(tmp_path / "folder"), "--to", "topaz"]) == 2
    assert "is a folder" in _one_line(capsys)


def test_train_with_an_unwritable_out_fails_before_training(blobs, tmp_path, capsys, no_training):
    mics, labels = blobs
    (tmp_path / "a_file").write_text("x")
    assert main(_train_args(mics, labels, tmp_path / "a_file" / "model.pt")) == 2
    assert _error_line(capsys).startswith("error: --out: ")
    (tmp_path / "folder").mkdir()
    assert main(_train_args(mics, labels, tmp_path / "folder")) == 2
    assert "is a folder" in _error_line(capsys)
    before = labels.read_bytes()
    assert main(_train_args(mics, labels, labels)) == 2
    assert "also an input" in _error_line(capsys) and labels.read_bytes() == before


def test_train_refuses_two_micrographs_with_the_same_name(blobs, tmp_path, capsys, no_training):
    mics, labels = blobs
    other = tmp_path / "other"
    other.mkdir()
    (other / "m0.mrc").write_bytes((mics / "m0.mrc").read_bytes())
    assert main(_train_args(mics, labels, tmp_path / "m.pt")[:2] + [str(other)] + _train_args(mics, labels, tmp_path / "m.pt")[2:]) == 2
    assert "'m0'" in _error_line(capsys)


def test_train_labels_that_name_no_micrograph_are_one_line(blobs, tmp_path, capsys, no_training):
    mics, _ = blobs
    labels = _star(tmp_path / "elsewhere.star", ["x1.mrc", "x2.mrc"], [10.0, 20.0], [10.0, 20.0])
    assert main(_train_args(mics, labels, tmp_path / "m.pt")) == 2
    line = _error_line(capsys)
    assert line.startswith("error: --labels: no label names one of the given micrographs")
    assert "x1, x2" in line and "m0, m1, m2" in line
    assert not (tmp_path / "m.pt").exists()


def test_train_where_no_labelled_micrograph_reads_names_them_in_one_line(tmp_path, capsys, no_training):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("b1", "b2"):
        (bad / f"{name}.mrc").write_bytes(b"\0" * 10)
    labels = _star(tmp_path / "b.star", ["b1.mrc", "b2.mrc"], [10.0, 20.0], [10.0, 20.0])
    assert main(_train_args(bad, labels, tmp_path / "m.pt")) == 2
    line = _error_line(capsys)
    assert line.startswith("error: no labelled micrograph could be read: ")
    assert "b1.mrc" in line and "b2.mrc" in line and not (tmp_path / "m.pt").exists()


def test_pick_box_without_box_size_fails_before_picking(model_x2, tmp_path, capsys, no_picking):
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=1.0)
    assert main(["pick", str(model_x2), str(tmp_path / "a.mrc"), "--out", str(tmp_path / "boxes"), "--format", "box"]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: --box-size: ") and "box_size=" not in line
    assert not (tmp_path / "boxes").exists()
    # A .box file holds one micrograph: two are refused before picking too.
    write_mrc(tmp_path / "b.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=1.0)
    assert main(["pick", str(model_x2), str(tmp_path / "a.mrc"), str(tmp_path / "b.mrc"),
                 "--out", str(tmp_path / "one.box"), "--box-size", "16"]) == 2
    assert "give a folder" in _one_line(capsys)


def test_pick_never_writes_over_the_model_or_a_micrograph(model_x2, tmp_path, capsys, no_picking):
    mic = write_mrc(tmp_path / "a.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=1.0)
    before = model_x2.read_bytes()
    assert main(["pick", str(model_x2), str(mic), "--out", str(model_x2), "--format", "star-particles"]) == 2
    assert "also an input" in _one_line(capsys) and model_x2.read_bytes() == before


def test_pick_refuses_two_micrographs_with_the_same_name(model_x2, tmp_path, capsys, no_picking):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        write_mrc(tmp_path / folder / "a.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=1.0)
    assert main(["pick", str(model_x2), str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "p.star")]) == 2
    assert "'a'" in _one_line(capsys) and not (tmp_path / "p.star").exists()


def test_demo_onto_a_file_is_refused_and_the_file_kept(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(["demo", str(target), "--n-micrographs", "1", "--size", "128x96"]) == 2
    assert "OUTDIR" in _one_line(capsys) and target.read_text() == "mine"


# -- item 3: settings that cannot work are explained, before training -------------------------
@pytest.mark.parametrize(
    "extra, option, words",
    [
        (["--pi", "0.9"], "--pi", ["fraction of the unlabelled pixels", "(0, 0.5]"]),
        (["--expected-per-micrograph", "100000"], "--expected-per-micrograph", ["At most 211"]),
        (["--device", "bogus"], "--device", ["unknown device 'bogus'"]),
        (["--autoencoder", "-5"], "--autoencoder", ["0 (off) or positive"]),
        (["--diameter-a", "100000"], "--diameter-a", ["larger than the micrograph"]),
        (["--diameter-a", "0.001"], "--diameter-a", ["is the diameter in Å"]),
        (["--downsample", "500"], "--downsample", ["downsampling x500"]),
    ],
)
def test_train_settings_that_cannot_work_are_one_line_naming_the_option(blobs, tmp_path, capsys, no_training,
                                                                       extra, option, words):
    mics, labels = blobs
    model = tmp_path / "model.pt"
    assert main(_train_args(mics, labels, model, *extra)) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {option}: "), line
    for word in words:
        assert word in line, (word, line)
    assert not model.exists()


def test_train_labels_all_outside_their_micrographs_are_refused(blobs, tmp_path, capsys, no_training):
    mics, labels = blobs
    table = starfile.read(labels)
    shifted = _star(tmp_path / "binned.star", table["rlnMicrographName"], table["rlnCoordinateX"] * 4,
                    table["rlnCoordinateY"] * 4 + 400)
    assert main(_train_args(mics, shifted, tmp_path / "model.pt")) == 2
    line = _error_line(capsys)
    assert line.startswith("error: --labels: all 30 particle labels fall outside their micrographs")
    assert "picker-gui convert --scale" in line and "--flip-y" in line


# -- item 5: messages ------------------------------------------------------------------------
def test_pick_without_pixel_size_says_what_it_assumed(model_x2, tmp_path, capsys):
    mic = write_mrc(tmp_path / "nopix.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=None)
    assert main(["pick", str(model_x2), str(mic), "--out", str(tmp_path / "p.star"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"{mic}: no pixel size in the header; assumed the model's original pixel size 1 Å (downsampling x2)" in err
    assert "give --pixel-size" in err


def test_pick_radius_is_in_original_pixels(model_x2, tmp_path, capsys):
    """The model downsamples x2: --radius-px 20 keeps picks more than 20 original px apart,
    not 40 (which downsampled pixels would give)."""
    mic = write_mrc(tmp_path / "a.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=1.0)
    out = tmp_path / "p.csv"
    assert main(["pick", str(model_x2), str(mic), "--out", str(out), "--radius-px", "20", "--device", "cpu"]) == 0
    picks = pd.read_csv(out)
    xy = picks[["x", "y"]].to_numpy()
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    nearest = d[~np.eye(len(xy), dtype=bool)].min()
    assert len(xy) > 20 and 20 < nearest < 40, nearest


def test_pick_where_every_micrograph_fails_writes_nothing(model_x2, tmp_path, capsys):
    (tmp_path / "bad1.mrc").write_bytes(b"\0" * 10)
    (tmp_path / "bad2.mrc").write_bytes(b"nothing")
    out = tmp_path / "picks.star"
    assert main(["pick", str(model_x2), str(tmp_path / "bad1.mrc"), str(tmp_path / "bad2.mrc"),
                 "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "bad1.mrc" in err and "bad2.mrc" in err and "all 2 micrographs failed" in err
    assert "nothing written" in err and not out.exists()


def test_pick_with_a_file_that_is_not_a_model_has_no_torch_text(tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text("just some text")
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(128, 192)).astype(np.float32), voxel_size=1.0)
    assert main(["pick", str(bad), str(tmp_path / "a.mrc"), "--out", str(tmp_path / "p.star"), "--device", "cpu"]) == 2
    line = _one_line(capsys)
    assert line == f"error: {bad}: not a picker-gui model (not a file saved by 'picker-gui train')"


# -- item 4: one line for every expected error; bugs leave a traceback file -------------------
def test_an_os_error_is_one_line_naming_the_file_not_its_temporary_name(tmp_path, capsys, monkeypatch):
    import os

    star = _star(tmp_path / "p.star", ["m1.mrc"], [10.0], [20.0])
    out = tmp_path / "o.star"

    def full_disk(fd):  # the disk fills while the temporary file is flushed: the error names no file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["convert", str(star), str(out)]) == 2
    assert _one_line(capsys) == f"error: cannot write {out}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.star"]


def test_a_bug_is_one_line_and_its_traceback_is_saved(tmp_path, capsys, monkeypatch):
    import picker_gui.commands.convert as convert_cmd
    from picker_gui.core.paths import user_folder

    star = _star(tmp_path / "p.star", ["m1.mrc"], [10.0], [20.0])

    def bug(*a, **k):
        return 1 / 0

    monkeypatch.setattr(convert_cmd, "read_coordinates", bug)
    assert main(["convert", str(star), str(tmp_path / "o.star")]) == 1
    line = _one_line(capsys)
    saved = user_folder("cache") / "last-error.txt"
    assert "unexpected error (ZeroDivisionError" in line and "this is a bug" in line and str(saved) in line
    text = saved.read_text()
    assert "Traceback" in text and "ZeroDivisionError" in text and "def bug" not in line
    assert main(["-v", "convert", str(star), str(tmp_path / "o.star")]) == 1
    assert "Traceback" in capsys.readouterr().err  # -v prints it as well


def test_keyboard_interrupt_exits_130(tmp_path, capsys, monkeypatch):
    import picker_gui.commands.convert as convert_cmd

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_cmd, "read_coordinates", interrupted)
    star = _star(tmp_path / "p.star", ["m1.mrc"], [10.0], [20.0])
    assert main(["convert", str(star), str(tmp_path / "o.star")]) == 130


# -- item 2: Ctrl-C during training -----------------------------------------------------------
def test_first_ctrl_c_sets_the_flag_the_second_aborts_and_the_handler_is_restored():
    from picker_gui.commands._common import first_interrupt_stops

    before = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        with first_interrupt_stops(stop, "stopping"):
            signal.raise_signal(signal.SIGINT)
            assert stop.is_set()
            signal.raise_signal(signal.SIGINT)
            pytest.fail("the second Ctrl-C did not abort")
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_train_saves_the_best_model_and_exits_130(blobs, tmp_path):
    mics, labels = blobs
    model = tmp_path / "model.pt"
    args = _train_args(mics, labels, model, "--expected-per-micrograph", "30", "--patience", "100000")
    args[args.index("--epochs") + 1] = "100000"  # would run for hours: only Ctrl-C ends it
    # -v logs every step: Ctrl-C goes in once a step is done (the model has trained).
    proc = subprocess.Popen([sys.executable, "-m", "picker_gui", "-v", *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr] + [lines.put(None)], daemon=True).start()
    seen = []
    try:
        while True:
            line = lines.get(timeout=600)  # a guard against a hang, not a speed requirement
            assert line is not None, "train ended before it started training:\n" + "".join(seen)
            seen.append(line)
            if line.startswith("DEBUG: step "):  # a training step is done
                break
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    while (line := lines.get(timeout=60)) is not None:
        seen.append(line)
    err = "".join(seen)
    assert code == 130, err
    assert "interrupted: saved the best model so far (step " in err and str(model) in err
    saved = load_model(model)
    assert saved.metadata["stopped_by"] == "cancelled"
    assert saved.metadata["best_validation_ap"] is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.pt")] == []


def _relion_project(tmp_path):
    """A RELION project folder as RELION leaves it: micrographs under MotionCorr/, their STAR under CtfFind/."""
    project = tmp_path / "relion"
    movies = project / "MotionCorr" / "job002" / "Movies"
    movies.mkdir(parents=True)
    for name in ("mic_001.mrc", "mic_002.mrc"):
        (movies / name).write_bytes(b"")
    ctf = project / "CtfFind" / "job003"
    ctf.mkdir(parents=True)
    (ctf / "micrographs_ctf.star").write_text(
        "data_optics\nloop_\n_rlnOpticsGroup #1\n1\n\ndata_micrographs\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        "MotionCorr/job002/Movies/mic_001.mrc 1\nMotionCorr/job002/Movies/mic_002.mrc 1\n")
    return project, ctf / "micrographs_ctf.star"


def test_convert_to_a_relion_list_uses_the_names_and_paths_relion_resolves(tmp_path):
    import starfile

    from picker_gui.cli import main
    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.formats import read_coordinates, write_coordinates

    project, mic_star = _relion_project(tmp_path)
    picks = tmp_path / "picks.star"
    write_coordinates(CoordinateTable.from_arrays(["mic_001.mrc", "mic_002.mrc"], [10.0, 20.0], [30.0, 40.0]), picks)
    out = project / "AutoPick" / "job099" / "autopick.star"
    assert main(["convert", str(picks), str(out), "--to", "relion-list", "--relion-micrographs", str(mic_star)]) == 0
    listed = starfile.read(out)
    assert listed["rlnMicrographName"].tolist() == ["MotionCorr/job002/Movies/mic_001.mrc", "MotionCorr/job002/Movies/mic_002.mrc"]
    for entry in listed["rlnMicrographCoordinates"]:
        assert not entry.startswith("/") and (project / entry).is_file()  # resolved from RELION's project folder
    back = read_coordinates(out)
    assert sorted(back.x) == [10.0, 20.0]


def test_relion_naming_applies_only_to_formats_that_carry_names(tmp_path, capsys):
    from picker_gui.cli import main
    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.formats import write_coordinates

    _, mic_star = _relion_project(tmp_path)
    picks = tmp_path / "picks.star"
    write_coordinates(CoordinateTable.from_arrays(["mic_001.mrc"], [10.0], [30.0]), picks)
    code = main(["convert", str(picks), str(tmp_path / "o.txt"), "--relion-micrographs", str(mic_star)])
    assert code == 2 and "--relion-micrographs" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()


def test_convert_onto_a_full_disk_keeps_the_old_output_whole(tmp_path):
    """A real full disk, as far as a test can make one: the child process may not write files
    larger than a few kilobytes (RLIMIT_FSIZE), so its write fails half-way with EFBIG."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.formats import write_coordinates

    big = CoordinateTable.from_arrays([f"mic_{i % 7}.mrc" for i in range(5000)], range(5000), range(5000))
    picks = tmp_path / "picks.star"
    write_coordinates(big, picks)
    out = tmp_path / "old.txt"
    out.write_text("image_name\tx_coord\ty_coord\nprecious\t1\t2\n")
    before = out.read_bytes()
    limit = 64 * 1024  # picks.star is larger: its conversion cannot fit

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, "-m", "picker_gui", "convert", str(picks), str(out)], capture_output=True,
                         text=True, preexec_fn=small_disk, env=env, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "Traceback" not in run.stderr
    assert out.read_bytes() == before  # the old output is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt", "picks.star"]  # no half-written file left
