"""Inverted files over visual words, and the shared pipeline of local-feature retrieval methods.

An inverted file (Sivic & Zisserman ICCV 2003) stores, for each visual word w, the list of
database entries (image id + payload: a binary signature, an aggregated residual, ...) quantized
to w. :class:`InvertedFile` is a CSR layout: entries sorted by word (stable, so by image inside a
word), ``ptr`` (k + 1,) int64 offsets, ``image`` (N,) int64, ``order`` (N,) the original row of
each entry (to gather payloads). A query only touches the posting lists of its own words: all
(query entry, database entry) pairs sharing a word come out of :func:`expand_ranges` in one
vectorized step, and scores are accumulated per database image with ``np.bincount``.

:class:`LocalFeatureRetrieval` is the base of BoW, HE, SMK/ASMK: local features
(:func:`visrep.methods.local_features.local_features`), a vocabulary learned on the database
descriptors (or on a file given by ``vocab_train``) and cached, then ``index``/``score`` hooks.
Images with no features are indexed as empty and score zero against everything.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param


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


def scores_to_ranks(scores: np.ndarray) -> np.ndarray:
    """(n_db, n_q) scores -> (n_db, n_q) int64 ranks, best first; ties keep database order."""
    return np.argsort(-scores, axis=0, kind="stable")


VOCAB_PARAMS = (
    Param("vocabulary", str, "kmeans", "vocabulary learning method", choices=("kmeans", "akm", "rakm", "agm")),
    Param("k", int, 4096, "visual words (AGM: initial components); the papers use 20k-1M at full scale", low=1),
    Param("vocab_niter", int, 10, "vocabulary learning iterations", low=1),
    Param("vocab_train", str, None, "train the vocabulary on this descriptor file/folder instead of the "
          "database descriptors (e.g. an independent dataset, as in the papers)"),
    Param("vocab_limit", int, 200000, "subsample at most this many training descriptors", low=1),
    Param("local_features", str, "rootsift", "local descriptor", choices=("sift", "rootsift")),
    Param("max_features", int, 1000, "strongest keypoints kept per image (0 = all)", low=0),
)


class LocalFeatureRetrieval(Method):
    """Base of the inverted-file methods: features + cached vocabulary, then index / score.

    Subclasses implement ``index(db_desc, db_ids, db_frames, n_db, vocab, ctx)`` -> state and
    ``score(state, q_desc, q_frames, ctx)`` -> (n_db,) float64 scores of one query.
    """

    task = "retrieval"
    params = VOCAB_PARAMS

    def vocabulary(self, data, ctx, db_x):
        from .vocabularies import read_training_descriptors, vocabulary_for

        cfg = self.cfg
        if cfg["vocab_train"]:
            x = read_training_descriptors(cfg["vocab_train"], cfg["vocab_limit"], ctx.seed)
            key = {"train": str(cfg["vocab_train"]), "limit": cfg["vocab_limit"]}
        else:
            x = db_x
            if len(x) > cfg["vocab_limit"]:
                x = x[np.sort(ctx.rng(17).choice(len(x), cfg["vocab_limit"], replace=False))]
            key = {"manifest": data.manifest, "features": cfg["local_features"],
                   "max_features": cfg["max_features"], "limit": cfg["vocab_limit"]}
        if len(x) == 0:
            raise UserError(f"{data.name}: no local features to learn a vocabulary from")
        k = min(cfg["k"], len(x)) if not cfg["vocab_train"] else cfg["k"]
        if k < cfg["k"]:
            import warnings
            warnings.warn(f"{self.name}: k={cfg['k']} exceeds the {len(x)} training descriptors; using k={k}")
        voc = vocabulary_for(x, cfg["vocabulary"], k, ctx, key, niter=cfg["vocab_niter"])
        if db_x.shape[1] != voc.dim:
            raise UserError(f"{self.name}: vocabulary has dimension {voc.dim} but descriptors have {db_x.shape[1]}")
        return voc

    def run(self, data, ctx) -> dict:
        from .local_features import local_features, stack_features

        feats = local_features(data, ctx, self.cfg["local_features"], self.cfg["max_features"] or None)
        db_desc, db_frames = feats["db"]
        q_desc, q_frames = feats["query"]
        x, ids = stack_features(db_desc, f"{data.name} database")
        fr = np.concatenate([np.asarray(f, np.float32).reshape(-1, 4) for f in db_frames]) if len(db_frames) \
            else np.zeros((0, 4), np.float32)
        with ctx.phase("offline"):
            voc = self.vocabulary(data, ctx, x)
            state = self.index(x, ids, fr, data.n_db, voc, ctx)
        scores = np.zeros((data.n_db, data.n_queries), np.float64)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for j in ctx.progress(range(data.n_queries), desc=f"{self.name} query", total=data.n_queries):
                qd = np.asarray(q_desc[j])
                if qd.ndim != 2 or (len(qd) and qd.shape[1] != voc.dim):
                    raise UserError(f"{data.name} query {data.query_names[j]}: descriptors of shape {qd.shape}, "
                                    f"vocabulary dimension {voc.dim}")
                scores[:, j] = self.score(state, qd.astype(np.float32).reshape(-1, voc.dim),
                                          np.asarray(q_frames[j], np.float32).reshape(-1, 4), ctx)
            ranks = scores_to_ranks(scores)
        per_q = (time.perf_counter() - t0) / max(data.n_queries, 1)
        return {"ranks": ranks, "scores": scores.astype(np.float32),
                "timings": {"query": per_q, "vocabulary": voc.seconds},
                "k": voc.k, "index_bytes_per_image": self.index_bytes(state) / max(data.n_db, 1)}

    def index(self, x, ids, frames, n_db, voc, ctx):
        raise NotImplementedError

    def score(self, state, q, q_frames, ctx) -> np.ndarray:
        raise NotImplementedError

    def index_bytes(self, state) -> int:
        return 0
