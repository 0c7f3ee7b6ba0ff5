"""Scores to rankings: the one place where visrep sorts a score matrix into a ranking.

Convention (revisitop's): a ranking is an int64 array (n_db or topk, n_q); column j lists database
indices for query j, best first.
"""
from __future__ import annotations

import numpy as np


def _equal_next(v: np.ndarray) -> np.ndarray:
    """eq[i] = v[i] and v[i + 1] sort as equal (==, or both NaN)."""
    a, b = v[:-1], v[1:]
    eq = a == b
    if v.dtype.kind == "f":
        eq |= np.isnan(a) & np.isnan(b)
    return eq


def _break_ties(order: np.ndarray, key: np.ndarray, neg_tb: np.ndarray) -> np.ndarray:
    """Re-sort, in place, each run of equal keys of one column by neg_tb (stable).

    order (L,) database indices sorted stably by key, key (L,) their sorted keys, neg_tb (n,)
    the secondary key of every database item. Only entries inside tied runs are touched (for
    diffusion: mostly the f = 0 tail), which gives exactly ``np.lexsort((neg_tb, key))``.
    """
    if len(order) < 2:
        return order
    eq = _equal_next(key)
    if not eq.any():
        return order
    tied = np.zeros(len(order), bool)
    tied[1:] = eq
    tied[:-1] |= eq
    idx = np.flatnonzero(tied)
    run = np.cumsum(np.r_[True, ~eq])[idx]
    sub = order[idx]
    order[idx] = sub[np.lexsort((neg_tb[sub], run))]
    return order


def ranks_from_scores(scores: np.ndarray, tiebreak: np.ndarray | None = None, topk: int | None = None) -> np.ndarray:
    """(n_db, n_q) scores -> (n_db or topk, n_q) int64 ranking, highest score first.

    Ties keep database order, or, with ``tiebreak`` (n_db, n_q), go to the higher tie-break value
    first (diffusion: unreached items, f = 0, are ordered by their similarity to the query).

    Equal to ``np.lexsort((-tiebreak[:, j], -scores[:, j]))[:topk]`` per column (and to a stable
    argsort of -scores without tie-break): one stable argsort of the whole block, then only the
    runs of tied scores are re-sorted by the tie-break. With ``topk`` < n_db, ``np.partition``
    first keeps per column the items scoring at least the topk-th score (all of its ties
    included), and only those are sorted.
    """
    scores = np.asarray(scores)
    n, m = scores.shape
    kk = n if topk is None else min(topk, n)
    neg = -scores
    neg_tb = None if tiebreak is None else -np.asarray(tiebreak)
    if kk < n and kk > 0:
        thr = np.partition(neg, kk - 1, axis=0)[kk - 1]
        out = np.empty((kk, m), np.int64)
        for j in range(m):
            col = neg[:, j]
            cand = np.arange(n) if np.isnan(thr[j]) else np.flatnonzero(col <= thr[j])
            v = col[cand]
            o = np.argsort(v, kind="stable")
            order = cand[o]
            if neg_tb is not None:
                order = _break_ties(order, v[o], neg_tb[:, j])
            out[:, j] = order[:kk]
        return out
    order = np.argsort(neg, axis=0, kind="stable")[:kk]
    if neg_tb is None or kk == 0:
        return order
    order = np.ascontiguousarray(order.T)
    keys = np.take_along_axis(neg.T, order, axis=1)
    for j in range(m):
        _break_ties(order[j], keys[j], neg_tb[:, j])
    return np.ascontiguousarray(order.T)
