"""Reading micrographs from MRC files.

Every micrograph comes back as a float32 ``[rows, cols]`` array (``image[y, x]``) with its
pixel size in Å. Headers are not trusted blindly: a user-given pixel size always wins, a
header whose sampling (``mx``) disagrees with the image width is reported as stale, and
files that strict MRC parsing rejects are re-read in permissive mode with a warning.
Hot pixels (isolated values tens of standard deviations off, up to 1e37 in broken sums)
are replaced by the median, as motion-correction programs do, so that one bad pixel cannot
turn a whole preprocessed micrograph into NaN. TIFF and EER files are refused with a
message that says how to convert them.
Anything that cannot give a usable image raises :class:`MicrographError` naming the file
and the problem in one line.

Micrographs are matched everywhere by key (the file name without extension, see
:func:`picker_gui.core.coords.micrograph_key`): :func:`unique_micrographs` and
:func:`require_unique_micrographs` catch two inputs that share one.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Iterable, Iterator

import mrcfile
import numpy as np

from picker_gui.core.coords import micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.paths import atomic_path

logger = logging.getLogger(__name__)

#: MRC modes mrcfile reads into real-valued arrays.
READABLE_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
MICROGRAPH_SUFFIXES = (".mrc", ".mrcs", ".map")
#: Plausible range of a micrograph pixel size; header values outside it are ignored.
_PIXEL_SIZE_RANGE_A = (0.2, 100.0)
#: A pixel is hot when it lies further than this many robust standard deviations from the
#: median of the micrograph *and* from at least 6 of its 8 neighbours. Real images stay far
#: below. Measured: 8 EMPIAR-10017 micrographs reach at most 8.1 σ from the median, 12 demo
#: micrographs (with ice and carbon) 6.9 σ; a real 8x-binned Magellon micrograph 7.2 σ inside,
#: but 21 σ in a dark one-pixel line along its first column (an edge artefact that a 20 σ limit
#: would patch in 7 places). Broken pixels (saturated counts, 1e37) are orders of magnitude out.
HOT_PIXEL_SIGMA = 30.0
#: Beyond this many σ a pixel is broken whatever its neighbours (no binning makes image
#: content reach it): catches blocks of hot pixels that the neighbour test lets through.
ABSURD_SIGMA = 1000.0
#: More outliers than this fraction of the pixels are not hot pixels but a broken image.
MAX_HOT_PIXEL_FRACTION = 0.01
#: About this many pixels (a strided subsample) estimate the median and the robust σ.
_ROBUST_SAMPLE = 250_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Mode numbers of the integer MRC modes (their values are counts: one count is a natural σ floor).
_INTEGER_MODES = (0, 1, 6)
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders
_TIFF_SUFFIXES = (".tif", ".tiff")
_MOVIE_SUFFIXES = (".eer",)
_TIFF_ADVICE = (
    "picker-gui reads MRC micrographs (motion-corrected sums). Convert a TIFF micrograph with e.g. "
    "`relion_image_handler --i {name} --o {stem}.mrc` or IMOD's `tif2mrc {name} {stem}.mrc`; "
    "a TIFF movie needs motion correction first (RELION, MotionCor2, cryoSPARC)"
)
_EER_ADVICE = (
    "picker-gui reads motion-corrected sums: run motion correction (RELION, MotionCor2, cryoSPARC) "
    "and give the .mrc micrographs it writes"
)


@dataclass(frozen=True)
class MicrographHeader:
    """What the header says, plus what we concluded from it."""

    path: Path
    shape: tuple[int, int]  # rows, cols
    mode: int
    pixel_size_a: float | None  # best estimate, None when unknown
    notes: tuple[str, ...] = ()  # stale header, permissive read, ...


@dataclass(frozen=True)
class Micrograph:
    """A micrograph image as float32 ``[rows, cols]`` and its pixel size (Å)."""

    path: Path
    image: np.ndarray
    pixel_size_a: float | None
    header: MicrographHeader
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]


def _friendly(message: str) -> str:
    """Turn an mrcfile complaint into a sentence a user can act on."""
    if "enough bytes for MRC header" in message:
        return "file is empty or shorter than an MRC header (1024 bytes)"
    if "Map ID string not found" in message:
        return "not an MRC file (no 'MAP ' identifier in the header)"
    m = re.search(r"Expected (\d+) bytes in data block but (?:limit is|could only read) (\d+)", message)
    if m:
        return f"truncated: the header promises {int(m.group(1))} bytes of image data but the file holds {int(m.group(2))}"
    m = re.search(r"Unrecognised mode '(-?\d+)'", message)
    if m:
        modes = ", ".join(f"{k} {v}" for k, v in READABLE_MODES.items())
        return f"unsupported MRC data mode {m.group(1)} (readable modes: {modes})"
    m = re.search(r"Expected (\d+) bytes in extended header", message)
    if m:
        return "corrupt header: the extended header is longer than the file"
    return message


def _plausible_header(path: Path) -> bool:
    """Whether a header without the 'MAP ' identifier still describes an image that fits the
    file (old writers omit the identifier; text or other binary files do not pass this)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        return False
    for order in "<>":
        nx, ny, nz, mode = np.frombuffer(head[:16], dtype=f"{order}i4")
        next_ = int(np.frombuffer(head[92:96], dtype=f"{order}i4")[0])
        itemsize = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}.get(int(mode))
        if itemsize and 0 < nx < 10**6 and 0 < ny < 10**6 and 0 < nz < 10**5 and 0 <= next_ < 10**8:
            if 1024 + next_ + int(nx) * int(ny) * int(nz) * itemsize <= path.stat().st_size:
                return True
    return False


def _unsupported_format(path: Path) -> str | None:
    """Why ``path`` is a TIFF or EER file and not an MRC one (by magic bytes, whatever the
    extension, or by a .tif/.tiff/.eer extension on a file without the MRC identifier)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(212)
    except OSError as exc:
        raise MicrographError(path, f"cannot be read ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    is_mrc = head[208:212] == b"MAP "
    if suffix in _MOVIE_SUFFIXES and not is_mrc:
        return "EER movies are not supported; " + _EER_ADVICE
    if head[:4] in _TIFF_MAGIC or (suffix in _TIFF_SUFFIXES and not is_mrc):
        return "TIFF images are not supported; " + _TIFF_ADVICE.format(name=path.name, stem=path.stem)
    return None


def _open(path: Path, header_only: bool):
    """Open strictly, then permissively; return (mrc, notes). Caller closes mrc."""
    if not path.exists():
        raise MicrographError(path, "no such file")
    if path.is_dir():
        raise MicrographError(path, "is a folder, not an MRC file")
    if path.stat().st_size == 0:
        raise MicrographError(path, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a strict read that only warns is still suspicious
            return mrcfile.open(path, mode="r", header_only=header_only), ()
    except (ValueError, RuntimeWarning) as strict_error:
        unsupported = _unsupported_format(path)  # only files that are not good MRC need the sniff
        if unsupported:
            raise MicrographError(path, unsupported) from None
        strict_problem = _friendly(str(strict_error))
        if "Map ID string not found" in str(strict_error) and not _plausible_header(path):
            raise MicrographError(path, strict_problem) from None
    except OSError as exc:
        raise MicrographError(path, f"cannot be read ({exc.strerror or exc})") from None
    # Strict parsing failed: real files with stale headers (nversion 0, wrong rms, no map ID
    # from old software) still hold good data, so read permissively and say so.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mrc = mrcfile.open(path, mode="r", permissive=True, header_only=header_only)
        except (ValueError, OSError) as exc:
            raise MicrographError(path, _friendly(str(exc))) from None
    if "Map ID string not found" in " ".join(str(w.message) for w in caught) and int(mrc.header.mode) not in READABLE_MODES:
        mrc.close()
        raise MicrographError(path, "not an MRC file (no 'MAP ' identifier in the header)")
    if not header_only and mrc.data is None:
        mrc.close()
        raise MicrographError(path, strict_problem)
    return mrc, (f"header problem, read permissively: {strict_problem}",)


def _pixel_size(mrc, path: Path, shape: tuple[int, int], override: float | None) -> tuple[float | None, list[str]]:
    notes: list[str] = []
    header = mrc.header
    nx = shape[1]
    mx = int(header.mx)
    cella_x = float(header.cella.x)
    header_px = cella_x / mx if mx > 0 else 0.0
    if mx > 0 and mx != nx and cella_x > 0:
        # Binning tools often update nx but leave mx and the cell: the cell still spans the
        # whole field of view, so cell / nx is the pixel size of the stored image.
        estimate = cella_x / nx
        notes.append(
            f"stale header: sampling mx={mx} differs from the image width {nx}; "
            f"voxel size {header_px:.4g} Å taken as cell/width = {estimate:.4g} Å"
        )
        header_px = estimate
    if override is not None:
        if override <= 0:
            raise MicrographError(path, f"pixel size must be positive, got {override}")
        if header_px and abs(header_px - override) / override > 0.01:
            logger.debug("%s: header pixel size %.4g Å overridden by %.4g Å", path, header_px, override)
        return float(override), notes
    lo, hi = _PIXEL_SIZE_RANGE_A
    if not (lo <= header_px <= hi):
        if header_px and abs(header_px - 1.0) > 1e-6:
            notes.append(f"implausible pixel size {header_px:.4g} Å in the header, ignored")
        else:
            notes.append("no pixel size in the header; give one with --pixel-size")
        return None, notes
    return float(header_px), notes


def _image_shape(data_shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    if len(data_shape) == 2:
        return int(data_shape[0]), int(data_shape[1])
    if len(data_shape) == 3 and data_shape[0] == 1:
        return int(data_shape[1]), int(data_shape[2])
    if len(data_shape) == 3:
        raise MicrographError(
            path, f"is a stack of {data_shape[0]} sections; expected one micrograph (a motion-corrected sum)"
        )
    raise MicrographError(path, f"has {len(data_shape)} dimensions; expected a 2D image")


def read_header(path: str | PathLike, pixel_size_a: float | None = None) -> MicrographHeader:
    """Read only the header: shape, mode and pixel size, without loading the image."""
    path = Path(path)
    mrc, notes = _open(path, header_only=True)
    with mrc:
        h = mrc.header
        nz, ny, nx = int(h.nz), int(h.ny), int(h.nx)
        shape = _image_shape((nz, ny, nx) if nz > 1 else (ny, nx), path)
        mode = int(h.mode)
        if mode not in READABLE_MODES:
            raise MicrographError(path, _friendly(f"Unrecognised mode '{mode}'"))
        px, px_notes = _pixel_size(mrc, path, shape, pixel_size_a)
    return MicrographHeader(path, shape, mode, px, tuple(notes) + tuple(px_notes))


def read_micrograph(path: str | PathLike, pixel_size_a: float | None = None) -> Micrograph:
    """Read one micrograph as float32 ``[rows, cols]``.

    Parameters
    ----------
    path
        An MRC file (modes 0, 1, 2, 6, 12; a 3D file with one section is accepted).
    pixel_size_a
        Pixel size in Å; overrides the header.

    Up to 1 % NaN/infinite pixels and up to 1 % hot pixels (see :func:`replace_hot_pixels`)
    are replaced by the median, each with a note; notes are logged as warnings and kept in
    ``Micrograph.notes``.

    Raises
    ------
    MicrographError
        The file is missing, empty, truncated, not MRC (TIFF and EER files say how to
        convert them), of an unsupported mode, a multi-section stack, constant, entirely
        NaN/inf, or has more outliers than hot pixels explain.
    """
    path = Path(path)
    mrc, notes = _open(path, header_only=False)
    with mrc:
        mode = int(mrc.header.mode)
        if mode not in READABLE_MODES:
            raise MicrographError(path, _friendly(f"Unrecognised mode '{mode}'"))
        shape = _image_shape(mrc.data.shape, path)
        # A copy: mrcfile hands out read-only buffers, and the file is closed below.
        image = np.array(mrc.data, dtype=np.float32).reshape(shape)
        px, px_notes = _pixel_size(mrc, path, shape, pixel_size_a)
    notes = tuple(notes) + tuple(px_notes)
    finite = np.isfinite(image)
    if not finite.all():
        n_bad = int(image.size - np.count_nonzero(finite))
        if n_bad == image.size:
            raise MicrographError(path, "every pixel is NaN or infinite")
        if n_bad > 0.01 * image.size:
            raise MicrographError(path, f"{n_bad} of {image.size} pixels are NaN or infinite")
        image = np.where(finite, image, np.median(image[finite])).astype(np.float32)
        notes += (f"{n_bad} NaN/infinite pixels replaced by the median",)
    image, n_hot = replace_hot_pixels(image, path, integer=mode in _INTEGER_MODES)
    if n_hot:
        notes += (f"{n_hot} hot pixel(s) beyond {HOT_PIXEL_SIGMA:g} σ replaced by the median",)
    if float(image.max()) == float(image.min()):
        raise MicrographError(path, f"image is constant (every pixel {float(image.min()):g}): nothing to pick")
    header = MicrographHeader(path, shape, mode, px, notes)
    for note in notes:
        logger.warning("%s: %s", path, note)
    return Micrograph(path, image, px, header, notes)


def robust_stats(image: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 × MAD) of the finite pixels of a strided
    subsample of about 250,000 pixels, in float64 (cheap on a 4096² micrograph).

    When more than half of the pixels share one value (sparse counting data) the MAD is 0;
    the standard deviation of the central 99 % of the subsample is used instead (0 when
    that is constant too).
    """
    image = np.asarray(image)
    step = max(1, math.ceil(math.sqrt(image.size / _ROBUST_SAMPLE)))
    sample = image[::step, ::step] if image.ndim == 2 else image.reshape(-1)[:: step * step]
    sub = np.asarray(sample, dtype=np.float64).ravel()
    sub = sub[np.isfinite(sub)]
    if sub.size == 0:
        return math.nan, math.nan
    median = float(np.median(sub))
    sigma = 1.4826 * float(np.median(np.abs(sub - median)))
    if sigma == 0:
        lo, hi = np.quantile(sub, [0.005, 0.995])
        sigma = float(sub[(sub >= lo) & (sub <= hi)].std())
    return median, sigma


def _far_neighbours(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, limit: float) -> np.ndarray:
    """How many of the 8 neighbours (mirrored at the edges) of each given pixel differ from
    it by more than ``limit``."""
    n_rows, n_cols = image.shape
    centre = image[rows, cols].astype(np.float64)
    count = np.zeros(rows.size, dtype=np.int8)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            rr, cc = rows + dr, cols + dc
            rr = np.where((rr < 0) | (rr >= n_rows), rows - dr, rr).clip(0, n_rows - 1)
            cc = np.where((cc < 0) | (cc >= n_cols), cols - dc, cc).clip(0, n_cols - 1)
            count += np.abs(image[rr, cc].astype(np.float64) - centre) > limit
    return count


def replace_hot_pixels(
    image: np.ndarray, path: str | PathLike = "image", *, integer: bool = False, sigma_limit: float = HOT_PIXEL_SIGMA
) -> tuple[np.ndarray, int]:
    """Replace hot pixels by the median, in place; return the image and how many were replaced.

    A hot pixel lies further than ``sigma_limit`` robust standard deviations (see
    :func:`robust_stats`) from the median of the micrograph, and as far from at least 6 of
    its 8 neighbours: a single bad pixel, a pair, or a bad detector row or column, but not a
    pixel of an extended area (dark ice or a bright hole on a binned micrograph, even at a
    corner of its outline). Beyond ``ABSURD_SIGMA`` no neighbour test is made (a 2×2 block
    of 1e37 is no image content either). For integer (counting) data σ is at least one count.

    Raises
    ------
    MicrographError
        More than 1 % of the pixels would be replaced: that is a broken image, not hot pixels.
    """
    median, sigma = robust_stats(image)
    if integer:
        sigma = max(sigma, 1.0)
    if not (math.isfinite(median) and sigma > 0 and math.isfinite(sigma)):
        return image, 0  # (nearly) constant: the caller's constant-image check speaks
    limit = sigma_limit * sigma
    # Bounds clipped to the float32 range: a comparison with a wider Python float overflows.
    lo = max(median - limit, -_FLOAT32_MAX)
    hi = min(median + limit, _FLOAT32_MAX)
    candidates = np.flatnonzero((image < lo) | (image > hi))
    if candidates.size == 0:
        return image, 0
    flagged = []
    for start in range(0, candidates.size, 1_000_000):  # bounded memory on odd images
        chunk = candidates[start : start + 1_000_000]
        rows, cols = np.unravel_index(chunk, image.shape)
        absurd = np.abs(image[rows, cols].astype(np.float64) - median) > ABSURD_SIGMA * sigma
        isolated = _far_neighbours(image, rows, cols, limit) >= 6
        flagged.append(chunk[isolated | absurd])
    hot = np.concatenate(flagged)
    if hot.size > MAX_HOT_PIXEL_FRACTION * image.size:
        raise MicrographError(
            path,
            f"{hot.size} of {image.size} pixels ({100 * hot.size / image.size:.1f} %) lie more than "
            f"{sigma_limit:g} σ from the median ({median:.4g}, σ {sigma:.3g}) and from their neighbours: "
            f"too many for hot pixels; the file may be corrupt or its data type wrong",
        )
    np.put(image, hot, median)
    return image, int(hot.size)


def find_micrographs(inputs: Iterable[str | PathLike]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of micrographs.

    Folders contribute their ``*.mrc``/``*.mrcs``/``*.map`` files (not recursively).
    A pattern or folder that matches nothing raises :class:`MicrographError`.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        p = Path(text).expanduser()
        if p.is_dir():
            matches = sorted(q for q in p.iterdir() if q.suffix.lower() in MICROGRAPH_SUFFIXES and q.is_file())
            if not matches:
                raise MicrographError(p, _empty_folder_problem(p))
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(q) for q in glob.glob(str(p)) if Path(q).is_file())
            if not matches:
                raise MicrographError(text, "pattern matches no file")
        else:
            matches = [p]  # a missing file is reported when it is read, with the others going on
        for q in matches:
            found.setdefault(q, None)
    return list(found)


def _empty_folder_problem(folder: Path) -> str:
    """Why a folder gives no micrographs, naming the TIFF/EER files it holds instead."""
    counts: dict[str, int] = {}
    first_tiff: Path | None = None
    for q in sorted(folder.iterdir()):
        suffix = q.suffix.lower()
        if suffix in _TIFF_SUFFIXES + _MOVIE_SUFFIXES and q.is_file():
            counts[suffix] = counts.get(suffix, 0) + 1
            if suffix in _TIFF_SUFFIXES and first_tiff is None:
                first_tiff = q
    n_tiff = sum(counts.get(x, 0) for x in _TIFF_SUFFIXES)
    n_eer = sum(counts.get(x, 0) for x in _MOVIE_SUFFIXES)
    if not (n_tiff or n_eer):
        return "folder holds no .mrc files"
    found, advice = [], []
    if n_tiff:
        kinds = "/".join(x for x in _TIFF_SUFFIXES if x in counts)
        found.append(f"{n_tiff} {kinds} file{'s' if n_tiff > 1 else ''}")
        advice.append("TIFF is not supported; " + _TIFF_ADVICE.format(name=first_tiff.name, stem=first_tiff.stem))
    if n_eer:
        found.append(f"{n_eer} .eer file{'s' if n_eer > 1 else ''}")
        advice.append("EER movies are not supported; " + _EER_ADVICE)
    return f"folder holds no .mrc files, but {' and '.join(found)}: {'. '.join(advice)}"


def iter_micrographs(
    paths: Iterable[str | PathLike], pixel_size_a: float | None = None
) -> Iterator[tuple[Path, Micrograph | MicrographError]]:
    """Read many micrographs; a bad one yields its error and the batch goes on."""
    for p in paths:
        try:
            yield Path(p), read_micrograph(p, pixel_size_a)
        except MicrographError as exc:
            yield Path(p), exc


def write_mrc(path: str | PathLike, image: np.ndarray, pixel_size_a: float | None) -> Path:
    """Write a float32 2D image atomically: to a unique temporary file beside ``path``,
    synced to disk, then renamed over it. A full disk or any other error leaves the old
    file as it was and removes the temporary file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
            if pixel_size_a:
                mrc.voxel_size = float(pixel_size_a)
    return path


# -- one micrograph per key ---------------------------------------------------------------
_SUFFIX_PREFERENCE = {".mrc": 0, ".mrcs": 1, ".map": 2}
_SHARED_KEY_REASON = (
    "coordinate files name micrographs by file name without extension, so these cannot be told apart; rename one"
)


def _identity(path: Path) -> str:
    """One string per file: the same file named twice is not a collision."""
    try:
        return str(path.resolve())
    except OSError:
        return os.path.abspath(path)


def micrograph_key_collisions(paths: Iterable[str | PathLike]) -> dict[str, list[Path]]:
    """Keys (file name without extension) shared by two or more different files, each with
    those files in the order given. The same file given twice is not a collision."""
    groups: dict[str, list[Path]] = {}
    seen: dict[str, set[str]] = {}
    for raw in paths:
        p = Path(raw)
        key = micrograph_key(p)
        ident = _identity(p)
        if ident in seen.setdefault(key, set()):
            continue
        seen[key].add(ident)
        groups.setdefault(key, []).append(p)
    return {key: group for key, group in groups.items() if len(group) > 1}


def _preferred(group: list[Path]) -> tuple[Path, str]:
    """The file kept for a shared key, and why: the first given, unless a file in the same
    folder has a more usual extension (.mrc before .mrcs before .map)."""
    first = group[0]
    folder = _identity(first.parent)
    rank = lambda q: _SUFFIX_PREFERENCE.get(q.suffix.lower(), len(_SUFFIX_PREFERENCE))  # noqa: E731
    same_folder = [q for q in group if _identity(q.parent) == folder]
    best = min(same_folder, key=rank)  # min keeps the first of equal rank
    if best is not first and rank(best) < rank(first):
        return best, f"a {best.suffix} file is preferred over {first.suffix} in the same folder"
    return first, "it was given first"


def unique_micrographs(paths: Iterable[str | PathLike]) -> tuple[list[Path], list[str]]:
    """Drop micrographs whose key another file already has.

    Returns
    -------
    paths, messages
        The paths in the order given, without the same file twice and with one file per
        key (see :func:`_preferred`); and one message per shared key, naming every file,
        the one used and why.
    """
    paths = [Path(p) for p in paths]
    collisions = micrograph_key_collisions(paths)
    keep: dict[str, Path] = {}
    messages = []
    for key, group in collisions.items():
        chosen, why = _preferred(group)
        keep[key] = chosen
        messages.append(
            f"{len(group)} files are micrograph {key!r}: {', '.join(map(str, group))}; "
            f"using {chosen} ({why}) and ignoring the other{'s' if len(group) > 2 else ''}, because {_SHARED_KEY_REASON}"
        )
    out: list[Path] = []
    seen: set[str] = set()
    for p in paths:
        ident = _identity(p)
        if ident in seen:
            continue
        key = micrograph_key(p)
        if key in keep and _identity(keep[key]) != ident:
            continue
        seen.add(ident)
        out.append(p)
    return out, messages


def require_unique_micrographs(paths: Iterable[str | PathLike], *, show: int = 3) -> list[Path]:
    """Refuse, before any work, micrographs that share a key; return the paths otherwise.

    Raises
    ------
    UsageError
        Listing the first ``show`` shared keys with their files, and how many more there are.
    """
    paths = [Path(p) for p in paths]
    collisions = micrograph_key_collisions(paths)
    if not collisions:
        return paths
    listed = "; ".join(f"{key!r}: {', '.join(map(str, group))}" for key, group in list(collisions.items())[:show])
    more = f"; and {len(collisions) - show} more" if len(collisions) > show else ""
    raise UsageError(
        f"{len(collisions)} micrograph name{'s are' if len(collisions) > 1 else ' is'} shared by several files, "
        f"whose picks and labels would overwrite each other ({_SHARED_KEY_REASON}): {listed}{more}"
    )
