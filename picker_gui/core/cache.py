"""On-disk cache of preprocessed micrographs.

An entry is keyed by the micrograph's absolute path, size and modification time and by the
preprocessing parameters, so editing or replacing a file, or changing a parameter, misses
the cache instead of serving stale pixels. Entries are a ``.npy`` image and a ``.json``
description, each written to a unique temporary name, synced and renamed, so a crash or a
full disk never leaves a half-written entry that looks valid. An entry whose image is not
finite is ignored (and recomputed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from os import PathLike
from pathlib import Path

import numpy as np

from picker_gui.core.mrc_io import read_micrograph
from picker_gui.core.paths import atomic_path, atomic_write_bytes, user_folder
from picker_gui.core.preprocess import Normalization, Preprocessed, PreprocessParams, preprocess_micrograph

logger = logging.getLogger(__name__)

#: Bump when preprocessing changes its output, so that old entries are not reused.
#: 2: hot pixels replaced when reading; non-finite results refused; 16-px floor of the
#: automatic downsampling applied with floor() instead of round().
CACHE_VERSION = 2


def default_cache_dir() -> Path:
    """``$PICKER_GUI_CACHE``, else ``$XDG_CACHE_HOME/picker-gui``, else ``~/.cache/picker-gui``."""
    return user_folder("cache")


class PreprocessCache:
    """Preprocessed micrographs stored under ``root/preprocessed``."""

    def __init__(self, root: str | PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.folder = self.root / "preprocessed"
        self.hits = 0
        self.misses = 0

    def key(self, path: str | PathLike, params: PreprocessParams) -> str:
        p = Path(path).resolve()
        st = p.stat()
        ident = {
            "path": str(p),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "params": params.to_dict(),
            "version": CACHE_VERSION,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npy", self.folder / f"{key}.json"

    def load(self, path: str | PathLike, params: PreprocessParams) -> Preprocessed | None:
        """The cached result, or None (missing, unreadable or from other parameters)."""
        try:
            key = self.key(path, params)
        except OSError:
            return None
        npy, meta_path = self._paths(key)
        if not (npy.exists() and meta_path.exists()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            image = np.load(npy)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable cache entry %s: %s", npy, exc)
            return None
        if image.ndim != 2 or not np.isfinite(image).all():
            logger.warning("ignoring cache entry %s: not a finite 2D image", npy)
            return None
        return Preprocessed(
            path=Path(path),
            image=image,
            scale=tuple(meta["scale"]),
            original_shape=tuple(meta["original_shape"]),
            pixel_size_a=meta["pixel_size_a"],
            normalization=Normalization(**meta["normalization"]),
            notes=tuple(meta.get("notes", ())),
        )

    def store(self, result: Preprocessed, params: PreprocessParams) -> None:
        key = self.key(result.path, params)
        npy, meta_path = self._paths(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(npy) as tmp:  # tmp ends in .npy, so np.save adds no suffix
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(result.image, dtype=np.float32))
        meta = {
            "source": str(Path(result.path).resolve()),
            "scale": list(result.scale),
            "original_shape": list(result.original_shape),
            "pixel_size_a": result.pixel_size_a,
            "normalization": vars(result.normalization),
            "notes": list(result.notes),
            "params": params.to_dict(),
        }
        # The JSON is written last: an entry counts only once both files exist.
        atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode())

    def get_or_compute(self, path: str | PathLike, params: PreprocessParams) -> Preprocessed:
        cached = self.load(path, params)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        result = preprocess_micrograph(read_micrograph(path, params.pixel_size_a), params)
        try:
            self.store(result, params)
        except OSError as exc:  # a full or read-only disk must not stop the work
            logger.warning("could not write the preprocessing cache in %s: %s", self.folder, exc)
        return result
