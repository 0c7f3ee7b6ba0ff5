"""Inverted files over visual words, and the shared pipeline of local-feature retrieval methods.

An inverted file (Sivic & Zisserman ICCV 2003) stores, for each visual word w, the list of
database entries (image id + payload: a binary signature, an aggregated residual, ...) quantized
to w. :class:`InvertedFile` is a CSR layout: entries sorted by word (stable, so by image inside a
word), ``ptr`` (k + 1,) int64 offsets, ``image`` (N,) int64, ``order`` (N,) the original row of
each entry (to gather payloads). A query only touches the posting lists of its own words: all
(query entry, database entry) pairs sharing a word come out of :func:`expand_ranges` in one
vectorized step, and scores are accumulated per database image with ``np.bincount``.

:class:`LocalFeatureRetrieval` is the base of BoW, HE, SMK/ASMK: local features
(:func:`visrep.methods.local.features.local_features`), a vocabulary learned on the database
descriptors (or on a file given by ``vocab_train``) and cached, then ``index``/``score`` hooks.
Images with no features are indexed as empty and score zero against everything.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All positions of the ranges [starts[i], starts[i] + lengths[i]).

    Returns (owner (T,) int64: the i each position belongs to, pos (T,) int64), T = sum(lengths).
    Example: starts [5, 0], lengths [2, 3] -> owner [0, 0, 1, 1, 1], pos [5, 6, 0, 1, 2].
    """
    starts = np.asarray(starts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    pos = np.arange(total, dtype=np.int64) - offsets[owner] + starts[owner]
    return owner, pos


class InvertedFile:
    """CSR inverted file of N entries over k words for n_images images.

    words (N,) int, image (N,) int -> ``ptr`` (k+1,), ``image`` (N,) sorted by (word, image),
    ``order`` (N,) original entry index. Memory: 8 (image) + 8 (order) bytes per entry plus
    8 (k + 1) for ``ptr``, plus the payload of the method.
    """

    def __init__(self, words: np.ndarray, image: np.ndarray, k: int, n_images: int):
        words = np.asarray(words, np.int64).ravel()
        image = np.asarray(image, np.int64).ravel()
        if len(words) != len(image):
            raise ValueError("words and image must have the same length")
        if len(words) and (words.min() < 0 or words.max() >= k):
            raise UserError(f"inverted file: word ids must lie in [0, {k}), got [{words.min()}, {words.max()}]")
        self.k, self.n_images = int(k), int(n_images)
        self.order = np.lexsort((image, words))
        self.words = words[self.order]
        self.image = image[self.order]
        self.ptr = np.zeros(self.k + 1, np.int64)
        np.cumsum(np.bincount(self.words, minlength=self.k), out=self.ptr[1:])

    @property
    def n_entries(self) -> int:
        return len(self.image)

    def df(self) -> np.ndarray:
        """Document frequency (k,) int64: number of distinct images with an entry in each word."""
        if not self.n_entries:
            return np.zeros(self.k, np.int64)
        first = np.ones(self.n_entries, bool)
        first[1:] = (self.words[1:] != self.words[:-1]) | (self.image[1:] != self.image[:-1])
        return np.bincount(self.words[first], minlength=self.k)

    def postings(self, query_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (query entry index (T,), sorted entry index (T,)) for every query entry and
        every database entry of the same word."""
        w = np.asarray(query_words, np.int64)
        return expand_ranges(self.ptr[w], self.ptr[w + 1] - self.ptr[w])

    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.image.nbytes + self.order.nbytes)


def idf_weights(df: np.ndarray, n_images: int) -> np.ndarray:
    """Inverse document frequency log(N / df_w) (Sivic & Zisserman 2003); 0 for empty words. (k,) float64."""
    df = np.asarray(df, np.float64)
    out = np.zeros_like(df)
    nz = df > 0
    out[nz] = np.log(max(n_images, 1) / df[nz])
    return out


