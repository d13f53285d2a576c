"""The window's one worker pattern: a core job (a generator) on a thread, cancellable."""

from __future__ import annotations

import threading

from picker_gui.core.errors import UsageError
from picker_gui.gui.workers import JobRunner


def _counting(stop: threading.Event, n: int = 1000, gate: threading.Event | None = None):
    for i in range(n):
        if stop.is_set():
            return ("stopped", i)
        if gate is not None and i == 3:
            gate.wait(30)
        yield i
    return ("done", n)


def test_a_job_reports_and_returns(qtbot):
    runner = JobRunner()
    seen, result = [], []
    runner.start("count", lambda stop: _counting(stop, 20), progress=seen.append, finished=result.append)
    qtbot.waitUntil(lambda: bool(result), timeout=10_000)
    assert result == [("done", 20)] and seen[-1] == 19
    qtbot.waitUntil(lambda: not runner.running("count"), timeout=10_000)


def test_stop_ends_a_job_at_its_next_step_and_keeps_what_it_returns(qtbot):
    runner = JobRunner()
    gate = threading.Event()
    result = []
    runner.start("count", lambda stop: _counting(stop, 10**9, gate), finished=result.append)
    qtbot.waitUntil(lambda: runner.running("count"), timeout=10_000)
    runner.stop("count")
    gate.set()
    qtbot.waitUntil(lambda: bool(result), timeout=10_000)
    assert result[0][0] == "stopped" and result[0][1] <= 5


def test_a_users_error_is_one_line_and_stop_all_waits(qtbot):
    runner = JobRunner()
    failures = []

    def bad(stop):
        yield 1
        raise UsageError("no labels on these micrographs", option="--labels")

    runner.start("bad", bad, failed=failures.append)  # it fails at once: connected before it starts
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    assert failures == ["--labels: no labels on these micrographs"]
    runner.start("long", lambda stop: _counting(stop, 10**9))
    assert runner.stop_all() is True and not runner.running("long")
