"""The built-in demo dataset, made once in the user's data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from picker_gui.core.paths import user_folder

DEMO_MICROGRAPHS = 8
DEMO_SEED = 0
LABELS_PER_MICROGRAPH = 25


def data_dir() -> Path:
    """``$PICKER_GUI_DATA``, else ``$XDG_DATA_HOME/picker-gui``, else ``~/.local/share/picker-gui``."""
    return user_folder("data")


def demo_folder() -> Path:
    return data_dir() / "demo"


def demo_ready(folder: Path | None = None) -> bool:
    return ((folder or demo_folder()) / "dataset.json").exists()


def ensure_demo_dataset(progress: Callable[[int, int], None] | None = None, folder: Path | None = None) -> Path:
    """Make the demo dataset if it is not there yet; return its folder.

    It is written to a temporary sibling and renamed when complete, so an interrupted first
    start never leaves half a dataset that looks finished.
    """
    import shutil

    from picker_gui.core.synthetic import write_demo_dataset

    folder = folder or demo_folder()
    if demo_ready(folder):
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    dataset = write_demo_dataset(tmp, n_micrographs=DEMO_MICROGRAPHS, seed=DEMO_SEED, progress=progress)
    write_sparse_labels(tmp, dataset.particles, LABELS_PER_MICROGRAPH, DEMO_SEED)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def write_sparse_labels(folder: Path, truth, per_micrograph: int, seed: int):
    """Write ``labels.star``: ``per_micrograph`` random true centres on each of the first
    three quarters of the micrographs (the last quarter is left for testing), as a user
    would click them. Returns the table."""
    import numpy as np

    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.formats import write_coordinates

    rng = np.random.default_rng(seed)
    keys = truth.micrographs()
    parts = []
    for key in keys[: max(1, (3 * len(keys)) // 4)]:
        t = truth.for_micrograph(key)
        parts.append(t[rng.choice(len(t), min(per_micrograph, len(t)), replace=False)].replace(source="manual"))
    labels = CoordinateTable.concat(parts)
    write_coordinates(labels, Path(folder) / "labels.star", "star-particles")
    return labels


def demo_project_setup(folder: Path | None = None):
    """Settings and labels for the demo dataset's project: its particle diameter (the pixel
    size is in the headers) and the sparse labels written with it, as a user would have
    clicked them, so the first window shows labelled micrographs."""
    import json

    from picker_gui.core.formats import read_coordinates

    folder = folder or demo_folder()
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    labels = read_coordinates(folder / "labels.star").replace(source="manual")
    return {"diameter_a": float(meta["particle_diameter_a"]), "pixel_size_a": None}, labels
