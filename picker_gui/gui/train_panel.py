"""The Train dock: settings for a training run, Train / Fine-tune / Stop, and live plots.

The panel only shows and asks; the window runs the job. It emits ``train_requested(fine_tune)``
and ``stop_requested`` and is fed :class:`~picker_gui.core.training.TrainReport` objects through
:meth:`TrainPanel.add_report`, which is called on the GUI thread after every training step. That
call only appends to numpy buffers; the curves are redrawn at most ten times a second.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from picker_gui.gui import theme

logger = logging.getLogger(__name__)

DEFAULT_OBJECTIVE = "ge-binomial"
DEFAULT_MINUTES = 2.5
#: Redraw the curves at most this often (ms): add_report runs once per training step.
REDRAW_MS = 100
#: Steps in the running mean drawn over the raw (noisy, per-minibatch) loss.
SMOOTH_STEPS = 20

#: Display name and tooltip of each objective; the keys are picker_gui.core.objectives.OBJECTIVES
#: (a test keeps them equal), written out here so that the window starts without importing torch.
OBJECTIVE_INFO = {
    "ge-binomial": (
        "GE-binomial",
        "GE-binomial (Topaz's default, and ours): cross-entropy on your labels plus a penalty that keeps "
        "the share of unlabelled pixels the picker calls 'particle' near the expected share (pi). "
        "Made for sparse labels: you need not label every particle.",
    ),
    "ge-kl": (
        "GE-KL",
        "GE-KL: like GE-binomial, but the penalty is the KL divergence between the expected share (pi) "
        "and the picker's mean prediction on unlabelled pixels. An alternative when GE-binomial over- or under-picks.",
    ),
    "nnpu": (
        "nnPU",
        "nnPU (Kiryo et al. 2017): the unbiased positive-unlabelled risk with the non-negative correction. "
        "Also for sparse labels; uses the expected share (pi) as a class prior.",
    ),
    "pn": (
        "PN (dense labels only)",
        "PN: every unlabelled pixel counts as 'not a particle'. Right only when you labelled every particle "
        "on the labelled micrographs; with sparse labels it learns to under-pick.",
    ),
}
OBJECTIVES = tuple(OBJECTIVE_INFO)

_MUTED = "#9aa0a6"
_WARNING = "#ff9f43"  # orange: readable on the dark panel, distinct from the red of errors
_AXIS = "#8a8a8a"


def _rgb(color, alpha: int = 255) -> tuple[int, int, int, int]:
    c = pg.mkColor(color)
    return (c.red(), c.green(), c.blue(), alpha)


def _format_seconds(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


class _Buffer:
    """A growing 1-D float array: amortised O(1) appends, views for plotting."""

    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def append(self, value: float) -> None:
        if self.size == len(self._data):
            grown = np.empty(2 * len(self._data), dtype=np.float64)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size] = value
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    @property
    def values(self) -> np.ndarray:
        return self._data[: self.size]


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (fewer at the start), skipping non-finite ones."""
    finite = np.isfinite(values)
    csum = np.concatenate(([0.0], np.cumsum(np.where(finite, values, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(finite)))
    hi = np.arange(1, len(values) + 1)
    lo = np.maximum(hi - window, 0)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def _make_plot(y_label: str, tooltip: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background=theme.BACKGROUND)
    plot.setToolTip(tooltip)
    plot.setMinimumHeight(90)
    plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
    item = plot.getPlotItem()
    item.setMenuEnabled(False)
    item.hideButtons()  # the auto-range "A" button: the plots follow the data anyway
    item.showGrid(x=True, y=True, alpha=0.15)
    font = QFont()
    font.setPointSizeF(max(font.pointSizeF() - 1.5, 7.0))
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(_AXIS))
        axis.setTextPen(pg.mkPen(theme.TEXT))
        axis.setTickFont(font)
        axis.enableAutoSIPrefix(False)  # "loss (x0.001)" reads worse than plain decimals
    item.getAxis("left").setWidth(42)  # the same for both plots, so that their x axes line up
    item.setLabel("left", y_label, color=theme.TEXT, size=f"{font.pointSizeF():g}pt")
    return plot


class TrainPanel(QWidget):
    """Train dock: settings, Train / Fine-tune / Stop, a status line and live loss / AP plots.

    Signals
    -------
    train_requested(bool)
        The user asked for a run; True to fine-tune the current model, False for a new one.
    stop_requested()
        The user asked to stop the run (the best model so far is kept).
    settings_changed()
        The user edited a setting (read them with :meth:`settings`).
    """

    train_requested = pyqtSignal(bool)
    stop_requested = pyqtSignal()
    settings_changed = pyqtSignal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._running = False
        self._model_available = False
        self._hint_value: float | None = None

        settings = QGroupBox("Training")
        form = QFormLayout(settings)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        # Expected particles per micrograph: 0 reads "auto" (None: training assumes 10 % of the area).
        self.expected = QDoubleSpinBox(decimals=0, minimum=0, maximum=100_000, singleStep=10)
        self.expected.setSpecialValueText("auto")
        self.expected.setKeyboardTracking(False)
        self.expected.setMinimumWidth(70)
        self.expected.setToolTip(
            "How many particles a micrograph holds on average, labelled or not. It sets pi, the share of "
            "particle pixels the objective expects among the unlabelled ones.\n"
            "Default 'auto' (type 0): assume particles cover a tenth of the micrograph."
        )
        self.expected.valueChanged.connect(self._on_setting_changed)
        self.use_hint = QToolButton(text="Use")
        self.use_hint.setToolTip("Set the expected count to the estimate shown below")
        self.use_hint.clicked.connect(self._on_use_hint_clicked)
        self.use_hint.setEnabled(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.expected, 1)
        row.addWidget(self.use_hint)
        form.addRow("Particles/mic.", row)
        form.labelForField(row).setToolTip(self.expected.toolTip())
        self.hint_label = QLabel()
        self.hint_label.setWordWrap(True)
        self.hint_label.setStyleSheet(f"color: {_MUTED};")
        self.hint_label.setToolTip("An estimate from your labels; click Use to take it")
        self.hint_label.hide()
        form.addRow(self.hint_label)

        self.objective = QComboBox()
        self.objective.setMinimumWidth(90)
        for i, key in enumerate(OBJECTIVES):
            name, tip = OBJECTIVE_INFO.get(key, (key, key))
            self.objective.addItem(name, key)
            self.objective.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.objective.setCurrentIndex(self.objective.findData(DEFAULT_OBJECTIVE))
        self.objective.currentIndexChanged.connect(self._on_objective_changed)
        form.addRow("Objective", self.objective)
        self._update_objective_tooltip()

        self.minutes = QDoubleSpinBox(decimals=1, minimum=0.5, maximum=120, singleStep=0.5, suffix=" min")
        self.minutes.setValue(DEFAULT_MINUTES)
        self.minutes.setKeyboardTracking(False)
        self.minutes.setToolTip(
            f"Time budget: training stops after this long (or earlier when validation stops improving) "
            f"and keeps the best model. Default {DEFAULT_MINUTES:g} min; 0.5 to 120."
        )
        self.minutes.valueChanged.connect(self._on_setting_changed)
        form.addRow("Time budget", self.minutes)

        self.diameter_label = QLabel("–")
        self.diameter_label.setToolTip("Particle diameter the picker is trained for; set it in the Particles panel")
        form.addRow("Diameter", self.diameter_label)

        self.device_label = QLabel("–")
        self.device_label.setWordWrap(True)
        self.device_label.setToolTip("Where training runs: a GPU when one works, else the CPU")
        form.addRow("Device", self.device_label)
        self.device_warning = QLabel()
        self.device_warning.setWordWrap(True)
        self.device_warning.setStyleSheet(f"color: {_WARNING};")
        self.device_warning.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device_warning.hide()
        form.addRow(self.device_warning)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a new picker from scratch on your labels, in the background")
        self.train_button.clicked.connect(lambda: self.train_requested.emit(False))
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip(
            "Continue training the current picker on your labels (faster after adding a few labels); "
            "needs a trained picker"
        )
        self.finetune_button.clicked.connect(lambda: self.train_requested.emit(True))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop training now and keep the best picker so far")
        self.stop_button.clicked.connect(self._on_stop_clicked)
        buttons = QHBoxLayout()
        for b in (self.train_button, self.finetune_button, self.stop_button):
            b.setMinimumWidth(60)
            buttons.addWidget(b)

        self.status_label = QLabel("Not trained yet")
        self.status_label.setWordWrap(True)
        self.status_label.setToolTip("Progress of the current run: step, time, loss and validation AP")
        self.outcome_label = QLabel()
        self.outcome_label.setWordWrap(True)
        self.outcome_label.setStyleSheet("font-weight: bold;")
        self.outcome_label.setToolTip("How the last run ended")
        self.outcome_label.hide()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet(f"color: {_MUTED};")
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.setToolTip("What the run was started with: model, pi, labels and device")
        self.message_label.hide()

        self.loss_plot = _make_plot("loss", "Training loss per step: faint, each minibatch; bright, "
                                    f"the mean of the last {SMOOTH_STEPS} steps")
        self.val_plot = _make_plot("val. AP", "Average precision of the picks on held-out labelled "
                                   "micrographs (higher is better); the star marks the best, which is kept")
        self.val_plot.setXLink(self.loss_plot)
        self.loss_plot.getPlotItem().getAxis("bottom").setStyle(showValues=False)
        self.val_plot.setLabel("bottom", "step", color=theme.TEXT,
                               size=self.loss_plot.getPlotItem().getAxis("left").labelStyle.get("size"))
        self.val_plot.setYRange(0.0, 1.0, padding=0.02)
        self.val_plot.getPlotItem().getViewBox().setMouseEnabled(y=False)
        self.val_plot.getPlotItem().enableAutoRange(y=False)

        self.loss_raw_curve = self.loss_plot.plot(pen=pg.mkPen(_rgb(theme.ACCENT, 70), width=1))
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen(theme.ACCENT, width=2))
        self.val_curve = self.val_plot.plot(
            pen=pg.mkPen(theme.POSITIVE_COLOR, width=1.5),
            symbol="o", symbolSize=5,
            symbolPen=pg.mkPen(theme.POSITIVE_COLOR), symbolBrush=pg.mkBrush(theme.POSITIVE_COLOR),
        )
        self.best_line = pg.InfiniteLine(angle=0, pen=pg.mkPen(_rgb(theme.POSITIVE_COLOR, 110), width=1,
                                                                  style=Qt.PenStyle.DashLine))
        self.best_line.hide()
        self.val_plot.addItem(self.best_line)
        self.best_marker = pg.ScatterPlotItem(size=14, symbol="star", pen=pg.mkPen("#ffffff", width=1),
                                              brush=pg.mkBrush(theme.POSITIVE_COLOR))
        self.val_plot.addItem(self.best_marker)

        plots = QVBoxLayout()
        plots.setSpacing(2)
        plots.addWidget(self.loss_plot, 1)
        plots.addWidget(self.val_plot, 1)

        layout = QVBoxLayout(self)
        layout.addWidget(settings)
        layout.addLayout(buttons)
        for w in (self.status_label, self.outcome_label, self.message_label):
            layout.addWidget(w)
        layout.addLayout(plots, 1)

        self._steps = _Buffer()
        self._loss = _Buffer()
        self._val_steps = _Buffer(64)
        self._val_ap = _Buffer(64)
        self._last: object | None = None
        self._last_ap: float | None = None
        self._best: tuple[int, float] | None = None  # step, AP
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.flush)
        self._update_enabled()

    # -- settings ------------------------------------------------------------------------
    def settings(self) -> dict:
        """``{"expected_per_micrograph": float | None, "objective": str, "max_minutes": float}``;
        None means "auto"."""
        n = self.expected.value()
        return {
            "expected_per_micrograph": None if n <= self.expected.minimum() else float(n),
            "objective": str(self.objective.currentData()),
            "max_minutes": float(self.minutes.value()),
        }

    def set_settings(self, expected_per_micrograph: float | None = None, objective: str = DEFAULT_OBJECTIVE,
                     max_minutes: float = DEFAULT_MINUTES) -> None:
        """Set without emitting :attr:`settings_changed` (the window calls this when a project
        opens). An objective this version does not know is logged and replaced by the default."""
        index = self.objective.findData(str(objective).lower())
        if index < 0:
            logger.warning("unknown training objective %r in the project; using %s", objective, DEFAULT_OBJECTIVE)
            index = self.objective.findData(DEFAULT_OBJECTIVE)
        with QSignalBlocker(self.expected), QSignalBlocker(self.objective), QSignalBlocker(self.minutes):
            valid = expected_per_micrograph is not None and math.isfinite(expected_per_micrograph)
            self.expected.setValue(float(expected_per_micrograph) if valid else self.expected.minimum())
            self.objective.setCurrentIndex(index)
            self.minutes.setValue(float(max_minutes))
        self._update_objective_tooltip()

    def set_expected_hint(self, n: float | None, text: str) -> None:
        """Show an estimate of the expected count beside the spin box; Use takes ``n``.

        ``n=None`` shows ``text`` alone (or nothing when it is empty) and disables Use."""
        self._hint_value = None if n is None or not math.isfinite(n) or n <= 0 else float(n)
        self.hint_label.setText(text)
        self.hint_label.setVisible(bool(text))
        self._update_enabled()

    def set_diameter(self, diameter_a: float, diameter_px: float | None) -> None:
        """The particle diameter, read-only here (it is set in the display panel)."""
        text = f"{diameter_a:g} Å"
        if diameter_px is not None:
            text += f"  ({diameter_px:.0f} px)"
        self.diameter_label.setText(text)

    def set_device(self, text: str, warning: str | None = None) -> None:
        """The device line ("GPU: NVIDIA H200", "CPU (16 threads)") and a warning shown in
        orange below it, e.g. when a GPU was asked for but training falls back to the CPU."""
        self.device_label.setText(text)
        self.device_warning.setText(warning or "")
        self.device_warning.setToolTip(warning or "")
        self.device_warning.setVisible(bool(warning))

    def set_model_available(self, available: bool) -> None:
        """Whether there is a trained picker to fine-tune."""
        self._model_available = bool(available)
        self._update_enabled()

    def set_running(self, running: bool) -> None:
        """While running: Stop on, the settings and Train / Fine-tune off."""
        self._running = bool(running)
        self.stop_button.setText("Stop")
        self._update_enabled()

    @property
    def running(self) -> bool:
        return self._running

    # -- progress ------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the plots and the status for a new run."""
        self._redraw.stop()
        for buf in (self._steps, self._loss, self._val_steps, self._val_ap):
            buf.clear()
        self._last = None
        self._last_ap = None
        self._best = None
        for curve in (self.loss_raw_curve, self.loss_curve, self.val_curve):
            curve.setData([], [])
        self.best_marker.setData([], [])
        self.best_line.hide()
        self.status_label.setText("Starting…")
        self.message_label.clear()
        self.message_label.hide()
        self.outcome_label.clear()
        self.outcome_label.hide()

    def add_report(self, report) -> None:
        """Take one step's :class:`~picker_gui.core.training.TrainReport` (or any object with
        its attributes). Cheap: the plots and the status line follow within REDRAW_MS."""
        self._steps.append(report.step)
        self._loss.append(report.loss if report.loss is not None else math.nan)
        ap = report.val_ap
        if ap is not None:
            self._val_steps.append(report.step)
            self._val_ap.append(ap)
            self._last_ap = float(ap)
            if math.isfinite(ap) and (self._best is None or ap > self._best[1]):
                self._best = (int(report.step), float(ap))
        if report.message:
            self.message_label.setText(report.message.replace("; ", "\n"))
            self.message_label.setToolTip(report.message)
            self.message_label.show()
        self._last = report
        if not self._redraw.isActive():
            self._redraw.start()

    def best(self) -> tuple[int, float] | None:
        """(step, AP) of the best validation so far, or None before the first validation."""
        return self._best

    def flush(self) -> None:
        """Redraw the curves and the status line now (the timer does it otherwise)."""
        self._redraw.stop()
        if self._last is None:
            return
        steps, loss = self._steps.values, self._loss.values
        self.loss_raw_curve.setData(steps, loss)
        self.loss_curve.setData(steps, running_mean(loss, SMOOTH_STEPS))
        self.val_curve.setData(self._val_steps.values, self._val_ap.values)
        if self._best is not None:
            self.best_marker.setData([self._best[0]], [self._best[1]])
            self.best_line.setValue(self._best[1])
            self.best_line.show()
        self.status_label.setText(self._status_text(self._last))

    def _status_text(self, r) -> str:
        parts = [f"step {r.step}", _format_seconds(r.elapsed_s)]
        if r.loss is not None and math.isfinite(r.loss):
            parts.append(f"loss {r.loss:.3g}")
        if self._last_ap is not None:
            ap = f"validation AP {self._last_ap:.2f}"
            best = self._best[1] if self._best is not None else r.best_val_ap
            if best is not None:
                ap += f" (best {best:.2f})"
            parts.append(ap)
        return " · ".join(parts)

    def finished(self, text: str) -> None:
        """Show how the run ended ("converged", "stopped by you: kept the best model …")."""
        self.flush()
        self.outcome_label.setText(text)
        self.outcome_label.setVisible(bool(text))

    # -- handlers ------------------------------------------------------------------------
    def _update_enabled(self) -> None:
        idle = not self._running
        self.train_button.setEnabled(idle)
        self.finetune_button.setEnabled(idle and self._model_available)
        self.stop_button.setEnabled(self._running)
        for w in (self.expected, self.objective, self.minutes):
            w.setEnabled(idle)
        self.use_hint.setEnabled(idle and self._hint_value is not None)

    def _on_setting_changed(self, *_) -> None:
        self.settings_changed.emit()

    def _on_objective_changed(self, *_) -> None:
        self._update_objective_tooltip()
        self.settings_changed.emit()

    def _update_objective_tooltip(self) -> None:
        key = self.objective.currentData()
        tip = OBJECTIVE_INFO.get(key, (key, str(key)))[1]
        self.objective.setToolTip(f"{tip}\n\nHover over a choice for what it does. Default: GE-binomial.")

    def _on_use_hint_clicked(self) -> None:
        if self._hint_value is not None:
            self.expected.setValue(self._hint_value)

    def _on_stop_clicked(self) -> None:
        # Stopping takes until the current step ends: say so, and refuse a second click.
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stopping…")
        self.stop_requested.emit()
