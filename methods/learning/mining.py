"""Mining on manifolds (MoM): metric learning without labels, and its pre-trained baseline.

Two plugins use these kernels: ``mom`` fine-tunes the network end to end as the paper does
(:func:`mine_pools`, :func:`sample_triplets`, :func:`weighted_triplet_loss`, :func:`make_embedder`; its loop,
:func:`.pipeline.finetune`, also trains the supervised ``triplet`` baseline); ``mom-head`` is a simplification
(steps 1-5 below, a residual head on frozen descriptors).

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


def manifold_similarity(W, anchors: np.ndarray, alpha: float, maxiter: int = 20, dtype=np.float64) -> np.ndarray:
    """F (n, a) `dtype`: diffusion from each anchor, ``(I - alpha W) f = e_anchor`` (CG, up to scale)."""
    import scipy.sparse as sp
    from visrep.methods.manifolds.diffusion import cg
    n = W.shape[0]
    y = sp.csc_matrix((np.ones(len(anchors)), (anchors, np.arange(len(anchors)))), shape=(n, len(anchors)))
    f, _, _ = cg(W, y, alpha, tol=1e-6, maxiter=maxiter, dtype=dtype)
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




# ---------------------------------------------------------------- end-to-end MoM (the paper's fine-tuning)
def mine_pools(x: np.ndarray, W, anchors: np.ndarray, k_pos: int, k_neg: int, alpha: float, max_pool: int,
               maxiter: int = 20, chunk: int = 512) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The paper's pools (Iscen et al. CVPR 2018, Sec. 3, Eq. 6; authors' posmine.m / negmine.m).

    x (n, d) float32 unit rows (the pre-trained descriptors), W (n, n) the normalized kNN graph,
    anchors (a,) int64. For an anchor q with Euclidean neighbours ``NN^e_k(q)`` (top k of ``x_q^T x``)
    and manifold neighbours ``NN^m_k(q)`` (top k of the diffusion ``f = (I - alpha W)^{-1} e_q``):

    - positives ``P+(q) = NN^m_{k_pos}(q) \\ NN^e_{k_pos}(q)``, sorted by manifold similarity, at most
      `max_pool`, with weights = their manifold similarity ``f`` (the authors' ``posw``);
    - negatives ``P-(q) = NN^e_{k_neg}(q) \\ NN^m_{k_neg}(q)``, sorted by Euclidean similarity, at most
      `max_pool`. The anchor itself is in both neighbour sets, so never in a pool.

    Returns [(anchor, pos (p,) int64, pos_weight (p,) float64, neg (q,) int64)].
    """
    n = len(x)
    out = []
    for s in range(0, len(anchors), chunk):
        a = np.asarray(anchors[s:s + chunk], np.int64)
        f = np.asarray(manifold_similarity(W, a, alpha, maxiter, np.float32), np.float64)     # (n, b)
        se = x[a] @ x.T                                                            # (b, n)
        for j, q in enumerate(a):
            col = f[:, j]
            e_order = np.argsort(-se[j], kind="stable")
            m_order = np.argsort(-col, kind="stable")
            e_rank = np.empty(n, np.int64)
            e_rank[e_order] = np.arange(n)
            m_rank = np.empty(n, np.int64)
            m_rank[m_order] = np.arange(n)
            mk = m_order[:k_pos]
            pos = mk[e_rank[mk] >= k_pos][:max_pool]                 # manifold order kept
            ek = e_order[:k_neg]
            neg = ek[m_rank[ek] >= k_neg][:max_pool]                 # Euclidean order kept
            out.append((int(q), pos.astype(np.int64), col[pos].astype(np.float64), neg.astype(np.int64)))
    return out


def sample_triplets(pools, emb: np.ndarray, n_triplets: int, n_hard: int, rng: np.random.Generator):
    """One epoch of training tuples as the authors' CUB code draws them.

    For each of `n_triplets` tuples: an anchor drawn uniformly among those with both pools
    non-empty, a positive drawn uniformly from its pool, a negative drawn uniformly among the
    `n_hard` members of its negative pool nearest to the anchor in the *current* embedding
    `emb` (n, d). Returns (triplets (t, 3) int64, weights (t,) float64 = the positive's weight).
    """
    ok = [p for p in pools if len(p[1]) and len(p[3])]
    if not ok or n_triplets <= 0:
        return np.zeros((0, 3), np.int64), np.zeros(0)
    hard = []
    for a, _, _, neg in ok:
        d = ((emb[neg] - emb[a]) ** 2).sum(1)
        hard.append(neg[np.argsort(d, kind="stable")[:n_hard]])
    pick = rng.integers(0, len(ok), n_triplets)
    rows, w = np.empty((n_triplets, 3), np.int64), np.empty(n_triplets)
    for t, i in enumerate(pick):
        a, pos, pw, _ = ok[i]
        j = rng.integers(0, len(pos))
        rows[t] = (a, pos[j], hard[i][rng.integers(0, len(hard[i]))])
        w[t] = pw[j]
    return rows, w


def weighted_triplet_loss(ga, gp, gn, weights, margin: float):
    """``mean_t w_t [m + ||a_t - p_t||^2 - ||a_t - n_t||^2]_+`` (torch (t, d) unit rows, w (t,)):
    the triplet loss of the paper (Sec. 3.3) with the authors' positive weights."""
    import torch
    return (weights * torch.clamp(margin + ((ga - gp) ** 2).sum(1) - ((ga - gn) ** 2).sum(1), min=0)).mean()


def make_embedder(trunk, dim: int, out_dim: int):
    """The network trained by MoM (authors' model.py): ``g(x) = normalize(E relu(GAP(trunk(x))))`` with a
    linear embedding E (dim -> out_dim); ``out_dim = 0``: ``g(x) = normalize(GAP(trunk(x)))``.
    ``trunk``: images (B, C, H, W) -> feature maps (B, dim, h, w). Returns a torch module."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Embedder(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            self.embed = nn.Linear(dim, out_dim) if out_dim else None

        def forward(self, x):
            f = self.trunk(x).mean(dim=(2, 3))
            if self.embed is not None:
                f = self.embed(torch.relu(f))
            return F.normalize(f, dim=1)

    return Embedder()
