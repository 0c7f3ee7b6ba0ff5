"""Family base classes and run-context helpers of this chapter (talk Part II: searching on manifolds).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
from visrep.methods.search.pipeline import check_topk
from visrep.methods.search.ranking import ranks_from_scores

from visrep.api import Method
from visrep.features import DESCRIPTOR_PARAM, retrieval_features
from visrep.params import Param, check_at_most

from .diffusion import check_alpha, pool_regions, query_vectors
from .knn_graph import Graph, build_graph, check_unit_rows, knn, normalize


def cached_graph(x: np.ndarray, ctx, key: dict, data=None, **kw) -> Graph:
    """``build_graph`` through the run's cache (:meth:`visrep.context.RunContext.cached`), keyed by
    `key` (what x is) + the graph parameters, on the vectors of `data`."""
    # the graph does not depend on how its search was sharded
    what = {**key, **{k: v for k, v in kw.items() if k not in ("progress", "shards")}}
    return ctx.cached("knn_graph", what, [build_graph],
                      lambda: build_graph(x, progress=ctx.progress, device=ctx.faiss_device(), **kw), data=data)


ALPHA_PARAM = Param("alpha", float, 0.99, "restart / regularization alpha of L = (I - alpha W)/(1 - alpha)",
                    low=0.0, high=1.0, open_low=True, open_high=True)


#: The graph parameters shared by rwr, diffusion and fsr (CVPR 2017 defaults).
GRAPH_PARAMS = (
    DESCRIPTOR_PARAM,
    Param("k", int, 50, "neighbours per database vector in the kNN graph (the vector itself included)", low=2),
    Param("kq", int, 10, "database neighbours through which a query enters y", low=1),
    ALPHA_PARAM,
    Param("gamma", float, 3.0, "similarity exponent: edge weight max(s, 0)^gamma", low=0.0, open_low=True),
    Param("mutual", bool, True, "keep only mutual (reciprocal) neighbours"),
    Param("graph_index", str, "flat", "kNN search for the graph: 'flat' exact, 'ivf' approximate (faiss IVF-Flat), "
          "'cells' approximate by blocks of k-means cells (millions of vectors on a CPU)",
          choices=("flat", "ivf", "cells")),
    Param("regional", str, None, "regional descriptor method giving many vectors per image "
          "(e.g. 'rmac-regions'); None = one global vector per image"),
    Param("topk", int, None, "return only the top k of each ranking (None = all)", low=1),
    Param("shards", int, 1, "split the kNN-graph search into this many database shards and the queries "
          "into as many groups, run as Dask tasks when the job runs on a Dask cluster "
          "(visrep.sharding); same ranking either way", low=1),
    Param("query_batch", int, None, "queries solved together in one block (None = 64, fewer when the dense "
          "(n, batch) blocks would pass 128 MiB). 1 = one query at a time, each timed: the record then carries "
          "per-query online times (per-item timings.query and timings.query_solve; diffusion, rwr and fsr with "
          "shards = 1; the regional-* methods solve one at a time but record no per-query times), on which speed "
          "claims are decided; a block's time divided by its queries is not a per-query time", low=1),
)


@dataclass
class QueryBatch:
    """Queries handed to :meth:`GraphMethod.score`: start vectors ``Y`` (n, m) of the query columns
    ``cols``; ``db`` (n, d) and ``q`` (M, d) the unit vectors the graph was built on; ``query_of``
    (M,) the query of each regional query vector, or None for global vectors."""

    Y: object
    cols: slice
    db: np.ndarray
    q: np.ndarray
    query_of: np.ndarray | None = None


def _score_group(cols: slice, method, graph, state, Y, db, q):
    """One group of query columns, scored where shard_map sends it -> (F (n, m), iterations (m,))."""
    return method.score(graph, state, QueryBatch(Y[:, cols], cols, db, q))


class GraphMethod(Method):
    """Shared run(): features (global or regional) -> graph (cached) -> ``index`` once -> ``score``
    per query batch -> ranks.

    Hooks (the retrieval vocabulary, as in :class:`visrep.methods.local.pipeline.LocalFeatureRetrieval`):
    ``index(graph, ctx, key) -> state`` builds what the method needs offline (FSR: the
    eigendecomposition; default None); ``score(graph, state, batch: QueryBatch) -> (F (n, m),
    iterations (m,))`` ranks one batch of queries.
    """

    task = "retrieval"

    @property
    def batch(self) -> int:
        """Queries per block: the ``query_batch`` parameter, 64 when None."""
        return self.cfg.get("query_batch") or 64

    def index(self, graph, ctx, key):
        return None

    def score(self, graph, state, batch: QueryBatch):
        raise NotImplementedError

    def _vectors(self, data, ctx):
        """(db (N, d), q (M, d), image_of (N,) or None, query_of (M,) or None, gmp coeff or None)."""
        if self.cfg["regional"]:
            from visrep.methods.cnn.pipeline import regional_features
            return regional_features(data, ctx, self.cfg["regional"])
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        return db, q, None, None, None

    def check_limits(self, n: int, what: str) -> None:
        """Count parameters against the `n` vectors the graph is built on (`what` says so), before the
        graph: :func:`visrep.params.check_at_most`, the one rule (a value above the limit is an error)."""
        owner = f"method '{self.name}'"
        check_at_most(self.cfg["k"], n, "k", owner, what)
        check_at_most(self.cfg["kq"], n, "kq", owner, what)
        if "truncate" in self.cfg:
            check_at_most(self.cfg["truncate"], n, "truncate", owner, what, "or truncate=None for the whole graph")

    def run(self, data, ctx) -> dict:
        check_alpha(self.cfg["alpha"])
        check_topk(self, data)
        if not self.cfg["regional"]:  # one vector per database image: checked before extracting anything
            self.check_limits(data.n_db, f"{data.name} has {data.n_db} database vectors")
        db, q, image_of, query_of, coeff = self._vectors(data, ctx)
        if self.cfg["regional"]:
            self.check_limits(db.shape[0], f"{data.name} has {db.shape[0]} regional database vectors "
                                           f"('{self.cfg['regional']}')")
        db = check_unit_rows(db, "database descriptors")
        q = check_unit_rows(q, "query descriptors")
        key = {"manifest": data.manifest, "loader": ctx.loader_version, "descriptor": self.cfg["descriptor"],
               "regional": self.cfg["regional"], "n": int(db.shape[0])}
        t0 = time.perf_counter()
        with ctx.phase("offline"):
            graph = cached_graph(db, ctx, key, k=self.cfg["k"], gamma=self.cfg["gamma"], mutual=self.cfg["mutual"],
                                 index=self.cfg["graph_index"], seed=ctx.seed, shards=self.cfg["shards"])
            state = self.index(graph, ctx, key)
        offline_s = time.perf_counter() - t0
        n_img = data.n_db
        nq = data.n_queries
        topk = self.cfg["topk"]
        ranks = np.empty((n_img if topk is None else topk, nq), np.int64)
        iters_all = []
        solve_s = 0.0
        per_item = None
        t_online = time.perf_counter()
        with ctx.phase("online"):
            if self.cfg["query_batch"] == 1 and self.cfg["shards"] == 1:
                iters_all, per_item = self._one_by_one(graph, state, db, q, image_of, query_of, coeff, n_img,
                                                       ranks, ctx)
                solve_s = float(per_item["query_solve"].sum())
            else:
                solve_s = self._in_blocks(graph, state, db, q, image_of, query_of, coeff, n_img, ranks, iters_all,
                                          ctx)
        per_query = (time.perf_counter() - t_online) / max(nq, 1)
        iters = np.concatenate(iters_all) if iters_all else np.zeros(0)
        # "query": whole online time per query (y, solve, pooling, sorting); "query_solve": the solver only
        timings = {"query": per_query, "query_solve": solve_s / max(nq, 1), "offline_total": offline_s}
        timings.update(getattr(self, "_extra_timings", {}))
        stats = {"graph_mb": graph.nbytes / 2**20, "mean_iterations": float(iters.mean()) if iters.size else 0.0}
        stats.update(getattr(self, "_extra_stats", {}))
        out = {"ranks": ranks, "timings": timings, "stats": stats, "iterations": iters}
        if per_item is not None:
            out["per_item_timings"] = per_item
        return out

    def _in_blocks(self, graph, state, db, q, image_of, query_of, coeff, n_img, ranks, iters_all, ctx) -> float:
        """Queries solved in blocks of ``batch`` columns (or as shard groups); fills `ranks` (topk or
        n_img, nq) and `iters_all`, returns the solver's seconds (a block's time is not split per query)."""
        nq, topk = ranks.shape[1], self.cfg["topk"]
        solve_s = 0.0
        if query_of is None:
            Y = query_vectors(db, q, self.cfg["kq"], self.cfg["gamma"])
        else:
            Y = query_vectors(db, q, self.cfg["kq"], self.cfg["gamma"], query_of=query_of, n_queries=nq)
        # queries per batch: dense (n, batch) float64 blocks stay around 128 MiB each at any n
        batch = max(1, min(self.batch, (1 << 24) // max(db.shape[0], 1)))
        if self.cfg["shards"] > 1 and query_of is None:
            # query groups as separate tasks (Dask tasks when the job runs on a cluster)
            from visrep.sharding import shard_map
            edges = np.linspace(0, nq, min(self.cfg["shards"], nq) + 1).astype(int)
            groups = [slice(int(a), int(b)) for a, b in pairwise(edges)]
            t_s = time.perf_counter()
            solved = shard_map(_score_group, groups, method=self, graph=graph, state=state, Y=Y, db=db, q=q)
            solve_s += time.perf_counter() - t_s
            for cols, (F, iters) in zip(groups, solved):
                iters_all.append(iters)
                ranks[:, cols] = ranks_from_scores(F, db @ q[cols].T, topk)
            return solve_s
        for s in ctx.progress(range(0, nq, batch), desc=f"{self.name} queries",
                              total=-(-nq // batch), unit="batch"):
            cols = slice(s, min(s + batch, nq))
            t_s = time.perf_counter()
            F, iters = self.score(graph, state, QueryBatch(Y[:, cols], cols, db, q, query_of))
            solve_s += time.perf_counter() - t_s
            iters_all.append(iters)
            ranks[:, cols] = self._rank_block(F, db, q, image_of, query_of, coeff, cols, n_img, topk)
        return solve_s

    def _one_by_one(self, graph, state, db, q, image_of, query_of, coeff, n_img, ranks, ctx):
        """Each query alone (``query_batch = 1``), timed: its y (``query_vectors`` of its own vectors),
        the solve and the ranking. Fills `ranks`; returns (iterations per query, per-item timings
        {"query": (nq,) s, "query_solve": (nq,) s})."""
        nq, topk, kq, gamma = ranks.shape[1], self.cfg["topk"], self.cfg["kq"], self.cfg["gamma"]
        t_query, t_solve = np.zeros(nq), np.zeros(nq)
        iters_all = []
        for j in ctx.progress(range(nq), desc=f"{self.name} queries", total=nq, unit="query"):
            cols = slice(j, j + 1)
            t0 = time.perf_counter()
            if query_of is None:
                y = query_vectors(db, q[cols], kq, gamma)
            elif (mine := query_of == j).any():
                y = query_vectors(db, q[mine], kq, gamma, query_of=np.zeros(int(mine.sum()), np.int64), n_queries=1)
            else:                                         # a query without regions: y = 0, as in a block
                y = sp.csc_matrix((db.shape[0], 1), dtype=np.float32)
            t1 = time.perf_counter()
            F, iters = self.score(graph, state, QueryBatch(y, cols, db, q, query_of))
            t2 = time.perf_counter()
            ranks[:, cols] = self._rank_block(F, db, q, image_of, query_of, coeff, cols, n_img, topk)
            t_query[j], t_solve[j] = time.perf_counter() - t0, t2 - t1
            iters_all.append(iters)
        return iters_all, {"query": t_query, "query_solve": t_solve}

    @staticmethod
    def _rank_block(F, db, q, image_of, query_of, coeff, cols, n_img, topk):
        """Ranks (topk or n_img, m) of the solved scores F (n, m) of query columns `cols`, ties broken by
        the descriptor similarity (regional: scores pooled per image first)."""
        if image_of is None:
            return ranks_from_scores(F, db @ q[cols].T, topk)
        F = pool_regions(F, image_of, coeff, n_img)
        return ranks_from_scores(F, _image_sims(db, q, image_of, query_of, cols, n_img), topk)


def _image_sims(db, q, image_of, query_of, cols, n_img):
    """Tie-break similarity for regional search: max over region pairs, per image (n_img, m)."""
    qs = np.arange(cols.start, cols.stop)
    out = np.full((n_img, len(qs)), -np.inf)
    for j, qi in enumerate(qs):
        s = (db @ q[query_of == qi].T).max(axis=1)
        np.maximum.at(out[:, j], image_of, s)
    return out


def _truncated_solve(graph, batch: QueryBatch, cfg, solver):
    """Per query: diffuse on the subgraph of its `truncate` nearest neighbours (CVPR 2017 Sec. 4.2)."""
    n = graph.n
    Y = batch.Y
    F = np.zeros((n, Y.shape[1]))
    iters = np.zeros(Y.shape[1], np.int64)
    _, nn = knn(batch.db, cfg["truncate"], queries=batch.q[batch.cols])
    for j in range(Y.shape[1]):
        sub = np.sort(nn[j])
        W, _ = normalize(graph.A[sub][:, sub])
        f, it, _ = solver(W, Y[sub, j], cfg["alpha"], cfg["tol"], cfg["maxiter"])
        F[sub, j] = f[:, 0]
        iters[j] = it[0]
    return F, iters


# ---------------------------------------------------------------- regional search (CVPR 2017 / CVPR 2018 regional rows)
#: parameters of the regional vectors shared by r-match, regional-diffusion and regional-fsr
REGIONAL_PARAMS = (
    Param("descriptor", str, "rmac", "CNN descriptor whose regional vectors are the nodes: 'NAME' or "
          "'NAME:key=value;...' (e.g. 'rmac:backbone=resnet101;weights=FILE'); rmac = MAC of the whole map and "
          "of the R-MAC regions at L = 3 scales (21 vectors for a 4:3 image, 15 for a square one)"),
    Param("m", int, None, "regions kept per database image by the GMM reduction (the talk's m = 5); "
          "None = all regions (m = 21)", low=1),
    Param("whitening", str, "pca", "PCA-whitening of the regional vectors, learned on the database regions "
          "('pca'), or 'none'", choices=("pca", "none")),
    Param("whiten_dim", int, None, "dimensions kept by the PCA-whitening (None = all)", low=1),
)


@dataclass
class RegionalVectors:
    """Regional vectors of a dataset: db (N, d) float32 unit rows of images ``image_of`` (N,);
    queries q (M, d) of queries ``query_of`` (M,); GMP coefficients ``coeff`` (N,) (lambda of
    the method, 1 in the authors' code)."""

    db: np.ndarray
    image_of: np.ndarray
    q: np.ndarray
    query_of: np.ndarray
    coeff: np.ndarray


def regional_search_vectors(method, data, ctx) -> RegionalVectors:
    """The regional vectors of `data` for `method.cfg` (REGIONAL_PARAMS): extraction cached per split
    (as :func:`visrep.methods.cnn.pipeline.regional_features`), then PCA-whitening learned on the
    database regions, then the optional GMM reduction of each database image to m regions
    (queries keep all theirs: the reduction is the off-line stage), then GMP weights."""
    from visrep.methods.cnn.pipeline import CNNDescriptor, describe_regions
    from visrep.methods.cnn.regional import gmp_weights
    from visrep.methods.cnn.whitening import pca_whitening

    from visrep.errors import UserError
    from visrep.features import parse_descriptor
    from visrep.registry import methods

    from . import regional_diffusion as rd

    cfg = method.cfg
    name, params = parse_descriptor(cfg["descriptor"])
    desc = methods.create(name, **params)
    if not isinstance(desc, CNNDescriptor):
        raise UserError(f"method '{method.name}': parameter 'descriptor' must name a CNN descriptor (mac, spoc, gem, "
                        f"rmac, crow), got '{name}'")
    if not data.has_images:
        raise UserError(f"method '{method.name}' needs images for its regional vectors, but {data.name} was loaded "
                        f"without images")
    feats = ctx.per_split(data, "regional_features", {"regional": name, "params": desc.cfg}, [type(desc)],
                          lambda split: describe_regions(
                              desc, data.db_image if split == "db" else data.query_image,
                              data.n_db if split == "db" else data.n_queries, ctx,
                              f"{name} regions {'database' if split == 'db' else 'queries'}"))
    (db, image_of), (q, query_of) = feats["db"], feats["query"]

    def prepare():
        d, qq = db, q
        if cfg["whitening"] == "pca":
            w = pca_whitening(d, cfg["whiten_dim"])
            d, qq = w.apply(d), w.apply(qq)
        io = image_of
        if cfg["m"] is not None:
            d, io = rd.gmm_reduce(d, io, cfg["m"])
        return d, io, qq
    what = {"descriptor": name, "params": desc.cfg, **{k: cfg[k] for k in ("whitening", "whiten_dim", "m")}}
    d, io, qq = ctx.cached("regional_search_vectors", what, [rd.gmm_reduce, pca_whitening, type(desc)], prepare, data=data)
    lam = cfg.get("gmp_lambda", 1.0)
    return RegionalVectors(d, io, qq, query_of, gmp_weights(d, io, lam))


def regional_params(base: tuple, k: int = 200) -> tuple:
    """`base` graph parameters for regional vectors: the graph's own global options dropped (regional,
    shards, truncate), the descriptor replaced by REGIONAL_PARAMS, k = kq = 200 by default (the
    authors' run_test.m for regional vectors)."""
    from dataclasses import replace
    drop = {"regional", "shards", "truncate", "descriptor"}
    out = []
    for p in base:
        if p.name in drop:
            continue
        if p.name == "k":
            p = replace(p, default=k, doc="neighbours per database region in the kNN graph (the region itself "
                        "included); 200 for regional vectors in the authors' run_test.m")
        elif p.name == "kq":
            p = replace(p, default=k, doc="nearest database regions of each query region entering y "
                        "(kq = k for regional vectors in the authors' run_test.m)")
        out.append(p)
    return (*REGIONAL_PARAMS, *out,
            Param("pooling", str, "gmp", "region scores -> image score: 'gmp' generalized max-pooling "
                  "sum_r c_r f_r (the authors' run_test.m), 'sum' or 'max'", choices=("gmp", "sum", "max")),
            Param("gmp_lambda", float, 1.0, "lambda of the GMP weights c = (V V^T + lambda I)^-1 1 (gmpweights.m: 1)",
                  low=0.0, open_low=True))


class RegionalGraphMethod(GraphMethod):
    """Graph methods on regional vectors (CVPR 2017 Sec. 4; CVPR 2018 regional rows): the kNN graph
    over ALL database regions (cached, keyed by the regional settings), y from the query's regions
    (``query_vectors`` with ``query_of``, ``ymake.m``), the family's ``score`` hook per query batch,
    region scores pooled per image (``pooling``); images the walk does not reach follow by R-Match."""

    def run(self, data, ctx) -> dict:
        from . import regional_diffusion as rd
        cfg = self.cfg
        check_alpha(cfg["alpha"])
        check_topk(self, data)
        R = regional_search_vectors(self, data, ctx)
        db = check_unit_rows(R.db, "database regional vectors")
        q = check_unit_rows(R.q, "query regional vectors")
        self.check_limits(db.shape[0], f"{data.name} has {db.shape[0]} regional database vectors")
        key = {"manifest": data.manifest, "loader": ctx.loader_version, "descriptor": cfg["descriptor"],
               "whitening": cfg["whitening"], "whiten_dim": cfg["whiten_dim"], "m": cfg["m"], "n": int(db.shape[0])}
        t0 = time.perf_counter()
        with ctx.phase("offline"):
            graph = cached_graph(db, ctx, key, k=cfg["k"], gamma=cfg["gamma"], mutual=cfg["mutual"],
                                 index=cfg["graph_index"], seed=ctx.seed, shards=1)
            state = self.index(graph, ctx, key)
        offline_s = time.perf_counter() - t0
        n_img, nq, topk = data.n_db, data.n_queries, cfg["topk"]
        ranks = np.empty((n_img if topk is None else topk, nq), np.int64)
        iters_all, solve_s = [], 0.0
        t_online = time.perf_counter()
        batch = max(1, min(self.batch, (1 << 24) // max(db.shape[0], 1)))
        one = batch == 1        # each query alone (query_batch = 1): its y, solve, pooling and ranking timed
        t_query, t_solve = np.zeros(nq), np.zeros(nq)
        with ctx.phase("online"):
            if not one:
                Y = query_vectors(db, q, cfg["kq"], cfg["gamma"], query_of=R.query_of, n_queries=nq)
            for s in ctx.progress(range(0, nq, batch), desc=f"{self.name} queries", total=-(-nq // batch),
                                  unit="batch"):
                cols = slice(s, min(s + batch, nq))
                t_q = time.perf_counter()
                if not one:
                    y = Y[:, cols]
                elif (own := R.query_of == s).any():
                    y = query_vectors(db, q[own], cfg["kq"], cfg["gamma"], query_of=np.zeros(int(own.sum()), np.int64),
                                      n_queries=1)
                else:                                     # a query without regions: y = 0, as in a block
                    y = sp.csc_matrix((db.shape[0], 1), dtype=np.float32)
                t_s = time.perf_counter()
                F, iters = self.score(graph, state, QueryBatch(y, cols, db, q, R.query_of))
                solve_s += time.perf_counter() - t_s
                if one:
                    t_solve[s] = time.perf_counter() - t_s
                iters_all.append(iters)
                S = rd.pool_region_scores(F, R.image_of, n_img, cfg["pooling"], R.coeff)
                mine = (R.query_of >= cols.start) & (R.query_of < cols.stop)
                tie = rd.rmatch(db, R.image_of, n_img, q[mine], R.query_of[mine] - cols.start,
                                cols.stop - cols.start)
                ranks[:, cols] = ranks_from_scores(S, tie, topk)
                if one:
                    t_query[s] = time.perf_counter() - t_q
        per_query = (time.perf_counter() - t_online) / max(nq, 1)
        iters = np.concatenate(iters_all) if iters_all else np.zeros(0)
        timings = {"query": per_query, "query_solve": solve_s / max(nq, 1), "offline_total": offline_s}
        timings.update(getattr(self, "_extra_timings", {}))
        stats = {"graph_mb": graph.nbytes / 2**20, "mean_iterations": float(iters.mean()) if iters.size else 0.0,
                 "regions": int(db.shape[0]), "query_regions": int(q.shape[0])}
        stats.update(getattr(self, "_extra_stats", {}))
        out = {"ranks": ranks, "timings": timings, "stats": stats, "iterations": iters}
        if one:
            out["per_item_timings"] = {"query": t_query, "query_solve": t_solve}
        return out
