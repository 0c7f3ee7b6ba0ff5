"""View clustering and scene maps of a photo collection (talk Part I, "exploring photo collections").

Avrithis, Kalantidis, Tolias & Spyrou, *Retrieving landmark and non-landmark images from
community photo collections*, ACM Multimedia 2010:

- **visual clustering** (Sec. 3): images are points of a "visual" space whose neighbourhoods are
  given by spatial matching: two images are within the clustering radius when their spatially
  verified transformation has at least ``min_inliers`` inliers. Clusters come from kernel vector
  quantization (KVQ, Tipping & Schölkopf AISTATS 2001): the fewest centres such that every image
  lies within the radius of one; the centre of a cluster is its *reference view*.
  :func:`kvq_clusters` solves KVQ's covering problem by the paper's linear program (default) or
  the greedy set-cover approximation (a simplification; :mod:`visrep.methods.collections.kvq`),
  then assigns every image to the covering centre it shares most inliers with.
- **scene maps** (Sec. 4): every image of a cluster is aligned to the reference view by its
  verified homography, its local features are projected into the reference frame, and features
  of the same visual word that land within ``merge_radius`` pixels of each other are merged
  (:func:`merge_features`; groups are the connected components of the "same word, closer than
  the radius" graph, a single-link simplification of the paper's feature clustering). A scene
  map is indexed as one document instead of its images; a query that retrieves a scene map
  returns its member images.

Shapes: positions (n, 2) float64 pixels (x, y-down); words (n,) int64; homographies (3, 3)
float64 mapping member -> reference.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .kvq import kvq_solve


def verify_pair(frames_a: np.ndarray, words_a: np.ndarray, frames_b: np.ndarray, words_b: np.ndarray,
                threshold: float = 8.0, model: str = "homography", max_per_word: int | None = 20) -> tuple[int, np.ndarray | None]:
    """Spatial verification of image A against image B: same-word tentative correspondences,
    fast spatial matching (Philbin et al. CVPR 2007) refined to `model`.

    frames_* (n, 4) (x, y, scale, orientation), words_* (n,) int. Returns (inliers counted one
    to one, T (3, 3) float64 A -> B or None).
    """
    from visrep.methods.spatial.geometry import (
        fast_spatial_matching,
        word_correspondences,
    )

    fa = np.asarray(frames_a, np.float64).reshape(-1, 4)
    fb = np.asarray(frames_b, np.float64).reshape(-1, 4)
    if len(fa) == 0 or len(fb) == 0:
        return 0, None
    pairs = word_correspondences(words_a, words_b, max_per_word)
    r = fast_spatial_matching(fa, fb, pairs, threshold, model)
    return int(r["score"]), r["T"]


def kvq_clusters(inliers: np.ndarray, min_inliers: float, kvq: str = "lp") -> tuple[np.ndarray, np.ndarray]:
    """Visual clusters by KVQ (Tipping & Schölkopf AISTATS 2001; Avrithis et al. 2010, Sec. 3).

    inliers (n, n) non-negative, symmetrised (the diagonal is ignored): verified inliers of each pair.
    Image j lies within the radius of centre c when j == c or inliers[c, j] >= min_inliers (the 0/1
    kernel K). kvq="lp": the paper's linear program (:func:`visrep.methods.collections.kvq.kvq_lp`,
    centres alpha_c > 1e-6, ascending); kvq="greedy": the greedy set-cover simplification
    (:func:`~visrep.methods.collections.kvq.kvq_greedy`, centres in the order taken). Each image then
    joins the covering centre with most inliers to it (a centre keeps itself).
    Returns (labels (n,) int64 in [0, n_clusters), centres (n_clusters,) int64 image ids,
    labels[centres[c]] == c).
    """
    W = np.asarray(inliers, np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise UserError(f"kvq_clusters: inliers must be a square (n, n) matrix, got shape {W.shape}")
    n = len(W)
    W = np.maximum(W, W.T)
    np.fill_diagonal(W, 0.0)
    cover = (W >= min_inliers) | np.eye(n, dtype=bool)
    return kvq_solve(cover, np.where(cover, W, -1.0), kvq)


def project_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Positions (n, 2) mapped by the homography H (3, 3) -> (n, 2) float64."""
    from visrep.methods.spatial.geometry import apply_homography
    return apply_homography(np.asarray(H, np.float64), np.asarray(xy, np.float64).reshape(-1, 2))


def merge_features(xy: np.ndarray, words: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge features of the same visual word that land within `radius` pixels of each other.

    xy (n, 2) float positions in the reference frame, words (n,) int. Groups are the connected
    components of the graph linking same-word features closer than `radius` (Euclidean).
    Returns (xy_merged (g, 2) float64: mean position of each group, words_merged (g,) int64,
    group (n,) int64: the group of each input feature). Non-finite positions are dropped
    (their group is -1).
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    words = np.asarray(words, np.int64).ravel()
    if len(xy) != len(words):
        raise UserError(f"merge_features: {len(xy)} positions but {len(words)} words")
    if radius < 0:
        raise UserError(f"merge_features: radius must be >= 0, got {radius}")
    group = np.full(len(xy), -1, np.int64)
    ok = np.isfinite(xy).all(1)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return np.zeros((0, 2)), np.zeros(0, np.int64), group
    p = xy[idx]
    # words far apart along a third axis: only same-word features can be within the radius
    span = float(np.abs(p).max()) * 4 + 4 * radius + 1.0
    tree = cKDTree(np.column_stack([p, words[idx] * span]))
    e = tree.query_pairs(radius, output_type="ndarray") if radius > 0 else np.zeros((0, 2), np.int64)
    m = len(idx)
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(m, m)) if len(e) else sp.coo_matrix((m, m))
    n_groups, comp = connected_components(g, directed=False)
    group[idx] = comp
    counts = np.bincount(comp, minlength=n_groups).astype(np.float64)
    mean = np.column_stack([np.bincount(comp, p[:, 0], n_groups), np.bincount(comp, p[:, 1], n_groups)]) / counts[:, None]
    first = np.full(n_groups, -1, np.int64)
    first[comp[::-1]] = np.arange(m)[::-1]
    return mean, words[idx][first], group


def build_scene_map(xy_list, words_list, homographies, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene map from the images of a cluster (Avrithis et al. 2010, Sec. 4).

    xy_list: per member (n_i, 2) positions; words_list: per member (n_i,) words; homographies:
    per member (3, 3) member -> reference (identity for the reference view). Returns the merged
    (xy (g, 2), words (g,)) of :func:`merge_features` and source (n,) int64: the member each
    projected input feature came from, in concatenation order.
    """
    if not (len(xy_list) == len(words_list) == len(homographies)):
        raise UserError("build_scene_map: need one position array, word array and homography per member")
    proj = [project_points(H, xy) for H, xy in zip(homographies, xy_list)]
    xy = np.concatenate(proj) if proj else np.zeros((0, 2))
    words = np.concatenate([np.asarray(w, np.int64).ravel() for w in words_list]) if words_list else np.zeros(0, np.int64)
    source = np.repeat(np.arange(len(proj)), [len(p) for p in proj])
    mxy, mw, _ = merge_features(xy, words, radius)
    return mxy, mw, source
