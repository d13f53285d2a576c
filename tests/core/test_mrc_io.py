from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core.errors import MicrographError
from picker_gui.core.mrc_io import find_micrographs, iter_micrographs, read_header, read_micrograph

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
