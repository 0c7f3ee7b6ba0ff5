"""Vocabularies: k-means vs faiss, k-d forest, AKM/RAKM, AGM's inferred k, bad input, real SIFT."""
import numpy as np
import pytest
from visrep.methods.local.vocabularies import (
    KDForest,
    agm_fit,
    akm_fit,
    assign,
    distortion,
    kmeans_fit,
    nearest_centroids,
    rakm_fit,
    read_training_descriptors,
)

from visrep.context import shared_data_dir
from visrep.errors import UserError


def _blobs(n_per=200, k=6, d=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    x = np.concatenate([c + spread * rng.standard_normal((n_per, d)) for c in centers]).astype(np.float32)
    return x, centers


def test_kmeans_matches_faiss_from_same_init():
    import faiss
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    init = x[:32].copy()
    ours = kmeans_fit(x, 32, niter=5, init=init)
    clus = faiss.Clustering(16, 32)
    clus.niter, clus.max_points_per_centroid, clus.min_points_per_centroid = 5, 10 ** 6, 1
    clus.update_index = True
    faiss.copy_array_to_vector(init.ravel(), clus.centroids)
    clus.train(x, faiss.IndexFlatL2(16))
    theirs = faiss.vector_float_to_array(clus.centroids).reshape(32, 16)
    np.testing.assert_allclose(ours.centroids, theirs, atol=1e-4)
    assert ours.distortion == pytest.approx(distortion(x, theirs), rel=1e-5)


def test_kdforest_exact_when_single_leaf_and_good_otherwise():
    rng = np.random.default_rng(2)
    c = rng.standard_normal((500, 16)).astype(np.float32)
    q = rng.standard_normal((300, 16)).astype(np.float32)
    de, ie = nearest_centroids(q, c, 3)
    d1, i1 = KDForest(c, n_trees=1, leaf_size=500).search(q, 3)
    np.testing.assert_array_equal(i1, ie)
    np.testing.assert_allclose(d1, de, rtol=1e-4, atol=1e-4)
    _, i8 = KDForest(c, n_trees=8, leaf_size=16).search(q, 1)
    _, i1s = KDForest(c, n_trees=1, leaf_size=16).search(q, 1)
    acc8, acc1 = (i8[:, 0] == ie[:, 0]).mean(), (i1s[:, 0] == ie[:, 0]).mean()
    assert acc8 > acc1 and acc8 > 0.6      # more trees, better approximation
    # returned distances are true distances of the returned ids
    d8, i8 = KDForest(c, n_trees=8, leaf_size=16).search(q, 2)
    np.testing.assert_allclose(d8[:, 0], ((q - c[i8[:, 0]]) ** 2).sum(1), rtol=1e-4, atol=1e-4)
    assert (d8[:, 0] <= d8[:, 1]).all() and (i8[:, 0] != i8[:, 1]).all()


def test_akm_rakm_recover_blobs_and_rakm_is_monotone():
    x, centers = _blobs()
    init = x[::200].copy()                      # one point per blob
    km = kmeans_fit(x, 6, niter=10, init=init)
    assert km.distortion < 0.05
    for fit in (akm_fit, rakm_fit):
        exact = fit(x, 6, niter=10, init=init, n_trees=1, leaf_size=6)   # one leaf = exact search
        np.testing.assert_allclose(exact.centroids, km.centroids, atol=1e-5)
        approx = fit(x, 6, niter=10, init=init, n_trees=2, leaf_size=1)
        assert approx.distortion < 0.05
    rng = np.random.default_rng(4)
    y = rng.standard_normal((3000, 16)).astype(np.float32)
    v = rakm_fit(y, 200, niter=8, seed=0, n_trees=2, leaf_size=8)
    obj = [h["objective"] for h in v.history]
    assert all(b <= a + 1e-4 for a, b in zip(obj, obj[1:])), obj
    a = akm_fit(y, 200, niter=8, seed=0, n_trees=2, leaf_size=8)
    assert v.distortion <= a.distortion * 1.01   # robust assignment is never much worse than AKM


def test_agm_infers_number_of_components():
    x, centers = _blobs(n_per=150, k=5, d=6, spread=0.1, seed=5)
    v = agm_fit(x, 40, niter=30, seed=0, m=4, expand=1.5, n_trees=4, leaf_size=4)  # low-dim blobs: lambda 1.5
    assert v.k == 5, v.history
    # each true centre has one learned mean close to it
    d, _ = nearest_centroids(centers.astype(np.float32), v.centroids, 1)
    assert d.max() < 0.05
    assert v.history[0]["k"] < 40 and v.sigma2.shape == (5,)
    np.testing.assert_allclose(v.weights.sum(), 1, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(v.sigma2), 0.1, rtol=0.3)


def test_bad_input():
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(UserError, match="larger than the number of training points"):
        kmeans_fit(x, 11)
    with pytest.raises(UserError, match="2-D"):
        kmeans_fit(np.zeros(10), 2)
    with pytest.raises(UserError, match="NaN"):
        akm_fit(np.full((10, 4), np.nan), 2)
    with pytest.raises(UserError, match="real numbers"):
        agm_fit(np.array([["a"] * 4] * 10), 2)
    with pytest.raises(UserError, match="trained on dimension 4"):
        assign(np.zeros((3, 8), np.float32), np.zeros((2, 4), np.float32))
    ids, d = assign(np.zeros((0, 4), np.float32), np.zeros((2, 4), np.float32), 2)
    assert ids.shape == (0, 2)


def test_vocabulary_method_reports_stats(tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.registry import methods
    x, _ = _blobs(n_per=50, k=4, d=8)
    np.save(tmp_path / "train.npy", x)
    ctx = RunContext(cache=Cache(enabled=False), quiet=True)
    for name in ("kmeans", "akm", "rakm", "agm"):
        out = methods.create(name, k=4 if name != "agm" else 12, niter=10, train=str(tmp_path / "train.npy")).run(None, ctx)
        assert out["centroids"].shape[1] == 8 and out["k"] == len(out["centroids"])
        assert out["distortion"] < 1.0, name


@pytest.fixture(scope="module")
def oxford_sift():
    root = shared_data_dir()
    path = root / "localfeatures" / "oxford5k_queries_hesaff_sift" if root else None
    if path is None or not path.is_dir():
        pytest.skip("real Oxford query Hessian-affine SIFT not present (../shared/data/localfeatures)")
    return read_training_descriptors(str(path))


def test_real_sift_vocabularies_small(oxford_sift):
    x = oxford_sift[np.random.default_rng(0).choice(len(oxford_sift), 10000, replace=False)]
    assert x.shape[1] == 128
    km = kmeans_fit(x, 256, niter=5)
    ak = akm_fit(x, 256, niter=5)
    rk = rakm_fit(x, 256, niter=5)
    # approximate assignment costs a little distortion, robust assignment recovers part of it
    assert km.distortion <= rk.distortion * 1.02 <= ak.distortion * 1.04
    ag = agm_fit(x, 400, niter=5)
    assert 50 < ag.k < 400 and ag.history[-1]["k"] == ag.k


@pytest.mark.slow
def test_real_sift_vocabularies_full(oxford_sift):
    """All ~75k real descriptors, k=4096 (prints distortion, time, k for the report)."""
    for name, fit in (("kmeans", kmeans_fit), ("akm", akm_fit), ("rakm", rakm_fit)):
        v = fit(oxford_sift, 4096, niter=10)
        print(name, v.k, v.distortion, v.seconds)
    v = agm_fit(oxford_sift, 6000, niter=10)
    print("agm", v.k, v.distortion, v.seconds)
    assert v.k < 6000


def test_vocabulary_learning_shows_progress_per_iteration(tmp_path):
    """A long phase advances a bar: one step per Lloyd iteration, labelled with the method and k."""
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.methods.local.pipeline import vocabulary_for

    seen = []

    class Ctx(RunContext):
        def progress(self, iterable, desc="", total=None, unit="it"):
            for item in iterable:
                seen.append((desc, total, unit))
                yield item

    x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    ctx = Ctx(cache=Cache(tmp_path), quiet=False)
    vocabulary_for(x, "kmeans", 5, ctx, {"train": "toy"}, niter=4)
    assert seen == [("kmeans vocabulary k=5", 4, "iter")] * 4


def test_bow_vocabulary_options_reach_the_fit(monkeypatch):
    """vocab_checks -> 8 trees x ceil(checks / 8) points per leaf; agm_m -> AGM's m; checks with exact k-means is
    an error (the AGM paper's Table 1 settings are plugin parameters, not silent defaults)."""
    from visrep.methods.local import pipeline
    from visrep.registry import methods
    assert pipeline.vocabulary_options(methods.create("bow", vocabulary="akm", vocab_checks=200).cfg) == \
        {"n_trees": 8, "leaf_size": 25}
    assert pipeline.vocabulary_options(methods.create("bow", vocabulary="agm", vocab_checks=100, agm_m=100).cfg) == \
        {"n_trees": 8, "leaf_size": 13, "m": 100}
    assert pipeline.vocabulary_options(methods.create("bow", vocabulary="rakm").cfg) == {}
    with pytest.raises(UserError, match="assigns exactly"):
        pipeline.vocabulary_options(methods.create("bow", vocabulary="kmeans", vocab_checks=64).cfg)
    seen = {}

    def fake_fit(method, x, k, seed=0, niter=20, progress=None, **opts):
        seen.update(method=method, niter=niter, **opts)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "fit_vocabulary", fake_fit)
    from visrep.context import RunContext
    m = methods.create("bow", vocabulary="agm", k=8, vocab_niter=15, vocab_checks=100, agm_m=7)
    with pytest.raises(RuntimeError, match="stop here"):
        m.vocabulary(type("D", (), {"name": "d", "manifest": "x"})(), RunContext(quiet=True),
                     np.random.default_rng(0).random((50, 4), dtype=np.float32))
    assert seen == {"method": "agm", "niter": 15, "n_trees": 8, "leaf_size": 13, "m": 7}
