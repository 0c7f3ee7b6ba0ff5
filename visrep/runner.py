"""Run jobs: dataset -> method -> protocol -> result record, locally or on a Dask cluster.

``run_job`` is the single code path both executors call, so a record is the same whichever
executor produced it (up to timings and host provenance). Jobs whose record already exists
are skipped unless ``force`` (resume after a crash or Ctrl-C).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import Cache, check_writable_dir, code_version
from .context import RunContext
from .errors import UserError
from .provenance import provenance
from .registry import datasets, methods, protocols
from .results import (
    SCHEMA_VERSION,
    DamagedRecord,
    default_results_dir,
    read_record,
    record_path,
    set_aside,
    write_record,
)
from .spec import Job


@dataclass
class RunSettings:
    """How to run (not what): where results and cache live, whether to re-run, verbosity."""

    results_dir: str = field(default_factory=lambda: str(default_results_dir()))
    cache_dir: str | None = None
    use_cache: bool = True
    force: bool = False
    quiet: bool = False
    device: str = "cpu"        # cpu | auto | cuda[:N] (visrep.device); not part of a job's identity


def _check_metrics(metrics: dict, job: Job) -> dict:
    clean = {}
    for k, v in metrics.items():
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            raise RuntimeError(f"protocol '{job.protocol}' returned non-finite metric {k}={v}")
        clean[k] = v
    return clean


def _per_item_lists(per_item: dict) -> dict:
    """{metric: [value or None (NaN: the item does not count)]} for the record (JSON has no NaN)."""
    out = {}
    for k, v in (per_item or {}).items():
        arr = np.asarray(v, dtype=np.float64).ravel()
        out[k] = [None if not math.isfinite(x) else float(x) for x in arr.tolist()]
    return out


def execute(job: Job, settings: RunSettings) -> dict:
    """Run one job now and return its record (without writing it)."""
    ctx = RunContext(data_root=job.data_root, quiet=settings.quiet, seed=job.seed,
                     cache=Cache(settings.cache_dir, enabled=settings.use_cache), device=settings.device)
    ctx.seed_everything()
    dataset = datasets.create(job.dataset, **job.dataset_params)
    method = methods.create(job.method, **job.params)
    protocol = protocols.create(job.protocol, **job.protocol_params)
    ctx.loader_version = code_version(type(dataset))
    t0 = time.perf_counter()
    with ctx.phase("load"):
        data = dataset.load(ctx)
    with ctx.phase("method"):
        outputs = method.run(data, ctx)
    with ctx.phase("evaluate"):
        metrics, per_item = protocol.score(outputs, data)
        metrics = _check_metrics(metrics, job)
    # repeated timings (per query / per pair, seconds) go beside the per-item metrics, under "timings.<phase>"
    per_item = {**per_item, **{f"timings.{k}": v for k, v in (outputs.get("per_item_timings") or {}).items()}}
    ctx.timings["total"] = time.perf_counter() - t0
    timings = {**ctx.timings, **{k: float(v) for k, v in (outputs.get("timings") or {}).items()}}
    return {
        "schema": SCHEMA_VERSION,
        "job": job.job_id,
        "method": job.method,
        "dataset": job.dataset,
        "protocol": job.protocol,
        "params": job.params,
        "dataset_params": job.dataset_params,
        "protocol_params": job.protocol_params,
        "seed": job.seed,
        "inputs": job.inputs,
        "metrics": metrics,
        "per_item": _per_item_lists(per_item),
        "summary": protocol.format(metrics, data),
        "timings": {k: round(v, 6) for k, v in timings.items()},
        "stats": _check_metrics(outputs.get("stats") or {}, job),
        "manifest": getattr(data, "manifest", "") or ctx.manifest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": {**provenance(), "device": ctx.device_used},
    }


def _same_definition(a: dict, b: dict) -> bool:
    keys = ("method", "dataset", "protocol", "params", "dataset_params", "protocol_params", "seed")
    return all(a.get(k) == b.get(k) for k in keys)


def _supersede(job: Job, path: Path) -> None:
    """Set aside records of this job's definition made from other input files, and say so."""
    mine = job.to_dict()
    for other in path.parent.glob("*.json"):
        if other == path or other.name.startswith(".tmp-"):
            continue
        try:
            rec = read_record(other)
        except UserError:
            continue
        if _same_definition(rec, mine) and (rec.get("inputs") or {}) != job.inputs:
            changed = sorted(k for k in set(rec.get("inputs") or {}) | set(job.inputs)
                             if (rec.get("inputs") or {}).get(k) != job.inputs.get(k)) or ["inputs"]
            target = other.with_name(other.name + ".superseded")
            os.replace(other, target)
            print(f"visrep: {', '.join(changed)} changed since {other.name} ({rec.get('created', '?')}): "
                  f"re-running; the old record is kept as {target.name}", file=sys.stderr)


@contextmanager
def _job_lock(results_dir: str | Path, job: Job):
    """An exclusive lock on ``<results>/.locks/<job>.lock`` while the job runs: a second process
    running the same job waits here, then finds the record and skips it. The OS releases it if the
    process dies (flock: local file systems; on NFS use one results folder per machine)."""
    import fcntl
    folder = Path(results_dir) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{job.dataset}-{job.method}-{job.job_id}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _existing(path: Path) -> dict | None:
    """The record at `path`, or None; a damaged one is moved aside (and the job re-run)."""
    if not path.exists():
        return None
    try:
        return read_record(path)
    except DamagedRecord as e:
        set_aside(path, str(e).split(": ", 1)[-1])
        return None


def run_job(job: Job | dict, settings: RunSettings | dict) -> dict:
    """Run `job` unless its record exists; write the record atomically; return it.

    The returned dict has the record plus ``"_path"`` and ``"_skipped"`` (not stored). A damaged
    record is moved aside and the job re-run; records of the same definition made from other input
    files are set aside as superseded; a per-job lock keeps two processes from computing one job.
    """
    job = job if isinstance(job, Job) else Job(**job)
    settings = settings if isinstance(settings, RunSettings) else RunSettings(**settings)
    path = record_path(settings.results_dir, job.dataset, job.method, job.job_id)
    if not settings.force and (rec := _existing(path)) is not None:
        return {**rec, "_path": str(path), "_skipped": True}
    with _job_lock(settings.results_dir, job):
        if not settings.force and (rec := _existing(path)) is not None:   # made by another process meanwhile
            return {**rec, "_path": str(path), "_skipped": True}
        _supersede(job, path)
        record = execute(job, settings)
        write_record(path, record)
    return {**record, "_path": str(path), "_skipped": False}


def preflight(settings: RunSettings) -> None:
    """Fail before any work when the results or cache folder cannot be written (UserError naming it)."""
    check_writable_dir(settings.results_dir, "results",
                       "choose another with --results or $VISREP_RESULTS")
    Cache(settings.cache_dir, enabled=settings.use_cache).check_writable()


def schedule(jobs: list[Job]) -> list[int]:
    """Order in which parallel workers take `jobs` (indices into it): jobs of methods that others reuse
    (``Method.reuses``: their training is cached and loaded by the others) first, jobs that reuse them
    last, the rest in between; the given order within each group. A reusing job started at once would
    only wait on the shared cache entry while its worker idles."""
    from .registry import methods
    classes = {j.method: methods.get(j.method) for j in jobs}
    reused = {name for c in classes.values() for name in getattr(c, "reuses", ())}

    def group(j: Job) -> int:
        return 0 if j.method in reused else 2 if getattr(classes[j.method], "reuses", ()) else 1
    return sorted(range(len(jobs)), key=lambda i: group(jobs[i]))


class LocalExecutor:
    """Runs jobs on this machine: one after another in this process (``workers`` = 1, progress bars
    inside each job), or in ``workers`` processes at once, each with an equal share of the cores'
    threads (a bar over jobs, one line per running job showing its current phase). Either way every
    job goes through :func:`run_job`, so the records are the same (up to timings and provenance).
    """

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))

    def map(self, jobs: list[Job], settings: RunSettings, on_result=None) -> list[dict]:
        preflight(settings)
        if self.workers > 1 and len(jobs) > 1:
            return self._map_processes(jobs, settings, on_result)
        out = []
        bar = None
        if not settings.quiet and len(jobs) > 1:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(jobs), desc="jobs", unit="job")
        try:
            for job in jobs:
                rec = run_job(job, settings)
                out.append(rec)
                if on_result:
                    on_result(rec)
                if bar:
                    bar.update()
        finally:
            if bar:
                bar.close()
        return out

    def _map_processes(self, jobs: list[Job], settings: RunSettings, on_result=None) -> list[dict]:
        import concurrent.futures as cf
        import multiprocessing as mp
        import threading

        workers = min(self.workers, len(jobs))
        # spawn, not fork: torch, faiss and OpenMP runtimes must start fresh in each worker; the
        # thread variables are read when those libraries load, so they go in the environment the
        # workers inherit (the parent only waits meanwhile)
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        saved = {k: os.environ.get(k) for k in names}
        for k in names:
            os.environ[k] = saved[k] or threads
        ctx = mp.get_context("spawn")
        relay = ctx.Queue() if not settings.quiet else None
        settings_d = {**settings.__dict__, "quiet": True}
        out: list[dict | None] = [None] * len(jobs)
        bars: dict = {}
        stop = threading.Event()
        bar = None
        if not settings.quiet:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(jobs), desc=f"jobs ({workers} workers)", unit="job")

            def draw():                     # one line per worker: its job's current phase
                while not stop.is_set():
                    try:
                        pid, desc, done, total = relay.get(timeout=0.2)
                    except Exception:  # noqa: BLE001 - queue.Empty, or the queue closed at the end
                        continue
                    b = bars.get(pid)
                    if b is None:
                        b = bars[pid] = tqdm(total=total, desc=desc, position=len(bars) + 1, leave=False)
                    if b.desc != desc or b.total != total:
                        b.reset(total=total)
                        b.set_description_str(desc)
                    b.n = done
                    b.refresh()
            drawer = threading.Thread(target=draw, daemon=True)
            drawer.start()
        try:
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                        initargs=(relay,)) as pool:
                futures = {pool.submit(run_job, jobs[i].to_dict(), settings_d): i for i in schedule(jobs)}
                try:
                    for fut in cf.as_completed(futures):
                        rec = fut.result()
                        out[futures[fut]] = rec
                        if on_result:
                            on_result(rec)
                        if bar:
                            bar.update()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            stop.set()
            for b in bars.values():
                b.close()
            if bar:
                bar.close()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return out


def _worker_init(relay) -> None:
    """In each worker process of a parallel local run: relay progress to the parent."""
    from . import context
    context.PROGRESS_RELAY = relay


class DaskExecutor:
    """Runs jobs on a Dask distributed cluster: ``scheduler`` address, or a LocalCluster it starts.

    Each job runs ``run_job`` on a worker, which writes its own record (the results directory
    must be visible to workers: a shared filesystem, or a local cluster).
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1):
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker

    def map(self, jobs: list[Job], settings: RunSettings, on_result=None) -> list[dict]:
        try:
            from dask.distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise UserError("the dask executor needs dask distributed: pip install 'visrep[dist]'") from None
        preflight(settings)
        cluster = None
        if self.scheduler:
            client = Client(self.scheduler)
        else:
            cluster = LocalCluster(n_workers=self.n_workers or 2, threads_per_worker=self.threads_per_worker,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        settings_d = settings.__dict__.copy()
        settings_d["results_dir"] = str(Path(settings.results_dir).resolve())
        if settings_d["cache_dir"]:
            settings_d["cache_dir"] = str(Path(settings_d["cache_dir"]).resolve())
        try:
            futures = [client.submit(run_job, job.to_dict(), settings_d, key=f"visrep-{job.job_id}", pure=False)
                       for job in jobs]
            index = {f.key: i for i, f in enumerate(futures)}
            out: list[dict | None] = [None] * len(jobs)
            iterator = as_completed(futures)
            if not settings.quiet and len(jobs) > 1:
                from tqdm.auto import tqdm
                iterator = tqdm(iterator, total=len(jobs), desc="jobs (dask)", unit="job")
            for fut in iterator:
                rec = fut.result()
                out[index[fut.key]] = rec
                if on_result:
                    on_result(rec)
            return out
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
