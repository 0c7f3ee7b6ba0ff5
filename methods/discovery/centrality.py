"""Object saliency (OS): graph centrality of regions over the whole dataset, regressed to unseen patches.

Siméoni, Iscen, Tolias, Avrithis & Chum, *Unsupervised object discovery for instance
recognition*, WACV 2018, and *Graph-based particular object discovery*, MVA 2019 (talk slides
61-66: "rank by link analysis on entire dataset", "centrality extended to unseen image patches
by non-parametric regression"). Patterns that recur across the dataset (the objects) are
central in a nearest-neighbour graph of regional descriptors; background clutter is not.

1. :func:`region_graph` — the kNN graph W (N, N) of N L2-normalized regional vectors
   (N, d) of all database images: ``w_ij = [v_i^T v_j]_+^gamma`` when j is among the k nearest
   neighbours of i (and i of j: ``mutual``), symmetric, zero diagonal (the affinity of the
   diffusion papers, Iscen et al. CVPR 2017, Eq. 5, gamma = 3). Edges between regions of the
   same image are dropped (``same_image=False``): overlapping regions of one image are
   near-duplicates and would make every region central (our choice, stated as such).
2. Centrality c (N,): weighted degree ``c_i = sum_j w_ij`` (:func:`degree_centrality`) or
   PageRank ``c = (1 - alpha)/N 1 + alpha W D^-1 c`` (:func:`pagerank_centrality`).
3. :func:`regress_saliency` — Nadaraya-Watson regression of c to unseen patches x (M, d):
   ``OS(x) = sum_{j in NN_k(x)} K(x, v_j) c_j / sum_{j in NN_k(x)} K(x, v_j)`` with the same
   kernel ``K(x, v) = [x^T v]_+^gamma`` over the k nearest regions.
4. :func:`patch_descriptors` — the patch at every position of a map (C, H, W): the L2-normalized
   max over a ``size`` x ``size`` window (MAC of the patch), (H W, C).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise UserError(f"expected an (n, d) array of vectors, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _topk(sims: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sims.shape[1])
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return idx


def region_graph(v, owner=None, k: int = 10, gamma: float = 3.0, mutual: bool = True,
                 same_image: bool = False):
    """kNN affinity graph of regions v (N, d) -> scipy.sparse CSR (N, N) float64, symmetric.

    ``owner`` (N,) int: the image of each region (edges within one image dropped unless
    ``same_image``); ``mutual``: keep an edge only when each end is among the other's k nearest
    neighbours (else when either is).
    """
    import scipy.sparse as sp
    v = _unit_rows(v)
    n = len(v)
    if k < 1:
        raise UserError(f"region graph: k must be >= 1, got {k}")
    sims = (v @ v.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    if owner is not None and not same_image:
        owner = np.asarray(owner)
        if owner.shape != (n,):
            raise UserError(f"region graph: owner has shape {owner.shape}, expected ({n},)")
        sims[owner[:, None] == owner[None, :]] = -np.inf
    if n < 2:
        return sp.csr_matrix((n, n))
    idx = _topk(sims, k)
    rows = np.repeat(np.arange(n), idx.shape[1])
    cols = idx.ravel()
    s = sims[rows, cols]
    good = np.isfinite(s) & (s > 0)
    A = sp.csr_matrix((np.maximum(s[good], 0) ** gamma, (rows[good], cols[good])), shape=(n, n))
    return A.minimum(A.T) if mutual else A.maximum(A.T)


def degree_centrality(W) -> np.ndarray:
    """Weighted degree ``c_i = sum_j w_ij`` (N,) float64 of a symmetric affinity matrix (N, N)."""
    return np.asarray(W.sum(axis=1)).ravel().astype(np.float64)


def pagerank_centrality(W, alpha: float = 0.85, tol: float = 1e-10, maxiter: int = 1000) -> np.ndarray:
    """PageRank (N,) float64 summing to 1: ``c = (1 - alpha)/N + alpha (W D^-1 c + dangling mass / N)``."""
    import scipy.sparse as sp
    W = sp.csr_matrix(W, dtype=np.float64)
    n = W.shape[0]
    if n == 0:
        return np.zeros(0)
    d = np.asarray(W.sum(axis=0)).ravel()
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    P = W @ sp.diags(inv)                         # column-stochastic where the degree is positive
    c = np.full(n, 1.0 / n)
    for _ in range(maxiter):
        dangling = c[d == 0].sum()
        new = (1 - alpha) / n + alpha * (P @ c + dangling / n)
        if np.abs(new - c).sum() < tol:
            return new
        c = new
    return c


def regress_saliency(x, v, c, k: int = 10, gamma: float = 3.0, exclude=None) -> np.ndarray:
    """Nadaraya-Watson regression of centralities c (N,) at regions v (N, d) to patches x (M, d) -> (M,).

    ``exclude`` (N,) bool: regions not to use (e.g. those of the patch's own image, so that a
    database image is treated as unseen like a query). Patches with no positive similarity to
    any usable region get 0.
    """
    x, v = _unit_rows(x), _unit_rows(v)
    c = np.asarray(c, dtype=np.float64)
    if x.shape[1] != v.shape[1] or len(c) != len(v):
        raise UserError(f"regression: patches {x.shape}, regions {v.shape} and centralities {c.shape} do not fit")
    if len(v) == 0 or len(x) == 0:
        return np.zeros(len(x))
    sims = (x @ v.T).astype(np.float64)
    if exclude is not None:
        sims[:, np.asarray(exclude, bool)] = -np.inf
    idx = _topk(sims, k)
    w = np.maximum(np.take_along_axis(sims, idx, 1), 0.0) ** gamma
    den = w.sum(1)
    num = (w * c[idx]).sum(1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def patch_descriptors(x, size: int = 3) -> np.ndarray:
    """MAC of the ``size`` x ``size`` patch around every position of x (C, H, W) -> (H W, C), unit rows."""
    from scipy.ndimage import maximum_filter
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise UserError(f"expected a (C, H, W) activation map, got shape {x.shape}")
    m = maximum_filter(x, size=(1, size, size), mode="nearest") if size > 1 else x
    return _unit_rows(m.reshape(x.shape[0], -1).T)
