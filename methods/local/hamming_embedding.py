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
    """(n, d) bool -> (n, ceil(d/64)) uint64: bit j % 64 of word j // 64 = column j.

    The one bit packer of visrep: HE signatures (d = 64, one word) and ASMK binarized residuals.
    """
    bits = np.asarray(bits, bool)
    n, d = bits.shape
    nw = (d + 63) // 64
    if d != nw * 64:
        padded = np.zeros((n, nw * 64), bool)
        padded[:, :d] = bits
        bits = padded
    # byte b, bit i = column 8 b + i; 8 little-endian bytes = one uint64 (bit j % 64 of word j // 64)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64).reshape(n, nw)


def signatures(x: np.ndarray, words: np.ndarray, P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """HE signatures (n,) uint64 of descriptors x (n, d) quantized to words (n,)."""
    z = x @ P.T
    return pack_bits(z > thresholds[words])[:, 0]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 arrays (broadcast), int64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


