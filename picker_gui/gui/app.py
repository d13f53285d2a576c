"""Starting the window: the Qt application, the demo dataset, opening folders and projects."""

from __future__ import annotations

import logging
import os
import sys
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


def open_target(target: str | os.PathLike, parent=None):
    """Open a project folder, or the project of a micrograph folder (made on first use).

    Returns ``(project, warning)``; ``project`` is None when it cannot be opened (the
    reason was shown). A labels file that cannot be read is moved aside, the project opens
    with no labels, and the warning says where the old file is.
    """
    from PyQt6.QtWidgets import QMessageBox

    from picker_gui.core.errors import PickerError
    from picker_gui.core.project import PROJECT_FILE, LabelFileError, Project, project_for_micrographs

    path = Path(target).expanduser()
    if path.is_file():
        path = path.parent
    try:
        try:
            if (path / PROJECT_FILE).exists():
                return Project.open(path), None
            return project_for_micrographs(path), None
        except LabelFileError as exc:
            folder = exc.path.parent
            return Project.open(folder), str(exc)
    except PickerError as exc:
        QMessageBox.critical(parent, "picker-gui", str(exc))
        return None, None


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


def create_app(argv: list[str] | None = None):
    from PyQt6.QtWidgets import QApplication

    from picker_gui.gui.theme import apply_dark_theme

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setApplicationName("picker-gui")
    app.setOrganizationName("picker-gui")
    apply_dark_theme(app)
    return app


def run(target: str | None = None) -> int:
    """Open the window on ``target`` (micrograph folder or project), or on the demo dataset."""
    if not display_available():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    app = create_app()
    from picker_gui.gui.main_window import MainWindow

    if target is None:
        demo = _make_demo(app)
        if demo is None:
            return 1
        target = str(demo / "micrographs")
    project, warning = open_target(target)
    if project is None:
        return 1
    window = MainWindow(project, warning)
    window.show()
    return app.exec()
