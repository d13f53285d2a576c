"""A project: a folder of its own that points at a folder of micrographs.

::

    <project>/
      project.json     settings, the micrograph folder, the current micrograph and view,
                       micrographs marked "skip"
      labels.star      the user's clicks: block data_particles (positives) and
                       data_negatives (things that are not particles), centres in
                       original-micrograph pixels, readable by RELION and starfile
      cache/           preprocessed micrographs (safe to delete)

Every write goes to a temporary file that is flushed to disk and then renamed over the old
one, so a crash at any moment leaves either the old file or the new one, never half of
one. A labels file that cannot be parsed is moved aside (never overwritten) and the
problem reported, so nothing a user clicked is lost silently.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.errors import PickerError
from picker_gui.core.paths import atomic_write_text, user_folder

logger = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
LABELS_FILE = "labels.star"
PROJECT_VERSION = 1


@dataclass
class ProjectSettings:
    """What a user sets once per dataset."""

    micrograph_folder: str = ""
    pixel_size_a: float | None = None  # None: from the headers
    diameter_a: float = 150.0
    lowpass_a: float = 20.0
    invert: bool = False
    contrast_percentiles: tuple[float, float] = (0.5, 99.5)
    current_micrograph: str | None = None
    view: list[float] | None = None  # x, y, width, height in original pixels
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProjectSettings":
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "contrast_percentiles" in values:
            values["contrast_percentiles"] = tuple(values["contrast_percentiles"])
        return cls(**values)


# -- labels --------------------------------------------------------------------------------
def _block(table: CoordinateTable):
    import pandas as pd

    return pd.DataFrame(
        {
            "rlnMicrographName": table.micrograph.astype(str),
            "rlnCoordinateX": np.round(table.x, 2),
            "rlnCoordinateY": np.round(table.y, 2),
        }
    )


def labels_to_star_text(labels: CoordinateTable) -> str:
    """The labels as STAR text: data_particles then data_negatives."""
    lines = ["# picker-gui labels: particle centres in original-micrograph pixels (x = column, y = row)", ""]
    for block, kind in (("particles", PARTICLE), ("negatives", NEGATIVE)):
        part = labels[labels.kind == kind]
        lines += [f"data_{block}", "", "loop_", "_rlnMicrographName #1", "_rlnCoordinateX #2", "_rlnCoordinateY #3"]
        for m, x, y in zip(part.micrograph, part.x, part.y):
            lines.append(f"{m}\t{x:.2f}\t{y:.2f}")
        lines.append("")
    return "\n".join(lines)


def save_labels(path: str | PathLike, labels: CoordinateTable) -> None:
    atomic_write_text(Path(path), labels_to_star_text(labels))


class LabelFileError(PickerError):
    """The labels file could not be read; it was moved aside to ``kept_as``."""

    def __init__(self, path: Path, problem: str, kept_as: Path | None) -> None:
        self.path, self.problem, self.kept_as = path, problem, kept_as
        where = f"; it was kept as {kept_as.name} and nothing was overwritten" if kept_as else ""
        super().__init__(f"{path}: cannot read the labels ({problem}){where}")


def load_labels(path: str | PathLike) -> CoordinateTable:
    """Read labels written by :func:`save_labels` (an absent file means no labels).

    Raises
    ------
    LabelFileError
        The file exists but cannot be parsed; it has been renamed aside first.
    """
    import starfile

    path = Path(path)
    if not path.exists():
        return CoordinateTable.empty()
    try:
        blocks = starfile.read(path, always_dict=True)
        parts = []
        for block, kind in (("particles", PARTICLE), ("negatives", NEGATIVE)):
            df = blocks.get(block)
            if df is None or len(df) == 0:
                continue
            missing = {"rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"} - set(df.columns)
            if missing:
                raise ValueError(f"block data_{block} lacks {', '.join(sorted(missing))}")
            x = np.asarray(df["rlnCoordinateX"], dtype=np.float64)
            y = np.asarray(df["rlnCoordinateY"], dtype=np.float64)
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise ValueError(f"block data_{block} has a coordinate that is not a number")
            parts.append(CoordinateTable.from_arrays(df["rlnMicrographName"].astype(str).to_numpy(), x, y, kind=kind, source="manual"))
        if not blocks and path.stat().st_size > 0 and path.read_text(errors="replace").strip():
            raise ValueError("no data block found")
        return CoordinateTable.concat(parts)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the file must be kept
        kept = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            path.replace(kept)
        except OSError:
            kept = None
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LabelFileError(path, detail, kept) from None


# -- the project ---------------------------------------------------------------------------
class Project:
    """A project folder: settings and labels, loaded and saved atomically."""

    def __init__(self, folder: str | PathLike, settings: ProjectSettings, labels: CoordinateTable) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.labels = labels

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS_FILE

    @property
    def cache_folder(self) -> Path:
        return self.folder / "cache"

    @classmethod
    def create(cls, folder: str | PathLike, micrograph_folder: str | PathLike, **settings: Any) -> "Project":
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise PickerError(f"{folder}: already a picker-gui project; open it instead")
        folder.mkdir(parents=True, exist_ok=True)
        project = cls(folder, ProjectSettings(micrograph_folder=str(Path(micrograph_folder).resolve()), **settings), CoordinateTable.empty())
        project.save_settings()
        project.save_labels()
        return project

    @classmethod
    def open(cls, folder: str | PathLike) -> "Project":
        """Open a project. A broken labels file raises LabelFileError after being moved
        aside; the caller may then open again to start from empty labels."""
        folder = Path(folder)
        settings_path = folder / PROJECT_FILE
        if not settings_path.exists():
            raise PickerError(f"{folder}: not a picker-gui project (no {PROJECT_FILE})")
        try:
            data = json.loads(settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PickerError(f"{settings_path}: cannot read the project settings ({exc})") from None
        if int(data.get("version", 0)) > PROJECT_VERSION:
            raise PickerError(f"{settings_path}: made by a newer picker-gui (project version {data['version']})")
        settings = ProjectSettings.from_dict(data.get("settings", {}))
        labels = load_labels(folder / LABELS_FILE)
        return cls(folder, settings, labels)

    def save_settings(self) -> None:
        text = json.dumps({"version": PROJECT_VERSION, "settings": asdict(self.settings)}, indent=1)
        atomic_write_text(self.folder / PROJECT_FILE, text)

    def save_labels(self) -> None:
        save_labels(self.labels_path, self.labels)


# -- recent projects -------------------------------------------------------------------------
def config_dir() -> Path:
    return user_folder("config")


def recent_projects(limit: int = 10) -> list[Path]:
    path = config_dir() / "recent.json"
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [Path(p) for p in items if (Path(p) / PROJECT_FILE).exists()][:limit]


def remember_project(folder: str | PathLike, limit: int = 10) -> None:
    folder = str(Path(folder).resolve())
    items = [str(p) for p in recent_projects(limit) if str(p) != folder]
    path = config_dir() / "recent.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps([folder] + items[: limit - 1], indent=1))


def project_for_micrographs(micrograph_folder: str | PathLike, **settings: Any) -> Project:
    """Open the project of a micrograph folder, making one on first use.

    It lives in ``<folder>/picker-gui`` when that can be written, else in the user's data
    folder (read-only or shared data stays untouched).
    """
    import hashlib

    from picker_gui.core.demo_data import data_dir

    folder = Path(micrograph_folder).resolve()
    beside = folder / "picker-gui"
    elsewhere = data_dir() / "projects" / f"{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"
    for candidate in (beside, elsewhere):
        if (candidate / PROJECT_FILE).exists():
            return Project.open(candidate)
    for candidate in (beside, elsewhere):
        try:
            return Project.create(candidate, folder, **settings)
        except OSError as exc:
            logger.info("cannot make a project in %s (%s)", candidate, exc)
    raise PickerError(f"{folder}: cannot make a project beside it or in {elsewhere.parent}")
