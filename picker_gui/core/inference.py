"""Scoring whole micrographs and turning score maps into ranked picks.

``score_map`` pads the micrograph by half the receptive field (reflection) and runs the
model tile by tile, each tile with the margin its receptive field needs, so the result is
exactly what one pass over the whole image would give while memory stays bounded on a
4096 x 4096 input. ``non_maximum_suppression`` is Topaz's greedy rule: take the highest
score, drop every candidate within the radius, repeat; every candidate above the floor
comes back, ranked, and thresholding happens later (the slider, ``--threshold``).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from picker_gui.core.coords import PARTICLE, CoordinateTable
from picker_gui.core.models import PickerNet
from picker_gui.core.preprocess import Preprocessed, PreprocessParams, preprocess_file

logger = logging.getLogger(__name__)


@torch.no_grad()
def score_map(model: PickerNet, image: np.ndarray, device: str | torch.device = "cpu", tile: int = 1024,
              augment: bool = False) -> np.ndarray:
    """Per-pixel logits for a whole (preprocessed) micrograph, same shape as ``image``.

    Parameters
    ----------
    tile
        Output tile edge; memory grows with ``(tile + receptive_field)^2 x width``.
    augment
        Average the logits over the eight rotations and flips of the micrograph (each
        scored, then turned back): 8 x the time, a smoother and more stable ranking.
    """
    if augment:
        total = np.zeros(image.shape, dtype=np.float64)
        for k in range(4):
            for flip in (False, True):
                view = np.rot90(image[:, ::-1] if flip else image, k)
                s = np.rot90(score_map(model, view, device, tile), -k)
                total += s[:, ::-1] if flip else s
        return (total / 8).astype(np.float32)
    was_training = model.training
    model.eval()
    if tile % 2:  # pooled models pool 2x2 blocks: every tile must start on the same grid
        tile += 1
    rf = model.receptive_field
    half = rf // 2
    h, w = image.shape
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    mode = "reflect" if min(h, w) > half else "replicate"
    padded = F.pad(x, (half, rf - 1 - half, half, rf - 1 - half), mode=mode)
    out = np.empty((h, w), dtype=np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            chunk = padded[:, :, y0 : y1 + rf - 1, x0 : x1 + rf - 1].to(device)
            out[y0:y1, x0:x1] = model(chunk)[0, 0].float().cpu().numpy()
    model.train(was_training)
    return out


def _disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dx * dx + dy * dy <= radius * radius
    return dy[inside], dx[inside]


def non_maximum_suppression(
    scores: np.ndarray, radius: float, threshold: float = -np.inf, max_picks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy NMS on a score map.

    Returns
    -------
    x, y, score
        Picks in pixels of the map (x = column), highest score first; no two closer than
        ``radius`` (a hard minimum distance, as in Topaz).
    """
    h, w = scores.shape
    # Candidates: local maxima (3x3) at or above the floor.
    t = torch.from_numpy(np.ascontiguousarray(scores))[None, None]
    local_max = (F.max_pool2d(t, 3, stride=1, padding=1) == t)[0, 0].numpy()
    ys, xs = np.nonzero(local_max & (scores >= threshold))
    vals = scores[ys, xs]
    order = np.argsort(-vals, kind="stable")
    ys, xs, vals = ys[order], xs[order], vals[order]
    suppressed = np.zeros((h, w), dtype=bool)
    dy, dx = _disc_offsets(radius)
    keep = []
    for i in range(len(vals)):
        y, x = ys[i], xs[i]
        if suppressed[y, x]:
            continue
        keep.append(i)
        if max_picks is not None and len(keep) >= max_picks:
            break
        yy, xx = y + dy, x + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        suppressed[yy[ok], xx[ok]] = True
    keep = np.asarray(keep, dtype=np.int64)
    return xs[keep].astype(np.float64), ys[keep].astype(np.float64), vals[keep].astype(np.float64)


#: Picks are kept at least this fraction of the particle radius away from the edges
#: (:func:`extract_picks`).
EDGE_MARGIN = 0.5


def extract_picks(
    scores: np.ndarray,
    prep: Preprocessed,
    radius_px: float,
    threshold: float = -np.inf,
    name: str | None = None,
    source: str = "picker-gui",
    *,
    particle_radius_px: float | None = None,
    max_picks: int | None = None,
) -> CoordinateTable:
    """NMS on a score map of a preprocessed micrograph; picks in original-micrograph pixels,
    highest score first.

    ``radius_px`` (the NMS radius) and ``particle_radius_px`` (default: ``radius_px``) are in
    pixels of the score map (downsampled). No pick lies closer to the edge than
    :data:`EDGE_MARGIN` particle radii: the border rows see a padded image (a particle cut
    by the edge and its padding can score as a whole one), and a particle centred there
    cannot be boxed out anyway. Every path that makes picks (the window, the command line,
    batch, validation, the DoG picker, the benchmarks) comes through here, so they agree.
    """
    x, y, s = non_maximum_suppression(scores, radius_px, threshold, max_picks=max_picks)
    margin = EDGE_MARGIN * (radius_px if particle_radius_px is None else particle_radius_px)
    h, w = scores.shape
    inside = (x >= margin) & (y >= margin) & (x <= w - 1 - margin) & (y <= h - 1 - margin)
    x, y, s = x[inside], y[inside], s[inside]
    x0, y0 = prep.to_original(x, y)
    return CoordinateTable.from_arrays(name or prep.path.name, x0, y0, s, kind=PARTICLE, source=source)


def preprocess_params_for(metadata: dict, pixel_size_a: float | None) -> PreprocessParams:
    """Preprocessing that gives new micrographs the pixel size and normalisation the model
    was trained on: the same downsampled pixel size when both are known, else the same factor."""
    target = metadata.get("downsampled_pixel_size_a")
    if target and pixel_size_a:
        return PreprocessParams(target_pixel_size_a=target, normalization=metadata["normalization"], pixel_size_a=pixel_size_a)
    return PreprocessParams(downsample=metadata["downsample"], normalization=metadata["normalization"], pixel_size_a=pixel_size_a)


def _assumed_pixel_size(path: Path, metadata: dict) -> str:
    """What picking assumes for a micrograph whose header has no pixel size, in words."""
    factor = metadata.get("downsample")
    original = metadata.get("original_pixel_size_a")
    how = f"downsampling x{factor:g}" if factor else "the model's downsampling"
    if original:
        assumed = f"assumed the model's original pixel size {original:.4g} Å ({how})"
    else:
        assumed = f"assumed the pixel size the model was trained on ({how})"
    return f"{path}: no pixel size in the header; {assumed}; give --pixel-size if that is wrong"


def pick_file(
    model: PickerNet,
    metadata: dict,
    path: str | PathLike,
    *,
    device: str | torch.device = "cpu",
    threshold: float = -np.inf,
    radius_px: float | None = None,
    pixel_size_a: float | None = None,
    cache=None,
    candidates: bool = False,
) -> tuple[CoordinateTable, list[str]]:
    """Preprocess one micrograph as the model was trained, score it and extract its picks
    (:func:`picker_gui.core.jobs.pick_job` runs it on a batch).

    Parameters
    ----------
    model
        Already on ``device`` (the job copies it there once).
    metadata
        The model's: how it was trained (see :func:`preprocess_params_for`), and
        ``pick_augment``: score the eight rotations and flips of the micrograph and
        average them (set by training, ``TrainConfig.pick_augment``).
    radius_px
        The least distance between two picks in *original-micrograph* pixels, as every
        coordinate a user sees. Default: the particle radius the model was trained with.
    candidates
        Return the candidates instead of the picks: local maxima a fraction of that
        distance apart (:data:`~picker_gui.core.picks.CANDIDATE_FRACTION`), at most a few
        times the particles that fit. The picks are these candidates kept apart at the
        least distance (:func:`~picker_gui.core.picks.keep_apart`), so that a window which
        keeps the candidates, and can change the distance later, shows exactly the picks
        the command line writes.
    pixel_size_a
        Overrides the header. A micrograph with no pixel size anywhere is downsampled by
        the model's factor, as if it had the model's original pixel size; a warning names
        the file and the assumption.

    Returns
    -------
    picks, notes
        Every candidate, ranked, in original-micrograph pixels; and warnings about this
        micrograph (a pixel size assumed), also logged.

    Raises
    ------
    MicrographError
        The micrograph cannot be read or preprocessed.
    """
    from picker_gui.core.mrc_io import read_header

    path = Path(path)
    notes = []
    header_px = pixel_size_a or read_header(path).pixel_size_a
    if not header_px:
        notes.append(_assumed_pixel_size(path, metadata))
        logger.warning("%s", notes[-1])
    from picker_gui.core.picks import CANDIDATE_FRACTION, CANDIDATES_PER_FIT, keep_apart

    prep = preprocess_file(path, preprocess_params_for(metadata, header_px), cache)
    distance = default_min_distance_px(metadata) if radius_px is None else float(radius_px)  # original px
    radius = distance / prep.scale[1]  # downsampled px
    scores = score_map(model, prep.image, device, augment=bool(metadata.get("pick_augment", False)))
    particle_r = 0.5 * metadata.get("particle_diameter_px", 2 * metadata["nms_radius_px"])
    fit = scores.size / (np.pi * particle_r * particle_r)
    table = extract_picks(scores, prep, CANDIDATE_FRACTION * radius, threshold, name=path.name,
                          particle_radius_px=particle_r, max_picks=int(CANDIDATES_PER_FIT * fit) + 1)
    if candidates:
        return table, notes
    return table[keep_apart(table.x, table.y, distance)], notes


def default_min_distance_px(metadata: dict) -> float:
    """The least distance between picks a model's picks get by default: the particle radius,
    in original-micrograph pixels (Topaz's NMS radius)."""
    if metadata.get("particle_diameter_a") and metadata.get("original_pixel_size_a"):
        return 0.5 * metadata["particle_diameter_a"] / metadata["original_pixel_size_a"]
    return metadata["nms_radius_px"] * metadata.get("downsample", 1.0)
