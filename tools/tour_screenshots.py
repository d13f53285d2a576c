"""Screenshots of the picker's loop for the README: the general model's suggestions before
any training, training in progress (plots and the picks
of the model being trained), the picks at two thresholds with the gallery, the export dialog,
and the consensus of our picks and the built-in picker.

Run under a virtual display:
  xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/tour_screenshots.py --out docs
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs")
    ap.add_argument("--micrographs", type=int, default=8)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

    from picker_gui.core.demo_data import demo_project_setup, write_sparse_labels
    from picker_gui.core.synthetic import write_demo_dataset
    from picker_gui.gui.app import create_app
    from picker_gui.gui.export_dialog import ExportDialog
    from picker_gui.gui.main_window import MainWindow
    from picker_gui.gui.opening import open_target

    tmp = Path(tempfile.mkdtemp())
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

    def wait(condition, seconds: float = 3600) -> None:
        end = time.perf_counter() + seconds
        while not condition() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.5) -> None:
        wait(lambda: False, seconds)

    def shot(widget, name: str) -> None:
        settle()
        widget.grab().save(str(out / name))
        print("saved", out / name)

    wait(lambda: win.current is not None and win.displayed == win.current)
    # Suggestions of the general model before any training.
    win.picker.suggest_with_general()
    wait(lambda: not win.picker.picking and len(win.state.picks.keys()) == len(win.paths))
    win.dock_raise("Picks")
    shot(win, "suggestions.png")
    win.train_panel.set_settings(180.0, "ge-binomial", 1.8)
    win._on_train_settings_changed()
    # A longer run than the default 600 steps, so that the picture shows training under way.
    win.picker.train_overrides = {"max_steps": 3000}
    win.start_training()
    wait(lambda: (win.state.picks.model_id == "preview" and win.current in win.state.picks
                  and len(win.train_panel.best() or ()) > 0) or not win.picker.training, 600)
    print("training:", win.picker.training, "picks of", win.state.picks.model_id)
    settle(8)
    shot(win, "training.png")
    win.picker.train_overrides = {}
    wait(lambda: win.state.model is not None and not win.picker.picking and len(win.state.picks.keys()) == len(win.paths))
    win.dock_raise("Picks")
    for threshold, name in ((-2.0, "picks-low-threshold.png"), (1.0, "picks-high-threshold.png")):
        win.threshold_panel.set_threshold(threshold)
        win._on_threshold_moved(threshold)
        settle(1.0)
        shot(win, name)
    dialog = ExportDialog(win.state.picks, win.state.threshold, win.current, win.project.settings.skipped,
                          win._diameter_px(), str(win.project.folder), None, win, fmt="relion")
    dialog.show()
    shot(dialog, "export-dialog.png")
    dialog.close()
    # Consensus: our picks and the built-in picker as two sets, the network trained, its slider.
    view = win.consensus
    win.threshold_panel.set_threshold(0.0)
    win._on_threshold_moved(0.0)
    win.dock_raise("Consensus")
    view.controller.add_our_picks()
    view.controller.add_dog()
    wait(lambda: len(view.state.sets) == 2 and not view.controller.finding)
    # The two pickers place a particle's centre up to a third of its diameter apart: a merge
    # radius of 0.25 diameters (instead of 0.1 box) lets them agree.
    view.panel.radius.setValue(0.25 * settings["diameter_a"])
    shot(win, "consensus-sets.png")
    print("consensus counts:", view.state.counts())
    view.controller.train()
    wait(lambda: not view.controller.training)
    win._refresh_overlays()
    settle(1.0)
    shot(win, "consensus.png")
    win.close()
    QTimer.singleShot(0, app.quit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
