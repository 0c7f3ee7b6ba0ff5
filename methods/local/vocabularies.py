"""Visual vocabularies: flat k-means, approximate k-means (AKM), robust AKM (RAKM), approximate
Gaussian mixtures (AGM), and the randomized k-d forest they share.

Estimator-style functions (all take ``x`` (n, d) float32 and return a :class:`Vocabulary`):

- :func:`kmeans_fit` — Lloyd's k-means with exact assignment (faiss flat index), the baseline of
  Sivic & Zisserman ICCV 2003. Random-point initialization; empty clusters keep their centroid.
- :func:`akm_fit` — Philbin, Chum, Isard, Sivic & Zisserman, Object retrieval with large
  vocabularies and fast spatial matching, CVPR 2007, Sec. 3.1: Lloyd iterations where each point is
  assigned to its *approximate* nearest centroid found by a forest of randomized k-d trees
  (:class:`KDForest`, rebuilt on the centroids at every iteration). faiss has no k-d tree, so the
  forest is our own (Silpa-Anan & Hartley CVPR 2008 / FLANN style: each node splits at the mean of a
  dimension drawn at random among the 5 of highest variance; a query descends every tree to one
  leaf without backtracking and the union of the leaves' centroids is searched exactly, so the
  number of distance "checks" is at most ``n_trees * leaf_size``).
- :func:`rakm_fit` — Li, Yang, Hua & Zhang, Large-scale robust visual codebook construction,
  ACM-MM 2010: as AKM, but each point keeps its previous centroid unless the approximate search
  finds a closer one, so the distortion never increases through a bad approximate assignment.
- :func:`agm_fit` — Avrithis & Kalantidis, Approximate Gaussian mixtures for large scale
  vocabularies, ECCV 2012: EM for a mixture of isotropic Gaussians N(mu_k, sigma_k^2 I) with
  weights pi_k, where the E-step of each point only considers its m approximate nearest
  components (the m best of those kept from the previous iteration and those the k-d forest finds
  now), and overlapping components are purged, so that k is inferred in one run from a large
  initial k. Our reading of the purging rule (components "expanded" by a factor lambda): a
  component j is purged when its mean lies inside the expanded scope of a heavier neighbouring
  component i that is itself kept (one of its m approximate nearest means): pi_i > pi_j and
  ||mu_j - mu_i||^2 < lambda^2 d sigma_i^2 (d sigma_i^2 is the expected squared distance of i's
  points from mu_i), i.e. j overlaps i; components are decided heaviest first
  (:func:`agm_purge`). Components with no support (sum of responsibilities < 1) are purged too.
  Larger lambda purges more (smaller k). The exact form of the paper's purge test and of its
  expansion is not reproduced from the paper text here (see :func:`agm_fit`).

Every fit records ``k``, ``distortion`` (mean squared Euclidean distance of the training points
to their *exact* nearest centroid, so methods compare on equal terms), ``seconds`` and a per-
iteration ``history``. :func:`assign` quantizes descriptors to their (multiple) nearest words.

The registered methods (task ``vocabulary``) learn a vocabulary from a descriptor file (``train``:
an .fvecs/.npy/.bin file or a folder of ``.bin`` files, e.g. the Oxford query Hessian-affine SIFT)
or from the dataset's database local features, and return ``{"centroids", "k", "distortion"}``.
Retrieval methods take one by name through their ``vocabulary`` parameter.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visrep.errors import UserError

VOCABULARIES = ("kmeans", "akm", "rakm", "agm")


@dataclass
class Vocabulary:
    """Learned centroids (k, d) float32 and what the learning measured."""

    centroids: np.ndarray
    method: str
    distortion: float = float("nan")
    seconds: float = 0.0
    history: list = field(default_factory=list)
    sigma2: np.ndarray | None = None     # AGM: per-component isotropic variance (k,)
    weights: np.ndarray | None = None    # AGM: mixing weights (k,)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])


def check_training(x, k: int | None, where: str = "vocabulary") -> np.ndarray:
    """Validate training descriptors (n, d) and k; returns float32 C-contiguous."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise UserError(f"{where}: training descriptors must be a 2-D (n, d) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{where}: training descriptors must be real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise UserError(f"{where}: training descriptors contain NaN or infinite values")
    if k is not None:
        if k < 1:
            raise UserError(f"{where}: k must be >= 1, got {k}")
        if k > arr.shape[0]:
            raise UserError(f"{where}: k={k} is larger than the number of training points ({arr.shape[0]})")
    return arr


# ----------------------------------------------------------------------------------------------
# exact nearest neighbours and distortion

def nearest_centroids(x: np.ndarray, centroids: np.ndarray, m: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact m nearest centroids: (squared distances (n, m) float32, ids (n, m) int64), faiss flat L2."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d, i = index.search(np.ascontiguousarray(x, dtype=np.float32), min(m, centroids.shape[0]))
    return np.maximum(d, 0), i


def distortion(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean squared Euclidean distance of the rows of x to their nearest centroid (exact)."""
    if len(x) == 0:
        return float("nan")
    d, _ = nearest_centroids(x, centroids, 1)
    return float(d.mean())


def assign(x: np.ndarray, vocab, multiple: int = 1, where: str = "descriptors") -> tuple[np.ndarray, np.ndarray]:
    """Words of x: (ids (n, multiple) int64, squared distances (n, multiple) float32), exact.

    `vocab` is a :class:`Vocabulary` or a (k, d) centroid array; its dimension must match x's.
    """
    c = vocab.centroids if isinstance(vocab, Vocabulary) else np.asarray(vocab, np.float32)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise UserError(f"{where}: expected (n, d) descriptors, got shape {x.shape}")
    if x.shape[0] and x.shape[1] != c.shape[1]:
        raise UserError(f"{where}: descriptors have dimension {x.shape[1]} but the vocabulary was "
                        f"trained on dimension {c.shape[1]}")
    if x.shape[0] == 0:
        return np.zeros((0, multiple), np.int64), np.zeros((0, multiple), np.float32)
    d, i = nearest_centroids(x, c, multiple)
    return i, d


# ----------------------------------------------------------------------------------------------
# randomized k-d forest

class KDForest:
    """A forest of randomized k-d trees over points (k, d) for approximate nearest neighbours.

    Construction: each tree recursively splits its points at the mean of a dimension drawn
    uniformly among the ``top_dims`` highest-variance ones (variance estimated on up to 100
    points of the node), until a node holds at most ``leaf_size`` points. Search: each query
    descends every tree to one leaf; the union of the leaves is searched exactly.
    """

    def __init__(self, points: np.ndarray, n_trees: int = 8, leaf_size: int = 16, top_dims: int = 5,
                 rng: np.random.Generator | None = None):
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self.sqnorm = (self.points.astype(np.float64) ** 2).sum(1).astype(np.float32)
        self.leaf_size = max(int(leaf_size), 1)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.trees = [self._build(rng, top_dims) for _ in range(max(int(n_trees), 1))]

    def _build(self, rng, top_dims):
        dims, vals, left, right, leaf = [], [], [], [], []
        leaves: list[np.ndarray] = []
        stack = [(np.arange(len(self.points)), None, None)]
        # iterative build: each entry is (members, parent node, is_left)
        while stack:
            idx, parent, is_left = stack.pop()
            node = len(dims)
            dims.append(0), vals.append(0.0), left.append(-1), right.append(-1), leaf.append(-1)
            if parent is not None:
                (left if is_left else right)[parent] = node
            if len(idx) <= self.leaf_size:
                leaf[node] = len(leaves)
                leaves.append(idx)
                continue
            sample = self.points[idx if len(idx) <= 100 else rng.choice(idx, 100, replace=False)]
            var = sample.var(0)
            cand = np.argsort(-var)[:top_dims]
            dim = int(rng.choice(cand))
            val = float(sample[:, dim].mean())
            go_left = self.points[idx, dim] < val
            if go_left.all() or not go_left.any():  # degenerate split: median of that dimension
                order = np.argsort(self.points[idx, dim], kind="stable")
                half = len(idx) // 2
                val = float(self.points[idx[order[half]], dim])
                go_left = np.zeros(len(idx), bool)
                go_left[order[:half]] = True
                if self.points[idx[order[half - 1]], dim] == val:  # ties: cannot split by value
                    leaf[node] = len(leaves)
                    leaves.append(idx)
                    continue
            dims[node], vals[node] = dim, val
            stack.append((idx[~go_left], node, False))
            stack.append((idx[go_left], node, True))
        width = max(len(l) for l in leaves)
        members = np.full((len(leaves), width), -1, np.int64)
        for i, l in enumerate(leaves):
            members[i, :len(l)] = l
        return (np.array(dims, np.int64), np.array(vals, np.float32), np.array(left, np.int64),
                np.array(right, np.int64), np.array(leaf, np.int64), members)

    def candidates(self, x: np.ndarray) -> np.ndarray:
        """(n, n_trees * leaf width) int64 candidate ids (-1 = padding)."""
        out = []
        for dims, vals, left, right, leaf, members in self.trees:
            node = np.zeros(len(x), np.int64)
            active = np.flatnonzero(leaf[node] < 0)
            while len(active):
                nd = node[active]
                go = x[active, dims[nd]] < vals[nd]
                node[active] = np.where(go, left[nd], right[nd])
                active = active[leaf[node[active]] < 0]
            out.append(members[leaf[node]])
        return np.concatenate(out, axis=1)

    def search(self, x: np.ndarray, m: int = 1, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Approximate m nearest points: (squared distances (n, m) float32, ids (n, m) int64; -1 if
        fewer than m distinct candidates were found, with distance +inf)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        dist = np.full((n, m), np.inf, np.float32)
        ids = np.full((n, m), -1, np.int64)
        for s in range(0, n, chunk):
            xc = x[s:s + chunk]
            cand = self.candidates(xc)
            cand = np.sort(cand, axis=1)
            dup = np.zeros_like(cand, dtype=bool)
            dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
            cand[dup] = -1
            safe = np.maximum(cand, 0)
            d2 = (self.sqnorm[safe] - 2 * np.einsum("nd,nmd->nm", xc, self.points[safe])
                  + (xc * xc).sum(1, keepdims=True))
            d2[cand < 0] = np.inf
            mm = min(m, d2.shape[1])
            part = np.argpartition(d2, mm - 1, axis=1)[:, :mm] if mm < d2.shape[1] else np.argsort(d2, axis=1)
            pd = np.take_along_axis(d2, part, 1)
            order = np.argsort(pd, axis=1, kind="stable")
            part = np.take_along_axis(part, order, 1)
            dist[s:s + chunk, :mm] = np.maximum(np.take_along_axis(d2, part, 1), 0)
            got = np.take_along_axis(cand, part, 1)
            ids[s:s + chunk, :mm] = np.where(np.isfinite(dist[s:s + chunk, :mm]), got, -1)
        return dist, ids


# ----------------------------------------------------------------------------------------------
# k-means family

def _init_centroids(x, k, rng):
    return x[np.sort(rng.choice(len(x), k, replace=False))].copy()


def _update_means(x, labels, centroids):
    k, d = centroids.shape
    sums = np.zeros((k, d), np.float64)
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=k)
    new = centroids.copy()
    nz = counts > 0
    new[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
    return new, counts


def lloyd(x, centroids, niter: int, assign_fn, robust: bool = False, method: str = "kmeans",
          progress=None) -> Vocabulary:
    """Lloyd iterations from `centroids` with a given assignment function (exact or approximate).

    ``assign_fn(x, centroids) -> (sqdist (n,), labels (n,))``. With ``robust`` (RAKM) a point
    keeps its previous label when that centroid is closer than the one found now.
    """
    t0 = time.perf_counter()
    history = []
    labels = None
    it = range(niter) if progress is None else progress(range(niter))
    for _ in it:
        d, lab = assign_fn(x, centroids)
        if robust and labels is not None:
            prev = ((x - centroids[labels]) ** 2).sum(1)
            keep = (prev <= d) | (lab < 0)
            lab = np.where(keep, labels, lab)
            d = np.where(keep, prev, d)
        lab = np.where(lab < 0, labels if labels is not None else 0, lab)
        labels = lab
        history.append({"objective": float(np.mean(d))})
        centroids, _ = _update_means(x, labels, centroids)
    seconds = time.perf_counter() - t0
    return Vocabulary(centroids=centroids, method=method, seconds=seconds, history=history,
                      distortion=distortion(x, centroids))


def _exact_assign(x, c):
    d, i = nearest_centroids(x, c, 1)
    return d[:, 0], i[:, 0]


def kmeans_fit(x, k: int, niter: int = 20, seed: int = 0, init: np.ndarray | None = None,
               progress=None) -> Vocabulary:
    """Flat k-means (Lloyd) with exact assignment; x (n, d) -> Vocabulary of k centroids."""
    x = check_training(x, k, "kmeans")
    c = _init_centroids(x, k, np.random.default_rng(seed)) if init is None else np.array(init, np.float32)
    return lloyd(x, c, niter, _exact_assign, method="kmeans", progress=progress)


def _forest_assign(n_trees, leaf_size, rng):
    def fn(x, c):
        d, i = KDForest(c, n_trees, leaf_size, rng=rng).search(x, 1)
        return d[:, 0], i[:, 0]
    return fn


def akm_fit(x, k: int, niter: int = 20, seed: int = 0, n_trees: int = 8, leaf_size: int = 16,
            init: np.ndarray | None = None, progress=None) -> Vocabulary:
    """Approximate k-means (Philbin et al. CVPR 2007): Lloyd with k-d forest assignment."""
    x = check_training(x, k, "akm")
    rng = np.random.default_rng(seed)
    c = _init_centroids(x, k, rng) if init is None else np.array(init, np.float32)
    return lloyd(x, c, niter, _forest_assign(n_trees, leaf_size, rng), method="akm", progress=progress)


def rakm_fit(x, k: int, niter: int = 20, seed: int = 0, n_trees: int = 8, leaf_size: int = 16,
             init: np.ndarray | None = None, progress=None) -> Vocabulary:
    """Robust approximate k-means (Li et al. ACM-MM 2010): AKM keeping the previous assignment
    unless the approximate search finds a closer centroid (monotone objective)."""
    x = check_training(x, k, "rakm")
    rng = np.random.default_rng(seed)
    c = _init_centroids(x, k, rng) if init is None else np.array(init, np.float32)
    return lloyd(x, c, niter, _forest_assign(n_trees, leaf_size, rng), robust=True, method="rakm",
                 progress=progress)


# ----------------------------------------------------------------------------------------------
# approximate Gaussian mixtures

def agm_purge(mu: np.ndarray, sigma2: np.ndarray, pi: np.ndarray, alive: np.ndarray, expand: float,
              m: int = 4, n_trees: int = 8, leaf_size: int = 16,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """AGM purge mask (k,) bool over components (mu (k, d), sigma2 (k,), pi (k,), alive (k,) bool).

    A component with no support (``~alive``) is purged. A live component j is purged when its
    mean lies inside the expanded scope of a heavier *surviving* live component i among its m
    approximate nearest means: pi_i > pi_j (ties: lower index) and
    ||mu_j - mu_i||^2 < lambda^2 d sigma_i^2. Components are decided in order of decreasing
    weight (as in non-maximum suppression), so a component is only removed in favour of one that
    stays and every purged mean is covered by a kept component.
    """
    _k, d = mu.shape
    purge = ~np.asarray(alive, bool)
    live = np.flatnonzero(~purge)
    if len(live) < 2:
        return purge
    dd, nb = KDForest(mu[live], n_trees, leaf_size, rng=rng).search(mu[live], min(m + 1, len(live)))
    ok = nb >= 0
    nbr = live[np.maximum(nb, 0)]                                  # (L, m+1) global ids
    me = live[:, None]
    heavier = (pi[nbr] > pi[me]) | ((pi[nbr] == pi[me]) & (nbr < me))
    inside = dd < expand ** 2 * d * sigma2[nbr]
    beat = ok & (nbr != me) & heavier & inside                    # neighbour i could absorb j
    cand = np.flatnonzero(beat.any(1))
    # decide candidates heaviest first; their heavier neighbours are decided before them
    order = cand[np.lexsort((live[cand], -pi[live[cand]]))]
    for r in order:
        if (~purge[nbr[r, beat[r]]]).any():
            purge[live[r]] = True
    return purge


def agm_fit(x, k_init: int, niter: int = 20, seed: int = 0, m: int = 4, expand: float = 0.6,
            n_trees: int = 8, leaf_size: int = 16, tol: float = 1e-4,
            init: np.ndarray | None = None) -> Vocabulary:
    """Approximate Gaussian mixtures (Avrithis & Kalantidis ECCV 2012) with k inferred by purging.

    x (n, d) float32; ``k_init`` initial components at random points (or ``init`` (k_init, d));
    ``m`` nearest components per point in the E-step; ``expand`` the expansion factor lambda of
    the purging test (see the module docstring). Returns a Vocabulary with ``sigma2`` and
    ``weights`` and ``history`` of k. Each iteration, with N(x; mu, s2) = (2 pi s2)^(-d/2)
    exp(-||x - mu||^2 / (2 s2)) (isotropic EM, e.g. Bishop PRML eqs. 9.23-9.27 with
    Sigma_k = sigma_k^2 I; AGM's EM is this one restricted to nearest components):

    1. E-step on approximate neighbours: C_n = the m components of highest pi_k N(x_n; mu_k,
       sigma_k^2) among C_n(previous iteration) U forest-search(x_n, m) over the current means;
       gamma_nk = pi_k N(x_n; mu_k, sigma_k^2) / sum_{j in C_n} pi_j N(x_n; mu_j, sigma_j^2) for
       k in C_n, 0 otherwise.
    2. M-step: N_k = sum_n gamma_nk, pi_k = N_k / n, mu_k = sum_n gamma_nk x_n / N_k,
       sigma_k^2 = sum_n gamma_nk ||x_n - mu_k||^2 / (d N_k) (floored at 1e-3 of the initial
       sigma^2).
    3. Purge (:func:`agm_purge`): N_k < 1 (no support), or mu_k inside the lambda-expanded scope of
       a heavier kept neighbour; pi renormalized over the survivors.
    4. Stop after ``niter`` iterations, or when nothing was purged and the (approximate)
       log-likelihood changed by at most ``tol`` relatively.

    What we are not sure the paper does the same way: where lambda enters (here only the purge
    test; the paper's "expanding" may also inflate sigma_k^2 in the M-step) and the exact purge
    inequality; the plugin's default lambda = 0.6 is ours, not the paper's.
    """
    x = check_training(x, k_init, "agm")
    if m < 1:
        raise UserError(f"agm: m must be >= 1, got {m}")
    rng = np.random.default_rng(seed)
    n, d = x.shape
    t0 = time.perf_counter()
    mu = _init_centroids(x, k_init, rng) if init is None else np.array(init, np.float32)
    k_init = len(mu)
    dist0, _ = nearest_centroids(x[rng.choice(n, min(n, 2000), replace=False)], mu, 1)
    sigma2 = np.full(k_init, max(float(dist0.mean()) / d, 1e-12), np.float64)
    floor = 1e-3 * sigma2[0]
    pi = np.full(k_init, 1.0 / k_init)
    kept = np.full((n, 0), -1, np.int64)
    history = []
    prev_ll = -np.inf
    for it in range(niter):
        k = len(mu)
        # E-step on the m approximate nearest components (previous ones kept + new forest search)
        _, found = KDForest(mu, n_trees, leaf_size, rng=rng).search(x, m)
        cand = np.concatenate([kept, found], axis=1)
        safe = np.maximum(cand, 0)
        d2 = ((x[:, None, :] - mu[safe]) ** 2).sum(-1) if n * cand.shape[1] * d <= 5e7 else \
            np.stack([((x - mu[safe[:, j]]) ** 2).sum(-1) for j in range(cand.shape[1])], 1)
        logp = np.log(pi[safe]) - 0.5 * d * np.log(2 * np.pi * sigma2[safe]) - d2 / (2 * sigma2[safe])
        logp[cand < 0] = -np.inf
        # remove duplicate candidates, keep the best m
        order = np.argsort(cand, axis=1, kind="stable")
        cs = np.take_along_axis(cand, order, 1)
        dup = np.zeros_like(cs, dtype=bool)
        dup[:, 1:] = cs[:, 1:] == cs[:, :-1]
        lp = np.take_along_axis(logp, order, 1)
        lp[dup] = -np.inf
        top = np.argsort(-lp, axis=1, kind="stable")[:, :m]
        cand = np.take_along_axis(cs, top, 1)
        logp = np.take_along_axis(lp, top, 1)
        cand[~np.isfinite(logp)] = -1
        mx = logp[:, :1]
        w = np.exp(logp - mx)
        ll = float((mx[:, 0] + np.log(w.sum(1))).mean())
        r = w / w.sum(1, keepdims=True)
        # M-step
        safe = np.maximum(cand, 0)
        rr = np.where(cand >= 0, r, 0.0)
        nk = np.bincount(safe.ravel(), rr.ravel(), minlength=k)
        sums = np.zeros((k, d), np.float64)
        for j in range(cand.shape[1]):
            np.add.at(sums, safe[:, j], rr[:, j, None] * x)
        alive = nk >= 1.0
        mu_new = mu.copy()
        mu_new[alive] = (sums[alive] / nk[alive, None]).astype(np.float32)
        sq = np.zeros(k)
        for j in range(cand.shape[1]):
            sq += np.bincount(safe[:, j], rr[:, j] * ((x - mu_new[safe[:, j]]) ** 2).sum(1), minlength=k)
        sigma2 = np.where(alive, np.maximum(sq / np.maximum(nk, 1e-12) / d, floor), sigma2)
        pi = nk / n
        mu = mu_new
        # purge: no support, or mean inside the expanded scope of a heavier surviving neighbour
        purge = agm_purge(mu, sigma2, pi, alive, expand, m, n_trees, leaf_size, rng)
        keep_map = np.full(k, -1, np.int64)
        keep_map[~purge] = np.arange((~purge).sum())
        mu, sigma2, pi = mu[~purge], sigma2[~purge], pi[~purge]
        pi = pi / pi.sum()
        kept = np.where(cand >= 0, keep_map[np.maximum(cand, 0)], -1)
        history.append({"k": len(mu), "loglik": ll, "purged": int(purge.sum())})
        if not purge.any() and abs(ll - prev_ll) <= tol * abs(ll):
            break
        prev_ll = ll
    seconds = time.perf_counter() - t0
    return Vocabulary(centroids=np.ascontiguousarray(mu, np.float32), method="agm", seconds=seconds,
                      history=history, distortion=distortion(x, mu), sigma2=sigma2.astype(np.float32),
                      weights=pi.astype(np.float32))


def fit_vocabulary(method: str, x, k: int, seed: int = 0, niter: int = 20, progress=None, **opts) -> Vocabulary:
    """Dispatch to the fit of `method` ('kmeans', 'akm', 'rakm', 'agm'; for AGM k is k_init).

    ``progress`` wraps the iterations of the Lloyd methods (e.g. a tqdm bar; None = no bar).
    """
    if method == "kmeans":
        return kmeans_fit(x, k, niter=niter, seed=seed, progress=progress)
    if method == "akm":
        return akm_fit(x, k, niter=niter, seed=seed, progress=progress, **opts)
    if method == "rakm":
        return rakm_fit(x, k, niter=niter, seed=seed, progress=progress, **opts)
    if method == "agm":
        return agm_fit(x, k, niter=niter, seed=seed, **opts)
    raise UserError(f"unknown vocabulary method {method!r}; choose one of {', '.join(VOCABULARIES)}")


def read_training_descriptors(path: str, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """Descriptors from a file (.fvecs/.npy/.bin) or a folder of ``*.bin`` files, (n, d) float32."""
    from visrep.descriptor_files import read_descriptors

    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.bin"))
        if not files:
            raise UserError(f"vocabulary training folder {p} holds no .bin descriptor files")
        x = np.concatenate([read_descriptors(f) for f in files]).astype(np.float32)
    else:
        x = read_descriptors(p).astype(np.float32)
    if limit and len(x) > limit:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]
    return x


