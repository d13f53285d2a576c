"""The demo generator: realistic enough to be hard, reproducible, with its junk recorded."""

from __future__ import annotations

import dataclasses

import mrcfile
import numpy as np
import pytest
import starfile

from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs, write_demo_dataset

SMALL = SyntheticConfig(shape=(192, 256), pixel_size_a=4.0, particle_diameter_a=100.0, particles_per_micrograph=30)


def _one(config=SMALL, seed=0):
    return next(generate_micrographs(1, config, seed=seed))


def test_shape_dtype_and_reproducibility():
    a, b, c = _one(seed=1), _one(seed=1), _one(seed=2)
    assert a.image.shape == (192, 256) and a.image.dtype == np.float32 and np.isfinite(a.image).all()
    np.testing.assert_array_equal(a.image, b.image)
    assert a.particles == b.particles
    assert not np.array_equal(a.image, c.image)


def test_true_centres_are_inside_and_apart():
    m = _one(seed=3)
    assert len(m.particles) > 5
    h, w = m.image.shape
    assert (m.particles.x >= 0).all() and (m.particles.x < w).all()
    assert (m.particles.y >= 0).all() and (m.particles.y < h).all()
    xy = m.particles.xy()
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() >= SMALL.min_distance_factor * SMALL.diameter_px - 1e-6


def test_particles_are_faint_per_pixel_but_clear_on_average():
    """As in real data: no brightness threshold finds a particle, an average of many does."""
    config = dataclasses.replace(SMALL, shape=(384, 512), junk=False)
    r = int(SMALL.diameter_px / 2)
    crops, background = [], []
    rng = np.random.default_rng(0)
    for m in generate_micrographs(4, config, seed=5):
        img = (m.image - m.image.mean()) / m.image.std()
        h, w = img.shape
        for x, y in zip(m.particles.x.astype(int), m.particles.y.astype(int)):
            if r <= x < w - r and r <= y < h - r:
                crops.append(img[y - r : y + r, x - r : x + r])
        for _ in range(50):
            x, y = rng.integers(r, w - r), rng.integers(r, h - r)
            background.append(img[y - r : y + r, x - r : x + r])
    crops, background = np.array(crops), np.array(background)
    centre = slice(r - r // 2, r + r // 2)
    # Per pixel, a particle's centre region is within noise of the background...
    per_pixel_shift = abs(crops[:, centre, centre].mean() - background[:, centre, centre].mean())
    assert per_pixel_shift < 1.0
    # ...but the average particle stands out by many standard errors.
    means = crops[:, centre, centre].mean(axis=(1, 2))
    bg = background[:, centre, centre].mean(axis=(1, 2))
    t = abs(means.mean() - bg.mean()) / np.sqrt(means.var() / len(means) + bg.var() / len(bg))
    assert t > 5


def test_projections_of_an_asymmetric_density_differ():
    m = _one(dataclasses.replace(SMALL, junk=False), seed=4)
    img = m.image
    r = int(SMALL.diameter_px / 2)
    xs, ys = m.particles.x.astype(int), m.particles.y.astype(int)
    ok = (xs >= r) & (xs < img.shape[1] - r) & (ys >= r) & (ys < img.shape[0] - r)
    a, b = [img[y - r : y + r, x - r : x + r] for x, y in list(zip(xs[ok], ys[ok]))[:2]]
    assert not np.allclose(a, b) and not np.allclose(a, b[:, ::-1])


def test_junk_is_recorded_and_can_be_turned_off():
    with_junk = [m for m in generate_micrographs(3, SMALL, seed=6)]
    assert sum(len(m.junk) for m in with_junk) > 0
    assert set(np.concatenate([m.junk.source for m in with_junk])) <= {"blob", "ice", "carbon-edge"}
    assert all(set(m.junk.kind) <= {"negative"} for m in with_junk)
    without = _one(dataclasses.replace(SMALL, junk=False), seed=6)
    assert len(without.junk) == 0


def test_write_demo_dataset(tmp_path):
    ds = write_demo_dataset(tmp_path / "demo", n_micrographs=2, seed=7, config=SMALL)
    mics = sorted((tmp_path / "demo" / "micrographs").glob("*.mrc"))
    assert len(mics) == 2
    with mrcfile.open(mics[0]) as mrc:
        assert mrc.data.shape == (192, 256)
        assert float(mrc.voxel_size.x) == pytest.approx(4.0)
    truth = starfile.read(tmp_path / "demo" / "particles.star")
    assert len(truth) == len(ds.particles) and set(truth["rlnMicrographName"]) == {m.name for m in mics}
    assert (tmp_path / "demo" / "junk.star").exists() and (tmp_path / "demo" / "dataset.json").exists()
