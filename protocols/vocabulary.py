"""Vocabulary protocol: distortion, number of (non-empty) words and learning time of a vocabulary.

What a vocabulary-learning method (k-means, AKM, RAKM, AGM) is judged on before any retrieval,
after Avrithis & Kalantidis, Approximate Gaussian mixtures for large scale vocabularies,
ECCV 2012, which compares these methods by the number of components k they end with (AGM infers
it by purging from a large initial k), by learning time (in total and per iteration) and by
convergence over iterations; the quality of the partition is measured as in the k-means
literature the paper builds on (Philbin et al. CVPR 2007, Li et al. ACM-MM 2010) by the
distortion, the k-means objective.

Definitions (x_i the descriptors, c_1..c_k the centroids, q(x) = argmin_j ||x - c_j||^2 exact):

- ``distortion`` = (1/n) sum_i min_j ||x_i - c_j||^2, squared Euclidean distance summed over
  dimensions, averaged over the n *training* descriptors (what the methods report; the protocol
  recomputes it exactly from ``outputs["train"]`` when given, else takes ``outputs["distortion"]``);
- ``distortion_held_out``: the same over ``outputs["held_out"]``, descriptors that training did
  not see (rest of the training file, or the query images' features); with ``n_held_out``;
- ``k``: number of words (rows of ``centroids``); ``k_nonempty``: words that are the nearest
  centroid of at least one training descriptor (k-means keeps empty clusters, AGM purges them);
- ``seconds``: wall-clock learning time (``timings["vocabulary"]``); ``iterations`` (length of
  ``history``) and ``seconds_per_iteration`` when the method gives a history;
- ``n_train``: training descriptors.

Outputs contract (task ``vocabulary``; the dataset is any retrieval dataset, the method learns
on its local features or on its own ``train`` file): ``centroids`` float (k, d), optional
``k``, ``distortion``, ``train`` (n, d), ``held_out`` (m, d), ``history`` (list),
``timings["vocabulary"]`` (seconds).
"""
from __future__ import annotations

import math

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register


def nearest_squared_distances(x: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact (n,) squared L2 distance of each row of x to its nearest centroid, and (n,) its index.

    The nearest centroid is found in float32 (BLAS), then the distance to it is recomputed
    in float64, so the value is exact up to ties.
    """
    x = np.asarray(x, np.float32)
    c = np.ascontiguousarray(centroids, np.float32)
    cc = (c * c).sum(1)
    dist = np.empty(len(x), np.float64)
    idx = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s:s + chunk]
        i = (cc[None, :] - 2 * xs @ c.T).argmin(1)
        diff = xs.astype(np.float64) - c[i].astype(np.float64)
        dist[s:s + chunk] = (diff * diff).sum(1)
        idx[s:s + chunk] = i
    return dist, idx


def _descriptors(outputs: dict, key: str, dim: int) -> np.ndarray:
    x = np.asarray(outputs[key])
    if x.ndim != 2 or (len(x) and x.shape[1] != dim):
        raise UserError(f"vocabulary outputs['{key}'] must be (n, {dim}) like the centroids, got shape {x.shape}")
    return x


@register
class VocabularyLearning(Protocol):
    name = "vocabulary"
    task = "vocabulary"
    data_tasks = ("retrieval",)
    summary = "vocabulary learning: distortion (train / held-out), k and non-empty words, learning time"
    cite = "Avrithis & Kalantidis, Approximate Gaussian mixtures for large scale vocabularies, ECCV 2012"

    def evaluate(self, outputs: dict, data) -> dict:
        if "centroids" not in outputs:
            raise UserError(f"protocol 'vocabulary' needs outputs['centroids'] (k, d); got keys {sorted(outputs)}")
        c = np.asarray(outputs["centroids"], np.float32)
        if c.ndim != 2 or len(c) == 0 or not np.isfinite(c).all():
            raise UserError(f"vocabulary centroids must be a finite non-empty (k, d) array, got shape {c.shape}")
        if "k" in outputs and int(outputs["k"]) != len(c):
            raise UserError(f"vocabulary outputs['k'] = {outputs['k']} but there are {len(c)} centroids")
        m: dict = {"k": len(c)}
        if outputs.get("train") is not None:
            x = _descriptors(outputs, "train", c.shape[1])
            if len(x) == 0:
                raise UserError("vocabulary outputs['train'] holds no descriptors")
            d, words = nearest_squared_distances(x, c)
            m["k_nonempty"] = int(np.unique(words).size)
            m["distortion"] = float(d.mean())
            m["n_train"] = len(x)
        elif outputs.get("distortion") is not None:
            m["distortion"] = float(outputs["distortion"])
        if "distortion" in m and not (math.isfinite(m["distortion"]) and m["distortion"] >= 0):
            raise UserError(f"vocabulary distortion must be finite and >= 0, got {m['distortion']}")
        if outputs.get("held_out") is not None and len(outputs["held_out"]):
            h = _descriptors(outputs, "held_out", c.shape[1])
            m["distortion_held_out"] = float(nearest_squared_distances(h, c)[0].mean())
            m["n_held_out"] = len(h)
        seconds = (outputs.get("timings") or {}).get("vocabulary")
        if seconds is not None:
            m["seconds"] = float(seconds)
            history = outputs.get("history") or []
            if history:
                m["iterations"] = len(history)
                m["seconds_per_iteration"] = float(seconds) / len(history)
        return m

    def format(self, metrics: dict, data) -> str:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        return f">> vocabulary on {getattr(data, 'name', '?')}: {shown}"
