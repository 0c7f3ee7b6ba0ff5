"""Known answers for the kNN graph, diffusion (RWR, CG) and fast spectral ranking (issue 6)."""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.sparse as sp
from visrep.methods.manifolds.diffusion import cg, direct_solve, query_vectors, rwr
from visrep.methods.manifolds.knn_graph import (
    affinity,
    build_graph,
    check_unit_rows,
    knn,
    normalize,
)
from visrep.methods.manifolds.spectral_ranking import (
    eigen,
    fsr_rank,
    sparsify,
    transfer,
)
from visrep.methods.search.ranking import ranks_from_scores

from visrep.errors import UserError


def clustered(n=300, d=16, c=6, seed=0, spread=0.35):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d))
    x = centers[rng.integers(0, c, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------- graph
def test_knn_matches_brute_force():
    x = clustered(200)
    sims, ids = knn(x, 7)
    full = x @ x.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert (ids[:, 0] == np.arange(200)).all()          # the vector itself first
    np.testing.assert_allclose(sims, np.take_along_axis(full, ref, 1), atol=1e-5)
    # sets agree up to ties
    assert np.mean([set(a) == set(b) for a, b in zip(ids, ref)]) > 0.99


def test_affinity_hand_example():
    # 4 nodes; lists include self. 0<->1 mutual, 1->2 one-way, 2<->3 mutual
    ids = np.array([[0, 1], [1, 2], [2, 3], [3, 2]])
    sims = np.array([[1, .5], [1, .8], [1, .9], [1, .9]], np.float32)
    sims[1, 1] = .8
    a = affinity(ids, sims, gamma=2.0, mutual=True).toarray()
    expect = np.zeros((4, 4), np.float32)
    expect[2, 3] = expect[3, 2] = .81
    np.testing.assert_allclose(a, expect, atol=1e-6)    # 0-1 is not mutual (1 lists 2, not 0)
    u = affinity(ids, sims, gamma=2.0, mutual=False).toarray()
    assert u[0, 1] == u[1, 0] == pytest.approx(.25) and u[1, 2] == u[2, 1] == pytest.approx(.64)
    assert np.allclose(u, u.T) and np.all(np.diag(u) == 0)


def test_negative_similarities_clip_to_zero():
    ids = np.array([[0, 1], [1, 0]])
    sims = np.array([[1, -.5], [1, -.5]], np.float32)
    assert affinity(ids, sims, gamma=3).nnz == 0


def test_graph_is_sparse_symmetric_normalized():
    x = clustered(300)
    g = build_graph(x, k=10)
    W = g.W
    assert sp.issparse(W) and W.nnz <= 300 * 10
    assert abs(W - W.T).max() < 1e-6
    deg = np.asarray(g.A.sum(1)).ravel()
    d = np.zeros_like(deg)
    d[deg > 0] = deg[deg > 0] ** -.5
    np.testing.assert_allclose(W.toarray(), d[:, None] * g.A.toarray() * d[None], atol=1e-6)
    lam = np.linalg.eigvalsh(W.toarray().astype(np.float64))
    assert lam.max() <= 1 + 1e-5 and lam.min() >= -1 - 1e-5


def test_isolated_nodes_keep_their_query_value():
    x = clustered(120, seed=1)
    g = build_graph(x, k=5)
    iso = np.flatnonzero(np.asarray(g.A.sum(1)).ravel() == 0)
    assert g.n_isolated == len(iso)
    if len(iso) == 0:   # force one: drop all edges of node 0
        A = g.A.tolil()
        A[0, :] = 0
        A[:, 0] = 0
        A = A.tocsr()
        A.eliminate_zeros()
        W, _ = normalize(A)
        iso = np.array([0])
    else:
        W = g.W
    assert np.all(np.isfinite(W.data))
    y = np.zeros((W.shape[0], 1))
    y[iso[0]] = 0.7
    y[(iso[0] + 1) % W.shape[0]] = 1.0
    f = direct_solve(W, y, 0.9)
    assert f[iso[0], 0] == pytest.approx(0.1 * 0.7)          # f_i = (1 - alpha) y_i
    fc, _, _ = cg(W, y, 0.9, tol=1e-12, maxiter=500)
    assert fc[iso[0], 0] == pytest.approx(0.1 * 0.7)
    lam, U = eigen(W, W.shape[0])
    assert fsr_rank(U, lam, y, 0.9)[iso[0], 0] == pytest.approx(0.1 * 0.7, abs=1e-6)
    assert np.all(np.abs(f[:, 0][np.arange(W.shape[0]) != iso[0]]) < np.inf)


def test_unnormalized_input_is_normalized_or_rejected():
    x = clustered(50) * 3.0
    y = check_unit_rows(x, "db")
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    with pytest.raises(UserError, match="not L2-normalized"):
        check_unit_rows(x, "db", normalize=False)
    with pytest.raises(UserError, match="all zeros"):
        check_unit_rows(np.zeros((3, 4)), "db")
    with pytest.raises(UserError, match="NaN"):
        check_unit_rows(np.full((3, 4), np.nan), "db")
    g1, g2 = build_graph(x, k=6), build_graph(x / 3.0, k=6)
    assert abs(g1.W - g2.W).max() < 1e-6


# ---------------------------------------------------------------- solvers
@pytest.fixture(scope="module")
def small_problem():
    x = clustered(250, seed=3)
    g = build_graph(x, k=12)
    q = clustered(5, seed=4)
    Y = query_vectors(x, q, kq=5, gamma=3.0)
    return g, Y, x, q


@pytest.mark.parametrize("alpha", [0.5, 0.9, 0.99])
def test_cg_equals_direct_solve(small_problem, alpha):
    g, Y, _, _ = small_problem
    ref = direct_solve(g.W, Y, alpha)
    f, iters, hist = cg(g.W, Y, alpha, tol=1e-10, maxiter=1000)
    np.testing.assert_allclose(f, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    assert (iters > 0).all() and hist[-1] <= 1e-10


def test_cg_matches_scipy_cg(small_problem):
    import scipy.sparse.linalg as sla
    g, Y, _, _ = small_problem
    a = 0.9
    L = (sp.identity(g.n) - a * g.W.astype(np.float64)) / (1 - a)
    y0 = Y[:, 0].toarray().ravel()
    ref, info = sla.cg(L, y0, rtol=1e-10, maxiter=1000)
    assert info == 0
    f, _, _ = cg(g.W, y0[:, None], a, tol=1e-10, maxiter=1000)
    np.testing.assert_allclose(f[:, 0], ref, rtol=1e-6, atol=1e-10)


def test_rwr_converges_to_direct_solve_and_needs_more_iterations(small_problem):
    g, Y, _, _ = small_problem
    alpha = 0.9
    ref = direct_solve(g.W, Y, alpha)
    f, it_rwr, hist = rwr(g.W, Y, alpha, tol=1e-8, maxiter=5000)
    np.testing.assert_allclose(f, ref, rtol=1e-5, atol=1e-7 * np.abs(ref).max())
    _, it_cg, _ = cg(g.W, Y, alpha, tol=1e-8, maxiter=5000)
    assert it_cg.max() < it_rwr.min()
    # RWR residual decreases monotonically (contraction by alpha ||W|| <= alpha)
    assert all(b <= a * (1 + 1e-9) for a, b in pairwise(hist))


def test_fsr_full_rank_equals_direct_solve(small_problem):
    g, Y, _, _ = small_problem
    alpha = 0.95
    lam, U = eigen(g.W, g.n)
    f = fsr_rank(U, lam, Y, alpha)
    ref = direct_solve(g.W, Y, alpha)
    np.testing.assert_allclose(f, ref, atol=1e-5 * np.abs(ref).max())
    # and the same ranking
    sims = np.zeros_like(ref)
    top_f, top_r = ranks_from_scores(f, sims)[:20], ranks_from_scores(ref, sims)[:20]
    assert np.mean(top_f == top_r) > 0.95


@pytest.mark.parametrize("solver", ["lanczos", "shift-invert"])
def test_fsr_sparse_eigensolvers_match_dense_eigh(small_problem, solver):
    g, _, _, _ = small_problem
    lam_d, _ = eigen(g.W, g.n, solver="dense")
    lam_l, U = eigen(g.W, 20, solver=solver)
    np.testing.assert_allclose(lam_l, lam_d[:20], atol=1e-6)
    np.testing.assert_allclose(U.T @ U, np.eye(20), atol=1e-4)
    W = g.W.astype(np.float64)
    assert np.abs(W @ U.astype(np.float64) - U * lam_l).max() < 1e-4  # eigenpairs, not just eigenvalues


def test_eigen_rejects_unknown_solver(small_problem):
    from visrep.errors import UserError
    with pytest.raises(UserError, match="eigen solver must be one of"):
        eigen(small_problem[0].W, 5, solver="arpack")


def test_fsr_low_rank_error_shrinks_with_rank(small_problem):
    g, Y, _, _ = small_problem
    ref = direct_solve(g.W, Y, 0.99)
    errs = []
    for r in (10, 50, 150):
        lam, U = eigen(g.W, r)
        errs.append(np.linalg.norm(fsr_rank(U, lam, Y, 0.99) - ref) / np.linalg.norm(ref))
    assert errs[0] > errs[1] > errs[2]
    lam, U = eigen(g.W, 150)
    # residual variant is exact on the kept subspace plus h(0) on the rest: closer than the plain one
    e_res = np.linalg.norm(fsr_rank(U, lam, Y, 0.99, residual=True) - ref) / np.linalg.norm(ref)
    assert e_res < errs[2]


def test_fsr_with_sparse_embedding(small_problem):
    g, Y, _, _ = small_problem
    lam, U = eigen(g.W, 40)
    dense = fsr_rank(U, lam, Y, 0.9)
    almost_all = sparsify(U, 0.999)
    assert hasattr(almost_all, "indptr")
    np.testing.assert_allclose(fsr_rank(almost_all, lam, Y, 0.9), dense, atol=1e-3 * np.abs(dense).max())
    tenth = fsr_rank(sparsify(U, 0.1), lam, Y, 0.9)
    assert tenth.shape == dense.shape and np.abs(tenth - dense).max() > 0


def test_transfer_and_sparsify():
    np.testing.assert_allclose(transfer(np.array([1.0, 0.0, -1.0]), 0.5), [1.0, 0.5, 1 / 3])
    U = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    S = sparsify(U, 0.25)
    assert S.nnz == 3 and set(S.data) == {10, 11, 12}
    with pytest.raises(UserError, match="sparsity"):
        sparsify(U, 0.0)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_outside_open_interval_is_rejected(small_problem, alpha):
    g, Y, _, _ = small_problem
    for fn in (cg, rwr, direct_solve):
        with pytest.raises(UserError, match="alpha"):
            fn(g.W, Y, alpha)
    with pytest.raises(UserError, match="alpha"):
        transfer(np.ones(2), alpha)
    from visrep.registry import methods
    for name in ("rwr", "diffusion", "fsr"):
        with pytest.raises(UserError, match="alpha"):
            methods.create(name, alpha=alpha)


def test_rank_larger_than_database_is_rejected(small_problem):
    g, _, _, _ = small_problem
    with pytest.raises(UserError, match="rank"):
        eigen(g.W, g.n + 1)


def test_query_vector_known_answer():
    db = np.eye(4, dtype=np.float32)
    q = np.array([[0.8, 0.6, 0, 0]], np.float32)
    y = query_vectors(db, q, kq=2, gamma=3).toarray()[:, 0]
    np.testing.assert_allclose(y, [0.512, 0.216, 0, 0], atol=1e-6)
    # regional: two query regions summed per database vector
    yq = query_vectors(db, np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], np.float32), kq=1, gamma=1,
                       query_of=np.array([0, 0]), n_queries=1).toarray()[:, 0]
    np.testing.assert_allclose(yq, [1.0, 0, 0, 0], atol=1e-6)   # per-region top-1 lists: db0 (1.0) and db1 (0.8)
    yq = query_vectors(db, np.array([[.8, .6, 0, 0], [.6, .8, 0, 0]], np.float32), kq=2, gamma=1,
                       query_of=np.array([0, 0]), n_queries=1).toarray()[:, 0]
    np.testing.assert_allclose(yq, [1.4, 1.4, 0, 0], atol=1e-6)


def test_rank_scores_breaks_ties_by_similarity():
    F = np.array([[0.0], [2.0], [0.0], [1.0]])
    s = np.array([[0.9], [0.1], [0.5], [0.2]])
    assert ranks_from_scores(F, s)[:, 0].tolist() == [1, 3, 0, 2]


def _dense_affinity(ids, sims, gamma, mutual, n):
    """The definition, densely: a_ij = max(s_ij, 0)^gamma for j in i's list (j != i), then min (mutual) or max
    (union) with the transpose."""
    a = np.zeros((n, n), np.float32)
    for i in range(ids.shape[0]):
        for j, s in zip(ids[i], sims[i]):
            if j >= 0 and j != i:
                a[i, j] = np.float32(max(s, 0.0)) ** np.float32(gamma)
    return np.minimum(a, a.T) if mutual else np.maximum(a, a.T)


@pytest.mark.parametrize("mutual", [True, False])
@pytest.mark.parametrize("block_edges", [1, 7, 1 << 22])
def test_blockwise_affinity_equals_the_dense_definition(mutual, block_edges):
    """The block-by-block symmetric affinity (no transposed copy) equals the dense definition exactly,
    whatever the block size, with missing neighbours (-1), self entries, negative and asymmetric
    similarities (s_ij != s_ji by rounding) in the lists; W = D^-1/2 A D^-1/2 equals its dense form."""
    rng = np.random.default_rng(3)
    n, k = 40, 6
    x = rng.standard_normal((n, 5)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims, ids = knn(x, k)
    sims = sims + rng.normal(0, 1e-4, sims.shape).astype(np.float32)   # s_ij != s_ji
    ids[3, 2] = -1
    ids[5, 1], ids[5, 4] = 5, 5                                          # self entries are dropped
    sims[7, 1] = -0.3
    a = affinity(ids, sims, gamma=3.0, mutual=mutual, n=n, block_edges=block_edges)
    want = _dense_affinity(ids, sims, 3.0, mutual, n)
    assert a.dtype == np.float32 and a.has_sorted_indices
    assert np.array_equal(a.toarray(), want) and a.nnz == int((want > 0).sum())
    w, deg = normalize(a)
    assert np.allclose(deg, want.sum(1), rtol=1e-6)
    inv = np.where(deg > 0, deg, np.inf) ** -0.5
    assert np.allclose(w.toarray(), inv[:, None] * want * inv[None, :], rtol=1e-6, atol=0)
    assert np.array_equal(w.indices, a.indices) and w.nnz == a.nnz
    with pytest.raises(UserError, match="kNN ids refer to vector 40, but the graph has 40 vectors"):
        bad = ids.copy()
        bad[0, 1] = n
        affinity(bad, sims, n=n)


def test_normalize_of_a_general_sparse_matrix_drops_zero_rows_like_the_matrix_product():
    """normalize on a float64 COO input with an isolated node and an explicit zero: W equals
    (D^-1/2 A D^-1/2) computed by scipy's sparse products, entry for entry, without explicit zeros."""
    a = sp.coo_matrix(np.array([[0, 2.0, 0, 0], [2.0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 0]]))
    a = sp.coo_matrix((np.append(a.data, 0.0), (np.append(a.row, 3), np.append(a.col, 3))), shape=(4, 4))
    w, deg = normalize(a)
    d = np.asarray(a.sum(1)).ravel()
    inv = np.zeros(4)
    inv[d > 0] = d[d > 0] ** -0.5
    ref = (sp.diags(inv.astype(np.float32)) @ a.tocsr() @ sp.diags(inv.astype(np.float32))).tocsr()
    assert w.dtype == np.float32 and np.array_equal(w.toarray(), ref.toarray().astype(np.float32))
    assert (w.data != 0).all() and np.array_equal(deg, d)


def test_threaded_block_product_is_the_same_bit_for_bit():
    """The sparse product split over row blocks on threads (cg's default when OMP_NUM_THREADS > 1) sums every
    row as the single-threaded kernel does: equal bit for bit, and so is cg."""
    from visrep.methods.manifolds.diffusion import _block_product
    rng = np.random.default_rng(0)
    n = 60_000
    W = sp.csr_matrix((rng.random(n * 25, dtype=np.float32), (np.repeat(np.arange(n), 25), rng.integers(0, n, n * 25))),
                      shape=(n, n))
    W = (W + W.T).tocsr()
    assert W.nnz > 1_000_000                                # above the threshold where threads start
    P = rng.standard_normal((n, 3)).astype(np.float32)
    one, four = np.empty_like(P), np.empty_like(P)
    _block_product(W, np.float32, threads=1)(P, one)
    _block_product(W, np.float32, threads=4)(P, four)
    assert np.array_equal(one, four) and np.array_equal(one, (W @ P).astype(np.float32))
    Wn, _ = normalize(W)
    Y = np.abs(P)
    import os
    old = os.environ.get("OMP_NUM_THREADS")
    try:
        os.environ["OMP_NUM_THREADS"] = "1"
        f1 = cg(Wn, Y, 0.9, dtype=np.float32)[0]
        os.environ["OMP_NUM_THREADS"] = "3"
        f3 = cg(Wn, Y, 0.9, dtype=np.float32)[0]
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old
    assert np.array_equal(f1, f3)


def test_reordered_product_is_the_same_bit_for_bit():
    """The product in reverse Cuthill-McKee order (cg on large graphs with a block of queries) keeps each row's
    terms in their order: equal bit for bit to the plain product, for a graph stored in a random order."""
    from visrep.methods.manifolds import diffusion
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((100, 16)).astype(np.float32)
    x = centres[rng.integers(0, 100, 3000)] + 0.3 * rng.standard_normal((3000, 16)).astype(np.float32)
    g = build_graph(x, k=10)                                             # clusters stored in random order
    P = rng.standard_normal((3000, 5)).astype(np.float32)
    plain, reordered = np.empty_like(P), np.empty_like(P)
    diffusion._block_product(g.W, np.float32)(P, plain)
    old = diffusion.REORDER_NNZ
    try:
        diffusion.REORDER_NNZ = 0
        diffusion._block_product(g.W, np.float32, reorder=True)(P, reordered)
    finally:
        diffusion.REORDER_NNZ = old
    assert np.array_equal(plain, reordered)
    Wr, perm = diffusion._reordered(g.W)
    assert sorted(perm.tolist()) == list(range(3000)) and np.array_equal(Wr.toarray(), g.W.toarray()[perm][:, perm])
    bw = lambda m: np.abs(m.tocoo().row - m.tocoo().col).mean()         # noqa: E731 - mean distance of an edge
    assert bw(Wr) < bw(g.W) / 3
    Y = np.abs(P)
    old = diffusion.REORDER_NNZ
    try:
        diffusion.REORDER_NNZ = 0
        f_re = cg(g.W, Y, 0.95, dtype=np.float32)[0]
    finally:
        diffusion.REORDER_NNZ = old
    assert np.array_equal(f_re, cg(g.W, Y, 0.95, dtype=np.float32)[0])
