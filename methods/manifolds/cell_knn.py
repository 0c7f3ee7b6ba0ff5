"""Approximate kNN graphs of millions of vectors: k-means cells searched block by block.

For the graph, queries and database are the same n vectors. The vectors are partitioned into
``nlist`` k-means cells (default n / 64); every cell's members are compared *exactly* with the
members of ``probe`` cells (the cell itself first, then the cells its members name most often
among their ``votes`` nearest centroids, then the cells of nearest centroid), as one matrix product
per cell (faiss ``knn``: BLAS + heap selection). A cell-level version of IVF search (Jégou, Douze
& Schmid, TPAMI 2011, Sec. IV-A), where IVF-Flat probes per query and scans one dot product at a
time: here every block is a dense product, which is what makes 1M x 128 feasible on two cores
(see benchmarks/bench_manifolds.py ``million``). The votes matter on clustered data: at n = 100k,
probe 32, recall@50 0.976 with the cells of nearest centroid only, 0.983 with votes of 8.

Centroids (``train_cells``): spherical k-means with ``n1`` (~sqrt(nlist)) top cells; inside each,
k-means with a share of the fine centroids proportional to its size; then ``refine`` Lloyd
iterations over all fine centroids on a sample (exact assignment), and a final exact assignment of
every vector. Without the refinement the cells follow the first-level boundaries and recall drops
(measured at n = 100k, probe 32, cells of nearest centroid, exact assignment: 0.943 without, 0.979
after two iterations).

Shapes: ``x`` (n, d) float32 unit rows -> ``sims`` (n, k) float32, ``ids`` (n, k) ``id_dtype``, rows
by decreasing similarity, the vector itself included (as the exact search gives it); fewer than k
candidates leave id -1, similarity 0.
"""
from __future__ import annotations

import numpy as np


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 10) -> np.ndarray:
    """(k, d) float32 spherical k-means centroids of x (faiss), k <= len(x)."""
    import faiss
    km = faiss.Kmeans(x.shape[1], k, niter=niter, spherical=True, seed=seed, max_points_per_centroid=10 ** 9,
                      min_points_per_centroid=1)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def nearest(x: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int32 ids of the k largest inner products of each row of x (n, d) with the rows of c (m, d):
    the exact search of :func:`.knn_graph.knn`."""
    from .knn_graph import knn
    return knn(c, k, queries=x, id_dtype=np.int32)[1]


def _means(x: np.ndarray, cell: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Unit-normalized mean of each cell's vectors (spherical k-means update); empty cells keep `old`."""
    order = np.argsort(cell, kind="stable")
    cnt = np.bincount(cell, minlength=len(old))
    nz = cnt > 0
    starts = np.concatenate([[0], np.cumsum(cnt)[:-1]])[nz]
    s = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)
    out = old.copy()
    out[nz] = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(out, dtype=np.float32)


def train_cells(x: np.ndarray, nlist: int, n1: int | None = None, refine: int = 2, seed: int = 0,
                sample_per_centroid: int = 32) -> np.ndarray:
    """(nlist', d) float32 fine centroids, nlist' ~ nlist (see the module docstring). Every k-means and the
    refinement train on at most ``sample_per_centroid`` vectors per centroid (seeded sample)."""
    n = x.shape[0]
    nlist = int(min(max(1, nlist), n))
    n1 = int(min(max(1, n1 or round(np.sqrt(nlist))), nlist))
    rng = np.random.default_rng(seed)
    top = _kmeans(x[np.sort(rng.choice(n, min(n, sample_per_centroid * n1), replace=False))], n1, seed)
    owner = nearest(x, top, 1)[:, 0]
    sizes = np.bincount(owner, minlength=n1)
    share = np.minimum(np.maximum(1, np.round(nlist * sizes / n)).astype(int), np.maximum(sizes, 1))
    order = np.argsort(owner, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    fine = []
    for c in range(n1):
        members = order[bounds[c]:bounds[c + 1]]
        if len(members) == 0:
            continue
        if share[c] == 1:
            fine.append(_means(x[members], np.zeros(len(members), np.int64), top[c:c + 1]))
            continue
        if len(members) > sample_per_centroid * share[c]:
            members = np.sort(rng.choice(members, sample_per_centroid * share[c], replace=False))
        fine.append(_kmeans(x[members], int(share[c]), seed + 1 + c))
    fine = np.concatenate(fine)
    sample = x[np.sort(rng.choice(n, min(n, sample_per_centroid * len(fine)), replace=False))]
    for _ in range(refine):
        fine = _means(sample, nearest(sample, fine, 1)[:, 0], fine)
    return fine


def voted_cells(cell: np.ndarray, top: np.ndarray, fine: np.ndarray, probe: int) -> np.ndarray:
    """(nlist, probe) int64 cells each cell is compared with: the cell itself, then the cells most often among
    its members' nearest cells ``top`` (n, votes) (ties: the smaller id), then -- where the members name fewer
    -- the cells whose centroids are nearest to its centroid."""
    nlist = len(fine)
    probe = int(min(probe, nlist))
    key, cnt = np.unique(np.repeat(cell.astype(np.int64), top.shape[1]) * nlist + top.ravel(), return_counts=True)
    owner, other = key // nlist, key % nlist
    cnt = cnt + (owner == other) * (1 << 40)                                 # the cell itself first
    o = np.lexsort((other, -cnt, owner))
    owner, other = owner[o], other[o]
    rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
    voted = np.full((nlist, probe), -1, np.int64)
    keep = rank < probe
    voted[owner[keep], rank[keep]] = other[keep]
    both = np.concatenate([voted, nearest(fine, fine, probe)], 1)           # (nlist, 2 probe)
    srt = np.argsort(both, axis=1, kind="stable")                            # a repeat = same value as before
    sv = np.take_along_axis(both, srt, 1)
    dup = np.zeros_like(both, dtype=bool)
    np.put_along_axis(dup, srt[:, 1:], sv[:, 1:] == sv[:, :-1], 1)
    bad = dup | (both < 0)
    first = np.argsort(bad, axis=1, kind="stable")[:, :probe]               # the first `probe` good entries
    return np.take_along_axis(both, first, 1)


def cell_knn(x: np.ndarray, k: int, nlist: int | None = None, probe: int = 128, votes: int = 16, refine: int = 2,
             seed: int = 0, id_dtype=np.int64, progress=None, shards: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours of every row of x among the rows of x -> (sims (n, k) float32,
    ids (n, k) id_dtype). ``nlist`` cells (default n / 64), each compared with the ``probe`` cells its members
    vote for (:func:`voted_cells`, each member naming its ``votes`` nearest centroids); ``progress`` wraps the
    loop over cells (tqdm-like). ``shards`` > 1 splits the cells into that many groups of about equal member
    counts, searched where :func:`visrep.sharding.shard_map` sends them (the Dask cluster of the job, if any):
    each cell's search is the same either way, so is the result. See the module docstring."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(min(k, n))
    nlist = int(nlist or max(1, n // 64))
    fine = train_cells(x, nlist, refine=refine, seed=seed)
    top = nearest(x, fine, max(1, int(votes)))                              # (n, votes): nearest cells
    cell = top[:, 0]
    order = np.argsort(cell, kind="stable")
    sizes = np.bincount(cell, minlength=len(fine))
    near = voted_cells(cell, top, fine, probe)                               # (cells, probe)
    del top, cell
    sims = np.zeros((n, k), np.float32)
    ids = np.full((n, k), -1, id_dtype)
    cells = np.flatnonzero(sizes)
    if shards > 1:
        from visrep.sharding import shard_map
        cum = np.cumsum(sizes[cells])                                        # groups of ~n / shards members
        cut = np.searchsorted(cum, np.arange(1, shards) * n / shards, side="right")
        groups = [g for g in np.split(cells, cut) if len(g)]
        parts = shard_map(search_cells, groups, x=x, order=order, sizes=sizes, near=near, k=k, id_dtype=id_dtype)
        for rows, d, i in parts:
            sims[rows], ids[rows] = d, i
        return sims, ids
    if progress is not None:
        cells = progress(cells, desc="kNN graph (cells)", total=len(cells), unit="cell")
    search_cells(cells, x, order, sizes, near, k, id_dtype, out=(sims, ids))
    return sims, ids


def search_cells(cells, x: np.ndarray, order: np.ndarray, sizes: np.ndarray, near: np.ndarray, k: int,
                 id_dtype=np.int64, out=None):
    """Exact top-k of the members of ``cells`` among the members of their probed cells ``near[c]``.
    ``order`` (n,): vector ids sorted by cell, ``sizes`` (cells,) members per cell. Fills ``out`` =
    (sims (n, k), ids (n, k)) in place, or returns (rows (m,), sims (m, k) float32, ids (m, k)) of the m
    members of ``cells`` (a shard)."""
    import faiss
    off = np.concatenate([[0], np.cumsum(sizes)])
    if out is None:
        rows_all = np.concatenate([order[off[c]:off[c + 1]] for c in cells])
        sims = np.zeros((len(rows_all), k), np.float32)
        ids = np.full((len(rows_all), k), -1, id_dtype)
        at = np.full(len(order), -1, np.int64)
        at[rows_all] = np.arange(len(rows_all))
    else:
        sims, ids = out
    for c in cells:
        ln = sizes[near[c]]
        cand = order[np.repeat(off[near[c]], ln) + (np.arange(ln.sum()) - np.repeat(np.cumsum(ln) - ln, ln))]
        rows = order[off[c]:off[c + 1]]
        d, i = faiss.knn(x[rows], x[cand], min(k, len(cand)), metric=faiss.METRIC_INNER_PRODUCT)
        ok = i >= 0
        where = rows if out is not None else at[rows]
        sims[where, :i.shape[1]] = np.where(ok, d, 0.0)
        ids[where, :i.shape[1]] = np.where(ok, cand[np.maximum(i, 0)], -1)
    return None if out is not None else (rows_all, sims, ids)
