"""Open the window on a folder, label a few particles from a STAR file, and save a screenshot.

Run under a virtual display, e.g.:
  xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshot.py demo_data/micrographs \\
      --labels demo_data/labels.star --out docs/screenshot.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--labels", help="coordinates to import as labels first")
    ap.add_argument("--negatives", help="coordinates to import as negative labels")
    ap.add_argument("--out", default="docs/screenshot.png")
    ap.add_argument("--size", default="1500x950")
    ap.add_argument("--diameter-a", type=float, default=150.0, help="particle diameter for a new project")
    args = ap.parse_args()

    from PyQt6.QtCore import QTimer

    from picker_gui.gui.app import create_app
    from picker_gui.gui.opening import open_target
    from picker_gui.gui.main_window import MainWindow

    app = create_app()
    opened = open_target(args.folder, new_settings={"diameter_a": args.diameter_a})
    window = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
    w, h = (int(v) for v in args.size.split("x"))
    window.resize(w, h)
    window.show()
    if args.labels and window.store.total() == 0:
        window.import_labels(args.labels, flip_y=False, scale=1.0, as_negative=False)
    if args.negatives:
        window.import_labels(args.negatives, flip_y=False, scale=1.0, as_negative=True)

    def shoot() -> None:
        if window.displayed != window.current:  # still loading
            QTimer.singleShot(200, shoot)
            return
        app.processEvents()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(args.out)
        print(f"saved {args.out}")
        window.close()
        app.quit()

    QTimer.singleShot(500, shoot)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
