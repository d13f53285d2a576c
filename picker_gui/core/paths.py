"""Where picker-gui keeps things on disk, and how it writes files safely.

Every file picker-gui writes goes through :func:`atomic_output` (or the two helpers built on
it): the content is written to a temporary file beside the target, flushed to disk, and only
then renamed over the target. A crash, a kill or a full disk at any moment leaves either the
old file or the new one, never half of one, and never a stray temporary file after an error.

:func:`check_outputs` is the other half of "nothing a user made is overwritten": a command
calls it before any work, so that an output that is also one of its inputs, or a folder that
cannot be written, is refused at once with a message naming the option.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import IO, Iterable, Iterator

from picker_gui.core.errors import UsageError

_XDG = {
    "cache": ("PICKER_GUI_CACHE", "XDG_CACHE_HOME", ".cache"),
    "config": ("PICKER_GUI_CONFIG", "XDG_CONFIG_HOME", ".config"),
    "data": ("PICKER_GUI_DATA", "XDG_DATA_HOME", ".local/share"),
}


def user_folder(kind: str) -> Path:
    """``$PICKER_GUI_<KIND>``, else ``$XDG_<KIND>_HOME/picker-gui``, else the XDG default
    under the home folder (``~/.cache``, ``~/.config``, ``~/.local/share``)."""
    own, xdg, default = _XDG[kind]
    if os.environ.get(own):
        return Path(os.environ[own])
    base = os.environ.get(xdg) or Path.home() / default
    return Path(base) / "picker-gui"


@contextlib.contextmanager
def atomic_output(path: str | PathLike, mode: str = "wb", *, encoding: str | None = None,
                  newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it is flushed,
    synced and renamed over ``path``; on an error it is removed and ``path`` is untouched.

    The parent folder must exist. ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 by default).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_output writes only ('w' or 'wb'), not {mode!r}")
    kwargs = {} if mode == "wb" else {"encoding": encoding or "utf-8", "newline": newline}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def _raise_naming(exc: BaseException, path: Path) -> None:
    """A write error on an open file names no file ("File too large"): name the target, not
    the temporary file, so that the message says which output could not be written."""
    if isinstance(exc, OSError) and (exc.filename is None or Path(str(exc.filename)).name.startswith(f".{path.name}.")):
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


@contextlib.contextmanager
def atomic_path(path: str | PathLike, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for libraries that write by file name (mrcfile,
    torch.save); renamed over ``path`` when the block ends cleanly, removed otherwise.

    ``durable=False`` skips the flush to disk (fsync, up to a tenth of a second on a busy
    disk): the file is still whole or absent after a crash of the program, but a power cut
    may lose it. Only for files that are rewritten often and worth nothing after a reboot
    (a lock's heartbeat)."""
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:  # a read-only or missing folder: name the target, not a temporary name
        _raise_naming(exc, path)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        _keep_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _raise_naming(exc, path)
        raise


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it: done once, before any thread runs
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _keep_mode(path: Path, tmp: Path) -> None:
    """mkstemp makes files readable by their owner only; give the new file the old file's
    permissions, or the usual ones (0666 less the umask) for a new file."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_UMASK
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def atomic_write_bytes(path: str | PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` so that a crash leaves the old content or the new, never half."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | PathLike, text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


# -- outputs are never inputs -----------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Iterable[tuple[str | PathLike, str]], inputs: Iterable[str | PathLike] = (), *,
                  folder_outputs: Iterable[str] = ()) -> None:
    """Refuse, before any work, an output that is one of the inputs or cannot be written.

    Parameters
    ----------
    outputs
        ``(path, option)`` pairs, e.g. ``(args.out, "--out")``; the option names the output
        in the message.
    inputs
        Files and folders the command reads.
    folder_outputs
        Options whose path is a folder the command writes files into (made if missing). Such
        a folder may not be an input folder nor hold an input file: the files written there
        could replace the inputs, or be read as inputs by the next run.

    Raises
    ------
    UsageError
        Naming the option, the path and what is wrong.
    """
    inputs = [Path(p) for p in inputs]
    folder_opts = set(folder_outputs)
    for raw, option in outputs:
        out = Path(raw)
        if option in folder_opts:
            if out.exists() and not out.is_dir():
                raise UsageError(f"{out} is a file, not a folder", option=option)
            for inp in inputs:
                if _same_file(out, inp if inp.is_dir() else inp.parent):
                    raise UsageError(f"{out} is where the input {inp} is read from; give another folder "
                                     f"(inputs are never overwritten)", option=option)
            _check_writable_folder(out, option)
            continue
        for inp in inputs:
            if _same_file(out, inp):
                raise UsageError(f"{out} is also an input; write the output somewhere else "
                                 f"(inputs are never overwritten)", option=option)
        if not out.is_dir():  # an existing folder: a per-micrograph format writes into it
            _check_writable_folder(out.parent, option)


def _check_writable_folder(folder: Path, option: str) -> None:
    """Make ``folder`` if missing and prove a file can be created in it."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(f"cannot make the folder {folder}: {existing} is a file", option=option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".picker-gui-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = "read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
        raise UsageError(f"cannot write in {folder} ({reason})", option=option) from None
