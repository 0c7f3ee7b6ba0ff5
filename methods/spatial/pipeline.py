"""Family base classes and run-context helpers of this chapter (talk Part I: spatial matching).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time

import numpy as np
from visrep.methods.local.plugins import BoW

from visrep.features import DESCRIPTOR_PARAM
from visrep.params import Param

from .geometry import nn_correspondences, word_correspondences
from .verification import rerank

SHORTLIST_PARAMS = (
    Param("shortlist_method", str, "bow", "initial ranking: 'bow' (this method's BoW parameters) or 'knn' "
          "(exact search on the global descriptor given by 'descriptor')", choices=("bow", "knn")),
    DESCRIPTOR_PARAM,
    Param("shortlist", int, 100, "re-rank the top N of the initial ranking", low=1),
)


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
        from visrep.methods.local.vocabularies import assign
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
        from visrep.methods.local.features import stack_features
        from visrep.methods.local.inverted_file import idf_weights
        from visrep.methods.local.pipeline import local_features
        from visrep.methods.local.vocabularies import assign

        cfg = self.cfg
        self._voc, self._idf = None, None
        t0 = time.perf_counter()
        if cfg["shortlist_method"] == "bow":
            base = super().run(data, ctx)
            initial, per_q_initial = base["ranks"], base["timings"]["query"]
        else:
            from visrep.methods.search.pipeline import timed_search

            from visrep.features import retrieval_features
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
        N = min(cfg["shortlist"], data.n_db)  # "the top N": above the database, all of it (recorded in stats)
        spatial = np.zeros((N, data.n_queries))
        per_pair = np.full((N, data.n_queries), np.nan)   # seconds per verified pair (NaN: a side has no features)
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
                    per_pair[r, j] = time.perf_counter() - ts
                    t_verify += per_pair[r, j]
                    n_corr += len(pairs)
        ranks = rerank(np.asarray(initial), spatial)
        n_pairs = max(N * data.n_queries, 1)
        return {"ranks": ranks,
                "timings": {"query": (time.perf_counter() - t0) / max(data.n_queries, 1),
                            "initial": per_q_initial, "verify_per_pair": t_verify / n_pairs},
                # one time per (shortlist rank, query) pair: the same pairs for every re-ranker on one shortlist
                "per_item_timings": {"verify_per_pair": per_pair.T.ravel()},
                "stats": {"correspondences_per_pair": n_corr / n_pairs, "shortlist": N}}
