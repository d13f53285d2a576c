"""Picking a whole dataset: streamed, resumable, with bounded memory, in this process or on Dask.

:func:`batch_pick_job` picks micrograph after micrograph and writes each one's picks to its
own file as soon as it is done (atomically), then appends a line to a *manifest*; at the end
it writes the combined output from those files. Memory does not grow with the number of
micrographs: at most a few micrographs are in flight, and the picks of those done live on
disk, not in memory.

Resuming: the state of a run lives in a folder beside the output (:func:`state_folder`). Its
manifest starts with what the results depend on: the model's id
(:func:`~picker_gui.core.models.model_id`) and the picking settings. Run the same command
again after a crash, a kill or a full disk and only the micrographs not yet done are picked
(a micrograph whose file changed since, by size or time, is picked again). A different model
or different settings never mix with old results: the old state is moved aside (and the run
says so) and everything is picked anew.

Executors: in this process (``workers=0``), or on a Dask cluster (a ``distributed.Client``
the caller made: a ``LocalCluster``, an existing scheduler, SLURM through dask-jobqueue; see
:mod:`picker_gui.core.cluster`). A task loads the model once per worker process and picks
one micrograph; a micrograph that cannot be read comes back as a failure (reported, not
retried), a worker that dies loses only its task, which Dask runs again elsewhere.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Generator, Iterable, Sequence

import numpy as np

from picker_gui.core.coords import CoordinateTable, micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.jobs import JobReport
from picker_gui.core.paths import atomic_write_text

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
PICKS_FOLDER = "picks"
#: Micrographs in flight per worker: enough to keep each busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class BatchSettings:
    """What the picks depend on besides the model (a change starts the run anew)."""

    threshold: float = -math.inf
    radius_px: float | None = None
    pixel_size_a: float | None = None

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d["threshold"] = None if not math.isfinite(self.threshold) else self.threshold
        return d


def state_folder(out: str | PathLike) -> Path:
    """Where the run writing ``out`` keeps its state: ``.<name>.picking`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.picking"


# -- per-micrograph results -------------------------------------------------------------------
def _result_name(key: str) -> str:
    return f"{key}.tsv"


def write_result(folder: Path, key: str, name: str, x: np.ndarray, y: np.ndarray, score: np.ndarray) -> Path:
    """One micrograph's picks, atomically: a header line, then x, y, score per line (full precision)."""
    lines = [f"# micrograph\t{name}", "x\ty\tscore"]
    lines += [f"{a!r}\t{b!r}\t{c!r}" for a, b, c in zip(x.tolist(), y.tolist(), score.tolist())]
    path = folder / _result_name(key)
    atomic_write_text(path, "\n".join(lines) + "\n", durable=False)
    return path


def read_result(path: Path) -> CoordinateTable:
    with open(path, encoding="utf-8") as fh:
        head = fh.readline()
        if not head.startswith("# micrograph\t"):
            raise ValueError(f"{path}: not a picker-gui result file")
        name = head.rstrip("\n").split("\t", 1)[1]
        fh.readline()
        rest = fh.read()
    data = np.array(rest.split(), dtype=np.float64).reshape(-1, 3)
    if data.size == 0:
        return CoordinateTable.from_arrays(name, [], [], [], source="picker-gui")
    return CoordinateTable.from_arrays(name, data[:, 0], data[:, 1], data[:, 2], source="picker-gui")


# -- the manifest -------------------------------------------------------------------------------
def _stamp(path: Path) -> dict[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Manifest:
    """``manifest.jsonl``: a header line (model id, settings), then a line per micrograph
    finished (done or failed). Lines are appended and synced one by one; a last line cut
    short by a kill is ignored."""

    def __init__(self, folder: Path, header: dict[str, Any], entries: dict[str, dict]) -> None:
        self.folder = folder
        self.header = header
        self.entries = entries  # key -> last entry
        self._fh = open(folder / MANIFEST, "a", encoding="utf-8")

    @classmethod
    def open(cls, folder: Path, model_id: str, settings: BatchSettings) -> tuple["Manifest", list[str]]:
        """The manifest of ``folder`` for this model and settings; a manifest for others is
        moved aside (with the results) and a new one started. Returns it and what was done."""
        notes: list[str] = []
        header = {"model_id": model_id, "settings": settings.identity(), "format": 1}
        path = folder / MANIFEST
        entries: dict[str, dict] = {}
        if path.exists():
            old_header, entries = cls._read(path)
            if old_header != header:
                stamp = time.strftime('%Y%m%d-%H%M%S')
                aside = folder.with_name(f"{folder.name}.old-{stamp}")
                i = 2
                while aside.exists():
                    aside = folder.with_name(f"{folder.name}.old-{stamp}-{i}")
                    i += 1
                folder.rename(aside)
                why = ("another model" if (old_header or {}).get("model_id") != model_id else "other settings")
                notes.append(f"the results in {folder} were made with {why}; they are kept in {aside} and every "
                             f"micrograph is picked again")
                entries = {}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PICKS_FOLDER).mkdir(exist_ok=True)
        if not (folder / MANIFEST).exists():
            atomic_write_text(folder / MANIFEST, json.dumps({"header": header}) + "\n")
        return cls(folder, header, entries), notes

    @staticmethod
    def _read(path: Path) -> tuple[dict | None, dict[str, dict]]:
        header, entries = None, {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if "header" in item:
                    header = item["header"]
                elif "key" in item:
                    entries[item["key"]] = item
        return header, entries

    def is_done(self, path: Path) -> bool:
        e = self.entries.get(micrograph_key(path))
        return (e is not None and e.get("status") == "done" and e.get("stamp") == _stamp(path)
                and (self.folder / PICKS_FOLDER / _result_name(e["key"])).exists())

    def record(self, entry: dict) -> None:
        self.entries[entry["key"]] = entry
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


# -- the task (runs in this process or on a Dask worker) ----------------------------------------------
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _worker_device(requested: str):
    """The device of this worker: ``auto`` on a machine with several GPUs spreads workers
    over them (by the worker's name), one GPU each."""
    import torch

    from picker_gui.core.training import select_device

    if requested == "auto" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        try:
            from distributed import get_worker

            index = abs(hash(get_worker().name)) % torch.cuda.device_count()
            return torch.device(f"cuda:{index}")
        except (ImportError, ValueError):
            pass
    return select_device(requested)[0]


def _model(model_path: str, model_id: str, device: str):
    """The model, loaded once per process (per path, id and device)."""
    key = (model_path, model_id + "@" + device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            import copy

            from picker_gui.core.models import load_model

            saved = load_model(model_path)
            if saved.metadata.get("model_id") not in (None, model_id):
                raise UsageError(f"{model_path} changed while picking (model id {saved.metadata.get('model_id')}, "
                                 f"expected {model_id})")
            dev = _worker_device(device)
            _MODELS.clear()  # one model per worker
            _MODELS[key] = (copy.deepcopy(saved.model).to(dev).eval(), saved.metadata, dev)
        return _MODELS[key]


def pick_task(model_path: str, model_id: str, path: str, settings: BatchSettings, device: str,
              threads: int | None = None) -> dict:
    """Pick one micrograph: ``{"key", "name", "x", "y", "score", "notes"}``, or
    ``{"key", "error"}`` for a micrograph that cannot be picked."""
    from picker_gui.core.inference import pick_file

    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    p = Path(path)
    model, metadata, dev = _model(model_path, model_id, device)
    try:
        picks, notes = pick_file(model, metadata, p, device=dev, threshold=settings.threshold,
                                 radius_px=settings.radius_px, pixel_size_a=settings.pixel_size_a)
    except MicrographError as exc:
        text = str(exc)
        return {"key": micrograph_key(p), "error": text if str(p) in text else f"{p}: {text}"}
    return {"key": micrograph_key(p), "name": p.name, "x": picks.x, "y": picks.y, "score": picks.score,
            "notes": notes, "device": str(dev)}


# -- running tasks: in this process or on Dask, a bounded number in flight ----------------------------
def run_tasks(items: Sequence[Path], task, *, client=None, workers: int = 1, stop: threading.Event | None = None,
              key: str = "task") -> Generator[tuple[Path, Any], None, bool]:
    """Run ``task(str(item))`` for every item, yielding ``(item, result)`` as each finishes (in
    order in this process, as they complete on Dask); a task that failed on the cluster even
    after its retries yields its exception as the result. On Dask at most
    ``workers * IN_FLIGHT_PER_WORKER`` tasks are in flight, so memory is that of a few items
    however many there are. Returns True when stopped (``stop`` set) before the end."""
    should_stop = stop.is_set if stop is not None else (lambda: False)
    if client is None:
        for p in items:
            if should_stop():
                return True
            yield p, task(str(p))
        return False
    from distributed import as_completed

    def submit(p: Path):
        return client.submit(task, str(p), key=f"{key}-{micrograph_key(p)}-{time.monotonic_ns()}", pure=False,
                             retries=2)

    window = max(1, workers * IN_FLIGHT_PER_WORKER)
    queue = list(items)
    futures = {submit(p): p for p in queue[:window]}
    queue = queue[window:]
    pending = as_completed(list(futures))
    for fut in pending:
        p = futures.pop(fut)
        try:
            out = fut.result()
        except Exception as exc:  # noqa: BLE001 - a task that failed even after its retries
            out = exc
        yield p, out
        if should_stop():
            for f in futures:
                f.cancel()
            return True
        if queue:
            nxt = queue.pop(0)
            f = submit(nxt)
            futures[f] = nxt
            pending.add(f)
    return False


# -- the job --------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    """What :func:`batch_pick_job` returns."""

    done: list[str]  # keys picked in this run
    skipped: list[str]  # keys done by an earlier run, not picked again
    failures: list[tuple[str, str]]
    stopped: bool
    state: Path
    outputs: list[Path] = field(default_factory=list)
    n_picks: int = 0
    notes: list[str] = field(default_factory=list)


def batch_pick_job(
    model_path: str | PathLike,
    micrographs: Iterable[str | PathLike],
    state: str | PathLike,
    settings: BatchSettings = BatchSettings(),
    *,
    client=None,
    workers: int = 1,
    threads: int | None = None,
    device: str = "auto",
    stop: threading.Event | None = None,
    write_output=None,
    watch=None,
) -> Generator[JobReport, None, BatchResult]:
    """Pick every micrograph not done yet; a report per micrograph (stage ``"pick"``, without
    the picks: they are on disk).

    Parameters
    ----------
    state
        The run's folder (see :func:`state_folder`): manifest and per-micrograph results.
    client
        A ``distributed.Client``; None: pick in this process.
    workers
        How many micrographs the cluster works on at once (to bound those in flight).
    threads
        torch threads per task (None: leave torch's setting).
    write_output
        ``write_output(tables) -> (files, rows)``: writes the combined output from an
        iterable of per-micrograph tables (see :func:`write_streamed`), at the end and
        after every batch of new micrographs when watching.
    watch
        An iterator of lists of new micrograph paths (``--watch``); None: only ``micrographs``.
    """
    from picker_gui.core.models import load_model, model_id as compute_id

    should_stop = stop.is_set if stop is not None else (lambda: False)
    model_path = str(Path(model_path).resolve())
    saved = load_model(model_path)
    mid = saved.metadata.get("model_id") or compute_id(saved)
    folder = Path(state)
    manifest, notes = Manifest.open(folder, mid, settings)
    for n in notes:
        logger.warning("%s", n)
    paths = [Path(p) for p in micrographs]
    todo = [p for p in paths if not manifest.is_done(p)]
    skipped = [micrograph_key(p) for p in paths if manifest.is_done(p)]
    if skipped:
        logger.info("%d of %d micrograph(s) already picked by an earlier run (%s); picking the other %d",
                    len(skipped), len(paths), folder, len(todo))
    done: list[str] = []
    failures: list[tuple[str, str]] = []
    stopped = False
    picks_dir = folder / PICKS_FOLDER
    total = len(paths)
    count = len(skipped)
    message = "; ".join(notes) or None

    def finish(path: Path, out: dict) -> JobReport:
        nonlocal count, message
        key = micrograph_key(path)
        stamp = _stamp(path)
        if "error" in out:
            failures.append((str(path), out["error"]))
            manifest.record({"key": key, "path": str(path), "status": "failed", "error": out["error"], "stamp": stamp})
            report = JobReport("pick", count + len(failures), total, message=out["error"], micrograph=key,
                               error=out["error"])
        else:
            write_result(picks_dir, key, out["name"], np.asarray(out["x"]), np.asarray(out["y"]), np.asarray(out["score"]))
            manifest.record({"key": key, "path": str(path), "status": "done", "picks": int(len(out["x"])), "stamp": stamp})
            done.append(key)
            count += 1
            text = "; ".join([*([message] if message else []), *out.get("notes", []),
                              f"{path.name}: {len(out['x'])} picks"])
            report = JobReport("pick", count + len(failures), total, message=text, micrograph=key)
        message = None
        return report

    def run(batch: list[Path]) -> Generator[JobReport, None, bool]:
        """Pick ``batch``; True when stopped."""
        task = functools.partial(pick_task, model_path, mid, settings=settings, device=device, threads=threads)
        results = run_tasks(batch, task, client=client, workers=workers, stop=stop, key=f"pick-{mid}")
        while True:
            try:
                p, out = next(results)
            except StopIteration as end:
                return end.value
            if isinstance(out, BaseException):
                out = {"key": micrograph_key(p), "error": f"{p}: picking failed on the cluster ({type(out).__name__}: {out})"}
            yield finish(p, out)

    outputs: list[Path] = []
    n_rows = 0
    try:
        stopped = yield from run(todo)
        if watch is not None and not stopped:
            for new in watch:
                if should_stop():
                    stopped = True
                    break
                fresh = [p for p in new if not manifest.is_done(p)]
                if not fresh:
                    continue
                paths += [p for p in fresh if p not in paths]
                total = len(paths)
                stopped = yield from run(fresh)
                if write_output is not None:
                    outputs, n_rows = write_output(done_tables(folder, paths))
                if stopped:
                    break
    finally:
        manifest.close()
    if write_output is not None and (done or skipped):
        outputs, n_rows = write_output(done_tables(folder, paths))
    return BatchResult(done, skipped, failures, stopped, folder, outputs, n_rows, notes)


#: Formats written one micrograph at a time into a folder.
_PER_MICROGRAPH_FORMATS = ("relion", "box")
#: One-file formats whose rows are one line each after a fixed header: written by streaming.
_STREAMED_FORMATS = ("star-particles", "topaz", "csv")


def done_tables(folder: Path, paths: Sequence[Path]) -> Iterable[CoordinateTable]:
    """The picks of every micrograph done, one table at a time, in the order of ``paths``."""
    _header, entries = Manifest._read(folder / MANIFEST)
    for p in paths:
        e = entries.get(micrograph_key(p))
        if e is not None and e.get("status") == "done":
            yield read_result(folder / PICKS_FOLDER / _result_name(e["key"]))


def write_streamed(tables: Iterable[CoordinateTable], out: Path, fmt: str, **options) -> tuple[list[Path], int]:
    """Write the combined output one micrograph's table at a time, so that memory stays that
    of one micrograph: per-micrograph formats file by file; STAR particles, Topaz text and CSV
    as one header then every micrograph's rows (each table is rendered by the format's own
    writer and its header checked to be the first one's); other formats (RELION 4 lists,
    labels) in memory. Returns the files written and the rows."""
    out = Path(out)
    quiet = _quiet_formats()
    with quiet:
        return _write_streamed(tables, out, fmt, options)


class _quiet_formats:
    """The format writers' "wrote N coordinate(s)" line once per micrograph would flood the
    log: it is silenced while the combined output is written (the job says what it wrote)."""

    def __enter__(self):
        self.logger = logging.getLogger("picker_gui.core.formats")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _write_streamed(tables, out: Path, fmt: str, options: dict) -> tuple[list[Path], int]:
    import tempfile

    from picker_gui.core.formats import write_coordinates
    from picker_gui.core.paths import atomic_output

    if fmt in _PER_MICROGRAPH_FORMATS:
        files, n = [], 0
        for t in tables:
            if len(t):
                files += write_coordinates(t, out, fmt, **options)
                n += len(t)
        return files, n
    if fmt not in _STREAMED_FORMATS:
        table = CoordinateTable.concat(list(tables))
        return (write_coordinates(table, out, fmt, **options) if len(table) else []), len(table)
    n = 0
    header: list[str] | None = None
    footer: list[str] = []
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        chunk = Path(tmp) / f"chunk{out.suffix}"
        with atomic_output(out, "w", encoding="utf-8", newline="") as fh:
            for t in tables:
                if not len(t):
                    continue
                write_coordinates(t, chunk, fmt, **options)
                lines = chunk.read_text(encoding="utf-8").splitlines(keepends=True)
                tail = []
                while lines and not lines[-1].strip():
                    tail.insert(0, lines.pop())
                head, body = lines[: len(lines) - len(t)], lines[len(lines) - len(t):]
                if header is None:
                    header, footer = head, tail
                    fh.writelines(head)
                elif head != header:
                    raise RuntimeError(f"{fmt}: the header of {t.micrograph[0]} differs from the first micrograph's")
                fh.writelines(body)
                n += len(t)
            if header is None:  # no picks at all: what the format writes for none
                write_coordinates(CoordinateTable.empty(), chunk, fmt, **options)
                fh.write(chunk.read_text(encoding="utf-8"))
            else:
                fh.writelines(footer)
    return [out], n


def remove_state(folder: Path) -> None:
    """Remove a finished run's state (the combined output is written)."""
    shutil.rmtree(folder, ignore_errors=True)


def watch_folders(inputs: Sequence[str], interval_s: float, stop: threading.Event | None = None,
                  known: Iterable[Path] = ()) -> Iterable[list[Path]]:
    """New micrographs as they appear under ``inputs`` (files, folders, patterns): every
    ``interval_s`` the inputs are listed again, and a new file is handed out once its size has
    stayed the same across two listings (written completely). Ends when ``stop`` is set."""
    from picker_gui.core.mrc_io import find_micrographs

    seen = {Path(p) for p in known}
    sizes: dict[Path, int] = {}
    while stop is None or not stop.is_set():
        end = time.monotonic() + interval_s
        while time.monotonic() < end:
            if stop is not None and stop.is_set():
                return
            time.sleep(min(0.2, interval_s))
        try:
            found = find_micrographs(inputs)
        except MicrographError:
            found = []
        ready = []
        for p in found:
            if p in seen:
                continue
            st = _stamp(p)
            if st is None:
                continue
            if sizes.get(p) == st["size"] and st["size"] > 0:
                ready.append(p)
                seen.add(p)
                sizes.pop(p, None)
            else:
                sizes[p] = st["size"]
        yield ready


# -- preprocessing a whole dataset ------------------------------------------------------------------
def preprocess_task(path: str, params, out_dir: str, cache_dir: str | None, use_cache: bool = True) -> dict:
    """Preprocess one micrograph into ``out_dir/<stem>.mrc`` (on a worker: the folder must be
    one all workers see). Returns its record for ``preprocess.json``, or ``{"key", "error"}``."""
    from picker_gui.core.cache import PreprocessCache
    from picker_gui.core.mrc_io import write_mrc
    from picker_gui.core.preprocess import preprocess_file

    p = Path(path)
    cache = PreprocessCache(cache_dir) if use_cache else None
    try:
        result = preprocess_file(p, params, cache)
    except MicrographError as exc:
        text = str(exc)
        return {"key": micrograph_key(p), "error": text if str(p) in text else f"{p}: {text}"}
    except ValueError as exc:  # e.g. sizing from a diameter with no pixel size anywhere
        return {"key": micrograph_key(p), "error": f"{p}: {exc}"}
    out = write_mrc(Path(out_dir) / f"{p.stem}.mrc", result.image, result.pixel_size_a)
    return {
        "micrograph": str(p),
        "output": out.name,
        "original_shape": list(result.original_shape),
        "shape": list(result.image.shape),
        "scale_y": result.scale[0],
        "scale_x": result.scale[1],
        "pixel_size_a": result.pixel_size_a,
        "normalization": vars(result.normalization),
        "notes": list(result.notes),
        "cache_hit": bool(cache is not None and cache.hits),
    }


@dataclass
class PreprocessResult:
    records: list[dict]  # in the order of the inputs
    failures: list[tuple[str, str]]
    stopped: bool


def batch_preprocess_job(micrographs: Sequence[str | PathLike], params, out_dir: str | PathLike, *,
                         cache_dir: str | PathLike | None = None, use_cache: bool = True, client=None,
                         workers: int = 1, stop: threading.Event | None = None,
                         ) -> Generator[JobReport, None, PreprocessResult]:
    """Preprocess every micrograph into ``out_dir``, in this process or on Dask (a bounded number
    in flight, as :func:`batch_pick_job`); a report per micrograph. Each result is written by
    the task that made it, so memory stays that of a few micrographs. A second run costs a
    cache read per micrograph (the preprocessing cache is keyed by file and parameters)."""
    paths = [Path(p) for p in micrographs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = None if cache_dir is None else str(Path(cache_dir).resolve())
    task = functools.partial(preprocess_task, params=params, out_dir=str(out_dir.resolve()), cache_dir=cache,
                             use_cache=use_cache)
    records: dict[Path, dict] = {}
    failures: list[tuple[str, str]] = []
    results = run_tasks(paths, task, client=client, workers=workers, stop=stop, key="preprocess")
    stopped = False
    while True:
        try:
            p, out = next(results)
        except StopIteration as end:
            stopped = bool(end.value)
            break
        if isinstance(out, BaseException):
            out = {"key": micrograph_key(p), "error": f"{p}: preprocessing failed on the cluster "
                                                      f"({type(out).__name__}: {out})"}
        n = len(records) + len(failures) + 1
        if "error" in out:
            failures.append((str(p), out["error"]))
            yield JobReport("preprocess", n, len(paths), message=out["error"], micrograph=micrograph_key(p),
                            error=out["error"])
        else:
            records[p] = out
            yield JobReport("preprocess", n, len(paths), message=f"{p.name}: {'x'.join(map(str, out['shape'][::-1]))}",
                            micrograph=micrograph_key(p))
    return PreprocessResult([records[p] for p in paths if p in records], failures, stopped)
