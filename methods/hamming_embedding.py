"""Hamming embedding (HE) and weak geometric consistency (WGC).

Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency for large scale image
search, ECCV 2008 (and the journal version, Improving bag-of-features for large scale image
search, IJCV 2010):

- HE (Sec. 3): a random orthogonal projection P (d_b x d, d_b = 64 rows of the Q factor of a
  Gaussian matrix) maps a descriptor x to z = P x; per visual word w and bit l a threshold
  tau_{w,l} is the median of z_l over the training descriptors quantized to w; the signature
  b_l(x) = [z_l > tau_{q(x),l}] is 64 bits, stored as one uint64 per descriptor.
  Two descriptors match when they share a word and their Hamming distance h <= h_t (h_t = 24);
  a match votes idf_w^2 * exp(-h^2 / sigma^2) (Gaussian weighting of IJCV 2010 Sec. 3.2, sigma =
  16; ``weighting=false`` votes idf_w^2). Image scores are divided by the L2 norms of the two
  images' tf-idf vectors (the BoW normalization).
- WGC (Sec. 4): each match also votes, with its weight, in a histogram of orientation
  differences (8 bins over 2 pi) and one of log2 scale ratios (bins of 1/2 octave, clipped to
  [-4, 4) octaves) of its database image; the image score is min(max angle bin, max scale bin),
  which favours images whose matches agree on one rotation and one scale change.
- Burstiness (Jégou et al. CVPR 2009, ``burst``): the votes of one query descriptor in one
  database image are replaced by the square root of their sum (intra-image burst normalization).

Query-side multiple assignment ``ma`` (IJCV 2010 Sec. 4.2): a query descriptor is signed with
the thresholds of each of its ``ma`` words and searched in each posting list.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register

from .inverted_file import VOCAB_PARAMS, InvertedFile, LocalFeatureRetrieval, idf_weights
from .vocabularies import assign

N_BITS = 64


def random_projection(d: int, nbits: int = N_BITS, seed: int = 0) -> np.ndarray:
    """(nbits, d) float32 rows of a random orthogonal matrix (QR of a Gaussian d x d)."""
    if nbits > d:
        raise UserError(f"Hamming embedding: {nbits} bits need descriptors of dimension >= {nbits}, got {d}")
    g = np.random.default_rng(seed).standard_normal((d, d))
    q, r = np.linalg.qr(g)
    q = q * np.sign(np.diag(r))[None]
    return np.ascontiguousarray(q[:nbits].astype(np.float32))


def median_thresholds(z: np.ndarray, words: np.ndarray, k: int) -> np.ndarray:
    """Per-word median of projected training values: z (n, b), words (n,) -> (k, b) float32.

    Words without training points get the global median."""
    n, b = z.shape
    out = np.tile(np.median(z, axis=0) if n else np.zeros(b), (k, 1)).astype(np.float32)
    if n == 0:
        return out
    counts = np.bincount(words, minlength=k)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = np.flatnonzero(counts)
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    for l in range(b):
        order = np.lexsort((z[:, l], words))
        v = z[order, l]
        out[has, l] = 0.5 * (v[lo] + v[hi])
    return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 64) bool -> (n,) uint64, bit l of the word = column l."""
    weights = (np.uint64(1) << np.arange(bits.shape[1], dtype=np.uint64))
    return (bits.astype(np.uint64) * weights[None]).sum(1, dtype=np.uint64)


def signatures(x: np.ndarray, words: np.ndarray, P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """HE signatures (n,) uint64 of descriptors x (n, d) quantized to words (n,)."""
    z = x @ P.T
    return pack_bits(z > thresholds[words])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 arrays (broadcast), int64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


class _HE(LocalFeatureRetrieval):
    wgc = False
    params = VOCAB_PARAMS + (
        Param("ht", int, 24, "Hamming threshold h_t", low=0, high=64),
        Param("sigma", float, 16.0, "Gaussian weighting exp(-h^2/sigma^2) of IJCV 2010", low=0, open_low=True),
        Param("weighting", bool, True, "Gaussian weighting of votes (false = all votes weigh 1)"),
        Param("ma", int, 1, "query-side multiple assignment", low=1),
        Param("burst", bool, False, "intra-image burstiness normalization (CVPR 2009)"),
        Param("angle_bins", int, 8, "WGC orientation bins over 2 pi", low=1),
        Param("scale_bins", int, 16, "WGC log2-scale bins over [-4, 4) octaves", low=1),
    )

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        words = words[:, 0]
        P = random_projection(x.shape[1], N_BITS, ctx.seed)
        thr = median_thresholds(x @ P.T, words, voc.k)
        sig = signatures(x, words, P, thr)
        ivf = InvertedFile(words, ids, voc.k, n_db)
        idf = idf_weights(ivf.df(), n_db)
        tf = np.bincount(ids * voc.k + words, minlength=n_db * voc.k).reshape(n_db, voc.k) if n_db * voc.k < 5e7 \
            else None
        if tf is not None:
            norms = np.sqrt(((tf * idf[None]) ** 2).sum(1))
        else:
            key, cnt = np.unique(ids * voc.k + words, return_counts=True)
            norms = np.sqrt(np.bincount(key // voc.k, (cnt * idf[key % voc.k]) ** 2, minlength=n_db))
        o = ivf.order
        return {"ivf": ivf, "sig": sig[o], "angle": frames[o, 3] if len(frames) else frames[:, 0],
                "logscale": np.log2(np.maximum(frames[o, 2], 1e-6)) if len(frames) else frames[:, 0],
                "P": P, "thr": thr, "idf": idf, "norms": norms, "voc": voc, "n_db": n_db}

    def score(self, s, q, q_frames, ctx):
        cfg = self.cfg
        n_db = s["n_db"]
        if len(q) == 0:
            return np.zeros(n_db)
        ma = cfg["ma"]
        qw, _ = assign(q, s["voc"], ma, "query descriptors")
        qrow = np.repeat(np.arange(len(q)), qw.shape[1])
        qw = qw.ravel()
        qsig = signatures(q[qrow], qw, s["P"], s["thr"])
        idf = s["idf"]
        # query tf-idf norm (multiple-assigned descriptors count once per word, as in the database)
        wcount = np.bincount(qw, minlength=s["voc"].k)
        qnorm = np.sqrt(((wcount * idf) ** 2).sum())
        owner, pos = s["ivf"].postings(qw)
        h = hamming(qsig[owner], s["sig"][pos])
        ok = h <= cfg["ht"]
        owner, pos, h = owner[ok], pos[ok], h[ok]
        w = idf[qw[owner]] ** 2
        if cfg["weighting"]:
            w = w * np.exp(-(h.astype(np.float64) ** 2) / cfg["sigma"] ** 2)
        img = s["ivf"].image[pos]
        if cfg["burst"] and len(w):
            key = qrow[owner] * n_db + img
            uk, inv = np.unique(key, return_inverse=True)
            tot = np.bincount(inv, w)
            w = w / np.sqrt(tot[inv])   # sum over the group becomes sqrt(total)
        if self.wgc and len(w):
            qf = q_frames[qrow[owner]]
            da = np.mod(s["angle"][pos] - qf[:, 3], 2 * np.pi)
            ab = np.minimum((da / (2 * np.pi) * cfg["angle_bins"]).astype(np.int64), cfg["angle_bins"] - 1)
            ds = s["logscale"][pos] - np.log2(np.maximum(qf[:, 2], 1e-6))
            sb = np.clip(((ds + 4.0) / 8.0 * cfg["scale_bins"]).astype(np.int64), 0, cfg["scale_bins"] - 1)
            ha = np.bincount(img * cfg["angle_bins"] + ab, w, minlength=n_db * cfg["angle_bins"])
            hs = np.bincount(img * cfg["scale_bins"] + sb, w, minlength=n_db * cfg["scale_bins"])
            sc = np.minimum(ha.reshape(n_db, -1).max(1), hs.reshape(n_db, -1).max(1))
        else:
            sc = np.bincount(img, w, minlength=n_db)
        denom = s["norms"] * qnorm
        return np.where(denom > 0, sc / np.maximum(denom, 1e-300), 0.0)

    def index_bytes(self, s):
        return s["ivf"].nbytes() + s["sig"].nbytes + (s["angle"].nbytes + s["logscale"].nbytes if self.wgc else 0)


@register
class HE(_HE):
    name = "he"
    summary = "Hamming embedding: 64-bit signatures, per-word median thresholds, h_t=24, Gaussian weights"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency for large scale image search, ECCV 2008"


@register
class HEWGC(_HE):
    name = "he-wgc"
    summary = "Hamming embedding + weak geometric consistency (orientation and log-scale histograms)"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency for large scale image search, ECCV 2008"
    wgc = True
