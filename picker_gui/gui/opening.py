"""Opening folders and projects in the window: the questions a new project or a locked one
needs (dialogs), the demo dataset, the start choice. What opening means (resolving the path,
making the project, the lock) is :func:`picker_gui.core.project.open_project`; this module
asks the questions and shows the errors."""

from __future__ import annotations

import os
from pathlib import Path

from picker_gui.core.project import OpenedProject as Opened


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
    from picker_gui.core.project import open_project
    from picker_gui.gui import dialogs

    def ask_new_settings(t, header):
        dialog = dialogs.NewProjectDialog(t, header.pixel_size_a if header else None, header.shape if header else None, parent=parent)
        return dialog.settings() if dialog.exec() == QDialog.DialogCode.Accepted else None

    try:
        return open_project(target, new_settings=new_settings, ask_new_settings=ask_new_settings,
                            ask_locked=lambda exc: dialogs.ask_locked(parent, exc), on_create=on_create)
    except (PickerError, OSError) as exc:
        message = str(exc) if isinstance(exc, PickerError) else f"{exc.filename or target}: cannot open ({exc.strerror or exc})"
        if errors is not None:
            errors.append(message)
        else:
            QMessageBox.critical(parent, "picker-gui", message)
        return None


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


