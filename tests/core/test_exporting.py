"""Exporting picks: the selection the window shows, every writable format read back, empty
micrographs, the summary, and the same bytes from memory and from picks.star."""

from __future__ import annotations

import numpy as np
import pytest

from picker_gui.core import formats
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.errors import PickerError, UsageError
from picker_gui.core.exporting import (
    PER_MICROGRAPH,
    ExportRequest,
    as_saved,
    saved_floats,
    choose_micrographs,
    export_picks,
    select_picks,
)
from picker_gui.core.formats import WRITE_FORMATS, read_coordinates
from picker_gui.core.picks import PickStore
from picker_gui.core.project import read_picks, save_picks

# Non-square micrographs (K3-like aspect): an x/y swap puts picks off the image.
WIDTH, HEIGHT = 5760.0, 4092.0


def _candidates(seed: int = 0, per_mic: int = 60, names=("mic_a.mrc", "mic_b.mrc", "mic_c.mrc")) -> CoordinateTable:
    """Candidates with full-precision floats (as a pick job makes them), scores in [-4, 4]."""
    rng = np.random.default_rng(seed)
    parts = []
    for name in names:
        x = rng.uniform(0, WIDTH, per_mic)
        y = rng.uniform(0, HEIGHT, per_mic)
        score = rng.uniform(-4, 4, per_mic)
        parts.append(CoordinateTable.from_arrays(name, x, y, score, source="picker-gui"))
    return CoordinateTable.concat(parts)


def _request(path, fmt="csv", threshold=0.0, **kw) -> ExportRequest:
    return ExportRequest(path=path, fmt=fmt, threshold=threshold, **kw)


# -- selection -------------------------------------------------------------------------------
def test_select_keeps_picks_at_or_above_the_threshold():
    cands = _candidates()
    for t in (-4.5, -1.0, 0.0, 2.5):
        out = select_picks(cands, 0.0, _request("x.csv", threshold=t))
        assert np.all(out.score >= t)
        assert len(out) == int(np.sum(as_saved(cands).score >= t))


def test_select_keeps_picks_apart_at_the_least_distance():
    # Two candidates 3 px apart on mic_a: the lower one goes at 5 px, stays at 0 (and 2) px.
    t = CoordinateTable.from_arrays(["m"] * 3, [100.0, 103.0, 400.0], [200.0, 200.0, 300.0], [2.0, 1.0, 0.5])
    assert len(select_picks(t, 0.0, _request("x.csv", threshold=-10))) == 3
    assert len(select_picks(t, 2.0, _request("x.csv", threshold=-10))) == 3
    kept = select_picks(t, 5.0, _request("x.csv", threshold=-10))
    assert sorted(kept.score.tolist()) == [0.5, 2.0]
    # On random candidates no two picks of a micrograph lie closer than the distance.
    out = select_picks(_candidates(per_mic=400), 150.0, _request("x.csv", threshold=-10))
    for _, part in out.groupby_micrograph():
        d = np.hypot(part.x[:, None] - part.x[None], part.y[:, None] - part.y[None])
        np.fill_diagonal(d, np.inf)
        assert d.min() >= 150.0


def test_select_uses_the_store_so_it_matches_what_the_window_shows():
    cands = as_saved(_candidates(per_mic=300))
    store = PickStore(80.0)
    store.set_table(cands)
    out = select_picks(cands, 80.0, _request("x.csv", threshold=0.5))
    assert out == store.to_table(0.5)


def test_select_chosen_micrographs_minus_skipped_in_table_order():
    cands = _candidates()
    out = select_picks(cands, 0.0, _request("x.csv", threshold=-10, micrographs=["mic_c", "mic_a.mrc"]))
    assert out.micrographs() == ["mic_a", "mic_c"]  # the table's order, not the asked order
    out = select_picks(cands, 0.0, _request("x.csv", threshold=-10, skipped=["mic_b"]))
    assert out.micrographs() == ["mic_a", "mic_c"]
    out = select_picks(cands, 0.0, _request("x.csv", threshold=-10, skipped=["mic_b"], exclude_skipped=False))
    assert out.micrographs() == ["mic_a", "mic_b", "mic_c"]
    # Highest score first within each micrograph.
    for _, part in out.groupby_micrograph():
        assert np.all(np.diff(part.score) <= 0)


def test_choose_micrographs_reports_unknown_and_skipped():
    c = choose_micrographs(["a", "b", "c"], ["c", "zz", "a.mrc"], skipped=["a"])
    assert c.chosen == ("c",) and c.skipped == ("a",) and c.unknown == ("zz",)
    assert choose_micrographs(["a", "b"], None, ["b"], exclude_skipped=False).chosen == ("a", "b")


def test_as_saved_is_what_picks_star_reads_back(tmp_path):
    cands = _candidates()
    save_picks(tmp_path / "picks.star", cands, "m1")
    back, _ = read_picks(tmp_path / "picks.star")
    saved = as_saved(cands)
    assert np.array_equal(saved.x, back.x) and np.array_equal(saved.y, back.y)
    assert np.array_equal(saved.score, back.score)
    assert as_saved(saved) == saved


def test_saved_floats_match_the_star_writer_on_edge_values(tmp_path):
    values = np.array([0.0, -0.0, 1.0, -2.0, 3.5, 1e-7, -3.3e-5, 9.99999e-5, 1e-4, 0.1234565, -0.0000004,
                       123456.7654321, 2.0000004, 1e15 + 0.5, 3.7e20, -1e300, np.nan, np.inf, -np.inf,
                       *np.random.default_rng(1).normal(0, 1000, 2000)])
    table = CoordinateTable.from_arrays("m", values, values[::-1], values)
    save_picks(tmp_path / "picks.star", table, None)
    back, _ = read_picks(tmp_path / "picks.star")
    for got, want in ((back.x, saved_floats(values)), (back.y, saved_floats(values[::-1]))):
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))


# -- every format round-trips ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_every_writable_format_reads_back_the_same_coordinates(tmp_path, fmt):
    cands = _candidates()
    request = _request(tmp_path / {"relion": "rel", "box": "box", "relion-list": "list/autopick.star",
                                   "star-particles": "p.star", "labels": "l.star", "topaz": "t.txt",
                                   "csv": "p.csv"}[fmt], fmt, threshold=1.0, box_size=200)
    summary = export_picks(cands, request, min_distance_px=50.0)
    expected = select_picks(cands, 50.0, request)
    back = read_coordinates(summary.path if fmt != "relion-list" else summary.files[0], fmt, box_size=200)
    assert summary.n_particles == len(expected) == len(back)
    assert sorted(back.micrographs()) == sorted(expected.micrographs())
    tol = 0.006 if fmt in ("box", "topaz") else 1e-6  # .box and Topaz text keep 2 decimals
    for key, part in expected.groupby_micrograph():
        got = back.for_micrograph(key)
        a, b = part.xy()[np.lexsort(part.xy().T)], got.xy()[np.lexsort(got.xy().T)]
        np.testing.assert_allclose(b, a, atol=tol)
        assert np.all(part.x <= WIDTH) and np.all(part.y <= HEIGHT)


def test_per_micrograph_formats_are_the_registry_s():
    assert set(PER_MICROGRAPH) == {n for n, f in formats._FORMATS.items() if f.per_micrograph and f.writer}


# -- empty micrographs -----------------------------------------------------------------------
def _with_empty_micrograph() -> CoordinateTable:
    """mic_b's candidates all score below 0."""
    cands = _candidates()
    low = cands.on_micrographs(["mic_b"])
    return cands.replace(score=np.where(low, -3.0 - np.arange(len(cands)) * 1e-3, cands.score))


@pytest.mark.parametrize("fmt", ["relion", "box"])
def test_per_micrograph_formats_write_an_empty_file_for_a_micrograph_without_picks(tmp_path, fmt):
    cands = _with_empty_micrograph()
    out = tmp_path / "out"
    summary = export_picks(cands, _request(out, fmt, threshold=0.0, box_size=128), min_distance_px=0.0)
    name = "mic_b_autopick.star" if fmt == "relion" else "mic_b.box"
    assert (out / name).is_file() and out / name in summary.files
    assert summary.empty_micrographs == ("mic_b",) and summary.empty_files
    assert summary.n_micrographs == 2 and len(summary.files) == 3
    if fmt == "relion":
        text = (out / name).read_text()
        assert "_rlnCoordinateX" in text and len(read_coordinates(out / name, "relion")) == 0
    else:
        assert (out / name).read_bytes() == b""
    back = read_coordinates(out, fmt, box_size=128)  # our reader takes the folder with the empty file
    assert sorted(back.micrographs()) == ["mic_a", "mic_c"] and len(back) == summary.n_particles
    assert "1 micrograph with no pick at or above 0 got an empty file" in summary.describe()
    # Exported again at a lower threshold, mic_b's empty file is replaced by the same name.
    again = export_picks(cands, _request(out, fmt, threshold=-10.0, box_size=128), min_distance_px=0.0)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in summary.files)
    assert not again.empty_micrographs and len(read_coordinates(out / name, fmt, box_size=128)) == 60


def test_an_older_file_of_a_micrograph_now_without_picks_is_emptied(tmp_path):
    cands = _with_empty_micrograph()
    out = tmp_path / "rel"
    export_picks(cands, _request(out, "relion", threshold=-10.0), min_distance_px=0.0)
    assert len(read_coordinates(out / "mic_b_autopick.star", "relion")) == 60
    export_picks(cands, _request(out, "relion", threshold=0.0), min_distance_px=0.0)
    assert len(read_coordinates(out / "mic_b_autopick.star", "relion")) == 0


def test_files_of_micrographs_left_out_are_kept_and_named(tmp_path):
    cands = _candidates()
    out = tmp_path / "rel"
    export_picks(cands, _request(out, "relion", threshold=-10.0), min_distance_px=0.0)
    summary = export_picks(cands, _request(out, "relion", threshold=-10.0, skipped=["mic_c"]), min_distance_px=0.0)
    assert summary.skipped_micrographs == ("mic_c",)
    assert [p.name for p in summary.other_files] == ["mic_c_autopick.star"]
    assert (out / "mic_c_autopick.star").is_file()
    assert "1 skipped micrograph left out" in summary.describe()
    assert "mic_c_autopick.star" in summary.describe()


def test_single_file_formats_count_micrographs_without_picks(tmp_path):
    summary = export_picks(_with_empty_micrograph(), _request(tmp_path / "p.star", "star-particles"), min_distance_px=0)
    assert summary.empty_micrographs == ("mic_b",) and not summary.empty_files
    assert summary.files == [tmp_path / "p.star"]
    assert "1 micrograph has no pick at or above 0" in summary.describe()
    listed = export_picks(_with_empty_micrograph(), _request(tmp_path / "r", "relion-list"), min_distance_px=0)
    assert len(listed.files) == 3  # the list and two coordinate files: mic_b is not listed
    assert "not listed" in listed.describe()


# -- the summary -----------------------------------------------------------------------------
def test_summary_counts_and_line(tmp_path):
    cands = _candidates(per_mic=700)
    request = _request(tmp_path / "box", "box", threshold=-3.0, box_size=100, skipped=["mic_a"])
    summary = export_picks(cands, request, min_distance_px=0.0)
    expected = select_picks(cands, 0.0, request)
    assert summary.n_particles == len(expected) > 1000
    assert summary.n_micrographs == 2 and len(summary.files) == 2
    assert summary.skipped_micrographs == ("mic_a",) and summary.empty_micrographs == ()
    assert summary.describe().startswith(f"wrote {len(expected):,} particles on 2 micrographs to 2 files in "
                                         f"{tmp_path / 'box'}; 1 skipped micrograph left out")


# -- the same bytes from the window and from picks.star ---------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "star-particles", "relion", "box", "topaz", "relion-list", "labels"])
def test_window_store_and_saved_picks_give_the_same_bytes(tmp_path, fmt):
    cands = _candidates(per_mic=200)  # full precision, as a pick job leaves them in memory
    save_picks(tmp_path / "picks.star", cands, "m1")
    saved, _ = read_picks(tmp_path / "picks.star")
    store = PickStore(60.0)
    store.set_table(cands, "m1")
    outs = []
    for i, source in enumerate((store, saved)):
        path = tmp_path / f"out{i}" / ("x" if fmt in ("relion", "box") else "x.star" if "star" in fmt or fmt in (
            "labels", "relion-list") else "x.txt")
        request = _request(path, fmt, threshold=0.25, box_size=180, skipped=["mic_c"])
        summary = export_picks(source, request, min_distance_px=None if source is store else 60.0)
        outs.append({p.relative_to(tmp_path / f"out{i}"): p.read_bytes() for p in summary.files})
    assert outs[0] == outs[1] and outs[0]


# -- refusals --------------------------------------------------------------------------------
def test_refuses_micrographs_that_were_not_picked(tmp_path):
    with pytest.raises(PickerError, match="no picks on nope"):
        export_picks(_candidates(), _request(tmp_path / "x.csv", micrographs=["nope"]), min_distance_px=0)
    assert not (tmp_path / "x.csv").exists()


def test_refuses_an_export_with_nothing_above_the_threshold(tmp_path):
    with pytest.raises(PickerError, match="nothing to export"):
        export_picks(_candidates(), _request(tmp_path / "out", "relion", threshold=99), min_distance_px=0)
    assert not (tmp_path / "out").exists()


def test_refuses_an_input_as_destination(tmp_path):
    labels = tmp_path / "labels.star"
    labels.write_text("keep me")
    with pytest.raises(UsageError, match="also an input"):
        export_picks(_candidates(), _request(labels, "labels"), min_distance_px=0, inputs=[labels])
    with pytest.raises(UsageError, match="where the input"):
        export_picks(_candidates(), _request(tmp_path, "relion"), min_distance_px=0, inputs=[labels])
    assert labels.read_text() == "keep me" and not list(tmp_path.glob("*_autopick.star"))


def test_refuses_one_box_file_for_several_micrographs_and_box_without_size(tmp_path):
    with pytest.raises(PickerError, match="holds one micrograph"):
        export_picks(_candidates(), _request(tmp_path / "a.box", "box", box_size=50), min_distance_px=0)
    with pytest.raises(PickerError, match="box size"):
        export_picks(_candidates(), _request(tmp_path / "b", "box"), min_distance_px=0)
    one = export_picks(_candidates(), _request(tmp_path / "a.box", "box", box_size=50, micrographs=["mic_b"]),
                       min_distance_px=0)
    assert one.files == [tmp_path / "a.box"]
    assert one.describe().endswith(f"to {tmp_path / 'a.box'}")


def test_request_checks_its_values(tmp_path):
    with pytest.raises(PickerError, match="cannot write"):
        ExportRequest(tmp_path / "x", "cbox", 0.0)
    assert ExportRequest(tmp_path / "x.star", "star", 0.0).fmt == "star-particles"
    with pytest.raises(PickerError):
        ExportRequest(tmp_path / "x.star", "star", float("nan"))
    r = ExportRequest(str(tmp_path / "x.csv"), "csv", 1, micrographs=["a"], skipped=["b"])
    assert r.micrographs == ("a",) and r.skipped == ("b",) and r.path == tmp_path / "x.csv"
