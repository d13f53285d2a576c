"""Child process of test_crash_safety: opens the window on a folder of blob micrographs, labels
them, saves, then trains (and, with "pick", picks) until it is killed. Prints "labelled N"
once the labels are on disk, then "training" at the first training step or "picking" at the
first picked micrograph."""

import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from picker_gui.gui.app import create_app  # noqa: E402
from picker_gui.gui.main_window import MainWindow  # noqa: E402
from picker_gui.gui.opening import open_target  # noqa: E402
from tests.core.test_training import _blobs  # noqa: E402

folder, mode = sys.argv[1], sys.argv[2]
app = create_app()
opened = open_target(folder, new_settings={"diameter_a": 16.0})
window = MainWindow(opened.project, opened.warnings, read_only=opened.read_only)
window.show()
n = 0
for seed in range(3):
    _, truth = _blobs(seed)
    for x, y in zip(truth.x[:10], truth.y[:10]):
        window.store.add(f"m{seed}.mrc", float(x), float(y))
        n += 1
assert window.save_labels()
print(f"labelled {n}", flush=True)
window.picker.train_overrides = ({"max_steps": 100_000, "max_minutes": 1000.0, "patience": 100_000} if mode == "train"
                                 else {"max_steps": 5, "max_minutes": 1000.0})
said = set()


def on_report(report) -> None:
    if report.train is not None and "training" not in said:
        said.add("training")
        print("training", flush=True)


def on_picks(keys) -> None:
    if mode == "pick" and "picking" not in said:
        said.add("picking")
        print("picking", flush=True)


window.picker.training_report.connect(on_report)
window.state.events.picks.connect(on_picks)
window.start_training()
app.exec()
