"""Driving the window as a user does: menus, dialogs that pop up, buttons in them."""

from __future__ import annotations

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QAbstractButton, QApplication, QMenu, QWidget


def menu_action(window, menu_title: str, text: str):
    """The action ``text`` of the menu bar's ``menu_title`` menu (``&`` ignored)."""
    clean = lambda t: t.replace("&", "").rstrip("…").strip()  # noqa: E731
    for act in window.menuBar().actions():
        if clean(act.text()) == clean(menu_title):
            menu: QMenu = act.menu()
            menu.aboutToShow.emit()
            for item in menu.actions():
                if clean(item.text()) == clean(text):
                    return item
            raise AssertionError(f"no {text!r} in menu {menu_title!r}: {[a.text() for a in menu.actions()]}")
    raise AssertionError(f"no menu {menu_title!r}")


#: Pollers still waiting for a dialog; the gui conftest cancels them when a test ends, so
#: that one test's expected dialog is never answered in the next test.
PENDING: list[dict] = []


def answer_dialog(button_text: str, then=None, seen: list | None = None) -> None:
    """When the next modal dialog is up, click its button whose text starts with
    ``button_text`` (after calling ``then(dialog)``, e.g. to fill fields); ``seen`` collects
    the dialogs met."""
    state = {"cancelled": False, "tries": 0}
    PENDING.append(state)

    def poll() -> None:
        if state["cancelled"]:
            return
        dialog = QApplication.activeModalWidget()
        if dialog is None:
            state["tries"] += 1
            if state["tries"] < 1500:
                QTimer.singleShot(20, poll)
            return
        state["cancelled"] = True
        if seen is not None:
            seen.append(dialog)
        if then is not None:
            then(dialog)
        for button in dialog.findChildren(QAbstractButton):
            if button.text().replace("&", "").startswith(button_text):
                button.click()
                return
        texts = [b.text() for b in dialog.findChildren(QAbstractButton)]
        dialog.reject()
        raise AssertionError(f"no button {button_text!r} in {type(dialog).__name__}: {texts}")

    QTimer.singleShot(0, poll)


def texts_of(widget: QWidget) -> str:
    """All label text in a widget (for checking what a dialog or banner says)."""
    from PyQt6.QtWidgets import QLabel

    return " ".join(label.text() for label in widget.findChildren(QLabel))
