"""``picker-gui pick`` on a batch: kill -9 halfway, run it again, and only the rest is picked,
with the same output as an uninterrupted run; Dask workers from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from picker_gui.cli import main
from picker_gui.core import batch
from picker_gui.core.formats import read_coordinates
from tests.conftest import write_mrc
from tests.core.test_batch import _model

N = 60


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("clibatch")
    rng = np.random.default_rng(4)
    (root / "mics").mkdir()
    for i in range(N):
        write_mrc(root / "mics" / f"mic{i:03d}.mrc", rng.normal(size=(96, 128)).astype(np.float32), voxel_size=1.0)
    return root, _model(root / "model.pt")


def _done_lines(state):
    path = state / batch.MANIFEST
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"status": "done"' in line)


def test_kill_9_halfway_then_the_rerun_picks_only_the_rest(folder, tmp_path, capsys):
    root, model = folder
    full = tmp_path / "full.star"
    assert main(["pick", str(model), str(root / "mics"), "--out", str(full), "--workers", "0", "--device", "cpu"]) == 0
    out = tmp_path / "picks.star"
    state = batch.state_folder(out)
    proc = subprocess.Popen([sys.executable, "-m", "picker_gui", "-q", "pick", str(model), str(root / "mics"), "--out",
                             str(out), "--workers", "0", "--device", "cpu"])
    try:
        for _ in range(12000):  # a guard against a hang, never a speed limit
            if _done_lines(state) >= 10 or proc.poll() is not None:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run, then killed as the machine would
        killed_at = _done_lines(state)
        assert proc.poll() is None and 10 <= killed_at < N, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists()  # the output is written at the end only
    capsys.readouterr()
    assert main(["pick", str(model), str(root / "mics"), "--out", str(out), "--workers", "0", "--device", "cpu"]) == 0
    assert f"{killed_at} of {N} micrograph(s) already picked" in capsys.readouterr().err
    lines = [json.loads(x) for x in (state / batch.MANIFEST).read_text().splitlines()[1:]]
    assert len(lines) == N  # each micrograph picked once in all
    # The same picks in the same order; scores equal up to float32 rounding (the killed run was
    # another process, whose torch may use another number of threads).
    a, b = read_coordinates(out), read_coordinates(full)
    assert list(a.keys) == list(b.keys) and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert np.allclose(a.score, b.score, atol=1e-4)


def test_workers_from_the_command_line(folder, tmp_path, capsys):
    root, model = folder
    out = tmp_path / "picks.star"
    assert main(["pick", str(model), str(root / "mics"), "--out", str(out), "--workers", "2", "--device", "cpu"]) == 0
    text = capsys.readouterr().err
    assert "LocalCluster: 2 worker process(es)" in text and "Dask dashboard: http" in text
    assert len(set(read_coordinates(out).keys)) == N


def test_fresh_starts_over_and_bad_options_are_one_line(folder, tmp_path, capsys):
    root, model = folder
    out = tmp_path / "picks.star"
    args = ["pick", str(model), str(root / "mics" / "mic000.mrc"), "--out", str(out), "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    assert main(args) == 0
    assert "1 of 1 micrograph(s) already picked" in capsys.readouterr().err
    assert main([*args, "--fresh"]) == 0
    assert "already picked" not in capsys.readouterr().err
    assert main([*args[:-4], "--workers", "many"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_preprocessing_on_dask_workers_writes_what_one_process_writes(folder, tmp_path, capsys):
    import mrcfile

    root, _ = folder
    mics = sorted((root / "mics").iterdir())[:6]
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an mrc file")
    inputs = [*map(str, mics[:3]), str(bad), *map(str, mics[3:])]
    common = ["--downsample", "1.5", "--no-cache"]
    assert main(["preprocess", *inputs, "--out", str(tmp_path / "serial"), "--workers", "0", *common]) == 1
    capsys.readouterr()
    assert main(["preprocess", *inputs, "--out", str(tmp_path / "dask"), "--workers", "2", *common]) == 1
    err = capsys.readouterr().err
    assert "LocalCluster: 2 worker process(es)" in err and "bad.mrc" in err and "1 of 7 micrographs failed" in err
    serial = json.loads((tmp_path / "serial" / "preprocess.json").read_text())
    dask = json.loads((tmp_path / "dask" / "preprocess.json").read_text())
    # The same records in the order of the inputs, whatever order the workers finished in.
    assert [r["micrograph"] for r in dask["micrographs"]] == [str(p) for p in mics]
    assert dask["micrographs"] == serial["micrographs"]
    assert [f["file"] for f in dask["failed"]] == [str(bad)]
    for p in mics:
        with mrcfile.open(tmp_path / "serial" / p.name) as a, mrcfile.open(tmp_path / "dask" / p.name) as b:
            assert a.data.shape == (64, 85) and np.array_equal(a.data, b.data)
