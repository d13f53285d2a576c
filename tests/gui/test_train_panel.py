"""The Train dock, driven as a user would: buttons, settings, hints and live progress."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from picker_gui.core.objectives import OBJECTIVES
from picker_gui.core.training import TrainReport
from picker_gui.gui.train_panel import DEFAULT_MINUTES, TrainPanel, running_mean

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def panel(qtbot):
    from picker_gui.gui.app import create_app

    create_app()
    w = TrainPanel()
    qtbot.addWidget(w)
    w.resize(320, 800)
    w.show()
    qtbot.waitExposed(w)
    return w


def fake_reports(n: int, eval_every: int = 40, seed: int = 0) -> list[TrainReport]:
    rng = np.random.default_rng(seed)
    reports, best = [], None
    for step in range(1, n + 1):
        ap = None
        if step % eval_every == 0:
            ap = float(np.clip(0.3 + 0.4 * (1 - math.exp(-step / 150)) + rng.normal(0, 0.05), 0, 1))
            best = ap if best is None else max(best, ap)
        reports.append(TrainReport(
            step=step, epoch=step // 100, loss=0.7 * math.exp(-step / 100) + 0.1 + float(rng.normal(0, 0.05)),
            ge_penalty=0.01, val_ap=ap, best_val_ap=best, elapsed_s=step * 0.1, device="cpu",
            message="model resnet8; objective ge-binomial; pi = 0.01; device cpu" if step == 1 else None,
        ))
    return reports


def test_defaults(panel):
    assert panel.settings() == {"expected_per_micrograph": None, "objective": "ge-binomial",
                                "max_minutes": pytest.approx(DEFAULT_MINUTES)}
    assert panel.expected.text() == "auto"
    assert [panel.objective.itemData(i) for i in range(panel.objective.count())] == list(OBJECTIVES)
    assert (panel.minutes.minimum(), panel.minutes.maximum()) == (0.5, 120)
    assert panel.train_button.isEnabled()
    assert not panel.finetune_button.isEnabled()
    assert not panel.stop_button.isEnabled()


def test_every_control_has_a_tooltip(panel):
    for w in (panel.expected, panel.use_hint, panel.objective, panel.minutes, panel.diameter_label,
              panel.device_label, panel.train_button, panel.finetune_button, panel.stop_button,
              panel.loss_plot, panel.val_plot):
        assert w.toolTip(), w
    for i in range(panel.objective.count()):
        assert panel.objective.itemData(i, Qt.ItemDataRole.ToolTipRole)
    assert "default" in panel.minutes.toolTip().lower()
    assert "default" in panel.expected.toolTip().lower()


def test_train_button_requests_a_new_model(panel, qtbot):
    with qtbot.waitSignal(panel.train_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.train_button, LEFT)
    assert blocker.args == [False]


def test_fine_tune_needs_a_model(panel, qtbot):
    with qtbot.assertNotEmitted(panel.train_requested):
        qtbot.mouseClick(panel.finetune_button, LEFT)
    panel.set_model_available(True)
    assert panel.finetune_button.isEnabled()
    with qtbot.waitSignal(panel.train_requested, timeout=1000) as blocker:
        qtbot.mouseClick(panel.finetune_button, LEFT)
    assert blocker.args == [True]


def test_running_toggles_buttons_and_inputs(panel, qtbot):
    panel.set_model_available(True)
    panel.set_expected_hint(182, "≈ 182 on 3 densely labelled micrographs")
    panel.set_running(True)
    assert panel.stop_button.isEnabled()
    for w in (panel.train_button, panel.finetune_button, panel.expected, panel.objective, panel.minutes,
              panel.use_hint):
        assert not w.isEnabled(), w
    with qtbot.assertNotEmitted(panel.train_requested):
        qtbot.mouseClick(panel.train_button, LEFT)

    with qtbot.waitSignal(panel.stop_requested, timeout=1000):
        qtbot.mouseClick(panel.stop_button, LEFT)
    assert not panel.stop_button.isEnabled()  # one click is enough while the step finishes
    with qtbot.assertNotEmitted(panel.stop_requested):
        qtbot.mouseClick(panel.stop_button, LEFT)

    panel.set_running(False)
    assert not panel.stop_button.isEnabled()
    for w in (panel.train_button, panel.finetune_button, panel.expected, panel.objective, panel.minutes,
              panel.use_hint):
        assert w.isEnabled(), w
    assert panel.stop_button.text() == "Stop"


def test_hint_use_button_sets_the_expected_count(panel, qtbot):
    assert not panel.hint_label.isVisible()
    assert not panel.use_hint.isEnabled()
    panel.set_expected_hint(182.0, "≈ 182 on the 3 micrographs you labelled densely — use")
    assert panel.hint_label.isVisible()
    assert "182" in panel.hint_label.text()
    with qtbot.waitSignal(panel.settings_changed, timeout=1000):
        qtbot.mouseClick(panel.use_hint, LEFT)
    assert panel.expected.value() == 182
    assert panel.settings()["expected_per_micrograph"] == 182.0

    panel.set_expected_hint(None, "")
    assert not panel.hint_label.isVisible()
    assert not panel.use_hint.isEnabled()


def test_user_edits_emit_settings_changed(panel, qtbot):
    with qtbot.waitSignal(panel.settings_changed, timeout=1000):
        panel.objective.setCurrentIndex(panel.objective.findData("nnpu"))
    with qtbot.waitSignal(panel.settings_changed, timeout=1000):
        panel.minutes.setValue(5)
    panel.expected.setFocus()
    panel.expected.selectAll()
    with qtbot.waitSignal(panel.settings_changed, timeout=1000):
        qtbot.keyClicks(panel.expected, "250")
        qtbot.keyClick(panel.expected, Qt.Key.Key_Return)
    assert panel.settings() == {"expected_per_micrograph": 250.0, "objective": "nnpu", "max_minutes": 5.0}


def test_settings_round_trip_without_signals(panel, qtbot):
    with qtbot.assertNotEmitted(panel.settings_changed):
        panel.set_settings(120.0, "ge-kl", 3.5)
    assert panel.settings() == {"expected_per_micrograph": 120.0, "objective": "ge-kl", "max_minutes": 3.5}
    assert panel.objective.currentText() == "GE-KL"
    with qtbot.assertNotEmitted(panel.settings_changed):
        panel.set_settings(None, "pn", 0.5)
    assert panel.settings() == {"expected_per_micrograph": None, "objective": "pn", "max_minutes": 0.5}
    assert panel.expected.text() == "auto"


def test_unknown_objective_falls_back_to_the_default(panel, caplog):
    panel.set_settings(100.0, "no-such-objective", 2.0)
    assert panel.settings()["objective"] == "ge-binomial"
    assert "no-such-objective" in caplog.text


def test_device_warning_is_visible(panel):
    panel.set_device("GPU: NVIDIA H200")
    assert panel.device_label.text() == "GPU: NVIDIA H200"
    assert not panel.device_warning.isVisible()
    warning = "cuda asked for but no CUDA device is available; using the CPU"
    panel.set_device("CPU (16 threads)", warning)
    assert panel.device_label.text() == "CPU (16 threads)"
    assert panel.device_warning.isVisible()
    assert panel.device_warning.text() == warning
    # Drawn in the warning colour, not the ordinary text colour.
    assert panel.device_warning.palette().color(panel.device_warning.foregroundRole()).name() != \
        panel.device_label.palette().color(panel.device_label.foregroundRole()).name()


def test_diameter_is_shown_read_only(panel):
    panel.set_diameter(180.0, 36.0)
    assert "180 Å" in panel.diameter_label.text() and "36 px" in panel.diameter_label.text()
    panel.set_diameter(180.0, None)
    assert panel.diameter_label.text() == "180 Å"


def test_reports_fill_the_curves_and_status(panel, qtbot):
    reports = fake_reports(500)
    for r in reports:
        panel.add_report(r)
    # The redraw is throttled: it happens on its timer, not on every report.
    def drawn() -> int:
        x, _ = panel.loss_raw_curve.getData()
        return 0 if x is None else len(x)

    assert drawn() == 0  # nothing drawn inside add_report
    qtbot.waitUntil(lambda: drawn() == 500, timeout=2000)

    x, y = panel.loss_raw_curve.getData()
    np.testing.assert_array_equal(x, np.arange(1, 501))
    np.testing.assert_allclose(y, [r.loss for r in reports])
    xs, ys = panel.loss_curve.getData()
    assert len(xs) == 500
    assert np.std(np.diff(ys)) < np.std(np.diff(y))  # the running mean is smoother than the raw loss

    val = [(r.step, r.val_ap) for r in reports if r.val_ap is not None]
    vx, vy = panel.val_curve.getData()
    np.testing.assert_array_equal(vx, [s for s, _ in val])
    np.testing.assert_allclose(vy, [a for _, a in val])

    best_step, best_ap = max(val, key=lambda sa: sa[1])
    assert panel.best() == (best_step, pytest.approx(best_ap))
    bx, by = panel.best_marker.getData()
    assert list(bx) == [best_step] and by[0] == pytest.approx(best_ap)
    assert panel.best_line.value() == pytest.approx(best_ap)

    status = panel.status_label.text()
    assert "step 500" in status
    assert f"best {best_ap:.2f}" in status
    assert f"validation AP {val[-1][1]:.2f}" in status
    assert "model resnet8" in panel.message_label.text()
    assert panel.message_label.isVisible()


def test_add_report_accepts_any_object_with_the_attributes(panel):
    class Report:
        step, epoch, loss, ge_penalty, val_ap, best_val_ap, elapsed_s, device, message = (
            7, 0, float("nan"), None, None, None, 75.0, "cpu", None)

    panel.add_report(Report())
    panel.flush()
    assert panel.status_label.text() == "step 7 · 1 min 15 s"


def test_reset_clears_for_a_new_run(panel):
    for r in fake_reports(100):
        panel.add_report(r)
    panel.finished("converged")
    assert panel.outcome_label.isVisible() and panel.outcome_label.text() == "converged"
    assert len(panel.loss_raw_curve.getData()[0]) == 100

    panel.reset()
    for curve in (panel.loss_raw_curve, panel.loss_curve, panel.val_curve):
        x, _ = curve.getData()
        assert x is None or len(x) == 0
    assert panel.best() is None
    assert not panel.best_line.isVisible()
    assert not panel.outcome_label.isVisible()
    assert not panel.message_label.isVisible()
    assert "step" not in panel.status_label.text()

    panel.add_report(fake_reports(1)[0])
    panel.flush()
    assert list(panel.loss_raw_curve.getData()[0]) == [1]


def test_finished_shows_the_outcome_and_the_final_state(panel):
    for r in fake_reports(280):
        panel.add_report(r)
    panel.finished("stopped by you: kept the best model (step 280, AP 0.64)")
    assert panel.outcome_label.text().startswith("stopped by you")
    assert "step 280" in panel.status_label.text()  # flushed, not waiting for the timer


def test_plot_items_are_reused(panel):
    items = list(panel.val_plot.getPlotItem().items) + list(panel.loss_plot.getPlotItem().items)
    for r in fake_reports(200):
        panel.add_report(r)
    panel.flush()
    panel.reset()
    panel.add_report(fake_reports(1)[0])
    panel.flush()
    assert list(panel.val_plot.getPlotItem().items) + list(panel.loss_plot.getPlotItem().items) == items


def test_running_mean():
    v = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(running_mean(v, 2), [1.0, 2.0, 3.0, 5.0, 6.0])
    assert np.isnan(running_mean(np.array([np.nan]), 3)[0])


def test_the_panel_offers_exactly_the_cores_objectives():
    from picker_gui.core.objectives import OBJECTIVES as CORE
    from picker_gui.gui.train_panel import OBJECTIVES

    assert OBJECTIVES == CORE
