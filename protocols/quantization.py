"""Vector-search / quantization protocol: recall@R, quantization MSE, bytes per vector.

Jégou, Douze & Schmid, Product quantization for nearest neighbor search, IEEE TPAMI 2011
(Sec. V): recall@R is the proportion of queries whose true nearest neighbour is ranked in the
first R positions ("1-recall@R"); the quantization distortion is the mean squared error
E ||x - q(x)||^2 over database vectors (sum over dimensions, mean over vectors); memory is the
code size in bytes per vector.

Outputs contract (task ``quantization``, data :class:`visrep.data.RetrievalData` with
``db_features``/``query_features``): ``ranks`` int (R_max, n_q), 0-based, best first
(revisitop convention); optional ``reconstruction`` float (n_db, d) = q(x);
``bytes_per_vector`` (number) or ``codes`` (n_db, ...) uint8 array. The true nearest
neighbour (L2) comes from ``data.extra["gt_nn"]`` (n_q,) when given (e.g. the ``_groundtruth
.ivecs`` of SIFT1M/GIST1M), else it is computed exactly. Metrics: ``recall@1``, ``recall@10``,
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
    summary = "1-recall@R of approximate search, quantization MSE, bytes per vector"
    cite = "Jégou, Douze & Schmid, Product quantization for nearest neighbor search, TPAMI 2011"
    params = (Param("rs", str, "1,10,100", "comma-separated R of recall@R"),)

    def evaluate(self, outputs: dict, data) -> dict:
        from .ranking_metrics import check_ranks
        if "ranks" not in outputs:
            raise UserError(f"protocol 'quantization' needs outputs['ranks'] (R, n_q); got keys {sorted(outputs)}")
        ranks = check_ranks(outputs["ranks"], data.n_db, data.n_queries, where=f"ranking for {data.name}")
        try:
            rs = sorted({int(r) for r in str(self.cfg["rs"]).split(",")})
        except ValueError:
            raise UserError(f"parameter 'rs' of protocol 'quantization' must be integers, got {self.cfg['rs']!r}") from None
        gt = data.extra.get("gt_nn")
        if gt is None:
            if data.db_features is None or data.query_features is None:
                raise UserError(f"{data.name}: recall@R needs the true nearest neighbours (extra['gt_nn']) or "
                                f"the database and query vectors")
            gt = exact_nearest_neighbour(data.db_features, data.query_features)
        gt = np.asarray(gt, np.int64).ravel()
        if gt.shape != (data.n_queries,):
            raise UserError(f"{data.name}: gt_nn must have one entry per query ({data.n_queries}), got {gt.shape}")
        m = {f"recall@{r}": v for r, v in recall_at_r(ranks, gt, [r for r in rs if r <= ranks.shape[0]]).items()}
        if "reconstruction" in outputs:
            xq = np.asarray(outputs["reconstruction"])
            if data.db_features is None or xq.shape != np.shape(data.db_features):
                raise UserError(f"reconstruction for {data.name}: expected shape {np.shape(data.db_features)}, "
                                f"got {xq.shape}")
            m["mse"] = quantization_mse(data.db_features, xq)
        if "bytes_per_vector" in outputs:
            m["bytes_per_vector"] = float(outputs["bytes_per_vector"])
        elif "codes" in outputs:
            c = np.asarray(outputs["codes"])
            m["bytes_per_vector"] = float(c.nbytes / max(len(c), 1))
        return m

    def format(self, metrics: dict, data) -> str:
        return f">> {data.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
