"""Window latency: switch to a cached micrograph, click-to-ring, start-up on 200 micrographs.

Prints medians over repeated runs. Rendering is forced (``repaint``) inside each timing,
so what is timed is what the user waits for. Runs on the offscreen platform unless
QT_QPA_PLATFORM says otherwise (e.g. under xvfb-run with QT_QPA_PLATFORM=xcb).

targets (issue 4): switch <= 100 ms, click to ring <= 30 ms, start-up <= 2 s.

usage: python benchmarks/gui_latency.py [--runs 20] [--size 4096x4096] [--n-startup 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STARTUP_CHILD = r"""
import time, sys
t0 = time.perf_counter()
from picker_gui.gui.app import create_app
from picker_gui.gui.opening import open_target
from picker_gui.gui.main_window import MainWindow
app = create_app()
opened = open_target(sys.argv[1], new_settings={"diameter_a": 150.0})
w = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
w.show()
app.processEvents()
t_list = time.perf_counter() - t0
while w.current is None or w.displayed != w.current:
    app.processEvents()
    time.sleep(0.002)
w.canvas.viewport().repaint()
print(f"{t_list:.4f} {time.perf_counter() - t0:.4f}")
w.close()
"""


def _write_mics(folder: Path, n: int, shape: tuple[int, int]) -> None:
    import numpy as np

    from picker_gui.core.mrc_io import write_mrc

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    image = rng.normal(size=shape).astype(np.float32)
    for i in range(n):
        write_mrc(folder / f"mic_{i:04d}.mrc", image, 1.0)


def _row(name: str, times: list[float], target_ms: float) -> str:
    med = statistics.median(times) * 1000
    return f"{name:<38} median {med:8.1f} ms  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})  target <= {target_ms:g} ms: {'ok' if med <= target_ms else 'MISSED'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", default="4096x4096", help="micrograph size WxH for the switch and click timings")
    ap.add_argument("--n-startup", type=int, default=200)
    ap.add_argument("--startup-runs", type=int, default=3)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    from PyQt6.QtCore import Qt
    from PyQt6.QtTest import QTest

    from picker_gui.gui.app import create_app
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PICKER_GUI_CONFIG"] = str(Path(tmp) / "cfg")
        mics = Path(tmp) / "mics"
        _write_mics(mics, 3, (h, w))
        app = create_app()
        opened = open_target(mics, new_settings={"diameter_a": 150.0})
        win = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
        win.resize(1500, 950)
        win.show()
        keys = list(win.paths)
        for k in keys:  # load all three once, so that switching hits the cache
            win.show_micrograph(k)
            while win.displayed != k:
                app.processEvents()
                time.sleep(0.005)

        switch = []
        for i in range(args.runs):
            key = keys[i % len(keys)]
            t = time.perf_counter()
            win.mic_list.select(key)
            win.canvas.viewport().repaint()
            switch.append(time.perf_counter() - t)
            assert win.current == key

        vp = win.canvas.viewport()
        click = []
        # Far enough apart (rings are 150 px here) that no click lands on an earlier ring.
        rng_points = [(200 + (i % 8) * ((w - 400) // 8), 200 + (i // 8) * 400 % (h - 400)) for i in range(args.runs)]
        for x, y in rng_points:
            pos = win.canvas.map_to_widget(x, y)
            n_before = win.store.count(win.current)
            t = time.perf_counter()
            QTest.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
            vp.repaint()
            click.append(time.perf_counter() - t)
            assert win.store.count(win.current) == n_before + 1
            time.sleep(0.6)  # not a double click
            app.processEvents()
        win.close()

        print(f"micrograph {w}x{h} float32, platform {os.environ['QT_QPA_PLATFORM']}")
        print(_row("switch to a cached micrograph", switch, 100))
        print(_row("click to ring drawn", click, 30))

        many = Path(tmp) / "many"
        _write_mics(many, args.n_startup, (1024, 1024))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        lists, usable = [], []
        for _ in range(args.startup_runs):
            out = subprocess.run([sys.executable, "-c", STARTUP_CHILD, str(many)], capture_output=True, text=True, env=env, check=True)
            a, b = (float(v) for v in out.stdout.split())
            lists.append(a)
            usable.append(b)
        print(_row(f"start-up to window and list ({args.n_startup} mics)", lists, 2000))
        print(_row("start-up to first micrograph shown", usable, 2000))


if __name__ == "__main__":
    main()
