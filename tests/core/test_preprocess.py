from __future__ import annotations

import errno
import os
import re

import numpy as np
import pytest

import picker_gui.core.preprocess as preprocess_module
from picker_gui.core.cache import CACHE_VERSION, PreprocessCache
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.mrc_io import Micrograph, MicrographHeader
from picker_gui.core.preprocess import (
    MIN_PARTICLE_PX,
    Normalization,
    PreprocessParams,
    auto_downsample_factor,
    check_sizes,
    display_image,
    downsample,
    fit_affine,
    fit_gmm,
    preprocess_file,
    preprocess_micrograph,
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
    # A micrograph binned to 7.08 Å/px with a 190 Å particle (27 px): x4 would leave 7 px,
    # and x2 (round(27 / 16)) 13.4 px, under the 16 px the message promised.
    factor, reason = auto_downsample_factor(190, 7.08)
    assert factor == 1 and "26.8 px across" in reason
    assert auto_downsample_factor(100, 2.0)[0] == 3  # 50 px: x3 leaves 16.7, x4 would leave 12.5


@pytest.mark.parametrize("pixel_size_a", [0.5, 0.79, 1.0, 1.77, 3.2, 5.0, 7.08, 10.0])
def test_auto_downsample_message_is_true_over_a_sweep(pixel_size_a):
    for diameter_a in np.arange(20.0, 600.0, 7.3):
        factor, reason = auto_downsample_factor(float(diameter_a), pixel_size_a)
        diameter_px = diameter_a / pixel_size_a
        left = diameter_px / factor
        assert isinstance(factor, int) and factor >= 1
        stated = float(re.search(r"leaves ([0-9.]+) px across", reason).group(1))
        assert stated == pytest.approx(left, abs=0.051), reason
        if diameter_px >= MIN_PARTICLE_PX:
            assert left >= MIN_PARTICLE_PX, reason  # never below 16 px by our own choice
        if "at least 16 px" in reason:
            assert left >= 16.0, reason
        if "receptive field" in reason:
            assert factor == round(2 * diameter_px / 71) >= 4, reason
        elif "floor of 4;" in reason:
            assert factor == 4, reason
        elif "floor of 4 lowered" in reason:
            assert factor < 4 and diameter_px / (factor + 1) < 16, reason  # the largest factor that keeps 16 px
        else:
            assert "no downsampling" in reason and factor == 1 and diameter_px < 32, reason


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


# -- hot pixels and non-finite results ------------------------------------------------------
_HUGE_VALUES_WRITTEN = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


@_HUGE_VALUES_WRITTEN
@pytest.mark.parametrize("normalization", ["gmm", "affine"])
@pytest.mark.parametrize("factor", [None, 2])
def test_one_hot_pixel_does_not_spoil_the_preprocessed_micrograph(make_mrc, normalization, factor):
    data = np.random.default_rng(7).normal(100.0, 5.0, size=(96, 128)).astype(np.float32)
    data[20, 90] = 1e37
    path = make_mrc("hot.mrc", data, voxel_size=2.0)
    result = preprocess_file(path, PreprocessParams(downsample=factor, normalization=normalization))
    assert np.isfinite(result.image).all()
    assert result.normalization.mean == pytest.approx(100.0, abs=1.0)
    assert abs(float(result.image.mean())) < 0.2 and 0.5 < float(result.image.std()) < 1.5
    assert any("hot pixel" in n for n in result.notes)


@_HUGE_VALUES_WRITTEN
def test_display_levels_ignore_a_hot_pixel(make_mrc):
    from picker_gui.core.mrc_io import read_micrograph

    data = np.random.default_rng(8).normal(100.0, 5.0, size=(96, 128)).astype(np.float32)
    data[50, 3] = 1e37
    mic = read_micrograph(make_mrc("hotdisp.mrc", data, voxel_size=2.0))
    lo, hi = display_image(mic.image, mic.pixel_size_a).levels
    assert 80 < lo < hi < 120


def _micrograph(image: np.ndarray, name: str = "direct.mrc", pixel_size_a: float | None = 2.0) -> Micrograph:
    from pathlib import Path

    header = MicrographHeader(Path(name), image.shape, 2, pixel_size_a)
    return Micrograph(Path(name), image, pixel_size_a, header)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_preprocessing_is_an_error_naming_the_file():
    # Values read_micrograph would not let through (it replaces hot pixels), given directly:
    # float32 FFTs overflow.
    image = np.full((96, 128), 3e38, dtype=np.float32)
    image[::2] = -3e38
    with pytest.raises(MicrographError, match=r"^direct\.mrc: .*(NaN or infinite|normalisation failed)"):
        preprocess_micrograph(_micrograph(image), PreprocessParams(downsample=2, normalization="affine"))


def test_a_non_finite_normalisation_is_an_error(monkeypatch):
    image = np.random.default_rng(9).normal(size=(96, 128)).astype(np.float32)
    monkeypatch.setattr(preprocess_module, "fit_normalization", lambda img, method: Normalization("gmm", 0.0, float("nan")))
    with pytest.raises(MicrographError, match=r"^direct\.mrc: gmm normalisation failed"):
        preprocess_micrograph(_micrograph(image), PreprocessParams())
    monkeypatch.setattr(preprocess_module, "fit_normalization", lambda img, method: Normalization("affine", 0.0, 0.0))
    with pytest.raises(MicrographError, match="normalisation failed"):
        preprocess_micrograph(_micrograph(image), PreprocessParams())


def test_affine_normalisation_of_large_values_does_not_overflow():
    image = np.random.default_rng(10).normal(0.0, 1e20, size=(64, 80)).astype(np.float32)
    norm = fit_affine(image)
    assert np.isfinite(norm.std) and norm.std == pytest.approx(1e20, rel=0.1)
    assert np.isfinite(norm.apply(image)).all()


# -- sizes ---------------------------------------------------------------------------------
def test_check_sizes_accepts_sensible_settings():
    assert check_sizes((3072, 4096), 1.0, diameter_a=150, downsample=4) == []
    assert check_sizes((96, 128), None) == []


def test_check_sizes_refuses_a_factor_that_leaves_almost_nothing():
    with pytest.raises(UsageError) as err:
        check_sizes((3072, 4096), 1.0, downsample=500)
    assert err.value.option == "--downsample"
    assert "leaves 8×6 px of a 4096×3072 micrograph" in err.value.message
    with pytest.raises(UsageError, match="--target-pixel-size: ") as err:
        check_sizes((3072, 4096), 1.0, downsample=100, downsample_option="--target-pixel-size")


def test_check_sizes_refuses_a_factor_that_shrinks_the_particle_below_4_px_and_warns_below_16():
    with pytest.raises(UsageError) as err:
        check_sizes((3072, 4096), 1.0, diameter_a=100, downsample=30)
    assert err.value.option == "--downsample" and "3.3 px across" in err.value.message
    warnings = check_sizes((3072, 4096), 1.0, diameter_a=100, downsample=10)
    assert len(warnings) == 1 and "10.0 px" in warnings[0]


def test_check_sizes_refuses_a_factor_below_one():
    for bad in (0.5, float("nan")):
        with pytest.raises(UsageError) as err:
            check_sizes((96, 128), 1.0, downsample=bad)
        assert err.value.option == "--downsample"


def test_check_sizes_refuses_a_particle_larger_than_the_micrograph():
    with pytest.raises(UsageError) as err:
        check_sizes((96, 128), 2.0, diameter_a=300)
    assert err.value.option == "--diameter-a"
    assert "150 px" in err.value.message and "128×96 px = 256×192 Å" in err.value.message
    warnings = check_sizes((96, 128), 2.0, diameter_a=120)  # 60 px: over half the short side
    assert len(warnings) == 1 and "half" in warnings[0]


def test_check_sizes_refuses_a_particle_under_two_pixels():
    with pytest.raises(UsageError) as err:
        check_sizes((3072, 4096), 2.0, diameter_a=3)
    assert err.value.option == "--diameter-a"
    assert "1.5 px" in err.value.message and "8192×6144 Å" in err.value.message


@pytest.mark.parametrize("pixel_size_a", [0.05, 150.0, float("nan")])
def test_check_sizes_refuses_an_implausible_pixel_size(pixel_size_a):
    with pytest.raises(UsageError) as err:
        check_sizes((96, 128), pixel_size_a)
    assert err.value.option == "--pixel-size" and "0.1–100 Å" in err.value.message


def test_check_sizes_without_a_pixel_size_warns_that_the_diameter_is_unchecked():
    warnings = check_sizes((96, 128), None, diameter_a=150)
    assert len(warnings) == 1 and "--pixel-size" in warnings[0]


def test_params_refuse_bad_values_as_usage_errors():
    for kwargs, option in [
        ({"downsample": 0.5}, "--downsample"),
        ({"downsample": float("nan")}, "--downsample"),
        ({"target_pixel_size_a": -1.0}, "--target-pixel-size"),
        ({"diameter_a": 0.0}, "--diameter-a"),
        ({"pixel_size_a": 500.0}, "--pixel-size"),
    ]:
        with pytest.raises(UsageError) as err:
            PreprocessParams(**kwargs)
        assert err.value.option == option
        assert not isinstance(err.value, ValueError)


# -- cache -----------------------------------------------------------------------------------
def test_cache_version_was_bumped_for_the_new_preprocessing():
    assert CACHE_VERSION >= 2


def test_cache_write_on_a_full_disk_leaves_no_partial_entry(make_mrc, tmp_path, monkeypatch):
    path = make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    cache = PreprocessCache(tmp_path / "cache")

    def _fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", _fsync)
    result = preprocess_file(path, PreprocessParams(downsample=2), cache)  # the work goes on
    assert result.image.shape == (32, 48)
    assert list(cache.folder.iterdir()) == []  # neither a .npy without its .json nor a temporary file


def test_cache_entry_with_non_finite_pixels_is_recomputed(make_mrc, tmp_path):
    path = make_mrc("c.mrc", RNG.normal(size=(64, 96)).astype(np.float32), voxel_size=1.0)
    cache = PreprocessCache(tmp_path / "cache")
    params = PreprocessParams(downsample=2)
    preprocess_file(path, params, cache)
    for npy in cache.folder.glob("*.npy"):
        np.save(npy, np.full((32, 48), np.nan, dtype=np.float32))
    result = preprocess_file(path, params, cache)
    assert np.isfinite(result.image).all() and cache.misses == 2
