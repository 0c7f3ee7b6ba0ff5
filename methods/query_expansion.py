"""Query expansion: re-query with a weighted mean of the query and its top-ranked images.

- AQE, average query expansion (Chum et al., Total Recall, ICCV 2007): the new query is the
  mean of the query and its top ``n`` database vectors, L2-normalized.
- alpha-QE (Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human
  annotation, TPAMI 2019, Sec. 5.4): the same mean weighted by similarity^alpha (the query
  itself has weight 1); alpha = 0 gives AQE.

Both operate on global descriptors; vectorized over all queries (one extra search).
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.features import DESCRIPTOR_PARAM, l2_normalize, retrieval_features
from visrep.params import Param
from visrep.registry import register

from .knn_search import search


def expand_queries(db: np.ndarray, queries: np.ndarray, sims: np.ndarray, ranks: np.ndarray,
                   n: int, alpha: float = 0.0) -> np.ndarray:
    """New queries (n_q, d): normalize(q + sum_i w_i x_{ranks[i]}), w_i = max(s_i, 0)^alpha, i < n.

    `sims`, `ranks` are (>= n, n_q) from an initial search.
    """
    top = ranks[:n].T                          # (n_q, n)
    w = np.maximum(sims[:n].T, 0.0) ** alpha if alpha else np.ones_like(top, dtype=np.float32)
    expanded = queries + np.einsum("qn,qnd->qd", w.astype(np.float32), db[top])
    return l2_normalize(expanded)


class _QueryExpansion(Method):
    task = "retrieval"
    alpha_fixed: float | None = None

    def run(self, data, ctx) -> dict:
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        n = min(self.cfg["n"], db.shape[0])
        alpha = self.alpha_fixed if self.alpha_fixed is not None else self.cfg["alpha"]
        t0 = time.perf_counter()
        with ctx.phase("online"):
            sims, ranks = search(db, q, k=n)
            q2 = expand_queries(db, q, sims, ranks, n, alpha)
            _, ranks = search(db, q2, k=self.cfg["topk"])
        return {"ranks": ranks, "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}


@register
class AQE(_QueryExpansion):
    name = "aqe"
    summary = "average query expansion: re-query with the mean of the query and its top-n"
    cite = "Chum, Philbin, Sivic, Isard & Zisserman, Total Recall, ICCV 2007"
    alpha_fixed = 0.0
    params = (
        DESCRIPTOR_PARAM,
        Param("n", int, 10, "number of top-ranked images averaged into the query", low=1),
        Param("topk", int, None, "rank only the top k (None = the whole database)", low=1),
    )


@register
class AlphaQE(_QueryExpansion):
    name = "alpha-qe"
    summary = "alpha query expansion: similarity^alpha weighted mean of the query and its top-n"
    cite = "Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human annotation, TPAMI 2019"
    params = (
        DESCRIPTOR_PARAM,
        Param("n", int, 10, "number of top-ranked images in the weighted mean", low=1),
        Param("alpha", float, 3.0, "exponent of the similarity weights (0 = AQE)", low=0.0),
        Param("topk", int, None, "rank only the top k (None = the whole database)", low=1),
    )
