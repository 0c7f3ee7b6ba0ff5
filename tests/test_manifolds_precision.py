"""The fast paths of diffusion (CG) and FSR (issue 16): same numbers, or same rankings, as the reference.

- CG in float64 gives the textbook recurrences bit for bit (a plain reference loop below, with
  ``W @ P`` allocated every iteration); float32 CG and float32 FSR stay within float32 rounding on
  constructed graphs, and on the real Oxford5k descriptors (k = 50, alpha = 0.99, 20 iterations)
  give identical top-100 rankings / mAP equal to 4 decimals.
- float32 Lanczos (ARPACK single precision) finds the same eigenvalues as float64 to 1e-4.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from visrep.methods.manifolds.diffusion import cg, direct_solve, query_vectors
from visrep.methods.manifolds.knn_graph import build_graph
from visrep.methods.manifolds.spectral_ranking import eigen, fsr_rank, n_components
from visrep.methods.search.ranking import ranks_from_scores

from visrep.errors import UserError


def clustered(n=400, d=16, c=8, seed=0, spread=0.35):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d))
    x = centers[rng.integers(0, c, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def problem():
    x = clustered()
    g = build_graph(x[:360], k=12)
    Y = query_vectors(x[:360], x[360:], kq=5, gamma=3.0)
    return x[:360], x[360:], g, Y


def textbook_cg(W, Y, alpha, tol, maxiter):
    """Reference: CG on L_alpha F = Y per column with fresh float64 arrays each step (no buffers)."""
    W = W.astype(np.float64)
    Y = np.asarray(Y.toarray() if hasattr(Y, "toarray") else Y, np.float64)

    def L(f):
        out = np.asarray(W @ f)
        out *= alpha
        out = f - out
        return out / (1 - alpha)
    yn = np.linalg.norm(Y, axis=0)
    yn[yn == 0] = 1
    X, R = np.zeros_like(Y), Y.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    act = np.sqrt(rs) > tol * yn
    for _ in range(maxiter):
        if not act.any():
            break
        AP = L(P)
        den = np.einsum("ij,ij->j", P, AP)
        a = np.where(act & (den > 0), rs / np.where(den > 0, den, 1.0), 0.0)
        X = X + a * P
        R = R - a * AP
        rn = np.einsum("ij,ij->j", R, R)
        beta = np.where(act, rn / np.where(rs > 0, rs, 1.0), 0.0)
        P = R + beta * P
        rs = np.where(act, rn, rs)
        act = act & (np.sqrt(rs) > tol * yn)
    return X


def test_cg_float64_is_the_textbook_recurrence_bit_for_bit(problem):
    _, _, g, Y = problem
    for maxiter in (1, 5, 20):
        F, _, _ = cg(g.W, Y, 0.99, 1e-6, maxiter)
        assert F.dtype == np.float64
        np.testing.assert_array_equal(F, textbook_cg(g.W, Y, 0.99, 1e-6, maxiter))


def test_cg_buffers_do_not_leak_between_calls(problem):
    _, _, g, Y = problem
    a = cg(g.W, Y, 0.9, 1e-6, 20, dtype=np.float32)[0].copy()
    cg(g.W, Y[:, ::-1], 0.9, 1e-6, 20, dtype=np.float32)
    np.testing.assert_array_equal(cg(g.W, Y, 0.9, 1e-6, 20, dtype=np.float32)[0], a)


def test_cg_float32_agrees_with_scipy_and_direct_solve(problem):
    _, _, g, Y = problem
    alpha = 0.9
    F32, it, _ = cg(g.W, Y, alpha, 1e-6, 200, dtype=np.float32)
    assert F32.dtype == np.float32 and (it < 200).all()
    exact = direct_solve(g.W, Y, alpha)
    np.testing.assert_allclose(F32, exact, rtol=0, atol=2e-5 * np.abs(exact).max())
    n = g.n
    L = (sp.identity(n) - alpha * g.W.astype(np.float64)) / (1 - alpha)
    y0 = Y[:, [0]].toarray().ravel()
    ref, info = sla.cg(L, y0, rtol=1e-6, maxiter=200)
    assert info == 0
    np.testing.assert_allclose(F32[:, 0], ref, atol=2e-5 * np.abs(ref).max())


def test_cg_float32_columns_are_independent(problem):
    """A column solved alone equals the same column solved in a block (up to float32 rounding)."""
    _, _, g, Y = problem
    block = cg(g.W, Y, 0.99, 1e-6, 20, dtype=np.float32)[0]
    alone = cg(g.W, Y[:, [3]], 0.99, 1e-6, 20, dtype=np.float32)[0]
    np.testing.assert_allclose(alone[:, 0], block[:, 3], rtol=1e-5, atol=1e-6 * np.abs(block[:, 3]).max())


def test_cg_rejects_other_precisions(problem):
    _, _, g, Y = problem
    with pytest.raises(UserError, match="precision"):
        cg(g.W, Y, 0.9, dtype=np.float16)
    with pytest.raises(UserError, match="precision"):
        eigen(g.W, 5, dtype=np.int32)


def test_eigen_float32_matches_float64_on_a_connected_graph():
    x = clustered(300, c=3, spread=1.0, seed=2)
    g = build_graph(x, k=20)
    assert n_components(g.W) == 1
    for solver in ("lanczos", "dense"):
        l64, U64 = eigen(g.W, 20, solver=solver)
        l32, U32 = eigen(g.W, 20, solver=solver, dtype=np.float32)
        np.testing.assert_allclose(l32, l64, atol=1e-4)
        assert U32.dtype == np.float32
        # eigenvectors of well-separated eigenvalues agree up to sign
        sep = np.minimum(np.r_[np.inf, -np.diff(l64)], np.r_[-np.diff(l64), np.inf]) > 1e-2
        assert sep.sum() >= 3
        dots = np.abs(np.einsum("ij,ij->j", U32.astype(np.float64), U64))
        np.testing.assert_allclose(dots[sep], 1.0, atol=1e-3)


def test_eigen_float32_keeps_every_copy_of_eigenvalue_one(problem):
    """Eigenvalue 1 once per connected component: float32 Lanczos missed a copy, so it falls back."""
    _, _, g, _ = problem
    c = n_components(g.W)
    assert c > 1
    for solver in ("lanczos", "dense"):
        lam, _ = eigen(g.W, c + 5, solver=solver, dtype=np.float32)
        assert np.sum(lam > 1 - 1e-4) == c
        np.testing.assert_allclose(lam, eigen(g.W, c + 5, solver="dense")[0], atol=1e-4)


def test_fsr_float32_equals_float64_up_to_rounding(problem):
    _, _, g, Y = problem
    lam, U = eigen(g.W, g.n)                     # full rank: FSR is the exact solve
    for residual in (False, True):
        F64 = fsr_rank(U, lam, Y, 0.9, residual, dtype=np.float64)
        F32 = fsr_rank(U, lam, Y, 0.9, residual)
        assert F32.dtype == np.float32 and F64.dtype == np.float64
        np.testing.assert_allclose(F32, F64, atol=1e-5 * np.abs(F64).max())
        # dense Y gives the same as sparse Y
        np.testing.assert_allclose(fsr_rank(U, lam, Y.toarray(), 0.9, residual), F32, atol=1e-6 * np.abs(F64).max())
    np.testing.assert_allclose(fsr_rank(U, lam, Y, 0.9, dtype=np.float64), direct_solve(g.W, Y, 0.9),
                               atol=1e-5 * np.abs(F64).max())


# ---------------------------------------------------------------- real Oxford5k descriptors
@pytest.fixture(scope="module")
def oxford(oxford5k_features, shared_data):
    from visrep.datasets.matlab_gnd import read_matlab_gnd
    from visrep.methods.manifolds.knn_graph import check_unit_rows
    from visrep.protocols.oxford import map_from_lists, positives_and_junk

    from visrep.descriptor_files import read_descriptors
    gnd = read_matlab_gnd(shared_data / "retrieval" / "oxford5k" / "gnd_oxford5k.mat")
    db = check_unit_rows(read_descriptors(oxford5k_features), "db")
    q = db[np.asarray(gnd["qidx"]).ravel()]
    g = build_graph(db, k=50)
    Y = query_vectors(db, q, 10, 3.0)
    pos, junk = positives_and_junk(gnd["gnd"], ("ok",), ("junk",))
    return db, q, g, Y, lambda r: map_from_lists(r, pos, junk, db.shape[0], "oxford5k")[0]


def test_oxford5k_cg_float32_same_top100_as_float64(oxford):
    """Paper settings (k = 50, alpha = 0.99, kq = 10, 20 iterations): the float32 path ranks the same."""
    db, q, g, Y, mapf = oxford
    sims = db @ q.T
    r64 = ranks_from_scores(cg(g.W, Y, 0.99, 1e-6, 20)[0], sims)
    r32 = ranks_from_scores(cg(g.W, Y, 0.99, 1e-6, 20, dtype=np.float32)[0], sims)
    np.testing.assert_array_equal(r32[:100], r64[:100])
    assert round(mapf(r32), 4) == round(mapf(r64), 4)


@pytest.mark.slow
def test_oxford5k_fsr_float32_same_map_as_float64(oxford):
    db, q, g, Y, mapf = oxford
    sims = db @ q.T
    l64, U64 = eigen(g.W, 100, solver="lanczos")
    l32, U32 = eigen(g.W, 100, solver="lanczos", dtype=np.float32)
    for residual in (False, True):
        a = ranks_from_scores(fsr_rank(U64, l64, Y, 0.99, residual, dtype=np.float64), sims)
        b = ranks_from_scores(fsr_rank(U64, l64, Y, 0.99, residual), sims)
        c = ranks_from_scores(fsr_rank(U32, l32, Y, 0.99, residual), sims)
        assert np.mean(b[:100] == a[:100]) > 0.999               # online float32: (near-)same top 100
        assert round(mapf(b), 4) == round(mapf(a), 4)             # and the same mAP to 4 decimals
        assert round(mapf(c), 4) == round(mapf(a), 4)             # float32 eigenvectors: same mAP


@pytest.mark.slow
def test_oxford5k_methods_float32_default_ranks_like_float64(capsys, shared_data, oxford5k_features):
    """Through the CLI: `diffusion` and `fsr` with their float32 default give the float64 mAP (4 decimals)."""
    import json

    from visrep.commands import main
    common = ["--dataset", "oxford5k", "--data-root", str(shared_data / "retrieval"),
              "--set", f"features={oxford5k_features}", "--set", "k=50", "--set", "alpha=0.99"]

    def run_map(method, *extra):
        assert main(["run", "--method", method, *common, *extra, "--json"]) == 0
        rec = json.loads(capsys.readouterr().out)[0]
        return rec["params"]["precision"], rec["metrics"]["map"]

    p32, m32 = run_map("diffusion")
    p64, m64 = run_map("diffusion", "--set", "precision=float64")
    assert (p32, p64) == ("auto", "float64") and round(m32, 4) == round(m64, 4)
    f32 = run_map("fsr", "--set", "rank=100", "--set", "eigensolver=lanczos")[1]
    f64 = run_map("fsr", "--set", "rank=100", "--set", "eigensolver=lanczos", "--set", "precision=float64")[1]
    assert round(f32, 4) == round(f64, 4)
