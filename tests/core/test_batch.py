"""Batch picking: streamed per-micrograph results, a manifest, resuming, invalidation, the
combined output written one micrograph at a time, Dask workers, watching a folder."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from picker_gui.core import batch
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.formats import read_coordinates, write_coordinates
from picker_gui.core.jobs import pick_job, run_job
from picker_gui.core.models import PickerNet, load_model, save_model
from tests.conftest import write_mrc

META = {"downsample": 2.0, "downsampled_pixel_size_a": 2.0, "original_pixel_size_a": 1.0, "normalization": "affine",
        "particle_diameter_a": 16.0, "particle_diameter_px": 8.0, "nms_radius_px": 4.0}


def _model(path, seed=0):
    import torch

    torch.manual_seed(seed)
    return save_model(path, PickerNet("conv31", 8), META)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(0)
    (root / "mics").mkdir()
    paths = [write_mrc(root / "mics" / f"m{i:02d}.mrc", rng.normal(size=(96, 128)).astype(np.float32), voxel_size=1.0)
             for i in range(6)]
    return root, paths, _model(root / "model.pt")


def _run(model, paths, state, out, fmt="star-particles", **kw):
    def write(tables):
        return batch.write_streamed(tables, out, fmt)

    return run_job(batch.batch_pick_job(model, paths, state, write_output=write, **kw))


def test_streamed_batch_equals_picking_in_memory(data, tmp_path):
    root, paths, model = data
    out = tmp_path / "picks.star"
    result = _run(model, paths, batch.state_folder(out), out, device="cpu")
    assert result.done == [p.stem for p in paths] and not result.skipped and not result.failures
    ref = run_job(pick_job(load_model(model), paths, device="cpu")).picks
    got = read_coordinates(out)
    assert len(got) == len(ref) == result.n_picks > 0
    assert np.allclose(got.x, ref.x) and np.allclose(got.y, ref.y) and np.allclose(got.score, ref.score, atol=1e-5)
    # The streamed STAR is byte for byte what the format writes for the whole table.
    whole = tmp_path / "whole.star"
    write_coordinates(CoordinateTable.concat(batch.done_tables(batch.state_folder(out), paths)), whole, "star-particles")
    assert out.read_bytes() == whole.read_bytes()


def test_a_stopped_run_resumes_with_only_the_rest_and_the_same_output(data, tmp_path):
    root, paths, model = data
    full = tmp_path / "full.star"
    _run(model, paths, batch.state_folder(full), full, device="cpu")
    out = tmp_path / "picks.star"
    stop = threading.Event()
    seen = []

    def on_report(r):
        seen.append(r.micrograph)
        if len(seen) == 2:
            stop.set()

    first = run_job(batch.batch_pick_job(model, paths, batch.state_folder(out), stop=stop,
                                         write_output=lambda t: batch.write_streamed(t, out, "star-particles"),
                                         device="cpu"), on_report)
    assert first.stopped and len(first.done) == 2
    second = _run(model, paths, batch.state_folder(out), out, device="cpu")
    assert sorted(second.skipped) == sorted(first.done)
    assert sorted(second.done) == sorted(p.stem for p in paths if p.stem not in first.done)
    assert out.read_bytes() == full.read_bytes()


def test_a_cut_manifest_line_and_a_changed_micrograph(data, tmp_path):
    root, paths, model = data
    out = tmp_path / "picks.star"
    state = batch.state_folder(out)
    _run(model, paths, state, out, device="cpu")
    with open(state / batch.MANIFEST, "a") as fh:
        fh.write('{"key": "m0')  # a kill in the middle of a line
    changed = tmp_path / "mics"
    changed.mkdir()
    rng = np.random.default_rng(9)
    copies = [write_mrc(changed / p.name, rng.normal(size=(96, 128)).astype(np.float32), voxel_size=1.0) for p in paths[:2]]
    again = _run(model, [*copies, *paths[2:]], state, out, device="cpu")
    # m00 and m01 are other files now (another size and time): picked again; the rest kept.
    assert sorted(again.done) == ["m00", "m01"] and len(again.skipped) == 4


def test_another_model_or_settings_never_mix(data, tmp_path):
    root, paths, model = data
    out = tmp_path / "picks.star"
    state = batch.state_folder(out)
    _run(model, paths, state, out, device="cpu")
    other = _model(tmp_path / "other.pt", seed=1)
    result = _run(other, paths, state, out, device="cpu")
    assert len(result.done) == len(paths) and not result.skipped
    assert any("another model" in n for n in result.notes)
    assert list(tmp_path.glob(".picks.star.picking.old-*"))  # the old results kept aside
    again = _run(other, paths, state, out, device="cpu", settings=batch.BatchSettings(threshold=0.0))
    assert len(again.done) == len(paths) and any("other settings" in n for n in again.notes)


def test_a_bad_micrograph_is_reported_and_the_others_go_on(data, tmp_path):
    root, paths, model = data
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\0" * 10)
    out = tmp_path / "picks.star"
    result = _run(model, [paths[0], bad, paths[1]], batch.state_folder(out), out, device="cpu")
    assert result.done == ["m00", "m01"]
    assert len(result.failures) == 1 and "bad.mrc" in result.failures[0][1]


def test_per_micrograph_format_is_written_file_by_file(data, tmp_path):
    root, paths, model = data
    out = tmp_path / "boxes"
    result = run_job(batch.batch_pick_job(model, paths[:3], batch.state_folder(out), device="cpu",
                                          write_output=lambda t: batch.write_streamed(t, out, "box", box_size=16)))
    assert sorted(p.name for p in result.outputs) == ["m00.box", "m01.box", "m02.box"]


def test_dask_workers_give_the_serial_output(data, tmp_path):
    pytest.importorskip("distributed")
    from picker_gui.core.cluster import local_cluster

    root, paths, model = data
    serial = tmp_path / "serial.star"
    _run(model, paths, batch.state_folder(serial), serial, device="cpu")
    cluster = local_cluster(2)
    try:
        out = tmp_path / "dask.star"
        result = _run(model, paths, batch.state_folder(out), out, client=cluster.client, workers=2,
                      threads=cluster.threads, device="cpu")
    finally:
        cluster.close()
    assert sorted(result.done) == sorted(p.stem for p in paths)
    a, b = read_coordinates(out), read_coordinates(serial)
    # The same picks in the same order; scores equal to float32 rounding (other thread counts).
    assert list(a.keys) == list(b.keys) and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert np.allclose(a.score, b.score, atol=1e-4)


def test_watching_picks_micrographs_as_they_appear(data, tmp_path):
    root, paths, model = data
    folder = tmp_path / "incoming"
    folder.mkdir()
    first = write_mrc(folder / "a.mrc", np.random.default_rng(1).normal(size=(96, 128)).astype(np.float32), voxel_size=1.0)
    out = tmp_path / "picks.star"
    stop = threading.Event()
    watcher = batch.watch_folders([str(folder)], 0.2, stop, known=[first])
    done = []
    box = {}

    def work():
        box["result"] = run_job(batch.batch_pick_job(model, [first], batch.state_folder(out), device="cpu", stop=stop,
                                                     watch=watcher,
                                                     write_output=lambda t: batch.write_streamed(t, out, "star-particles")),
                                lambda r: done.append(r.micrograph))

    thread = threading.Thread(target=work)
    thread.start()
    try:
        write_mrc(folder / "b.mrc", np.random.default_rng(2).normal(size=(96, 128)).astype(np.float32), voxel_size=1.0)
        for _ in range(600):  # a guard against a hang, never a speed limit
            if "b" in done:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert done == ["a", "b"]
    assert set(read_coordinates(out).keys) == {"a", "b"}


def test_a_worker_that_dies_loses_only_its_micrograph(data, tmp_path):
    import os
    import signal

    from picker_gui.core.cluster import local_cluster

    root, paths, model = data
    serial = tmp_path / "serial.star"
    _run(model, paths, batch.state_folder(serial), serial, device="cpu")
    cluster = local_cluster(2)
    killed = []

    def on_report(report):
        if not killed:  # after the first micrograph, one worker process is killed as the OOM killer would
            workers = list(cluster.client.scheduler_info()["workers"])
            pids = cluster.client.run(os.getpid, workers=[workers[0]])
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            killed.append(workers[0])

    try:
        out = tmp_path / "dask.star"
        result = run_job(batch.batch_pick_job(model, paths, batch.state_folder(out), client=cluster.client, workers=2,
                                              threads=cluster.threads, device="cpu",
                                              write_output=lambda t: batch.write_streamed(t, out, "star-particles")),
                         on_report)
    finally:
        cluster.close()
    assert killed
    assert sorted(result.done) == sorted(p.stem for p in paths) and not result.failures
    assert list(read_coordinates(out).keys) == list(read_coordinates(serial).keys)


def test_the_slurm_job_script_carries_the_options():
    pytest.importorskip("dask_jobqueue")
    from picker_gui.core.cluster import SlurmOptions, slurm_script

    script = slurm_script(SlurmOptions(queue="gpu", account="lab", cores=8, memory="32GB", walltime="02:00:00", gpus=1))
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab", "#SBATCH --cpus-per-task=8", "#SBATCH -t 02:00:00",
                 "#SBATCH --gres=gpu:1"):
        assert line in script
