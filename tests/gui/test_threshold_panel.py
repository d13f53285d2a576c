"""The threshold panel, driven as a user drives it: slider, spin box, histogram line, least distance."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt6.QtCore import QEvent, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtWidgets import QApplication, QSlider

from picker_gui.core.state import ThresholdCost
from picker_gui.gui.threshold_panel import COMMIT_DELAY_MS, DISTANCE_DELAY_MS, NO_PICKS_HINT, ThresholdPanel

WAIT_MS = 3 * max(COMMIT_DELAY_MS, DISTANCE_DELAY_MS)


@pytest.fixture
def scores() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(-3, 1.5, 1500), rng.normal(2, 1, 500)])


@pytest.fixture
def panel(qtbot, scores):
    # pyqtgraph's own tests do this: synthetic mouse moves come faster than its move-event
    # rate limit, and a drag made of throttled moves would read as a click.
    old_rate = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOptions(mouseRateLimit=-1)
    p = ThresholdPanel()
    qtbot.addWidget(p)
    p.plot.scene().minDragTime = 0
    p.set_range(-8.0, 8.0)
    p.set_scores(scores)
    p.set_threshold(0.0)
    p.set_enabled_for_picks(True)
    p.resize(320, 380)
    p.show()
    qtbot.waitExposed(p)
    yield p
    pg.setConfigOptions(mouseRateLimit=old_rate)


def assert_in_step(p: ThresholdPanel, t: float) -> None:
    assert p.threshold == t
    assert p.spin.value() == t
    assert p.line.value() == pytest.approx(t, abs=1e-9)
    assert p.slider.value() == round(t / 0.01) - round(-8.0 / 0.01)


def plain(label) -> str:
    return label.text().replace("\xa0", " ")


# -- the threshold --------------------------------------------------------------------------------
def test_slider_key_moves_spin_and_line_and_commits_after_the_burst(qtbot, panel):
    panel.slider.setFocus()
    with qtbot.waitSignal(panel.threshold_changed) as changed:
        qtbot.keyClick(panel.slider, Qt.Key.Key_Right)
    assert changed.args == [0.1]
    assert_in_step(panel, 0.1)
    with qtbot.waitSignal(panel.threshold_committed, timeout=WAIT_MS) as committed:
        panel.slider.triggerAction(QSlider.SliderAction.SliderPageStepAdd)
        panel.slider.triggerAction(QSlider.SliderAction.SliderSingleStepSub)
    assert committed.args == [0.5]  # one commit for the burst, at its end
    assert_in_step(panel, 0.5)


def test_slider_drag_is_live_and_commits_on_release(qtbot, panel):
    seen, committed = [], []
    panel.threshold_changed.connect(seen.append)
    panel.threshold_committed.connect(committed.append)
    panel.slider.setSliderDown(True)
    for v in (850, 900, 923):  # slider units: 0.01 from -8
        panel.slider.setSliderPosition(v)
    assert seen == [0.5, 1.0, 1.23]
    assert_in_step(panel, 1.23)
    assert committed == []
    panel.slider.setSliderDown(False)  # release
    assert committed == [1.23]
    qtbot.wait(COMMIT_DELAY_MS + 100)
    assert committed == [1.23]


def test_typing_in_the_spin_box_applies_on_enter(qtbot, panel):
    seen = []
    panel.threshold_changed.connect(seen.append)
    edit = panel.spin.lineEdit()
    edit.selectAll()
    qtbot.keyClicks(edit, "-2.5")
    assert seen == []  # not per keystroke
    with qtbot.waitSignals([panel.threshold_changed, panel.threshold_committed], order="strict") as both:
        qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert [list(s.args) for s in both.all_signals_and_args] == [[-2.5], [-2.5]]
    assert_in_step(panel, -2.5)


def test_spin_arrow_moves_slider_and_line(qtbot, panel):
    with qtbot.waitSignal(panel.threshold_changed) as changed:
        panel.spin.stepUp()
    assert changed.args == [0.1]
    assert_in_step(panel, 0.1)
    with qtbot.waitSignal(panel.threshold_committed, timeout=WAIT_MS) as committed:
        pass
    assert committed.args == [0.1]


def test_line_moved_moves_slider_and_spin(qtbot, panel):
    # As pyqtgraph's InfiniteLine tests do: setValue emits sigPositionChanged.
    with qtbot.waitSignal(panel.threshold_changed) as changed:
        panel.line.setValue(1.234)
    assert changed.args == [1.23]
    assert_in_step(panel, 1.23)  # the line snapped to the slider's grid
    with qtbot.waitSignal(panel.threshold_committed) as committed:
        panel.line.sigPositionChangeFinished.emit(panel.line)
    assert committed.args == [1.23]


def _send(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos.toPoint())), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def test_dragging_the_line_with_the_mouse(qtbot, panel):
    vb = panel.plot.getPlotItem().getViewBox()

    def at(x):
        return QPointF(panel.plot.mapFromScene(vb.mapViewToScene(QPointF(x, 0.5 * vb.viewRange()[1][1]))))

    seen, committed = [], []
    panel.threshold_changed.connect(seen.append)
    panel.threshold_committed.connect(committed.append)
    vp, left = panel.plot.viewport(), Qt.MouseButton.LeftButton
    a, b = at(0.0), at(3.0)
    _send(vp, QEvent.Type.MouseButtonPress, a, left, left)
    for i in range(1, 6):
        _send(vp, QEvent.Type.MouseMove, a + (b - a) * (i / 5), Qt.MouseButton.NoButton, left)
    assert len(seen) >= 3 and committed == []  # live while dragging
    _send(vp, QEvent.Type.MouseButtonRelease, b, left, Qt.MouseButton.NoButton)
    assert seen[-1] == pytest.approx(3.0, abs=0.15)
    assert committed == [seen[-1]]
    assert_in_step(panel, seen[-1])


def test_set_threshold_emits_nothing(qtbot, panel):
    with qtbot.assertNotEmitted(panel.threshold_changed), qtbot.assertNotEmitted(panel.threshold_committed, wait=WAIT_MS):
        panel.set_threshold(2.345)
    assert_in_step(panel, 2.35)  # rounding goes to the nearest step of the slider


def test_set_range_moves_the_slider_not_the_threshold(qtbot, panel):
    panel.set_threshold(1.5)
    with qtbot.assertNotEmitted(panel.threshold_changed):
        panel.set_range(-3.004, 4.2)
    assert (panel.spin.minimum(), panel.spin.maximum()) == (-3.01, 4.2)
    assert panel.slider.maximum() == 721
    assert panel.threshold == panel.spin.value() == 1.5
    assert panel.slider.value() == 451


# -- the histogram ---------------------------------------------------------------------------------
def test_histogram_holds_every_finite_score_and_is_built_only_by_set_scores(qtbot, panel, scores, monkeypatch):
    _, y = panel.hist_all.getData()
    assert len(y) >= 60 and y.sum() == len(scores)
    builds = []
    original = panel.hist_all.setData
    monkeypatch.setattr(panel.hist_all, "setData", lambda *a, **k: (builds.append(1), original(*a, **k)))
    for v in (100, 500, 900, 1300):
        panel.slider.setValue(v)
    panel.line.setValue(-1.0)
    assert builds == []
    panel.set_scores(np.concatenate([scores[:100], [np.nan, -np.inf]]))
    assert builds == [1]
    assert panel.hist_all.getData()[1].sum() == 100


def test_bars_above_the_threshold_start_at_it(qtbot, panel, scores):
    panel.slider.setValue(round((0.5 + 8) / 0.01))
    x, y = panel.hist_above.getData()
    assert x[0] == 0.5 and len(x) == len(y) + 1
    edges = panel.hist_all.getData()[0]
    i = int(np.searchsorted(edges, 0.5, side="right"))
    assert y.sum() == panel.bin_counts[i - 1:].sum()  # the bin holding the threshold and those above
    assert (scores >= edges[i]).sum() <= y.sum() <= (scores >= edges[i - 1]).sum()
    panel.set_threshold(9.0)  # above every score
    assert not panel.hist_above.isVisible()


def test_log_heights(qtbot, panel):
    panel.log_box.click()
    _, y = panel.hist_all.getData()
    assert np.allclose(y, np.log10(1 + panel.bin_counts))
    assert panel.bin_counts.sum() == 2000


# -- what it costs ---------------------------------------------------------------------------------
def test_cost_texts_and_warning_colours(qtbot, panel):
    panel.set_cost(ThresholdCost(1234, 8, 154.25, 180.0, 0.91, 45, "held-out labels"))
    assert plain(panel.count_label) == "1,234 picks on 8 micrographs · 154 per micrograph (expected 180)"
    assert plain(panel.recall_label) == "recall of held-out labels: 0.91 (of 45)"
    assert not panel.is_warning(panel.count_label) and not panel.is_warning(panel.recall_label)
    assert panel.count_label.toolTip() and panel.recall_label.toolTip()

    panel.set_cost(ThresholdCost(400, 8, 50.0, 180.0, 0.72, 45, "held-out labels"))  # under half the expected
    assert panel.is_warning(panel.count_label) and panel.is_warning(panel.recall_label)
    assert "#ffa24c" in panel.count_label.styleSheet()
    panel.set_cost(ThresholdCost(4000, 8, 500.0, 180.0, 0.95, 45, "held-out labels"))  # over twice
    assert panel.is_warning(panel.count_label) and not panel.is_warning(panel.recall_label)
    assert panel.recall_label.styleSheet() == ""

    panel.set_cost(ThresholdCost(1, 1, 1.0, None, None, 0, ""))
    assert plain(panel.count_label) == "1 pick on 1 micrograph · 1.0 per micrograph"
    assert plain(panel.recall_label) == "recall: —"
    assert not panel.is_warning(panel.count_label) and not panel.is_warning(panel.recall_label)


def test_cost_label_wraps_at_the_dot_in_a_narrow_dock(qtbot, panel):
    panel.set_cost(ThresholdCost(123456, 1000, 123.456, 180.0, 0.91, 45, "held-out labels"))
    assert panel.count_label.text().count(" ") == 1  # the only breakable space is after "·"
    assert panel.count_label.wordWrap()


# -- least distance --------------------------------------------------------------------------------
def test_min_distance_defaults_to_the_radius_and_shows_pixels(qtbot, panel):
    with qtbot.assertNotEmitted(panel.min_distance_changed, wait=WAIT_MS):
        panel.set_min_distance(None, 2.0, 40.0)
    assert panel.min_distance_a == 20.0
    assert panel.distance_px.text() == "= 10.0 px"
    assert (panel.distance.minimum(), panel.distance.maximum()) == (10.0, 80.0)
    panel.set_min_distance(30.0, None, 40.0)
    assert panel.min_distance_a == 30.0 and panel.distance_px.text() == ""


def test_min_distance_emits_on_editing_finished_not_per_keystroke(qtbot, panel):
    panel.set_min_distance(20.0, 2.0, 40.0)
    seen = []
    panel.min_distance_changed.connect(seen.append)
    edit = panel.distance.lineEdit()
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClicks(edit, "36")
    assert seen == []
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert seen == [36.0]
    assert panel.distance_px.text() == "= 18.0 px"
    panel.distance.editingFinished.emit()  # focus leaves without a change
    qtbot.wait(DISTANCE_DELAY_MS + 100)
    assert seen == [36.0]


def test_min_distance_arrow_clicks_apply_once_after_a_pause(qtbot, panel):
    panel.set_min_distance(20.0, 2.0, 40.0)
    with qtbot.waitSignal(panel.min_distance_changed, timeout=WAIT_MS) as changed:
        panel.distance.stepUp()
        panel.distance.stepUp()
    assert changed.args == [30.0]


# -- with and without picks ------------------------------------------------------------------------
def test_disabled_without_picks_with_a_hint(qtbot, panel):
    panel.set_enabled_for_picks(False)
    assert panel.hint.isVisible() and panel.hint.text() == NO_PICKS_HINT
    assert not panel.slider.isEnabled() and not panel.spin.isEnabled()
    assert not panel.line.movable and not panel.plot.isVisible()
    assert panel.distance.isEnabled()  # it applies to the next picks
    panel.set_enabled_for_picks(True)
    assert not panel.hint.isVisible() and panel.slider.isEnabled() and panel.line.movable
    assert panel.plot.isVisible() and panel.count_label.isVisible()


def test_new_panel_starts_without_picks(qtbot):
    p = ThresholdPanel()
    qtbot.addWidget(p)
    assert not p.hint.isHidden() and not p.slider.isEnabled()
