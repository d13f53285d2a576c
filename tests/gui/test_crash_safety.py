"""Kill the application in the middle of labelling: every label older than a second survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from picker_gui.core.project import Project


def test_kill_during_labelling_loses_at_most_the_last_second(mic_folder, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PICKER_GUI_CONFIG=str(tmp_path / "cfg"), PICKER_GUI_DATA=str(tmp_path / "data"))
    script = Path(__file__).with_name("_label_until_killed.py")
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, str(script), str(mic_folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    added = []
    start = time.time()
    while time.time() - start < 2.5:  # label for a while, then pull the plug mid-stream
        t, x, y = proc.stdout.readline().split()
        added.append((float(t), float(x), float(y)))
    proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    proc.wait(timeout=10)
    labels = Project.open(mic_folder / "picker-gui").labels  # also proves the file is not corrupt
    saved = set(zip(labels.x.round(2), labels.y.round(2)))
    old = [(x, y) for t, x, y in added if t < killed_at - 1.0]
    assert len(old) > 20
    missing = [p for p in old if p not in saved]
    assert not missing, f"{len(missing)} labels older than 1 s were lost"
    assert len(labels) <= len(added) + 5
