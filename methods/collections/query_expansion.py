"""Total recall: spatially verified query expansion on a bag-of-words inverted file (talk Part I, QE1).

Chum, Philbin, Sivic, Isard & Zisserman, *Total recall: automatic query expansion with a
generative feature model for object retrieval*, ICCV 2007:

1. the query region's visual words give a tf-idf vector d_0 and a BoW ranking;
2. the top N results are spatially verified against the query (Sec. 3: the fast spatial
   matching of Philbin et al. CVPR 2007, one hypothesis per correspondence refined to an
   affine map); an image is *verified* when the transformation has at least ``min_inliers``
   inliers (20 in the paper);
3. the features of every verified image are *back-projected* into the query image by the
   inverse of its estimated transformation, and only those that land inside the query region
   are kept (the generative model of the query object, Sec. 4);
4. average query expansion (Sec. 4, "avg"): the new query is the average of the query's and
   the verified images' L2-normalised tf-idf vectors,
   ``d_avg = (d_0 + sum_{i=1..m} d_i) / (m + 1)`` over the top m (50 in the paper) verified
   images by inlier count; it is issued against the same inverted file;
5. recursive average query expansion (Sec. 4, "rec", the variant the talk calls QE1,
   "re-query using the retrieved images and merge, 3 times iteratively"): the results of each
   expanded query are verified in turn and every verified image so far joins the next
   average; it stops after ``iterations`` re-queries, or earlier when a round verifies no new
   image (the paper's stopping rule).

The returned ranking merges the rounds as the paper does: all verified images first, by their
inlier count, then the remaining images in the order of the last expanded query.

Kernels here are arrays in, arrays out: :func:`back_project_inside`, :func:`tfidf_vector`,
:func:`average_expansion`, :func:`merge_verified`, :func:`rank_by_scores`.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a (3, 3) affine or projective transformation (float64)."""
    T = np.asarray(T, np.float64)
    if T.shape != (3, 3):
        raise UserError(f"invert_transform: expected a (3, 3) matrix, got shape {T.shape}")
    return np.linalg.inv(T)


def back_project_inside(xy_db: np.ndarray, T_q_to_db: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Back-project database feature positions into the query image (Chum et al. 2007, Sec. 4).

    xy_db (n, 2) float positions in the database image; T_q_to_db (3, 3) the verified map
    query -> database; region (4,) = (x0, y0, x1, y1) of the query region in query pixels.
    Returns (xy_q (n, 2) float64 positions in the query image, inside (n,) bool: landed in the
    region, bounds included).
    """
    from visrep.methods.spatial.geometry import apply_homography

    xy = np.asarray(xy_db, np.float64).reshape(-1, 2)
    region = np.asarray(region, np.float64).ravel()
    if region.shape != (4,) or region[2] < region[0] or region[3] < region[1]:
        raise UserError(f"back_project_inside: region must be (x0, y0, x1, y1) with x0 <= x1, y0 <= y1, got {region}")
    q = apply_homography(invert_transform(T_q_to_db), xy)
    inside = ((q[:, 0] >= region[0]) & (q[:, 0] <= region[2]) & (q[:, 1] >= region[1]) & (q[:, 1] <= region[3]))
    return q, inside


def tfidf_vector(words: np.ndarray, idf: np.ndarray) -> np.ndarray:
    """L2-normalised tf-idf vector (k,) float64 of a bag of visual words (n,) int
    (Sivic & Zisserman ICCV 2003); zero for an empty bag."""
    k = len(idf)
    w = np.asarray(words, np.int64).ravel()
    if len(w) and (w.min() < 0 or w.max() >= k):
        raise UserError(f"tfidf_vector: word ids must lie in [0, {k})")
    v = np.bincount(w, minlength=k).astype(np.float64) * np.asarray(idf, np.float64)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def average_expansion(d0: np.ndarray, expansions: np.ndarray) -> np.ndarray:
    """Average query expansion, ``d_avg = (d_0 + sum_i d_i) / (m + 1)`` (Chum et al. 2007, Sec. 4).

    d0 (k,) the query's normalised tf-idf vector; expansions (m, k) the verified images'
    normalised tf-idf vectors of their back-projected features (m may be 0). Returns (k,) float64.
    """
    d0 = np.asarray(d0, np.float64)
    e = np.asarray(expansions, np.float64).reshape(-1, len(d0))
    return (d0 + e.sum(0)) / (len(e) + 1)


def merge_verified(verified: np.ndarray, inliers: np.ndarray, ranking: np.ndarray) -> np.ndarray:
    """Merged result list: verified images first by decreasing inliers (ties: the earlier in
    `ranking` first), then the rest of `ranking` in its order.

    verified (v,) int image ids, inliers (v,) their counts, ranking (n,) a permutation of all
    image ids. Returns (n,) int64, a permutation.
    """
    ranking = np.asarray(ranking, np.int64)
    verified = np.asarray(verified, np.int64)
    pos = np.empty(len(ranking), np.int64)
    pos[ranking] = np.arange(len(ranking))
    order = np.lexsort((pos[verified], -np.asarray(inliers, np.float64)))
    top = verified[order]
    rest = ranking[~np.isin(ranking, top)]
    return np.concatenate([top, rest])


def rank_by_scores(scores: np.ndarray) -> np.ndarray:
    """(n,) scores -> (n,) int64 ids, highest first, ties in database order."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable").astype(np.int64)
