"""Regional search kernels: R-Match, GMM reduction of regions, pooling of region scores.

Iscen, Tolias, Avrithis, Furon & Chum, *Efficient diffusion on region manifolds: recovering small
objects with compact CNN representations*, CVPR 2017 (regional diffusion), and Iscen, Avrithis,
Tolias, Furon & Chum, *Fast spectral ranking for similarity search*, CVPR 2018 (the talk's table
"Regional features: R-Match", m = 21 for R-Match, m = 5 for CG / FSR):

- every image is a set of regional vectors: the whole map and the R-MAC regions at L = 3 scales
  (21 for a 4:3 image; :func:`visrep.methods.cnn.pooling.regional_vectors`), MAC per region,
  PCA-whitened, L2-normalized;
- :func:`rmatch`: regional matching, the baseline "Euclidean, m = 21" row: an image's score for a
  query is ``sum_{r in Q} max_{s in I} q_r^T x_s`` (Razavian et al., *Visual instance retrieval
  with deep convolutional networks*, 2016, who minimise the summed distance ||q_r - x_s||^2 =
  2 - 2 q_r^T x_s of unit vectors: the same ranking; Tolias, Sicre & Jégou, ICLR 2016, Sec. 4);
- :func:`gmm_reduce`: the optional off-line reduction of an image's regional vectors to m
  (m = 5 in the talk's CG / FSR rows): a Gaussian mixture with m components, isotropic covariance
  shared by the components, fitted by EM to the image's own regional vectors; the L2-normalized
  component means replace the regions (CVPR 2017, "reduction in the number of stored regions").
  The EM variant (shared isotropic variance, deterministic farthest-point start, 30 EM steps) is
  this suite's reading: the paper's text is not available here and the authors' public code
  (ahmetius/diffusion-retrieval) loads the reduced vectors instead of computing them;
- :func:`pool_region_scores`: image scores from the diffusion scores ``f`` of its regions:
  generalized max-pooling ``sum_r c_r f_r`` with ``c = (V V^T + lambda I)^{-1} 1`` over the
  image's regional vectors V (Murray & Perronnin, CVPR 2014; the authors' ``gmpweights.m``,
  lambda = 1, applied in ``run_test.m``), or plain ``sum`` / ``max`` of the region scores.

The query vector of a regional query (``ymake.m``) is :func:`visrep.methods.manifolds.diffusion.query_vectors`
with ``query_of``: the kq nearest database regions of every query region, similarities summed per
database region, the top kq kept, ``y_i = max(s_i, 0)^gamma``.

Shapes: database regions (N, d) float32 unit rows with ``image_of`` (N,) int64; query regions
(M, d) with ``query_of`` (M,); scores per image (n_images, n_queries) float64.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def _groups(owner: np.ndarray) -> list[np.ndarray]:
    """Indices of each owner's rows, in owner order (owners 0..max)."""
    owner = np.asarray(owner)
    order = np.argsort(owner, kind="stable")
    bounds = np.flatnonzero(np.diff(owner[order])) + 1
    return np.split(order, bounds)


def rmatch(db: np.ndarray, image_of: np.ndarray, n_images: int, q: np.ndarray, query_of: np.ndarray,
           n_queries: int, chunk: int = 2048) -> np.ndarray:
    """R-Match scores (n_images, n_queries): ``S[i, j] = sum_{r: query_of[r] = j} max_{s: image_of[s] = i} q_r^T x_s``.

    db (N, d), image_of (N,) in [0, n_images); q (M, d), query_of (M,) in [0, n_queries).
    An image with no region scores -inf. Memory O(N x chunk).
    """
    import scipy.sparse as sp
    db = np.asarray(db, np.float32)
    q = np.asarray(q, np.float32)
    image_of, query_of = np.asarray(image_of), np.asarray(query_of)
    order = np.argsort(image_of, kind="stable")
    owners = image_of[order]
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    present = owners[starts]
    dbs = db[order]
    best = np.full((n_images, len(q)), -np.inf)          # max over each image's regions, per query region
    for a in range(0, len(q), chunk):
        s = dbs @ q[a:a + chunk].T                        # (N, c)
        best[present, a:a + chunk] = np.maximum.reduceat(s, starts, axis=0)
    Q = sp.csr_matrix((np.ones(len(q)), (query_of, np.arange(len(q)))), shape=(n_queries, len(q)))
    out = np.asarray(Q @ np.where(np.isfinite(best), best, 0.0).T).T
    out[np.setdiff1d(np.arange(n_images), present)] = -np.inf
    return out


def pool_region_scores(F: np.ndarray, image_of: np.ndarray, n_images: int, pooling: str = "gmp",
                       coeff: np.ndarray | None = None) -> np.ndarray:
    """Image scores (n_images, m) from region scores F (N, m): 'gmp' ``sum_r c_r f_r`` (coeff (N,),
    :func:`visrep.methods.cnn.regional.gmp_weights`), 'sum' ``sum_r f_r``, 'max' ``max_r f_r``.
    Images without regions score 0 ('gmp', 'sum') or -inf ('max')."""
    import scipy.sparse as sp
    F = np.asarray(F, np.float64)
    if F.ndim == 1:
        F = F[:, None]
    image_of = np.asarray(image_of)
    if pooling in ("gmp", "sum"):
        if pooling == "gmp":
            if coeff is None:
                raise UserError("GMP pooling needs the GMP coefficients of the regions")
            w = np.asarray(coeff, np.float64)
        else:
            w = np.ones(len(image_of))
        P = sp.csr_matrix((w, (image_of, np.arange(len(image_of)))), shape=(n_images, len(image_of)))
        return np.asarray(P @ F)
    if pooling == "max":
        out = np.full((n_images, F.shape[1]), -np.inf)
        np.maximum.at(out, image_of, F)
        return out
    raise UserError(f"pooling must be 'gmp', 'sum' or 'max', got {pooling!r}")


def _farthest_start(x: np.ndarray, m: int) -> np.ndarray:
    """m rows of x (n, d): row 0, then repeatedly the row farthest from those chosen (deterministic)."""
    chosen = [0]
    d2 = ((x - x[0]) ** 2).sum(axis=1)
    for _ in range(1, m):
        j = int(np.argmax(d2))
        chosen.append(j)
        d2 = np.minimum(d2, ((x - x[j]) ** 2).sum(axis=1))
    return x[chosen].copy()


def gmm_fit(x: np.ndarray, m: int, iters: int = 30, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, float]:
    """EM for a GMM with m components and one shared isotropic covariance sigma^2 I on x (n, d).

    E-step ``r_ij ~ pi_j exp(-||x_i - mu_j||^2 / (2 sigma^2))``; M-step ``mu_j = sum_i r_ij x_i /
    sum_i r_ij``, ``pi_j = mean_i r_ij``, ``sigma^2 = sum_ij r_ij ||x_i - mu_j||^2 / (n d)``.
    Start: the farthest-point choice of m rows (:func:`_farthest_start`), equal weights.
    Returns (means (m, d) float64, weights (m,), sigma^2). Requires n >= m.
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    if not 1 <= m <= n:
        raise UserError(f"GMM reduction: m = {m} components need 1 <= m <= {n} vectors")
    mu = _farthest_start(x, m)
    pi = np.full(m, 1.0 / m)
    d2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
    var = max(d2.min(axis=1).mean() / d, 1e-12)
    prev = -np.inf
    for _ in range(iters):
        logp = np.log(np.maximum(pi, 1e-300))[None] - d2 / (2 * var)
        mx = logp.max(axis=1, keepdims=True)
        p = np.exp(logp - mx)
        z = p.sum(axis=1, keepdims=True)
        r = p / z
        ll = float((mx[:, 0] + np.log(z[:, 0])).sum() - 0.5 * n * d * np.log(2 * np.pi * var))
        nk = r.sum(axis=0)
        keep = nk > 1e-10                                  # an empty component keeps its mean
        mu[keep] = (r.T @ x)[keep] / nk[keep, None]
        pi = nk / n
        d2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
        var = max(float((r * d2).sum()) / (n * d), 1e-12)
        if abs(ll - prev) <= tol * abs(ll):
            break
        prev = ll
    return mu, pi, var


def gmm_reduce(vectors: np.ndarray, image_of: np.ndarray, m: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Each image's regional vectors -> the L2-normalized means of an m-component GMM (:func:`gmm_fit`).

    vectors (N, d), image_of (N,) -> (reduced (N', d) float32 unit rows, image_of (N',) int64),
    images in increasing order; an image with at most m regions keeps them unchanged.
    """
    v = np.asarray(vectors, np.float64)
    out, owner = [], []
    for grp in _groups(image_of):
        if grp.size == 0:
            continue
        i = int(np.asarray(image_of)[grp[0]])
        x = v[grp]
        if len(x) > m:
            x, _, _ = gmm_fit(x, m, iters)
        out.append(x)
        owner.append(np.full(len(x), i, np.int64))
    red = np.concatenate(out)
    norms = np.linalg.norm(red, axis=1, keepdims=True)
    return (red / np.maximum(norms, 1e-12)).astype(np.float32), np.concatenate(owner)
