"""Lowe's Hough voting of correspondences in the 4-d similarity space, then affine verification.

Lowe, *Object recognition from local scale-invariant features*, ICCV 1999, Sec. 7; *Distinctive
image features from scale-invariant keypoints*, IJCV 2004, Sec. 7.3 (Hough transform) and 7.4
(solution for affine parameters). Image A is the training (model) image, B the new image;
every tentative correspondence c predicts, from its two local frames (x, y, scale,
orientation), a similarity A -> B (:func:`visrep.methods.spatial.geometry.similarity_parameters`),
i.e. the location, scale and orientation of the model in B.

Hough transform (IJCV 2004 Sec. 7.3): bins of 30 degrees in orientation, a factor of 2 in scale
and ``0.25 x the maximum projected training image dimension (using the predicted scale)`` in
location; each match votes for the 2 closest bins in each dimension, 16 entries per match,
stored sparsely in a hash table (here: integer keys, counted with one sort); all bins with at
least 3 entries are clusters. Here the location of a
correspondence is the predicted position in B of the centre of A, and the location bin width
of scale bin k is 0.25 x D x 2^(k + 1/2) (D = max(width, height) of A; 2^(k + 1/2) the scale at
the middle of the bin), so each scale level has one fixed location grid.

Verification (IJCV 2004 Sec. 7.4, the stacked linear system and its normal equations): per
cluster, the least-squares affine map
``[x y 0 0 1 0; 0 0 x y 0 1] [m1 m2 m3 m4 tx ty]^T = [u v]^T`` (the normal equations
``x = (A^T A)^-1 A^T b``); each match must then agree with the model within half the error range
of the Hough bins' parameters (here: position within 0.125 x D x s, scale within a
factor sqrt(2), orientation within 15 degrees of the model's, s and angle of the model taken
from the similarity part of its linear map); outliers are discarded and the solution re-solved,
iterated; a cluster left with fewer than 3 matches is rejected;
then the top-down phase adds every correspondence that agrees with the model, re-solving until
the set is stable. Score of a pair: the inliers of its best verified cluster, counted one-to-one
(:func:`visrep.methods.spatial.geometry.one_to_one_count`).

Not implemented: the probabilistic acceptance of a verified cluster (IJCV 2004 Sec. 7.5, Lowe
CVPR 2001), which needs the number of model features in the predicted region; re-ranking uses the
inlier count instead, as FSM and RANSAC do. All clusters are verified at once (a (clusters, m)
mask; the work is O(clusters x m), the talk's "both are quadratic in the number of correspondences").
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .geometry import check_frames, check_pairs, correspondence_transforms


def hough_votes(frames_a: np.ndarray, frames_b: np.ndarray, pairs: np.ndarray, dim: float,
                location_fraction: float = 0.25, scale_factor: float = 2.0,
                orientation_bin: float = np.pi / 6, centre: np.ndarray | None = None) -> np.ndarray:
    """The 16 Hough entries of every correspondence (IJCV 2004 Sec. 7.3).

    frames_a (n, 4), frames_b (n', 4) float (x, y, scale, orientation); pairs (m, 2) int; dim: D,
    the maximum dimension of image A (pixels); centre (2,): the point of A whose predicted position
    is the location (default: the centre of the D x D box, (D/2, D/2)).
    Returns bins (m, 16, 4) int64: (scale bin, orientation bin, x bin, y bin) of each entry; the
    2 closest bins per dimension, orientation cyclic over 2 pi / orientation_bin bins.
    """
    m = len(pairs)
    T = correspondence_transforms(frames_a, frames_b, pairs)                    # (m, 2, 3)
    c = np.full(2, dim / 2.0) if centre is None else np.asarray(centre, np.float64)
    loc = T[:, :, :2] @ c + T[:, :, 2]                                          # (m, 2): A's centre in B
    fa, fb = frames_a[pairs[:, 0]], frames_b[pairs[:, 1]]
    u_s = np.log(fb[:, 2] / fa[:, 2]) / np.log(scale_factor)                    # scale in bin units
    n_or = round(2 * np.pi / orientation_bin)
    u_o = np.mod(fb[:, 3] - fa[:, 3], 2 * np.pi) / orientation_bin              # orientation in bin units

    def two_closest(u):                                                         # (m,) -> (m, 2)
        b0 = np.floor(u - 0.5).astype(np.int64)
        return np.stack([b0, b0 + 1], 1)
    bs = two_closest(u_s)                                                       # (m, 2) scale bins
    bo = np.mod(two_closest(u_o), n_or)                                         # (m, 2) orientation bins
    width = location_fraction * dim * scale_factor ** (bs + 0.5)                # (m, 2) per scale bin
    bx = two_closest((loc[:, None, 0] / width).ravel()).reshape(m, 2, 2)        # (m, scale, 2)
    by = two_closest((loc[:, None, 1] / width).ravel()).reshape(m, 2, 2)
    i_s, i_o, i_x, i_y = np.meshgrid(np.arange(2), np.arange(2), np.arange(2), np.arange(2), indexing="ij")
    i_s, i_o, i_x, i_y = i_s.ravel(), i_o.ravel(), i_x.ravel(), i_y.ravel()     # (16,)
    return np.stack([bs[:, i_s], bo[:, i_o], bx[:, i_s, i_x], by[:, i_s, i_y]], -1)


def hough_clusters(bins: np.ndarray, min_votes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Bins with at least `min_votes` entries (IJCV 2004 Sec. 7.3) from the entries (m, 16, 4).

    Returns (members (C, m) bool: the correspondences voting in each such bin, votes (C,) int64),
    clusters ordered by votes (largest first; ties by bin key).
    """
    m = bins.shape[0]
    if m == 0:
        return np.zeros((0, 0), bool), np.zeros(0, np.int64)
    flat = bins.reshape(-1, 4)
    lo = flat.min(0)
    span = flat.max(0) - lo + 1
    if np.prod(span.astype(np.float64)) < 2 ** 62:            # one int64 key per bin (else rows)
        key = np.ravel_multi_index(tuple((flat - lo).T), tuple(span))
        _, bin_id, counts = np.unique(key, return_inverse=True, return_counts=True)
    else:
        _, bin_id, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    bin_id = bin_id.ravel()
    big = np.flatnonzero(counts >= min_votes)
    big = big[np.argsort(-counts[big], kind="stable")]
    rank = np.full(len(counts), -1, np.int64)
    rank[big] = np.arange(len(big))
    r = rank[bin_id]
    owner = np.repeat(np.arange(m), bins.shape[1])
    members = np.zeros((len(big), m), bool)
    keep = r >= 0
    members[r[keep], owner[keep]] = True
    return members, counts[big].astype(np.int64)


def fit_affine_batch(mask: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine maps A -> B (IJCV 2004 Sec. 7.4, normal equations), one per row of
    mask (C, m) bool over the correspondences pa, pb (m, 2). Returns (T (C, 2, 3), valid (C,) bool:
    at least 3 points, not collinear)."""
    X = np.column_stack([pa, np.ones(len(pa))])                                 # (m, 3)
    W = mask.astype(np.float64)
    C, m = W.shape
    G = (W @ (X[:, :, None] * X[:, None, :]).reshape(m, 9)).reshape(C, 3, 3)   # A^T A (per block)
    R = (W @ (X[:, :, None] * pb[:, None, :]).reshape(m, 6)).reshape(C, 3, 2)  # A^T b
    n = W.sum(1)
    scale = np.maximum(np.abs(G).max((1, 2)), 1e-12)
    valid = (n >= 3) & (np.abs(np.linalg.det(G / scale[:, None, None])) > 1e-9)
    G[~valid] = np.eye(3)
    sol = np.linalg.solve(G, R)                                                 # (C, 3, 2)
    return np.swapaxes(sol, 1, 2), valid


def agreement(T: np.ndarray, frames_a: np.ndarray, frames_b: np.ndarray, pairs: np.ndarray, dim: float,
              location_fraction: float = 0.25, scale_factor: float = 2.0,
              orientation_bin: float = np.pi / 6, rows: np.ndarray | None = None,
              cols: np.ndarray | None = None) -> np.ndarray:
    """Which correspondences agree with each affine model T (C, 2, 3) within half the error range
    of the Hough bins (IJCV 2004 Sec. 7.4): position error < 0.5 x location_fraction x dim x s,
    |log(scale ratio / s)| < 0.5 log(scale_factor), orientation within orientation_bin / 2 of the
    model's; s, angle = the similarity part of T's linear map. Returns (C, m) bool, or with
    ``rows``, ``cols`` (K,) int only the pairs (model rows[i], correspondence cols[i]): (K,) bool."""
    fa, fb = frames_a[pairs[:, 0]], frames_b[pairs[:, 1]]
    M = T[:, :, :2]
    s = np.sqrt(np.abs(M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]))      # (C,)
    ang = np.arctan2(M[:, 1, 0] - M[:, 0, 1], M[:, 0, 0] + M[:, 1, 1])          # (C,)
    with np.errstate(divide="ignore"):
        ls = np.log(s)
    h = 0.5 * np.log(scale_factor)
    lr = np.log(fb[:, 2] / fa[:, 2])                                            # (m,)
    dth = fb[:, 3] - fa[:, 3]
    if rows is None:                                                            # all (C, m) pairs
        mod = lambda v: v[:, None]
        cor = lambda v: v[None, :]
    else:
        mod = lambda v: v[rows]
        cor = lambda v: v[cols]
    px = mod(M[:, 0, 0]) * cor(fa[:, 0]) + mod(M[:, 0, 1]) * cor(fa[:, 1]) + mod(T[:, 0, 2]) - cor(fb[:, 0])
    py = mod(M[:, 1, 0]) * cor(fa[:, 0]) + mod(M[:, 1, 1]) * cor(fa[:, 1]) + mod(T[:, 1, 2]) - cor(fb[:, 1])
    r = 0.5 * location_fraction * dim * s                                       # (C,)
    ok = px * px + py * py < mod(r * r)
    ok &= (cor(lr) > mod(ls - h)) & (cor(lr) < mod(ls + h))
    ok &= (mod(np.cos(ang)) * cor(np.cos(dth)) + mod(np.sin(ang)) * cor(np.sin(dth))   # cos(dth - ang)
           > np.cos(orientation_bin / 2))
    return ok


def one_to_one_counts(masks: np.ndarray, pairs: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """:func:`visrep.methods.spatial.geometry.one_to_one_count` of every row of masks (C, m) bool:
    min(distinct features of A, of B) among its correspondences. Returns (C,) int64."""
    c, j = np.nonzero(masks)
    A = np.zeros((len(masks), n_a), bool)
    B = np.zeros((len(masks), n_b), bool)
    A[c, pairs[j, 0]] = True
    B[c, pairs[j, 1]] = True
    return np.minimum(A.sum(1), B.sum(1)).astype(np.int64)

def lowe_hough_matching(frames_a, frames_b, pairs, image_size: float | None = None, location_fraction: float = 0.25,
                        scale_factor: float = 2.0, orientation_bin_deg: float = 30.0, min_votes: int = 3,
                        max_iter: int = 10, chunk: int = 512) -> dict:
    """Hough clustering and affine verification of the correspondences between two images
    (Lowe IJCV 2004 Sec. 7.3-7.4; module notes).

    frames_a (n, 4), frames_b (n', 4) float (x, y, scale, orientation); pairs (m, 2) int;
    image_size: D, the larger dimension of image A (None: the largest feature coordinate of A).
    Returns {"score": inliers of the best verified cluster, one-to-one; "inliers": (m,) bool;
    "T": (3, 3) float64 affine A -> B or None; "clusters": bins with >= min_votes entries;
    "verified": clusters left with >= 3 inliers}.
    """
    fa = check_frames(frames_a, "lowe-hough image A")
    fb = check_frames(frames_b, "lowe-hough image B")
    if fa.shape[1] != 4 or fb.shape[1] != 4:
        raise UserError("lowe-hough: needs (n, 4) frames (x, y, scale, orientation)")
    pairs = check_pairs(pairs, len(fa), len(fb), "lowe-hough correspondences")
    if min_votes < 1 or max_iter < 1:
        raise UserError(f"lowe-hough: min_votes and max_iter must be >= 1, got {min_votes}, {max_iter}")
    n_or = 360.0 / orientation_bin_deg
    if abs(n_or - round(n_or)) > 1e-9 or location_fraction <= 0 or scale_factor <= 1:
        raise UserError(f"lowe-hough: orientation bins must divide 360 degrees (got {orientation_bin_deg}), "
                        f"location_fraction > 0 (got {location_fraction}), scale_factor > 1 (got {scale_factor})")
    m = len(pairs)
    out = {"score": 0, "inliers": np.zeros(m, bool), "T": None, "clusters": 0, "verified": 0}
    if m < 3:
        return out
    dim = float(image_size) if image_size else float(fa[:, :2].max(initial=1.0))
    ob = np.deg2rad(orientation_bin_deg)
    members, _ = hough_clusters(hough_votes(fa, fb, pairs, dim, location_fraction, scale_factor, ob), min_votes)
    out["clusters"] = len(members)
    pa, pb = fa[pairs[:, 0], :2], fb[pairs[:, 1], :2]
    best = (0, None, None)
    for s0 in range(0, len(members), chunk):
        cur = members[s0:s0 + chunk]
        C = len(cur)
        alive = cur.sum(1) >= 3
        T = np.zeros((C, 2, 3))
        # outlier removal inside each cluster, then the top-down phase over all correspondences;
        # each iteration re-solves only the clusters whose inlier set changed
        for phase in ("remove", "add"):
            act = np.flatnonzero(alive)
            for _ in range(max_iter):
                if not len(act):
                    break
                Ta, valid = fit_affine_batch(cur[act], pa, pb)
                T[act] = Ta
                if phase == "remove":                    # only the cluster's own members are checked
                    rr, cc = np.nonzero(cur[act])
                    new = np.zeros((len(act), m), bool)
                    new[rr, cc] = agreement(Ta, fa, fb, pairs, dim, location_fraction, scale_factor, ob, rr, cc)
                else:
                    new = agreement(Ta, fa, fb, pairs, dim, location_fraction, scale_factor, ob)
                ok = valid & (new.sum(1) >= 3)
                alive[act[~ok]] = False
                changed = ok & (new != cur[act]).any(1)
                cur[act[ok]] = new[ok]
                act = act[changed]
        cur &= alive[:, None]
        out["verified"] += int(alive.sum())
        if alive.any():
            n = one_to_one_counts(cur, pairs, len(fa), len(fb))
            c = int(n.argmax())
            if n[c] > best[0]:
                best = (int(n[c]), cur[c].copy(), T[c].copy())
    if best[1] is not None:
        out["score"], out["inliers"] = best[0], best[1]
        out["T"] = np.vstack([best[2], [0, 0, 1.0]])
    return out
