"""The labelling window, driven with real mouse and key events on the offscreen platform."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QEvent, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication

from picker_gui.core.coords import NEGATIVE, PARTICLE
from picker_gui.core.formats import read_coordinates
from picker_gui.core.project import Project

from .conftest import COLS, DIAMETER_A, PIXEL_A, ROWS

RADIUS_PX = DIAMETER_A / PIXEL_A / 2


def click(qtbot, win, x, y, button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier):
    pos = win.canvas.map_to_widget(x, y)
    qtbot.mouseClick(win.canvas.viewport(), button, modifier, pos)


def _send(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def drag(win, start, end, steps=5):
    """Press, move in steps, release: pyqtgraph's test helpers do the same (QTest drags are unreliable)."""
    vp = win.canvas.viewport()
    a, b = win.canvas.map_to_widget(*start), win.canvas.map_to_widget(*end)
    left = Qt.MouseButton.LeftButton
    _send(vp, QEvent.Type.MouseButtonPress, a, left, left)
    for i in range(1, steps + 1):
        p = a + (b - a) * (i / steps)
        _send(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, left)
    _send(vp, QEvent.Type.MouseButtonRelease, b, left, Qt.MouseButton.NoButton)


def points(win, kind=PARTICLE):
    return win.store.points(win.current, kind)


def test_click_adds_a_particle_where_clicked(qtbot, window):
    click(qtbot, window, 120, 80)
    xy = points(window)
    assert len(xy) == 1
    assert abs(xy[0, 0] - 120) < 2 and abs(xy[0, 1] - 80) < 2  # x = column, y = row
    assert window.mic_list.model.entry(window.current).labels == 1


def test_click_on_a_ring_removes_it_and_right_click_too(qtbot, window):
    click(qtbot, window, 120, 80)
    click(qtbot, window, 300, 200)
    click(qtbot, window, 120 + RADIUS_PX * 0.6, 80)  # inside the first ring
    assert len(points(window)) == 1 and abs(points(window)[0, 0] - 300) < 2
    click(qtbot, window, 302, 203, button=Qt.MouseButton.RightButton)
    assert len(points(window)) == 0


def test_drag_moves_a_ring_and_drag_elsewhere_pans(qtbot, window):
    click(qtbot, window, 100, 100)
    drag(window, (100, 100), (180, 150))
    xy = points(window)
    assert len(xy) == 1 and abs(xy[0, 0] - 180) < 3 and abs(xy[0, 1] - 150) < 3
    before = window.canvas.view_rect()
    drag(window, (300, 250), (250, 200))  # empty spot: pans, adds nothing
    assert len(points(window)) == 1
    assert window.canvas.view_rect() != before


def test_undo_and_redo_restore_every_edit(qtbot, window):
    click(qtbot, window, 100, 100)
    click(qtbot, window, 200, 120)
    drag(window, (200, 120), (250, 160))
    click(qtbot, window, 100, 100)  # remove the first
    assert len(points(window)) == 1
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the removal
    assert len(points(window)) == 2
    window.undo_stack.undo()  # undo the move
    assert any(abs(x - 200) < 2 and abs(y - 120) < 2 for x, y in points(window))
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert len(points(window)) == 0
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(points(window)) == 1
    for _ in range(3):
        window.undo_stack.redo()
    xy = points(window)
    assert len(xy) == 1 and abs(xy[0, 0] - 250) < 3


def test_negative_mode_adds_negatives_drawn_apart(qtbot, window):
    qtbot.keyClick(window, Qt.Key.Key_N)
    assert window.controls.mode == NEGATIVE and window.act_negative.isChecked()
    click(qtbot, window, 150, 150)
    assert len(points(window, NEGATIVE)) == 1 and len(points(window, PARTICLE)) == 0
    qtbot.keyClick(window, Qt.Key.Key_N)
    click(qtbot, window, 300, 100)
    assert len(points(window, PARTICLE)) == 1
    assert window.canvas.negative_item.data["x"].tolist() != window.canvas.positive_item.data["x"].tolist()


def test_switching_micrographs_keeps_labels(qtbot, window):
    first = window.current
    click(qtbot, window, 100, 100)
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.current != first and window.displayed == window.current)
    second = window.current
    assert len(points(window)) == 0
    click(qtbot, window, 200, 200)
    click(qtbot, window, 250, 100)
    qtbot.keyClick(window, Qt.Key.Key_Left)
    qtbot.waitUntil(lambda: window.current == first)
    assert window.store.count(first) == 1 and window.store.count(second) == 2
    assert len(window.canvas.positive_item.data) == 1


def test_autosave_writes_within_a_second_and_reloads(qtbot, window):
    click(qtbot, window, 100, 100)
    qtbot.keyClick(window, Qt.Key.Key_N)
    click(qtbot, window, 300, 250)
    path = window.project.labels_path
    from picker_gui.core.project import load_labels

    qtbot.waitUntil(lambda: len(load_labels(path)) == 2, timeout=1000)
    reopened = Project.open(window.project.folder)
    assert len(reopened.labels) == 2
    assert sorted(reopened.labels.kind) == [NEGATIVE, PARTICLE]


def test_settings_and_current_micrograph_are_restored(qtbot, window, mic_folder):
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.displayed == window.current)
    window.controls.lowpass.setValue(30)
    window.close()
    project = Project.open(window.project.folder)
    assert project.settings.current_micrograph == window.current
    assert project.settings.lowpass_a == 30


def test_reopening_restores_the_view(qtbot, window):
    from picker_gui.gui.main_window import MainWindow

    window.canvas.set_view_rect([100.0, 50.0, 120.0, 90.0])
    shown = window.canvas.view_rect()
    key = window.current
    window.close()
    again = MainWindow(Project.open(window.project.folder))
    qtbot.addWidget(again)
    again.resize(1200, 800)
    again.show()
    qtbot.waitUntil(lambda: again.displayed == key, timeout=10_000)
    assert np.allclose(again.canvas.view_rect(), shown, atol=2.0)
    again.close()


def test_skip_mark_is_saved(qtbot, window):
    qtbot.keyClick(window, Qt.Key.Key_S)
    assert window.mic_list.model.entry(window.current).skipped
    window.save_settings()
    assert Project.open(window.project.folder).settings.skipped == [window.current]


def test_export_then_import_round_trip(qtbot, window, tmp_path):
    for x, y in ((50, 60), (150.5, 260.25), (390, 10)):
        window.store.add(window.paths[window.current].name, x, y)
    out = tmp_path / "export.star"
    window.export_labels(str(out))
    table = read_coordinates(out)
    assert sorted(zip(table.x, table.y)) == [(50, 60), (150.5, 260.25), (390, 10)]
    window.store.replace(table[:0])
    n = window.import_labels(str(out), flip_y=True, scale=1.0, as_negative=False)
    assert n == 3
    got = sorted(map(tuple, points(window)))
    assert got == sorted((x, ROWS - y) for x, y in [(50, 60), (150.5, 260.25), (390, 10)])
    window.undo_stack.undo()  # an import is one undoable step
    assert len(points(window)) == 0


@pytest.mark.parametrize("fmt, name", [("box", "boxes"), ("relion", "relion"), ("relion-list", "list/autopick.star"), ("csv", "l.csv")])
def test_export_in_every_writable_format_reads_back(qtbot, window, tmp_path, fmt, name):
    mic = window.paths[window.current].name
    for x, y in ((50, 60), (150, 260)):
        window.store.add(mic, x, y)
    written = window.export_labels(str(tmp_path / name), fmt)
    assert written
    back = read_coordinates(tmp_path / name, fmt if fmt in ("box", "relion") else None)
    assert sorted(zip(back.x, back.y)) == [(50, 60), (150, 260)]


def test_import_of_a_malformed_file_warns_and_keeps_labels(qtbot, window, tmp_path, monkeypatch):
    from PyQt6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *a, **k: shown.append(a[2])))
    window.store.add(window.paths[window.current].name, 10, 10)
    bad = tmp_path / "bad.star"
    bad.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 abc\n")
    assert window.import_labels(str(bad), flip_y=False, scale=1.0, as_negative=False) == 0
    assert shown and "bad.star" in shown[0]
    assert len(points(window)) == 1


def test_corrupt_label_file_is_kept_aside_with_a_message(qtbot, mic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PICKER_GUI_CONFIG", str(tmp_path / "config"))
    from picker_gui.gui.opening import open_target

    project = open_target(mic_folder, new_settings={"diameter_a": 40.0}).project
    project.lock.release()
    project.labels_path.write_text("data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\nmic_0.mrc 1 oops\n")
    opened = open_target(mic_folder)
    assert opened is not None and len(opened.project.labels) == 0
    warning = " ".join(opened.warnings)
    assert "cannot read the labels" in warning and "kept as" in warning
    kept = [p for p in project.folder.iterdir() if p.name.startswith("labels.star.unreadable")]
    assert len(kept) == 1 and "oops" in kept[0].read_text()


def test_ring_is_drawn_where_the_label_is(qtbot, window):
    window.controls.overlay_boxes["positive"].setChecked(True)
    x, y = 200.0, 150.0
    window.store.add(window.paths[window.current].name, x, y)
    qtbot.wait(50)
    image = window.canvas.grab().toImage()
    centre = window.canvas.map_to_widget(x, y)
    edge = window.canvas.map_to_widget(x + RADIUS_PX, y)
    # Probe pixels along the ring's right edge (anti-aliasing spreads it over a pixel or two).
    greens = []
    for dx in (-1, 0, 1):
        c = image.pixelColor(edge.x() + dx, edge.y())
        greens.append(c.green() - max(c.red(), c.blue()))
    assert max(greens) > 60
    c = image.pixelColor(centre.x(), centre.y())  # the middle shows the micrograph, not green
    assert c.green() - max(c.red(), c.blue()) < 40


def test_bad_micrograph_is_marked_and_the_rest_still_work(qtbot, mic_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PICKER_GUI_CONFIG", str(tmp_path / "config"))
    (mic_folder / "mic_1.mrc").write_bytes(b"broken" * 100)
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    opened = open_target(mic_folder, new_settings={"diameter_a": 40.0})
    win = MainWindow(opened.project)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.current is not None and win.displayed == win.current, timeout=10_000)
    win.mic_list.select("mic_1")
    qtbot.waitUntil(lambda: win.mic_list.model.entry("mic_1").error is not None, timeout=10_000)
    assert "mic_1.mrc" in win.mic_list.model.entry("mic_1").error
    win.mic_list.select("mic_2")
    qtbot.waitUntil(lambda: win.displayed == "mic_2", timeout=10_000)
    click(qtbot, win, 100, 100)
    assert win.store.count("mic_2") == 1
    win.close()


def test_no_display_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "picker_gui", "gui", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "xvfb-run" in lines[0]


@pytest.mark.parametrize("key, delta", [(Qt.Key.Key_Right, 1), (Qt.Key.Key_PageDown, 1)])
def test_keyboard_navigation(qtbot, window, key, delta):
    order = [window.mic_list.model.entries[i].key for i in range(3)]
    start = window.current
    qtbot.keyClick(window, key)
    assert window.current == order[order.index(start) + delta]
