"""asv benchmarks for Part II manifold search: kNN graph build, diffusion by CG, fast spectral ranking.

Input: synthetic clustered unit descriptors (fixed seed): ``n`` vectors in d = 128 around
n / 50 Gaussian cluster centres, plus 16 queries drawn the same way. The graph is the
paper's (k = 50 with the vector itself, mutual, gamma = 3); for n >= 100k its kNN search is
faiss IVF (nlist = 4 sqrt(n), nprobe 16) -- exact flat search is O(n^2 d) and is benchmarked
at 10k only. Everything is sparse: no n x n matrix is ever formed.

``setup_cache`` builds each graph once per benchmark run (pickled by asv), so the CG / FSR
timings do not pay for it. ``peakmem_*`` give the memory of each stage.

Run as a script (``python benchmarks/bench_manifolds.py [n ...]``) to print one line per size
with the measured times and memory and a 1M extrapolation from the measured growth.
"""
from __future__ import annotations

import numpy as np

D = 128
K = 50
SIZES = (10_000, 100_000)


def clustered(n: int, d: int = D, seed: int = 0, n_queries: int = 16):
    rng = np.random.default_rng(seed)
    c = max(2, n // 50)
    centers = rng.standard_normal((c, d)).astype(np.float32)
    lab = rng.integers(0, c, n + n_queries)
    x = centers[lab] + 0.6 * rng.standard_normal((n + n_queries, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def _index_for(n):
    return "flat" if n <= 20_000 else "ivf"


def build(n):
    from visrep.methods.manifolds.knn_graph import build_graph
    x, q = clustered(n)
    return x, q, build_graph(x, k=K, index=_index_for(n))


class GraphBuild:
    params = SIZES
    param_names = ["n"]
    timeout = 1800

    def setup(self, n):
        self.x, _ = clustered(n)

    def time_graph_build(self, n):
        from visrep.methods.manifolds.knn_graph import build_graph
        build_graph(self.x, k=K, index=_index_for(n))

    def peakmem_graph_build(self, n):
        from visrep.methods.manifolds.knn_graph import build_graph
        build_graph(self.x, k=K, index=_index_for(n))


class Ranking:
    params = SIZES
    param_names = ["n"]
    timeout = 1800

    def setup_cache(self):
        import scipy.sparse as sp  # noqa: F401  (pickled graphs hold scipy matrices)
        out = {}
        for n in SIZES:
            x, q, g = build(n)
            out[n] = (x, q, g)
        return out

    def setup(self, cache, n):
        from visrep.methods.manifolds.diffusion import query_vectors
        self.x, self.q, self.g = cache[n]
        self.Y = query_vectors(self.x, self.q, kq=10, gamma=3.0)

    def time_cg_20_iterations_16_queries(self, cache, n):
        from visrep.methods.manifolds.diffusion import cg
        cg(self.g.W, self.Y, 0.99, tol=1e-6, maxiter=20)

    def time_cg_ranked_16_queries(self, cache, n):
        """CG then ranking with the similarity tie-break (the pipeline's online step)."""
        from visrep.methods.manifolds.diffusion import cg
        from visrep.methods.search.ranking import ranks_from_scores
        ranks_from_scores(cg(self.g.W, self.Y, 0.99, tol=1e-6, maxiter=20)[0], self.x @ self.q.T)

    def track_graph_mb(self, cache, n):
        return self.g.nbytes / 2**20
    track_graph_mb.unit = "MiB"


class FSR:
    """FSR offline (rank 100, shift-invert) and online, at 10k only.

    On these clustered graphs the top eigenvalues all crowd near 1 (n / 50 nearly separate
    clusters): plain Lanczos took 662 s for rank 100 at 10k, shift-invert about 3-12 s. At 100k
    the sparse LU of shift-invert is the bottleneck; that size is not benchmarked yet.
    """

    params = (10_000,)
    param_names = ["n"]
    timeout = 1800

    def setup_cache(self):
        from visrep.methods.manifolds.spectral_ranking import eigen
        out = {}
        for n in self.params:
            x, q, g = build(n)
            lam, U = eigen(g.W, 100, solver="shift-invert")
            out[n] = (x, q, g, lam, U)
        return out

    def setup(self, cache, n):
        from visrep.methods.manifolds.diffusion import query_vectors
        self.x, self.q, self.g, self.lam, self.U = cache[n]
        self.Y = query_vectors(self.x, self.q, kq=10, gamma=3.0)

    def time_fsr_offline_rank100(self, cache, n):
        from visrep.methods.manifolds.spectral_ranking import eigen
        eigen(self.g.W, 100, solver="shift-invert")

    def time_fsr_online_16_queries(self, cache, n):
        from visrep.methods.manifolds.spectral_ranking import fsr_rank
        fsr_rank(self.U, self.lam, self.Y, 0.99)

    def time_fsr_online_ranked_16_queries(self, cache, n):
        """FSR scores + ranking with the similarity tie-break (the pipeline's online step)."""
        from visrep.methods.manifolds.spectral_ranking import fsr_rank
        from visrep.methods.search.ranking import ranks_from_scores
        ranks_from_scores(fsr_rank(self.U, self.lam, self.Y, 0.99), self.x @ self.q.T)

    def time_fsr_online_top100_16_queries(self, cache, n):
        from visrep.methods.manifolds.spectral_ranking import fsr_rank
        from visrep.methods.search.ranking import ranks_from_scores
        ranks_from_scores(fsr_rank(self.U, self.lam, self.Y, 0.99), self.x @ self.q.T, topk=100)


def _measure(n):
    import resource
    import time

    from visrep.methods.manifolds.diffusion import cg, query_vectors
    from visrep.methods.manifolds.knn_graph import build_graph
    from visrep.methods.manifolds.spectral_ranking import eigen, fsr_rank
    x, q = clustered(n)
    t = time.perf_counter()
    g = build_graph(x, k=K, index=_index_for(n))
    t_graph = time.perf_counter() - t
    Y = query_vectors(x, q, kq=10, gamma=3.0)
    t = time.perf_counter()
    _, it, _ = cg(g.W, Y, 0.99, tol=1e-6, maxiter=20)
    t_cg = (time.perf_counter() - t) / q.shape[0]
    t = time.perf_counter()
    lam, U = eigen(g.W, 100, solver="shift-invert")
    t_eig = time.perf_counter() - t
    t = time.perf_counter()
    fsr_rank(U, lam, Y, 0.99)
    t_fsr = (time.perf_counter() - t) / q.shape[0]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "graph_s": t_graph, "graph_mb": g.nbytes / 2**20, "nnz": g.A.nnz, "isolated": g.n_isolated,
            "cg_query_s": t_cg, "eig100_s": t_eig, "U_mb": U.nbytes / 2**20, "fsr_query_s": t_fsr,
            "peak_rss_mb": rss}


if __name__ == "__main__":
    import json
    import sys
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    rows = []
    for n in sizes:
        rows.append(_measure(n))
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}), flush=True)
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        f = 1_000_000 / b["n"]
        g = np.log(f) / np.log(b["n"] / a["n"])
        est = {k: b[k] * (b[k] / a[k]) ** g for k in ("graph_s", "graph_mb", "cg_query_s", "eig100_s", "fsr_query_s")
               if a[k] > 0}
        print(json.dumps({"n": 1_000_000, "extrapolated_from": [a["n"], b["n"]],
                          **{k: round(v, 3) for k, v in est.items()}}))
