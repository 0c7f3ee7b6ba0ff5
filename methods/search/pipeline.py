"""Family base classes and run-context helpers of this chapter (talk: the baselines every chapter compares with).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time

from visrep.api import Method
from visrep.features import retrieval_features
from visrep.params import check_at_most

from .knn import search


class Descriptor(Method):
    """A method that turns images into vectors (task ``descriptor``): the family base of the
    descriptor methods (``histogram`` here, the CNN descriptors in :mod:`visrep.methods.cnn.pipeline`).

    Implement ``describe_one(image) -> (d,) vector`` or, for batched extraction (CNNs),
    override ``describe(images, n, ctx, desc)`` -> (n, d) float32. Retrieval methods call it
    through :func:`visrep.features.retrieval_features`, which caches the result.
    """

    task = "descriptor"
    output_tasks = ("retrieval",)  # run() ranks the dataset by nearest neighbours on these vectors

    def describe_one(self, image):
        raise NotImplementedError

    def describe(self, images, n: int, ctx, desc: str = "describe"):
        import numpy as np
        vecs = [np.asarray(self.describe_one(img), dtype=np.float32)
                for img in ctx.progress(images, desc=desc, total=n, unit="img")]
        return np.stack(vecs) if vecs else np.zeros((0, 0), np.float32)

    def run(self, data, ctx) -> dict:
        db, q = retrieval_features(data, ctx, self)
        with ctx.phase("online"):
            _, ranks = search(db, q)
        return {"ranks": ranks, "timings": {"query": ctx.timings["online"] / max(len(q), 1)}}


def timed_search(db, q, ctx, **kw):
    """`search` timed under the context's "online" phase; returns (sims, ranks, seconds per query)."""
    t0 = time.perf_counter()
    with ctx.phase("online"):
        sims, ranks = search(db, q, **kw)
    return sims, ranks, (time.perf_counter() - t0) / max(q.shape[0], 1)


def check_topk(method, data) -> None:
    """A `topk` above the number of database images is an error (:func:`visrep.params.check_at_most`;
    topk=None ranks the whole database)."""
    check_at_most(method.cfg["topk"], data.n_db, "topk", f"method '{method.name}'",
                  f"{data.name} has {data.n_db} database images", "or topk=None for the whole database")
