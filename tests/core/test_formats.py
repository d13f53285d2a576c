"""Tests of picker_gui.core.formats: round trips, independent parsers, conventions, bad files."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import starfile

from picker_gui.core.coords import CoordinateTable, micrograph_key
from picker_gui.core import formats
from picker_gui.core.errors import CoordinateFormatError
from picker_gui.core.formats import (
    READ_FORMATS,
    WRITE_FORMATS,
    detect_format,
    labels_star_text,
    read_coordinates,
    read_labels_file,
    relion_micrograph_names,
    write_coordinates,
    write_labels_file,
)
from picker_gui.core.star import read_star, write_star

WIDTH, HEIGHT = 2048, 1536  # non-square on purpose: x < 2048, y < 1536
BOX = 64


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
def make_table(with_scores: bool = True) -> CoordinateTable:
    """Two micrographs, non-integer centres (2 decimals, which every text format keeps)."""
    mics = ["MotionCorr/job002/mic01.mrc"] * 3 + ["MotionCorr/job002/mic02.mrc"] * 2
    x = [100.25, 1900.5, 1500.75, 37.0, 2010.0]
    y = [200.5, 1400.25, 60.0, 1500.75, 33.5]
    score = [0.91, -2.5, 3.25, 0.0, 1.125] if with_scores else None
    return CoordinateTable.from_arrays(mics, x, y, score, source="test")


def sort_rows(table: CoordinateTable) -> CoordinateTable:
    order = np.lexsort((table.y, table.x, table.keys.astype(str)))
    return table[order]


def assert_same_coords(got: CoordinateTable, want: CoordinateTable, *, atol: float = 1e-6,
                       scores: bool = True) -> None:
    got, want = sort_rows(got), sort_rows(want)
    assert list(got.keys) == list(want.keys)
    np.testing.assert_allclose(got.x, want.x, atol=atol)
    np.testing.assert_allclose(got.y, want.y, atol=atol)
    if scores:
        np.testing.assert_allclose(got.score, want.score, rtol=1e-5, atol=1e-6, equal_nan=True)


def write_target(tmp_path: Path, fmt: str) -> Path:
    return {
        "relion": tmp_path / "relion_out",
        "relion-list": tmp_path / "job" / "autopick.star",
        "star-particles": tmp_path / "particles.star",
        "labels": tmp_path / "project" / "labels.star",
        "box": tmp_path / "box_out",
        "topaz": tmp_path / "picks.txt",
        "csv": tmp_path / "picks.csv",
    }[fmt]


def assert_error(exc_info: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    assert isinstance(exc_info.value, CoordinateFormatError)
    message = str(exc_info.value)
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message


def assert_problem(exc_info: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    """Like :func:`assert_error`, the fragments looked for in the problem alone (not in the path,
    which holds the test's name)."""
    assert isinstance(exc_info.value, CoordinateFormatError)
    assert path.name in str(exc_info.value), str(exc_info.value)
    for fragment in fragments:
        assert fragment in exc_info.value.problem, str(exc_info.value)


# --------------------------------------------------------------------------------------------
# API constants
# --------------------------------------------------------------------------------------------
def test_format_names():
    assert READ_FORMATS == ("star", "relion", "relion-list", "star-particles", "labels", "box", "topaz", "csv",
                            "cbox", "cs", "json")
    assert WRITE_FORMATS == ("relion", "relion-list", "star-particles", "labels", "box", "topaz", "csv")


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_scores", [True, False], ids=["scores", "no-scores"])
@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip(tmp_path, fmt, with_scores):
    table = make_table(with_scores)
    target = write_target(tmp_path, fmt)
    written = write_coordinates(table, target, fmt, box_size=BOX)
    assert written and all(p.is_file() for p in written)
    back = read_coordinates(target, fmt)
    assert len(back) == len(table)
    assert set(back.micrographs()) == {"mic01", "mic02"}
    assert_same_coords(back, table, scores=fmt != "labels")  # the labels format keeps no scores
    assert set(back.kind) == {"particle"}
    if not with_scores:
        assert not back.has_scores


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_round_trip_with_detected_format(tmp_path, fmt):
    """Reading without fmt finds the same format (a folder for the per-micrograph ones)."""
    table = make_table()
    target = write_target(tmp_path, fmt)
    write_coordinates(table, target, fmt, box_size=BOX)
    assert detect_format(target) == fmt
    assert_same_coords(read_coordinates(target), table, scores=fmt != "labels")


def test_csv_round_trip_keeps_every_column(tmp_path):
    table = make_table().replace(kind=["particle", "negative", "particle", "particle", "negative"])
    table = table.replace(score=[0.1, np.nan, 0.3, 0.4, 0.5])
    path = tmp_path / "all.csv"
    write_coordinates(table, path)
    back = read_coordinates(path)
    assert back == table  # micrograph names, kind and source included, full precision


def test_negative_labels_are_not_written_as_particles(tmp_path):
    table = make_table().replace(kind=["particle", "negative", "particle", "particle", "particle"])
    back = read_coordinates(write_coordinates(table, tmp_path / "p.star")[0])
    assert len(back) == 4
    assert 1900.5 not in back.x


def test_non_finite_table_is_refused(tmp_path):
    table = make_table().replace(x=[1.0, np.nan, 3.0, 4.0, 5.0])
    with pytest.raises(CoordinateFormatError, match="NaN or infinite"):
        write_coordinates(table, tmp_path / "t.csv")


# --------------------------------------------------------------------------------------------
# Files checked with independent parsers
# --------------------------------------------------------------------------------------------
def test_relion_files_read_by_starfile(tmp_path):
    table = make_table()
    written = write_coordinates(table, tmp_path / "out", "relion")
    assert sorted(p.name for p in written) == ["mic01_autopick.star", "mic02_autopick.star"]
    text = (tmp_path / "out" / "mic01_autopick.star").read_text()
    assert "data_\n" in text
    blocks = starfile.read(tmp_path / "out" / "mic01_autopick.star", always_dict=True)
    assert list(blocks) == [""]
    df = blocks[""]
    assert list(df.columns) == ["rlnCoordinateX", "rlnCoordinateY", "rlnClassNumber",
                                "rlnAutopickFigureOfMerit", "rlnAnglePsi"]
    np.testing.assert_allclose(df["rlnCoordinateX"], [100.25, 1900.5, 1500.75])
    np.testing.assert_allclose(df["rlnCoordinateY"], [200.5, 1400.25, 60.0])
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], [0.91, -2.5, 3.25])
    assert (df["rlnClassNumber"] == 0).all() and (df["rlnAnglePsi"] == -999).all()


def test_relion_without_scores_writes_fom_minus_999(tmp_path):
    write_coordinates(make_table(False), tmp_path / "out", "relion", suffix="manualpick")
    df = starfile.read(tmp_path / "out" / "mic02_manualpick.star")
    assert (df["rlnAutopickFigureOfMerit"] == -999).all()
    back = read_coordinates(tmp_path / "out" / "mic02_manualpick.star")
    assert back.micrographs() == ["mic02"] and np.isnan(back.score).all()


def test_relion_list_read_by_starfile(tmp_path):
    list_path = tmp_path / "job" / "autopick.star"
    written = write_coordinates(make_table(), list_path, "relion-list")
    assert written[0] == list_path and len(written) == 3
    blocks = starfile.read(list_path, always_dict=True)
    assert list(blocks) == ["coordinate_files"]
    df = blocks["coordinate_files"]
    assert list(df.columns) == ["rlnMicrographName", "rlnMicrographCoordinates"]
    assert list(df["rlnMicrographName"]) == ["MotionCorr/job002/mic01.mrc", "MotionCorr/job002/mic02.mrc"]
    assert list(df["rlnMicrographCoordinates"]) == ["coordinates/mic01_autopick.star",
                                                    "coordinates/mic02_autopick.star"]
    per_mic = starfile.read(tmp_path / "job" / "coordinates" / "mic02_autopick.star")
    np.testing.assert_allclose(per_mic["rlnCoordinateX"], [37.0, 2010.0])


@pytest.mark.parametrize("with_scores", [True, False])
def test_star_particles_read_by_starfile(tmp_path, with_scores):
    path = tmp_path / "particles.star"
    write_coordinates(make_table(with_scores), path)  # .star on write -> star-particles
    blocks = starfile.read(path, always_dict=True)
    assert list(blocks) == ["particles"]
    df = blocks["particles"]
    expected = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"]
    assert list(df.columns) == expected + (["rlnAutopickFigureOfMerit"] if with_scores else [])
    assert df["rlnMicrographName"].iloc[0] == "MotionCorr/job002/mic01.mrc"
    np.testing.assert_allclose(df["rlnCoordinateY"], [200.5, 1400.25, 60.0, 1500.75, 33.5])


def test_box_text_has_lower_left_corners(tmp_path):
    write_coordinates(make_table(), tmp_path / "boxes", "box", box_size=BOX)
    lines = (tmp_path / "boxes" / "mic01.box").read_text().splitlines()
    rows = [line.split("\t") for line in lines]
    assert all(len(r) == 5 for r in rows)
    corners = np.array([[float(r[0]), float(r[1])] for r in rows])
    np.testing.assert_allclose(corners, [[100.25 - 32, 200.5 - 32], [1900.5 - 32, 1400.25 - 32],
                                         [1500.75 - 32, 60.0 - 32]])
    assert {r[2] for r in rows} == {"64"} and {r[3] for r in rows} == {"64"}
    np.testing.assert_allclose([float(r[4]) for r in rows], [0.91, -2.5, 3.25])


def test_box_without_scores_has_four_columns(tmp_path):
    write_coordinates(make_table(False), tmp_path / "boxes", "box", box_size=BOX)
    for line in (tmp_path / "boxes" / "mic02.box").read_text().splitlines():
        assert len(line.split()) == 4


def test_topaz_text(tmp_path):
    path = tmp_path / "picks.txt"
    table = CoordinateTable.from_arrays(["a/mic01.mrc", "a/mic01.mrc", "mic02.tif"], [10, 20.5, 30],
                                        [5, 6, 7.25], [1.5, -6.0, 0.123456789])
    write_coordinates(table, path)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["image_name", "x_coord", "y_coord", "score"]
    assert lines[1].split("\t") == ["mic01", "10", "5", "1.5"]
    assert lines[2].split("\t") == ["mic01", "20.5", "6", "-6"]
    assert lines[3].split("\t") == ["mic02", "30", "7.25", "0.123457"]


def test_topaz_without_scores_has_three_columns(tmp_path):
    path = tmp_path / "picks.tsv"
    write_coordinates(make_table(False), path)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["image_name", "x_coord", "y_coord"]
    assert all(len(line.split("\t")) == 3 for line in lines)


# --------------------------------------------------------------------------------------------
# Conventions: corners, flip, scale, names
# --------------------------------------------------------------------------------------------
def test_box_corner_and_flip_on_non_square_image(tmp_path):
    table = CoordinateTable.from_arrays("mic01.mrc", [100.0], [200.0])
    path = tmp_path / "mic01.box"
    write_coordinates(table, path, box_size=BOX, flip_y=True, image_heights={"mic01": HEIGHT})
    assert path.read_text().split() == ["68", "1304", "64", "64"]  # 100-32, (1536-200)-32
    back = read_coordinates(path, flip_y=True, image_heights=HEIGHT)
    np.testing.assert_allclose(back.xy(), [[100.0, 200.0]])
    unflipped = read_coordinates(path)
    np.testing.assert_allclose(unflipped.xy(), [[100.0, HEIGHT - 200.0]])


def test_flip_uses_per_micrograph_heights(tmp_path):
    table = make_table()
    heights = {"mic01.mrc": 1536, "mic02": 1000}
    path = tmp_path / "f.csv"
    write_coordinates(table, path, flip_y=True, image_heights=heights)
    raw = read_coordinates(path)
    expected_y = np.where(table.keys == "mic01", 1536 - table.y, 1000 - table.y)
    np.testing.assert_allclose(raw.y, expected_y)
    assert_same_coords(read_coordinates(path, flip_y=True, image_heights=heights), table)


def test_flip_without_heights_is_an_error(tmp_path):
    path = tmp_path / "f.csv"
    write_coordinates(make_table(), path)
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path, flip_y=True)
    assert_error(exc, path, "image_heights")
    with pytest.raises(CoordinateFormatError, match="image_heights"):
        write_coordinates(make_table(), tmp_path / "g.csv", flip_y=True)
    with pytest.raises(CoordinateFormatError, match="mic02"):
        read_coordinates(path, flip_y=True, image_heights={"mic01": HEIGHT})


def test_read_scale_from_binned_grid(tmp_path):
    path = tmp_path / "mic01.box"
    # picks made on a 4x-binned 512x384 image, box 16 there
    path.write_text("17\t42\t16\t16\n100.5\t300\t16\t16\n")
    table = read_coordinates(path, scale=4)
    np.testing.assert_allclose(table.xy(), [[(17 + 8) * 4, (42 + 8) * 4], [(100.5 + 8) * 4, (300 + 8) * 4]])


def test_write_scale_then_read_back(tmp_path):
    table = make_table()
    path = tmp_path / "binned.txt"
    write_coordinates(table, path, scale=0.25)
    raw = read_coordinates(path)
    np.testing.assert_allclose(sort_rows(raw).x, sort_rows(table).x * 0.25, atol=0.005)
    assert_same_coords(read_coordinates(path, scale=4), table, atol=0.02)


def test_write_flip_happens_before_scale(tmp_path):
    table = CoordinateTable.from_arrays("mic01", [100.0], [200.0])
    path = tmp_path / "t.csv"
    write_coordinates(table, path, flip_y=True, image_heights=HEIGHT, scale=0.5)
    np.testing.assert_allclose(read_coordinates(path).xy(), [[50.0, (HEIGHT - 200.0) / 2]])
    back = read_coordinates(path, scale=2, flip_y=True, image_heights=HEIGHT)
    np.testing.assert_allclose(back.xy(), [[100.0, 200.0]])


def test_micrograph_names_match_with_or_without_extension(tmp_path):
    table = CoordinateTable.from_arrays(["mic01.mrc", "mic01.mrc"], [10.0, 20.0], [30.0, 40.0])
    path = tmp_path / "t.txt"
    write_coordinates(table, path)
    back = read_coordinates(path)
    assert list(back.micrograph) == ["mic01", "mic01"]
    assert len(back.for_micrograph("mic01.mrc")) == 2
    assert len(table.for_micrograph("mic01")) == 2
    assert micrograph_key(back.micrograph[0]) == micrograph_key(table.micrograph[0])
    # a height keyed by the file name applies to the table read without extension
    flipped = read_coordinates(path, flip_y=True, image_heights={"mic01.mrc": 100})
    np.testing.assert_allclose(flipped.y, [70.0, 60.0])


def test_single_micrograph_box_file_and_multi_micrograph_error(tmp_path):
    one = make_table().for_micrograph("mic02")
    assert write_coordinates(one, tmp_path / "single.box", box_size=BOX) == [tmp_path / "single.box"]
    assert read_coordinates(tmp_path / "single.box", micrograph="mic02.mrc").micrographs() == ["mic02"]
    with pytest.raises(CoordinateFormatError) as exc:
        write_coordinates(make_table(), tmp_path / "all.box", box_size=BOX)
    assert_error(exc, tmp_path / "all.box", "folder")
    assert not (tmp_path / "all.box").exists()


def test_box_write_needs_box_size(tmp_path):
    with pytest.raises(CoordinateFormatError) as exc:
        write_coordinates(make_table(), tmp_path / "boxes", "box")
    assert_error(exc, tmp_path / "boxes", "needs the box size (--box-size)")


def test_relion_read_names_and_missing_fom(tmp_path):
    path = tmp_path / "mic07_autopick.star"
    path.write_text(
        "\n# version 30001\n\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnClassNumber #3\n_rlnAutopickFigureOfMerit #4\n_rlnAnglePsi #5\n"
        "  1024.5   768.0   0  -999.0  -999.0\n  10.0   20.0   0   1.75  -999.0\n"
    )
    assert detect_format(path) == "relion"
    table = read_coordinates(path)
    assert table.micrographs() == ["mic07"]
    assert np.isnan(table.score[0]) and table.score[1] == 1.75
    assert set(table.source) == {"mic07_autopick.star"}
    named = read_coordinates(path, micrograph="grid/mic99.mrc", source="relion")
    assert named.micrographs() == ["mic99"] and set(named.source) == {"relion"}


def test_star_particles_relion31_with_optics(tmp_path):
    path = tmp_path / "particles.star"
    path.write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n_rlnImagePixelSize #3\n"
        "opticsGroup1 1 1.06\n\n"
        "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n"
        "_rlnOpticsGroup #4\n"
        "1200.0 300.5 MotionCorr/job002/Movies/0001.mrc 1\n"
        "50.0 60.0 MotionCorr/job002/Movies/0002.mrc 1\n"
    )
    assert detect_format(path) == "star-particles"
    table = read_coordinates(path)
    assert list(table.micrograph) == ["MotionCorr/job002/Movies/0001.mrc",
                                      "MotionCorr/job002/Movies/0002.mrc"]
    assert table.micrographs() == ["0001", "0002"]  # not parsed as the number 1
    np.testing.assert_allclose(table.xy(), [[1200.0, 300.5], [50.0, 60.0]])
    assert not table.has_scores


def test_detect_format(tmp_path):
    assert detect_format("x/picks.star", for_writing=True) == "star-particles"
    assert detect_format("x/picks.BOX", for_writing=True) == "box"
    assert detect_format("x/picks.tsv", for_writing=True) == "topaz"
    assert detect_format("x/picks.csv", for_writing=True) == "csv"
    write_coordinates(make_table(), tmp_path / "job" / "autopick.star", "relion-list")
    assert detect_format(tmp_path / "job" / "autopick.star") == "relion-list"
    assert detect_format(tmp_path / "job" / "coordinates") == "relion"
    with pytest.raises(CoordinateFormatError, match="can be read but not written"):
        detect_format("x/a.cbox", for_writing=True)
    with pytest.raises(CoordinateFormatError, match="pass fmt"):
        write_coordinates(make_table(), tmp_path / "folder_without_format")


def test_read_folder_of_per_micrograph_files(tmp_path):
    folder = tmp_path / "boxes"
    write_coordinates(make_table(), folder, "box", box_size=BOX)
    (folder / "notes.md").write_text("not coordinates")
    (folder / "mic03.box").write_text("")  # a micrograph without picks
    table = read_coordinates(folder)
    assert table.micrographs() == ["mic01", "mic02"]
    assert set(table.source) == {"mic01.box", "mic02.box"}
    assert_same_coords(table, make_table())


def test_read_folder_with_mixed_formats_needs_fmt(tmp_path):
    write_coordinates(make_table(), tmp_path, "box", box_size=BOX)
    write_coordinates(make_table(), tmp_path, "relion")
    with pytest.raises(CoordinateFormatError, match="several formats"):
        read_coordinates(tmp_path)
    assert len(read_coordinates(tmp_path, "relion")) == 5


# --------------------------------------------------------------------------------------------
# relion-list path resolution
# --------------------------------------------------------------------------------------------
def test_relion_list_entries_relative_to_project_dir(tmp_path):
    """RELION writes entries relative to the project folder: found through the parents."""
    project = tmp_path / "project"
    movies = project / "AutoPick" / "job010" / "Movies"
    movies.mkdir(parents=True)
    (movies / "mic01_autopick.star").write_text(
        "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnAutopickFigureOfMerit #3\n"
        "10.5 20.5 1.0\n30.0 40.0 2.0\n")
    list_path = project / "AutoPick" / "job010" / "autopick.star"
    list_path.write_text(
        "# version 50001\n\ndata_coordinate_files\n\nloop_\n_rlnMicrographName #1\n"
        "_rlnMicrographCoordinates #2\n"
        "MotionCorr/job002/Movies/mic01.mrc AutoPick/job010/Movies/mic01_autopick.star\n")
    table = read_coordinates(list_path)
    assert list(table.micrograph) == ["MotionCorr/job002/Movies/mic01.mrc"] * 2
    np.testing.assert_allclose(table.xy(), [[10.5, 20.5], [30.0, 40.0]])
    np.testing.assert_allclose(table.score, [1.0, 2.0])


def test_relion_list_missing_entry(tmp_path):
    list_path = tmp_path / "job" / "autopick.star"
    write_coordinates(make_table(), list_path, "relion-list")
    (tmp_path / "job" / "coordinates" / "mic02_autopick.star").unlink()
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(list_path)
    assert_error(exc, list_path, "coordinates/mic02_autopick.star", "entry 2")


# --------------------------------------------------------------------------------------------
# crYOLO CBOX and cryoSPARC .cs
# --------------------------------------------------------------------------------------------
CBOX_TEXT = """
data_global

_cbox_format_version 1.0

data_cryolo

loop_
_CoordinateX #1
_CoordinateY #2
_CoordinateZ #3
_Width #4
_Height #5
_Depth #6
_EstWidth #7
_EstHeight #8
_Confidence #9
_NumBoxes #10
_Angle #11
1390.0 1042.0 <NA> 220.0 220.0 <NA> 204.0 210.0 0.8731 <NA> <NA>
37.5 98.0 <NA> 220.0 200.0 <NA> 190.0 199.0 0.3012 <NA> <NA>
"""


def test_read_cryolo_cbox(tmp_path):
    path = tmp_path / "mic05.cbox"
    path.write_text(CBOX_TEXT)
    assert detect_format(path) == "cbox"
    table = read_coordinates(path)
    assert table.micrographs() == ["mic05"]
    np.testing.assert_allclose(table.xy(), [[1500.0, 1152.0], [147.5, 198.0]])
    np.testing.assert_allclose(table.score, [0.8731, 0.3012])
    # the same content in a .star file is recognised by the generic STAR reader
    star = tmp_path / "mic05.star"
    star.write_text(CBOX_TEXT)
    assert detect_format(star) == "cbox"
    np.testing.assert_allclose(read_coordinates(star, "star").xy(), table.xy())


def write_cs(path: Path, *, with_score: bool = True, drop: str | None = None) -> None:
    fields = [("uid", "<u8"), ("location/micrograph_path", "S64"), ("location/micrograph_shape", "<u4", (2,)),
              ("location/center_x_frac", "<f4"), ("location/center_y_frac", "<f4")]
    if with_score:
        fields.append(("pick_stats/ncc_score", "<f4"))
    if drop:
        fields = [f for f in fields if f[0] != drop]
    values = {
        "uid": [1, 2],
        "location/micrograph_path": [b"J12/imported/012345678901234567_mic001.mrc",
                                     b"J12/imported/012345678901234568_mic002.mrc"],
        "location/micrograph_shape": [[HEIGHT, WIDTH], [HEIGHT, WIDTH]],  # [ny, nx]
        "location/center_x_frac": [0.25, 0.5],
        "location/center_y_frac": [0.5, 0.125],
        "pick_stats/ncc_score": [0.5, 0.25],
    }
    arr = np.zeros(2, dtype=fields)
    for name in arr.dtype.names:
        arr[name] = values[name]
    with open(path, "wb") as fh:  # a file handle, so numpy does not append .npy
        np.save(fh, arr)


def test_read_cryosparc_cs(tmp_path):
    path = tmp_path / "picked_particles.cs"
    write_cs(path)
    assert detect_format(path) == "cs"
    table = read_coordinates(path)
    assert list(table.micrograph) == ["J12/imported/mic001.mrc", "J12/imported/mic002.mrc"]
    assert table.micrographs() == ["mic001", "mic002"]
    np.testing.assert_allclose(table.xy(), [[0.25 * WIDTH, 0.5 * HEIGHT], [0.5 * WIDTH, 0.125 * HEIGHT]])
    np.testing.assert_allclose(table.score, [0.5, 0.25])
    write_cs(path, with_score=False)
    assert not read_coordinates(path).has_scores


def test_bad_cryosparc_cs(tmp_path):
    path = tmp_path / "broken.cs"
    path.write_bytes(b"this is not numpy")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "cryoSPARC")
    write_cs(path, drop="location/center_y_frac")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "location/center_y_frac")


def test_read_magellon_json_picks(tmp_path):
    """Magellon's per-micrograph ``*_picks.json``: a list of {x, y, score, id}; the name from the file."""
    path = tmp_path / "24dec03a_00018ex_picks.json"
    path.write_text('[\n {"x": 3896, "y": 376, "score": 5.6, "id": "tp-0"},\n'
                    ' {"x": 672, "y": 3200.5, "score": -1.25, "id": "tp-1"}\n]\n')
    assert detect_format(path) == "json"
    table = read_coordinates(path, scale=0.125)
    assert table.micrographs() == ["24dec03a_00018ex_picks"]
    np.testing.assert_allclose(table.xy(), [[487.0, 47.0], [84.0, 400.0625]])
    np.testing.assert_allclose(table.score, [5.6, -1.25])
    assert read_coordinates(path, micrograph="mic7.mrc").micrographs() == ["mic7"]


def test_read_json_shapes(tmp_path):
    """Under a key, with micrograph names and aliases in any case, or as [x, y(, score)] lists."""
    keyed = tmp_path / "all.json"
    keyed.write_text('{"version": 2, "Particles": [{"Micrograph": "a.mrc", "X_Coord": 1, "y_coord": 2},'
                     ' {"micrograph": "b.mrc", "x": "3.5", "y": 4, "confidence": null}]}')
    table = read_coordinates(keyed)
    assert table.micrographs() == ["a", "b"]
    np.testing.assert_allclose(table.xy(), [[1, 2], [3.5, 4]])
    assert not table.has_scores
    lists = tmp_path / "mic9.json"
    lists.write_text("[[10, 20, 0.5], [30, 40, 0.25]]")
    table = read_coordinates(lists)
    assert table.micrographs() == ["mic9"]
    np.testing.assert_allclose(table.xy(), [[10, 20], [30, 40]])
    np.testing.assert_allclose(table.score, [0.5, 0.25])
    empty = tmp_path / "none.json"
    empty.write_text("[]")
    assert len(read_coordinates(empty)) == 0


def test_read_folder_of_json_picks(tmp_path):
    folder = tmp_path / "picks"
    folder.mkdir()
    (folder / "m1_picks.json").write_text('[{"x": 1, "y": 2, "score": 3}]')
    (folder / "m2_picks.json").write_text('[{"x": 4, "y": 5, "score": 6}, {"x": 7, "y": 8, "score": 9}]')
    assert detect_format(folder) == "json"
    table = read_coordinates(folder)
    assert sorted(table.micrographs()) == ["m1_picks", "m2_picks"]
    assert len(table) == 3


@pytest.mark.parametrize("text, fragments", [
    ('[{"x": 1, "y": 2}', ("not valid JSON", "line 1")),
    ('{"a": 1}', ("needs one list of picks", "found keys: a")),
    ('"hello"', ("expected a list of picks", "str")),
    ('[{"x": 1, "y": 2}, {"x_ds8": 1, "y_ds8": 2}]', ("pick 2 has no x or y", "x_ds8")),
    ('[{"x": 1, "y": "up"}]', ("pick 1 (y)", "'up' is not a number")),
    ('[{"x": 1, "y": true}]', ("pick 1 (y)", "not a number")),
    ('[{"x": 1, "y": 2}, [1, 2, 3, 4]]', ("pick 2", "expected an object")),
    ('[{"x": 1, "y": null}]', ("pick 1 (y)", "not a number")),
])
def test_bad_json(tmp_path, text, fragments):
    path = tmp_path / "bad_picks.json"
    path.write_text(text)
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, *fragments)


def test_read_file_filter_lists_every_readable_extension():
    text = formats.read_file_filter()
    for ext in (".star", ".box", ".txt", ".tsv", ".csv", ".cbox", ".cs", ".json"):
        assert f"*{ext}" in text
    assert text.endswith(";;All files (*)")


# --------------------------------------------------------------------------------------------
# CSV flexibility
# --------------------------------------------------------------------------------------------
def test_csv_aliases_and_missing_micrograph_column(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("Image_Name,X_Coord,Y_Coord,Confidence\nmic01.mrc,1.5,2.5,0.9\nmic02,3,4,\n")
    table = read_coordinates(path)
    assert table.micrographs() == ["mic01", "mic02"]
    np.testing.assert_allclose(table.xy(), [[1.5, 2.5], [3.0, 4.0]])
    assert table.score[0] == 0.9 and np.isnan(table.score[1])
    assert set(table.source) == {"other.csv"}

    bare = tmp_path / "mic09.csv"
    bare.write_text("rlnCoordinateX,rlnCoordinateY\n10,20\n")
    assert read_coordinates(bare).micrographs() == ["mic09"]
    assert read_coordinates(bare, micrograph="x/mic10.mrc").micrographs() == ["mic10"]


# --------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------
def test_empty_star(tmp_path):
    path = tmp_path / "empty.star"
    path.write_text("")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "empty")


def test_star_without_coordinates_block(tmp_path):
    path = tmp_path / "optics.star"
    path.write_text("data_optics\n\nloop_\n_rlnOpticsGroup #1\n1\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "rlnCoordinateX", "rlnOpticsGroup")


def test_star_missing_coordinate_y(tmp_path):
    path = tmp_path / "mic01_autopick.star"
    path.write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnAutopickFigureOfMerit #2\n10.0 1.0\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "missing column(s) rlnCoordinateY", "rlnCoordinateX")


def test_star_text_in_number_column(tmp_path):
    path = tmp_path / "bad_values.star"
    path.write_text("data_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    "mic01.mrc 10.0 20.0\nmic01.mrc 11.0 abc\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "'rlnCoordinateY'", "'abc'")


def test_star_non_finite_coordinate(tmp_path):
    path = tmp_path / "mic01.star"
    path.write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10.0 nan\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 6", "missing", "rlnCoordinateY")
    assert "nan" not in str(exc.value).split(":")[-1]


def test_star_wrong_field_count(tmp_path):
    path = tmp_path / "ragged.star"
    path.write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1.0 2.0\n10.0 20.0 30.0\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 7", "2 columns", "3 values")


def test_box_line_with_three_fields(tmp_path):
    path = tmp_path / "mic01.box"
    path.write_text("10\t20\t64\t64\n\n30\t40\t64\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 3", "found 3")
    assert exc.value.line == 3


def test_box_non_numeric(tmp_path):
    path = tmp_path / "mic01.box"
    path.write_text("10\t20\t64\t64\n30\tforty\t64\t64\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 2", "'forty'")


def test_box_two_columns_need_box_size(tmp_path):
    path = tmp_path / "mic01.box"
    path.write_text("10 20\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "needs the box size (--box-size)")
    np.testing.assert_allclose(read_coordinates(path, box_size=64).xy(), [[42.0, 52.0]])


def test_empty_box(tmp_path):
    path = tmp_path / "mic01.box"
    path.write_text("\n\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "empty")


def test_topaz_non_numeric_line(tmp_path):
    path = tmp_path / "picks.txt"
    path.write_text("image_name\tx_coord\ty_coord\tscore\nmic01\t10\t20\t1.0\nmic01\t1O\t20\t1.0\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 3", "'x_coord'", "'1O'")


def test_topaz_missing_header_column(tmp_path):
    path = tmp_path / "picks.txt"
    path.write_text("image_name\tx_coord\tscore\nmic01\t10\t1.0\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "missing column(s) y", "image_name")


def test_csv_non_finite_and_bad_kind(tmp_path):
    path = tmp_path / "picks.csv"
    path.write_text("micrograph,x,y\nmic01,1,inf\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "line 2", "not a finite number")
    path.write_text("micrograph,x,y,kind\nmic01,1,2,carbon\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "carbon", "'kind'")


def test_unknown_extension(tmp_path):
    path = tmp_path / "picks.xyz"
    path.write_text("1 2\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "'.xyz'", "relion-list", "topaz")
    with pytest.raises(CoordinateFormatError) as exc:
        write_coordinates(make_table(), tmp_path / "out.xyz")
    assert_error(exc, tmp_path / "out.xyz", "'.xyz'")


def test_unknown_format_name(tmp_path):
    path = tmp_path / "picks.csv"
    write_coordinates(make_table(), path)
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path, "eman2")
    assert_error(exc, path, "'eman2'", "star-particles")
    with pytest.raises(CoordinateFormatError) as exc:
        write_coordinates(make_table(), path, "cbox")
    assert_error(exc, path, "can be read but not written")


def test_nonexistent_path(tmp_path):
    path = tmp_path / "nowhere" / "picks.star"
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_error(exc, path, "no such file")


# --------------------------------------------------------------------------------------------
# Awkward micrograph names (a name with a space once made every label of a project disappear)
# --------------------------------------------------------------------------------------------
AWKWARD = ["a b.mrc", "it's.mrc", 'q"z.mrc', "x#y.mrc", "#lead.mrc", "é ü_ß.mrc", "001"]
#: Non-square micrographs of different heights, so a flip that used the wrong name would show.
AWKWARD_HEIGHTS = {name: HEIGHT - 100 * i for i, name in enumerate(AWKWARD)}


def awkward_table() -> CoordinateTable:
    names = [name for name in AWKWARD for _ in range(2)]
    n = len(names)
    x = np.linspace(40.25, WIDTH - 40.5, n)
    y = np.linspace(1300.75, 60.5, n)
    return CoordinateTable.from_arrays(names, x, y, np.linspace(-3.5, 2.25, n), source="test")


#: Formats that keep the whole name; the others keep the micrograph key (file name or Topaz).
FULL_NAME_FORMATS = ("relion-list", "star-particles", "labels", "csv")


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_awkward_names_round_trip(tmp_path, fmt):
    table = awkward_table()
    target = write_target(tmp_path, fmt)
    write_coordinates(table, target, fmt, box_size=BOX, flip_y=True, image_heights=AWKWARD_HEIGHTS)
    assert detect_format(target) == fmt
    back = read_coordinates(target, flip_y=True, image_heights=AWKWARD_HEIGHTS)
    if fmt in FULL_NAME_FORMATS:
        assert sorted(set(back.micrograph)) == sorted(AWKWARD)
    assert sorted(back.micrographs()) == sorted(micrograph_key(n) for n in AWKWARD)
    assert_same_coords(back, table, atol=0.006, scores=fmt != "labels")
    for name in AWKWARD:
        np.testing.assert_allclose(np.sort(back.for_micrograph(name).y), np.sort(table.for_micrograph(name).y),
                                   atol=0.006)


def test_our_star_is_read_by_starfile_for_simple_names(tmp_path):
    table = CoordinateTable.from_arrays(["a b.mrc", "é ü_ß.mrc", "plain.mrc"], [1.5, 2.25, 2047.0],
                                        [4.0, 1535.5, 6.125])
    write_coordinates(table, tmp_path / "p.star")
    df = starfile.read(tmp_path / "p.star", parse_as_string=["rlnMicrographName"])
    assert df["rlnMicrographName"].tolist() == ["a b.mrc", "é ü_ß.mrc", "plain.mrc"]
    np.testing.assert_allclose(df["rlnCoordinateY"], [4.0, 1535.5, 6.125])
    write_coordinates(table, tmp_path / "job" / "autopick.star", "relion-list")
    lst = starfile.read(tmp_path / "job" / "autopick.star", parse_as_string=["rlnMicrographName",
                                                                            "rlnMicrographCoordinates"])
    assert lst["rlnMicrographCoordinates"].tolist() == ["coordinates/a b_autopick.star",
                                                        "coordinates/é ü_ß_autopick.star",
                                                        "coordinates/plain_autopick.star"]


def test_star_particles_sniffing_is_not_confused_by_quoted_values(tmp_path):
    path = tmp_path / "p.star"
    path.write_text('# comment\ndata_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n'
                    '_rlnCoordinateY #3\n"data_1.mrc" 1 2\n"_x y.mrc" 3 4\n"#c.mrc" 5 6\nx#y.mrc 7 8\n')
    assert detect_format(path) == "star-particles"
    assert list(read_coordinates(path).micrograph) == ["data_1.mrc", "_x y.mrc", "#c.mrc", "x#y.mrc"]


def test_star_name_with_a_line_break_is_refused_and_nothing_written(tmp_path):
    table = CoordinateTable.from_arrays(["ok.mrc", "bad\nname.mrc"], [1.0, 2.0], [3.0, 4.0])
    for fmt, target in (("star-particles", tmp_path / "p.star"), ("labels", tmp_path / "labels.star"),
                        ("relion-list", tmp_path / "job" / "autopick.star")):
        with pytest.raises(CoordinateFormatError) as exc:
            write_coordinates(table, target, fmt)
        assert_problem(exc, target, repr("bad\nname.mrc"))
    assert list(tmp_path.iterdir()) == []


def test_topaz_name_with_a_tab_is_refused(tmp_path):
    table = CoordinateTable.from_arrays(["a\tb.mrc"], [1.0], [2.0])
    with pytest.raises(CoordinateFormatError) as exc:
        write_coordinates(table, tmp_path / "t.txt")
    assert_problem(exc, tmp_path / "t.txt", repr("a\tb"), "tab")
    assert not (tmp_path / "t.txt").exists()


def test_per_micrograph_name_that_cannot_be_a_file_name(tmp_path):
    table = CoordinateTable.from_arrays(["ok.mrc", "nul\x00.mrc"], [1.0, 2.0], [3.0, 4.0])
    for fmt in ("box", "relion"):
        with pytest.raises(CoordinateFormatError) as exc:
            write_coordinates(table, tmp_path / fmt, fmt, box_size=BOX)
        assert_problem(exc, tmp_path / fmt, "cannot be a file name")
        assert not (tmp_path / fmt).exists()


def test_topaz_keeps_names_with_spaces_and_leading_hash(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# made by hand\nimage_name\tx_coord\ty_coord\n# a comment after the header\n"
                    "a b\t1\t2\n#12\t3\t4\n")
    table = read_coordinates(path)
    assert list(table.micrograph) == ["a b", "#12"]
    np.testing.assert_allclose(table.xy(), [[1, 2], [3, 4]])


def test_csv_quotes_a_leading_hash_and_still_skips_comments(tmp_path):
    path = tmp_path / "p.csv"
    write_coordinates(CoordinateTable.from_arrays(["#mic.mrc", "a,b.mrc"], [1.0, 2.0], [3.0, 4.0]), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith('"#mic.mrc",') and lines[2].startswith('"a,b.mrc",')
    path.write_text("# a comment\n" + "\n".join(lines) + "\n# another\n", encoding="utf-8")
    assert list(read_coordinates(path).micrograph) == ["#mic.mrc", "a,b.mrc"]


# --------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------
ATOMIC_TARGETS = [("star-particles", "p.star"), ("labels", "labels.star"), ("csv", "p.csv"),
                  ("topaz", "p.txt"), ("box", "mic01.box"), ("relion", "mic01_autopick.star")]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("fmt, name", ATOMIC_TARGETS)
def test_full_disk_at_fsync_keeps_the_old_file(tmp_path, monkeypatch, fmt, name):
    table = make_table().for_micrograph("mic01")
    target = tmp_path / name
    write_coordinates(table, target, fmt, box_size=BOX)
    before = target.read_bytes()
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError) as exc:
        write_coordinates(table.replace(x=table.x + 1), target, fmt, box_size=BOX)
    assert exc.value.errno == errno.ENOSPC
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


@pytest.mark.parametrize("fmt, name", ATOMIC_TARGETS)
def test_full_disk_halfway_keeps_the_old_file(tmp_path, monkeypatch, fmt, name):
    table = make_table().for_micrograph("mic01")
    target = tmp_path / name
    write_coordinates(table, target, fmt, box_size=BOX)
    before = target.read_bytes()
    real = formats.atomic_output

    @contextlib.contextmanager
    def half_then_full(path, *args, **kwargs):
        with real(path, *args, **kwargs) as fh:
            class HalfWriter:
                def write(self, data):
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    _disk_full()

            yield HalfWriter()

    monkeypatch.setattr(formats, "atomic_output", half_then_full)
    with pytest.raises(OSError):
        write_coordinates(table.replace(x=table.x + 1), target, fmt, box_size=BOX)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_relion_list_full_disk_keeps_the_old_list(tmp_path, monkeypatch):
    list_path = tmp_path / "job" / "autopick.star"
    write_coordinates(make_table(), list_path, "relion-list")
    before = {p: p.read_bytes() for p in (tmp_path / "job").rglob("*") if p.is_file()}
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError):
        write_coordinates(make_table().replace(y=make_table().y + 1), list_path, "relion-list")
    after = {p: p.read_bytes() for p in (tmp_path / "job").rglob("*") if p.is_file()}
    assert after == before


# --------------------------------------------------------------------------------------------
# picker-gui's labels file
# --------------------------------------------------------------------------------------------
def labels_table() -> CoordinateTable:
    pos = CoordinateTable.from_arrays(["a b.mrc", "a b.mrc", "001"], [10.5, 2000.25, 7.0], [1500.75, 3.0, 9.0])
    neg = CoordinateTable.from_arrays(["a b.mrc", "#n.mrc"], [400.0, 12.5], [300.0, 1535.0], kind="negative")
    return CoordinateTable.concat([pos, neg]).replace(source="manual")


def test_labels_round_trip_keeps_negatives(tmp_path):
    path = tmp_path / "labels.star"
    assert write_labels_file(path, labels_table()) == path
    assert detect_format(path) == "labels"
    back = read_coordinates(path)
    assert list(back.kind) == ["particle"] * 3 + ["negative"] * 2
    assert back.replace(source="manual") == labels_table()
    table, notes = read_labels_file(path)
    assert table == labels_table() and notes == []
    blocks = starfile.read(path, always_dict=True)  # an independent reader
    assert list(blocks) == ["particles", "negatives"]
    assert blocks["particles"]["rlnCoordinateX"].tolist() == [10.5, 2000.25, 7.0]


def test_generic_star_reader_keeps_negatives(tmp_path):
    path = tmp_path / "labels.star"
    path.write_text(labels_star_text(labels_table()), encoding="utf-8")
    back = read_coordinates(path, "star")
    assert (back.kind == "negative").sum() == 2
    assert sorted(back.for_micrograph("#n").xy().tolist()) == [[12.5, 1535.0]]


def test_labels_detected_by_content(tmp_path):
    # picker-gui's labels as an older version wrote them: tabs, 2 decimals, the comment on top
    old = tmp_path / "old_labels.star"
    old.write_text("# picker-gui labels: particle centres in original-micrograph pixels (x = column, y = row)\n\n"
                   "data_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                   "a.mrc\t10.50\t1500.75\n\ndata_negatives\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n"
                   "_rlnCoordinateY #3\na.mrc\t400.00\t300.00\n")
    assert detect_format(old) == "labels"
    table, notes = read_labels_file(old)
    assert notes == [] and list(table.kind) == ["particle", "negative"]
    # no comment: the data_negatives block after the particles tells
    bare = tmp_path / "bare.star"
    bare.write_text("data_particles\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\na.mrc 1 2\n"
                    "b.mrc 3 4\n\ndata_negatives\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\n")
    assert detect_format(bare) == "labels"
    # our own star-particles output is not mistaken for labels
    write_coordinates(make_table(False), tmp_path / "particles.star")
    assert detect_format(tmp_path / "particles.star") == "star-particles"


def test_read_labels_file_reads_relion3_with_a_note(tmp_path):
    path = tmp_path / "labels.star"
    path.write_text("\ndata_\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                    "_rlnAutopickFigureOfMerit #4\n"
                    "Micrographs/001.mrc 1024.5 768.0 -999.0\nMicrographs/002.mrc 10.0 20.0 1.5\n")
    table, notes = read_labels_file(path)
    assert list(table.micrograph) == ["Micrographs/001.mrc", "Micrographs/002.mrc"]
    assert table.micrographs() == ["001", "002"]
    np.testing.assert_allclose(table.xy(), [[1024.5, 768.0], [10.0, 20.0]])
    assert set(table.kind) == {"particle"} and set(table.source) == {"manual"}
    assert len(notes) == 1 and "not in picker-gui's own labels format" in notes[0]


def test_read_labels_file_reads_relion31_particles_with_a_note(tmp_path):
    path = tmp_path / "labels.star"
    path.write_text("data_optics\nloop_\n_rlnOpticsGroup #1\n1\n\ndata_particles\nloop_\n_rlnCoordinateX #1\n"
                    "_rlnCoordinateY #2\n_rlnMicrographName #3\n_rlnOpticsGroup #4\n1200 300.5 m/0001.mrc 1\n")
    table, notes = read_labels_file(path)
    assert table.micrographs() == ["0001"] and len(notes) == 1 and "star-particles" in notes[0]


@pytest.mark.parametrize("content, fragment", [
    ("data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 1.06\n", "no coordinate columns"),
    ("data_general\n\n_rlnImageSizeX 4096\n", "no coordinate columns"),
    ("", "empty"),
    ("\x00\x01garbage that is not STAR at all\n", "no STAR data block"),
    ("data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\na.mrc\t1.0\tx\n", "'x'"),
    ("data_particles\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\na.mrc\t1.0\n", "rlnCoordinateY"),
])
def test_read_labels_file_never_returns_nothing_in_silence(tmp_path, content, fragment):
    path = tmp_path / "labels.star"
    path.write_text(content)
    with pytest.raises(CoordinateFormatError) as exc:
        read_labels_file(path)
    assert_problem(exc, path, fragment)


def test_empty_labels_round_trip(tmp_path):
    path = write_labels_file(tmp_path / "new" / "labels.star", CoordinateTable.empty())
    table, notes = read_labels_file(path)
    assert len(table) == 0 and notes == []


# --------------------------------------------------------------------------------------------
# RELION 4/5 coordinate lists inside a RELION project
# --------------------------------------------------------------------------------------------
def make_relion_project(root: Path, mics: Sequence[str]) -> Path:
    """A RELION project folder with motion-corrected micrographs and CtfFind's micrographs STAR."""
    movies = root / "MotionCorr" / "job002" / "Movies"
    movies.mkdir(parents=True)
    for mic in mics:
        (movies / f"{mic}.mrc").write_bytes(b"")
    ctf = root / "CtfFind" / "job003" / "micrographs_ctf.star"
    ctf.parent.mkdir(parents=True)
    ctf.write_text(write_star({
        "optics": {"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1]},
        "micrographs": {"rlnMicrographName": [f"MotionCorr/job002/Movies/{m}.mrc" for m in mics],
                        "rlnOpticsGroup": [1] * len(mics), "rlnCtfMaxResolution": [3.5] * len(mics)},
    }), encoding="utf-8")
    return ctf


def test_relion_micrograph_names(tmp_path):
    project = tmp_path / "relion project"
    ctf = make_relion_project(project, ["mic01", "mic 02"])
    names, found = relion_micrograph_names(ctf)
    assert names == {"mic01": "MotionCorr/job002/Movies/mic01.mrc", "mic 02": "MotionCorr/job002/Movies/mic 02.mrc"}
    assert found == project.resolve()
    (project / "MotionCorr" / "job002" / "Movies" / "mic01.mrc").unlink()
    assert relion_micrograph_names(ctf)[1] is None  # the micrographs are not there: no project
    relion30 = tmp_path / "micrographs.star"
    relion30.write_text("data_\nloop_\n_rlnMicrographName #1\n_rlnDefocusU #2\nMicrographs/m1.mrc 10000\n")
    assert relion_micrograph_names(relion30) == ({"m1": "Micrographs/m1.mrc"}, None)


def test_relion_list_with_relion_names_and_project(tmp_path, caplog):
    project = tmp_path / "relion project"
    ctf = make_relion_project(project, ["mic01", "mic02"])
    names, found = relion_micrograph_names(ctf)
    extra = CoordinateTable.from_arrays("elsewhere/mic03.mrc", [5.0], [6.0])
    table = CoordinateTable.concat([make_table(), extra])  # mic03 is unknown to RELION
    list_path = project / "External" / "job010" / "autopick.star"
    with caplog.at_level(logging.WARNING):
        written = write_coordinates(table, list_path, "relion-list", micrograph_names=names, relion_project=found)
    assert "mic03" in caplog.text
    df = read_star(list_path)["coordinate_files"]
    assert df["rlnMicrographName"].tolist() == ["MotionCorr/job002/Movies/mic01.mrc",
                                                "MotionCorr/job002/Movies/mic02.mrc", "elsewhere/mic03.mrc"]
    entries = df["rlnMicrographCoordinates"].tolist()
    assert entries == [f"External/job010/coordinates/{m}_autopick.star" for m in ("mic01", "mic02", "mic03")]
    assert all((project / e).is_file() for e in entries)  # as RELION resolves them
    assert written[1:] == [project / e for e in entries]
    back = read_coordinates(list_path)
    assert_same_coords(back, table)
    assert sorted(set(back.micrograph)) == df["rlnMicrographName"].tolist()


def test_relion_list_outside_the_project_gets_absolute_entries(tmp_path):
    project = tmp_path / "relion"
    project.mkdir()
    list_path = tmp_path / "elsewhere" / "autopick.star"
    write_coordinates(make_table(), list_path, "relion-list", relion_project=project)
    entries = read_star(list_path)["coordinate_files"]["rlnMicrographCoordinates"].tolist()
    assert all(Path(e).is_absolute() and Path(e).is_file() for e in entries)
    assert_same_coords(read_coordinates(list_path), make_table())


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------
def test_text_file_named_cs(tmp_path):
    path = tmp_path / "picks.cs"
    path.write_text("micrograph,x,y\nmic01,1,2\n")
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_problem(exc, path, "not a cryoSPARC .cs file (not a numpy array file)")
    assert "pickle" not in exc.value.problem


def test_pickled_numpy_file_named_cs(tmp_path):
    path = tmp_path / "objects.cs"
    with open(path, "wb") as fh:
        np.save(fh, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_problem(exc, path, "not a cryoSPARC .cs file")
    assert "pickle" not in exc.value.problem


@pytest.mark.parametrize("name, content, line, column", [
    ("p.csv", "micrograph,x,y\nmic01,1,2\nmic01,,2\n", 3, "x"),
    ("p.csv", "micrograph,x,y\nmic01,1,nan\n", 2, "y"),
    ("p.star", "data_particles\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\nm 1 2\nm 3 <NA>\n",
     7, "rlnCoordinateY"),
    ("p.txt", "image_name\tx_coord\ty_coord\nm\t\t2\n", 2, "x_coord"),
])
def test_missing_value_message(tmp_path, name, content, line, column):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CoordinateFormatError) as exc:
        read_coordinates(path)
    assert_problem(exc, path, "missing")
    assert (exc.value.line, exc.value.column) == (line, column)
    assert "coordinate nan" not in exc.value.problem.lower()
