"""Synthetic cryo-EM micrographs with known particle positions.

The generator feeds the built-in demo dataset, the test suite (at tiny sizes) and the
benchmarks. It aims at micrographs that *look* like real ones, so that a picker cannot
succeed by thresholding brightness: faint, CTF-modulated particles in shot noise, next to
darker things that must not be picked (small dense blobs, ice contamination, a carbon film
edge) on a background whose mean and noise drift across the field.

Model
-----
**Particles.** One asymmetric 3-D density per dataset (it depends only on the seed): a
pseudo-atomic model of a few hundred Gaussian "atoms" filling a main ellipsoidal lobe, a
smaller offset lobe and a protruding arm (the three are not coplanar, so the object is
chiral and its projections change with orientation). Each particle gets a uniformly random
rotation (normalised Gaussian quaternions). All atoms of all particles are rotated, projected
along z and scattered with bilinear weights into one projected-potential image ``Phi_p``.
Its units are chosen so that the mean of one particle's projection over its disc of diameter
``particle_diameter_a`` is 1.

**Image formation** (weak-phase object plus absorption)::

    c(r)   = kappa * F^-1{ W(k) E(k) [ G(k) F{Phi_p} + F{Phi_j} ] }
    m(r)   = N0 * a(r) * (1 + b(r))
    I(r)   = m(r) * (1 - c(r)) + sqrt(m(r) * max(1 - c(r), 0)) * n(r)

with

* ``W(k) = sqrt(1 - A^2) sin(chi) + A cos(chi)``, the contrast transfer (positive ``c`` means
  fewer electrons, so at underfocus proteins are dark at low resolution),
* ``chi(k) = pi lambda dz(theta) k^2 - pi/2 Cs lambda^3 k^4``, ``dz > 0`` underfocus,
  ``dz(theta) = dz + (dz_ast / 2) cos(2 (theta - theta_ast))``; 300 kV
  (``lambda = 0.0197 A``), ``Cs = 2.7 mm``, amplitude contrast ``A = 0.07``, defocus drawn
  per micrograph from ``defocus_range_um``,
* ``E(k) = exp(-B k^2 / 4)``, the B-factor envelope, ``B`` drawn per micrograph,
* ``G(k) = exp(-2 pi^2 sigma^2 k^2)``, the Gaussian atom kernel,
* ``Phi_j``: projected density of the junk (small blobs, ice, carbon film) plus white
  "solvent" density whose amplitude follows the local ice thickness, so that the background
  carries CTF-coloured structural noise (Thon rings, grainy carbon texture),
* ``a(r) = exp(-tau(r))``: absorption (inelastic / aperture losses) by the ice thickness
  gradient, ice contamination, carbon and blobs, which makes them dark at all resolutions,
* ``b(r)``: background mottle, a smooth Gaussian field (power ``(1 + k^2 L^2)^-1.25``,
  ``L = mottle_length_a``) of relative amplitude ``background_mottle``; it is what makes a
  low-pass filtered micrograph blotchy rather than flat,
* ``N0 = dose_per_pixel`` (electrons per pixel) and ``n`` unit Gaussian noise: shot noise in
  the Gaussian approximation of Poisson, variance equal to the expected count.

**SNR.** ``snr`` is the ratio of the per-pixel variance of the particle signal
``m * c_particles`` (measured over the particle discs) to the variance of the noise: shot
noise ``N0``, solvent structural noise ``structural_noise_fraction * N0`` and mottle
``(background_mottle * N0)^2``, on a micrograph at the middle of the defocus and B-factor
ranges. ``kappa`` is calibrated once per dataset on a test canvas so that this holds; at
other defocus values the SNR varies as it does in real data (more defocus, more
low-resolution contrast): about 0.035-0.11 for the default 0.07 over 1-3 um.

**Defaults.** 1536 x 2048 px (rows x cols) at 2.0 A/px, a 150 A (75 px) particle, about
180 particles on a clean micrograph (fewer where ice or carbon takes room), SNR 0.07,
40 e-/px, 300 kV, B 50-150 A^2; per micrograph 3-25 blobs of 20-50 A, on average one ice
contamination of 200-800 A, carbon in 30 % of micrographs. One such micrograph takes about
half a second.

Shapes are ``(rows, cols)``; coordinates follow :mod:`picker_gui.core.coords` (x = column,
y = row, centres, original pixels).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable

logger = logging.getLogger(__name__)

# Independent random streams, keyed by (seed, stream[, index]).
_DENSITY_STREAM = 0
_MICROGRAPH_STREAM = 1

# Absorption of the ice-thickness gradient: tau = _ICE_ABSORPTION * (thickness - 1).
_ICE_ABSORPTION = 0.7
# On carbon the structural-noise variance is this many times that of the ice (grainy texture)...
_CARBON_TEXTURE = 4.0
# ... and the background mottle this many times stronger.
_CARBON_MOTTLE = 2.5


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic micrographs.

    Lengths are in Angstrom unless the name says otherwise; ranges are ``(low, high)`` and are
    drawn uniformly per micrograph (or per object).

    Attributes
    ----------
    shape : tuple of int
        ``(rows, cols)`` of each micrograph; the default is 1536 x 2048 (height x width).
    pixel_size_a : float
        Pixel size, 2.0 A/px by default.
    particle_diameter_a : float
        Diameter of the particle (its largest extent), 150 A by default (75 px).
    particles_per_micrograph : int
        Mean number of particles on a micrograph with no ice or carbon; a micrograph gets this
        times a factor in ``1 +- particle_count_jitter``, times its free-area fraction.
    particle_count_jitter : float
        Relative spread of the number of particles between micrographs.
    min_distance_factor : float
        Minimum centre distance in particle diameters.
    snr : float
        Per-pixel SNR of the particles (see the module docstring).
    defocus_range_um : tuple of float
        Underfocus range in micrometres.
    astigmatism_um : float
        Largest defocus difference between the astigmatic axes, micrometres.
    b_factor_range : tuple of float
        Envelope B-factor range, A^2.
    voltage_kv, cs_mm, amplitude_contrast : float
        Microscope: 300 kV, 2.7 mm, 0.07.
    dose_per_pixel : float
        Expected electrons per pixel through ice of nominal thickness (the image mean).
    structural_noise_fraction : float
        Variance of the CTF-filtered solvent noise relative to the shot-noise variance.
    background_mottle : float
        Relative standard deviation of the low-frequency intensity fluctuations of the
        background (ice thickness, charging); stronger on carbon.
    mottle_length_a : float
        Correlation length of those fluctuations.
    n_atoms : int
        Number of pseudo-atoms in the particle model.
    junk : bool
        Switches blobs, ice contamination, carbon and the thickness gradient on or off.
    blobs_per_micrograph : tuple of int
        Range of the number of small dense blobs.
    blob_diameter_a : tuple of float
        Range of the blob diameters.
    ice_per_micrograph : float
        Mean (Poisson) number of ice contaminations.
    ice_diameter_a : tuple of float
        Range of the ice contamination diameters.
    carbon_probability : float
        Chance that a micrograph shows the carbon film beyond the hole edge.
    hole_radius_um : tuple of float
        Range of the radius of the hole in the carbon film (sets the edge's curvature).
    thickness_variation : float
        Relative amplitude of the smooth ice-thickness variation.
    name_prefix : str
        Micrographs are called ``<name_prefix>_0000``, ``<name_prefix>_0001``, ...
    """

    shape: tuple[int, int] = (1536, 2048)
    pixel_size_a: float = 2.0
    particle_diameter_a: float = 150.0
    particles_per_micrograph: int = 180
    particle_count_jitter: float = 0.35
    min_distance_factor: float = 0.9
    snr: float = 0.07
    defocus_range_um: tuple[float, float] = (1.0, 3.0)
    astigmatism_um: float = 0.05
    b_factor_range: tuple[float, float] = (50.0, 150.0)
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    dose_per_pixel: float = 40.0
    structural_noise_fraction: float = 0.25
    background_mottle: float = 0.04
    mottle_length_a: float = 400.0
    n_atoms: int = 500
    junk: bool = True
    blobs_per_micrograph: tuple[int, int] = (3, 25)
    blob_diameter_a: tuple[float, float] = (20.0, 50.0)
    ice_per_micrograph: float = 1.0
    ice_diameter_a: tuple[float, float] = (200.0, 800.0)
    carbon_probability: float = 0.3
    hole_radius_um: tuple[float, float] = (0.5, 1.0)
    thickness_variation: float = 0.15
    name_prefix: str = "demo"

    def __post_init__(self) -> None:
        rows, cols = self.shape
        if rows < 16 or cols < 16:
            raise ValueError(f"shape {self.shape} is too small; need at least 16 x 16 pixels")
        if not self.pixel_size_a > 0 or not self.particle_diameter_a > 0:
            raise ValueError("pixel_size_a and particle_diameter_a must be positive")
        if self.diameter_px >= min(rows, cols) / 2:
            raise ValueError(
                f"particle diameter {self.diameter_px:.1f} px does not fit a {rows} x {cols} micrograph"
            )
        if self.particles_per_micrograph < 0 or not 0 <= self.particle_count_jitter < 1:
            raise ValueError("particles_per_micrograph must be >= 0 and particle_count_jitter in [0, 1)")
        if not self.snr > 0 or not self.dose_per_pixel > 0:
            raise ValueError("snr and dose_per_pixel must be positive")
        for name in ("defocus_range_um", "b_factor_range", "blob_diameter_a", "ice_diameter_a",
                     "hole_radius_um", "blobs_per_micrograph"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if self.defocus_range_um[0] <= 0:
            raise ValueError("defocus_range_um must be underfocus (positive)")
        if self.n_atoms < 10:
            raise ValueError("n_atoms must be at least 10")

    @property
    def diameter_px(self) -> float:
        """Particle diameter in pixels."""
        return self.particle_diameter_a / self.pixel_size_a

    @property
    def wavelength_a(self) -> float:
        """Relativistic electron wavelength in A (0.0197 A at 300 kV)."""
        volts = self.voltage_kv * 1e3
        return 12.2643 / math.sqrt(volts * (1.0 + 0.978466e-6 * volts))


@dataclass
class SyntheticMicrograph:
    """One generated micrograph and its ground truth.

    Attributes
    ----------
    name : str
        E.g. ``"demo_0003"``.
    image : ndarray
        float32 ``[rows, cols]``, electrons per pixel.
    particles : CoordinateTable
        True centres, kind ``"particle"``, source ``"truth"``, micrograph ``"<name>.mrc"``.
    junk : CoordinateTable
        Things not to pick, kind ``"negative"``, source ``"blob"``, ``"ice"`` or
        ``"carbon-edge"`` (points along the edge, one per particle diameter).
    defocus_um : float
        Mean underfocus.
    pixel_size_a : float
        Pixel size.
    """

    name: str
    image: np.ndarray
    particles: CoordinateTable
    junk: CoordinateTable
    defocus_um: float
    pixel_size_a: float


@dataclass
class DemoDataset:
    """What :func:`write_demo_dataset` wrote."""

    outdir: Path
    micrographs: list[Path]
    particles: CoordinateTable
    junk: CoordinateTable
    pixel_size_a: float
    diameter_a: float


@dataclass(frozen=True)
class _Density:
    """Pseudo-atomic particle model: atom centres (A, centred on the centre of mass),
    weights summing to 1, and the common Gaussian width of the atoms (A)."""

    atoms_a: np.ndarray
    weights: np.ndarray
    sigma_a: float


@dataclass
class _Layers:
    """Components of one micrograph, for tests: ``image`` is, up to small cross terms, a
    background plus the particle ``signal`` (electrons per pixel) plus ``noise`` (shot noise,
    solvent noise and background mottle); ``blocked`` marks ice and carbon."""

    signal: np.ndarray
    noise: np.ndarray
    blocked: np.ndarray


# ================================================================================================
# Public API
# ================================================================================================
def generate_micrographs(
    n: int, config: SyntheticConfig = SyntheticConfig(), seed: int = 0
) -> Iterator[SyntheticMicrograph]:
    """Generate ``n`` synthetic micrographs, lazily.

    Parameters
    ----------
    n : int
        Number of micrographs.
    config : SyntheticConfig
        Sizes, optics, noise and junk.
    seed : int
        Non-negative seed; the same seed gives bit-identical micrographs, and micrograph ``i``
        does not depend on ``n``. The particle's 3-D density depends on the seed only.

    Yields
    ------
    SyntheticMicrograph
    """
    simulator = _Simulator(config, seed)
    for index in range(n):
        yield simulator.micrograph(index)[0]


def write_demo_dataset(
    outdir: str | Path,
    n_micrographs: int = 8,
    seed: int = 0,
    config: SyntheticConfig = SyntheticConfig(),
    progress: Callable[[int, int], None] | None = None,
) -> DemoDataset:
    """Write a synthetic dataset with its ground truth.

    Writes ``micrographs/<name>.mrc`` (float32, voxel size = pixel size),
    ``particles.star`` (true centres), ``junk.star`` (centres of the things not to pick, in the
    same format; their kinds and sources are in ``junk.csv``), ``README.txt`` and
    ``dataset.json``.

    Parameters
    ----------
    outdir : path-like
        Created if missing; existing files of the same names are overwritten.
    n_micrographs : int
        Number of micrographs.
    seed : int
        Seed of :func:`generate_micrographs`.
    config : SyntheticConfig
        Parameters.
    progress : callable, optional
        Called as ``progress(done, total)`` after each micrograph.

    Returns
    -------
    DemoDataset
    """
    import mrcfile

    from picker_gui.core.formats import write_coordinates

    outdir = Path(outdir)
    mic_dir = outdir / "micrographs"
    mic_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    particles: list[CoordinateTable] = []
    junk: list[CoordinateTable] = []
    entries: list[dict] = []
    for done, mic in enumerate(generate_micrographs(n_micrographs, config, seed), start=1):
        path = mic_dir / f"{mic.name}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(mic.image.astype(np.float32, copy=False))
            mrc.voxel_size = config.pixel_size_a
        paths.append(path)
        particles.append(mic.particles)
        junk.append(mic.junk)
        entries.append({
            "name": mic.name,
            "file": f"micrographs/{path.name}",
            "defocus_um": round(mic.defocus_um, 4),
            "n_particles": len(mic.particles),
            "n_junk": len(mic.junk),
            "junk_sources": {s: int(np.sum(mic.junk.source == s)) for s in ("blob", "ice", "carbon-edge")},
        })
        logger.info("wrote %s (%d particles, %d junk)", path, len(mic.particles), len(mic.junk))
        if progress is not None:
            progress(done, n_micrographs)
    particle_table = CoordinateTable.concat(particles)
    junk_table = CoordinateTable.concat(junk)
    write_coordinates(particle_table, outdir / "particles.star", "star-particles")
    # STAR has no kind column (a writer drops negatives), so the junk file lists them as rows.
    write_coordinates(junk_table.with_kind(PARTICLE), outdir / "junk.star", "star-particles")
    write_coordinates(junk_table, outdir / "junk.csv", "csv")

    metadata = {
        "generator": "picker_gui.core.synthetic",
        "seed": seed,
        "n_micrographs": n_micrographs,
        "rows": config.shape[0],
        "cols": config.shape[1],
        "pixel_size_a": config.pixel_size_a,
        "particle_diameter_a": config.particle_diameter_a,
        "particle_diameter_px": config.diameter_px,
        "n_particles": len(particle_table),
        "n_junk": len(junk_table),
        "micrographs": entries,
        "config": asdict(config),
    }
    (outdir / "dataset.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    (outdir / "README.txt").write_text(_readme(metadata, config), encoding="utf-8")
    return DemoDataset(
        outdir=outdir,
        micrographs=paths,
        particles=particle_table,
        junk=junk_table,
        pixel_size_a=config.pixel_size_a,
        diameter_a=config.particle_diameter_a,
    )


def _readme(meta: dict, config: SyntheticConfig) -> str:
    rows, cols = config.shape
    lines = [
        "picker-gui synthetic demo dataset",
        "=================================",
        "",
        f"Generated by picker_gui.core.synthetic with seed {meta['seed']}.",
        f"{meta['n_micrographs']} micrographs of {cols} x {rows} pixels (width x height),",
        f"pixel size {config.pixel_size_a:g} A, float32 MRC in micrographs/.",
        f"Particle: one asymmetric {config.particle_diameter_a:g} A protein-like density "
        f"({config.diameter_px:.1f} px), random 3-D orientations.",
        f"Optics: {config.voltage_kv:g} kV, Cs {config.cs_mm:g} mm, amplitude contrast "
        f"{config.amplitude_contrast:g}, underfocus {config.defocus_range_um[0]:g}-"
        f"{config.defocus_range_um[1]:g} um; dose {config.dose_per_pixel:g} e/px; "
        f"particle SNR {config.snr:g}.",
        "",
        f"particles.star : {meta['n_particles']} true particle centres (RELION particles STAR,",
        "                 _rlnMicrographName _rlnCoordinateX _rlnCoordinateY; x = column, y = row).",
        f"junk.star      : {meta['n_junk']} centres of things NOT to pick (small dense blobs, ice",
        "                 contamination, points along carbon edges), same format.",
        "junk.csv       : the same with kind 'negative' and source blob / ice / carbon-edge.",
        "dataset.json   : these facts, per-micrograph defocus and counts, and the full config.",
        "",
        "micrograph        defocus_um  particles  junk",
    ]
    for entry in meta["micrographs"]:
        lines.append(f"{entry['name']:<16}  {entry['defocus_um']:>10.3f}  {entry['n_particles']:>9d}  "
                     f"{entry['n_junk']:>4d}")
    return "\n".join(lines) + "\n"


# ================================================================================================
# The simulator
# ================================================================================================
class _Simulator:
    """Holds what is shared by the micrographs of one dataset: the density and the contrast
    scale ``kappa``; :meth:`micrograph` renders micrograph ``index``."""

    def __init__(self, config: SyntheticConfig, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.config = config
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, _DENSITY_STREAM])
        self.density = _make_density(rng, config.particle_diameter_a, config.n_atoms)
        self.kappa = self._calibrate_kappa(rng)

    # -- contrast calibration -----------------------------------------------------------------
    def _calibrate_kappa(self, rng: np.random.Generator) -> float:
        """Scale of the phase contrast that gives ``config.snr`` at mid defocus and B."""
        cfg = self.config
        d = cfg.diameter_px
        grid = 4
        spacing = int(math.ceil(1.6 * d)) + 4
        size = grid * spacing
        offsets = (np.arange(grid) + 0.5) * spacing
        cols, rows = np.meshgrid(offsets, offsets)
        centres = np.stack([cols.ravel(), rows.ravel()], axis=1)
        rotations = _random_rotations(rng, len(centres))
        k2, theta, _ = _frequency_grid((size, size), cfg.pixel_size_a)
        ctf = _ctf(k2, theta, 1e4 * float(np.mean(cfg.defocus_range_um)), 0.0, 0.0, cfg)
        envelope = np.exp(-float(np.mean(cfg.b_factor_range)) * k2 / 4.0)
        phi = _splat_particles(self.density, centres, rotations, (size, size), cfg.pixel_size_a)
        contrast = np.fft.irfft2(np.fft.rfft2(phi) * (self._atom_kernel(k2) * ctf * envelope), s=(size, size))
        unit_var = float(np.var(contrast[_disc_mask((size, size), centres, d / 2)]))
        noise_var = _noise_variance(cfg)
        # signal variance = (N0 kappa)^2 unit_var = snr * noise_var
        return math.sqrt(cfg.snr * noise_var / unit_var) / cfg.dose_per_pixel

    def _atom_kernel(self, k2: np.ndarray) -> np.ndarray:
        return np.exp(-2.0 * math.pi**2 * self.density.sigma_a**2 * k2).astype(np.float32)

    # -- single projections (tests) -------------------------------------------------------------
    def project(self, rotation: np.ndarray, box: int) -> np.ndarray:
        """Projected potential of one particle at ``rotation`` in a ``box`` x ``box`` image,
        without CTF: the density seen along the rotated z axis, its centre of mass at pixel
        ``(box - 1) / 2`` (so that flipping the box mirrors it about its centre)."""
        centre = np.array([[(box - 1) / 2.0, (box - 1) / 2.0]])
        phi = _splat_particles(self.density, centre, rotation[None], (box, box), self.config.pixel_size_a)
        k2, _, _ = _frequency_grid((box, box), self.config.pixel_size_a)
        return np.fft.irfft2(np.fft.rfft2(phi) * self._atom_kernel(k2), s=(box, box))

    # -- one micrograph ---------------------------------------------------------------------------
    def micrograph(self, index: int, layers: bool = False) -> tuple[SyntheticMicrograph, _Layers | None]:
        """Render micrograph ``index``; with ``layers`` also its separate signal and noise."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, _MICROGRAPH_STREAM, index])
        shape = cfg.shape
        rows, cols = shape
        px = cfg.pixel_size_a
        name = f"{cfg.name_prefix}_{index:04d}"
        file_name = f"{name}.mrc"

        defocus_um = float(rng.uniform(*cfg.defocus_range_um))
        astig_a = 1e4 * float(rng.uniform(0.0, cfg.astigmatism_um))
        astig_angle = float(rng.uniform(0.0, math.pi))
        b_factor = float(rng.uniform(*cfg.b_factor_range))

        tau = np.zeros(shape, np.float32)     # absorption
        phase = np.zeros(shape, np.float32)   # junk projected density (particle-density units)
        blocked = np.zeros(shape, bool)       # ice and carbon: no particles there
        thickness: np.ndarray | float = 1.0
        carbon: np.ndarray | float = 0.0
        junk_rows: list[tuple[float, float, str]] = []
        if cfg.junk:
            thickness = _thickness_field(rng, shape, cfg.thickness_variation)
            tau += _ICE_ABSORPTION * (thickness - 1.0)
            junk_rows += _add_ice(rng, cfg, tau, phase, blocked)
            carbon_mask, edge_points = _add_carbon(rng, cfg, tau, phase, blocked)
            if carbon_mask is not None:
                carbon = carbon_mask
            junk_rows += [(x, y, "carbon-edge") for x, y in edge_points]

        centres = _place_particles(rng, cfg, blocked)
        if cfg.junk:
            junk_rows += _add_blobs(rng, cfg, centres, blocked, tau, phase)
        rotations = _random_rotations(rng, len(centres))

        # Fourier-space image formation (see the module docstring).
        k2, theta, half_weights = _frequency_grid(shape, px)
        ctf_filter = (_ctf(k2, theta, 1e4 * defocus_um, astig_a, astig_angle, cfg)
                      * np.exp(-b_factor * k2 / 4.0)).astype(np.float32)
        rms_filter = math.sqrt(float(np.sum(half_weights * ctf_filter.astype(np.float64) ** 2)) / (rows * cols))
        solvent_scale = math.sqrt(cfg.structural_noise_fraction / cfg.dose_per_pixel) / (self.kappa * rms_filter)
        solvent = (solvent_scale * np.sqrt(thickness + _CARBON_TEXTURE * carbon)
                   * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        phi_particles = _splat_particles(self.density, centres, rotations, shape, px).astype(np.float32)
        particle_spectrum = np.fft.rfft2(phi_particles) * self._atom_kernel(k2)
        junk_spectrum = np.fft.rfft2(phase + solvent)
        contrast = np.fft.irfft2((self.kappa * ctf_filter) * (particle_spectrum + junk_spectrum), s=shape)

        mottle = _mottle_field(rng, shape, px, cfg.mottle_length_a)
        mottle *= cfg.background_mottle * (1.0 + (_CARBON_MOTTLE - 1.0) * carbon)
        mean = cfg.dose_per_pixel * np.exp(-tau)
        mottle *= mean
        mean += mottle
        expected = mean * (1.0 - contrast)
        shot = np.sqrt(mean * np.clip(1.0 - contrast, 0.0, None)) * rng.standard_normal(shape, dtype=np.float32)
        image = (expected + shot).astype(np.float32)

        particles = CoordinateTable.from_arrays(
            file_name, centres[:, 0], centres[:, 1], kind=PARTICLE, source="truth"
        )
        junk = CoordinateTable.from_arrays(
            file_name,
            [r[0] for r in junk_rows],
            [r[1] for r in junk_rows],
            kind=NEGATIVE,
            source=[r[2] for r in junk_rows],
        )
        mic = SyntheticMicrograph(name, image, particles, junk, defocus_um, px)
        if not layers:
            return mic, None
        scaled_filter = self.kappa * ctf_filter
        signal = -mean * np.fft.irfft2(scaled_filter * particle_spectrum, s=shape)
        noise = -mean * np.fft.irfft2(scaled_filter * np.fft.rfft2(solvent), s=shape) + shot + mottle
        return mic, _Layers(signal=signal, noise=noise, blocked=blocked)


# ================================================================================================
# Helpers
# ================================================================================================
@lru_cache(maxsize=8)
def _frequency_grid(shape: tuple[int, int], pixel_size_a: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``k^2`` (1/A^2) and azimuth of the ``rfft2`` layout of ``shape``, and the weight of each
    column in the full spectrum (2 for columns that stand for a conjugate pair, else 1)."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows, d=pixel_size_a)[:, None]
    kx = np.fft.rfftfreq(cols, d=pixel_size_a)[None, :]
    k2 = (kx**2 + ky**2).astype(np.float32)
    theta = np.arctan2(np.broadcast_to(ky, k2.shape), np.broadcast_to(kx, k2.shape)).astype(np.float32)
    weights = np.full(kx.shape[1], 2.0)
    weights[0] = 1.0
    if cols % 2 == 0:
        weights[-1] = 1.0
    weights = np.broadcast_to(weights[None, :], k2.shape)
    for arr in (k2, theta):
        arr.setflags(write=False)
    return k2, theta, weights


def _ctf(k2: np.ndarray, theta: np.ndarray, defocus_a: float, astig_a: float, astig_angle: float,
         cfg: SyntheticConfig) -> np.ndarray:
    """Weak-phase contrast transfer ``sqrt(1 - A^2) sin(chi) + A cos(chi)`` (underfocus > 0)."""
    lam = cfg.wavelength_a
    cs_a = cfg.cs_mm * 1e7
    dz = defocus_a + 0.5 * astig_a * np.cos(2.0 * (theta - astig_angle))
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs_a * lam**3 * k2**2
    amp = cfg.amplitude_contrast
    return (math.sqrt(1.0 - amp**2) * np.sin(chi) + amp * np.cos(chi)).astype(np.float32)


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly distributed rotation matrices ``(n, 3, 3)`` from normalised quaternions."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return np.moveaxis(rot, -1, 0).reshape(n, 3, 3)


def _make_density(rng: np.random.Generator, diameter_a: float, n_atoms: int) -> _Density:
    """An asymmetric, protein-like pseudo-atomic model that fits a sphere of ``diameter_a``.

    A main ellipsoidal lobe, a smaller lobe offset to one side and above, and an arm reaching
    out of the plane of the two: no mirror plane, so projections differ with orientation.
    Atoms fill the union with a Poisson-disc spacing; shapes are jittered by the seed.
    """
    def jitter(value, spread: float) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        return value * (1.0 + spread * rng.uniform(-1.0, 1.0, value.shape))

    main_c, main_axes = np.array([-0.2, 0.0, 0.0]), jitter([0.62, 0.5, 0.42], 0.08)
    lobe_c, lobe_r = jitter([0.42, 0.3, 0.12], 0.12), float(jitter(0.32, 0.1))
    arm_a, arm_b, arm_r = np.array([0.0, -0.25, 0.25]), jitter([0.3, -0.62, 0.62], 0.08), float(jitter(0.14, 0.1))

    def inside(p: np.ndarray) -> np.ndarray:
        in_main = np.sum(((p - main_c) / main_axes) ** 2, axis=1) <= 1.0
        in_lobe = np.sum((p - lobe_c) ** 2, axis=1) <= lobe_r**2
        seg = arm_b - arm_a
        t = np.clip((p - arm_a) @ seg / (seg @ seg), 0.0, 1.0)
        in_arm = np.sum((p - arm_a - t[:, None] * seg) ** 2, axis=1) <= arm_r**2
        return in_main | in_lobe | in_arm

    probe = rng.uniform(-1.0, 1.0, (20000, 3))
    volume = 8.0 * float(np.mean(inside(probe)))
    spacing = (volume / n_atoms) ** (1.0 / 3.0)
    min_dist = 0.75 * spacing
    atoms: list[np.ndarray] = []
    while len(atoms) < n_atoms:
        candidates = rng.uniform(-1.0, 1.0, (4096, 3))
        accepted_before = len(atoms)
        for p in candidates[inside(candidates)]:
            if not atoms or np.min(np.sum((np.asarray(atoms) - p) ** 2, axis=1)) >= min_dist**2:
                atoms.append(p)
                if len(atoms) == n_atoms:
                    break
        if len(atoms) == accepted_before:
            min_dist *= 0.9  # the volume is full at this spacing
    pos = np.asarray(atoms)
    weights = rng.uniform(0.6, 1.4, n_atoms)
    weights /= weights.sum()
    pos -= weights @ pos
    sigma = 0.5 * spacing
    scale = 0.5 * diameter_a / (float(np.max(np.linalg.norm(pos, axis=1))) + sigma)
    return _Density(atoms_a=pos * scale, weights=weights, sigma_a=sigma * scale)


def _splat_particles(density: _Density, centres_xy: np.ndarray, rotations: np.ndarray,
                     shape: tuple[int, int], pixel_size_a: float) -> np.ndarray:
    """Projected atom positions of every particle, scattered with bilinear weights.

    Units: the projection of one particle averages 1 over its disc of diameter
    ``2 * max radius`` (the total weight is the disc area in pixels).
    """
    rows, cols = shape
    if len(centres_xy) == 0:
        return np.zeros(shape)
    radius_px = float(np.max(np.linalg.norm(density.atoms_a, axis=1)) + density.sigma_a) / pixel_size_a
    mass = math.pi * radius_px**2
    rotated = np.einsum("pij,aj->pai", rotations[:, :2, :], density.atoms_a) / pixel_size_a
    x = (centres_xy[:, 0, None] + rotated[..., 0]).ravel()
    y = (centres_xy[:, 1, None] + rotated[..., 1]).ravel()
    w = np.tile(density.weights * mass, len(centres_xy))
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    total = np.zeros(rows * cols)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < cols) & (yi >= 0) & (yi < rows)
        total += np.bincount(yi[ok] * cols + xi[ok], weights=(w * wt)[ok], minlength=rows * cols)
    return total.reshape(shape)


def _disc_mask(shape: tuple[int, int], centres_xy: np.ndarray, radius: float) -> np.ndarray:
    """Boolean mask of the pixels within ``radius`` of any centre."""
    mask = np.zeros(shape, bool)
    r = int(math.ceil(radius))
    offsets = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    for cx, cy in centres_xy:
        ix, iy = int(round(cx)), int(round(cy))
        inside = (dx + ix - cx) ** 2 + (dy + iy - cy) ** 2 <= radius**2
        yy, xx = dy[inside] + iy, dx[inside] + ix
        ok = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
        mask[yy[ok], xx[ok]] = True
    return mask


def _noise_variance(cfg: SyntheticConfig) -> float:
    """Nominal per-pixel noise variance: shot noise, solvent noise and background mottle."""
    dose = cfg.dose_per_pixel
    return dose * (1.0 + cfg.structural_noise_fraction) + (cfg.background_mottle * dose) ** 2


def _mottle_field(rng: np.random.Generator, shape: tuple[int, int], pixel_size_a: float,
                  length_a: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian field with power ``(1 + (k L)^2)^-1.25``: smooth
    fluctuations on scales of ``L`` and longer, with a weak tail down to the particle scale."""
    k2, _, _ = _frequency_grid(shape, pixel_size_a)
    amplitude = (1.0 + k2 * np.float32(length_a**2)) ** np.float32(-0.625)
    spectrum = rng.standard_normal(k2.shape, dtype=np.float32) + 1j * rng.standard_normal(k2.shape, dtype=np.float32)
    spectrum[0, 0] = 0.0
    field_ = np.fft.irfft2(spectrum * amplitude, s=shape)
    return (field_ / field_.std()).astype(np.float32)


def _thickness_field(rng: np.random.Generator, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """Relative ice thickness ``1 + amplitude * f`` with ``f`` a smooth field in about [-1, 1]:
    a tilt plus three long-wavelength waves (evaluated separably)."""
    rows, cols = shape
    y = np.arange(rows, dtype=np.float32)[:, None] - rows / 2
    x = np.arange(cols, dtype=np.float32)[None, :] - cols / 2
    half_diag = 0.5 * math.hypot(rows, cols)
    angle = rng.uniform(0, 2 * math.pi)
    field_ = rng.uniform(0.3, 1.0) * (math.cos(angle) * x + math.sin(angle) * y) / half_diag
    size = max(rows, cols)
    for _ in range(3):
        wavelength = rng.uniform(0.6, 2.0) * size
        direction = rng.uniform(0, 2 * math.pi)
        kx = 2 * math.pi * math.cos(direction) / wavelength
        ky = 2 * math.pi * math.sin(direction) / wavelength
        ph = rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(0.1, 0.3)
        # cos(a + b) = cos a cos b - sin a sin b, with a depending on x only and b on y only
        field_ = field_ + amp * (np.cos(kx * x + ph) * np.cos(ky * y) - np.sin(kx * x + ph) * np.sin(ky * y))
    return (1.0 + amplitude * field_).astype(np.float32)


def _add_ice(rng: np.random.Generator, cfg: SyntheticConfig, tau: np.ndarray, phase: np.ndarray,
             blocked: np.ndarray) -> list[tuple[float, float, str]]:
    """Add ice contamination: irregular lobed blobs, strongly absorbing, soft edged.

    Each is the union of 1-3 star-shaped lobes whose radius varies with angle by a few
    harmonics; thickness rises over a soft edge to a flat dome.
    """
    rows, cols = tau.shape
    out = []
    for _ in range(int(rng.poisson(cfg.ice_per_micrograph))):
        cx, cy = rng.uniform(0, cols - 1), rng.uniform(0, rows - 1)
        radius = 0.5 * rng.uniform(*cfg.ice_diameter_a) / cfg.pixel_size_a
        lobes = [(cx, cy, radius)]
        for _ in range(int(rng.integers(0, 3))):
            angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 0.8) * radius
            lobes.append((cx + dist * math.cos(angle), cy + dist * math.sin(angle),
                          rng.uniform(0.4, 0.7) * radius))
        reach = max(math.hypot(lx - cx, ly - cy) + 1.4 * lr for lx, ly, lr in lobes)
        x0, x1 = max(0, int(cx - reach)), min(cols, int(cx + reach) + 1)
        y0, y1 = max(0, int(cy - reach)), min(rows, int(cy + reach) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        thick = np.zeros(xx.shape, np.float32)
        for lx, ly, lr in lobes:
            dx, dy = xx - lx, yy - ly
            r = np.hypot(dx, dy)
            theta = np.arctan2(dy, dx)
            edge_r = np.full_like(r, lr)
            for k in range(2, 7):
                edge_r += lr * rng.uniform(0.0, 0.16) / k**0.7 * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
            width = max(3.0, 0.1 * lr)
            s = np.clip((edge_r - r) / width, 0.0, 1.0)
            profile = s * s * (3 - 2 * s) * (0.6 + 0.4 * np.sqrt(np.clip(1 - (r / edge_r) ** 2, 0.0, 1.0)))
            thick = np.maximum(thick, profile)
        tau[y0:y1, x0:x1] += rng.uniform(0.6, 2.5) * thick
        phase[y0:y1, x0:x1] += rng.uniform(3.0, 6.0) * thick
        blocked[y0:y1, x0:x1] |= thick > 0.02
        out.append((float(cx), float(cy), "ice"))
    return out


def _add_carbon(rng: np.random.Generator, cfg: SyntheticConfig, tau: np.ndarray, phase: np.ndarray,
                blocked: np.ndarray) -> tuple[np.ndarray | None, list[tuple[float, float]]]:
    """Maybe add the carbon film beyond the edge of a circular hole.

    Returns the soft carbon mask (None when there is no carbon) and points along the edge,
    one per particle diameter, that lie in the image.
    """
    if rng.uniform() >= cfg.carbon_probability:
        return None, []
    rows, cols = tau.shape
    angle = rng.uniform(0, 2 * math.pi)
    ux, uy = math.cos(angle), math.sin(angle)
    half_extent = abs(ux) * cols / 2 + abs(uy) * rows / 2
    edge_dist = rng.uniform(0.15, 0.85) * half_extent   # from the image centre, along u
    hole_r = rng.uniform(*cfg.hole_radius_um) * 1e4 / cfg.pixel_size_a
    hx = cols / 2 - ux * (hole_r - edge_dist)
    hy = rows / 2 - uy * (hole_r - edge_dist)
    y = np.arange(rows, dtype=np.float32)[:, None] - np.float32(hy)
    x = np.arange(cols, dtype=np.float32)[None, :] - np.float32(hx)
    signed = np.sqrt(x * x + y * y) - np.float32(hole_r)     # > 0 on carbon
    mask = (1.0 / (1.0 + np.exp(-np.clip(signed, -30, 30) / 1.5))).astype(np.float32)
    tau += rng.uniform(0.1, 0.25) * mask
    phase += rng.uniform(1.0, 2.0) * mask
    blocked |= signed > 0
    step = cfg.diameter_px / hole_r
    phis = np.arange(0.0, 2 * math.pi, step)
    ex, ey = hx + hole_r * np.cos(phis), hy + hole_r * np.sin(phis)
    keep = (ex >= 0) & (ex <= cols - 1) & (ey >= 0) & (ey <= rows - 1)
    return mask, [(float(a), float(b)) for a, b in zip(ex[keep], ey[keep])]


def _place_particles(rng: np.random.Generator, cfg: SyntheticConfig, blocked: np.ndarray) -> np.ndarray:
    """Random centres ``(n, 2)`` (x, y): at least half a diameter from the edges, from ice and
    carbon, and ``min_distance_factor`` diameters from each other (random sequential addition)."""
    rows, cols = blocked.shape
    d = cfg.diameter_px
    margin = d / 2
    min_dist = cfg.min_distance_factor * d
    free_fraction = 1.0 - float(np.mean(blocked[::8, ::8]))
    factor = rng.uniform(1 - cfg.particle_count_jitter, 1 + cfg.particle_count_jitter)
    target = int(round(cfg.particles_per_micrograph * factor * free_fraction))
    angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
    ring = np.concatenate([
        np.zeros((1, 2)),
        np.stack([np.cos(angles), np.sin(angles)], 1) * margin,
        np.stack([np.cos(angles[::2]), np.sin(angles[::2])], 1) * margin / 2,
    ])
    cell = min_dist if min_dist > 0 else d
    grid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    accepted: list[tuple[float, float]] = []
    for _ in range(40):
        if len(accepted) >= target:
            break
        cand = np.stack([rng.uniform(margin, cols - margin, 8 * target + 64),
                         rng.uniform(margin, rows - margin, 8 * target + 64)], 1)
        probe = np.rint(cand[:, None, :] + ring[None]).astype(np.int64)
        px = np.clip(probe[..., 0], 0, cols - 1)
        py = np.clip(probe[..., 1], 0, rows - 1)
        cand = cand[~blocked[py, px].any(axis=1)]
        for x, y in cand:
            gx, gy = int(x // cell), int(y // cell)
            near = (p for i in (-1, 0, 1) for j in (-1, 0, 1) for p in grid.get((gx + i, gy + j), ()))
            if all((x - qx) ** 2 + (y - qy) ** 2 >= min_dist**2 for qx, qy in near):
                accepted.append((float(x), float(y)))
                grid.setdefault((gx, gy), []).append((float(x), float(y)))
                if len(accepted) >= target:
                    break
    if len(accepted) < target:
        logger.debug("placed %d of %d particles (no room left)", len(accepted), target)
    return np.asarray(accepted, dtype=np.float64).reshape(-1, 2)


def _add_blobs(rng: np.random.Generator, cfg: SyntheticConfig, centres: np.ndarray, blocked: np.ndarray,
               tau: np.ndarray, phase: np.ndarray) -> list[tuple[float, float, str]]:
    """Add small dense blobs (denatured protein, metal-rich aggregates): compact, darker per
    pixel than particles, made of 1-3 Gaussians. They stay off particles, ice and carbon."""
    rows, cols = tau.shape
    out = []
    n = int(rng.integers(cfg.blobs_per_micrograph[0], cfg.blobs_per_micrograph[1] + 1))
    for _ in range(20 * n):
        if len(out) >= n:
            break
        radius = 0.5 * rng.uniform(*cfg.blob_diameter_a) / cfg.pixel_size_a
        x, y = rng.uniform(radius, cols - radius), rng.uniform(radius, rows - radius)
        if len(centres) and np.min(np.hypot(centres[:, 0] - x, centres[:, 1] - y)) < cfg.diameter_px / 2 + radius:
            continue
        if blocked[int(y), int(x)]:
            continue
        strength_phase, strength_tau = rng.uniform(4.0, 10.0), rng.uniform(0.05, 0.2)
        for _ in range(int(rng.integers(1, 4))):
            sx = x + rng.uniform(-0.4, 0.4) * radius
            sy = y + rng.uniform(-0.4, 0.4) * radius
            sigma = max(0.6, radius / rng.uniform(1.0, 1.5))
            reach = int(math.ceil(3.5 * sigma))
            x0, x1 = max(0, int(sx) - reach), min(cols, int(sx) + reach + 2)
            y0, y1 = max(0, int(sy) - reach), min(rows, int(sy) + reach + 2)
            yy, xx = np.mgrid[y0:y1, x0:x1]
            g = np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sigma**2)).astype(np.float32)
            phase[y0:y1, x0:x1] += strength_phase * g
            tau[y0:y1, x0:x1] += strength_tau * g
        out.append((float(x), float(y), "blob"))
    return out
