"""Diffusion on the kNN graph: random walk with restart and conjugate gradient.

Zhou, Weston, Gretton, Bousquet & Schölkopf, *Ranking on data manifolds*, NIPS 2003, and
Iscen, Tolias, Avrithis, Furon & Chum, *Efficient diffusion on region manifolds: recovering
small objects with compact CNN representations*, CVPR 2017 (the talk's "searching on
manifolds" slides).

With ``W`` the symmetric-normalized mutual kNN affinity (:mod:`visrep.methods.manifolds.knn_graph`),
``y`` the query vector and ``alpha`` in (0, 1), the ranking vector ``f`` solves

    L_alpha f = y,     L_alpha = (I - alpha W) / (1 - alpha)          (CVPR 2017 Eq. 5)

- ``rwr``: the iteration ``f <- alpha W f + (1 - alpha) y`` (NIPS 2003 / slide "random walk
  with restart"), whose fixed point is exactly this ``f``;
- ``diffusion``: conjugate gradient on the same system (CVPR 2017 Sec. 3.2; ``L_alpha`` is
  symmetric positive definite for alpha < 1 because the eigenvalues of W lie in [-1, 1]).

Both stop when the relative residual ``||y - L_alpha f|| / ||y||`` falls below ``tol`` or after
``maxiter`` iterations (the paper's code: tol = 1e-6, 20 CG iterations).

The query (CVPR 2017 Sec. 4, ``ymake.m``) enters by its ``kq`` nearest database vectors:
``y_i = max(q^T x_i, 0)^gamma`` for those, 0 elsewhere (kq = 10 for global descriptors in the
authors' code, kq = k for regional ones). For regional queries (many vectors), similarities
of all query regions are summed per database region before the top ``kq`` are kept.

Ranking: database items are sorted by ``f``; items the diffusion does not reach (``f = 0``,
e.g. other connected components) follow, ordered by plain query similarity (an explicit
tie-break; the paper's code leaves their order arbitrary).

Truncation (CVPR 2017 Sec. 4.2, ``findtrunc.m``/``trunclap.m``): with ``truncate = N'`` each
query diffuses only on the subgraph of its N' nearest neighbours, re-normalized; the rest of
the database is ranked after, by similarity.

Regional diffusion (Sec. 4.1): graph nodes are region vectors; region scores are pooled per
image with generalized max-pooling weights (:func:`visrep.methods.cnn.regional.gmp_weights`):
``score(image) = sum_r c_r f_r``.

Shapes: database (n, d) float32 unit rows; ``Y``, ``F`` (n, n_q) float (CG: float64 by default, float32
on request, see :func:`cg`); ranks (n, n_q) int64.
"""
from __future__ import annotations

import os

import numpy as np

from visrep.errors import UserError

from .knn_graph import knn


def check_alpha(alpha: float) -> float:
    if not (0.0 < float(alpha) < 1.0):
        raise UserError(f"parameter 'alpha' must be in the open interval (0, 1), got {alpha!r}")
    return float(alpha)


# ---------------------------------------------------------------- query vector y
def query_vectors(db: np.ndarray, queries: np.ndarray, kq: int, gamma: float, query_of: np.ndarray | None = None,
                  n_queries: int | None = None):
    """Sparse Y (n, n_q) float32: each query's top-kq database similarities ^ gamma (``ymake.m``).

    ``queries`` (m, d). With ``query_of`` (m,) int, several rows belong to one query (regional
    queries): their similarities are summed per database vector before the top kq are kept.
    """
    import scipy.sparse as sp

    n = db.shape[0]
    kq = min(int(kq), n)
    if query_of is None:
        sims, ids = knn(db, kq, queries=queries)
        nq = queries.shape[0]
        rows, cols, vals = ids.ravel(), np.repeat(np.arange(nq), kq), sims.ravel()
    else:
        nq = int(n_queries if n_queries is not None else query_of.max() + 1)
        sims, ids = knn(db, kq, queries=queries)
        acc = sp.csr_matrix((sims.ravel(), (np.repeat(query_of, kq), ids.ravel())), shape=(nq, n))
        acc.sum_duplicates()
        rows, cols, vals = [], [], []
        for j in range(nq):
            row = acc.getrow(j)
            top = np.argsort(-row.data, kind="stable")[:kq]
            rows.append(row.indices[top]), cols.append(np.full(len(top), j)), vals.append(row.data[top])
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    vals = np.maximum(vals, 0.0) ** np.float32(gamma)
    y = sp.csc_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, nq))
    y.sum_duplicates()
    return y


# ---------------------------------------------------------------- solvers
def _dense(y) -> np.ndarray:
    return np.asarray(y.toarray() if hasattr(y, "toarray") else y, dtype=np.float64)


def _float64_operator(W):
    """W as float64 once (W @ F with float32 W and float64 F would upcast a copy of W on every
    product); the products are the same, bit for bit."""
    if hasattr(W, "dtype") and W.dtype != np.float64 and hasattr(W, "astype"):
        return W.astype(np.float64)
    return W


def laplacian_apply(W, alpha: float):
    """The map F -> L_alpha F = (F - alpha W F) / (1 - alpha), F (n, m) float64."""
    W = _float64_operator(W)

    def apply(f):
        out = np.asarray(W @ f)                 # a fresh array: the steps below reuse it in place
        np.multiply(out, alpha, out=out)
        np.subtract(f, out, out=out)
        np.divide(out, 1.0 - alpha, out=out)
        return out
    return apply


#: cg runs its products in reverse Cuthill-McKee order from this many non-zeros of W (and >= 4 queries)
REORDER_NNZ = 4_000_000


def default_threads() -> int:
    """Threads for the sparse products: OMP_NUM_THREADS (the runner sets it per worker), else the cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _block_product(W, dtype, threads: int | None = None, reorder: bool = False):
    """A function P (n, m) -> W P written into a preallocated (n, m) buffer, W cast to `dtype` once.

    scipy's ``csr_matvecs`` (what ``W @ P`` runs) accumulates into the buffer, so the product is
    the same, bit for bit, as ``W @ P``, without allocating an (n, m) array per iteration; where
    that kernel is not importable (a future scipy), ``W @ P`` is used. With ``threads`` > 1 (default
    :func:`default_threads`) the rows are split into that many blocks of equal non-zeros, each
    product on its own thread (the kernel releases the GIL): every row is summed as before, so the
    result is the same bit for bit. ``reorder`` (and W of >= ``REORDER_NNZ`` non-zeros): the product runs
    on W in reverse Cuthill-McKee order (:func:`_reordered`; P gathered into that order and the result
    scattered back), again bit for bit.
    """
    import scipy.sparse as sp

    W = sp.csr_matrix(W)
    if W.dtype != dtype:
        W = W.astype(dtype)
    n = W.shape[0]
    try:
        from scipy.sparse._sparsetools import csr_matvecs
    except ImportError:  # pragma: no cover - private kernel moved
        csr_matvecs = None
    threads = max(1, min(int(threads or default_threads()), n))
    if W.nnz < 1_000_000:                                   # not worth a thread
        threads = 1
    perm = None
    if reorder and W.nnz >= REORDER_NNZ:                    # rows and columns in a bandwidth-reducing order
        W, perm = _reordered(W)
    cuts = np.searchsorted(W.indptr, np.linspace(0, W.nnz, threads + 1)[1:-1])
    bounds = list(zip([0, *cuts.tolist()], [*cuts.tolist(), n]))
    pool = None
    if threads > 1 and csr_matvecs is not None:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(threads)

    def rows(P: np.ndarray, out: np.ndarray, r0: int, r1: int) -> None:
        csr_matvecs(r1 - r0, W.shape[1], P.shape[1], W.indptr[r0:r1 + 1], W.indices, W.data, P.ravel(),
                    out[r0:r1].ravel())

    def product(P: np.ndarray, out: np.ndarray) -> np.ndarray:
        if csr_matvecs is None:  # pragma: no cover
            out[...] = W @ P if perm is None else (W @ P[perm])[inv]
            return out
        src, dst = (P, out) if perm is None else (P[perm], work)
        dst.fill(0)
        if pool is None:
            rows(src, dst, 0, n)
        else:
            list(pool.map(lambda b: rows(src, dst, *b), bounds))
        if perm is not None:
            np.take(dst, inv, axis=0, out=out)
        return out

    if perm is not None:
        inv = np.empty_like(perm)
        inv[perm] = np.arange(n)
        work = None

        def product_reordered(P, out):
            nonlocal work
            if work is None or work.shape != out.shape:
                work = np.empty_like(out)
            return product(P, out)
        return product_reordered
    return product


def _reordered(W):
    """(W with rows and columns in reverse Cuthill-McKee order, the order) for a symmetric CSR W.

    Each row keeps its entries in their order (only the column ids are renamed), so every row of a product
    is summed as before: the same numbers, bit for bit. On kNN graphs of vectors stored in no particular
    order, the order puts neighbours near each other in memory (500k-vector graph, 16 queries, 2 threads: CG
    0.51 -> 0.13 s per query).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    perm = reverse_cuthill_mckee(W, symmetric_mode=True).astype(np.int64)
    inv = np.empty(len(perm), W.indices.dtype)
    inv[perm] = np.arange(len(perm))
    out = W[perm]                                             # rows in the new order, each row's entries kept
    out = sp.csr_matrix((out.data, out.indices, out.indptr), shape=W.shape, copy=False)
    step = 1 << 22
    for s in range(0, out.nnz, step):                         # columns renamed in place, in chunks
        out.indices[s:s + step] = inv[out.indices[s:s + step]]
    out.has_sorted_indices = False
    return out, perm


def cg(W, Y, alpha: float, tol: float = 1e-6, maxiter: int = 20, x0=None,
       dtype=np.float64) -> tuple[np.ndarray, np.ndarray, list]:
    """Conjugate gradient on L_alpha F = Y, one independent CG per column (CVPR 2017 Sec. 3.2, Eq. 5).

    W (n, n) sparse symmetric, Y (n, m) sparse or dense. Returns (F (n, m) `dtype`,
    iterations (m,) int, history: list of the max relative residual per iteration).
    A column stops (is frozen) once ``||y - L f|| <= tol ||y||``.

    The m columns share every sparse product (one pass over W per iteration for the whole
    block); all (n, m) blocks are allocated once. Products run on OMP_NUM_THREADS threads and, for
    graphs of >= ``REORDER_NNZ`` non-zeros and >= 4 columns, in reverse Cuthill-McKee order: the
    same numbers bit for bit (see :func:`_block_product`). ``dtype`` is the precision of W, the
    iterates and the products: float64 (default; the same numbers, bit for bit, as the
    textbook recurrences with float64 W) or float32 (half the memory traffic of the product
    that dominates the time; the CG scalars -- column inner products, step lengths -- are
    still accumulated in float64). float32 is meant for tol >= 1e-6: its iterates cannot
    resolve residuals far below 1e-7 relative.
    """
    alpha = check_alpha(alpha)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UserError(f"cg precision must be float32 or float64, got {dtype}")
    Y = np.asarray(Y.toarray() if hasattr(Y, "toarray") else Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    # a block of queries: on a large graph the product runs in a locality order (same numbers)
    product = _block_product(W, dtype, reorder=Y.shape[1] >= 4)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    a_op, s_op = dtype.type(alpha), dtype.type(1.0 - alpha)
    AP = np.empty_like(Y)
    tmp = np.empty_like(Y)

    def apply_L(P):                                       # AP = (P - alpha W P) / (1 - alpha), in place
        product(P, AP)
        np.multiply(AP, a_op, out=AP)
        np.subtract(P, AP, out=AP)
        np.divide(AP, s_op, out=AP)
        return AP

    def coldot(A, B):
        return np.einsum("ij,ij->j", A, B, dtype=np.float64)

    ynorm = np.sqrt(coldot(Y, Y))
    ynorm[ynorm == 0] = 1.0
    if x0 is None:
        X = np.zeros_like(Y)
        R = Y.copy()
    else:
        X = np.array(x0, dtype=dtype, order="C").reshape(Y.shape)
        R = Y - apply_L(X)
    P = R.copy()
    rs = coldot(R, R)
    iters = np.zeros(Y.shape[1], np.int64)
    active = np.sqrt(rs) > tol * ynorm
    history = [float((np.sqrt(rs) / ynorm).max())]
    for _ in range(maxiter):
        if not active.any():
            break
        apply_L(P)
        denom = coldot(P, AP)
        a = np.where(active & (denom > 0), rs / np.where(denom > 0, denom, 1.0), 0.0).astype(dtype)
        np.multiply(P, a, out=tmp)
        X += tmp
        np.multiply(AP, a, out=tmp)
        R -= tmp
        rs_new = coldot(R, R)
        iters += active
        beta = np.where(active, rs_new / np.where(rs > 0, rs, 1.0), 0.0).astype(dtype)
        P *= beta
        P += R
        rs = np.where(active, rs_new, rs)
        active &= np.sqrt(rs) > tol * ynorm
        history.append(float((np.sqrt(rs) / ynorm).max()))
    return X, iters, history


def rwr(W, Y, alpha: float, tol: float = 1e-6, maxiter: int = 1000) -> tuple[np.ndarray, np.ndarray, list]:
    """Random walk with restart f <- alpha W f + (1 - alpha) y, from f = (1 - alpha) y.

    Same fixed point as :func:`cg` (L_alpha f = y). The residual of the current iterate is
    ``(f_next - f) / (1 - alpha)``; a column stops once it is <= tol ||y||.
    Returns (F (n, m) float64, iterations (m,), history of max relative residual).
    """
    alpha = check_alpha(alpha)
    Y = _dense(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    ynorm = np.linalg.norm(Y, axis=0)
    ynorm[ynorm == 0] = 1.0
    W = _float64_operator(W)
    F = (1 - alpha) * Y
    iters = np.zeros(Y.shape[1], np.int64)
    active = np.ones(Y.shape[1], bool)
    history = []
    for _ in range(maxiter + 1):
        Fn = alpha * (W @ F) + (1 - alpha) * Y
        res = np.linalg.norm(Fn - F, axis=0) / (1 - alpha) / ynorm
        history.append(float(res[active].max()) if active.any() else 0.0)
        active = active & (res > tol)
        if not active.any() or len(history) > maxiter:
            break
        F = np.where(active, Fn, F)
        iters += active
    return F, iters, history


def direct_solve(W, Y, alpha: float) -> np.ndarray:
    """Reference: L_alpha F = Y by a sparse direct solver (scipy spsolve). For tests, small n."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    alpha = check_alpha(alpha)
    n = W.shape[0]
    L = ((sp.identity(n, format="csc") - alpha * sp.csc_matrix(W, dtype=np.float64)) / (1 - alpha)).tocsc()
    out = sla.spsolve(L, _dense(Y))
    return out[:, None] if out.ndim == 1 else out


def pool_regions(F: np.ndarray, image_of: np.ndarray, coeff: np.ndarray, n_images: int) -> np.ndarray:
    """Image scores (n_images, m) = sum over an image's regions of coeff_r f_r (GMP pooling, ``run_test.m``)."""
    import scipy.sparse as sp
    P = sp.csr_matrix((coeff.astype(np.float64), (image_of, np.arange(len(image_of)))),
                      shape=(n_images, len(image_of)))
    return np.asarray(P @ F)


