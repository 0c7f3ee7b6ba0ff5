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
Shapes: U (n, r) float32; lambda (r,) float64; Y (n, m) sparse; F (n, m) float64.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .diffusion import check_alpha


def uses_dense(n: int, rank: int) -> bool:
    """Lanczos pays off for r << n; at full rank, or a sizeable fraction of a small graph, dense eigh wins."""
    return rank >= n - 1 or n <= 64 or (n <= 8000 and rank > n // 10)


EIGEN_SOLVERS = ("auto", "lanczos", "shift-invert", "dense")


def eigen(W, rank: int, seed: int = 0, tol: float = 0.0, solver: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The `rank` largest (algebraic) eigenpairs of symmetric W (n, n) -> (lambda (r,) desc, U (n, r)).

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
    if solver == "dense":
        dense = W.toarray().astype(np.float64) if hasattr(W, "toarray") else np.asarray(W, np.float64)
        lam, U = np.linalg.eigh(dense)
        lam, U = lam[::-1][:rank], U[:, ::-1][:, :rank]
    else:
        import scipy.sparse.linalg as sla
        v0 = np.random.default_rng(seed).standard_normal(n)
        if solver == "shift-invert":
            lam, U = sla.eigsh(W.astype(np.float64).tocsc(), k=rank, sigma=1.0 + 1e-3, which="LM", v0=v0, tol=tol)
        else:
            lam, U = sla.eigsh(W.astype(np.float64), k=rank, which="LA", v0=v0, tol=tol)
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
    m = max(1, int(round(keep * flat.size)))
    thr = np.partition(flat, flat.size - m)[flat.size - m]
    return sp.csr_matrix(np.where(np.abs(U) >= thr, U, 0.0).astype(np.float32))


def fsr_rank(U, lam: np.ndarray, Y, alpha: float, residual: bool = False) -> np.ndarray:
    """Online FSR: F = U diag(h(lambda)) U^T Y (+ residual term) -> (n, m) float64."""
    h = transfer(lam, alpha)
    Ysp = Y if hasattr(Y, "tocsc") else np.asarray(Y)
    Z = Ysp.T @ U                                                       # (m, r); U dense or sparse
    Z = np.asarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=np.float64)
    h_use = h - (1.0 - alpha) if residual else h
    F = U @ (h_use[:, None] * Z.T)
    F = np.asarray(F.toarray() if hasattr(F, "toarray") else F, dtype=np.float64)
    if residual:
        F = F + (1.0 - alpha) * (Y.toarray() if hasattr(Y, "toarray") else np.asarray(Y))
    return F


