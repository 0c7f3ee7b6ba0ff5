"""Family base classes of this chapter (talk Part II: unsupervised object discovery).

:class:`SaliencyPooling` — a global descriptor pooled from a saliency map: the backbone's last
convolutional map x (C, h, w) (:mod:`visrep.methods.cnn.backbones`, default the real ImageNet
EfficientNet-Lite0, one scale), a saliency map s (h, w) from the hook ``saliency``, optionally
EGM fitted to it (:mod:`.egm`; the pooling weight is then the fitted mixture density), and
saliency-weighted GeM (:func:`.saliency.weighted_gem`), L2-normalized -> (C,).

:class:`DatasetSaliencyPooling` — the same with object saliency (OS), which needs the whole
database: its ``run`` extracts every map once (cached), builds the region graph of the database
(:mod:`.centrality`), regresses the centrality to every patch of every database and query image
(a database image's own regions excluded, so it is treated as unseen like a query), pools, and
ranks by inner product.

What is our reading rather than the papers' stated recipe (we could not read the full papers
here): the regions of the graph are the R-MAC grid (L = 3) of every database image; the
regression runs in descriptor space, from the MAC of a 3 x 3 patch to its k nearest regions;
the EGM output is used as a 2-D pooling weight (the fitted mixture density), not as boxes; the
backbone is ImageNet EfficientNet-Lite0 at one scale, with no whitening.
"""
from __future__ import annotations

import numpy as np
from visrep.methods.search.pipeline import Descriptor

from visrep.errors import UserError
from visrep.features import l2_normalize
from visrep.params import Param

from .egm import egm_fit, mixture_map
from .saliency import weighted_gem

POOL_PARAMS = (
    Param("arch", str, "efficientnet_lite0", "backbone: a timm or torchvision model name"),
    Param("weights", str, None, "local weights file (state dict); None = the packaged ImageNet EfficientNet-Lite0"),
    Param("imsize", int, 1024, "longer image side before the network (never upscaled)", low=16),
    Param("p", float, 3.0, "GeM exponent of the saliency-weighted pooling (3, as GeM)", low=1.0),
)
EGM_PARAMS = (
    Param("sigma0", float, 1.0, "initial standard deviation of every EGM component, in map cells",
          low=0.0, open_low=True),
    Param("tau", float, 0.5, "EGM purge threshold on the relative self-responsibility rho (ours)",
          low=0.0, high=1.0, open_low=True),
    Param("egm_iter", int, 30, "maximum EGM iterations", low=1),
)
GRAPH_PARAMS = (
    Param("L", int, 3, "scales of the R-MAC region grid whose regions are the graph's nodes", low=1, high=8),
    Param("k", int, 10, "nearest neighbours per region in the graph and in the regression", low=1),
    Param("gamma", float, 3.0, "affinity power: w = [cosine]_+^gamma (3, as the diffusion papers)", low=0.0),
    Param("centrality", str, "degree", "node centrality: weighted degree or PageRank",
          choices=("degree", "pagerank")),
    Param("patch", int, 3, "side of the patch (map cells) whose MAC is regressed at each position", low=1),
)


class SaliencyPooling(Descriptor):
    """Pool the last conv map under a saliency map; subclasses define ``saliency(x) -> (h, w)``."""

    output_tasks = ("retrieval",)
    use_egm = False

    def backbone(self, device: str = "cpu"):
        from visrep.methods.cnn.backbones import load_backbone
        return load_backbone(self.cfg["arch"], self.cfg["weights"], device)

    def feature_map(self, image, net=None, ctx=None) -> np.ndarray:
        """(C, h, w) float32 last convolutional activations of one image (through the job's cache when `ctx` is given)."""
        from visrep.methods.cnn.pipeline import image_features
        net = net or self.backbone()
        return image_features(net, image, self.cfg["imsize"], 1.0, ctx)

    def saliency(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pooling_weight(self, s: np.ndarray) -> tuple[np.ndarray, int]:
        """(weight map (h, w), number of EGM components or 0) for a saliency map s (h, w)."""
        if not self.use_egm:
            return s, 0
        res = egm_fit(s, self.cfg["sigma0"], self.cfg["tau"], self.cfg["egm_iter"])
        return mixture_map(res, s.shape), res.k

    def pool_with(self, x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, int]:
        w, k = self.pooling_weight(s)
        return l2_normalize(weighted_gem(x, w, self.cfg["p"])), k

    def describe_one(self, image, net=None, ctx=None) -> np.ndarray:
        x = self.feature_map(image, net, ctx)
        return self.pool_with(x, self.saliency(x))[0]

    def describe(self, images, n: int, ctx, desc: str = "describe"):
        net = self.backbone(ctx.torch_device())
        vecs = [self.describe_one(img, net, ctx) for img in ctx.progress(images, desc=desc, total=n, unit="img")]
        return np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, 0), np.float32)


class DatasetSaliencyPooling(SaliencyPooling):
    """Saliency from the whole database (OS): ``run`` builds the region graph, then pools every image."""

    def describe(self, images, n, ctx, desc="describe"):
        raise UserError(f"'{self.name}' computes object saliency over the whole database: run it as the "
                        f"method (visrep run --method {self.name}), not as the descriptor of another method")

    def maps(self, data, ctx) -> dict:
        """{"db": [(C, h, w)], "query": [(C, h, w)]} float32 maps, cached per split."""
        if not data.has_images:
            raise UserError(f"'{self.name}' needs images, but {data.name} was loaded without images")
        what = {"arch": self.cfg["arch"], "weights": self.cfg["weights"], "imsize": self.cfg["imsize"]}

        def compute(split):
            net = self.backbone(ctx.torch_device())
            get, n = (data.db_image, data.n_db) if split == "db" else (data.query_image, data.n_queries)
            return [self.feature_map(get(i), net, ctx).astype(np.float32)
                    for i in ctx.progress(range(n), desc=f"{self.name} maps {split}", total=n, unit="img")]
        return ctx.per_split(data, "discovery_maps", what, [type(self)], compute)

    def region_saliency(self, db_maps):
        """(regions (N, C), owner (N,), centrality (N,)) of the database maps."""
        from visrep.methods.cnn.pooling import mac, regional_vectors

        from .centrality import degree_centrality, pagerank_centrality, region_graph
        vecs, owner = [], []
        for i, x in enumerate(db_maps):
            r = regional_vectors(x, self.cfg["L"], mac, include_full=False)
            vecs.append(r)
            owner.append(np.full(len(r), i))
        v, owner = np.concatenate(vecs), np.concatenate(owner)
        W = region_graph(v, owner, self.cfg["k"], self.cfg["gamma"])
        c = degree_centrality(W) if self.cfg["centrality"] == "degree" else pagerank_centrality(W)
        return v, owner, c

    def os_map(self, x, v, c, exclude=None) -> np.ndarray:
        """OS map (h, w) of one activation map x (C, h, w): centrality regressed to its patches."""
        from .centrality import patch_descriptors, regress_saliency
        pd = patch_descriptors(x, self.cfg["patch"])
        return regress_saliency(pd, v, c, self.cfg["k"], self.cfg["gamma"], exclude).reshape(x.shape[1:])

    def run(self, data, ctx) -> dict:
        from visrep.methods.search.knn import search
        maps = self.maps(data, ctx)
        with ctx.phase("offline"):
            v, owner, c = self.region_saliency(maps["db"])
            db, ks = [], []
            for i, x in enumerate(maps["db"]):
                d, k = self.pool_with(x, self.os_map(x, v, c, owner == i))
                db.append(d)
                ks.append(k)
        with ctx.phase("online"):
            q = []
            for x in maps["query"]:
                d, k = self.pool_with(x, self.os_map(x, v, c))
                q.append(d)
                ks.append(k)
            _, ranks = search(np.stack(db).astype(np.float32), np.stack(q).astype(np.float32))
        stats = {"regions": len(v), "regions_with_links": int((c > 0).sum())}
        if self.use_egm:
            stats["egm_components_mean"] = float(np.mean(ks))
        return {"ranks": ranks, "timings": {"query": ctx.timings["online"] / max(len(q), 1)}, "stats": stats}
