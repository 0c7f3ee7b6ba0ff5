"""Shared kernels of spatial matching: correspondences, transformations from local frames,
inlier counting, least-squares fitting, RANSAC and fast spatial matching (FSM).

Conventions
-----------
- Points are pixel coordinates (x, y) with y pointing *down* (image coordinates).
- A *frame* is a row ``(x, y, scale, orientation)`` (n, 4) as in
  :mod:`visrep.methods.local.features` (OpenCV SIFT: scale = keypoint size, orientation in
  radians as OpenCV reports them, measured in (x, y-down) pixel coordinates: checked on a
  photograph rotated by a known angle, see the tests), or an
  affine frame ``(x, y, a11, a12, a21, a22)`` (n, 6): the 2x2 matrix maps the unit circle of
  the normalized patch to the measurement region (Hessian-affine / MSER ellipses with
  orientation).
- A correspondence set is ``pairs`` (m, 2) int64: row (i, j) links feature i of image A to
  feature j of image B. Transformations map A to B.
- An affine transformation is (2, 3) float64 ``[M | t]``; a homography is (3, 3) float64.

Papers
------
- Single-correspondence similarity (4 dof: scale, rotation, translation) from local shape:
  Lowe, Object recognition from local scale-invariant features, ICCV 1999, Sec. 7 (Hough
  voting in the 4-d space of similarities).
- FSM: Philbin, Chum, Isard, Sivic & Zisserman, Object retrieval with large vocabularies and
  fast spatial matching, CVPR 2007, Sec. 4: one hypothesis per correspondence from its local
  frames (3, 4 or 5 dof), all hypotheses scored by their inliers, the best one refined by
  least squares to an affine transformation (LO-RANSAC step: Chum, Matas & Kittler, Locally
  optimized RANSAC, DAGM 2003).
- RANSAC: Fischler & Bolles, Random sample consensus, CACM 1981; homography by the
  normalized DLT (Hartley & Zisserman, Multiple View Geometry, 2nd ed., Alg. 4.2); adaptive
  number of iterations ``log(1 - conf) / log(1 - w^4)`` (ibid. Sec. 4.7.1, Eq. 4.18).
"""
from __future__ import annotations

import numba
import numpy as np

from visrep.errors import UserError

# ----------------------------------------------------------------------------------------------
# input checks

def check_frames(frames, where: str = "frames") -> np.ndarray:
    """Validate local frames: (n, 4) or (n, 6) finite reals -> float64; scales must be > 0."""
    f = np.asarray(frames)
    if f.ndim != 2 or f.shape[1] not in (4, 6):
        raise UserError(f"{where}: frames must be (n, 4) (x, y, scale, orientation) or (n, 6) "
                        f"(x, y, a11, a12, a21, a22), got shape {f.shape}")
    if f.dtype.kind not in "fiu":
        raise UserError(f"{where}: frames must be real numbers, got dtype {f.dtype}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise UserError(f"{where}: frames contain NaN or infinite values")
    if f.shape[1] == 4 and len(f) and f[:, 2].min() <= 0:
        raise UserError(f"{where}: frame scales (column 2) must be positive, got min {f[:, 2].min()}")
    if f.shape[1] == 6 and len(f) and np.abs(f[:, 2] * f[:, 5] - f[:, 3] * f[:, 4]).min() <= 0:
        raise UserError(f"{where}: affine frames must have non-singular 2x2 shape matrices")
    return f


def check_pairs(pairs, n_a: int, n_b: int, where: str = "correspondences") -> np.ndarray:
    """Validate correspondences (m, 2) of int indices into A (n_a) and B (n_b) -> int64."""
    p = np.asarray(pairs)
    if p.size == 0:
        return np.zeros((0, 2), np.int64)
    if p.ndim != 2 or p.shape[1] != 2 or p.dtype.kind not in "iu":
        raise UserError(f"{where}: expected an (m, 2) integer array, got shape {p.shape} dtype {p.dtype}")
    p = p.astype(np.int64)
    if p[:, 0].min() < 0 or p[:, 0].max() >= n_a or p[:, 1].min() < 0 or p[:, 1].max() >= n_b:
        raise UserError(f"{where}: indices out of range (image A has {n_a} features, image B {n_b})")
    return p


# ----------------------------------------------------------------------------------------------
# tentative correspondences

def nn_correspondences(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.8,
                       mutual: bool = True) -> np.ndarray:
    """Descriptor matches A -> B: nearest neighbour, Lowe's ratio test (IJCV 2004, Sec. 7.1:
    d1 < ratio * d2) and, with ``mutual``, the mutual-nearest-neighbour check.

    desc_a (n, d), desc_b (n', d) float. Returns pairs (m, 2) int64, sorted by A index.
    """
    a = np.asarray(desc_a, np.float32)
    b = np.asarray(desc_b, np.float32)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UserError(f"nn_correspondences: descriptors must be (n, d) with equal d, got {a.shape} and {b.shape}")
    d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)
    ab = d2.argmin(1)
    keep = np.ones(len(a), bool)
    if mutual:
        keep &= d2.argmin(0)[ab] == np.arange(len(a))
    if ratio < 1 and d2.shape[1] > 1:
        part = np.partition(d2, 1, axis=1)[:, :2]
        keep &= part[:, 0] < ratio ** 2 * part[:, 1]
    idx = np.flatnonzero(keep)
    return np.stack([idx, ab[idx]], 1).astype(np.int64)


def word_correspondences(words_a: np.ndarray, words_b: np.ndarray, max_per_word: int | None = None) -> np.ndarray:
    """All pairs of features that share a visual word (the tentative correspondences of BoW
    spatial verification, Philbin et al. CVPR 2007; Tolias & Avrithis ICCV 2011).

    words_a (n,), words_b (n',) int. ``max_per_word`` drops words with more than that many
    features in either image (bursts; None keeps all). Returns (m, 2) int64, sorted by word.
    """
    wa = np.asarray(words_a, np.int64).ravel()
    wb = np.asarray(words_b, np.int64).ravel()
    if len(wa) == 0 or len(wb) == 0:
        return np.zeros((0, 2), np.int64)
    oa, ob = np.argsort(wa, kind="stable"), np.argsort(wb, kind="stable")
    ua, sa, ca = np.unique(wa[oa], return_index=True, return_counts=True)
    ub, sb, cb = np.unique(wb[ob], return_index=True, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    if max_per_word is not None:
        ok = (ca[ia] <= max_per_word) & (cb[ib] <= max_per_word)
        ia, ib = ia[ok], ib[ok]
    na, nb = ca[ia], cb[ib]
    n_pairs = na * nb
    total = int(n_pairs.sum())
    if total == 0:
        return np.zeros((0, 2), np.int64)
    owner = np.repeat(np.arange(len(ia)), n_pairs)
    k = np.arange(total) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    ra = sa[ia][owner] + k // nb[owner]
    rb = sb[ib][owner] + k % nb[owner]
    return np.stack([oa[ra], ob[rb]], 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# transformations from local frames

def frame_shapes(frames: np.ndarray) -> np.ndarray:
    """2x2 shape matrix of each frame (n, 2, 2) float64, in (x, y-down) pixel coordinates.

    (x, y, s, theta): ``s * R(theta)`` with ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` acting
    on (x, y-down) coordinates (OpenCV's keypoint angle turns with the image this way: a
    photograph warped by ``cv2.getRotationMatrix2D(c, alpha, 1)`` has its keypoint angles
    increased by ``-alpha``, i.e. by the angle of R in y-down coordinates; see the tests).
    (x, y, a11, a12, a21, a22): the given matrix.
    """
    f = np.asarray(frames, np.float64)
    if f.shape[1] == 6:
        return f[:, 2:6].reshape(-1, 2, 2)
    s, th = f[:, 2], f[:, 3]
    c, si = np.cos(th), np.sin(th)
    return s[:, None, None] * np.stack([np.stack([c, -si], -1), np.stack([si, c], -1)], 1)


def correspondence_transforms(frames_a: np.ndarray, frames_b: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """One transformation A -> B per correspondence, from its two local frames.

    Linear part ``M = S_b S_a^{-1}`` (S: :func:`frame_shapes`), translation ``t = p_b - M p_a``.
    For (x, y, s, theta) frames M is the 4-dof similarity ``(s_b / s_a) R(theta_b - theta_a)``
    (Lowe ICCV 1999; Philbin et al. CVPR 2007, Sec. 4.1). Returns (m, 2, 3) float64.
    """
    fa, fb = frames_a[pairs[:, 0]], frames_b[pairs[:, 1]]
    Sa, Sb = frame_shapes(fa), frame_shapes(fb)
    M = Sb @ np.linalg.inv(Sa)
    t = fb[:, :2] - np.einsum("mij,mj->mi", M, fa[:, :2])
    return np.concatenate([M, t[:, :, None]], 2)


def similarity_parameters(frames_a: np.ndarray, frames_b: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """4-d similarity parameters of each correspondence (m, 4) float64: translation x, y,
    log scale ``log(s_b / s_a)``, rotation ``theta_b - theta_a`` in [0, 2 pi) (frame
    convention, see :func:`frame_shapes`), i.e. the point of the Hough space each
    correspondence votes for (Lowe ICCV 1999; Tolias & Avrithis ICCV 2011, Sec. 3).

    Only (n, 4) frames: affine frames have no single scale and orientation.
    """
    if frames_a.shape[1] != 4 or frames_b.shape[1] != 4:
        raise UserError("similarity_parameters: needs (n, 4) frames (x, y, scale, orientation)")
    pairs = np.ascontiguousarray(np.asarray(pairs, np.int64).reshape(-1, 2))
    return _similarity_kernel(np.ascontiguousarray(frames_a, np.float64), np.ascontiguousarray(frames_b, np.float64), pairs)


@numba.njit(cache=False, nogil=True)
def _similarity_kernel(fa, fb, pairs):                                          # pragma: no cover - compiled
    # closed form of correspondence_transforms for similarity frames (no 2x2 inverse per pair):
    # M = r R(phi), r = s_b / s_a, phi = theta_b - theta_a; t = p_b - M p_a
    out = np.empty((pairs.shape[0], 4))
    for i in range(pairs.shape[0]):
        a, b = pairs[i, 0], pairs[i, 1]
        if a < 0 or a >= fa.shape[0] or b < 0 or b >= fb.shape[0]:
            raise IndexError("similarity_parameters: a correspondence indexes a feature the image does not have")
        r = fb[b, 2] / fa[a, 2]
        phi = fb[b, 3] - fa[a, 3]
        c, s = r * np.cos(phi), r * np.sin(phi)
        out[i, 0] = fb[b, 0] - (c * fa[a, 0] - s * fa[a, 1])
        out[i, 1] = fb[b, 1] - (s * fa[a, 0] + c * fa[a, 1])
        out[i, 2] = np.log(r)
        out[i, 3] = phi % (2 * np.pi)
    return out


def apply_affine(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(2, 3) or (h, 2, 3) transformations applied to points (m, 2) -> (m, 2) or (h, m, 2)."""
    return p @ np.swapaxes(T[..., :2], -1, -2) + T[..., None, :, 2]


def apply_homography(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(3, 3) or (h, 3, 3) homographies applied to points (m, 2) -> (m, 2) or (h, m, 2).
    Points mapped to infinity come out as inf."""
    q = p @ np.swapaxes(H[..., :2, :2], -1, -2) + H[..., None, :2, 2]
    w = p @ H[..., 2, :2][..., :, None] + H[..., None, 2:3, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = q / w
    return np.where(np.isfinite(out), out, np.inf)


def transfer_errors(T: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Reprojection (transfer) error ``||T(p_a) - p_b||`` in image B for each hypothesis and
    correspondence. T (h, 2, 3) / (h, 3, 3) or a single one; pa, pb (m, 2). -> (h, m) or (m,)."""
    q = apply_homography(T, pa) if T.shape[-2] == 3 else apply_affine(T, pa)
    return np.sqrt(((q - pb) ** 2).sum(-1))


def inlier_counts(T: np.ndarray, pa: np.ndarray, pb: np.ndarray, threshold: float) -> np.ndarray:
    """Inliers of each affine hypothesis: ``#{j : ||T_h(pa_j) - pb_j|| < threshold}`` for T (h, 2, 3),
    pa, pb (m, 2) -> (h,) int64. The h x m transfer errors of :func:`transfer_errors`, counted in a
    compiled loop without materialising them (FSM's scoring of all m hypotheses, O(h m))."""
    return _inlier_counts_kernel(np.ascontiguousarray(T, np.float64), np.ascontiguousarray(pa, np.float64),
                                 np.ascontiguousarray(pb, np.float64), float(threshold))


@numba.njit(cache=False, nogil=True)
def _inlier_counts_kernel(T, pa, pb, threshold):                               # pragma: no cover - compiled
    counts = np.zeros(T.shape[0], np.int64)
    for h in range(T.shape[0]):
        a, b, c, d, e, f = T[h, 0, 0], T[h, 0, 1], T[h, 0, 2], T[h, 1, 0], T[h, 1, 1], T[h, 1, 2]
        n = 0
        for j in range(pa.shape[0]):
            dx = (pa[j, 0] * a + pa[j, 1] * b + c) - pb[j, 0]
            dy = (pa[j, 0] * d + pa[j, 1] * e + f) - pb[j, 1]
            n += np.sqrt(dx * dx + dy * dy) < threshold
        counts[h] = n
    return counts


def corner_error(H_est: np.ndarray, H_true: np.ndarray, width: float, height: float) -> float:
    """Mean distance (pixels) between the image corners mapped by H_est and by H_true."""
    c = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    H_est = H_est if H_est.shape == (3, 3) else np.vstack([H_est, [0, 0, 1]])
    return float(np.sqrt(((apply_homography(H_est, c) - apply_homography(H_true, c)) ** 2).sum(1)).mean())


def one_to_one_count(pairs: np.ndarray, mask: np.ndarray) -> int:
    """Inliers counted with each feature at most once: min(#distinct A, #distinct B) features
    among the inlier correspondences (many-to-many word correspondences would otherwise count
    a repeated feature several times)."""
    p = pairs[mask]
    if len(p) == 0:
        return 0
    return int(min(len(np.unique(p[:, 0])), len(np.unique(p[:, 1]))))


# ----------------------------------------------------------------------------------------------
# least-squares fitting

def fit_affine(pa: np.ndarray, pb: np.ndarray) -> np.ndarray | None:
    """Least-squares affine A -> B (2, 3) from m >= 3 correspondences; None if degenerate."""
    if len(pa) < 3:
        return None
    X = np.hstack([pa, np.ones((len(pa), 1))])
    sol, _, rank, _ = np.linalg.lstsq(X, pb, rcond=None)
    if rank < 3:
        return None
    return sol.T


def _normalizer(p: np.ndarray) -> np.ndarray:
    """Hartley normalization: centroid to the origin, mean distance sqrt(2). (3, 3)."""
    c = p.mean(0)
    d = np.sqrt(((p - c) ** 2).sum(1)).mean()
    s = np.sqrt(2) / max(d, 1e-12)
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])


def _dlt_rows(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """DLT equations (..., 2m, 9) for normalized points (..., m, 2) (Hartley & Zisserman Eq. 4.3)."""
    x, y = pa[..., 0], pa[..., 1]
    u, v = pb[..., 0], pb[..., 1]
    z, o = np.zeros_like(x), np.ones_like(x)
    r1 = np.stack([-x, -y, -o, z, z, z, u * x, u * y, u], -1)
    r2 = np.stack([z, z, z, -x, -y, -o, v * x, v * y, v], -1)
    return np.concatenate([r1, r2], -2)


def fit_homography(pa: np.ndarray, pb: np.ndarray) -> np.ndarray | None:
    """Normalized DLT homography A -> B (3, 3), H[2, 2] = 1, from m >= 4 correspondences
    (least squares in the algebraic error for m > 4). None if degenerate."""
    if len(pa) < 4:
        return None
    Na, Nb = _normalizer(pa), _normalizer(pb)
    qa = pa @ Na[:2, :2].T + Na[:2, 2]
    qb = pb @ Nb[:2, :2].T + Nb[:2, 2]
    _, s, vt = np.linalg.svd(_dlt_rows(qa, qb), full_matrices=False)
    if s[-2] < 1e-10 * s[0]:
        return None
    H = np.linalg.inv(Nb) @ vt[-1].reshape(3, 3) @ Na
    if abs(H[2, 2]) < 1e-12:
        return None
    return H / H[2, 2]


def _batch_homographies(pa4: np.ndarray, pb4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact homographies of B minimal samples (B, 4, 2) -> (H (B, 3, 3), valid (B,) bool)."""
    def norm(p):
        c = p.mean(1, keepdims=True)
        d = np.sqrt(((p - c) ** 2).sum(2)).mean(1)
        s = np.sqrt(2) / np.maximum(d, 1e-12)
        N = np.zeros((len(p), 3, 3))
        N[:, 0, 0] = N[:, 1, 1] = s
        N[:, 0, 2], N[:, 1, 2] = -s * c[:, 0, 0], -s * c[:, 0, 1]
        N[:, 2, 2] = 1
        return N, (p - c) * s[:, None, None]
    Na, qa = norm(pa4)
    Nb, qb = norm(pb4)
    _, s, vt = np.linalg.svd(_dlt_rows(qa, qb))
    valid = s[:, -2] > 1e-8 * s[:, 0]
    H = np.linalg.inv(Nb) @ vt[:, -1].reshape(-1, 3, 3) @ Na
    h22 = H[:, 2, 2]
    valid &= np.abs(h22) > 1e-12
    H = H / np.where(valid, h22, 1.0)[:, None, None]
    # a homography of a proper view keeps the orientation of the sample (no fold-over)
    det = np.linalg.det(H[:, :2, :2] - H[:, :2, 2:3] * H[:, 2:3, :2])
    valid &= det > 0
    return H, valid


def one_to_one_inliers(ids_a: np.ndarray, ids_b: np.ndarray, mask: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Inliers with each feature used at most once: among the correspondences of `mask` (m,) bool,
    keep for every feature of A the one of least transfer error `err` (m,), then among those
    for every feature of B the one of least error. ids_a, ids_b (m,) int: the feature of A / B
    of each correspondence. Returns (m,) bool, a subset of `mask`.

    A feature has at most one true match, so the many-to-many word correspondences of a
    repeated visual word (or two detections a few pixels apart) must not all enter a
    least-squares fit: on an image matched with itself the identity correspondences (error 0)
    are exactly the ones kept.
    """
    idx = np.flatnonzero(mask)
    out = np.zeros(len(mask), bool)
    if len(idx) == 0:
        return out
    for ids in (ids_a, ids_b):
        order = np.lexsort((idx, err[idx], ids[idx]))
        k = ids[idx][order]
        first = np.ones(len(k), bool)
        first[1:] = k[1:] != k[:-1]
        idx = idx[order][first]
    out[idx] = True
    return out


def _point_ids(p: np.ndarray) -> np.ndarray:
    """Feature identity of each point (m, 2) when no feature indices are given: equal coordinates."""
    return np.unique(p, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def refine(pa: np.ndarray, pb: np.ndarray, mask: np.ndarray, threshold: float, model: str = "homography",
           iters: int = 5, pairs: np.ndarray | None = None, errors: np.ndarray | None = None
           ) -> tuple[np.ndarray | None, np.ndarray]:
    """Re-estimate a model from the inliers of a hypothesis, iterated until the inlier set is
    stable (at most `iters` fits): the local optimization of LO-RANSAC (Chum, Matas & Kittler,
    DAGM 2003, iterative least squares on the inliers), as used by FSM (Philbin et al. CVPR
    2007, Sec. 4: the best hypothesis is refined by least squares on its inliers) and Hartley &
    Zisserman's Alg. 4.6 steps (iv)-(v) ("re-estimate H from all correspondences classified as
    inliers ... iterate until the number of correspondences is stable").

    The re-estimated model *replaces* the hypothesis (it is not compared with it by inlier
    count: a refinement that drops a false match the hypothesis happened to include is the
    point of refining). Each fit uses the inliers one-to-one (:func:`one_to_one_inliers`;
    feature identities from `pairs` (m, 2), else equal coordinates). Simplification, named:
    the fit minimizes the algebraic error (normalized DLT for 'homography', linear least squares
    for 'affine'), not H&Z's geometric (ML) cost.

    pa, pb (m, 2) float; mask (m,) bool inliers of the hypothesis; `errors` (m,) its transfer
    errors (they choose the one-to-one inliers of the first fit; None = the first correspondence
    of each feature); `model` 'affine' -> (2, 3) or 'homography' -> (3, 3). Returns (T or None when the first fit is degenerate, mask (m,) bool:
    inliers of T at `threshold`).
    """
    fit = fit_homography if model == "homography" else fit_affine
    ids_a, ids_b = (pairs[:, 0], pairs[:, 1]) if pairs is not None else (_point_ids(pa), _point_ids(pb))
    T, cur = None, mask
    err = np.zeros(len(pa)) if errors is None else errors
    for _ in range(iters):
        use = one_to_one_inliers(ids_a, ids_b, cur, err)
        T_new = fit(pa[use], pb[use])
        if T_new is None:
            break
        T = T_new
        err = transfer_errors(T, pa, pb)
        new = err < threshold
        if np.array_equal(new, cur):
            break
        cur = new
    if T is None:
        return None, mask
    return T, err < threshold


# ----------------------------------------------------------------------------------------------
# RANSAC (4-point homography)

def ransac_homography(pa: np.ndarray, pb: np.ndarray, threshold: float = 3.0, max_iter: int = 2000,
                      confidence: float = 0.999, rng: np.random.Generator | None = None,
                      batch: int = 128, lo: bool = True, pairs: np.ndarray | None = None
                      ) -> tuple[np.ndarray | None, np.ndarray]:
    """Standard RANSAC for a homography A -> B (Fischler & Bolles 1981) on m correspondences.

    pa, pb: (m, 2) float. Minimal samples of 4 correspondences, exact normalized-DLT
    homographies in batches of `batch`, inliers = transfer error in B < `threshold` pixels,
    adaptive stopping (Hartley & Zisserman Eq. 4.18) up to `max_iter` samples; the best model
    is then re-estimated from its inliers until they are stable (:func:`refine`, when ``lo``;
    H&Z Alg. 4.6 (iv)-(v)), the re-estimate replacing the sample's model. `pairs` (m, 2): the
    features of each correspondence, for the one-to-one inliers of the fit (None: equal
    coordinates = same feature).
    Returns (H (3, 3) float64 or None if m < 4 or no valid sample, inlier mask (m,) bool).
    """
    pa = np.asarray(pa, np.float64)
    pb = np.asarray(pb, np.float64)
    m = len(pa)
    best_mask = np.zeros(m, bool)
    if m < 4:
        return None, best_mask
    rng = rng if rng is not None else np.random.default_rng(0)
    best_H, best_n = None, 0
    needed, done = max_iter, 0
    while done < min(needed, max_iter):
        b = min(batch, max_iter - done)
        idx = np.argsort(rng.random((b, m)), axis=1)[:, :4] if m <= 64 else _sample4(rng, b, m)
        H, valid = _batch_homographies(pa[idx], pb[idx])
        done += b
        if not valid.any():
            continue
        H = H[valid]
        inl = transfer_errors(H, pa, pb) < threshold
        counts = inl.sum(1)
        k = int(counts.argmax())
        if counts[k] > best_n:
            best_n, best_H, best_mask = int(counts[k]), H[k], inl[k]
            w = best_n / m
            denom = np.log(max(1 - w ** 4, 1e-12))
            needed = int(np.ceil(np.log(1 - confidence) / denom)) if w < 1 else 0
    if best_H is not None and lo and best_n >= 4:
        H, mask = refine(pa, pb, best_mask, threshold, "homography", pairs=pairs,
                         errors=transfer_errors(best_H, pa, pb))
        if H is not None:
            best_H, best_mask = H, mask
    return best_H, best_mask


def _sample4(rng: np.random.Generator, b: int, m: int) -> np.ndarray:
    """b samples of 4 distinct indices in [0, m) (rejection of the rare repeated draws)."""
    idx = rng.integers(0, m, size=(b, 4))
    s = np.sort(idx, 1)
    bad = (s[:, 1:] == s[:, :-1]).any(1)
    while bad.any():
        idx[bad] = rng.integers(0, m, size=(int(bad.sum()), 4))
        s = np.sort(idx, 1)
        bad = (s[:, 1:] == s[:, :-1]).any(1)
    return idx


# ----------------------------------------------------------------------------------------------
# fast spatial matching

def fast_spatial_matching(frames_a: np.ndarray, frames_b: np.ndarray, pairs: np.ndarray,
                          threshold: float = 10.0, model: str = "affine", lo_iters: int = 5) -> dict:
    """FSM (Philbin et al. CVPR 2007, Sec. 4): every correspondence gives one hypothesis from
    its two local frames (:func:`correspondence_transforms`: 4-dof similarity for (x, y, s,
    theta) frames, 6-dof affine for affine frames), all m hypotheses are scored by their
    inliers (transfer error in B < `threshold` pixels), and the best is refined by iterative
    least squares on its inliers to `model` ('similarity' = no refinement, 'affine', or
    'homography' = affine first, then homography), the refined model replacing the hypothesis
    (the LO step, :func:`refine`). Quadratic in m (the talk: "both are quadratic in the number
    of correspondences").

    frames_a (n, 4|6), frames_b (n', 4|6) float, pairs (m, 2) int.
    Returns {"score": inliers counted one-to-one (:func:`one_to_one_count`), "inliers": (m,)
    bool, "T": (3, 3) float64 A -> B or None, "hypothesis": index of the best correspondence}.
    """
    m = len(pairs)
    empty = {"score": 0, "inliers": np.zeros(m, bool), "T": None, "hypothesis": -1}
    if m == 0:
        return empty
    T = correspondence_transforms(frames_a, frames_b, pairs)
    pa, pb = frames_a[pairs[:, 0], :2], frames_b[pairs[:, 1], :2]
    best_k = int(inlier_counts(T, pa, pb, threshold).argmax())        # the first of the best
    err = transfer_errors(T[best_k], pa, pb)
    mask = err < threshold
    best_T = np.vstack([T[best_k], [0, 0, 1.0]])
    if model in ("affine", "homography") and mask.sum() >= 3:
        A, mask2 = refine(pa, pb, mask, threshold, "affine", lo_iters, pairs, err)
        if A is not None:
            best_T, mask = np.vstack([A, [0, 0, 1.0]]), mask2
            err = transfer_errors(A, pa, pb)
    if model == "homography" and mask.sum() >= 4:
        H, mask2 = refine(pa, pb, mask, threshold, "homography", lo_iters, pairs, err)
        if H is not None:
            best_T, mask = H, mask2
    return {"score": one_to_one_count(pairs, mask), "inliers": mask, "T": best_T, "hypothesis": best_k}
