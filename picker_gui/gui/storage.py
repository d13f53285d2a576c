"""Keeping the project on disk while the user works: autosave off the GUI thread, the lock
heartbeat, and what happens when a save fails.

- Every label edit bumps a revision. At most :data:`AUTOSAVE_MS` after the first unsaved
  edit (a throttle: a steady stream of clicks still saves), the labels are copied on the GUI
  thread (cheap: arrays) and written on a worker thread, so a project of 300,000 labels
  never freezes the window.
- A save that fails (read-only folder, full disk) keeps every edit in memory, says so in the
  window's banner (``failed``), and is retried every :data:`RETRY_MS`; the user may also
  save the project elsewhere.
- The lock is refreshed every :data:`~picker_gui.core.project.LOCK_REFRESH_S` seconds; when
  another window has taken the project over, this one stops writing (``lost``), keeps its
  edits and offers to save them elsewhere.
"""

from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, QTimer, pyqtSignal

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.labels import LabelStore
from picker_gui.core.project import LOCK_REFRESH_S, Project

AUTOSAVE_MS = 500
RETRY_MS = 5000

#: States the window shows.
SAVED, SAVING, FAILED, LOST, READ_ONLY = "saved", "saving", "failed", "lost", "read-only"


class _SaveSignals(QObject):
    done = pyqtSignal(int, object)  # revision, conflict note or None
    failed = pyqtSignal(int, object)  # revision, message


def _save(project: Project, labels: LabelStore | CoordinateTable) -> tuple[str, object]:
    """("done", conflict note or None) or ("failed", message): never raises. A frozen
    LabelStore becomes a table here, on the saving thread."""
    try:
        table = labels.to_table() if isinstance(labels, LabelStore) else labels
        return "done", project.save_labels(table)
    except OSError as exc:
        return "failed", f"could not write {exc.filename or project.labels_path}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a save must report, never die silently
        return "failed", f"could not write {project.labels_path}: {type(exc).__name__}: {exc}"


class _SaveJob(QRunnable):
    """One background save; its outcome is also kept on the job, so that a flush that waited
    for it can use it before the queued signal arrives."""

    def __init__(self, project: Project, labels, revision: int, signals: _SaveSignals) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.project, self.table, self.revision, self.signals = project, labels, revision, signals
        self.outcome: tuple[str, object] | None = None

    def run(self) -> None:
        self.outcome = _save(self.project, self.table)
        self.table = None  # free the copy
        try:
            getattr(self.signals, self.outcome[0]).emit(self.revision, self.outcome[1])
        except RuntimeError:
            pass  # the window is gone


class ProjectSaver(QObject):
    """Saves one project's labels for the window; emits ``state_changed(state, message)``.

    Parameters
    ----------
    project
        The open project.
    snapshot
        Returns the labels to write: a table, or a frozen LabelStore (cheap to take on the
        GUI thread; made into a table on the saving thread).
    read_only
        The project is open elsewhere and this window only looks.
    """

    state_changed = pyqtSignal(str, str)
    conflict = pyqtSignal(str)  # a message: the file had been changed by someone else

    def __init__(self, project: Project, snapshot: Callable[[], CoordinateTable | LabelStore], read_only: bool = False, parent=None) -> None:
        super().__init__(parent)
        self.project = project
        self._snapshot = snapshot
        self.revision = 0  # bumped by every edit
        self.saved_revision = 0
        self.state = READ_ONLY if read_only else SAVED
        self.message = ""
        self._job: _SaveJob | None = None  # the save running now
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _SaveSignals()
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)
        self._timer = QTimer(self, singleShot=True, interval=AUTOSAVE_MS)
        self._timer.timeout.connect(self.save_now)
        self._retry = QTimer(self, singleShot=True, interval=RETRY_MS)
        self._retry.timeout.connect(self.save_now)
        self._heartbeat = QTimer(self, interval=int(LOCK_REFRESH_S * 1000))
        self._heartbeat.timeout.connect(self.check_lock)
        if not read_only:
            self._heartbeat.start()

    # -- what the window asks ---------------------------------------------------------------
    @property
    def unsaved(self) -> int:
        """Edits not yet on disk (0 when everything is saved)."""
        return self.revision - self.saved_revision

    @property
    def writable(self) -> bool:
        return self.state not in (LOST, READ_ONLY)

    def edited(self) -> None:
        """An edit happened: save soon (throttled)."""
        self.revision += 1
        if self.writable and not self._timer.isActive() and not self._retry.isActive():
            self._timer.start()

    def save_now(self) -> None:
        """Start writing the current labels in the background (unless a write is running:
        the next one starts when it ends)."""
        self._timer.stop()
        self._retry.stop()
        if not self.writable or self._job is not None or not self.unsaved:
            return
        if not self._still_ours(refresh=False):
            return
        self._job = _SaveJob(self.project, self._snapshot(), self.revision, self._signals)
        if self.state != FAILED:
            self._set(SAVING, "")
        self._pool.start(self._job)

    def flush(self) -> bool:
        """Write everything now, on this thread (closing, switching project). True when
        nothing is left unsaved."""
        self._timer.stop()
        self._retry.stop()
        self._pool.waitForDone()
        job = self._job
        if job is not None and job.outcome is not None:  # finished; its signal is still queued
            getattr(self, f"_on_{job.outcome[0]}")(job.revision, job.outcome[1])
        if not self.unsaved:
            return True
        if not self.writable or not self._still_ours():
            return False
        revision = self.revision
        self._job = _SaveJob(self.project, None, revision, self._signals)
        self._job.outcome = _save(self.project, self._snapshot())
        getattr(self, f"_on_{self._job.outcome[0]}")(revision, self._job.outcome[1], retry=False)
        return not self.unsaved

    def check_lock(self) -> bool:
        """The heartbeat: refresh the lock, or notice that another window took the project."""
        if not self.writable:
            return False
        return self._still_ours()

    def release(self) -> None:
        self._heartbeat.stop()
        self._timer.stop()
        self._retry.stop()
        self._pool.waitForDone()
        if self.writable:
            self.project.lock.release()

    # -- internals ------------------------------------------------------------------------------
    def _still_ours(self, refresh: bool = True) -> bool:
        """Whether this window still holds the project; ``refresh`` also rewrites the lock
        (the heartbeat does, every few seconds; a save only reads it)."""
        try:
            ours = self.project.lock.refresh() if refresh else self.project.lock.owned() or self.project.lock.holder() is None
        except OSError:
            ours = True  # the folder cannot be written: the save itself will say so
        if not ours:
            holder = self.project.lock.holder()
            who = holder.describe() if holder else "by another window"
            self._heartbeat.stop()
            self._set(LOST, f"This project was taken over {who}. This window no longer writes to it; "
                            f"{self.unsaved} unsaved edit(s) are kept here: save them elsewhere, or close.")
        return ours

    def _finish(self, revision: int) -> bool:
        """Clear the running job if ``revision`` is its outcome; False for a stale signal
        (a flush already handled that job)."""
        if self._job is None or self._job.revision != revision:
            return False
        self._job = None
        return True

    def _on_done(self, revision: int, note: object, retry: bool = True) -> None:
        if not self._finish(revision):
            return
        self.saved_revision = max(self.saved_revision, revision)
        if note:
            self.conflict.emit(str(note))
        if self.state in (SAVING, FAILED):
            self._set(SAVED, "")
        if self.unsaved and self.writable and not self._timer.isActive():
            self._timer.start()

    def _on_failed(self, revision: int, message: object, retry: bool = True) -> None:
        if not self._finish(revision):
            return
        text = (f"Labels not saved: {message}. Your {self.unsaved} unsaved edit(s) are kept in this window "
                f"and saving is retried every {RETRY_MS // 1000} s; or save the project elsewhere.")
        self._set(FAILED, text)
        if retry and self.writable:
            self._retry.start()

    def _set(self, state: str, message: str) -> None:
        changed = (state, message) != (self.state, self.message)
        self.state, self.message = state, message
        if changed:
            self.state_changed.emit(state, message)
