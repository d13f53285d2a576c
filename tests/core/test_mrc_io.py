from __future__ import annotations

import errno
import os

import mrcfile
import numpy as np
import pytest

from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.mrc_io import (
    HOT_PIXEL_SIGMA,
    find_micrographs,
    iter_micrographs,
    micrograph_key_collisions,
    read_header,
    read_micrograph,
    require_unique_micrographs,
    unique_micrographs,
    write_mrc,
)

RNG = np.random.default_rng(0)
# Non-square on purpose: a swapped x/y shows up as a shape mismatch.
ROWS, COLS = 48, 64


@pytest.mark.parametrize(
    "dtype, mode",
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_reads_every_common_mode_as_float32_rows_by_cols(make_mrc, dtype, mode):
    data = (RNG.integers(0, 100, size=(ROWS, COLS))).astype(dtype)
    path = make_mrc(f"m{mode}.mrc", data)
    mic = read_micrograph(path)
    assert mic.header.mode == mode
    assert mic.image.dtype == np.float32
    assert mic.image.shape == (ROWS, COLS)
    np.testing.assert_array_equal(mic.image, data.astype(np.float32))
    assert mic.pixel_size_a == pytest.approx(1.5)


def test_single_section_3d_file_is_squeezed(make_mrc):
    data = RNG.normal(size=(1, ROWS, COLS)).astype(np.float32)
    mic = read_micrograph(make_mrc("stack1.mrc", data))
    assert mic.image.shape == (ROWS, COLS)
    np.testing.assert_array_equal(mic.image, data[0])


def test_multi_section_stack_is_refused(make_mrc):
    path = make_mrc("movie.mrc", RNG.normal(size=(5, ROWS, COLS)).astype(np.float32))
    with pytest.raises(MicrographError, match="stack of 5 sections") as err:
        read_micrograph(path)
    assert "movie.mrc" in str(err.value)


def test_user_pixel_size_overrides_header(make_mrc):
    path = make_mrc("px.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=0.79)
    assert read_micrograph(path).pixel_size_a == pytest.approx(0.79)
    assert read_micrograph(path, pixel_size_a=6.32).pixel_size_a == pytest.approx(6.32)


def test_missing_pixel_size_is_none_with_a_note(make_mrc):
    path = make_mrc("nopx.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=None)
    mic = read_micrograph(path)
    assert mic.pixel_size_a is None
    assert any("no pixel size" in n for n in mic.notes)


def test_stale_sampling_in_header_uses_cell_over_width(make_mrc):
    # As `topaz downsample` leaves it: nx = 64 but mx and the cell still describe 512 px.
    path = make_mrc("stale.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32), voxel_size=None)
    import mrcfile

    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.mx, mrc.header.my = 512, 384
        mrc.header.cella = (512 * 0.79, 384 * 0.79, 0.79)
    mic = read_micrograph(path)
    assert mic.pixel_size_a == pytest.approx(0.79 * 512 / COLS, rel=1e-4)
    assert any("stale header" in n for n in mic.notes)
    assert read_header(path).pixel_size_a == pytest.approx(mic.pixel_size_a)


def test_header_only_read_gives_shape_without_data(make_mrc):
    path = make_mrc("h.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32))
    h = read_header(path)
    assert h.shape == (ROWS, COLS) and h.mode == 2


def _valid_bytes(make_mrc) -> bytes:
    return make_mrc("good.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32)).read_bytes()


def test_truncated_file(make_mrc, tmp_path):
    path = tmp_path / "trunc.mrc"
    path.write_bytes(_valid_bytes(make_mrc)[: 1024 + 100])
    with pytest.raises(MicrographError, match=r"trunc\.mrc: truncated"):
        read_micrograph(path)


def test_wrong_mode_bytes(make_mrc, tmp_path):
    raw = bytearray(_valid_bytes(make_mrc))
    raw[12:16] = np.int32(99).tobytes()
    path = tmp_path / "mode.mrc"
    path.write_bytes(bytes(raw))
    with pytest.raises(MicrographError, match=r"mode\.mrc: unsupported MRC data mode 99"):
        read_micrograph(path)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.mrc", b"", "file is empty"),
        ("short.mrc", b"\0" * 100, "shorter than an MRC header"),
        ("text.mrc", b"this is not a micrograph\n" * 100, "not an MRC file"),
    ],
)
def test_not_an_mrc(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MicrographError) as err:
        read_micrograph(path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_filled_file(make_mrc):
    path = make_mrc("nan.mrc", np.full((ROWS, COLS), np.nan, dtype=np.float32))
    with pytest.raises(MicrographError, match=r"nan\.mrc: every pixel is NaN"):
        read_micrograph(path)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_few_nan_pixels_are_patched_with_a_note(make_mrc):
    data = RNG.normal(size=(ROWS, COLS)).astype(np.float32)
    data[3, 5] = np.nan
    mic = read_micrograph(make_mrc("fewnan.mrc", data))
    assert np.isfinite(mic.image).all()
    assert any("NaN" in n for n in mic.notes)


def test_constant_image_is_refused(make_mrc):
    with pytest.raises(MicrographError, match="constant"):
        read_micrograph(make_mrc("flat.mrc", np.zeros((ROWS, COLS), np.float32)))


def test_missing_file(tmp_path):
    with pytest.raises(MicrographError, match="no such file"):
        read_micrograph(tmp_path / "absent.mrc")


def test_batch_goes_on_past_a_bad_file(make_mrc, tmp_path):
    good1 = make_mrc("a.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32))
    bad = tmp_path / "b.mrc"
    bad.write_bytes(b"garbage" * 300)
    good2 = make_mrc("c.mrc", RNG.normal(size=(ROWS, COLS)).astype(np.float32))
    results = dict(iter_micrographs([good1, bad, good2]))
    assert isinstance(results[bad], MicrographError)
    assert results[good1].image.shape == (ROWS, COLS)
    assert results[good2].image.shape == (ROWS, COLS)


def test_find_micrographs_accepts_files_folders_and_globs(make_mrc, tmp_path):
    a = make_mrc("a.mrc", RNG.normal(size=(8, 8)).astype(np.float32))
    b = make_mrc("b.mrc", RNG.normal(size=(8, 8)).astype(np.float32))
    (tmp_path / "notes.txt").write_text("x")
    assert find_micrographs([tmp_path]) == [a, b]
    assert find_micrographs([str(tmp_path / "*.mrc"), a]) == [a, b]
    with pytest.raises(MicrographError, match="matches no file"):
        find_micrographs([str(tmp_path / "*.tif")])


def test_old_file_without_map_id_is_read_permissively_with_a_note(make_mrc, tmp_path):
    data = RNG.normal(size=(ROWS, COLS)).astype(np.float32)
    raw = bytearray(make_mrc("ok.mrc", data).read_bytes())
    raw[208:212] = b"\0\0\0\0"  # old writers leave the 'MAP ' identifier out
    path = tmp_path / "old.mrc"
    path.write_bytes(bytes(raw))
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.image, data)
    assert any("read permissively" in n for n in mic.notes)


# -- hot pixels ---------------------------------------------------------------------------
#: mrcfile's header statistics overflow float32 when the tests write values near 1e37.
_HUGE_VALUES_WRITTEN = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

def _noise(seed: int = 3, rows: int = 96, cols: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, size=(rows, cols)).astype(np.float32)


@_HUGE_VALUES_WRITTEN
@pytest.mark.parametrize("value", [1e37, -1e37, 3e38, 1e5])
def test_a_hot_pixel_is_replaced_by_the_median_with_a_note(make_mrc, value):
    data = _noise()
    data[10, 100] = value  # row 10, column 100: a swapped x/y would miss it
    mic = read_micrograph(make_mrc("hot.mrc", data))
    assert np.isfinite(mic.image).all()
    assert abs(float(mic.image[10, 100]) - 100.0) < 2.0  # the median, near 100
    np.testing.assert_array_equal(np.delete(mic.image.ravel(), 10 * 128 + 100), np.delete(data.ravel(), 10 * 128 + 100))
    assert f"1 hot pixel(s) beyond {HOT_PIXEL_SIGMA:g} σ replaced by the median" in mic.notes
    assert mic.header.notes == mic.notes


@_HUGE_VALUES_WRITTEN
def test_hot_pixels_are_logged_as_warnings(make_mrc, caplog):
    data = _noise()
    data[5, 7] = data[60, 3] = 1e37
    with caplog.at_level("WARNING", logger="picker_gui.core.mrc_io"):
        mic = read_micrograph(make_mrc("hot2.mrc", data))
    assert "2 hot pixel(s)" in caplog.text and "hot2.mrc" in caplog.text
    assert float(mic.image.max()) < 200


def test_a_bad_detector_column_is_replaced(make_mrc):
    data = _noise()
    data[:, 77] = 5e4
    mic = read_micrograph(make_mrc("column.mrc", data))
    assert float(mic.image[:, 77].max()) < 130
    assert any(n.startswith("96 hot pixel(s)") for n in mic.notes)


@pytest.mark.parametrize(
    "dtype, mean, hot",
    [(np.uint16, 30.0, 60000), (np.int16, 500.0, 30000), (np.int8, 2.0, 127), (np.int8, 0.05, 100)],
)
def test_integer_counting_data_gets_hot_pixels_replaced(make_mrc, dtype, mean, hot):
    # Poisson counts; the last case is sparse (the MAD is 0), where one count sets the scale.
    data = np.random.default_rng(4).poisson(mean, size=(96, 128)).astype(dtype)
    data[50, 120] = hot
    mic = read_micrograph(make_mrc("counts.mrc", data))
    assert float(mic.image[50, 120]) == float(np.median(data))
    assert any(n.startswith("1 hot pixel(s)") for n in mic.notes)


def test_extended_dark_and_bright_areas_are_not_hot_pixels(make_mrc):
    # As on a heavily binned micrograph: ice and a hole far beyond the pixel noise, even
    # with hard edges, but every pixel of them (the tips of the disc too) has neighbours
    # like itself.
    data = np.random.default_rng(5).normal(0.0, 1.0, size=(96, 128)).astype(np.float32)
    y, x = np.mgrid[:96, :128]
    data[(y - 30) ** 2 + (x - 40) ** 2 < 12**2] -= 80.0
    data[(y - 70) ** 2 + (x - 100) ** 2 < 3**2] -= 80.0  # a small one
    data[60:62, 90:128] += 80.0  # a 2-px bright band reaching the border
    mic = read_micrograph(make_mrc("ice.mrc", data))
    np.testing.assert_array_equal(mic.image, data)
    assert not any("hot pixel" in n for n in mic.notes)


@_HUGE_VALUES_WRITTEN
def test_a_bad_row_at_the_edge_and_a_block_of_broken_pixels_are_replaced(make_mrc):
    data = _noise()
    data[0, 20:100] = -100.0  # a dead stretch of the first row, 40 σ below the median
    data[30:32, 40:42] = 1e37  # a 2×2 block: its pixels have 3 hot neighbours each
    mic = read_micrograph(make_mrc("rows.mrc", data))
    assert float(np.abs(mic.image[0] - 100).max()) < 20 and float(mic.image.max()) < 200
    assert any(n.startswith("84 hot pixel(s)") for n in mic.notes)


def test_synthetic_micrographs_lose_no_pixel(tmp_path):
    from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs

    config = SyntheticConfig(shape=(96, 128), particle_diameter_a=40.0, particles_per_micrograph=6,
                             ice_diameter_a=(40.0, 80.0), ice_per_micrograph=2.0, carbon_probability=0.5)
    for i, synthetic in enumerate(generate_micrographs(4, config, seed=1)):
        path = write_mrc(tmp_path / f"s{i}.mrc", synthetic.image, 2.0)
        mic = read_micrograph(path)
        np.testing.assert_array_equal(mic.image, synthetic.image)
        assert not any("hot pixel" in n for n in mic.notes)


@_HUGE_VALUES_WRITTEN
def test_many_outliers_are_a_broken_file_not_hot_pixels(make_mrc):
    data = _noise()
    flat = data.ravel()
    flat[np.random.default_rng(6).choice(flat.size, size=flat.size // 50, replace=False)] = 1e30  # 2 %
    with pytest.raises(MicrographError, match=r"many\.mrc: .*too many for hot pixels"):
        read_micrograph(make_mrc("many.mrc", data))


@_HUGE_VALUES_WRITTEN
@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_and_hot_pixels_together(make_mrc):
    data = _noise()
    data[1, 2] = np.nan
    data[40, 50] = 1e37
    mic = read_micrograph(make_mrc("both.mrc", data))
    assert np.isfinite(mic.image).all() and float(mic.image.max()) < 200
    assert len(mic.notes) >= 2


# -- TIFF and EER -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, head",
    [("x.tif", b"II*\0"), ("x.tiff", b"MM\0*"), ("renamed.mrc", b"II*\0"), ("big.mrc", b"II+\0"), ("odd.tif", b"\0" * 4)],
)
def test_tiff_files_say_how_to_convert(tmp_path, name, head):
    path = tmp_path / name
    path.write_bytes(head + b"\0" * 2000)
    for reader in (read_micrograph, read_header):
        with pytest.raises(MicrographError) as err:
            reader(path)
        message = str(err.value)
        assert message.startswith(str(path))
        assert "TIFF images are not supported" in message
        assert "relion_image_handler" in message and "tif2mrc" in message and name in message


def test_eer_movies_say_to_run_motion_correction(tmp_path):
    path = tmp_path / "movie.eer"
    path.write_bytes(b"II*\0" + b"\0" * 2000)
    with pytest.raises(MicrographError, match=r"movie\.eer: EER movies are not supported.*motion correction"):
        read_micrograph(path)


def test_mrc_file_with_a_tif_extension_is_still_read(make_mrc, tmp_path):
    data = _noise()
    raw = make_mrc("m.mrc", data).read_bytes()
    path = tmp_path / "m.tif"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_micrograph(path).image, data)


def test_folder_of_tiffs_says_tiff_is_not_supported(tmp_path):
    for i in range(12):
        (tmp_path / f"mic_{i:02d}.tif").write_bytes(b"II*\0" + b"\0" * 100)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MicrographError) as err:
        find_micrographs([tmp_path])
    message = str(err.value)
    assert "holds no .mrc files, but 12 .tif files: TIFF is not supported" in message
    assert "relion_image_handler" in message


def test_folder_of_eer_and_tiff_names_both(tmp_path):
    (tmp_path / "a.eer").write_bytes(b"II*\0")
    (tmp_path / "b.TIFF").write_bytes(b"MM\0*")
    with pytest.raises(MicrographError, match=r"but 1 \.tiff file and 1 \.eer file: TIFF is not supported.*EER movies"):
        find_micrographs([tmp_path])


def test_empty_folder_still_says_no_mrc_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MicrographError, match=r"folder holds no \.mrc files$"):
        find_micrographs([tmp_path])


# -- one micrograph per key ---------------------------------------------------------------
def test_key_collisions_across_folders_and_extensions(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    paths = [a / "x.mrc", b / "x.mrc", c / "y.mrc", c / "z.map", c / "z.mrc", a / "x.mrc"]
    assert micrograph_key_collisions(paths) == {"x": [a / "x.mrc", b / "x.mrc"], "z": [c / "z.map", c / "z.mrc"]}
    assert micrograph_key_collisions([a / "x.mrc", tmp_path / "a" / ".." / "a" / "x.mrc"]) == {}


def test_unique_micrographs_keeps_the_first_and_prefers_mrc_in_one_folder(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    paths = [a / "x.mrc", a / "z.map", b / "x.mrc", a / "y.mrc", a / "z.mrc", a / "z.mrcs"]
    kept, messages = unique_micrographs(paths)
    assert kept == [a / "x.mrc", a / "y.mrc", a / "z.mrc"]
    assert len(messages) == 2
    x_msg = next(m for m in messages if "'x'" in m)
    assert str(a / "x.mrc") in x_msg and str(b / "x.mrc") in x_msg
    assert f"using {a / 'x.mrc'}" in x_msg and "given first" in x_msg
    assert "without extension" in x_msg and "rename one" in x_msg
    z_msg = next(m for m in messages if "'z'" in m)
    assert all(str(a / n) in z_msg for n in ("z.map", "z.mrc", "z.mrcs"))
    assert f"using {a / 'z.mrc'}" in z_msg and "preferred" in z_msg


def test_unique_micrographs_in_different_folders_keeps_the_first_whatever_its_extension(tmp_path):
    kept, messages = unique_micrographs([tmp_path / "a" / "x.map", tmp_path / "b" / "x.mrc"])
    assert kept == [tmp_path / "a" / "x.map"] and len(messages) == 1


def test_unique_micrographs_without_collisions_changes_nothing(tmp_path):
    paths = [tmp_path / "b.mrc", tmp_path / "a.mrc", tmp_path / "b.mrc"]
    assert unique_micrographs(paths) == ([tmp_path / "b.mrc", tmp_path / "a.mrc"], [])
    assert require_unique_micrographs(paths[:2]) == paths[:2]


def test_require_unique_micrographs_lists_the_first_collisions(tmp_path):
    paths = [tmp_path / d / f"m{i}.mrc" for i in range(5) for d in ("a", "b")]
    with pytest.raises(UsageError) as err:
        require_unique_micrographs(paths)
    message = str(err.value)
    assert "5 micrograph names are shared" in message
    assert str(tmp_path / "a" / "m0.mrc") in message and str(tmp_path / "b" / "m2.mrc") in message
    assert "m3" not in message and "and 2 more" in message
    assert "without extension" in message


def test_micrographs_found_in_one_folder_with_mrc_and_map_collide(make_mrc, tmp_path):
    make_mrc("x.mrc", _noise())
    make_mrc("x.map", _noise())
    found = find_micrographs([tmp_path])
    assert micrograph_key_collisions(found) == {"x": [tmp_path / "x.map", tmp_path / "x.mrc"]}
    assert unique_micrographs(found)[0] == [tmp_path / "x.mrc"]


# -- writing ------------------------------------------------------------------------------
def test_write_mrc_round_trips_and_leaves_no_temporary_file(tmp_path):
    data = _noise()
    path = write_mrc(tmp_path / "out.mrc", data, 3.5)
    mic = read_micrograph(path)
    np.testing.assert_array_equal(mic.image, data)
    assert mic.pixel_size_a == pytest.approx(3.5)
    assert sorted(os.listdir(tmp_path)) == ["out.mrc"]
    write_mrc(path, data * 2, 3.5)
    np.testing.assert_array_equal(read_micrograph(path).image, data * 2)
    assert sorted(os.listdir(tmp_path)) == ["out.mrc"]


def _full_disk_in_fsync(monkeypatch):
    def _fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", _fsync)


def _full_disk_in_mrcfile(monkeypatch):
    real_new = mrcfile.new

    def _new(name, *args, **kwargs):
        with open(name, "wb") as fh:
            fh.write(b"MAP half an MRC file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mrcfile, "new", _new)
    return real_new


@pytest.mark.parametrize("full_disk", [_full_disk_in_fsync, _full_disk_in_mrcfile])
def test_write_mrc_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch, full_disk):
    path = write_mrc(tmp_path / "out.mrc", _noise(), 2.0)
    before = path.read_bytes()
    full_disk(monkeypatch)
    with pytest.raises(OSError) as err:
        write_mrc(path, _noise(seed=9), 2.0)
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.mrc"]
