"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from os import PathLike
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from picker_gui.core.errors import CoordinateFormatError, UsageError
from picker_gui.core.formats import WRITE_FORMATS, detect_format
from picker_gui.core.paths import check_outputs

T = TypeVar("T")
logger = logging.getLogger("picker_gui")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; plain iteration otherwise."""
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=desc, unit="mic", disable=None, file=sys.stderr, leave=False))


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str = "") -> Iterator:
    """A tqdm bar on stderr when it is a terminal (``bar.update(1)`` per micrograph done), a
    bar that shows nothing otherwise; closed when the block ends."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="mic", disable=None, file=sys.stderr, leave=False)
    try:
        yield bar
    finally:
        bar.close()


def report_failures(failures: list[tuple[str, str]], total: int, what: str) -> int:
    """Log a batch's failures; return the exit code (0 all good, 1 some failed)."""
    if not failures:
        return 0
    for name, problem in failures:
        logger.error("%s", problem if name in problem else f"{name}: {problem}")
    if len(failures) >= total:
        logger.error("all %d %s failed (listed above)", total, what)
    else:
        logger.error("%d of %d %s failed (listed above); the others were processed", len(failures), total, what)
    return 1


# -- outputs, checked before any work -----------------------------------------------------
#: Formats that write one file per micrograph into a folder, and the extension that makes
#: the output one file instead (allowed for one micrograph).
_PER_MICROGRAPH = {"relion": ".star", "box": ".box"}
#: The usual extension of the one-file formats, for the example in a message.
_SINGLE_FILE_EXT = {"star-particles": ".star", "labels": ".star", "topaz": ".txt", "csv": ".csv"}


def check_coordinate_output(
    path: Path,
    fmt: str | None,
    *,
    inputs: Iterable[str | PathLike] = (),
    box_size: float | None = None,
    n_micrographs: int | None = None,
    suffix: str = "autopick",
    option: str = "--out",
    format_option: str = "--format",
) -> str:
    """Settle the output format of a coordinate file and prove it can be written, before any
    work: the format is known and writable, what it needs is given (``--box-size`` for
    .box), the path has the right shape (a folder for per-micrograph formats, a file for
    the others), no output is an input, and the folder is writable.

    Parameters
    ----------
    path, fmt
        The output and the format asked for (None: from the extension).
    inputs
        Every file and folder the command reads (see :func:`~picker_gui.core.paths.check_outputs`).
    n_micrographs
        How many micrographs will be written, when known: a single ``.box``/``.star`` file
        holds one.
    option, format_option
        The command's names for the output and its format, for the messages.

    Returns
    -------
    str
        The format name to pass to ``write_coordinates``.

    Raises
    ------
    UsageError
        Naming the option and what to do instead.
    """
    path = Path(path)
    if fmt is None:
        if path.is_dir() or not path.suffix:
            raise UsageError(
                f"cannot tell the format of {path} from its name; give {format_option} "
                f"({', '.join(WRITE_FORMATS)}; relion and box write one file per micrograph into a folder)",
                option=format_option,
            )
        try:
            name = detect_format(path, for_writing=True)
        except CoordinateFormatError as exc:
            raise UsageError(f"{exc.problem}; give {format_option} or another file name", option=option) from None
    else:
        name = "star-particles" if fmt == "star" else fmt
        if name not in WRITE_FORMATS:
            raise UsageError(f"cannot write {fmt!r}; writable formats: {', '.join(WRITE_FORMATS)}", option=format_option)
    if name == "box" and box_size is None:
        raise UsageError("writing .box files needs the box edge in pixels (EMAN boxes are stored by their corner)",
                         option="--box-size")
    outputs: list[tuple[Path, str]] = []
    folders: list[str] = []
    if name in _PER_MICROGRAPH:
        ext = _PER_MICROGRAPH[name]
        if path.suffix.lower() == ext and not path.is_dir():
            if n_micrographs is not None and n_micrographs > 1:
                raise UsageError(f"a {ext} file holds one micrograph but there are {n_micrographs}; give a folder "
                                 f"to get one {name} file per micrograph", option=option)
            outputs.append((path, option))
        else:
            if path.exists() and not path.is_dir():
                raise UsageError(f"{path} is a file, but format {name!r} writes one file per micrograph into a folder",
                                 option=option)
            outputs.append((path, option))
            folders.append(option)
    elif name == "relion-list":
        if path.suffix.lower() != ".star" or path.is_dir():
            if path.exists() and not path.is_dir():
                raise UsageError(f"{path} is a file but not .star; the relion-list output is a .star list file "
                                 f"(or a folder to hold one)", option=option)
            path = path / f"{suffix or 'coordinates'}.star"
        outputs.append((path, option))
        outputs.append((path.parent / "coordinates", f"{option} (its coordinates/ folder)"))
        folders.append(outputs[-1][1])
    else:
        if path.is_dir():
            raise UsageError(f"{path} is a folder, but format {name!r} writes one file; give a file name "
                             f"such as {path / ('picks' + _SINGLE_FILE_EXT.get(name, ''))}", option=option)
        outputs.append((path, option))
    check_outputs(outputs, inputs, folder_outputs=folders)
    return name


def check_model_output(path: Path, inputs: Iterable[str | PathLike] = (), option: str = "--out") -> None:
    """A model file can be written at ``path`` (not a folder, not an input, in a writable folder)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {path / 'model.pt'}", option=option)
    check_outputs([(path, option)], inputs)


# -- Ctrl-C --------------------------------------------------------------------------------
@contextlib.contextmanager
def first_interrupt_stops(stop: threading.Event, message: str) -> Iterator[threading.Event]:
    """Within the block, the first Ctrl-C (SIGINT) sets ``stop`` and logs ``message`` (the
    work is expected to end cleanly at its next step); a second one raises
    :class:`KeyboardInterrupt` at once. The previous handler is restored afterwards.

    Signal handlers belong to the main thread; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):  # noqa: ARG001 - the signal module's signature
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        logger.warning("%s", message)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def add_relion_naming_args(parser: argparse.ArgumentParser) -> None:
    """Options that make a RELION 4/5 coordinate list match a RELION project."""
    parser.add_argument("--relion-micrographs", type=Path, metavar="STAR",
                        help="for --to/--format relion-list (and star-particles): the micrographs STAR of the RELION "
                             "job the picks are for (micrographs_ctf.star, corrected_micrographs.star); micrographs are "
                             "named as RELION knows them (MotionCorr/job002/Movies/x.mrc)")
    parser.add_argument("--relion-project", type=Path, metavar="DIR",
                        help="RELION's project folder; coordinate file paths in a relion-list are written relative to it "
                             "(default: found from --relion-micrographs)")


def relion_naming(args: argparse.Namespace, fmt: str) -> dict:
    """``write_coordinates`` keyword arguments from :func:`add_relion_naming_args` options,
    read before any work (a bad STAR file is an error at once)."""
    from picker_gui.core.formats import relion_micrograph_names

    if args.relion_micrographs is None and args.relion_project is None:
        return {}
    if fmt not in ("relion-list", "star-particles"):
        raise UsageError(f"only applies to relion-list and star-particles output, not {fmt}",
                         option="--relion-micrographs" if args.relion_micrographs else "--relion-project")
    naming: dict = {}
    if args.relion_micrographs is not None:
        names, project = relion_micrograph_names(args.relion_micrographs)
        naming["micrograph_names"] = names
        if project is not None and fmt == "relion-list":
            naming["relion_project"] = project
    if args.relion_project is not None:
        if not args.relion_project.is_dir():
            raise UsageError(f"{args.relion_project} is not a folder", option="--relion-project")
        if fmt == "relion-list":
            naming["relion_project"] = args.relion_project
    return naming


def check_first_micrograph(paths: Iterable[Path], params, *, pixel_size: float | None, diameter_a: float | None,
                           option: str, need_pixel_size: bool = False):
    """:func:`picker_gui.core.jobs.check_first_micrograph` for a command: the warnings are
    logged.

    Returns
    -------
    (header, factor) or None
        The header read and the downsampling factor it gets (None when there is no pixel size
        to size from); None when no header could be read.
    """
    from picker_gui.core.jobs import check_first_micrograph as check

    first = check(list(paths), params, pixel_size_a=pixel_size, diameter_a=diameter_a, option=option,
                  need_pixel_size=need_pixel_size)
    if first is None:
        return None
    for warning in first.warnings:
        logger.warning("%s", warning)
    return first.header, first.factor


# -- scale-out on Dask (pick, preprocess) ---------------------------------------------------
#: Below this many micrographs per core, '--workers auto' runs in this process (a cluster costs seconds to start).
AUTO_DASK_PER_CORE = 4


def add_cluster_args(parser: argparse.ArgumentParser, what: str) -> argparse._ArgumentGroup:
    """--workers, --scheduler and the SLURM options; returns the group for more."""
    g = parser.add_argument_group("scale-out (Dask)")
    g.add_argument("--workers", default="auto", metavar="N", help=f"worker processes on this machine for the {what}: a "
                   "number, 'auto' (one per core for a large batch) or 0 (this process)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask scheduler (tcp://host:8786)")
    g.add_argument("--slurm", action="store_true", help="start the workers as SLURM jobs (dask-jobqueue)")
    g.add_argument("--queue", help="SLURM partition")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--cores", type=positive_int, default=4, help="cores per SLURM job (default 4)")
    g.add_argument("--memory", default="16GB", help="memory per SLURM job (default 16GB)")
    g.add_argument("--walltime", default="04:00:00", help="time limit per SLURM job (default 04:00:00)")
    g.add_argument("--jobs", type=positive_int, default=1, help="SLURM jobs (workers) to start (default 1)")
    g.add_argument("--gpus", type=int, default=0, help="GPUs per SLURM job, or on this machine (default 0)")
    return g


def local_workers(text: str, n: int) -> int:
    """How many local workers for ``n`` micrographs: 0 means this process."""
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


def open_cluster(args: argparse.Namespace, n: int, script_path: Path):
    """The Dask cluster the options ask for (its notes logged), or None: work in this process."""
    if args.scheduler and args.slurm:
        raise UsageError("give --scheduler or --slurm, not both", option="--scheduler")
    cluster = None
    if args.scheduler:
        from picker_gui.core.cluster import existing_scheduler

        cluster = existing_scheduler(args.scheduler)
    elif args.slurm:
        from picker_gui.core.cluster import SlurmOptions, slurm_cluster

        cluster = slurm_cluster(SlurmOptions(args.queue, args.account, args.cores, args.memory, args.walltime, args.jobs,
                                             args.gpus), script_path)
    else:
        n_local = local_workers(str(args.workers), n)
        if n_local > 0:
            from picker_gui.core.cluster import local_cluster

            cluster = local_cluster(n_local, gpus=args.gpus)
    if cluster is not None:
        for note in cluster.notes:
            logger.info("%s", note)
    return cluster


class BatchProgress:
    """A bar with rate and ETA on a terminal; a log line every so often otherwise."""

    def __init__(self, total: int, desc: str, verb: str) -> None:
        import time

        from tqdm import tqdm

        self.total = total
        self.verb = verb
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="mic", file=sys.stderr, leave=False, disable=not self.tty)
        self.every = max(1, min(100, total // 20 or 1))
        self.clock = time.perf_counter
        self.t0 = self.clock()
        self.n = 0

    def update(self, report) -> None:
        self.n += 1
        if report.total and report.total != self.bar.total:
            self.bar.total = self.total = report.total
        self.bar.update(1)
        if not self.tty and (self.n % self.every == 0 or report.done == report.total):
            rate = self.n / max(1e-9, self.clock() - self.t0)
            left = max(0, (self.total or 0) - report.done)
            logger.info("%s %d of %s micrographs (%.2f/s, about %.0f s left)", self.verb, report.done, self.total, rate,
                        left / rate if rate else float("nan"))

    def close(self) -> None:
        self.bar.close()
