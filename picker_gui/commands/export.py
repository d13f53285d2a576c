"""Export a project's picks as the window shows them, in any coordinate format.

Reads the project (read-only: no lock is taken), its picks (picks.star: every candidate with
its score) and its settings: the threshold, the least distance between picks and the
micrographs marked skipped. The picks written are those the window shows at that threshold
and distance, through the same code as the window's export, so both give the same
bytes. PROJECT is a project folder, or the folder of micrographs it belongs to.

--threshold and --min-distance-px override the project's (which are 0 when never set).
Skipped micrographs are left out unless --include-skipped. For the per-micrograph formats
(relion, box: a folder) every exported micrograph gets a file, an empty one when it has no
pick at or above the threshold (RELION then extracts nothing from it instead of an older
file's picks). For relion-list the RELION micrographs STAR remembered by the project is used
unless --relion-micrographs gives another. The output is checked before anything is
written: never one of the project's files, nor its folder for a per-micrograph format.

examples:
  picker-gui export mics/picker-gui --out particles.star --format star-particles
  picker-gui export mics/ --out AutoPick/job099/ --format relion --threshold -1
  picker-gui export mics/ --out AutoPick/job099/autopick.star --format relion-list \\
      --relion-micrographs CtfFind/job003/micrographs_ctf.star
  picker-gui export mics/ --out boxes/ --format box --box-size 256 --micrographs mic_001 mic_002
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from picker_gui.commands._common import add_relion_naming_args, check_coordinate_output, positive_float, relion_naming
from picker_gui.core.errors import PickerError, UsageError
from picker_gui.core.formats import WRITE_FORMATS

logger = logging.getLogger(__name__)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, metavar="PROJECT", help="the project folder (or its micrograph folder)")
    parser.add_argument("--out", type=Path, required=True, metavar="PATH",
                        help="file, or folder for the per-micrograph formats (relion, box)")
    parser.add_argument("--format", choices=WRITE_FORMATS, help="output format (default: from the extension)")
    parser.add_argument("--threshold", type=_finite, metavar="T",
                        help="export picks scoring at least T (default: the project's threshold)")
    parser.add_argument("--min-distance-px", type=_non_negative, metavar="D",
                        help="least distance between picks, in original pixels (default: the project's)")
    parser.add_argument("--micrographs", nargs="+", metavar="KEY",
                        help="only these micrographs (names or keys; default: every picked micrograph)")
    parser.add_argument("--include-skipped", action="store_true",
                        help="also export the micrographs marked skipped in the project")
    parser.add_argument("--box-size", type=positive_float, metavar="PX", help="box edge in pixels (needed for box)")
    parser.add_argument("--suffix", default="autopick",
                        help="RELION per-micrograph file suffix: <micrograph>_<suffix>.star (default: autopick)")
    add_relion_naming_args(parser)


def _open_project(path: Path):
    from picker_gui.core.project import Project, resolve_target

    try:
        target = resolve_target(path)
    except PickerError as exc:
        raise UsageError(str(exc), option="PROJECT") from None
    if not target.exists:
        raise UsageError(f"{path}: no picker-gui project here (open the folder in the window first)",
                         option="PROJECT")
    return Project.open(target.project)


def main(args: argparse.Namespace) -> int:
    from picker_gui.core.exporting import ExportRequest, choose_micrographs, export_picks, project_inputs
    from picker_gui.core.project import PICKS_FILE

    project = _open_project(args.project)
    for note in project.notes:
        logger.warning("%s", note)
    picks, settings = project.picks, project.settings
    if not len(picks):
        raise UsageError(f"{project.folder}: the project has no picks ({PICKS_FILE} is missing or empty); "
                         f"pick in the window first", option="PROJECT")
    threshold = args.threshold if args.threshold is not None else (
        settings.threshold if settings.threshold is not None else 0.0)
    min_distance = args.min_distance_px if args.min_distance_px is not None else (settings.min_distance_px or 0.0)
    choice = choose_micrographs(picks.micrographs(), args.micrographs, settings.skipped,
                                exclude_skipped=not args.include_skipped)
    if choice.unknown:
        picked = picks.micrographs()
        listed = ", ".join(picked[:5]) + (", ..." if len(picked) > 5 else "")
        raise UsageError(f"not picked in this project: {', '.join(choice.unknown[:5])} (picked: {listed})",
                         option="--micrographs")
    inputs = project_inputs(project)
    if args.relion_micrographs is not None:
        inputs.append(args.relion_micrographs)
    fmt = check_coordinate_output(args.out, args.format, inputs=inputs, box_size=args.box_size,
                                  n_micrographs=len(choice.chosen), suffix=args.suffix, option="--out",
                                  format_option="--format")
    if (fmt == "relion-list" and args.relion_micrographs is None and args.relion_project is None
            and settings.relion_micrographs):
        remembered = Path(settings.relion_micrographs)
        if remembered.is_file():
            logger.info("RELION micrograph names from %s (remembered in the project)", remembered)
            args.relion_micrographs = remembered
        else:
            logger.warning("%s (the RELION micrographs STAR remembered in the project) is gone; bare micrograph "
                           "names are written", remembered)
    naming = relion_naming(args, fmt)
    request = ExportRequest(path=args.out, fmt=fmt, threshold=threshold, micrographs=args.micrographs,
                            exclude_skipped=not args.include_skipped, skipped=tuple(settings.skipped),
                            box_size=args.box_size, suffix=args.suffix, **naming)
    summary = export_picks(picks, request, min_distance_px=min_distance, inputs=inputs)
    print(summary.describe())
    return 0
