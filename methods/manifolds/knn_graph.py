"""The k-nearest-neighbour graph that diffusion and fast spectral ranking walk on.

Shared numerical kernel of :mod:`visrep.methods.manifolds.diffusion` and
:mod:`visrep.methods.manifolds.spectral_ranking`, following Iscen, Tolias, Avrithis, Furon & Chum,
*Efficient diffusion on region manifolds*, CVPR 2017, Sec. 3 (and the authors' code
``knngraph.m`` / ``transition_matrix.m``):

1. ``knn``: the ``k`` nearest neighbours of every database vector by inner product, the vector
   itself included (as in the authors' code, so a vector has at most ``k - 1`` real
   neighbours). Exact (faiss flat) or approximate (faiss IVF) search, done in chunks of
   queries so memory stays O(chunk x n + n k): never a dense n x n matrix.
2. ``affinity``: the sparse affinity ``A`` with ``a_ij = max(s_ij, 0)^gamma`` (gamma = 3 in the
   paper) where ``i`` and ``j`` are *mutual* (reciprocal) neighbours, zero diagonal;
   symmetric by construction. ``mutual=False`` keeps the union of the two directions instead.
3. ``normalize``: ``W = D^{-1/2} A D^{-1/2}`` with ``D = diag(A 1)`` (Eq. 2 of the paper).

Isolated nodes (no mutual neighbour, degree 0) get ``D^{-1/2} = 0``: their row and column of
``W`` are zero. Then ``L_alpha f = y`` with ``L_alpha = (I - alpha W) / (1 - alpha)`` gives
``f_i = (1 - alpha) y_i`` for them: a vector that is nobody's mutual neighbour keeps its (scaled)
query similarity, neither receives nor passes on any diffusion, and is ranked by it. This is the
documented behaviour; :func:`build_graph` reports how many nodes are isolated.

Shapes and dtypes: database ``X`` (n, d) float32 L2-normalized rows; ``ids`` (n, k) int64;
``sims`` (n, k) float32; ``A`` and ``W`` ``scipy.sparse.csr_matrix`` (n, n) float32.
Memory: ``W`` holds at most ``n k`` non-zeros, 8 bytes each plus the row pointers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
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
        raise UserError(f"graph index must be 'flat' or 'ivf', got {index!r}")
    ix.add(x)
    return ix


def knn(x: np.ndarray, k: int, queries: np.ndarray | None = None, index: str = "flat", chunk: int = 8192,
        nlist: int | None = None, nprobe: int = 16, seed: int = 0, progress=None,
        shards: int = 1, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by inner product -> (sims (m, k) float32, ids (m, k) int64).

    ``queries`` defaults to ``x`` itself (the graph case: row i lists i first). ``index`` 'flat'
    is exact; 'ivf' is faiss IVF-Flat with ``nlist`` cells (default 4 sqrt(n)) and ``nprobe``
    probes, for millions of vectors. Missing neighbours (IVF) come back with id -1, sim 0.
    ``progress`` wraps the iterable of chunks (e.g. a tqdm bar; None = no bar).

    ``shards`` > 1 splits the database into that many contiguous shards, searches each for the
    top k of every query (on the Dask cluster when the job runs on one, see
    :mod:`visrep.sharding`) and merges the per-shard lists: with the exact index the result is
    the same as one search (ties aside).

    ``device`` 'cuda[:N]' searches on that GPU when faiss has GPU support (the ``gpu`` extra;
    :func:`visrep.device.faiss_on_device`), else on the CPU with a warning.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    q = x if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    n = x.shape[0]
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    k = min(int(k), n)
    if shards > 1:
        return _knn_sharded(x, q, k, int(shards), index=index, chunk=chunk, nlist=nlist, nprobe=nprobe, seed=seed,
                            device=device)
    ix = faiss_on_device(_make_index(x, index, nlist, nprobe, seed), device)
    sims = np.empty((q.shape[0], k), np.float32)
    ids = np.empty((q.shape[0], k), np.int64)
    starts = range(0, q.shape[0], chunk)
    if progress is not None:
        starts = progress(starts, desc="kNN graph", total=len(starts), unit="chunk")
    for s in starts:
        d, i = ix.search(q[s:s + chunk], k)
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


def affinity(ids: np.ndarray, sims: np.ndarray, gamma: float = 3.0, mutual: bool = True,
             n: int | None = None):
    """Sparse symmetric affinity (n, n) float32 CSR from kNN lists (CVPR 2017, Sec. 3; ``knngraph.m``).

    ``a_ij = max(s_ij, 0)^gamma`` for mutual neighbours i, j (each in the other's list), zero
    diagonal. With ``mutual=False`` an edge in either list is kept (symmetric union).
    """
    import scipy.sparse as sp

    ids = np.asarray(ids)
    sims = np.asarray(sims, dtype=np.float32)
    if ids.shape != sims.shape or ids.ndim != 2:
        raise UserError(f"kNN ids {ids.shape} and sims {sims.shape} must be the same (n, k) shape")
    n = ids.shape[0] if n is None else n
    rows = np.repeat(np.arange(ids.shape[0], dtype=np.int64), ids.shape[1])
    cols = ids.ravel()
    vals = np.maximum(sims.ravel(), 0.0) ** np.float32(gamma)
    keep = (cols >= 0) & (cols != rows) & (vals > 0)
    a = sp.csr_matrix((vals[keep].astype(np.float32), (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    a.sum_duplicates()
    at = a.T.tocsr()
    # s_ij and s_ji are the same inner product up to rounding: min keeps mutual edges, max the union
    sym = a.minimum(at) if mutual else a.maximum(at)
    sym = sp.csr_matrix(sym, dtype=np.float32)
    sym.eliminate_zeros()
    return sym


def normalize(a):
    """W = D^{-1/2} A D^{-1/2} (CVPR 2017 Eq. 2) -> (W csr float32, degrees (n,) float64).

    Isolated nodes (degree 0) get zero rows/columns in W (see the module docstring).
    """
    import scipy.sparse as sp

    deg = np.asarray(a.sum(axis=1)).ravel().astype(np.float64)
    inv = np.zeros_like(deg)
    nz = deg > 0
    inv[nz] = deg[nz] ** -0.5
    dinv = sp.diags(inv.astype(np.float32))
    w = (dinv @ a @ dinv).tocsr().astype(np.float32)
    return w, deg


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
        """Bytes of W and A in CSR form (data + indices + indptr)."""
        return sum(int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) for m in (self.W, self.A))


def build_graph(x: np.ndarray, k: int = 50, gamma: float = 3.0, mutual: bool = True, index: str = "flat",
                nprobe: int = 16, seed: int = 0, progress=None, normalize_input: bool = True,
                shards: int = 1, device: str = "cpu") -> Graph:
    """The normalized mutual kNN graph of database vectors `x` (n, d) (CVPR 2017 Sec. 3).

    Non-unit rows are L2-normalized unless ``normalize_input=False`` (then a UserError).
    ``shards`` > 1 runs the kNN search per database shard, ``device`` on a GPU (see :func:`knn`).
    """
    x = check_unit_rows(x, "graph vectors", normalize=normalize_input)
    if k < 2:
        raise UserError(f"parameter 'k' must be >= 2 (the list includes the vector itself), got {k}")
    sims, ids = knn(x, k, index=index, nprobe=nprobe, seed=seed, progress=progress, shards=shards, device=device)
    a = affinity(ids, sims, gamma=gamma, mutual=mutual, n=x.shape[0])
    w, deg = normalize(a)
    return Graph(W=w, A=a, k=k, gamma=gamma, mutual=mutual, n_isolated=int((deg == 0).sum()),
                 info={"nnz": int(a.nnz), "index": index})


