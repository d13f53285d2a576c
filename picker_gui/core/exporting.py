"""Export the picker's picks: one code path for the window and the command line.

The window holds the picks in a :class:`~picker_gui.core.picks.PickStore`; the command line
reads them from the project's ``picks.star`` (:func:`~picker_gui.core.project.read_picks`)
with the threshold, least distance and skipped micrographs of ``project.json``. Both call
:func:`export_picks`, which takes either, and both end in the same steps:

1. the *candidates* (every pick the picker extracted, with its score) as a table, rounded
   exactly as ``picks.star`` stores them (6 decimals; see :func:`as_saved`), so that picks
   held in memory with full precision and the same picks read back from the file are the
   same numbers;
2. :func:`select_picks`: a fresh :class:`PickStore` built from them (``set_table``,
   ``set_min_distance``) keeps the picks apart at the least distance and above the
   threshold, on the chosen micrographs minus the skipped ones — what the window shows;
3. one :func:`~picker_gui.core.formats.write_coordinates` call (atomic per file), plus an
   empty file for each chosen micrograph without picks in the per-micrograph formats.

So the same project gives byte-identical files from the window and from
``picker-gui export``::

    # the window (a PickStore in memory, its least distance set from the project)
    summary = export_picks(state.picks, dialog.request(), inputs=project_inputs(project))
    # the command line (the same picks, read from picks.star)
    summary = export_picks(project.picks, request, min_distance_px=settings.min_distance_px or 0.0,
                           inputs=project_inputs(project))
    print(summary.describe())

Micrographs with no picks above the threshold
---------------------------------------------
What RELION's Extract does with them (``src/preprocessing.cpp`` of RELION 3.0 and of 4.0/5.0):

- RELION 3 finds a micrograph's coordinates by name (``--coord_dir`` + the micrograph's name
  + ``--coord_suffix``). A missing file prints ``Warning: coordinate file ... does not
  exist...`` for that micrograph and it is skipped; a file with a header and no rows prints
  ``WARNING: no particles on micrograph`` and it is skipped as well. Neither stops the job.
- RELION 4/5 reads a ``data_coordinate_files`` list (``--coord_list``): a micrograph that the
  list does not name is skipped without a word; one whose listed file is missing gets the
  warning above; one whose file is empty gets "no particles on micrograph". A micrograph
  without particles is also left out of the job's output micrographs.

So a missing file and an empty one give the same particles. What differs is a folder that
already holds files from an earlier export: a micrograph that had picks at a lower threshold
and has none now would keep its *old* file, and RELION (or EMAN2) would extract those stale
picks. Hence, for the per-micrograph formats (``relion``, ``box``), every chosen micrograph
without picks gets an empty file: a STAR with the header and no rows (which RELION reads as
"no particles" and :func:`~picker_gui.core.formats.read_coordinates` reads as zero rows), or
an empty ``.box`` (no boxes for EMAN2, no particles for RELION; our reader skips empty files
in a folder).
The summary says how many. Files in that folder for micrographs not in this export (left
out as skipped, or not chosen) are left as they are, and the summary names them, since
RELION would read them too.

For ``relion-list`` the list names only the micrographs with picks (RELION then skips the
others silently, as with an empty file), and a micrograph's stale file in ``coordinates/``
is harmless because RELION reads only what the list names. The one-file formats hold rows
only; the summary counts the chosen micrographs that have none.

A micrograph the picker ran on but found no candidate at all has no row in ``picks.star``,
so it is not one of the "picked" micrographs here (from memory or from the file alike).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from picker_gui.core.coords import PARTICLE, CoordinateTable, micrograph_key
from picker_gui.core.errors import CoordinateFormatError, PickerError
from picker_gui.core.formats import WRITE_FORMATS, write_coordinates
from picker_gui.core.picks import PickStore

logger = logging.getLogger(__name__)

#: Formats that write one file per micrograph into a folder, and the extension that makes
#: the destination one file instead (allowed for one micrograph).
PER_MICROGRAPH: dict[str, str] = {"relion": ".star", "box": ".box"}

#: What each writable format is for (the window shows these).
FORMAT_DESCRIPTIONS: dict[str, str] = {
    "relion": "RELION 3: <micrograph>_autopick.star per micrograph, in a folder",
    "relion-list": "RELION 4/5: autopick.star listing per-micrograph files in coordinates/",
    "star-particles": "One STAR of every particle: cryoSPARC Import Particles, RELION, Scipion",
    "box": "EMAN2 boxes (corner, size, score): one .box per micrograph, in a folder",
    "topaz": "Topaz table: image_name, x_coord, y_coord, score (tab separated)",
    "csv": "Every column: micrograph, x, y, score, kind, source",
    "labels": "picker-gui labels STAR: the picks as labels for another project",
}

_WRITE_ALIASES = {"star": "star-particles"}


def _normal_format(fmt: str, path: Path) -> str:
    name = _WRITE_ALIASES.get(fmt, fmt)
    if name not in WRITE_FORMATS:
        raise CoordinateFormatError(path, f"cannot write {fmt!r}; writable formats: {', '.join(WRITE_FORMATS)}")
    return name


@dataclass(frozen=True)
class ExportRequest:
    """What to export, where and how; plain values, the same from the window and the CLI.

    Attributes
    ----------
    path : Path
        The destination: a folder for ``relion`` and ``box`` (or one ``.star``/``.box`` file
        when one micrograph is exported), the list file (or a folder for it) for
        ``relion-list``, a file for the others.
    fmt : str
        One of :data:`~picker_gui.core.formats.WRITE_FORMATS` (``"star"`` is taken for
        ``star-particles``).
    threshold : float
        Picks scoring at least this are exported (the window's threshold).
    micrographs : tuple of str or None
        Micrograph keys (or names) to export; None: every picked micrograph.
    exclude_skipped : bool
        Leave out the micrographs in ``skipped`` (the project's "skip" marks).
    skipped : tuple of str
        The micrographs marked skipped.
    box_size : float or None
        Box edge in pixels, required for ``box``.
    suffix : str
        RELION per-micrograph files are ``<key>_<suffix>.star``; the relion-list file in a
        folder is ``<suffix>.star``.
    micrograph_names, relion_project
        For ``relion-list`` and ``star-particles``: the names RELION knows and its project
        folder (see :func:`~picker_gui.core.formats.write_coordinates` and
        :func:`~picker_gui.core.formats.relion_micrograph_names`).
    """

    path: Path
    fmt: str
    threshold: float
    micrographs: tuple[str, ...] | None = None
    exclude_skipped: bool = True
    skipped: tuple[str, ...] = ()
    box_size: float | None = None
    suffix: str = "autopick"
    micrograph_names: Mapping[str, str] | None = None
    relion_project: Path | None = None

    def __post_init__(self) -> None:
        path = Path(self.path)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "fmt", _normal_format(str(self.fmt), path))
        threshold = float(self.threshold)
        if math.isnan(threshold):
            raise PickerError("the threshold is not a number")
        object.__setattr__(self, "threshold", threshold)
        if self.micrographs is not None:
            if isinstance(self.micrographs, str):
                raise TypeError("micrographs must be a list of keys, not one string")
            object.__setattr__(self, "micrographs", tuple(str(m) for m in self.micrographs))
        object.__setattr__(self, "skipped", tuple(str(s) for s in (self.skipped or ())))
        if self.box_size is not None:
            object.__setattr__(self, "box_size", float(self.box_size))
        if self.relion_project is not None:
            object.__setattr__(self, "relion_project", Path(self.relion_project))
        if self.micrograph_names is not None:
            object.__setattr__(self, "micrograph_names", dict(self.micrograph_names))


@dataclass(frozen=True)
class Choice:
    """Which micrographs an export covers, from the picked ones (keys, in table order)."""

    chosen: tuple[str, ...]  # exported: a file (per-micrograph formats) or rows each
    skipped: tuple[str, ...]  # asked for (or all) but left out as skipped
    unknown: tuple[str, ...]  # asked for but not picked


def choose_micrographs(picked: Sequence[str], micrographs: Iterable[str] | None, skipped: Iterable[str] = (),
                       exclude_skipped: bool = True) -> Choice:
    """The micrographs an export covers: ``micrographs`` (None: every picked one) in the order
    of ``picked``, less the skipped ones when ``exclude_skipped``; keys asked for that were not
    picked are returned as ``unknown``."""
    picked = [micrograph_key(k) for k in picked]
    known = set(picked)
    if micrographs is None:
        wanted, unknown = picked, []
    else:
        asked = list(dict.fromkeys(micrograph_key(k) for k in micrographs))
        unknown = [k for k in asked if k not in known]
        asked_set = set(asked)
        wanted = [k for k in picked if k in asked_set]
    left_out = {micrograph_key(s) for s in skipped} if exclude_skipped else set()
    return Choice(tuple(k for k in wanted if k not in left_out), tuple(k for k in wanted if k in left_out),
                  tuple(unknown))


def saved_floats(values) -> np.ndarray:
    """Numbers as a STAR file written by :mod:`picker_gui.core.star` gives them back: the
    writer prints ``round(v, 6)`` (integral values as integers, so never ``-0``), and values
    below 1e-4 with 6 significant digits. Vectorised; the tests check it against a real
    save and read."""
    v = np.asarray(values, dtype=np.float64)
    out = np.round(v, 6)
    out[out == 0] = 0.0
    tiny = np.flatnonzero(np.isfinite(v) & (np.abs(v) < 1e-4) & (v != 0))
    for i in tiny:
        out[i] = float(f"{v[i]:.6g}")
    return out


def as_saved(table: CoordinateTable) -> CoordinateTable:
    """``table`` with x, y and score as ``picks.star`` keeps them (read back after
    :func:`~picker_gui.core.project.save_picks`). Applying it twice changes nothing."""
    if not len(table):
        return table
    return table.replace(x=saved_floats(table.x), y=saved_floats(table.y), score=saved_floats(table.score))


@dataclass(frozen=True)
class _Selection:
    table: CoordinateTable
    choice: Choice
    counts: dict[str, int]


def _select(candidates: CoordinateTable, min_distance_px: float, request: ExportRequest) -> _Selection:
    candidates = candidates[candidates.kind == PARTICLE] if len(candidates) else candidates
    choice = choose_micrographs(candidates.micrographs(), request.micrographs, request.skipped,
                                request.exclude_skipped)
    store = PickStore()
    if choice.chosen:
        store.set_table(as_saved(candidates[candidates.on_micrographs(choice.chosen)]))
    store.set_min_distance(min_distance_px)
    table = store.to_table(request.threshold, keys=choice.chosen)
    counts = {k: store.count(k, request.threshold) for k in choice.chosen}
    return _Selection(table, choice, counts)


def select_picks(picks: CoordinateTable, min_distance_px: float, request: ExportRequest) -> CoordinateTable:
    """The picks an export writes, as the window shows them.

    Parameters
    ----------
    picks : CoordinateTable
        The candidates (every pick extracted, with its score): ``project.picks``, or
        ``store.to_table(candidates=True)``.
    min_distance_px : float
        Least distance between picks (original pixels), applied greedily in score order by
        :class:`PickStore` (0: none).
    request : ExportRequest
        Its threshold (picks scoring at least it), micrographs and skipped ones are used.

    Returns
    -------
    CoordinateTable
        Micrograph by micrograph in the order they first appear in ``picks``, each highest
        score first; coordinates and scores rounded as ``picks.star`` keeps them.
    """
    return _select(picks, min_distance_px, request).table


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote, for the caller to report (:meth:`describe`).

    ``skipped_micrographs`` and ``empty_micrographs`` are micrograph keys (their ``len`` is
    the count): the ones left out as skipped, and the chosen ones without a pick at or above
    the threshold (given empty files in the per-micrograph formats, see ``empty_files``).
    ``other_files`` are coordinate files already in a per-micrograph destination folder for
    micrographs not in this export, left as they are.
    """

    n_particles: int
    n_micrographs: int  # micrographs with at least one particle written
    files: list[Path]
    skipped_micrographs: tuple[str, ...] = ()
    empty_micrographs: tuple[str, ...] = ()
    fmt: str = ""
    path: Path = Path()
    threshold: float = 0.0
    empty_files: bool = False
    other_files: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        """One line, e.g. "wrote 12,345 particles on 38 micrographs to 38 files in /x/y;
        2 skipped micrographs left out"."""
        what = f"wrote {_n(self.n_particles, 'particle')} on {_n(self.n_micrographs, 'micrograph')}"
        if self.fmt == "relion-list" and self.files:
            listed = self.files[0]
            where = f"to {listed} and {_n(len(self.files) - 1, 'file')} in {listed.parent / 'coordinates'}"
        elif self.fmt in PER_MICROGRAPH and not (len(self.files) == 1 and self.files[0] == self.path):
            where = f"to {_n(len(self.files), 'file')} in {self.path}"
        else:
            where = f"to {self.files[0] if self.files else self.path}"
        parts = [f"{what} {where}"]
        if self.skipped_micrographs:
            n = len(self.skipped_micrographs)
            parts.append(f"{_n(n, 'skipped micrograph')} left out")
        if self.empty_micrographs:
            n = _n(len(self.empty_micrographs), "micrograph")
            has = "has" if len(self.empty_micrographs) == 1 else "have"
            if self.empty_files:
                parts.append(f"{n} with no pick at or above {self.threshold:g} got an empty file"
                             + ("" if len(self.empty_micrographs) == 1 else "s"))
            elif self.fmt == "relion-list":
                parts.append(f"{n} with no pick at or above {self.threshold:g} not listed (RELION extracts "
                             f"nothing from them)")
            else:
                parts.append(f"{n} {has} no pick at or above {self.threshold:g}")
        if self.other_files:
            names = ", ".join(p.name for p in self.other_files[:3]) + (", ..." if len(self.other_files) > 3 else "")
            parts.append(f"{_n(len(self.other_files), 'older coordinate file')} of other micrographs in that folder "
                         f"left as they are (RELION and EMAN2 read them too): {names}")
        return "; ".join(parts)


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def project_inputs(project) -> list[Path]:
    """The files of a project an export must never write over (settings, labels, picks)."""
    from picker_gui.core.project import PROJECT_FILE

    return [Path(project.folder) / PROJECT_FILE, Path(project.labels_path), Path(project.picks_path)]


def _per_micrograph_name(fmt: str, key: str, suffix: str) -> str:
    """The file a per-micrograph format writes for ``key`` (as the writers in formats.py
    name them)."""
    if fmt == "box":
        return f"{key}.box"
    return f"{key}_{suffix}.star" if suffix else f"{key}.star"


def _is_single_file(fmt: str, path: Path) -> bool:
    return fmt in PER_MICROGRAPH and path.suffix.lower() == PER_MICROGRAPH[fmt] and not path.is_dir()


def _check_destination(request: ExportRequest, n_chosen: int, inputs: Iterable[str | os.PathLike]) -> None:
    """The destination has the format's shape, is writable and is none of ``inputs``."""
    from picker_gui.core.paths import check_outputs

    fmt, path = request.fmt, request.path
    option = "destination"
    if fmt == "box" and not (request.box_size is not None and request.box_size > 0):
        raise CoordinateFormatError(path, "writing .box files needs the box size in pixels (EMAN boxes are stored "
                                          "by their corner)")
    outputs: list[tuple[Path, str]] = []
    folders: list[str] = []
    if fmt in PER_MICROGRAPH:
        if _is_single_file(fmt, path):
            if n_chosen > 1:
                raise CoordinateFormatError(path, f"a {PER_MICROGRAPH[fmt]} file holds one micrograph but "
                                                  f"{n_chosen} are exported; give a folder for one {fmt} file per "
                                                  f"micrograph")
            outputs.append((path, option))
        else:
            if path.exists() and not path.is_dir():
                raise CoordinateFormatError(path, f"format {fmt!r} writes one file per micrograph into a folder, "
                                                  f"but this is a file")
            outputs.append((path, option))
            folders.append(option)
    elif fmt == "relion-list":
        is_file = path.suffix.lower() == ".star" and not path.is_dir()
        list_path = path if is_file else path / f"{request.suffix or 'coordinates'}.star"
        outputs.append((list_path, option))
        outputs.append((list_path.parent / "coordinates", "destination (its coordinates/ folder)"))
        folders.append(outputs[-1][1])
    else:
        if path.is_dir():
            raise CoordinateFormatError(path, f"this is a folder, but format {fmt!r} writes one file; give a file name")
        outputs.append((path, option))
    check_outputs(outputs, inputs, folder_outputs=folders)


def _other_files(request: ExportRequest, written: Iterable[Path]) -> list[Path]:
    """Coordinate files of the format already in a per-micrograph destination folder that this
    export did not write (other micrographs': RELION and EMAN2 would read them too)."""
    fmt, folder = request.fmt, request.path
    if fmt not in PER_MICROGRAPH or _is_single_file(fmt, folder) or not folder.is_dir():
        return []
    ending = ".box" if fmt == "box" else (f"_{request.suffix}.star" if request.suffix else ".star")
    done = {p.name for p in written}
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(ending) and p.name not in done and not p.name.startswith("."))


def export_picks(picks: PickStore | CoordinateTable, request: ExportRequest, *, min_distance_px: float | None = None,
                 inputs: Iterable[str | os.PathLike] = ()) -> ExportSummary:
    """Write the picks of a project as the window shows them.

    Parameters
    ----------
    picks : PickStore or CoordinateTable
        The window's store (its candidates and its least distance are used), or the
        candidates as saved in the project (``project.picks`` / ``read_picks``).
    request : ExportRequest
        What to write, where.
    min_distance_px : float, optional
        Least distance between picks in original pixels; required with a table (the
        project's ``settings.min_distance_px or 0.0``, as the window uses), and overrides the
        store's when given with a store.
    inputs : paths
        Files the export must never write over, nor write into the folder of
        (:func:`project_inputs`).

    Returns
    -------
    ExportSummary

    Raises
    ------
    PickerError
        Micrographs asked for that were not picked; nothing at or above the threshold;
        a destination of the wrong shape, not writable, or one of ``inputs``
        (:class:`~picker_gui.core.errors.UsageError`); a format that cannot hold a name
        (:class:`~picker_gui.core.errors.CoordinateFormatError`). Nothing is written then.
    OSError
        Writing failed (full disk, ...): every file written is complete (atomic), later
        ones are missing.
    """
    if isinstance(picks, PickStore):
        distance = picks.min_distance_px if min_distance_px is None else float(min_distance_px)
        if request.micrographs is None:
            candidates = picks.to_table(candidates=True)
        else:
            candidates = picks.to_table(candidates=True, keys=[k for k in request.micrographs if k in picks])
    else:
        if min_distance_px is None:
            raise TypeError("export_picks needs min_distance_px with a table of candidates")
        distance, candidates = float(min_distance_px), picks
    selection = _select(candidates, distance, request)
    choice, table = selection.choice, selection.table
    threshold = request.threshold
    if choice.unknown:
        picked = candidates.micrographs()
        listed = ", ".join(picked[:5]) + (", ..." if len(picked) > 5 else "")
        raise PickerError(f"no picks on {', '.join(choice.unknown[:5])}: not picked (picked micrographs: "
                          f"{listed or 'none'})")
    if not len(table):
        left = f" ({_n(len(choice.skipped), 'skipped micrograph')} left out)" if choice.skipped else ""
        raise PickerError(f"nothing to export: no pick at or above the threshold {threshold:g} on the "
                          f"{_n(len(choice.chosen), 'micrograph')} chosen{left}; lower the threshold")
    _check_destination(request, len(choice.chosen), inputs)
    files = write_coordinates(table, request.path, request.fmt, box_size=request.box_size, suffix=request.suffix,
                              micrograph_names=request.micrograph_names, relion_project=request.relion_project)
    empty = tuple(k for k in choice.chosen if selection.counts[k] == 0)
    empty_files = request.fmt in PER_MICROGRAPH
    if empty_files:
        # The same writer, with no rows: a STAR with the header only, or an empty .box.
        for key in empty:
            target = request.path / _per_micrograph_name(request.fmt, key, request.suffix)
            files += write_coordinates(CoordinateTable.empty(), target, request.fmt, box_size=request.box_size,
                                       suffix=request.suffix)
    summary = ExportSummary(
        n_particles=len(table), n_micrographs=len(choice.chosen) - len(empty), files=list(files),
        skipped_micrographs=choice.skipped, empty_micrographs=empty, fmt=request.fmt, path=request.path,
        threshold=threshold, empty_files=empty_files and bool(empty), other_files=_other_files(request, files))
    logger.debug("%s", summary.describe())
    return summary


__all__ = ["Choice", "ExportRequest", "ExportSummary", "FORMAT_DESCRIPTIONS", "PER_MICROGRAPH", "as_saved",
           "choose_micrographs", "export_picks", "project_inputs", "saved_floats", "select_picks"]
