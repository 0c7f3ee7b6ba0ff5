"""Exact nearest-neighbour ranking with faiss (the baseline every re-ranking starts from).

``search(db, queries, k)`` is the shared kernel: it returns similarities and database indices
of shape (k, n_q) in the revisitop convention (database x queries, best first), computed in
query chunks so memory stays O(chunk x n_db) even for a million database vectors.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def search(db: np.ndarray, queries: np.ndarray, k: int | None = None, metric: str = "ip",
           chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN of each query in `db` -> (sims (k, n_q) float32, ranks (k, n_q) int64).

    `metric` 'ip' ranks by inner product (cosine for L2-normalized rows), 'l2' by squared
    Euclidean distance (returned negated, so larger is better either way). k=None ranks all.
    """
    import faiss

    db = np.ascontiguousarray(db, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if db.ndim != 2 or queries.ndim != 2 or db.shape[1] != queries.shape[1]:
        raise UserError(f"database {db.shape} and queries {queries.shape} must be 2-D with the same dimension")
    n = db.shape[0]
    k = n if k is None else min(int(k), n)
    if k <= 0:
        raise UserError("search needs a non-empty database and k >= 1")
    index = faiss.IndexFlatIP(db.shape[1]) if metric == "ip" else faiss.IndexFlatL2(db.shape[1])
    index.add(db)
    sims = np.empty((queries.shape[0], k), np.float32)
    ids = np.empty((queries.shape[0], k), np.int64)
    for s in range(0, queries.shape[0], chunk):
        d, i = index.search(queries[s:s + chunk], k)
        sims[s:s + chunk], ids[s:s + chunk] = (d if metric == "ip" else -d), i
    return sims.T.copy(), ids.T.copy()


