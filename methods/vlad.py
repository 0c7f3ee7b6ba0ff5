"""VLAD: vector of locally aggregated descriptors, with power and intra-normalization.

- Jégou, Douze, Schmid & Pérez, Aggregating local descriptors into a compact image
  representation, CVPR 2010, Eq. 1: v_{c} = sum_{x: q(x) = c} (x - mu_c), concatenated over the
  k words (k = 64 in the paper) into a (k d,) vector, L2-normalized.
- Power normalization (Jégou et al. PAMI 2012, Sec. 2.3; Perronnin et al. ECCV 2010):
  v <- sign(v) |v|^beta, beta = 0.5 (``power``; 1 = off).
- Intra-normalization (Arandjelović & Zisserman, All about VLAD, CVPR 2013): each v_c is
  L2-normalized before the global L2 normalization (``intra``).

Images are ranked by the inner product of their VLADs (exact search, faiss). An image with no
features has the zero VLAD and scores zero.
"""
from __future__ import annotations


import numpy as np

from visrep.params import Param
from visrep.registry import register

from .inverted_file import VOCAB_PARAMS, LocalFeatureRetrieval
from .vocabularies import assign


def vlad(x: np.ndarray, words: np.ndarray, image: np.ndarray, n_images: int, centroids: np.ndarray,
         power: float = 0.5, intra: bool = True) -> np.ndarray:
    """VLADs (n_images, k d) float32 of descriptors x (n, d) with words (n,), image ids (n,)."""
    k, d = centroids.shape
    V = np.zeros((n_images * k, d), np.float64)
    words = np.asarray(words, np.int64).ravel()
    np.add.at(V, np.asarray(image, np.int64) * k + words, np.asarray(x, np.float64) - centroids[words])
    V = V.reshape(n_images, k, d)
    if power != 1.0:
        V = np.sign(V) * np.abs(V) ** power
    if intra:
        V = V / np.maximum(np.linalg.norm(V, axis=2, keepdims=True), 1e-12)
    V = V.reshape(n_images, k * d)
    V /= np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    return V.astype(np.float32)


@register
class VLAD(LocalFeatureRetrieval):
    name = "vlad"
    summary = "VLAD (k=64) with power (0.5) and intra-normalization, inner-product ranking"
    cite = "Jégou, Douze, Schmid & Pérez, Aggregating local descriptors into a compact image representation, CVPR 2010"
    params = tuple(p if p.name != "k" else type(p)("k", int, 64, "visual words (64 in the paper)", low=1)
                   for p in VOCAB_PARAMS) + (
        Param("power", float, 0.5, "power-law exponent beta (1 = off)", low=0, open_low=True, high=1),
        Param("intra", bool, True, "intra-normalization of each word's residual sum"),
    )

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        return {"db": vlad(x, words[:, 0], ids, n_db, voc.centroids, self.cfg["power"], self.cfg["intra"]), "voc": voc}

    def score(self, state, q, q_frames, ctx):
        if len(q) == 0:
            return np.zeros(state["db"].shape[0])
        w, _ = assign(q, state["voc"], 1, "query descriptors")
        v = vlad(q, w[:, 0], np.zeros(len(q), np.int64), 1, state["voc"].centroids, self.cfg["power"], self.cfg["intra"])
        return state["db"].astype(np.float64) @ v[0].astype(np.float64)

    def index_bytes(self, state):
        return state["db"].nbytes
