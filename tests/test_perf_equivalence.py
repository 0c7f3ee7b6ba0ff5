"""Vectorized kernels vs straightforward reference implementations (bit-identical results).

ASMK / ASMK* search (posting-list slices, Hamming table), ASMK aggregation (sparse indicator
sums), ranks_from_scores (stable argsort + tied-run re-sort, partition under topk), and the
float64 Laplacian operator of CG / RWR: each is compared with the plain implementation it
replaced on random data, including empty posting lists, a query without features and ties.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from visrep.methods.local.hamming_embedding import hamming, pack_bits
from visrep.methods.local.match_kernels import ASMKIndex, _group_sums, aggregate, selectivity
from visrep.methods.manifolds.diffusion import cg, laplacian_apply, rwr
from visrep.methods.search.ranking import ranks_from_scores


# ---------------------------------------------------------------- references (the former code)
def ref_pack_bits(bits):
    bits = np.asarray(bits, bool)
    n, d = bits.shape
    nw = (d + 63) // 64
    padded = np.zeros((n, nw * 64), bool)
    padded[:, :d] = bits
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    return (padded.reshape(n, nw, 64).astype(np.uint64) * weights).sum(2, dtype=np.uint64)


def ref_aggregate(x, words, image, centroids, binary=False):
    pack_bits = ref_pack_bits
    x = np.asarray(x, np.float32)
    words = np.asarray(words, np.int64).reshape(len(x), -1)
    ma = words.shape[1]
    rows = np.repeat(np.arange(len(x)), ma)
    w = words.ravel()
    im = np.asarray(image, np.int64)[rows]
    k = centroids.shape[0]
    key = im * k + w
    order = np.argsort(key, kind="stable")
    key_s = key[order]
    start = np.flatnonzero(np.r_[True, key_s[1:] != key_s[:-1]])
    V = np.add.reduceat((x[rows[order]] - centroids[w[order]]).astype(np.float64), start, axis=0)
    uk = key_s[start]
    vec = pack_bits(V > 0) if binary else \
        (V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return vec, uk % k, uk // k


def ref_search(index, q, qwords, alpha=3.0, tau=0.0):
    """The former search: gathers qvec[owner] and vecs[pos] for all pairs, float64 selectivity."""
    if len(q) == 0:
        return np.zeros(index.n_images)
    qvec, qw, _ = ref_aggregate(q, qwords, np.zeros(len(q), np.int64), index.centroids, index.binary)
    owner, pos = index.ivf.postings(qw)
    if index.binary:
        sim = 1.0 - 2.0 * hamming(qvec[owner], index.vecs[pos]).sum(1) / index.dim
    else:
        sim = np.einsum("td,td->t", qvec[owner], index.vecs[pos]).astype(np.float64)
    s = selectivity(sim, alpha, tau) * index.idf[qw[owner]]
    img = index.ivf.image[pos]
    nz = index.norm[img] > 0
    sc = np.bincount(img[nz], s[nz] / np.sqrt(index.norm[img[nz]]), minlength=index.n_images)
    qn = index.idf[qw].sum()
    return sc / np.sqrt(qn) if qn > 0 else sc


def ref_ranks(scores, tiebreak=None, topk=None):
    n, m = scores.shape
    kk = n if topk is None else min(topk, n)
    if tiebreak is None:
        return np.argsort(-scores, axis=0, kind="stable")[:kk]
    return np.stack([np.lexsort((-tiebreak[:, j], -scores[:, j]))[:kk] for j in range(m)], 1).reshape(kk, m)


def _database(rng, k=40, n_img=30, d=16, skew=True):
    c = rng.standard_normal((k, d)).astype(np.float32)
    n = 600
    # skewed word frequencies: long posting lists (slices), short ones (gathered) and empty words
    p = 1.0 / np.arange(1, k + 1) ** (1.5 if skew else 0.0)
    p[k - 5:] = 0.0                                   # the last 5 words have no database entry
    p /= p.sum()
    w = rng.choice(k, n, p=p)
    x = (c[w] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
    ids = rng.integers(0, n_img - 2, n)               # the last 2 images have no features
    return c, x, w, ids, n_img


# ---------------------------------------------------------------- ASMK
def test_pack_bits_equals_reference():
    rng = np.random.default_rng(6)
    for n, d in [(0, 64), (1, 1), (5, 63), (7, 64), (9, 65), (100, 128), (33, 200), (3, 0)]:
        b = rng.random((n, d)) < 0.5
        got, ref = pack_bits(b), ref_pack_bits(b)
        assert got.dtype == np.uint64 and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)


def test_group_sums_equal_reduceat():
    rng = np.random.default_rng(0)
    res = rng.standard_normal((500, 7))
    start = np.unique(np.r_[0, rng.integers(0, 500, 120)])
    np.testing.assert_array_equal(_group_sums(res, start), np.add.reduceat(res, start, axis=0))
    np.testing.assert_array_equal(_group_sums(res, np.array([0])), np.add.reduceat(res, [0], axis=0))
    np.testing.assert_array_equal(_group_sums(res, np.arange(500)), res)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("ma", [1, 3])
def test_aggregate_equals_reference(binary, ma):
    rng = np.random.default_rng(1)
    c, x, w, ids, _ = _database(rng)
    words = np.stack([w] + [rng.integers(0, len(c), len(w)) for _ in range(ma - 1)], 1)
    got, ref = aggregate(x, words, ids, c, binary), ref_aggregate(x, words, ids, c, binary)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("ma", [1, 3])
@pytest.mark.parametrize("slice_min", [1, 4, 10 ** 9])
def test_asmk_search_equals_reference(binary, ma, slice_min, monkeypatch):
    """Scores bit for bit equal to the gather-all search, whichever posting lists are sliced."""
    monkeypatch.setattr(ASMKIndex, "SLICE_MIN", slice_min)
    rng = np.random.default_rng(2)
    c, x, w, ids, n_img = _database(rng)
    index = ASMKIndex(x, w, ids, n_img, c, binary)
    assert (np.diff(index.ivf.ptr) == 0).any()        # empty posting lists are exercised
    for j in range(6):
        nq = [0, 1, 25, 80, 80, 80][j]                   # a query without features, then real ones
        q = (c[rng.integers(0, len(c), nq)] + 0.3 * rng.standard_normal((nq, c.shape[1]))).astype(np.float32)
        qw = np.stack([rng.integers(0, len(c), nq) for _ in range(ma)], 1) if ma > 1 else \
            np.argmin(((q[:, None] - c[None]) ** 2).sum(-1), 1)[:, None]
        if j == 5:
            qw = np.full_like(qw, len(c) - 1)            # only words with an empty posting list
        for alpha, tau in ((3.0, 0.0), (1.0, -0.2), (3.0, 0.3)):
            got = index.search_image(q, qw, alpha, tau)
            np.testing.assert_array_equal(got, ref_search(index, q, qw, alpha, tau))
        if j == 0:
            assert not got.any()


def test_asmk_star_table_is_selectivity_of_hamming_similarity():
    d = 128
    h = np.arange(d + 1)
    table = selectivity(1.0 - 2.0 * h / d, 3.0, 0.0)
    assert table[0] == 1.0 and table[d // 2] == 0.0 and (table[d // 2:] == 0).all()
    np.testing.assert_array_equal(table[:4], np.sign(1 - 2 * h[:4] / d) * np.abs(1 - 2 * h[:4] / d) ** 3)


# ---------------------------------------------------------------- ranks_from_scores
def test_ranks_from_scores_equals_lexsort_with_ties_and_topk():
    rng = np.random.default_rng(3)
    for t in range(200):
        n, m = int(rng.integers(1, 50)), int(rng.integers(1, 4))
        if t % 2:
            s = rng.integers(0, 4, (n, m)).astype(np.float64)      # heavy ties
        else:
            s = rng.standard_normal((n, m))
            s[rng.random((n, m)) < 0.5] = 0.0                      # an f = 0 tail
        if t % 9 == 0:
            s[rng.random((n, m)) < 0.1] = np.nan
        tb = rng.integers(0, 3, (n, m)).astype(np.float64)
        for topk in (None, 1, 2, n // 2 + 1, n, n + 3):
            for tie in (None, tb):
                got = ranks_from_scores(s, tie, topk)
                assert got.dtype == np.int64
                np.testing.assert_array_equal(got, ref_ranks(s, tie, topk))


def test_ranks_from_scores_known_ties():
    s = np.array([[1.0], [0.0], [1.0], [0.0], [0.0]])
    tb = np.array([[0.0], [0.1], [0.5], [0.9], [0.1]])
    assert ranks_from_scores(s, tb)[:, 0].tolist() == [2, 0, 3, 1, 4]
    assert ranks_from_scores(s, tb, topk=3)[:, 0].tolist() == [2, 0, 3]
    assert ranks_from_scores(s)[:, 0].tolist() == [0, 2, 1, 3, 4]
    assert ranks_from_scores(s, topk=3)[:, 0].tolist() == [0, 2, 1]


# ---------------------------------------------------------------- diffusion operator
def test_float64_laplacian_equals_upcast_products():
    rng = np.random.default_rng(4)
    A = sp.random(60, 60, density=0.1, random_state=5, dtype=np.float32)
    W = ((A + A.T) * 0.5).tocsr().astype(np.float32)
    F = rng.standard_normal((60, 3))
    np.testing.assert_array_equal(laplacian_apply(W, 0.9)(F), (F - 0.9 * (W @ F)) / (1 - 0.9))
    Y = np.zeros((60, 3))
    Y[rng.integers(0, 60, 5), rng.integers(0, 3, 5)] = 1.0
    a = cg(W, Y, 0.9, maxiter=15)
    b = cg(W.astype(np.float64), Y, 0.9, maxiter=15)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(rwr(W, Y, 0.9, maxiter=30)[0], rwr(W.astype(np.float64), Y, 0.9, maxiter=30)[0])
