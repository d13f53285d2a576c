"""Dialogs: the start choice, a new project's particle size and pixel size, a project open
elsewhere, import options."""

from __future__ import annotations

from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from picker_gui.core.project import ProjectLockedError, Target, project_title


class ImportDialog(QDialog):
    """Options for importing coordinates as labels."""

    def __init__(self, path: Path, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Import {path.name}")
        form = QFormLayout(self)
        self.flip = QCheckBox("Flip y (y measured from the other edge)")
        self.scale = QDoubleSpinBox(decimals=4, minimum=0.0001, maximum=1000, value=1.0)
        self.scale.setToolTip("Multiply coordinates, e.g. 4 for picks made on 4x-binned micrographs")
        self.negative = QCheckBox("Import as negatives (not particles)")
        form.addRow(self.flip)
        form.addRow("Scale", self.scale)
        form.addRow(self.negative)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


class StartDialog(QDialog):
    """What to open: a recent project, a folder, or the demo dataset.

    After ``exec()``, ``choice`` is ``("path", Path)``, ``("folder", None)`` (ask with a file
    dialog), ``("demo", None)`` or None (quit).
    """

    def __init__(self, recent: list[Path], problem: str | None = None, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("picker-gui")
        self.setMinimumWidth(560)
        self.choice: tuple[str, Path | None] | None = None
        layout = QVBoxLayout(self)
        if problem:
            error = QLabel(problem)
            error.setObjectName("problem")
            error.setWordWrap(True)
            error.setStyleSheet("background: #7a1f1f; color: white; padding: 6px; font-weight: bold;")
            layout.addWidget(error)
        title = QLabel("<b>Open a project</b>" if recent else "<b>Welcome to picker-gui</b>")
        layout.addWidget(title)
        self.recent = QListWidget()
        for path in recent:
            item = QListWidgetItem(f"{project_title(path)}    —    {path}")
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            self.recent.addItem(item)
        if recent:
            layout.addWidget(QLabel("Recent projects"))
            layout.addWidget(self.recent)
            self.recent.setCurrentRow(0)
            self.recent.itemActivated.connect(lambda _item: self._open_recent())
        else:
            self.recent.hide()
            layout.addWidget(QLabel("Open a folder of micrographs (MRC), or try the built-in demo dataset."))
        row = QHBoxLayout()
        self.open_recent_button = QPushButton("Open project")
        self.open_recent_button.setEnabled(bool(recent))
        self.open_recent_button.clicked.connect(self._open_recent)
        self.folder_button = QPushButton("Open folder…")
        self.folder_button.clicked.connect(lambda: self._done(("folder", None)))
        self.demo_button = QPushButton("Demo dataset")
        self.demo_button.clicked.connect(lambda: self._done(("demo", None)))
        quit_button = QPushButton("Quit")
        quit_button.clicked.connect(self.reject)
        for b in (self.open_recent_button, self.folder_button, self.demo_button):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(quit_button)
        layout.addLayout(row)
        (self.open_recent_button if recent else self.folder_button).setDefault(True)

    def _open_recent(self) -> None:
        item = self.recent.currentItem()
        if item is not None:
            self._done(("path", Path(item.data(Qt.ItemDataRole.UserRole))))

    def _done(self, choice) -> None:
        self.choice = choice
        self.accept()


class NewProjectDialog(QDialog):
    """Particle diameter and pixel size for a folder opened for the first time, as RELION asks
    for them when a job is set up: rings, downsampling and training all follow from them."""

    def __init__(self, target: Target, header_pixel_size: float | None, shape: tuple[int, int] | None,
                 diameter_a: float = 150.0, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.setMinimumWidth(540)
        self.header_pixel_size = header_pixel_size
        form = QFormLayout(self)
        size = f", {shape[1]} × {shape[0]} px" if shape else ""
        intro = QLabel(f"<b>{target.micrograph_folder}</b><br>{target.n_micrographs} micrograph(s){size}. "
                       f"The project (labels, settings) will be kept in<br>{target.project}")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.pixel_size = QDoubleSpinBox(decimals=4, minimum=0.1, maximum=100.0, singleStep=0.01, suffix=" Å/px")
        self.pixel_size.setValue(header_pixel_size or 1.0)
        source = (f"from the header ({header_pixel_size:.4g} Å/px); check it: binned or re-saved files often carry a wrong one"
                  if header_pixel_size else "not in the headers: enter the pixel size of these micrographs")
        self.pixel_note = QLabel(source)
        self.pixel_note.setWordWrap(True)
        if not header_pixel_size:
            self.pixel_note.setStyleSheet("color: #ffb060; font-weight: bold;")
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("", self.pixel_note)
        self.diameter = QDoubleSpinBox(decimals=0, minimum=10, maximum=5000, singleStep=10, suffix=" Å")
        self.diameter.setValue(diameter_a)
        self.diameter.setToolTip("The particle's longest diameter, as RELION asks for it; sets the rings and the picker's scale")
        form.addRow("Particle diameter", self.diameter)
        self.diameter_px = QLabel()
        form.addRow("", self.diameter_px)
        self.pixel_size.valueChanged.connect(self._update)
        self.diameter.valueChanged.connect(self._update)
        self._update()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create project")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.diameter.setFocus()
        self.diameter.selectAll()

    def _update(self) -> None:
        self.diameter_px.setText(f"= {self.diameter.value() / self.pixel_size.value():.0f} px across")

    def settings(self) -> dict:
        """Project settings: the pixel size only when it differs from the header's."""
        px = float(self.pixel_size.value())
        keep_header = self.header_pixel_size is not None and abs(px - self.header_pixel_size) < 1e-4
        return {"diameter_a": float(self.diameter.value()), "pixel_size_a": None if keep_header else px}


def ask_locked(parent, error: ProjectLockedError) -> str | None:
    """A project open in another window: "read-only", "take-over" or None (cancel)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Project already open")
    box.setText(f"This project is open in another picker-gui window, {error.holder.describe()}.")
    box.setInformativeText("Two windows writing one project would overwrite each other's labels. Open it here "
                           "read-only, or take it over (the other window then stops saving and keeps its "
                           "unsaved edits for the user to save elsewhere).")
    read_only = box.addButton("Open read-only", QMessageBox.ButtonRole.AcceptRole)
    take = box.addButton("Take over", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(read_only)
    box.exec()
    clicked = box.clickedButton()
    return "read-only" if clicked is read_only else "take-over" if clicked is take else None


class RelionNamesDialog(QDialog):
    """Before a RELION 4/5 coordinate list is written: the micrographs STAR of the RELION job
    the picks are for, so that rlnMicrographName is the path RELION matches
    (``MotionCorr/job002/Movies/x.mrc``) and the coordinate files resolve from RELION's
    project folder. Left empty, bare micrograph names are written (RELION then finds none)."""

    def __init__(self, keys: list[str], star: str | None = None, parent=None) -> None:
        from PyQt6.QtWidgets import QLineEdit

        super().__init__(parent)
        self.setWindowTitle("Export for RELION")
        self.setMinimumWidth(620)
        self.keys = keys
        self.names: dict[str, str] = {}
        self.project: Path | None = None
        form = QFormLayout(self)
        intro = QLabel("RELION matches picks to micrographs by the full path its Motion correction or CTF job "
                       "wrote, e.g. <i>MotionCorr/job002/Movies/mic_001.mrc</i>. Give that job's micrographs "
                       "STAR (micrographs_ctf.star or corrected_micrographs.star) so the export uses those names "
                       "and paths RELION resolves from its project folder.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.star = QLineEdit(star or "")
        self.star.setPlaceholderText("RELION micrographs STAR (optional)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.star, 1)
        row.addWidget(browse)
        form.addRow("Micrographs STAR", row)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.star.editingFinished.connect(self._check)
        self._check()

    def _browse(self) -> None:
        from PyQt6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "RELION micrographs STAR", self.star.text() or str(Path.home()), "STAR (*.star);;All files (*)")
        if path:
            self.star.setText(path)
            self._check()

    def _check(self) -> None:
        from picker_gui.core.errors import PickerError
        from picker_gui.core.formats import relion_micrograph_names

        text = self.star.text().strip()
        self.names, self.project = {}, None
        if not text:
            self.status.setText("No STAR given: bare micrograph names are written, which RELION will not match "
                                "to its own micrographs.")
            self.status.setStyleSheet("color: #ffb060;")
            return
        try:
            names, self.project = relion_micrograph_names(text)
        except (PickerError, OSError) as exc:
            self.status.setText(f"Cannot use it: {exc}")
            self.status.setStyleSheet("color: #ff7a5a;")
            return
        keys = set(self.keys)
        self.names = {k: v for k, v in names.items() if k in keys}
        missing = len(keys - set(self.names))
        where = f"RELION project folder: {self.project}" if self.project else "RELION's project folder was not found (the listed micrographs do not exist under any parent folder); coordinate paths will be absolute"
        self.status.setText(f"{len(self.names)} of {len(self.keys)} labelled micrograph(s) matched"
                            + (f"; {missing} not in that STAR keep their bare names" if missing else "") + f".\n{where}")
        self.status.setStyleSheet("" if not missing else "color: #ffb060;")
