"""The result store: one JSON record per job, written atomically, loadable as a DataFrame.

Record layout (schema version 1)::

    {"schema": 1, "job": "<16 hex>", "method": "knn", "dataset": "oxford5k",
     "protocol": "oxford", "params": {...}, "dataset_params": {...}, "protocol_params": {...},
     "seed": 0, "inputs": {"dataset_params.features": "sha256:..."},  # content of the files parameters name
     "metrics": {"map": 0.403, ...}, "timings": {"load": s, "method": s, ...},
     "stats": {...},  # what the method reports that is neither a metric nor a time (memory, iterations)
     "manifest": "<dataset manifest hash>", "created": "ISO time", "provenance": {...}}

Records live at ``<root>/<dataset>/<method>/<job>.json``; the path depends only on the job's
identity (:meth:`visrep.spec.Job.identity`: plugins, parameters with files by content, seed), so
a rerun finds what exists and skips it (resume), and a changed input file makes a new job.
"""
from __future__ import annotations

import json
import os
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
    """Write `record` as JSON via a temp file + rename, so readers never see half a record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read result record {path}: {e}") from None
    if not isinstance(record, dict) or "metrics" not in record:
        raise UserError(f"{path} is not a visrep result record (no 'metrics')")
    return record


def iter_records(root: str | Path) -> Iterable[tuple[Path, dict]]:
    """Yield (path, record) for every record under `root` (a directory or one .json file)."""
    root = Path(root)
    if root.is_file():
        yield root, read_record(root)
        return
    if not root.exists():
        raise UserError(f"no results at {root}")
    for path in sorted(root.rglob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        yield path, read_record(path)


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
