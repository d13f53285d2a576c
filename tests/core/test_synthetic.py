"""The synthetic micrograph generator: geometry, determinism, SNR, junk and the demo dataset."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import mrcfile
import numpy as np
import pytest
import starfile

from picker_gui.core.synthetic import (
    SyntheticConfig,
    _disc_mask,
    _random_rotations,
    _Simulator,
    generate_micrographs,
    write_demo_dataset,
)

# Small and non-square (rows != cols): 25 px particles on 4 A pixels.
SMALL = SyntheticConfig(
    shape=(192, 256),
    pixel_size_a=4.0,
    particle_diameter_a=100.0,
    particles_per_micrograph=30,
    ice_diameter_a=(120.0, 300.0),
    n_atoms=300,
)
N_MICS = 8


@pytest.fixture(scope="module")
def simulator() -> _Simulator:
    return _Simulator(SMALL, seed=1)


@pytest.fixture(scope="module")
def rendered(simulator):
    """``N_MICS`` micrographs with their separate signal / noise layers."""
    return [simulator.micrograph(i, layers=True) for i in range(N_MICS)]


def _lowpass(image: np.ndarray, sigma_px: float) -> np.ndarray:
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    kernel = np.exp(-2 * math.pi**2 * sigma_px**2 * (kx**2 + ky**2))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=image.shape)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


# -- shape, dtype, determinism -------------------------------------------------------------------
def test_images_are_rows_by_cols_float32_with_positive_mean():
    mics = list(generate_micrographs(2, SMALL, seed=3))
    assert [m.name for m in mics] == ["demo_0000", "demo_0001"]
    for mic in mics:
        assert mic.image.shape == (192, 256)
        assert mic.image.dtype == np.float32
        assert np.all(np.isfinite(mic.image))
        assert 0.5 * SMALL.dose_per_pixel < float(np.median(mic.image)) < 1.5 * SMALL.dose_per_pixel
        assert mic.pixel_size_a == SMALL.pixel_size_a
        assert SMALL.defocus_range_um[0] <= mic.defocus_um <= SMALL.defocus_range_um[1]


def test_same_seed_same_bits_and_other_seed_differs():
    a = list(generate_micrographs(3, SMALL, seed=7))
    b = list(generate_micrographs(3, SMALL, seed=7))
    c = list(generate_micrographs(3, SMALL, seed=8))
    for x, y in zip(a, b):
        assert x.image.tobytes() == y.image.tobytes()
        assert x.particles == y.particles and x.junk == y.junk
    assert all(x.image.tobytes() != z.image.tobytes() for x, z in zip(a, c))
    # micrograph i does not depend on how many are asked for
    assert next(generate_micrographs(1, SMALL, seed=7)).image.tobytes() == a[0].image.tobytes()


def test_density_depends_only_on_seed():
    other_sizes = replace(SMALL, shape=(160, 224), snr=0.05)
    assert np.array_equal(_Simulator(SMALL, 4).density.atoms_a, _Simulator(other_sizes, 4).density.atoms_a)
    assert not np.array_equal(_Simulator(SMALL, 4).density.atoms_a, _Simulator(SMALL, 5).density.atoms_a)


def test_bad_config_and_seed_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticConfig(shape=(64, 96), pixel_size_a=1.0, particle_diameter_a=150.0)
    with pytest.raises(ValueError, match="seed"):
        _Simulator(SMALL, -1)


# -- particle positions ----------------------------------------------------------------------------
def test_centres_inside_spaced_and_off_ice_and_carbon(rendered):
    d = SMALL.diameter_px
    rows, cols = SMALL.shape
    crowded = replace(SMALL, ice_per_micrograph=2.0, carbon_probability=1.0)
    cases = rendered + [_Simulator(crowded, 2).micrograph(i, layers=True) for i in range(3)]
    for mic, layers in cases:
        xy = mic.particles.xy()
        assert len(xy) > 0
        assert set(mic.particles.kind) == {"particle"} and set(mic.particles.source) == {"truth"}
        assert set(mic.particles.micrograph) == {f"{mic.name}.mrc"}
        assert np.all((xy[:, 0] >= d / 2) & (xy[:, 0] <= cols - d / 2))
        assert np.all((xy[:, 1] >= d / 2) & (xy[:, 1] <= rows - d / 2))
        dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(dist, np.inf)
        assert dist.min() >= SMALL.min_distance_factor * d - 1e-9
        # the particle body (a disc a bit smaller than the diameter) never touches ice or carbon
        assert not np.any(layers.blocked & _disc_mask(SMALL.shape, xy, 0.4 * d))
    assert any(layers.blocked.any() for _, layers in cases)


# -- signal and noise ------------------------------------------------------------------------------
def test_measured_snr_is_near_the_configured_one(rendered):
    snrs = []
    for mic, layers in rendered:
        disc = _disc_mask(SMALL.shape, mic.particles.xy(), SMALL.diameter_px / 2)
        snrs.append(layers.signal[disc].var() / layers.noise[~layers.blocked].var())
    snrs = np.array(snrs)
    # kappa is calibrated at mid defocus; defocus 1-3 um moves the SNR around it
    assert np.all((snrs > 0.3 * SMALL.snr) & (snrs < 2.0 * SMALL.snr)), snrs
    assert 0.6 * SMALL.snr < snrs.mean() < 1.5 * SMALL.snr, snrs


def test_noise_is_shot_noise_plus_a_little_coloured_noise(rendered):
    for _, layers in rendered:
        var = float(layers.noise[~layers.blocked].var())
        assert SMALL.dose_per_pixel < var < 2.0 * SMALL.dose_per_pixel


def test_single_particle_is_not_visible_per_pixel(rendered):
    """A pixel's brightness says almost nothing about whether it belongs to a particle."""
    for mic, layers in rendered:
        disc = _disc_mask(SMALL.shape, mic.particles.xy(), SMALL.diameter_px / 2)
        free = ~layers.blocked
        inside, outside = mic.image[disc & free], mic.image[free & ~disc]
        noise_std = layers.noise[free].std()
        assert abs(inside.mean() - outside.mean()) < 0.5 * noise_std
        # area under the ROC curve of "pixel value" as a particle-pixel detector
        ranks = np.concatenate([inside, outside]).argsort().argsort()
        auc = (ranks[: len(inside)].mean() - (len(inside) - 1) / 2) / len(outside)
        assert 0.4 < auc < 0.6


def test_average_of_aligned_crops_shows_the_particle(rendered):
    d = SMALL.diameter_px
    half = int(round(d)) // 2
    crops = []
    for mic, _ in rendered:
        for x, y in mic.particles.xy():
            xi, yi = int(round(x)), int(round(y))
            crop = mic.image[yi - half: yi + half + 1, xi - half: xi + half + 1].astype(np.float64)
            if crop.shape == (2 * half + 1, 2 * half + 1):
                crops.append(crop)
    crops = np.array(crops)
    assert len(crops) > 100
    yy, xx = np.mgrid[-half: half + 1, -half: half + 1]
    r = np.hypot(xx, yy)
    crops -= crops[:, r >= half - 1].mean(axis=1)[:, None, None]  # each against its own border
    centre = crops[:, r <= d / 4].mean(axis=1)
    standard_error = centre.std() / math.sqrt(len(centre))
    assert centre.mean() < -5 * standard_error  # proteins are dark at underfocus


def test_brightness_threshold_does_not_separate_particles_from_junk(rendered):
    """In a low-passed image the junk is darker than most particles and much of the background
    is as dark as the typical particle centre."""
    particle_values, junk_values, background = [], [], []
    for mic, _ in rendered:
        low = _lowpass(mic.image.astype(np.float64), SMALL.diameter_px / 6)

        def at(table):
            return low[np.rint(table.y).astype(int), np.rint(table.x).astype(int)]

        particle_values.append(at(mic.particles))
        junk_values.append(at(mic.junk[mic.junk.source != "carbon-edge"]))
        background.append(low[~_disc_mask(SMALL.shape, mic.particles.xy(), SMALL.diameter_px / 2)])
    threshold = np.median(np.concatenate(particle_values))
    assert np.mean(np.concatenate(junk_values) < threshold) > 0.6
    assert np.mean(np.concatenate(background) < threshold) > 0.1


# -- the particle's density --------------------------------------------------------------------------
def test_projections_differ_with_orientation_and_are_not_mirrors():
    """Best normalised correlation over in-plane rotations, with and without a mirror."""
    sim = _Simulator(replace(SMALL, pixel_size_a=2.0), seed=1)
    box = 64
    angles = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    reference = sim.project(np.eye(3), box)

    def best_match(rotation: np.ndarray, mirror: bool) -> float:
        views = (sim.project(_rot_z(a) @ rotation, box) for a in angles)
        return max(_corr(reference, np.fliplr(v) if mirror else v) for v in views)

    # the checks can see a match: the same view, and 180 degrees about y (= a mirror in x)
    assert best_match(np.eye(3), mirror=False) > 0.999
    assert _corr(reference, np.fliplr(sim.project(np.diag([-1.0, 1.0, -1.0]), box))) > 0.999
    side_view = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    random_view = _random_rotations(np.random.default_rng(3), 1)[0]
    for other in (side_view, random_view):
        assert best_match(other, mirror=False) < 0.97
        assert best_match(other, mirror=True) < 0.97
    assert best_match(np.eye(3), mirror=True) < 0.97  # a single view has no mirror symmetry


# -- junk ---------------------------------------------------------------------------------------------
def test_junk_recorded_when_on_and_absent_when_off():
    lots = replace(SMALL, ice_per_micrograph=2.0, carbon_probability=1.0)
    mics = list(generate_micrographs(3, lots, seed=0))
    junk = [m.junk for m in mics]
    assert all(len(j) > 0 for j in junk)
    sources = set(np.concatenate([j.source for j in junk]))
    assert sources == {"blob", "ice", "carbon-edge"}
    for mic in mics:
        assert set(mic.junk.kind) == {"negative"}
        assert np.all((mic.junk.x >= 0) & (mic.junk.x <= 255) & (mic.junk.y >= 0) & (mic.junk.y <= 191))

    clean = replace(lots, junk=False)
    sim = _Simulator(clean, 0)
    for i in range(3):
        mic, layers = sim.micrograph(i, layers=True)
        assert len(mic.junk) == 0
        assert not layers.blocked.any()
        assert len(mic.particles) > 0


# -- demo dataset ---------------------------------------------------------------------------------------
def test_write_demo_dataset(tmp_path):
    calls = []
    demo = write_demo_dataset(tmp_path / "demo", n_micrographs=2, seed=5, config=SMALL,
                              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    assert [p.name for p in demo.micrographs] == ["demo_0000.mrc", "demo_0001.mrc"]
    expected = list(generate_micrographs(2, SMALL, seed=5))
    for path, mic in zip(demo.micrographs, expected):
        with mrcfile.open(path, permissive=False) as mrc:
            assert mrc.data.shape == (192, 256)
            assert mrc.data.dtype == np.float32
            assert np.isclose(float(mrc.voxel_size.x), SMALL.pixel_size_a)
            assert np.isclose(float(mrc.voxel_size.y), SMALL.pixel_size_a)
            assert np.array_equal(mrc.data, mic.image)

    particles = starfile.read(tmp_path / "demo" / "particles.star")
    assert len(particles) == len(demo.particles) == sum(len(m.particles) for m in expected)
    assert set(particles["rlnMicrographName"]) == {"demo_0000.mrc", "demo_0001.mrc"}
    first = particles[particles["rlnMicrographName"] == "demo_0000.mrc"]
    np.testing.assert_allclose(first["rlnCoordinateX"], expected[0].particles.x, atol=1e-3)
    np.testing.assert_allclose(first["rlnCoordinateY"], expected[0].particles.y, atol=1e-3)

    junk = starfile.read(tmp_path / "demo" / "junk.star")
    assert len(junk) == len(demo.junk) == sum(len(m.junk) for m in expected) > 0
    assert set(demo.junk.kind) == {"negative"}
    assert (tmp_path / "demo" / "junk.csv").is_file()

    meta = json.loads((tmp_path / "demo" / "dataset.json").read_text())
    assert meta["seed"] == 5 and meta["n_micrographs"] == 2
    assert (meta["rows"], meta["cols"]) == (192, 256)
    assert meta["pixel_size_a"] == 4.0 and meta["particle_diameter_a"] == 100.0
    assert meta["n_particles"] == len(demo.particles)
    readme = (tmp_path / "demo" / "README.txt").read_text()
    assert "seed 5" in readme and "256 x 192" in readme
    assert demo.pixel_size_a == 4.0 and demo.diameter_a == 100.0
