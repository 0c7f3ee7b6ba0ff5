"""Deep spatial matching (DSM): local features and visual words from CNN activations.

Siméoni, Avrithis & Chum, *Local features and visual words emerge in activations*, CVPR 2019.
The last convolutional activation map X (C, h, w) of the network that gives the global
descriptor (here the one named by ``descriptor``, default GeM on the ImageNet
EfficientNet-Lite0 of :mod:`visrep.methods.cnn_backbones`) holds, in each channel, blobs that
behave as local features; the channel index acts as their visual word ("no vocabulary
needed", slide 60). The global descriptor ranks the database; the top ``shortlist`` images are
spatially verified with these features by fast spatial matching (single-correspondence
hypotheses, best by inliers, least-squares affine refinement: :func:`visrep.methods.geometry.
fast_spatial_matching`) and re-ordered by their inlier count (ties keep the global order).

Detection (:func:`activation_features`): in every channel, the local maxima of the map
(3 x 3 neighbourhood, value >= ``min_activation`` x the channel's maximum, at most
``per_channel`` strongest per channel). Each maximum's region is the connected set of cells
around it with activation >= half the peak (a single-threshold extremal region); the feature
frame is (x, y, scale, 0): the activation-weighted centroid of the region and sqrt(region
area), both mapped to image pixels by the stride of the map; orientation 0 (upright).
Tentative correspondences: features of the same channel in the two images, restricted to the
``channels`` channels with the largest values in the query's global descriptor (the channels
that carry the global similarity; without this selection the about 1000 channels of a 12 x 12
map give about one feature per channel everywhere and random inliers abound: measured
mAP 0.51 on sample-views with all channels).

Deviations from the paper, stated plainly:
- the paper detects MSER regions on each channel and uses their ellipses (affine frames); here
  one extremal region per local maximum at a fixed relative threshold (half the peak) gives
  an upright, isotropic frame (3-dof hypotheses: translation + scale) -- the talk's
  example slide ("local maxima on each activation channel are local features") describes
  this simpler variant;
- the network is the ImageNet EfficientNet-Lite0 (no fine-tuned VGG/ResNet weights here), at a
  single scale, and no diffusion follows the re-ranking (the talk's table reports DSM with
  diffusion);
- the inlier threshold is in cells of the activation map (``threshold`` x the stride, in
  pixels of the database image).
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.cache import code_version
from visrep.errors import UserError
from visrep.features import retrieval_features
from visrep.params import Param
from visrep.registry import register

from .geometry import fast_spatial_matching, word_correspondences
from .spatial_verification import rerank


def activation_features(x: np.ndarray, image_hw: tuple[int, int], per_channel: int = 2,
                        min_activation: float = 0.1, region_level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Local features of one activation map.

    x: (C, h, w) float, non-negative. image_hw: (H, W) pixels of the image the map describes.
    Returns (channels (n,) int64, frames (n, 4) float64 (x, y, scale, 0) in image pixels).
    """
    from scipy import ndimage

    x = np.asarray(x, np.float32)
    if x.ndim != 3 or min(x.shape) < 1:
        raise UserError(f"activation_features: expected a (C, h, w) map, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError("activation_features: the activation map has NaN or infinite values")
    C, h, w = x.shape
    H, W = image_hw
    sy, sx = H / h, W / w
    peak = x.max(axis=(1, 2))
    mx = ndimage.maximum_filter(x, size=(1, 3, 3), mode="constant", cval=-np.inf)
    cand = (x == mx) & (x > 0) & (x >= min_activation * peak[:, None, None])
    ch, ii, jj = np.nonzero(cand)
    if len(ch) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    val = x[ch, ii, jj]
    order = np.lexsort((-val, ch))                       # by channel, strongest first
    ch, ii, jj, val = ch[order], ii[order], jj[order], val[order]
    rank = np.arange(len(ch)) - np.searchsorted(ch, ch)  # rank inside its channel
    keep = rank < per_channel
    ch, ii, jj, val = ch[keep], ii[keep], jj[keep], val[keep]
    frames = np.zeros((len(ch), 4))
    for n, (c, i, j, v) in enumerate(zip(ch, ii, jj, val)):
        lab, _ = ndimage.label(x[c] >= region_level * v)
        region = lab == lab[i, j]
        wts = x[c] * region
        tot = wts.sum()
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = (wts * yy).sum() / tot, (wts * xx).sum() / tot
        frames[n] = ((cx + 0.5) * sx, (cy + 0.5) * sy, np.sqrt(region.sum()) * np.sqrt(sx * sy), 0.0)
    return ch.astype(np.int64), frames


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
        key = {"detector": 1, "descriptor": desc.name, "params": desc.cfg, "code": [code_version(activation_features),
               code_version(type(desc))], "per_channel": cfg["per_channel"], "min_activation": cfg["min_activation"],
               "manifest": data.manifest, "loader": ctx.loader_version}

        def run(split):
            n = data.n_db if split == "db" else data.n_queries
            get = data.db_image if split == "db" else data.query_image
            net = desc.backbone()
            out = []
            for i in ctx.progress(range(n), desc=f"dsm {split} activations", total=n, unit="img"):
                img = get(i)
                fm = next(iter(desc.feature_maps(img, net)))
                ch, fr = activation_features(fm, img.shape[:2], cfg["per_channel"], cfg["min_activation"])
                stride = np.sqrt(img.shape[0] * img.shape[1] / (fm.shape[1] * fm.shape[2]))
                out.append((ch, fr, float(stride)))
            return out
        return {s: ctx.cache.get_or_compute("dsm_features", {**key, "split": s}, lambda s=s: run(s))
                for s in ("db", "query")}

    def run(self, data, ctx) -> dict:
        from .knn_search import timed_search
        if not data.has_images:
            raise UserError(f"dsm needs images, and {data.name} was loaded without them")
        desc = self._descriptor()
        t0 = time.perf_counter()
        db, q = retrieval_features(data, ctx, desc)
        _, initial, per_q_initial = timed_search(db, q, ctx)
        feats = self.local(data, ctx, desc)
        N = min(self.cfg["shortlist"], data.n_db)
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
                "stats": {"correspondences_per_pair": n_corr / n_pairs,
                          "features_per_image": float(np.mean([len(c) for c, _, _ in feats["db"]])) if feats["db"] else 0.0}}
