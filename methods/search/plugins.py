"""The method plugins of methods/search/: `knn`, `aqe`, `alpha-qe`, `histogram` (talk: the baselines every chapter compares with).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

from visrep.api import Method
from visrep.features import DESCRIPTOR_PARAM, retrieval_features
from visrep.params import Param, check_at_most
from visrep.registry import register

from .histogram import histogram_descriptor
from .knn import search
from .pipeline import Descriptor, check_topk, timed_search
from .query_expansion import expand_queries


@register
class KNN(Method):
    name = "knn"
    task = "retrieval"
    summary = "exact nearest-neighbour ranking (faiss flat index)"
    cite = "baseline: rank the database by descriptor similarity"
    params = (
        DESCRIPTOR_PARAM,
        Param("metric", str, "ip", "'ip' inner product (cosine on L2-normalized vectors) or 'l2'", choices=("ip", "l2")),
        Param("topk", int, None, "rank only the top k (None = the whole database)", low=1),
    )

    def run(self, data, ctx) -> dict:
        check_topk(self, data)
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        _, ranks, per_query = timed_search(db, q, ctx, k=self.cfg["topk"], metric=self.cfg["metric"])
        return {"ranks": ranks, "timings": {"query": per_query}}


class _QueryExpansion(Method):
    task = "retrieval"
    alpha_fixed: float | None = None

    def run(self, data, ctx) -> dict:
        check_at_most(self.cfg["n"], data.n_db, "n", f"method '{self.name}'",
                      f"{data.name} has {data.n_db} database images")
        check_topk(self, data)
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        n = self.cfg["n"]
        alpha = self.alpha_fixed if self.alpha_fixed is not None else self.cfg["alpha"]
        t0 = time.perf_counter()
        with ctx.phase("online"):
            sims, ranks = search(db, q, k=n)
            q2 = expand_queries(db, q, sims, ranks, n, alpha)
            _, ranks = search(db, q2, k=self.cfg["topk"])
        return {"ranks": ranks, "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}


@register
class AQE(_QueryExpansion):
    name = "aqe"
    summary = "average query expansion: re-query with the mean of the query and its top-n"
    cite = "Chum, Philbin, Sivic, Isard & Zisserman, Total Recall, ICCV 2007"
    alpha_fixed = 0.0
    params = (
        DESCRIPTOR_PARAM,
        Param("n", int, 10, "number of top-ranked images averaged into the query", low=1),
        Param("topk", int, None, "rank only the top k (None = the whole database)", low=1),
    )


@register
class AlphaQE(_QueryExpansion):
    name = "alpha-qe"
    summary = "alpha query expansion: similarity^alpha weighted mean of the query and its top-n"
    cite = "Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human annotation, TPAMI 2019"
    params = (
        DESCRIPTOR_PARAM,
        Param("n", int, 10, "number of top-ranked images in the weighted mean", low=1),
        Param("alpha", float, 3.0, "exponent of the similarity weights (0 = AQE)", low=0.0),
        Param("topk", int, None, "rank only the top k (None = the whole database)", low=1),
    )


@register
class Histogram(Descriptor):
    name = "histogram"
    summary = "gradient-orientation (whole + 2x2) and hue-saturation histograms, 72-D (no learning)"
    cite = "Dalal & Triggs, CVPR 2005 (orientation histograms); Swain & Ballard, IJCV 1991 (colour histograms)"
    params = (Param("size", int, 128, "images are resized to size x size before the histograms", low=8),)

    def describe_one(self, image):
        return histogram_descriptor(image, self.cfg["size"])
