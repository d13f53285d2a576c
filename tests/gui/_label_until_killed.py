"""Child process of test_crash_safety: opens the window and adds a label every 20 ms,
printing "<time> <x> <y>" after each one, until it is killed."""

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtCore import QTimer  # noqa: E402

from picker_gui.gui.app import create_app, open_target  # noqa: E402
from picker_gui.gui.main_window import MainWindow  # noqa: E402

app = create_app()
project, _ = open_target(sys.argv[1])
window = MainWindow(project)
window.show()
name = next(iter(window.paths.values())).name
state = {"i": 0}


def add() -> None:
    i = state["i"]
    x, y = 10.0 + (i % 30) * 12.0, 10.0 + (i // 30) * 12.0
    window.store.add(name, x, y)  # the same path as a click, minus the mouse
    print(f"{time.time():.4f} {x:.2f} {y:.2f}", flush=True)
    state["i"] += 1


timer = QTimer()
timer.timeout.connect(add)
timer.start(20)
print("ready", flush=True)
app.exec()
