"""Label editing and hit-testing without Qt (the window only wraps these calls)."""

from __future__ import annotations

import numpy as np

from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.labels import LabelStore


def test_add_remove_move_and_undo_information():
    store = LabelStore()
    changes = []
    store.subscribe(changes.append)
    i = store.add("m1.mrc", 100.0, 50.0)
    j = store.add("m1.mrc", 300.0, 60.0)
    assert (i, j) == (0, 1) and store.count("m1") == 2
    old = store.move("m1", PARTICLE, 0, 110.0, 55.0)
    assert old == (100.0, 50.0)
    np.testing.assert_array_equal(store.points("m1.mrc")[0], [110.0, 55.0])
    pos = store.remove("m1", PARTICLE, 0)
    assert pos == (110.0, 55.0) and store.count("m1") == 1
    store.add("m1", *pos, index=0)  # undo of the removal puts it back in place
    np.testing.assert_array_equal(store.points("m1"), [[110.0, 55.0], [300.0, 60.0]])
    assert changes == [("m1",)] * 5


def test_hit_finds_the_nearest_label_within_the_radius_of_either_kind():
    store = LabelStore()
    store.add("m", 100, 100)
    store.add("m", 130, 100)
    store.add("m", 118, 100, kind=NEGATIVE)
    hit = store.hit("m", 121, 100, radius=10)
    assert (hit.kind, hit.index) == (NEGATIVE, 0)
    hit = store.hit("m", 121, 100, radius=10, kinds=(PARTICLE,))
    assert (hit.kind, hit.index, round(hit.distance)) == (PARTICLE, 1, 9)
    assert store.hit("m", 200, 200, radius=10) is None
    assert store.hit("other", 100, 100, radius=10) is None


def test_round_trip_through_the_canonical_table_keeps_names_and_kinds():
    table = CoordinateTable.concat(
        [
            CoordinateTable.from_arrays("a.mrc", [1.0, 2.0], [3.0, 4.0]),
            CoordinateTable.from_arrays("b.mrc", [5.0], [6.0], kind=NEGATIVE),
        ]
    )
    store = LabelStore.from_table(table)
    assert store.count("a") == 2 and store.count("b", NEGATIVE) == 1
    back = store.to_table()
    assert sorted(zip(back.micrograph, back.x, back.kind)) == sorted(zip(table.micrograph, table.x, table.kind))
    assert store.total() == 2 and store.total(NEGATIVE) == 1


def test_replace_notifies_every_affected_micrograph_at_once():
    store = LabelStore()
    store.add("old.mrc", 1, 1)
    seen = []
    store.subscribe(seen.append)
    store.replace(CoordinateTable.from_arrays("new.mrc", [2.0], [2.0]))
    assert seen == [("new", "old")] and store.count("old") == 0 and store.count("new") == 1


def test_a_frozen_copy_does_not_change_with_later_edits():
    store = LabelStore()
    store.add("m", 1.0, 2.0)
    store.add("m", 3.0, 4.0)
    frozen = store.frozen()
    store.move("m", PARTICLE, 0, 50.0, 60.0)
    store.add("m", 7.0, 8.0)
    store.remove("m", PARTICLE, 1)
    store.add("n", 9.0, 9.0, kind=NEGATIVE)
    np.testing.assert_array_equal(frozen.points("m"), [[1.0, 2.0], [3.0, 4.0]])
    assert frozen.to_table() == CoordinateTable.from_arrays("m", [1.0, 3.0], [2.0, 4.0], source="manual")
