"""The live threshold control: a slider, a spin box and a histogram line kept in step, what the
threshold costs, and the least distance between picks.

Scores are logits (0 = even odds). Every threshold move redraws the picks in the viewer, so
this panel's own share of a move is kept to a few Qt calls: the two other controls are set, the
highlighted part of the histogram is re-sliced from bins computed once per :meth:`set_scores`
(about a hundred points, no re-binning), and the lead's ``set_cost`` only changes label texts.

The threshold is quantised to :data:`STEP` so that the slider, the spin box (2 decimals) and
the line always hold the same value, and the value emitted is the one they show.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from picker_gui.gui.theme import ACCENT, BACKGROUND, TEXT

#: Threshold resolution (score units); the spin box shows :data:`DECIMALS` decimals.
STEP = 0.01
DECIMALS = 2
#: Bins of the score histogram.
N_BINS = 80
#: Orange for a cost worth a second look (picks per micrograph far from the expected count,
#: recall below :data:`LOW_RECALL`).
WARNING_COLOR = "#ffa24c"
LOW_RECALL = 0.8
#: Picks per micrograph this far from the expected count (either way) are flagged.
EXPECTED_FACTOR = 2.0
#: Keyboard, wheel and spin-arrow moves come in bursts: they are committed (saved by the
#: window) once the burst has stopped this long. Mouse releases and Enter commit at once.
COMMIT_DELAY_MS = 300
#: Re-filtering every micrograph for a new least distance takes a few hundred ms: spin-arrow
#: clicks on the least distance are applied after this pause, not one by one.
DISTANCE_DELAY_MS = 500

DIM_PEN = (130, 134, 142)
DIM_BRUSH = (130, 134, 142, 70)

THRESHOLD_TIP = (
    "Picks scoring at or above this threshold are shown. The score is the model's log-odds: 0 means "
    "a particle and background are equally likely; raise it to keep fewer, surer picks, lower it "
    "to keep more."
)
HISTOGRAM_TIP = (
    "How many candidate picks have each score. The blue bars right of the line are the picks "
    "shown; the grey ones left of it are hidden. Drag the line to move the threshold."
)
COUNT_TIP = (
    "How many picks the threshold keeps, on how many micrographs, and how many that makes per "
    "micrograph. Orange: under half or over twice the number you expect per micrograph."
)
RECALL_TIP = (
    "Of the particles you labelled, the fraction that have a pick at or above this threshold "
    "(counted on the micrographs the model did not train on, when it held some out). Orange "
    "below 0.8: the threshold drops particles you marked."
)
DISTANCE_TIP = (
    "Two picks are never closer than this: of two candidates nearer to each other, the lower-"
    "scoring one is dropped (Topaz's NMS radius). Lower it for dense or elongated particles, raise "
    "it if one particle gets two picks. Default: the particle radius. Applied when you press Enter "
    "or leave the field."
)
NO_PICKS_HINT = "Train or load a model to see picks"
NBSP = "\u00a0"


def _quantise(t: float) -> float:
    """``t`` on the :data:`STEP` grid, as the spin box would show it."""
    return round(round(t / STEP) * STEP, DECIMALS)


class ThresholdPanel(QWidget):
    """Threshold slider, spin box and histogram line, the cost of the threshold, and the least
    distance between picks.

    Signals
    -------
    threshold_changed(float)
        Live, on every move of any of the three controls (while dragging too).
    threshold_committed(float)
        When a move is finished: mouse released, Enter pressed, or a burst of key, wheel or
        arrow steps over. The window saves then.
    min_distance_changed(float)
        The least distance between picks, in Å, when its edit is finished (not per keystroke).

    The ``set_*`` methods never emit.
    """

    threshold_changed = pyqtSignal(float)
    threshold_committed = pyqtSignal(float)
    min_distance_changed = pyqtSignal(float)

    def __init__(self, parent: QWidget | None = None, *, with_distance: bool = True, hint: str = NO_PICKS_HINT,
                 threshold_tip: str = THRESHOLD_TIP) -> None:
        """``with_distance=False``: no least-distance control and no recall line (the consensus
        panel's slider over scores in [0, 1])."""
        super().__init__(parent)
        self._with_distance = with_distance
        self._value = 0.0
        self._committed = 0.0
        self._k_lo = 0  # the slider's 0, in STEP units
        self._updating = False  # set while one control moves the others
        self._edges = np.zeros(0)
        self._counts = np.zeros(0)
        self._shown_counts = np.zeros(0)  # counts as drawn (log-scaled or not)
        self._log_y = False
        self._warn = {}
        self._pixel_size_a: float | None = None
        self._emitted_distance: float | None = None

        self._commit_timer = QTimer(self, singleShot=True, interval=COMMIT_DELAY_MS)
        self._commit_timer.timeout.connect(self._commit)
        self._distance_timer = QTimer(self, singleShot=True, interval=DISTANCE_DELAY_MS)
        self._distance_timer.timeout.connect(self._emit_distance)

        self.hint = QLabel(hint)
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #9aa0a6; font-style: italic;")

        # -- threshold: spin box, log toggle, slider -------------------------------------
        title = QLabel("Threshold")
        title.setToolTip(threshold_tip)
        self.spin = QDoubleSpinBox(decimals=DECIMALS, singleStep=0.1)
        self.spin.setToolTip(threshold_tip)
        # Typed values apply on Enter, not per keystroke ("-" then "-2" then "-2.5").
        self.spin.setKeyboardTracking(False)
        self.spin.setMinimumWidth(80)
        self.log_box = QCheckBox("Log")
        self.log_box.setToolTip("Histogram heights on a log scale, to see the few high-scoring picks "
                                "beside the many low-scoring ones")
        self.log_box.toggled.connect(self.set_log_y)
        head = QHBoxLayout()
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(self.spin)
        head.addWidget(self.log_box)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip(threshold_tip)
        self.slider.setSingleStep(10)  # 0.1 per arrow key
        self.slider.setPageStep(50)  # 0.5 per page key or groove click
        # Fusion fills a disabled slider's groove with the (accent) highlight: grey it out.
        pal = self.slider.palette()
        pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor("#5f6368"))
        self.slider.setPalette(pal)

        # -- histogram ---------------------------------------------------------------------
        self.plot = pg.PlotWidget(background=BACKGROUND)
        self.plot.setToolTip(HISTOGRAM_TIP)
        self.plot.setFixedHeight(110)
        self.plot.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.plot.setMinimumWidth(150)
        item = self.plot.getPlotItem()
        item.hideAxis("left")
        item.hideButtons()
        item.setMenuEnabled(False)
        item.setMouseEnabled(x=False, y=False)
        axis = item.getAxis("bottom")
        axis.setPen(pg.mkPen("#8a8f96"))
        axis.setTextPen(pg.mkPen(TEXT))
        axis.setHeight(22)
        item.layout.setContentsMargins(4, 4, 8, 0)
        self.plot.setYRange(0, 1)
        # Two curves over the same bins: all of them dimmed, and the part above the threshold
        # in the accent colour on top. A move re-slices the second one (no re-binning).
        accent = QColor(ACCENT)
        accent_fill = QColor(accent)
        accent_fill.setAlpha(150)
        bars = dict(stepMode="center", fillLevel=0, antialias=False)
        self.hist_all = pg.PlotCurveItem(np.zeros(2), np.zeros(1), pen=pg.mkPen(DIM_PEN, width=1),
                                         brush=pg.mkBrush(DIM_BRUSH), **bars)
        self.hist_above = pg.PlotCurveItem(np.zeros(2), np.zeros(1), pen=pg.mkPen(accent, width=1),
                                           brush=pg.mkBrush(accent_fill), **bars)
        self.plot.addItem(self.hist_all)
        self.plot.addItem(self.hist_above)
        self.line = pg.InfiniteLine(0.0, angle=90, movable=True, pen=pg.mkPen("#ffffff", width=2),
                                    hoverPen=pg.mkPen(ACCENT, width=3))
        self.line.setToolTip(HISTOGRAM_TIP)
        self.line.setZValue(10)
        self.plot.addItem(self.line)

        # -- what the threshold costs --------------------------------------------------------
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)
        self.count_label.setToolTip(COUNT_TIP)
        self.recall_label = QLabel()
        self.recall_label.setWordWrap(True)
        self.recall_label.setToolTip(RECALL_TIP)

        # -- least distance between picks ----------------------------------------------------
        rule = QFrame()
        rule.setFrameShape(QFrame.Shape.HLine)
        rule.setStyleSheet("color: #3c3d41;")
        distance_title = QLabel("Least distance")
        distance_title.setToolTip(DISTANCE_TIP)
        self.distance = QDoubleSpinBox(decimals=0, minimum=1, maximum=10_000, singleStep=5, suffix=" Å")
        self.distance.setToolTip(DISTANCE_TIP)
        self.distance.setKeyboardTracking(False)
        self.distance_px = QLabel("")
        self.distance_px.setToolTip("The least distance in micrograph pixels")
        self.distance_px.setMinimumWidth(60)
        drow = QHBoxLayout()
        drow.addWidget(distance_title)
        drow.addStretch(1)
        drow.addWidget(self.distance)
        drow.addWidget(self.distance_px)

        layout = QVBoxLayout(self)
        layout.addWidget(self.hint)
        layout.addLayout(head)
        layout.addWidget(self.slider)
        layout.addWidget(self.plot)
        layout.addWidget(self.count_label)
        layout.addWidget(self.recall_label)
        if with_distance:
            layout.addWidget(rule)
            layout.addLayout(drow)
        else:
            for w in (rule, distance_title, self.distance, self.distance_px):
                w.setParent(self)
                w.hide()
        layout.addStretch(1)

        self.slider.valueChanged.connect(self._on_slider_value_changed)
        self.slider.sliderReleased.connect(self._commit)
        self.spin.valueChanged.connect(self._on_spin_value_changed)
        self.spin.editingFinished.connect(self._commit)
        self.line.sigPositionChanged.connect(self._on_line_moved)
        self.line.sigPositionChangeFinished.connect(self._commit)
        self.distance.valueChanged.connect(self._on_distance_value_changed)
        self.distance.editingFinished.connect(self._emit_distance)

        self.set_range(-8.0, 8.0)
        self.set_threshold(0.0)
        self.set_min_distance(None, None, None)
        self.set_cost(None)
        self.set_enabled_for_picks(False)

    # -- the threshold -------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self._value

    def set_range(self, lo: float, hi: float) -> None:
        """The scores the slider spans (widened to the :data:`STEP` grid), and the histogram's
        view. The histogram itself is not rebuilt."""
        k_lo, k_hi = math.floor(lo / STEP + 1e-9), math.ceil(hi / STEP - 1e-9)
        k_hi = max(k_hi, k_lo + 1)
        lo, hi = _quantise(k_lo * STEP), _quantise(k_hi * STEP)
        self._k_lo = k_lo
        self._updating = True
        try:
            self.slider.setRange(0, k_hi - k_lo)
            self.spin.setRange(lo, hi)
            self.line.setBounds((lo, hi))
        finally:
            self._updating = False
        self.plot.setXRange(lo, hi, padding=0.02)
        self._move_to(self._value, emit=False)

    def set_threshold(self, t: float) -> None:
        """Set the three controls to ``t`` without emitting (the window calls this when the
        threshold changes elsewhere, or a project opens)."""
        self._commit_timer.stop()
        self._move_to(_quantise(t), emit=False)
        self._committed = self._value

    def _move_to(self, t: float, *, emit: bool) -> None:
        self._value = t
        self._updating = True
        try:
            # Clamped to the slider's span (a threshold beyond every score is allowed, and shown at the end).
            self.slider.setValue(int(min(max(round(t / STEP) - self._k_lo, self.slider.minimum()), self.slider.maximum())))
            self.spin.setValue(t)
            self.line.setValue(t)  # snaps a dragged line to the grid too
        finally:
            self._updating = False
        self._update_above()
        if emit:
            self.threshold_changed.emit(t)

    def _on_slider_value_changed(self, value: int) -> None:
        if self._updating:
            return
        self._move_to(_quantise((self._k_lo + value) * STEP), emit=True)
        if not self.slider.isSliderDown():  # keys, wheel, groove clicks: no release follows
            self._commit_timer.start()

    def _on_spin_value_changed(self, value: float) -> None:
        if self._updating:
            return
        self._move_to(_quantise(value), emit=True)
        self._commit_timer.start()  # arrows and wheel; Enter commits at once (editingFinished)

    def _on_line_moved(self, line) -> None:
        if self._updating:
            return
        t = _quantise(line.value())
        if t == self._value:
            self._updating = True
            try:
                line.setValue(t)
            finally:
                self._updating = False
            return
        self._move_to(t, emit=True)

    def _commit(self) -> None:
        self._commit_timer.stop()
        if self._value != self._committed:
            self._committed = self._value
            self.threshold_committed.emit(self._value)

    # -- the histogram ---------------------------------------------------------------------------
    def set_scores(self, scores: np.ndarray) -> None:
        """Rebuild the histogram from every candidate's score (non-finite ones left out).
        Call it when the scores change, never on a threshold move."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        scores = scores[np.isfinite(scores)]
        if len(scores) == 0:
            self._edges, self._counts = np.zeros(0), np.zeros(0)
        else:
            lo, hi = float(scores.min()), float(scores.max())
            if hi - lo < 1e-6:
                lo, hi = lo - 0.5, hi + 0.5
            counts, self._edges = np.histogram(scores, bins=N_BINS, range=(lo, hi))
            self._counts = counts.astype(np.float64)
        self._redraw_histogram()

    def set_log_y(self, on: bool) -> None:
        """Histogram heights as log10(1 + count): the left axis is hidden, so only the shape
        matters, and empty bins stay at zero."""
        self._log_y = bool(on)
        if self.log_box.isChecked() != self._log_y:
            self.log_box.blockSignals(True)
            self.log_box.setChecked(self._log_y)
            self.log_box.blockSignals(False)
        self._redraw_histogram()

    @property
    def bin_counts(self) -> np.ndarray:
        """Scores per histogram bin (linear, whatever the display)."""
        return self._counts

    def _redraw_histogram(self) -> None:
        if len(self._counts) == 0:
            self._shown_counts = np.zeros(0)
            self.hist_all.setData(x=np.zeros(2), y=np.zeros(1))
            self.hist_all.setVisible(False)
        else:
            self._shown_counts = np.log10(1.0 + self._counts) if self._log_y else self._counts
            self.hist_all.setData(x=self._edges, y=self._shown_counts)
            self.hist_all.setVisible(True)
            self.plot.setYRange(0, float(self._shown_counts.max()) * 1.05 or 1.0, padding=0)
        self._update_above()

    def _update_above(self) -> None:
        """Re-slice the accent curve at the threshold: bins from the one holding it upwards,
        its left edge moved to the threshold."""
        edges, t = self._edges, self._value
        if len(edges) == 0 or t >= edges[-1]:
            self.hist_above.setVisible(False)
            return
        i = int(np.searchsorted(edges, t, side="right"))
        if i == 0:
            x, y = edges, self._shown_counts
        else:
            x = np.concatenate(([t], edges[i:]))
            y = self._shown_counts[i - 1:]
        self.hist_above.setData(x=x, y=y)
        self.hist_above.setVisible(True)

    # -- what the threshold costs -----------------------------------------------------------------
    def set_cost(self, cost) -> None:
        """Show what the threshold keeps and loses: a
        :class:`picker_gui.core.state.ThresholdCost`, or None before there are picks."""
        if cost is None:
            self.count_label.setText("No picks")
            self.recall_label.setText("recall: —")
            self._set_warning(self.count_label, False)
            self._set_warning(self.recall_label, False)
            return
        picks = f"{cost.picks:,} pick{'s' if cost.picks != 1 else ''}"
        mics = f"{cost.micrographs:,} micrograph{'s' if cost.micrographs != 1 else ''}"
        per = cost.per_micrograph
        rate = f"{per:,.1f} per micrograph" if per < 10 else f"{per:,.0f} per micrograph"
        expected = cost.expected
        far = False
        if expected:
            rate += f" (expected {expected:,.0f})"
            far = per < expected / EXPECTED_FACTOR or per > expected * EXPECTED_FACTOR
        # No-break spaces inside each half, so a narrow dock wraps the line at the "·".
        kept = f"{picks} on {mics}".replace(" ", NBSP)
        self.count_label.setText(f"{kept}{NBSP}· {rate.replace(' ', NBSP)}")
        self._set_warning(self.count_label, far)

        if cost.recall is None:
            self.recall_label.setText("recall: —")
            low = False
        else:
            of = cost.reference or "labels"
            self.recall_label.setText(f"recall of {of}: {cost.recall:.2f} (of {cost.n_reference:,})")
            low = cost.recall < LOW_RECALL
        self._set_warning(self.recall_label, low)

    def is_warning(self, label: QLabel) -> bool:
        """Whether ``label`` is drawn in the warning colour."""
        return self._warn.get(id(label), False)

    def _set_warning(self, label: QLabel, on: bool) -> None:
        # Style sheets are re-applied only when the state flips: re-polishing a label on
        # every threshold move would cost more than the rest of the update.
        if self._warn.get(id(label)) != on:
            self._warn[id(label)] = on
            label.setStyleSheet(f"color: {WARNING_COLOR};" if on else "")

    # -- least distance between picks -----------------------------------------------------------
    @property
    def min_distance_a(self) -> float:
        return self.distance.value()

    def set_min_distance(self, distance_a: float | None, pixel_size_a: float | None,
                         diameter_a: float | None) -> None:
        """Show the least distance (Å; None: the particle radius) without emitting. With a
        diameter, the spin box spans 0.25 to 2 diameters; with a pixel size, the distance is
        also shown in pixels."""
        self._distance_timer.stop()
        self._pixel_size_a = pixel_size_a if pixel_size_a and pixel_size_a > 0 else None
        if not distance_a or distance_a <= 0:
            distance_a = 0.5 * diameter_a if diameter_a else self.distance.value()
        self.distance.blockSignals(True)
        try:
            if diameter_a and diameter_a > 0:
                self.distance.setRange(max(1.0, round(0.25 * diameter_a)), round(2.0 * diameter_a))
            else:
                self.distance.setRange(1.0, 10_000.0)
            self.distance.setValue(distance_a)
        finally:
            self.distance.blockSignals(False)
        self._emitted_distance = self.distance.value()
        self._show_distance_px()

    def _show_distance_px(self) -> None:
        if self._pixel_size_a:
            self.distance_px.setText(f"= {self.distance.value() / self._pixel_size_a:.1f} px")
        else:
            self.distance_px.setText("")

    def _on_distance_value_changed(self, _value: float) -> None:
        self._show_distance_px()
        self._distance_timer.start()  # arrows and wheel; Enter applies at once

    def _emit_distance(self) -> None:
        self._distance_timer.stop()
        value = self.distance.value()
        if value != self._emitted_distance:
            self._emitted_distance = value
            self.min_distance_changed.emit(value)

    # -- with and without picks ---------------------------------------------------------------
    def set_enabled_for_picks(self, has_picks: bool) -> None:
        """Without picks the threshold controls are disabled, the histogram hidden and a hint
        says how to get some; the least distance stays editable (it applies to the next picks)."""
        has_picks = bool(has_picks)
        self.hint.setVisible(not has_picks)
        for w in (self.slider, self.spin, self.plot, self.log_box):
            w.setEnabled(has_picks)
        self.line.setMovable(has_picks)
        self.plot.setVisible(has_picks)  # an empty histogram says nothing; the hint does
        self.count_label.setVisible(has_picks)
        self.recall_label.setVisible(has_picks and self._with_distance)
