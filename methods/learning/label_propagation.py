"""Deep label propagation (DLP) for semi-supervised classification, and its supervised baseline.

Iscen, Tolias, Avrithis & Chum, *Label propagation for deep semi-supervised learning*, CVPR 2019
(the talk's "deep label propagation" slides). With n training items of which the labelled set L
carries labels and U = the rest does not, c classes, and a network f_theta:

1. train f_theta on L only (supervised initialization);
2. repeat: (a) extract L2-normalized features v_i (the network's penultimate layer) of all n items;
   (b) kNN graph (Eq. 9): ``a_ij = [v_i^T v_j]_+^gamma`` if j is among the k nearest neighbours
   of i (i != j), ``W = A + A^T``, ``W_n = D^{-1/2} W D^{-1/2}``; (c) label propagation (Eq. 10):
   solve ``(I - alpha W_n) Z = Y`` by conjugate gradient, one column per class, with
   ``Y_ij = 1 / |L_j|`` for labelled i of class j, else 0 (class-normalized, as in the authors'
   code); pseudo-label ``yhat_i = argmax_j z_ij``; (d) certainty weight (Eq. 11)
   ``omega_i = 1 - H(zhat_i) / log c`` with ``zhat_i`` the L1-normalized row of ``max(Z, 0)``
   (labelled items: true label and omega = 1), class weight (Eq. 12) ``zeta_j = 1 / |L_j + U_j|``
   (rescaled to average 1 per item); (e) train one epoch on L and U with the weighted loss
   ``sum_i omega_i zeta_{y_i} CE(f(x_i), y_i)``, batches mixing labelled and unlabelled items.

Paper defaults: k = 50, gamma = 3, alpha = 0.99, CG with tolerance 1e-6 and 20 iterations.
The networks here (:mod:`visrep.methods.learning.convnets`) are small proxies of the paper's C13 /
ResNet-18; the algorithm is the paper's.

Shapes: features ``V`` (n, d) float32 unit rows; ``W_n`` scipy csr (n, n) float32; ``Y``, ``Z``
(n, c) float64; pseudo-labels (n,) int64; weights (n,) float64 in [0, 1].
Outputs (task ``classification``): ``scores`` (n_test, c) float32 logits of the test items.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

CITE = "Iscen, Tolias, Avrithis & Chum, Label propagation for deep semi-supervised learning, CVPR 2019"


# ---------------------------------------------------------------- graph and propagation (Eqs. 9-12)
def dlp_graph(v: np.ndarray, k: int = 50, gamma: float = 3.0):
    """Normalized affinity W_n (n, n) csr float32 of Eq. 9: symmetric kNN graph ``A + A^T``, zero diagonal.

    ``v`` (n, d): rows are L2-normalized here (cosine similarity). Each item's k nearest other
    items (by inner product, exact faiss search) give ``a_ij = max(v_i.v_j, 0)^gamma``.
    """
    import scipy.sparse as sp
    from visrep.methods.manifolds.knn_graph import check_unit_rows, knn, normalize

    v = check_unit_rows(v, "label propagation features")
    n = len(v)
    if k < 1:
        raise UserError(f"parameter 'k' must be >= 1, got {k}")
    k = min(int(k), n - 1)
    if k < 1:
        raise UserError("label propagation needs at least 2 items")
    sims, ids = knn(v, k + 1)
    rows = np.repeat(np.arange(n), k + 1)
    cols, vals = ids.ravel(), np.maximum(sims.ravel(), 0.0) ** np.float32(gamma)
    keep = (cols != rows) & (cols >= 0)
    # self is dropped wherever faiss returned it (with exact duplicates it may not come first)
    a = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    w = (a + a.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    wn, _ = normalize(w)
    return wn


def label_matrix(labelled_idx: np.ndarray, labels: np.ndarray, n: int, n_classes: int,
                 class_normalize: bool = True) -> np.ndarray:
    """Y (n, c) float64: ``1 / |L_j|`` (or 1) at (i, y_i) for labelled i, zeros elsewhere."""
    labelled_idx = np.asarray(labelled_idx, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if labelled_idx.shape != labels.shape:
        raise UserError(f"{len(labelled_idx)} labelled indices but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(f"labels must lie in [0, {n_classes})")
    y = np.zeros((n, n_classes))
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    y[labelled_idx, labels] = 1.0 / counts[labels] if class_normalize else 1.0
    return y


def propagate(wn, labelled_idx, labels, n_classes: int, alpha: float = 0.99, tol: float = 1e-6,
              maxiter: int = 20, class_normalize: bool = True) -> np.ndarray:
    """Z (n, c) float64 solving ``(I - alpha W_n) Z = Y`` by conjugate gradient (Eq. 10).

    Uses :func:`visrep.methods.manifolds.diffusion.cg`, which solves ``L_alpha Z = Y`` with
    ``L_alpha = (I - alpha W)/(1 - alpha)``; its solution is rescaled by ``1 / (1 - alpha)`` so
    that Z is exactly the solution of Eq. 10 (the scale changes no argmax and no certainty).
    """
    from visrep.methods.manifolds.diffusion import cg

    y = label_matrix(labelled_idx, labels, wn.shape[0], n_classes, class_normalize)
    z, _, _ = cg(wn, y, alpha, tol=tol, maxiter=maxiter)
    return z / (1.0 - alpha)


def pseudo_labels(z: np.ndarray, labelled_idx=None, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(pseudo-labels (n,) int64, certainty weights omega (n,) float64) from Z (n, c) (Eq. 11).

    ``omega_i = 1 - H(zhat_i) / log c`` with ``zhat_i = max(z_i, 0) / sum_j max(z_ij, 0)``; rows the
    propagation never reached (all zero) get weight 0. Labelled items keep their label, weight 1.
    """
    z = np.maximum(np.asarray(z, dtype=np.float64), 0.0)
    n, c = z.shape
    s = z.sum(1, keepdims=True)
    reached = s[:, 0] > 0
    p = np.where(reached[:, None], z / np.where(s > 0, s, 1.0), 1.0 / c)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    w = np.clip(1.0 - h / np.log(c), 0.0, 1.0) if c > 1 else np.ones(n)
    w[~reached] = 0.0
    y = z.argmax(1).astype(np.int64)
    if labelled_idx is not None:
        y[labelled_idx] = labels
        w[labelled_idx] = 1.0
    return y, w


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """zeta_j proportional to 1 / |L_j + U_j| (Eq. 12), scaled so that mean_i zeta_{y_i} = 1 -> (c,)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    zeta = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return zeta


