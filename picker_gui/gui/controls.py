"""The right-hand panel: display settings, particle size, overlays and the labelling mode."""

from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from picker_gui.core.coords import NEGATIVE, PARTICLE


class DisplayControls(QWidget):
    """Emits a signal per setting; the window applies them and saves them to the project."""

    lowpass_changed = pyqtSignal(float)
    contrast_changed = pyqtSignal(float)  # percent clipped at each end
    invert_changed = pyqtSignal(bool)
    diameter_changed = pyqtSignal(float)
    overlay_toggled = pyqtSignal(str, bool)
    mode_changed = pyqtSignal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        display = QGroupBox("Display")
        form = QFormLayout(display)
        self.lowpass = QDoubleSpinBox(decimals=0, minimum=4, maximum=200, singleStep=2, suffix=" Å")
        self.lowpass.setToolTip("Low-pass filter of the displayed image (RELION's default is 20 Å). Labels are not affected.")
        self.lowpass.setKeyboardTracking(False)
        self.lowpass.valueChanged.connect(self.lowpass_changed)
        form.addRow("Low-pass", self.lowpass)
        self.contrast = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=50)
        self.contrast.setToolTip("Contrast: percent of pixels clipped at each end (0 to 5 %)")
        self.contrast.valueChanged.connect(lambda v: self.contrast_changed.emit(v / 10.0))
        form.addRow("Contrast", self.contrast)
        self.invert = QCheckBox("Invert")
        self.invert.setToolTip("Show particles white on black")
        self.invert.toggled.connect(self.invert_changed)
        form.addRow("", self.invert)

        particles = QGroupBox("Particles")
        pform = QFormLayout(particles)
        self.diameter = QDoubleSpinBox(decimals=0, minimum=10, maximum=2000, singleStep=10, suffix=" Å")
        self.diameter.setToolTip("Particle diameter: the size of the rings, and what the picker is trained for")
        self.diameter.setKeyboardTracking(False)
        self.diameter.valueChanged.connect(self.diameter_changed)
        pform.addRow("Diameter", self.diameter)
        self.pixel_label = QLabel("–")
        self.pixel_label.setToolTip("Pixel size of the micrograph (from its header, or the project's setting)")
        pform.addRow("Pixel size", self.pixel_label)

        mode = QGroupBox("Click adds")
        mlayout = QVBoxLayout(mode)
        self.mode_particle = QRadioButton("Particles")
        self.mode_particle.setToolTip("Clicks add particles (green rings)")
        self.mode_negative = QRadioButton("Negatives (not a particle)")
        self.mode_negative.setToolTip("Clicks mark ice, carbon edges and other junk (orange crosses); key N toggles")
        self.mode_particle.setChecked(True)
        self._mode_group = QButtonGroup(self)
        for b in (self.mode_particle, self.mode_negative):
            self._mode_group.addButton(b)
            mlayout.addWidget(b)
        self.mode_particle.toggled.connect(lambda on: self.mode_changed.emit(PARTICLE if on else NEGATIVE))

        overlays = QGroupBox("Show")
        olayout = QVBoxLayout(overlays)
        self.overlay_boxes = {}
        for key, text in (("positive", "Particle labels"), ("negative", "Negative labels"), ("pick", "Picks")):
            box = QCheckBox(text)
            box.setChecked(True)
            box.toggled.connect(lambda on, k=key: self.overlay_toggled.emit(k, on))
            olayout.addWidget(box)
            self.overlay_boxes[key] = box

        self.counts = QLabel()
        self.counts.setWordWrap(True)
        layout = QVBoxLayout(self)
        for w in (display, particles, mode, overlays, self.counts):
            layout.addWidget(w)
        layout.addStretch(1)

    def set_values(self, lowpass_a: float, clip_percent: float, invert: bool, diameter_a: float) -> None:
        """Set without emitting: the window calls this when a project opens."""
        for w, v in ((self.lowpass, lowpass_a), (self.diameter, diameter_a)):
            w.blockSignals(True)
            w.setValue(v)
            w.blockSignals(False)
        self.contrast.blockSignals(True)
        self.contrast.setValue(round(clip_percent * 10))
        self.contrast.blockSignals(False)
        self.invert.blockSignals(True)
        self.invert.setChecked(invert)
        self.invert.blockSignals(False)

    def set_mode(self, kind: str) -> None:
        (self.mode_negative if kind == NEGATIVE else self.mode_particle).setChecked(True)

    @property
    def mode(self) -> str:
        return NEGATIVE if self.mode_negative.isChecked() else PARTICLE
