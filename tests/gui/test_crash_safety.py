"""Kill the application in the middle of labelling: what was saved survives, intact.

Nothing here depends on how fast the machine is: the test waits (with a generous guard)
until the labels made so far are on disk while the labelling goes on, then kills the
process at an arbitrary moment and checks the file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from picker_gui.core.project import Project, load_labels

GUARD_S = 120  # a hung child fails the test instead of hanging it; never a speed limit


def _xy(table) -> set[tuple[float, float]]:
    return set(zip(table.x.round(2), table.y.round(2)))


def test_kill_during_labelling_keeps_what_was_saved_and_the_file_intact(mic_folder, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PICKER_GUI_CONFIG=str(tmp_path / "cfg"), PICKER_GUI_DATA=str(tmp_path / "data"))
    script = Path(__file__).with_name("_label_until_killed.py")
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, str(script), str(mic_folder)], stdout=subprocess.PIPE, text=True, env=env)
    killer = threading.Timer(GUARD_S, proc.kill)
    killer.start()
    try:
        assert proc.stdout.readline().strip() == "ready"
        added: list[tuple[float, float]] = []

        def read(n: int) -> None:
            for _ in range(n):
                x, y = proc.stdout.readline().split()
                added.append((float(x), float(y)))

        read(40)
        first = set(added)
        labels_path = mic_folder / "picker-gui" / "labels.star"
        # The labels keep coming; autosave is a throttle, so the first 40 reach the disk anyway.
        while not (labels_path.exists() and first <= _xy(load_labels(labels_path))):
            read(1)
        read(7)  # and then pull the plug in the middle of the stream
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for line in proc.stdout.read().splitlines():  # printed before the kill, not yet read
            x, y = line.split()
            added.append((float(x), float(y)))
    finally:
        killer.cancel()
        proc.kill()
    labels = Project.open(mic_folder / "picker-gui").labels  # also proves the file is not corrupt
    saved = _xy(labels)
    assert first <= saved
    assert saved <= set(added)  # nothing that was never added
    assert len(labels) == len(saved)  # no label written twice
    assert not [p for p in labels_path.parent.iterdir() if p.name.endswith(".tmp")]


def _blob_folder(tmp_path) -> Path:
    from tests.conftest import write_mrc
    from tests.core.test_training import _blobs

    folder = tmp_path / "blobs"
    folder.mkdir()
    for seed in range(3):
        prep, _ = _blobs(seed)
        write_mrc(folder / f"m{seed}.mrc", prep.image, voxel_size=2.0)
    return folder


@pytest.mark.parametrize("mode, waits_for", [("train", "training"), ("pick", "picking")])
def test_kill_during_training_or_picking_loses_no_labels(tmp_path, mode, waits_for):
    folder = _blob_folder(tmp_path)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PICKER_GUI_CONFIG=str(tmp_path / "cfg"),
               PICKER_GUI_DATA=str(tmp_path / "data"), PICKER_GUI_CACHE=str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    script = Path(__file__).with_name("_work_until_killed.py")
    proc = subprocess.Popen([sys.executable, str(script), str(folder), mode], stdout=subprocess.PIPE, text=True, env=env)
    killer = threading.Timer(GUARD_S * 5, proc.kill)
    killer.start()
    try:
        labelled = proc.stdout.readline().split()
        assert labelled[0] == "labelled"
        while proc.stdout.readline().strip() != waits_for:
            assert proc.poll() is None, "the child ended before it got there"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        killer.cancel()
        proc.kill()
    project = Project.open(folder / "picker-gui")  # readable, labels whole
    assert len(project.labels) == int(labelled[1])
    assert project.picks is not None  # picks.star, if written, reads back (or is absent)
    assert not [p for p in (folder / "picker-gui").rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
