"""The export dialog (offscreen): its widgets give the request, the count follows the
threshold and the choice, rows show for the formats that need them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from picker_gui.core.coords import CoordinateTable
from picker_gui.core.exporting import ExportRequest, export_picks
from picker_gui.core.formats import WRITE_FORMATS
from picker_gui.core.picks import PickStore
from picker_gui.gui.export_dialog import ExportDialog, default_box_size

KEYS = ("mic_a", "mic_b", "mic_c")


@pytest.fixture
def store() -> PickStore:
    rng = np.random.default_rng(5)
    parts = [CoordinateTable.from_arrays(f"{k}.mrc", rng.uniform(0, 3838, 120), rng.uniform(0, 3710, 120),
                                         rng.uniform(-3, 3, 120)) for k in KEYS]
    s = PickStore(40.0)
    s.set_table(CoordinateTable.concat(parts), "m")
    return s


@pytest.fixture
def dialog(qtbot, store, tmp_path) -> ExportDialog:
    d = ExportDialog(store, 0.5, "mic_b", ["mic_c"], 80.0, tmp_path / "exports")
    qtbot.addWidget(d)
    return d


def _select_format(d: ExportDialog, fmt: str) -> None:
    d.format.setCurrentIndex(d.format.findData(fmt))


def _expected(store: PickStore, threshold: float, keys=("mic_a", "mic_b")) -> int:
    return sum(store.count(k, threshold) for k in keys)


def test_every_writable_format_is_offered_with_what_it_is_for(dialog):
    offered = [dialog.format.itemData(i) for i in range(dialog.format.count())]
    assert sorted(offered) == sorted(WRITE_FORMATS)
    _select_format(dialog, "relion")
    assert "RELION 3" in dialog.format_help.text()
    _select_format(dialog, "relion-list")
    assert "RELION 4/5" in dialog.format_help.text()
    _select_format(dialog, "star-particles")
    assert "cryoSPARC" in dialog.format_help.text()


def test_preview_follows_the_threshold_and_the_choice(dialog, store):
    assert dialog.threshold.value() == pytest.approx(0.5)
    assert f"{_expected(store, 0.5):,} particles on 2 micrographs" in dialog.preview.text()
    assert "1 skipped left out" in dialog.preview.text()
    dialog.threshold.setValue(2.0)
    assert f"{_expected(store, 2.0):,} particles" in dialog.preview.text()
    assert _expected(store, 2.0) < _expected(store, 0.5)
    dialog.leave_out_skipped.setChecked(False)
    assert f"{_expected(store, 2.0, KEYS):,} particles on 3 micrographs" in dialog.preview.text()
    dialog.this_micrograph.setChecked(True)
    assert f"{store.count('mic_b', 2.0):,} particles on 1 micrograph" in dialog.preview.text()
    dialog.threshold.setValue(50.0)
    assert "Nothing to export" in dialog.preview.text()
    assert not dialog.export_button.isEnabled()


def test_widgets_give_the_request(qtbot, dialog, tmp_path):
    _select_format(dialog, "box")
    dialog.destination.clear()
    qtbot.keyClicks(dialog.destination, str(tmp_path / "boxes"))
    dialog.threshold.setValue(-1.25)
    dialog.box_size.setValue(200)
    dialog.this_micrograph.setChecked(True)
    dialog.leave_out_skipped.setChecked(False)
    r = dialog.request()
    assert r == ExportRequest(path=tmp_path / "boxes", fmt="box", threshold=-1.25, micrographs=("mic_b",),
                              exclude_skipped=False, skipped=("mic_c",), box_size=200.0)
    _select_format(dialog, "csv")  # the user's destination stays
    assert dialog.destination.text() == str(tmp_path / "boxes")
    assert dialog.request().box_size is None


def test_destination_follows_the_format_until_edited(dialog, tmp_path):
    _select_format(dialog, "relion")
    assert Path(dialog.destination.text()) == tmp_path / "exports" / "picks_relion3"
    _select_format(dialog, "csv")
    assert Path(dialog.destination.text()).suffix == ".csv"


def test_box_size_row_only_for_box(dialog):
    for fmt in WRITE_FORMATS:
        _select_format(dialog, fmt)
        assert dialog.box_size.isVisibleTo(dialog) == (fmt == "box"), fmt
        assert dialog.relion_star.isVisibleTo(dialog) == (fmt in ("relion-list", "star-particles")), fmt
    assert dialog.box_size.value() == default_box_size(80.0) == 120.0
    assert default_box_size(None) == 256.0 and default_box_size(75.0) == 112.0


def test_this_micrograph_is_off_when_it_was_not_picked(qtbot, store, tmp_path):
    d = ExportDialog(store, 0.0, "never_picked", [], 80.0, tmp_path)
    qtbot.addWidget(d)
    assert not d.this_micrograph.isEnabled() and d.micrographs() is None
    d2 = ExportDialog(store, 0.0, "mic_c", ["mic_c"], 80.0, tmp_path)
    qtbot.addWidget(d2)
    d2.this_micrograph.setChecked(True)
    assert "marked skipped" in d2.preview.text() and not d2.export_button.isEnabled()


def test_relion_micrographs_star_names_the_micrographs(qtbot, store, tmp_path):
    rel = tmp_path / "relion"
    (rel / "MotionCorr" / "job002" / "Movies").mkdir(parents=True)
    for k in KEYS:
        (rel / "MotionCorr" / "job002" / "Movies" / f"{k}.mrc").write_bytes(b"")
    star = rel / "CtfFind" / "job003" / "micrographs_ctf.star"
    star.parent.mkdir(parents=True)
    star.write_text("data_micrographs\n\nloop_\n_rlnMicrographName #1\n"
                    "MotionCorr/job002/Movies/mic_a.mrc\nMotionCorr/job002/Movies/mic_b.mrc\n")
    d = ExportDialog(store, 0.0, None, [], 80.0, tmp_path, str(star), fmt="relion-list")
    qtbot.addWidget(d)
    assert "2 of 3 picked micrographs matched" in d.relion_status.text()
    r = d.request()
    assert r.micrograph_names["mic_a"] == "MotionCorr/job002/Movies/mic_a.mrc"
    assert r.relion_project == rel.resolve()
    assert d.relion_star_path() == str(star)
    d.relion_star.setText(str(tmp_path / "nope.star"))
    d._check_relion()
    assert "Cannot use it" in d.relion_status.text() and d.request().micrograph_names is None


def test_a_destination_of_the_wrong_shape_keeps_the_dialog_open(qtbot, dialog, tmp_path):
    _select_format(dialog, "csv")
    dialog.destination.setText(str(tmp_path))  # a folder for a one-file format
    dialog.show()
    dialog.export_button.click()
    assert dialog.isVisible() and dialog.problem.isVisibleTo(dialog)
    assert "is a folder" in dialog.problem.text()
    dialog.destination.setText(str(tmp_path / "picks.csv"))
    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        dialog.export_button.click()


def test_the_request_exports_what_the_preview_counts(dialog, store, tmp_path):
    _select_format(dialog, "relion")
    dialog.destination.setText(str(tmp_path / "out"))
    summary = export_picks(store, dialog.request())
    assert f"{summary.n_particles:,} particles on {summary.n_micrographs} micrographs" in dialog.preview.text()
    assert sorted(p.name for p in summary.files) == ["mic_a_autopick.star", "mic_b_autopick.star"]


def test_escape_cancels(qtbot, dialog):
    dialog.show()
    with qtbot.waitSignal(dialog.rejected, timeout=1000):
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
