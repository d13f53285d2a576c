"""Downsample and normalise micrographs for picking, as MRC files in a folder.

Micrographs may be files, folders (their .mrc files) or glob patterns. The downsampling
factor is, in order: --downsample, --target-pixel-size, or chosen from --diameter-a (the
log says which and why). Results are cached, so running again on the same files costs
little. Each output is <name>.mrc (float32, pixel size of the downsampled grid) and
preprocess.json records, for every micrograph, the factor that maps its coordinates
back to the original pixels.

example:
  picker-gui preprocess raw/*.mrc --out prep --diameter-a 150
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from picker_gui.commands._common import check_first_micrograph, positive_float, progress, report_failures
from picker_gui.core.cache import PreprocessCache
from picker_gui.core.errors import MicrographError
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs, write_mrc
from picker_gui.core.paths import atomic_write_text, check_outputs
from picker_gui.core.preprocess import NORMALIZATIONS, PreprocessParams, preprocess_file

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPHS", help="MRC files, folders or glob patterns")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the preprocessed micrographs")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A", help="pixel size in Å (overrides the headers)")
    parser.add_argument("--diameter-a", type=positive_float, metavar="D", help="particle diameter in Å (sets the default downsampling)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--downsample", type=positive_float, metavar="F", help="downsampling factor (>= 1)")
    size.add_argument("--target-pixel-size", type=positive_float, metavar="A", help="downsample to this pixel size in Å")
    parser.add_argument("--normalization", choices=NORMALIZATIONS, default="gmm", help="per-micrograph normalisation (default: gmm, as Topaz)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="preprocessing cache (default: the user cache folder)")
    parser.add_argument("--no-cache", action="store_true", help="always recompute")


def main(args: argparse.Namespace) -> int:
    params = PreprocessParams(
        downsample=args.downsample,
        target_pixel_size_a=args.target_pixel_size,
        diameter_a=args.diameter_a,
        normalization=args.normalization,
        pixel_size_a=args.pixel_size,
    )
    paths = require_unique_micrographs(find_micrographs(args.micrographs))
    # Before any work: the output folder may not hold the inputs (the results would replace
    # them, or be read as inputs next time) and must be writable.
    check_outputs([(args.out, "--out")], paths, folder_outputs=["--out"])
    option = "--downsample" if args.downsample else "--target-pixel-size" if args.target_pixel_size else "--diameter-a"
    check_first_micrograph(paths, params, pixel_size=args.pixel_size, diameter_a=args.diameter_a, option=option)
    cache = None if args.no_cache else PreprocessCache(args.cache_dir)
    records, failures = [], []
    logger.info("preprocessing %d micrograph(s) into %s", len(paths), args.out)
    for path in progress(paths, total=len(paths), desc="preprocess"):
        try:
            result = preprocess_file(path, params, cache)
        except MicrographError as exc:
            failures.append((str(path), str(exc)))
            continue
        except ValueError as exc:  # e.g. sizing from a diameter with no pixel size anywhere
            failures.append((str(path), f"{path}: {exc}"))
            continue
        out = write_mrc(args.out / f"{path.stem}.mrc", result.image, result.pixel_size_a)
        records.append(
            {
                "micrograph": str(path),
                "output": out.name,
                "original_shape": list(result.original_shape),
                "shape": list(result.image.shape),
                "scale_y": result.scale[0],
                "scale_x": result.scale[1],
                "pixel_size_a": result.pixel_size_a,
                "normalization": vars(result.normalization),
                "notes": list(result.notes),
            }
        )
    if records:
        first = records[0]
        logger.info(
            "downsampled x%.3g: %s -> %s px%s",
            first["scale_x"],
            "x".join(map(str, first["original_shape"][::-1])),
            "x".join(map(str, first["shape"][::-1])),
            f", {first['pixel_size_a']:.4g} Å/px" if first["pixel_size_a"] else "",
        )
    summary = {"params": params.to_dict(), "micrographs": records, "failed": [dict(file=f, error=e) for f, e in failures]}
    atomic_write_text(args.out / "preprocess.json", json.dumps(summary, indent=1))
    if cache is not None:
        logger.info("cache: %d hit(s), %d computed (%s)", cache.hits, cache.misses, cache.folder)
    logger.info("wrote %d micrograph(s) and preprocess.json to %s", len(records), args.out)
    return report_failures(failures, len(paths), "micrographs")
