"""The general model: where training starts, and what picks a folder before any label.

Topaz starts from pretrained weights and crYOLO ships a general model; ours is a small
picker (the pooled architecture of :mod:`picker_gui.core.models`) trained on varied
simulated micrographs from two simulators (our own generator and ASPIRE: particles of
100-400 Å, 40-130 px across before the picker's own downsampling, a range of SNR, defocus,
crowding and junk). Because the picker downsamples every data set so that the particle is
16-45 px across (:func:`~picker_gui.core.preprocess.auto_downsample_factor`), one model
can start them all. ``tools/build_general_model.py`` rebuilds it; how it was trained is in
``resources/general_model/README.md``.

A missing or unreadable file is not an error: training then starts from fresh weights (as
``start="scratch"`` does) and says so.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from picker_gui.core.models import SavedModel

logger = logging.getLogger(__name__)

#: Where the shipped general model lives (in the source tree, beside the icons).
GENERAL_MODEL_PATH = Path(__file__).resolve().parents[2] / "resources" / "general_model" / "general.pt"
#: Below this many pixels across the particle (downsampled), the picker uses its
#: full-resolution models, which the general model is not.
GENERAL_MIN_DIAMETER_PX = 16.0

_lock = threading.Lock()
_cache: dict[tuple[str, float], SavedModel | None] = {}


def general_model(path: str | Path | None = None) -> SavedModel | None:
    """The general model (on the CPU, eval mode), or None when there is none to use.

    Loaded once per file and modification time; callers copy its weights, never train it.
    """
    from picker_gui.core.errors import PickerError
    from picker_gui.core.models import load_model

    p = Path(path) if path is not None else GENERAL_MODEL_PATH
    try:
        key = (str(p), p.stat().st_mtime)
    except OSError:
        return None
    with _lock:
        if key not in _cache:
            try:
                _cache[key] = load_model(p)
            except PickerError as exc:
                logger.warning("general model not used: %s", exc)
                _cache[key] = None
        return _cache[key]


def general_fits(diameter_px: float, width: int, path: str | Path | None = None) -> SavedModel | None:
    """The general model when a run with this particle size (downsampled pixels) and model
    width can start from it, else None."""
    if not diameter_px >= GENERAL_MIN_DIAMETER_PX:
        return None
    saved = general_model(path)
    if saved is None or int(saved.metadata["width"]) != int(width):
        return None
    return saved
