"""Query expansion: re-query with a weighted mean of the query and its top-ranked images.

- AQE, average query expansion (Chum et al., Total Recall, ICCV 2007): the new query is the
  mean of the query and its top ``n`` database vectors, L2-normalized.
- alpha-QE (Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human
  annotation, TPAMI 2019, Sec. 5.4): the same mean weighted by similarity^alpha (the query
  itself has weight 1); alpha = 0 gives AQE.

Both operate on global descriptors; vectorized over all queries (one extra search).
"""
from __future__ import annotations

import numpy as np

from visrep.features import l2_normalize


def expand_queries(db: np.ndarray, queries: np.ndarray, sims: np.ndarray, ranks: np.ndarray,
                   n: int, alpha: float = 0.0) -> np.ndarray:
    """New queries (n_q, d): normalize(q + sum_i w_i x_{ranks[i]}), w_i = max(s_i, 0)^alpha, i < n.

    `sims`, `ranks` are (>= n, n_q) from an initial search.
    """
    top = ranks[:n].T                          # (n_q, n)
    w = np.maximum(sims[:n].T, 0.0) ** alpha if alpha else np.ones_like(top, dtype=np.float32)
    expanded = queries + np.einsum("qn,qnd->qd", w.astype(np.float32), db[top])
    return l2_normalize(expanded)


