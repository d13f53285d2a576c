"""Run the real Topaz (topaz-em 0.3.20) from our environment, for side-by-side benchmarks.

Topaz lives in its own virtual environment (made by ``benchmarks/topaz/setup_topaz.sh``) and is
called through ``subprocess``; this module needs only the standard library, numpy and pandas.
Both pickers are meant to see identical pixels: give Topaz the already downsampled and
normalised float32 MRC files written by our preprocessing, and particle coordinates on that
same grid.

Coordinates follow Topaz's text format: ``image_name x_coord y_coord [score]``, x = column and
y = row of the MRC array, origin at the first stored pixel, ``image_name`` = file name without
``.mrc``.

Topaz 0.3.20 behaviours this module works around (see README.md in this folder):

* ``train -n N`` computes pi with ``stats.pixels_given_radius``, which counts a 3-D ball of
  (2r+1) slices for 2-D images, so pi comes out (2r+1)x too high. We always pass ``--pi``.
* The same function gives the labelled fraction ``p_observed`` that GE-binomial subtracts from
  pi (``pi_unlabeled = pi - p_observed``), so even an explicit ``--pi`` is lowered by (2r+1)x the
  true labelled fraction, and Topaz falls back to PN (a warning in its log) when that makes it
  <= 0: with typical settings (r=3, half the particles labelled) it always does. With
  ``compensate_p_observed=True`` (default) we add the excess back, so Topaz trains with
  ``pi_unlabeled = pi - true p_observed`` as its docs intend.
* ``train`` initialises resnet8/resnet16 with 32/64 units from its bundled pretrained detector
  unless ``--no-pretrained`` is given; we pass it so Topaz learns from scratch like our picker.
* ``train`` has no seed option and its crop sampler uses ``np.random.default_rng()`` (OS
  entropy). With ``seed`` set we start Topaz through a tiny bootstrap that seeds python, numpy
  and torch and derives every unseeded ``default_rng()`` from one ``SeedSequence``; this makes
  runs with ``num_workers=0`` repeatable without changing what Topaz computes.
* Test masks truncate float coordinates while training rounds them, and a test coordinate
  outside the image crashes Topaz with an IndexError, so we write rounded integer coordinates
  and drop (with a warning) any outside their micrograph.
* Image lists are whitespace-separated and only files ending exactly in ``.mrc`` are read as
  MRC, so paths with whitespace or other extensions are rejected up front.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import struct
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where ``setup_topaz.sh`` puts the Topaz environment by default.
DEFAULT_VENV = REPO_ROOT / ".venv-topaz"
#: Environment variable that overrides :data:`DEFAULT_VENV`.
VENV_ENV_VAR = "PICKER_TOPAZ_VENV"

PathLike = Union[str, os.PathLike]
ParticlesArg = Union[pd.DataFrame, PathLike]

_COORD_COLUMNS = ["image_name", "x_coord", "y_coord"]
_POLL_S = 0.1
_LOG_TAIL_LINES = 40

# Seeds python/numpy/torch, derives unseeded np.random.default_rng() calls from one
# SeedSequence (Topaz's crop sampler uses them), then runs Topaz's own console entry point.
_SEEDED_BOOTSTRAP = """\
import random, sys
seed = int(sys.argv.pop(1))
import numpy as np, torch
random.seed(seed)
np.random.seed(seed)
torch.manual_seed(seed)
_sequence = np.random.SeedSequence(seed)
_default_rng = np.random.default_rng
def _seeded_default_rng(seed=None):
    return _default_rng(_sequence.spawn(1)[0] if seed is None else seed)
np.random.default_rng = _seeded_default_rng
from topaz.main import main
sys.argv[0] = "topaz"
sys.exit(main())
"""


class TopazError(RuntimeError):
    """Topaz is missing, was given unusable input, or exited with an error."""


@dataclass
class TopazRun:
    """What one ``topaz train`` produced and cost.

    Attributes
    ----------
    out_dir : Path
        Folder holding the inputs written for Topaz, its log, metrics and models.
    command : list of str
        The exact command line that was run.
    wall_time_s : float
        Wall-clock time of the Topaz process (start-up and data loading included).
    peak_rss_bytes : int or None
        Peak resident memory of Topaz's process tree; see ``rss_method``.
    rss_method : str
        ``"psutil"`` or ``"proc"`` (sum over the process tree, polled every 0.1 s) or
        ``"getrusage"`` (largest single finished child of this Python process, ever).
    log_path : Path
        Everything Topaz printed (stdout and stderr), each line prefixed with the seconds since
        the start; see :func:`read_timed_log`.
    metrics_path : Path
        Topaz's tab-separated train/test curve (``-o``).
    metrics : pandas.DataFrame
        That curve: one ``split == "train"`` row per minibatch and, when a test set was given,
        one ``split == "test"`` row per epoch (columns ``epoch, iter, split, loss, ge_penalty,
        precision, adjusted_precision, tpr, fpr, auprc``; ``auprc`` only on test rows), plus
        ``elapsed_s``: seconds after the start at which Topaz wrote the row (±0.1 s).
    model_paths : list of Path
        Models saved after each epoch (``<out_dir>/model_epochNN.sav``), in epoch order.
    pi : float
        The pi requested (fraction of all pixels that are positive).
    pi_passed : float
        The value given to ``--pi`` (differs from ``pi`` when compensating the p_observed bug).
    p_observed_true : float
        Labelled positive pixels / all training pixels, with the 2-D disk Topaz really labels.
    p_observed_topaz : float
        The same fraction as Topaz 0.3.20 computes it ((2r+1)x too large).
    method_used : str
        The objective Topaz actually used (it switches to PN when pi <= its p_observed).
    num_train_particles, num_test_particles : int
        Labels written for Topaz after rounding and dropping out-of-bounds ones.
    settings : dict
        The training settings passed to :func:`topaz_train`, for the record.
    """

    out_dir: Path
    command: list[str]
    wall_time_s: float
    peak_rss_bytes: int | None
    rss_method: str
    log_path: Path
    metrics_path: Path
    metrics: pd.DataFrame
    model_paths: list[Path]
    pi: float
    pi_passed: float
    p_observed_true: float
    p_observed_topaz: float
    method_used: str
    num_train_particles: int
    num_test_particles: int
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def final_model(self) -> Path:
        """The model saved after the last epoch."""
        if not self.model_paths:
            raise TopazError(f"Topaz saved no model in {self.out_dir}")
        return self.model_paths[-1]

    @property
    def overall_minibatches_per_s(self) -> float:
        """Training minibatches per second of the whole run (start-up, tests, saving included)."""
        n = int((self.metrics["split"] == "train").sum())
        return n / self.wall_time_s if self.wall_time_s > 0 else float("nan")

    @property
    def train_minibatches_per_s(self) -> float:
        """Minibatches per second while training proper: within each epoch, from the first
        training row to the last (rows are time-stamped as they appear, to about 0.1 s)."""
        train = self.metrics[self.metrics["split"] == "train"]
        steps, seconds = 0, 0.0
        for _, rows in train.groupby("epoch"):
            if len(rows) > 1:
                steps += len(rows) - 1
                seconds += float(rows["elapsed_s"].iloc[-1] - rows["elapsed_s"].iloc[0])
        return steps / seconds if seconds > 0 else float("nan")

    def epoch_table(self) -> pd.DataFrame:
        """One row per epoch: mean training metrics, then test metrics prefixed ``test_``."""
        skip = ("epoch", "iter", "split", "auprc", "elapsed_s")
        numeric = [c for c in self.metrics.columns if c not in skip]
        train = self.metrics[self.metrics["split"] == "train"]
        table = train.groupby("epoch")[numeric].mean()
        table.insert(0, "minibatches", train.groupby("epoch").size())
        table.insert(1, "elapsed_s", train.groupby("epoch")["elapsed_s"].max())
        test = self.metrics[self.metrics["split"] == "test"].set_index("epoch")
        if len(test):
            test_cols = [c for c in numeric + ["auprc"] if c in test and test[c].notna().any()]
            table = table.join(test[test_cols].add_prefix("test_"))
        return table.reset_index()


# --------------------------------------------------------------------------- locating Topaz


def find_topaz(venv_dir: PathLike | None = None) -> Path:
    """Return the ``topaz`` executable of the Topaz virtual environment.

    Parameters
    ----------
    venv_dir : path, optional
        The environment made by ``setup_topaz.sh``. Defaults to ``$PICKER_TOPAZ_VENV`` or
        ``.venv-topaz`` at the repository root.

    Raises
    ------
    TopazError
        When the executable is not there, with the command that creates it.
    """
    if venv_dir is None:
        venv_dir = os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV
    exe = Path(venv_dir).expanduser().resolve() / "bin" / "topaz"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise TopazError(
            f"Topaz executable not found at {exe}. Create the environment with:\n"
            f"    bash {REPO_ROOT / 'benchmarks' / 'topaz' / 'setup_topaz.sh'} {Path(venv_dir)}"
        )
    return exe


# --------------------------------------------------------------------------- pi helpers


def disk_pixels(radius: int) -> int:
    """Pixels Topaz marks positive around a label: the integer disk ``dx² + dy² <= r²``."""
    r = int(radius)
    grid = np.arange(-r, r + 1)
    return int(((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).sum())


def topaz_pixels_given_radius(radius: int) -> int:
    """What Topaz 0.3.20's ``stats.pixels_given_radius(radius, dims=2)`` returns: (2r+1) disks."""
    return disk_pixels(radius) * (2 * int(radius) + 1)


def pi_from_particles_per_micrograph(
    particles_per_micrograph: float, radius: int, shapes: Sequence[tuple[int, int]]
) -> float:
    """pi as Topaz defines it (positive pixels / all pixels) for an expected particle count.

    This is what ``topaz train -n`` is documented to compute, with the correct 2-D disk.
    """
    total = sum(int(h) * int(w) for h, w in shapes)
    return particles_per_micrograph * len(shapes) * disk_pixels(radius) / total


# --------------------------------------------------------------------------- inputs


def mrc_shape(path: PathLike) -> tuple[int, int]:
    """``(rows, cols)`` of a 2-D float32 MRC file that Topaz can read, from its header.

    Raises
    ------
    TopazError
        For anything Topaz 0.3.20 would misread: an extension other than ``.mrc``, whitespace
        in the path, more than one section, a mode other than 2 (float32), or non-native byte
        order (Topaz ignores the machine stamp).
    """
    path = Path(path)
    if path.suffix != ".mrc":
        raise TopazError(f"{path}: Topaz only reads MRC files named *.mrc (it sends others to PIL)")
    if re.search(r"\s", str(path.resolve())):
        raise TopazError(f"{path}: Topaz splits its image lists on whitespace; use a path without spaces")
    with open(path, "rb") as f:
        header = f.read(1024)
    if len(header) < 1024:
        raise TopazError(f"{path}: shorter than an MRC header")
    nx, ny, nz, mode = struct.unpack("=4i", header[:16])
    if not (0 < nx < 1 << 20 and 0 < ny < 1 << 20):
        raise TopazError(f"{path}: header dimensions {nx}x{ny} are not plausible (byte order?)")
    if nz != 1:
        raise TopazError(f"{path}: {nz} sections; Topaz 2-D picking needs a single image")
    if mode != 2:
        raise TopazError(f"{path}: MRC mode {mode}; give Topaz the normalised float32 (mode 2) images")
    return ny, nx


def _image_table(images: Sequence[PathLike]) -> pd.DataFrame:
    """``image_name, path, rows, cols`` for each image, checked as Topaz will read it."""
    rows = []
    for image in images:
        path = Path(image).resolve()
        h, w = mrc_shape(path)
        rows.append({"image_name": path.stem, "path": str(path), "rows": h, "cols": w})
    table = pd.DataFrame(rows, columns=["image_name", "path", "rows", "cols"])
    if table.empty:
        raise TopazError("no images given")
    duplicated = table["image_name"][table["image_name"].duplicated()].unique().tolist()
    if duplicated:
        raise TopazError(f"image names must be unique (Topaz matches labels by name): {duplicated}")
    return table


def read_particles(particles: ParticlesArg) -> pd.DataFrame:
    """Load a Topaz text table (tab-separated, header ``image_name x_coord y_coord ...``)."""
    if isinstance(particles, pd.DataFrame):
        table = particles.copy()
    else:
        table = pd.read_csv(particles, sep="\t", dtype={"image_name": str})
    missing = [c for c in _COORD_COLUMNS if c not in table.columns]
    if missing:
        raise TopazError(f"particle table lacks column(s) {missing}; expected {_COORD_COLUMNS}")
    return table


def _prepare_particles(particles: ParticlesArg, images: pd.DataFrame, split: str) -> pd.DataFrame:
    """Round coordinates, keep labels of the given images that lie inside them."""
    table = read_particles(particles)[_COORD_COLUMNS].copy()
    table["image_name"] = table["image_name"].astype(str)
    known = table["image_name"].isin(images["image_name"])
    if (~known).any():
        logger.warning(
            "%s: %d label(s) on micrographs not in the image list were dropped", split, int((~known).sum())
        )
    table = table[known].copy()
    table["x_coord"] = np.rint(table["x_coord"].to_numpy(float)).astype(np.int64)
    table["y_coord"] = np.rint(table["y_coord"].to_numpy(float)).astype(np.int64)
    size = images.set_index("image_name").loc[table["image_name"], ["rows", "cols"]].to_numpy()
    inside = (
        (table["x_coord"].to_numpy() >= 0)
        & (table["y_coord"].to_numpy() >= 0)
        & (table["x_coord"].to_numpy() < size[:, 1])
        & (table["y_coord"].to_numpy() < size[:, 0])
    )
    if not inside.all():
        logger.warning("%s: %d label(s) outside their micrograph were dropped", split, int((~inside).sum()))
    table = table[inside].reset_index(drop=True)
    if table.empty:
        raise TopazError(f"no {split} labels fall on the given {split} images")
    return table


def _write_inputs(
    images: pd.DataFrame, particles: pd.DataFrame, out_dir: Path, split: str
) -> tuple[Path, Path]:
    image_list = out_dir / f"{split}_images.txt"
    images[["image_name", "path"]].to_csv(image_list, sep="\t", index=False)
    targets = out_dir / f"{split}_particles.txt"  # .txt: Topaz detects the "coord" format by extension
    particles.to_csv(targets, sep="\t", index=False)
    return image_list, targets


# --------------------------------------------------------------------------- running


@dataclass
class _ProcessStats:
    wall_time_s: float
    peak_rss_bytes: int | None
    rss_method: str
    #: Seconds after the start at which each line of the watched file was seen (±0.1 s).
    watched_line_times: list[float]


class _Monitor:
    """Polls, in a thread, the resident memory of a process tree and the growth of one file."""

    def __init__(self, pid: int, start: float, watch: Path | None = None) -> None:
        self.pid = pid
        self.start = start
        self.watch = watch
        self.peak: int = 0
        self.line_times: list[float] = []
        self._offset = 0
        self._stop = threading.Event()
        try:
            import psutil  # optional in our environment

            self._psutil = psutil
            self.method = "psutil"
        except ImportError:
            self._psutil = None
            self.method = "proc" if Path("/proc/self/statm").exists() else "getrusage"
        self._page = os.sysconf("SC_PAGE_SIZE") if self.method == "proc" else 0
        self._thread = threading.Thread(target=self._run, name="topaz-monitor", daemon=True)

    def __enter__(self) -> _Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll_file()  # lines written just before the exit

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.method != "getrusage":
                try:
                    rss = self._tree_rss_psutil() if self._psutil else self._tree_rss_proc()
                except (OSError, ValueError):
                    rss = 0
                self.peak = max(self.peak, rss)
            self._poll_file()
            self._stop.wait(_POLL_S)

    def _poll_file(self) -> None:
        if self.watch is None:
            return
        try:
            size = self.watch.stat().st_size
            if size < self._offset:  # truncated and rewritten: start over
                self._offset, self.line_times = 0, []
            if size <= self._offset:
                return
            with open(self.watch, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(size - self._offset)
        except OSError:
            return
        # Count complete lines only; a partial last line is picked up by the next poll.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        now = time.perf_counter() - self.start
        self.line_times.extend([now] * complete.count(b"\n"))

    def _tree_rss_psutil(self) -> int:
        psutil = self._psutil
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _tree_rss_proc(self) -> int:
        parents: dict[int, int] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        tree, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
            tree.update(children)
            frontier.extend(children)
        total = 0
        for pid in tree:
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self._page
            except (OSError, IndexError):
                pass
        return total


def _log_tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    with open(log_path, errors="replace") as f:
        return "".join(deque(f, maxlen=lines))


def format_command(command: Sequence[str]) -> str:
    """The command line for logs, with the seeding bootstrap's source abbreviated."""
    return subprocess.list2cmdline([("<seed bootstrap>" if a == _SEEDED_BOOTSTRAP else a) for a in command])


def _run_logged(
    command: list[str], log_path: Path, what: str, threads: int, watch: Path | None = None
) -> _ProcessStats:
    """Run ``command`` with every output line written, time-stamped, to ``log_path``.

    Each line is prefixed with the seconds since the start (``[   12.34 s] ``), see
    :func:`read_timed_log`. ``watch`` names a file the command writes line by line; the time
    each of its lines appears is recorded too.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    # Our own virtual environment must not leak into Topaz's interpreter.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    logger.info("running: %s", format_command(command))
    with open(log_path, "w") as log:
        log.write(f"$ {format_command(command)}\n")
        start = time.perf_counter()
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True, errors="replace", bufsize=1,
        ) as proc, _Monitor(proc.pid, start, watch) as monitor:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(f"[{time.perf_counter() - start:9.2f} s] {line}")
                log.flush()
            returncode = proc.wait()
        wall = time.perf_counter() - start
    peak: int | None = monitor.peak or None
    if monitor.method == "getrusage":
        # ru_maxrss is in KiB on Linux: the largest finished child of this process so far.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if returncode != 0:
        raise TopazError(
            f"{what} failed with exit code {returncode}; full log: {log_path}\n"
            f"--- last lines ---\n{_log_tail(log_path)}"
        )
    logger.info("finished in %.1f s, peak RSS %s", wall, f"{peak / 2**20:.0f} MiB" if peak else "unknown")
    return _ProcessStats(wall, peak, monitor.method, monitor.line_times)


def read_timed_log(log_path: PathLike) -> pd.DataFrame:
    """The lines of a runner log as ``elapsed_s, text`` (the command line itself is skipped)."""
    rows = []
    pattern = re.compile(r"^\[\s*([0-9.]+) s\] (.*)$")
    with open(log_path, errors="replace") as f:
        for line in f:
            match = pattern.match(line.rstrip("\n"))
            if match:
                rows.append((float(match.group(1)), match.group(2)))
    return pd.DataFrame(rows, columns=["elapsed_s", "text"])


def extract_timings(log_path: PathLike) -> pd.DataFrame:
    """Per-micrograph times of a ``topaz extract`` run, from its log.

    Returns ``image_name, num_picks, elapsed_s, seconds``: ``seconds`` is the time between this
    micrograph's "Extracted" line and the previous one (for the first micrograph: since
    "Beginning extraction", so it includes loading the model), i.e. reading, scoring and NMS of
    that micrograph without Python and torch start-up.
    """
    log = read_timed_log(log_path)
    begin = log[log["text"].str.contains("Beginning extraction", regex=False)]
    done = log["text"].str.extract(r"^# Extracted (\d+) particles from (.*)$")
    table = pd.DataFrame(
        {"image_name": done[1], "num_picks": pd.to_numeric(done[0]), "elapsed_s": log["elapsed_s"]}
    ).dropna(subset=["image_name"])
    table["num_picks"] = table["num_picks"].astype(int)
    previous = table["elapsed_s"].shift(1)
    if len(begin):
        previous.iloc[:1] = begin["elapsed_s"].iloc[0]
    table["seconds"] = table["elapsed_s"] - previous
    return table.reset_index(drop=True)


def _topaz_command(topaz: Path, subcommand: str, seed: int | None) -> list[str]:
    if seed is None:
        return [str(topaz), subcommand]
    # The venv's interpreter sits next to its console script.
    return [str(topaz.parent / "python"), "-c", _SEEDED_BOOTSTRAP, str(int(seed)), subcommand]


def read_topaz_metrics(path: PathLike) -> pd.DataFrame:
    """Parse the train/test curve that ``topaz train -o`` writes ("-" marks missing values)."""
    table = pd.read_csv(path, sep="\t", na_values=["-"])
    for column in table.columns:
        if column != "split":
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _saved_models(out_dir: Path) -> list[Path]:
    """``model_epoch*.sav`` in epoch order. Topaz pads the number to ceil(log10(epochs)) digits,
    which is one too few at 10, 100, ... epochs, so names do not sort as text."""
    numbered = []
    for path in out_dir.glob("model_epoch*.sav"):
        match = re.fullmatch(r"model_epoch(\d+)\.sav", path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    return [path for _, path in sorted(numbered)]


def _p_observed(images: pd.DataFrame, particles: pd.DataFrame, radius: int) -> tuple[float, float]:
    total = float((images["rows"] * images["cols"]).sum())
    n = len(particles)
    return n * disk_pixels(radius) / total, n * topaz_pixels_given_radius(radius) / total


def topaz_train(
    train_images: Sequence[PathLike],
    train_particles: ParticlesArg,
    test_images: Sequence[PathLike] | None = None,
    test_particles: ParticlesArg | None = None,
    *,
    out_dir: PathLike,
    radius: int = 3,
    pi: float | None = None,
    num_particles: float | None = None,
    compensate_p_observed: bool = True,
    model: str = "resnet8",
    units: int = 32,
    epochs: int = 10,
    epoch_size: int = 1000,
    minibatch_size: int = 256,
    minibatch_balance: float = 0.0625,
    learning_rate: float = 2e-4,
    method: str = "GE-binomial",
    autoencoder: float = 0,
    pretrained: bool = False,
    num_workers: int = 0,
    threads: int = 2,
    seed: int | None = 0,
    venv_dir: PathLike | None = None,
) -> TopazRun:
    """Train a Topaz classifier from scratch on CPU with explicit settings.

    Parameters
    ----------
    train_images, test_images : sequences of paths
        2-D float32 ``.mrc`` micrographs (already downsampled and normalised).
    train_particles, test_particles : DataFrame or path
        Topaz text tables (``image_name x_coord y_coord``) on the same pixel grid as the images.
        Coordinates are rounded; labels outside their image or on unlisted images are dropped.
    out_dir : path
        Created if needed; receives the image lists, labels, ``train.log``, ``metrics.tsv`` and
        ``model_epochNN.sav``.
    radius : int
        Pixels around each label that count as positive (``--radius``).
    pi : float, optional
        Expected fraction of positive pixels (Topaz's definition). Either this or
        ``num_particles`` is required.
    num_particles : float, optional
        Expected particles per micrograph; converted to pi here with the correct 2-D disk
        instead of passing Topaz's buggy ``-n``.
    compensate_p_observed : bool
        Add back what Topaz 0.3.20 over-subtracts from pi for the labelled pixels (module
        docstring). Turn off to reproduce Topaz's stock behaviour with ``--pi``.
    model, units, epochs, epoch_size, minibatch_size, minibatch_balance, learning_rate, method,
    autoencoder : training settings
        Passed as ``--model --units --num-epochs --epoch-size --minibatch-size
        --minibatch-balance --learning-rate --method --autoencoder``; defaults are Topaz's.
    pretrained : bool
        Start from Topaz's bundled detector weights (Topaz's default); False passes
        ``--no-pretrained``.
    num_workers, threads : int
        Data-loading worker processes and torch threads (``--num-workers``, ``-j``).
    seed : int or None
        Seed through the bootstrap described in the module docstring; None runs the plain
        ``topaz`` executable (not repeatable).
    venv_dir : path, optional
        The Topaz environment; see :func:`find_topaz`.

    Returns
    -------
    TopazRun

    Raises
    ------
    TopazError
        Missing Topaz, unusable inputs, or a failed run (the message ends with the log's tail).
    """
    topaz = find_topaz(venv_dir)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (test_images is None) != (test_particles is None):
        raise TopazError("give both test_images and test_particles, or neither")

    train_table = _image_table(train_images)
    train_labels = _prepare_particles(train_particles, train_table, "train")
    train_list, train_targets = _write_inputs(train_table, train_labels, out, "train")
    test_list = test_targets = None
    num_test = 0
    if test_images is not None:
        test_table = _image_table(test_images)
        test_labels = _prepare_particles(test_particles, test_table, "test")
        test_list, test_targets = _write_inputs(test_table, test_labels, out, "test")
        num_test = len(test_labels)

    if pi is None:
        if num_particles is None:
            raise TopazError("give pi or num_particles (expected particles per micrograph)")
        shapes = list(zip(train_table["rows"], train_table["cols"]))
        pi = pi_from_particles_per_micrograph(num_particles, radius, shapes)
    elif num_particles is not None:
        raise TopazError("give pi or num_particles, not both")
    p_true, p_topaz = _p_observed(train_table, train_labels, radius)
    pi_passed = pi + (p_topaz - p_true) if compensate_p_observed else pi
    logger.info(
        "pi=%.6g, p_observed true=%.6g / Topaz=%.6g, passing --pi %.6g", pi, p_true, p_topaz, pi_passed
    )
    if method in ("GE-binomial", "GE-KL") and pi_passed <= p_topaz:
        logger.warning("pi=%.6g leaves no unlabelled positives: Topaz will switch to PN", pi)

    metrics_path = out / "metrics.tsv"
    for stale in [*out.glob("model_epoch*.sav"), metrics_path]:
        stale.unlink(missing_ok=True)
    command = _topaz_command(topaz, "train", seed) + [
        "--train-images", str(train_list),
        "--train-targets", str(train_targets),
    ]
    if test_list is not None:
        command += ["--test-images", str(test_list), "--test-targets", str(test_targets)]
    command += [
        "--radius", str(int(radius)),
        "--pi", repr(float(pi_passed)),
        "--model", model,
        "--units", str(int(units)),
        "--num-epochs", str(int(epochs)),
        "--epoch-size", str(int(epoch_size)),
        "--minibatch-size", str(int(minibatch_size)),
        "--minibatch-balance", repr(float(minibatch_balance)),
        "--learning-rate", repr(float(learning_rate)),
        "--method", method,
        "--autoencoder", repr(float(autoencoder)),
        "--pretrained" if pretrained else "--no-pretrained",
        "--num-workers", str(int(num_workers)),
        "--num-threads", str(int(threads)),
        "--device", "-1",
        "--save-prefix", str(out / "model"),
        "--output", str(metrics_path),
    ]
    log_path = out / "train.log"
    stats = _run_logged(command, log_path, "topaz train", threads, watch=metrics_path)

    log_text = log_path.read_text(errors="replace")
    method_used = "PN" if "setting method to PN" in log_text else method
    if method_used != method:
        logger.warning("Topaz switched the objective from %s to PN (see %s)", method, log_path)
    metrics = read_topaz_metrics(metrics_path)
    if len(stats.watched_line_times) == len(metrics) + 1:  # + the header line
        metrics["elapsed_s"] = stats.watched_line_times[1:]
    else:
        logger.warning("could not time-stamp the rows of %s", metrics_path)
        metrics["elapsed_s"] = np.nan
    return TopazRun(
        out_dir=out,
        command=command,
        wall_time_s=stats.wall_time_s,
        peak_rss_bytes=stats.peak_rss_bytes,
        rss_method=stats.rss_method,
        log_path=log_path,
        metrics_path=metrics_path,
        metrics=metrics,
        model_paths=_saved_models(out),
        pi=float(pi),
        pi_passed=float(pi_passed),
        p_observed_true=p_true,
        p_observed_topaz=p_topaz,
        method_used=method_used,
        num_train_particles=len(train_labels),
        num_test_particles=num_test,
        settings={
            "radius": radius, "model": model, "units": units, "epochs": epochs, "epoch_size": epoch_size,
            "minibatch_size": minibatch_size, "minibatch_balance": minibatch_balance,
            "learning_rate": learning_rate, "method": method, "autoencoder": autoencoder,
            "pretrained": pretrained, "num_workers": num_workers, "threads": threads, "seed": seed,
        },
    )


#: Names ``topaz extract --model`` resolves to the pretrained general pickers in its wheel.
PRETRAINED_MODELS = ("resnet16", "resnet16_u64", "resnet16_u32", "resnet8", "resnet8_u64", "resnet8_u32")


def topaz_extract(
    model_path: PathLike,
    images: Sequence[PathLike],
    *,
    radius: int,
    out_path: PathLike,
    threshold: float = -20,
    up_scale: float = 1,
    threads: int = 2,
    venv_dir: PathLike | None = None,
) -> tuple[pd.DataFrame, float, int | None]:
    """Score micrographs with a trained Topaz model and extract picks by non-maximum suppression.

    Parameters
    ----------
    model_path : path or str
        A ``.sav`` written by ``topaz train`` (e.g. :attr:`TopazRun.final_model`), or the name
        of one of Topaz's bundled pretrained pickers (:data:`PRETRAINED_MODELS`; ``resnet16``
        is what ``topaz extract`` uses when no model is given).
    images : sequence of paths
        2-D float32 ``.mrc`` micrographs on the grid the model was trained on.
    radius : int
        NMS radius (``-r``): the minimum distance between two picks, in pixels of ``images``.
    out_path : path
        Topaz's tab-separated pick table (``-o``). The time-stamped log goes next to it
        (``<stem>.log``); :func:`extract_timings` reads per-micrograph times from it.
    threshold : float
        Lowest score kept (``-t``, a logit). The default -20 keeps nearly every candidate so the
        threshold can be swept afterwards; Topaz's own default is -6.
    up_scale : float
        Multiply output coordinates by this (``-x``), e.g. the downsampling factor to report
        picks on the original micrograph grid. Topaz then rounds them to integers.
    threads : int
        torch threads (``-j``).
    venv_dir : path, optional
        The Topaz environment; see :func:`find_topaz`.

    Returns
    -------
    picks : pandas.DataFrame
        ``image_name, x_coord, y_coord, score``, as Topaz writes them (best first per image).
    wall_time_s : float
        Wall time of the whole ``topaz extract`` process (start-up and model loading included).
    peak_rss_bytes : int or None
        Peak resident memory of its process tree.
    """
    topaz = find_topaz(venv_dir)
    if str(model_path) not in PRETRAINED_MODELS:
        model_path = Path(model_path).resolve()
        if not model_path.is_file():
            raise TopazError(f"model not found: {model_path}")
    table = _image_table(images)
    out_path = Path(out_path).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(topaz), "extract",
        "--model", str(model_path),
        "--radius", str(int(radius)),
        "--threshold", repr(float(threshold)),
        "--up-scale", repr(float(up_scale)),
        "--num-workers", "0",
        "--num-threads", str(int(threads)),
        "--device", "-1",
        "--output", str(out_path),
        "--verbose",  # per-micrograph log lines, timed by extract_timings()
        *table["path"].tolist(),
    ]
    stats = _run_logged(command, out_path.with_suffix(".log"), "topaz extract", threads)
    picks = pd.read_csv(out_path, sep="\t", dtype={"image_name": str})
    return picks, stats.wall_time_s, stats.peak_rss_bytes


__all__ = [
    "DEFAULT_VENV",
    "PRETRAINED_MODELS",
    "TopazError",
    "TopazRun",
    "disk_pixels",
    "extract_timings",
    "find_topaz",
    "format_command",
    "mrc_shape",
    "pi_from_particles_per_micrograph",
    "read_particles",
    "read_timed_log",
    "read_topaz_metrics",
    "topaz_extract",
    "topaz_pixels_given_radius",
    "topaz_train",
]
