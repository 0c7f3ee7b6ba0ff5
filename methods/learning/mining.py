"""Mining on manifolds (MoM): metric learning without labels, and its pre-trained baseline.

Iscen, Tolias, Avrithis & Chum, *Mining on manifolds: metric learning without labels*, CVPR 2018
(the talk's slides 75-79). Given pre-trained descriptors ``x_i`` of unlabelled training images:

1. the mutual kNN graph of the descriptors (:mod:`visrep.methods.manifolds.knn_graph`, ``a_ij = s_ij^gamma``,
   ``W = D^{-1/2} A D^{-1/2}``);
2. anchors: points of high stationary probability of the random walk on the graph (for an
   undirected graph ``pi_i`` is proportional to the degree ``d_i``), taken greedily, skipping
   points that are Euclidean neighbours of an anchor already chosen (our reading of the paper's
   "anchors in dense regions, spread over the data");
3. manifold similarity of an anchor x to every point: the diffusion ``f = (I - alpha W)^{-1} e_x``
   (conjugate gradient, :func:`visrep.methods.manifolds.diffusion.cg`); manifold neighbours ``M(x)``: the
   ``k_manifold`` points of highest ``f``; Euclidean neighbours ``E(x)``: the ``k_euclidean``
   points of highest cosine similarity;
4. hard positives ``S+(x) = M(x) \\ E(x)``, hard negatives ``S-(x) = E(x) \\ M(x)`` (slide 77);
5. train the embedding with the triplet loss ``[||g(x) - g(p)||^2 - ||g(x) - g(n)||^2 + m]_+`` over
   tuples (x, p in S+(x), n in S-(x)) on L2-normalized outputs ``g``.

The paper fine-tunes the whole GoogLeNet (CUB) or VGG (retrieval). Here ``g`` is a head on frozen
pre-trained descriptors: ``g(x) = normalize(L x + B relu(A x))`` with ``L`` initialized to the
identity and ``B`` to zero, so training starts exactly at the pre-trained embedding (the
``pretrained`` method). Proxy pre-trained descriptors for image datasets without descriptor
files: ``features = "pixels-pca"``, PCA of the pixels fitted on the (unlabelled) training split.

Shapes: descriptors (n, d) float32 unit rows; anchors (a,) int64; tuples: anchors (t,),
positives (t,), negatives (t,) int64 indices into the training split.
Outputs (task ``metric-learning``): ``embeddings`` (n_test, d_out) float32 of the test split.
"""
from __future__ import annotations

import numpy as np

CITE = "Iscen, Tolias, Avrithis & Chum, Mining on manifolds: metric learning without labels, CVPR 2018"


def select_anchors(x: np.ndarray, degrees: np.ndarray, n_anchors: int, k_euclidean: int) -> np.ndarray:
    """Up to `n_anchors` anchors by decreasing degree (stationary probability), none among the
    `k_euclidean` Euclidean neighbours of an earlier anchor -> (a,) int64."""
    from visrep.methods.manifolds.knn_graph import knn
    _, nn = knn(x, min(k_euclidean + 1, len(x)))
    covered = np.zeros(len(x), bool)
    out = []
    for i in np.argsort(-degrees, kind="stable"):
        if covered[i] or degrees[i] <= 0:
            continue
        out.append(i)
        covered[nn[i]] = True
        if len(out) >= n_anchors:
            break
    return np.asarray(out, np.int64)


def manifold_similarity(W, anchors: np.ndarray, alpha: float, maxiter: int = 20) -> np.ndarray:
    """F (n, a) float64: diffusion from each anchor, ``(I - alpha W) f = e_anchor`` (CG, up to scale)."""
    import scipy.sparse as sp
    from visrep.methods.manifolds.diffusion import cg
    n = W.shape[0]
    y = sp.csc_matrix((np.ones(len(anchors)), (anchors, np.arange(len(anchors)))), shape=(n, len(anchors)))
    f, _, _ = cg(W, y, alpha, tol=1e-6, maxiter=maxiter)
    return f


def mine(x: np.ndarray, W, anchors: np.ndarray, k_euclidean: int, k_manifold: int, alpha: float,
         maxiter: int = 20, k_manifold_neg: int | None = None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """[(anchor, S+ (p,) int64, S- (q,) int64)] with S+ = M \\ E and S- = E \\ M' (the anchor excluded).

    M: the `k_manifold` manifold neighbours; M' the `k_manifold_neg` ones (default: M). A larger
    M' keeps same-class points far along the manifold out of the negatives (large classes).
    """
    from visrep.methods.manifolds.knn_graph import knn
    _, enn = knn(x, min(k_euclidean + 1, len(x)), queries=x[anchors])
    f = manifold_similarity(W, anchors, alpha, maxiter)
    out = []
    for j, a in enumerate(anchors):
        e = set(enn[j].tolist()) - {int(a)}
        col = f[:, j].copy()
        col[a] = -np.inf
        m = np.argsort(-col, kind="stable")[:k_manifold]
        m = set(m[col[m] > 0].tolist())
        mn = m
        if k_manifold_neg is not None:
            mn = np.argsort(-col, kind="stable")[:k_manifold_neg]
            mn = set(mn[col[mn] > 0].tolist())
        pos = np.array(sorted(m - e), np.int64)
        neg = np.array(sorted(e - mn), np.int64)
        out.append((int(a), pos, neg))
    return out


def tuples_from_pools(pools, per_anchor: int, rng: np.random.Generator) -> np.ndarray:
    """(t, 3) int64 triplets (anchor, positive, negative): up to `per_anchor` per anchor with both pools non-empty."""
    rows = []
    for a, pos, neg in pools:
        if len(pos) == 0 or len(neg) == 0:
            continue
        m = per_anchor
        rows.append(np.stack([np.full(m, a), rng.choice(pos, m), rng.choice(neg, m)], 1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


def triplet_loss(ga, gp, gn, margin: float):
    """Mean of ``[||a - p||^2 - ||a - n||^2 + margin]_+`` over rows (torch (t, d) unit rows)."""
    import torch
    return torch.clamp(((ga - gp) ** 2).sum(1) - ((ga - gn) ** 2).sum(1) + margin, min=0).mean()


def make_head(d: int, hidden: int):
    """g(x) = normalize(L x + B relu(A x)), L = I, B = 0 at initialization (torch module)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(d, d, bias=False)
            nn.init.eye_(self.lin.weight)
            self.a = nn.Linear(d, hidden)
            self.b = nn.Linear(hidden, d, bias=False)
            nn.init.zeros_(self.b.weight)

        def forward(self, x):
            return F.normalize(self.lin(x) + self.b(torch.relu(self.a(x))), dim=1)

    return Head()


