"""The method plugins of methods/manifolds/: `diffusion`, `rwr`, `fsr`, and on regional vectors `r-match`,
`regional-diffusion`, `regional-fsr` (talk Part II: searching on manifolds).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time
from functools import partial

import numpy as np
from visrep.methods.search.pipeline import check_topk
from visrep.methods.search.ranking import ranks_from_scores

from visrep.api import Method
from visrep.params import Param, check_at_most
from visrep.registry import register

from . import knn_graph
from .diffusion import cg, rwr
from .pipeline import (
    GRAPH_PARAMS,
    REGIONAL_PARAMS,
    GraphMethod,
    RegionalGraphMethod,
    _truncated_solve,
    regional_params,
    regional_search_vectors,
)
from .regional_diffusion import rmatch
from .spectral_ranking import EIGEN_SOLVERS, eigen, fsr_rank, sparsify, uses_dense


@register
class Diffusion(GraphMethod):
    name = "diffusion"
    summary = "diffusion on the mutual kNN graph solved by conjugate gradient (regional, truncation)"
    cite = ("Iscen, Tolias, Avrithis, Furon & Chum, Efficient diffusion on region manifolds: recovering small "
            "objects with compact CNN representations, CVPR 2017")
    params = GRAPH_PARAMS + (
        Param("tol", float, 1e-6, "CG stops at relative residual ||y - L f|| / ||y|| <= tol", low=0.0, open_low=True),
        Param("maxiter", int, 20, "maximum CG iterations (20 in the paper's code)", low=1),
        Param("truncate", int, None, "diffuse per query on the subgraph of its N' nearest neighbours "
              "(None = whole graph)", low=2),
        Param("precision", str, "auto", "floating-point precision of the CG products and iterates: "
              "float32 (the same top-100 rankings on Oxford5k at tol 1e-6, see tests), float64, or auto = "
              "float32 when tol >= 1e-6, else float64 (float32 iterates cannot resolve smaller residuals)",
              choices=("auto", "float32", "float64")),
    )

    def score(self, graph, state, batch):
        precision = self.cfg["precision"]
        if precision == "auto":
            precision = "float32" if self.cfg["tol"] >= 1e-6 else "float64"
        solver = partial(cg, dtype=np.dtype(precision))
        if self.cfg["truncate"] and batch.query_of is None:
            return _truncated_solve(graph, batch, self.cfg, solver)
        F, iters, _ = solver(graph.W, batch.Y, self.cfg["alpha"], self.cfg["tol"], self.cfg["maxiter"])
        return F, iters


@register
class RWR(GraphMethod):
    name = "rwr"
    summary = "random walk with restart f = alpha W f + (1 - alpha) y on the mutual kNN graph"
    cite = "Zhou, Weston, Gretton, Bousquet & Schölkopf, Ranking on data manifolds, NIPS 2003"
    params = GRAPH_PARAMS + (
        Param("tol", float, 1e-6, "stop at relative residual ||y - L f|| / ||y|| <= tol", low=0.0, open_low=True),
        Param("maxiter", int, 1000, "maximum iterations", low=1),
    )

    def score(self, graph, state, batch):
        F, iters, _ = rwr(graph.W, batch.Y, self.cfg["alpha"], self.cfg["tol"], self.cfg["maxiter"])
        return F, iters


@register
class FSR(GraphMethod):
    name = "fsr"
    summary = "fast spectral ranking: rank-r eigendecomposition of the kNN graph offline, closed form online"
    cite = "Iscen, Avrithis, Tolias, Furon & Chum, Fast spectral ranking for similarity search, CVPR 2018"
    params = GRAPH_PARAMS + (
        Param("rank", int, 1000, "r, number of eigenvectors kept (paper: 5k on Oxford105k / Instre)", low=1),
        Param("sparsity", float, 1.0, "fraction of the entries of U kept (1 = dense)", low=0.0, high=1.0,
              open_low=True),
        Param("residual", bool, False, "add h(0) (I - U U^T) y: the rest of the spectrum taken as eigenvalue 0"),
        Param("eigensolver", str, "auto", "offline eigensolver (see `eigen`): shift-invert for strongly "
              "clustered graphs whose top eigenvalues crowd near 1", choices=EIGEN_SOLVERS),
        Param("precision", str, "float32", "precision of the offline eigensolver and the online products "
              "(float32: same mAP to 4 decimals on Oxford5k, see tests; float64 the reference)",
              choices=("float32", "float64")),
    )

    def check_limits(self, n, what):
        super().check_limits(n, what)
        check_at_most(self.cfg["rank"], n, "rank", f"method '{self.name}'", what)

    def index(self, graph, ctx, key):
        t0 = time.perf_counter()
        what = {**key, "k": self.cfg["k"], "gamma": self.cfg["gamma"], "mutual": self.cfg["mutual"],
                "graph_index": self.cfg["graph_index"], "rank": self.cfg["rank"]}
        code = [eigen, GraphMethod, knn_graph]
        rank, solver = self.cfg["rank"], self.cfg["eigensolver"]
        dtype = np.dtype(self.cfg["precision"])
        what["precision"] = self.cfg["precision"]
        if solver == "dense" or (solver == "auto" and uses_dense(graph.n, rank)):   # one full decomposition serves every rank on this graph
            lam, U = ctx.cached("fsr_eigen", {**what, "rank": "full"}, code,
                                lambda: eigen(graph.W, graph.n, seed=ctx.seed, dtype=dtype))
            lam, U = lam[:rank], np.ascontiguousarray(U[:, :rank])
        else:
            lam, U = ctx.cached("fsr_eigen", {**what, "solver": solver}, code,
                                lambda: eigen(graph.W, rank, seed=ctx.seed, solver=solver, dtype=dtype))
        Us = sparsify(U, self.cfg["sparsity"])
        nbytes = (Us.data.nbytes + Us.indices.nbytes + Us.indptr.nbytes) if hasattr(Us, "indptr") else Us.nbytes
        self._extra_timings = {"offline_eigen": time.perf_counter() - t0}
        self._extra_stats = {"embedding_mb": nbytes / 2**20}
        return lam, Us

    def score(self, graph, state, batch):
        lam, U = state
        F = fsr_rank(U, lam, batch.Y, self.cfg["alpha"], self.cfg["residual"], dtype=np.dtype(self.cfg["precision"]))
        return F, np.zeros(F.shape[1], np.int64)


# ---------------------------------------------------------------- regional search (talk: "Regional features: R-Match")
@register
class RMatch(Method):
    name = "r-match"
    task = "retrieval"
    summary = "regional matching: image score = sum over query regions of the best database-region similarity"
    cite = ("Razavian, Sullivan, Carlsson & Maki, Visual instance retrieval with deep convolutional networks, "
            "ITE Trans. MTA 2016; the R-Match rows of Iscen et al., Fast spectral ranking, CVPR 2018")
    params = REGIONAL_PARAMS + (
        Param("topk", int, None, "return only the top k of each ranking (None = all)", low=1),)
    batch = 64

    def run(self, data, ctx) -> dict:
        check_topk(self, data)
        R = regional_search_vectors(self, data, ctx)
        n_img, nq, topk = data.n_db, data.n_queries, self.cfg["topk"]
        ranks = np.empty((n_img if topk is None else topk, nq), np.int64)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for s in range(0, nq, self.batch):
                e = min(s + self.batch, nq)
                mine = (R.query_of >= s) & (R.query_of < e)
                S = rmatch(R.db, R.image_of, n_img, R.q[mine], R.query_of[mine] - s, e - s)
                ranks[:, s:e] = ranks_from_scores(S, None, topk)
        return {"ranks": ranks, "timings": {"query": (time.perf_counter() - t0) / max(nq, 1)},
                "stats": {"regions": int(R.db.shape[0]), "query_regions": int(R.q.shape[0])}}


@register
class RegionalDiffusion(RegionalGraphMethod):
    name = "regional-diffusion"
    summary = "diffusion by CG on the kNN graph of all database regions; region scores GMP-pooled per image"
    cite = ("Iscen, Tolias, Avrithis, Furon & Chum, Efficient diffusion on region manifolds: recovering small "
            "objects with compact CNN representations, CVPR 2017")
    params = regional_params(Diffusion.params)

    def score(self, graph, state, batch):
        precision = self.cfg["precision"]
        if precision == "auto":
            precision = "float32" if self.cfg["tol"] >= 1e-6 else "float64"
        F, iters, _ = cg(graph.W, batch.Y, self.cfg["alpha"], self.cfg["tol"], self.cfg["maxiter"],
                         dtype=np.dtype(precision))
        return F, iters


@register
class RegionalFSR(RegionalGraphMethod, FSR):
    name = "regional-fsr"
    summary = "fast spectral ranking on the kNN graph of all database regions; region scores GMP-pooled per image"
    cite = "Iscen, Avrithis, Tolias, Furon & Chum, Fast spectral ranking for similarity search, CVPR 2018"
    params = regional_params(FSR.params)
