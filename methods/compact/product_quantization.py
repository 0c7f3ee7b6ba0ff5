"""Product quantization (PQ) and IVFADC for approximate nearest-neighbour search.

Jégou, Douze & Schmid, Product quantization for nearest neighbor search, PAMI 2011:

- PQ (Sec. II.B-III.A): a vector x in R^d is split into m sub-vectors of d/m dimensions, each
  quantized by its own k-means codebook of k* = 2^nbits centroids; the code is m integers
  (m * nbits / 8 bytes). Asymmetric distance (ADC, Eq. 13): d~(x, y)^2 = sum_j ||u_j(x) -
  q_j(u_j(y))||^2, computed from m look-up tables of k* squared distances per query.
- IVFADC (Sec. IV): a coarse k-means quantizer q_c (``coarse_k`` cells) and an inverted file;
  each database vector is stored in the list of its cell with the PQ code of its residual
  y - q_c(y); a query visits its ``nprobe`` nearest cells (w in the paper) and ranks their
  entries by ADC on the residual q - c.

Our numpy implementation gives the same codes and ADC distances as faiss's ProductQuantizer /
IndexPQ for the same codebooks (tests/test_part1_quantization.py). The methods ``pq`` and
``ivfadc`` rank the whole database: IVFADC ranks the vectors of visited cells by ADC, then the
other vectors by the distance of their cell's centroid (a full ranking for the mAP protocol).
They report ``bytes_per_vector`` = m * nbits / 8 (the coarse cell id is implicit in the list).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def train_codebook(x: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    """k-means centroids (k, d) float32 of x; with fewer than k distinct points the points are
    repeated (those extra centroids are duplicates, never better than the originals)."""
    from visrep.methods.local.vocabularies import kmeans_fit

    x = np.ascontiguousarray(x, np.float32)
    if len(x) == 0:
        return np.zeros((k, x.shape[1]), np.float32)
    if len(x) <= k:
        reps = np.resize(np.arange(len(x)), k)
        return x[reps].copy()
    return kmeans_fit(x, k, niter=niter, seed=seed).centroids


class ProductQuantizer:
    """m sub-quantizers of 2^nbits centroids on d/m-dimensional sub-vectors.

    ``centroids`` (m, ksub, dsub) float32. Codes (n, m) uint8 (nbits <= 8) or uint16.
    """

    def __init__(self, d: int, m: int, nbits: int = 8):
        if m < 1 or d % m:
            raise UserError(f"PQ: the dimension {d} must be divisible by the number of sub-quantizers m={m}")
        if not 1 <= nbits <= 16:
            raise UserError(f"PQ: nbits must be in [1, 16], got {nbits}")
        self.d, self.m, self.nbits = d, m, nbits
        self.dsub, self.ksub = d // m, 2 ** nbits
        self.centroids = np.zeros((m, self.ksub, self.dsub), np.float32)

    @property
    def code_dtype(self):
        return np.uint8 if self.nbits <= 8 else np.uint16

    @property
    def bytes_per_vector(self) -> float:
        return self.m * self.nbits / 8

    def _check(self, x, where):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise UserError(f"PQ {where}: expected (n, {self.d}) vectors, got shape {x.shape}")
        return np.ascontiguousarray(x, np.float32)

    def train(self, x, niter: int = 20, seed: int = 0) -> "ProductQuantizer":
        x = self._check(x, "training")
        for j in range(self.m):
            self.centroids[j] = train_codebook(x[:, j * self.dsub:(j + 1) * self.dsub], self.ksub, niter, seed + j)
        return self

    def encode(self, x) -> np.ndarray:
        """Codes (n, m): index of the nearest sub-centroid of each sub-vector (ties: lowest index)."""
        x = self._check(x, "encode")
        codes = np.empty((len(x), self.m), self.code_dtype)
        for j in range(self.m):
            sub = x[:, j * self.dsub:(j + 1) * self.dsub]
            c = self.centroids[j]
            d2 = (sub * sub).sum(1)[:, None] - 2 * sub @ c.T + (c * c).sum(1)[None]
            codes[:, j] = d2.argmin(1)
        return codes

    def decode(self, codes) -> np.ndarray:
        codes = np.asarray(codes)
        return np.concatenate([self.centroids[j][codes[:, j]] for j in range(self.m)], axis=1)

    def tables(self, q) -> np.ndarray:
        """ADC look-up tables (n_q, m, ksub) float32: ||u_j(q) - c_{j,i}||^2."""
        q = self._check(q, "query")
        qs = q.reshape(len(q), self.m, self.dsub)
        return ((qs[:, :, None, :] - self.centroids[None]) ** 2).sum(-1)

    def adc(self, q, codes) -> np.ndarray:
        """Asymmetric squared distances (n_q, n) float32 between queries and encoded vectors."""
        t = self.tables(q)
        codes = np.asarray(codes, np.int64)
        out = np.zeros((t.shape[0], len(codes)), np.float32)
        for j in range(self.m):
            out += t[:, j, codes[:, j]]
        return out

    def nbytes(self) -> int:
        return int(self.centroids.nbytes)


class IVFADCIndex:
    """Coarse quantizer + inverted lists of residual PQ codes (PAMI 2011 Sec. IV)."""

    def __init__(self, d: int, coarse_k: int, m: int, nbits: int = 8):
        self.d, self.coarse_k = d, coarse_k
        self.pq = ProductQuantizer(d, m, nbits)
        self.coarse = np.zeros((coarse_k, d), np.float32)

    def train(self, x, niter: int = 20, seed: int = 0) -> "IVFADCIndex":
        from visrep.methods.local.vocabularies import kmeans_fit, nearest_centroids
        x = self.pq._check(x, "training")
        if self.coarse_k > len(x):
            raise UserError(f"IVFADC: coarse_k={self.coarse_k} is larger than the {len(x)} training vectors")
        self.coarse = kmeans_fit(x, self.coarse_k, niter=niter, seed=seed).centroids
        _, cell = nearest_centroids(x, self.coarse, 1)
        self.pq.train(x - self.coarse[cell[:, 0]], niter, seed + 1)
        return self

    def add(self, x) -> None:
        from visrep.methods.local.vocabularies import nearest_centroids
        x = self.pq._check(x, "database")
        _, cell = nearest_centroids(x, self.coarse, 1)
        cell = cell[:, 0]
        self.order = np.argsort(cell, kind="stable")
        self.ptr = np.zeros(self.coarse_k + 1, np.int64)
        np.cumsum(np.bincount(cell, minlength=self.coarse_k), out=self.ptr[1:])
        self.cell = cell
        self.codes = self.pq.encode(x - self.coarse[cell])[self.order]
        self.n = len(x)

    def search(self, q, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Full ranking (n, n_q) int64 and the ADC distances (n, n_q) (inf for unvisited)."""
        from visrep.methods.local.vocabularies import nearest_centroids
        q = self.pq._check(q, "query")
        nprobe = min(nprobe, self.coarse_k)
        cd, cells = nearest_centroids(q, self.coarse, self.coarse_k)
        ranks = np.empty((self.n, len(q)), np.int64)
        dist = np.full((self.n, len(q)), np.inf, np.float32)
        for j in range(len(q)):
            visited_d, visited_i = [], []
            for c in cells[j, :nprobe]:
                a, b = self.ptr[c], self.ptr[c + 1]
                if a == b:
                    continue
                t = self.pq.tables((q[j] - self.coarse[c])[None])[0]
                codes = self.codes[a:b].astype(np.int64)
                visited_d.append(t[np.arange(self.pq.m)[None], codes].sum(1))
                visited_i.append(self.order[a:b])
            vd = np.concatenate(visited_d) if visited_d else np.zeros(0, np.float32)
            vi = np.concatenate(visited_i) if visited_i else np.zeros(0, np.int64)
            o = np.argsort(vd, kind="stable")
            rest_cells = cells[j, nprobe:]
            rest = np.concatenate([self.order[self.ptr[c]:self.ptr[c + 1]] for c in rest_cells]) \
                if len(rest_cells) else np.zeros(0, np.int64)
            ranks[:, j] = np.concatenate([vi[o], rest])
            dist[vi, j] = vd
        return ranks, dist

    def nbytes_per_vector(self) -> float:
        return self.pq.bytes_per_vector


def recall_at(ranks: np.ndarray, truth: np.ndarray, rs=(1, 10, 100)) -> dict:
    """Recall@R of PAMI 2011 Sec. V: fraction of queries whose true nearest neighbour truth[j]
    is among ranks[:R, j]."""
    out = {}
    for r in rs:
        out[f"recall@{r}"] = float(np.mean([(ranks[:r, j] == truth[j]).any() for j in range(ranks.shape[1])]))
    return out


