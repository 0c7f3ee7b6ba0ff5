"""Family base class and run-context helpers of this chapter (talk Part I: exploring photo collections).

:class:`CollectionRetrieval` holds what total recall and the scene-map methods share: local
features (:func:`visrep.methods.local.pipeline.local_features`), a vocabulary learned and cached
as for BoW, the visual words of every image, the tf-idf inverted file of the database
(Sivic & Zisserman ICCV 2003, :func:`visrep.methods.local.bow.bow_vectors`) and spatial
verification of a pair of images (:func:`visrep.methods.collections.scene_maps.verify_pair`,
fast spatial matching of Philbin et al. CVPR 2007 on same-word correspondences).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from visrep.methods.local.pipeline import VOCAB_PARAMS, LocalFeatureRetrieval

from visrep.params import Param

VERIFY_PARAMS = (
    Param("shortlist", int, 100, "spatially verify the top N of each ranking", low=1),
    Param("threshold", float, 8.0, "inlier threshold of spatial verification: transfer error in pixels",
          low=0, open_low=True),
    Param("min_inliers", int, 20, "an image is verified (a neighbour) with at least this many inliers "
          "(20 in Chum et al. 2007)", low=1),
    Param("max_per_word", int, 20, "tentative correspondences: skip words with more features than this in "
          "either image (0 = keep all)", low=0),
)

#: geo clustering / location vote (Avrithis et al. 2010, VIRaL): KVQ radius in metres
GEO_PARAMS = (
    Param("geo_radius", float, 1000.0, "KVQ radius of geo clustering in metres: every image lies within this "
          "great-circle distance of its cluster's centre, so members are at most 2 km apart (the authors' "
          "example: images taken 2 km apart are unlikely to show the same building)", low=0, open_low=True),
)


#: solver of KVQ's covering problem (geo and visual clustering): the paper's LP or the greedy simplification
KVQ_PARAMS = (
    Param("kvq", str, "lp", "solver of KVQ's covering problem (fewest centres with every image within the radius "
          "of one): lp = Tipping & Schölkopf's linear program min sum(alpha) s.t. K alpha >= 1, alpha >= 0 (HiGHS; "
          "centres: alpha > 1e-6), the paper's; greedy = the greedy set-cover approximation (a simplification). "
          "Where the LP optimum is fractional (dense geo-tags) lp keeps every point with alpha > 0: far more "
          "centres than greedy (5000 random points: ~1800 vs 210; see methods/collections/kvq.py)",
          choices=("lp", "greedy")),
)


def geo_meta(data, where: str) -> dict:
    """The per-database-image metadata ``data.extra["meta"]`` (lat, lon (n_db,) degrees, tags, scene_tags);
    MissingDataError naming `where` when the dataset has none (sample-views carries proxy ones)."""
    from visrep.errors import MissingDataError
    meta = (getattr(data, "extra", None) or {}).get("meta")
    if not meta or "lat" not in meta or len(meta["lat"]) != data.n_db:
        raise MissingDataError(f"{where}: dataset {data.name} carries no per-image geo-tags (extra['meta'] with "
                               f"lat, lon, tags for its {data.n_db} database images); sample-views has proxy ones")
    return meta


@dataclass
class Collection:
    """Words, frames and the tf-idf index of a dataset.

    db_words / q_words: per image (n_i,) int64; db_frames / q_frames: per image (n_i, 4) float64;
    D: (n_db, k) CSR, rows L2-normalised tf-idf; idf (k,); regions (n_q, 4) query regions
    (x0, y0, x1, y1) in query pixels; assign_per_query: seconds to assign one query's descriptors
    to words (part of every method's query time, as in BoW's).
    """

    db_words: list
    db_frames: list
    q_words: list
    q_frames: list
    D: object
    idf: np.ndarray
    k: int
    regions: np.ndarray
    vocabulary_seconds: float
    assign_per_query: float


class CollectionRetrieval(LocalFeatureRetrieval):
    """Base of `total-recall`, `scene-maps`, `scene-maps-qe`: BoW on an inverted file plus
    spatial verification; subclasses implement ``run`` with :meth:`collection` and :meth:`verify`."""

    params = VOCAB_PARAMS + VERIFY_PARAMS
    model = "affine"

    def collection(self, data, ctx) -> Collection:
        from visrep.methods.local.bow import bow_vectors
        from visrep.methods.local.features import stack_features
        from visrep.methods.local.inverted_file import idf_weights
        from visrep.methods.local.pipeline import local_features
        from visrep.methods.local.vocabularies import assign

        cfg = self.cfg
        feats = local_features(data, ctx, cfg["local_features"], cfg["max_features"] or None)
        db_desc, db_frames = feats["db"]
        q_desc, q_frames = feats["query"]
        x, ids = stack_features(db_desc, f"{data.name} database")
        with ctx.phase("offline"):
            voc = self.vocabulary(data, ctx, x)
            words = assign(x, voc, 1, "database descriptors")[0][:, 0] if len(x) else np.zeros(0, np.int64)
            df = np.bincount(np.unique(ids * voc.k + words) % voc.k, minlength=voc.k) if len(words) \
                else np.zeros(voc.k)
            idf = idf_weights(df, data.n_db)
            D = bow_vectors(words, ids, data.n_db, voc.k, idf, False)
        split = np.cumsum(np.bincount(ids, minlength=data.n_db))[:-1]
        t0 = time.perf_counter()
        q_words = [assign(np.asarray(d, np.float32).reshape(-1, voc.dim), voc, 1, "query descriptors")[0][:, 0]
                   for d in q_desc]
        assign_per_query = (time.perf_counter() - t0) / max(data.n_queries, 1)
        frames = [np.asarray(f, np.float64).reshape(-1, 4) for f in db_frames]
        qf = [np.asarray(f, np.float64).reshape(-1, 4) for f in q_frames]
        return Collection(np.split(words, split), frames, q_words, qf, D, idf, voc.k,
                          self.regions(data, qf), voc.seconds, assign_per_query)

    @staticmethod
    def regions(data, q_frames) -> np.ndarray:
        """(n_q, 4) query regions: the query image's bounds (queries are their cropped region, as
        in revisitop); without images, the bounding box of the query's features."""
        out = np.zeros((data.n_queries, 4))
        for j in range(data.n_queries):
            if data.has_images:
                h, w = data.query_image(j).shape[:2]
                out[j] = (0, 0, w, h)
            elif len(q_frames[j]):
                f = q_frames[j]
                out[j] = (*f[:, :2].min(0), *f[:, :2].max(0))
        return out

    def verify(self, fa, wa, fb, wb):
        """(inliers, T (3, 3) A -> B or None) of one pair (fast spatial matching, ``self.model``)."""
        from .scene_maps import verify_pair
        return verify_pair(fa, wa, fb, wb, self.cfg["threshold"], self.model, self.cfg["max_per_word"] or None)
