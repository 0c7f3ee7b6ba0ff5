"""The ``visrep`` command line.

Exit codes: 0 success; 1 a job failed for a reason that is not the user's (a bug, a crash);
2 bad input (unknown name, bad parameter, missing file) -- nothing is written in that case.
Other commands (``report``, ``data``, ``eval``, ``bench``) register themselves from their
modules through ``COMMANDS`` so this file stays small.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

from .errors import UserError

#: name -> (add_arguments(parser), handler(args) -> exit code, help); extended by other modules
COMMANDS: dict[str, tuple[Callable, Callable, str]] = {}
_OPTIONAL_COMMAND_MODULES = ("visrep.reports.cli", "visrep.datasets.cli", "visrep.protocols.cli", "visrep.bench")


def add_command(name: str, add_arguments: Callable, handler: Callable, help: str) -> None:
    """Register a subcommand: `add_arguments(parser)` declares its options, `handler(args)` runs it."""
    COMMANDS[name] = (add_arguments, handler, help)


# ---------------------------------------------------------------- list
def _add_list(p):
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "methods", "datasets", "protocols", "tables"], help="what to list")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cmd_list(args) -> int:
    from .registry import REGISTRIES
    kinds = ["method", "dataset", "protocol"] if args.what == "all" else [args.what.rstrip("s")]
    if args.what == "tables":
        try:
            from .reports.tables import list_tables
        except ImportError:
            raise UserError("paper tables are not available in this installation") from None
        rows = list_tables()
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                print(f"{r['name']:<28} {r['title']}")
        return 0
    out = {}
    for kind in kinds:
        out[kind + "s"] = [{"name": c.name, "task": c.task, "summary": c.summary, "cite": c.cite,
                            "params": {p.name: p.default for p in c.params}} for c in REGISTRIES[kind]]
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    for kind, rows in out.items():
        print(f"{kind}:")
        for r in rows:
            print(f"  {r['name']:<20} {r['task']:<16} {r['summary']}")
    return 0


# ---------------------------------------------------------------- run
def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        out[k] = [x for x in v.split(",")] if "," in v and not v.startswith(("/", ".")) else v
    return out


def _add_run(p):
    p.add_argument("spec", nargs="?", help="a spec file (.toml/.yaml) or a built-in spec name such as 'default'")
    p.add_argument("--method", "-m", help="method name (see `visrep list methods`)")
    p.add_argument("--dataset", "-d", help="dataset name")
    p.add_argument("--protocol", "-p", help="protocol name (default: the dataset's standard protocol)")
    p.add_argument("--set", "-s", action="append", metavar="KEY=VALUE",
                   help="parameter of the method, dataset or protocol; comma-separated values make a grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="data root (overrides $VISREP_DATA)")
    p.add_argument("--results", help="results directory (default: ./results or $VISREP_RESULTS)")
    p.add_argument("--cache-dir", help="cache directory (default: ~/.cache/visrep/cache or $VISREP_CACHE)")
    p.add_argument("--no-cache", action="store_true", help="recompute every intermediate")
    p.add_argument("--force", action="store_true", help="re-run jobs whose record exists")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://host:port (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=None, help="workers of the LocalCluster the dask executor starts")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list on stdout")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit")


def _cmd_run(args) -> int:
    from .runner import DaskExecutor, LocalExecutor, RunSettings
    from .spec import expand_experiment, jobs_from_spec

    if args.spec and args.method:
        raise UserError("give either a spec file or --method/--dataset, not both")
    if args.spec:
        skipped: list[str] = []
        jobs = jobs_from_spec(args.spec, data_root=args.data_root, skipped=skipped)
        for reason in skipped:
            print(f"skipped: {reason}", file=sys.stderr)
        if args.set:
            raise UserError("--set applies to --method runs; put parameters of a spec in the spec file")
    else:
        if not args.method or not args.dataset:
            raise UserError("`visrep run` needs a spec file, or --method and --dataset")
        exp = {"method": args.method, "dataset": args.dataset, "protocol": args.protocol,
               "params": _parse_set(args.set), "seed": args.seed}
        jobs = expand_experiment(exp, data_root=args.data_root, where="command line")
    if args.dry_run:
        for j in jobs:
            print(json.dumps(j.to_dict(), default=str))
        return 0
    settings = RunSettings(force=args.force, quiet=args.quiet or args.json, use_cache=not args.no_cache,
                           cache_dir=args.cache_dir)
    if args.results:
        settings.results_dir = args.results
    executor = (DaskExecutor(args.scheduler, n_workers=args.workers) if args.executor == "dask"
                else LocalExecutor())

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


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
    return str(v)


def _short_params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if v is not None)


# ---------------------------------------------------------------- show
def _add_show(p):
    p.add_argument("path", nargs="?", help="results directory or record file (default: ./results)")
    p.add_argument("--metric", "-k", action="append", help="metric columns to show (default: all)")
    p.add_argument("--json", action="store_true", help="print the table as JSON records")


def _cmd_show(args) -> int:
    import pandas as pd

    from .results import load
    df = load(args.path)
    if df.empty:
        print("no records")
        return 0
    metric_cols = [c for c in df.columns if c.startswith("metrics.")]
    if args.metric:
        metric_cols = [f"metrics.{m}" for m in args.metric if f"metrics.{m}" in df.columns]
    param_cols = [c for c in df.columns if c.startswith("params.") and df[c].nunique(dropna=True) > 1]
    cols = ["dataset", "protocol", "method", *param_cols, *metric_cols]
    if "timings.method" in df.columns:
        df["seconds"] = df["timings.method"]
        cols.append("seconds")
    table = df[cols].sort_values(["dataset", "protocol", "method", *param_cols])
    table = table.rename(columns=lambda c: c.split(".", 1)[-1]).astype(object)
    table = table.where(table.notna(), "")
    if args.json:
        print(table.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_columns", 50):
            print(table.to_string(index=False, formatters={c: _fmt for c in table.columns}))
    return 0


COMMANDS.update({
    "list": (_add_list, _cmd_list, "list methods, datasets, protocols or paper tables"),
    "run": (_add_run, _cmd_run, "run a spec file or one method on one dataset"),
    "show": (_add_show, _cmd_show, "show result records as a table"),
})


def _load_optional_commands() -> None:
    import importlib
    for mod in _OPTIONAL_COMMAND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_optional_commands()
    from . import __version__
    parser = argparse.ArgumentParser(prog="visrep", description="Benchmark and reproduction suite for visual search "
                                     "and representation learning (Avrithis, 'Exploring and Learning from Visual Data').")
    parser.add_argument("--version", action="version", version=f"visrep {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or human lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, handler, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or human lines")
        add(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except UserError as e:
        print(f"visrep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visrep: interrupted; finished jobs are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
