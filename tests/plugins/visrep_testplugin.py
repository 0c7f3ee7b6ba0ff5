"""A plugin module as an outside package would ship it (loaded through the entry point group
``visrep.plugins`` in tests): a tiny in-memory retrieval dataset and a deliberately slow method."""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Dataset, Method
from visrep.data import RetrievalData
from visrep.params import Param
from visrep.registry import register


@register
class ToyRetrieval(Dataset):
    name = "toy-retrieval"
    task = "retrieval"
    default_protocol = "oxford"
    summary = "3 clusters of 4 vectors, one query per cluster (tests only)"
    params = (Param("noise", float, 0.05, low=0),)

    def load(self, ctx):
        rng = np.random.default_rng(0)
        centres = np.eye(3, 8, dtype=np.float32)
        db = np.repeat(centres, 4, axis=0) + self.cfg["noise"] * rng.standard_normal((12, 8)).astype(np.float32)
        gnd = [{"ok": np.arange(4 * c, 4 * c + 4), "junk": np.zeros(0, np.int64)} for c in range(3)]
        return RetrievalData(name=self.name, db_names=[f"db{i}" for i in range(12)],
                             query_names=["q0", "q1", "q2"], gnd=gnd, db_features=db,
                             query_features=centres.copy(), manifest="toy")


@register
class SlowKNN(Method):
    name = "slow-knn"
    task = "retrieval"
    summary = "nearest neighbours after a pause (tests only)"
    params = (Param("sleep", float, 0.0, low=0), Param("tag", int, 0))

    def run(self, data, ctx):
        time.sleep(self.cfg["sleep"])
        sims = data.db_features @ data.query_features.T
        per_query = np.full(sims.shape[1], self.cfg["sleep"] / max(sims.shape[1], 1))
        return {"ranks": np.argsort(-sims, axis=0), "per_item_timings": {"query": per_query}}
