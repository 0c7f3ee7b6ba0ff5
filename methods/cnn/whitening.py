"""Whitening of global descriptors: PCA-whitening and learned (supervised) whitening.

- PCA-whitening (Jégou & Chum, *Negative evidences and co-occurrences in image retrieval:
  the benefit of PCA and whitening*, ECCV 2012): ``x' = diag(lambda_1..D + eps)^{-1/2} V_D^T (x - mu)``
  with (lambda, V) the eigen-decomposition of the covariance of a learning set, then L2.
- Learned whitening, "Lw" (Radenović, Tolias & Chum, *Fine-tuning CNN image retrieval with no
  human annotation*, TPAMI 2019, Sec. 3.4, after Mikolajczyk & Matas ICCV 2007): from matching
  pairs (i, j), the intra-class covariance ``C_S = mean (x_i - x_j)(x_i - x_j)^T`` is whitened by
  ``C_S^{-1/2}`` (inverse Cholesky factor), then rotated by the PCA of the whitened learning set:
  ``x' = V_D^T C_S^{-1/2} (x - mu)`` with mu the mean of the pairs' first elements, then L2.

The ``whiten`` method wraps a descriptor: it learns on the database vectors (unsupervised, the
default), or on a separate set of vectors given by ``learn_features`` (file), and with
``mode=learned`` on the matching pairs of ``pairs`` (an (m, 2) int .npy/.txt of row indices into
the learning set). It then ranks by nearest neighbours. Shapes: X (n, d) float32; output
(n, D) float32 unit rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visrep.errors import UserError
from visrep.features import l2_normalize


@dataclass
class WhiteningTransform:
    """x -> l2_normalize(P (x - mean)); P (D, d) float64, mean (d,)."""

    mean: np.ndarray
    P: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.P.shape[1]:
            raise UserError(f"whitening expects (n, {self.P.shape[1]}) vectors, got {x.shape}")
        return l2_normalize(((x - self.mean) @ self.P.T).astype(np.float32))


def _check(x, where):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise UserError(f"{where}: need an (n >= 2, d) array of vectors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError(f"{where}: vectors contain NaN or infinite values")
    return x


def _dim(dim, d, where):
    if dim is None:
        return d
    if not (1 <= dim <= d):
        raise UserError(f"parameter 'dim' must be between 1 and the descriptor dimension {d}, got {dim}")
    return dim


def pca_whitening(x: np.ndarray, dim: int | None = None, eps: float = 1e-6) -> WhiteningTransform:
    """PCA-whitening learned on `x` (n, d) keeping `dim` leading components (ECCV 2012)."""
    x = _check(x, "PCA-whitening learning set")
    dim = _dim(dim, x.shape[1], "pca")
    mu = x.mean(axis=0)
    c = np.cov(x - mu, rowvar=False, bias=True)
    lam, V = np.linalg.eigh(c)
    order = np.argsort(-lam)[:dim]
    lam, V = np.maximum(lam[order], 0), V[:, order]
    return WhiteningTransform(mean=mu, P=(V / np.sqrt(lam + eps)).T)


def learned_whitening(x: np.ndarray, pairs: np.ndarray, dim: int | None = None, eps: float = 1e-6) -> WhiteningTransform:
    """Supervised whitening from matching pairs (TPAMI 2019 Sec. 3.4): x (n, d), pairs (m, 2) row indices."""
    x = _check(x, "learned-whitening learning set")
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1 or not np.issubdtype(pairs.dtype, np.integer):
        raise UserError(f"pairs must be an (m, 2) integer array of row indices, got shape {pairs.shape} "
                        f"dtype {pairs.dtype}")
    if pairs.min() < 0 or pairs.max() >= x.shape[0]:
        raise UserError(f"pairs index rows outside the learning set (0..{x.shape[0] - 1})")
    dim = _dim(dim, x.shape[1], "learned")
    mu = x[pairs[:, 0]].mean(axis=0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    cs = diff.T @ diff / len(diff) + eps * np.eye(x.shape[1])
    try:
        Lc = np.linalg.cholesky(cs)
    except np.linalg.LinAlgError:
        raise UserError("learned whitening: the covariance of pair differences is not positive definite; "
                        "give more (and more varied) matching pairs") from None
    Wc = np.linalg.inv(Lc)                       # C_S^{-1/2} up to a rotation: Wc C_S Wc^T = I
    z = (x - mu) @ Wc.T
    lam, V = np.linalg.eigh(z.T @ z / len(z))
    order = np.argsort(-lam)[:dim]
    return WhiteningTransform(mean=mu, P=V[:, order].T @ Wc)


def _read_pairs(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"pairs file {p} does not exist")
    try:
        arr = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.int64, ndmin=2)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read pairs file {p}: {e}") from None
    return np.asarray(arr).astype(np.int64)


