"""Vectorized ranking metrics shared by the retrieval protocols.

Definitions follow the revisitop evaluation (Radenović et al., CVPR 2018,
``revisitop/python/evaluate.py``), which is also the original Oxford/Paris ``compute_ap``:

- junk images are removed from the ranking before scoring (positions shift up);
- average precision is the trapezoidal rule over recall: for the i-th positive (0-based) at
  junk-free position p (0-based), precision before = i / p (1 when p = 0) and after =
  (i + 1) / (p + 1), AP = sum over positives of their mean / n_positives;
- positives absent from a (truncated) ranking contribute 0 but still count in n_positives.

All queries are scored at once: no Python loop over queries.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def check_ranks(ranks: np.ndarray, n_db: int, n_queries: int, where: str = "ranking") -> np.ndarray:
    """Validate a (n_ranked, n_queries) 0-based ranking; return it as int64."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or ranks.shape[1] != n_queries:
        raise UserError(f"{where}: expected shape (n_db, {n_queries}) = database x queries, got {ranks.shape}")
    if ranks.shape[0] > n_db:
        raise UserError(f"{where}: {ranks.shape[0]} ranked items but the database has {n_db}")
    if ranks.dtype.kind not in "iu":
        if ranks.dtype.kind == "f" and np.all(np.isfinite(ranks)) and np.all(ranks == np.round(ranks)):
            ranks = ranks.astype(np.int64)
        else:
            raise UserError(f"{where}: indices must be integers, got dtype {ranks.dtype}")
    ranks = ranks.astype(np.int64, copy=False)
    if ranks.size and (ranks.min() < 0 or ranks.max() >= n_db):
        bad = ranks.min() if ranks.min() < 0 else ranks.max()
        raise UserError(f"{where}: index {bad} out of range [0, {n_db}) (indices are 0-based)")
    if ranks.size:
        s = np.sort(ranks, axis=0)
        dup = np.flatnonzero((s[1:] == s[:-1]).any(axis=0))
        if dup.size:
            q = int(dup[0])
            col = s[:, q]
            val = int(col[1:][col[1:] == col[:-1]][0])
            raise UserError(f"{where}: query {q} lists database index {val} more than once")
    return ranks


def _flatten(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-query index lists -> (query id per entry, index per entry)."""
    lengths = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
    idx = np.concatenate([np.asarray(g, dtype=np.int64).ravel() for g in groups]) if len(groups) else np.zeros(0, np.int64)
    return np.repeat(np.arange(len(groups)), lengths), idx


def junk_free_positions(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray]):
    """Positions (0-based, junk removed) of every positive of every query.

    Returns (qid, pos, found) for each positive entry, sorted by (qid, pos); `found` is False
    for positives missing from a truncated ranking (their pos is meaningless).
    """
    n_ranked, nq = ranks.shape
    n_db_bound = max(int(ranks.max()) + 1 if ranks.size else 0,
                     max((int(np.max(g)) + 1 for g in positives if len(g)), default=0),
                     max((int(np.max(g)) + 1 for g in junk if len(g)), default=0))
    inv = np.full((n_db_bound, nq), n_ranked, dtype=np.int64)
    inv[ranks, np.arange(nq)[None, :]] = np.arange(n_ranked)[:, None]
    pq, pidx = _flatten(positives)
    jq, jidx = _flatten(junk)
    ppos = inv[pidx, pq]
    jpos = inv[jidx, jq]
    stride = n_ranked + 1
    jkey = np.sort(jq * stride + jpos)
    pkey = pq * stride + ppos
    n_junk_before = np.searchsorted(jkey, pkey, side="left") - np.searchsorted(jkey, pq * stride, side="left")
    found = ppos < n_ranked
    adj = ppos - n_junk_before
    order = np.lexsort((adj, ~found, pq))  # by query, found first, then position
    return pq[order], adj[order], found[order]


def average_precision(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray]) -> np.ndarray:
    """AP per query (nan where a query has no positives); revisitop's trapezoidal rule."""
    nq = ranks.shape[1]
    qid, pos, found = junk_free_positions(ranks, positives, junk)
    npos = np.bincount(qid, minlength=nq)
    start = np.concatenate([[0], np.cumsum(npos)[:-1]])
    i = np.arange(len(qid)) - start[qid]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec0 = np.where(pos == 0, 1.0, i / np.maximum(pos, 1))
        prec1 = (i + 1) / (pos + 1)
    contrib = np.where(found, (prec0 + prec1) / 2.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.bincount(qid, weights=contrib, minlength=nq) / npos
    return np.where(npos > 0, ap, np.nan)


def precision_at_k(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray],
                   ks=(1, 5, 10)) -> np.ndarray:
    """Precision@k per query, revisitop style: k is capped at the last positive's 1-based position.

    revisitop computes ``kq = min(max(pos), k); pr = (pos <= kq).sum() / kq`` with pos the
    1-based junk-free positions of the positives found. Returns (n_queries, len(ks)), nan for
    queries without positives.
    """
    nq = ranks.shape[1]
    qid, pos, found = junk_free_positions(ranks, positives, junk)
    qid, pos1 = qid[found], pos[found] + 1
    out = np.full((nq, len(ks)), np.nan)
    maxpos = np.zeros(nq, dtype=np.int64)
    np.maximum.at(maxpos, qid, pos1)
    has = np.array([len(g) > 0 for g in positives])
    for j, k in enumerate(ks):
        kq = np.minimum(maxpos, k)
        hits = np.bincount(qid, weights=(pos1 <= kq[qid]).astype(float), minlength=nq)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = np.where(kq > 0, hits / np.maximum(kq, 1), 0.0)
    out[~has] = np.nan
    return out
