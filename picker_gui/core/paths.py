"""Where picker-gui keeps things on disk, and how it writes files safely."""

from __future__ import annotations

import os
from pathlib import Path

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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that a crash leaves the old content or the new, never half:
    a temporary file beside it, flushed to disk, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
