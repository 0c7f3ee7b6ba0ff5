"""Known-answer tests of the vocabulary kernels on synthetic isotropic Gaussian mixtures.

AGM (Avrithis & Kalantidis ECCV 2012) must infer k from k_init > k (purging works), put its
means on the true means, reach the noise floor d s^2 in distortion, and keep the components of
small clusters; AKM / RAKM must reduce to exact k-means when the k-d forest is exact.
"""
import numpy as np
import pytest
from visrep.methods.local.vocabularies import (
    agm_fit,
    agm_purge,
    akm_fit,
    kmeans_fit,
    nearest_centroids,
    rakm_fit,
)


def _mixture(sizes, d=16, sep=3.0, s=0.1, seed=0):
    """Well-separated isotropic Gaussians N(c_t, s^2 I), c_t ~ N(0, sep^2 I); sizes[t] points each."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(sizes), d)) * sep
    x = np.concatenate([c + s * rng.standard_normal((n, d)) for c, n in zip(centers, sizes)]).astype(np.float32)
    return x, centers.astype(np.float32)


def _mean_errors(centers, learned):
    """Distance of each true mean to its nearest learned mean."""
    d, _ = nearest_centroids(centers, learned, 1)
    return np.sqrt(d[:, 0])


def test_agm_recovers_k_means_and_noise_floor_16d():
    d, s = 16, 0.1
    x, centers = _mixture([300] * 20, d=d, s=s, seed=0)
    v = agm_fit(x, 60, niter=30, seed=0)                      # k_init = 3 k, paper defaults
    assert 20 <= v.k <= 22, [h["k"] for h in v.history]
    assert _mean_errors(centers, v.centroids).max() < 0.05    # every true mean found (s sqrt(d) = 0.4)
    # distortion at the noise floor d s^2 and no worse than k-means (best of 3 seeds) at the same k
    assert v.distortion < 1.03 * d * s * s
    km = min(kmeans_fit(x, v.k, niter=30, seed=sd).distortion for sd in range(3))
    assert v.distortion <= km * 1.01
    # the mixture it reports: weights sum to one, sigma of the kept components near s
    np.testing.assert_allclose(v.weights.sum(), 1, atol=1e-5)
    big = v.weights * len(x) > 100
    np.testing.assert_allclose(np.sqrt(v.sigma2[big]), s, rtol=0.1)


def test_agm_keeps_components_of_small_clusters():
    # 10 clusters of 800 points and 10 of 100: purging is by overlap, not by weight, so the
    # small clusters (1.1% of the points each) keep their component
    x, centers = _mixture([800] * 10 + [100] * 10, d=16, s=0.1, seed=1)
    v = agm_fit(x, 100, niter=30, seed=0)
    err = _mean_errors(centers, v.centroids)
    assert err[10:].max() < 0.06 and err[:10].max() < 0.05, err
    assert 20 <= v.k <= 24, [h["k"] for h in v.history]


def test_agm_purge_only_in_favour_of_a_surviving_component():
    # three means on a line, heaviest first: mu_1 lies in the expanded scope of mu_0, mu_2 in
    # that of mu_1 but not of mu_0; mu_1 is purged (absorbed by mu_0), so mu_2 must stay or its
    # points would be left to a component 2 units away
    mu = np.zeros((3, 4), np.float32)
    mu[:, 0] = [0.0, 1.0, 2.0]
    sigma2 = np.ones(3)
    pi = np.array([0.5, 0.3, 0.2])
    alive = np.ones(3, bool)
    # expand 0.6, d = 4: scope radius^2 = 0.36 * 4 * 1 = 1.44 > 1 (neighbours) but < 4 (0 to 2)
    purge = agm_purge(mu, sigma2, pi, alive, 0.6, m=2, n_trees=1, leaf_size=8)
    np.testing.assert_array_equal(purge, [False, True, False])
    # no support purges regardless of position; the lighter of two coincident means goes
    purge = agm_purge(mu, sigma2, pi, np.array([True, True, False]), 0.6, m=2, n_trees=1, leaf_size=8)
    np.testing.assert_array_equal(purge, [False, True, True])
    mu2 = np.zeros((2, 4), np.float32)
    purge = agm_purge(mu2, np.ones(2), np.array([0.4, 0.6]), np.ones(2, bool), 0.6, m=1, n_trees=1, leaf_size=8)
    np.testing.assert_array_equal(purge, [True, False])


def test_agm_same_init_is_deterministic_and_k_never_grows():
    x, _ = _mixture([200] * 8, d=8, s=0.1, seed=3)
    init = x[np.random.default_rng(0).choice(len(x), 40, replace=False)]
    a = agm_fit(x, 40, niter=15, seed=0, init=init)
    b = agm_fit(x, 40, niter=15, seed=0, init=init)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    ks = [h["k"] for h in a.history]
    assert all(q <= p for p, q in zip([40] + ks, ks)), ks


@pytest.mark.parametrize("fit", [akm_fit, rakm_fit])
@pytest.mark.parametrize("n_trees, leaf_size", [(1, 64), (4, 64)])
def test_akm_rakm_equal_kmeans_when_forest_is_exact(fit, n_trees, leaf_size):
    # leaf_size >= k: every tree is one leaf holding all centroids, so the "approximate" search
    # checks all k and AKM / RAKM are Lloyd with exact assignment from the same random init
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 16)).astype(np.float32)
    km = kmeans_fit(x, 64, niter=8, seed=3)
    v = fit(x, 64, niter=8, seed=3, n_trees=n_trees, leaf_size=leaf_size)
    np.testing.assert_allclose(v.centroids, km.centroids, atol=1e-5)
    assert v.distortion == pytest.approx(km.distortion, rel=1e-6)
    np.testing.assert_allclose([h["objective"] for h in v.history], [h["objective"] for h in km.history],
                               rtol=1e-5)


def test_akm_rakm_recover_mixture_with_approximate_forest():
    d, s = 16, 0.1
    x, centers = _mixture([300] * 20, d=d, s=s, seed=0)
    init = x[::300].copy()                                   # one point per cluster
    for fit in (akm_fit, rakm_fit):
        v = fit(x, 20, niter=10, init=init, n_trees=2, leaf_size=2)   # few checks
        assert _mean_errors(centers, v.centroids).max() < 0.05, fit.__name__
        assert v.distortion < 1.03 * d * s * s
