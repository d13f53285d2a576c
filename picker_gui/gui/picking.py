"""The picker in the window: training, picking and the model, as background jobs.

:class:`PickerController` runs the core jobs (:func:`~picker_gui.core.jobs.train_job`,
:func:`~picker_gui.core.jobs.pick_job`) through the window's :class:`~picker_gui.gui.workers.JobRunner`
and keeps the :class:`~picker_gui.core.state.PickerState` up to date: a finished training
run becomes the state's model (saved in the project's ``models/`` folder), and picking
streams each micrograph's picks into the state as it is done — the one shown first, then
its neighbours, then the rest. Picks are written to the project (``picks.star``) on a worker
thread as they arrive, so reopening shows them without scoring again.

It holds no widgets: the window connects its signals to the panels.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, QTimer, pyqtSignal

from picker_gui.core.coords import NEGATIVE, PARTICLE
from picker_gui.core.state import PickerState

logger = logging.getLogger(__name__)

#: Picks are written to the project at most this often while picking.
PICKS_SAVE_MS = 3000
#: While training, the micrograph on screen is picked with the best model so far at most this
#: often (seconds of the job's time, not counted as training time).
PREVIEW_EVERY_S = 10.0
#: The model id of picks made during training (replaced by the trained model's picks).
PREVIEW = "preview"


def freeze_imports() -> None:
    """Move every object alive now (torch, pyqtgraph and their modules: millions) out of the
    garbage collector's view. A full collection otherwise walks them all, and while it runs
    no thread runs: measured here as 70-250 ms freezes of the window during training."""
    import gc

    gc.freeze()


def full_collections(allowed: bool) -> None:
    """While a job runs, no full (generation 2) collection: each one stops every thread for
    as long as it takes to walk every object. Young objects are still collected; the full
    collections resume when the jobs end."""
    import gc

    g0, g1, _ = gc.get_threshold()
    gc.set_threshold(g0, g1, 10 if allowed else 1_000_000)


class _SaveSignals(QObject):
    done = pyqtSignal(object)  # None, or an error message


class _SavePicks(QRunnable):
    def __init__(self, project, table, model_id, signals) -> None:
        super().__init__()
        self.project, self.table, self.model_id, self.signals = project, table, model_id, signals

    def run(self) -> None:
        try:
            self.project.save_picks(self.table, self.model_id)
            outcome = None
        except OSError as exc:
            outcome = f"could not write {exc.filename or self.project.picks_path}: {exc.strerror or exc}"
        try:
            self.signals.done.emit(outcome)
        except RuntimeError:
            pass


class PickerController(QObject):
    """Train, pick and keep the model of one window."""

    training_started = pyqtSignal(bool)  # fine-tuning
    training_report = pyqtSignal(object)  # JobReport
    training_finished = pyqtSignal(str)  # what happened, one line
    # key, candidates of the best model so far, (least distance in px, indices kept apart at it)
    preview = pyqtSignal(str, object, object)
    picking_progress = pyqtSignal(int, int)  # done, total
    picking_finished = pyqtSignal(str)
    message = pyqtSignal(str)  # a line for the status bar
    error = pyqtSignal(str, str)  # title, message (shown in a dialog)
    running_changed = pyqtSignal()

    def __init__(self, state: PickerState, jobs, paths: dict, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.jobs = jobs
        self.paths = paths  # micrograph key -> path, the window's (kept up to date by it)
        #: Extra TrainSettings fields (tests and benchmarks bound the steps with it).
        self.train_overrides: dict = {}
        self.device = "auto"
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._save_signals = _SaveSignals()
        self._save_signals.done.connect(self._on_picks_saved)
        self._save_timer = QTimer(self, singleShot=True, interval=PICKS_SAVE_MS)
        self._save_timer.timeout.connect(self.save_picks)
        self._picks_dirty = False
        self._pick_total = 0
        self._pick_done = 0
        self._last_preview = 0.0
        #: The micrograph on screen (the window keeps it up to date; read by the training thread).
        self.shown: str | None = None
        self.preview.connect(self._on_preview)
        jobs.changed.connect(self._on_jobs_changed)

    def _on_jobs_changed(self, *_args) -> None:
        full_collections(not (self.training or self.picking))
        self.running_changed.emit()

    # -- what is running ------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self.jobs.running("train")

    @property
    def picking(self) -> bool:
        return self.jobs.running("pick")

    def stop_training(self) -> None:
        self.jobs.stop("train")

    def stop_picking(self) -> None:
        self.jobs.stop("pick")

    # -- training -----------------------------------------------------------------------------
    def train_settings(self, **panel):
        """TrainSettings from the project and the train panel's values."""
        from picker_gui.core.jobs import TrainSettings

        s = self.state.project.settings
        values = {"diameter_a": s.diameter_a, "pixel_size_a": s.pixel_size_a,
                  "expected_per_micrograph": s.expected_per_micrograph, "objective": s.objective,
                  "max_minutes": s.max_minutes, "device": self.device}
        values.update({k: v for k, v in panel.items() if k in TrainSettings.__dataclass_fields__})
        values.update(self.train_overrides)
        return TrainSettings(**values)

    def train(self, fine_tune: bool = False, **panel) -> bool:
        """Start training on the labels of the state (no export step); False when it cannot
        start (the reason was emitted)."""
        from picker_gui.core.cache import PreprocessCache
        from picker_gui.core.jobs import train_job

        if self.training:
            return False
        import picker_gui.core.training  # noqa: F401 - imported here, then frozen, not on the job's thread

        freeze_imports()
        labels = self.state.labels.to_table()
        positives = labels[labels.kind == PARTICLE]
        negatives = labels[labels.kind == NEGATIVE]
        if not len(positives):
            self.error.emit("Train", "Label some particles first: click on a few dozen particles, on a few micrographs.")
            return False
        init = self.state.model if fine_tune else None
        if fine_tune and init is None:
            self.error.emit("Fine-tune", "There is no model to fine-tune yet: train one first.")
            return False
        if init is not None and init.metadata.get("zero_shot"):
            # Suggestions of the general model: a run starts from it anyway, with its output
            # shifted to this data's positive rate first (TrainConfig.start).
            init = None
        skipped = set(self.state.project.settings.skipped)
        paths = [p for k, p in self.paths.items() if k not in skipped]
        settings = self.train_settings(**panel)
        cache = PreprocessCache()
        self.stop_picking()  # the picks will be the new model's
        self._last_preview = 0.0
        self.jobs.start("train", lambda stop: train_job(paths, positives, negatives, settings, stop=stop, cache=cache,
                                                         init=init, on_improved=self._preview_pick),
                        progress=self._on_training_report, finished=self._on_trained,
                        failed=lambda text: self._failed("Training failed", text, self.training_finished))
        self.training_started.emit(fine_tune)
        return True

    def _on_training_report(self, report) -> None:
        if report.train is not None and report.train.step in (1, 41):
            freeze_imports()  # what the first step and the first validation imported, too
        self.training_report.emit(report)

    def _preview_pick(self, saved) -> None:
        """On the training thread, after a better model: pick the micrograph on screen with
        it (at most every PREVIEW_EVERY_S), so that picks appear while the picker learns."""
        import time

        from picker_gui.core.errors import PickerError
        from picker_gui.core.inference import default_min_distance_px, pick_file

        key = self.shown
        now = time.monotonic()
        if key is None or key not in self.paths or now - self._last_preview < PREVIEW_EVERY_S:
            return
        self._last_preview = now
        device = next(saved.model.parameters()).device
        distance = self.state.min_distance_px or default_min_distance_px(saved.metadata)
        try:
            table, _ = pick_file(saved.model, saved.metadata, self.paths[key], device=device, radius_px=distance,
                                 pixel_size_a=self.state.project.settings.pixel_size_a, candidates=True)
        except (PickerError, OSError, ValueError) as exc:
            logger.debug("no preview on %s: %s", key, exc)
            return
        from picker_gui.core.picks import keep_apart

        self.preview.emit(key, table, (distance, keep_apart(table.x, table.y, distance)))  # kept apart here, not on the GUI thread

    def _on_preview(self, key: str, table, kept) -> None:
        """Picks of the model being trained: shown, never saved; the trained model's replace them."""
        picks = self.state.picks
        # A trained model's picks stay until the new one is done; the general model's
        # suggestions give way at once.
        suggestions = self.state.model is not None and self.state.model.metadata.get("zero_shot")
        if (picks.model_id not in (None, PREVIEW) and not suggestions) or not self.training:
            return
        if picks.model_id != PREVIEW:
            picks.clear()  # picks of an earlier model go: these are the new one's
        picks.model_id = PREVIEW
        if not picks.min_distance_px:
            self.state.min_distance_px = kept[0]
        name = self.paths[key].name if key in self.paths else key
        picks.set(name, table.x, table.y, table.score, kept=kept)

    def _on_trained(self, result) -> None:
        from picker_gui.core.models import save_model

        meta = result.saved.metadata
        if not meta.get("steps"):
            self.training_finished.emit("Stopped before the first step: no model was made.")
            return
        folder = self.state.project.models_folder
        path = folder / f"model-{meta['model_id']}.pt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_model(path, result.saved.model, meta)
            self.state.project.settings.model_path = str(path)
        except OSError as exc:
            self.error.emit("Model not saved", f"The model could not be saved in {folder} ({exc.strerror or exc}); "
                                               f"it is used in this window but will be gone when it closes. "
                                               f"Use Picker → Save model as… to keep it.")
        if self.state.picks.model_id == PREVIEW:
            self.state.picks.clear()
        self.state.set_model(result.saved)
        ap = meta.get("best_validation_ap")
        why = {"cancelled": "stopped by you: kept the best model so far", "converged": "validation stopped improving",
               "max_seconds": "time budget used", "max_steps": "step limit reached"}.get(result.stopped_by, result.stopped_by)
        self.training_finished.emit(f"Trained ({why}): step {meta.get('best_step', meta.get('steps'))}, "
                                    f"validation AP {'n/a' if ap is None else f'{ap:.3f}'}; picking every micrograph.")
        for warning in result.warnings:
            self.message.emit(warning)
        self.pick()

    # -- picking ------------------------------------------------------------------------------
    def pick(self, keys: list[str] | None = None) -> bool:
        """Pick the micrographs not picked yet with the state's model, the one shown first,
        then its neighbours, then the rest; each arrives in the state as it is done."""
        from picker_gui.core.cache import PreprocessCache
        from picker_gui.core.jobs import pick_job

        model = self.state.model
        if model is None or self.picking:
            return False
        order = self.state.picking_order(keys or list(self.paths), skipped=self.state.project.settings.skipped)
        if not order:
            self.picking_finished.emit("Every micrograph is picked.")
            return False
        self.state.picks.model_id = model.metadata.get("model_id")
        paths = [self.paths[k] for k in order if k in self.paths]
        distance = self.state.min_distance_px or None  # candidates around it: the distance can change later
        pixel = self.state.project.settings.pixel_size_a
        cache = PreprocessCache()
        self._pick_total, self._pick_done = len(paths), 0
        self.jobs.start("pick", lambda stop: pick_job(model, paths, radius_px=distance, pixel_size_a=pixel,
                                                       device=self.device, stop=stop, cache=cache, candidates=True),
                        progress=self._on_picked, finished=self._on_picking_done,
                        failed=lambda text: self._failed("Picking failed", text, self.picking_finished))
        self.picking_progress.emit(0, self._pick_total)
        return True

    def _on_picked(self, report) -> None:
        if report.done == 1:
            freeze_imports()
        if report.error:
            self.message.emit(report.error)
        elif report.picks is not None and report.micrograph is not None:
            table = report.picks
            name = self.paths[report.micrograph].name if report.micrograph in self.paths else report.micrograph
            self.state.picks.set(name, table.x, table.y, table.score, kept=report.kept)
            self._picks_dirty = True
            if not self._save_timer.isActive():
                self._save_timer.start()
        self._pick_done = report.done
        self.picking_progress.emit(report.done, self._pick_total)

    def _on_picking_done(self, result) -> None:
        self.save_picks()
        failed = f"; {len(result.failures)} could not be read (see the list)" if result.failures else ""
        verb = "stopped after" if result.stopped else "picked"
        self.picking_finished.emit(f"{verb} {len(result.done)} micrograph(s) on {result.device}{failed}")

    # -- the model ----------------------------------------------------------------------------
    def load_model(self, path: str | Path) -> bool:
        from picker_gui.core.errors import PickerError
        from picker_gui.core.models import load_model

        try:
            saved = load_model(path)
        except PickerError as exc:
            self.error.emit("Load model", str(exc))
            return False
        self.stop_picking()
        self.state.project.settings.model_path = str(path)
        self.state.set_model(saved)
        self.message.emit(f"Model {Path(path).name} loaded; picking.")
        self.pick()
        return True

    def suggest_with_general(self) -> bool:
        """Pick with the shipped general model before any training (zero-shot suggestions):
        it becomes the project's model, saved in its models folder, until one is trained."""
        from picker_gui.core.errors import PickerError
        from picker_gui.core.general import general_for
        from picker_gui.core.models import save_model
        from picker_gui.core.mrc_io import read_header

        s = self.state.project.settings
        if not self.paths:
            self.error.emit("Suggest picks", "Open a folder of micrographs first.")
            return False
        first = next(iter(self.paths.values()))
        try:
            pixel = s.pixel_size_a or read_header(first).pixel_size_a
            if not pixel:
                raise PickerError(f"{first}: no pixel size in the header; set the pixel size of the project")
            saved = general_for(s.diameter_a, pixel)
        except (PickerError, OSError, ValueError) as exc:
            self.error.emit("Suggest picks", str(exc))
            return False
        path = self.state.project.models_folder / f"general-{saved.metadata['model_id']}.pt"
        try:
            save_model(path, saved.model, saved.metadata)
            s.model_path = str(path)
        except OSError as exc:  # still usable in this window
            self.message.emit(f"The general model could not be saved in the project ({exc.strerror or exc})")
        self.stop_picking()
        self.state.set_model(saved)
        self.message.emit(f"Suggesting picks with the general model (no labels; {s.diameter_a:g} Å particle): "
                          f"check them, accept the good ones as labels, then train.")
        self.pick()
        return True

    def restore_model(self) -> None:
        """The project's model, when it has one (its picks were saved with it)."""
        path = self.state.project.settings.model_path
        if not path or not Path(path).exists():
            return
        from picker_gui.core.errors import PickerError
        from picker_gui.core.models import load_model

        try:
            saved = load_model(path)
        except PickerError as exc:
            self.message.emit(str(exc))
            return
        self.state.set_model(saved)

    def save_model_as(self, path: str | Path) -> bool:
        from picker_gui.core.models import save_model

        model = self.state.model
        if model is None:
            self.error.emit("Save model", "There is no model yet: train one or load one first.")
            return False
        try:
            save_model(path, model.model, model.metadata)
        except OSError as exc:
            self.error.emit("Save model", f"Could not write {exc.filename or path}: {exc.strerror or exc}")
            return False
        self.message.emit(f"Model saved to {path}")
        return True

    # -- saving picks -------------------------------------------------------------------------
    def save_picks(self) -> None:
        """Write the picks (every candidate) on a worker thread; the project keeps the last
        written version and the id of the model that made them."""
        self._save_timer.stop()
        if not self._picks_dirty or self.state.project is None:
            return
        self._picks_dirty = False
        frozen = self.state.picks.frozen()
        table = frozen.to_table(candidates=True)
        self._pool.start(_SavePicks(self.state.project, table, frozen.model_id, self._save_signals))

    def flush(self) -> None:
        """Stop the jobs and write the picks now (closing, switching project)."""
        self.jobs.stop_all()
        self.save_picks()
        self._pool.waitForDone()

    def _on_picks_saved(self, outcome) -> None:
        if outcome:
            self.message.emit(f"Picks not saved: {outcome} (they are shown, and written again with the next ones)")
            self._picks_dirty = True

    def _failed(self, title: str, text: str, signal) -> None:
        self.error.emit(title, text)
        signal.emit(f"{title}.")
