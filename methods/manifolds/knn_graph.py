"""The k-nearest-neighbour graph that diffusion and fast spectral ranking walk on.

Shared numerical kernel of :mod:`visrep.methods.manifolds.diffusion` and
:mod:`visrep.methods.manifolds.spectral_ranking`, following Iscen, Tolias, Avrithis, Furon & Chum,
*Efficient diffusion on region manifolds*, CVPR 2017, Sec. 3 (and the authors' code
``knngraph.m`` / ``transition_matrix.m``):

1. ``knn``: the ``k`` nearest neighbours of every database vector by inner product, the vector
   itself included (as in the authors' code, so a vector has at most ``k - 1`` real
   neighbours). Exact (faiss flat) or approximate (faiss IVF; or blocks of k-means cells,
   :mod:`.cell_knn`, for millions of vectors) search, done in chunks of queries so memory stays
   O(chunk x n + n k): never a dense n x n matrix.
2. ``affinity``: the sparse affinity ``A`` with ``a_ij = max(s_ij, 0)^gamma`` (gamma = 3 in the
   paper) where ``i`` and ``j`` are *mutual* (reciprocal) neighbours, zero diagonal;
   symmetric by construction. ``mutual=False`` keeps the union of the two directions instead.
3. ``normalize``: ``W = D^{-1/2} A D^{-1/2}`` with ``D = diag(A 1)`` (Eq. 2 of the paper).

Isolated nodes (no mutual neighbour, degree 0) get ``D^{-1/2} = 0``: their row and column of
``W`` are zero. Then ``L_alpha f = y`` with ``L_alpha = (I - alpha W) / (1 - alpha)`` gives
``f_i = (1 - alpha) y_i`` for them: a vector that is nobody's mutual neighbour keeps its (scaled)
query similarity, neither receives nor passes on any diffusion, and is ranked by it. This is the
documented behaviour; :func:`build_graph` reports how many nodes are isolated.

Shapes and dtypes: database ``X`` (n, d) float32 L2-normalized rows; ``ids`` (n, k) int64 (int32 inside
:func:`build_graph`); ``sims`` (n, k) float32; ``A`` and ``W`` ``scipy.sparse.csr_matrix`` (n, n)
float32 with int32 indices, sharing one index structure. Memory: ``A`` holds at most ``n k``
non-zeros, 8 bytes each plus the row pointers, and ``W`` 4 more bytes per non-zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import numpy as np

from visrep.device import faiss_on_device
from visrep.errors import UserError


def check_unit_rows(x: np.ndarray, where: str, normalize: bool = True, tol: float = 1e-3) -> np.ndarray:
    """Rows of `x` (n, d) as float32 with unit L2 norm.

    Graph methods assume cosine similarity. Rows that are not unit-norm are L2-normalized when
    ``normalize`` (the documented default); with ``normalize=False`` they raise a UserError
    naming `where`. Zero rows or non-finite values always raise.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise UserError(f"{where}: expected a non-empty (n, d) array of vectors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"{where}: vectors contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    if (norms == 0).any():
        raise UserError(f"{where}: vector {int(np.flatnonzero(norms == 0)[0])} is all zeros; cannot normalize")
    if np.abs(norms - 1).max() > tol:
        if not normalize:
            raise UserError(f"{where}: vectors are not L2-normalized (norms from {norms.min():.3g} to "
                            f"{norms.max():.3g}); normalize them or allow normalization")
        x = x / norms[:, None]
    return x


def _make_index(x: np.ndarray, index: str, nlist: int | None, nprobe: int, seed: int):
    import faiss
    d = x.shape[1]
    if index == "flat":
        ix = faiss.IndexFlatIP(d)
    elif index == "ivf":
        n = x.shape[0]
        nlist = nlist or max(1, int(4 * np.sqrt(n)))
        quant = faiss.IndexFlatIP(d)
        ix = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x if n <= 64 * nlist else x[rng.choice(n, 64 * nlist, replace=False)]
        ix.cp.seed = seed
        ix.train(train)
        ix.nprobe = nprobe
    else:
        raise UserError(f"graph index must be 'flat', 'ivf' or 'cells', got {index!r}")
    ix.add(x)
    return ix


def knn(x: np.ndarray, k: int, queries: np.ndarray | None = None, index: str = "flat", chunk: int = 8192,
        nlist: int | None = None, nprobe: int | None = None, seed: int = 0, progress=None,
        shards: int = 1, device: str = "cpu", id_dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by inner product -> (sims (m, k) float32, ids (m, k) ``id_dtype``).

    ``queries`` defaults to ``x`` itself (the graph case: row i lists i first). ``index`` 'flat'
    is exact; 'ivf' is faiss IVF-Flat with ``nlist`` cells (default 4 sqrt(n)) and ``nprobe``
    probes (default 16); 'cells' (the graph of x only, CPU) compares every k-means cell (default
    n / 64 vectors each) with the ``nprobe`` cells (default 128) its members vote for, one matrix
    product per cell (:mod:`.cell_knn`): the index for millions of vectors (1M x 128 in ~2.5
    minutes on two cores at recall@50 0.98). Missing neighbours come back with id -1, sim 0.
    ``progress`` wraps the iterable of chunks (e.g. a tqdm bar; None = no bar).

    ``shards`` > 1 splits the database into that many contiguous shards, searches each for the
    top k of every query (on the Dask cluster when the job runs on one, see
    :mod:`visrep.sharding`) and merges the per-shard lists: with the exact index the result is
    the same as one search (ties aside). With 'cells' the shards are groups of cells, each
    searched as in one piece: the same lists exactly.

    ``device`` 'cuda[:N]' searches on that GPU when faiss has GPU support (the ``gpu`` extra;
    :func:`visrep.device.faiss_on_device`), else on the CPU with a warning.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    q = x if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    n = x.shape[0]
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    k = min(int(k), n)
    if index == "cells":
        if queries is not None:
            raise UserError("graph index 'cells' builds the kNN graph of the database itself: use 'flat' or "
                            "'ivf' for other queries")
        from .cell_knn import cell_knn
        return cell_knn(x, k, nlist=nlist, probe=nprobe or 128, seed=seed, id_dtype=id_dtype, progress=progress,
                        shards=int(shards))
    nprobe = nprobe or 16
    if shards > 1:
        sims, ids = _knn_sharded(x, q, k, int(shards), index=index, chunk=chunk, nlist=nlist, nprobe=nprobe,
                                 seed=seed, device=device)
        return sims, ids.astype(id_dtype, copy=False)
    if index == "flat" and device == "cpu":
        import faiss                                 # exact search on x itself: no copy of it in an index
        search = partial(faiss.knn, xb=x, k=k, metric=faiss.METRIC_INNER_PRODUCT)
    else:
        search = partial(faiss_on_device(_make_index(x, index, nlist, nprobe, seed), device).search, k=k)
    sims = np.empty((q.shape[0], k), np.float32)
    ids = np.empty((q.shape[0], k), id_dtype)
    starts = range(0, q.shape[0], chunk)
    if progress is not None:
        starts = progress(starts, desc="kNN graph", total=len(starts), unit="chunk")
    for s in starts:
        d, i = search(q[s:s + chunk])
        sims[s:s + chunk], ids[s:s + chunk] = d, i
    bad = ids < 0
    if bad.any():
        sims[bad] = 0.0
    return sims, ids


def _search_shard(bounds: tuple[int, int], x: np.ndarray, q: np.ndarray, k: int, **kw):
    """Top-k of every query within database rows [start, stop) -> (sims, global ids)."""
    start, stop = bounds
    sims, ids = knn(x[start:stop], min(k, stop - start), queries=q, **kw)
    return sims, np.where(ids >= 0, ids + start, -1)


def _knn_sharded(x, q, k, shards, **kw):
    n = x.shape[0]
    if shards > n:
        raise UserError(f"parameter 'shards' ({shards}) is larger than the database ({n} vectors)")
    from visrep.sharding import shard_map
    edges = np.linspace(0, n, shards + 1).astype(int)
    parts = shard_map(_search_shard, [(int(a), int(b)) for a, b in pairwise(edges)],
                      x=x, q=q, k=k, **kw)
    sims = np.hstack([p[0] for p in parts])
    ids = np.hstack([p[1] for p in parts])
    sims = np.where(ids >= 0, sims, -np.inf)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    sims, ids = np.take_along_axis(sims, top, 1), np.take_along_axis(ids, top, 1)
    sims[ids < 0] = 0.0
    return sims.astype(np.float32), ids


def _csr_rows(a) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix (int32 when it fits)."""
    n = a.shape[0]
    return np.repeat(np.arange(n, dtype=np.int32 if n < 2 ** 31 else np.int64), np.diff(a.indptr))


def affinity(ids: np.ndarray, sims: np.ndarray, gamma: float = 3.0, mutual: bool = True,
             n: int | None = None, block_edges: int = 1 << 20):
    """Sparse symmetric affinity (n, n) float32 CSR from kNN lists (CVPR 2017, Sec. 3; ``knngraph.m``).

    ``a_ij = max(s_ij, 0)^gamma`` for mutual neighbours i, j (each in the other's list), zero
    diagonal. With ``mutual=False`` an edge in either list is kept (symmetric union). s_ij and s_ji
    are the same inner product up to rounding: the mutual edge takes the smaller, the union the larger.

    Memory: the output plus O(``block_edges`` + n k / 8) working space. The symmetric part is found
    block of rows by block of rows: the keys ``i n + j`` of the block's own edges are intersected
    (mutual) or merged (union) with the reversed keys ``j n + i`` of the edges pointing into the
    block; no transposed copy, no global edge list.
    """
    import scipy.sparse as sp

    ids = np.asarray(ids)
    sims = np.asarray(sims, dtype=np.float32)
    if ids.shape != sims.shape or ids.ndim != 2:
        raise UserError(f"kNN ids {ids.shape} and sims {sims.shape} must be the same (n, k) shape")
    m, k = ids.shape
    n = m if n is None else int(n)
    if ids.size and int(ids.max()) >= n:
        raise UserError(f"kNN ids refer to vector {int(ids.max())}, but the graph has {n} vectors")
    g = np.float32(gamma)
    itype = np.int32 if n < 2 ** 31 else np.int64
    cap = m * k if mutual else 2 * m * k                                     # at most this many entries
    indices = np.empty(cap, itype)
    data = np.empty(cap, np.float32)
    counts = np.zeros(n, np.int64)
    filled = 0

    def edges(flat_pos):
        """(row, col, value) of the kNN entries at flat positions, those that make an edge."""
        r, c = flat_pos // k, ids.ravel()[flat_pos].astype(np.int64)
        v = np.maximum(sims.ravel()[flat_pos], 0.0) ** g
        ok = (c >= 0) & (c != r) & (v > 0)
        return r[ok], c[ok], v[ok]

    def unique_keys(key, val):
        key, first = np.unique(key, return_index=True)                      # sorted; a repeat: first kept
        return key, val[first]

    per_block = max(1, block_edges // max(k, 1))
    for r0 in range(0, n, per_block):
        r1 = min(r0 + per_block, n)
        lo, hi = min(r0, m) * k, min(r1, m) * k
        r, c, v = edges(np.arange(lo, hi))
        kf, vf = unique_keys(r * n + c, v)
        into = np.flatnonzero((ids >= r0) & (ids < r1))                      # entries j -> i, i in the block
        r, c, v = edges(into)
        kb, vb = unique_keys(c * n + r, v)
        if mutual:
            key, ia, ib = np.intersect1d(kf, kb, assume_unique=True, return_indices=True)
            val = np.minimum(vf[ia], vb[ib])
        else:
            key = np.union1d(kf, kb)
            val = np.zeros(len(key), np.float32)
            val[np.searchsorted(key, kf)] = vf
            at = np.searchsorted(key, kb)
            val[at] = np.maximum(val[at], vb)
        e = filled + len(key)
        indices[filled:e] = key % n
        data[filled:e] = val
        counts[r0:r1] = np.bincount(key // n - r0, minlength=r1 - r0)
        filled = e
    ptype = np.int32 if filled < 2 ** 31 and n < 2 ** 31 else np.int64
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(ptype)
    a = sp.csr_matrix((data[:filled], indices[:filled], indptr), shape=(n, n), copy=False)
    a.has_sorted_indices = True
    return a


def normalize(a):
    """W = D^{-1/2} A D^{-1/2} (CVPR 2017 Eq. 2) -> (W csr float32, degrees (n,) float64).

    Isolated nodes (degree 0) get zero rows/columns in W (see the module docstring). W shares the
    index arrays of ``a`` when ``a`` is CSR with no entry scaled to zero (no copy of the structure).
    """
    import scipy.sparse as sp

    a = a if sp.issparse(a) and a.format == "csr" else sp.csr_matrix(a)
    deg = np.asarray(a.sum(axis=1)).ravel().astype(np.float64)
    inv = np.zeros_like(deg)
    nz = deg > 0
    inv[nz] = deg[nz] ** -0.5
    inv32 = inv.astype(np.float32)
    w = ((a.data * inv32[_csr_rows(a)]) * inv32[a.indices]).astype(np.float32)
    if (w == 0).any():                                                  # drop them, on a copy of the structure
        out = sp.csr_matrix((w, a.indices.copy(), a.indptr.copy()), shape=a.shape)
        out.eliminate_zeros()
        return out, deg
    out = sp.csr_matrix((w, a.indices, a.indptr), shape=a.shape, copy=False)
    out.has_sorted_indices = a.has_sorted_indices
    return out, deg


@dataclass
class Graph:
    """A normalized kNN graph: ``W`` (n, n) csr float32 and what built it."""

    W: object
    A: object
    k: int
    gamma: float
    mutual: bool
    n_isolated: int
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of W and A in CSR form (data + indices + indptr; an index array they share counts once)."""
        arrays = {id(a): a for m in (self.W, self.A) for a in (m.data, m.indices, m.indptr)}
        return sum(int(a.nbytes) for a in arrays.values())


def build_graph(x: np.ndarray, k: int = 50, gamma: float = 3.0, mutual: bool = True, index: str = "flat",
                nprobe: int | None = None, seed: int = 0, progress=None, normalize_input: bool = True,
                shards: int = 1, device: str = "cpu") -> Graph:
    """The normalized mutual kNN graph of database vectors `x` (n, d) (CVPR 2017 Sec. 3).

    Non-unit rows are L2-normalized unless ``normalize_input=False`` (then a UserError).
    ``shards`` > 1 runs the kNN search per database shard, ``device`` on a GPU (see :func:`knn`).
    """
    x = check_unit_rows(x, "graph vectors", normalize=normalize_input)
    if k < 2:
        raise UserError(f"parameter 'k' must be >= 2 (the list includes the vector itself), got {k}")
    sims, ids = knn(x, k, index=index, nprobe=nprobe, seed=seed, progress=progress, shards=shards, device=device,
                    id_dtype=np.int32 if x.shape[0] < 2 ** 31 else np.int64)
    a = affinity(ids, sims, gamma=gamma, mutual=mutual, n=x.shape[0])
    del sims, ids
    w, deg = normalize(a)
    return Graph(W=w, A=a, k=k, gamma=gamma, mutual=mutual, n_isolated=int((deg == 0).sum()),
                 info={"nnz": int(a.nnz), "index": index})


