"""The list of micrographs: name, label and pick counts, skip mark, errors; sortable, filterable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QAbstractItemView, QHeaderView, QLineEdit, QTableView, QVBoxLayout, QWidget

from picker_gui.core.coords import micrograph_key


@dataclass
class MicrographEntry:
    path: Path
    labels: int = 0
    negatives: int = 0
    picks: int | None = None
    skipped: bool = False
    error: str | None = None

    @property
    def key(self) -> str:
        return micrograph_key(self.path)


class MicrographTableModel(QAbstractTableModel):
    COLUMNS = ("Micrograph", "Labels", "Picks", "Skip")
    skip_toggled = pyqtSignal(str, bool)  # key, skipped

    def __init__(self, entries: list[MicrographEntry] | None = None) -> None:
        super().__init__()
        self.entries: list[MicrographEntry] = entries or []
        self._row_of: dict[str, int] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._row_of = {e.key: i for i, e in enumerate(self.entries)}

    def set_entries(self, entries: list[MicrographEntry]) -> None:
        self.beginResetModel()
        self.entries = entries
        self._reindex()
        self.endResetModel()

    def row_of(self, key: str) -> int | None:
        return self._row_of.get(micrograph_key(key))

    def entry(self, key: str) -> MicrographEntry | None:
        row = self.row_of(key)
        return None if row is None else self.entries[row]

    #: Which columns show each field (the name column also shows errors and the skip colour).
    _FIELD_COLUMNS = {"labels": (1,), "negatives": (1,), "picks": (2,), "skipped": (0, 3), "error": (0,)}

    def update(self, key: str, **values) -> None:
        self.update_many({key: values})

    def update_many(self, values_by_key: dict[str, dict]) -> None:
        """Set fields of many rows and tell the views once, naming only the columns that
        changed: a dataChanged that spans the sort column makes the sorting proxy re-sort,
        which for a click on one of 400 micrographs cost a quarter of a second."""
        rows, columns = [], set()
        for key, values in values_by_key.items():
            row = self.row_of(key)
            if row is None:
                continue
            for k, v in values.items():
                setattr(self.entries[row], k, v)
                columns.update(self._FIELD_COLUMNS.get(k, range(len(self.COLUMNS))))
            rows.append(row)
        if rows and columns:
            self.dataChanged.emit(self.index(min(rows), min(columns)), self.index(max(rows), max(columns)))

    # -- Qt model API --------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        e = self.entries[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return ("⚠ " if e.error else "") + e.path.name
            if col == 1:
                return e.labels
            if col == 2:
                return "" if e.picks is None else e.picks
            return None
        if role == Qt.ItemDataRole.UserRole:  # sort key
            return (e.path.name, e.labels, -1 if e.picks is None else e.picks, e.skipped)[col]
        if role == Qt.ItemDataRole.CheckStateRole and col == 3:
            return Qt.CheckState.Checked if e.skipped else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.ToolTipRole:
            if e.error:
                return e.error
            return f"{e.path}\n{e.labels} particle label(s), {e.negatives} negative(s)" + (" · skipped" if e.skipped else "")
        if role == Qt.ItemDataRole.ForegroundRole:
            if e.error:
                return QColor(255, 120, 90)
            if e.skipped:
                return QColor(130, 130, 130)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 2):
            return Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        return None

    def flags(self, index):
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return base | Qt.ItemFlag.ItemIsUserCheckable if index.column() == 3 else base

    def setData(self, index, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        if index.column() == 3 and role == Qt.ItemDataRole.CheckStateRole:
            e = self.entries[index.row()]
            e.skipped = Qt.CheckState(value) == Qt.CheckState.Checked
            self.dataChanged.emit(index.siblingAtColumn(0), index)
            self.skip_toggled.emit(e.key, e.skipped)
            return True
        return False


class MicrographList(QWidget):
    """Filter box over a sortable table; emits the key of the micrograph chosen."""

    current_changed = pyqtSignal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model = MicrographTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.proxy.setFilterKeyColumn(0)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter = QLineEdit(placeholderText="Filter micrographs…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # EPU/Falcon names share a long prefix (FoilHole_..._Data_...): keep both ends visible.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.selectionModel().currentRowChanged.connect(self._on_row_changed)
        # Arrow keys in the table move the selection; the window's Left/Right shortcuts also work.
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)

    def _on_row_changed(self, current, _previous) -> None:
        if current.isValid():
            src = self.proxy.mapToSource(current)
            self.current_changed.emit(self.model.entries[src.row()].key)

    def current_key(self) -> str | None:
        idx = self.table.currentIndex()
        if not idx.isValid():
            return None
        return self.model.entries[self.proxy.mapToSource(idx).row()].key

    def select(self, key: str) -> None:
        row = self.model.row_of(key)
        if row is None:
            return
        idx = self.proxy.mapFromSource(self.model.index(row, 0))
        if idx.isValid():
            self.table.setCurrentIndex(idx)
            self.table.scrollTo(idx)

    def step(self, delta: int) -> str | None:
        """Select the next (+1) or previous (-1) visible micrograph; returns its key."""
        n = self.proxy.rowCount()
        if n == 0:
            return None
        cur = self.table.currentIndex()
        row = 0 if not cur.isValid() else min(max(cur.row() + delta, 0), n - 1)
        idx = self.proxy.index(row, 0)
        self.table.setCurrentIndex(idx)
        self.table.scrollTo(idx)
        return self.current_key()

    def neighbours(self, key: str, span: int = 1) -> list[str]:
        """Keys of the visible micrographs after and before ``key`` (for prefetching)."""
        row = self.model.row_of(key)
        if row is None:
            return []
        prow = self.proxy.mapFromSource(self.model.index(row, 0)).row()
        out = []
        for d in list(range(1, span + 1)) + [-d for d in range(1, span + 1)]:
            r = prow + d
            if 0 <= r < self.proxy.rowCount():
                out.append(self.model.entries[self.proxy.mapToSource(self.proxy.index(r, 0)).row()].key)
        return out
