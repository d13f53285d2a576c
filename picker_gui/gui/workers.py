"""Work off the GUI thread.

- :class:`DisplayLoader`: reads micrographs and makes display images on a thread pool,
  keeps the recent ones in memory (so switching back is instant) and prefetches the
  neighbours of the current one. Results and errors come back as signals on the GUI thread.
- :class:`GeneratorWorker`: runs a core job (a generator of progress reports: training,
  picking) on its own QThread, forwards each yielded report, and stops cooperatively through
  a ``threading.Event`` set by a direct call (a queued "stop" slot would never run while the
  worker's thread is busy; see STYLE.md). The job checks the event between steps.
- :class:`JobRunner`: the window's one place for jobs: starts them by name (one at a time
  per name), stops them, and on quit stops and waits for every one, so that no thread
  outlives the window.
"""

from __future__ import annotations

import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from PyQt6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, pyqtSignal, pyqtSlot

from picker_gui.core.errors import PickerError
from picker_gui.core.mrc_io import read_micrograph
from picker_gui.core.preprocess import DisplayImage, display_image


@dataclass(frozen=True)
class DisplayRequest:
    path: Path
    pixel_size_a: float | None
    lowpass_a: float | None
    percentiles: tuple[float, float]

    @property
    def key(self) -> tuple:
        return (str(self.path), self.pixel_size_a, self.lowpass_a, self.percentiles)


@dataclass(frozen=True)
class LoadedMicrograph:
    request: DisplayRequest
    display: DisplayImage
    shape: tuple[int, int]
    pixel_size_a: float | None
    notes: tuple[str, ...]


class _Signals(QObject):
    loaded = pyqtSignal(object)  # LoadedMicrograph
    failed = pyqtSignal(object, str)  # DisplayRequest, message


class _LoadJob(QRunnable):
    def __init__(self, request: DisplayRequest, signals: _Signals) -> None:
        super().__init__()
        self.request = request
        self.signals = signals

    def run(self) -> None:
        r = self.request
        try:
            mic = read_micrograph(r.path, r.pixel_size_a)
            disp = display_image(mic.image, mic.pixel_size_a, lowpass_a=r.lowpass_a, percentiles=r.percentiles)
            outcome = ("loaded", (LoadedMicrograph(r, disp, mic.shape, mic.pixel_size_a, mic.notes),))
        except PickerError as exc:
            outcome = ("failed", (r, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            outcome = ("failed", (r, f"{r.path}: unexpected error while loading ({type(exc).__name__}: {exc})"))
        try:
            getattr(self.signals, outcome[0]).emit(*outcome[1])
        except RuntimeError:
            pass  # the window closed while this micrograph was loading: nobody to tell


class DisplayLoader(QObject):
    """Asynchronous, cached display images. ``request`` answers at once from memory when it can."""

    loaded = pyqtSignal(object)
    failed = pyqtSignal(object, str)

    def __init__(self, capacity: int = 16, threads: int = 2, parent=None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(threads)
        self._cache: OrderedDict[tuple, LoadedMicrograph] = OrderedDict()
        self._capacity = capacity
        self._pending: set[tuple] = set()
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._signals.failed.connect(self._on_failed)

    def cached(self, request: DisplayRequest) -> LoadedMicrograph | None:
        hit = self._cache.get(request.key)
        if hit is not None:
            self._cache.move_to_end(request.key)
        return hit

    def request(self, request: DisplayRequest, prefetch: bool = False) -> LoadedMicrograph | None:
        """Return the cached result now, or start loading it (``loaded`` fires later)."""
        hit = self.cached(request)
        if hit is not None:
            return hit
        if request.key not in self._pending:
            self._pending.add(request.key)
            self.pool.start(_LoadJob(request, self._signals), priority=0 if prefetch else 1)
        return None

    def _on_loaded(self, result: LoadedMicrograph) -> None:
        self._pending.discard(result.request.key)
        self._cache[result.request.key] = result
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        self.loaded.emit(result)

    def _on_failed(self, request: DisplayRequest, message: str) -> None:
        self._pending.discard(request.key)
        self.failed.emit(request, message)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.pool.clear()
        self.pool.waitForDone(timeout_ms)


class GeneratorWorker(QObject):
    """Runs ``make()`` (a generator) on its own thread; emits each item, then its return value."""

    progress = pyqtSignal(object)
    finished = pyqtSignal(object)  # the generator's return value
    failed = pyqtSignal(str)  # one line for a PickerError (a user's problem), else the traceback

    def __init__(self, make: Callable[[threading.Event], Iterator[Any]]) -> None:
        super().__init__()
        self._make = make
        self.stop_event = threading.Event()
        self.thread = QThread()
        self.moveToThread(self.thread)
        self.thread.started.connect(self.run)  # the bound slot, not a lambda: it must run on the worker thread
        # Direct: quit from the worker's own thread the moment the job ends, not when the GUI
        # thread gets round to a queued call (it may be blocked waiting for this very thread).
        self.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.failed.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        self.thread.start()

    def request_stop(self) -> None:
        """Called directly from the GUI thread."""
        self.stop_event.set()

    @pyqtSlot()
    def run(self) -> None:
        try:
            gen = self._make(self.stop_event)
            while True:
                try:
                    item = next(gen)
                except StopIteration as end:
                    self.finished.emit(end.value)
                    return
                self.progress.emit(item)
        except PickerError as exc:
            self.failed.emit(str(exc))
        except Exception:  # noqa: BLE001 - shown in the window with its traceback
            self.failed.emit(traceback.format_exc())

    def wait(self, timeout_ms: int = 5000) -> bool:
        self.request_stop()
        self.thread.quit()
        return self.thread.wait(timeout_ms)


class JobRunner(QObject):
    """Named background jobs of one window.

    ``start(name, make)`` runs ``make(stop_event)`` (a generator) on a worker thread and
    returns the worker, whose signals the caller connects; a second job of the same name
    waits until the first has stopped (call :meth:`stop` first). Finished workers leave the
    registry by themselves.
    """

    changed = pyqtSignal(str, bool)  # name, running

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._workers: dict[str, GeneratorWorker] = {}

    def running(self, name: str) -> bool:
        worker = self._workers.get(name)
        return worker is not None and worker.thread.isRunning()

    def worker(self, name: str) -> GeneratorWorker | None:
        return self._workers.get(name)

    def start(self, name: str, make: Callable[[threading.Event], Iterator[Any]], *,
              progress: Callable | None = None, finished: Callable | None = None,
              failed: Callable | None = None) -> GeneratorWorker:
        """Run a job; its signals are connected to ``progress``, ``finished`` and ``failed``
        before its thread starts (a job that ends at once must not end unheard)."""
        old = self._workers.get(name)
        if old is not None:
            old.wait(60_000)
        worker = GeneratorWorker(make)
        for signal, slot in ((worker.progress, progress), (worker.finished, finished), (worker.failed, failed)):
            if slot is not None:
                signal.connect(slot)
        self._workers[name] = worker
        worker.thread.finished.connect(lambda n=name, w=worker: self._finished(n, w))
        worker.start()
        self.changed.emit(name, True)
        return worker

    def _finished(self, name: str, worker: GeneratorWorker) -> None:
        if self._workers.get(name) is worker:
            del self._workers[name]
            self.changed.emit(name, False)

    def stop(self, name: str) -> None:
        """Ask a job to stop at its next step (returns at once)."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.request_stop()

    def stop_all(self, timeout_ms: int = 60_000) -> bool:
        """Stop every job and wait for their threads (on quit). True when all ended."""
        for worker in list(self._workers.values()):
            worker.request_stop()
        ended = all(worker.wait(timeout_ms) for worker in list(self._workers.values()))
        self._workers.clear()
        return ended
