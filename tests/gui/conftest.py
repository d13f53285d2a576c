"""Fixtures for window tests: a tiny non-square dataset and an open window (offscreen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest

from tests.conftest import write_mrc

ROWS, COLS, PIXEL_A = 300, 400, 2.0
DIAMETER_A = 40.0  # 20 px rings


@pytest.fixture
def mic_folder(tmp_path) -> Path:
    folder = tmp_path / "mics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_mrc(folder / f"mic_{i}.mrc", rng.normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=PIXEL_A)
    return folder


@pytest.fixture(autouse=True)
def _no_dialog_answers_leak():
    yield
    from tests.gui import helpers

    for state in helpers.PENDING:
        state["cancelled"] = True
    helpers.PENDING.clear()


@pytest.fixture
def window(qtbot, mic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PICKER_GUI_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("PICKER_GUI_DATA", str(tmp_path / "data"))
    from picker_gui.gui.app import create_app
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    create_app()
    opened = open_target(mic_folder, new_settings={"diameter_a": DIAMETER_A})
    win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=10_000)
    # pyqtgraph's own tests do this: synthetic mouse moves come faster than its move-event
    # rate limit, and a drag made of throttled moves would read as a click.
    pg.setConfigOptions(mouseRateLimit=-1)
    win.canvas.scene().minDragTime = 0
    yield win
    win.close()
