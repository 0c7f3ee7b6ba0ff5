"""The result store: one JSON record per job, written atomically, loadable as a DataFrame.

Record layout (schema version 1)::

    {"schema": 1, "job": "<16 hex>", "method": "knn", "dataset": "oxford5k",
     "protocol": "oxford", "params": {...}, "dataset_params": {...}, "protocol_params": {...},
     "seed": 0, "inputs": {"dataset_params.features": "sha256:..."},  # content of the files parameters name
     "metrics": {"map": 0.403, ...},
     "per_item": {"map": [0.61, null, ...]},  # per query/episode/image values whose mean is the metric
     "timings": {"load": s, "method": s, ...},
     "stats": {...},  # what the method reports that is neither a metric nor a time (memory, iterations)
     "manifest": "<dataset manifest hash>", "created": "ISO time", "provenance": {...}}

Records live at ``<root>/<dataset>/<method>/<job>.json``; the path depends only on the job's
identity (:meth:`visrep.spec.Job.identity`: plugins, parameters with files by content, seed), so
a rerun finds what exists and skips it (resume), and a changed input file makes a new job.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import UserError

SCHEMA_VERSION = 1


def default_results_dir() -> Path:
    return Path(os.environ.get("VISREP_RESULTS", "results"))


def record_path(root: str | Path, dataset: str, method: str, job_id: str) -> Path:
    return Path(root) / dataset / method / f"{job_id}.json"


def write_record(path: str | Path, record: dict) -> Path:
    """Write `record` as JSON via a temp file + rename, so readers never see half a record.

    A write that fails (full disk, folder made read-only meanwhile) is a UserError naming the file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write the result record {path} ({e.strerror or e}): free space in "
                        f"{path.parent} or choose another folder with --results") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DamagedRecord(UserError):
    """A record file that is not a readable visrep record (truncated, edited, foreign JSON)."""


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedRecord(f"cannot read result record {path}: {e}") from None
    if not isinstance(record, dict) or "metrics" not in record:
        raise DamagedRecord(f"{path} is not a visrep result record (no 'metrics')")
    return record


def set_aside(path: str | Path, why: str) -> Path:
    """Move a damaged record to ``<name>.corrupt`` (kept for inspection, no longer read); say so."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    print(f"visrep: damaged record {path} moved aside to {target.name} ({why})", file=sys.stderr)
    return target


def iter_records(root: str | Path, damaged: list | None = None) -> Iterable[tuple[Path, dict]]:
    """Yield (path, record) for every record under `root` (a directory or one .json file).

    A damaged record is skipped: listed in `damaged` (path, reason) when given, else reported on
    stderr; the rest are read.
    """
    root = Path(root)
    if root.is_file():
        yield root, read_record(root)
        return
    if not root.exists():
        raise UserError(f"no results at {root}")
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            rec = read_record(path)
        except UserError as e:
            if damaged is not None:
                damaged.append((str(path), str(e)))
            else:
                print(f"visrep: skipping {e}", file=sys.stderr)
            continue
        yield path, rec


def load(path: str | Path = None):
    """All records under `path` (default: the results directory) as a pandas DataFrame.

    One row per record; columns ``method, dataset, protocol, seed, job, path`` plus
    ``params.*``, ``metrics.*``, ``timings.*`` flattened, and ``commit``/``dirty``.
    """
    import pandas as pd

    rows = []
    for p, rec in iter_records(path if path is not None else default_results_dir()):
        row = {k: rec.get(k) for k in ("method", "dataset", "protocol", "seed", "job", "created")}
        row["path"] = str(p)
        for group in ("params", "dataset_params", "protocol_params", "metrics", "timings", "stats"):
            for k, v in (rec.get(group) or {}).items():
                row[f"{group}.{k}"] = v if not isinstance(v, (list, dict)) else json.dumps(v)
        prov = rec.get("provenance") or {}
        row["commit"] = prov.get("commit")
        row["dirty"] = prov.get("dirty")
        rows.append(row)
    return pd.DataFrame(rows)
