"""Known answers for regional search: y of regional queries, GMP pooling, R-Match, GMM reduction,
and regional diffusion / FSR through their plugins against a dense solve (issue 12, item 3)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from visrep.methods.cnn.regional import gmp_weights
from visrep.methods.manifolds import pipeline as mp
from visrep.methods.manifolds.diffusion import query_vectors
from visrep.methods.manifolds.knn_graph import build_graph
from visrep.methods.manifolds.regional_diffusion import (
    gmm_fit,
    gmm_reduce,
    pool_region_scores,
    rmatch,
)
from visrep.methods.search.ranking import ranks_from_scores

from visrep.cache import Cache
from visrep.context import RunContext
from visrep.data import RetrievalData
from visrep.errors import UserError
from visrep.registry import methods


def unit(x):
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- query vector of a regional query (ymake.m)
def test_regional_query_vector_known_answer():
    # database regions e1, e2, e3, (e1 + e2)/sqrt2 ; query 0 has regions e1 and e2, query 1 has e3
    s = 1 / np.sqrt(2)
    db = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [s, s, 0]], np.float32)
    q = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    Y = query_vectors(db, q, kq=2, gamma=3.0, query_of=np.array([0, 0, 1]), n_queries=2).toarray()
    # query 0: region e1 -> top-2 {0: 1, 3: s}; region e2 -> {1: 1, 3: s}; summed: 0: 1, 1: 1, 3: 2s (largest);
    # top kq = 2 keeps region 3 (2s = 1.414) and the first of the tied pair (stable): region 0
    np.testing.assert_allclose(Y[:, 0], [1.0, 0.0, 0.0, (2 * s) ** 3], rtol=1e-6)
    # query 1: e3 -> region 2 (1) and one zero-similarity region, which contributes max(0, 0)^3 = 0
    assert Y[2, 1] == pytest.approx(1.0) and np.count_nonzero(Y[:, 1]) == 1


def test_regional_query_vector_negative_similarity_clipped():
    db = unit([[1, 0], [-1, 0.1]])
    Y = query_vectors(db, unit([[1, 0]]), kq=2, gamma=3.0, query_of=np.array([0]), n_queries=1).toarray()
    assert Y[0, 0] == pytest.approx(1.0) and Y[1, 0] == 0.0


# ---------------------------------------------------------------- pooling of region scores
def test_gmp_weights_and_pooling_hand_case():
    # image 0: two orthogonal regions -> (I + I)^-1 1 = 1/2 each; image 1: two identical regions ->
    # [[2, 1], [1, 2]]^-1 1 = 1/3 each (a repeated region is counted once: 2/3 in total, not 1)
    V = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)
    image_of = np.array([0, 0, 1, 1])
    c = gmp_weights(V, image_of, lam=1.0)
    np.testing.assert_allclose(c, [0.5, 0.5, 1 / 3, 1 / 3])
    F = np.array([[2.0], [4.0], [3.0], [3.0]])
    np.testing.assert_allclose(pool_region_scores(F, image_of, 3, "gmp", c)[:, 0], [3.0, 2.0, 0.0])
    np.testing.assert_allclose(pool_region_scores(F, image_of, 3, "sum")[:, 0], [6.0, 6.0, 0.0])
    np.testing.assert_allclose(pool_region_scores(F, image_of, 3, "max")[:, 0], [4.0, 3.0, -np.inf])
    with pytest.raises(UserError):
        pool_region_scores(F, image_of, 2, "gmp")


# ---------------------------------------------------------------- R-Match
def test_rmatch_equals_brute_force():
    rng = np.random.default_rng(0)
    db, q = unit(rng.standard_normal((60, 8))), unit(rng.standard_normal((17, 8)))
    image_of = rng.permutation(np.repeat(np.arange(10), 6))
    image_of[image_of == 9] = 7                    # image 9 has no region
    query_of = np.sort(rng.integers(0, 4, 17))
    S = rmatch(db, image_of, 10, q, query_of, 4, chunk=5)
    ref = np.full((10, 4), -np.inf)
    for i in range(10):
        for j in range(4):
            if (image_of == i).any():
                ref[i, j] = sum(max(float(qr @ x) for x in db[image_of == i]) for qr in q[query_of == j])
    np.testing.assert_allclose(S, ref, rtol=1e-5)


# ---------------------------------------------------------------- GMM reduction
def test_gmm_reduce_recovers_cluster_means():
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((5, 32)))
    regions = []
    for i in range(2):                              # two images of 21 regions = 5 tight clusters each
        lab = np.r_[np.arange(5), rng.integers(0, 5, 16)]
        regions.append(unit(centres[lab] + 0.01 * rng.standard_normal((21, 32))))
    V = np.concatenate(regions)
    image_of = np.repeat([0, 1], 21)
    R, owner = gmm_reduce(V, image_of, 5)
    assert R.shape == (10, 32) and list(owner) == [0] * 5 + [1] * 5
    np.testing.assert_allclose(np.linalg.norm(R, axis=1), 1, atol=1e-6)
    for i in range(2):
        sims = R[owner == i] @ centres.T               # each reduced vector is one centre, all centres covered
        assert sorted(sims.argmax(axis=1)) == list(range(5)) and sims.max(axis=1).min() > 0.999
    # an image with <= m regions keeps them; m larger than the regions of a GMM fit is an error
    R2, _o2 = gmm_reduce(V[:3], np.zeros(3, int), 5)
    np.testing.assert_allclose(R2, V[:3], atol=1e-6)
    with pytest.raises(UserError):
        gmm_fit(V[:3], 5)


def test_gmm_fit_weights_and_variance():
    x = np.array([[0.0, 0], [0, 0.2], [10, 0], [10, 0.2], [10, -0.2], [10, 0.0]])
    mu, pi, var = gmm_fit(x, 2)
    order = np.argsort(mu[:, 0])
    np.testing.assert_allclose(mu[order], [[0, 0.1], [10, 0]], atol=1e-9)
    np.testing.assert_allclose(pi[order], [2 / 6, 4 / 6], atol=1e-9)
    # shared isotropic variance: squared distances to the means / (n d)
    assert var == pytest.approx((0.01 * 2 + 0.04 * 2) / (6 * 2))


# ---------------------------------------------------------------- plugins against a dense solve
def _clustered_regions(seed=0, n_img=12, per=7, d=16):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, d))
    cls = np.arange(n_img) % 4
    db = unit(centres[np.repeat(cls, per)] + 0.6 * rng.standard_normal((n_img * per, d)))
    image_of = np.repeat(np.arange(n_img), per)
    nq = 4
    q = unit(centres[np.repeat(np.arange(nq), 3)] + 0.6 * rng.standard_normal((3 * nq, d)))
    query_of = np.repeat(np.arange(nq), 3)
    gnd = [{"ok": np.flatnonzero(cls == j), "junk": np.zeros(0, np.int64)} for j in range(nq)]
    data = RetrievalData(name="toy-regions", db_names=[f"d{i}" for i in range(n_img)],
                         query_names=[f"q{j}" for j in range(nq)], gnd=gnd, manifest=f"toy-regions-{seed}")
    return data, mp.RegionalVectors(db, image_of, q, query_of, gmp_weights(db, image_of))


@pytest.fixture
def toy(monkeypatch):
    from visrep.methods.manifolds import (
        plugins,  # imported before patching: it binds the name at import
    )
    data, R = _clustered_regions()
    for module in (mp, plugins):
        monkeypatch.setattr(module, "regional_search_vectors", lambda method, data, ctx: R)
    return data, R


def _dense_reference(R, n_img, k, kq, alpha, gamma, pooling="gmp"):
    g = build_graph(R.db, k=k, gamma=gamma)
    W = g.W.toarray().astype(np.float64)
    Y = query_vectors(R.db, R.q, kq, gamma, query_of=R.query_of, n_queries=int(R.query_of.max()) + 1).toarray()
    F = np.linalg.solve((np.eye(len(W)) - alpha * W) / (1 - alpha), Y)
    S = pool_region_scores(F, R.image_of, n_img, pooling, R.coeff)
    tie = rmatch(R.db, R.image_of, n_img, R.q, R.query_of, Y.shape[1])
    return ranks_from_scores(S, tie), S, g


@pytest.mark.parametrize("pooling", ["gmp", "sum", "max"])
def test_regional_diffusion_equals_dense_solve(toy, tmp_path, pooling):
    data, R = toy
    ref, _S, _ = _dense_reference(R, data.n_db, k=8, kq=5, alpha=0.9, gamma=3.0, pooling=pooling)
    m = methods.create("regional-diffusion", k=8, kq=5, alpha=0.9, tol=1e-12, maxiter=2000, precision="float64",
                       pooling=pooling)
    out = m.run(data, RunContext(cache=Cache(tmp_path), quiet=True))
    np.testing.assert_array_equal(out["ranks"], ref)
    assert out["stats"]["regions"] == len(R.db)


def test_regional_fsr_full_rank_equals_dense_solve(toy, tmp_path):
    data, R = toy
    ref, _, g = _dense_reference(R, data.n_db, k=8, kq=5, alpha=0.9, gamma=3.0)
    m = methods.create("regional-fsr", k=8, kq=5, alpha=0.9, rank=g.n, precision="float64")
    out = m.run(data, RunContext(cache=Cache(tmp_path), quiet=True))
    # the images the walk reaches rank as the dense solve ranks them; the rest (other connected
    # components: exact zeros for the solve, round-off of the repeated eigenvalue 1 for FSR) follow
    _, S, _ = _dense_reference(R, data.n_db, k=8, kq=5, alpha=0.9, gamma=3.0)
    for j in range(data.n_queries):
        reached = int((S[:, j] > 1e-6 * S[:, j].max()).sum())
        assert 0 < reached < data.n_db
        np.testing.assert_array_equal(out["ranks"][:reached, j], ref[:reached, j])


def test_rmatch_plugin_ranks_by_rmatch(toy, tmp_path):
    data, R = toy
    out = methods.create("r-match").run(data, RunContext(cache=Cache(tmp_path), quiet=True))
    S = rmatch(R.db, R.image_of, data.n_db, R.q, R.query_of, data.n_queries)
    np.testing.assert_array_equal(out["ranks"], ranks_from_scores(S))


def test_regional_graph_is_cached_per_regional_setting(toy, tmp_path):
    data, _R = toy
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    methods.create("regional-diffusion", k=8, kq=5).run(data, ctx)
    misses = ctx.cache.misses
    methods.create("regional-diffusion", k=8, kq=5, alpha=0.5).run(data, ctx)        # same graph: a hit
    assert ctx.cache.misses == misses
    methods.create("regional-diffusion", k=8, kq=5, whitening="none").run(data, ctx)  # another setting: rebuilt
    assert ctx.cache.misses > misses


def test_regional_methods_need_a_cnn_descriptor(tmp_path):
    data, _ = _clustered_regions()
    with pytest.raises(UserError, match="CNN descriptor"):
        methods.create("r-match", descriptor="knn").run(data, RunContext(cache=Cache(tmp_path), quiet=True))


def test_sparse_y_pools_like_dense():
    # pooling accepts the CG output of a sparse-y solve (dense F) and a 1-d score vector alike
    F = sp.random(6, 1, density=1.0, random_state=0).toarray()[:, 0]
    np.testing.assert_allclose(pool_region_scores(F, np.array([0, 0, 1, 1, 2, 2]), 3, "sum")[:, 0],
                               F.reshape(3, 2).sum(1))
