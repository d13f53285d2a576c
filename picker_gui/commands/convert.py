"""Convert particle coordinates between file formats.

Reads any format picker-gui reads (RELION STAR in its three shapes, EMAN .box, Topaz text,
CSV, crYOLO .cbox, cryoSPARC .cs, JSON picks) and writes any it writes. The format comes from the
extension unless --from/--to say otherwise; per-micrograph formats (relion, box) read and
write folders of files. --scale multiplies coordinates (e.g. 4 for picks made on a
4x-binned grid); then --flip-y measures y from the other edge (y -> height - y), with the
height in the output's pixels, from --image-height or from the headers of the
micrographs given with --micrographs. The output is checked before anything is read: it
may not be the input (nor, for a folder, hold it), and .box output needs --box-size.

For RELION 4/5 (--to relion-list), --relion-micrographs names the micrographs STAR of the
RELION job the picks are for, so that micrograph names and coordinate paths are the ones
RELION matches and resolves from its project folder.

examples:
  picker-gui convert picks.txt autopick_out/ --to relion --scale 4
  picker-gui convert picks.star AutoPick/job099/autopick.star --to relion-list \
      --relion-micrographs CtfFind/job003/micrographs_ctf.star
  picker-gui convert boxes/ particles.star --from box --flip-y --micrographs raw/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from picker_gui.commands._common import add_relion_naming_args, check_coordinate_output, positive_float, relion_naming
from picker_gui.core.coords import micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.formats import READ_FORMATS, WRITE_FORMATS, read_coordinates, write_coordinates
from picker_gui.core.mrc_io import find_micrographs, read_header

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help="coordinate file or folder")
    parser.add_argument("output", type=Path, metavar="OUTPUT", help="file, or folder for per-micrograph formats")
    parser.add_argument("--from", dest="from_format", choices=READ_FORMATS, help="input format (default: from the extension)")
    parser.add_argument("--to", dest="to_format", choices=WRITE_FORMATS, help="output format (default: from the extension)")
    parser.add_argument("--box-size", type=positive_float, metavar="PX", help="box size in pixels (needed to write .box)")
    parser.add_argument("--scale", type=positive_float, default=1.0, metavar="F", help="multiply coordinates by F (default 1)")
    parser.add_argument("--flip-y", action="store_true", help="y -> image height - y")
    parser.add_argument("--image-height", type=positive_float, metavar="PX", help="image height in pixels, for --flip-y")
    parser.add_argument("--micrographs", nargs="+", metavar="MICROGRAPHS", help="micrographs whose headers give image heights, for --flip-y")
    parser.add_argument("--suffix", default="autopick", help="per-micrograph file suffix for RELION output (default: autopick)")
    add_relion_naming_args(parser)


def _heights(args: argparse.Namespace, micrographs: list[Path]) -> dict[str, float] | float:
    if args.image_height is not None:
        return args.image_height
    if not micrographs:
        raise UsageError("needs the image height: give --image-height or --micrographs", option="--flip-y")
    heights = {}
    for path in micrographs:
        try:
            heights[micrograph_key(path)] = read_header(path).shape[0]
        except MicrographError as exc:
            logger.warning("%s", exc)
    return heights


def main(args: argparse.Namespace) -> int:
    if not args.input.exists():
        raise UsageError(f"{args.input}: no such file or folder")
    micrographs = find_micrographs(args.micrographs) if args.flip_y and args.micrographs and args.image_height is None else []
    heights = _heights(args, micrographs) if args.flip_y else None
    # The output is settled (format, box size, folder or file, writable, not an input)
    # before any coordinate is read.
    inputs = [args.input, *(args.input.iterdir() if args.input.is_dir() else ()), *micrographs]
    fmt = check_coordinate_output(args.output, args.to_format, inputs=inputs, box_size=args.box_size,
                                  suffix=args.suffix, option="OUTPUT", format_option="--to")
    naming = relion_naming(args, fmt)
    # Scale, then flip, on the way in: the table then holds the output's coordinates and
    # is written as it is.
    table = read_coordinates(
        args.input, args.from_format, scale=args.scale, flip_y=args.flip_y, image_heights=heights
    )
    written = write_coordinates(table, args.output, fmt, box_size=args.box_size, suffix=args.suffix, **naming)
    logger.info(
        "converted %d particle(s) on %d micrograph(s) into %d file(s) under %s",
        len(table),
        len(table.micrographs()),
        len(written),
        args.output,
    )
    return 0
