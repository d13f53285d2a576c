"""The main window: micrograph list | viewer | controls, labelling with undo, autosave.

Nothing a user does is lost: every label edit goes through the undo stack into the
LabelStore, whose change notification tells the :class:`~picker_gui.gui.storage.ProjectSaver`,
which writes the project's labels.star atomically on a worker thread at most half a second
after the first unsaved edit (however fast the clicks come). A save that fails puts a banner
across the window with Retry and "Save project as…", keeps the edits, retries, and the
window asks before closing with unsaved edits. A project open in another window opens
read-only (or is taken over); settings, the current micrograph and the view are saved too,
and everything is flushed when the window closes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QSize, Qt, QTimer
from PyQt6.QtGui import QAction, QIcon, QKeySequence, QUndoStack
from PyQt6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from picker_gui.core.consensus import align_to_micrographs
from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable, micrograph_key
from picker_gui.core.errors import MicrographError, PickerError
from picker_gui.core.formats import read_coordinates, read_file_filter, write_coordinates
from picker_gui.core.jobs import listed_names
from picker_gui.core.labels import LabelStore
from picker_gui.core.mrc_io import find_micrographs, read_header, unique_micrographs
from picker_gui.core.project import Project, ProjectLockedError, project_title, recent_projects, remember_project
from picker_gui.core.state import PickerState
from picker_gui.gui import storage
from picker_gui.gui.banner import Banner
from picker_gui.gui.canvas import MicrographCanvas
from picker_gui.gui.controls import DisplayControls
from picker_gui.gui.dialogs import ImportDialog
from picker_gui.gui.micrograph_list import MicrographEntry, MicrographList
from picker_gui.gui.picking import PickerController
from picker_gui.gui.gallery import GalleryWidget, crops_for
from picker_gui.gui.threshold_panel import ThresholdPanel
from picker_gui.gui.train_panel import TrainPanel
from picker_gui.gui.undo import AddLabel, MoveLabel, RemoveLabel, ReplaceLabels
from picker_gui.gui.workers import DisplayLoader, DisplayRequest, JobRunner, LoadedMicrograph

logger = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
SETTINGS_SAVE_MS = 1000

SHORTCUTS = [
    ("Click", "add a particle (or a negative, in negative mode)"),
    ("Click on a ring", "remove it"),
    ("Right-click, Shift+click, Delete", "remove the label under the cursor"),
    ("Drag a ring", "move it"),
    ("Drag elsewhere / wheel", "pan / zoom"),
    ("→  PgDown", "next micrograph"),
    ("←  PgUp", "previous micrograph"),
    ("N", "toggle negative mode (mark ice, carbon edges, junk)"),
    ("S", "mark the micrograph as skipped (bad ice, empty)"),
    ("F", "fit the micrograph to the window"),
    ("+  /  −", "zoom in / out"),
    ("Ctrl+Z  /  Ctrl+Shift+Z", "undo / redo"),
    ("Ctrl+I  /  Ctrl+E", "import / export labels"),
    ("Ctrl+O", "open a folder of micrographs or a project"),
    ("Ctrl+Shift+S", "save the project in another folder"),
    ("Ctrl+T  /  Ctrl+Shift+T", "train the picker / fine-tune the current model"),
    ("Esc", "stop training or picking (keeping what was done)"),
    ("Ctrl+P", "pick every micrograph not picked yet"),
    ("Click a pick", "accept it as a particle (a negative, in negative mode)"),
    ("F1", "this list"),
]


def icon(name: str) -> QIcon:
    path = RESOURCES / "icons" / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


class MainWindow(QMainWindow):
    """The window on one project.

    Parameters
    ----------
    project
        The open project (its lock is taken here if the caller has not taken it).
    warnings
        What the user must hear about the opening (labels kept aside, a stale lock taken over).
    read_only
        The project is open in another window: look, do not write.
    select
        The micrograph to show first.
    """

    def __init__(self, project: Project, warnings: str | list[str] | None = None, *, read_only: bool = False,
                 select: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("picker-gui")
        self.setWindowIcon(icon("app"))
        self.resize(1500, 950)
        self.state = PickerState(project)
        self.undo_stack = QUndoStack(self)
        self._select = select
        self.loader = DisplayLoader(parent=self)
        self.displayed: str | None = None  # the micrograph whose image is on screen
        self._restore_view: list[float] | None = None  # a saved view to apply when the image arrives
        self.paths: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, int]] = {}
        self.pixel_sizes: dict[str, float | None] = {}
        self._drag: tuple[str, int, tuple[float, float]] | None = None
        self._cursor = (0.0, 0.0)

        self.canvas = MicrographCanvas()
        self.banner = Banner()
        self.jobs = JobRunner(self)
        self.picker = PickerController(self.state, self.jobs, self.paths, self)
        self.train_panel = TrainPanel()
        self.threshold_panel = ThresholdPanel()
        self.gallery = GalleryWidget()
        from picker_gui.gui.consensus_panel import ConsensusPanel

        self.consensus_panel = ConsensusPanel()
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.canvas, 1)
        self.setCentralWidget(central)
        self.mic_list = MicrographList()
        self.controls = DisplayControls()
        self.docks: dict[str, QDockWidget] = {}
        for title, widget, area in (
            ("Micrographs", self.mic_list, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Display and labelling", self.controls, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Train", self.train_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Picks", self.threshold_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Consensus", self.consensus_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Gallery", self.gallery, Qt.DockWidgetArea.BottomDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(title)
            dock.setWidget(widget)
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            self.addDockWidget(area, dock)
            self.docks[title] = dock
        # One column on the right: display, training and picks as tabs, the one at work in front.
        self.tabifyDockWidget(self.docks["Display and labelling"], self.docks["Train"])
        self.tabifyDockWidget(self.docks["Train"], self.docks["Picks"])
        self.tabifyDockWidget(self.docks["Picks"], self.docks["Consensus"])
        self.docks["Display and labelling"].raise_()
        self.docks["Gallery"].hide()  # shown with the first picks
        self.resizeDocks([self.docks["Micrographs"]], [320], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["Display and labelling"]], [330], Qt.Orientation.Horizontal)

        self.position_label = QLabel()
        self.counts_label = QLabel()
        self.statusBar().addWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.counts_label)

        self._settings_save = QTimer(self, singleShot=True, interval=SETTINGS_SAVE_MS)
        self._settings_save.timeout.connect(self.save_settings)
        self.saver: storage.ProjectSaver | None = None

        self._make_actions()
        from picker_gui.gui.consensus import ConsensusView

        self.consensus = ConsensusView(self)
        self._connect()
        self.state.events.labels.connect(self._on_labels_changed)
        notes = [warnings] if isinstance(warnings, str) else list(warnings or [])
        self._attach_saver(read_only, notes)
        self._load_project_view()
        self._update_actions()
        self._tell(notes)

    # -- the state this window shows -------------------------------------------------------
    @property
    def project(self) -> Project:
        return self.state.project

    @project.setter
    def project(self, project: Project) -> None:
        """The same project saved elsewhere (Save project as): labels and picks stay."""
        self.state.project = project

    @property
    def store(self) -> LabelStore:
        """The labels being edited (the state's)."""
        return self.state.labels

    @property
    def current(self) -> str | None:
        return self.state.current

    @current.setter
    def current(self, key: str | None) -> None:
        self.state.current = key

    def _tell(self, notes: list[str]) -> None:
        """Warnings about the opening, in a message box beside the window (not modal: the
        window can be used while it is up)."""
        if notes:
            self._notice = QMessageBox(QMessageBox.Icon.Warning, "picker-gui", "\n\n".join(notes),
                                       QMessageBox.StandardButton.Ok, self)
            self._notice.setModal(False)
            QTimer.singleShot(0, self._notice.show)

    def _attach_saver(self, read_only: bool, notes: list[str]) -> None:
        """Take the project's lock unless the caller did, and start saving it."""
        if not read_only and not self.project.lock.owned():
            try:
                self.project.lock.acquire()
            except ProjectLockedError as exc:
                read_only = True
                notes.append(f"{exc}. It is open here read-only.")
            except OSError:
                pass  # an unwritable folder: the first save says so
        self.saver = storage.ProjectSaver(self.project, lambda: self.state.labels.frozen(), read_only=read_only, parent=self)
        self.saver.state_changed.connect(self._on_save_state)
        self.saver.conflict.connect(self._on_conflict)
        self._on_save_state(self.saver.state, self.saver.message)

    # -- set-up --------------------------------------------------------------------------
    def _action(self, text, slot, shortcuts=(), icon_name=None, tip=None) -> QAction:
        act = QAction(text, self)
        if icon_name:
            act.setIcon(icon(icon_name))
        if shortcuts:
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        # triggered(bool checked): the slots take no "checked" (it would land in their first argument).
        act.triggered.connect(lambda _checked=False, f=slot: f())
        self.addAction(act)
        return act

    def _make_actions(self) -> None:
        a = self._action
        self.act_open = a("&Open folder or project…", self.open_dialog, ["Ctrl+O"], "open", "Open a folder of micrographs or a picker-gui project")
        self.act_import = a("&Import labels…", self.import_labels, ["Ctrl+I"], "import", "Import coordinates (STAR, BOX, Topaz, CSV, CBOX, .cs) as labels")
        self.act_export = a("&Export labels…", self.export_labels, ["Ctrl+E"], "export", "Export labels as RELION STAR, EMAN .box, Topaz text or CSV")
        self.act_save_as = a("&Save project as…", self.save_project_as, ["Ctrl+Shift+S"], None, "Copy the project (settings and labels) to another folder and go on there")
        self.act_quit = a("&Quit", self.close, ["Ctrl+Q"])
        self.act_undo = self.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.act_undo.setIcon(icon("undo"))
        self.act_redo = self.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_redo.setIcon(icon("redo"))
        self.addActions([self.act_undo, self.act_redo])
        self.act_delete = a("&Delete label under cursor", self.delete_under_cursor, ["Delete", "Backspace"])
        self.act_negative = a("&Negative mode", self.toggle_negative_mode, ["N"], "negative", "Negative mode (N): clicks mark things that are not particles (ice, carbon edges, junk)")
        self.act_negative.setCheckable(True)
        self.act_next = a("&Next micrograph", lambda: self.step(1), ["Right", "PgDown"], "next")
        self.act_prev = a("&Previous micrograph", lambda: self.step(-1), ["Left", "PgUp"], "previous")
        self.act_skip = a("&Skip micrograph", self.toggle_skip, ["S"], "skip", "Mark this micrograph as bad (ice, empty): it is left out of training")
        self.act_fit = a("&Fit to window", self.canvas.fit, ["F"], "fit")
        self.act_zoom_in = a("Zoom &in", lambda: self.canvas.zoom(1.25), ["+", "="])
        self.act_zoom_out = a("Zoom &out", lambda: self.canvas.zoom(0.8), ["-"])
        self.act_train = a("&Train", lambda: self.start_training(False), ["Ctrl+T"], None, "Train the picker on your labels (in the background)")
        self.act_finetune = a("&Fine-tune", lambda: self.start_training(True), ["Ctrl+Shift+T"], None, "Train again from the current model: fast after correcting picks")
        self.act_stop = a("&Stop", self.stop_jobs, ["Esc"], None, "Stop training (keeping the best model so far) and picking (keeping the picks so far)")
        self.act_pick = a("&Pick all micrographs", lambda: self.picker.pick(), ["Ctrl+P"], None, "Pick every micrograph not picked yet with the current model")
        self.act_suggest = a("S&uggest picks with the general model", lambda: self.picker.suggest_with_general(), [], None,
                             "Pick every micrograph with the shipped general model, before any label: suggestions to "
                             "check and accept as labels (uses the particle diameter of the Train panel)")
        self.act_load_model = a("&Load model…", self.load_model_dialog, [], None, "Pick with a model saved earlier (picker-gui train, or this window)")
        self.act_save_model = a("Save &model as…", self.save_model_dialog, [], None, "Save the current model to a file, to pick other data with it")
        self.act_export_picks = a("E&xport picks…", self.export_picks_dialog, ["Ctrl+Shift+E"], "export", "Write the picks at a threshold as RELION STAR, EMAN .box, Topaz, CSV… in original-micrograph pixels")
        self.act_pick_other = a("Pick &another folder with this model…", self.pick_other_folder, [], None, "Open another folder of micrographs and pick it with the current model")
        self.act_shortcuts = a("&Keyboard shortcuts", self.show_shortcuts, ["F1"])
        self.act_about = a("&About", self.show_about)

        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addActions([self.act_save_as])
        m.addSeparator()
        m.addActions([self.act_import, self.act_export, self.act_export_picks])
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Edit")
        m.addActions([self.act_undo, self.act_redo, self.act_delete])
        m.addSeparator()
        m.addAction(self.act_negative)
        m = bar.addMenu("&View")
        m.addActions([self.act_next, self.act_prev, self.act_skip])
        m.addSeparator()
        m.addActions([self.act_fit, self.act_zoom_in, self.act_zoom_out])
        m = bar.addMenu("&Picker")
        m.addActions([self.act_train, self.act_finetune, self.act_stop])
        m.addSeparator()
        m.addActions([self.act_suggest, self.act_pick, self.act_pick_other])
        m.addSeparator()
        m.addActions([self.act_load_model, self.act_save_model])
        m.addSeparator()
        m.addAction(self.act_export_picks)
        self.picker_menu = m
        m = bar.addMenu("&Help")
        m.addActions([self.act_shortcuts, self.act_about])

        tools = self.addToolBar("Main")
        tools.setObjectName("main toolbar")
        tools.setIconSize(QSize(20, 20))
        tools.addActions([self.act_open, self.act_import, self.act_export])
        tools.addSeparator()
        tools.addActions([self.act_prev, self.act_next, self.act_skip, self.act_fit])
        tools.addSeparator()
        tools.addActions([self.act_undo, self.act_redo, self.act_negative])
        # An icon alone (an orange cross, as negatives are drawn) reads as "delete": name the mode.
        negative_button = tools.widgetForAction(self.act_negative)
        if isinstance(negative_button, QToolButton):
            negative_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.act_negative.setIconText("Negatives")

    def _connect(self) -> None:
        v = self.canvas.view
        v.clicked.connect(self._on_canvas_clicked)
        v.grabbable = lambda x, y: self._hit(x, y) is not None
        v.drag_started.connect(self._on_drag_started)
        v.drag_moved.connect(self._on_drag_moved)
        v.drag_finished.connect(self._on_drag_finished)
        self.canvas.cursor_moved.connect(self._on_cursor_moved)
        self.mic_list.current_changed.connect(self._on_list_current_changed)
        self.mic_list.model.skip_toggled.connect(self._on_skip_toggled)
        self.loader.loaded.connect(self._on_loaded)
        self.loader.failed.connect(self._on_load_failed)
        c = self.controls
        c.lowpass_changed.connect(self._on_display_setting_changed)
        c.contrast_changed.connect(self._on_display_setting_changed)
        c.invert_changed.connect(self._on_invert_changed)
        c.diameter_changed.connect(self._on_diameter_changed)
        c.overlay_toggled.connect(self.canvas.set_overlay_visible)
        c.mode_changed.connect(lambda kind: self.act_negative.setChecked(kind == NEGATIVE))
        # The picker: the panel asks, the controller runs jobs, the state tells what changed.
        t = self.train_panel
        t.train_requested.connect(self.start_training)
        t.stop_requested.connect(self.picker.stop_training)
        t.settings_changed.connect(self._on_train_settings_changed)
        p = self.picker
        p.training_started.connect(lambda _fine: (t.reset(), t.set_running(True), self._update_actions()))
        p.training_report.connect(self._on_training_report)
        p.training_finished.connect(self._on_training_finished)
        p.picking_progress.connect(self._on_picking_progress)
        p.picking_finished.connect(lambda text: (self.statusBar().showMessage(text, 8000), self._update_actions()))
        p.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        p.error.connect(lambda title, text: QMessageBox.warning(self, title, text))
        p.running_changed.connect(self._update_actions)
        tp = self.threshold_panel
        tp.threshold_changed.connect(self._on_threshold_moved)
        tp.threshold_committed.connect(lambda _t: self._schedule_settings_save())
        tp.min_distance_changed.connect(self._on_min_distance_changed)
        self.gallery.item_activated.connect(self.jump_to)
        self._scores_timer = QTimer(self, singleShot=True, interval=300)  # picks stream in: redraw the histogram now and then
        self._scores_timer.timeout.connect(self._refresh_scores)
        self._gallery_timer = QTimer(self, singleShot=True, interval=150)
        self._gallery_timer.timeout.connect(self._refresh_gallery)
        self.loader.loaded.connect(self._fill_gallery_crops)
        ev = self.state.events
        ev.picks.connect(self._on_picks_changed)
        ev.threshold.connect(self._on_threshold_changed)
        ev.model.connect(self._on_model_changed)

    # -- project -------------------------------------------------------------------------
    def _load_project_view(self) -> None:
        s = self.project.settings
        self.controls.set_values(s.lowpass_a, s.contrast_percentiles[0], s.invert, s.diameter_a)
        self.canvas.set_invert(s.invert)
        folder = Path(s.micrograph_folder)
        problems: list[str] = []
        try:
            paths, problems = unique_micrographs(find_micrographs([folder]))
        except MicrographError as exc:
            paths, problems = [], [str(exc)]
        if problems:  # told beside the window; bound now, not in a lambda over an except-clause name
            self._tell(problems)
        self.paths.clear()  # in place: the picker controller shares this dict
        self.paths.update({micrograph_key(p): p for p in paths})
        skipped = set(s.skipped)
        entries = [
            MicrographEntry(p, self.store.count(p.name), self.store.count(p.name, NEGATIVE),
                            self.state.pick_count(p.name), skipped=micrograph_key(p) in skipped)
            for p in paths
        ]
        self.mic_list.model.set_entries(entries)
        self.train_panel.set_settings(s.expected_per_micrograph, s.objective, s.max_minutes)
        self.threshold_panel.set_threshold(self.state.threshold)
        self._refresh_scores()
        self._update_expected_hint()
        self._model_restored = False
        self._update_window_title()
        remember_project(self.project.folder)
        if self._select in self.paths:
            start = self._select
        elif s.current_micrograph in self.paths:
            start = s.current_micrograph
        else:
            start = next(iter(self.paths), None)
        self._select = None
        self.consensus.project_opened()
        if start:
            self._restore_view = s.view if start == s.current_micrograph else None
            self.mic_list.select(start)
        self._update_counts()

    def _request(self, key: str) -> DisplayRequest:
        s = self.project.settings
        return DisplayRequest(self.paths[key], s.pixel_size_a, s.lowpass_a, tuple(s.contrast_percentiles))

    def _on_list_current_changed(self, key: str) -> None:
        if key != self.current:
            self.show_micrograph(key)

    def show_micrograph(self, key: str) -> None:
        """Show a micrograph (from memory when it was seen or prefetched, else loading it)."""
        if key not in self.paths:
            return
        self.current = key
        self.picker.shown = key
        if self.mic_list.current_key() != key:
            self.mic_list.select(key)  # comes back through _on_list_current_changed as a no-op
        self._schedule_settings_save()
        self._refresh_overlays()
        self.displayed = None
        hit = self.loader.request(self._request(key))
        if hit is not None:
            self._show_loaded(hit)
        else:
            self.canvas.clear_image()
            self.statusBar().showMessage(f"Loading {self.paths[key].name}…")
        for neighbour in self.mic_list.neighbours(key):
            self.loader.request(self._request(neighbour), prefetch=True)
        self._update_counts()

    def _show_loaded(self, result: LoadedMicrograph) -> None:
        key = micrograph_key(result.request.path)
        self.shapes[key] = result.shape
        self.pixel_sizes[key] = result.pixel_size_a
        self.canvas.set_image(result.display, result.shape, keep_view=False)
        self.displayed = key
        if self._restore_view:
            self.canvas.set_view_rect(self._restore_view)
            self._restore_view = None
        self._apply_diameter()
        self._prepare_picker(result.pixel_size_a)
        self.controls.pixel_label.setText(f"{result.pixel_size_a:.4g} Å" if result.pixel_size_a else "unknown: set it in the project")
        self.statusBar().clearMessage()
        if result.notes:
            self.statusBar().showMessage("; ".join(result.notes), 8000)

    def _on_loaded(self, result: LoadedMicrograph) -> None:
        if self.current and result.request.key == self._request(self.current).key:
            self._show_loaded(result)

    def _on_load_failed(self, request: DisplayRequest, message: str) -> None:
        key = micrograph_key(request.path)
        self.mic_list.model.update(key, error=message)
        if key == self.current:
            self.canvas.clear_image()
            self.statusBar().showMessage(message)

    def step(self, delta: int) -> None:
        self.mic_list.step(delta)

    # -- labelling ---------------------------------------------------------------------
    def _diameter_px(self) -> float:
        px = self.project.settings.pixel_size_a or (self.pixel_sizes.get(self.current) if self.current else None)
        return self.project.settings.diameter_a / px if px else 64.0

    def _apply_diameter(self) -> None:
        self.canvas.set_diameter(self._diameter_px())
        px = self.project.settings.pixel_size_a or (self.pixel_sizes.get(self.current) if self.current else None)
        self.train_panel.set_diameter(self.project.settings.diameter_a, self._diameter_px() if px else None)
        self._refresh_overlays()

    def _hit(self, x: float, y: float):
        if self.current is None:
            return None
        return self.store.hit(self.current, x, y, radius=self._diameter_px() / 2)

    def _can_edit(self) -> bool:
        """Edits are refused while the project is open elsewhere (read-only, or taken over)."""
        if self.saver is not None and not self.saver.writable:
            self.statusBar().showMessage("Read-only: this project is open in another window; nothing is changed", 5000)
            return False
        return True

    def _on_canvas_clicked(self, x: float, y: float, button, modifiers) -> None:
        if self.current is None or self.current not in self.shapes or not self._can_edit():
            return
        h, w = self.shapes[self.current]
        hit = self._hit(x, y)
        remove = button == Qt.MouseButton.RightButton or bool(modifiers & Qt.KeyboardModifier.ShiftModifier)
        if hit is not None and (remove or button == Qt.MouseButton.LeftButton):
            self.undo_stack.push(RemoveLabel(self.store, self.paths[self.current].name, hit.kind, hit.index))
        elif not remove and button == Qt.MouseButton.LeftButton and 0 <= x < w and 0 <= y < h:
            pick = self._pick_at(x, y)
            if pick is not None:  # a click on a pick accepts it: the label goes where the picker put it
                x, y = pick
            self.undo_stack.push(AddLabel(self.store, self.paths[self.current].name, x, y, self.controls.mode))

    def _pick_at(self, x: float, y: float) -> tuple[float, float] | None:
        """The shown pick under (x, y), if any (within the pick ring)."""
        if self.current is None or not self.canvas.pick_item.isVisible():
            return None
        p = self.state.picks.picks(self.current, self.state.threshold)
        if not len(p):
            return None
        d = np.hypot(p.x - x, p.y - y)
        i = int(np.argmin(d))
        return (float(p.x[i]), float(p.y[i])) if d[i] <= self._diameter_px() * 0.5 * 0.85 else None

    def delete_under_cursor(self) -> None:
        hit = self._hit(*self._cursor)
        if hit is not None and self._can_edit():
            self.undo_stack.push(RemoveLabel(self.store, self.paths[self.current].name, hit.kind, hit.index))

    def _on_drag_started(self, x: float, y: float) -> None:
        hit = self._hit(x, y)
        if hit is not None and self._can_edit():
            xy = self.store.points(self.current, hit.kind)[hit.index]
            self._drag = (hit.kind, hit.index, (float(xy[0]), float(xy[1])))

    def _on_drag_moved(self, x: float, y: float) -> None:
        if self._drag:
            kind, index, _ = self._drag
            self.store.move(self.current, kind, index, x, y, notify=False)
            self._refresh_overlays()

    def _on_drag_finished(self, x: float, y: float) -> None:
        if self._drag:
            kind, index, old = self._drag
            self._drag = None
            self.undo_stack.push(MoveLabel(self.store, self.paths[self.current].name, kind, index, old, (x, y)))

    def toggle_negative_mode(self) -> None:
        self.controls.set_mode(PARTICLE if self.controls.mode == NEGATIVE else NEGATIVE)

    def toggle_skip(self) -> None:
        if self.current is None:
            return
        entry = self.mic_list.model.entry(self.current)
        self.mic_list.model.update(self.current, skipped=not entry.skipped)
        self._on_skip_toggled(self.current, entry.skipped)

    def _on_skip_toggled(self, key: str, skipped: bool) -> None:
        s = set(self.project.settings.skipped)
        (s.add if skipped else s.discard)(key)
        self.project.settings.skipped = sorted(s)
        self._schedule_settings_save()

    def _on_labels_changed(self, keys: tuple[str, ...]) -> None:
        self.mic_list.model.update_many({k: {"labels": self.store.count(k), "negatives": self.store.count(k, NEGATIVE)} for k in keys})
        if self.current in keys:
            self._refresh_overlays()
        self._update_counts()
        self._update_expected_hint()
        self.saver.edited()

    def _refresh_overlays(self) -> None:
        if self.current is None:
            return
        self.canvas.set_labels(self.store.points(self.current, PARTICLE), self.store.points(self.current, NEGATIVE))
        self._refresh_picks()
        self.consensus.show(self.current)

    def _update_counts(self) -> None:
        if self.current is None:
            self.counts_label.setText("")
            return
        n, neg = self.store.count(self.current), self.store.count(self.current, NEGATIVE)
        total = self.store.total()
        text = f"{n} particles, {neg} negatives on this micrograph · {total} particles in all"
        self.counts_label.setText(text)
        self.controls.counts.setText(text.replace(" · ", "\n"))

    def _on_cursor_moved(self, x: float, y: float) -> None:
        self._cursor = (x, y)
        self.position_label.setText(f"x {x:8.1f}  y {y:8.1f} px")

    # -- the picker ------------------------------------------------------------------------
    def start_training(self, fine_tune: bool = False) -> bool:
        """Train (or fine-tune) on the labels as they are now, in the background."""
        if self.saver is not None and not self.saver.writable:
            self.statusBar().showMessage("Read-only: this project is open in another window", 5000)
            return False
        self.dock_raise("Train")
        return self.picker.train(fine_tune, **self.train_panel.settings())

    def stop_jobs(self) -> None:
        self.picker.stop_training()
        self.picker.stop_picking()
        self.consensus.controller.stop()

    def dock_raise(self, title: str) -> None:
        dock = self.docks.get(title)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _on_train_settings_changed(self) -> None:
        s = self.project.settings
        values = self.train_panel.settings()
        s.expected_per_micrograph = values["expected_per_micrograph"]
        s.objective = values["objective"]
        s.max_minutes = values["max_minutes"]
        self._schedule_settings_save()

    def _on_training_report(self, report) -> None:
        if report.train is not None:
            self.train_panel.add_report(report.train)
        elif report.message:
            self.statusBar().showMessage(report.message, 5000)
        if report.stage == "preprocess" and report.total:
            self.statusBar().showMessage(f"Preparing the labelled micrographs: {report.done} of {report.total}", 3000)

    def _on_training_finished(self, text: str) -> None:
        self.train_panel.set_running(False)
        self.train_panel.finished(text)
        self.statusBar().showMessage(text, 10000)
        self._update_actions()

    def _on_picking_progress(self, done: int, total: int) -> None:
        self.statusBar().showMessage(f"Picking: {done} of {total} micrographs (Esc stops; the picks so far stay)", 5000)

    def _on_model_changed(self, saved) -> None:
        self.train_panel.set_model_available(saved is not None)
        if saved is not None and self.project.settings.min_distance_px is None:
            from picker_gui.core.inference import default_min_distance_px

            self.state.min_distance_px = default_min_distance_px(saved.metadata)  # the particle radius, as Topaz's NMS
        self._show_min_distance()
        self._update_actions()

    def _show_min_distance(self) -> None:
        s = self.project.settings
        px = s.pixel_size_a or self.state.pixel_size_a
        distance = self.state.min_distance_px * px if (px and self.state.min_distance_px) else None
        self.threshold_panel.set_min_distance(distance, px, s.diameter_a)

    def _on_picks_changed(self, keys) -> None:
        """New picks (streaming in from a pick job, or re-filtered at a new least distance)."""
        self.act_export_picks.setEnabled(bool(self.state.picks.keys()))
        self.mic_list.model.update_many({k: {"picks": self.state.pick_count(k)} for k in keys})
        if self.current in keys:
            self._refresh_picks()
        self._update_counts()
        if not self._scores_timer.isActive():
            self._scores_timer.start()

    def _on_threshold_changed(self, threshold: float) -> None:
        """The threshold moved: picks on screen and every count, at once (the rings on screen
        are all the micrograph's picks, in score order: the threshold only says how many)."""
        counts = self.state.pick_counts()
        self.mic_list.model.update_many({k: {"picks": n} for k, n in counts.items()})
        if self.current is not None:
            self.canvas.set_pick_count(counts.get(self.current, 0))
        self._update_counts()

    def _on_threshold_moved(self, threshold: float) -> None:
        """The slider moved: the state tells everything that shows picks (see
        _on_threshold_changed); the panel's own numbers follow here."""
        self.state.threshold = threshold
        self.threshold_panel.set_cost(self.state.threshold_cost())
        if not self._gallery_timer.isActive():
            self._gallery_timer.start()

    def _on_min_distance_changed(self, distance_a: float) -> None:
        px = self.project.settings.pixel_size_a or self.state.pixel_size_a
        if px:
            self.state.min_distance_px = distance_a / px  # re-filters every micrograph: a picks event
            self._schedule_settings_save()

    def _refresh_scores(self) -> None:
        """The histogram, range and cost after picks changed (throttled while they stream in)."""
        scores = self.state.picks.scores()
        tp = self.threshold_panel
        tp.set_enabled_for_picks(len(scores) > 0)
        if len(scores):
            lo, hi = float(np.min(scores)), float(np.max(scores))
            tp.set_range(min(lo, self.state.threshold), max(hi, self.state.threshold))
            tp.set_scores(scores)
            tp.set_threshold(self.state.threshold)
            tp.set_cost(self.state.threshold_cost())
            if self.picker.training:
                return  # picks of the model being trained: the gallery waits for the trained one
            if self.docks["Gallery"].isHidden():
                self.docks["Gallery"].show()
            if not self._gallery_timer.isActive():
                self._gallery_timer.start()  # an event of its own

    def _refresh_gallery(self) -> None:
        """The picks just above and below the threshold, cropped from the display images in
        memory (the others are loaded and filled in as they arrive)."""
        from picker_gui.core.gallery import around_threshold

        if self.docks["Gallery"].isHidden():
            return
        items = around_threshold(self.state.picks, self.state.threshold)
        images = {k: hit.display for k in {i.key for i in items} if k in self.paths
                  for hit in [self.loader.cached(self._request(k))] if hit is not None}
        self.gallery.set_items(items, crops_for(items, images, 1.6 * self._diameter_px()), threshold=self.state.threshold)
        self.gallery.set_invert(self.project.settings.invert)
        for key in {items[i].key for i in self.gallery.missing()}:
            if key in self.paths:
                self.loader.request(self._request(key), prefetch=True)

    def _fill_gallery_crops(self, result) -> None:
        key = micrograph_key(result.request.path)
        missing = [i for i in self.gallery.missing() if self.gallery.items[i].key == key]
        if missing:
            crops = crops_for([self.gallery.items[i] for i in missing], {key: result.display}, 1.6 * self._diameter_px())
            for j, i in enumerate(missing):
                self.gallery.update_crop(i, crops[j])

    def jump_to(self, key: str, x: float, y: float) -> None:
        """Show a pick: its micrograph, zoomed to a few particle diameters around it."""
        span = 8 * self._diameter_px()
        self._restore_view = [x - span / 2, y - span / 2, span, span]
        if key == self.current and self.displayed == key:
            self.canvas.set_view_rect(self._restore_view)
            self._restore_view = None
        else:
            self.show_micrograph(key)

    def _refresh_picks(self) -> None:
        """The current micrograph's picks (all, highest score first; the threshold's count shown)."""
        if self.current is None:
            return
        p = self.state.picks.picks(self.current)
        self.canvas.set_picks(p.x, p.y, p.count(self.state.threshold))

    def _update_actions(self) -> None:
        training, picking = self.picker.training, self.picker.picking
        has_model = self.state.model is not None
        self.act_train.setEnabled(not training)
        self.act_finetune.setEnabled(not training and has_model)
        self.act_stop.setEnabled(training or picking)
        self.act_pick.setEnabled(has_model and not picking and not training)
        self.act_suggest.setEnabled(not picking and not training)
        self.act_save_model.setEnabled(has_model)
        self.act_export_picks.setEnabled(bool(self.state.picks.keys()))
        self.act_pick_other.setEnabled(has_model and not training)
        if not training:
            self.train_panel.set_running(False)

    def _update_expected_hint(self) -> None:
        value, n = self.state.expected_hint()
        text = (f"you labelled {value:.0f} per micrograph (median of {n}): use it if you labelled every particle on them"
                if value is not None else "label every particle on a micrograph or two to get a hint")
        self.train_panel.set_expected_hint(value, text)

    def _prepare_picker(self, pixel_size_a: float | None) -> None:
        """Once the first micrograph is on screen (torch is loaded by then): the device the
        picker will use, and the project's model, whose picks were saved with it."""
        if self._model_restored:
            return
        self._model_restored = True
        self.state.pixel_size_a = self.project.settings.pixel_size_a or pixel_size_a
        self._show_min_distance()
        from picker_gui.core.training import select_device

        device, warning = select_device("auto")
        if device.type == "cuda":
            import torch

            text = f"GPU: {torch.cuda.get_device_name(device)}"
        elif device.type == "mps":
            text = "GPU: Apple (MPS)"
        else:
            import torch

            text = f"CPU ({torch.get_num_threads()} threads)"
        self.train_panel.set_device(text, warning)
        if self.state.model is None:
            self.picker.restore_model()
        from picker_gui.gui.picking import freeze_imports

        freeze_imports()  # torch is loaded by now

    def export_picks_dialog(self) -> list[Path]:
        """Export the picks at a threshold, in any format (the same code as picker-gui export)."""
        from picker_gui.core.exporting import export_picks, project_inputs
        from picker_gui.gui.export_dialog import ExportDialog

        if not self.state.picks.keys():
            self.statusBar().showMessage("No picks yet: train or load a model first", 5000)
            return []
        self.picker.save_picks()
        s = self.project.settings
        dialog = ExportDialog(self.state.picks, self.state.threshold, self.current, s.skipped, self._diameter_px(),
                              str(self.project.folder), s.relion_micrographs, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return []
        try:
            summary = export_picks(self.state.picks, dialog.request(), inputs=project_inputs(self.project))
        except (PickerError, OSError) as exc:
            reason = str(exc) if isinstance(exc, PickerError) else f"cannot write {exc.filename}: {exc.strerror or exc}"
            QMessageBox.warning(self, "Export failed", reason)
            return []
        if dialog.relion_star_path():
            s.relion_micrographs = dialog.relion_star_path()
            self._schedule_settings_save()
        self.statusBar().showMessage(summary.describe().capitalize(), 10000)
        return list(summary.files)

    def load_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a model", str(self.project.folder), "picker-gui models (*.pt);;All files (*)")
        if path:
            self.picker.load_model(path)

    def save_model_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model", str(self.project.folder / "model.pt"), "picker-gui models (*.pt)")
        if path:
            self.picker.save_model_as(path)

    def pick_other_folder(self) -> None:
        """Open another folder and pick it with the model of this one."""
        model = self.state.model
        if model is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "A folder of micrographs to pick with this model", str(Path(self.project.settings.micrograph_folder).parent))
        if folder and self.open_path(folder):
            self.state.set_model(model)
            self._model_restored = True
            self.picker.pick()

    # -- display settings --------------------------------------------------------------
    def _on_display_setting_changed(self, _value=None) -> None:
        s = self.project.settings
        s.lowpass_a = float(self.controls.lowpass.value())
        clip = self.controls.contrast.value() / 10.0
        s.contrast_percentiles = (clip, 100.0 - clip)
        self._schedule_settings_save()
        if self.current:
            self._restore_view = self.canvas.view_rect()
            self.show_micrograph(self.current)

    def _on_invert_changed(self, invert: bool) -> None:
        self.project.settings.invert = invert
        self.canvas.set_invert(invert)
        self._schedule_settings_save()

    def _on_diameter_changed(self, diameter_a: float) -> None:
        self.project.settings.diameter_a = float(diameter_a)
        self._apply_diameter()
        self._schedule_settings_save()

    # -- saving --------------------------------------------------------------------------
    def _on_save_state(self, state: str, message: str) -> None:
        """The banner follows the saver: failed, taken over and read-only stay on screen
        until the state ends."""
        actions = {
            storage.FAILED: ("error", message, [("Retry now", lambda: self.saver.save_now()), ("Save project as…", self.save_project_as)]),
            storage.LOST: ("error", message, [("Save project as…", self.save_project_as)]),
            storage.READ_ONLY: ("warning", f"Read-only: {self.project.folder} is open in another picker-gui window. "
                                           f"Labels here are shown, not changed.", [("Save a copy as…", self.save_project_as)]),
        }
        if state in actions:
            self.banner.show_message(*actions[state])
            self._banner_is_saver = True
        elif getattr(self, "_banner_is_saver", False):
            self.banner.clear()
            self._banner_is_saver = False
        self._update_window_title()

    def _on_conflict(self, text: str) -> None:
        self.banner.show_message("warning", text, [("Dismiss", self.banner.clear)])
        self._banner_is_saver = False

    def _update_window_title(self) -> None:
        tag = {storage.READ_ONLY: " [read-only]", storage.LOST: " [not saved: taken over]", storage.FAILED: " [NOT SAVED]"}
        n = len(self.paths)
        self.setWindowTitle(f"picker-gui — {project_title(self.project.folder)} ({n} micrographs in {self.project.settings.micrograph_folder})"
                            f"{tag.get(self.saver.state, '') if self.saver else ''}")

    def save_labels(self) -> bool:
        """Write the labels now (on this thread); True when nothing is left unsaved."""
        return self.saver.flush()

    def _schedule_settings_save(self) -> None:
        if not self._settings_save.isActive():
            self._settings_save.start()

    def save_settings(self) -> None:
        if self.saver is not None and not self.saver.writable:
            return
        if self.current and self.current in self.shapes:
            self.project.settings.view = self.canvas.view_rect()
        try:
            self.project.save_settings()
        except OSError as exc:
            if not self.banner.isVisible():  # a failed label save says more, and says it first
                self.banner.show_message("warning", f"The project settings (view, display, skipped micrographs) could not be "
                                                    f"saved to {self.project.folder}: {exc.strerror or exc}. Labels are saved "
                                                    f"separately.", [("Dismiss", self.banner.clear)])
                self._banner_is_saver = False

    def save_project_as(self) -> bool:
        """Copy the project (settings and every label, saved or not) to a new folder and go
        on there: the way out when the project folder cannot be written."""
        folder = QFileDialog.getExistingDirectory(self, "Save the project in a new (empty) folder", str(Path.home()))
        if not folder:
            return False
        if self.current and self.current in self.shapes:
            self.project.settings.view = self.canvas.view_rect()
        try:
            copy = self.project.save_as(folder, self.store.to_table())
        except (PickerError, OSError) as exc:
            QMessageBox.warning(self, "Save project as", f"Could not save the project in {folder}: {getattr(exc, 'strerror', None) or exc}")
            return False
        old = self.saver
        old.release()
        old.deleteLater()
        self.project = copy
        self.saver = None
        self._attach_saver(False, [])
        remember_project(copy.folder)
        self.banner.clear()
        self._update_window_title()
        self.statusBar().showMessage(f"The project is now saved in {copy.folder}", 8000)
        return True

    def _settle_unsaved(self, doing: str) -> bool:
        """Before closing or switching project: write everything; when that fails, ask. True
        to go on."""
        self._settings_save.stop()
        saved = self.saver.flush()
        self.save_settings()
        if saved or not self.saver.unsaved:
            return True
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved labels",
                          f"{self.saver.unsaved} label edit(s) are not saved to {self.project.labels_path}.",
                          parent=self)
        box.setInformativeText((self.saver.message or "The project cannot be written.") + f"\n\nSave the project elsewhere before {doing}?")
        save = box.addButton("Save project as…", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton(f"Discard edits and {doing.split()[0]}", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(save)
        box.exec()
        if box.clickedButton() is save:
            return self.save_project_as() and self.saver.flush()
        return box.clickedButton() is discard

    def closeEvent(self, event) -> None:  # noqa: N802
        if not self._settle_unsaved("closing"):
            event.ignore()
            return
        self.picker.flush()  # stops training and picking, writes the picks
        self.saver.release()
        self.loader.shutdown()
        super().closeEvent(event)

    # -- import / export / open ----------------------------------------------------------
    def import_labels(self, path: str | None = None, *, flip_y: bool | None = None, scale: float | None = None, as_negative: bool | None = None) -> int:
        """Import coordinates as labels, added to those there are, in one undoable step.
        Returns the number imported."""
        if not self._can_edit():
            return 0
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import coordinates", str(self.project.folder), read_file_filter())
            if not path:
                return 0
        path = Path(path)
        if flip_y is None:
            dialog = ImportDialog(path, self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return 0
            flip_y, scale, as_negative = dialog.flip.isChecked(), dialog.scale.value(), dialog.negative.isChecked()
        try:
            table = read_coordinates(path, scale=scale or 1.0)
        except PickerError as exc:
            QMessageBox.warning(self, "Import failed", str(exc))
            return 0
        # Names match as the consensus sets' do: folder, extension and suffixes such as _DW or
        # _autopick do not matter (a per-micrograph file is named after its micrograph plus one).
        table, unmatched = align_to_micrographs(table, [p.name for p in self.paths.values()])
        if not len(table):
            QMessageBox.warning(self, "Import", f"{path.name}: none of its coordinates names a micrograph of this project "
                                                f"(found: {listed_names(unmatched) or 'no micrograph names'}; names match by basename, without extension "
                                                f"or suffixes such as _DW or _autopick).")
            return 0
        if flip_y:
            table = table.flipped_y({k: self._height(k) for k in table.micrographs()})  # only these headers
        if as_negative:
            table = table.with_kind(NEGATIVE)
        self._warn_if_off_image(table, path)
        before = self.store.to_table()
        names = {k: p.name for k, p in self.paths.items()}
        merged = CoordinateTable.concat([before, table.named_by_key(names).replace(source="manual")])
        self.undo_stack.push(ReplaceLabels(self.store, before, merged, f"Import {path.name}"))
        self.saver.save_now()
        skipped = f"; micrographs not in this project skipped: {listed_names(unmatched)}" if unmatched else ""
        self.statusBar().showMessage(f"Imported {len(table)} label(s) from {path.name}{skipped}", 8000)
        return len(table)

    def _height(self, key: str) -> float:
        if key not in self.shapes:
            self.shapes[key] = read_header(self.paths[key]).shape
        return float(self.shapes[key][0])

    def _warn_if_off_image(self, table: CoordinateTable, path: Path) -> None:
        off = 0
        for key, part in table.groupby_micrograph():
            try:
                h = self._height(key)
                w = float(self.shapes[key][1])
            except MicrographError:
                continue
            off += int(np.count_nonzero((part.x < 0) | (part.x >= w) | (part.y < 0) | (part.y >= h)))
        if off > len(table) / 2:
            QMessageBox.warning(
                self,
                "Import",
                f"{path.name}: {off} of {len(table)} coordinates fall outside their micrographs. "
                "The file may use another scale (binned micrographs) or measure y from the other edge: "
                "undo (Ctrl+Z) and import again with Scale or Flip y set.",
            )

    EXPORT_FILTERS = {
        "RELION particles STAR, cryoSPARC-ready (*.star)": "star-particles",
        "RELION 4/5 coordinate list + per-micrograph STARs (*.star)": "relion-list",
        "RELION 3 per-micrograph STAR files (folder)": "relion",
        "EMAN .box files (folder)": "box",
        "Topaz text (*.txt)": "topaz",
        "CSV with kinds, negatives included (*.csv)": "csv",
    }

    def export_labels(self, path: str | None = None, fmt: str | None = None, *, relion_micrographs: str | None = None) -> list[Path]:
        """Write the labels (particles; negatives too in CSV) in any format the core writes.

        For a RELION 4/5 coordinate list, the micrographs STAR of the RELION job gives the
        names and paths RELION matches (asked in a dialog when the export comes from the menu,
        remembered in the project)."""
        interactive = path is None
        if interactive:
            path, chosen = QFileDialog.getSaveFileName(
                self, "Export labels", str(self.project.folder / "labels_export.star"), ";;".join(self.EXPORT_FILTERS)
            )
            if not path:
                return []
            fmt = self.EXPORT_FILTERS.get(chosen)
        table = self.store.to_table()
        naming: dict = {}
        if fmt == "relion-list":
            from picker_gui.core.formats import relion_micrograph_names
            from picker_gui.gui.dialogs import RelionNamesDialog

            if interactive:
                dialog = RelionNamesDialog(table.micrographs(), self.project.settings.relion_micrographs, self)
                if dialog.exec() != QDialog.DialogCode.Accepted:
                    return []
                dialog._check()  # the text may have changed since it was last read
                relion_micrographs = dialog.star.text().strip() or None
                if relion_micrographs:
                    naming = {"micrograph_names": dialog.names, "relion_project": dialog.project}
            elif relion_micrographs:
                try:
                    names, relion_project = relion_micrograph_names(relion_micrographs)
                except PickerError as exc:
                    QMessageBox.warning(self, "Export failed", str(exc))
                    return []
                naming = {"micrograph_names": names, "relion_project": relion_project}
            self.project.settings.relion_micrographs = relion_micrographs
            self._schedule_settings_save()
        try:
            written = write_coordinates(table, path, fmt, box_size=round(self._diameter_px() * 1.5), **naming)
        except (PickerError, OSError) as exc:
            reason = str(exc) if isinstance(exc, PickerError) else f"cannot write {exc.filename or path}: {exc.strerror or exc}"
            QMessageBox.warning(self, "Export failed", reason)
            return []
        self.statusBar().showMessage(f"Exported {len(table)} label(s) to {path} ({len(written)} file(s))", 8000)
        return written

    def open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of micrographs or a picker-gui project", str(Path(self.project.settings.micrograph_folder).parent))
        if folder:
            self.open_path(folder)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = [p for p in recent_projects() if p.resolve() != self.project.folder.resolve()]
        for path in recent:
            act = self.recent_menu.addAction(f"{project_title(path)}  —  {path}")
            act.setToolTip(str(path))
            act.triggered.connect(lambda _checked=False, p=path: self.open_path(p))
        if not recent:
            self.recent_menu.addAction("(no other recent projects)").setEnabled(False)

    def open_path(self, target: str | Path) -> bool:
        """Switch the window to another project or micrograph folder (the current project
        is saved first; if it cannot be, the user decides)."""
        from picker_gui.gui.opening import open_target

        if not self._settle_unsaved("opening another project"):
            return False
        opened = open_target(target, parent=self)
        if opened is None:
            return False
        self.picker.flush()
        self.saver.release()
        self.saver.deleteLater()
        self.undo_stack.clear()
        self.state.open(opened.project)
        self.shapes.clear()
        self._select = opened.select
        self.banner.clear()
        self._attach_saver(opened.read_only, opened.warnings)
        self._load_project_view()
        self._tell(opened.warnings)
        return True

    def show_shortcuts(self) -> None:
        box = QDialog(self)
        box.setWindowTitle("Keyboard and mouse")
        layout = QVBoxLayout(box)
        text = QTextBrowser()
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        text.setHtml(f"<table>{rows}</table>")
        layout.addWidget(text)
        box.resize(520, 460)
        box.show()

    def show_about(self) -> None:
        from picker_gui import __version__

        QMessageBox.about(self, "About picker-gui", f"picker-gui {__version__}\nPositive-unlabeled particle picking for cryo-EM.\nProject: {self.project.folder}")

