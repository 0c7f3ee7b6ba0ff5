"""Vector-search / quantization protocol: recall@R, quantization MSE, bytes per vector.

Jégou, Douze & Schmid, Product quantization for nearest neighbor search, IEEE TPAMI 2011
(Sec. V): recall@R is the proportion of queries whose true nearest neighbour is ranked in the
first R positions ("1-recall@R"); the quantization distortion is the mean squared error
E ||x - q(x)||^2 over database vectors (sum over dimensions, mean over vectors); memory is the
code size in bytes per vector.

Outputs contract (task ``quantization``; the protocol reads retrieval datasets,
:class:`visrep.data.RetrievalData` with ``db_features``/``query_features``): ``ranks`` int
(R_max, n_q), 0-based, best first (revisitop convention); optional ``reconstruction`` float
(n_db, d) = q(x); ``bytes_per_vector`` (number) or ``codes`` (n_db, ...) uint8 array; optional
``db_vectors`` (n_db, d) and ``query_vectors`` (n_q, d): the vectors the method actually
encoded and searched (e.g. the L2-normalized dataset features), default ``data.db_features`` /
``data.query_features``. The true nearest neighbour (L2, among those vectors) comes from
``data.extra["gt_nn"]`` (n_q,) when given and the method searched the dataset's own vectors
(e.g. the ``_groundtruth.ivecs`` of SIFT1M/GIST1M), else it is computed exactly; the MSE is
measured against the same database vectors. Metrics: ``recall@1``, ``recall@10``,
``recall@100`` (the Rs <= R_max), ``mse``, ``bytes_per_vector``.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register


def exact_nearest_neighbour(db: np.ndarray, q: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(n_q,) index of each query's nearest database vector by L2 (ties: lowest index)."""
    db = np.asarray(db, np.float64)
    q = np.asarray(q, np.float64)
    sq = (db * db).sum(1)
    out = np.empty(len(q), np.int64)
    for s in range(0, len(q), chunk):
        d = sq[None, :] - 2 * q[s:s + chunk] @ db.T
        out[s:s + chunk] = d.argmin(1)
    return out


def recall_at_r(ranks: np.ndarray, gt: np.ndarray, rs=(1, 10, 100)) -> dict[int, float]:
    """1-recall@R: fraction of queries whose true NN ``gt[j]`` is in ``ranks[:R, j]``."""
    ranks = np.asarray(ranks)
    hit = ranks == np.asarray(gt)[None, :]
    first = np.where(hit.any(0), hit.argmax(0), np.iinfo(np.int64).max)
    return {r: float(np.mean(first < r)) for r in rs}


def quantization_mse(x: np.ndarray, xq: np.ndarray) -> float:
    """Mean over vectors of the squared L2 reconstruction error ||x - q(x)||^2."""
    d = np.asarray(x, np.float64) - np.asarray(xq, np.float64)
    return float((d * d).sum(1).mean())


@register
class Quantization(Protocol):
    name = "quantization"
    task = "quantization"
    data_tasks = ("retrieval",)
    summary = "1-recall@R of approximate search, quantization MSE, bytes per vector"
    cite = "Jégou, Douze & Schmid, Product quantization for nearest neighbor search, TPAMI 2011"
    params = (Param("rs", list, [1, 10, 100], "R of recall@R, a list (--set rs=[1,10,100])", item=int, low=1),)

    def evaluate(self, outputs: dict, data) -> dict:
        from .ranking_metrics import check_ranks
        if "ranks" not in outputs:
            raise UserError(f"protocol 'quantization' needs outputs['ranks'] (R, n_q); got keys {sorted(outputs)}")
        ranks = check_ranks(outputs["ranks"], data.n_db, data.n_queries, where=f"ranking for {data.name}")
        rs = sorted(set(self.cfg["rs"]))
        own = outputs.get("db_vectors") is not None
        db = outputs["db_vectors"] if own else data.db_features
        q = outputs.get("query_vectors") if outputs.get("query_vectors") is not None else data.query_features
        if own and (np.shape(db)[0] != data.n_db or q is None or np.shape(q) != (data.n_queries, np.shape(db)[1])):
            raise UserError(f"quantization outputs for {data.name}: db_vectors must be ({data.n_db}, d) and "
                            f"query_vectors ({data.n_queries}, d), got {np.shape(db)} and {np.shape(q)}")
        gt = None if own else data.extra.get("gt_nn")
        if gt is None:
            if db is None or q is None:
                raise UserError(f"{data.name}: recall@R needs the true nearest neighbours (extra['gt_nn']) or "
                                f"the database and query vectors")
            gt = exact_nearest_neighbour(db, q)
        gt = np.asarray(gt, np.int64).ravel()
        if gt.shape != (data.n_queries,):
            raise UserError(f"{data.name}: gt_nn must have one entry per query ({data.n_queries}), got {gt.shape}")
        m = {f"recall@{r}": v for r, v in recall_at_r(ranks, gt, [r for r in rs if r <= ranks.shape[0]]).items()}
        if "reconstruction" in outputs:
            xq = np.asarray(outputs["reconstruction"])
            if db is None or xq.shape != np.shape(db):
                raise UserError(f"reconstruction for {data.name}: expected shape {np.shape(db)}, got {xq.shape}")
            m["mse"] = quantization_mse(db, xq)
        if "bytes_per_vector" in outputs:
            m["bytes_per_vector"] = float(outputs["bytes_per_vector"])
        elif "codes" in outputs:
            c = np.asarray(outputs["codes"])
            m["bytes_per_vector"] = float(c.nbytes / max(len(c), 1))
        return m

    def format(self, metrics: dict, data) -> str:
        return f">> {data.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
