"""Pick particles on micrographs with a trained model: streamed, resumable, on Dask if asked.

Each micrograph is preprocessed the way the model was trained (same pixel size after
downsampling, same normalisation), scored, and non-maximum suppression with the particle
radius gives every candidate ranked by score (a logit: 0 is even odds). By default every
candidate is kept, so that a threshold can be chosen later; --threshold keeps only those
at or above it. Coordinates, and --radius-px, are in original-micrograph pixels.

Micrographs are picked one after another (or several at once on Dask) and each one's picks
are written to disk as soon as it is done, in a folder beside the output
(.<output name>.picking: a manifest and one file per micrograph), so memory does not grow
with the number of micrographs; the output (any writable format) is written at the end.
Run the same command again after a crash, a kill or a full disk and only the micrographs
not done yet are picked; a different model or other settings start again from scratch (the
old results are kept aside). --fresh ignores earlier results.

Dask: --workers N runs N worker processes on this machine (a LocalCluster; 'auto': one
per core, torch threads shared out so they do not oversubscribe the CPU; with GPUs one
worker per GPU); by default a batch larger than four micrographs per core uses 'auto' and a
smaller one runs in this process (--workers 0 always does). --scheduler ADDRESS uses an
existing Dask cluster; --slurm starts workers as SLURM jobs (dask-jobqueue; the job script
is written beside the output to read). A worker that dies loses only the micrograph it was
picking, which is picked again. --watch keeps picking new micrographs as they appear in
the folders (once their size has stopped changing) until Ctrl-C.

The output is checked before any picking (its format, --box-size for .box, a folder for
per-micrograph formats, never one of the inputs); when no micrograph can be picked,
nothing is written.

MODEL may be the word 'general': the shipped general model picks before any label
(zero-shot suggestions; --diameter-a needed, the pixel size from --pixel-size or the first
micrograph's header). It is written beside the output's progress folder, so a rerun
resumes with the same model.

examples:
  picker-gui pick model.pt demo_data/micrographs --out picks.star
  picker-gui pick general demo_data/micrographs --diameter-a 150 --out suggestions.star
  picker-gui pick model.pt mics/ --out boxes/ --format box --box-size 200 --threshold 0
  picker-gui pick model.pt 'Movies/*.mrc' --out picks.star --workers 8
  picker-gui pick model.pt Movies/ --out picks.star --slurm --queue gpu --gpus 1 --jobs 4 --watch
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

import numpy as np

from picker_gui.commands._common import (
    BatchProgress,
    add_cluster_args,
    add_relion_naming_args,
    check_coordinate_output,
    first_interrupt_stops,
    open_cluster,
    positive_float,
    relion_naming,
    report_failures,
)
from picker_gui.core.errors import UsageError
from picker_gui.core.formats import WRITE_FORMATS
from picker_gui.core.jobs import run_job
from picker_gui.core.models import load_model
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs
from picker_gui.core.training import check_device_name

logger = logging.getLogger(__name__)

def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a model saved by 'picker-gui train', or 'general' for the shipped general model (no labels)")
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPHS", help="MRC files, folders or glob patterns")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file (or folder for per-micrograph formats)")
    parser.add_argument("--format", choices=WRITE_FORMATS, help="output format (default: from the extension)")
    parser.add_argument("--threshold", type=float, default=-np.inf, metavar="T", help="keep picks scoring at least T (default: keep all)")
    parser.add_argument("--radius-px", type=positive_float, metavar="R", help="least distance between two picks (NMS radius), in original-micrograph pixels (default: the particle radius)")
    parser.add_argument("--box-size", type=positive_float, metavar="PX", help="box edge in pixels, needed for .box output")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A", help="pixel size in Å (overrides the headers)")
    parser.add_argument("--diameter-a", type=positive_float, metavar="D", help="particle diameter in Å (only with MODEL 'general')")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--fresh", action="store_true", help="ignore the results of an earlier run and pick everything again")
    g = add_cluster_args(parser, "picking")
    g.add_argument("--watch", action="store_true", help="keep picking new micrographs as they appear, until Ctrl-C")
    g.add_argument("--watch-interval", type=positive_float, default=10.0, metavar="S", help="seconds between looks for new micrographs (default 10)")
    add_relion_naming_args(parser)


def _general_model_file(args: argparse.Namespace, paths: list[Path], state: Path) -> Path:
    """The general model for this particle and pixel size, saved where the workers read it."""
    from picker_gui.core.general import general_for
    from picker_gui.core.models import save_model
    from picker_gui.core.mrc_io import read_header

    if args.diameter_a is None:
        raise UsageError("the general model needs the particle diameter in Å", option="--diameter-a")
    pixel = args.pixel_size or read_header(paths[0]).pixel_size_a
    if not pixel:
        raise UsageError(f"{paths[0]}: no pixel size in the header; give the pixel size in Å", option="--pixel-size")
    saved = general_for(args.diameter_a, pixel)
    path = state.with_name(state.name + f".general-{saved.metadata['model_id']}.pt")
    save_model(path, saved.model, saved.metadata)
    logger.info("picking with the general model (no labels): %s", path)
    return path


def main(args: argparse.Namespace) -> int:
    from picker_gui.core import batch

    # Everything that can be wrong with the options is found before any micrograph is picked.
    paths = require_unique_micrographs(find_micrographs(args.micrographs))
    fmt = check_coordinate_output(args.out, args.format, inputs=[args.model, *paths], box_size=args.box_size,
                                  n_micrographs=None if args.watch else len(paths))
    naming = relion_naming(args, fmt)
    check_device_name(args.device)
    state = batch.state_folder(args.out)
    if str(args.model) == "general" and not args.model.exists():
        args.model = _general_model_file(args, paths, state)
    elif args.diameter_a is not None:
        raise UsageError("only with MODEL 'general': a trained model knows its particle size", option="--diameter-a")
    load_model(args.model)  # a model that cannot be read is said now, not by every worker
    if args.fresh and state.exists():
        batch.remove_state(state)
    settings = batch.BatchSettings(args.threshold, args.radius_px, args.pixel_size)

    cluster = open_cluster(args, len(paths), state.with_name(state.name + ".slurm.sh"))
    if cluster is None:
        logger.info("picking %d micrograph(s) in this process", len(paths))

    def write_output(tables):
        return batch.write_streamed(tables, args.out, fmt, box_size=args.box_size, **naming)

    stop = threading.Event()
    watcher = batch.watch_folders(args.micrographs, args.watch_interval, stop, known=paths) if args.watch else None
    progress = BatchProgress(len(paths), "pick", "picked")
    try:
        with first_interrupt_stops(stop, "Ctrl-C: stopping after the micrographs in progress; what is done is kept "
                                         "and written (run the same command again to go on)"):
            job = batch.batch_pick_job(args.model, paths, state, settings,
                                       client=cluster.client if cluster else None,
                                       workers=cluster.workers if cluster else 1,
                                       threads=cluster.threads if cluster else None, device=args.device, stop=stop,
                                       write_output=write_output, watch=watcher)
            result = run_job(job, progress.update)
    finally:
        progress.close()
        if cluster is not None:
            cluster.close()
    if not result.done and not result.skipped:
        report_failures(result.failures, len(paths), "micrographs")
        batch.remove_state(state)
        logger.error("no micrograph could be picked; nothing written to %s", args.out)
        return 1
    logger.info("wrote %d picks on %d micrograph(s) to %s%s (progress kept in %s: run again to go on, --fresh to "
                "start over)", result.n_picks, len(result.done) + len(result.skipped), args.out,
                f", {len(result.skipped)} of them picked by an earlier run" if result.skipped else "", state)
    if result.stopped:
        return 130
    return report_failures(result.failures, len(paths), "micrographs")
