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
bucketing m correspondences L times, linear as in the paper (one radix sort of Morton-ordered
bin codes, then a compiled pass per level: :func:`_pyramid_strengths`).

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

import numba
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
    params = np.ascontiguousarray(params, np.float64)
    return _bins_kernel(params, 2 ** (levels - 1), float(max_translation), float(np.log(max_scale)))


@numba.njit(cache=False, nogil=True)
def _bins_kernel(params, B, t_max, lms):                                       # pragma: no cover - compiled
    m = params.shape[0]
    q = np.empty((m, 4), np.int64)
    kept = np.empty(m, np.int64)
    n = 0
    for i in range(m):
        tx, ty, ls, rot = params[i, 0], params[i, 1], params[i, 2], params[i, 3]
        if not (tx >= -t_max and tx < t_max and ty >= -t_max and ty < t_max and ls >= -lms and ls < lms):
            continue
        v = ((tx + t_max) / (2 * t_max) * B, (ty + t_max) / (2 * t_max) * B,
             (ls + lms) / (2 * lms) * B, ((rot + 5 * np.pi / 16) % (2 * np.pi)) / (2 * np.pi) * B)
        for d in range(4):
            b = np.int64(np.floor(v[d]))
            q[n, d] = min(max(b, 0), B - 1)
        kept[n] = i
        n += 1
    return q[:n], kept[:n]


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
    if not 1 <= levels <= 16:
        raise UserError(f"hpm: levels must be in 1..16 (a 64-bit bin code), got {levels}")
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
    conflict and "undo" steps of :func:`hough_pyramid_matching` (Tolias & Avrithis ICCV 2011
    Sec. 3; IJCV 2013 Sec. 4.2).

    The finest bins are numbered in Morton order (the bits of the four dimensions interleaved,
    coarsest bit first), so that the bin of level k is the code shifted right by 4k: after one
    (radix) sort of the codes every bin of every level is a run of consecutive correspondences.
    Distinct labels per bin and the strongest correspondence per (bin, label) are then found by
    stamping a per-label array with the bin's number, in a compiled loop (numba): O(L C) in all.
    Same results, bit for bit, as the level-by-level formulation with sorts per level and side
    (tests/test_spatial_geometry.py keeps it as the reference).
    """
    labels_a = np.ascontiguousarray(sides[0], np.int64)
    labels_b = np.ascontiguousarray(sides[-1], np.int64)
    return _pyramid_kernel(np.ascontiguousarray(q, np.int64), labels_a, labels_b, len(sides) == 2,
                           levels, level_weights(levels))


@numba.njit(cache=False, nogil=True)
def _pyramid_kernel(q, labels_a, labels_b, two_sides, levels, w):            # pragma: no cover - compiled
    C = q.shape[0]
    nbits = 4 * (levels - 1)
    code = np.zeros(C, np.int64)                   # Morton code of the finest bin, coarsest bit first
    for c in range(C):
        v = 0
        for b in range(levels - 2, -1, -1):
            for d in range(4):
                v = (v << 1) | ((q[c, d] >> b) & 1)
        code[c] = v
    # stable LSD radix sort of the codes, 8 bits a pass: every bin of every level is then a run
    order = np.arange(C)
    tmp = np.empty(C, np.int64)
    count = np.empty(257, np.int64)
    for shift in range(0, nbits, 8):
        count[:] = 0
        for t in range(C):
            count[((code[order[t]] >> shift) & 255) + 1] += 1
        for i in range(256):
            count[i + 1] += count[i]
        for t in range(C):
            digit = (code[order[t]] >> shift) & 255
            tmp[count[digit]] = order[t]
            count[digit] += 1
        order, tmp = tmp, order
    # everything below in sorted position t; order[t] is the correspondence (ties: lower index wins)
    sc = code[order]
    la = labels_a[order]
    lb = labels_b[order]
    stamp_a = np.full(labels_a.max() + 1, -1, np.int64)
    stamp_b = np.full(labels_b.max() + 1, -1, np.int64)
    best_a = np.zeros(len(stamp_a), np.int64)
    best_b = np.zeros(len(stamp_b), np.int64)
    gid = np.empty((levels, C), np.int64)          # bin of (level, position), numbered over all levels
    size = np.empty(levels * C, np.int64)          # distinct labels per bin (min over the sides)
    s = np.zeros(C)
    erased = np.zeros(C, np.bool_)
    g = 0
    for k in range(levels):                        # finest (k = 0) to coarsest (one bin)
        shift = 4 * k
        p = 0
        while p < C:
            e = p + 1
            key = sc[p] >> shift
            while e < C and (sc[e] >> shift) == key:
                e += 1
            n_u = 0                                # group size: distinct labels of each side
            for t in range(p, e):                  # (branch-free: a label is new when its stamp is not g)
                gid[k, t] = g
                n_u += stamp_a[la[t]] != g
                stamp_a[la[t]] = g
            if two_sides:
                n_ub = 0
                for t in range(p, e):
                    n_ub += stamp_b[lb[t]] != g
                    stamp_b[lb[t]] = g
                n_u = min(n_u, n_ub)
            size[g] = n_u
            if n_u >= 2:                           # processed bin: strengths, then conflicts
                inc = w[k] * (n_u - 1)
                for t in range(p, e):
                    if not erased[t]:
                        s[t] += inc
                # keep the strongest live correspondence of each label (ties: lower index), first
                # per label of side A, then among those per label of side B (stamps: -2 - g)
                for side in range(2 if two_sides else 1):
                    lab, stamp, best = (la, stamp_a, best_a) if side == 0 else (lb, stamp_b, best_b)
                    for t in range(p, e):
                        if erased[t]:
                            continue
                        if stamp[lab[t]] != -2 - g:
                            stamp[lab[t]] = -2 - g
                            best[lab[t]] = t
                        else:
                            o = best[lab[t]]
                            if s[t] > s[o] or (s[t] == s[o] and order[t] < order[o]):
                                erased[o] = True
                                best[lab[t]] = t
                            else:
                                erased[t] = True
            g += 1
            p = e
    # final strengths: group counts among the correspondences never erased (the authors' "undo")
    cnt = np.zeros(g, np.int64)
    for k in range(levels):
        for t in range(C):
            if not erased[t]:
                cnt[gid[k, t]] += 1
    strength = np.zeros(C)
    erased_out = np.zeros(C, np.bool_)
    for t in range(C):
        x = 0.0
        for k in range(levels):
            n = 0
            if not erased[t] and size[gid[k, t]] >= 2:
                n = cnt[gid[k, t]] - 1
            x += w[k] * n
        strength[order[t]] = x
        erased_out[order[t]] = erased[t]
    return strength, erased_out
