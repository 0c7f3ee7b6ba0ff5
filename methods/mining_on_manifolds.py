"""Mining on manifolds (MoM): metric learning without labels, and its pre-trained baseline.

Iscen, Tolias, Avrithis & Chum, *Mining on manifolds: metric learning without labels*, CVPR 2018
(the talk's slides 75-79). Given pre-trained descriptors ``x_i`` of unlabelled training images:

1. the mutual kNN graph of the descriptors (:mod:`visrep.methods.knn_graph`, ``a_ij = s_ij^gamma``,
   ``W = D^{-1/2} A D^{-1/2}``);
2. anchors: points of high stationary probability of the random walk on the graph (for an
   undirected graph ``pi_i`` is proportional to the degree ``d_i``), taken greedily, skipping
   points that are Euclidean neighbours of an anchor already chosen (our reading of the paper's
   "anchors in dense regions, spread over the data");
3. manifold similarity of an anchor x to every point: the diffusion ``f = (I - alpha W)^{-1} e_x``
   (conjugate gradient, :func:`visrep.methods.diffusion.cg`); manifold neighbours ``M(x)``: the
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

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register

CITE = "Iscen, Tolias, Avrithis & Chum, Mining on manifolds: metric learning without labels, CVPR 2018"

_FEATURE_PARAMS = (
    Param("features", str, "auto", "pre-trained descriptors: 'given' (data.x vectors of both splits), "
          "'pixels-pca' (proxy: PCA of pixels fitted on the training split), 'auto' (given if vectors)",
          choices=("auto", "given", "pixels-pca")),
    Param("pca_dim", int, 32, "dimension of the pixels-pca descriptors", low=1),
)


def pretrained_features(data, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(train (n_tr, d), test (n_te, d)) float32 unit-norm pre-trained descriptors (see module doc)."""
    train = getattr(data, "train", None)
    if train is None:
        raise UserError(f"{data.name}: metric learning needs the training split (data.train) of unseen-class data")
    mode = cfg["features"]
    xs = [None if d.x is None else np.asarray(d.x) for d in (train, data)]
    if mode == "auto":
        mode = "given" if all(x is not None and x.ndim == 2 for x in xs) else "pixels-pca"
    if mode == "given":
        if not all(x is not None and x.ndim == 2 for x in xs):
            raise UserError(f"{data.name}: features='given' needs (n, d) descriptors of both the training and the "
                            f"test split in x (e.g. a descriptor file per split)")
        tr, te = xs
    else:
        if not all(x is not None and x.ndim in (3, 4) for x in xs):
            raise UserError(f"{data.name}: features='pixels-pca' needs images (n, H, W[, C]) of both splits in x")
        tr = xs[0].reshape(len(xs[0]), -1).astype(np.float64) / 255.0
        te = xs[1].reshape(len(xs[1]), -1).astype(np.float64) / 255.0
        mean = tr.mean(0)
        dim = min(cfg["pca_dim"], tr.shape[1], len(tr))
        _, _, vt = np.linalg.svd(tr - mean, full_matrices=False)
        tr, te = (tr - mean) @ vt[:dim].T, (te - mean) @ vt[:dim].T
    out = []
    for x in (tr, te):
        x = np.asarray(x, dtype=np.float32)
        out.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    return out[0], out[1]


def select_anchors(x: np.ndarray, degrees: np.ndarray, n_anchors: int, k_euclidean: int) -> np.ndarray:
    """Up to `n_anchors` anchors by decreasing degree (stationary probability), none among the
    `k_euclidean` Euclidean neighbours of an earlier anchor -> (a,) int64."""
    from .knn_graph import knn
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
    from .diffusion import cg
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
    from .knn_graph import knn
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
    from torch import nn
    import torch.nn.functional as F

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


@register
class Pretrained(Method):
    name = "pretrained"
    task = "metric-learning"
    summary = "the pre-trained descriptors as the embedding (baseline row of unsupervised metric learning)"
    cite = CITE + " (Baseline row)"
    params = _FEATURE_PARAMS

    def run(self, data, ctx) -> dict:
        with ctx.phase("features"):
            _, te = pretrained_features(data, self.cfg)
        return {"embeddings": te}


@register
class MiningOnManifolds(Method):
    name = "mom"
    task = "metric-learning"
    summary = "unsupervised metric learning: hard positives/negatives from manifold vs Euclidean neighbours, triplet loss"
    cite = CITE
    params = _FEATURE_PARAMS + (
        Param("k", int, 50, "neighbours per point in the kNN graph", low=2),
        Param("gamma", float, 3.0, "affinity exponent s^gamma", low=0, open_low=True),
        Param("alpha", float, 0.99, "diffusion alpha", low=0, high=1, open_low=True, open_high=True),
        Param("n_anchors", int, 500, "anchors (tuples are mined around each)", low=1),
        Param("k_euclidean", int, 50, "|E(x)|: Euclidean neighbours", low=1),
        Param("k_manifold", int, 50, "|M(x)|: manifold neighbours (positives S+ = M \\ E)", low=1),
        Param("k_manifold_neg", int, None, "manifold neighbours excluded from the negatives S- = E \\ M' "
              "(None = k_manifold)", low=1),
        Param("per_anchor", int, 20, "triplets drawn per anchor and epoch", low=1),
        Param("margin", float, 0.1, "triplet margin on squared distances of unit vectors", low=0),
        Param("epochs", int, 20, "epochs (tuples re-drawn from the same pools each epoch)", low=1),
        Param("lr", float, 1e-3, "Adam learning rate", low=0, open_low=True),
        Param("hidden", int, 128, "hidden units of the residual branch of the head", low=1),
        Param("batch", int, 128, "triplets per minibatch", low=1),
    )

    def run(self, data, ctx) -> dict:
        import torch
        from .knn_graph import build_graph
        c = self.cfg
        with ctx.phase("features"):
            tr, te = pretrained_features(data, c)
        with ctx.phase("mine"):
            graph = build_graph(tr, k=c["k"], gamma=c["gamma"], seed=ctx.seed)
            deg = np.asarray(graph.A.sum(1)).ravel()
            anchors = select_anchors(tr, deg, c["n_anchors"], c["k_euclidean"])
            pools = mine(tr, graph.W, anchors, c["k_euclidean"], c["k_manifold"], c["alpha"],
                         k_manifold_neg=c["k_manifold_neg"])
        stats = {"n_anchors": int(len(anchors)),
                 "mean_positives": float(np.mean([len(p) for _, p, _ in pools])) if pools else 0.0,
                 "mean_negatives": float(np.mean([len(q) for _, _, q in pools])) if pools else 0.0}
        labels = getattr(data.train, "labels", None)
        if labels is not None and len(labels) == len(tr):   # diagnostics from hidden labels, never used to train
            ps = [labels[p] == labels[a] for a, p, _ in pools if len(p)]
            ns = [labels[q] == labels[a] for a, _, q in pools if len(q)]
            stats["positive_purity"] = float(np.mean(np.concatenate(ps))) if ps else 0.0
            stats["negative_same_class"] = float(np.mean(np.concatenate(ns))) if ns else 0.0
        torch.manual_seed(ctx.seed)
        head = make_head(tr.shape[1], c["hidden"])
        opt = torch.optim.Adam(head.parameters(), lr=c["lr"])
        xt = torch.from_numpy(tr)
        rng = ctx.rng(17)
        with ctx.phase("train"):
            for _ in ctx.progress(range(c["epochs"]), desc="mom epochs", total=c["epochs"], unit="epoch"):
                trip = tuples_from_pools(pools, c["per_anchor"], rng)
                if len(trip) == 0:
                    raise UserError(f"{data.name}: no anchor has both a hard positive and a hard negative; "
                                    f"raise k_manifold / k_euclidean or lower alpha")
                trip = trip[rng.permutation(len(trip))]
                for s in range(0, len(trip), c["batch"]):
                    b = torch.from_numpy(trip[s:s + c["batch"]])
                    loss = triplet_loss(head(xt[b[:, 0]]), head(xt[b[:, 1]]), head(xt[b[:, 2]]), c["margin"])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            stats["n_triplets_per_epoch"] = int(len(trip))
        with torch.no_grad():
            emb = head(torch.from_numpy(te)).numpy().astype(np.float32)
        return {"embeddings": emb, "stats": stats}
