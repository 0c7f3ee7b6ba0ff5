"""``visrep rehearse [--out DIR] [--quick] [--table ID]``: run every full-scale row of the report's tables
end to end on miniature copies of the real on-disk layouts.

For each dataset a full-scale cell names, :mod:`visrep.datasets.miniature` writes a miniature in the
dataset's exact layout (real photographs under real file names, ground truth in the publisher's
format) under ``DIR/data``. Each full-scale cell's configuration (``reports.evaluate.cell_spec`` ->
:class:`visrep.spec.Experiment` -> :class:`visrep.spec.Job`, exactly as ``visrep report`` resolves it)
then runs through :func:`visrep.runner.run_job` -- loader from files, features, index, protocol,
record -- with only its *sizes* scaled down by :data:`SCALE_DOWN` (one documented rule per parameter
name). Per cell it prints and writes (``DIR/rehearsal.md``, ``DIR/rehearsal.json``): table/row/column,
configuration, status (ok / failed with the error / skipped with the reason), wall time, peak memory
and a *linear* estimate of the full-scale time and memory (x full images / miniature images).

A network weights file a row names but this machine lacks (GoogLeNet, VGG16, ResNet-101; torchvision's
or cnnimageretrieval-pytorch's file names) is replaced by a randomly initialised stand-in in the layout its
name implies, written as ``DIR/data/models/<same name>`` (:func:`with_stand_ins`): the row's loading,
extraction and training code runs; the cell says so, and its metrics mean nothing (neither do the
miniature's).

The miniatures are not the publisher's files, so declared-digest checks are suspended for files
under ``DIR/data`` only (:func:`visrep.datasets.miniature.digest_checks_suspended`); the cache is off,
so every timing includes feature extraction.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import time
from pathlib import Path

from . import Command


def _at_most(cap):
    return lambda v, n: v if v is None else min(v, cap(n) if callable(cap) else cap)


#: parameter name -> (rule(value, n), what it does), n = the miniature's database size (retrieval) or its
#: smallest split (labelled sets: :attr:`visrep.datasets.miniature.Miniature.n_scale`). Applied to
#: method, dataset and protocol parameters of that name; everything else runs as configured.
SCALE_DOWN = {
    "k": (_at_most(lambda n: min(16, n - 2)), "vocabulary size / neighbours: min(k, 16, n - 2)"),
    "kq": (_at_most(lambda n: min(16, n - 2)), "query neighbours: min(kq, 16, n - 2)"),
    "k_euclidean": (_at_most(lambda n: n - 2), "min(k, n - 2)"),
    "k_manifold": (_at_most(lambda n: n - 2), "min(k, n - 2)"),
    "k_manifold_neg": (_at_most(lambda n: n - 2), "min(k, n - 2)"),
    "k_pos": (_at_most(lambda n: n - 2), "MoM's positive pool neighbours: min(k_pos, n - 2)"),
    "k_neg": (_at_most(lambda n: n - 2), "MoM's negative pool neighbours: min(k_neg, n - 2)"),
    "rank": (_at_most(lambda n: n - 2), "FSR rank: min(rank, n - 2)"),
    "n_anchors": (_at_most(lambda n: n), "min(n_anchors, n)"),
    "per_anchor": (_at_most(4), "min(per_anchor, 4)"),
    "shortlist": (_at_most(lambda n: n), "re-ranked shortlist: min(shortlist, n)"),
    "topk": (_at_most(lambda n: n), "min(topk, n)"),
    "pca_dim": (_at_most(lambda n: max(2, n // 2)), "min(pca_dim, n / 2)"),
    "vocab_niter": (_at_most(3), "k-means iterations: min(niter, 3)"),
    "niter": (_at_most(3), "k-means iterations: min(niter, 3)"),
    "held_out": (_at_most(1000), "min(held_out, 1000)"),
    "max_features": (lambda v, n: 200 if v == 0 or v > 200 else v, "local features per image: at most 200 (0 = all)"),
    "imsize": (_at_most(128), "CNN input side: min(imsize, 128)"),
    "descriptor": (lambda v, n: _descriptor(v), "a CNN descriptor named without parameters gets ':imsize=128'"),
    "epochs": (_at_most(1), "min(epochs, 1)"),
    "sup_epochs": (_at_most(1), "min(epochs, 1)"),
    "mt_epochs": (_at_most(1), "min(epochs, 1)"),
    "rounds": (_at_most(1), "min(rounds, 1)"),
    "episodes": (_at_most(2), "training episodes: min(episodes, 2)"),
    "implant_steps": (_at_most(2), "min(implant_steps, 2)"),
    "egm_iter": (_at_most(3), "min(egm_iter, 3)"),
    "n_episodes": (_at_most(2), "test episodes: min(n_episodes, 2)"),
    "n_query": (_at_most(2), "queries per class and episode: min(n_query, 2)"),
    "train_query": (_at_most(2), "queries per class and training episode: min(train_query, 2)"),
    "train_shot": (lambda v, n: 2 if v is None else min(v, 2),
                   "support items per class and training episode: min(train_shot, 2) (None, the test shot: 2)"),
    "batch": (_at_most(lambda n: max(2, n // 2)), "min(batch, n / 2)"),
    "labelled_per_batch": (_at_most(4), "min(labelled_per_batch, 4)"),
    "per_class": (_at_most(4), "images of each class in a metric-learning minibatch: min(per_class, 4)"),
    "images_per_epoch": (_at_most(lambda n: n), "min(images_per_epoch, n)"),
    "labelled": (None, "the miniature's labelled subset (its <N>_balanced_labels file)"),
    "label_split": (None, "the miniature's one split file of that subset (00.txt)"),
}

LINEAR_NOTE = ("Full-scale estimates are linear: miniature time (memory) x full-scale images / miniature images. "
               "That holds for per-image work (feature extraction, encoding, per-image training steps) and is a "
               "lower bound where cost grows faster: exact kNN-graph construction and brute-force search "
               "(quadratic in n), vocabulary training (x k: vocabulary sizes are scaled down here), diffusion "
               "(x k neighbours), training (x epochs: scaled down here). Memory is the Python-traced peak "
               "(tracemalloc: numpy included, torch/faiss native buffers not) and the growth of the process's "
               "maximum RSS. Heavy libraries are imported before timing; a network's first load (weights file) is "
               "inside the first cell that uses it, a fixed cost the linear estimate over-scales. Wall times are "
               "of one process on a shared machine.")


def _descriptor(v):
    if not isinstance(v, str) or v == "auto" or ":" in v:
        return v
    from ..registry import methods
    try:
        cls = methods.get(v)
    except Exception:  # noqa: BLE001 - an unknown name is the run's error to report, not ours
        return v
    return f"{v}:imsize=128" if "imsize" in cls.param_names() else v


def scale_job(job, n: int, implied: dict):
    """The job with every parameter named in :data:`SCALE_DOWN` scaled to a miniature of `n` images;
    returns (new job, {"group.name": (old, new)} of the changed values)."""
    from ..spec import Job
    groups, changed = {}, {}
    for group in ("params", "dataset_params", "protocol_params"):
        out = {}
        for key, value in getattr(job, group).items():
            new = value
            if key in implied:
                new = implied[key] if value is not None else value
            elif key in SCALE_DOWN and SCALE_DOWN[key][0] is not None and not isinstance(value, bool):
                new = SCALE_DOWN[key][0](value, n)
            if new != value:
                changed[f"{group}.{key}"] = (value, new)
            out[key] = new
        groups[group] = out
    return Job(method=job.method, dataset=job.dataset, protocol=job.protocol, seed=job.seed,
               data_root=job.data_root, **groups), changed


def _missing_file(params: dict) -> str | None:
    for k, v in params.items():
        if isinstance(v, str) and ("/" in v or v.endswith((".pth", ".pt"))) and Path(v).suffix and not Path(v).exists():
            if not _WEIGHTS_PATH.search(v) or any(not Path(p).exists() for p in _WEIGHTS_PATH.findall(v)):
                return f"{k} = {v}"
    return None


#: a weights file named in a parameter, alone or inside a descriptor spec ('rmac:backbone=...;weights=PATH')
_WEIGHTS_PATH = re.compile(r"[^;=,\s]+\.pth?\b")


def with_stand_ins(job, root: Path):
    """(job, names): every weights file the job names that does not exist and whose name gives the
    architecture (:func:`visrep.methods.cnn.backbones.stand_in_weights`) replaced by a randomly
    initialised stand-in in the layout its name implies, written once as ``root/models/<same name>``."""
    from ..methods.cnn.backbones import stand_in_weights
    names: list[str] = []

    def fix(value):
        if not isinstance(value, str):
            return value
        for path in _WEIGHTS_PATH.findall(value):
            p = Path(path)
            if p.exists():
                continue
            out = root / "models" / p.name
            if not out.exists():
                obj = stand_in_weights(p.name)
                if obj is None:
                    continue
                import torch
                out.parent.mkdir(parents=True, exist_ok=True)
                torch.save(obj, out)
            value = value.replace(path, str(out))
            names.append(p.name)
        return value

    params = {k: fix(v) for k, v in job.params.items()}
    if not names:
        return job, []
    return dataclasses.replace(job, params=params, inputs=None), sorted(set(names))   # inputs: hashed anew


def _cells(table_id: str | None):
    """(table, row, column) of every full-scale published cell, in table order."""
    from ..reports.tables import load_tables
    tables = load_tables()
    if table_id and table_id not in {t.id for t in tables}:
        from ..errors import UserError, did_you_mean
        raise UserError(f"no table '{table_id}'{did_you_mean(table_id, [t.id for t in tables])}")
    for t in tables:
        if table_id and t.id != table_id:
            continue
        for r in t.rows:
            if r.scale != "full":
                continue
            for c in t.columns:
                if c.id in r.published:
                    yield t, r, c


def _measure(fn):
    """(result, wall s, tracemalloc peak MB, max-RSS growth MB) of fn()."""
    import resource
    import tracemalloc
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        wall = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return out, wall, peak, rss


def _warm_up() -> None:
    """Import the heavy libraries once before any timing: a full run pays this once, not per image."""
    import importlib
    for mod in ("cv2", "faiss", "torch", "torchvision", "scipy.sparse.linalg", "sklearn.cluster"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


def rehearse(out: str | Path, quick: bool = False, table: str | None = None, datasets=None, rows=None,
             shared="auto", log=None, warm_up: bool = True, device: str = "cpu") -> list[dict]:
    """Run the rehearsal; returns one dict per full-scale cell (also written under `out`).

    `datasets` / `rows` ("table/row" or "table/row/column") restrict it; `quick` runs one cell per dataset
    (the first that can run). `shared`: the workplace data folder for real names ("auto": found).
    `warm_up`: import the heavy libraries before timing (see :data:`LINEAR_NOTE`).
    """
    from ..context import shared_data_dir
    from ..datasets import miniature
    from ..errors import MissingDataError, UserError
    from ..reports.evaluate import NOT_RUN, Resolver, cell_spec
    from ..runner import RunSettings, run_job

    log = log or (lambda m: None)
    out = Path(out)
    root = out / "data"
    root.mkdir(parents=True, exist_ok=True)
    shared = shared_data_dir() if shared == "auto" else (Path(shared) if shared else None)
    settings = RunSettings(results_dir=str(out / "results"), cache_dir=str(out / "cache"), use_cache=False,
                           force=True, quiet=True, device=device)
    resolver = Resolver(settings.results_dir, data_root=root, shared=shared, check_data=False)
    if warm_up:
        _warm_up()
    minis: dict[str, object] = {}
    done_datasets: set[str] = set()
    no_loader: set[str] = set()
    results = []
    for t, r, c in _cells(table):
        if datasets and c.dataset not in datasets:
            continue
        if rows and f"{t.id}/{r.id}" not in rows and f"{t.id}/{r.id}/{c.id}" not in rows:
            continue
        if quick and c.dataset in done_datasets:
            continue
        if c.dataset in no_loader:        # said once per dataset
            continue
        item = {"table": t.id, "row": r.id, "column": c.id, "method": r.method, "dataset": c.dataset,
                "protocol": c.protocol, "status": "skipped", "reason": "", "config": {}, "scaled": {}}
        results.append(item)
        spec = cell_spec(r, c)
        item["setting"] = " ".join(f"{k}={v}" for k, v in {**spec.params, **spec.dataset_params,
                                                            **spec.protocol_params}.items())
        res = resolver.resolve(spec)
        if res.status not in (NOT_RUN, "record") or res.job is None:
            item["reason"] = f"{res.status}: {res.reason}"
            if res.reason == f"dataset '{c.dataset}' has no loader":
                no_loader.add(c.dataset)
                item["row"], item["column"] = f"{r.id} (and every row)", f"{c.id} (every column on {c.dataset})"
            log(_line(item))
            continue
        job = res.job
        item["protocol"] = job.protocol
        item["config"] = {"params": job.params, "dataset_params": job.dataset_params,
                          "protocol_params": job.protocol_params}
        job, stand_ins = with_stand_ins(job, root)
        if stand_ins:
            item["stand_in"] = stand_ins
        missing = _missing_file(job.params)
        if missing:
            item["reason"] = f"weights/input file missing: {missing}"
            log(_line(item))
            continue
        if _missing_file(job.dataset_params) or any(isinstance(v, str) and "/" in v for v in job.dataset_params.values()):
            item["reason"] = (f"reads precomputed files given as dataset parameters "
                              f"({', '.join(k for k, v in job.dataset_params.items() if isinstance(v, str) and '/' in v)}), "
                              f"sized for the full dataset: not rehearsable on a miniature")
            log(_line(item))
            continue
        if job.dataset not in miniature.BUILDERS:
            item["reason"] = f"no miniature builder for dataset '{job.dataset}'"
            log(_line(item))
            continue
        if job.dataset not in minis:
            try:
                minis[job.dataset] = miniature.build(job.dataset, root, shared)
            except Exception as e:  # noqa: BLE001 - a builder failing is reported per cell, never fatal
                minis[job.dataset] = e
        mini = minis[job.dataset]
        if isinstance(mini, Exception):
            item.update(status="failed", reason=f"miniature: {type(mini).__name__}: {mini}")
            log(_line(item))
            continue
        done_datasets.add(job.dataset)
        scaled, changed = scale_job(job, mini.n_scale, mini.implied)
        item["scaled"] = {k: [a, b] for k, (a, b) in changed.items()}
        item["n_images"], item["n_scale"] = mini.n_images, mini.n_scale
        item["full_images"] = miniature.FULL_IMAGES.get(job.dataset)
        try:
            with miniature.digest_checks_suspended(root):
                rec, wall, peak, rss = _measure(functools.partial(run_job, scaled, settings))
        except (MissingDataError, UserError) as e:
            item.update(status="failed", reason=f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a crashing plugin is a finding of the rehearsal
            item.update(status="failed", reason=f"{type(e).__name__}: {e}")
        else:
            f = (item["full_images"] or 0) / mini.n_images
            item.update(status="ok", wall_s=round(wall, 3), peak_mb=round(peak, 2), rss_growth_mb=round(rss, 2),
                        metrics={k: v for k, v in (rec.get("metrics") or {}).items() if isinstance(v, (int, float))},
                        record=rec.get("_path"), device=(rec.get("provenance") or {}).get("device", "cpu"),
                        est_full_s=round(wall * f, 1) if f else None, est_full_peak_mb=round(peak * f, 1) if f else None)
            if item.get("stand_in"):
                item["reason"] = f"weights: random stand-in ({', '.join(item['stand_in'])}; metrics meaningless)"
        log(_line(item))
    write_outputs(out, results, quick=quick)
    return results


def _line(item: dict) -> str:
    where = f"{item['table']}/{item['row']}/{item['column']}"
    if item["status"] == "ok":
        return (f"ok       {where:<40} {item['wall_s']:7.2f} s  {item['peak_mb']:7.1f} MB  "
                f"full ~{_hms(item.get('est_full_s')):<8} [{item['method']} {item['setting']}]"[:220])
    return f"{item['status']:<8} {where:<40} {item['reason'][:160]}"


def _hms(s) -> str:
    if s is None:
        return "?"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def write_outputs(out: Path, results: list[dict], quick: bool = False) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    doc = {"quick": quick, "counts": counts, "scale_down": {k: v[1] for k, v in SCALE_DOWN.items()},
           "linear_estimate": LINEAR_NOTE, "cells": results}
    (out / "rehearsal.json").write_text(json.dumps(doc, indent=1, default=str))
    lines = ["# Readiness: full-scale rows rehearsed on miniature layouts", "",
             f"Cells: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}" + (" (quick: one per dataset)" if quick else ""),
             "", LINEAR_NOTE, "", "Size overrides (parameter: rule): " +
             "; ".join(f"`{k}` {v[1]}" for k, v in SCALE_DOWN.items()), "",
             "| table/row/column | method | dataset | setting (the row's) | status | scaled | time (s) | peak MB | RSS+ MB | full-scale time (linear) | full-scale MB | reason |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        scaled = ", ".join(f"{k.split('.', 1)[1]} {a}->{b}" for k, (a, b) in r.get("scaled", {}).items())
        lines.append("| " + " | ".join(str(x).replace("|", "/") for x in (
            f"{r['table']}/{r['row']}/{r['column']}", r["method"] or "-", r["dataset"], r.get("setting") or "-",
            r["status"], scaled or "-",
            r.get("wall_s", "-"), r.get("peak_mb", "-"), r.get("rss_growth_mb", "-"), _hms(r.get("est_full_s"))
            if r["status"] == "ok" else "-", r.get("est_full_peak_mb", "-"), r["reason"][:200] or "-")) + " |")
    (out / "rehearsal.md").write_text("\n".join(lines) + "\n")


def _add(p):
    p.add_argument("--out", default="rehearsal", help="output folder: data/ (the miniatures), results/, "
                   "rehearsal.md, rehearsal.json (default: ./rehearsal)")
    p.add_argument("--quick", action="store_true", help="only one full-scale cell per dataset")
    p.add_argument("--table", help="only this table's rows (see `visrep list tables`)")
    p.add_argument("--dataset", action="append", help="only cells on this dataset (repeatable)")
    p.add_argument("--device", default="auto", metavar="{cpu,auto,cuda,cuda:N}",
                   help="where torch and faiss compute (default auto: a CUDA GPU when torch sees one); each cell's "
                        "record says where it ran, so GPU timings are told apart from CPU ones")


def _handler(args) -> int:
    quiet = getattr(args, "quiet", False)
    from ..device import check_device_name, resolve_device
    device = check_device_name(args.device)
    if device.startswith("cuda"):
        resolve_device(device)          # no CUDA: say so before any cell runs
    results = rehearse(args.out, quick=args.quick, table=args.table, datasets=args.dataset,
                       log=None if quiet else print, device=device)
    failed = sum(r["status"] == "failed" for r in results)
    if not quiet:
        ok = sum(r["status"] == "ok" for r in results)
        print(f"{len(results)} cell(s): {ok} ok, {failed} failed, {len(results) - ok - failed} skipped; "
              f"{Path(args.out) / 'rehearsal.md'}", file=sys.stderr)
    return 1 if failed else 0


COMMAND = Command("rehearse", _add, _handler,
                  "run every full-scale row of the tables end to end on miniature copies of the real layouts",
                  order=45)
