"""Undo commands for label edits; each wraps one LabelStore call and its inverse."""

from __future__ import annotations

from PyQt6.QtGui import QUndoCommand

from picker_gui.core.coords import NEGATIVE, CoordinateTable
from picker_gui.core.labels import LabelStore


def _noun(kind: str) -> str:
    return "negative" if kind == NEGATIVE else "particle"


class AddLabel(QUndoCommand):
    def __init__(self, store: LabelStore, micrograph: str, x: float, y: float, kind: str) -> None:
        super().__init__(f"Add {_noun(kind)}")
        self.store, self.mic, self.x, self.y, self.kind = store, micrograph, x, y, kind
        self.index: int | None = None

    def redo(self) -> None:
        self.index = self.store.add(self.mic, self.x, self.y, self.kind, index=self.index)

    def undo(self) -> None:
        self.store.remove(self.mic, self.kind, self.index)


class RemoveLabel(QUndoCommand):
    def __init__(self, store: LabelStore, micrograph: str, kind: str, index: int) -> None:
        super().__init__(f"Remove {_noun(kind)}")
        self.store, self.mic, self.kind, self.index = store, micrograph, kind, index
        self.position: tuple[float, float] | None = None

    def redo(self) -> None:
        self.position = self.store.remove(self.mic, self.kind, self.index)

    def undo(self) -> None:
        self.store.add(self.mic, *self.position, self.kind, index=self.index)


class MoveLabel(QUndoCommand):
    """Pushed when a drag ends; the store already holds the new position then."""

    def __init__(self, store: LabelStore, micrograph: str, kind: str, index: int, old: tuple[float, float], new: tuple[float, float]) -> None:
        super().__init__(f"Move {_noun(kind)}")
        self.store, self.mic, self.kind, self.index, self.old, self.new = store, micrograph, kind, index, old, new

    def redo(self) -> None:
        self.store.move(self.mic, self.kind, self.index, *self.new)

    def undo(self) -> None:
        self.store.move(self.mic, self.kind, self.index, *self.old)


class ReplaceLabels(QUndoCommand):
    """Every label at once (an import)."""

    def __init__(self, store: LabelStore, before: CoordinateTable, after: CoordinateTable, text: str) -> None:
        super().__init__(text)
        self.store, self.before, self.after = store, before, after

    def redo(self) -> None:
        self.store.replace(self.after)

    def undo(self) -> None:
        self.store.replace(self.before)
