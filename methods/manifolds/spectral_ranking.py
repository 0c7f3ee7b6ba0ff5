"""Fast spectral ranking (FSR): diffusion as a low-rank spectral filter computed offline.

Iscen, Avrithis, Tolias, Furon & Chum, *Fast spectral ranking for similarity search*,
CVPR 2018. The diffusion ranking ``f = h_alpha(W) y`` with the transfer function
``h_alpha(lambda) = (1 - alpha) / (1 - alpha lambda)`` (the same ``f`` as
:mod:`visrep.methods.manifolds.diffusion`: ``L_alpha f = y``) is approximated with the rank-r
eigendecomposition ``W ~ U_r Lambda_r U_r^T`` (largest eigenvalues, where h is largest):

    offline:  U_r (n, r), lambda_r (r,)     by Lanczos (scipy ``eigsh``), or dense ``eigh``
              when r >= n - 1 (full rank: then FSR equals the exact solve)
    online:   f = U_r diag(h(lambda_r)) U_r^T y            (paper Eq. 8-9, "low-rank")

Because ``y`` has only ``kq`` non-zeros, ``U_r^T y`` costs O(kq r) and the ranking O(n r):
one dense product, like a Euclidean search in r dimensions, instead of iterations over the
sparse graph. Equivalently, with the embedding ``psi(x_i) = h(Lambda)^{1/2} U_r^T e_i``
the score is a dot product (the paper's "explicit embedding").

Space/time trade-offs (paper Sec. 4-5), exposed as parameters:

- ``rank``: r. Space n r floats for U (r = 5k on 10^5 images in the paper: about 3x the
  descriptors); online time O(n r); offline Lanczos time grows with r.
- ``sparsity``: keep only this fraction of the largest-magnitude entries of U (sparse
  embedding): less space and faster ranking, at some loss of accuracy.
- ``residual``: add the part of the spectrum outside U_r with its eigenvalues taken as 0,
  ``f = U_r (h(Lambda_r) - h(0)) U_r^T y + h(0) y`` -- exact in the kept subspace and keeps the
  query's own neighbours when r is small. (Default off: the plain low-rank filter.)

``rank`` larger than the database -> UserError. Isolated nodes (zero rows of W) are
eigenvectors of eigenvalue 0; a truncated rank drops them (f = 0 there unless ``residual``),
full rank keeps them exactly (f_i = h(0) y_i = (1 - alpha) y_i, as the direct solve).
Shapes: U (n, r) float32; lambda (r,) float64; Y (n, m) sparse; F (n, m) float32 (float64 on request).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .diffusion import check_alpha


def n_components(W) -> int:
    """Connected components of the graph W (n, n), isolated nodes (no edge) not counted."""
    from scipy.sparse.csgraph import connected_components
    deg = np.diff(W.tocsr().indptr)
    _, labels = connected_components(W, directed=False)
    return len(np.unique(labels[deg > 0]))


def uses_dense(n: int, rank: int) -> bool:
    """Lanczos pays off for r << n; at full rank, or a sizeable fraction of a small graph, dense eigh wins."""
    return rank >= n - 1 or n <= 64 or (n <= 8000 and rank > n // 10)


EIGEN_SOLVERS = ("auto", "lanczos", "shift-invert", "dense")


def eigen(W, rank: int, seed: int = 0, tol: float = 0.0, solver: str = "auto",
          dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The `rank` largest (algebraic) eigenpairs of symmetric W (n, n) -> (lambda (r,) desc, U (n, r)).

    ``dtype``: the precision the solver works in. float32 runs ARPACK's single-precision
    Lanczos on the float32 W as stored (no float64 copy; each Lanczos step moves half the
    bytes) and, on the dense path, LAPACK's float32 divide-and-conquer; ``tol = 0`` then means
    float32 machine precision. U is returned as float32 either way. A graph with several
    connected components (isolated nodes aside) has eigenvalue 1 once per component; single-
    precision Lanczos was seen to miss copies of such a repeated eigenvalue (tests), so the
    Lanczos solvers run in float64 there whatever ``dtype`` says.

    solver: ``lanczos`` (scipy.sparse.linalg.eigsh, ``which='LA'``); ``shift-invert`` (eigsh on
    (W - sigma I)^-1 with sigma = 1 + 1e-3, just above the spectrum of the normalized W: one
    sparse LU, then fast convergence even when many eigenvalues crowd near 1, as on strongly
    clustered graphs where plain Lanczos crawls); ``dense`` (numpy eigh, O(n^2) memory);
    ``auto``: dense at full rank or when n <= 8000 and r > n / 10, else Lanczos.
    """
    n = W.shape[0]
    rank = int(rank)
    if rank < 1:
        raise UserError(f"parameter 'rank' must be >= 1, got {rank}")
    if rank > n:
        raise UserError(f"parameter 'rank' ({rank}) is larger than the database ({n} vectors); "
                        f"use rank <= {n}")
    if solver not in EIGEN_SOLVERS:
        raise UserError(f"eigen solver must be one of {', '.join(EIGEN_SOLVERS)}, got {solver!r}")
    if solver == "auto":
        solver = "dense" if uses_dense(n, rank) else "lanczos"
    if solver != "dense" and rank >= n - 1:
        solver = "dense"  # eigsh needs k < n - 1
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UserError(f"eigen precision must be float32 or float64, got {dtype}")
    if solver == "dense":
        dense = W.toarray().astype(dtype) if hasattr(W, "toarray") else np.asarray(W, dtype)
        if dtype == np.float64:
            lam, U = np.linalg.eigh(dense)
        else:
            import scipy.linalg as sl
            lam, U = sl.eigh(dense, driver="evd", overwrite_a=True, check_finite=False)
        lam, U = lam[::-1][:rank], U[:, ::-1][:, :rank]
    else:
        import scipy.sparse.linalg as sla
        if dtype == np.float32 and n_components(W) > 1:
            dtype = np.dtype(np.float64)   # see the docstring: repeated eigenvalue 1 needs float64 Lanczos
        v0 = np.random.default_rng(seed).standard_normal(n).astype(dtype)
        Wd = W.astype(dtype) if W.dtype != dtype else W
        if solver == "shift-invert":
            lam, U = sla.eigsh(Wd.tocsc(), k=rank, sigma=1.0 + 1e-3, which="LM", v0=v0, tol=tol)
        else:
            lam, U = sla.eigsh(Wd, k=rank, which="LA", v0=v0, tol=tol)
        order = np.argsort(-lam)
        lam, U = lam[order], U[:, order]
    return lam.astype(np.float64), np.ascontiguousarray(U, dtype=np.float32)


def transfer(lam: np.ndarray, alpha: float) -> np.ndarray:
    """h_alpha(lambda) = (1 - alpha) / (1 - alpha lambda) (FSR Eq. 4)."""
    alpha = check_alpha(alpha)
    return (1.0 - alpha) / (1.0 - alpha * np.asarray(lam, np.float64))


def sparsify(U: np.ndarray, keep: float):
    """Keep the fraction `keep` of entries of U with the largest magnitude -> csr (n, r) float32."""
    import scipy.sparse as sp
    if not (0.0 < keep <= 1.0):
        raise UserError(f"parameter 'sparsity' must be in (0, 1], got {keep}")
    if keep >= 1.0:
        return U
    flat = np.abs(U).ravel()
    m = max(1, round(keep * flat.size))
    thr = np.partition(flat, flat.size - m)[flat.size - m]
    return sp.csr_matrix(np.where(np.abs(U) >= thr, U, 0.0).astype(np.float32))


def fsr_rank(U, lam: np.ndarray, Y, alpha: float, residual: bool = False, dtype=np.float32) -> np.ndarray:
    """Online FSR (paper Eq. 8-9): F = U diag(h(lambda)) U^T Y (+ residual term) -> (n, m) `dtype`.

    U (n, r) dense or sparse, Y (n, m) sparse or dense. Both products run in ``dtype``
    (float32 by default: U is stored in float32, so a float64 product would first copy U to
    float64 for every batch); float64 gives the reference numbers for tests.
    """
    dtype = np.dtype(dtype)
    h = transfer(lam, alpha)
    h_use = (h - (1.0 - alpha) if residual else h).astype(dtype)
    if hasattr(U, "tocsr"):
        U = U if U.dtype == dtype else U.astype(dtype)
    else:
        U = np.asarray(U, dtype=dtype)
    if hasattr(Y, "tocsc"):
        Yc = Y.astype(dtype) if Y.dtype != dtype else Y
        Z = Yc.T @ U                                                    # (m, r): kq non-zeros per column
    else:
        Yc = np.asarray(Y, dtype=dtype)
        Z = Yc.T @ U
    Z = np.asarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=dtype)
    Z *= h_use                                                          # (m, r) = (h(Lambda) U^T Y)^T
    F = U @ Z.T
    F = np.asarray(F.toarray() if hasattr(F, "toarray") else F, dtype=dtype)
    if residual:
        if hasattr(Yc, "tocsc"):
            Ycoo = Yc.tocoo()
            np.add.at(F, (Ycoo.row, Ycoo.col), dtype.type(1.0 - alpha) * Ycoo.data)
        else:
            F += dtype.type(1.0 - alpha) * Yc
    return F
