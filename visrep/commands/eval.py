"""``visrep eval RANKS --dataset NAME``: score a ranking produced by any tool.

The ranking file follows the revisitop convention: an integer array of shape
(n_ranked <= n_db, n_queries), 0-based database indices, column j = query j best first; as
``.npy`` or as whitespace-separated text (one row per rank position). The dataset's ground
truth is read from ``--data-root`` (default ``$VISREP_DATA``), e.g.
``DIR/roxford5k/gnd_roxford5k.pkl``; images and descriptors are not needed. ``--json`` prints
``{"dataset": "roxford5k", "easy": {"map": .., "mp@1": .., "mp@5": .., "mp@10": ..},
"medium": {...}, "hard": {...}}`` (fractions) for revisitop datasets, and
``{"dataset": .., "protocol": .., "map": .., "n_queries": ..}`` otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import Command

if TYPE_CHECKING:
    import numpy as np


def read_ranks(path: str | Path) -> np.ndarray:
    """Read a ranking file (.npy or text) into a 2-D integer array; UserError naming the file."""
    import numpy as np
    path = Path(path)
    if not path.exists():
        raise UserError(f"ranking file {path} does not exist")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
    else:
        try:
            arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise UserError(f"{path}: not a whitespace-separated table of integers ({e})") from None
    if arr.ndim != 2:
        raise UserError(f"{path}: expected a 2-D (n_db, n_queries) ranking, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UserError(f"{path}: ranking holds non-integer values (expected 0-based database indices)")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise UserError(f"{path}: ranking must hold integers, got dtype {arr.dtype}")
    return arr


def ground_truth_data(dataset, ctx):
    """The dataset's names + ground truth without images or descriptors."""
    if hasattr(dataset, "load_ground_truth"):
        return dataset.load_ground_truth(ctx)
    from ..datasets.oxford_paris import MatlabRetrievalDataset
    if isinstance(dataset, MatlabRetrievalDataset):
        from ..datasets.holidays_instre import matlab_ground_truth
        return matlab_ground_truth(dataset, ctx)
    return dataset.load(ctx)


def evaluate_file(ranks_path, dataset_name: str, data_root=None, protocol: str | None = None):
    """Score `ranks_path` on `dataset_name`; returns (metrics, data, protocol instance)."""
    from ..context import RunContext
    from ..registry import datasets, protocols

    ds = datasets.create(dataset_name)
    if getattr(ds, "task", "") != "retrieval":
        raise UserError(f"dataset '{dataset_name}' is a {ds.task} dataset; `visrep eval` scores retrieval rankings")
    proto = protocols.create(protocol or ds.default_protocol)
    ctx = RunContext(data_root=data_root, quiet=True)
    data = ground_truth_data(ds, ctx)
    ranks = read_ranks(ranks_path)
    if ranks.shape[0] == data.n_queries and ranks.shape[1] != data.n_queries and ranks.shape[1] <= data.n_db:
        raise UserError(f"{ranks_path}: shape {ranks.shape} looks like queries x database; the revisitop "
                        f"convention is database x queries ({data.n_db}, {data.n_queries}): transpose it")
    try:
        metrics = proto.evaluate({"ranks": ranks}, data)
    except UserError as e:
        raise UserError(f"{ranks_path}: {e}") from None
    return metrics, data, proto


def _add_eval(p):
    p.add_argument("ranks", help="ranking file: (n_db, n_queries) 0-based indices, .npy or text")
    p.add_argument("--dataset", "-d", required=True, help="dataset name, e.g. roxford5k")
    p.add_argument("--protocol", "-p", help="protocol (default: the dataset's standard one)")
    p.add_argument("--data-root", help="folder holding <dataset>/gnd_... (default: $VISREP_DATA)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _cmd_eval(args) -> int:
    metrics, data, proto = evaluate_file(args.ranks, args.dataset, args.data_root, args.protocol)
    if args.json:
        if proto.name == "revisitop":
            out = {"dataset": args.dataset}
            for setup in ("easy", "medium", "hard"):
                out[setup] = {k.split(".", 1)[1]: v for k, v in metrics.items()
                              if k.startswith(setup + ".") and k != f"{setup}.n_queries"}
        else:
            out = {"dataset": args.dataset, "protocol": proto.name, **metrics}
        print(json.dumps(out))
    else:
        print(proto.format(metrics, data))
    return 0


COMMAND = Command("eval", _add_eval, _cmd_eval, "score a ranking file (revisitop convention) on a dataset's ground truth",
                  order=50)
