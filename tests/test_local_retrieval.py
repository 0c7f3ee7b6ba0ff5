"""Inverted file, BoW, HE(+WGC), VLAD, SMK/ASMK/ASMK*: known answers, properties, asmk peer check."""
import numpy as np
import pytest
from visrep.methods.local.bow import bow_vectors
from visrep.methods.local.hamming_embedding import (
    hamming,
    median_thresholds,
    pack_bits,
    random_projection,
)
from visrep.methods.local.inverted_file import InvertedFile, expand_ranges, idf_weights
from visrep.methods.local.match_kernels import (
    ASMKIndex,
    SMKIndex,
    aggregate,
    selectivity,
)
from visrep.methods.local.vlad import vlad


def test_expand_ranges_and_inverted_file():
    owner, pos = expand_ranges([5, 0], [2, 3])
    assert owner.tolist() == [0, 0, 1, 1, 1] and pos.tolist() == [5, 6, 0, 1, 2]
    ivf = InvertedFile(words=[2, 0, 2, 1, 2], image=[0, 0, 1, 1, 1], k=4, n_images=2)
    assert ivf.ptr.tolist() == [0, 1, 2, 5, 5]
    assert ivf.image.tolist() == [0, 1, 0, 1, 1] and ivf.df().tolist() == [1, 1, 2, 0]
    o, p = ivf.postings(np.array([3, 2]))
    assert o.tolist() == [1, 1, 1] and p.tolist() == [2, 3, 4]


def test_bow_tfidf_known_answer():
    # image 0: words 0,0,1 ; image 1: words 1,2 ; N=2 -> idf = [log2, 0, log2]
    M = bow_vectors(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 1]), 2, 3,
                    idf_weights(np.array([1, 2, 1]), 2), burst=False).toarray()
    np.testing.assert_allclose(M, [[1, 0, 0], [0, 0, 1]], atol=1e-12)
    B = bow_vectors(np.array([0, 0, 1]), np.zeros(3, int), 1, 2, None, burst=True).toarray()
    np.testing.assert_allclose(B, [[np.sqrt(2) / np.sqrt(3), 1 / np.sqrt(3)]])


def test_he_thresholds_signatures_hamming():
    z = np.array([[1.0, 5], [3, 1], [2, 2], [10, 10]], np.float32)
    thr = median_thresholds(z, np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(thr, [[2, 2], [10, 10], [2.5, 3.5]])   # word 2 empty: global median
    bits = np.zeros((2, 64), bool)
    bits[0, [0, 5, 63]] = True
    packed = pack_bits(bits)[:, 0]
    assert packed[0] == (1 | 32 | (1 << 63)) and packed[1] == 0
    assert hamming(packed[0], packed[1]) == 3
    P = random_projection(128, 64, 0)
    np.testing.assert_allclose(P @ P.T, np.eye(64), atol=1e-5)


def test_selectivity_and_vlad_known_answers():
    np.testing.assert_allclose(selectivity([-0.5, 0.0, 0.5, 1.0], 3, 0), [0, 0, 0.125, 1])
    np.testing.assert_allclose(selectivity([0.2, 0.3], 3, 0.25), [0, 0.027])
    c = np.array([[0.0, 0], [10, 10]], np.float32)
    x = np.array([[1.0, 0], [0, 1], [11, 10]], np.float32)
    v = vlad(x, [0, 0, 1], [0, 0, 0], 1, c, power=1.0, intra=False)
    np.testing.assert_allclose(v[0], np.array([1, 1, 1, 0]) / np.sqrt(3), atol=1e-6)
    v = vlad(x, [0, 0, 1], [0, 0, 0], 1, c, power=1.0, intra=True)
    np.testing.assert_allclose(v[0], np.array([1 / np.sqrt(2), 1 / np.sqrt(2), 1, 0]) / np.sqrt(2), atol=1e-6)


def _toy(seed=0, n_img=12, k=16, d=32):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((k, d)).astype(np.float32)
    descs = [(c[rng.integers(0, k, 30)] + 0.3 * rng.standard_normal((30, d))).astype(np.float32)
             for _ in range(n_img)]
    descs[3] = np.zeros((0, d), np.float32)    # an image without features
    x = np.concatenate(descs)
    ids = np.repeat(np.arange(n_img), [len(a) for a in descs])
    return c, descs, x, ids


def _words(x, c, ma=1):
    d2 = ((x[:, None] - c[None]) ** 2).sum(-1)
    return np.argsort(d2, axis=1, kind="stable")[:, :ma]


def test_smk_self_similarity_is_one_and_empty_image_scores_zero():
    c, descs, x, ids = _toy()
    idx = SMKIndex(x, _words(x, c), ids, len(descs), c)
    for j in (0, 5):
        s = idx.search_image(descs[j], _words(descs[j], c))
        assert s[j] == pytest.approx(1.0, abs=1e-6) and s.argmax() == j
        assert s[3] == 0
    assert np.all(idx.search_image(np.zeros((0, 32), np.float32), np.zeros((0, 1), int)) == 0)
    a = ASMKIndex(x, _words(x, c), ids, len(descs), c)
    s = a.search_image(descs[0], _words(descs[0], c))
    assert s[3] == 0 and s.argmax() == 0


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("ma", [1, 3])
def test_asmk_matches_authors_package(binary, ma):
    pytest.importorskip("asmk", reason="the `peers` extra (asmk package) is not installed")
    from asmk import inverted_file as ivf_pkg
    from asmk import kernel as kern_pkg

    rng = np.random.default_rng(7)
    k, d = 16, 64
    c, descs, x, ids = _toy(seed=3, k=k, d=d)
    descs[3] = (c[:2] + 0.1).astype(np.float32)    # asmk cannot index an image with no features
    x = np.concatenate(descs)
    ids = np.repeat(np.arange(len(descs)), [len(a) for a in descs])

    class Codebook:
        centroids = c
        size = k
    kern = kern_pkg.ASMKKernel(Codebook(), binary=binary)
    w = _words(x, c)
    agg, aw, ai = kern.aggregate(x, w, ids.copy())
    ours = ASMKIndex(x, w, ids, len(descs), c, binary=binary)
    # same aggregated vectors, in the same (image, word) order
    vec, ow, oi = aggregate(x, w, ids, c, binary)
    assert ow.tolist() == aw.tolist() and oi.tolist() == ai.tolist()
    if binary:
        theirs_bits = np.unpackbits(agg.view(np.uint8), axis=1, bitorder="big")
        ours_bits = np.unpackbits(vec.view(np.uint8), axis=1, bitorder="little")
        assert (theirs_bits.sum(1) == ours_bits.sum(1)).all()
    else:
        np.testing.assert_allclose(vec, agg, atol=1e-5)
    ivf = ivf_pkg.IVF.initialize_empty(codebook_size=k, use_idf=True)
    ivf.add(agg, aw, ai.copy())
    np.testing.assert_allclose(ours.norm, ivf.norm_factor, rtol=1e-6)
    for j in range(4):
        q = (descs[j] + 0.05 * rng.standard_normal(descs[j].shape)).astype(np.float32)
        qw = _words(q, c, ma)
        qagg, qwords = kern.aggregate_image(q, qw)
        sim = lambda *a: kern.similarity(*a, alpha=3.0, similarity_threshold=0.0)
        ranks, scores = ivf.search(qagg, qwords, similarity_func=sim, topk=len(descs))
        full = np.zeros(len(descs))
        full[ranks] = scores
        np.testing.assert_allclose(ours.search_image(q, qw, 3.0, 0.0), full, atol=1e-5)


def _tiny_dataset():
    """Real photographs and warped views of them (cv2), as RetrievalData with images."""
    import cv2
    from skimage import data as skd

    from visrep.data import RetrievalData

    srcs = [skd.astronaut(), skd.chelsea(), skd.coffee(), np.dstack([skd.camera()] * 3)]
    srcs = [cv2.resize(s, (256, 256)) for s in srcs]
    db, gnd = [], []
    for i, s in enumerate(srcs):
        for a in (10, -15):
            M = cv2.getRotationMatrix2D((128, 128), a, 1.1)
            db.append(cv2.warpAffine(s, M, (256, 256)))
    db.append(np.zeros((64, 64, 3), np.uint8))      # an image with no keypoints
    queries = [s[30:230, 30:230] for s in srcs]
    gnd = [{"ok": np.array([2 * i, 2 * i + 1]), "junk": np.array([], int)} for i in range(4)]
    return RetrievalData(name="tiny", db_names=[f"d{i}" for i in range(len(db))],
                         query_names=[f"q{i}" for i in range(4)], gnd=gnd,
                         db_image=lambda i: db[i], query_image=lambda j: queries[j], manifest="tiny-v1")


@pytest.mark.parametrize("name", ["bow", "he", "he-wgc", "vlad", "smk", "asmk", "asmk-star"])
def test_methods_end_to_end_on_warped_photographs(name, tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.registry import methods
    data = _tiny_dataset()
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    k = 16 if name == "vlad" else 256
    out = methods.create(name, k=k, max_features=300).run(data, ctx)
    ranks, scores = out["ranks"], out["scores"]
    assert ranks.shape == (9, 4) and sorted(ranks[:, 0]) == list(range(9))
    assert np.all(scores[8] == 0)           # the image without keypoints scores zero
    for j in range(4):                      # both views of each photograph come first
        assert set(ranks[:2, j]) == {2 * j, 2 * j + 1}, (name, j, ranks[:, j])


def test_vocabulary_dimension_mismatch_is_a_clear_error(tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.errors import UserError
    from visrep.registry import methods
    np.save(tmp_path / "v.npy", np.random.default_rng(0).random((500, 64), dtype=np.float32))
    ctx = RunContext(cache=Cache(tmp_path / "c"), quiet=True)
    with pytest.raises(UserError, match="dimension"):
        methods.create("asmk", k=8, vocab_train=str(tmp_path / "v.npy"), max_features=100).run(_tiny_dataset(), ctx)


def test_burst_normalization_of_a_word_in_every_image_is_zero_not_nan(tmp_path):
    """A word in every database image has idf 0: its burst group sums to 0 and must score 0, not 0/0 = NaN."""
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.methods.local.vocabularies import Vocabulary
    from visrep.registry import methods
    c, descs, x, ids = _toy(seed=1, d=64)
    common = c[:1] + 0.01                                   # word 0 in every image: idf 0
    descs = [np.concatenate([d, common]).astype(np.float32) for d in descs]
    x = np.concatenate(descs)
    ids = np.repeat(np.arange(len(descs)), [len(a) for a in descs])
    frames = np.tile([[10.0, 10.0, 2.0, 0.0]], (len(x), 1))
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    m = methods.create("he", burst=True)
    state = m.index(x, ids, frames, len(descs), Vocabulary(c, "toy"), ctx)
    scores = np.asarray(m.score(state, descs[0], frames[:len(descs[0])], ctx))
    assert np.isfinite(scores).all() and scores.ravel().argmax() == 0
