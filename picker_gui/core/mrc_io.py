"""Reading micrographs from MRC files.

Every micrograph comes back as a float32 ``[rows, cols]`` array (``image[y, x]``) with its
pixel size in Å. Headers are not trusted blindly: a user-given pixel size always wins, a
header whose sampling (``mx``) disagrees with the image width is reported as stale, and
files that strict MRC parsing rejects are re-read in permissive mode with a warning.
Anything that cannot give a usable image raises :class:`MicrographError` naming the file
and the problem in one line.
"""

from __future__ import annotations

import glob
import logging
import re
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Iterable, Iterator

import mrcfile
import numpy as np

from picker_gui.core.errors import MicrographError

logger = logging.getLogger(__name__)

#: MRC modes mrcfile reads into real-valued arrays.
READABLE_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
MICROGRAPH_SUFFIXES = (".mrc", ".mrcs", ".map")
#: Plausible range of a micrograph pixel size; header values outside it are ignored.
_PIXEL_SIZE_RANGE_A = (0.2, 100.0)


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

    Raises
    ------
    MicrographError
        The file is missing, empty, truncated, not MRC, of an unsupported mode, a
        multi-section stack, constant, or entirely NaN/inf.
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
    if float(image.max()) == float(image.min()):
        raise MicrographError(path, f"image is constant (every pixel {float(image.min()):g}): nothing to pick")
    header = MicrographHeader(path, shape, mode, px, notes)
    for note in notes:
        logger.warning("%s: %s", path, note)
    return Micrograph(path, image, px, header, notes)


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
                raise MicrographError(p, "folder holds no .mrc files")
        elif any(ch in text for ch in "*?["):
            matches = sorted(Path(q) for q in glob.glob(str(p)) if Path(q).is_file())
            if not matches:
                raise MicrographError(text, "pattern matches no file")
        else:
            matches = [p]  # a missing file is reported when it is read, with the others going on
        for q in matches:
            found.setdefault(q, None)
    return list(found)


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
    """Write a float32 2D image atomically (to a temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
        if pixel_size_a:
            mrc.voxel_size = float(pixel_size_a)
    tmp.replace(path)
    return path
