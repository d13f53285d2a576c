"""Starting the window: the Qt application, its error hook, and what to open first (see
:mod:`picker_gui.gui.opening` for opening folders and projects)."""

from __future__ import annotations

import logging
import os
import sys
import traceback

logger = logging.getLogger(__name__)

NO_DISPLAY = (
    "picker-gui: no display found (DISPLAY and WAYLAND_DISPLAY are not set). Run it on a desktop, "
    "under a virtual X server (xvfb-run picker-gui gui), or with QT_QPA_PLATFORM=offscreen for scripted use."
)


def display_available() -> bool:
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
    from picker_gui.gui.opening import choose_start, open_demo, open_target

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
