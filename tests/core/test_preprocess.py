from __future__ import annotations

import os

import numpy as np
import pytest

from picker_gui.core.cache import PreprocessCache
from picker_gui.core.preprocess import (
    PreprocessParams,
    auto_downsample_factor,
    display_image,
    downsample,
    fit_affine,
    fit_gmm,
    preprocess_file,
)

RNG = np.random.default_rng(1)


def _waves(rows: int, cols: int) -> np.ndarray:
    """A smooth image that is periodic on the grid, so Fourier cropping is exact."""
    y, x = np.mgrid[:rows, :cols]
    return (np.sin(2 * np.pi * 3 * x / cols) + np.cos(2 * np.pi * 2 * y / rows)).astype(np.float32)


def test_fourier_crop_keeps_band_limited_content_on_a_non_square_grid():
    image = _waves(96, 128)
    small, scale = downsample(image, 4)
    assert small.shape == (24, 32)
    assert scale == (4.0, 4.0)
    np.testing.assert_allclose(small, image[::4, ::4], atol=1e-4)


def test_fourier_crop_removes_what_the_small_grid_cannot_hold():
    rows, cols = 64, 96
    x = np.arange(cols)
    # Period 3 px is above the Nyquist limit of a 4x-downsampled grid: it must vanish, not alias.
    fine = np.tile(np.cos(2 * np.pi * x / 3), (rows, 1)).astype(np.float32)
    small, _ = downsample(fine, 4)
    assert np.abs(small).max() < 1e-4


def test_non_integer_factor_reports_exact_scales():
    small, (sy, sx) = downsample(RNG.normal(size=(100, 150)).astype(np.float32), 3.0)
    assert small.shape == (33, 50)
    assert sy == pytest.approx(100 / 33) and sx == pytest.approx(3.0)


def test_auto_downsample_follows_relion_for_raw_micrographs_and_spares_binned_ones():
    factor, reason = auto_downsample_factor(diameter_a=150, pixel_size_a=1.0)
    assert factor == 4  # 2*150/71 = 4.2
    assert "150" in reason
    assert auto_downsample_factor(300, 1.0)[0] == 8  # 2*300/71 = 8.5 -> 8
    assert auto_downsample_factor(100, 1.0)[0] == 4  # the floor of 4
    # A micrograph binned to 7.08 Å/px with a 190 Å particle (27 px): x4 would leave 7 px.
    factor, _ = auto_downsample_factor(190, 7.08)
    assert 190 / 7.08 / factor >= 13


def test_gmm_normalisation_ignores_a_dark_minority_that_affine_follows():
    image = RNG.normal(100.0, 5.0, size=(256, 256))
    image[:64, :64] = RNG.normal(20.0, 5.0, size=(64, 64))  # ice: 6 % of pixels, far darker
    gmm = fit_gmm(image)
    affine = fit_affine(image)
    assert gmm.mean == pytest.approx(100.0, abs=0.5)
    assert gmm.std == pytest.approx(5.0, rel=0.05)
    assert affine.std > 15  # pulled far off by the ice
    normed = gmm.apply(image)
    assert abs(float(normed[64:, 64:].mean())) < 0.05


def test_affine_normalisation_gives_zero_mean_unit_std():
    normed = fit_affine(RNG.normal(7, 3, size=(64, 80))).apply(RNG.normal(7, 3, size=(64, 80)))
    assert abs(normed.mean()) < 0.05 and abs(normed.std() - 1) < 0.05


def test_display_lowpass_removes_detail_finer_than_the_resolution():
    rows, cols, px = 128, 192, 2.0
    x = np.arange(cols)
    fine = np.tile(np.cos(2 * np.pi * x / 4), (rows, 1))  # 8 Å period at 2 Å/px
    coarse = np.tile(np.cos(2 * np.pi * 2 * x / cols), (rows, 1))  # 192 Å period
    out = display_image((fine + coarse).astype(np.float32), px, lowpass_a=20.0)
    np.testing.assert_allclose(out.image, coarse, atol=1e-3)
    lo, hi = out.levels
    assert lo < hi


def test_display_bins_large_micrographs_and_reports_the_scale():
    out = display_image(RNG.normal(size=(600, 1000)).astype(np.float32), 1.0, max_size=500)
    assert out.image.shape == (300, 500)
    assert out.scale == (2.0, 2.0)


def test_preprocess_file_maps_coordinates_back_to_the_original(make_mrc):
    path = make_mrc("mic.mrc", RNG.normal(size=(96, 160)).astype(np.float32), voxel_size=2.0)
    result = preprocess_file(path, PreprocessParams(diameter_a=150.0))
    assert result.image.shape == (24, 40)  # 150 Å at 2 Å/px -> x4
    assert result.pixel_size_a == pytest.approx(8.0)
    x, y = result.to_original(np.array([10.0]), np.array([5.0]))
    assert (x[0], y[0]) == (40.0, 20.0)
    assert abs(float(result.image.mean())) < 0.3


def test_target_pixel_size_needs_a_pixel_size(make_mrc):
    path = make_mrc("nopx.mrc", RNG.normal(size=(32, 48)).astype(np.float32), voxel_size=None)
    with pytest.raises(ValueError, match="pixel size"):
        preprocess_file(path, PreprocessParams(target_pixel_size_a=4.0))
    result = preprocess_file(path, PreprocessParams(target_pixel_size_a=4.0, pixel_size_a=1.0))
    assert result.image.shape == (8, 12)


def test_params_refuse_contradictions():
    with pytest.raises(ValueError, match="not both"):
        PreprocessParams(downsample=2, target_pixel_size_a=4)
    with pytest.raises(ValueError, match="normalisation"):
        PreprocessParams(normalization="zscore")


def test_cache_hit_returns_the_same_result_without_recomputing(make_mrc, tmp_path, monkeypatch):
    path = make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    cache = PreprocessCache(tmp_path / "cache")
    params = PreprocessParams(downsample=2)
    first = preprocess_file(path, params, cache)
    assert (cache.hits, cache.misses) == (0, 1)

    import picker_gui.core.cache as cache_module

    def _fail(*a, **k):
        raise AssertionError("recomputed on a cache hit")

    monkeypatch.setattr(cache_module, "preprocess_micrograph", _fail)
    second = preprocess_file(path, params, cache)
    assert cache.hits == 1
    np.testing.assert_array_equal(first.image, second.image)
    assert second.scale == first.scale and second.normalization == first.normalization


def test_cache_misses_when_file_or_params_change(make_mrc, tmp_path):
    path = make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    cache = PreprocessCache(tmp_path / "cache")
    preprocess_file(path, PreprocessParams(downsample=2), cache)
    preprocess_file(path, PreprocessParams(downsample=2, normalization="affine"), cache)
    assert cache.misses == 2
    make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    preprocess_file(path, PreprocessParams(downsample=2), cache)
    assert cache.misses == 3 and cache.hits == 0


def test_corrupt_cache_entry_is_recomputed(make_mrc, tmp_path):
    path = make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    cache = PreprocessCache(tmp_path / "cache")
    params = PreprocessParams(downsample=2)
    preprocess_file(path, params, cache)
    for npy in cache.folder.glob("*.npy"):
        npy.write_bytes(b"not numpy")
    result = preprocess_file(path, params, cache)
    assert result.image.shape == (32, 48) and cache.misses == 2
