"""The Consensus dock: input sets, merge settings, counts, the network's training and its
threshold.

Like the other panels it only shows and asks: it emits what the user wants (add a set,
change a set's threshold, train, export) and the window, through its consensus
controller, changes the :class:`~picker_gui.core.consensus_state.ConsensusState` and calls
the ``set_*`` methods back. The ``set_*`` methods never emit.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QSignalBlocker, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QIcon, QPixmap
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from picker_gui.gui.canvas import votes_colour
from picker_gui.gui.theme import BACKGROUND, TEXT
from picker_gui.gui.threshold_panel import ThresholdPanel

CONSENSUS_TIP = (
    "Keep consensus picks scoring at least this. After training, the score is the consensus network's "
    "probability that the pick is a particle (0.5: even odds); before, it is the fraction of the pickers "
    "that found the pick."
)
RADIUS_TIP = (
    "Picks of different pickers closer than this are one particle (one vote per picker). Default: a "
    "tenth of the box, as Xmipp's Deep Consensus."
)
VOTES_TIP = (
    "The positives the consensus network learns from: picks found by at least this many pickers "
    "(all of them: AND, the paper's choice)."
)
REDRAW_MS = 100


def _swatch(colour: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(*colour))
    return QIcon(pix)


class ConsensusPanel(QWidget):
    """Input sets with colours, visibility and thresholds; merge radius and votes; counts;
    Train consensus / Stop with a live validation-accuracy plot; the consensus threshold."""

    add_file_requested = pyqtSignal()
    add_picks_requested = pyqtSignal()
    add_dog_requested = pyqtSignal()
    remove_requested = pyqtSignal(str)
    set_threshold_changed = pyqtSignal(str, object)  # name, float or None
    visibility_changed = pyqtSignal(str, bool)
    radius_changed = pyqtSignal(float)  # Å
    min_votes_changed = pyqtSignal(int)
    train_requested = pyqtSignal()
    rank_requested = pyqtSignal()
    stop_requested = pyqtSignal()
    export_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._curves: dict[int, pg.PlotDataItem] = {}
        self._points: dict[int, tuple[list[float], list[float]]] = {}
        self._redraw = QTimer(self, singleShot=True, interval=REDRAW_MS)
        self._redraw.timeout.connect(self._draw_curves)

        # -- input sets -----------------------------------------------------------------------
        sets_box = QGroupBox("Pickers")
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Set", "Min score", "Picks"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(150)
        self.table.setToolTip("Each picker's set: tick to show its picks (crosses in its colour); the minimum "
                              "score drops its weaker picks before the merge")
        self.table.itemChanged.connect(self._on_item_changed)
        self.add_file = QPushButton("Add file…")
        self.add_file.setToolTip("Add a picker's coordinates: RELION STAR, cryoSPARC .cs, crYOLO .cbox, EMAN .box, "
                                 "Topaz text, CSV or JSON (micrograph names are matched to the open ones)")
        self.add_picks = QPushButton("Our picks")
        self.add_picks.setToolTip("Add this project's picks at the current pick threshold as a set")
        self.add_dog = QPushButton("Built-in")
        self.add_dog.setToolTip("Add the built-in difference-of-Gaussians picker (no training), sized from the "
                                "particle diameter: a second opinion when you have one picker")
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Remove the selected set")
        self.add_file.clicked.connect(self.add_file_requested)
        self.add_picks.clicked.connect(self.add_picks_requested)
        self.add_dog.clicked.connect(self.add_dog_requested)
        self.remove.clicked.connect(self._remove_selected)
        buttons = QHBoxLayout()
        for b in (self.add_file, self.add_picks, self.add_dog, self.remove):
            buttons.addWidget(b)
        sl = QVBoxLayout(sets_box)
        sl.addWidget(self.table)
        sl.addLayout(buttons)

        # -- merge ------------------------------------------------------------------------------
        self.radius = QDoubleSpinBox(decimals=1, minimum=0.5, maximum=10_000, singleStep=1, suffix=" Å")
        self.radius.setKeyboardTracking(False)
        self.radius.setToolTip(RADIUS_TIP)
        self.radius.valueChanged.connect(self.radius_changed)
        self.votes = QSpinBox(minimum=1, maximum=1)
        self.votes.setKeyboardTracking(False)
        self.votes.setToolTip(VOTES_TIP)
        self.votes.valueChanged.connect(self.min_votes_changed)
        self.votes_of = QLabel("of 0 pickers")
        vrow = QHBoxLayout()
        vrow.addWidget(self.votes)
        vrow.addWidget(self.votes_of)
        vrow.addStretch(1)
        form = QFormLayout()
        form.addRow("Merge radius", self.radius)
        form.addRow("Positives: found by", vrow)
        self.counts = QLabel("Add two or more sets, or one and the built-in picker")
        self.counts.setWordWrap(True)
        self.counts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # -- training ---------------------------------------------------------------------------
        self.train = QPushButton("Train consensus")
        self.train.setToolTip("Train the Deep Consensus network on the positives against random spots away from "
                              "every pick (NEG), in the background; it then scores every pick in [0, 1]")
        self.rank = QPushButton("Rank by sets")
        self.rank.setToolTip("No training: score every pick by the mean of its ranks in the sets with scores. Where "
                             "strong, independent pickers agree, both rank a particle high; remove weak pickers that "
                             "find the same junk first")
        self.stop = QPushButton("Stop")
        self.stop.setEnabled(False)
        self.train.clicked.connect(self.train_requested)
        self.rank.clicked.connect(self.rank_requested)
        self.stop.clicked.connect(self.stop_requested)
        trow = QHBoxLayout()
        trow.addWidget(self.train)
        trow.addWidget(self.rank)
        trow.addWidget(self.stop)
        self.guided = QCheckBox("Train guided by the sets' ranks")
        self.guided.setToolTip("The network also learns from the picks the sets with scores rank lowest (as negatives) "
                               "and takes as positives only agreed picks in the top half of their ranks. Better where "
                               "two or more strong pickers with scores take part; remove weak ones first")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = pg.PlotWidget(background=BACKGROUND)
        self.plot.setFixedHeight(100)
        self.plot.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        item = self.plot.getPlotItem()
        item.hideButtons()
        item.setMenuEnabled(False)
        item.setMouseEnabled(x=False, y=False)
        item.setLabel("left", "accuracy", color=TEXT)
        item.setLabel("bottom", "minibatch", color=TEXT)
        self.plot.setYRange(0.5, 1.0)
        self.plot.setToolTip("Validation accuracy of each network of the ensemble on held-out positives and negatives")
        self.plot.hide()

        # -- the consensus threshold ------------------------------------------------------------
        self.threshold = ThresholdPanel(with_distance=False, hint="Merge sets to see the consensus",
                                        threshold_tip=CONSENSUS_TIP)
        self.threshold.set_range(0.0, 1.0)
        self.threshold.set_threshold(0.5)
        self.show_box = QCheckBox("Show on the micrograph")
        self.show_box.setChecked(True)
        self.show_box.setToolTip("Draw the consensus picks (rings coloured by how many pickers found them: red one, "
                                 "green all) and the visible sets' picks")
        self.export = QPushButton("Export consensus…")
        self.export.setToolTip("Write the consensus picks at or above the threshold, in any format")
        self.export.clicked.connect(self.export_requested)
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)

        layout = QVBoxLayout(self)
        layout.addWidget(sets_box)
        layout.addLayout(form)
        layout.addWidget(self.counts)
        layout.addLayout(trow)
        layout.addWidget(self.guided)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addWidget(self.threshold)
        erow = QHBoxLayout()
        erow.addWidget(self.show_box)
        erow.addStretch(1)
        erow.addWidget(self.export)
        layout.addWidget(self.legend)
        layout.addLayout(erow)
        layout.addStretch(1)
        self.set_sets([])

    # -- sets -------------------------------------------------------------------------------------
    def set_sets(self, sets, picks: dict[str, int] | None = None) -> None:
        """Show the input sets (:class:`~picker_gui.core.consensus_state.InputSet`) and how many
        picks of each take part."""
        picks = picks or {}
        with QSignalBlocker(self.table):
            self.table.setRowCount(len(sets))
            self._names = [s.name for s in sets]
            for row, s in enumerate(sets):
                name = QTableWidgetItem(_swatch(s.colour), s.name)
                name.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable)
                name.setCheckState(Qt.CheckState.Checked if s.visible else Qt.CheckState.Unchecked)
                name.setToolTip(f"{s.name}: {len(s.table):,} picks ({s.origin})")
                self.table.setItem(row, 0, name)
                if s.has_scores:
                    spin = QDoubleSpinBox(decimals=2, minimum=-1e6, maximum=1e6, singleStep=0.1)
                    spin.setKeyboardTracking(False)
                    spin.setSpecialValueText("all")
                    lo = float(np.nanmin(s.table.score))
                    spin.setMinimum(math.floor(lo * 100) / 100 - 0.01)
                    spin.setValue(s.threshold if s.threshold is not None else spin.minimum())
                    spin.setToolTip("Use only this set's picks scoring at least this ('all': every pick)")
                    spin.valueChanged.connect(lambda v, n=s.name, sp=spin: self.set_threshold_changed.emit(
                        n, None if v <= sp.minimum() else float(v)))
                    self.table.setCellWidget(row, 1, spin)
                else:
                    self.table.removeCellWidget(row, 1)
                    none = QTableWidgetItem("no scores")
                    none.setFlags(Qt.ItemFlag.ItemIsEnabled)
                    self.table.setItem(row, 1, none)
                count = QTableWidgetItem(f"{picks.get(s.name, len(s.table)):,}")
                count.setFlags(Qt.ItemFlag.ItemIsEnabled)
                count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, 2, count)
        n = len(sets)
        with QSignalBlocker(self.votes):
            self.votes.setMaximum(max(1, n))
        self.votes_of.setText(f"of {n} picker{'s' if n != 1 else ''}")
        self.remove.setEnabled(n > 0)
        self.legend.setText("  ".join(
            f'<span style="color: rgb{votes_colour(v, n)};">●</span> {v}' for v in range(1, n + 1)) + (
            "  pickers" if n else ""))

    def set_min_votes(self, k: int) -> None:
        with QSignalBlocker(self.votes):
            self.votes.setValue(k)

    def set_radius(self, radius_a: float) -> None:
        with QSignalBlocker(self.radius):
            self.radius.setValue(radius_a)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 0 and item.row() < len(self._names):
            self.visibility_changed.emit(self._names[item.row()], item.checkState() == Qt.CheckState.Checked)

    def _remove_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if not rows and len(self._names) == 1:
            rows = {0}
        for row in sorted(rows, reverse=True):
            if row < len(self._names):
                self.remove_requested.emit(self._names[row])

    # -- counts -------------------------------------------------------------------------------------
    def set_counts(self, here: dict[str, int] | None, total: dict[str, int], k: int, n: int, scored: bool) -> None:
        """OR / AND / k-of-N / NEG / kept, on the micrograph shown and in all."""
        if n == 0:
            self.counts.setText("Add two or more sets, or one and the built-in picker")
            return

        def line(c: dict[str, int]) -> str:
            parts = [f"OR {c['or']:,}", f"AND {c['and']:,}"]
            if 1 < k < n:
                parts.append(f"{k}-of-{n} {c['k']:,}")
            if c.get("neg"):
                parts.append(f"NEG {c['neg']:,}")
            parts.append(f"kept {c['kept']:,}")
            return " · ".join(parts)

        text = (f"This micrograph: {line(here)}\n" if here is not None else "") + f"All micrographs: {line(total)}"
        if not scored:
            text += "\nScores are vote fractions until the network is trained"
        self.counts.setText(text)

    # -- training -------------------------------------------------------------------------------------
    def set_training(self, running: bool) -> None:
        self.train.setEnabled(not running)
        self.rank.setEnabled(not running)
        self.guided.setEnabled(not running)
        self.stop.setEnabled(running)
        for b in (self.add_file, self.add_picks, self.add_dog, self.remove, self.radius, self.votes):
            b.setEnabled(not running)

    def clear_reports(self) -> None:
        for c in self._curves.values():
            self.plot.removeItem(c)
        self._curves.clear()
        self._points.clear()
        self.plot.show()

    def add_report(self, report) -> None:
        """A :class:`~picker_gui.core.consensus_net.ConsensusReport` (one per minibatch: only
        the checks are drawn, at most ten redraws a second)."""
        if report.val_accuracy is None:
            return
        xs, ys = self._points.setdefault(report.member, ([], []))
        xs.append(report.step)
        ys.append(report.val_accuracy)
        self.status.setText(f"Network {report.member + 1} of {report.members}: minibatch {report.step}, "
                            f"validation accuracy {report.val_accuracy:.3f} (best {report.best_val_accuracy:.3f}), "
                            f"{report.elapsed_s:.0f} s")
        if not self._redraw.isActive():
            self._redraw.start()

    def _draw_curves(self) -> None:
        for member, (xs, ys) in self._points.items():
            curve = self._curves.get(member)
            if curve is None:
                hue = [(79, 195, 247), (255, 183, 77), (186, 104, 200), (129, 199, 132)][member % 4]
                curve = self.plot.plot(pen=pg.mkPen(hue, width=2), symbol="o", symbolSize=4, symbolBrush=hue)
                self._curves[member] = curve
            curve.setData(xs, ys)

    def validation_points(self) -> dict[int, tuple[list[float], list[float]]]:
        """The accuracy checks drawn, per network (for tests)."""
        return self._points
