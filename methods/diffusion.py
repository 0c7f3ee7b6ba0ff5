"""Diffusion on the kNN graph: random walk with restart and conjugate gradient.

Zhou, Weston, Gretton, Bousquet & Schölkopf, *Ranking on data manifolds*, NIPS 2003, and
Iscen, Tolias, Avrithis, Furon & Chum, *Efficient diffusion on region manifolds: recovering
small objects with compact CNN representations*, CVPR 2017 (the talk's "searching on
manifolds" slides).

With ``W`` the symmetric-normalized mutual kNN affinity (:mod:`visrep.methods.knn_graph`),
``y`` the query vector and ``alpha`` in (0, 1), the ranking vector ``f`` solves

    L_alpha f = y,     L_alpha = (I - alpha W) / (1 - alpha)          (CVPR 2017 Eq. 5)

- ``rwr``: the iteration ``f <- alpha W f + (1 - alpha) y`` (NIPS 2003 / slide "random walk
  with restart"), whose fixed point is exactly this ``f``;
- ``diffusion``: conjugate gradient on the same system (CVPR 2017 Sec. 3.2; ``L_alpha`` is
  symmetric positive definite for alpha < 1 because the eigenvalues of W lie in [-1, 1]).

Both stop when the relative residual ``||y - L_alpha f|| / ||y||`` falls below ``tol`` or after
``maxiter`` iterations (the paper's code: tol = 1e-6, 20 CG iterations).

The query (CVPR 2017 Sec. 4, ``ymake.m``) enters by its ``kq`` nearest database vectors:
``y_i = max(q^T x_i, 0)^gamma`` for those, 0 elsewhere (kq = 10 for global descriptors in the
authors' code, kq = k for regional ones). For regional queries (many vectors), similarities
of all query regions are summed per database region before the top ``kq`` are kept.

Ranking: database items are sorted by ``f``; items the diffusion does not reach (``f = 0``,
e.g. other connected components) follow, ordered by plain query similarity (an explicit
tie-break; the paper's code leaves their order arbitrary).

Truncation (CVPR 2017 Sec. 4.2, ``findtrunc.m``/``trunclap.m``): with ``truncate = N'`` each
query diffuses only on the subgraph of its N' nearest neighbours, re-normalized; the rest of
the database is ranked after, by similarity.

Regional diffusion (Sec. 4.1): graph nodes are region vectors; region scores are pooled per
image with generalized max-pooling weights (:func:`visrep.methods.regional.gmp_weights`):
``score(image) = sum_r c_r f_r``.

Shapes: database (n, d) float32 unit rows; ``Y``, ``F`` (n, n_q) float; ranks (n, n_q) int64.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.features import DESCRIPTOR_PARAM, retrieval_features
from visrep.params import Param
from visrep.registry import register

from .knn_graph import cached_graph, check_unit_rows, knn, normalize

ALPHA_PARAM = Param("alpha", float, 0.99, "restart / regularization alpha of L = (I - alpha W)/(1 - alpha)",
                    low=0.0, high=1.0, open_low=True, open_high=True)


def graph_params(k: int = 50, kq: int = 10) -> tuple[Param, ...]:
    """The graph parameters shared by rwr, diffusion and fsr (CVPR 2017 defaults)."""
    return (
        DESCRIPTOR_PARAM,
        Param("k", int, k, "neighbours per database vector in the kNN graph (the vector itself included)", low=2),
        Param("kq", int, kq, "database neighbours through which a query enters y", low=1),
        ALPHA_PARAM,
        Param("gamma", float, 3.0, "similarity exponent: edge weight max(s, 0)^gamma", low=0.0, open_low=True),
        Param("mutual", bool, True, "keep only mutual (reciprocal) neighbours"),
        Param("graph_index", str, "flat", "kNN search for the graph: 'flat' exact, 'ivf' approximate (millions)",
              choices=("flat", "ivf")),
        Param("regional", str, None, "regional descriptor method giving many vectors per image "
              "(e.g. 'rmac-regions'); None = one global vector per image"),
        Param("topk", int, None, "return only the top k of each ranking (None = all)", low=1),
        Param("shards", int, 1, "split the kNN-graph search into this many database shards and the queries "
              "into as many groups, run as Dask tasks when the job runs on a Dask cluster "
              "(visrep.sharding); same ranking either way", low=1),
    )


def _solve_group(cols: slice, method, graph, state, Y, db, q):
    """One group of query columns, solved where shard_map sends it -> (F (n, m), iterations (m,))."""
    return method.solve(graph, state, Y[:, cols], db, q, cols, None)


def check_alpha(alpha: float) -> float:
    if not (0.0 < float(alpha) < 1.0):
        raise UserError(f"parameter 'alpha' must be in the open interval (0, 1), got {alpha!r}")
    return float(alpha)


# ---------------------------------------------------------------- query vector y
def query_vectors(db: np.ndarray, queries: np.ndarray, kq: int, gamma: float, query_of: np.ndarray | None = None,
                  n_queries: int | None = None):
    """Sparse Y (n, n_q) float32: each query's top-kq database similarities ^ gamma (``ymake.m``).

    ``queries`` (m, d). With ``query_of`` (m,) int, several rows belong to one query (regional
    queries): their similarities are summed per database vector before the top kq are kept.
    """
    import scipy.sparse as sp

    n = db.shape[0]
    kq = min(int(kq), n)
    if query_of is None:
        sims, ids = knn(db, kq, queries=queries)
        nq = queries.shape[0]
        rows, cols, vals = ids.ravel(), np.repeat(np.arange(nq), kq), sims.ravel()
    else:
        nq = int(n_queries if n_queries is not None else query_of.max() + 1)
        sims, ids = knn(db, kq, queries=queries)
        acc = sp.csr_matrix((sims.ravel(), (np.repeat(query_of, kq), ids.ravel())), shape=(nq, n))
        acc.sum_duplicates()
        rows, cols, vals = [], [], []
        for j in range(nq):
            row = acc.getrow(j)
            top = np.argsort(-row.data, kind="stable")[:kq]
            rows.append(row.indices[top]), cols.append(np.full(len(top), j)), vals.append(row.data[top])
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    vals = np.maximum(vals, 0.0) ** np.float32(gamma)
    y = sp.csc_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, nq))
    y.sum_duplicates()
    return y


# ---------------------------------------------------------------- solvers
def _dense(y) -> np.ndarray:
    return np.asarray(y.toarray() if hasattr(y, "toarray") else y, dtype=np.float64)


def laplacian_apply(W, alpha: float):
    """The map F -> L_alpha F = (F - alpha W F) / (1 - alpha), F (n, m)."""
    return lambda f: (f - alpha * (W @ f)) / (1.0 - alpha)


def cg(W, Y, alpha: float, tol: float = 1e-6, maxiter: int = 20, x0=None) -> tuple[np.ndarray, np.ndarray, list]:
    """Conjugate gradient on L_alpha F = Y, one independent CG per column (CVPR 2017 Sec. 3.2).

    W (n, n) sparse symmetric, Y (n, m) sparse or dense. Returns (F (n, m) float64,
    iterations (m,) int, history: list of the max relative residual per iteration).
    A column stops (is frozen) once ``||y - L f|| <= tol ||y||``.
    """
    alpha = check_alpha(alpha)
    Lf = laplacian_apply(W, alpha)
    Y = _dense(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    ynorm = np.linalg.norm(Y, axis=0)
    ynorm[ynorm == 0] = 1.0
    X = np.zeros_like(Y) if x0 is None else np.array(x0, dtype=np.float64)
    R = Y - Lf(X) if x0 is not None else Y.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    iters = np.zeros(Y.shape[1], np.int64)
    active = np.sqrt(rs) > tol * ynorm
    history = [float((np.sqrt(rs) / ynorm).max())]
    for _ in range(maxiter):
        if not active.any():
            break
        AP = Lf(P)
        denom = np.einsum("ij,ij->j", P, AP)
        a = np.where(active & (denom > 0), rs / np.where(denom > 0, denom, 1.0), 0.0)
        X += a * P
        R -= a * AP
        rs_new = np.einsum("ij,ij->j", R, R)
        iters += active
        beta = np.where(active, rs_new / np.where(rs > 0, rs, 1.0), 0.0)
        P = R + beta * P
        rs = np.where(active, rs_new, rs)
        active = active & (np.sqrt(rs) > tol * ynorm)
        history.append(float((np.sqrt(rs) / ynorm).max()))
    return X, iters, history


def rwr(W, Y, alpha: float, tol: float = 1e-6, maxiter: int = 1000) -> tuple[np.ndarray, np.ndarray, list]:
    """Random walk with restart f <- alpha W f + (1 - alpha) y, from f = (1 - alpha) y.

    Same fixed point as :func:`cg` (L_alpha f = y). The residual of the current iterate is
    ``(f_next - f) / (1 - alpha)``; a column stops once it is <= tol ||y||.
    Returns (F (n, m) float64, iterations (m,), history of max relative residual).
    """
    alpha = check_alpha(alpha)
    Y = _dense(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    ynorm = np.linalg.norm(Y, axis=0)
    ynorm[ynorm == 0] = 1.0
    F = (1 - alpha) * Y
    iters = np.zeros(Y.shape[1], np.int64)
    active = np.ones(Y.shape[1], bool)
    history = []
    for _ in range(maxiter + 1):
        Fn = alpha * (W @ F) + (1 - alpha) * Y
        res = np.linalg.norm(Fn - F, axis=0) / (1 - alpha) / ynorm
        history.append(float(res[active].max()) if active.any() else 0.0)
        active = active & (res > tol)
        if not active.any() or len(history) > maxiter:
            break
        F = np.where(active, Fn, F)
        iters += active
    return F, iters, history


def direct_solve(W, Y, alpha: float) -> np.ndarray:
    """Reference: L_alpha F = Y by a sparse direct solver (scipy spsolve). For tests, small n."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    alpha = check_alpha(alpha)
    n = W.shape[0]
    L = ((sp.identity(n, format="csc") - alpha * sp.csc_matrix(W, dtype=np.float64)) / (1 - alpha)).tocsc()
    out = sla.spsolve(L, _dense(Y))
    return out[:, None] if out.ndim == 1 else out


# ---------------------------------------------------------------- ranking
def rank_scores(F: np.ndarray, sims: np.ndarray, topk: int | None = None) -> np.ndarray:
    """Sort by F descending, ties (e.g. f = 0, unreached) by query similarity -> (n or topk, m) int64."""
    n, m = F.shape
    kk = n if topk is None else min(topk, n)
    out = np.empty((kk, m), np.int64)
    for j in range(m):
        order = np.lexsort((-sims[:, j], -F[:, j]))
        out[:, j] = order[:kk]
    return out


def pool_regions(F: np.ndarray, image_of: np.ndarray, coeff: np.ndarray, n_images: int) -> np.ndarray:
    """Image scores (n_images, m) = sum over an image's regions of coeff_r f_r (GMP pooling, ``run_test.m``)."""
    import scipy.sparse as sp
    P = sp.csr_matrix((coeff.astype(np.float64), (image_of, np.arange(len(image_of)))),
                      shape=(n_images, len(image_of)))
    return np.asarray(P @ F)


class _GraphMethod(Method):
    """Shared run(): features (global or regional) -> graph (cached) -> solve per query batch -> ranks."""

    task = "retrieval"
    batch = 64

    # subclasses: solve(graph, Y) -> (F, iters) ; offline(graph, ctx, key) -> state
    def offline(self, graph, ctx, key):
        return None

    def solve(self, graph, state, Y):
        raise NotImplementedError

    def _vectors(self, data, ctx):
        """(db (N, d), q (M, d), image_of (N,) or None, query_of (M,) or None, gmp coeff or None)."""
        if self.cfg["regional"]:
            from .regional import regional_features
            return regional_features(data, ctx, self.cfg["regional"])
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        return db, q, None, None, None

    def run(self, data, ctx) -> dict:
        check_alpha(self.cfg["alpha"])
        db, q, image_of, query_of, coeff = self._vectors(data, ctx)
        db = check_unit_rows(db, "database descriptors")
        q = check_unit_rows(q, "query descriptors")
        key = {"manifest": data.manifest, "descriptor": self.cfg["descriptor"], "regional": self.cfg["regional"],
               "n": int(db.shape[0])}
        t0 = time.perf_counter()
        with ctx.phase("offline"):
            graph = cached_graph(db, ctx, key, k=self.cfg["k"], gamma=self.cfg["gamma"], mutual=self.cfg["mutual"],
                                 index=self.cfg["graph_index"], seed=ctx.seed, shards=self.cfg["shards"])
            state = self.offline(graph, ctx, key)
        offline_s = time.perf_counter() - t0
        n_img = data.n_db
        nq = data.n_queries
        topk = self.cfg["topk"]
        ranks = np.empty((n_img if topk is None else min(topk, n_img), nq), np.int64)
        iters_all = []
        solve_s = 0.0
        t_online = time.perf_counter()
        with ctx.phase("online"):
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
                groups = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
                t_s = time.perf_counter()
                solved = shard_map(_solve_group, groups, method=self, graph=graph, state=state, Y=Y, db=db, q=q)
                solve_s += time.perf_counter() - t_s
                for cols, (F, iters) in zip(groups, solved):
                    iters_all.append(iters)
                    ranks[:, cols] = rank_scores(F, db @ q[cols].T, topk)
            else:
                for s in ctx.progress(range(0, nq, batch), desc=f"{self.name} queries",
                                      total=-(-nq // batch), unit="batch"):
                    cols = slice(s, min(s + batch, nq))
                    t_s = time.perf_counter()
                    F, iters = self.solve(graph, state, Y[:, cols], db, q, cols, query_of)
                    solve_s += time.perf_counter() - t_s
                    iters_all.append(iters)
                    if image_of is None:
                        sims = db @ q[cols].T
                    else:
                        F = pool_regions(F, image_of, coeff, n_img)
                        sims = _image_sims(db, q, image_of, query_of, cols, n_img)
                    ranks[:, cols] = rank_scores(F, sims, topk)
        per_query = (time.perf_counter() - t_online) / max(nq, 1)
        iters = np.concatenate(iters_all) if iters_all else np.zeros(0)
        # "query": whole online time per query (y, solve, pooling, sorting); "query_solve": the solver only
        timings = {"query": per_query, "query_solve": solve_s / max(nq, 1), "offline_total": offline_s}
        timings.update(getattr(self, "_extra_timings", {}))
        stats = {"graph_mb": graph.nbytes / 2**20, "mean_iterations": float(iters.mean()) if iters.size else 0.0}
        stats.update(getattr(self, "_extra_stats", {}))
        return {"ranks": ranks, "timings": timings, "stats": stats, "iterations": iters}


def _image_sims(db, q, image_of, query_of, cols, n_img):
    """Tie-break similarity for regional search: max over region pairs, per image (n_img, m)."""
    qs = np.arange(cols.start, cols.stop)
    out = np.full((n_img, len(qs)), -np.inf)
    for j, qi in enumerate(qs):
        s = (db @ q[query_of == qi].T).max(axis=1)
        np.maximum.at(out[:, j], image_of, s)
    return out


def _truncated_solve(graph, Y, db, q, cols, cfg, solver):
    """Per query: diffuse on the subgraph of its `truncate` nearest neighbours (CVPR 2017 Sec. 4.2)."""
    n = graph.n
    F = np.zeros((n, Y.shape[1]))
    iters = np.zeros(Y.shape[1], np.int64)
    _, nn = knn(db, cfg["truncate"], queries=q[cols])
    for j in range(Y.shape[1]):
        sub = np.sort(nn[j])
        W, _ = normalize(graph.A[sub][:, sub])
        f, it, _ = solver(W, Y[sub, j], cfg["alpha"], cfg["tol"], cfg["maxiter"])
        F[sub, j] = f[:, 0]
        iters[j] = it[0]
    return F, iters


@register
class Diffusion(_GraphMethod):
    name = "diffusion"
    summary = "diffusion on the mutual kNN graph solved by conjugate gradient (regional, truncation)"
    cite = ("Iscen, Tolias, Avrithis, Furon & Chum, Efficient diffusion on region manifolds: recovering small "
            "objects with compact CNN representations, CVPR 2017")
    params = graph_params() + (
        Param("tol", float, 1e-6, "CG stops at relative residual ||y - L f|| / ||y|| <= tol", low=0.0, open_low=True),
        Param("maxiter", int, 20, "maximum CG iterations (20 in the paper's code)", low=1),
        Param("truncate", int, None, "diffuse per query on the subgraph of its N' nearest neighbours "
              "(None = whole graph)", low=2),
    )

    def solve(self, graph, state, Y, db, q, cols, query_of):
        if self.cfg["truncate"] and query_of is None:
            return _truncated_solve(graph, Y, db, q, cols, self.cfg, cg)
        F, iters, _ = cg(graph.W, Y, self.cfg["alpha"], self.cfg["tol"], self.cfg["maxiter"])
        return F, iters


@register
class RWR(_GraphMethod):
    name = "rwr"
    summary = "random walk with restart f = alpha W f + (1 - alpha) y on the mutual kNN graph"
    cite = "Zhou, Weston, Gretton, Bousquet & Schölkopf, Ranking on data manifolds, NIPS 2003"
    params = graph_params() + (
        Param("tol", float, 1e-6, "stop at relative residual ||y - L f|| / ||y|| <= tol", low=0.0, open_low=True),
        Param("maxiter", int, 1000, "maximum iterations", low=1),
    )

    def solve(self, graph, state, Y, db, q, cols, query_of):
        F, iters, _ = rwr(graph.W, Y, self.cfg["alpha"], self.cfg["tol"], self.cfg["maxiter"])
        return F, iters
