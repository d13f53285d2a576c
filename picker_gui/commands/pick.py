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

examples:
  picker-gui pick model.pt demo_data/micrographs --out picks.star
  picker-gui pick model.pt mics/ --out boxes/ --format box --box-size 200 --threshold 0
  picker-gui pick model.pt 'Movies/*.mrc' --out picks.star --workers 8
  picker-gui pick model.pt Movies/ --out picks.star --slurm --queue gpu --gpus 1 --jobs 4 --watch
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np

from picker_gui.commands._common import (
    add_relion_naming_args,
    check_coordinate_output,
    first_interrupt_stops,
    positive_float,
    positive_int,
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

#: Below this many micrographs per core, 'auto' picks in this process (a cluster costs seconds to start).
AUTO_DASK_PER_CORE = 4


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
    parser.add_argument("--fresh", action="store_true", help="ignore the results of an earlier run and pick everything again")
    g = parser.add_argument_group("scale-out (Dask)")
    g.add_argument("--workers", default="auto", metavar="N", help="worker processes on this machine: a number, 'auto' (one per core for a large batch) or 0 (this process)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask scheduler (tcp://host:8786)")
    g.add_argument("--slurm", action="store_true", help="start the workers as SLURM jobs (dask-jobqueue)")
    g.add_argument("--queue", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--cores", type=positive_int, default=4, help="cores per SLURM job (default 4)")
    g.add_argument("--memory", default="16GB", help="memory per SLURM job (default 16GB)")
    g.add_argument("--walltime", default="04:00:00", help="time limit per SLURM job (default 04:00:00)")
    g.add_argument("--jobs", type=positive_int, default=1, help="SLURM jobs (workers) to start (default 1)")
    g.add_argument("--gpus", type=int, default=0, help="GPUs per SLURM job, or on this machine (default 0)")
    g.add_argument("--watch", action="store_true", help="keep picking new micrographs as they appear, until Ctrl-C")
    g.add_argument("--watch-interval", type=positive_float, default=10.0, metavar="S", help="seconds between looks for new micrographs (default 10)")
    add_relion_naming_args(parser)


def _workers(text: str, n: int) -> int:
    """How many local workers: 0 means this process."""
    from picker_gui.core.cluster import cores

    if text == "auto":
        return cores() if n >= AUTO_DASK_PER_CORE * cores() and cores() > 1 else 0
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"must be a number or 'auto', got {text!r}", option="--workers") from None
    if value < 0:
        raise UsageError(f"must be 0 or more, got {value}", option="--workers")
    return value


class _Progress:
    """A bar with rate and ETA on a terminal; a log line every so often otherwise."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.total = total
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc="pick", unit="mic", file=sys.stderr, leave=False, disable=not self.tty)
        self.every = max(1, min(100, total // 20 or 1))
        self.t0 = time.perf_counter()
        self.n = 0

    def update(self, report) -> None:
        self.n += 1
        if report.total and report.total != self.bar.total:
            self.bar.total = self.total = report.total
        self.bar.update(1)
        if not self.tty and (self.n % self.every == 0 or report.done == report.total):
            rate = self.n / max(1e-9, time.perf_counter() - self.t0)
            left = max(0, (self.total or 0) - report.done)
            logger.info("picked %d of %s micrographs (%.2f/s, about %.0f s left)", report.done, self.total, rate,
                        left / rate if rate else float("nan"))

    def close(self) -> None:
        self.bar.close()


def main(args: argparse.Namespace) -> int:
    from picker_gui.core import batch

    # Everything that can be wrong with the options is found before any micrograph is picked.
    paths = require_unique_micrographs(find_micrographs(args.micrographs))
    fmt = check_coordinate_output(args.out, args.format, inputs=[args.model, *paths], box_size=args.box_size,
                                  n_micrographs=None if args.watch else len(paths))
    naming = relion_naming(args, fmt)
    check_device_name(args.device)
    load_model(args.model)  # a model that cannot be read is said now, not by every worker
    if sum(bool(x) for x in (args.scheduler, args.slurm)) > 1:
        raise UsageError("give --scheduler or --slurm, not both", option="--scheduler")
    n_local = 0 if (args.scheduler or args.slurm) else _workers(str(args.workers), len(paths))
    state = batch.state_folder(args.out)
    if args.fresh and state.exists():
        batch.remove_state(state)
    settings = batch.BatchSettings(args.threshold, args.radius_px, args.pixel_size)

    cluster = None
    if args.scheduler:
        from picker_gui.core.cluster import existing_scheduler

        cluster = existing_scheduler(args.scheduler)
    elif args.slurm:
        from picker_gui.core.cluster import SlurmOptions, slurm_cluster

        cluster = slurm_cluster(SlurmOptions(args.queue, args.account, args.cores, args.memory, args.walltime, args.jobs,
                                             args.gpus), state.with_name(state.name + ".slurm.sh"))
    elif n_local > 0:
        from picker_gui.core.cluster import local_cluster

        cluster = local_cluster(n_local, gpus=args.gpus)
    if cluster is not None:
        for note in cluster.notes:
            logger.info("%s", note)
    else:
        logger.info("picking %d micrograph(s) in this process", len(paths))

    def write_output(tables):
        return batch.write_streamed(tables, args.out, fmt, box_size=args.box_size, **naming)

    stop = threading.Event()
    watcher = batch.watch_folders(args.micrographs, args.watch_interval, stop, known=paths) if args.watch else None
    progress = _Progress(len(paths))
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
