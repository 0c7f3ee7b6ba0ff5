"""Hough pyramid matching (HPM): relaxed spatial matching, linear in the correspondences.

Tolias & Avrithis, *Speeded-up, relaxed spatial matching*, ICCV 2011; extended in
*Hough pyramid matching: speeded-up geometry re-ranking for large scale image retrieval*,
IJCV 2013 (Sec. 3-4). Every tentative correspondence c (a pair of local features with frames
(x, y, scale, orientation)) votes, through its two local frames, for one point f(c) of the 4-d
space of similarity transformations (translation x, y, log-scale, rotation;
:func:`visrep.methods.spatial.geometry.similarity_parameters`). That space is partitioned into a
pyramid: at the finest level each dimension has ``B = 2^(L-1)`` bins, and each coarser level
merges bins two by two per dimension, up to a single bin at the top. Two correspondences are
*grouped* at the finest level whose bin they share; their affinity is ``2^-k`` when that level
is k (k = 0 finest), 0 if never grouped. The strength of c is the sum of its affinities (the
paper's Eq. for the strength, written here on cumulative counts: ``s(c) = sum_k w_k (n_k(c))``
with ``n_k(c)`` the correspondences sharing c's bin at level k, other than c, and
``w_k = 2^-(k+1)`` for k < L-1, ``2^-(L-1)`` at the top, which is the same sum). The image
similarity is the sum of the strengths (times the idf of each correspondence's visual word
when given). No hypothesis is enumerated and no inlier is counted: the cost is that of
bucketing m correspondences L times (sorts here, all levels in one array: :func:`_pyramid_strengths`;
hashing gives the paper's linear time).

Conflicts (one-to-one constraint, IJCV 2013 Sec. 4.2): correspondences with the same *label*
in the same bin conflict (label = visual word for BoW correspondences, as in the authors'
code; else the connected component of the bipartite correspondence graph, i.e. correspondences
sharing a feature directly or indirectly). Going from the finest level up, in each bin the
strongest correspondence of each label is kept and the others are *erased* (they get strength
0), and the group counts of the bins they belonged to are reduced accordingly at the end.

Bounds and quantization follow the authors' release: translation in [-t_max, t_max) with
t_max = 3.5 x the image size (here the largest feature coordinate of the pair, when the image
size is not given), relative scale in [1/10, 10), rotation over [0, 2 pi) shifted by 5 pi / 16
so that "no rotation" lies inside a bin; correspondences outside the bounds are dropped.

``hpm`` is registered as a re-ranking retrieval method (BoW shortlist, then HPM scores on the
top N): see :class:`visrep.methods.spatial.verification.SpatialReranking`.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .geometry import (
    check_frames,
    check_pairs,
    similarity_parameters,
)


def component_labels(pairs: np.ndarray) -> np.ndarray:
    """Connected component of each correspondence in the bipartite graph of features (m,) int64."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    m = len(pairs)
    if m == 0:
        return np.zeros(0, np.int64)
    ua, ia = np.unique(pairs[:, 0], return_inverse=True)
    ub, ib = np.unique(pairs[:, 1], return_inverse=True)
    n = len(ua) + len(ub)
    g = sp.coo_matrix((np.ones(m), (ia, len(ua) + ib)), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    return comp[ia].astype(np.int64)


def level_weights(levels: int) -> np.ndarray:
    """Weights ``w_k`` (L,) of the cumulative group counts, k = 0 (finest) .. L-1 (one bin):
    ``2^-(k+1)`` for k < L-1 and ``2^-(L-1)`` at the top, so that a pair first grouped at level
    k gets affinity ``sum_{k' >= k} w_k' = 2^-k`` (Tolias & Avrithis ICCV 2011, Sec. 3)."""
    w = 2.0 ** -(np.arange(levels) + 1.0)
    w[-1] = 2.0 ** -(levels - 1)
    return w


def hough_bins(params: np.ndarray, levels: int, max_translation: float, max_scale: float = 10.0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Finest-level bins (m_kept, 4) int64 of similarity parameters (m, 4) = (tx, ty, log s, rot)
    and the indices (m_kept,) of the correspondences within the bounds."""
    B = 2 ** (levels - 1)
    tx, ty, ls, rot = params.T
    lms = np.log(max_scale)
    keep = ((tx >= -max_translation) & (tx < max_translation) & (ty >= -max_translation)
            & (ty < max_translation) & (ls >= -lms) & (ls < lms))
    idx = np.flatnonzero(keep)
    rot_shifted = np.mod(rot[idx] + 5 * np.pi / 16, 2 * np.pi)
    q = np.stack([(tx[idx] + max_translation) / (2 * max_translation) * B,
                  (ty[idx] + max_translation) / (2 * max_translation) * B,
                  (ls[idx] + lms) / (2 * lms) * B,
                  rot_shifted / (2 * np.pi) * B], 1)
    return np.clip(np.floor(q).astype(np.int64), 0, B - 1), idx


def hough_pyramid_matching(frames_a, frames_b, pairs, labels=None, weights=None, levels: int = 5,
                           max_translation: float | None = None, max_scale: float = 10.0,
                           image_size: float | None = None, conflicts: str = "feature") -> dict:
    """HPM similarity of two images from their tentative correspondences.

    frames_a (n, 4), frames_b (n', 4) float (x, y, scale, orientation); pairs (m, 2) int;
    ``conflicts``: 'feature' (default: two correspondences conflict when they share a feature of
    A or of B, the one-to-one constraint itself) or 'label' (they conflict when they have the
    same ``labels`` value, as in the authors' release with labels = visual words);
    labels (m,) int conflict labels for 'label' (visual words; None = connected components);
    weights (m,) float per-correspondence weights (idf of the word; None = 1); ``levels`` L;
    ``max_translation`` (pixels; None = 3.5 x ``image_size``, itself None = the largest
    feature coordinate of the two images).

    Returns {"score": float, "strengths": (m,) float64, "erased": (m,) bool, "out_of_bounds":
    (m,) bool}.
    """
    fa = check_frames(frames_a, "hpm image A")
    fb = check_frames(frames_b, "hpm image B")
    if fa.shape[1] != 4 or fb.shape[1] != 4:
        raise UserError("hpm: needs (n, 4) frames (x, y, scale, orientation)")
    pairs = check_pairs(pairs, len(fa), len(fb), "hpm correspondences")
    if levels < 1:
        raise UserError(f"hpm: levels must be >= 1, got {levels}")
    if conflicts not in ("feature", "label"):
        raise UserError(f"hpm: conflicts must be 'feature' or 'label', got {conflicts!r}")
    m = len(pairs)
    out = {"score": 0.0, "strengths": np.zeros(m), "erased": np.zeros(m, bool), "out_of_bounds": np.ones(m, bool)}
    if m == 0:
        return out
    if labels is None and conflicts == "label":
        labels = component_labels(pairs)
    if labels is not None:
        labels = np.asarray(labels, np.int64).ravel()
        if len(labels) != m:
            raise UserError(f"hpm: {len(labels)} labels for {m} correspondences")
    if max_translation is None:
        if image_size is None:
            image_size = max(float(fa[:, :2].max(initial=1.0)), float(fb[:, :2].max(initial=1.0)))
        max_translation = 3.5 * image_size
    q, kept = hough_bins(similarity_parameters(fa, fb, pairs), levels, max_translation, max_scale)
    out["out_of_bounds"][kept] = False
    C = len(kept)
    if C < 2:
        return out
    if conflicts == "label":
        sides = [np.unique(labels[kept], return_inverse=True)[1].astype(np.int64).ravel()]
    else:                                        # the features of A and of B (one-to-one constraint)
        sides = [pairs[kept, 0], pairs[kept, 1]]
    strength, erased = _pyramid_strengths(q, sides, levels)
    if weights is not None:
        weights = np.asarray(weights, np.float64).ravel()
        if len(weights) != m:
            raise UserError(f"hpm: {len(weights)} weights for {m} correspondences")
        strength *= weights[kept]
    out["strengths"][kept] = strength
    out["erased"][kept] = erased
    out["score"] = float(strength.sum())
    return out


def _pyramid_strengths(q: np.ndarray, sides: list, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Strengths (C,) float64 and erased flags (C,) bool of C correspondences with finest-level bins
    q (C, 4) int64 and conflict labels ``sides`` (one or two (C,) int arrays >= 0): the grouping,
    conflict and "undo" steps of :func:`hough_pyramid_matching`, vectorized over the L levels.

    The bins of all levels are numbered at once (one sort of the (L, C) level-tagged codes); the
    group size of a bin (its distinct labels, min over the sides) is one sort of (bin, label) keys
    per side; only the strength accumulation and the conflict resolution (which depend on the
    strengths of the level below) run level by level. Same floating-point operations, in the same
    order, as the level-by-level formulation (Tolias & Avrithis ICCV 2011 Sec. 3; IJCV 2013 Sec. 4).
    """
    C = len(q)
    B = 2 ** (levels - 1)
    ks = np.arange(levels)
    nb = (B >> ks)[:, None]                                                    # (L, 1) bins per dimension
    Q = q[None] >> ks[:, None, None]                                           # (L, C, 4)
    code = ((Q[..., 0] * nb + Q[..., 1]) * nb + Q[..., 2]) * nb + Q[..., 3]    # (L, C) bin within its level
    tag = np.concatenate([[0], np.cumsum((B >> ks[:-1]) ** 4)])                # level offsets: disjoint ranges
    _, gid = np.unique(code + tag[:, None], return_inverse=True)               # bin of (level, correspondence)
    gid = gid.reshape(levels, C).astype(np.int64)
    n_groups = int(gid.max()) + 1
    keys, n_unique = [], None
    for lab in sides:
        lab = np.asarray(lab, np.int64)
        n_lab = int(lab.max()) + 1
        key = gid * n_lab + lab[None]                                          # (L, C) (bin, label)
        ks_ = np.sort(key, axis=None)
        first = np.ones(len(ks_), bool)
        first[1:] = ks_[1:] != ks_[:-1]
        distinct = np.bincount(ks_[first] // n_lab, minlength=n_groups)        # distinct labels per bin
        n_unique = distinct[gid] if n_unique is None else np.minimum(n_unique, distinct[gid])
        keys.append(key)
    w = level_weights(levels)
    processed = n_unique >= 2                                                  # (L, C)
    s = np.zeros(C)
    erased = np.zeros(C, bool)
    rank = np.zeros(C, np.int64)
    key_max = max(int(key.max()) for key in keys) + 1
    for k in range(levels):                      # finest (k = 0) to coarsest (one bin)
        live = processed[k] & ~erased
        s[live] += w[k] * (n_unique[k][live] - 1)
        # conflicts: in each processed bin keep the strongest live correspondence of each label
        # (of each feature of A, then of each feature of B: at most one per feature survives);
        # order = by (bin, label), strength descending, index ascending: one integer sort key made
        # of the dense rank of -s (the order of np.lexsort((idx, -s, key)), exactly)
        idx = np.flatnonzero(live)
        if not len(idx):
            continue
        _, r = np.unique(-s[idx], return_inverse=True)
        rank[idx] = r.ravel()
        n_rank = int(r.max()) + 1
        exact = float(key_max) * n_rank * C < 2.0 ** 62
        for key in keys:
            if not len(idx):
                break
            kk = key[k][idx]
            order = (np.argsort((kk * n_rank + rank[idx]) * C + idx) if exact
                     else np.lexsort((idx, -s[idx], kk)))
            kk = kk[order]
            first = np.ones(len(kk), bool)
            first[1:] = kk[1:] != kk[:-1]
            erased[idx[order][~first]] = True
            idx = idx[order][first]
    # final strengths: group counts among the correspondences never erased (the authors' "undo")
    alive = ~erased
    cnt = np.bincount(gid[:, alive].ravel(), minlength=n_groups)
    g = np.where(processed & alive[None], cnt[gid] - 1, 0)                    # (L, C)
    strength = np.zeros(C)
    for k in range(levels):
        strength += w[k] * g[k]
    return strength, erased
