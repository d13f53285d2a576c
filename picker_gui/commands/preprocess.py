"""Downsample and normalise micrographs for picking, as MRC files in a folder.

Micrographs may be files, folders (their .mrc files) or glob patterns. The downsampling
factor is, in order: --downsample, --target-pixel-size, or chosen from --diameter-a (the
log says which and why). Results are cached, so running again on the same files costs
little. Each output is <name>.mrc (float32, pixel size of the downsampled grid) and
preprocess.json records, for every micrograph, the factor that maps its coordinates
back to the original pixels.

Like 'pick', a large dataset runs on Dask: --workers N worker processes on this machine
(by default one per core for a batch larger than four micrographs per core), --scheduler
for an existing cluster, --slurm for SLURM jobs. Each worker writes its micrographs into
--out, which must be a folder every worker sees. Run it again after a crash and the cache
makes the micrographs done a file read each.

examples:
  picker-gui preprocess raw/*.mrc --out prep --diameter-a 150
  picker-gui preprocess Movies/ --out prep --diameter-a 150 --workers 8
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

from picker_gui.commands._common import (
    BatchProgress,
    add_cluster_args,
    check_first_micrograph,
    first_interrupt_stops,
    open_cluster,
    positive_float,
    report_failures,
)
from picker_gui.core.cache import default_cache_dir
from picker_gui.core.jobs import run_job
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs
from picker_gui.core.paths import atomic_write_text, check_outputs
from picker_gui.core.preprocess import NORMALIZATIONS, PreprocessParams

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
    add_cluster_args(parser, "preprocessing")


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
    from picker_gui.core import batch

    cache_dir = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    cluster = open_cluster(args, len(paths), args.out / ".preprocess.slurm.sh")
    logger.info("preprocessing %d micrograph(s) into %s%s", len(paths), args.out, "" if cluster else " in this process")
    stop = threading.Event()
    progress = BatchProgress(len(paths), "preprocess", "preprocessed")
    try:
        with first_interrupt_stops(stop, "Ctrl-C: stopping after the micrographs in progress; what is done is kept "
                                         "(run the same command again: the cache makes those a file read)"):
            job = batch.batch_preprocess_job(paths, params, args.out, cache_dir=cache_dir, use_cache=not args.no_cache,
                                             client=cluster.client if cluster else None,
                                             workers=cluster.workers if cluster else 1, stop=stop)
            result = run_job(job, progress.update)
    finally:
        progress.close()
        if cluster is not None:
            cluster.close()
    records, failures = result.records, result.failures
    hits = sum(r.pop("cache_hit", False) for r in records)
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
    if not args.no_cache:
        logger.info("cache: %d hit(s), %d computed (%s)", hits, len(records) - hits, cache_dir)
    logger.info("wrote %d micrograph(s) and preprocess.json to %s", len(records), args.out)
    if result.stopped:
        return 130
    return report_failures(failures, len(paths), "micrographs")
