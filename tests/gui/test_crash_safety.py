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
