"""asv benchmarks for object discovery (Part II, slides 61-67): the kernels behind FS.EGM / OS.EGM.

- EGM on a 2-D saliency map of side 12, 24, 32 (the last conv map of a 384, 768, 1024 px image
  at stride 32): a fixed two-blob map plus seeded noise;
- the region graph (kNN affinity over N regional vectors, d = 1280) and its degree centrality;
- the regression of centralities to the 144 patches of one 12 x 12 map;
- saliency-weighted GeM of a (1280, 24, 24) map.

Inputs are seeded arrays (timings of the same operations the plugins run on real activations).
Run as a script (``python benchmarks/bench_discovery.py``) to print the times once (best of 3).
"""
from __future__ import annotations

import time

import numpy as np


def _saliency(side: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    rr, cc = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    s = np.exp(-((rr - side / 3) ** 2 + (cc - side / 3) ** 2) / (2 * (side / 10) ** 2))
    s += 0.5 * np.exp(-((rr - 2 * side / 3) ** 2 + (cc - 0.7 * side) ** 2) / (2 * (side / 8) ** 2))
    return s + 0.05 * rng.random((side, side))


def _regions(n: int, d: int = 1280) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    v = np.maximum(rng.normal(size=(n, d)), 0).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True), np.arange(n) // 14


class EGM:
    params = ((12, 24, 32),)
    param_names = ("side",)
    timeout = 300

    def setup(self, side):
        self.s = _saliency(side)

    def time_egm_fit(self, side):
        from visrep.methods.discovery.egm import egm_fit
        egm_fit(self.s)


class RegionGraph:
    params = ((1000, 4000),)
    param_names = ("regions",)
    timeout = 300

    def setup(self, n):
        self.v, self.owner = _regions(n)

    def time_graph_and_degree(self, n):
        from visrep.methods.discovery.centrality import degree_centrality, region_graph
        degree_centrality(region_graph(self.v, self.owner, k=10))


class Regression:
    def setup(self):
        from visrep.methods.discovery.centrality import degree_centrality, region_graph
        self.v, owner = _regions(1200)
        self.c = degree_centrality(region_graph(self.v, owner))
        rng = np.random.default_rng(2)
        self.x = np.maximum(rng.normal(size=(1280, 12, 12)), 0).astype(np.float32)

    def time_regress_one_map(self):
        from visrep.methods.discovery.centrality import (
            patch_descriptors,
            regress_saliency,
        )
        regress_saliency(patch_descriptors(self.x, 3), self.v, self.c)


class WeightedGeM:
    def setup(self):
        rng = np.random.default_rng(3)
        self.x = rng.random((1280, 24, 24)).astype(np.float32)
        self.s = _saliency(24)

    def time_weighted_gem(self):
        from visrep.methods.discovery.saliency import weighted_gem
        weighted_gem(self.x, self.s)


def main() -> None:
    def best(fn, reps=3):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    for side in EGM.params[0]:
        b = EGM()
        b.setup(side)
        print(f"egm_fit side {side}: {best(lambda b=b, side=side: b.time_egm_fit(side)) * 1e3:.1f} ms")
    for n in RegionGraph.params[0]:
        g = RegionGraph()
        g.setup(n)
        print(f"region graph + degree, {n} regions: {best(lambda g=g, n=n: g.time_graph_and_degree(n)) * 1e3:.1f} ms")
    r = Regression()
    r.setup()
    print(f"regression to one 12x12 map (1200 regions): {best(r.time_regress_one_map) * 1e3:.1f} ms")
    w = WeightedGeM()
    w.setup()
    print(f"weighted GeM (1280, 24, 24): {best(w.time_weighted_gem) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
