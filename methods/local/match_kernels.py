"""Selective match kernels: SMK, ASMK and ASMK* as searchable inverted indexes.

Tolias, Avrithis & Jégou, To aggregate or not to aggregate: selective match kernels for image
search, ICCV 2013 (and IJCV 2016). With residuals r(x) = x - q(x) and x_hat = x / ||x||:

- selectivity (Eq. 5): sigma_alpha(u) = sign(u) |u|^alpha if u > tau, else 0 (alpha = 3, tau = 0).
- SMK (Eq. 6): K(X, Y) = gamma(X) gamma(Y) sum_c w_c sum_{x in X_c} sum_{y in Y_c}
  sigma_alpha(r_hat(x)^T r_hat(y)), with gamma(X) = (sum_c w_c sum_{x, x' in X_c}
  sigma_alpha(r_hat(x)^T r_hat(x')))^(-1/2) so that K(X, X) = 1.
- ASMK (Eq. 10-11): residuals are aggregated per word, V(X_c) = sum_{x in X_c} r(x), and
  K(X, Y) = gamma(X) gamma(Y) sum_c w_c sigma_alpha(V_hat(X_c)^T V_hat(Y_c)), gamma(X) =
  (sum_c w_c)^(-1/2) over the words of X (sigma_alpha(1) = 1).
- ASMK* (Sec. 4.2): V(X_c) binarized by sign (bit = [V > 0]), similarity 1 - 2 h / d with h the
  Hamming distance, packed into uint64 words.

Word weights w_c = idf_c^2 = log(N / n_c)^2 (n_c database images containing word c), the
convention of the authors' ``asmk`` package (its inverted_file.py; words absent from the
database weigh 1 there, which only rescales a query's scores, and we do the same so our
similarities equal the package's). Multiple assignment applies to the query side (``ma``): a
query descriptor contributes its residual to each of its ``ma`` nearest words before aggregation.

The database is an inverted file over words whose payload is one aggregated (normalized or
packed binary) vector per (image, word); a query multiplies its aggregated vectors with the
posting lists of its own words only, in one vectorized pass (no pairwise image loop).
Memory per indexed image: (4 d + 16) bytes per (image, word) for ASMK, (d / 8 + 16) for ASMK*.
"""
from __future__ import annotations

import numpy as np

from .hamming_embedding import hamming, pack_bits
from .inverted_file import InvertedFile, expand_ranges


def selectivity(u: np.ndarray, alpha: float = 3.0, tau: float = 0.0) -> np.ndarray:
    """sigma_alpha(u) = sign(u) |u|^alpha where u > tau, 0 elsewhere (ICCV 2013 Eq. 5)."""
    u = np.asarray(u, np.float64)
    return np.where(u > tau, np.sign(u) * np.abs(u) ** alpha, 0.0)


# np.add.reduceat adds a group as first row + (sum of the others), the others summed in order
# when they are fewer than 8 (groups of at most this many rows), pairwise (numpy's unrolled blocks) above
_REDUCEAT_SEQUENTIAL = 8


def _group_sums(res: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Sums of consecutive row groups of res (n, d) float64 starting at start (G,) -> (G, d).

    Bit for bit ``np.add.reduceat(res, start, axis=0)``, much faster for many small groups: a
    group of one row is that row; a group of 2 to 8 rows is its first row plus the product of
    a (G', n) 0/1 CSR indicator matrix with res (scipy adds the rows of a group in order, as
    reduceat does); the rare larger groups, which reduceat sums pairwise, go through reduceat.
    """
    import scipy.sparse as sp
    n = len(res)
    size = np.diff(np.r_[start, n])
    out = res[start]
    small = np.flatnonzero((size > 1) & (size <= _REDUCEAT_SEQUENTIAL))
    if len(small):
        cnt = size[small] - 1
        _, cols = expand_ranges(start[small] + 1, cnt)
        ind = sp.csr_matrix((np.ones(len(cols), res.dtype), cols, np.r_[0, np.cumsum(cnt)]),
                            shape=(len(small), n))
        out[small] += ind @ res
    big = np.flatnonzero(size > _REDUCEAT_SEQUENTIAL)
    if len(big):
        _, rows = expand_ranges(start[big], size[big])
        out[big] = np.add.reduceat(res[rows], np.r_[0, np.cumsum(size[big])[:-1]], axis=0)
    return out


def _l2_normalize_f32(V: np.ndarray, block: int = 8192) -> np.ndarray:
    """(V / max(||V||_2, 1e-12)).astype(float32) row-wise, in cache-sized row blocks.

    Bit for bit ``np.linalg.norm(V, axis=1)`` (which is sqrt(add.reduce(V * V, axis=1))) without
    its full-size temporaries."""
    out = np.empty(V.shape, np.float32)
    for a in range(0, len(V), block):
        v = V[a:a + block]
        n = np.sqrt(np.add.reduce(v * v, axis=1))[:, None]
        out[a:a + block] = v / np.maximum(n, 1e-12)
    return out


def aggregate(x: np.ndarray, words: np.ndarray, image: np.ndarray, centroids: np.ndarray,
              binary: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregated residuals per (image, word) (ICCV 2013 Eq. 10).

    x (n, d) float32; words (n,) or (n, ma) int (every assigned word gets the residual);
    image (n,) int. Returns (vectors, words (M,), image (M,)) sorted by (image, word):
    vectors (M, d) float32 L2-normalized, or (M, ceil(d/64)) uint64 sign bits when binary.
    """
    x = np.asarray(x, np.float32)
    words = np.asarray(words, np.int64)
    if words.ndim == 1:
        words = words[:, None]
    ma = words.shape[1]
    rows = np.repeat(np.arange(len(x)), ma)
    w = words.ravel()
    im = np.asarray(image, np.int64)[rows]
    k = centroids.shape[0]
    key = im * k + w
    order = np.argsort(key, kind="stable")
    key_s = key[order]
    if len(key_s) == 0:
        d = x.shape[1]
        return (np.zeros((0, (d + 63) // 64), np.uint64) if binary else np.zeros((0, d), np.float32),
                np.zeros(0, np.int64), np.zeros(0, np.int64))
    start = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])
    res = (x[rows[order]] - centroids[w[order]]).astype(np.float64)
    V = _group_sums(res, start)
    uk = key_s[start]
    if binary:
        vec = pack_bits(V > 0)
    else:
        vec = _l2_normalize_f32(V)
    return vec, uk % k, uk // k


def asmk_idf(df: np.ndarray, n_images: int) -> np.ndarray:
    """w_c = log(N / n_c)^2, and 1 for words with no database entry (asmk package convention)."""
    df = np.asarray(df, np.float64)
    out = np.ones_like(df)
    nz = df > 0
    out[nz] = np.log(n_images / df[nz]) ** 2
    return out


class ASMKIndex:
    """Inverted file of aggregated residuals (ASMK, or ASMK* when binary).

    Build from database descriptors x (n, d), words (n,) or (n, ma), image ids (n,); query with
    :meth:`search_image`. ``norm`` (n_db,) holds sum_c w_c per image (gamma^-2).
    """

    def __init__(self, x, words, image, n_images: int, centroids, binary: bool = False):
        self.centroids = np.asarray(centroids, np.float32)
        self.binary = binary
        self.dim = self.centroids.shape[1]
        vec, w, im = aggregate(x, words, image, self.centroids, binary)
        self.ivf = InvertedFile(w, im, len(self.centroids), n_images)
        self.vecs = vec[self.ivf.order]
        self.idf = asmk_idf(self.ivf.df(), n_images)
        self.norm = np.bincount(im, self.idf[w], minlength=n_images)
        self._sqrt_norm = np.sqrt(self.norm)
        self.n_images = n_images

    def similarity(self, qvec: np.ndarray, owner: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Reference pairwise similarity (T,) float64 of query vectors qvec[owner] and database
        entries vecs[pos] (gathers both; :meth:`search_image` uses posting-list slices instead)."""
        if self.binary:
            h = hamming(qvec[owner], self.vecs[pos]).sum(1)
            return 1.0 - 2.0 * h / self.dim
        return np.einsum("td,td->t", qvec[owner], self.vecs[pos]).astype(np.float64)

    # posting lists at least this long are scored in place (one einsum on the contiguous slice);
    # shorter ones are gathered and scored together (per-call overhead beats copying there)
    SLICE_MIN = 32

    def _pair_values(self, qvec: np.ndarray, qw: np.ndarray):
        """For every (query word i, database entry of word qw[i]) pair, in posting-list order:
        (similarity (T,) float32, or Hamming distance (T,) int64 when binary; query word index (T,);
        database image (T,)). Long posting lists are multiplied in place as contiguous slices into a
        preallocated buffer, without copying qvec[owner] and vecs[pos] (two (T, d) arrays)."""
        ptr, vecs = self.ivf.ptr, self.vecs
        owner, pos = self.ivf.postings(qw)
        img = self.ivf.image[pos]
        if self.binary:
            return np.bitwise_count(np.bitwise_xor(vecs[pos], qvec[owner])).sum(1, dtype=np.int64), owner, img
        lo, hi = ptr[qw], ptr[qw + 1]
        lens = hi - lo
        off = np.zeros(len(qw) + 1, np.int64)
        np.cumsum(lens, out=off[1:])
        val = np.empty(len(pos), np.float32)
        long = lens >= self.SLICE_MIN
        short = np.flatnonzero(~long[owner])
        if len(short):
            # same float32 sums of products as the per-slice einsum below (and as :meth:`similarity`)
            val[short] = np.einsum("td,td->t", qvec[owner[short]], vecs[pos[short]])
        for i in np.flatnonzero(long).tolist():
            np.einsum("td,d->t", vecs[int(lo[i]):int(hi[i])], qvec[i], out=val[int(off[i]):int(off[i + 1])])
        return val, owner, img

    def search_image(self, q, qwords, alpha: float = 3.0, tau: float = 0.0) -> np.ndarray:
        """Scores (n_db,) float64 of one query image: q (n, d), qwords (n, ma).

        score_j = sum_c w_c sigma_alpha(V_hat(Q_c)^T V_hat(X_jc)) / sqrt(sum_{c in Q} w_c * norm_j)
        (Eq. 10-11), accumulated over the posting lists of the query's words. ASMK* maps the
        Hamming distance h in [0, d] through a (d + 1)-entry table sigma_alpha(1 - 2 h / d).
        """
        if len(q) == 0:
            return np.zeros(self.n_images)
        qvec, qw, _ = aggregate(q, qwords, np.zeros(len(q), np.int64), self.centroids, self.binary)
        val, owner, img = self._pair_values(qvec, qw)
        if self.binary:
            table = selectivity(1.0 - 2.0 * np.arange(self.dim + 1, dtype=np.int64) / self.dim, alpha, tau)
            s = table[val]
        else:
            s = val.astype(np.float64)
        keep = s > tau if not self.binary else s != 0
        sq = self._sqrt_norm[img]
        keep &= sq > 0
        s = s[keep]
        if not self.binary:
            s = selectivity(s, alpha, tau)
        s = s * self.idf[qw][owner[keep]]
        sc = np.bincount(img[keep], s / sq[keep], minlength=self.n_images)
        qn = self.idf[qw].sum()
        return sc / np.sqrt(qn) if qn > 0 else sc

    def nbytes(self) -> int:
        return int(self.ivf.nbytes() + self.vecs.nbytes + self.norm.nbytes)


class SMKIndex:
    """Non-aggregated selective match kernel (ICCV 2013 Eq. 6) on an inverted file of
    normalized residuals r_hat(x), one entry per database descriptor."""

    def __init__(self, x, words, image, n_images: int, centroids, alpha=3.0, tau=0.0):
        self.centroids = np.asarray(centroids, np.float32)
        words = np.asarray(words, np.int64).reshape(len(x), -1)[:, 0]
        image = np.asarray(image, np.int64)
        self.ivf = InvertedFile(words, image, len(self.centroids), n_images)
        r = self._rhat(x, words)
        self.vecs = r[self.ivf.order]
        self.idf = asmk_idf(self.ivf.df(), n_images)
        self.n_images = n_images
        self.alpha, self.tau = alpha, tau
        # gamma(X)^-2 = sum_c w_c sum_{x, x' in X_c} sigma(r_hat(x)^T r_hat(x')), entries grouped by (word, image)
        wi = self.ivf.words * n_images + self.ivf.image
        start = np.flatnonzero(np.r_[True, wi[1:] != wi[:-1]]) if len(wi) else np.zeros(0, np.int64)
        size = np.diff(np.r_[start, len(wi)])
        g_of = np.repeat(np.arange(len(start)), size)
        owner, pos = expand_ranges(start[g_of], size[g_of])
        sims = selectivity(np.einsum("td,td->t", self.vecs[owner].astype(np.float64), self.vecs[pos]), alpha, tau)
        self.norm = np.bincount(self.ivf.image[owner], sims * self.idf[self.ivf.words[owner]], minlength=n_images)

    def _rhat(self, x, words):
        r = np.asarray(x, np.float32) - self.centroids[words]
        return (r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def search_image(self, q, qwords) -> np.ndarray:
        if len(q) == 0:
            return np.zeros(self.n_images)
        qwords = np.asarray(qwords, np.int64).reshape(len(q), -1)
        rows = np.repeat(np.arange(len(q)), qwords.shape[1])
        qw = qwords.ravel()
        r = self._rhat(q[rows], qw)
        # query self-similarity (descriptor pairs of the query sharing a word)
        o = np.argsort(qw, kind="stable")
        qws = qw[o]
        st = np.flatnonzero(np.r_[True, qws[1:] != qws[:-1]])
        sz = np.diff(np.r_[st, len(qws)])
        g = np.repeat(np.arange(len(st)), sz)
        a, b = expand_ranges(st[g], sz[g])
        qn = (selectivity(np.einsum("td,td->t", r[o][a].astype(np.float64), r[o][b]), self.alpha, self.tau)
              * self.idf[qws[a]]).sum()
        owner, pos = self.ivf.postings(qw)
        s = selectivity(np.einsum("td,td->t", r[owner].astype(np.float64), self.vecs[pos]), self.alpha, self.tau)
        s *= self.idf[qw[owner]]
        img = self.ivf.image[pos]
        sc = np.bincount(img, s, minlength=self.n_images)
        denom = np.sqrt(np.maximum(self.norm, 0) * max(qn, 0))
        return np.where(denom > 0, sc / np.maximum(denom, 1e-300), 0.0)

    def nbytes(self) -> int:
        return int(self.ivf.nbytes() + self.vecs.nbytes + self.norm.nbytes)


