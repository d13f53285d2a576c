"""STAR files, read and written by picker-gui itself (RELION 3/4/5 style, CIF quoting rules).

Why not the ``starfile`` package: it reads ``"it's.mrc"`` as ``its.mrc"``, an unquoted
``x#y.mrc`` as a comment, and writes ``#`` and leading quotes unquoted, so a micrograph name
with a space, a quote or ``#`` made labels disappear. This module follows the STAR/CIF rules
that RELION and starfile both read, and tests prove the round trip of such names.

Reading (:func:`read_star`, :func:`parse_star`)
    * tokens are separated by whitespace; a token that starts with ``'`` or ``"`` runs to the
      matching quote that is followed by whitespace or the end of the line, so ``"q"z.mrc"``
      is the value ``q"z.mrc``;
    * ``#`` at the start of a token begins a comment to the end of the line (RELION's
      ``_rlnCoordinateX #1``); a ``#`` inside a token is part of it (``x#y.mrc``);
    * a loop row is one line; a line with another number of values than the loop has labels
      is an error naming the line;
    * a column becomes float64 when each value is a number (or a missing marker such as
      ``<NA>``, read as NaN), else it stays text; name columns (:data:`STRING_LABELS`, and
      labels ending in ``Name``/``FileName``) always stay text, so a micrograph ``001`` is not
      the number 1;
    * UTF-8 (a BOM is skipped, undecodable bytes are replaced), LF, CRLF or CR line ends.

    The loop body is split in bulk (``str.split``, or one compiled regex per line that holds a
    quote or ``#``), so 300,000 rows take a fraction of a second.

Writing (:func:`write_star`)
    ``data_<name>``, ``loop_``, ``_rlnLabel #1`` lines, one row per line; integers as integers,
    other numbers with at most 6 decimals (6 significant digits below 1e-4). A text value is
    quoted when it is empty, holds whitespace or ``#``, starts with ``' " _ $ ; [ ]``, or starts
    with a reserved word (``data_``, ``save_``, ``loop_``, ``global_``, ``stop_``): in double
    quotes, or in single quotes when it holds a ``"`` followed by whitespace. A value that holds
    a line break, or both ``"`` and ``'`` followed by whitespace, cannot be written and raises
    :class:`~picker_gui.core.errors.CoordinateFormatError` naming it.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from picker_gui.core.errors import CoordinateFormatError

if TYPE_CHECKING:
    import pandas as pd

#: Labels (without the leading underscore) whose values are always kept as text.
STRING_LABELS = frozenset({
    "rlnMicrographName", "rlnMicrographCoordinates", "rlnImageName", "rlnMicrographMovieName",
    "rlnOpticsGroupName", "rlnCtfImage", "rlnReferenceImage", "rlnMicrographMetadata",
})
#: Label endings whose values are always kept as text.
STRING_LABEL_SUFFIXES = ("Name", "FileName", "Path")
#: Values read as "missing" (NaN) in an otherwise numeric column.
MISSING_VALUES = frozenset({"<NA>", "NA", "N/A", "?", "."})

# Whitespace within a line.
_SP = r"[^\S\n]"
# One value: a quoted value (its closing quote is the first one followed by whitespace or the end
# of the line; a quote inside is kept), or a bare run of non-whitespace that does not start with a
# quote or "#". Three groups: double-quoted, single-quoted, bare.
_VALUE = (r"""(?:"((?:[^"\n]|"(?!\s|$))*)"(?=\s|$)"""
          r"""|'((?:[^'\n]|'(?!\s|$))*)'(?=\s|$)"""
          r"""|([^\s'"#]\S*))""")
# One token of a line, for the line-by-line path: a value, a comment (a "#" that starts a token),
# or anything else (a quote that is not closed), which is an error.
_TOKEN = re.compile(_VALUE + r"|(?<!\S)(#.*)|(\S+)", re.MULTILINE)
# A blank or comment line after the first line of a text (the literal "\n" first makes the search
# fast: the regex engine jumps from newline to newline).
_BLANK_AFTER_NEWLINE = re.compile(rf"\n{_SP}*(?:#[^\n]*)?(?=\n|\Z)")
# The start of the line that ends a loop body, a keyword or a label, found from the "\n" before it.
_BODY_END = re.compile(r"\n[ \t]*(?:data_|save_|_|(?:loop_|global_|stop_)(?=\s|$))")
# A data_ line anywhere in a text.
_DATA_LINE = re.compile(r"^[ \t]*data_", re.MULTILINE)
_NO_BLOCK = "no STAR data block (data_...) found; is this a STAR file?"
# Text values that must be quoted.
_NEEDS_QUOTE = re.compile(
    r"""\s|\#|^['"_$;\[\]]|^(?:data_|save_|loop_|global_|stop_)""", re.IGNORECASE)
_DOUBLE_CLOSES = re.compile(r'"\s')
_SINGLE_CLOSES = re.compile(r"'\s")


class StarBlocks(dict):
    """``{block name without "data_": DataFrame}`` as read, in file order.

    :meth:`row_lines` tells the line of each row, for messages that name the line of a bad value.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bodies: dict[str, tuple[str, int]] = {}
        self._lines: dict[str, np.ndarray] = {}

    def is_loop(self, name: str) -> bool:
        """True when block ``name`` was a ``loop_`` (its rows have line numbers)."""
        return name in self._bodies

    def row_lines(self, name: str) -> np.ndarray | None:
        """1-based line number of every row of loop block ``name`` (None for a key-value block)."""
        if name not in self._bodies:
            return None
        if name not in self._lines:
            self._lines[name] = _content_line_numbers(*self._bodies[name])
        return self._lines[name]


def is_string_label(label: str) -> bool:
    """True for labels whose values are names or paths and must never become numbers."""
    return label in STRING_LABELS or label.endswith(STRING_LABEL_SUFFIXES)


# ================================================================================================
# Reading
# ================================================================================================
def read_star(path: str | os.PathLike[str], *, string_labels: Iterable[str] = ()) -> StarBlocks:
    """Read every data block of a STAR file.

    Parameters
    ----------
    path : path-like
        The STAR file.
    string_labels : iterable of str
        More labels (without ``_``) to keep as text besides :func:`is_string_label`.

    Returns
    -------
    StarBlocks
        ``{name: DataFrame}``: a loop block gives one row per loop row, a key-value block one
        row; the block name is what follows ``data_`` (``""`` for a bare ``data_``).

    Raises
    ------
    CoordinateFormatError
        An unreadable, empty or non-STAR file, a ragged loop row, an unterminated quote, ...,
        naming the file and the line.
    """
    p = Path(path)
    try:
        with open(p, encoding="utf-8-sig", errors="replace", newline=None) as fh:
            text = fh.read()
    except OSError as exc:
        raise CoordinateFormatError(p, f"cannot read the file ({exc.strerror or exc})") from None
    return parse_star(text, path=p, string_labels=string_labels)


def parse_star(text: str, *, path: str | os.PathLike[str] = "<STAR text>",
               string_labels: Iterable[str] = ()) -> StarBlocks:
    """:func:`read_star` for text already in memory; ``path`` only names it in messages."""
    import pandas as pd

    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CoordinateFormatError(path, "the file is empty")
    keep_text = frozenset(string_labels)
    blocks = StarBlocks()
    name: str | None = None  # current block
    pairs: dict[str, Any] = {}
    loop_seen = False
    n = len(text)
    pos, line_no = 0, 1

    def finish_block() -> None:
        if name is not None and not loop_seen:
            blocks[name] = pd.DataFrame({k: [v] for k, v in pairs.items()})

    while pos < n:
        end = text.find("\n", pos)
        end = n if end == -1 else end
        stripped = text[pos:end].strip()
        here = line_no
        pos, line_no = end + 1, line_no + 1
        if not stripped or stripped[0] == "#":
            continue
        word = stripped.split(None, 1)[0]
        if word.startswith("data_"):
            finish_block()
            name, pairs, loop_seen = word[5:], {}, False
            if name in blocks:
                raise CoordinateFormatError(path, f"the block data_{name} appears twice", line=here)
            continue
        if name is None:
            if word.lower().startswith(("global_", "save_")):
                raise CoordinateFormatError(path, f"{word} is not supported (only data_ blocks)", line=here)
            if _DATA_LINE.search(text) is None:
                raise CoordinateFormatError(path, _NO_BLOCK)
            raise CoordinateFormatError(path, f"unexpected text {_short(stripped)} before the first data_ block; "
                                              f"is this a STAR file?", line=here)
        if word == "loop_":
            if loop_seen or pairs:
                raise CoordinateFormatError(path, f"block data_{name} holds more than one loop_ or both "
                                                  f"values and a loop_, which picker-gui does not read", line=here)
            labels: list[str] = []
            while pos < n:  # the labels, up to the first row
                end = text.find("\n", pos)
                end = n if end == -1 else end
                header = text[pos:end].strip()
                if header and header[0] != "#":
                    if header[0] != "_":
                        break
                    label = header.split(None, 1)[0][1:]
                    if not label or label in labels:
                        raise CoordinateFormatError(path, f"label {header.split(None, 1)[0]!r} is empty or "
                                                          f"repeated", line=line_no)
                    labels.append(label)
                pos, line_no = end + 1, line_no + 1
            if not labels:
                raise CoordinateFormatError(path, f"loop_ without labels in block data_{name}", line=here)
            found = _BODY_END.search(text, pos - 1)  # text[pos - 1] is the "\n" that ended the labels
            body_end = found.start() + 1 if found is not None else n
            body = text[pos:body_end]
            blocks[name] = _parse_loop(body, labels, line_no, path, keep_text)
            blocks._bodies[name] = (body, line_no)
            loop_seen = True
            line_no += body.count("\n")
            pos = body_end
            continue
        if word.startswith("_"):
            tokens = _tokens(stripped, path, here)
            if loop_seen:
                raise CoordinateFormatError(path, f"value {word} after a loop_ in block data_{name}, which "
                                                  f"picker-gui does not read", line=here)
            if len(tokens) != 2:
                raise CoordinateFormatError(path, f"expected one value after {word}, found {len(tokens) - 1}",
                                            line=here)
            label = word[1:]
            if not label or label in pairs:
                raise CoordinateFormatError(path, f"label {word!r} is empty or repeated", line=here)
            pairs[label] = _convert_scalar(label, tokens[1], keep_text)
            continue
        if word.lower() == "stop_":
            continue
        if word.lower().startswith(("global_", "save_")):
            raise CoordinateFormatError(path, f"{word} is not supported (only data_ blocks)", line=here)
        raise CoordinateFormatError(path, f"unexpected value {_short(stripped)} in block data_{name} "
                                          f"(not in a loop_ and not after a _label)", line=here)
    finish_block()
    if not blocks:
        raise CoordinateFormatError(path, _NO_BLOCK)
    return blocks


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _tokens(line: str, path: str | os.PathLike[str], line_no: int) -> list[str]:
    """The values of one line by the STAR/CIF rules (quotes, comments)."""
    out = []
    for m in _TOKEN.finditer(line):
        kind = m.lastindex
        if kind == 4:
            break  # comment to the end of the line
        value = m.group(kind)
        if kind == 5:
            raise CoordinateFormatError(path, f"the value {_short(value)} starts with a quote that is not "
                                              f"closed (a closing quote must be followed by a space or "
                                              f"the end of the line)", line=line_no)
        out.append(value)
    return out


@functools.lru_cache(maxsize=64)
def _row_regex(ncol: int) -> re.Pattern[str]:
    """A loop row of exactly ``ncol`` values (3 groups each), maybe with a trailing comment."""
    return re.compile(rf"^{_SP}*" + f"{_SP}+".join([_VALUE] * ncol) + rf"(?:{_SP}+#.*|{_SP}*)$",
                      re.MULTILINE)


@functools.lru_cache(maxsize=64)
def _bad_plain_line_regex(ncol: int) -> re.Pattern[str]:
    """Finds (from its leading newline) a line that is neither blank nor ``ncol`` bare values."""
    return re.compile(rf"\n(?!{_SP}*(?:\S+{_SP}+){{{ncol - 1}}}\S+{_SP}*(?:\n|\Z))(?!{_SP}*(?:\n|\Z))")


def _parse_loop(body: str, labels: Sequence[str], first_line: int, path: str | os.PathLike[str],
                keep_text: frozenset[str]) -> pd.DataFrame:
    """A loop body (one row per line) as a DataFrame.

    A body without quotes or ``#`` is checked with one regex search (every line blank or ``ncol``
    values) and split at once; otherwise one compiled regex finds every valid row, and valid rows
    plus blank or comment lines must add up to all lines. Either way, a bad body is passed line
    by line to find the bad line and raise.
    """
    import pandas as pd

    ncol = len(labels)
    dq, sq = '"' in body, "'" in body
    columns: list[list[str]]
    if not (dq or sq or "#" in body):
        if _bad_plain_line_regex(ncol).search("\n" + body) is not None:
            _raise_bad_row(body, ncol, first_line, path)
        tokens = body.split()
        columns = [tokens[j::ncol] for j in range(ncol)]
    else:
        rows = _row_regex(ncol).findall(body)
        first = body[: body.find("\n")] if "\n" in body else body
        blank = len(_BLANK_AFTER_NEWLINE.findall(body)) + (not first.strip() or first.lstrip().startswith("#"))
        if len(rows) + blank != body.count("\n") + 1:
            _raise_bad_row(body, ncol, first_line, path)
        columns = [[t[3 * j] or t[3 * j + 1] or t[3 * j + 2] for t in rows] for j in range(ncol)]
    data = {label: _convert_column(label, values, keep_text) for label, values in zip(labels, columns)}
    return pd.DataFrame(data, columns=list(labels))


def _raise_bad_row(body: str, ncol: int, first_line: int, path: str | os.PathLike[str]) -> None:
    """Raise for the first line of a loop body that is not a row of ``ncol`` values."""
    for i, line in enumerate(body.split("\n")):
        found = len(_tokens(line, path, first_line + i))
        if found and found != ncol:
            raise CoordinateFormatError(path, f"the loop has {ncol} columns but this row has {found} values",
                                        line=first_line + i)
    raise CoordinateFormatError(path, "a loop row cannot be read", line=first_line)  # not expected


def _content_line_numbers(body: str, first_line: int) -> np.ndarray:
    """Line number of every row of a loop body (lines that are not blank or comments)."""
    numbers = [first_line + i for i, line in enumerate(body.split("\n"))
               if line.strip() and not line.lstrip().startswith("#")]
    return np.asarray(numbers, dtype=np.int64)


def _convert_column(label: str, values: Sequence[str], keep_text: frozenset[str]) -> np.ndarray | list[str]:
    """float64 when every value is a number or a missing marker (and one is a number), else text."""
    if label in keep_text or is_string_label(label):
        return list(values)
    if not values:
        return np.zeros(0, dtype=np.float64)
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        pass
    text = np.asarray(values, dtype=str)
    missing = np.isin(text, list(MISSING_VALUES))
    if not missing.any():
        return list(values)
    try:
        return np.where(missing, "nan", text).astype(np.float64)
    except ValueError:
        return list(values)


def _convert_scalar(label: str, value: str, keep_text: frozenset[str]) -> Any:
    if label in keep_text or is_string_label(label):
        return value
    if value in MISSING_VALUES:
        return math.nan
    try:
        return float(value)
    except ValueError:
        return value


# ================================================================================================
# Writing
# ================================================================================================
def quote_value(value: str, *, path: str | os.PathLike[str] = "STAR output") -> str:
    """``value`` as a STAR token: bare when that reads back the same, else quoted.

    Raises
    ------
    CoordinateFormatError
        For a value with a line break, or with both ``"`` and ``'`` followed by whitespace.
    """
    if "\n" in value or "\r" in value:
        raise CoordinateFormatError(path, f"the value {value!r} holds a line break, which a STAR file cannot "
                                          f"hold; rename it")
    if value and _NEEDS_QUOTE.search(value) is None:
        return value
    if _DOUBLE_CLOSES.search(value) is None:
        return f'"{value}"'
    if _SINGLE_CLOSES.search(value) is None:
        return f"'{value}'"
    raise CoordinateFormatError(path, f"the value {value!r} cannot be quoted in a STAR file (it holds both a "
                                      f"\" and a ' followed by a space); rename it")


def format_number(value: float) -> str:
    """Integers as integers, else at most 6 decimals (6 significant digits below 1e-4)."""
    v = float(value)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if 1e-4 <= abs(v) < 1e15:
        return f"{v:.6f}".rstrip("0").rstrip(".")
    return f"{v:.6g}"


def _format_value(value: Any, path: str | os.PathLike[str]) -> str:
    if isinstance(value, str):
        return quote_value(value, path=path)
    if value is None:
        return '""'
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (numbers.Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        return format_number(float(value))
    if isinstance(value, bytes):
        return quote_value(value.decode("utf-8", "replace"), path=path)
    return quote_value(str(value), path=path)


def _format_floats(arr: np.ndarray) -> list[str]:
    """:func:`format_number` for a float array, vectorised where it matters."""
    rounded = np.round(arr, 6)
    out = np.array([repr(v) for v in rounded.tolist()], dtype=object)  # 'nan', 'inf' as they are
    finite = np.isfinite(arr)
    integral = finite & (rounded == np.floor(rounded)) & (np.abs(rounded) < 1e15)
    tiny = finite & (np.abs(arr) < 1e-4) & (arr != 0)
    integral &= ~tiny
    out[integral] = rounded[integral].astype(np.int64).astype(str)
    for i in np.flatnonzero(tiny):
        out[i] = f"{arr[i]:.6g}"
    return out.tolist()


def _format_column(values: Any, path: str | os.PathLike[str]) -> list[str]:
    """Every value of one column as its STAR token."""
    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    arr = arr.reshape(-1)
    kind = arr.dtype.kind
    if kind in "iu":
        return arr.astype(str).tolist()
    if kind == "b":
        return arr.astype(np.int64).astype(str).tolist()
    if kind == "f":
        return _format_floats(arr.astype(np.float64))
    items = arr.tolist()
    try:  # names repeat (one per particle): quote each distinct value once
        memo = {v: _format_value(v, path) for v in set(items)}
    except TypeError:  # unhashable values
        return [_format_value(v, path) for v in items]
    return [memo[v] for v in items]


#: Rows formatted at a time by :func:`write_star`.
_ROWS_PER_SLICE = 5000


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bytes, numbers.Number, np.generic))


def _check_name(kind: str, name: str, path: str | os.PathLike[str]) -> None:
    if not isinstance(name, str) or re.search(r"\s", name) or (kind == "label" and not name):
        raise CoordinateFormatError(path, f"the {kind} name {name!r} is empty or holds whitespace")


def write_star(blocks: Mapping[str, Any], fh: IO[str] | None = None, *, comment: str | None = None,
               path: str | os.PathLike[str] = "STAR output") -> str:
    """RELION-style STAR text for ``blocks``, also written to ``fh`` when given.

    Parameters
    ----------
    blocks : mapping or DataFrame
        ``{block name without "data_": block}`` in file order. A block is a DataFrame or a
        mapping ``{label without "_": column}`` (a loop, columns of equal length), or a mapping
        ``{label: scalar}`` (a key-value block). A DataFrame alone is one unnamed block
        (``data_``, as in RELION's per-micrograph files).
    fh : text file, optional
        Where to write the text as well.
    comment : str, optional
        ``# ``-prefixed lines at the top.
    path : path-like
        Names the output in messages.

    Returns
    -------
    str
        The whole text.

    Raises
    ------
    CoordinateFormatError
        A text value that cannot be written (line break, unquotable), a block or label name
        with whitespace, or columns of different lengths.
    """
    if hasattr(blocks, "columns") and hasattr(blocks, "to_dict"):  # a DataFrame
        blocks = {"": blocks}
    parts: list[str] = []
    if comment:
        parts += [f"# {line}".rstrip() + "\n" for line in comment.splitlines()]
        parts.append("\n")
    for name, block in blocks.items():
        _check_name("block", name, path)
        parts.append(f"data_{name}\n\n")
        if hasattr(block, "columns") and hasattr(block, "to_dict"):  # a DataFrame
            columns: Mapping[str, Any] = {str(c): block[c] for c in block.columns}
            loop = True
        else:
            columns = dict(block)
            scalars = [_is_scalar(v) for v in columns.values()]
            loop = not (columns and all(scalars))
            if loop and any(scalars):
                raise CoordinateFormatError(path, f"block data_{name} mixes single values and columns")
        for label in columns:
            _check_name("label", label, path)
        if not loop:
            width = max(len(label) for label in columns)
            parts += [f"_{label:<{width}} {_format_value(value, path)}\n" for label, value in columns.items()]
            parts.append("\n")
            continue
        parts.append("loop_\n")
        parts += [f"_{label} #{i}\n" for i, label in enumerate(columns, start=1)]
        values_of = [v.to_numpy() if hasattr(v, "to_numpy") else np.asarray(v) for v in columns.values()]
        lengths = {len(v) for v in values_of}
        if len(lengths) > 1:
            raise CoordinateFormatError(path, f"the columns of block data_{name} differ in length "
                                              f"({', '.join(f'{k}: {len(v)}' for k, v in zip(columns, values_of))})")
        n_rows = lengths.pop() if lengths else 0
        # In slices: each numpy conversion or join holds the GIL for its whole length, and a
        # window saving on a worker thread must get it back every few milliseconds.
        for start in range(0, n_rows, _ROWS_PER_SLICE):
            formatted = [_format_column(v[start : start + _ROWS_PER_SLICE], path) for v in values_of]
            parts.append("\n".join(map(" ".join, zip(*formatted))))
            parts.append("\n")
        parts.append("\n")
    text = "".join(parts)
    if fh is not None:
        fh.write(text)
    return text


__all__ = ["MISSING_VALUES", "STRING_LABELS", "StarBlocks", "format_number", "is_string_label", "parse_star",
           "quote_value", "read_star", "write_star"]
