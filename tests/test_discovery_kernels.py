"""Known answers for the object-discovery kernels: FS maps, saliency-weighted GeM, region graph,
centrality, regression to patches, and EGM on 2-D maps."""
from __future__ import annotations

import math

import numpy as np
import pytest
from visrep.methods.cnn.pooling import crow, gem
from visrep.methods.discovery.centrality import (
    degree_centrality,
    pagerank_centrality,
    patch_descriptors,
    region_graph,
    regress_saliency,
)
from visrep.methods.discovery.egm import EGMResult, egm_fit, mixture_map, purge_mask
from visrep.methods.discovery.saliency import (
    channel_sparsity_weights,
    feature_saliency,
    weighted_gem,
)

from visrep.errors import UserError


def _blobs(H, W, specs):
    rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return sum(w * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * s * s)) / (2 * np.pi * s * s)
               for w, r, c, s in specs)


# ---------------------------------------------------------------- FS and pooling

def test_channel_weights_hand_computed():
    x = np.zeros((2, 2, 2))
    x[0] = 1.0                       # Q_0 = 1
    x[1, 0, 0] = 2.0                 # Q_1 = 1/4
    w = channel_sparsity_weights(x, eps=0.0)
    assert w == pytest.approx([math.log(1.25), math.log(5.0)])
    fs = feature_saliency(x, eps=0.0)
    assert fs == pytest.approx(np.array([[math.log(1.25) + 2 * math.log(5), math.log(1.25)],
                                         [math.log(1.25), math.log(1.25)]]))


def test_channel_weights_are_crows():
    """Cross-check with methods/cnn's CroW: crow(x) = w_c * sum_p S(p) x_c(p)."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(6, 5, 4)), 0)
    s = x.sum(0)
    S = np.sqrt(s / np.sqrt((s ** 2).sum()))
    denom = (x * S).sum((1, 2))
    assert crow(x) / denom == pytest.approx(channel_sparsity_weights(x), rel=1e-6)   # crow reads float32


def test_weighted_gem_uniform_is_gem_and_indicator_is_gem_of_the_part():
    rng = np.random.default_rng(1)
    x = rng.random((8, 5, 6)).astype(np.float32)
    assert weighted_gem(x, np.ones((5, 6)), 3.0) == pytest.approx(gem(x, 3.0), rel=1e-6)
    assert weighted_gem(x, np.full((5, 6), 7.5), 2.0) == pytest.approx(gem(x, 2.0), rel=1e-6)
    m = np.zeros((5, 6))
    m[1:3, 2:5] = 1
    assert weighted_gem(x, m, 3.0) == pytest.approx(gem(x[:, 1:3, 2:5], 3.0), rel=1e-6)
    assert weighted_gem(x, np.zeros((5, 6))) == pytest.approx(gem(x, 3.0), rel=1e-6)   # no saliency: uniform


def test_weighted_gem_rejects_bad_weights():
    x = np.ones((3, 4, 4))
    with pytest.raises(UserError, match="does not match"):
        weighted_gem(x, np.ones((4, 5)))
    with pytest.raises(UserError, match="non-negative"):
        weighted_gem(x, -np.ones((4, 4)))


# ---------------------------------------------------------------- graph, centrality, regression

def test_region_graph_and_degree_hand_computed():
    v = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0]], np.float32)
    W = region_graph(v, owner=np.arange(3), k=2, gamma=1.0).toarray()
    assert W == pytest.approx(np.array([[0, .8, 0], [.8, 0, .6], [0, .6, 0]]), abs=1e-6)
    c = degree_centrality(region_graph(v, owner=np.arange(3), k=2, gamma=3.0))
    assert c == pytest.approx([0.512, 0.728, 0.216], abs=1e-6)
    # regions 0 and 1 of the same image: their edge is dropped
    c = degree_centrality(region_graph(v, owner=np.array([0, 0, 1]), k=2, gamma=3.0))
    assert c == pytest.approx([0.0, 0.216, 0.216], abs=1e-6)
    # mutual kNN: with k = 1, 2's nearest is 1 but 1's nearest is 0, so 1-2 is not an edge
    assert degree_centrality(region_graph(v, np.arange(3), k=1, gamma=1.0)) == pytest.approx([.8, .8, 0], abs=1e-6)


def test_pagerank_against_networkx_and_degree_limit():
    nx = pytest.importorskip("networkx")
    rng = np.random.default_rng(2)
    A = np.triu(rng.random((7, 7)) * (rng.random((7, 7)) < 0.5), 1)
    A = A + A.T
    A[6, :] = A[:, 6] = 0            # a dangling node
    ref = nx.pagerank(nx.from_numpy_array(A), alpha=0.85, tol=1e-12, weight="weight")
    c = pagerank_centrality(A, 0.85, tol=1e-13)
    assert c == pytest.approx([ref[i] for i in range(7)], abs=1e-8)
    B = A[:6, :6]                    # no dangling node, alpha -> 1: stationary distribution = degree / volume
    c1 = pagerank_centrality(B, 0.999999, tol=1e-15, maxiter=100000)
    assert c1 == pytest.approx(B.sum(1) / B.sum(), abs=1e-4)


def test_regression_hand_computed():
    v = np.eye(2, dtype=np.float32)
    c = np.array([2.0, 4.0])
    x = np.array([[1, 1], [1, 0], [0, 0.5]], np.float32)
    assert regress_saliency(x, v, c, k=2, gamma=3.0) == pytest.approx([3.0, 2.0, 4.0])
    assert regress_saliency(x[:1], v, c, k=2, exclude=np.array([True, False])) == pytest.approx([4.0])
    assert regress_saliency(np.array([[-1, -1]], np.float32), v, c) == pytest.approx([0.0])   # no positive kernel


def test_patch_descriptors_are_normalized_window_maxima():
    x = np.zeros((2, 3, 3), np.float32)
    x[0, 0, 0] = 3.0
    x[1, 2, 2] = 4.0
    pd = patch_descriptors(x, 1)
    assert pd[0] == pytest.approx([1, 0]) and pd[8] == pytest.approx([0, 1]) and not pd[4].any()
    pd = patch_descriptors(x, 3)
    assert pd[4] == pytest.approx([0.6, 0.8])          # the centre's 3x3 window sees both
    assert pd[2] == pytest.approx([0, 0])              # (0, 2): neither maximum in its window


# ---------------------------------------------------------------- EGM

def test_purge_hand_computed():
    mu = np.array([[0.0, 0.0], [1.0, 1.0]])
    sigma2 = np.ones(2)
    pi = np.array([0.6, 0.4])
    # rho_1 = 1 / (1 + (pi0/pi1) * 2 s1^2/(s0^2+s1^2) * exp(-d^2 / (2 (s0^2+s1^2)))) = 1 / (1 + 1.5 e^-0.5)
    rho = 1 / (1 + 1.5 * math.exp(-0.5))
    assert purge_mask(mu, sigma2, pi, rho - 1e-3).tolist() == [False, False]
    assert purge_mask(mu, sigma2, pi, rho + 1e-3).tolist() == [False, True]
    far = np.array([[0.0, 0.0], [50.0, 0.0]])
    assert purge_mask(far, sigma2, pi, 0.99).tolist() == [False, False]


def test_egm_finds_the_known_maxima_of_a_two_blob_map():
    S = _blobs(30, 32, [(0.4, 8, 9, 2.0), (0.6, 20, 22, 2.5)])
    res = egm_fit(S)
    assert res.k == 2
    assert res.mu[0] == pytest.approx([20, 22], abs=0.05) and res.mu[1] == pytest.approx([8, 9], abs=0.05)
    assert res.pi == pytest.approx([0.6, 0.4], abs=0.01)
    assert np.sqrt(res.sigma2) == pytest.approx([2.5, 2.0], rel=0.05)
    assert res.history[0] < 30 * 32 and res.history[-1] == 2       # started with many, purged to two


def test_egm_single_blob_and_degenerate_maps():
    res = egm_fit(_blobs(15, 15, [(1.0, 7, 7, 1.5)]))
    assert res.k == 1 and res.mu[0] == pytest.approx([7, 7], abs=1e-3)
    res = egm_fit(np.zeros((4, 6)))                       # nothing salient: one broad component
    assert res.k == 1 and res.mu[0] == pytest.approx([1.5, 2.5])
    spike = np.zeros((5, 5))
    spike[2, 3] = 1.0
    res = egm_fit(spike)
    assert res.k == 1 and res.mu[0] == pytest.approx([2, 3]) and res.sigma2[0] == pytest.approx(0.25)
    with pytest.raises(UserError, match="non-negative"):
        egm_fit(-np.ones((3, 3)))
    with pytest.raises(UserError, match="2-D"):
        egm_fit(np.ones(5))


def test_mixture_map_is_the_density():
    res = EGMResult(mu=np.array([[20.0, 20.0]]), sigma2=np.array([4.0]), pi=np.ones(1))
    m = mixture_map(res, (41, 41))
    assert m.sum() == pytest.approx(1.0, abs=1e-6)
    assert m[20, 20] == pytest.approx(1 / (2 * np.pi * 4.0))
    assert np.unravel_index(m.argmax(), m.shape) == (20, 20)
