"""Spatial verification re-ranking: RANSAC and fast spatial matching (FSM).

A re-ranking method runs an initial ranking -- BoW with tf-idf on an inverted file
(:mod:`visrep.methods.local.bow`, default) or exact kNN on a global descriptor (``shortlist_method =
knn``) -- then scores the top ``shortlist`` database images of each query by a spatial
matching of their local features (:func:`visrep.methods.local.features.local_features`, SIFT
or RootSIFT with frames) and re-orders them by that score (ties keep the initial order); the
rest of the ranking is unchanged (Philbin et al. CVPR 2007, Sec. 4: "re-rank the top N").

Tentative correspondences (``correspondences``):
- ``word``: all pairs of features that share a visual word of the BoW vocabulary (as in
  Philbin et al. and Tolias & Avrithis; ``max_per_word`` drops bursty words);
- ``nn``: mutual nearest neighbours of the descriptors passing Lowe's ratio test.

Methods (scores are computed by :mod:`visrep.methods.spatial.geometry`):
- ``ransac``: 4-point homography RANSAC (Fischler & Bolles, CACM 1981) with adaptive
  iterations and a least-squares refinement; score = inliers (one-to-one count).
- ``fsm``: fast spatial matching (Philbin, Chum, Isard, Sivic & Zisserman, CVPR 2007): one
  hypothesis per correspondence from its two local frames, best by inlier count, refined to an
  affine transformation by least squares (the refined model replaces the hypothesis); score = inliers.
- ``lowe-hough`` (in :mod:`visrep.methods.spatial.lowe_hough`): Lowe's sparse Hough voting in the 4-d
  similarity space (ICCV 1999; IJCV 2004 Sec. 7.3), clusters of >= 3 votes verified by least-squares
  affine fitting with outlier removal (Sec. 7.4); score = inliers of the best cluster.
- ``hpm`` (in :mod:`visrep.methods.spatial.hough_pyramid`) and ``dsm`` (in
  :mod:`visrep.methods.spatial.activations`) build on the same base.

Outputs: ``ranks`` (n_db, n_q); timings ``query`` (initial ranking + verification, seconds
per query), ``initial`` (initial ranking per query), ``verify_per_pair`` (spatial matching of
one query-database pair, correspondences included); stats ``correspondences_per_pair``.
"""
from __future__ import annotations

import numpy as np


def rerank(initial_ranks: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """Re-order the top N of each column of `initial_ranks` (n_db, n_q) by `spatial` (N, n_q)
    scores (higher first; ties keep the initial order); the rest is unchanged."""
    out = initial_ranks.copy()
    N = spatial.shape[0]
    for j in range(out.shape[1]):
        order = np.lexsort((np.arange(N), -spatial[:, j]))
        out[:N, j] = initial_ranks[:N, j][order]
    return out


