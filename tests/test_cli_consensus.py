"""``picker-gui consensus`` end to end on small synthetic micrographs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picker_gui.cli import main
from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.formats import read_coordinates, write_coordinates
from tests.conftest import write_mrc
from tests.core.test_consensus_job import PIXEL, _micrograph


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_cons")
    rng = np.random.default_rng(5)
    (root / "mics").mkdir()
    truth = []
    for i in range(3):
        image, centres = _micrograph(rng)
        write_mrc(root / "mics" / f"m{i}_DW.mrc", image, voxel_size=PIXEL)
        truth.append(centres)
    tables = {}
    for name, found, seed in (("a", 0.9, 1), ("b", 0.8, 2)):
        r = np.random.default_rng(seed)
        parts = []
        for i, c in enumerate(truth):
            keep = r.random(len(c)) < found
            xy = np.concatenate([c[keep] + r.normal(0, 0.3, (keep.sum(), 2)), r.uniform(10, 182, (10, 2))])
            parts.append(CoordinateTable.from_arrays(f"m{i}.mrc" if name == "a" else f"m{i}_DW.mrc", xy[:, 0], xy[:, 1],
                                                     score=r.random(len(xy))))
        tables[name] = CoordinateTable.concat(parts)
    write_coordinates(tables["a"], root / "a.txt", "topaz")
    write_coordinates(tables["b"], root / "b_picks.star", "star-particles")
    return root


def test_csv_holds_every_or_pick_with_votes(files, caplog):
    out = files / "cons.csv"
    code = main(["consensus", f"first={files / 'a.txt'}", str(files / "b_picks.star"), "--micrographs",
                 str(files / "mics"), "--diameter-a", str(8 * PIXEL), "--box-a", str(16 * PIXEL), "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.columns[:5]) == ["micrograph", "x", "y", "score", "votes"]
    assert {"found_by_first", "found_by_b_picks", "score_first", "score_b_picks"} <= set(df.columns)
    assert set(df.votes) == {1, 2}
    assert (df.score == df.votes / 2).all()
    assert df.micrograph.str.endswith("_DW.mrc").all()  # named as the micrographs
    # The CSV reads back as a scored coordinate set.
    assert len(read_coordinates(out)) == len(df)


def test_train_with_the_built_in_picker_writes_star_at_a_cut(files):
    out = files / "kept.star"
    code = main(["consensus", str(files / "a.txt"), "--dog", "--train", "--min-positives", "50", "--ensemble", "1",
                 "--max-minutes", "1000", "--micrographs", str(files / "mics"), "--diameter-a", str(8 * PIXEL),
                 "--box-a", str(16 * PIXEL), "--cut", "0.5", "--out", str(out)])
    assert code == 0
    kept = read_coordinates(out)
    assert len(kept) > 0
    assert (kept.score >= 0.5).all() and (kept.score <= 1).all()


def test_clear_errors(files, capsys):
    assert main(["consensus", str(files / "a.txt"), "--train", "--micrographs", str(files / "mics"),
                 "--diameter-a", "32", "--out", str(files / "x.csv")]) == 2
    assert "only" in capsys.readouterr().err  # too few AND particles, with the counts
    assert main(["consensus", str(files / "a.txt"), "--set-threshold", "zz=1", "--micrographs", str(files / "mics"),
                 "--diameter-a", "32", "--out", str(files / "x.csv")]) == 2
    assert "no set named 'zz'" in capsys.readouterr().err
    # The output may not be an input.
    assert main(["consensus", str(files / "a.txt"), "--micrographs", str(files / "mics"), "--diameter-a", "32",
                 "--out", str(files / "a.txt"), "--format", "topaz"]) == 2


def test_labels_join_the_positives_and_are_counted_in_the_message(files, capsys):
    """--labels: the user's particles count as positives (here: named by another suffix, and
    away from every agreed pick), the negative does not."""
    labels = CoordinateTable.from_arrays("m0.mrc", [5, 187, 5, 100], [5, 5, 187, 100],
                                         kind=[PARTICLE, PARTICLE, PARTICLE, NEGATIVE])
    write_coordinates(labels, files / "labels.star", "star-particles")
    args = ["consensus", str(files / "a.txt"), str(files / "b_picks.star"), "--train", "--micrographs",
            str(files / "mics"), "--diameter-a", str(8 * PIXEL), "--box-a", str(16 * PIXEL), "--min-positives", "100000",
            "--out", str(files / "x.csv")]
    assert main(args) == 2
    assert "of your labels" not in capsys.readouterr().err
    assert main([*args, "--labels", str(files / "labels.star")]) == 2
    assert "(with 3 of your labels)" in capsys.readouterr().err


def test_rank_scores_the_or_set_without_training(files, capsys):
    out = files / "ranked.csv"
    code = main(["consensus", f"first={files / 'a.txt'}", f"second={files / 'b_picks.star'}", "--rank",
                 "--micrographs", str(files / "mics"), "--diameter-a", str(8 * PIXEL), "--box-a", str(16 * PIXEL),
                 "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out)
    assert ((df.score > 0) & (df.score <= 1)).all()
    # Found by both: the mean of two ranks; by one: half of one rank.
    both, one = df[df.votes == 2], df[df.votes == 1]
    assert len(both) > 50 and len(one) > 10
    assert both.score.mean() > one.score.mean() + 0.15
    # Ranked by one set only: a pick the other set alone found scores 0.
    out1 = files / "ranked_first.csv"
    assert main(["consensus", f"first={files / 'a.txt'}", f"second={files / 'b_picks.star'}", "--rank", "first",
                 "--micrographs", str(files / "mics"), "--diameter-a", str(8 * PIXEL), "--box-a", str(16 * PIXEL),
                 "--out", str(out1)]) == 0
    df1 = pd.read_csv(out1)
    assert (df1.score[df1.found_by_first == 0] == 0).all() and (df1.score[df1.found_by_first == 1] > 0).all()
    # A clear error: a set that does not exist.
    assert main(["consensus", str(files / "a.txt"), "--rank", "zz", "--micrographs", str(files / "mics"),
                 "--diameter-a", "32", "--out", str(files / "x.csv")]) == 2
    assert "no set named 'zz'" in capsys.readouterr().err


def test_train_with_rank_guides_the_network(files, capsys):
    """--train --rank: the network trains on examples the ranks chose and scores every OR pick."""
    out = files / "guided.csv"
    code = main(["consensus", f"first={files / 'a.txt'}", f"second={files / 'b_picks.star'}", "--train", "--rank",
                     "first", "second", "--min-positives", "20", "--ensemble", "1", "--max-minutes", "0.05",
                     "--micrographs", str(files / "mics"), "--diameter-a", str(8 * PIXEL), "--box-a", str(16 * PIXEL),
                     "--out", str(out)])
    assert code == 0
    df = pd.read_csv(out)
    assert ((df.score >= 0) & (df.score <= 1)).all() and df.score.nunique() > 10  # the network's, not votes / 2
    err = capsys.readouterr().err
    assert "ranked by first, second" in err and "ranked lowest join NEG" in err
