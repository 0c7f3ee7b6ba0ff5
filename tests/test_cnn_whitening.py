"""Whitening (PCA, learned) and regional GMP weights / regional diffusion (issue 6)."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.cnn.regional import gmp_weights
from visrep.methods.cnn.whitening import learned_whitening, pca_whitening

from visrep.errors import UserError


def test_pca_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    x = rng.standard_normal((5000, 8)) @ A + 3.0
    w = pca_whitening(x, eps=0)
    z = (x - w.mean) @ w.P.T
    np.testing.assert_allclose(np.cov(z, rowvar=False, bias=True), np.eye(8), atol=1e-8)
    assert w.P.shape == (8, 8)
    w4 = pca_whitening(x, dim=4)
    assert w4.apply(x).shape == (5000, 4)


def test_pca_whitening_matches_sklearn():
    from sklearn.decomposition import PCA
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    ours = pca_whitening(x, dim=4, eps=0).apply(x)
    ref = PCA(n_components=4, whiten=True, svd_solver="full").fit_transform(x)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), atol=1e-5)     # components agree up to sign


def test_learned_whitening_whitens_matching_differences():
    rng = np.random.default_rng(2)
    d, n_cls, per = 6, 300, 2
    centers = rng.standard_normal((n_cls, d)) * 3
    noise_dir = rng.standard_normal((d, d))
    x = np.repeat(centers, per, axis=0) + rng.standard_normal((n_cls * per, d)) @ noise_dir * 0.3
    pairs = np.stack([np.arange(0, n_cls * per, 2), np.arange(1, n_cls * per, 2)], axis=1)
    w = learned_whitening(x, pairs, eps=0)
    diff = (x[pairs[:, 0]] - x[pairs[:, 1]]) @ w.P.T
    np.testing.assert_allclose(diff.T @ diff / len(diff), np.eye(d), atol=1e-8)
    # the rotation is PCA of the whitened data: decreasing variance along output dims
    z = (x - w.mean) @ w.P.T
    var = (z ** 2).mean(0)
    assert np.all(np.diff(var) <= 1e-9)
    # it separates classes better than PCA-whitening: nearest neighbour is the matching view more often
    def nn_acc(v):
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return np.mean(s.argmax(1) == (np.arange(len(v)) ^ 1))
    assert nn_acc(w.apply(x)) >= nn_acc(pca_whitening(x).apply(x))


def test_whitening_bad_input():
    x = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(UserError, match="dim"):
        pca_whitening(x, dim=9)
    with pytest.raises(UserError, match="pairs"):
        learned_whitening(x, np.array([[0, 1, 2]]))
    with pytest.raises(UserError, match="outside"):
        learned_whitening(x, np.array([[0, 99]]))
    with pytest.raises(UserError, match="NaN"):
        pca_whitening(np.full((5, 3), np.nan))
    from visrep.registry import methods
    with pytest.raises(UserError, match="mode"):
        methods.create("whiten", mode="zca")


def test_gmp_weights_known_answers():
    # one region: c = 1 / (1 + 1) ; two identical regions share the weight; orthogonal ones do not
    v = np.array([[1, 0], [1, 0], [0, 1]], np.float64)
    c = gmp_weights(v[:1], np.array([0]))
    np.testing.assert_allclose(c, [0.5])
    c = gmp_weights(v, np.array([0, 0, 1]))
    # image 0: (V V^T + I) c = 1 with V V^T = [[1,1],[1,1]] -> c = 1/3 each
    np.testing.assert_allclose(c, [1 / 3, 1 / 3, 0.5])
    # GMP property: V^T-pooled similarity is equalized: (V V^T + I) c = 1
    rng = np.random.default_rng(0)
    V = rng.standard_normal((5, 8))
    c = gmp_weights(V, np.zeros(5, int))
    np.testing.assert_allclose((V @ V.T + np.eye(5)) @ c, np.ones(5), atol=1e-10)


def test_whiten_on_oxford5k(shared_data, oxford5k_features, capsys):
    import json

    from visrep.commands import main
    common = ["--dataset", "oxford5k", "--data-root", str(shared_data / "retrieval"),
              "--set", f"features={oxford5k_features}", "--json"]
    assert main(["run", "--method", "whiten", *common]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert 0.2 < rec["metrics"]["map"] < 0.6 and rec["timings"]["query"] > 0
