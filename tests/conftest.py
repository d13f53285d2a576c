"""Shared fixtures. Qt runs on the offscreen platform: the suite needs no display."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_user_folders(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache, config or data folders from a test."""
    for kind in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"PICKER_GUI_{kind}", str(tmp_path_factory.mktemp(kind.lower())))


def write_mrc(path: Path, data: np.ndarray, voxel_size: float | None = 1.5) -> Path:
    """Write ``data`` as an MRC file (its dtype picks the mode)."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


@pytest.fixture
def make_mrc(tmp_path):
    """``make_mrc(name, data, voxel_size=1.5)`` writes an MRC file in the test's folder."""

    def _make(name: str, data: np.ndarray, voxel_size: float | None = 1.5) -> Path:
        return write_mrc(tmp_path / name, data, voxel_size)

    return _make
