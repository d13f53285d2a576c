"""Starting the window: the Qt application, the start choice, the demo dataset, opening
folders and projects (with the questions a new project or a locked one needs)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

NO_DISPLAY = (
    "picker-gui: no display found (DISPLAY and WAYLAND_DISPLAY are not set). Run it on a desktop, "
    "under a virtual X server (xvfb-run picker-gui gui), or with QT_QPA_PLATFORM=offscreen for scripted use."
)


def display_available() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclass
class Opened:
    """A project ready for the window, and what the user should be told about it."""

    project: object  # picker_gui.core.project.Project
    warnings: list[str] = field(default_factory=list)
    read_only: bool = False
    select: str | None = None


def _first_header(paths: list[Path]):
    from picker_gui.core.errors import MicrographError
    from picker_gui.core.mrc_io import read_header

    for path in sorted(paths):
        try:
            return read_header(path)
        except MicrographError:
            continue
    return None


def open_target(target: str | os.PathLike, parent=None, *, new_settings: dict | None = None,
                on_create=None, errors: list[str] | None = None) -> Opened | None:
    """Open a project folder, or the project of a micrograph folder (asking for the particle
    diameter and pixel size when it is made), and take the project's lock (asking what to do
    when another window holds it).

    Returns None when it cannot be opened or the user cancelled; the reason was shown.
    ``new_settings`` skips the new-project dialog; ``on_create(project)`` runs once on a
    project made here (the demo uses it to add its labels). With ``errors``, a reason it
    cannot be opened is appended there instead of being shown in a message box.
    """
    from PyQt6.QtWidgets import QDialog, QMessageBox

    from picker_gui.core.errors import PickerError
    from picker_gui.core.project import Project, ProjectLockedError, create_project_for, resolve_target
    from picker_gui.gui import dialogs

    warnings: list[str] = []
    try:
        t = resolve_target(target)
        if t.exists:
            project = Project.open(t.project)
        else:
            if new_settings is None:
                header = _first_header(t.micrographs)
                dialog = dialogs.NewProjectDialog(t, header.pixel_size_a if header else None, header.shape if header else None, parent=parent)
                if dialog.exec() != QDialog.DialogCode.Accepted:
                    return None
                new_settings = dialog.settings()
            project = create_project_for(t, **new_settings)
            if on_create is not None:
                on_create(project)
    except (PickerError, OSError) as exc:
        message = str(exc) if isinstance(exc, PickerError) else f"{exc.filename or target}: cannot open ({exc.strerror or exc})"
        if errors is not None:
            errors.append(message)
        else:
            QMessageBox.critical(parent, "picker-gui", message)
        return None
    warnings += project.notes
    read_only = False
    try:
        previous = project.lock.acquire()
        if previous is not None:
            warnings.append(f"The project's lock, held {previous.describe()}, was stale (that window is gone) and was taken over.")
    except ProjectLockedError as exc:
        answer = dialogs.ask_locked(parent, exc)
        if answer is None:
            return None
        if answer == "take-over":
            try:
                project.lock.acquire(take_over=True)
            except OSError as err:
                warnings.append(f"The lock of {project.folder} could not be taken ({err.strerror or err}); "
                                f"the project is open read-only.")
                read_only = True
        else:
            read_only = True
    except OSError as exc:
        warnings.append(f"The project folder {project.folder} cannot be written ({exc.strerror or exc}): "
                        f"labels cannot be saved there; use File → Save project as… to keep your work.")
    return Opened(project, warnings, read_only, t.select)


def _make_demo(app) -> Path | None:
    """The demo dataset, made on first use with a progress dialog (in a worker thread)."""
    from PyQt6.QtCore import QThread, pyqtSignal
    from PyQt6.QtWidgets import QProgressDialog

    from picker_gui.core.demo_data import DEMO_MICROGRAPHS, demo_folder, demo_ready, ensure_demo_dataset

    if demo_ready():
        return demo_folder()

    class Maker(QThread):
        progress = pyqtSignal(int, int)

        def __init__(self) -> None:
            super().__init__()
            self.error: str | None = None

        def run(self) -> None:
            try:
                ensure_demo_dataset(progress=lambda done, total: self.progress.emit(done, total))
            except Exception as exc:  # noqa: BLE001 - reported in the dialog below
                self.error = f"{type(exc).__name__}: {exc}"

    dialog = QProgressDialog("Making the demo dataset (first start only)…", None, 0, DEMO_MICROGRAPHS)
    dialog.setWindowTitle("picker-gui")
    dialog.setMinimumDuration(0)
    maker = Maker()
    maker.progress.connect(lambda done, total: dialog.setValue(done))
    maker.finished.connect(dialog.close)
    maker.start()
    dialog.exec()
    maker.wait()
    if maker.error:
        from PyQt6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "picker-gui", f"Could not make the demo dataset in {demo_folder()}: {maker.error}")
        return None
    return demo_folder()


def open_demo(app, parent=None) -> Opened | None:
    """The demo dataset's project, made with its particle size and its sparse labels."""
    from picker_gui.core.demo_data import demo_project_setup

    demo = _make_demo(app)
    if demo is None:
        return None
    settings, labels = demo_project_setup(demo)

    def add_labels(project) -> None:
        project.labels = labels
        project.save_labels()

    return open_target(demo / "micrographs", parent, new_settings=settings, on_create=add_labels)


def create_app(argv: list[str] | None = None):
    from PyQt6.QtWidgets import QApplication

    from picker_gui.gui.theme import apply_dark_theme

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName("picker-gui")
    app.setOrganizationName("picker-gui")
    apply_dark_theme(app)
    return app


def show_unexpected_error(exc_type, exc, tb) -> None:
    """sys.excepthook for the window: an error that escaped is shown in the window (with the
    traceback under "Show Details"), not only on the terminal, and the window goes on."""
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(text)
    try:
        from PyQt6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is None:
            return
        box = QMessageBox(QMessageBox.Icon.Critical, "picker-gui: unexpected error",
                          f"Something went wrong: {exc_type.__name__}: {exc}\n\nYour labels are saved as usual. "
                          f"This is a bug; please report it with the details below.")
        box.setDetailedText(text)
        box.exec()
    except Exception:  # noqa: BLE001 - never fail while reporting a failure
        pass


def choose_start(app, problem: str | None = None) -> Opened | None:
    """The start choice: recent projects, a folder, the demo; again until something opens
    or the user quits."""
    from PyQt6.QtWidgets import QDialog, QFileDialog

    from picker_gui.core.project import recent_projects
    from picker_gui.gui.dialogs import StartDialog

    while True:
        dialog = StartDialog(recent_projects(), problem)
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.choice is None:
            return None
        kind, path = dialog.choice
        if kind == "demo":
            opened = open_demo(app)
        else:
            if kind == "folder":
                chosen = QFileDialog.getExistingDirectory(None, "Open a folder of micrographs or a picker-gui project", str(Path.home()))
                if not chosen:
                    continue
                path = Path(chosen)
            opened = open_target(path)
        if opened is not None:
            return opened
        problem = None


def run(target: str | None = None, demo: bool = False) -> int:
    """Open the window on ``target`` (micrograph folder, micrograph or project); with none,
    offer the recent projects (or open the demo dataset on a first start)."""
    if not display_available():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    from picker_gui.gui.qt_deps import missing_xcb_message

    problem = missing_xcb_message()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    app = create_app()
    sys.excepthook = show_unexpected_error
    from picker_gui.core.project import recent_projects
    from picker_gui.gui.main_window import MainWindow

    if demo or (target is None and not recent_projects()):
        opened = open_demo(app)
    elif target is None:
        opened = choose_start(app)
    else:
        errors: list[str] = []
        opened = open_target(target, errors=errors)
        if opened is None and errors:  # the reason goes in the start choice, not to the terminal only
            opened = choose_start(app, errors[0])
    if opened is None:
        return 1
    window = MainWindow(opened.project, opened.warnings, read_only=opened.read_only, select=opened.select)
    window.show()
    return app.exec()
