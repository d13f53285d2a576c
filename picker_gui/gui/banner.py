"""A banner across the top of the window for what must not be missed: labels that could
not be saved, a project opened read-only, a project taken over by another window.

The status bar is for passing news; this is for a state the user has to act on, so it stays
until the state ends and carries the buttons that end it.
"""

from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton

_STYLES = {
    "error": "background: #7a1f1f; color: #ffffff;",
    "warning": "background: #6b4e12; color: #ffffff;",
    "info": "background: #1f3f66; color: #ffffff;",
}


class Banner(QFrame):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 10, 6)
        self._layout.addWidget(self.label, 1)
        self.buttons: dict[str, QPushButton] = {}
        self.level = ""
        self.hide()

    def show_message(self, level: str, text: str, actions: list[tuple[str, Callable[[], None]]] = ()) -> None:
        """Show ``text`` with a button per ``(label, callback)``; ``level`` is error, warning or info."""
        for button in self.buttons.values():
            self._layout.removeWidget(button)
            button.deleteLater()
        self.buttons = {}
        for label, callback in actions:
            button = QPushButton(label)
            button.setStyleSheet("background: #f2f2f2; color: #111111; padding: 3px 10px;")
            button.clicked.connect(lambda _checked=False, cb=callback: cb())
            self._layout.addWidget(button)
            self.buttons[label] = button
        self.level = level
        self.setStyleSheet(f"QFrame#banner {{ {_STYLES[level]} }} QLabel {{ {_STYLES[level]} font-weight: bold; }}")
        self.label.setText(text)
        self.show()

    def clear(self) -> None:
        self.level = ""
        self.label.clear()
        self.hide()
