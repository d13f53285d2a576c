"""Child process of test_crash_safety: opens the window and adds a label every 20 ms,
printing "<x> <y>" after each one, until it is killed."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtCore import QTimer  # noqa: E402

from picker_gui.gui.app import create_app
from picker_gui.gui.opening import open_target  # noqa: E402
from picker_gui.gui.main_window import MainWindow  # noqa: E402

app = create_app()
opened = open_target(sys.argv[1], new_settings={"diameter_a": 40.0})
window = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
window.show()
name = next(iter(window.paths.values())).name
state = {"i": 0}


def add() -> None:
    i = state["i"]
    x, y = 10.0 + (i % 30) * 12.0, 10.0 + (i // 30) * 9.0
    window.store.add(name, x, y)  # the same path as a click, minus the mouse
    print(f"{x:.2f} {y:.2f}", flush=True)
    state["i"] += 1


timer = QTimer()
timer.timeout.connect(add)
timer.start(20)
print("ready", flush=True)
app.exec()
