"""Locally optimized product quantization (LOPQ) with a multi-index coarse quantizer.

Kalantidis & Avrithis, Locally optimized product quantization for approximate nearest
neighbor search, CVPR 2014 (Sec. 4-5, "LOPQ with multi-index"):

- Coarse quantizer: the inverted multi-index (Babenko & Lempitsky CVPR 2012): the vector is
  split in two halves, each quantized by its own k-means of ``coarse_k`` centroids, so there are
  coarse_k^2 cells (i, j).
- Local optimization: for every centroid i of every half h, the residuals x_h - C_h[i] of the
  training points in that cluster get their own rotation R_{h,i} (PCA eigenvectors with the
  eigenvalue allocation of OPQ, Ge et al. CVPR 2013: eigenvalues dealt greedily, largest first,
  to the sub-space whose product of eigenvalues is smallest and which still has room, so that
  the sub-spaces have balanced variance) and their own product quantizer (m/2 sub-quantizers of
  2^nbits centroids) trained on the rotated residuals.
- Search: the multi-sequence algorithm over the two halves' centroid distances visits cells in
  increasing lower-bound order until ``candidates`` vectors are collected (we sort the
  nprobe x nprobe pairs of each half's nprobe nearest centroids by summed distance, which is
  exactly the multi-sequence order over those pairs); candidates are ranked by the asymmetric
  distance sum_h ||R_{h,i}(q_h - C_h[i]) - r_hat_h||^2 (rotations are orthogonal).

The method ``lopq`` ranks visited candidates by that distance and all other vectors after them
by their cell's lower bound; ``bytes_per_vector`` = m * nbits / 8 (cell ids implicit).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .product_quantization import ProductQuantizer


def eigenvalue_allocation(eigvals: np.ndarray, m: int) -> np.ndarray:
    """Permutation of dimensions (d,) such that consecutive blocks of d/m dimensions form m
    sub-spaces of balanced variance product (OPQ's eigenvalue allocation)."""
    d = len(eigvals)
    per = d // m
    order = np.argsort(-eigvals, kind="stable")
    buckets = [[] for _ in range(m)]
    logprod = np.zeros(m)
    for i in order:
        open_ = [b for b in range(m) if len(buckets[b]) < per]
        b = min(open_, key=lambda t: logprod[t])
        buckets[b].append(i)
        logprod[b] += np.log(max(eigvals[i], 1e-12))
    return np.concatenate([np.array(b, np.int64) for b in buckets])


def local_rotation(residuals: np.ndarray, m: int) -> np.ndarray:
    """(d, d) orthogonal R: rows are PCA eigenvectors ordered by eigenvalue allocation (identity
    when there are fewer than 2 residuals)."""
    d = residuals.shape[1]
    if len(residuals) < 2:
        return np.eye(d, dtype=np.float32)
    cov = np.cov(residuals.astype(np.float64), rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    perm = eigenvalue_allocation(vals, m)
    return np.ascontiguousarray(vecs[:, perm].T.astype(np.float32))


class LOPQIndex:
    """LOPQ on a two-half multi-index; ``m`` sub-quantizers in total (m/2 per half)."""

    def __init__(self, d: int, coarse_k: int, m: int, nbits: int = 8):
        if d % 2 or m % 2 or (d // 2) % (m // 2):
            raise UserError(f"LOPQ: need an even dimension d={d} and an even m={m} with (d/2) divisible by m/2")
        self.d, self.h, self.coarse_k, self.m, self.nbits = d, d // 2, coarse_k, m, nbits

    @property
    def bytes_per_vector(self) -> float:
        return self.m * self.nbits / 8

    def _halves(self, x):
        return x[:, :self.h], x[:, self.h:]

    def train(self, x, niter: int = 20, seed: int = 0) -> "LOPQIndex":
        from visrep.methods.local.vocabularies import kmeans_fit, nearest_centroids
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise UserError(f"LOPQ training: expected (n, {self.d}) vectors, got shape {x.shape}")
        if self.coarse_k > len(x):
            raise UserError(f"LOPQ: coarse_k={self.coarse_k} is larger than the {len(x)} training vectors")
        self.C, self.R, self.pqs = [], [], []
        for hi, xh in enumerate(self._halves(x)):
            C = kmeans_fit(xh, self.coarse_k, niter=niter, seed=seed + hi).centroids
            _, a = nearest_centroids(xh, C, 1)
            a = a[:, 0]
            Rs, pqs = [], []
            for i in range(self.coarse_k):
                r = xh[a == i] - C[i]
                R = local_rotation(r, self.m // 2)
                pq = ProductQuantizer(self.h, self.m // 2, self.nbits)
                if len(r):
                    pq.train(r @ R.T, niter, seed + 1000 * hi + i)
                Rs.append(R)
                pqs.append(pq)
            self.C.append(C)
            self.R.append(np.stack(Rs))
            self.pqs.append(pqs)
        return self

    def add(self, x) -> None:
        from visrep.methods.local.vocabularies import nearest_centroids
        x = np.ascontiguousarray(x, np.float32)
        self.n = len(x)
        self.cells = np.zeros((self.n, 2), np.int64)
        self.codes = np.zeros((self.n, self.m), np.uint8 if self.nbits <= 8 else np.uint16)
        mh = self.m // 2
        for hi, xh in enumerate(self._halves(x)):
            _, a = nearest_centroids(xh, self.C[hi], 1)
            a = a[:, 0]
            self.cells[:, hi] = a
            for i in np.unique(a):
                sel = a == i
                r = (xh[sel] - self.C[hi][i]) @ self.R[hi][i].T
                self.codes[sel, hi * mh:(hi + 1) * mh] = self.pqs[hi][i].encode(r)
        cell_id = self.cells[:, 0] * self.coarse_k + self.cells[:, 1]
        self.order = np.argsort(cell_id, kind="stable")
        self.ptr = np.zeros(self.coarse_k ** 2 + 1, np.int64)
        np.cumsum(np.bincount(cell_id, minlength=self.coarse_k ** 2), out=self.ptr[1:])

    def _distance(self, q, ids):
        mh = self.m // 2
        out = np.zeros(len(ids), np.float64)
        for hi, qh in enumerate((q[:self.h], q[self.h:])):
            cells = self.cells[ids, hi]
            for i in np.unique(cells):
                sel = cells == i
                rq = (qh - self.C[hi][i]) @ self.R[hi][i].T
                t = self.pqs[hi][i].tables(rq[None])[0]
                codes = self.codes[ids[sel], hi * mh:(hi + 1) * mh].astype(np.int64)
                out[sel] += t[np.arange(mh)[None], codes].sum(1)
        return out

    def search(self, q, nprobe: int = 16, candidates: int = 1000) -> np.ndarray:
        """Full ranking (n, n_q) int64 (see the module docstring)."""
        q = np.ascontiguousarray(q, np.float32)
        K = self.coarse_k
        ranks = np.empty((self.n, len(q)), np.int64)
        for j in range(len(q)):
            d0 = ((self.C[0] - q[j, :self.h]) ** 2).sum(1)
            d1 = ((self.C[1] - q[j, self.h:]) ** 2).sum(1)
            bound = (d0[:, None] + d1[None]).ravel()       # lower bound of every cell
            o0 = np.argsort(d0, kind="stable")[:nprobe]
            o1 = np.argsort(d1, kind="stable")[:nprobe]
            pair = (o0[:, None] * K + o1[None]).ravel()
            pair = pair[np.argsort(bound[pair], kind="stable")]
            sizes = self.ptr[pair + 1] - self.ptr[pair]
            upto = int(np.searchsorted(np.cumsum(sizes), candidates) + 1)
            visit = pair[:upto]
            cand = np.concatenate([self.order[self.ptr[c]:self.ptr[c + 1]] for c in visit]) if len(visit) \
                else np.zeros(0, np.int64)
            dist = self._distance(q[j], cand)
            first = cand[np.argsort(dist, kind="stable")]
            seen = np.zeros(self.n, bool)
            seen[first] = True
            cell_of = self.cells[:, 0] * K + self.cells[:, 1]
            rest = np.flatnonzero(~seen)
            rest = rest[np.argsort(bound[cell_of[rest]], kind="stable")]
            ranks[:, j] = np.concatenate([first, rest])
        return ranks


