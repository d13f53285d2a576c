"""The consensus slider's redraw, as the window does it: the scored OR set of three pickers on
the demo data, one slider step with everything it redraws (rings on the micrograph, the
counts, the panel's histogram and numbers), painted. Prints

    consensus redraw with N rings: median N ms  (target <= 16 ms)
    merge of 3 sets, N picks on M micrographs: median N ms (on the GUI thread)

The three sets are made from the demo's true centres, as independent pickers would find
them: each finds 70-90 % of the particles (positions off by 1-2 px) plus a few hundred
false picks per micrograph, with its own scores. The network's scores are drawn at random
(true clusters higher): the redraw costs the same whatever scored them, and training here
would cost minutes for nothing measured. Runs on the offscreen platform unless
QT_QPA_PLATFORM says otherwise.

usage: python benchmarks/consensus_slider.py [--micrographs 8] [--redraws 50] [--false 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from window_loop import wait_until  # noqa: E402  (the window's event-loop wait, shared)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micrographs", type=int, default=8)
    ap.add_argument("--redraws", type=int, default=50)
    ap.add_argument("--false", type=int, default=300, help="false picks per micrograph per picker")
    ap.add_argument("--profile", action="store_true", help="print where the redraw time goes (cProfile)")
    args = ap.parse_args()

    import numpy as np
    from PyQt6.QtWidgets import QAbstractSlider

    from picker_gui.core.consensus import merge_sets
    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.demo_data import demo_project_setup, write_sparse_labels
    from picker_gui.core.formats import write_coordinates
    from picker_gui.core.synthetic import write_demo_dataset
    from picker_gui.gui.app import create_app
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in ("CONFIG", "DATA", "CACHE"):
            os.environ[f"PICKER_GUI_{kind}"] = str(tmp / kind.lower())
        dataset = write_demo_dataset(tmp / "demo", n_micrographs=args.micrographs, seed=0)
        truth = dataset.particles
        write_sparse_labels(tmp / "demo", truth, 25, 0)
        settings, _labels = demo_project_setup(tmp / "demo")
        files = []
        for j, found in enumerate((0.9, 0.8, 0.7)):
            parts = []
            for key in dict.fromkeys(truth.keys):
                t = truth.for_micrograph(key)
                keep = rng.random(len(t)) < found
                xy = t.xy()[keep] + rng.normal(0, 1.5, (int(keep.sum()), 2))
                fake = rng.uniform([0, 0], [2048, 1536], (args.false, 2))
                xy = np.concatenate([xy, fake])
                score = np.concatenate([rng.normal(1, 1, int(keep.sum())), rng.normal(-1, 1, args.false)])
                parts.append(CoordinateTable.from_arrays(f"{key}.mrc", xy[:, 0], xy[:, 1], score=score))
            files.append(tmp / f"picker{j}.star")
            write_coordinates(CoordinateTable.concat(parts), files[-1], "star-particles")

        app = create_app()
        opened = open_target(tmp / "demo" / "micrographs", new_settings=settings)
        win = MainWindow(opened.project, opened.warnings)
        win.resize(1500, 950)
        win.show()

        def wait(condition, guard_s: float = 600) -> None:
            wait_until(app, condition, guard_s)

        wait(lambda: win.current is not None and win.displayed == win.current)
        view, panel = win.consensus, win.consensus_panel
        for f in files:
            view.controller.add_file(f)
        app.processEvents()
        state = view.state
        # Merge timing (what adding a set or moving the radius costs on the GUI thread).
        sets = [s.as_pick_set() for s in state.sets]
        merges = []
        for _ in range(5):
            t = time.perf_counter()
            merged = merge_sets(sets, state.radius_px, state.micrographs or None)
            merges.append(time.perf_counter() - t)
        # Scores as a network would give them: true clusters (found by several) higher.
        votes = merged.votes
        score = 1 / (1 + np.exp(-(rng.normal(0, 1.5, len(votes)) + 1.5 * (votes - 1.5))))
        scored = dataclasses.replace(merged, table=merged.table.replace(score=score))
        state.set_result(scored, scored=True)
        app.processEvents()
        key = max(state._sorted, key=lambda k: len(state._sorted[k].score))
        win.show_micrograph(next(k for k in win.paths if k == key))
        wait(lambda: win.displayed == key)
        slider = panel.threshold.slider
        panel.threshold.set_threshold(0.3)
        state.threshold = 0.3
        app.processEvents()
        redraws, shown = [], []
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        for i in range(args.redraws):
            action = (QAbstractSlider.SliderAction.SliderSingleStepAdd if i % 2 == 0
                      else QAbstractSlider.SliderAction.SliderSingleStepSub)
            app.processEvents()
            t = time.perf_counter()
            slider.triggerAction(action)
            app.processEvents()
            redraws.append(time.perf_counter() - t)
            shown.append(win.canvas.consensus_shown())
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        win.close()
    n_picks = sum(len(s.table) for s in sets)
    print(f"demo data: {args.micrographs} micrographs 2048x1536, 3 pickers, platform {os.environ['QT_QPA_PLATFORM']}")
    print(f"consensus redraw with {int(statistics.median(shown))} rings: median {statistics.median(redraws) * 1000:.1f} ms"
          f"  (n={len(redraws)}, max {max(redraws) * 1000:.1f} ms; target <= 16 ms)")
    print(f"merge of 3 sets, {n_picks} picks on {args.micrographs} micrographs: median "
          f"{statistics.median(merges) * 1000:.0f} ms (on the GUI thread)")


if __name__ == "__main__":
    main()
