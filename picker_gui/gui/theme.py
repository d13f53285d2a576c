"""A dark, neutral theme: grey micrographs read best on a dark grey surround."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

BACKGROUND = "#202124"
PANEL = "#2a2b2e"
TEXT = "#e3e3e3"
ACCENT = "#4ea1ff"
#: Overlay colours: positives, negatives, picks (colour-blind-safe pair for the first two).
POSITIVE_COLOR = (80, 220, 120)
NEGATIVE_COLOR = (255, 110, 60)
PICK_COLOR = (90, 170, 255)


CHECK_ICON = (Path(__file__).resolve().parents[2] / "resources" / "icons" / "check.svg").as_posix()


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: PANEL,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BACKGROUND,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#000000",
        QPalette.ColorRole.PlaceholderText: "#8a8a8a",
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#777777"))
    app.setPalette(pal)
    app.setStyleSheet(
        "QToolTip { color: #e3e3e3; background: #2a2b2e; border: 1px solid #555; }"
        "QDockWidget::title { padding: 4px; background: #303134; }"
        "QStatusBar { background: #303134; }"
        # Fusion draws radio buttons and check boxes dark on dark: give them a visible ring and fill.
        "QRadioButton::indicator { width: 12px; height: 12px; border-radius: 8px; border: 2px solid #b0b4ba; background: #202124; }"
        "QRadioButton::indicator:checked { border: 2px solid #4ea1ff; background: qradialgradient(cx:0.5, cy:0.5, radius:0.5,"
        " fx:0.5, fy:0.5, stop:0 #4ea1ff, stop:0.55 #4ea1ff, stop:0.65 #202124, stop:1 #202124); }"
        "QCheckBox::indicator, QTableView::indicator { width: 12px; height: 12px; border-radius: 2px; border: 2px solid #b0b4ba; background: #202124; }"
        "QCheckBox::indicator:checked, QTableView::indicator:checked { border: 2px solid #4ea1ff; background: #4ea1ff;"
        f" image: url({CHECK_ICON}); }}"
        "QRadioButton::indicator:hover, QCheckBox::indicator:hover { border-color: #ffffff; }"
    )
