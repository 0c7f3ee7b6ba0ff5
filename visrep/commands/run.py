"""``visrep run SPEC`` or ``visrep run --method M --dataset D [--set KEY=VALUE ...]``: run jobs, write records."""
from __future__ import annotations

import json
import sys
import time

from ..device import check_device_name, resolve_device
from ..errors import UserError
from ..params import parse_assignments, plugin_classes
from . import Command


def _add_run(p):
    p.add_argument("spec", nargs="?", help="a spec file (.toml/.yaml) or a built-in spec name such as 'default'")
    p.add_argument("--method", "-m", help="method name (see `visrep list methods`)")
    p.add_argument("--dataset", "-d", help="dataset name")
    p.add_argument("--protocol", "-p", help="protocol name (default: the dataset's standard protocol)")
    p.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="parameter of the method, dataset or protocol; for a single-valued parameter comma-separated "
                        "values make a grid (k=30,50); a list parameter takes one list in brackets ('ks=[1,2,4,8]')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="data root (overrides $VISREP_DATA)")
    p.add_argument("--results", help="results directory (default: ./results or $VISREP_RESULTS)")
    p.add_argument("--cache-dir", help="cache directory (default: ~/.cache/visrep/cache or $VISREP_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="recompute every intermediate")
    p.add_argument("--force", action="store_true", help="re-run jobs whose record exists")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://host:port (default: start a LocalCluster)")
    p.add_argument("--workers", default=None, metavar="N|auto",
                   help="jobs run at once: local executor, N worker processes ('auto': one per core; default 1, or "
                        "the spec's `workers`); dask executor, the size of the LocalCluster it starts")
    p.add_argument("--device", default="auto", metavar="{cpu,auto,cuda,cuda:N}",
                   help="where torch (feature extraction, training, attacks) and faiss (kNN) compute: 'auto' (default) "
                        "takes a CUDA GPU when torch sees one; not part of a job's identity, recorded in its provenance")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list on stdout")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit")


def _claim_jobs(jobs, args) -> list:
    """The jobs every claim of the report's tables needs that `jobs` lacks (spec key ``claims = "all"``)."""
    from ..reports.evaluate import claim_jobs
    from ..runner import RunSettings
    results = args.results or RunSettings().results_dir
    extra, not_here = claim_jobs(results, args.data_root)
    if not_here and not args.quiet:
        print(f"{len(not_here)} claim run(s) cannot run here (method or data missing; `visrep report` says which)",
              file=sys.stderr)
    have = {j.job_id for j in jobs}
    return [j for j in extra if j.job_id not in have]


def _cmd_run(args) -> int:
    from ..runner import DaskExecutor, LocalExecutor, RunSettings
    from ..spec import Experiment, jobs_from_spec, read_spec

    if args.spec and args.method:
        raise UserError("give either a spec file or --method/--dataset, not both")
    if args.spec:
        skipped: list[str] = []
        jobs = jobs_from_spec(args.spec, data_root=args.data_root, skipped=skipped)
        for reason in skipped:
            print(f"skipped: {reason}", file=sys.stderr)
        spec_file = read_spec(args.spec)
        spec_workers = spec_file.workers
        if spec_file.claims == "all":
            jobs += _claim_jobs(jobs, args)
        if args.set:
            raise UserError("--set applies to --method runs; put parameters of a spec in the spec file")
    else:
        spec_workers = None
        if not args.method or not args.dataset:
            raise UserError("`visrep run` needs a spec file, or --method and --dataset")
        exp = Experiment(method=args.method, dataset=args.dataset, protocol=args.protocol,
                         params=parse_assignments(args.set, plugin_classes(args.method, args.dataset, args.protocol)),
                         seed=args.seed)
        jobs = exp.jobs(data_root=args.data_root, where="command line")
    device = check_device_name(args.device)
    if device.startswith("cuda"):
        resolve_device(device)          # no CUDA: say so before any job starts
    if args.dry_run:
        for j in jobs:
            print(json.dumps(j.to_dict(), default=str))
        return 0
    settings = RunSettings(force=args.force, quiet=args.quiet or args.json, use_cache=not args.no_cache,
                           cache_dir=args.cache_dir, device=device)
    if args.results:
        settings.results_dir = args.results
    workers = _workers(args.workers, spec_workers, device, args.executor)
    executor = (DaskExecutor(args.scheduler, n_workers=workers) if args.executor == "dask"
                else LocalExecutor(workers or 1))

    def show(rec):
        if not args.json and not args.quiet:
            tag = " (exists; --force re-runs)" if rec["_skipped"] else ""
            from tqdm.auto import tqdm
            tqdm.write(f"{rec['summary']}   [{rec['method']} {_short_params(rec['params'])}]{tag}")

    t0 = time.perf_counter()
    records = executor.map(jobs, settings, on_result=show)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in records], indent=1))
    elif not args.quiet:
        done = sum(not r["_skipped"] for r in records)
        print(f"{len(records)} job(s), {done} run, {len(records) - done} already done, "
              f"{time.perf_counter() - t0:.1f} s; records in {settings.results_dir}", file=sys.stderr)
    return 0


def _workers(given, from_spec, device: str, executor: str) -> int | None:
    """--workers N|auto, else the spec's ``workers``; 'auto' = one per core, but one at a time when the
    jobs would share a GPU (device cuda, or auto on a machine whose torch sees one)."""
    import os
    value = given if given is not None else from_spec
    if value is None:
        return None
    if str(value) == "auto":
        if executor == "local" and device != "cpu" and resolve_device(device) != "cpu":
            return 1
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"--workers {value!r}: a number >= 1, or 'auto' (one per core)")
    return n


def _short_params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


COMMAND = Command("run", _add_run, _cmd_run, "run a spec file or one method on one dataset", order=20)
