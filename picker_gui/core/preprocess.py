"""Preparing micrographs for picking and for display.

- Downsampling is Fourier cropping (no aliasing, exact band limit). Sample ``j`` of the
  cropped image sits at ``j * scale`` in the original, so a coordinate on the downsampled
  grid maps back as ``x_orig = x_ds * scale_x``, ``y_orig = y_ds * scale_y``.
- Normalisation is per micrograph: affine (mean/std) or the two-component Gaussian mixture
  of Topaz (Bepler et al. 2019), whose dominant component gives the mean and std, so that
  ice, carbon and other outliers do not set the contrast.
- The display image is band-limited to a resolution in Å and has percentile contrast limits.

FFTs run in torch (float32, multi-threaded); everything returned is numpy. torch is
imported on first use, not with this module: the window shows its list and frame a
second sooner, and loads torch on the worker thread that makes the first image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.mrc_io import Micrograph, read_micrograph

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Receptive field of Topaz's default resnet8; RELION sizes Topaz's downsampling from it.
TOPAZ_RECEPTIVE_FIELD_PX = 71
#: Below this diameter (downsampled px) a particle has too few pixels to be recognised.
MIN_PARTICLE_PX = 16.0
#: Below this diameter (downsampled px) there is nothing left to pick: refused.
HARD_MIN_PARTICLE_PX = 4.0
#: A downsampled micrograph must keep at least this many pixels on its short side.
MIN_DOWNSAMPLED_SIDE_PX = 64
#: A particle must span at least this many original pixels.
MIN_DIAMETER_PX = 2.0
#: Pixel sizes a user may give (Å); outside this range it is a typo or a unit mix-up.
PIXEL_SIZE_RANGE_A = (0.1, 100.0)
NORMALIZATIONS = ("gmm", "affine")


# -- Fourier cropping --------------------------------------------------------------------
def _crop_spectrum(spectrum: "torch.Tensor", out_shape: tuple[int, int]) -> "torch.Tensor":
    """Keep the low frequencies of an ``rfft2`` spectrum for an image of ``out_shape``."""
    import torch

    h, w = out_shape
    top = spectrum[: h - h // 2]
    bottom = spectrum[spectrum.shape[0] - h // 2 :] if h // 2 else spectrum[:0]
    return torch.cat([top, bottom], dim=0)[:, : w // 2 + 1]


def _radial_frequency(shape: tuple[int, int], pixel_size_a: float) -> "torch.Tensor":
    """|k| in 1/Å on the ``rfft2`` grid of an image of ``shape``."""
    import torch

    ky = torch.fft.fftfreq(shape[0], d=pixel_size_a)
    kx = torch.fft.rfftfreq(shape[1], d=pixel_size_a)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _lowpass_mask(shape: tuple[int, int], pixel_size_a: float, resolution_a: float) -> "torch.Tensor":
    """Raised-cosine low-pass: 1 below 1/resolution, falling to 0 over 20 % beyond it.

    A soft edge avoids the ringing a hard cut-off puts around dark ice and carbon.
    """
    import torch

    k = _radial_frequency(shape, pixel_size_a)
    k0 = 1.0 / resolution_a
    width = 0.2 * k0
    t = ((k - k0) / width).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def _spectral_resample(
    image: np.ndarray,
    out_shape: tuple[int, int],
    pixel_size_a: float | None = None,
    lowpass_a: float | None = None,
) -> np.ndarray:
    """Fourier-crop ``image`` to ``out_shape`` and optionally low-pass it, in one FFT pair."""
    import torch

    image = np.ascontiguousarray(image, dtype=np.float32)
    x = torch.from_numpy(image if image.flags.writeable else image.copy())
    in_shape = tuple(image.shape)
    spectrum = torch.fft.rfft2(x)
    if tuple(out_shape) != in_shape:
        spectrum = _crop_spectrum(spectrum, out_shape)
    if lowpass_a is not None:
        if pixel_size_a is None:
            raise ValueError("a low-pass filter in Å needs the pixel size")
        out_pixel = pixel_size_a * in_shape[1] / out_shape[1]
        spectrum = spectrum * _lowpass_mask(out_shape, out_pixel, lowpass_a)
    out = torch.fft.irfft2(spectrum, s=out_shape)
    out *= (out_shape[0] * out_shape[1]) / (in_shape[0] * in_shape[1])
    return out.numpy()


def downsampled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    if factor < 1:
        raise ValueError(f"downsampling factor must be at least 1, got {factor}")
    return max(1, round(shape[0] / factor)), max(1, round(shape[1] / factor))


def downsample(image: np.ndarray, factor: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Fourier-crop ``image`` by ``factor``.

    Returns
    -------
    image, (scale_y, scale_x)
        The smaller image and the exact factors that map its pixels back to the original
        (they differ slightly from ``factor`` when the size does not divide evenly).
    """
    out_shape = downsampled_shape(image.shape, factor)
    if out_shape == tuple(image.shape):
        return np.ascontiguousarray(image, dtype=np.float32), (1.0, 1.0)
    out = _spectral_resample(image, out_shape)
    return out, (image.shape[0] / out_shape[0], image.shape[1] / out_shape[1])


def auto_downsample_factor(diameter_a: float, pixel_size_a: float) -> tuple[int, str]:
    """Choose a downsampling factor from the particle diameter, and say why.

    RELION sizes Topaz with ``max(4, round(2 * diameter_px / 71))``: the particle then
    fits the 71-px receptive field with room for its surroundings. The floor of 4 assumes
    a raw micrograph at about 1 Å/px; on micrographs that were already binned it would
    shrink a particle to a handful of pixels, so here the floor gives way to the largest
    whole factor that leaves at least 16 px across the particle (none below 16 px).
    """
    if not (diameter_a > 0 and pixel_size_a > 0 and math.isfinite(diameter_a) and math.isfinite(pixel_size_a)):
        raise ValueError("particle diameter and pixel size must be positive")
    diameter_px = diameter_a / pixel_size_a
    fit = 2.0 * diameter_px / TOPAZ_RECEPTIVE_FIELD_PX
    if fit >= 4.0:
        factor = round(fit)
        why = f"fits the {TOPAZ_RECEPTIVE_FIELD_PX}-px receptive field, as RELION sizes Topaz"
    elif diameter_px >= 4 * MIN_PARTICLE_PX:
        factor = 4
        why = f"RELION's floor of 4; at least {MIN_PARTICLE_PX:g} px across"
    elif diameter_px >= 2 * MIN_PARTICLE_PX:
        factor = math.floor(diameter_px / MIN_PARTICLE_PX)
        why = f"RELION's floor of 4 lowered to keep at least {MIN_PARTICLE_PX:g} px across"
    else:
        factor = 1
        why = (f"no downsampling: the particle is already under {2 * MIN_PARTICLE_PX:g} px, "
               f"so any factor would leave fewer than {MIN_PARTICLE_PX:g} px")
    reason = (
        f"particle {diameter_a:g} Å = {diameter_px:.1f} px at {pixel_size_a:.4g} Å/px; "
        f"downsampling x{factor} leaves {diameter_px / factor:.1f} px across it ({why})"
    )
    return factor, reason


def check_sizes(
    shape: tuple[int, int],
    pixel_size_a: float | None,
    diameter_a: float | None = None,
    downsample: float | None = None,
    *,
    downsample_option: str = "--downsample",
) -> list[str]:
    """Refuse sizes that cannot work, before any work; return warnings for doubtful ones.

    Parameters
    ----------
    shape
        ``(rows, cols)`` of the original micrograph.
    pixel_size_a
        Its pixel size in Å (the user's or the header's), or None when unknown.
    diameter_a
        Particle diameter in Å.
    downsample
        The downsampling factor that will be used.
    downsample_option
        The option the factor came from, for the message (``"--target-pixel-size"`` when
        the factor was derived from it).

    Raises
    ------
    UsageError
        With ``option`` named as on the command line: a pixel size outside 0.1–100 Å
        (``--pixel-size``); a particle larger than the micrograph's short side or smaller
        than 2 pixels (``--diameter-a``); a factor below 1, or one that leaves fewer than
        64 px on the short side or less than 4 px across the particle (``downsample_option``).
    """
    rows, cols = int(shape[0]), int(shape[1])
    warnings: list[str] = []
    if pixel_size_a is not None:
        _check_pixel_size(pixel_size_a)
    size_a = f"{cols * pixel_size_a:.0f}×{rows * pixel_size_a:.0f} Å" if pixel_size_a else None
    diameter_px = None
    if diameter_a is not None:
        if not (diameter_a > 0 and math.isfinite(diameter_a)):
            raise UsageError(f"the particle diameter must be a positive number of Å, got {diameter_a:g}", option="--diameter-a")
        if pixel_size_a is None:
            warnings.append(f"no pixel size: the particle diameter of {diameter_a:g} Å cannot be checked against "
                            f"the micrograph; give --pixel-size")
        else:
            diameter_px = diameter_a / pixel_size_a
            if diameter_px > min(rows, cols):
                raise UsageError(
                    f"a {diameter_a:g} Å particle is {diameter_px:.0f} px across at {pixel_size_a:.4g} Å/px, larger "
                    f"than the micrograph ({cols}×{rows} px = {size_a}); is the diameter in Å and the pixel size right?",
                    option="--diameter-a",
                )
            if diameter_px < MIN_DIAMETER_PX:
                raise UsageError(
                    f"a {diameter_a:g} Å particle is {diameter_px:.2g} px across at {pixel_size_a:.4g} Å/px, less than "
                    f"{MIN_DIAMETER_PX:g} pixels (the micrograph is {cols}×{rows} px = {size_a}); "
                    f"is the diameter in Å and the pixel size right?",
                    option="--diameter-a",
                )
            if diameter_px > min(rows, cols) / 2:
                warnings.append(f"a {diameter_a:g} Å particle ({diameter_px:.0f} px) is more than half the "
                                f"micrograph's short side ({min(rows, cols)} px): few fit on one micrograph")
    if downsample is not None:
        factor = float(downsample)
        if not (factor >= 1 and math.isfinite(factor)):
            raise UsageError(f"the downsampling factor must be at least 1, got {factor:g}", option=downsample_option)
        out_rows, out_cols = downsampled_shape((rows, cols), factor)
        if min(out_rows, out_cols) < MIN_DOWNSAMPLED_SIDE_PX:
            raise UsageError(
                f"downsampling x{factor:.3g} leaves {out_cols}×{out_rows} px of a {cols}×{rows} micrograph; "
                f"at least {MIN_DOWNSAMPLED_SIDE_PX} px must remain on the short side "
                f"(x{min(rows, cols) / MIN_DOWNSAMPLED_SIDE_PX:.3g} at most)",
                option=downsample_option,
            )
        if diameter_px is not None:
            left = diameter_px / factor
            if left < HARD_MIN_PARTICLE_PX:
                raise UsageError(
                    f"downsampling x{factor:.3g} leaves the {diameter_a:g} Å particle {left:.1f} px across; "
                    f"at least {HARD_MIN_PARTICLE_PX:g} px are needed and {MIN_PARTICLE_PX:g} or more recommended "
                    f"(x{max(1.0, diameter_px / MIN_PARTICLE_PX):.3g} or less)",
                    option=downsample_option,
                )
            if left < MIN_PARTICLE_PX:
                warnings.append(f"downsampling x{factor:.3g} leaves the particle only {left:.1f} px across; "
                                f"{MIN_PARTICLE_PX:g} or more are recommended")
    return warnings


def _check_pixel_size(pixel_size_a: float, option: str = "--pixel-size") -> None:
    lo, hi = PIXEL_SIZE_RANGE_A
    if not (lo <= pixel_size_a <= hi):  # also refuses NaN
        raise UsageError(f"a pixel size of {pixel_size_a:g} Å is outside {lo:g}–{hi:g} Å; "
                         f"give the pixel size of the micrographs in Å", option=option)


# -- normalisation -----------------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """How a micrograph was normalised: ``(x - mean) / std``."""

    method: str
    mean: float
    std: float
    weight: float = 1.0  # weight of the dominant mixture component (GMM)

    def apply(self, image: np.ndarray) -> np.ndarray:
        return ((image - self.mean) / self.std).astype(np.float32)


def fit_affine(image: np.ndarray) -> Normalization:
    # float64: the squares of large float32 values overflow float32.
    mean = float(np.mean(image, dtype=np.float64))
    std = float(np.std(image, dtype=np.float64))
    return Normalization("affine", mean, std if std > 0 else 1.0)


def _gmm_em(x: np.ndarray, pi: float, alpha: float, beta: float, iters: int, tol: float):
    """EM for a 2-component mixture with shared variance and a Beta(alpha, beta) prior on the
    weight ``pi`` of component 1 (the dominant one). Returns (log posterior, mu1, var, pi)."""
    split = np.quantile(x, 1.0 - pi)
    upper = x > split
    mu0 = x[~upper].mean() if (~upper).any() else x.mean()
    mu1 = x[upper].mean() if upper.any() else x.mean()
    var = np.mean(np.where(upper, (x - mu1) ** 2, (x - mu0) ** 2))
    logp_prev = -np.inf
    n = x.size
    for _ in range(iters):
        var = max(var, 1e-12)
        # With a shared variance the log-odds of component 1 is linear in x, so each pixel's
        # log-likelihood is lp0 + softplus(d) and its responsibility sigmoid(d): two
        # transcendental calls per pixel instead of four (the same numbers as before).
        d0 = x - mu0
        lp0 = -(d0 * d0) / (2 * var) + (-0.5 * np.log(2 * np.pi * var) + np.log1p(-pi))
        d = (mu1 - mu0) * (x - 0.5 * (mu0 + mu1)) / var + (np.log(pi) - np.log1p(-pi))
        soft = np.logaddexp(0.0, d)
        logp = lp0.sum() + soft.sum() + (alpha - 1) * np.log(pi) + (beta - 1) * np.log1p(-pi)
        if logp - logp_prev <= tol:
            break
        logp_prev = logp
        r1 = np.exp(d - soft)
        r0 = 1.0 - r1
        s1 = r1.sum()
        # MAP estimate of the weight under the Beta prior, kept off the boundary.
        pi = float(np.clip((alpha + s1 - 1) / (alpha + beta + n - 2), 1e-6, 1 - 1e-6))
        mu1 = (r1 * x).sum() / max(s1, 1e-12)
        mu0 = (r0 * x).sum() / max(n - s1, 1e-12)
        var = np.mean(r0 * (x - mu0) ** 2 + r1 * (x - mu1) ** 2)
    return float(logp_prev), float(mu1), float(var), float(pi)


def fit_gmm(
    image: np.ndarray,
    *,
    alpha: float = 900.0,
    beta: float = 1.0,
    sample_size: int = 30_000,
    iters: int = 100,
    seed: int = 0,
) -> Normalization:
    """Two-component Gaussian-mixture normalisation, as in the Topaz paper.

    Pixels are modelled as ``(1 - pi) N(mu0, s^2) + pi N(mu1, s^2)`` with a Beta(900, 1) prior
    that makes component 1 the dominant one; EM runs from several initial weights on a
    random sample of pixels and the fit with the highest posterior wins. The micrograph is
    normalised with ``mu1`` and ``s``, so a minority of very dark or bright pixels (ice,
    carbon, hot pixels) pulls neither the centre nor the spread.
    """
    flat = np.asarray(image, dtype=np.float64).ravel()
    if flat.size > sample_size:
        flat = np.random.default_rng(seed).choice(flat, size=sample_size, replace=False)
    # Standardise first for numerical comfort; undo at the end.
    m, s = float(flat.mean()), float(flat.std()) or 1.0
    x = (flat - m) / s
    single = -0.5 * x.size * (np.log(2 * np.pi * x.var()) + 1) if x.var() > 0 else -np.inf
    best = (single, 0.0, 1.0, 1.0)
    for pi0 in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98):
        fit = _gmm_em(x, pi0, alpha, beta, iters, tol=1e-3)
        if fit[0] > best[0]:
            best = fit
    _, mu1, var, pi = best
    return Normalization("gmm", m + s * mu1, s * math.sqrt(var), pi)


def fit_normalization(image: np.ndarray, method: str = "gmm") -> Normalization:
    if method == "gmm":
        return fit_gmm(image)
    if method == "affine":
        return fit_affine(image)
    raise ValueError(f"unknown normalisation {method!r}; expected one of {NORMALIZATIONS}")


# -- display -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DisplayImage:
    """An image ready to show: band-limited, binned, with contrast limits.

    ``scale`` maps display pixels to original pixels (``x_orig = x_disp * scale[1]``).
    """

    image: np.ndarray
    levels: tuple[float, float]
    scale: tuple[float, float]
    lowpass_a: float | None


def display_image(
    image: np.ndarray,
    pixel_size_a: float | None,
    *,
    lowpass_a: float | None = 20.0,
    max_size: int = 2048,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> DisplayImage:
    """Bin a micrograph for the screen (longest side at most ``max_size``), low-pass it to
    ``lowpass_a`` Å (needs the pixel size; ``None`` skips it) and set contrast limits at the
    given percentiles."""
    factor = max(1.0, max(image.shape) / max_size)
    out_shape = downsampled_shape(image.shape, factor)
    use_lowpass = lowpass_a if (lowpass_a and pixel_size_a) else None
    out = _spectral_resample(image, out_shape, pixel_size_a, use_lowpass)
    lo, hi = np.percentile(out[:: max(1, out.shape[0] // 512), :: max(1, out.shape[1] // 512)], percentiles)
    if hi <= lo:
        hi = lo + 1.0
    scale = (image.shape[0] / out_shape[0], image.shape[1] / out_shape[1])
    return DisplayImage(out, (float(lo), float(hi)), scale, use_lowpass)


# -- the whole preparation ---------------------------------------------------------------
@dataclass(frozen=True)
class PreprocessParams:
    """How to prepare a micrograph for the picker.

    Give at most one of ``downsample`` and ``target_pixel_size_a``; with neither, the factor
    comes from ``diameter_a`` (see :func:`auto_downsample_factor`), and with no diameter
    either, the image keeps its size.
    """

    downsample: float | None = None
    target_pixel_size_a: float | None = None
    diameter_a: float | None = None
    normalization: str = "gmm"
    pixel_size_a: float | None = None  # overrides the header

    def __post_init__(self) -> None:
        if self.downsample is not None and self.target_pixel_size_a is not None:
            raise ValueError("give a downsampling factor or a target pixel size, not both")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalisation {self.normalization!r}; expected one of {NORMALIZATIONS}")
        if self.downsample is not None and not (self.downsample >= 1 and math.isfinite(self.downsample)):
            raise UsageError(f"the downsampling factor must be at least 1, got {self.downsample:g}", option="--downsample")
        if self.target_pixel_size_a is not None and not (self.target_pixel_size_a > 0 and math.isfinite(self.target_pixel_size_a)):
            raise UsageError(f"the target pixel size must be a positive number of Å, got {self.target_pixel_size_a:g}",
                             option="--target-pixel-size")
        if self.diameter_a is not None and not (self.diameter_a > 0 and math.isfinite(self.diameter_a)):
            raise UsageError(f"the particle diameter must be a positive number of Å, got {self.diameter_a:g}",
                             option="--diameter-a")
        if self.pixel_size_a is not None:
            _check_pixel_size(self.pixel_size_a)

    def factor_for(self, pixel_size_a: float | None) -> tuple[float, str]:
        """The downsampling factor for a micrograph of this pixel size, and why."""
        if self.downsample is not None:
            return float(self.downsample), f"downsampling x{self.downsample:g} as asked"
        if self.target_pixel_size_a is not None:
            if pixel_size_a is None:
                raise ValueError("a target pixel size needs the micrograph's pixel size; give --pixel-size")
            factor = max(1.0, self.target_pixel_size_a / pixel_size_a)
            return factor, f"downsampling x{factor:.3g} to reach {self.target_pixel_size_a:g} Å/px"
        if self.diameter_a is not None:
            if pixel_size_a is None:
                raise ValueError("sizing from the particle diameter needs the pixel size; give --pixel-size")
            factor, reason = auto_downsample_factor(self.diameter_a, pixel_size_a)
            return float(factor), reason
        return 1.0, "no downsampling (no factor, target pixel size or diameter given)"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preprocessed:
    """A micrograph ready for the picker: downsampled, normalised float32 ``[rows, cols]``."""

    path: Path
    image: np.ndarray
    scale: tuple[float, float]  # (y, x): original px per downsampled px
    original_shape: tuple[int, int]
    pixel_size_a: float | None  # of the downsampled image
    normalization: Normalization
    notes: tuple[str, ...] = field(default=())

    def to_original(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map downsampled-grid coordinates to original-micrograph pixels."""
        return np.asarray(x) * self.scale[1], np.asarray(y) * self.scale[0]

    def to_downsampled(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(x) / self.scale[1], np.asarray(y) / self.scale[0]


def preprocess_micrograph(micrograph: Micrograph, params: PreprocessParams) -> Preprocessed:
    """Downsample and normalise one micrograph already in memory.

    Raises
    ------
    MicrographError
        The normalisation or the normalised image is not finite (NaN or infinite): never
        returned as a result.
    """
    factor, reason = params.factor_for(micrograph.pixel_size_a)
    logger.debug("%s: %s", micrograph.path, reason)
    image, scale = downsample(micrograph.image, factor)
    norm = fit_normalization(image, params.normalization)
    if not (math.isfinite(norm.mean) and math.isfinite(norm.std) and norm.std > 0):
        raise MicrographError(
            micrograph.path,
            f"{norm.method} normalisation failed (mean {norm.mean:.4g}, std {norm.std:.4g}): the image holds values "
            f"too large or too uniform to normalise (range {float(np.min(image)):.4g} to {float(np.max(image)):.4g})",
        )
    normalized = norm.apply(image)
    finite = np.isfinite(normalized)
    if not finite.all():
        n_bad = int(finite.size - np.count_nonzero(finite))
        raise MicrographError(
            micrograph.path,
            f"preprocessing gave {n_bad} of {finite.size} pixels NaN or infinite (values too large for "
            f"float32 arithmetic; range {float(np.min(micrograph.image)):.4g} to {float(np.max(micrograph.image)):.4g})",
        )
    pixel = micrograph.pixel_size_a * scale[1] if micrograph.pixel_size_a else None
    return Preprocessed(
        path=micrograph.path,
        image=normalized,
        scale=scale,
        original_shape=micrograph.shape,
        pixel_size_a=pixel,
        normalization=norm,
        notes=micrograph.notes,
    )


def preprocess_file(path: str | PathLike, params: PreprocessParams, cache=None) -> Preprocessed:
    """Read and preprocess one file, through ``cache`` (a :class:`~picker_gui.core.cache.PreprocessCache`)
    when given, so that a second call with the same file and parameters costs a file read."""
    if cache is not None:
        return cache.get_or_compute(path, params)
    return preprocess_micrograph(read_micrograph(path, params.pixel_size_a), params)
