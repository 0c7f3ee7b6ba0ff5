"""Supervised metric-learning losses and their in-batch mining: the baselines of the MoM tables.

- Contrastive loss, Hadsell, Chopra & LeCun, *Dimensionality reduction by learning an invariant
  mapping*, CVPR 2006, Eq. 4: for a pair at Euclidean distance ``D``,
  ``L = (1 - Y) 1/2 D^2 + Y 1/2 max(0, m - D)^2`` (Y = 0 similar, Y = 1 dissimilar), in the form
  Radenovic, Tolias & Chum (*CNN image retrieval learns from BoW*, ECCV 2016, Eq. 2) use to fine-tune
  retrieval networks: L2-normalized descriptors, tuples of one query, one positive and the hardest
  negatives of the pool (at most one per cluster, here per class), margin ``tau`` (0.7 in their code).
- Triplet loss, Schroff, Kalenichenko & Philbin, *FaceNet*, CVPR 2015, Eq. 1:
  ``[ ||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha ]_+`` on unit-norm embeddings, with all
  anchor-positive pairs of a minibatch and *semi-hard* negatives (Sec. 3.2, Eq. 4):
  ``||f(a) - f(p)||^2 < ||f(a) - f(n)||^2 < ||f(a) - f(p)||^2 + alpha``.
- Class-balanced minibatches (FaceNet Sec. 3.2: about 40 images per identity per minibatch).

Mining works on numpy arrays (distances (n, n), labels (n,) -> int64 indices); losses on torch
tensors (embeddings (n, d) -> scalar). torch is imported inside functions.
"""
from __future__ import annotations

import numpy as np

CITE_CONTRASTIVE = ("Hadsell, Chopra & LeCun, Dimensionality reduction by learning an invariant mapping, CVPR 2006; "
                    "Radenovic, Tolias & Chum, CNN image retrieval learns from BoW, ECCV 2016 (margin form)")
CITE_TRIPLET = "Schroff, Kalenichenko & Philbin, FaceNet: a unified embedding for face recognition and clustering, CVPR 2015"


# ---------------------------------------------------------------- distances and batches
def squared_distances(x: np.ndarray) -> np.ndarray:
    """(n, n) float64 squared Euclidean distances of the rows of x (n, d), clipped at 0, zero diagonal."""
    x = np.asarray(x, np.float64)
    sq = (x ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return d2


def class_balanced_batches(labels: np.ndarray, per_class: int, classes_per_batch: int,
                           rng: np.random.Generator, n_batches: int | None = None) -> list[np.ndarray]:
    """One epoch of minibatches (list of (b,) int64), each `per_class` items of each of `classes_per_batch`
    random classes (FaceNet Sec. 3.2: ~40 per identity); `n_batches` of them (None: ceil(n / (P K)) batches,
    which cover about n items).

    Items of a class are drawn without replacement while the class has enough, else with replacement.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    p = min(classes_per_batch, len(classes))
    if n_batches is None:
        n_batches = max(1, -(-len(labels) // (p * per_class)))
    out = []
    for _ in range(n_batches):
        chosen = rng.choice(len(classes), p, replace=False)
        out.append(np.concatenate([rng.choice(members[c], per_class, replace=len(members[c]) < per_class)
                                   for c in chosen]).astype(np.int64))
    return out


# ---------------------------------------------------------------- triplet (FaceNet)
def semihard_mask(d2: np.ndarray, labels: np.ndarray, margin: float) -> np.ndarray:
    """(n, n, n) bool, [a, p, n] True for semi-hard triplets (FaceNet Sec. 3.2):
    y_p = y_a, p != a, y_n != y_a, and d2[a, p] < d2[a, n] < d2[a, p] + margin (d2: squared distances)."""
    labels = np.asarray(labels)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(n, dtype=bool)                      # (a, p)
    dap = d2[:, :, None]                                     # (a, p, 1)
    dan = d2[:, None, :]                                     # (a, 1, n)
    return pos[:, :, None] & ~same[:, None, :] & (dan > dap) & (dan < dap + margin)


def semihard_triplets(d2: np.ndarray, labels: np.ndarray, margin: float, select: str = "hardest") -> np.ndarray:
    """(t, 3) int64 triplets (anchor, positive, negative) from all anchor-positive pairs of a batch.

    ``select = "all"``: every semi-hard triplet; ``"hardest"``: per anchor-positive pair the semi-hard
    negative nearest to the anchor (the rule of TensorFlow's ``triplet_semihard_loss``, the
    implementation behind the CUB "Triplet+semi-hard" numbers), pairs without one are dropped.
    Rows are sorted by (anchor, positive, negative).
    """
    if select not in ("all", "hardest"):
        raise ValueError(f"select must be 'all' or 'hardest', got {select!r}")
    labels = np.asarray(labels)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    a, p = np.nonzero(same & ~np.eye(n, dtype=bool))          # all anchor-positive pairs (m,)
    dap = d2[a, p][:, None]                                    # (m, 1)
    dan = np.where(same[a], np.inf, d2[a])                     # (m, n): distances to the anchor's negatives
    semi = (dan > dap) & (dan < dap + margin)                  # (m, n): the semi-hard window of Eq. 4
    if select == "all":
        i, neg = np.nonzero(semi)
        return np.stack([a[i], p[i], neg], 1).astype(np.int64).reshape(-1, 3)
    has = semi.any(1)
    neg = np.where(semi, dan, np.inf).argmin(1)
    return np.stack([a[has], p[has], neg[has]], 1).astype(np.int64).reshape(-1, 3)


def triplet_terms(emb, triplets, margin: float):
    """FaceNet Eq. 1 per triplet: (t,) torch ``[||a - p||^2 - ||a - n||^2 + margin]_+`` for emb (n, d), triplets (t, 3)."""
    import torch
    t = torch.as_tensor(np.asarray(triplets, np.int64).reshape(-1, 3))
    a, p, n = emb[t[:, 0]], emb[t[:, 1]], emb[t[:, 2]]
    return torch.clamp(((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + margin, min=0)


def triplet_batch_loss(emb, triplets, margin: float):
    """Mean of :func:`triplet_terms` (0 with a gradient path when there is no triplet)."""
    if len(triplets) == 0:
        return emb.sum() * 0.0
    return triplet_terms(emb, triplets, margin).mean()


# ---------------------------------------------------------------- contrastive (Hadsell et al.; Radenovic et al.)
def contrastive_terms(dist, same, margin: float):
    """Hadsell et al. Eq. 4 per pair: (m,) torch, ``1/2 D^2`` for similar pairs and ``1/2 max(0, margin - D)^2``
    for dissimilar ones; dist (m,) Euclidean distances (not squared), same (m,) bool."""
    import torch
    same = torch.as_tensor(np.asarray(same, bool))
    return torch.where(same, 0.5 * dist ** 2, 0.5 * torch.clamp(margin - dist, min=0) ** 2)


def pair_distances(emb, pairs):
    """(m,) torch Euclidean distances of the pairs (m, 2) of rows of emb (n, d)."""
    import torch
    pr = torch.as_tensor(np.asarray(pairs, np.int64).reshape(-1, 2))
    return torch.sqrt(((emb[pr[:, 0]] - emb[pr[:, 1]]) ** 2).sum(1).clamp_min(1e-12))


def contrastive_loss(emb, labels, pairs, margin: float):
    """Mean of :func:`contrastive_terms` over pairs (m, 2) of emb (n, d) with labels (n,) (0 with a gradient
    path when there is no pair)."""
    if len(pairs) == 0:
        return emb.sum() * 0.0
    labels = np.asarray(labels)
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    return contrastive_terms(pair_distances(emb, pairs), labels[pairs[:, 0]] == labels[pairs[:, 1]], margin).mean()


def hardest_negatives(d2: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int64, per anchor its k hardest negatives, at most one per class (Radenovic et al. Sec. 3.3:
    nearest non-matching images, one per cluster), nearest first; -1 where fewer than k classes remain."""
    labels = np.asarray(labels)
    classes, inv = np.unique(labels, return_inverse=True)
    onehot = inv[None, :] == np.arange(len(classes))[:, None]            # (C, n)
    dc = np.where(onehot[None, :, :], d2[:, None, :], np.inf)            # (a, C, n)
    near = dc.argmin(2)                                                  # (a, C): nearest item of each class
    dnear = np.take_along_axis(dc, near[:, :, None], 2)[:, :, 0]
    dnear[np.arange(len(labels)), inv] = np.inf                          # the anchor's own class is no negative
    order = np.argsort(dnear, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(near, order, 1)
    out[~np.isfinite(np.take_along_axis(dnear, order, 1))] = -1
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((len(labels), k - out.shape[1]), -1)], 1)
    return out.astype(np.int64)


def contrastive_tuples(d2: np.ndarray, labels: np.ndarray, n_negatives: int, rng: np.random.Generator) -> np.ndarray:
    """(m, 2) int64 pairs of Radenovic et al.'s tuples in a batch: every item with another item of its class
    is a query; one random positive of its class and its `n_negatives` hardest negatives (one per class).

    Rows: per query, (q, positive) first, then (q, negative_j). Same class = positive pair.
    """
    labels = np.asarray(labels)
    n = len(labels)
    same = (labels[:, None] == labels[None, :]) & ~np.eye(n, dtype=bool)
    q = np.flatnonzero(same.any(1))
    if len(q) == 0:
        return np.zeros((0, 2), np.int64)
    # a random positive per query: the argmax of uniform noise over its positives
    pos = np.where(same[q], rng.random((len(q), n)), -1.0).argmax(1)
    neg = hardest_negatives(d2, labels, n_negatives)[q]                   # (|q|, k)
    cols = np.concatenate([pos[:, None], neg], 1)                         # (|q|, 1 + k)
    rows = np.repeat(q[:, None], cols.shape[1], 1)
    keep = cols >= 0
    return np.stack([rows[keep], cols[keep]], 1).astype(np.int64)
