"""The window's loop on demo data, as a user runs it: open, Train, picks stream in, drag the
threshold. Prints one figure a line, in words that stay the same across versions:

    stall during training: p99 N ms, max N ms      (target <= 50 ms)
    stall during picking: p99 N ms, max N ms       (target <= 50 ms)
    threshold redraw with 2000 picks: median N ms  (target <= 16 ms)
    train to first picks on screen: N s            (target <= 60 s on 2 CPU cores)

A stall is how late a 10 ms QTimer on the GUI thread fires (what a user feels as a frozen
window). A threshold redraw is one slider step with everything it redraws (picks in the
viewer, counts in the list, the panel's histogram and numbers), painted: the step, then
the event loop until every repaint it asked for is done, as the window would do it. Runs on
the offscreen platform unless QT_QPA_PLATFORM says otherwise; the demo data is made in a
temporary folder (8 micrographs, 2048 x 1536, with the demo's sparse labels).

usage: python benchmarks/window_loop.py [--micrographs 8] [--redraws 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class StallMeter:
    """A 10 ms timer on the GUI thread; records how late each tick is."""

    def __init__(self) -> None:
        from PyQt6.QtCore import QElapsedTimer, QTimer

        self.lates: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer(interval=10)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        elapsed = self._clock.restart()
        self.lates.append(max(0.0, elapsed - 10.0))

    def start(self) -> None:
        self.lates.clear()
        self._clock.start()
        self._timer.start()

    def stop(self) -> list[float]:
        self._timer.stop()
        return list(self.lates)


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def wait_until(app, condition, guard_s: float) -> None:
    """Run the event loop until ``condition()`` holds; give up after ``guard_s`` seconds
    (a guard against a hang, not a measurement)."""
    end = time.perf_counter() + guard_s
    while not condition():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > end:
            raise SystemExit("gave up waiting (the guard, not a measurement)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micrographs", type=int, default=8)
    ap.add_argument("--redraws", type=int, default=50)
    args = ap.parse_args()

    from PyQt6.QtWidgets import QAbstractSlider

    from picker_gui.core.demo_data import demo_project_setup, write_sparse_labels
    from picker_gui.core.synthetic import write_demo_dataset
    from picker_gui.gui.app import create_app
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in ("CONFIG", "DATA", "CACHE"):
            os.environ[f"PICKER_GUI_{kind}"] = str(tmp / kind.lower())
        dataset = write_demo_dataset(tmp / "demo", n_micrographs=args.micrographs, seed=0)
        write_sparse_labels(tmp / "demo", dataset.particles, 25, 0)
        settings, labels = demo_project_setup(tmp / "demo")

        def add(project) -> None:
            project.labels = labels
            project.save_labels()

        app = create_app()
        opened = open_target(tmp / "demo" / "micrographs", new_settings=settings, on_create=add)
        win = MainWindow(opened.project, opened.warnings)
        win.resize(1500, 950)
        win.show()

        def wait(condition, guard_s: float = 1800) -> None:
            wait_until(app, condition, guard_s)

        wait(lambda: win.current is not None and win.displayed == win.current)
        meter = StallMeter()
        phase = {"training": True}
        lates: dict[str, list[float]] = {"training": [], "picking": []}
        first_picks: list[float] = []
        win.state.events.picks.connect(lambda keys: first_picks.append(time.perf_counter()) if win.current in keys else None)
        win.picker.training_finished.connect(lambda _text: phase.update(training=False))

        t0 = time.perf_counter()
        meter.start()
        win.act_train.trigger()
        wait(lambda: not phase["training"])
        lates["training"] = meter.stop()
        meter.start()
        wait(lambda: not win.picker.picking and len(win.state.picks.keys()) == len(win.paths))
        lates["picking"] = meter.stop()
        to_first = (first_picks[0] - t0) if first_picks else float("nan")

        # Threshold redraws with about 2000 picks on screen: a micrograph with the most candidates,
        # the threshold where ~2000 of its picks are shown, the least distance small enough.
        win.state.min_distance_px = win.state.picks.min_distance_px * 0.5
        key = max(win.state.picks.keys(), key=lambda k: len(win.state.picks.picks(k)))
        win.show_micrograph(key)
        wait(lambda: win.displayed == key)
        scores = win.state.picks.picks(key).score
        start = float(scores[min(len(scores), 2000) - 1]) if len(scores) else 0.0
        win.threshold_panel.set_threshold(start)
        win.state.threshold = start
        shown = []
        redraws = []
        slider = win.threshold_panel.slider
        for i in range(args.redraws):
            action = QAbstractSlider.SliderAction.SliderSingleStepAdd if i % 2 == 0 else QAbstractSlider.SliderAction.SliderSingleStepSub
            app.processEvents()  # nothing pending before the step
            t = time.perf_counter()
            slider.triggerAction(action)
            app.processEvents()  # every repaint the step asked for: the viewer, the list, the panel
            redraws.append(time.perf_counter() - t)
            shown.append(len(win.canvas.pick_item.data))
        win.close()

    print(f"demo data: {args.micrographs} micrographs 2048x1536, platform {os.environ['QT_QPA_PLATFORM']}, "
          f"device {win.picker.device}")
    for name in ("training", "picking"):
        values = lates[name]
        print(f"stall during {name}: p99 {_percentile(values, 99):.0f} ms, max {max(values, default=float('nan')):.0f} ms"
              f"  (n={len(values)} ticks)")
    print(f"threshold redraw with {int(statistics.median(shown))} picks: median {statistics.median(redraws) * 1000:.1f} ms"
          f"  (n={len(redraws)}, max {max(redraws) * 1000:.1f} ms)")
    print(f"train to first picks on screen: {to_first:.0f} s")


if __name__ == "__main__":
    main()
