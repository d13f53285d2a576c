"""A project: a folder of its own that points at a folder of micrographs.

::

    <project>/
      project.json     settings, the micrograph folder, the current micrograph and view,
                       micrographs marked "skip"
      labels.star      the user's clicks: block data_particles (positives) and
                       data_negatives (things that are not particles), centres in
                       original-micrograph pixels, readable by RELION and starfile
      picks.star       the picker's candidates with their scores (data_picks) and the model
                       that made them (data_picks_info): shown again on reopening
      models/          models trained in the window
      project.lock     which window has the project open (host, process, since when)
      cache/           preprocessed micrographs (safe to delete)

Nothing a user made is lost or overwritten:

- Every write goes to a temporary file that is flushed to disk and then renamed over the
  old one, so a crash at any moment leaves either the old file or the new one.
- A labels file that cannot be parsed is moved aside (never overwritten) and the problem
  reported. A labels file in another format the registry reads (RELION 3's unnamed
  ``data_`` block, a particles STAR) is read, and a copy of the original is kept before
  picker-gui ever writes its own format over it.
- A lock file says which window has the project open. A second window is told who holds it
  and may open the project read-only or take it over; the first window then notices, at
  its next heartbeat or save, that the project is no longer its own and stops writing. A
  lock whose process has died, or that has not been refreshed for a while, is stale and is
  taken over without asking.
- Before every save the labels file is checked against what this project last read or
  wrote; a file changed by someone else is kept aside (``labels.star.other-<time>``) and
  the save says so, instead of silently replacing it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.errors import PickerError
from picker_gui.core.paths import atomic_write_text, user_folder

logger = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
LABELS_FILE = "labels.star"
LOCK_FILE = "project.lock"
PICKS_FILE = "picks.star"
PROJECT_VERSION = 1
#: The holder of a lock rewrites it this often; a lock untouched for STALE_AFTER_S is stale.
LOCK_REFRESH_S = 15.0
STALE_AFTER_S = 120.0


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def _aside(path: Path, tag: str) -> Path:
    """A free name beside ``path`` for keeping an old version: ``labels.star.<tag>-<time>``."""
    base = path.with_name(f"{path.name}.{tag}-{_stamp()}")
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


# -- settings -----------------------------------------------------------------------------
def _number(value: Any, name: str, *, positive: bool = True, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'"{name}" must be a number, found {json.dumps(value)}')
    if positive and not value > 0:
        raise ValueError(f'"{name}" must be positive, found {value}')
    return float(value)


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
    relion_micrographs: str | None = None  # the RELION micrographs STAR exports match names against
    # The picker, as the user last set it up:
    expected_per_micrograph: float | None = None
    objective: str = "ge-binomial"
    max_minutes: float = 2.5
    model_path: str | None = None  # the model whose picks are shown (picks.star says which)
    threshold: float | None = None
    min_distance_px: float | None = None  # least distance between picks shown, original px

    @classmethod
    def from_dict(cls, data: Any) -> "ProjectSettings":
        """Settings from the JSON of project.json, checked field by field.

        Raises
        ------
        ValueError
            Naming the field and what is wrong with it (unknown fields are ignored, so an
            older picker-gui opens a newer project's settings).
        """
        if not isinstance(data, dict):
            raise ValueError(f'"settings" must be an object, found {json.dumps(data)[:40]}')
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if not isinstance(values.get("micrograph_folder", ""), str):
            raise ValueError('"micrograph_folder" must be a folder name')
        for name in ("diameter_a", "lowpass_a", "max_minutes"):
            if name in values:
                values[name] = _number(values[name], name)
        for name in ("expected_per_micrograph", "min_distance_px"):
            if name in values:
                values[name] = _number(values[name], name, optional=True)
        if "threshold" in values:
            values["threshold"] = _number(values["threshold"], "threshold", positive=False, optional=True)
        if not isinstance(values.get("objective", ""), str):
            raise ValueError('"objective" must be a name')
        if "pixel_size_a" in values:
            values["pixel_size_a"] = _number(values["pixel_size_a"], "pixel_size_a", optional=True)
        if "invert" in values and not isinstance(values["invert"], bool):
            raise ValueError('"invert" must be true or false')
        if "contrast_percentiles" in values:
            cp = values["contrast_percentiles"]
            if not (isinstance(cp, (list, tuple)) and len(cp) == 2):
                raise ValueError('"contrast_percentiles" must be two numbers')
            values["contrast_percentiles"] = tuple(_number(v, "contrast_percentiles", positive=False) for v in cp)
        for name in ("current_micrograph", "relion_micrographs", "model_path"):
            if name in values and not isinstance(values[name], (str, type(None))):
                raise ValueError(f'"{name}" must be a name or null')
        if "view" in values and values["view"] is not None:
            view = values["view"]
            if not (isinstance(view, list) and len(view) == 4):
                raise ValueError('"view" must be four numbers or null')
            values["view"] = [_number(v, "view", positive=False) for v in view]
        if "skipped" in values:
            skipped = values["skipped"]
            if not (isinstance(skipped, list) and all(isinstance(s, str) for s in skipped)):
                raise ValueError('"skipped" must be a list of names')
        return cls(**values)


# -- labels --------------------------------------------------------------------------------
class LabelFileError(PickerError):
    """The labels file could not be read; it was moved aside to ``kept_as``."""

    def __init__(self, path: Path, problem: str, kept_as: Path | None) -> None:
        self.path, self.problem, self.kept_as = path, problem, kept_as
        where = f"; it was kept as {kept_as.name} and nothing was overwritten" if kept_as else ""
        super().__init__(f"{path}: cannot read the labels ({problem}){where}")


def save_labels(path: str | PathLike, labels: CoordinateTable) -> None:
    """Write labels in picker-gui's own format (data_particles + data_negatives), atomically."""
    from picker_gui.core.formats import write_labels_file

    write_labels_file(Path(path), labels)


def read_labels(path: str | PathLike) -> tuple[CoordinateTable, list[str]]:
    """Labels and notes. An absent file means no labels. A file in another format the
    registry reads is read, and a copy of the original is kept beside it (the next save
    writes picker-gui's format); the notes say so.

    Raises
    ------
    LabelFileError
        The file exists but cannot be read as coordinates; it has been moved aside first.
    """
    from picker_gui.core.formats import read_labels_file

    path = Path(path)
    if not path.exists():
        return CoordinateTable.empty(), []
    try:
        table, notes = read_labels_file(path)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the file must be kept
        kept: Path | None = _aside(path, "unreadable")
        try:
            path.replace(kept)
        except OSError:
            kept = None
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        detail = detail.replace(f"{path}: ", "").replace(f"{path}, ", "")
        raise LabelFileError(path, detail, kept) from None
    if notes:
        kept = _aside(path, "original")
        shutil.copy2(path, kept)
        notes = [f"{path.name}: {note}; {len(table)} label(s) read, and the original is kept as {kept.name} "
                 f"(picker-gui writes its own format from now on)" for note in notes]
    return table, notes


def load_labels(path: str | PathLike) -> CoordinateTable:
    """:func:`read_labels` without the notes."""
    return read_labels(path)[0]


# -- picks -----------------------------------------------------------------------------------
_MODEL_ID = "pickerGuiModelId"


def save_picks(path: str | PathLike, picks: CoordinateTable, model_id: str | None) -> None:
    """Write picks (every candidate, with its score) and the id of the model that made them,
    atomically: ``data_picks_info`` then ``data_picks`` (a particles STAR RELION reads)."""
    from picker_gui.core import star
    from picker_gui.core.paths import atomic_output

    blocks = {
        "picks_info": {_MODEL_ID: model_id or ""},
        "picks": {"rlnMicrographName": picks.micrograph, "rlnCoordinateX": picks.x, "rlnCoordinateY": picks.y,
                  "rlnAutopickFigureOfMerit": picks.score},
    }
    text = star.write_star(blocks, comment="picker-gui picks: candidates in original-micrograph pixels, score = logit",
                           path=path)
    with atomic_output(path, "w") as fh:
        fh.write(text)


def read_picks(path: str | PathLike) -> tuple[CoordinateTable, str | None]:
    """Picks written by :func:`save_picks` and their model id ((empty, None) when absent).

    Raises
    ------
    PickerError
        The file cannot be read.
    """
    import numpy as np

    from picker_gui.core import star

    path = Path(path)
    if not path.exists():
        return CoordinateTable.empty(), None
    blocks = star.read_star(path)
    info = blocks.get("picks_info")
    model_id = str(info[_MODEL_ID].iloc[0]) if info is not None and _MODEL_ID in info.columns else None
    df = blocks.get("picks")
    if df is None or not len(df):
        return CoordinateTable.empty(), model_id or None
    table = CoordinateTable.from_arrays(df["rlnMicrographName"].astype(str).to_numpy(),
                                        np.asarray(df["rlnCoordinateX"], float), np.asarray(df["rlnCoordinateY"], float),
                                        np.asarray(df["rlnAutopickFigureOfMerit"], float), source="picker-gui")
    return table, model_id or None


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


# -- the lock ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockInfo:
    """Who holds a project: read from and written to ``project.lock``."""

    host: str
    pid: int
    token: str
    user: str
    since: float
    refreshed: float  # the file's modification time when read

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.since))
        return f"by {self.user} on {self.host} (process {self.pid}) since {when}"

    def is_stale(self, now: float | None = None) -> bool:
        """The holder is gone: its process has died (same host), or it has not refreshed the
        lock for :data:`STALE_AFTER_S` seconds (any host)."""
        now = time.time() if now is None else now
        if now - self.refreshed > STALE_AFTER_S:
            return True
        if self.host == socket.gethostname():
            return not _process_alive(self.pid)
        return False


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    except OSError:
        return False
    return True


class ProjectLockedError(PickerError):
    """Another window (maybe in another process or on another machine) holds the project."""

    def __init__(self, folder: Path, holder: LockInfo) -> None:
        self.folder, self.holder = folder, holder
        super().__init__(f"{folder}: the project is open in another picker-gui window, {holder.describe()}")


class ProjectLock:
    """The lock of one project folder, held by one window (a token tells windows apart,
    also two windows of one process)."""

    def __init__(self, folder: str | PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.token = uuid.uuid4().hex
        self.since = time.time()

    def holder(self) -> LockInfo | None:
        """Who holds the lock now (None: nobody, or an unreadable lock file)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            refreshed = self.path.stat().st_mtime
            return LockInfo(str(data["host"]), int(data["pid"]), str(data["token"]), str(data.get("user", "?")),
                            float(data.get("since", refreshed)), refreshed)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def owned(self) -> bool:
        holder = self.holder()
        return holder is not None and holder.token == self.token

    def acquire(self, take_over: bool = False) -> LockInfo | None:
        """Take the lock. Returns the previous holder when a stale lock (or, with
        ``take_over``, a live one) was replaced, else None.

        Raises
        ------
        ProjectLockedError
            Another live window holds it and ``take_over`` is False.
        OSError
            The project folder cannot be written (then nothing can be saved either).
        """
        holder = self.holder()
        if holder is not None and holder.token != self.token and not take_over and not holder.is_stale():
            raise ProjectLockedError(self.path.parent, holder)
        self._write()
        if holder is not None and holder.token != self.token:
            logger.info("%s: took over the lock held %s%s", self.path.parent, holder.describe(),
                        " (stale)" if holder.is_stale() else "")
            return holder
        return None

    def _write(self) -> None:
        data = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                "user": _user(), "since": self.since}
        # Whole or absent after a crash, but not flushed to disk: it is rewritten every few
        # seconds from the GUI thread, and a lock is worth nothing after a reboot.
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n", durable=False)

    def refresh(self) -> bool:
        """Rewrite the lock if it is still ours (the heartbeat); False when another window
        has taken it over. A lock that is missing (never written: the folder could not be
        written; or deleted) is written again; an unwritable folder is not an error here."""
        holder = self.holder()
        if holder is not None and holder.token != self.token:
            return False
        try:
            self._write()
        except OSError:
            pass
        return True

    def release(self) -> None:
        if self.owned():
            try:
                self.path.unlink()
            except OSError:
                pass


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not a reason to fail
        return "?"


# -- the project ---------------------------------------------------------------------------
class Project:
    """A project folder: settings and labels, loaded and saved atomically.

    ``notes`` holds what the user should hear about the opening (settings or labels that
    were recovered or kept aside).
    """

    def __init__(self, folder: str | PathLike, settings: ProjectSettings, labels: CoordinateTable,
                 notes: list[str] | None = None) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.labels = labels
        self.notes: list[str] = list(notes or [])
        self.picks = CoordinateTable.empty()  # the picker's candidates, as last saved
        self.picks_model_id: str | None = None
        self.lock = ProjectLock(self.folder)
        self._labels_seen = _signature(self.labels_path)

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
        """Open a project.

        A project.json that cannot be read is kept aside and the settings start again from
        the micrograph folder the project sits in (``FOLDER/picker-gui``); a labels file that
        cannot be read is moved aside and the project opens with no labels. The notes say so.
        """
        folder = Path(folder)
        settings_path = folder / PROJECT_FILE
        if not settings_path.exists():
            raise PickerError(f"{folder}: not a picker-gui project (no {PROJECT_FILE})")
        notes: list[str] = []
        try:
            settings = cls._read_settings(settings_path)
        except ValueError as exc:
            settings, kept = cls._recover_settings(folder, settings_path, str(exc))
            notes.append(f"{settings_path}: could not be read ({exc}); it was kept as {kept.name} and the "
                         f"settings start from their defaults")
        try:
            labels, label_notes = read_labels(folder / LABELS_FILE)
        except LabelFileError as exc:
            labels, label_notes = CoordinateTable.empty(), [str(exc)]
        project = cls(folder, settings, labels, notes + label_notes)
        try:
            project.picks, project.picks_model_id = read_picks(folder / PICKS_FILE)
        except (PickerError, OSError, KeyError, ValueError) as exc:
            kept = _aside(folder / PICKS_FILE, "unreadable")
            try:
                (folder / PICKS_FILE).replace(kept)
            except OSError:
                pass
            project.notes.append(f"{folder / PICKS_FILE}: the saved picks could not be read ({exc}); they were "
                                 f"kept as {kept.name}; pick again to see picks")
        return project

    @staticmethod
    def _read_settings(path: Path) -> ProjectSettings:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PickerError(f"{path}: cannot read the project settings ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected an object with \"settings\", found {json.dumps(data)[:40]}")
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f'"version" must be a whole number, found {json.dumps(version)}')
        if version > PROJECT_VERSION:
            raise PickerError(f"{path}: made by a newer picker-gui (project version {version}); "
                              f"update picker-gui to open it")
        return ProjectSettings.from_dict(data.get("settings", {}))

    @staticmethod
    def _recover_settings(folder: Path, path: Path, problem: str) -> tuple[ProjectSettings, Path]:
        """Settings for a project whose project.json is broken, when the micrograph folder
        can be told from where the project is; the broken file is kept, never overwritten."""
        from picker_gui.core.mrc_io import MICROGRAPH_SUFFIXES

        parent = folder.resolve().parent
        if not any(p.suffix.lower() in MICROGRAPH_SUFFIXES for p in parent.iterdir() if p.is_file()):
            raise PickerError(f"{path}: cannot read the project settings ({problem}); fix or remove the file")
        kept = _aside(path, "unreadable")
        shutil.copy2(path, kept)
        return ProjectSettings(micrograph_folder=str(parent)), kept

    def save_settings(self) -> None:
        text = json.dumps({"version": PROJECT_VERSION, "settings": asdict(self.settings)}, indent=1)
        atomic_write_text(self.folder / PROJECT_FILE, text)

    def save_labels(self, labels: CoordinateTable | None = None) -> str | None:
        """Write the labels (``self.labels`` unless given). Safe to call from a worker thread
        while the GUI thread goes on (one save at a time).

        Returns
        -------
        str or None
            A message when the file on disk had been changed by someone else since this
            project last read or wrote it: that version was kept aside first.

        Raises
        ------
        OSError
            The file could not be written (read-only folder, full disk); the old file is intact.
        """
        table = self.labels if labels is None else labels
        path = self.labels_path
        note = None
        now = _signature(path)
        if now is not None and now != self._labels_seen:
            kept = _aside(path, "other")
            shutil.copy2(path, kept)
            note = (f"{path} was changed outside this window since it was last read; that version is kept "
                    f"as {kept.name} (File → Import labels merges it)")
            logger.warning("%s", note)
        save_labels(path, table)
        self._labels_seen = _signature(path)
        return note

    @property
    def picks_path(self) -> Path:
        return self.folder / PICKS_FILE

    @property
    def models_folder(self) -> Path:
        return self.folder / "models"

    def save_picks(self, picks: CoordinateTable, model_id: str | None) -> None:
        """Write the picker's candidates (raises OSError when the folder cannot be written)."""
        save_picks(self.picks_path, picks, model_id)
        self.picks, self.picks_model_id = picks, model_id

    def save_as(self, folder: str | PathLike, labels: CoordinateTable | None = None) -> "Project":
        """A copy of this project (settings and labels) in a new folder, for when this one
        cannot be written; the micrograph folder stays the same."""
        folder = Path(folder)
        if (folder / PROJECT_FILE).exists():
            raise PickerError(f"{folder}: already a picker-gui project; choose an empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        copy = Project(folder, ProjectSettings(**asdict(self.settings)), self.labels if labels is None else labels)
        copy.save_settings()
        copy.save_labels()
        return copy


def project_title(folder: str | PathLike) -> str:
    """A name for a project in lists and titles: its micrograph folder's name for a project
    kept beside its micrographs (``mics/picker-gui`` -> ``mics``), else its own name."""
    folder = Path(folder)
    return folder.parent.name if folder.name == "picker-gui" and folder.parent.name else folder.name


# -- recent projects -------------------------------------------------------------------------
def config_dir() -> Path:
    return user_folder("config")


def recent_projects(limit: int = 10) -> list[Path]:
    path = config_dir() / "recent.json"
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(items, list):
        return []
    return [Path(p) for p in items if isinstance(p, str) and (Path(p) / PROJECT_FILE).exists()][:limit]


def remember_project(folder: str | PathLike, limit: int = 10) -> None:
    folder = str(Path(folder).resolve())
    items = [str(p) for p in recent_projects(limit) if str(p) != folder]
    path = config_dir() / "recent.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps([folder] + items[: limit - 1], indent=1))


# -- what a path given by the user is -----------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What the window is asked to open.

    ``project`` is the project folder (existing, or where a new one would be made);
    ``exists`` says which; ``micrograph_folder`` is the folder of micrographs; ``select`` a
    micrograph to show first (when a file was given); ``micrographs`` the micrograph files
    found (for a new project).
    """

    project: Path
    exists: bool
    micrograph_folder: Path
    micrographs: tuple[Path, ...] = ()
    select: str | None = None

    @property
    def n_micrographs(self) -> int:
        return len(self.micrographs)


def project_locations(micrograph_folder: Path) -> tuple[Path, Path]:
    """Where the project of a micrograph folder lives: beside it, or in the user's data folder
    (for read-only or shared data)."""
    import hashlib

    from picker_gui.core.demo_data import data_dir

    folder = micrograph_folder.resolve()
    elsewhere = data_dir() / "projects" / f"{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"
    return folder / "picker-gui", elsewhere


def resolve_target(target: str | PathLike) -> Target:
    """Tell what ``target`` is: a project, a folder of micrographs (with or without a project
    yet), a micrograph file, or a project's project.json. Creates nothing.

    Raises
    ------
    PickerError
        No such file or folder, a folder with no micrographs, a file that is neither a
        micrograph nor a project file: one line naming the path and what to give instead.
    """
    from picker_gui.core.coords import micrograph_key
    from picker_gui.core.mrc_io import MICROGRAPH_SUFFIXES

    path = Path(target).expanduser()
    if not path.exists():
        raise PickerError(f"{path}: no such file or folder")
    select = None
    if path.is_file():
        if path.name == PROJECT_FILE:
            path = path.parent
        elif path.suffix.lower() in MICROGRAPH_SUFFIXES:
            select, path = micrograph_key(path), path.parent
        else:
            raise PickerError(f"{path}: not a folder of micrographs, a micrograph (.mrc) or a picker-gui project")
    if (path / PROJECT_FILE).exists():
        return Target(path, True, path, select=select)  # micrograph folder: read from project.json later
    mics = tuple(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MICROGRAPH_SUFFIXES)
    beside, elsewhere = project_locations(path)
    for candidate in (beside, elsewhere):
        if (candidate / PROJECT_FILE).exists():
            return Target(candidate, True, path.resolve(), mics, select)
    if not mics:
        others = sorted({p.suffix.lower() for p in path.iterdir() if p.is_file() and p.suffix})
        hint = f" (found {', '.join(others[:6])} files)" if others else " (the folder is empty)" if not any(path.iterdir()) else ""
        raise PickerError(f"{path}: no micrographs here (.mrc, .mrcs, .map){hint}; open a folder of "
                          f"motion-corrected micrographs or a picker-gui project")
    return Target(beside, False, path.resolve(), mics, select)


def create_project_for(target: Target, **settings: Any) -> Project:
    """Make the project of a micrograph folder: beside it when that can be written, else in
    the user's data folder (read-only or shared data stays untouched)."""
    beside, elsewhere = project_locations(target.micrograph_folder)
    for candidate in (beside, elsewhere):
        try:
            return Project.create(candidate, target.micrograph_folder, **settings)
        except OSError as exc:
            logger.info("cannot make a project in %s (%s)", candidate, exc)
    raise PickerError(f"{target.micrograph_folder}: cannot make a project beside it or in {elsewhere.parent}")



# -- opening, as the window and the command line do it ------------------------------------------
@dataclass
class OpenedProject:
    """A project ready to show, and what the user should be told about it."""

    project: Project
    warnings: list[str] = field(default_factory=list)
    read_only: bool = False
    select: str | None = None


def open_project(target: str | PathLike, *, new_settings: dict | None = None, ask_new_settings=None,
                 ask_locked=None, on_create=None) -> OpenedProject | None:
    """Open a project folder, or the project of a micrograph folder (made here), and take its
    lock. The questions are the caller's (the window asks in dialogs):

    - ``ask_new_settings(target, header) -> dict | None``: settings of a new project
      (diameter, pixel size); None cancels. Not asked when ``new_settings`` is given.
    - ``ask_locked(ProjectLockedError) -> "read-only" | "take-over" | None``: another window
      holds the project; None cancels. Without it, the project opens read-only.
    - ``on_create(project)``: runs once on a project made here (the demo adds its labels).

    Returns None when the user cancelled.

    Raises
    ------
    PickerError
        No such folder, no micrographs, a project that cannot be read: one line.
    OSError
        The project cannot be made.
    """
    from picker_gui.core.errors import MicrographError
    from picker_gui.core.mrc_io import read_header

    t = resolve_target(target)
    warnings: list[str] = []
    if t.exists:
        project = Project.open(t.project)
    else:
        if new_settings is None:
            header = None
            for path in sorted(t.micrographs):
                try:
                    header = read_header(path)
                    break
                except MicrographError:
                    continue
            new_settings = ask_new_settings(t, header) if ask_new_settings is not None else {}
            if new_settings is None:
                return None
        project = create_project_for(t, **new_settings)
        if on_create is not None:
            on_create(project)
    warnings += project.notes
    read_only = False
    try:
        previous = project.lock.acquire()
        if previous is not None:
            warnings.append(f"The project's lock, held {previous.describe()}, was stale (that window is gone) and was taken over.")
    except ProjectLockedError as exc:
        answer = ask_locked(exc) if ask_locked is not None else "read-only"
        if answer is None:
            return None
        read_only = answer != "take-over"
        if not read_only:
            try:
                project.lock.acquire(take_over=True)
            except OSError as err:
                warnings.append(f"The lock of {project.folder} could not be taken ({err.strerror or err}); "
                                f"the project is open read-only.")
                read_only = True
    except OSError as exc:
        warnings.append(f"The project folder {project.folder} cannot be written ({exc.strerror or exc}): "
                        f"labels cannot be saved there; use File → Save project as… to keep your work.")
    return OpenedProject(project, warnings, read_only, t.select)
