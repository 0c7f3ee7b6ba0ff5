"""Vectorized ranking metrics shared by the retrieval protocols.

Definitions follow the revisitop evaluation (Radenović, Iscen, Tolias, Avrithis & Chum,
Revisiting Oxford and Paris, CVPR 2018; ``revisitop/python/evaluate.py``: ``compute_ap`` and
``compute_map``), which is also the original Oxford/Paris ``compute_ap``:

- junk images are removed from the ranking before scoring (positions shift up);
- average precision is the trapezoidal rule over recall: for the i-th positive (0-based) at
  junk-free position p (0-based), precision before = i / p (1 when p = 0) and after =
  (i + 1) / (p + 1); AP = sum over positives of their mean / n_positives;
- ``n_positives`` is the length of the positive list as given (revisitop's ``len(qgnd)``);
  positives absent from a (truncated) ranking contribute 0 but still count;
- precision@k: with ``pos`` the 1-based junk-free positions of the positives found,
  ``kq = min(max(pos), k)`` and ``P@k = #(pos <= kq) / kq`` (revisitop's capping of k at the
  last positive; 0 when no positive is ranked at all, where revisitop would raise);
- queries whose positive list is empty get NaN and are left out of the means.

All queries are scored at once (no Python loop over queries): the ranking is inverted once
into a (n_db, n_queries) position table; every ground-truth list is then a gather. The
inverse also detects duplicated indices in a ranking for free (a duplicated index reads
back a different row than the one it was written from).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

#: positions table budget (entries) per query chunk; bounds memory for R1M-size databases
_INV_BUDGET = 1 << 25


def check_ranks(ranks: np.ndarray, n_db: int, n_queries: int, where: str = "ranking",
                check_duplicates: bool = True) -> np.ndarray:
    """Validate a (n_ranked, n_queries) 0-based ranking (revisitop convention); return int64.

    Raises UserError naming `where` for: a shape that is not (n_ranked <= n_db, n_queries),
    non-integer values, indices outside [0, n_db), and (unless ``check_duplicates=False``, for
    callers that go on to :func:`positions`, which checks it anyway) an index listed twice
    for one query.
    """
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
    if ranks.size:
        lo, hi = int(ranks.min()), int(ranks.max())
        if lo < 0 or hi >= n_db:
            bad = lo if lo < 0 else hi
            q = int(np.flatnonzero((ranks == bad).any(axis=0))[0])
            raise UserError(f"{where}: index {bad} (query {q}) out of range [0, {n_db}) (indices are 0-based)")
        if check_duplicates:
            for s, e in _query_chunks(n_db, n_queries):
                _inverse(ranks[:, s:e], n_db, where, q_offset=s)
    return ranks


def _query_chunks(n_db: int, nq: int):
    step = max(1, _INV_BUDGET // max(n_db, 1))
    for s in range(0, nq, step):
        yield s, min(nq, s + step)


def _inverse(ranks: np.ndarray, n_db: int, where: str = "ranking", q_offset: int = 0) -> np.ndarray:
    """(n_db, nq) int16/int32 table: 0-based position of each database item in each query's ranking.

    Items absent from a truncated ranking get ``n_ranked``. A ranking without duplicates
    writes ``n_ranked`` distinct cells per column; fewer means a duplicated index (UserError).
    """
    n_ranked, nq = ranks.shape
    dt = np.int16 if n_ranked < np.iinfo(np.int16).max else np.int32   # less memory traffic
    inv = np.full((n_db, nq), n_ranked, dtype=dt)
    inv[ranks, np.arange(nq)[None, :]] = np.arange(n_ranked, dtype=dt)[:, None]
    if n_ranked == n_db:
        dup = (inv == n_ranked).any(axis=0)
    else:
        dup = np.count_nonzero(inv < n_ranked, axis=0) != n_ranked
    if dup.any():
        q = int(np.flatnonzero(dup)[0])
        col = np.sort(ranks[:, q])
        val = int(col[1:][col[1:] == col[:-1]][0])
        raise UserError(f"{where}: query {q + q_offset} lists database index {val} more than once")
    return inv


def positions(ranks: np.ndarray, groups: dict[str, list], n_db: int | None = None,
              where: str = "ground truth", ranking: str = "ranking") -> dict[str, tuple]:
    """Ranking positions (0-based, before junk removal) of every listed item of every query.

    `ranks` (n_ranked, nq) int, in range (see :func:`check_ranks`); `groups` maps a name (e.g.
    ``easy``) to a per-query list of 0-based index arrays. Returns name -> (qid, pos, count):
    qid/pos (int64) of each listed entry in list order (pos = n_ranked when the item is not
    ranked) and ``count`` (nq,) = the length of each list as given. Raises UserError for a
    duplicated index in the ranking (naming `ranking`) or a listed index out of range.
    """
    n_ranked, nq = ranks.shape
    flat = {}
    bound = n_db if n_db is not None else (int(ranks.max()) + 1 if ranks.size else 0)
    for name, lists in groups.items():
        if len(lists) != nq:
            raise UserError(f"{where}: {len(lists)} '{name}' lists for {nq} queries")
        arrs = [np.asarray(g, dtype=np.int64).ravel() for g in lists]
        count = np.fromiter((a.size for a in arrs), dtype=np.int64, count=nq)
        idx = np.concatenate(arrs) if arrs else np.zeros(0, np.int64)
        qid = np.repeat(np.arange(nq, dtype=np.int64), count)
        if idx.size:
            bad = (idx < 0) | (idx >= n_db) if n_db is not None else idx < 0
            if bad.any():
                b = int(np.flatnonzero(bad)[0])
                raise UserError(f"{where}: query {qid[b]} '{name}' index {idx[b]} out of range [0, {n_db}) "
                                f"(indices are 0-based)")
            if n_db is None:
                bound = max(bound, int(idx.max()) + 1)
        flat[name] = (qid, idx, count)
    pos = {name: np.empty(len(f[1]), np.int64) for name, f in flat.items()}
    for s, e in _query_chunks(bound, nq):
        inv = _inverse(ranks[:, s:e], bound, ranking, q_offset=s)
        whole = (s, e) == (0, nq)
        for name, (qid, idx, _) in flat.items():
            if whole:
                pos[name][:] = inv[idx, qid]
            else:
                m = (qid >= s) & (qid < e)
                pos[name][m] = inv[idx[m], qid[m] - s]
    return {name: (flat[name][0], pos[name], flat[name][2]) for name in flat}


def _sorted_distinct(q: np.ndarray, p: np.ndarray, stride: int):
    """Sort (qid, pos) by query then position; drop repeats of a ranked entry (same query and position).

    Ranked positions are distinct per distinct item, so this is revisitop's ``np.in1d`` over the
    ranking: an item listed twice is found once. Unranked entries (pos = stride - 1) all stay.
    """
    key = q * stride + p
    order = np.argsort(key, kind="stable")
    key = key[order]
    keep = np.ones(len(key), bool)
    if len(key) > 1:
        keep[1:] = (key[1:] != key[:-1]) | (p[order][1:] == stride - 1)
    if not keep.all():
        order, key = order[keep], key[keep]
    return q[order], p[order], key


def score_positions(nq: int, n_ranked: int, pos: tuple, junk: tuple, n_positives: np.ndarray,
                    ks=(1, 5, 10)) -> tuple[np.ndarray, np.ndarray]:
    """AP (nq,) and precision@k (nq, len(ks)) float64 from positive and junk ranking positions.

    `pos` = (qid, position) of each listed positive, `junk` = (qid, position) of each listed
    junk item (0-based positions in the raw ranking, ``n_ranked`` = not ranked; order and
    repeats do not matter); `n_positives` (nq,) the revisitop ``len(qgnd)``. Rows of queries
    with no positives are NaN. Floating-point operations follow revisitop's ``compute_ap`` term
    by term, in the same order, so the values are bitwise identical.
    """
    stride = n_ranked + 1
    pq, ppos, pkey = _sorted_distinct(np.asarray(pos[0]), np.asarray(pos[1]), stride)
    jq, jpos = np.asarray(junk[0]), np.asarray(junk[1])
    jfound = jpos < n_ranked
    jkey = np.sort(jq[jfound] * stride + jpos[jfound])
    if len(jkey) > 1:
        jkey = jkey[np.concatenate([[True], jkey[1:] != jkey[:-1]])]
    n_junk_before = np.searchsorted(jkey, pkey, side="left") - np.searchsorted(jkey, pq * stride, side="left")
    found = ppos < n_ranked
    adj = ppos - n_junk_before                       # junk-free 0-based position
    n_listed = np.bincount(pq, minlength=nq)
    nfound = np.bincount(pq[found], minlength=nq)
    start = np.concatenate([[0], np.cumsum(n_listed)[:-1]]).astype(np.int64)
    i = np.arange(len(pq)) - start[pq]               # index of the positive within its query
    n_positives = np.asarray(n_positives)
    has = n_positives > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        step = 1.0 / n_positives.astype(np.float64)
        prec0 = np.where(adj == 0, 1.0, i / np.maximum(adj, 1))
        prec1 = (i + 1) / (adj + 1)
        contrib = np.where(found, (prec0 + prec1) * step[pq] / 2.0, 0.0)
    ap = np.bincount(pq, weights=contrib, minlength=nq)   # sequential sums, as revisitop's loop
    ap = np.where(has, ap, np.nan)
    # precision@k: the last found positive of a query has its largest junk-free position
    maxpos = np.zeros(nq, dtype=np.int64)
    some = nfound > 0
    maxpos[some] = adj[(start + nfound - 1)[some]] + 1
    fq, fpos1 = pq[found], adj[found] + 1
    prk = np.empty((nq, len(ks)))
    for j, k in enumerate(ks):
        kq = np.minimum(maxpos, int(k))
        hits = np.bincount(fq, weights=(fpos1 <= kq[fq]), minlength=nq)
        with np.errstate(divide="ignore", invalid="ignore"):
            prk[:, j] = np.where(kq > 0, hits / kq, 0.0)
    prk[~has] = np.nan
    return ap, prk


def sequential_mean(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 skipping NaN rows, summed left to right like revisitop's ``map = map + ap``."""
    x = np.asarray(x, dtype=np.float64)
    valid = ~np.isnan(x if x.ndim == 1 else x[:, 0]) if len(x) else np.zeros(0, bool)
    n = int(valid.sum())
    if n == 0:
        return np.full(x.shape[1:], np.nan) if x.ndim > 1 else np.float64(np.nan)
    return np.cumsum(x[valid], axis=0)[-1] / n


def _score(ranks, positives, junk, ks):
    n_ranked, nq = ranks.shape
    p = positions(ranks, {"pos": positives, "junk": junk})
    pq, pp, cnt = p["pos"]
    jq, jp, _ = p["junk"]
    return score_positions(nq, n_ranked, (pq, pp), (jq, jp), cnt, ks)


def average_precision(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray]) -> np.ndarray:
    """AP per query, (n_queries,) float64, NaN where a query has no positives (revisitop rule)."""
    return _score(ranks, positives, junk, ())[0]


def precision_at_k(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray],
                   ks=(1, 5, 10)) -> np.ndarray:
    """Precision@k per query, (n_queries, len(ks)) float64, revisitop's ``min(max(pos), k)`` rule."""
    return _score(ranks, positives, junk, ks)[1]


def map_and_precision(ranks: np.ndarray, positives: list[np.ndarray], junk: list[np.ndarray],
                      ks=(1, 5, 10)) -> tuple[np.ndarray, np.ndarray]:
    """(AP (nq,), P@k (nq, len(ks))) in one pass; equals revisitop ``compute_map``'s aps, prs."""
    return _score(ranks, positives, junk, ks)
