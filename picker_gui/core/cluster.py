"""Dask clusters for batch picking: a LocalCluster on this machine, an existing scheduler, or
SLURM through dask-jobqueue. Imported only when a batch runs on Dask (dask is optional at
import time of everything else).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from picker_gui.core.errors import UsageError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlurmOptions:
    """The usual dask-jobqueue options: one worker process per job."""

    queue: str | None = None
    account: str | None = None
    cores: int = 4
    memory: str = "16GB"
    walltime: str = "04:00:00"
    jobs: int = 1
    gpus: int = 0
    extra: tuple[str, ...] = ()  # more #SBATCH directives, e.g. "--constraint=a100"


@dataclass
class Cluster:
    client: object
    cluster: object | None
    workers: int
    threads: int | None  # torch threads per task
    notes: list[str]

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _import():
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise UsageError("picking on Dask needs dask.distributed: pip install 'dask[distributed]' "
                         "(and dask-jobqueue for --slurm)")


def local_cluster(workers: int, gpus: int = 0) -> Cluster:
    """``workers`` processes on this machine, one thread each for Dask and the machine's cores
    shared out among them for torch (so that they do not oversubscribe the CPU); with GPUs,
    one worker per GPU."""
    _import()
    from distributed import Client, LocalCluster

    if gpus:
        workers = gpus
    threads = max(1, cores() // max(1, workers))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    notes = [f"Dask LocalCluster: {workers} worker process(es), {threads} torch thread(s) each"]
    link = getattr(client, "dashboard_link", None)
    if link:
        notes.append(f"Dask dashboard: {link}")
    return Cluster(client, cluster, workers, threads, notes)


def existing_scheduler(address: str) -> Cluster:
    _import()
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}", option="--scheduler") from None
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    notes = [f"Dask scheduler {address}: {workers} worker(s)"]
    link = getattr(client, "dashboard_link", None)
    if link:
        notes.append(f"Dask dashboard: {link}")
    return Cluster(client, None, workers, None, notes)


def _slurm(options: SlurmOptions):
    _import()
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UsageError("--slurm needs dask-jobqueue: pip install dask-jobqueue", option="--slurm") from None
    extra = list(options.extra)
    if options.gpus:
        extra.append(f"--gres=gpu:{options.gpus}")
    return SLURMCluster(queue=options.queue, account=options.account, cores=options.cores, processes=1,
                        memory=options.memory, walltime=options.walltime, job_extra_directives=extra)


def slurm_script(options: SlurmOptions) -> str:
    """The job script SLURM would run for each worker (nothing is submitted)."""
    cluster = _slurm(options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def slurm_cluster(options: SlurmOptions, script_path: Path | None = None) -> Cluster:
    """Workers as SLURM jobs (dask-jobqueue); the generated job script is written to
    ``script_path`` (for the user to read) and logged."""
    from distributed import Client

    cluster = _slurm(options)
    script = cluster.job_script()
    if script_path is not None:
        script_path.parent.mkdir(parents=True, exist_ok=True)
        script_path.write_text(script)
    cluster.scale(jobs=options.jobs)
    client = Client(cluster)
    notes = [f"SLURM: {options.jobs} job(s) of {options.cores} core(s), {options.memory}, {options.walltime}"
             + (f"; job script in {script_path}" if script_path else "")]
    link = getattr(client, "dashboard_link", None)
    if link:
        notes.append(f"Dask dashboard: {link}")
    return Cluster(client, cluster, options.jobs, options.cores, notes)
