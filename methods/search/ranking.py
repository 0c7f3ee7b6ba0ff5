"""Scores to rankings: the one place where visrep sorts a score matrix into a ranking.

Convention (revisitop's): a ranking is an int64 array (n_db or topk, n_q); column j lists database
indices for query j, best first.
"""
from __future__ import annotations

import numpy as np


def ranks_from_scores(scores: np.ndarray, tiebreak: np.ndarray | None = None, topk: int | None = None) -> np.ndarray:
    """(n_db, n_q) scores -> (n_db or topk, n_q) int64 ranking, highest score first.

    Ties keep database order, or, with ``tiebreak`` (n_db, n_q), go to the higher tie-break value
    first (diffusion: unreached items, f = 0, are ordered by their similarity to the query).
    """
    n, m = scores.shape
    kk = n if topk is None else min(topk, n)
    if tiebreak is None:
        return np.argsort(-scores, axis=0, kind="stable")[:kk]
    out = np.empty((kk, m), np.int64)
    for j in range(m):
        order = np.lexsort((-tiebreak[:, j], -scores[:, j]))
        out[:, j] = order[:kk]
    return out
