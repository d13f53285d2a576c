"""The canonical coordinate table.

Convention, used everywhere in picker-gui: a particle is its *centre* in pixels of the
micrograph as stored on disk (the original, not downsampled, grid); ``x`` is the column and
``y`` the row of the ``[y, x]`` numpy array, with the origin at the first stored pixel.
File formats that use other conventions (EMAN .box lower-left corners, y measured from the
other edge, coordinates on a binned grid) are converted in :mod:`picker_gui.core.formats`,
and nowhere else.

Micrographs are matched by *key*: the basename without its extension, so that
``MotionCorr/job002/mic_001.mrc``, ``mic_001.mrc`` and ``mic_001`` all name the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePath
from typing import Iterable, Iterator, Mapping

import numpy as np

#: Label kinds a particle row can carry.
PARTICLE = "particle"
NEGATIVE = "negative"
KINDS = (PARTICLE, NEGATIVE)
COLUMNS = ("micrograph", "x", "y", "score", "kind", "source")

_IMAGE_SUFFIXES = (".mrcs", ".mrc", ".tiff", ".tif", ".eer", ".png", ".jpg", ".jpeg", ".map", ".st")


def micrograph_key(name: str | PurePath) -> str:
    """Return the name a micrograph is matched by: its basename without image extension.

    Only known image extensions are stripped, so a name with dots (``grid1.sq2.mic7``)
    keeps them.
    """
    base = PurePath(str(name).replace("\\", "/")).name
    lower = base.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _as_str_array(values: Iterable[str] | np.ndarray | str, n: int) -> np.ndarray:
    if isinstance(values, str):
        return np.full(n, values, dtype=object)
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"expected {n} values, got shape {arr.shape}")
    if n < 1000:
        return arr.astype(str).astype(object)
    # Many rows, few distinct names (a name per particle): convert each distinct value once.
    uniques, codes = _factorize(arr)
    return np.array([str(u) for u in uniques], dtype=object)[codes]


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values in order of first appearance, code of every value into them).

    pandas' hash table for many rows; a dict for a few, so that opening a small project
    does not pay for importing pandas.
    """
    if len(values) > 20_000:
        import pandas as pd

        codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=False)
        return np.asarray(uniques, dtype=object), codes.astype(np.int64)
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    return np.array(list(index), dtype=object), codes


@dataclass(frozen=True)
class CoordinateTable:
    """Particles as parallel arrays, one row each.

    Attributes
    ----------
    micrograph : object array of str
        Micrograph name as given by the source (path or basename); see :func:`micrograph_key`.
    x, y : float64 arrays
        Centre in original-micrograph pixels (x = column, y = row).
    score : float64 array
        Picker score (logit, probability, FOM); NaN where the source has none.
    kind : object array of str
        ``"particle"`` or ``"negative"`` (a click that says "not a particle").
    source : object array of str
        Who made the row: ``"manual"``, ``"picker-gui"``, ``"topaz"``, a file name, ...
    """

    micrograph: np.ndarray
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    kind: np.ndarray
    source: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.x)
        for name in COLUMNS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"column {name!r} has {len(getattr(self, name))} rows, expected {n}")
        known = np.zeros(n, dtype=bool)
        for kind in KINDS:
            known |= self.kind == kind
        if not known.all():
            bad = sorted({str(k) for k in self.kind[~known]})
            raise ValueError(f"unknown particle kind(s) {bad}; expected one of {KINDS}")

    @classmethod
    def _from_checked(cls, columns: dict[str, np.ndarray]) -> "CoordinateTable":
        """A table from columns taken from valid tables (row selections, concatenations):
        nothing to check again."""
        table = object.__new__(cls)
        for name in COLUMNS:
            object.__setattr__(table, name, columns[name])
        return table

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        micrograph: Iterable[str] | np.ndarray | str,
        x: Iterable[float],
        y: Iterable[float],
        score: Iterable[float] | float | None = None,
        kind: Iterable[str] | str = PARTICLE,
        source: Iterable[str] | str = "",
    ) -> "CoordinateTable":
        """Build a table; scalars (one micrograph name, one kind) are broadcast."""
        x_arr = np.asarray(x, dtype=np.float64).reshape(-1)
        y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
        n = len(x_arr)
        if len(y_arr) != n:
            raise ValueError(f"x has {n} values but y has {len(y_arr)}")
        if score is None:
            score_arr = np.full(n, np.nan)
        else:
            score_arr = np.broadcast_to(np.asarray(score, dtype=np.float64), (n,)).copy()
        return cls(
            micrograph=_as_str_array(micrograph, n),
            x=x_arr,
            y=y_arr,
            score=score_arr,
            kind=_as_str_array(kind, n),
            source=_as_str_array(source, n),
        )

    @classmethod
    def empty(cls) -> "CoordinateTable":
        return cls.from_arrays([], [], [])

    @classmethod
    def concat(cls, tables: Iterable["CoordinateTable"]) -> "CoordinateTable":
        tables = list(tables)
        if not tables:
            return cls.empty()
        return cls._from_checked({c: np.concatenate([getattr(t, c) for t in tables]) for c in COLUMNS})

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index) -> "CoordinateTable":
        """Rows selected by a boolean mask, an index array or a slice."""
        return CoordinateTable._from_checked({c: np.atleast_1d(getattr(self, c)[index]) for c in COLUMNS})

    @cached_property
    def _key_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct keys in order of first appearance, code of every row into them),
        computed once per table: a key is worked out per distinct name, not per row."""
        if not len(self):
            return np.array([], dtype=object), np.zeros(0, dtype=np.int64)
        names, name_codes = _factorize(self.micrograph)
        keys, key_codes = _factorize(np.array([micrograph_key(n) for n in names], dtype=object))
        return keys, key_codes[name_codes]

    @property
    def keys(self) -> np.ndarray:
        """Micrograph key (basename without extension) of every row."""
        distinct, codes = self._key_codes
        return distinct[codes]

    @property
    def has_scores(self) -> bool:
        return bool(len(self)) and not np.all(np.isnan(self.score))

    def micrographs(self) -> list[str]:
        """Distinct micrograph keys in order of first appearance."""
        return [str(k) for k in self._key_codes[0]]

    def for_micrograph(self, name: str) -> "CoordinateTable":
        """Rows of one micrograph, matched by key."""
        distinct, codes = self._key_codes
        where = np.flatnonzero(distinct == micrograph_key(name))
        if not len(where):
            return self[np.zeros(len(self), dtype=bool)]
        return self[codes == where[0]]

    def on_micrographs(self, keys: Iterable[str]) -> np.ndarray:
        """Boolean mask of the rows whose micrograph key is one of ``keys`` (per distinct
        name, not per row: fast on hundreds of thousands of rows)."""
        wanted = {micrograph_key(k) for k in keys}
        distinct, codes = self._key_codes
        return np.array([k in wanted for k in distinct], dtype=bool)[codes] if len(self) else np.zeros(0, dtype=bool)

    def named_by_key(self, names: Mapping[str, str]) -> "CoordinateTable":
        """Rows renamed through ``names`` (micrograph key -> the name to use); keys without
        an entry keep their name."""
        if not len(self):
            return self
        distinct, codes = self._key_codes
        has = np.array([k in names for k in distinct], dtype=bool)
        new = np.array([str(names.get(k, "")) for k in distinct], dtype=object)
        columns = {c: getattr(self, c) for c in COLUMNS}
        columns["micrograph"] = np.where(has[codes], new[codes], self.micrograph).astype(object)
        return CoordinateTable._from_checked(columns)

    def groupby_micrograph(self) -> Iterator[tuple[str, "CoordinateTable"]]:
        """(key, rows) per micrograph in order of first appearance; rows keep their order."""
        distinct, codes = self._key_codes
        order = np.argsort(codes, kind="stable")
        grouped = self[order]  # one gather of every column, then contiguous slices
        bounds = np.searchsorted(codes[order], np.arange(len(distinct) + 1))
        for i, k in enumerate(distinct):
            yield str(k), grouped[bounds[i] : bounds[i + 1]]

    def xy(self) -> np.ndarray:
        """``(n, 2)`` array of centres, columns x then y."""
        return np.stack([self.x, self.y], axis=1)

    # -- transformation -----------------------------------------------------------------
    def replace(self, **columns) -> "CoordinateTable":
        values = {c: getattr(self, c) for c in COLUMNS}
        n = len(self)
        for c, v in columns.items():
            if c not in values:
                raise KeyError(c)
            if c in ("micrograph", "kind", "source"):
                values[c] = _as_str_array(v, n)
            else:
                values[c] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
        return CoordinateTable(**values)

    def scaled(self, factor: float) -> "CoordinateTable":
        """Coordinates multiplied by ``factor`` (e.g. 4 to go from a 4x-binned grid to the original)."""
        return self.replace(x=self.x * factor, y=self.y * factor)

    def flipped_y(self, heights: Mapping[str, float] | float) -> "CoordinateTable":
        """``y -> height - y``, with one height for all or a height per micrograph key.

        Raises
        ------
        KeyError
            When a micrograph's height is not known.
        """
        if isinstance(heights, Mapping):
            by_key = {micrograph_key(k): float(v) for k, v in heights.items()}
            missing = sorted(set(self.keys) - set(by_key))
            if missing:
                raise KeyError(f"no image height known for micrograph(s) {', '.join(missing[:5])}")
            h = np.array([by_key[k] for k in self.keys], dtype=np.float64)
        else:
            h = float(heights)
        return self.replace(y=h - self.y)

    def with_kind(self, kind: str) -> "CoordinateTable":
        return self.replace(kind=kind)

    def sorted_by_score(self, descending: bool = True) -> "CoordinateTable":
        order = np.argsort(-self.score if descending else self.score, kind="stable")
        return self[order]

    def to_dataframe(self):
        """As a pandas DataFrame (pandas comes with starfile)."""
        import pandas as pd

        return pd.DataFrame({c: getattr(self, c) for c in COLUMNS})

    def __eq__(self, other: object) -> bool:  # dataclass eq would compare arrays ambiguously
        if not isinstance(other, CoordinateTable) or len(self) != len(other):
            return NotImplemented if not isinstance(other, CoordinateTable) else False
        return (
            all(np.array_equal(getattr(self, c), getattr(other, c)) for c in ("micrograph", "kind", "source"))
            and np.allclose(self.x, other.x)
            and np.allclose(self.y, other.y)
            and np.allclose(self.score, other.score, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]
