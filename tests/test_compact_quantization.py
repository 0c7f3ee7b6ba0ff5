"""PQ / IVFADC / LOPQ: faiss cross-check, known answers, real Oxford5k CNN descriptors."""
import numpy as np
import pytest
from visrep.methods.compact.lopq import LOPQIndex, eigenvalue_allocation, local_rotation
from visrep.methods.compact.product_quantization import (
    IVFADCIndex,
    ProductQuantizer,
    recall_at,
)

from visrep.context import shared_data_dir
from visrep.errors import UserError


def _data(n=2000, d=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_pq_equals_faiss_codes_and_distances():
    import faiss
    x = _data()
    pq = ProductQuantizer(32, 4, 8).train(x, niter=5)
    fpq = faiss.ProductQuantizer(32, 4, 8)
    faiss.copy_array_to_vector(pq.centroids.ravel(), fpq.centroids)
    codes = pq.encode(x)
    np.testing.assert_array_equal(codes, fpq.compute_codes(x))
    np.testing.assert_allclose(pq.decode(codes), fpq.decode(codes), atol=1e-6)
    index = faiss.IndexPQ(32, 4, 8)
    index.pq = fpq
    index.is_trained = True
    index.add(x)
    D, I = index.search(x[:20], 50)
    ours = pq.adc(x[:20], codes)
    np.testing.assert_allclose(np.take_along_axis(ours, I, 1), D, rtol=1e-5, atol=1e-4)
    assert pq.bytes_per_vector == 4


def test_pq_known_answer_and_bad_input():
    pq = ProductQuantizer(4, 2, 1)
    pq.centroids[:] = np.array([[[0, 0], [1, 1]], [[0, 0], [2, 2]]], np.float32)
    q = np.array([[1, 1, 0, 0]], np.float32)
    codes = pq.encode(np.array([[0.9, 1, 1.5, 1.5], [0, 0, 0.1, 0]], np.float32))
    assert codes.tolist() == [[1, 1], [0, 0]]
    np.testing.assert_allclose(pq.adc(q, codes), [[0 + 8, 2 + 0]])
    with pytest.raises(UserError, match="divisible"):
        ProductQuantizer(10, 3)
    with pytest.raises(UserError, match=r"\(n, 4\)"):
        pq.encode(np.zeros((2, 5), np.float32))


def test_ivfadc_distances_are_residual_reconstruction_distances():
    x = _data(1500, 16, 1)
    ivf = IVFADCIndex(16, 8, 4, 6).train(x, niter=5)
    ivf.add(x)
    q = _data(5, 16, 2)
    ranks, dist = ivf.search(q, nprobe=8)            # all cells: exhaustive
    assert np.isfinite(dist).all()
    rec = ivf.coarse[ivf.cell] + ivf.pq.decode(ivf.codes[np.argsort(ivf.order)])
    true = ((q[:, None] - rec[None]) ** 2).sum(-1).T
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-4)
    assert (np.diff(np.take_along_axis(dist, ranks, 0), axis=0) >= -1e-6).all()
    r1, d1 = ivf.search(q, nprobe=1)
    assert np.isinf(d1).sum() > 0 and sorted(r1[:, 0]) == list(range(1500))


def test_lopq_pieces():
    perm = eigenvalue_allocation(np.array([8.0, 4, 2, 1]), 2)
    assert sorted(perm[:2].tolist()) == [0, 3] and sorted(perm[2:].tolist()) == [1, 2]
    r = _data(300, 8, 3) * np.array([5, 1, 1, 1, 1, 1, 1, 0.1], np.float32)
    R = local_rotation(r, 2)
    np.testing.assert_allclose(R @ R.T, np.eye(8), atol=1e-5)
    x = _data(3000, 16, 4)
    lopq = LOPQIndex(16, 4, 4, 6).train(x, niter=5)
    lopq.add(x)
    q = _data(3, 16, 5)
    ids = np.arange(3000)
    dist = np.stack([lopq._distance(qq, ids) for qq in q])
    # reconstruction: C[i] + R^T decode(code) per half
    rec = np.zeros_like(x)
    for h in range(2):
        for i in range(4):
            sel = lopq.cells[:, h] == i
            dec = lopq.pqs[h][i].decode(lopq.codes[sel, 2 * h:2 * h + 2])
            rec[sel, 8 * h:8 * h + 8] = lopq.C[h][i] + dec @ lopq.R[h][i]
    np.testing.assert_allclose(dist, ((q[:, None] - rec[None]) ** 2).sum(-1), rtol=1e-4, atol=1e-3)
    ranks = lopq.search(q, nprobe=4, candidates=3000)
    np.testing.assert_array_equal(ranks[:10].T, np.argsort(dist, axis=1, kind="stable")[:, :10])
    with pytest.raises(UserError, match="even"):
        LOPQIndex(15, 4, 4)


@pytest.fixture(scope="module")
def oxford_cnn():
    root = shared_data_dir()
    path = root / "retrieval" / "oxford5k" / "oxford_features_caffenet_pca128.fvecs" if root else None
    if path is None or not path.exists():
        pytest.skip("real Oxford5k CNN descriptors not present (../shared/data/retrieval/oxford5k)")
    from visrep.descriptor_files import read_vecs
    from visrep.features import l2_normalize
    return l2_normalize(read_vecs(path))


def _loo_recalls(qi, ranks, truth):
    """recall@R with the query itself (database vector qi[j]) removed from its ranking."""
    cleaned = np.stack([r[r != qi[j]][:100] for j, r in enumerate(ranks.T)], 1)
    return recall_at(cleaned, truth)


@pytest.mark.parametrize("m", [8, pytest.param(16, marks=pytest.mark.slow)])
def test_oxford5k_recalls(oxford_cnn, m):
    """Leave-one-out queries (500 of the 5063 database vectors): true NN by exact L2."""
    x = oxford_cnn
    qi = np.random.default_rng(0).choice(len(x), 500, replace=False)
    d2 = ((x[qi, None] - x[None]) ** 2).sum(-1)
    d2[np.arange(500), qi] = np.inf
    truth = d2.argmin(1)
    pq = ProductQuantizer(128, m, 8).train(x, 10)
    r_pq = _loo_recalls(qi, np.argsort(pq.adc(x[qi], pq.encode(x)), axis=1).T, truth)
    ivf = IVFADCIndex(128, 64, m, 8).train(x, 10)
    ivf.add(x)
    r_ivf = _loo_recalls(qi, ivf.search(x[qi], 8)[0], truth)
    lopq = LOPQIndex(128, 16, m, 8).train(x, 10)
    lopq.add(x)
    r_lopq = _loo_recalls(qi, lopq.search(x[qi], 16, 1000), truth)
    print(f"\nOxford5k {m} bytes: PQ {r_pq}  IVFADC {r_ivf}  LOPQ {r_lopq}")
    for r in (r_pq, r_ivf, r_lopq):
        assert r["recall@1"] <= r["recall@10"] <= r["recall@100"]
        assert r["recall@100"] > 0.8
    assert r_lopq["recall@1"] >= r_pq["recall@1"] - 0.05
