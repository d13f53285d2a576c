"""A picker with no training: difference of Gaussians sized from the particle diameter.

The floor any trained picker must clear, and an independent second opinion for consensus.
A particle of radius ``r`` is a blob; the difference of two Gaussian blurs with sigmas
``r / sqrt(2)`` and ``1.6`` times that (the classical DoG approximation of the scale-normalised
Laplacian of Gaussian at the blob's scale) peaks at its centre. Particles are dark on a
cryo-EM micrograph (more protein, fewer electrons), so the picker scores ``-DoG`` of the
normalised image; ``bright=True`` is for images already inverted. Picks are the local
maxima of that map, ranked by its value, no two closer than the particle radius (the same
non-maximum suppression as the trained picker).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.inference import extract_picks
from picker_gui.core.preprocess import Preprocessed


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``[1, 1, H, W]`` tensor, reflected at the edges."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    h, w = image.shape[-2:]
    mode = "reflect" if min(h, w) > r else "replicate"
    out = F.conv2d(F.pad(image, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))


def dog_score_map(image: np.ndarray, diameter_px: float, bright: bool = False) -> np.ndarray:
    """Per-pixel blob score for particles of ``diameter_px`` (pixels of ``image``): higher
    at the centre of a dark (or, with ``bright``, light) blob of about that size."""
    if not (diameter_px > 0 and math.isfinite(diameter_px)):
        raise ValueError(f"the particle diameter must be a positive number of pixels, got {diameter_px!r}")
    sigma = max(0.5, diameter_px / 2 / math.sqrt(2))
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    with torch.no_grad():
        dog = _gaussian_blur(x, sigma) - _gaussian_blur(x, 1.6 * sigma)
    out = dog[0, 0].numpy()
    return out if bright else -out


def dog_picks(prep: Preprocessed, diameter_px: float, *, bright: bool = False, name: str | None = None,
              min_distance_px: float | None = None) -> CoordinateTable:
    """Ranked picks of the DoG picker on a preprocessed micrograph, in original pixels.

    ``diameter_px`` and ``min_distance_px`` (default: the particle radius) are in pixels of
    the preprocessed (downsampled) image; the scores are the DoG response in units of the
    normalised image.
    """
    scores = dog_score_map(prep.image, diameter_px, bright)
    radius = diameter_px / 2 if min_distance_px is None else min_distance_px
    # Not on the very edge, as the trained picker's picks (the blur sees a mirrored image there).
    return extract_picks(scores, prep, radius, name=name, source="dog", particle_radius_px=diameter_px / 2)
