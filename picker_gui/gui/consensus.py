"""The window's consensus: input sets from files, from our picks and from the built-in picker,
and the consensus network trained in the background (the core's consensus job, through the
window's :class:`~picker_gui.gui.workers.JobRunner`).

The controller changes the :class:`~picker_gui.core.consensus_state.ConsensusState`; the
window observes it and redraws. Files are read and micrograph names matched here, on the
GUI thread (a coordinate file reads in milliseconds); preprocessing and training run on
worker threads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from picker_gui.core.consensus import align_to_micrographs
from picker_gui.core.consensus_state import ConsensusState
from picker_gui.core.coords import NEGATIVE, PARTICLE
from picker_gui.core.errors import PickerError
from picker_gui.core.formats import read_file_filter

logger = logging.getLogger(__name__)


class ConsensusController(QObject):
    """Sets in, consensus out, for one window."""

    message = pyqtSignal(str)  # a line for the status bar
    error = pyqtSignal(str, str)  # title, message
    training_started = pyqtSignal()
    training_report = pyqtSignal(object)  # ConsensusReport
    training_finished = pyqtSignal(str)
    running_changed = pyqtSignal()

    def __init__(self, picker_state, jobs, paths: dict, parent=None) -> None:
        super().__init__(parent)
        self.picker_state = picker_state
        self.jobs = jobs
        self.paths = paths  # micrograph key -> path, the window's
        self.state = ConsensusState(list(paths.values()))
        #: Extra ConsensusSettings fields (tests bound the network's time with it).
        self.overrides: dict = {}
        self.device = "auto"
        #: Train guided by the ranks of the sets with scores (ConsensusSettings.rank with training).
        self.guided = False
        jobs.changed.connect(lambda *_: self.running_changed.emit())

    @property
    def training(self) -> bool:
        return self.jobs.running("consensus")

    @property
    def finding(self) -> bool:
        return self.jobs.running("dog")

    def reset(self, paths: dict) -> None:
        """A project was opened: its micrographs, no sets."""
        self.paths = paths
        self.state.micrographs = [str(p) for p in paths.values()]
        for s in list(self.state.sets):
            self.state.remove_set(s.name)

    # -- sizes ---------------------------------------------------------------------------------
    def pixel_size(self) -> float | None:
        s = self.picker_state.project.settings
        return s.pixel_size_a or self.picker_state.pixel_size_a

    def default_radius_px(self) -> float | None:
        """A tenth of the box (1.5 diameters), in original pixels."""
        from picker_gui.core.consensus import MERGE_FRACTION_OF_BOX
        from picker_gui.core.consensus_job import BOX_PER_DIAMETER

        px = self.pixel_size()
        d = self.picker_state.project.settings.diameter_a
        return MERGE_FRACTION_OF_BOX * BOX_PER_DIAMETER * d / px if px and d else None

    def ensure_radius(self) -> None:
        if not self.state.radius_px > 0:
            r = self.default_radius_px()
            if r:
                self.state.set_radius(r)

    # -- sets ----------------------------------------------------------------------------------
    def add_file(self, path: str | Path) -> str | None:
        """Read a coordinate file or folder (any readable format) as a set; the name it got,
        or None (the reason was emitted)."""
        from picker_gui.core.formats import read_coordinates

        path = Path(path)
        try:
            table = read_coordinates(path)
        except (PickerError, OSError) as exc:
            reason = str(exc) if isinstance(exc, PickerError) else f"cannot read {path}: {exc.strerror or exc}"
            self.error.emit("Add a set", reason)
            return None
        table = table[table.kind == PARTICLE] if len(table) else table
        aligned, unmatched = align_to_micrographs(table, [str(p) for p in self.paths.values()])
        if not len(aligned):
            some = ", ".join(unmatched[:3]) or "none"
            self.error.emit("Add a set", f"{path}: none of its {len(table):,} picks is on a micrograph of this project "
                            f"(its micrographs: {some}{', …' if len(unmatched) > 3 else ''})")
            return None
        self.ensure_radius()
        name = self.state.add_set(path.stem if path.suffix else path.name, aligned)
        note = f"; {len(unmatched)} micrograph name(s) matched none open: {', '.join(unmatched[:3])}" if unmatched else ""
        self.message.emit(f"Set {name!r}: {len(aligned):,} picks on {len(aligned.micrographs())} micrograph(s){note}")
        return name

    def add_our_picks(self) -> str | None:
        """This project's picks as a set: every candidate, cut at the current pick threshold
        (the set's threshold, which the panel can change)."""
        store = self.picker_state.picks
        if not store.keys():
            self.error.emit("Our picks", "There are no picks yet: train or load a model and pick first.")
            return None
        self.ensure_radius()
        table = store.to_table()
        name = self.state.add_set("our picks", table, threshold=self.picker_state.threshold, origin="picks")
        self.message.emit(f"Set {name!r}: picks at threshold {self.picker_state.threshold:.2f}")
        return name

    def add_dog(self) -> bool:
        """Run the built-in picker on every micrograph in the background; the set is added
        when it is done (cut at the expected count per micrograph when the project has one,
        else at its median score)."""
        from picker_gui.core.cache import PreprocessCache
        from picker_gui.core.consensus_job import DOG_SET, dog_job

        s = self.picker_state.project.settings
        if self.finding:
            return False
        if not s.diameter_a:
            self.error.emit("Built-in picker", "Set the particle diameter first (Display and labelling).")
            return False
        paths = list(self.paths.values())
        px = s.pixel_size_a
        cache = PreprocessCache()

        def finished(result) -> None:
            table, cut, failures = result
            self.ensure_radius()
            name = self.state.add_set(DOG_SET, table, threshold=cut, origin="dog")
            note = f"; {len(failures)} micrograph(s) failed: {failures[0][1]}" if failures else ""
            self.message.emit(f"Set {name!r}: {int((table.score >= cut).sum()):,} picks above its cut{note}")

        expected = s.expected_per_micrograph
        self.jobs.start("dog", lambda stop: dog_job(paths, s.diameter_a, pixel_size_a=px, expected_per_micrograph=expected,
                                                    stop=stop, cache=cache),
                        progress=lambda r: self.message.emit(f"Built-in picker: {r.done} of {r.total} micrographs"),
                        finished=finished, failed=lambda text: self.error.emit("Built-in picker failed", text))
        return True

    # -- the network ---------------------------------------------------------------------------
    def settings(self):
        from picker_gui.core.consensus_job import ConsensusSettings

        s = self.picker_state.project.settings
        px = self.pixel_size()
        values = {"diameter_a": s.diameter_a, "pixel_size_a": s.pixel_size_a, "min_votes": self.state.min_votes,
                  "expected_per_micrograph": s.expected_per_micrograph,
                  "merge_radius_a": self.state.radius_px * px if px and self.state.radius_px else None,
                  "device": self.device, "train": True}
        ranked = tuple(st.name for st in self.state.sets if st.has_scores)
        if self.guided and ranked:
            values["rank"] = ranked
        values.update(self.overrides)
        return ConsensusSettings(**values)

    def train(self) -> bool:
        from picker_gui.core.cache import PreprocessCache
        from picker_gui.core.consensus_job import consensus_job

        if self.training:
            return False
        if len(self.state.sets) < 1:
            self.error.emit("Train consensus", "Add the pickers' sets first (two or more, or one and the built-in picker).")
            return False
        sets = [s.as_pick_set() for s in self.state.sets]
        settings = self.settings()
        paths = list(self.paths.values())
        labels = self.picker_state.labels.to_table()
        negatives = labels[labels.kind == NEGATIVE] if len(labels) else None
        positives = labels[labels.kind == PARTICLE] if len(labels) else None
        cache = PreprocessCache()
        self.jobs.start("consensus", lambda stop: consensus_job(paths, sets, settings, user_negatives=negatives,
                                                                 user_positives=positives, stop=stop, cache=cache),
                        progress=self._on_report, finished=self._on_trained,
                        failed=lambda text: (self.error.emit("Consensus failed", text),
                                             self.training_finished.emit("Consensus training failed")))
        self.training_started.emit()
        return True

    def stop(self) -> None:
        self.jobs.stop("consensus")
        self.jobs.stop("dog")

    def _on_report(self, report) -> None:
        if report.consensus is not None:
            self.training_report.emit(report.consensus)
        elif report.stage == "preprocess":
            self.message.emit(f"Consensus: preprocessing {report.done} of {report.total}")

    def _on_trained(self, result) -> None:
        self.state.set_result(result.sets, result.negatives, scored=result.model is not None)
        acc = ", ".join(f"{a:.3f}" for a in result.model.val_accuracy) if result.model else "—"
        n_rejected = int((result.negatives.source == "rejected").sum()) if len(result.negatives) else 0
        guided = f"; it learnt the {n_rejected:,} picks the sets ranked lowest as negatives" if n_rejected else ""
        self.training_finished.emit(f"Consensus network{' (stopped)' if result.stopped else ''}: validation accuracy "
                                    f"{acc}; {len(result.sets.table):,} picks scored{guided}")


class ConsensusView(QObject):
    """The consensus in one window: the dock, the menu, the overlays, the export.

    The window creates it once and calls :meth:`project_opened` and :meth:`show` (the
    micrograph on screen changed); everything else flows from the panel's signals and the
    state's events.
    """

    def __init__(self, window) -> None:
        from PyQt6.QtCore import QTimer

        super().__init__(window)
        self.window = window
        self.controller = ConsensusController(window.state, window.jobs, window.paths, self)
        self.state = self.controller.state
        self.panel = window.consensus_panel
        self._scores_timer = QTimer(self, singleShot=True, interval=50)
        self._scores_timer.timeout.connect(self._refresh_histogram)
        p, c, ev = self.panel, self.controller, self.state.events
        p.add_file_requested.connect(self.add_file_dialog)
        p.add_picks_requested.connect(c.add_our_picks)
        p.add_dog_requested.connect(c.add_dog)
        p.remove_requested.connect(self.state.remove_set)
        p.set_threshold_changed.connect(self.state.set_set_threshold)
        p.visibility_changed.connect(self.state.set_visible)
        p.radius_changed.connect(self._on_radius_changed)
        p.min_votes_changed.connect(self.state.set_min_votes)
        p.train_requested.connect(c.train)
        p.guided.toggled.connect(lambda on: setattr(c, "guided", on))
        p.rank_requested.connect(self.rank)
        p.stop_requested.connect(c.stop)
        p.export_requested.connect(self.export_dialog)
        p.show_box.toggled.connect(lambda on: (window.canvas.set_consensus_visible(on), self.show(window.current)))
        p.threshold.threshold_changed.connect(self._on_threshold_moved)
        c.message.connect(lambda text: window.statusBar().showMessage(text, 8000))
        c.error.connect(self._error)
        c.training_started.connect(lambda: (p.clear_reports(), p.set_training(True), self._update_actions()))
        c.training_report.connect(p.add_report)
        c.training_finished.connect(self._on_finished)
        c.running_changed.connect(self._update_actions)
        ev.sets.connect(self._on_sets)
        ev.merged.connect(self._on_merged)
        ev.threshold.connect(self._on_threshold)
        self._make_actions()

    # -- menu --------------------------------------------------------------------------------
    def _make_actions(self) -> None:
        a = self.window._action
        self.act_add_file = a("Add &set from file…", self.add_file_dialog, ["Ctrl+Shift+I"], None,
                              "Add a picker's coordinates (any readable format) as a consensus set")
        self.act_add_picks = a("Add &our picks", self.controller.add_our_picks, [], None,
                               "Add this project's picks at the current threshold as a consensus set")
        self.act_add_dog = a("Add the &built-in picker", self.controller.add_dog, [], None,
                             "Run the difference-of-Gaussians picker on every micrograph and add it as a set")
        self.act_train = a("&Train consensus", self.controller.train, ["Ctrl+Shift+C"], None,
                           "Train the consensus network in the background and score every pick")
        self.act_rank = a("&Rank by sets", self.rank, ["Ctrl+Shift+R"], None,
                          "Score every pick by its mean rank in the sets with scores, without training")
        self.act_stop = a("&Stop consensus", self.controller.stop, [], None, "Stop the consensus network (keeping what it learnt)")
        self.act_export = a("E&xport consensus…", self.export_dialog, [], None,
                            "Write the consensus picks at or above the consensus threshold")
        m = self.window.menuBar().addMenu("&Consensus")
        m.addActions([self.act_add_file, self.act_add_picks, self.act_add_dog])
        m.addSeparator()
        m.addActions([self.act_train, self.act_rank, self.act_stop])
        m.addSeparator()
        m.addAction(self.act_export)
        self.menu = m
        help_menu = next((act for act in self.window.menuBar().actions() if act.text() == "&Help"), None)
        if help_menu is not None:  # Help stays last
            self.window.menuBar().removeAction(help_menu)
            self.window.menuBar().addAction(help_menu)
        self._update_actions()

    def _update_actions(self) -> None:
        training = self.controller.training
        has = self.state.result is not None and len(self.state.result.table) > 0
        self.act_train.setEnabled(not training and bool(self.state.sets))
        self.act_rank.setEnabled(not training and self.state.result is not None)
        self.act_stop.setEnabled(training or self.controller.finding)
        self.act_export.setEnabled(has)
        self.panel.export.setEnabled(has)
        self.panel.set_training(training)
        self.panel.train.setEnabled(not training and bool(self.state.sets))
        self.panel.rank.setEnabled(not training and self.state.result is not None)

    def rank(self) -> list[str]:
        """Score the picks by their mean rank in the sets with scores (no training)."""
        if self.controller.training:
            return []
        d = self.controller.picker_state.project.settings.diameter_a
        px = self.controller.pixel_size()
        names = self.state.rank(fold_radius_px=d / 2 / px if d and px else 0.0)
        if not names:
            self._error("Rank by sets", "Add the pickers' sets first: there are no picks to rank.")
            return []
        text = f"Scored by the mean rank in {', '.join(names)}: {len(self.state.result.table):,} picks"
        self._on_finished(text)
        return names

    def _error(self, title: str, text: str) -> None:
        from PyQt6.QtWidgets import QMessageBox

        QMessageBox.warning(self.window, title, text)

    # -- project and micrograph ------------------------------------------------------------
    def project_opened(self) -> None:
        self.controller.reset(self.window.paths)
        r = self.controller.default_radius_px()
        px = self.controller.pixel_size()
        if r and px:
            self.panel.set_radius(r * px)

    def show(self, key: str | None) -> None:
        """Draw the consensus of micrograph ``key``: rings by votes and the visible sets."""
        canvas = self.window.canvas
        if key is None or not self.panel.show_box.isChecked():
            canvas.set_consensus(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, int), 0, 0.0)
            canvas.set_input_sets([])
            return
        c = self.state.clusters(key)
        canvas.set_consensus(c.x, c.y, c.score, c.votes, len(self.state.sets), self.state.threshold)
        shown = []
        for s in self.state.sets:
            if s.visible:
                t = self.state.set_picks_of(s.name, key)
                shown.append((s.name, s.colour, t.x, t.y))
        canvas.set_input_sets(shown)
        self._show_counts()

    def _show_counts(self) -> None:
        key = self.window.current
        self.panel.set_counts(self.state.counts(key) if key else None, self.state.counts(), self.state.k,
                              len(self.state.sets), self.state.scored)

    # -- state events ------------------------------------------------------------------------
    def _on_sets(self, _names) -> None:
        picks = {}
        for s in self.state.sets:
            kept = s.as_pick_set().kept()
            picks[s.name] = len(kept)
        self.panel.set_sets(self.state.sets, picks)
        self.panel.set_min_votes(self.state.k)
        self._update_actions()
        self.show(self.window.current)

    def _on_merged(self, _result) -> None:
        px = self.controller.pixel_size()
        if px and self.state.radius_px > 0:
            self.panel.set_radius(self.state.radius_px * px)
        self._update_actions()
        self.show(self.window.current)
        self._scores_timer.start()

    def _refresh_histogram(self) -> None:
        scores = self.state.scores()
        tp = self.panel.threshold
        tp.set_enabled_for_picks(len(scores) > 0)
        tp.set_range(0.0, 1.0)
        tp.set_scores(scores)
        tp.set_threshold(self.state.threshold)
        self._set_kept_text()

    def _set_kept_text(self) -> None:
        n = self.state.kept_count()
        mics = sum(1 for v in self.state.kept_counts().values() if v)
        self.panel.threshold.count_label.setText(f"{n:,} consensus picks on {mics:,} micrographs kept")

    def _on_radius_changed(self, radius_a: float) -> None:
        px = self.controller.pixel_size()
        if px:
            self.state.set_radius(radius_a / px)

    def _on_threshold_moved(self, t: float) -> None:
        self.state.threshold = t

    def _on_threshold(self, t: float) -> None:
        """The consensus threshold moved: the rings on screen (a count per vote level), the counts."""
        self.window.canvas.set_consensus_threshold(t)
        self._show_counts()
        self._set_kept_text()

    def _on_finished(self, text: str) -> None:
        self.panel.set_training(False)
        self.panel.status.setText(text)
        self.window.statusBar().showMessage(text, 10000)
        self._update_actions()

    # -- files ---------------------------------------------------------------------------------
    def add_file_dialog(self, path: str | None = None) -> str | None:
        from PyQt6.QtWidgets import QFileDialog

        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self.window, "Add a picker's coordinates", str(self.window.project.folder),
                read_file_filter())
            if not path:
                return None
        name = self.controller.add_file(path)
        if name:
            self.window.dock_raise("Consensus")
        return name

    def export_dialog(self) -> list[Path]:
        """The consensus picks at the consensus threshold, through the export dialog (the same
        writer as every export)."""
        from PyQt6.QtWidgets import QDialog, QMessageBox

        from picker_gui.core.exporting import export_picks, project_inputs
        from picker_gui.core.picks import PickStore
        from picker_gui.gui.export_dialog import ExportDialog

        result = self.state.result
        if result is None or not len(result.table):
            return []
        store = PickStore()
        store.set_table(result.table)
        w = self.window
        s = w.project.settings
        dialog = ExportDialog(store, self.state.threshold, w.current, s.skipped, w._diameter_px(), str(w.project.folder),
                              s.relion_micrographs, w)
        dialog.setWindowTitle("Export consensus picks")
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return []
        try:
            summary = export_picks(store, dialog.request(), inputs=project_inputs(w.project))
        except (PickerError, OSError) as exc:
            reason = str(exc) if isinstance(exc, PickerError) else f"cannot write {exc.filename}: {exc.strerror or exc}"
            QMessageBox.warning(w, "Export failed", reason)
            return []
        w.statusBar().showMessage("Consensus: " + summary.describe(), 10000)
        return list(summary.files)
