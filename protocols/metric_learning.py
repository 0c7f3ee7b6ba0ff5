"""Deep metric learning protocol: Recall@k and NMI on a test set of unseen classes.

Oh Song, Xiang, Jegelka & Savarese, Deep metric learning via lifted structured feature
embedding, CVPR 2016 (Sec. 5): every test image is a query against all other test images;
Recall@k is the fraction of queries with at least one same-class image among their k nearest
neighbours (the query itself excluded); NMI = I(Ω; C) / sqrt(H(Ω) H(C)) ... as used there and
in later papers (e.g. Wang et al. multi-similarity, CVPR 2019) via scikit-learn's
``normalized_mutual_info_score`` (arithmetic mean normalisation, its default) of the k-means
clustering of the embeddings with as many clusters as classes.

Outputs contract (task ``metric-learning``): ``outputs["embeddings"]`` (n, d) float of the
dataset's test items (a :class:`visrep.data.LabelledData`, ``data.labels`` (n,)).
Metrics: ``recall@1``, ``recall@2``, ``recall@4``, ``recall@8`` (default ks), ``nmi``.
Nearest neighbours by cosine similarity (= Euclidean distance on L2-normalized embeddings,
the papers' setting) unless ``metric=euclidean``.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register


def check_embeddings(x, n: int, where: str = "embeddings") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != n:
        raise UserError(f"{where}: expected shape ({n}, d), got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise UserError(f"{where}: expected numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise UserError(f"{where}: row {bad} contains NaN or infinite values")
    return x


def knn_excluding_self(x: np.ndarray, k: int, metric: str = "cosine", chunk: int = 2048) -> np.ndarray:
    """Indices (n, k) of each row's k nearest other rows, best first (ties: lower index first)."""
    n = len(x)
    k = min(k, n - 1)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sq = np.zeros(n, np.float32)
    else:
        sq = (x.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty((n, k), np.int64)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        # larger is better: cosine similarity, or -(squared distance) up to the query's own norm
        score = x[s:e] @ x.T * (1.0 if metric == "cosine" else 2.0) - (sq[None, :] if metric != "cosine" else 0.0)
        score[np.arange(e - s), np.arange(s, e)] = -np.inf
        part = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < n - 1 else np.tile(np.arange(n), (e - s, 1))
        ps = np.take_along_axis(score, part, axis=1)
        order = np.lexsort((part, -ps), axis=1)
        out[s:e] = np.take_along_axis(part, order, axis=1)[:, :k]
    return out


def recall_hits(x: np.ndarray, labels: np.ndarray, ks=(1, 2, 4, 8), metric: str = "cosine") -> dict[int, np.ndarray]:
    """Per query (n,) bool for each k: a same-class item among its k nearest (self excluded)."""
    labels = np.asarray(labels)
    nn = knn_excluding_self(x, max(ks), metric)
    hit = labels[nn] == labels[:, None]
    first = np.where(hit.any(1), hit.argmax(1), np.iinfo(np.int64).max)
    return {k: first < k for k in ks}


def recall_at_k(x: np.ndarray, labels: np.ndarray, ks=(1, 2, 4, 8), metric: str = "cosine") -> dict[int, float]:
    """Recall@k (fraction) for each k: a same-class item among the k nearest (self excluded)."""
    return {k: float(h.mean()) for k, h in recall_hits(x, labels, ks, metric).items()}


def _nmi_terms(labels_true, labels_pred):
    """Per-item terms of NMI (n,) each: pointwise MI log p(t,p)/(p(t)p(p)), -log p(t), -log p(p).

    Their means are I(T;P), H(T), H(P) (plug-in probabilities of the contingency table).
    """
    t = np.unique(np.asarray(labels_true), return_inverse=True)[1].ravel()
    p = np.unique(np.asarray(labels_pred), return_inverse=True)[1].ravel()
    n = len(t)
    c = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(c, (t, p), 1)
    pt, pp = c.sum(1) / n, c.sum(0) / n
    log_t, log_p = np.log(pt[t]), np.log(pp[p])
    return np.log(c[t, p] / n) - log_t - log_p, -log_t, -log_p


def nmi(labels_true, labels_pred) -> float:
    """Normalized mutual information, arithmetic normalisation: 2 I(T;P) / (H(T) + H(P)).

    Equal to scikit-learn's ``normalized_mutual_info_score`` (default) -- cross-checked in tests.
    """
    pmi, ht, hp = _nmi_terms(labels_true, labels_pred)
    mi, ht, hp = float(pmi.mean()), float(ht.mean()), float(hp.mean())
    if ht == 0 and hp == 0:
        return 1.0
    denom = (ht + hp) / 2
    return float(max(mi, 0.0) / denom) if denom > 0 else 0.0


def nmi_per_item(labels_true, labels_pred) -> np.ndarray:
    """Per-item values (n,) whose mean is NMI: the linearization (influence values) of the ratio.

    NMI = mean(pmi_i) / mean(h_i) with h_i = (-log p(t_i) - log p(p_i)) / 2, so
    v_i = NMI + (pmi_i - NMI h_i) / mean(h) has mean(v) = NMI exactly (delta method; Efron & Tibshirani,
    An Introduction to the Bootstrap, 1993, ch. 21). The paired bootstrap of a claim on NMI resamples
    these values: to first order the same interval as re-clustering-free resampling of the ratio.
    """
    pmi, ht, hp = _nmi_terms(labels_true, labels_pred)
    h = (ht + hp) / 2
    value = nmi(labels_true, labels_pred)
    if h.mean() <= 0:
        return np.full(len(h), value)
    return value + (pmi - value * h) / h.mean()


def kmeans_labels(x: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, k-means++, 10 restarts) cluster ids (n,)."""
    from sklearn.cluster import KMeans
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(x)


@register
class MetricLearning(Protocol):
    name = "metric-learning"
    task = "metric-learning"
    summary = "Recall@1,2,4,8 (self excluded) and NMI of k-means on unseen test classes"
    cite = "Oh Song, Xiang, Jegelka & Savarese, Deep metric learning via lifted structured feature embedding, CVPR 2016"
    params = (
        Param("ks", list, [1, 2, 4, 8], "k of Recall@k, a list (--set ks=[1,2,4,8])", item=int, low=1),
        Param("metric", str, "cosine", "neighbour similarity", choices=("cosine", "euclidean")),
        Param("nmi", bool, True, "also compute NMI of k-means with n_classes clusters"),
        Param("seed", int, 0, "k-means seed"),
    )

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        if "embeddings" not in outputs:
            raise UserError(f"protocol 'metric-learning' needs outputs['embeddings'] (n, d); got keys {sorted(outputs)}")
        labels = np.asarray(data.labels)
        x = check_embeddings(outputs["embeddings"], len(labels), f"embeddings for {data.name}")
        ks = sorted(set(self.cfg["ks"]))
        if len(labels) < 2 or ks[0] < 1:
            raise UserError("metric-learning needs at least 2 items and k >= 1")
        hits = recall_hits(x, labels, ks, self.cfg["metric"])
        m = {f"recall@{k}": float(h.mean()) for k, h in hits.items()}
        per_item = {f"recall@{k}": h.astype(np.float64) for k, h in hits.items()}
        if self.cfg["nmi"]:
            n_cls = len(np.unique(labels))
            clusters = kmeans_labels(x, n_cls, self.cfg["seed"])
            m["nmi"] = nmi(labels, clusters)
            per_item["nmi"] = nmi_per_item(labels, clusters)
        return m, per_item

    def format(self, metrics: dict, data) -> str:
        parts = [f"R@{k.split('@')[1]}: {100 * v:.2f}" for k, v in metrics.items() if k.startswith("recall@")]
        if "nmi" in metrics:
            parts.append(f"NMI: {100 * metrics['nmi']:.2f}")
        return f">> {data.name}: " + ", ".join(parts)
