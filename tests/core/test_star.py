"""Tests of picker_gui.core.star: CIF/STAR tokenising, quoting, numbers, errors, size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from picker_gui.core.errors import CoordinateFormatError
from picker_gui.core.star import format_number, parse_star, quote_value, read_star, write_star

#: Names that broke the starfile package one way or another, and names that look like numbers.
AWKWARD = ["a b.mrc", "it's.mrc", 'q"z.mrc', "x#y.mrc", "#lead.mrc", "é ü_ß.mrc", "001", "", "_x.mrc",
           "data_1.mrc", "loop_", "STOP_", "$x", "[y]", ";z", 'a" b.mrc', "a' b.mrc", '"q.mrc', "'q.mrc",
           'ab"', "ab'", "a\tb.mrc", "a\u00a0b.mrc", "tab\u2028sep"]


def loop(*rows: str, labels: tuple[str, ...] = ("rlnMicrographName", "rlnCoordinateX")) -> str:
    header = "".join(f"_{label} #{i}\n" for i, label in enumerate(labels, start=1))
    return "data_particles\n\nloop_\n" + header + "".join(row + "\n" for row in rows)


# --------------------------------------------------------------------------------------------
# Reading: tokens
# --------------------------------------------------------------------------------------------
def test_quoted_value_ends_at_a_quote_followed_by_whitespace():
    df = parse_star(loop('"q"z.mrc" 1', "'it's x.mrc' 2", '"" 3', "'a\"b' 4", 'plain"quote 5'))["particles"]
    assert df["rlnMicrographName"].tolist() == ['q"z.mrc', "it's x.mrc", "", 'a"b', 'plain"quote']
    np.testing.assert_array_equal(df["rlnCoordinateX"], [1, 2, 3, 4, 5])


def test_hash_starts_a_comment_only_at_the_start_of_a_token():
    df = parse_star(loop("x#y.mrc 1 # a comment", "# a comment line", '"#lead.mrc" 2#', "m.mrc 3#z"))["particles"]
    assert df["rlnMicrographName"].tolist() == ["x#y.mrc", "#lead.mrc", "m.mrc"]
    assert df["rlnCoordinateX"].tolist() == ["1", "2#", "3#z"]  # not numbers: the column stays text


def test_relion_header_comments_and_version_line():
    text = ("\n# version 50001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n_rlnOpticsGroup #2 \n"
            "opticsGroup1            1\n\n\n# version 50001\n\ndata_particles\n\nloop_ \n"
            "_rlnCoordinateX #1 \n_rlnCoordinateY #2 \n_rlnMicrographName #3 \n_rlnAutopickFigureOfMerit #4 \n"
            "  1211.000000   765.000000 MotionCorr/job002/Movies/0001.mrc     1.250000 \n"
            "   512.500000   100.250000 MotionCorr/job002/Movies/0002.mrc    -0.500000 \n\n")
    blocks = parse_star(text)
    assert list(blocks) == ["optics", "particles"]
    df = blocks["particles"]
    assert list(df.columns) == ["rlnCoordinateX", "rlnCoordinateY", "rlnMicrographName",
                                "rlnAutopickFigureOfMerit"]
    np.testing.assert_allclose(df["rlnCoordinateX"], [1211.0, 512.5])
    np.testing.assert_allclose(df["rlnAutopickFigureOfMerit"], [1.25, -0.5])
    assert blocks["optics"]["rlnOpticsGroupName"].tolist() == ["opticsGroup1"]
    assert blocks.row_lines("particles").tolist() == [21, 22]


def test_key_value_block_and_unnamed_block():
    blocks = parse_star('data_general\n\n_rlnImageSizeX   4096\n_rlnMicrographName "a b.mrc" # c\n\n'
                        "data_\n\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n")
    assert list(blocks) == ["general", ""]
    general = blocks["general"]
    assert len(general) == 1 and general["rlnImageSizeX"][0] == 4096.0
    assert general["rlnMicrographName"][0] == "a b.mrc"
    assert blocks.row_lines("general") is None
    np.testing.assert_array_equal(blocks[""]["rlnCoordinateY"], [2.0])


def test_bom_crlf_and_non_ascii(tmp_path):
    path = tmp_path / "win.star"
    path.write_bytes("\ufeffdata_particles\r\n\r\nloop_\r\n_rlnMicrographName #1\r\n_rlnCoordinateX #2\r\n"
                     "\"é ü_ß.mrc\" 10.5\r\nmic\u00f8.mrc 11\r\n".encode("utf-8"))
    df = read_star(path)["particles"]
    assert df["rlnMicrographName"].tolist() == ["é ü_ß.mrc", "micø.mrc"]
    np.testing.assert_allclose(df["rlnCoordinateX"], [10.5, 11.0])


def test_empty_loop_has_its_columns():
    blocks = parse_star("data_particles\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n\ndata_negatives\nloop_\n"
                        "_rlnMicrographName\n_rlnCoordinateX\n")
    assert [len(df) for df in blocks.values()] == [0, 0]
    assert list(blocks["negatives"].columns) == ["rlnMicrographName", "rlnCoordinateX"]


# --------------------------------------------------------------------------------------------
# Reading: column types
# --------------------------------------------------------------------------------------------
def test_numbers_become_float_and_names_stay_text():
    df = parse_star(loop("001 1", "002 2.5", labels=("rlnMicrographName", "rlnCoordinateX")))["particles"]
    assert df["rlnMicrographName"].tolist() == ["001", "002"]  # not 1.0 and 2.0
    assert df["rlnCoordinateX"].dtype == np.float64
    other = parse_star(loop("001 1", labels=("rlnImageName", "rlnMyFileName")))["particles"]
    assert other["rlnImageName"].tolist() == ["001"] and other["rlnMyFileName"].tolist() == ["1"]


def test_missing_markers_in_a_numeric_column_are_nan():
    df = parse_star(loop("1 <NA>", "2 3.5", labels=("CoordinateX", "Width")))["particles"]
    assert df["Width"].dtype == np.float64
    assert np.isnan(df["Width"][0]) and df["Width"][1] == 3.5
    text = parse_star(loop("a <NA>", "b x", labels=("Label", "Other")))["particles"]
    assert text["Other"].tolist() == ["<NA>", "x"]


# --------------------------------------------------------------------------------------------
# Reading: errors
# --------------------------------------------------------------------------------------------
def test_ragged_row_names_line_and_counts(tmp_path):
    path = tmp_path / "ragged.star"
    path.write_text(loop("a.mrc 1", "", "b.mrc 2 3", "c.mrc 4"))
    with pytest.raises(CoordinateFormatError) as exc:
        read_star(path)
    assert exc.value.line == 8
    assert "the loop has 2 columns but this row has 3 values" in str(exc.value)
    assert "ragged.star" in str(exc.value)


def test_ragged_rows_that_would_add_up_are_still_an_error():
    """3 + 1 values are 2 rows of 2 in total: a flat split would shift values between rows."""
    with pytest.raises(CoordinateFormatError, match="this row has 1 values") as exc:
        parse_star(loop("a.mrc 1", "b.mrc", "c.mrc 2 extra"))
    assert exc.value.line == 7
    with pytest.raises(CoordinateFormatError, match="this row has 3 values") as exc:
        parse_star(loop('"a b.mrc" 1 extra', '"b c.mrc"'))
    assert exc.value.line == 6


def test_unterminated_quote():
    with pytest.raises(CoordinateFormatError, match="not closed") as exc:
        parse_star(loop('"a b.mrc 1'))
    assert exc.value.line == 6


@pytest.mark.parametrize("text, fragment", [
    ("", "the file is empty"),
    ("  \n\n", "the file is empty"),
    ("micrograph,x,y\na,1,2\n", "no STAR data block (data_...) found; is this a STAR file?"),
    ("\x00\x01garbage that is not STAR at all\n", "no STAR data block"),
    ("junk\ndata_a\n", "before the first data_ block"),
    ("data_a\n_rlnX 1\ndata_a\n_rlnX 2\n", "appears twice"),
    ("data_a\n1 2\n", "not in a loop_"),
    ("data_a\n_rlnX\n", "expected one value"),
    ("data_a\nloop_\n1 2\n", "loop_ without labels"),
])
def test_not_star(tmp_path, text, fragment):
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(CoordinateFormatError) as exc:
        read_star(path)
    assert fragment in str(exc.value) and "bad.star" in str(exc.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(CoordinateFormatError, match="cannot read"):
        read_star(tmp_path / "absent.star")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("mic.mrc", "mic.mrc"),
    ("it's.mrc", "it's.mrc"),
    ('q"z.mrc', 'q"z.mrc'),
    ("001", "001"),
    ("a b.mrc", '"a b.mrc"'),
    ("x#y.mrc", '"x#y.mrc"'),
    ("#lead.mrc", '"#lead.mrc"'),
    ("", '""'),
    ("_x", '"_x"'),
    ("data_x", '"data_x"'),
    ("Data_x", '"Data_x"'),
    ("loop_", '"loop_"'),
    ("save_", '"save_"'),
    ("global_", '"global_"'),
    ("stop_", '"stop_"'),
    ("loop_x", '"loop_x"'),
    ("stop_1", '"stop_1"'),
    ("x_loop_", "x_loop_"),
    ("$x", '"$x"'),
    (";x", '";x"'),
    ("[x", '"[x"'),
    ("]x", '"]x"'),
    ("'x", "\"'x\""),
    ('"x', '""x"'),
    ('a" b', "'a\" b'"),
    ("a' b", "\"a' b\""),
    ("a\tb", '"a\tb"'),
])
def test_quoting(value, expected):
    assert quote_value(value) == expected
    assert parse_star(write_star({"b": {"rlnMicrographName": [value]}}))["b"]["rlnMicrographName"][0] == value


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "x\" y' z"])
def test_unwritable_values_are_named(value):
    with pytest.raises(CoordinateFormatError) as exc:
        write_star({"particles": {"rlnMicrographName": ["ok.mrc", value], "rlnCoordinateX": [1.0, 2.0]}},
                   path="out.star")
    assert repr(value) in str(exc.value) and "out.star" in str(exc.value)


def test_awkward_names_round_trip_in_a_loop_and_a_key_value_block():
    x = np.arange(len(AWKWARD)) * 10.25
    text = write_star({"particles": {"rlnMicrographName": AWKWARD, "rlnCoordinateX": x},
                       "one": {"rlnMicrographName": 'q"z w.mrc', "rlnImageSizeX": 4096}}, comment="made\nby test")
    assert text.startswith("# made\n# by test\n\ndata_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n")
    blocks = parse_star(text)
    assert blocks["particles"]["rlnMicrographName"].tolist() == AWKWARD
    np.testing.assert_allclose(blocks["particles"]["rlnCoordinateX"], x)
    assert blocks["one"]["rlnMicrographName"][0] == 'q"z w.mrc' and blocks["one"]["rlnImageSizeX"][0] == 4096


def test_write_to_file_handle_and_dataframe(tmp_path):
    df = pd.DataFrame({"rlnMicrographName": ["a b.mrc", "c.mrc"], "rlnCoordinateX": [1.5, 2.0],
                       "rlnClassNumber": [0, 1]})
    path = tmp_path / "t.star"
    with open(path, "w", encoding="utf-8") as fh:
        text = write_star({"particles": df}, fh)
    assert path.read_text(encoding="utf-8") == text
    assert '"a b.mrc" 1.5 0\nc.mrc 2 1\n' in text
    back = read_star(path)["particles"]
    assert back["rlnMicrographName"].tolist() == ["a b.mrc", "c.mrc"]
    alone = write_star(df[["rlnCoordinateX"]])  # one DataFrame: RELION's unnamed block
    assert alone == "data_\n\nloop_\n_rlnCoordinateX #1\n1.5\n2\n\n"


def test_number_formatting():
    assert [format_number(v) for v in (0.0, -0.0, 7.0, -999.0, 1900.25, 0.1 + 0.2, 1 / 3, 12345.678901234,
                                       2.5e-7, -3e-5, float("nan"), float("inf"))] == [
        "0", "0", "7", "-999", "1900.25", "0.3", "0.333333", "12345.678901", "2.5e-07", "-3e-05", "nan", "inf"]
    values = np.array([0.0, -0.0, 7.0, -999.0, 1900.25, 0.1 + 0.2, 1 / 3, 12345.678901234, 2.5e-7, -3e-5,
                       np.nan, np.inf, -np.inf, 1e20])
    text = write_star({"b": {"v": values}})
    rows = text.split("#1\n", 1)[1].split()
    assert rows == [format_number(v) for v in values]
    back = parse_star(text)["b"]["v"].to_numpy()
    np.testing.assert_allclose(back, values, rtol=1e-6, atol=5e-7, equal_nan=True)


def test_columns_of_different_lengths():
    with pytest.raises(CoordinateFormatError, match="differ in length"):
        write_star({"b": {"a": [1, 2], "c": [1]}})


# --------------------------------------------------------------------------------------------
# Interoperability and size
# --------------------------------------------------------------------------------------------
def test_starfile_reads_our_simple_cases(tmp_path):
    path = tmp_path / "interop.star"
    names = ["a b.mrc", "é ü_ß.mrc", "MotionCorr/job002/Movies/mic_001.mrc"]
    path.write_text(write_star({"particles": {"rlnMicrographName": names, "rlnCoordinateX": [1.5, 2.25, 3.0],
                                              "rlnCoordinateY": [4.0, 5.5, 6.125]}}), encoding="utf-8")
    df = starfile.read(path, parse_as_string=["rlnMicrographName"])
    assert df["rlnMicrographName"].tolist() == names
    np.testing.assert_allclose(df["rlnCoordinateY"], [4.0, 5.5, 6.125])


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_300k_rows(tmp_path, quoted):
    n = 300_000
    rng = np.random.default_rng(1)
    base = "my mic {:04d}.mrc" if quoted else "MotionCorr/job002/Movies/mic_{:04d}.mrc"
    names = np.array([base.format(i % 700) for i in range(n)], dtype=object)
    x, y = rng.uniform(0, 4096, n), rng.uniform(0, 3000, n)
    path = tmp_path / "big.star"
    path.write_text(write_star({"particles": {"rlnMicrographName": names, "rlnCoordinateX": x,
                                              "rlnCoordinateY": y}}), encoding="utf-8")
    df = read_star(path)["particles"]
    assert len(df) == n
    assert df["rlnMicrographName"].iloc[0] == names[0] and df["rlnMicrographName"].iloc[-1] == names[-1]
    assert df["rlnMicrographName"].nunique() == 700
    np.testing.assert_allclose(df["rlnCoordinateX"], x, atol=5e-7)
    np.testing.assert_allclose(df["rlnCoordinateY"], y, atol=5e-7)
