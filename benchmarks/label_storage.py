"""Large label sets in the window: import, autosave, and how long the GUI thread is blocked.

A project with many labels (300,000 over 400 micrographs by default, as a tester imported)
must not freeze the window: saving runs on a worker thread, so the GUI thread only pays for
a copy of the arrays. Printed (medians over --runs):

- reading the coordinate file (core, any thread)
- File → Import on the GUI thread (read + merge + one undoable step)
- one autosave: time on the GUI thread (a frozen copy of the labels), time on the worker (write),
  and the longest the event loop went without running while it saved (a 5 ms timer's
  largest gap: what a user would feel as a stall)

usage: python benchmarks/label_storage.py [--labels 300000] [--micrographs 400] [--runs 5]
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


def _median(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:8.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=300_000)
    ap.add_argument("--micrographs", type=int, default=400)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import numpy as np
    from PyQt6.QtCore import QElapsedTimer, QTimer

    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.formats import read_coordinates, write_coordinates
    from picker_gui.core.mrc_io import write_mrc
    from picker_gui.gui.app import create_app
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PICKER_GUI_CONFIG"] = str(tmp / "cfg")
        mics = tmp / "mics"
        mics.mkdir()
        image = np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)
        for i in range(args.micrographs):
            write_mrc(mics / f"mic_{i:04d}.mrc", image, 1.0)
        rng = np.random.default_rng(1)
        names = np.array([f"mic_{i:04d}.mrc" for i in rng.integers(0, args.micrographs, args.labels)], dtype=object)
        table = CoordinateTable.from_arrays(names, rng.uniform(0, 512, args.labels), rng.uniform(0, 512, args.labels))
        star = tmp / "many.star"
        write_coordinates(table, star, "star-particles")

        reads = []
        for _ in range(args.runs):
            t = time.perf_counter()
            read_coordinates(star)
            reads.append(time.perf_counter() - t)

        app = create_app()
        opened = open_target(mics, new_settings={"diameter_a": 20.0})
        win = MainWindow(opened.project, opened.warnings)
        win.show()
        while win.current is None or win.displayed != win.current:
            app.processEvents()
            time.sleep(0.002)

        imports, gui_saves, worker_saves, stalls = [], [], [], []
        for _ in range(args.runs):
            win.store.replace(table[:0])
            win.save_labels()
            t = time.perf_counter()
            n = win.import_labels(str(star), flip_y=False, scale=1.0, as_negative=False)
            imports.append(time.perf_counter() - t)
            assert n == args.labels
            win.save_labels()  # the import's own save, out of the way

            # One more edit, then time the autosave as the user meets it.
            win.store.add(win.paths[win.current].name, 10.0, 10.0)
            gaps, clock = [], QElapsedTimer()
            ticker = QTimer(interval=5)
            ticker.timeout.connect(lambda: (gaps.append(clock.restart())))
            clock.start()
            ticker.start()
            t = time.perf_counter()
            win.saver.save_now()
            gui_saves.append(time.perf_counter() - t)
            t_worker = time.perf_counter()
            while win.saver.unsaved:
                app.processEvents()
                time.sleep(0.001)
            worker_saves.append(time.perf_counter() - t_worker)
            ticker.stop()
            stalls.append(max(gaps, default=0) / 1000.0)
        win.close()

    print(f"{args.labels} labels over {args.micrographs} micrographs, platform {os.environ['QT_QPA_PLATFORM']}")
    print(f"read the STAR file (core)                 {_median(reads)}")
    print(f"File > Import on the GUI thread           {_median(imports)}")
    print(f"autosave: GUI thread (frozen copy)         {_median(gui_saves)}")
    print(f"autosave: worker thread (write)           {_median(worker_saves)}")
    print(f"autosave: longest event-loop stall        {_median(stalls)}")


if __name__ == "__main__":
    main()
