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
``box``                   yes    yes    EMAN ``.box``: ``x_ll y_ll w h [score]``, one micrograph
``topaz``                 yes    yes    ``image_name x_coord y_coord [score]`` (tab separated)
``csv``                   yes    yes    ``micrograph,x,y,score,kind,source`` (picker-gui's own)
``cbox``                  yes    --     crYOLO CBOX (``data_cryolo``; lower-left corners)
``cs``                    yes    --     cryoSPARC ``.cs`` numpy structured array
========================  =====  =====  ========================================================

Transformations at the edge
---------------------------
Reading: ``canonical = file_value * scale``, then, with ``flip_y``, ``y = H - y`` where ``H`` is
the micrograph height in original pixels. Writing does the reverse in the reverse order: flip in
original pixels first, then ``file_value = canonical * scale``. A ``box_size`` is always in pixels
of the *file* (after ``scale``), so the width column of a written ``.box`` equals ``box_size``.

Every problem with a file is reported as a :class:`~picker_gui.core.errors.CoordinateFormatError`
that names the file and, where known, the line (text formats) or column (STAR/CSV).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.errors import CoordinateFormatError

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

_CRYOSPARC_UID = re.compile(r"^\d{10,}_")


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
    """Raise when a coordinate is NaN or infinite, naming the first such row."""
    for values, name in ((x, x_name), (y, y_name)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            if lines is not None:
                raise CoordinateFormatError(path, f"coordinate {float(values[i])!r} is not a finite number",
                                            line=lines[i], column=name)
            raise CoordinateFormatError(
                path, f"coordinate {float(values[i])!r} in row {i + 1} is not a finite number", column=name)


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
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            return fh.read().splitlines()
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


# ================================================================================================
# STAR helpers
# ================================================================================================
def _read_star_blocks(path: Path) -> Blocks:
    """All data blocks of a STAR file as ``{name: DataFrame}``; key-value blocks become one row.

    Raises
    ------
    CoordinateFormatError
        For an empty file or one starfile cannot parse.
    """
    import pandas as pd
    import starfile

    if _is_blank_file(path):
        raise CoordinateFormatError(path, "the file is empty")
    try:
        raw = starfile.read(path, always_dict=True, parse_as_string=[_MIC, _MIC_COORDS])
    except Exception as exc:  # starfile/pandas raise many types for malformed files
        ragged = _find_ragged_star_row(path)
        if ragged is not None:
            line, expected, found = ragged
            raise CoordinateFormatError(
                path, f"the loop has {expected} columns but this row has {found} values", line=line) from None
        raise CoordinateFormatError(path, f"not a readable STAR file ({type(exc).__name__}: {exc})") from None
    if not raw:
        raise CoordinateFormatError(path, "no STAR data block (data_...) found; is this a STAR file?")
    blocks = {}
    for name, block in raw.items():
        if isinstance(block, dict):
            block = pd.DataFrame([block])
        blocks[name] = block
    return blocks


def _find_ragged_star_row(path: Path) -> tuple[int, int, int] | None:
    """(line, columns, values) of the first loop row whose value count differs from its labels."""
    labels = 0
    in_loop = False
    for number, text in _content_lines(_read_text_lines(path)):
        if text.startswith("data_"):
            labels, in_loop = 0, False
        elif text.startswith("loop_"):
            labels, in_loop = 0, True
        elif text.startswith("_"):
            labels += 1 if in_loop else 0
        elif in_loop and labels:
            try:
                found = len(shlex.split(text))
            except ValueError:
                found = len(text.split())
            if found != labels:
                return number, labels, found
    return None


def _block_labels(blocks: Blocks) -> dict[str, set[str]]:
    return {name: {str(c) for c in df.columns} for name, df in blocks.items()}


def _classify_star(labels: Mapping[str, set[str]]) -> str | None:
    """Which STAR coordinate format a set of blocks is (``None`` when it holds no coordinates).

    Looks at the blocks in order and answers for the first one with coordinate labels.
    """
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
    with coordinate labels are read.
    """
    labels: dict[str, set[str]] = {}
    current: set[str] | None = None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for raw in fh:
                text = raw.strip()
                if not text or text.startswith("#"):
                    continue
                if text.startswith("data_"):
                    current = labels.setdefault(text[5:].split()[0] if len(text) > 5 else "", set())
                elif text.startswith("_") and current is not None:
                    current.add(text[1:].split()[0])
                elif text.startswith("loop_"):
                    continue
                elif current is not None and _classify_star(labels) is not None:
                    break  # first data row of a block with coordinates: its labels are complete
    except OSError as exc:
        raise CoordinateFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return _classify_star(labels)


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


def _numeric_column(path: Path, df: pd.DataFrame, column: str) -> np.ndarray:
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
            raise CoordinateFormatError(path, f"value {value!r} in row {i + 1} is not a number",
                                        column=column) from None
    return out


def _string_column(df: pd.DataFrame, column: str) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in df[column].tolist()]


def _fom_to_score(fom: np.ndarray) -> np.ndarray:
    """RELION figure of merit -> score; -999 means "none" and becomes NaN."""
    return np.where(fom == RELION_NO_VALUE, np.nan, fom)


def _write_star(path: Path, blocks: Mapping[str, object]) -> None:
    import starfile

    _make_parent(path)
    starfile.write(dict(blocks), path, overwrite=True)


def _relion_loop(table: CoordinateTable) -> pd.DataFrame:
    """The RELION per-micrograph loop for the rows of one micrograph."""
    import pandas as pd

    n = len(table)
    return pd.DataFrame({
        _X: table.x,
        _Y: table.y,
        _CLASS: np.zeros(n, dtype=int),
        _FOM: np.where(np.isnan(table.score), RELION_NO_VALUE, table.score),
        _PSI: np.full(n, RELION_NO_VALUE),
    })


def _per_micrograph_targets(table: CoordinateTable, path: Path, extension: str,
                            filename: Callable[[str], str], fmt: str) -> list[tuple[Path, CoordinateTable]]:
    """Where each micrograph of a per-micrograph format goes.

    A ``path`` ending in ``extension`` (and not an existing folder) is one file, allowed only for
    a table of at most one micrograph; anything else is a folder, created if missing.
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
    path.mkdir(parents=True, exist_ok=True)
    return [(path / filename(key), rows) for key, rows in table.groupby_micrograph()]


# ================================================================================================
# Readers: each returns the table in FILE coordinates (centres, before scale/flip), source "" unless
# the file says otherwise.
# ================================================================================================
def _read_star_any(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``star``: parse once, then hand the blocks to the STAR format they look like."""
    blocks = _read_star_blocks(path)
    fmt = _classify_star(_block_labels(blocks))
    if fmt is None:
        found = "; ".join(f"data_{n}: {', '.join(sorted(c)) or 'no columns'}"
                          for n, c in _block_labels(blocks).items())
        raise CoordinateFormatError(path, f"no coordinate columns ({_X}, {_Y} or {_MIC_COORDS}) in any "
                                          f"block (found {found})")
    logger.debug("%s: STAR content looks like %s", path, fmt)
    return _STAR_BLOCK_READERS[fmt](path, blocks, opts)


def _relion_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    _, df = _find_block(path, blocks, (_X, _Y))
    x = _numeric_column(path, df, _X)
    y = _numeric_column(path, df, _Y)
    _check_finite(path, x, y, x_name=_X, y_name=_Y)
    score = _fom_to_score(_numeric_column(path, df, _FOM)) if _FOM in df.columns else None
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
    _, df = _find_block(path, blocks, (_MIC, _X, _Y), names=("particles",))
    x = _numeric_column(path, df, _X)
    y = _numeric_column(path, df, _Y)
    _check_finite(path, x, y, x_name=_X, y_name=_Y)
    score = _fom_to_score(_numeric_column(path, df, _FOM)) if _FOM in df.columns else None
    return CoordinateTable.from_arrays(_string_column(df, _MIC), x, y, score)


def _read_star_particles(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``star-particles``: any block with rlnMicrographName + rlnCoordinateX/Y (RELION 3.1 too)."""
    return _particles_from_blocks(path, _read_star_blocks(path), opts)


def _resolve_listed(list_path: Path, entry: str) -> Path | None:
    """A coordinate file named in a list: relative to the list's folder, then each parent folder."""
    candidate = Path(entry)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in [list_path.parent, *list_path.parent.resolve().parents]:
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def _list_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    _, df = _find_block(path, blocks, (_MIC, _MIC_COORDS), names=("coordinate_files",))
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
                column=_MIC_COORDS,
            )
        sub_blocks = _read_star_blocks(target)
        tables.append(_relion_from_blocks(target, sub_blocks, _ReadOptions(opts.box_size, mic or None)))
    return CoordinateTable.concat(tables)


def _read_relion_list(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``relion-list``: a RELION 4/5 ``data_coordinate_files`` list and the files it names."""
    return _list_from_blocks(path, _read_star_blocks(path), opts)


def _cbox_from_blocks(path: Path, blocks: Blocks, opts: _ReadOptions) -> CoordinateTable:
    _, df = _find_block(path, blocks, ("CoordinateX", "CoordinateY"), names=("cryolo",))
    x_ll = _numeric_column(path, df, "CoordinateX")
    y_ll = _numeric_column(path, df, "CoordinateY")
    _check_finite(path, x_ll, y_ll, x_name="CoordinateX", y_name="CoordinateY")
    half = []
    for column in ("Width", "Height"):
        if column in df.columns:
            size = _numeric_column(path, df, column)
            if opts.box_size is not None:
                size = np.where(np.isfinite(size), size, opts.box_size)
            if not np.all(np.isfinite(size)):
                raise CoordinateFormatError(path, "box size missing on some rows; pass box_size",
                                            column=column)
        elif opts.box_size is not None:
            size = np.full(len(df), float(opts.box_size))
        else:
            raise CoordinateFormatError(path, f"no {column} column to find the box centre from; "
                                              f"pass box_size")
        half.append(size / 2.0)
    score = _numeric_column(path, df, "Confidence") if "Confidence" in df.columns else None
    name = opts.micrograph if opts.micrograph is not None else path.stem
    return CoordinateTable.from_arrays(name, x_ll + half[0], y_ll + half[1], score)


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
                raise CoordinateFormatError(path, "only 2 fields (x y corner) and no width/height; "
                                                  "pass box_size", line=number)
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
    lookup = {alias: canon for canon, aliases in _ALIASES.items() for alias in aliases}
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        canon = lookup.get(name.strip().lstrip("_").lower())
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
    """``topaz``: tab-separated ``image_name x_coord y_coord [score]`` with a header line."""
    rows = list(_content_lines(_read_text_lines(path)))
    if not rows:
        raise CoordinateFormatError(path, "the file is empty (no header line)")
    header_line, header_text = rows[0]

    def split(text: str) -> list[str]:
        return text.split("\t") if "\t" in header_text else text.split()

    return _table_from_rows(path, [h.strip() for h in split(header_text)], header_line,
                            ((n, split(t)) for n, t in rows[1:]), opts)


def _read_csv(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``csv``: comma-separated with a header; column names are matched case-insensitively."""
    lines = _read_text_lines(path)
    reader = csv.reader(lines)
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            number = reader.line_num
            if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
                continue
            if header is None:
                header, header_line = [f.strip() for f in fields], number
            else:
                rows.append((number, fields))
    except csv.Error as exc:
        raise CoordinateFormatError(path, f"malformed CSV ({exc})", line=reader.line_num) from None
    if header is None:
        raise CoordinateFormatError(path, "the file is empty (no header line)")
    return _table_from_rows(path, header, header_line, rows, opts)


def _read_cs(path: Path, opts: _ReadOptions) -> CoordinateTable:
    """``cs``: cryoSPARC numpy structured array of picks/particles."""
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/UnpicklingError/OSError
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
    "cbox": _cbox_from_blocks,
}


# ================================================================================================
# Writers: the table arrives in FILE coordinates (after flip/scale); each returns the files written.
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


def _write_relion_list(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``relion-list``: the list at ``path`` plus ``coordinates/<key>_<suffix>.star`` next to it.

    Entries are written relative to the list file's folder (see :func:`_resolve_listed`).
    A ``path`` without ``.star`` is a folder that gets ``<suffix>.star``.
    """
    import pandas as pd

    if path.suffix.lower() != ".star" or path.is_dir():
        path = path / f"{opts.suffix or 'coordinates'}.star"
    table = _particles_only(table, path, "relion-list")
    folder = path.parent / "coordinates"
    written, names, entries = [], [], []
    for key, rows in table.groupby_micrograph():
        target = folder / _relion_name(key, opts.suffix)
        _write_star(target, {"": _relion_loop(rows)})
        written.append(target)
        names.append(str(rows.micrograph[0]))
        entries.append(target.relative_to(path.parent).as_posix())
    _write_star(path, {"coordinate_files": pd.DataFrame({_MIC: pd.Series(names, dtype=object),
                                                         _MIC_COORDS: pd.Series(entries, dtype=object)})})
    return [path, *written]


def _write_star_particles(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``star-particles``: one ``data_particles`` loop; FOM column only when there are scores."""
    import pandas as pd

    table = _particles_only(table, path, "star-particles")
    columns = {_MIC: pd.Series(table.micrograph, dtype=object), _X: table.x, _Y: table.y}
    if table.has_scores:
        columns[_FOM] = np.where(np.isnan(table.score), RELION_NO_VALUE, table.score)
    _write_star(path, {"particles": pd.DataFrame(columns)})
    return [path]


def _write_box(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``box``: EMAN lower-left corners, one ``<key>.box`` per micrograph (or one given file)."""
    if opts.box_size is None or not opts.box_size > 0:
        raise CoordinateFormatError(path, "writing .box files needs box_size (the box edge in pixels of "
                                          "the written file), e.g. box_size=256")
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
        _make_parent(target)
        target.write_text("".join(out), encoding="utf-8")
        written.append(target)
    return written


def _write_topaz(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``topaz``: ``image_name x_coord y_coord [score]``; image_name is the micrograph key."""
    table = _particles_only(table, path, "topaz")
    with_score = table.has_scores
    header = ["image_name", "x_coord", "y_coord"] + (["score"] if with_score else [])
    out = ["\t".join(header) + "\n"]
    for key, x, y, s in zip(table.keys, table.x, table.y, table.score):
        fields = [key, _format_number(x), _format_number(y)]
        if with_score:
            fields.append(_format_score(s))
        out.append("\t".join(fields) + "\n")
    _make_parent(path)
    path.write_text("".join(out), encoding="utf-8")
    return [path]


def _write_csv(table: CoordinateTable, path: Path, opts: _WriteOptions) -> list[Path]:
    """``csv``: every column of the table, full float precision, empty score where there is none."""
    _make_parent(path)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["micrograph", "x", "y", "score", "kind", "source"])
        rows = zip(table.micrograph, table.x, table.y, table.score, table.kind, table.source)
        for mic, x, y, score, kind, source in rows:
            score_text = "" if math.isnan(score) else repr(float(score))
            writer.writerow([mic, repr(float(x)), repr(float(y)), score_text, kind, source])
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
        _Format("box", (".box",), _read_box, _write_box, per_micrograph=True),
        _Format("topaz", (".txt", ".tsv"), _read_topaz, _write_topaz),
        _Format("csv", (".csv",), _read_csv, _write_csv),
        _Format("cbox", (".cbox",), _read_cbox, None, per_micrograph=True),
        _Format("cs", (".cs",), _read_cs, None),
    )
}

#: Formats :func:`read_coordinates` understands (``star`` = any STAR, decided by content).
READ_FORMATS: tuple[str, ...] = tuple(n for n, f in _FORMATS.items() if f.reader is not None)
#: Formats :func:`write_coordinates` can produce.
WRITE_FORMATS: tuple[str, ...] = tuple(n for n, f in _FORMATS.items() if f.writer is not None)

#: File extension -> format, for reading (``.star`` is sniffed) and for writing.
_READ_BY_EXTENSION = {".star": "star", ".box": "box", ".txt": "topaz", ".tsv": "topaz", ".csv": "csv",
                      ".cbox": "cbox", ".cs": "cs"}
_WRITE_BY_EXTENSION = {".star": "star-particles", ".box": "box", ".txt": "topaz", ".tsv": "topaz",
                       ".csv": "csv"}
#: Names accepted for writing that stand for another format.
_WRITE_ALIASES = {"star": "star-particles"}


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
                                       f"{_known(False)} (.star, .box, .txt/.tsv, .csv, .cbox, .cs)")
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
                                            "crYOLO .cbox) in this folder")
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
) -> list[Path]:
    """Write the canonical table in a coordinate file format.

    Parameters
    ----------
    table : CoordinateTable
        Particle centres in original-micrograph pixels. Negative labels are written only to
        ``csv`` (the other formats have no kind column and would make them particles).
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

    Returns
    -------
    list of Path
        Every file written (the list file first for ``relion-list``).

    Raises
    ------
    CoordinateFormatError
        Unknown/unwritable format, missing ``box_size`` or heights, non-finite coordinates, or
        several micrographs for a single ``.box`` file.
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
    written = writer(table, p, _WriteOptions(box_size=box_size, suffix=suffix))
    logger.info("wrote %d coordinate(s) as %s to %d file(s) at %s", len(table), name, len(written), p)
    return written
