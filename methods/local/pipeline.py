"""Family base classes and run-context helpers of this chapter (talk Part I: visual vocabularies, beyond vocabularies).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time

import numpy as np
from visrep.methods.search.ranking import ranks_from_scores

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param, check_at_most

from .features import extract_sift
from .vocabularies import Vocabulary, fit_vocabulary


def local_features(data, ctx, kind: str = "rootsift", max_features: int | None = 2000) -> dict:
    """Local features of all images of `data`, cached.

    Returns ``{"db": (desc_list, frames_list), "query": (desc_list, frames_list)}``: lists of
    length n_db / n_q of (n_i, 128) float32 and (n_i, 4) float32 arrays. Precomputed local
    features can be supplied by a dataset as ``data.extra["local_features"]`` in the same shape.
    """
    pre = data.extra.get("local_features") if getattr(data, "extra", None) else None
    if pre is not None:
        return pre
    if not data.has_images:
        raise UserError(f"{data.name}: local features need images (db_image/query_image), "
                        f"and the dataset was loaded without them")

    def run(split):
        n = data.n_db if split == "db" else data.n_queries
        get = data.db_image if split == "db" else data.query_image
        names = data.db_names if split == "db" else data.query_names
        out = [extract_sift(get(i), kind, max_features, where=f"{data.name} {split} image {names[i]}")
               for i in ctx.progress(range(n), desc=f"{kind} {split}", total=n, unit="img")]
        return [d for d, _ in out], [f for _, f in out]

    return ctx.per_split(data, "local_features", {"kind": kind, "max_features": max_features}, [extract_sift], run)


def vocabulary_for(x, method: str, k: int, ctx, key: dict, niter: int = 20, data=None, **opts) -> Vocabulary:
    """Learn (or load from ``ctx.cache``) a vocabulary on x; `key` says what x is (a training file,
    keyed by its content, or the local features of `data`)."""
    what = {"vocabulary": method, "k": k, "niter": niter, "opts": opts, "seed": ctx.seed, **key}
    def bar(it):
        return ctx.progress(it, desc=f"{method} vocabulary k={k}", total=niter, unit="iter")

    return ctx.cached("vocabulary", what, [fit_vocabulary],
                      lambda: fit_vocabulary(method, x, k, seed=ctx.seed, niter=niter, progress=bar, **opts),
                      data=data)


VOCAB_PARAMS = (
    Param("vocabulary", str, "kmeans", "vocabulary learning method", choices=("kmeans", "akm", "rakm", "agm")),
    Param("k", int, 4096, "visual words (AGM: initial components); the papers use 20k-1M at full scale", low=1),
    Param("vocab_niter", int, 10, "vocabulary learning iterations", low=1),
    Param("vocab_train", str, None, "train the vocabulary on this descriptor file/folder instead of the "
          "database descriptors (e.g. an independent dataset, as in the papers)"),
    Param("vocab_limit", int, 200000, "subsample at most this many training descriptors (0 = all); k above it "
          "is an error, never a silent cap", low=0),
    Param("vocab_checks", int, None, "akm / rakm / agm: points examined per approximate nearest-centroid search "
          "(the AGM paper's FLANN checks: 100 for AGM, 200 for AKM / RAKM); None = 8 trees x 16 per leaf = 128",
          low=8),
    Param("agm_m", int, 4, "agm: nearest components kept per point, the AGM paper's memory m (100 in its "
          "large-scale experiment)", low=1),
    Param("local_features", str, "rootsift", "local descriptor", choices=("sift", "rootsift")),
    Param("max_features", int, 1000, "strongest keypoints kept per image (0 = all)", low=0),
)


def vocabulary_options(cfg) -> dict:
    """fit_vocabulary's options from VOCAB_PARAMS: ``vocab_checks`` as a forest of 8 trees with
    ceil(checks / 8) points per leaf (akm, rakm, agm), ``agm_m`` as AGM's m."""
    opts = {}
    if cfg["vocab_checks"] is not None:
        if cfg["vocabulary"] == "kmeans":
            raise UserError("vocab_checks sets the approximate search of akm / rakm / agm; 'kmeans' assigns exactly")
        opts.update(n_trees=8, leaf_size=-(-cfg["vocab_checks"] // 8))
    if cfg["vocabulary"] == "agm":
        opts["m"] = cfg["agm_m"]
    return opts


class LocalFeatureRetrieval(Method):
    """Base of the inverted-file methods: features + cached vocabulary, then index / score.

    Subclasses implement ``index(db_desc, db_ids, db_frames, n_db, vocab, ctx)`` -> state and
    ``score(state, q_desc, q_frames, ctx)`` -> (n_db,) float64 scores of one query.
    """

    task = "retrieval"
    params = VOCAB_PARAMS

    def __init__(self, **given):
        super().__init__(**given)
        k, limit = self.cfg["k"], self.cfg["vocab_limit"]
        if limit and k > limit:       # a vocabulary of k words needs at least k training descriptors
            what = "initial components" if self.cfg["vocabulary"] == "agm" else "words"
            raise UserError(f"method '{self.name}': k = {k} {what} cannot be learned from at most vocab_limit = "
                            f"{limit} training descriptors: set vocab_limit >= k (or 0 = all descriptors)")

    def vocabulary(self, data, ctx, db_x):
        from .pipeline import vocabulary_for
        from .vocabularies import read_training_descriptors

        cfg = self.cfg
        if cfg["vocab_train"]:
            x = read_training_descriptors(cfg["vocab_train"], cfg["vocab_limit"] or None, ctx.seed)
            key = {"train": str(cfg["vocab_train"]), "limit": cfg["vocab_limit"]}
        else:
            x = db_x
            if cfg["vocab_limit"] and len(x) > cfg["vocab_limit"]:
                x = x[np.sort(ctx.rng(17).choice(len(x), cfg["vocab_limit"], replace=False))]
            key = {"manifest": data.manifest, "features": cfg["local_features"],
                   "max_features": cfg["max_features"], "limit": cfg["vocab_limit"]}
        if len(x) == 0:
            raise UserError(f"{data.name}: no local features to learn a vocabulary from")
        source = str(cfg["vocab_train"]) if cfg["vocab_train"] else f"the database images of {data.name}"
        check_at_most(cfg["k"], len(x), "k", f"method '{self.name}'", f"there are {len(x)} training "
                      f"descriptors (from {source}, vocab_limit={cfg['vocab_limit'] or 'all'})")
        voc = vocabulary_for(x, cfg["vocabulary"], cfg["k"], ctx, key, niter=cfg["vocab_niter"],
                             data=None if cfg["vocab_train"] else data, **vocabulary_options(cfg))
        if db_x.shape[1] != voc.dim:
            raise UserError(f"{self.name}: vocabulary has dimension {voc.dim} but descriptors have {db_x.shape[1]}")
        return voc

    def run(self, data, ctx) -> dict:
        from .features import stack_features
        from .pipeline import local_features

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
            ranks = ranks_from_scores(scores)
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
