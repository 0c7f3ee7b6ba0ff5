"""Spatial verification re-ranking: RANSAC and fast spatial matching (FSM).

A re-ranking method runs an initial ranking -- BoW with tf-idf on an inverted file
(:mod:`visrep.methods.bow`, default) or exact kNN on a global descriptor (``shortlist_method =
knn``) -- then scores the top ``shortlist`` database images of each query by a spatial
matching of their local features (:func:`visrep.methods.local_features.local_features`, SIFT
or RootSIFT with frames) and re-orders them by that score (ties keep the initial order); the
rest of the ranking is unchanged (Philbin et al. CVPR 2007, Sec. 4: "re-rank the top N").

Tentative correspondences (``correspondences``):
- ``word``: all pairs of features that share a visual word of the BoW vocabulary (as in
  Philbin et al. and Tolias & Avrithis; ``max_per_word`` drops bursty words);
- ``nn``: mutual nearest neighbours of the descriptors passing Lowe's ratio test.

Methods (scores are computed by :mod:`visrep.methods.geometry`):
- ``ransac``: 4-point homography RANSAC (Fischler & Bolles, CACM 1981) with adaptive
  iterations and a least-squares refinement; score = inliers (one-to-one count).
- ``fsm``: fast spatial matching (Philbin, Chum, Isard, Sivic & Zisserman, CVPR 2007): one
  hypothesis per correspondence from its two local frames, best by inlier count, refined to an
  affine transformation by least squares; score = inliers.
- ``hpm`` (in :mod:`visrep.methods.hough_pyramid`) and ``dsm`` (in
  :mod:`visrep.methods.deep_spatial_matching`) build on the same base.

Outputs: ``ranks`` (n_db, n_q); timings ``query`` (initial ranking + verification, seconds
per query), ``initial`` (initial ranking per query), ``verify_per_pair`` (spatial matching of
one query-database pair, correspondences included); stats ``correspondences_per_pair``.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.features import DESCRIPTOR_PARAM
from visrep.params import Param
from visrep.registry import register

from .bow import BoW
from .geometry import fast_spatial_matching, nn_correspondences, one_to_one_count, ransac_homography, \
    word_correspondences

SHORTLIST_PARAMS = (
    Param("shortlist_method", str, "bow", "initial ranking: 'bow' (this method's BoW parameters) or 'knn' "
          "(exact search on the global descriptor given by 'descriptor')", choices=("bow", "knn")),
    DESCRIPTOR_PARAM,
    Param("shortlist", int, 100, "re-rank the top N of the initial ranking", low=1),
)


def rerank(initial_ranks: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """Re-order the top N of each column of `initial_ranks` (n_db, n_q) by `spatial` (N, n_q)
    scores (higher first; ties keep the initial order); the rest is unchanged."""
    out = initial_ranks.copy()
    N = spatial.shape[0]
    for j in range(out.shape[1]):
        order = np.lexsort((np.arange(N), -spatial[:, j]))
        out[:N, j] = initial_ranks[:N, j][order]
    return out


class SpatialReranking(BoW):
    """Base of the spatial re-ranking methods: shortlist, correspondences, then ``verify``.

    Subclasses implement ``verify(frames_q (n, 4), frames_db (n', 4), pairs (m, 2), words (m,) or
    None, idf (k,) or None) -> float`` (higher = more similar).
    """

    default_correspondences = "word"
    params = BoW.params + SHORTLIST_PARAMS + (
        Param("correspondences", str, "word", "tentative correspondences: 'word' (same visual word) or "
              "'nn' (mutual nearest neighbours + ratio test)", choices=("word", "nn")),
        Param("ratio", float, 0.8, "Lowe's ratio for 'nn' correspondences (1 = off)", low=0, high=1, open_low=True),
        Param("max_per_word", int, 20, "'word' correspondences: skip words with more features than this in "
              "either image (0 = keep all)", low=0),
    )

    # -- hooks of the BoW base: remember the vocabulary and database words
    def index(self, x, ids, frames, n_db, voc, ctx):
        from .vocabularies import assign
        state = super().index(x, ids, frames, n_db, voc, ctx)
        self._words_state(x, ids, n_db, voc, state["idf"], assign)
        return state

    def _words_state(self, x, ids, n_db, voc, idf, assign):
        words = assign(x, voc, 1, "database descriptors")[0][:, 0] if len(x) else np.zeros(0, np.int64)
        self._voc, self._idf = voc, idf
        self._db_words = np.split(words, np.cumsum(np.bincount(ids, minlength=n_db))[:-1])

    def verify(self, fa, fb, pairs, words, idf) -> float:
        raise NotImplementedError

    def pairs_for(self, qd, qw, dd, dw):
        if self.cfg["correspondences"] == "nn":
            return nn_correspondences(qd, dd, self.cfg["ratio"])
        return word_correspondences(qw, dw, self.cfg["max_per_word"] or None)

    def run(self, data, ctx) -> dict:
        from .inverted_file import idf_weights
        from .local_features import local_features, stack_features
        from .vocabularies import assign

        cfg = self.cfg
        self._voc, self._idf = None, None
        t0 = time.perf_counter()
        if cfg["shortlist_method"] == "bow":
            base = super().run(data, ctx)
            initial, per_q_initial = base["ranks"], base["timings"]["query"]
        else:
            from visrep.features import retrieval_features
            from .knn_search import timed_search
            db, q = retrieval_features(data, ctx, cfg["descriptor"])
            _, initial, per_q_initial = timed_search(db, q, ctx)
        feats = local_features(data, ctx, cfg["local_features"], cfg["max_features"] or None)
        db_desc, db_frames = feats["db"]
        q_desc, q_frames = feats["query"]
        need_words = cfg["correspondences"] == "word"
        self._rng = ctx.rng(7)
        if need_words and self._voc is None:
            x, ids = stack_features(db_desc, f"{data.name} database")
            with ctx.phase("offline"):
                voc = self.vocabulary(data, ctx, x)
                df = np.bincount(np.unique(ids * voc.k + assign(x, voc, 1)[0][:, 0]) % voc.k, minlength=voc.k) \
                    if len(x) else np.zeros(voc.k)
                self._words_state(x, ids, data.n_db, voc, idf_weights(df, data.n_db), assign)
        N = min(cfg["shortlist"], data.n_db)
        spatial = np.zeros((N, data.n_queries))
        n_corr, t_verify = 0, 0.0
        with ctx.phase("verify"):
            for j in ctx.progress(range(data.n_queries), desc=f"{self.name} verify", total=data.n_queries):
                qd = np.asarray(q_desc[j], np.float32)
                qf = np.asarray(q_frames[j], np.float64).reshape(-1, 4)
                qw = assign(qd, self._voc, 1, "query descriptors")[0][:, 0] if need_words and len(qd) else None
                for r in range(N):
                    i = int(initial[r, j])
                    dd = np.asarray(db_desc[i], np.float32)
                    df = np.asarray(db_frames[i], np.float64).reshape(-1, 4)
                    ts = time.perf_counter()
                    if len(qd) == 0 or len(dd) == 0:
                        continue
                    dw = self._db_words[i] if need_words else None
                    pairs = self.pairs_for(qd, qw, dd, dw)
                    words = qw[pairs[:, 0]] if qw is not None else None
                    spatial[r, j] = self.verify(qf, df, pairs, words, self._idf)
                    t_verify += time.perf_counter() - ts
                    n_corr += len(pairs)
        ranks = rerank(np.asarray(initial), spatial)
        n_pairs = max(N * data.n_queries, 1)
        return {"ranks": ranks,
                "timings": {"query": (time.perf_counter() - t0) / max(data.n_queries, 1),
                            "initial": per_q_initial, "verify_per_pair": t_verify / n_pairs},
                "stats": {"correspondences_per_pair": n_corr / n_pairs, "shortlist": N}}


@register
class RANSAC(SpatialReranking):
    name = "ransac"
    summary = "re-rank a BoW (or kNN) shortlist by the inliers of a 4-point RANSAC homography"
    cite = ("Fischler & Bolles, Random sample consensus, CACM 1981; re-ranking as Philbin et al., "
            "Object retrieval with large vocabularies and fast spatial matching, CVPR 2007")
    params = tuple(p if p.name != "correspondences" else Param(
        "correspondences", str, "nn", p.doc, choices=p.choices) for p in SpatialReranking.params) + (
        Param("threshold", float, 4.0, "inlier threshold: transfer error in pixels", low=0, open_low=True),
        Param("max_iter", int, 1000, "at most this many 4-point samples", low=1),
        Param("confidence", float, 0.999, "adaptive stopping confidence", low=0, high=1, open_low=True, open_high=True),
    )

    def verify(self, fa, fb, pairs, words, idf):
        if len(pairs) < 4:
            return 0.0
        H, mask = ransac_homography(fa[pairs[:, 0], :2], fb[pairs[:, 1], :2], self.cfg["threshold"],
                                    self.cfg["max_iter"], self.cfg["confidence"],
                                    getattr(self, "_rng", None))
        return float(one_to_one_count(pairs, mask)) if H is not None else 0.0


@register
class FSM(SpatialReranking):
    name = "fsm"
    summary = "fast spatial matching: re-rank a BoW shortlist by inliers of single-correspondence hypotheses"
    cite = "Philbin, Chum, Isard, Sivic & Zisserman, Object retrieval with large vocabularies and fast spatial matching, CVPR 2007"
    params = SpatialReranking.params + (
        Param("threshold", float, 8.0, "inlier threshold: transfer error in pixels", low=0, open_low=True),
        Param("model", str, "affine", "refined model: 'similarity' (4 dof, no refinement), 'affine' or "
              "'homography'", choices=("similarity", "affine", "homography")),
    )

    def verify(self, fa, fb, pairs, words, idf):
        return float(fast_spatial_matching(fa, fb, pairs, self.cfg["threshold"], self.cfg["model"])["score"])

