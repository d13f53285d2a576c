"""The general model: where training starts, and what picks a folder before any label.

Topaz starts from pretrained weights and crYOLO ships a general model; ours is a small
picker (the pooled architecture of :mod:`picker_gui.core.models`) trained on varied
simulated micrographs from two simulators (our own generator and ASPIRE: particles of
100-400 Å, 40-130 px across before the picker's own downsampling, a range of SNR, defocus,
crowding and junk). Because the picker downsamples every data set so that the particle is
16-45 px across (:func:`~picker_gui.core.preprocess.auto_downsample_factor`), one model
can start them all. ``tools/build_general_model.py`` rebuilds it; how it was trained is in
``resources/general_model/README.md``.

A missing or unreadable file is not an error for training: it then starts from fresh
weights (as ``start="scratch"`` does). :func:`general_for` makes it a model that picks a
folder before any label (the window's "Suggest picks", ``picker-gui pick general``).
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


#: Entries of the general model's own metadata that describe how it was built, not how to
#: pick a data set with it (they stay in the shipped file).
_BUILD_ONLY = ("training_sets", "validation_labels", "validation_micrographs", "model_id", "format_version",
               "picker_gui_version")


def general_for(diameter_a: float, pixel_size_a: float, path: str | Path | None = None) -> SavedModel:
    """The general model ready to pick micrographs of this particle and pixel size before any
    label (zero-shot): its weights with the metadata a trained model carries (downsampling
    from the diameter as training would choose it, GMM normalisation, the particle size,
    scores averaged over the eight views).

    Raises
    ------
    PickerError
        No general model could be read, or the particle would be under
        :data:`GENERAL_MIN_DIAMETER_PX` px across (the general model serves only larger ones).
    """
    import copy

    from picker_gui.core.errors import PickerError
    from picker_gui.core.models import model_id
    from picker_gui.core.preprocess import auto_downsample_factor

    p = Path(path) if path is not None else GENERAL_MODEL_PATH
    saved = general_model(p)
    if saved is None:
        raise PickerError(f"{p}: no general model could be read there (rebuild it with tools/build_general_model.py)")
    factor, reason = auto_downsample_factor(diameter_a, pixel_size_a)
    d_px = diameter_a / (pixel_size_a * factor)
    if d_px < GENERAL_MIN_DIAMETER_PX:
        raise PickerError(f"a {diameter_a:g} Å particle is {diameter_a / pixel_size_a:.1f} px across at {pixel_size_a:g} Å/px; "
                          f"the general model needs at least {GENERAL_MIN_DIAMETER_PX:g} px: label some particles and "
                          f"train instead")
    meta = {k: v for k, v in saved.metadata.items() if k not in _BUILD_ONLY}
    meta.update(
        zero_shot=True,
        general_model_id=saved.metadata["model_id"],
        downsample=float(factor),
        downsampled_pixel_size_a=pixel_size_a * factor,
        original_pixel_size_a=pixel_size_a,
        normalization="gmm",
        particle_diameter_a=float(diameter_a),
        particle_diameter_px=d_px,
        nms_radius_px=d_px / 2,
        pick_augment=True,
    )
    out = SavedModel(copy.deepcopy(saved.model).eval(), meta)
    out.metadata["model_id"] = model_id(out)
    logger.info("general model %s for a %g Å particle at %g Å/px: %s", meta["general_model_id"], diameter_a,
                pixel_size_a, reason)
    return out
