"""The method plugins of methods/spatial/: `ransac`, `fsm`, `lowe-hough`, `hpm`, `dsm` (talk Part I: spatial matching).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.features import retrieval_features
from visrep.params import Param
from visrep.registry import register

from .activations import activation_features, image_stride
from .geometry import (
    fast_spatial_matching,
    one_to_one_count,
    ransac_homography,
    word_correspondences,
)
from .hough_pyramid import hough_pyramid_matching
from .lowe_hough import lowe_hough_matching
from .pipeline import SpatialReranking
from .verification import rerank


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
                                    getattr(self, "_rng", None), pairs=pairs)
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


@register
class LoweHough(SpatialReranking):
    name = "lowe-hough"
    summary = ("Lowe's Hough voting: re-rank a BoW (or kNN) shortlist by the inliers of the best Hough cluster "
               "(4-d similarity bins, 2 closest per dimension) verified by least-squares affine fitting")
    cite = ("Lowe, Object recognition from local scale-invariant features, ICCV 1999, Sec. 7; Distinctive image "
            "features from scale-invariant keypoints, IJCV 2004, Sec. 7.3-7.4")
    params = SpatialReranking.params + (
        Param("location_fraction", float, 0.25, "location bin width: this fraction of the maximum projected "
              "training image dimension (0.25 in the paper)", low=0, open_low=True),
        Param("scale_factor", float, 2.0, "scale bins: a factor of this (2 in the paper)", low=1, open_low=True),
        Param("orientation_bin", float, 30.0, "orientation bin width in degrees (30 in the paper; must divide 360)",
              low=0, high=180, open_low=True),
        Param("min_votes", int, 3, "clusters: bins with at least this many entries (3 in the paper)", low=1),
    )

    def verify(self, fa, fb, pairs, words, idf):
        c = self.cfg
        return float(lowe_hough_matching(fa, fb, pairs, None, c["location_fraction"], c["scale_factor"],
                                         c["orientation_bin"], c["min_votes"])["score"])


@register
class HPM(SpatialReranking):
    name = "hpm"
    summary = "Hough pyramid matching: re-rank a BoW (or kNN) shortlist by relaxed 4-d Hough-pyramid grouping"
    cite = ("Tolias & Avrithis, Speeded-up, relaxed spatial matching, ICCV 2011; Hough pyramid matching, "
            "IJCV 2013")
    params = SpatialReranking.params + (
        Param("levels", int, 5, "pyramid levels L (finest level: 2^(L-1) bins per dimension)", low=1, high=12),
        Param("max_scale", float, 10.0, "relative scale range [1/max_scale, max_scale)", low=1.0, open_low=True),
        Param("idf_weight", bool, True, "weight correspondence strengths by the idf of their visual word"),
    )

    def verify(self, fa, fb, pairs, words, idf):
        labels = words if words is not None else None
        weights = idf[words] if (self.cfg["idf_weight"] and words is not None and idf is not None) else None
        return hough_pyramid_matching(fa, fb, pairs, labels=labels, weights=weights, levels=self.cfg["levels"],
                                      max_scale=self.cfg["max_scale"])["score"]


@register
class DSM(Method):
    name = "dsm"
    task = "retrieval"
    summary = "deep spatial matching: re-rank a CNN global-descriptor shortlist with local features from its activations"
    cite = "Siméoni, Avrithis & Chum, Local features and visual words emerge in activations, CVPR 2019"
    params = (
        Param("descriptor", str, "gem", "global descriptor (a CNN pooling method, optionally with parameters, "
              "e.g. 'gem:imsize=512'); its backbone also gives the local features"),
        Param("shortlist", int, 100, "re-rank the top N of the global ranking", low=1),
        Param("channels", int, 50, "use only the features of the query's strongest channels: the top this many of "
              "its global descriptor (0 = all channels)", low=0),
        Param("per_channel", int, 1, "at most this many local maxima per channel", low=1),
        Param("min_activation", float, 0.1, "keep maxima >= this fraction of the channel's maximum", low=0, high=1),
        Param("threshold", float, 1.0, "inlier threshold in activation-map cells (x stride pixels)",
              low=0, open_low=True),
        Param("max_per_word", int, 0, "skip channels with more features than this in either image (0 = keep all)",
              low=0),
    )

    def _descriptor(self):
        from visrep.features import parse_descriptor
        from visrep.registry import methods
        name, params = parse_descriptor(self.cfg["descriptor"])
        d = methods.create(name, **params)
        if not hasattr(d, "feature_maps"):
            raise UserError(f"dsm: descriptor '{name}' is not a CNN pooling descriptor (it has no activation maps)")
        return d

    def local(self, data, ctx, desc):
        cfg = self.cfg

        def run(split):
            n = data.n_db if split == "db" else data.n_queries
            get = data.db_image if split == "db" else data.query_image
            net = desc.backbone(ctx.torch_device())
            out = []
            for i in ctx.progress(range(n), desc=f"dsm {split} activations", total=n, unit="img"):
                img = get(i)
                fm = next(iter(desc.feature_maps(img, net, ctx)))
                stride = image_stride(img.shape[:2], fm.shape[1:], desc.cfg["imsize"], desc.scales[0])
                ch, fr = activation_features(fm, img.shape[:2], cfg["per_channel"], cfg["min_activation"],
                                             stride=stride)
                out.append((ch, fr, float(stride)))
            return out
        what = {"detector": 2, "descriptor": desc.name, "params": desc.cfg, "per_channel": cfg["per_channel"],
                "min_activation": cfg["min_activation"]}
        return ctx.per_split(data, "dsm_features", what, [activation_features, type(desc)], run)

    def run(self, data, ctx) -> dict:
        from visrep.methods.search.pipeline import timed_search
        if not data.has_images:
            raise UserError(f"dsm needs images, and {data.name} was loaded without them")
        desc = self._descriptor()
        t0 = time.perf_counter()
        db, q = retrieval_features(data, ctx, desc)
        _, initial, per_q_initial = timed_search(db, q, ctx)
        feats = self.local(data, ctx, desc)
        N = min(self.cfg["shortlist"], data.n_db)  # "the top N": above the database, all of it (recorded in stats)
        spatial = np.zeros((N, data.n_queries))
        t_verify, n_corr = 0.0, 0
        with ctx.phase("verify"):
            for j in range(data.n_queries):
                qc, qf, _ = feats["query"][j]
                if self.cfg["channels"]:
                    top = np.argsort(-q[j], kind="stable")[:self.cfg["channels"]]
                    sel = np.isin(qc, top)
                    qc, qf = qc[sel], qf[sel]
                for r in range(N):
                    i = int(initial[r, j])
                    dc, dfr, stride = feats["db"][i]
                    ts = time.perf_counter()
                    pairs = word_correspondences(qc, dc, self.cfg["max_per_word"] or None)
                    res = fast_spatial_matching(qf, dfr, pairs, self.cfg["threshold"] * stride, "affine")
                    spatial[r, j] = res["score"]
                    t_verify += time.perf_counter() - ts
                    n_corr += len(pairs)
        ranks = rerank(np.asarray(initial), spatial)
        n_pairs = max(N * data.n_queries, 1)
        return {"ranks": ranks,
                "timings": {"query": (time.perf_counter() - t0) / max(data.n_queries, 1), "initial": per_q_initial,
                            "verify_per_pair": t_verify / n_pairs},
                "stats": {"correspondences_per_pair": n_corr / n_pairs, "shortlist": N,
                          "features_per_image": float(np.mean([len(c) for c, _, _ in feats["db"]])) if feats["db"] else 0.0}}
