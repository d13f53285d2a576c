"""The export dialog: which picks go where, in which format, with a live count.

The dialog only gathers plain values; the caller writes the files with the same core function
the command line uses, so the window and ``picker-gui export`` give the same bytes::

    dialog = ExportDialog(state.picks, state.threshold, state.current, settings.skipped,
                          diameter_px, default_folder, settings.relion_micrographs, parent=window)
    if dialog.exec():
        try:
            summary = export_picks(state.picks, dialog.request(), inputs=project_inputs(project))
        except (PickerError, OSError) as exc:
            ...  # a message box
        settings.relion_micrographs = dialog.relion_star_path() or settings.relion_micrographs
        window.statusBar().showMessage(summary.describe())
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from picker_gui.core.coords import micrograph_key
from picker_gui.core.exporting import FORMAT_DESCRIPTIONS, PER_MICROGRAPH, ExportRequest, choose_micrographs
from picker_gui.core.formats import WRITE_FORMATS
from picker_gui.core.picks import PickStore

#: Names in the format list, in the order shown.
FORMAT_TITLES: dict[str, str] = {
    "relion-list": "RELION 4/5 coordinate list",
    "relion": "RELION 3 per-micrograph STAR",
    "star-particles": "Particles STAR (cryoSPARC, RELION)",
    "box": "EMAN2 .box",
    "topaz": "Topaz text",
    "csv": "CSV",
    "labels": "picker-gui labels",
}

#: Where an export goes by default, inside the caller's default folder.
DEFAULT_NAMES: dict[str, str] = {
    "relion-list": "picks_relion4/autopick.star",
    "relion": "picks_relion3",
    "star-particles": "picks_particles.star",
    "box": "picks_box",
    "topaz": "picks_topaz.txt",
    "csv": "picks.csv",
    "labels": "picks_labels.star",
}

_FILE_FILTERS: dict[str, str] = {
    "relion-list": "STAR (*.star)",
    "star-particles": "STAR (*.star)",
    "labels": "STAR (*.star)",
    "topaz": "Text (*.txt *.tsv)",
    "csv": "CSV (*.csv)",
}

_WARN = "color: #ffb060;"
_ERROR = "color: #ff7a5a; font-weight: bold;"
_MUTED = "color: #a0a0a0;"


class ExportDialog(QDialog):
    """Export the picks shown in the window.

    Parameters
    ----------
    store : PickStore
        The window's picks (candidates and least distance); only read, for the counts.
    threshold : float
        The window's threshold (prefilled, editable).
    current_key : str or None
        The micrograph shown, for "only this micrograph".
    skipped : micrograph keys marked skipped
    diameter_px : float or None
        Particle diameter in original pixels; the .box size defaults to 1.5 times it.
    default_folder : path
        Where the destination goes by default.
    relion_micrographs : str, optional
        The RELION micrographs STAR remembered by the project (relion-list, star-particles).
    fmt : str
        The format selected at first.
    """

    def __init__(self, store: PickStore, threshold: float, current_key: str | None, skipped: Iterable[str],
                 diameter_px: float | None, default_folder, relion_micrographs: str | None = None, parent=None,
                 *, fmt: str = "star-particles") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export picks")
        self.setMinimumWidth(640)
        self.store = store
        self.skipped = tuple(micrograph_key(s) for s in skipped)
        self.current_key = micrograph_key(current_key) if current_key else None
        self.default_folder = Path(default_folder)
        self.picked = [k for k in store.keys() if len(store.candidates(k))]
        self.relion_names: dict[str, str] | None = None
        self.relion_project: Path | None = None
        self._auto_destination = True

        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        # -- format ---------------------------------------------------------------------
        self.format = QComboBox()
        for name in FORMAT_TITLES:
            if name in WRITE_FORMATS:
                self.format.addItem(FORMAT_TITLES[name], name)
                self.format.setItemData(self.format.count() - 1, FORMAT_DESCRIPTIONS[name],
                                        _tooltip_role())
        self.format_help = QLabel()
        self.format_help.setWordWrap(True)
        self.format_help.setStyleSheet(_MUTED)
        form.addRow("Format", self.format)
        form.addRow("", self.format_help)

        # -- destination ----------------------------------------------------------------
        self.destination = QLineEdit()
        self.destination.textEdited.connect(self._destination_edited)
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.destination, 1)
        row.addWidget(self.browse)
        form.addRow("Destination", row)
        self.destination_help = QLabel()
        self.destination_help.setWordWrap(True)
        self.destination_help.setStyleSheet(_MUTED)
        form.addRow("", self.destination_help)

        # -- threshold ------------------------------------------------------------------
        self.threshold = QDoubleSpinBox(decimals=3, minimum=-1e4, maximum=1e4, singleStep=0.1)
        self.threshold.setValue(float(threshold))
        self.threshold.setToolTip("Picks scoring at least this are exported (the window's threshold when the "
                                  "dialog opened)")
        form.addRow("Threshold", self.threshold)
        distance = store.min_distance_px
        apart = (f"Picks at least {distance:.0f} px apart, as the window shows them" if distance > 0
                 else "Every candidate above the threshold, as the window shows them")
        note = QLabel(apart)
        note.setStyleSheet(_MUTED)
        form.addRow("", note)

        # -- micrographs ----------------------------------------------------------------
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        self.all_micrographs = QRadioButton(f"All picked micrographs ({len(self.picked):,})")
        this = self.current_key if self.current_key else "none shown"
        self.this_micrograph = QRadioButton(f"Only this micrograph ({this})")
        self.this_micrograph.setEnabled(self.current_key is not None and self.current_key in self.picked)
        if self.current_key is not None and not self.this_micrograph.isEnabled():
            self.this_micrograph.setToolTip("This micrograph has not been picked")
        self._which = QButtonGroup(self)
        self._which.addButton(self.all_micrographs)
        self._which.addButton(self.this_micrograph)
        self.all_micrographs.setChecked(True)
        n_skipped = len(set(self.skipped) & set(self.picked))
        self.leave_out_skipped = QCheckBox(f"Leave out skipped micrographs ({n_skipped:,})")
        self.leave_out_skipped.setChecked(True)
        for w in (self.all_micrographs, self.this_micrograph, self.leave_out_skipped):
            column.addWidget(w)
        form.addRow("Micrographs", box)

        # -- box size -------------------------------------------------------------------
        self.box_size = QDoubleSpinBox(decimals=0, minimum=2, maximum=20000, singleStep=2, suffix=" px")
        self.box_size.setValue(default_box_size(diameter_px))
        self.box_size.setToolTip("EMAN boxes are stored by their corner: x - box/2, y - box/2. Default: 1.5 times "
                                 "the particle diameter, even")
        form.addRow("Box size", self.box_size)

        # -- RELION micrographs STAR ----------------------------------------------------
        self.relion_star = QLineEdit(relion_micrographs or "")
        self.relion_star.setPlaceholderText("RELION micrographs STAR, e.g. CtfFind/job003/micrographs_ctf.star")
        self.relion_star.editingFinished.connect(self._check_relion)
        relion_browse = QPushButton("Browse…")
        relion_browse.clicked.connect(self._browse_relion)
        self._relion_row = QWidget()
        row = QHBoxLayout(self._relion_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.relion_star, 1)
        row.addWidget(relion_browse)
        form.addRow("RELION micrographs", self._relion_row)
        self.relion_status = QLabel()
        self.relion_status.setWordWrap(True)
        form.addRow("", self.relion_status)

        # -- preview, problems, buttons -------------------------------------------------
        self.preview = QLabel()
        self.preview.setObjectName("preview")
        self.preview.setWordWrap(True)
        self.preview.setContentsMargins(0, 6, 0, 0)
        form.addRow(self.preview)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(_ERROR)
        self.problem.hide()
        form.addRow(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.export_button.setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self._form = form

        self.format.currentIndexChanged.connect(self._format_changed)
        self.threshold.valueChanged.connect(self._update_preview)
        self.all_micrographs.toggled.connect(self._update_preview)
        self.leave_out_skipped.toggled.connect(self._update_preview)
        self.destination.textChanged.connect(self._update_preview)
        index = self.format.findData(fmt)
        self.format.setCurrentIndex(index if index >= 0 else 0)
        self._format_changed()
        self._check_relion()

    # -- values ---------------------------------------------------------------------------
    def fmt(self) -> str:
        return str(self.format.currentData())

    def micrographs(self) -> tuple[str, ...] | None:
        """None for every picked micrograph, else the one shown."""
        if self.this_micrograph.isChecked() and self.current_key is not None:
            return (self.current_key,)
        return None

    def relion_star_path(self) -> str | None:
        """The RELION micrographs STAR given (for the caller to remember in the project)."""
        text = self.relion_star.text().strip()
        return text or None

    def request(self) -> ExportRequest:
        """What to export, for :func:`~picker_gui.core.exporting.export_picks`."""
        fmt = self.fmt()
        naming: dict = {}
        if fmt in ("relion-list", "star-particles") and self.relion_names is not None:
            naming["micrograph_names"] = self.relion_names
            if fmt == "relion-list" and self.relion_project is not None:
                naming["relion_project"] = self.relion_project
        return ExportRequest(
            path=Path(self.destination.text().strip()).expanduser(),
            fmt=fmt,
            threshold=float(self.threshold.value()),
            micrographs=self.micrographs(),
            exclude_skipped=self.leave_out_skipped.isChecked(),
            skipped=self.skipped,
            box_size=float(self.box_size.value()) if fmt == "box" else None,
            **naming,
        )

    # -- reactions --------------------------------------------------------------------------
    def _format_changed(self, *_args) -> None:
        fmt = self.fmt()
        self.format_help.setText(FORMAT_DESCRIPTIONS.get(fmt, ""))
        self._form.setRowVisible(self.box_size, fmt == "box")
        relion = fmt in ("relion-list", "star-particles")
        self._form.setRowVisible(self._relion_row, relion)
        self._form.setRowVisible(self.relion_status, relion)
        if self._auto_destination:
            self.destination.setText(str(self.default_folder / DEFAULT_NAMES[fmt]))
        if fmt in PER_MICROGRAPH:
            self.destination_help.setText("A folder: one file per micrograph, an empty one where there are no picks")
        elif fmt == "relion-list":
            self.destination_help.setText("The list file; the per-micrograph files go to coordinates/ beside it")
        else:
            self.destination_help.setText("One file")
        self._update_preview()
        if self.isVisible():  # rows came or went: fit the height, keep the width
            QTimer.singleShot(0, self._fit_height)

    def _fit_height(self) -> None:
        layout = self.layout()
        width = self.width()
        height = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else layout.totalSizeHint().height()
        self.resize(width, max(height, self.minimumSizeHint().height()))

    def _destination_edited(self, _text: str) -> None:
        self._auto_destination = False

    def _browse(self) -> None:
        fmt = self.fmt()
        start = self.destination.text().strip() or str(self.default_folder)
        if fmt in PER_MICROGRAPH:
            path = QFileDialog.getExistingDirectory(self, "Folder for the coordinate files", start)
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export picks as", start,
                                                  f"{_FILE_FILTERS.get(fmt, 'All files (*)')};;All files (*)")
        if path:
            self.destination.setText(path)
            self._auto_destination = False

    def _browse_relion(self) -> None:
        start = self.relion_star.text().strip() or str(self.default_folder)
        path, _ = QFileDialog.getOpenFileName(self, "RELION micrographs STAR", start, "STAR (*.star);;All files (*)")
        if path:
            self.relion_star.setText(path)
            self._check_relion()

    def _check_relion(self) -> None:
        """Read the RELION micrographs STAR (as RelionNamesDialog does) and say what matched."""
        from picker_gui.core.errors import PickerError
        from picker_gui.core.formats import relion_micrograph_names

        text = self.relion_star.text().strip()
        self.relion_names, self.relion_project = None, None
        if not text:
            self.relion_status.setText("Optional; without it RELION 4/5 will not match the bare micrograph names")
            self.relion_status.setStyleSheet(_WARN if self.fmt() == "relion-list" else _MUTED)
            return
        try:
            names, project = relion_micrograph_names(text)
        except (PickerError, OSError) as exc:
            self.relion_status.setText(f"Cannot use it: {exc}")
            self.relion_status.setStyleSheet(_ERROR)
            return
        self.relion_names, self.relion_project = names, project
        matched = sum(1 for k in self.picked if k in names)
        missing = len(self.picked) - matched
        where = (f"RELION project folder: {project}" if project else
                 "RELION's project folder was not found; coordinate paths will be absolute")
        self.relion_status.setText(f"{matched:,} of {len(self.picked):,} picked micrographs matched"
                                   + (f"; {missing:,} keep their bare names" if missing else "") + f". {where}")
        self.relion_status.setStyleSheet(_WARN if missing else _MUTED)

    # -- the live count ---------------------------------------------------------------------
    def counts(self) -> tuple[int, int, int, int]:
        """(particles, micrographs with picks, chosen micrographs without picks, skipped left
        out) at the threshold and choice shown: one binary search per micrograph."""
        choice = choose_micrographs(self.picked, self.micrographs(), self.skipped, self.leave_out_skipped.isChecked())
        t = float(self.threshold.value())
        counts = [self.store.count(k, t) for k in choice.chosen]
        return sum(counts), sum(1 for c in counts if c), sum(1 for c in counts if not c), len(choice.skipped)

    def _update_preview(self, *_args) -> None:
        particles, with_picks, without, left_out = self.counts()
        fmt = self.fmt()
        if particles:
            text = f"<b>{particles:,} particle{'s' if particles != 1 else ''} on {with_picks:,} " \
                   f"micrograph{'s' if with_picks != 1 else ''}</b>"
            extra = []
            if without:
                what = "empty files" if fmt in PER_MICROGRAPH else "not listed" if fmt == "relion-list" else "no rows"
                extra.append(f"{without:,} without picks ({what})")
            if left_out:
                extra.append(f"{left_out:,} skipped left out")
            self.preview.setText(text + (" · " + " · ".join(extra) if extra else ""))
        elif self.this_micrograph.isChecked() and left_out:
            self.preview.setText("<b>Nothing to export</b>: this micrograph is marked skipped; untick "
                                 "“Leave out skipped micrographs” to export it")
        else:
            self.preview.setText("<b>Nothing to export</b>: no pick at or above this threshold")
        self.problem.hide()
        self.export_button.setEnabled(particles > 0 and bool(self.destination.text().strip()))

    # -- checks before closing ----------------------------------------------------------------
    def destination_problem(self) -> str | None:
        """What is wrong with the destination for the format, or None."""
        text = self.destination.text().strip()
        if not text:
            return "Choose a destination"
        path, fmt = Path(text).expanduser(), self.fmt()
        if fmt in PER_MICROGRAPH:
            single = path.suffix.lower() == PER_MICROGRAPH[fmt] and not path.is_dir()
            if single and self.micrographs() is None and len(self.picked) > 1:
                return (f"A {PER_MICROGRAPH[fmt]} file holds one micrograph; choose a folder, or export only this "
                        f"micrograph")
            if not single and path.exists() and not path.is_dir():
                return f"{path} is a file; this format writes one file per micrograph into a folder"
        elif fmt != "relion-list" and path.is_dir():
            return f"{path} is a folder; this format writes one file: give its name"
        return None

    def accept(self) -> None:
        problem = self.destination_problem()
        if problem:
            self.problem.setText(problem)
            self.problem.show()
            return
        super().accept()


def default_box_size(diameter_px: float | None) -> float:
    """1.5 times the particle diameter, rounded to an even number of pixels (EMAN and RELION
    prefer even boxes); 256 when the diameter is not known."""
    if not diameter_px or not diameter_px > 0:
        return 256.0
    return float(max(2, 2 * round(0.75 * float(diameter_px))))


def _tooltip_role():
    from PyQt6.QtCore import Qt

    return Qt.ItemDataRole.ToolTipRole


__all__ = ["ExportDialog", "default_box_size"]
