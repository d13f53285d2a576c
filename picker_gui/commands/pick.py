"""Pick particles on micrographs with a trained model.

Each micrograph is preprocessed the way the model was trained (same pixel size after
downsampling, same normalisation), scored, and non-maximum suppression with the particle
radius gives every candidate ranked by score (a logit: 0 is even odds). By default every
candidate is kept, so that a threshold can be chosen later; --threshold keeps only those
at or above it. Coordinates, and --radius-px, are in original-micrograph pixels. The
output is checked before any picking (its format, --box-size for .box, a folder for
per-micrograph formats, never one of the inputs); when no micrograph can be picked,
nothing is written.

examples:
  picker-gui pick model.pt demo_data/micrographs --out picks.star
  picker-gui pick model.pt mics/ --out boxes/ --format box --box-size 200 --threshold 0
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from picker_gui.commands._common import (
    add_relion_naming_args,
    check_coordinate_output,
    positive_float,
    progress_bar,
    relion_naming,
    report_failures,
)
from picker_gui.core.cache import PreprocessCache
from picker_gui.core.formats import WRITE_FORMATS, write_coordinates
from picker_gui.core.jobs import pick_job, run_job
from picker_gui.core.models import load_model
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs
from picker_gui.core.training import check_device_name

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help="a model saved by 'picker-gui train'")
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPHS", help="MRC files, folders or glob patterns")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file (or folder for per-micrograph formats)")
    parser.add_argument("--format", choices=WRITE_FORMATS, help="output format (default: from the extension)")
    parser.add_argument("--threshold", type=float, default=-np.inf, metavar="T", help="keep picks scoring at least T (default: keep all)")
    parser.add_argument("--radius-px", type=positive_float, metavar="R", help="least distance between two picks (NMS radius), in original-micrograph pixels (default: the particle radius)")
    parser.add_argument("--box-size", type=positive_float, metavar="PX", help="box edge in pixels, needed for .box output")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A", help="pixel size in Å (overrides the headers)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_relion_naming_args(parser)


def main(args: argparse.Namespace) -> int:
    # Everything that can be wrong with the options is found before any micrograph is picked.
    paths = require_unique_micrographs(find_micrographs(args.micrographs))
    fmt = check_coordinate_output(args.out, args.format, inputs=[args.model, *paths], box_size=args.box_size,
                                  n_micrographs=len(paths))
    naming = relion_naming(args, fmt)
    check_device_name(args.device)
    saved = load_model(args.model)
    with progress_bar(len(paths), "pick") as bar:
        job = pick_job(saved, paths, threshold=args.threshold, radius_px=args.radius_px, pixel_size_a=args.pixel_size,
                       device=args.device, cache=PreprocessCache())
        result = run_job(job, lambda report: bar.update(1))
    if not result.done:
        report_failures(result.failures, len(paths), "micrographs")
        logger.error("no micrograph could be picked; nothing written to %s", args.out)
        return 1
    write_coordinates(result.picks, args.out, fmt, box_size=args.box_size, **naming)
    logger.info("wrote %d picks on %d micrograph(s) to %s (device %s)", len(result.picks), len(result.done), args.out,
                result.device)
    return report_failures(result.failures, len(paths), "micrographs")
