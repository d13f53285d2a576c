"""The command line, run in-process through ``cli.main`` and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from picker_gui.cli import main
from tests.conftest import write_mrc

RNG = np.random.default_rng(3)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "convert", "preprocess"):
        assert command in out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "picker_gui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "preprocess" in out.stdout


def test_preprocess_writes_downsampled_mrc_and_goes_on_past_a_bad_file(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    # Big enough that x4 leaves the 64 px a downsampled micrograph needs on its short side.
    write_mrc(raw / "a.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=2.0)
    (raw / "b.mrc").write_bytes(b"\0" * 10)
    write_mrc(raw / "c.mrc", RNG.normal(size=(256, 384)).astype(np.float32), voxel_size=2.0)
    out = tmp_path / "prep"
    code = main(["preprocess", str(raw), "--out", str(out), "--diameter-a", "150"])
    assert code == 1  # one failed, the others done
    err = capsys.readouterr().err
    assert "b.mrc" in err and "1 of 3 micrographs failed" in err
    for name in ("a", "c"):
        with mrcfile.open(out / f"{name}.mrc") as mrc:
            assert mrc.data.shape == (64, 96)
            assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    summary = json.loads((out / "preprocess.json").read_text())
    assert [m["output"] for m in summary["micrographs"]] == ["a.mrc", "c.mrc"]
    assert summary["micrographs"][0]["scale_x"] == 4.0
    assert "b.mrc" in summary["failed"][0]["file"]


def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "*.mrc"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no file" in err[0]


def test_convert_star_to_box_folder_and_back(tmp_path):
    star = tmp_path / "parts.star"
    starfile.write(
        {
            "particles": pd.DataFrame(
                {
                    "rlnMicrographName": ["mics/m1.mrc", "mics/m1.mrc", "mics/m2.mrc"],
                    "rlnCoordinateX": [100.0, 300.5, 50.0],
                    "rlnCoordinateY": [200.0, 120.0, 1400.0],
                }
            )
        },
        star,
    )
    boxes = tmp_path / "boxes"
    assert main(["convert", str(star), str(boxes), "--to", "box", "--box-size", "64"]) == 0
    lines = (boxes / "m1.box").read_text().split("\n")
    assert lines[0].split()[:4] == ["68", "168", "64", "64"]
    back = tmp_path / "back.star"
    assert main(["convert", str(boxes), str(back), "--from", "box"]) == 0
    table = starfile.read(back)
    got = np.array(sorted(zip(table["rlnCoordinateX"], table["rlnCoordinateY"])))
    np.testing.assert_allclose(got, sorted([(100.0, 200.0), (300.5, 120.0), (50.0, 1400.0)]))


def test_convert_flip_y_needs_a_height(tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("image_name\tx_coord\ty_coord\nm1\t10\t20\n")
    assert main(["convert", str(src), str(tmp_path / "o.star"), "--flip-y"]) == 2
    assert "--image-height" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.star"), "--flip-y", "--image-height", "1536", "--scale", "4"]) == 0
    table = starfile.read(tmp_path / "o.star")
    assert (table["rlnCoordinateX"][0], table["rlnCoordinateY"][0]) == (40.0, 1536.0 - 80.0)


def test_convert_malformed_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 abc\n")
    assert main(["convert", str(bad), str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.star" in err[0]


def test_demo_writes_a_small_dataset(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--n-micrographs", "2", "--seed", "5", "--size", "256x192"]) == 0
    mics = sorted((out / "micrographs").glob("*.mrc"))
    assert len(mics) == 2
    with mrcfile.open(mics[0]) as mrc:
        assert mrc.data.shape == (192, 256)
    truth = starfile.read(out / "particles.star")
    assert len(truth) > 0
    labels = starfile.read(out / "labels.star")
    # Sparse labels on the first micrograph only (the last quarter is left for testing).
    assert set(labels["rlnMicrographName"]) == {mics[0].name}
    assert len(labels) == min(25, int((truth["rlnMicrographName"] == mics[0].name).sum()))
    assert main(["demo", str(out)]) == 2  # refuses to overwrite


def test_train_pick_evaluate_end_to_end(tmp_path, capsys):
    """Tiny blobs (8 px across at 2 Å/px): train one epoch, pick, evaluate as JSON."""
    from tests.core.test_training import _blobs

    mics = tmp_path / "mics"
    mics.mkdir()
    rows = []
    for seed in range(3):
        prep, truth = _blobs(seed)
        write_mrc(mics / f"m{seed}.mrc", prep.image, voxel_size=2.0)
        rows += [(f"m{seed}.mrc", x, y) for x, y in zip(truth.x, truth.y)]
    truth_df = pd.DataFrame(rows, columns=["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"])
    starfile.write({"particles": truth_df}, tmp_path / "truth.star")
    starfile.write({"particles": truth_df.groupby("rlnMicrographName").head(10)}, tmp_path / "labels.star")
    model = tmp_path / "model.pt"
    code = main(["train", str(mics), "--labels", str(tmp_path / "labels.star"), "--diameter-a", "16",
                 "--expected-per-micrograph", "30", "--epochs", "1", "--max-minutes", "10000",  # bounded by steps
                 "--device", "cpu", "--out", str(model)])
    assert code == 0 and model.exists()
    err = capsys.readouterr().err
    assert "conv31" in err and "pi = " in err and "validation AP" in err
    assert main(["pick", str(model), str(mics), "--out", str(tmp_path / "picks.txt"), "--device", "cpu"]) == 0
    picks = (tmp_path / "picks.txt").read_text().splitlines()
    assert picks[0].split("\t") == ["image_name", "x_coord", "y_coord", "score"]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "picks.txt"), str(tmp_path / "truth.star"), "--radius-px", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_truth"] == 90
    assert 0.0 <= result["average_precision"] <= 1.0 and result["best_f1_n_picks"] > 0


def test_pick_with_a_corrupt_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"\0" * 20)
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(32, 48)).astype(np.float32))
    assert main(["pick", str(bad), str(tmp_path / "a.mrc"), "--out", str(tmp_path / "p.star")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.pt: not a picker-gui model" in err[0]


def test_the_general_model_picks_demo_micrographs_before_any_label(tmp_path, capsys):
    """The shipped general model (resources/general_model) on micrographs it never saw."""
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--n-micrographs", "2", "--seed", "11", "--size", "1024x1024"]) == 0
    picks = tmp_path / "suggested.star"
    assert main(["pick", "general", str(out / "micrographs"), "--diameter-a", "150", "--out", str(picks),
                 "--device", "cpu", "--workers", "0"]) == 0
    assert "general model" in capsys.readouterr().err
    assert main(["evaluate", str(picks), str(out / "particles.star"), "--radius-px", "22"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["average_precision"] > 0.8, result
    # A rerun resumes with the same model (written beside the progress folder).
    assert main(["pick", "general", str(out / "micrographs"), "--diameter-a", "150", "--out", str(picks),
                 "--device", "cpu", "--workers", "0"]) == 0
    assert "picked by an earlier run" in capsys.readouterr().err


def test_pick_general_needs_the_diameter_and_a_trained_model_refuses_it(tmp_path, capsys):
    write_mrc(tmp_path / "a.mrc", RNG.normal(size=(64, 64)).astype(np.float32), voxel_size=2.0)
    assert main(["pick", "general", str(tmp_path / "a.mrc"), "--out", str(tmp_path / "p.star")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--diameter-a" in err[0] and "general model" in err[0]
    model = tmp_path / "m.pt"
    model.write_bytes(b"\0" * 20)
    assert main(["pick", str(model), str(tmp_path / "a.mrc"), "--diameter-a", "150", "--out", str(tmp_path / "p.star")]) == 2
    assert "only with MODEL 'general'" in capsys.readouterr().err
