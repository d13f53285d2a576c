"""Coordinate files in and out: every format is an adapter around :class:`CoordinateTable`.

The canonical table holds particle *centres* in pixels of the original micrograph (x = column,
y = row; see :mod:`picker_gui.core.coords`). Each reader here turns one file format into that
table, each writer turns the table into the format; every convention of a format (EMAN lower-left
corners, a y axis measured from the other edge, coordinates on a binned grid, RELION's "no score"
value of -999) is handled in this module and nowhere else.

Formats
-------
========================  =====  =====  ========================================================
name                      read   write  what it is
========================  =====  =====  ========================================================
``star``                  yes    --     any STAR file; the content decides which STAR format
``relion``                yes    yes    RELION per-micrograph STAR, ``<mic>_<suffix>.star``
``relion-list``           yes    yes    RELION 4/5 ``data_coordinate_files`` list + its files
``star-particles``        yes    yes    one ``data_particles`` loop with micrograph names
``labels``                yes    yes    picker-gui's own ``labels.star``: ``data_particles`` and
                                        ``data_negatives``, each ``rlnMicrographName
                                        rlnCoordinateX rlnCoordinateY``; keeps negative labels
``box``                   yes    yes    EMAN ``.box``: ``x_ll y_ll w h [score]``, one micrograph
``topaz``                 yes    yes    ``image_name x_coord y_coord [score]`` (tab separated)
``csv``                   yes    yes    ``micrograph,x,y,score,kind,source`` (picker-gui's own)
``cbox``                  yes    --     crYOLO CBOX (``data_cryolo``; lower-left corners)
``cs``                    yes    --     cryoSPARC ``.cs`` numpy structured array
``json``                  yes    --     a JSON list of picks, ``[{"x": .., "y": .., "score": ..}, ..]``
                                        (Magellon's ``*_picks.json``), or such a list under
                                        ``particles``/``picks``/``coordinates``; one micrograph
                                        per file unless the records name theirs
========================  =====  =====  ========================================================

Transformations at the edge
---------------------------
Reading: ``canonical = file_value * scale``, then, with ``flip_y``, ``y = H - y`` where ``H`` is
the micrograph height in original pixels. Writing does the reverse in the reverse order: flip in
original pixels first, then ``file_value = canonical * scale``. A ``box_size`` is always in pixels
of the *file* (after ``scale``), so the width column of a written ``.box`` equals ``box_size``.

Names and writing
-----------------
STAR is read and written by :mod:`picker_gui.core.star` (not the ``starfile`` package, which
mangles names with quotes or ``#``): names with spaces, quotes, ``#`` or non-ASCII letters round
trip through every format that carries names (STAR and CSV quote them; Topaz text is tab
separated, so only a tab or a line break in a name is refused; ``.box`` and RELION
per-micrograph files carry the name in the file name, so ``/`` or NUL is refused there). Every
file is written through :func:`~picker_gui.core.paths.atomic_output`: a full disk or a crash
leaves the previous file as it was and no temporary file behind.

RELION 4/5 matches ``rlnMicrographName`` of a coordinate list against the full micrograph path
of its MotionCorr/CtfFind job and resolves ``rlnMicrographCoordinates`` from the RELION project
folder: :func:`relion_micrograph_names` reads both from a ``micrographs_ctf.star``, and
:func:`write_coordinates` takes them as ``micrograph_names`` and ``relion_project``.

The project's labels are kept in the ``labels`` format (:func:`write_labels_file`,
:func:`read_labels_file`; the latter also reads other STAR coordinate files and says so).

Every problem with a file is reported as a :class:`~picker_gui.core.errors.CoordinateFormatError`
that names the file and, where known, the line (text formats and STAR) or column (STAR/CSV).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from picker_gui.core import star
from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable, micrograph_key
from picker_gui.core.errors import CoordinateFormatError
from picker_gui.core.paths import atomic_output

if TYPE_CHECKING:
    import pandas as pd

    Blocks = dict[str, pd.DataFrame]

logger = logging.getLogger(__name__)

#: RELION's value for "no figure of merit" / "no angle".
RELION_NO_VALUE = -999.0

#: Name suffixes that per-micrograph coordinate files commonly carry after the micrograph key.
PICK_SUFFIXES = ("autopick", "manualpick", "pick", "picks", "coords", "topaz", "cryolo", "manual")

# STAR labels (without the leading underscore, as starfile gives them).
_MIC = "rlnMicrographName"
_MIC_COORDS = "rlnMicrographCoordinates"
_X = "rlnCoordinateX"
_Y = "rlnCoordinateY"
_FOM = "rlnAutopickFigureOfMerit"
_CLASS = "rlnClassNumber"
_PSI = "rlnAnglePsi"

# Header aliases accepted by the delimited-text readers (csv, topaz), compared case-insensitively.
_ALIASES: dict[str, tuple[str, ...]] = {
    "micrograph": ("micrograph", "image_name", "mic", "rlnmicrographname", "filename"),
    "x": ("x", "x_coord", "xcoord", "rlncoordinatex"),
    "y": ("y", "y_coord", "ycoord", "rlncoordinatey"),
    "score": ("score", "confidence", "fom", "rlnautopickfigureofmerit"),
    "kind": ("kind",),
    "source": ("source",),
}

_ALIAS_TO_COLUMN = {alias: canon for canon, aliases in _ALIASES.items() for alias in aliases}


def _canonical_column(name: str) -> str | None:
    """The canonical column a header or JSON field name stands for (any case, leading ``_``)."""
    return _ALIAS_TO_COLUMN.get(name.strip().lstrip("_").lower())


_CRYOSPARC_UID = re.compile(r"^\d{10,}_")

#: First comment line of a labels file written by picker-gui.
_LABELS_MARK = "picker-gui labels"
LABELS_COMMENT = f"{_LABELS_MARK}: particle centres in original-micrograph pixels (x = column, y = row)"
_LABEL_BLOCKS = (("particles", PARTICLE), ("negatives", NEGATIVE))
_LABEL_COLUMNS = (_MIC, _X, _Y)
#: What the messages tell a user to give when a box size is needed.
_NEEDS_BOX_SIZE = "needs the box size (--box-size)"


@dataclass(frozen=True)
class _ReadOptions:
    """What a reader may need besides the path."""

    box_size: float | None
    micrograph: str | None


@dataclass(frozen=True)
class _WriteOptions:
    """What a writer may need besides the table and the path."""

    box_size: float | None
    suffix: str
    #: micrograph key -> the name RELION knows (``rlnMicrographName``), for STAR lists/particles.
    micrograph_names: Mapping[str, str] | None = None
    #: RELION project folder that ``rlnMicrographCoordinates`` entries are relative to.
    relion_project: Path | None = None


Reader = Callable[[Path, _ReadOptions], CoordinateTable]
Writer = Callable[[CoordinateTable, Path, _WriteOptions], "list[Path]"]


@dataclass(frozen=True)
class _Format:
    """One entry of the format registry."""

    name: str
    extensions: tuple[str, ...]
    reader: Reader | None
    writer: Writer | None
    #: One file per micrograph (a folder of them is read/written as a set).
    per_micrograph: bool = False
    #: Stored as STAR, so a ``.star`` file is sniffed to tell it from the other STAR formats.
    star_based: bool = False


# ================================================================================================
# Small helpers
# ================================================================================================
def _format_number(value: float, decimals: int = 2) -> str:
    """An integer when ``value`` is integral, else at most ``decimals`` decimals (no trailing 0)."""
    if float(value).is_integer():
        return str(int(value))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _format_score(value: float) -> str:
    """Six significant digits, ``nan`` for a missing score."""
    return "nan" if math.isnan(value) else f"{value:.6g}"


def _parse_float(path: Path, text: str, *, line: int | None = None, column: str | None = None) -> float:
    """``float(text)`` or a :class:`CoordinateFormatError` naming the value and where it was."""
    if not text.strip():
        raise CoordinateFormatError(path, "the value is missing (empty field)", line=line, column=column)
    try:
        return float(text)
    except ValueError:
        raise CoordinateFormatError(path, f"value {text!r} is not a number",
                                    line=line, column=column) from None


def _optional_float(path: Path, text: str, *, line: int | None = None, column: str | None = None) -> float:
    """Like :func:`_parse_float` but an empty field, ``NA`` or ``None`` reads as NaN."""
    if text.strip().lower() in ("", "na", "<na>", "none", "null"):
        return math.nan
    return _parse_float(path, text, line=line, column=column)


def _check_finite(path: Path, x: np.ndarray, y: np.ndarray, *, lines: Sequence[int] | None = None,
                  x_name: str | None = None, y_name: str | None = None) -> None:
    """Raise when a coordinate is missing (NaN) or infinite, naming the first such row or line."""
    for values, name in ((x, x_name), (y, y_name)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            value = float(values[i])
            problem = ("the coordinate is missing (empty, NaN or NA)" if math.isnan(value)
                       else f"coordinate {value!r} is not a finite number")
            if lines is not None:
                raise CoordinateFormatError(path, problem, line=int(lines[i]), column=name)
            raise CoordinateFormatError(path, f"{problem} (row {i + 1})", column=name)


def _strip_pick_suffix(stem: str) -> str:
    """``mic01_autopick`` -> ``mic01`` for the common per-micrograph file suffixes."""
    for suffix in PICK_SUFFIXES:
        tail = "_" + suffix
        if stem.lower().endswith(tail) and len(stem) > len(tail):
            return stem[: -len(tail)]
    return stem


def _is_blank_file(path: Path) -> bool:
    """True for a file with no content other than whitespace."""
    size = path.stat().st_size
    if size == 0:
        return True
    if size > 4096:
        return False
    return not path.read_bytes().strip()


def _read_text_lines(path: Path) -> list[str]:
    """The lines of a text file (LF, CRLF or CR; not the other characters ``splitlines`` breaks at,
    which may be part of a name)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline=None) as fh:
            return fh.read().split("\n")
    except OSError as exc:
        raise CoordinateFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None


def _content_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for every line that is not blank or a ``#`` comment."""
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text


def _particles_only(table: CoordinateTable, path: Path, fmt: str) -> CoordinateTable:
    """Drop negative labels: formats without a kind column would turn them into particles."""
    negatives = table.kind == NEGATIVE
    if negatives.any():
        logger.info("%s: %d negative label(s) not written (format %r has no kind column)",
                    path, int(negatives.sum()), fmt)
        return table[~negatives]
    return table


def _make_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def _write_text(path: Path, text: str) -> None:
    """Write a whole text file atomically (see :func:`~picker_gui.core.paths.atomic_output`)."""
    _make_parent(path)
    with atomic_output(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _check_file_key(path: Path, key: str, fmt: str) -> None:
    """Refuse a micrograph key that cannot be a file name (format ``fmt`` names files by key)."""
    if key in ("", ".", "..") or "/" in key or "\0" in key:
        raise CoordinateFormatError(path, f"the micrograph name {key!r} cannot be a file name, and format "
                                          f"{fmt!r} names one file per micrograph after it; rename it")


# ================================================================================================
# STAR helpers
# ================================================================================================
def _read_star_blocks(path: Path) -> Blocks:
    """All data blocks of a STAR file as ``{name: DataFrame}``; key-value blocks become one row.

    Read by :func:`picker_gui.core.star.read_star`; the result also tells the line of each row.

    Raises
    ------
    CoordinateFormatError
        For an empty file, one that is not STAR, or a malformed one (naming the line).
    """
    return star.read_star(path)


class _RowLines:
    """The line number of each row of a STAR loop, worked out only when a message needs one."""

    def __init__(self, blocks: star.StarBlocks, name: str) -> None:
        self._blocks, self._name = blocks, name

    def __getitem__(self, row: int) -> int:
        return int(self._blocks.row_lines(self._name)[row])


def _row_lines(blocks: Blocks, name: str) -> _RowLines | None:
    """Line numbers of the rows of loop block ``name`` when the blocks were read from a file."""
    if isinstance(blocks, star.StarBlocks) and blocks.is_loop(name):
        return _RowLines(blocks, name)
    return None


def _block_labels(blocks: Blocks) -> dict[str, set[str]]:
    return {name: {str(c) for c in df.columns} for name, df in blocks.items()}


def _classify_star(labels: Mapping[str, set[str]]) -> str | None:
    """Which STAR coordinate format a set of blocks is (``None`` when it holds no coordinates).

    A ``negatives`` block with micrograph names and coordinates makes it picker-gui's ``labels``;
    otherwise the first block with coordinate labels decides.
    """
    negatives = labels.get("negatives")
    if negatives is not None and set(_LABEL_COLUMNS) <= negatives:
        return "labels"
    for name, cols in labels.items():
        if name == "coordinate_files" or _MIC_COORDS in cols:
            return "relion-list"
        if name == "cryolo" or "CoordinateX" in cols:
            return "cbox"
        if _X in cols or _Y in cols:
            return "star-particles" if _MIC in cols else "relion"
    return None


def _sniff_star_text(path: Path) -> str | None:
    """:func:`_classify_star` from the labels in the file text, stopping at the first decisive block.

    Cheap even for a particles STAR with millions of rows: only the headers up to the first block
    with coordinate labels are read. A file that starts with picker-gui's labels comment, or whose
    ``data_particles`` holds exactly the labels columns and is followed by a ``data_negatives``
    block (looked for line by line), is ``labels``.
    """
    labels: dict[str, set[str]] = {}
    current: set[str] | None = None
    ours = False
    fmt = None
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            for raw in fh:
                text = raw.strip()
                if not text:
                    continue
                if text.startswith("#"):
                    ours = ours or (current is None and text[1:].strip().startswith(_LABELS_MARK))
                    continue
                if text.startswith("data_"):
                    current = labels.setdefault(text.split()[0][5:], set())
                elif text.startswith("_") and current is not None:
                    current.add(text[1:].split()[0])
                elif text.startswith("loop_"):
                    continue
                elif current is not None and _classify_star(labels) is not None:
                    break  # first data row of a block with coordinates: its labels are complete
            fmt = _classify_star(labels)
            if fmt == "star-particles" and set(labels) <= {"particles", "negatives"}:
                if ours:
                    return "labels"
                if labels.get("particles") == set(_LABEL_COLUMNS) and "negatives" not in labels:
                    if any(raw.split(None, 1)[:1] == ["data_negatives"] for raw in fh):
                        return "labels"
    except OSError as exc:
        raise CoordinateFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return fmt


def _find_block(path: Path, blocks: Blocks, required: Sequence[str], *,
                names: Sequence[str] = ()) -> tuple[str, pd.DataFrame]:
    """The first block (preferring one named in ``names``) that has every ``required`` column.

    Raises
    ------
    CoordinateFormatError
        Naming the missing columns of the closest block and the columns that were found.
    """
    order = [n for n in names if n in blocks] + [n for n in blocks if n not in names]
    for name in order:
        if all(c in blocks[name].columns for c in required):
            return name, blocks[name]
    # Report against the block that has most of what we need.
    best = max(order, key=lambda n: sum(c in blocks[n].columns for c in required))
    found = [str(c) for c in blocks[best].columns]
    missing = [c for c in required if c not in found]
    block = f"data_{best}" if best else "data_"
    raise CoordinateFormatError(
        path,
        f"missing column(s) {', '.join(missing)} in block {block} "
        f"(found: {', '.join(found) if found else 'no columns'})",
    )


def _numeric_column(path: Path, df: pd.DataFrame, column: str, lines: Sequence[int] | None = None) -> np.ndarray:
    """A STAR/CSV column as float64, or an error naming the column and the first bad value."""
    import pandas as pd

    series = df[column]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.empty(len(series), dtype=np.float64)
    for i, value in enumerate(series.tolist()):
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            if lines is not None:
                raise CoordinateFormatError(path, f"value {value!r} is not a number", line=int(lines[i]),
                                            column=column) from None
            raise CoordinateFormatError(path, f"value {value!r} in row {i + 1} is not a number",
                                        column=column) from None
    return out


def _string_column(df: pd.DataFrame, column: str) -> list[str]:
    series = df[column]
    if not series.isna().any():
        return [str(v) for v in series.tolist()]
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in series.tolist()]


def _fom_to_score(fom: np.ndarray) -> np.ndarray:
    """RELION figure of merit -> score; -999 means "none" and becomes NaN."""
    return np.where(fom == RELION_NO_VALUE, np.nan, fom)


def _star_text(path: Path, blocks: Mapping[str, object], comment: str | None = None) -> str:
    return star.write_star(blocks, comment=comment, path=path)


def _write_star(path: Path, blocks: Mapping[str, object], comment: str | None = None) -> None:
    """Write STAR blocks atomically; the text is made (and checked) before the file is touched."""
    _write_text(path, _star_text(path, blocks, comment))


def _relion_loop(table: CoordinateTable) -> dict[str, np.ndarray]:
    """The RELION per-micrograph loop for the rows of one micrograph."""
    n = len(table)
    return {
        _X: table.x,
        _Y: table.y,
        _CLASS: np.zeros(n, dtype=int),
        _FOM: np.where(np.isnan(table.score), RELION_NO_VALUE, table.score),
        _PSI: np.full(n, RELION_NO_VALUE),
    }


def _relion_names(table: CoordinateTable, path: Path, opts: _WriteOptions) -> np.ndarray:
    """``rlnMicrographName`` of every row: the name RELION knows when ``micrograph_names`` has it
    (matched by micrograph key), else the table's name; the micrographs without one are logged."""
    if opts.micrograph_names is None:
        return table.micrograph
    by_key = {micrograph_key(k): str(v) for k, v in opts.micrograph_names.items()}
    missing = [k for k in table.micrographs() if k not in by_key]
    if missing:
        logger.warning("%s: no RELION micrograph name for %d micrograph(s) (%s%s); the table's names are written",
                       path, len(missing), ", ".join(missing[:10]), ", ..." if len(missing) > 10 else "")
    return table.named_by_key(by_key).micrograph


def _per_micrograph_targets(table: CoordinateTable, path: Path, extension: str,
                            filename: Callable[[str], str], fmt: str) -> list[tuple[Path, CoordinateTable]]:
    """Where each micrograph of a per-micrograph format goes.

    A ``path`` ending in ``extension`` (and not an existing folder) is one file, allowed only for
    a table of at most one micrograph; anything else is a folder, created if missing. Every key
    is checked to be a possible file name before the folder is made.
    """
    if path.suffix.lower() == extension and not path.is_dir():
        mics = table.micrographs()
        if len(mics) > 1:
            raise CoordinateFormatError(
                path,
                f"a {extension} file holds one micrograph but the table has {len(mics)} "
                f"({', '.join(mics[:3])}{', ...' if len(mics) > 3 else ''}); give a folder to write "
                f"one {fmt} file per micrograph",
            )
        return [(path, table)]
    if path.exists() and not path.is_dir():
        raise CoordinateFormatError(path, f"format {fmt!r} writes one file per micrograph into a folder, "
                                          f"but this is an existing file")
    groups = list(table.groupby_micrograph())
    for key, _ in groups:
        _check_file_key(path, key, fmt)
    path.mkdir(parents=True, exist_ok=True)
    return [(path / filename(key), rows) for key, rows in groups]


# ================================================================================================
# Readers: each returns the table in FILE coordinates (centres, before scale/flip), source "" unless
# the file says otherwise.
# ================================================================================================
def _no_coordinates(path: Path, blocks: Blocks) -> CoordinateFormatError:
    found = "; ".join(f"data_{n}: {', '.join(sorted(c)) or 'no columns'}" for n, c in _block_labels(blocks).items())
    return CoordinateFormatError(path, f"no coordinate columns ({_X}, {_Y} or {_MIC_COORDS}) in any "
                                       f"block (found {found})")


def _read_star_any(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``star``: parse once, then hand the blocks to the STAR format they look like."""
    blocks = _read_star_blocks(path)
    fmt = _classify_star(_block_labels(blocks))
    if fmt is None:
        raise _no_coordinates(path, blocks)
    logger.debug("%s: STAR content looks like %s", path, fmt)
    return _STAR_BLOCK_READERS[fmt](path, blocks, opts)


def _coordinates(path: Path, blocks: Blocks, name: str, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns ``x_name``, ``y_name`` of block ``name`` as finite float64 arrays."""
    df, lines = blocks[name], _row_lines(blocks, name)
    x = _numeric_column(path, df, x_name, lines)
    y = _numeric_column(path, df, y_name, lines)
    _check_finite(path, x, y, lines=lines, x_name=x_name, y_name=y_name)
    return x, y


def _relion_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    name, df = _find_block(path, blocks, (_X, _Y))
    x, y = _coordinates(path, blocks, name, _X, _Y)
    score = _fom_to_score(_numeric_column(path, df, _FOM, _row_lines(blocks, name))) if _FOM in df.columns else None
    if opts.micrograph is not None:
        names: object = opts.micrograph
    elif _MIC in df.columns:
        names = _string_column(df, _MIC)
    else:
        names = _strip_pick_suffix(path.stem)
    return CoordinateTable.from_arrays(names, x, y, score)


def _read_relion(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``relion``: RELION per-micrograph STAR; micrograph from the argument or the file name."""
    return _relion_from_blocks(path, _read_star_blocks(path), opts)


def _particles_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    name, df = _find_block(path, blocks, (_MIC, _X, _Y), names=("particles",))
    x, y = _coordinates(path, blocks, name, _X, _Y)
    score = _fom_to_score(_numeric_column(path, df, _FOM, _row_lines(blocks, name))) if _FOM in df.columns else None
    return CoordinateTable.from_arrays(_string_column(df, _MIC), x, y, score)


def _read_star_particles(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``star-particles``: any block with rlnMicrographName + rlnCoordinateX/Y (RELION 3.1 too)."""
    return _particles_from_blocks(path, _read_star_blocks(path), opts)


def _labels_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    """``labels``: ``data_particles`` rows are particles, ``data_negatives`` rows negatives."""
    parts = []
    for name, kind in _LABEL_BLOCKS:
        if name not in blocks:
            continue
        df = blocks[name]
        missing = [c for c in _LABEL_COLUMNS if c not in df.columns]
        if missing:
            found = ", ".join(str(c) for c in df.columns) or "no columns"
            raise CoordinateFormatError(path, f"missing column(s) {', '.join(missing)} in block data_{name} "
                                              f"(found: {found})")
        x, y = _coordinates(path, blocks, name, _X, _Y)
        parts.append(CoordinateTable.from_arrays(_string_column(df, _MIC), x, y, kind=kind))
    if not parts:
        raise CoordinateFormatError(path, f"no data_particles or data_negatives block (a picker-gui labels file "
                                          f"has them, with columns {', '.join(_LABEL_COLUMNS)})")
    return CoordinateTable.concat(parts)


def _read_labels(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``labels``: picker-gui's own labels file, negative labels included."""
    return _labels_from_blocks(path, _read_star_blocks(path), opts)


def _resolve_listed(list_path: Path, entry: str) -> Path | None:
    """A coordinate file named in a list: relative to the list's folder, then each parent folder
    (RELION writes entries relative to its project folder, an ancestor of the list)."""
    candidate = Path(entry)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in [list_path.parent, *list_path.parent.resolve().parents]:
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _list_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    name, df = _find_block(path, blocks, (_MIC, _MIC_COORDS), names=("coordinate_files",))
    lines = _row_lines(blocks, name)
    tables = []
    for i, (mic, entry) in enumerate(zip(_string_column(df, _MIC), _string_column(df, _MIC_COORDS)), start=1):
        if not entry or entry.lower() == "none":
            logger.info("%s: entry %d (%s) has no coordinate file; skipped", path, i, mic)
            continue
        target = _resolve_listed(path, entry)
        if target is None:
            raise CoordinateFormatError(
                path,
                f"entry {i} (micrograph {mic}): coordinate file {entry!r} not found relative to "
                f"{path.parent} or any of its parent folders",
                line=None if lines is None else int(lines[i - 1]),
                column=_MIC_COORDS,
            )
        sub_blocks = _read_star_blocks(target)
        tables.append(_relion_from_blocks(target, sub_blocks, _ReadOptions(opts.box_size, mic or None)))
    return CoordinateTable.concat(tables)


def _read_relion_list(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``relion-list``: a RELION 4/5 ``data_coordinate_files`` list and the files it names."""
    return _list_from_blocks(path, _read_star_blocks(path), opts)


def _cbox_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    name, df = _find_block(path, blocks, ("CoordinateX", "CoordinateY"), names=("cryolo",))
    lines = _row_lines(blocks, name)
    x_ll, y_ll = _coordinates(path, blocks, name, "CoordinateX", "CoordinateY")
    half = []
    for column in ("Width", "Height"):
        if column in df.columns:
            size = _numeric_column(path, df, column, lines)
            if opts.box_size is not None:
                size = np.where(np.isfinite(size), size, opts.box_size)
            if not np.all(np.isfinite(size)):
                raise CoordinateFormatError(path, f"the box size is missing on some rows; reading this file "
                                                  f"{_NEEDS_BOX_SIZE}", column=column)
        elif opts.box_size is not None:
            size = np.full(len(df), float(opts.box_size))
        else:
            raise CoordinateFormatError(path, f"no {column} column to find the box centre from; reading this "
                                              f"file {_NEEDS_BOX_SIZE}")
        half.append(size / 2.0)
    score = _numeric_column(path, df, "Confidence", lines) if "Confidence" in df.columns else None
    mic = opts.micrograph if opts.micrograph is not None else path.stem
    return CoordinateTable.from_arrays(mic, x_ll + half[0], y_ll + half[1], score)


def _read_cbox(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``cbox``: crYOLO CBOX; ``CoordinateX/Y`` are lower-left corners, score = ``Confidence``."""
    return _cbox_from_blocks(path, _read_star_blocks(path), opts)


def _read_box(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``box``: EMAN ``x_ll y_ll w h [score]``; 2-column files need ``box_size``."""
    rows = list(_content_lines(_read_text_lines(path)))
    if not rows:
        raise CoordinateFormatError(path, "the file is empty (no boxes)")
    xs, ys, scores, lines = [], [], [], []
    for number, text in rows:
        fields = text.split()
        if len(fields) not in (2, 4, 5):
            raise CoordinateFormatError(
                path, f"expected 4 or 5 fields (x y width height [score]), found {len(fields)}: {text!r}",
                line=number)
        values = [_parse_float(path, f, line=number) for f in fields]
        if len(values) == 2:
            if opts.box_size is None:
                raise CoordinateFormatError(path, f"only 2 fields (x y corner) and no width/height; reading this "
                                                  f"file {_NEEDS_BOX_SIZE}", line=number)
            width = height = float(opts.box_size)
        else:
            width, height = values[2], values[3]
        xs.append(values[0] + width / 2.0)
        ys.append(values[1] + height / 2.0)
        scores.append(values[4] if len(values) == 5 else math.nan)
        lines.append(number)
    x, y = np.asarray(xs), np.asarray(ys)
    _check_finite(path, x, y, lines=lines)
    name = opts.micrograph if opts.micrograph is not None else path.stem
    return CoordinateTable.from_arrays(name, x, y, scores)


def _columns_from_header(path: Path, header: Sequence[str], line: int) -> dict[str, int]:
    """Map canonical column names to header positions using :data:`_ALIASES`."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        canon = _canonical_column(name)
        if canon is not None and canon not in positions:
            positions[canon] = i
    missing = [c for c in ("x", "y") if c not in positions]
    if missing:
        raise CoordinateFormatError(
            path,
            f"missing column(s) {', '.join(missing)} in the header (found: {', '.join(header) or 'nothing'}; "
            f"accepted names: x = {'|'.join(_ALIASES['x'])}, y = {'|'.join(_ALIASES['y'])})",
            line=line,
        )
    return positions


def _table_from_rows(path: Path, header: Sequence[str], header_line: int,
                     rows: Iterable[tuple[int, Sequence[str]]], opts: _ReadOptions) -> CoordinateTable:
    """Shared body of the delimited-text readers (csv, topaz)."""
    cols = _columns_from_header(path, header, header_line)
    names, xs, ys, scores, kinds, sources, lines = [], [], [], [], [], [], []
    default_name = opts.micrograph if opts.micrograph is not None else path.stem
    for number, fields in rows:
        if len(fields) != len(header):
            raise CoordinateFormatError(path, f"expected {len(header)} fields like the header, found "
                                              f"{len(fields)}", line=number)
        xs.append(_parse_float(path, fields[cols["x"]], line=number, column=header[cols["x"]]))
        ys.append(_parse_float(path, fields[cols["y"]], line=number, column=header[cols["y"]]))
        scores.append(_optional_float(path, fields[cols["score"]], line=number, column=header[cols["score"]])
                      if "score" in cols else math.nan)
        names.append(fields[cols["micrograph"]].strip() if "micrograph" in cols else default_name)
        kind = fields[cols["kind"]].strip().lower() if "kind" in cols else ""
        if kind not in ("", PARTICLE, NEGATIVE):
            raise CoordinateFormatError(path, f"unknown kind {kind!r}; expected {PARTICLE!r} or {NEGATIVE!r}",
                                        line=number, column=header[cols["kind"]])
        kinds.append(kind or PARTICLE)
        sources.append(fields[cols["source"]].strip() if "source" in cols else "")
        lines.append(number)
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    _check_finite(path, x, y, lines=lines, x_name=header[cols["x"]], y_name=header[cols["y"]])
    return CoordinateTable.from_arrays(names, x, y, scores, kind=kinds, source=sources)


def _read_topaz(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``topaz``: tab-separated ``image_name x_coord y_coord [score]`` with a header line.

    Fields are split at tabs when the header has tabs (so a name may hold spaces), else at
    whitespace. ``#`` lines before the header are comments; after it, a line that starts with
    ``#`` is a comment only when it does not have the header's number of fields (a micrograph
    may be called ``#12``).
    """
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    tabs = False
    for number, raw in enumerate(_read_text_lines(path), start=1):
        text = raw.strip()
        if not text:
            continue
        if header is None:
            if not text.startswith("#"):
                tabs = "\t" in text
                header, header_line = [h.strip() for h in (text.split("\t") if tabs else text.split())], number
            continue
        fields = text.split("\t") if tabs else text.split()
        if text.startswith("#") and len(fields) != len(header):
            continue
        rows.append((number, fields))
    if header is None:
        raise CoordinateFormatError(path, "the file is empty (no header line)")
    return _table_from_rows(path, header, header_line, rows, opts)


def _read_csv(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``csv``: comma-separated with a header; column names are matched case-insensitively.

    A line is a comment when its text starts with ``#`` (a quoted ``"#mic"`` is a value; the
    writer quotes such a first field).
    """
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    at_record_start = True

    def source(fh: Iterable[str]) -> Iterator[str]:
        """The file's lines, a comment line replaced by an empty one (line numbers stay right);
        a line inside a quoted multi-line value is never a comment."""
        nonlocal at_record_start
        for raw in fh:
            if at_record_start and raw.startswith("#"):
                yield "\n"
            else:
                at_record_start = False
                yield raw

    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            reader = csv.reader(source(fh))
            try:
                for fields in reader:
                    at_record_start = True
                    number = reader.line_num
                    if not fields or all(not f.strip() for f in fields):
                        continue
                    if header is None:
                        header, header_line = [f.strip() for f in fields], number
                    else:
                        rows.append((number, fields))
            except csv.Error as exc:
                raise CoordinateFormatError(path, f"malformed CSV ({exc})", line=reader.line_num) from None
    except OSError as exc:
        raise CoordinateFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    if header is None:
        raise CoordinateFormatError(path, "the file is empty (no header line)")
    return _table_from_rows(path, header, header_line, rows, opts)


#: Keys under which a JSON object may hold its list of picks.
_JSON_LIST_KEYS = ("particles", "picks", "coordinates", "coords", "boxes")


def _read_json(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``json``: a list of picks, each an object with x/y (the CSV header's names, any case) and
    optionally a score and a micrograph, or ``[x, y]`` / ``[x, y, score]``; the list may sit under
    one of :data:`_JSON_LIST_KEYS`. Other fields (Magellon's ``id``) are ignored. Without a
    micrograph field the name is the file's (``--micrograph`` wins), as for ``.box``.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CoordinateFormatError(path, f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CoordinateFormatError(path, f"not valid JSON ({exc.msg}, column {exc.colno})", line=exc.lineno) from None
    if isinstance(data, dict):
        keys = [k for k in data if str(k).lower() in _JSON_LIST_KEYS and isinstance(data[k], list)]
        if len(keys) != 1:
            raise CoordinateFormatError(
                path, f"a JSON object needs one list of picks under {'/'.join(_JSON_LIST_KEYS)} "
                      f"(found keys: {', '.join(map(str, data)) or 'none'})")
        data = data[keys[0]]
    if not isinstance(data, list):
        raise CoordinateFormatError(path, f"expected a list of picks, found a JSON {type(data).__name__}")
    default_name = opts.micrograph if opts.micrograph is not None else path.stem
    names, xs, ys, scores = [], [], [], []

    def value(v: object, i: int, what: str, optional: bool = False) -> float:
        where = f"pick {i + 1} ({what})"
        if v is None and optional:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise CoordinateFormatError(path, f"{where}: {v!r} is not a number")
        try:
            return float(v)
        except ValueError:
            raise CoordinateFormatError(path, f"{where}: {v!r} is not a number") from None

    for i, rec in enumerate(data):
        if isinstance(rec, dict):
            fields: dict[str, object] = {}
            for key, v in rec.items():
                canon = _canonical_column(str(key))
                if canon is not None and canon not in fields:
                    fields[canon] = v
            missing = [c for c in ("x", "y") if c not in fields]
            if missing:
                raise CoordinateFormatError(
                    path, f"pick {i + 1} has no {' or '.join(missing)} (found: {', '.join(map(str, rec)) or 'nothing'}; "
                          f"accepted names: x = {'|'.join(_ALIASES['x'])}, y = {'|'.join(_ALIASES['y'])})")
            xs.append(value(fields["x"], i, "x"))
            ys.append(value(fields["y"], i, "y"))
            scores.append(value(fields.get("score"), i, "score", optional=True))
            mic = fields.get("micrograph")
            names.append(str(mic).strip() if mic not in (None, "") else default_name)
        elif isinstance(rec, list) and len(rec) in (2, 3):
            xs.append(value(rec[0], i, "x"))
            ys.append(value(rec[1], i, "y"))
            scores.append(value(rec[2], i, "score", optional=True) if len(rec) == 3 else math.nan)
            names.append(default_name)
        else:
            raise CoordinateFormatError(path, f"pick {i + 1}: expected an object with x and y or a list "
                                              f"[x, y(, score)], found {json.dumps(rec)[:60]}")
    x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    _check_finite(path, x, y)
    return CoordinateTable.from_arrays(names if names else default_name, x, y, np.asarray(scores, dtype=np.float64))


_NUMPY_MAGIC = b"\x93NUMPY"


def _read_cs(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``cs``: cryoSPARC numpy structured array of picks/particles."""
    try:
        with open(path, "rb") as fh:
            if fh.read(len(_NUMPY_MAGIC)) != _NUMPY_MAGIC:
                raise CoordinateFormatError(path, "not a cryoSPARC .cs file (not a numpy array file)")
            fh.seek(0)
            arr = np.load(fh, allow_pickle=False)
    except CoordinateFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise CoordinateFormatError(path, "not a cryoSPARC .cs file (it holds Python objects, not a numpy "
                                              "structured array)") from None
        raise CoordinateFormatError(path, f"not a readable cryoSPARC .cs file ({exc})") from None
    except Exception as exc:  # numpy raises EOFError/OSError/... for a damaged file
        raise CoordinateFormatError(
            path, f"not a readable cryoSPARC .cs file ({type(exc).__name__}: {exc})") from None
    names = arr.dtype.names if isinstance(arr, np.ndarray) else None
    if not names:
        raise CoordinateFormatError(path, "not a cryoSPARC .cs file (not a numpy structured array)")
    required = ("location/micrograph_path", "location/micrograph_shape",
                "location/center_x_frac", "location/center_y_frac")
    missing = [f for f in required if f not in names]
    if missing:
        more = ", ..." if len(names) > 12 else ""
        raise CoordinateFormatError(path, f"missing field(s) {', '.join(missing)} "
                                          f"(found: {', '.join(names[:12])}{more})")
    arr = arr.reshape(-1)
    shape = np.asarray(arr["location/micrograph_shape"], dtype=np.float64).reshape(len(arr), -1)
    if shape.shape[1] < 2:
        raise CoordinateFormatError(path, "location/micrograph_shape must hold [ny, nx] per row",
                                    column="location/micrograph_shape")
    x = np.asarray(arr["location/center_x_frac"], dtype=np.float64) * shape[:, 1]
    y = np.asarray(arr["location/center_y_frac"], dtype=np.float64) * shape[:, 0]
    _check_finite(path, x, y, x_name="location/center_x_frac", y_name="location/center_y_frac")
    score = None
    if "pick_stats/ncc_score" in names:
        score = np.asarray(arr["pick_stats/ncc_score"], dtype=np.float64)
    if opts.micrograph is not None:
        mics: object = opts.micrograph
    else:
        mics = [_cryosparc_name(v) for v in arr["location/micrograph_path"]]
    return CoordinateTable.from_arrays(mics, x, y, score)


def _cryosparc_name(value: object) -> str:
    """Decode a cryoSPARC micrograph path and drop the ``<uid>_`` prefix of its basename."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    path = PurePosixPath(text.replace("\\", "/"))
    base = _CRYOSPARC_UID.sub("", path.name)
    return base if str(path.parent) == "." else str(path.parent / base)


_STAR_BLOCK_READERS: dict[str, Callable[[Path, Blocks, _ReadOptions], CoordinateTable]] = {
    "relion": _relion_from_blocks,
    "relion-list": _list_from_blocks,
    "star-particles": _particles_from_blocks,
    "labels": _labels_from_blocks,
    "cbox": _cbox_from_blocks,
}


# ================================================================================================
# Writers: the table arrives in FILE coordinates (after flip/scale); each returns the files written.
# Every file is written atomically, and its whole text is made (and checked) before any is written.
# ================================================================================================
def _write_relion(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``relion``: one ``<key>_<suffix>.star`` per micrograph in the folder ``path``."""
    table = _particles_only(table, path, "relion")
    written = []
    for target, rows in _per_micrograph_targets(table, path, ".star", lambda k: _relion_name(k, opts.suffix),
                                                "relion"):
        _write_star(target, {"": _relion_loop(rows)})
        written.append(target)
    return written


def _relion_name(key: str, suffix: str) -> str:
    return f"{key}_{suffix}.star" if suffix else f"{key}.star"


def _list_entry(target: Path, list_path: Path, project: Path | None) -> str:
    """How a list names a coordinate file: relative to ``project`` (RELION's project folder) when
    given and the file lies inside it, else absolute; without ``project``, relative to the list."""
    if project is None:
        return target.relative_to(list_path.parent).as_posix()
    resolved = target.resolve()
    try:
        return resolved.relative_to(project).as_posix()
    except ValueError:
        logger.warning("%s: %s is outside the RELION project %s; written as an absolute path",
                       list_path, target, project)
        return resolved.as_posix()


def _write_relion_list(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``relion-list``: the list at ``path`` plus ``coordinates/<key>_<suffix>.star`` next to it.

    ``rlnMicrographName`` is the table's name, or the name RELION knows from
    ``opts.micrograph_names``. Entries are relative to ``opts.relion_project`` when given, else to
    the list file's folder (see :func:`_resolve_listed`). A ``path`` without ``.star`` is a folder
    that gets ``<suffix>.star``.
    """
    if path.suffix.lower() != ".star" or path.is_dir():
        path = path / f"{opts.suffix or 'coordinates'}.star"
    table = _particles_only(table, path, "relion-list")
    folder = path.parent / "coordinates"
    project = Path(opts.relion_project).resolve() if opts.relion_project is not None else None
    groups = list(table.groupby_micrograph())
    for key, _ in groups:
        _check_file_key(path, key, "relion-list")
    targets = [folder / _relion_name(key, opts.suffix) for key, _ in groups]
    firsts = CoordinateTable.concat(rows[:1] for _, rows in groups)  # one row per micrograph
    names = _relion_names(firsts, path, opts)
    entries = [_list_entry(target, path, project) for target in targets]
    list_text = _star_text(path, {"coordinate_files": {_MIC: np.asarray(names, dtype=object),
                                                       _MIC_COORDS: np.array(entries, dtype=object)}})
    folder.mkdir(parents=True, exist_ok=True)
    for target, (_, rows) in zip(targets, groups):
        _write_star(target, {"": _relion_loop(rows)})
    _write_text(path, list_text)
    return [path, *targets]


def _write_star_particles(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``star-particles``: one ``data_particles`` loop; FOM column only when there are scores."""
    table = _particles_only(table, path, "star-particles")
    columns = {_MIC: _relion_names(table, path, opts), _X: table.x, _Y: table.y}
    if table.has_scores:
        columns[_FOM] = np.where(np.isnan(table.score), RELION_NO_VALUE, table.score)
    _write_star(path, {"particles": columns})
    return [path]


def labels_star_text(table: CoordinateTable, *, path: str | os.PathLike[str] = "labels.star") -> str:
    """Labels as the text of a ``labels`` file: ``data_particles`` then ``data_negatives``.

    Raises
    ------
    CoordinateFormatError
        A coordinate that is NaN or infinite, or a name a STAR file cannot hold (a line break).
    """
    bad = ~(np.isfinite(table.x) & np.isfinite(table.y))
    if bad.any():
        raise CoordinateFormatError(path, f"the labels have {int(bad.sum())} coordinate(s) that are NaN or "
                                          f"infinite; nothing written")
    blocks = {}
    for name, kind in _LABEL_BLOCKS:
        part = table[table.kind == kind]
        blocks[name] = {_MIC: part.micrograph, _X: part.x, _Y: part.y}
    return star.write_star(blocks, comment=LABELS_COMMENT, path=path)


def write_labels_file(path: str | os.PathLike[str], table: CoordinateTable) -> Path:
    """Write labels (negatives included) as a ``labels`` file, atomically.

    The folder is made when missing; a full disk or a crash leaves the previous file intact.
    """
    p = Path(path)
    _write_text(p, labels_star_text(table, path=p))
    return p


def _write_labels(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``labels``: picker-gui's own labels file; a folder gets ``labels.star``."""
    if path.is_dir() or not path.suffix:
        path = path / "labels.star"
    return [write_labels_file(path, table)]


def _write_box(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``box``: EMAN lower-left corners, one ``<key>.box`` per micrograph (or one given file)."""
    if opts.box_size is None or not opts.box_size > 0:
        raise CoordinateFormatError(path, f"writing .box files {_NEEDS_BOX_SIZE}: the box edge in pixels of "
                                          f"the written file, e.g. 256")
    table = _particles_only(table, path, "box")
    size = float(opts.box_size)
    size_text = _format_number(size)
    with_score = table.has_scores
    written = []
    for target, rows in _per_micrograph_targets(table, path, ".box", lambda k: f"{k}.box", "box"):
        out = []
        for x, y, s in zip(rows.x, rows.y, rows.score):
            fields = [_format_number(x - size / 2.0), _format_number(y - size / 2.0), size_text, size_text]
            if with_score:
                fields.append(_format_score(s))
            out.append("\t".join(fields) + "\n")
        _write_text(target, "".join(out))
        written.append(target)
    return written


def _write_topaz(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``topaz``: ``image_name x_coord y_coord [score]``; image_name is the micrograph key.

    Tab separated, without quoting: a key with a tab or a line break cannot be written.
    """
    table = _particles_only(table, path, "topaz")
    for key in table.micrographs():
        if any(c in key for c in "\t\n\r"):
            raise CoordinateFormatError(path, f"the micrograph name {key!r} holds a tab or a line break, which a "
                                              f"tab-separated Topaz file cannot hold; rename it or write csv")
    with_score = table.has_scores
    header = ["image_name", "x_coord", "y_coord"] + (["score"] if with_score else [])
    out = ["\t".join(header) + "\n"]
    for key, x, y, s in zip(table.keys, table.x, table.y, table.score):
        fields = [key, _format_number(x), _format_number(y)]
        if with_score:
            fields.append(_format_score(s))
        out.append("\t".join(fields) + "\n")
    _write_text(path, "".join(out))
    return [path]


def _write_csv(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``csv``: every column of the table, full float precision, empty score where there is none.

    A row whose micrograph name starts with ``#`` is written fully quoted, so that the reader
    does not take it for a comment.
    """
    out = io.StringIO()
    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(["micrograph", "x", "y", "score", "kind", "source"])
    rows = zip(table.micrograph, table.x, table.y, table.score, table.kind, table.source)
    for mic, x, y, score, kind, source in rows:
        score_text = "" if math.isnan(score) else repr(float(score))
        writer = quoted if str(mic).startswith("#") else plain
        writer.writerow([mic, repr(float(x)), repr(float(y)), score_text, kind, source])
    _write_text(path, out.getvalue())
    return [path]


# ================================================================================================
# Registry
# ================================================================================================
_FORMATS: dict[str, _Format] = {
    f.name: f
    for f in (
        _Format("star", (".star",), _read_star_any, None, star_based=True),
        _Format("relion", (".star",), _read_relion, _write_relion, per_micrograph=True, star_based=True),
        _Format("relion-list", (".star",), _read_relion_list, _write_relion_list, star_based=True),
        _Format("star-particles", (".star",), _read_star_particles, _write_star_particles, star_based=True),
        _Format("labels", (".star",), _read_labels, _write_labels, star_based=True),
        _Format("box", (".box",), _read_box, _write_box, per_micrograph=True),
        _Format("topaz", (".txt", ".tsv"), _read_topaz, _write_topaz),
        _Format("csv", (".csv",), _read_csv, _write_csv),
        _Format("cbox", (".cbox",), _read_cbox, None, per_micrograph=True),
        _Format("cs", (".cs",), _read_cs, None),
        _Format("json", (".json",), _read_json, None, per_micrograph=True),
    )
}

#: Formats :func:`read_coordinates` understands (``star`` = any STAR, decided by content).
READ_FORMATS: tuple[str, ...] = tuple(n for n, f in _FORMATS.items() if f.reader is not None)
#: Formats :func:`write_coordinates` can produce.
WRITE_FORMATS: tuple[str, ...] = tuple(n for n, f in _FORMATS.items() if f.writer is not None)

#: File extension -> format, for reading (``.star`` is sniffed) and for writing.
_READ_BY_EXTENSION = {".star": "star", ".box": "box", ".txt": "topaz", ".tsv": "topaz", ".csv": "csv",
                      ".cbox": "cbox", ".cs": "cs", ".json": "json"}
_WRITE_BY_EXTENSION = {".star": "star-particles", ".box": "box", ".txt": "topaz", ".tsv": "topaz",
                       ".csv": "csv"}
#: Names accepted for writing that stand for another format.
_WRITE_ALIASES = {"star": "star-particles"}


def read_file_filter() -> str:
    """A file dialog's name filter for every readable coordinate file (from the registry)."""
    patterns = " ".join(f"*{ext}" for ext in _READ_BY_EXTENSION)
    return f"Coordinates ({patterns});;All files (*)"


def _known(for_writing: bool) -> str:
    return ", ".join(WRITE_FORMATS if for_writing else READ_FORMATS)


def _normalise_format(path: Path, fmt: str, *, for_writing: bool) -> str:
    name = str(fmt).strip().lower()
    if for_writing:
        name = _WRITE_ALIASES.get(name, name)
    allowed = WRITE_FORMATS if for_writing else READ_FORMATS
    if name not in allowed:
        if for_writing and name in READ_FORMATS:
            problem = f"format {name!r} can be read but not written; writable formats: {_known(True)}"
        else:
            problem = (f"unknown coordinate format {fmt!r}; known formats for "
                       f"{'writing' if for_writing else 'reading'}: {_known(for_writing)}")
        raise CoordinateFormatError(path, problem)
    return name


# ================================================================================================
# Public API
# ================================================================================================
def detect_format(path: str | os.PathLike[str], *, for_writing: bool = False) -> str:
    """Tell a coordinate file's format from its extension (and, for ``.star`` on read, its content).

    Parameters
    ----------
    path : path-like
        A file, or on read a folder of per-micrograph files.
    for_writing : bool
        Answer for writing: ``.star`` means ``star-particles``, and the path need not exist.

    Returns
    -------
    str
        One of :data:`READ_FORMATS` (never ``"star"`` for an existing STAR file with coordinates)
        or, with ``for_writing``, of :data:`WRITE_FORMATS`.

    Raises
    ------
    CoordinateFormatError
        Unknown extension, a nonexistent path (on read), a folder on write, or a folder on read
        whose per-micrograph files are missing or of several formats.
    """
    p = Path(path)
    if for_writing:
        if p.is_dir() or not p.suffix:
            raise CoordinateFormatError(p, f"cannot tell the format from a folder name; pass fmt "
                                           f"(one of {_known(True)}; 'relion' and 'box' write one file "
                                           f"per micrograph into a folder)")
        ext = p.suffix.lower()
        if ext in _WRITE_BY_EXTENSION:
            return _WRITE_BY_EXTENSION[ext]
        if ext in _READ_BY_EXTENSION:
            raise CoordinateFormatError(p, f"{ext} files ({_READ_BY_EXTENSION[ext]}) can be read but not "
                                           f"written; writable formats: {_known(True)}")
        raise CoordinateFormatError(p, f"unknown coordinate file extension {ext!r}; known formats: "
                                       f"{_known(True)} (.star, .box, .txt/.tsv, .csv)")
    if not p.exists():
        raise CoordinateFormatError(p, "no such file or folder")
    if p.is_dir():
        return _detect_folder_format(p)
    ext = p.suffix.lower()
    fmt = _READ_BY_EXTENSION.get(ext)
    if fmt is None:
        raise CoordinateFormatError(p, f"unknown coordinate file extension {ext or '(none)'!r}; "
                                       f"known formats: "
                                       f"{_known(False)} (.star, .box, .txt/.tsv, .csv, .cbox, .cs, .json)")
    if fmt == "star":
        return _sniff_star_text(p) or "star"  # "star": let the reader report what is missing
    return fmt


def _file_format(path: Path) -> str | None:
    """The per-micrograph format of one file in a folder, or None when it is not one."""
    fmt = _READ_BY_EXTENSION.get(path.suffix.lower())
    if fmt == "star":
        fmt = _sniff_star_text(path)
    return fmt if fmt is not None and _FORMATS[fmt].per_micrograph else None


def _detect_folder_format(folder: Path) -> str:
    counts: dict[str, int] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file():
            fmt = _file_format(f)
            if fmt is not None:
                counts[fmt] = counts.get(fmt, 0) + 1
    if not counts:
        raise CoordinateFormatError(folder, "no per-micrograph coordinate files (RELION .star, EMAN .box, "
                                            "crYOLO .cbox, JSON picks) in this folder")
    if len(counts) > 1:
        found = ", ".join(f"{fmt} ({n} files)" for fmt, n in counts.items())
        raise CoordinateFormatError(folder, f"the folder holds coordinate files of several formats: {found}; "
                                            f"pass fmt to choose one")
    return next(iter(counts))


def _folder_files(folder: Path, fmt: str) -> list[Path]:
    """The files of a folder that hold ``fmt`` (STAR files are sniffed), sorted by name."""
    spec = _FORMATS[fmt]
    files = []
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.suffix.lower() not in spec.extensions:
            continue
        if spec.star_based and fmt != "star" and not _is_blank_file(f):
            found = _sniff_star_text(f)
            if found != fmt:
                logger.warning("%s: skipped (looks like %s, not %s)", f, found or "no coordinates", fmt)
                continue
        files.append(f)
    return files


def read_coordinates(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    box_size: float | None = None,
    scale: float = 1.0,
    flip_y: bool = False,
    image_heights: Mapping[str, float] | float | None = None,
    micrograph: str | None = None,
    source: str | None = None,
) -> CoordinateTable:
    """Read a coordinate file (or a folder of per-micrograph files) into the canonical table.

    Parameters
    ----------
    path : path-like
        The file, or a folder: every file of the format in it (not recursive) is read and the
        tables are concatenated; empty files in a folder are skipped.
    fmt : str, optional
        One of :data:`READ_FORMATS`; detected with :func:`detect_format` when omitted.
    box_size : float, optional
        Box edge in file pixels; only used where the file lacks one (2-column ``.box``, a CBOX
        without ``Width``/``Height``).
    scale : float
        ``canonical = file value * scale`` (4 for picks made on a 4x-binned image).
    flip_y : bool
        After scaling, ``y = H - y`` with ``H`` from ``image_heights``.
    image_heights : mapping or float, optional
        Micrograph height in original pixels, one for all or per micrograph name/key.
    micrograph : str, optional
        Micrograph name for files that do not carry one (per-micrograph formats, a CSV without a
        micrograph column); default the file name minus pick suffixes. Names in the file win for
        topaz/csv/star-particles; ignored for a folder.
    source : str, optional
        Value of the ``source`` column; default the file's basename (a CSV's own column wins).

    Returns
    -------
    CoordinateTable
        Particle centres in original-micrograph pixels.

    Raises
    ------
    CoordinateFormatError
        For a missing path, an unknown format and every kind of malformed content.
    """
    p = Path(path)
    if not p.exists():
        raise CoordinateFormatError(p, "no such file or folder")
    name = _normalise_format(p, fmt, for_writing=False) if fmt is not None else detect_format(p)
    opts = _ReadOptions(box_size=box_size, micrograph=micrograph)
    if p.is_dir():
        if micrograph is not None:
            logger.warning("%s: micrograph=%r ignored when reading a folder", p, micrograph)
        opts = _ReadOptions(box_size=box_size, micrograph=None)
        files = _folder_files(p, name)
        if not files:
            extensions = ", ".join(_FORMATS[name].extensions)
            raise CoordinateFormatError(p, f"no {name} files ({extensions}) in this folder")
        non_empty = [f for f in files if not _is_blank_file(f)]
        if not non_empty:
            raise CoordinateFormatError(p, f"all {len(files)} {name} file(s) in this folder are empty")
        for f in files:
            if f not in non_empty:
                logger.info("%s: empty file skipped", f)
        table = CoordinateTable.concat(_read_one(f, name, opts, source) for f in non_empty)
    else:
        table = _read_one(p, name, opts, source)
    logger.debug("read %d coordinate(s) from %s as %s", len(table), p, name)
    if scale != 1.0:
        table = table.scaled(scale)
    if flip_y:
        table = _flip(table, p, image_heights)
    return table


def _read_one(path: Path, fmt: str, opts: _ReadOptions, source: str | None) -> CoordinateTable:
    reader = _FORMATS[fmt].reader
    assert reader is not None
    table = reader(path, opts)
    if source is not None:
        return table.replace(source=source)
    if len(table) and (table.source == "").any():
        return table.replace(source=np.where(table.source == "", path.name, table.source))
    return table


def _flip(table: CoordinateTable, path: Path,
          image_heights: Mapping[str, float] | float | None) -> CoordinateTable:
    """``table.flipped_y`` with the errors a user can act on."""
    if image_heights is None:
        raise CoordinateFormatError(path, "flip_y needs the micrograph heights (image_heights: one number "
                                          "for all, or a height per micrograph) in original pixels")
    try:
        return table.flipped_y(image_heights)
    except KeyError as exc:
        raise CoordinateFormatError(path, f"flip_y: {exc.args[0]}") from None


def write_coordinates(
    table: CoordinateTable,
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    box_size: float | None = None,
    scale: float = 1.0,
    flip_y: bool = False,
    image_heights: Mapping[str, float] | float | None = None,
    suffix: str = "autopick",
    micrograph_names: Mapping[str, str] | None = None,
    relion_project: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the canonical table in a coordinate file format.

    Every file is written atomically (a temporary file beside it, renamed over it when complete),
    so an error or a full disk leaves the previous file as it was.

    Parameters
    ----------
    table : CoordinateTable
        Particle centres in original-micrograph pixels. Negative labels are written only to
        ``csv`` and ``labels`` (the other formats have no kind column and would make them
        particles).
    path : path-like
        The file; for ``relion`` and ``box`` a folder (created if missing) that gets one file per
        micrograph (a single ``.box``/``.star`` file is accepted for a one-micrograph table); for
        ``relion-list`` the list file, with the per-micrograph files in ``coordinates/`` beside it.
    fmt : str, optional
        One of :data:`WRITE_FORMATS`; from the extension when omitted (``.star`` ->
        ``star-particles``).
    box_size : float, optional
        Box edge in pixels of the written file; required for ``box``.
    scale : float
        ``file value = canonical * scale``, applied after the flip.
    flip_y : bool
        ``y = H - y`` in original pixels, with ``H`` from ``image_heights``.
    image_heights : mapping or float, optional
        Micrograph height in original pixels, one for all or per micrograph name/key.
    suffix : str
        Per-micrograph RELION files are named ``<key>_<suffix>.star``.
    micrograph_names : mapping, optional
        For ``relion-list`` and ``star-particles``: micrograph key (or any name with that key)
        -> the name RELION knows, written as ``rlnMicrographName`` (RELION matches it against
        the full path of its MotionCorr/CtfFind job, e.g. ``MotionCorr/job002/Movies/mic.mrc``;
        see :func:`relion_micrograph_names`). A micrograph without an entry keeps the table's
        name, and a warning lists them.
    relion_project : path-like, optional
        For ``relion-list``: the RELION project folder; ``rlnMicrographCoordinates`` entries are
        written relative to it (absolute for a file outside it), as RELION resolves them.
        Without it they are relative to the list file's folder. :func:`read_coordinates` finds
        both (it looks in the list's folder and each folder above it).

    Returns
    -------
    list of Path
        Every file written (the list file first for ``relion-list``).

    Raises
    ------
    CoordinateFormatError
        Unknown/unwritable format, missing ``box_size`` or heights, non-finite coordinates,
        several micrographs for a single ``.box`` file, or a name the format cannot hold (a line
        break in STAR, a tab in Topaz text, ``/`` in a per-micrograph file name).
    """
    p = Path(path)
    if fmt is not None:
        name = _normalise_format(p, fmt, for_writing=True)
    else:
        name = detect_format(p, for_writing=True)
    bad = ~(np.isfinite(table.x) & np.isfinite(table.y))
    if bad.any():
        raise CoordinateFormatError(
            p, f"the table has {int(bad.sum())} coordinate(s) that are NaN or infinite; nothing written")
    if flip_y:
        table = _flip(table, p, image_heights)
    if scale != 1.0:
        table = table.scaled(scale)
    writer = _FORMATS[name].writer
    assert writer is not None
    if name not in ("relion-list", "star-particles") and (micrograph_names is not None or relion_project is not None):
        logger.debug("%s: micrograph_names/relion_project are not used by format %r", p, name)
    opts = _WriteOptions(box_size=box_size, suffix=suffix, micrograph_names=micrograph_names,
                         relion_project=Path(relion_project) if relion_project is not None else None)
    written = writer(table, p, opts)
    logger.info("wrote %d coordinate(s) as %s to %d file(s) at %s", len(table), name, len(written), p)
    return written


# ================================================================================================
# Project labels and RELION projects
# ================================================================================================
def _is_own_labels(blocks: Blocks) -> bool:
    """True for exactly what :func:`write_labels_file` writes: ``data_particles`` and/or
    ``data_negatives``, each with exactly the columns micrograph name, x, y."""
    names = set(blocks)
    return bool(names) and names <= {n for n, _ in _LABEL_BLOCKS} and all(
        {str(c) for c in blocks[n].columns} == set(_LABEL_COLUMNS) for n in names)


def read_labels_file(path: str | os.PathLike[str]) -> tuple[CoordinateTable, list[str]]:
    """Read a project's labels file; other STAR coordinate files are read too, with a note.

    Parameters
    ----------
    path : path-like
        The labels file (``labels.star``).

    Returns
    -------
    table : CoordinateTable
        The labels, kind ``particle`` or ``negative``, source ``manual``.
    notes : list of str
        Empty for a file in picker-gui's own ``labels`` format. For anything else the registry
        can read by content (RELION 3's unnamed ``data_`` block with names and coordinates, a
        RELION 3.1 particles STAR with more columns, a ``data_coordinate_files`` list, ...) one
        note, without the file name, says so (e.g. ``not in picker-gui's own labels format
        (blocks: data_); read as star-particles``): the caller should then keep a copy of the
        original before saving over it (the labels format keeps only names, coordinates and
        kinds).

    Raises
    ------
    CoordinateFormatError
        A missing, empty or unreadable file, or a STAR file without coordinates (never zero
        labels in silence).
    """
    p = Path(path)
    if not p.is_file():
        raise CoordinateFormatError(p, "no such file")
    blocks = _read_star_blocks(p)
    opts = _ReadOptions(box_size=None, micrograph=None)
    notes: list[str] = []
    if _is_own_labels(blocks):
        table = _labels_from_blocks(p, blocks, opts)
    else:
        fmt = _classify_star(_block_labels(blocks))
        if fmt is None:
            raise _no_coordinates(p, blocks)
        table = _STAR_BLOCK_READERS[fmt](p, blocks, opts)
        found = ", ".join(f"data_{n}" for n in blocks)
        notes.append(f"not in picker-gui's own labels format (blocks: {found}); read as {fmt}")
    return table.replace(source="manual"), notes


def relion_micrograph_names(star_path: str | os.PathLike[str]) -> tuple[dict[str, str], Path | None]:
    """The micrograph names RELION knows, and its project folder, from a micrographs STAR.

    Parameters
    ----------
    star_path : path-like
        A RELION micrographs STAR: ``micrographs_ctf.star`` or ``corrected_micrographs.star``
        (block ``data_micrographs``), or RELION 3.0's single unnamed block.

    Returns
    -------
    names : dict
        Micrograph key -> ``rlnMicrographName`` (e.g. ``mic_001`` ->
        ``MotionCorr/job002/Movies/mic_001.mrc``), for ``write_coordinates(micrograph_names=...)``.
    project : Path or None
        The nearest folder, from the STAR file's own folder upwards, in which the listed
        (relative) micrograph paths exist: RELION's project folder. None when there is none.

    Raises
    ------
    CoordinateFormatError
        An unreadable file or one without ``rlnMicrographName``.
    """
    p = Path(star_path)
    blocks = _read_star_blocks(p)
    _, df = _find_block(p, blocks, (_MIC,), names=("micrographs",))
    names: dict[str, str] = {}
    clashes: list[str] = []
    for name in _string_column(df, _MIC):
        if not name:
            continue
        key = micrograph_key(name)
        if key in names and names[key] != name:
            clashes.append(name)
        names.setdefault(key, name)
    if clashes:
        logger.warning("%s: %d micrograph(s) share a name with another one in a different folder (%s); the "
                       "first of each is used", p, len(clashes), ", ".join(clashes[:5]))
    relative = [n for n in names.values() if not Path(n).is_absolute()][:3]
    project = None
    if relative:
        start = p.resolve().parent
        for folder in (start, *start.parents):
            if all((folder / n).exists() for n in relative):
                project = folder
                break
    return names, project
