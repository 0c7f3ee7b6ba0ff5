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


