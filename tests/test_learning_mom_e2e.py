"""End-to-end mining on manifolds (Iscen, Tolias, Avrithis & Chum, CVPR 2018): the pools of Eq. 6 on a
hand graph and against a dense-inverse reference, the authors' triplet sampling and weighted loss, and
tiny runs of `mom` (network fine-tuned), `pretrained-net` (its starting point) and the supervised `triplet`
baseline fine-tuned end to end the same way (FaceNet, Schroff et al. CVPR 2015: Eq. 1, semi-hard negatives)."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import scipy.sparse as sp
from visrep.methods.learning.mining import (
    mine_pools,
    sample_triplets,
    weighted_triplet_loss,
)

from visrep.context import RunContext
from visrep.errors import UserError
from visrep.registry import methods


def _sym_norm(A):
    d = np.asarray(A.sum(1)).ravel()
    dm = sp.diags(1 / np.sqrt(np.maximum(d, 1e-12)))
    return (dm @ A @ dm).tocsr()


def _unit(angles_deg):
    a = np.deg2rad(np.asarray(angles_deg, float))
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_pools_on_a_hand_graph():
    """Two chains (manifolds) 0-1-2-3 and 4-5-6-7; point 4 is Euclidean-close to anchor 0 but on the other
    chain. k = 3: E = {0, 4, 1}, M = {0, 1, 2} -> P+ = M \\ E = {2} (manifold, not Euclidean),
    P- = E \\ M = {4} (Euclidean, not manifold)."""
    x = _unit([0, 20, 40, 60, 5, 80, 100, 120])
    edges = [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)]
    r, c = zip(*edges)
    A = sp.coo_matrix((np.ones(len(edges)), (r, c)), shape=(8, 8))
    W = _sym_norm((A + A.T).tocsr())
    [(a, pos, w, neg)] = mine_pools(x, W, np.array([0]), k_pos=3, k_neg=3, alpha=0.99, max_pool=50)
    assert a == 0 and pos.tolist() == [2] and neg.tolist() == [4]
    assert w.shape == (1,) and w[0] > 0
    # a larger k: every chain-A point is a manifold neighbour, the other chain never a positive
    [(_, pos, w, neg)] = mine_pools(x, W, np.array([0]), k_pos=4, k_neg=4, alpha=0.99, max_pool=50)
    assert set(pos.tolist()) <= {1, 2, 3} and 4 not in pos and 4 in neg and 0 not in neg
    assert np.all(np.diff(w) <= 0)                       # sorted by manifold similarity


def test_pools_match_a_dense_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = np.maximum(x @ x.T, 0) ** 3
    np.fill_diagonal(s, 0)
    keep = s >= np.sort(s, 1)[:, [-6]]
    A = sp.csr_matrix(np.where(keep & keep.T, s, 0))
    W = _sym_norm(A)
    alpha, kp, kn = 0.9, 8, 12
    anchors = np.arange(0, 60, 7)
    F = np.linalg.solve(np.eye(60) - alpha * W.toarray(), np.eye(60)[:, anchors])   # (n, a)
    pools = mine_pools(x, W, anchors, kp, kn, alpha, max_pool=100, maxiter=200)
    for j, (a, pos, w, neg) in enumerate(pools):
        e = np.argsort(-(x @ x[a]), kind="stable")
        m = np.argsort(-F[:, j], kind="stable")
        assert set(pos.tolist()) == set(m[:kp].tolist()) - set(e[:kp].tolist())
        assert set(neg.tolist()) == set(e[:kn].tolist()) - set(m[:kn].tolist())
        assert a not in pos and a not in neg
        assert np.allclose(w / w.max(), F[pos, j] / F[pos, j].max(), atol=1e-4) if len(pos) else True


def test_max_pool_keeps_the_top_of_each_order():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    from visrep.methods.manifolds.knn_graph import build_graph
    g = build_graph(x, k=6)
    full = mine_pools(x, g.W, np.arange(5), 20, 30, 0.99, max_pool=100)
    cut = mine_pools(x, g.W, np.arange(5), 20, 30, 0.99, max_pool=3)
    for (_, p, _, n), (_, pc, _, nc) in zip(full, cut):
        assert pc.tolist() == p[:3].tolist() and nc.tolist() == n[:3].tolist()


def test_triplet_sampling_takes_hard_negatives_in_the_current_embedding():
    emb = _unit([0, 10, 30, 50, 70, 90])
    pools = [(0, np.array([1, 2]), np.array([2.0, 1.0]), np.array([5, 3, 4])), (1, np.array([], int), np.zeros(0),
                                                                                 np.array([2]))]
    rows, w = sample_triplets(pools, emb, 200, n_hard=1, rng=np.random.default_rng(0))
    assert rows.shape == (200, 3) and set(rows[:, 0]) == {0}       # anchor 1 has no positive: never drawn
    assert set(rows[:, 2]) == {3}                                   # the pool member nearest in emb
    assert set(rows[:, 1]) == {1, 2} and np.all(w == np.where(rows[:, 1] == 1, 2.0, 1.0))
    rows, _ = sample_triplets(pools, emb, 300, n_hard=2, rng=np.random.default_rng(0))
    assert set(rows[:, 2]) == {3, 4}
    empty, _ = sample_triplets(pools[1:], emb, 10, 1, np.random.default_rng(0))
    assert empty.shape == (0, 3)


def test_weighted_triplet_loss_known_answer():
    import torch
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])          # d_ap = 2, 0
    n = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])         # d_an = 4, 2
    w = torch.tensor([3.0, 1.0])
    # [0.5 + 2 - 4]_+ = 0, [0.5 + 0 - 2]_+ = 0 -> 0; margin 3: [1]_+ * 3 = 3, [1]_+ * 1 = 1 -> mean 2
    assert float(weighted_triplet_loss(a, p, n, w, 0.5)) == 0.0
    assert float(weighted_triplet_loss(a, p, n, w, 3.0)) == pytest.approx(2.0)


# ---------------------------------------------------------------- tiny end-to-end runs
def _write_idx(folder, x, y):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(x), x.shape[1], x.shape[2]) + x.astype(np.uint8).tobytes())
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(y)) + y.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """sklearn digits 8x8: unseen-class split 0-4 / 5-9 (120 + 120 images) and, as the 'other domain' of
    pre-training, the same images transposed and inverted."""
    from sklearn.datasets import load_digits

    from visrep.data import LabelledData
    d = load_digits()
    x = (d.images * (255 / 16)).astype(np.uint8)
    y = d.target
    tr = np.flatnonzero(y < 5)[:120]
    te = np.flatnonzero(y >= 5)[:120]
    names = [str(i) for i in range(10)]
    train = LabelledData("digits", y[tr], names[:5], "train", x=x[tr])
    test = LabelledData("digits", y[te] - 5, names[5:], "test", x=x[te])
    test.train = train
    src = tmp_path_factory.mktemp("other-domain")
    _write_idx(src, 255 - x[:300].transpose(0, 2, 1), y[:300])
    return test, str(src)


def _kw(src, **extra):
    return {"pretrain_data": src, "pretrain_size": 300, "pretrain_epochs": 1, "width": 4, "blocks": 2, "k": 10,
            "k_pos": 10, "k_neg": 20, "max_pool": 10, "n_hard": 3, "batch": 8, "triplets_per_epoch": 32,
            "epochs": 1, **extra}


def test_mom_end_to_end_is_seeded_and_changes_the_network(tiny):
    data, src = tiny
    r1 = methods.create("mom", **_kw(src)).run(data, RunContext(quiet=True, seed=2))
    r2 = methods.create("mom", **_kw(src)).run(data, RunContext(quiet=True, seed=2))
    assert r1["embeddings"].shape == (len(data), 64)
    assert np.array_equal(r1["embeddings"], r2["embeddings"])
    assert np.allclose(np.linalg.norm(r1["embeddings"], axis=1), 1, atol=1e-5)
    assert r1["stats"]["n_anchors"] == len(data.train) and r1["stats"]["mean_positives"] > 0
    # without the linear embedding, zero epochs is the pre-trained network; one epoch moves the trunk's weights
    base = methods.create("pretrained-net", **{k: v for k, v in _kw(src).items() if k in
                                               ("pretrain_data", "pretrain_size", "pretrain_epochs", "width",
                                                "blocks")}).run(data, RunContext(quiet=True, seed=2))
    e0 = methods.create("mom", **_kw(src, emb_dim=0, epochs=0)).run(data, RunContext(quiet=True, seed=2))
    e1 = methods.create("mom", **_kw(src, emb_dim=0, epochs=1, lr=0.1)).run(data, RunContext(quiet=True, seed=2))
    assert np.allclose(e0["embeddings"], base["embeddings"], atol=1e-6)
    assert np.abs(e1["embeddings"] - e0["embeddings"]).max() > 1e-3


def test_mom_known_answer_of_the_shared_loop(tiny):
    """`mom` through :func:`pipeline.finetune` (the loop it shares with `triplet`) gives the numbers the code had
    before the loop was factored out (measured then on this tiny run: embeddings and losses bit-identical)."""
    data, src = tiny
    r = methods.create("mom", **_kw(src)).run(data, RunContext(quiet=True, seed=2))
    e = r["embeddings"]
    assert r["stats"]["final_loss"] == pytest.approx(0.5611499547958374, rel=1e-5)
    assert float(np.abs(e).sum()) == pytest.approx(806.1023559570312, rel=1e-5)
    assert np.allclose(e[0, :4], [0.1771416962146759, -0.1195257306098938, -0.13510261476039886,
                                  -0.24260258674621582], atol=1e-5)


def _tkw(src, **extra):
    return {k: v for k, v in _kw(src).items() if k in ("pretrain_data", "pretrain_size", "pretrain_epochs", "width",
                                                       "blocks", "epochs")} | {"per_class": 6, "classes_per_batch": 3,
                                                                               **extra}


def test_triplet_end_to_end_batches_are_class_balanced_and_semihard(tiny, monkeypatch):
    """The e2e `triplet` (FaceNet): every minibatch holds per_class images of each of classes_per_batch classes of
    the labelled training split, and every triplet it trains on is semi-hard (Eq. 4) in that batch's embedding:
    d(a,p) < d(a,n) < d(a,p) + margin, with n the nearest such negative of the anchor."""
    from visrep.methods.learning import plugins
    from visrep.methods.learning.metric_losses import semihard_triplets
    data, src = tiny
    seen = []

    def spy(d2, labels, margin, select="hardest"):
        t = semihard_triplets(d2, labels, margin, select)
        seen.append((d2, np.asarray(labels), margin, t))
        return t

    monkeypatch.setattr(plugins, "semihard_triplets", spy)
    r = methods.create("triplet", **_tkw(src, epochs=2)).run(data, RunContext(quiet=True, seed=1))
    assert r["stats"]["steps"] == len(seen) == 2 * -(-len(data.train) // 18)
    for d2, labels, margin, t in seen:
        assert margin == 0.2 and len(labels) == 18
        assert sorted(np.bincount(labels)[np.bincount(labels) > 0].tolist()) == [6, 6, 6]
        assert len(t) > 0
        a, p, n = t.T
        assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[n] != labels[a]).all()
        assert ((d2[a, p] < d2[a, n]) & (d2[a, n] < d2[a, p] + margin)).all()
        for i, j, k in t:                              # the nearest semi-hard negative of the pair
            neg = (labels != labels[i]) & (d2[i] > d2[i, j]) & (d2[i] < d2[i, j] + margin)
            assert d2[i, k] == d2[i, neg].min()
    # a constructed batch: anchor 0, positive 1 at d^2 = 0.25; negatives at d^2 0.09 (hard), 0.36 and 0.42
    # (semi-hard), 0.49 (easy) -> the one triplet (0, 1, 3)
    x = np.array([[0.0], [0.5], [0.3], [0.6], [0.65], [0.7]])
    d2 = ((x[:, None] - x[None]) ** 2).sum(2)
    assert spy(d2, np.array([0, 0, 1, 2, 3, 4]), 0.2)[:1].tolist() == [[0, 1, 3]]


def test_triplet_end_to_end_fine_tunes_the_network(tiny, monkeypatch):
    """The e2e `triplet` starts from the network of `mom` (zero epochs = `pretrained-net`), is seeded, and its
    training moves the trunk's weights, not only an embedding head."""
    import torch
    from visrep.methods.learning import pipeline
    data, src = tiny
    snap = {}
    real = pipeline.finetune

    def spy(net, *a, **k):
        snap["before"] = {n: v.detach().clone() for n, v in net.trunk.state_dict().items()}
        out = real(net, *a, **k)
        snap["after"] = {n: v.detach().clone() for n, v in net.trunk.state_dict().items()}
        return out

    monkeypatch.setattr(pipeline, "finetune", spy)
    r1 = methods.create("triplet", **_tkw(src)).run(data, RunContext(quiet=True, seed=2))
    r2 = methods.create("triplet", **_tkw(src)).run(data, RunContext(quiet=True, seed=2))
    assert r1["embeddings"].shape == (len(data), 64) and np.array_equal(r1["embeddings"], r2["embeddings"])
    assert np.allclose(np.linalg.norm(r1["embeddings"], axis=1), 1, atol=1e-5)
    moved = [n for n in snap["before"] if n.endswith("weight") and
             not torch.equal(snap["before"][n], snap["after"][n])]
    assert any("weight" in n for n in moved) and len(moved) >= 2, moved       # the conv layers, not a head
    base = methods.create("pretrained-net", **{k: v for k, v in _tkw(src).items() if k in
                                               ("pretrain_data", "pretrain_size", "pretrain_epochs", "width",
                                                "blocks")}).run(data, RunContext(quiet=True, seed=2))
    e0 = methods.create("triplet", **_tkw(src, emb_dim=0, epochs=0)).run(data, RunContext(quiet=True, seed=2))
    assert np.allclose(e0["embeddings"], base["embeddings"], atol=1e-6)
    # images_per_epoch sets the budget in whole minibatches
    r = methods.create("triplet", **_tkw(src, images_per_epoch=40)).run(data, RunContext(quiet=True, seed=2))
    assert r["stats"]["steps"] == 3 and r["stats"]["batch_size"] == 18


def test_triplet_end_to_end_needs_training_labels(tiny):
    import copy
    data, src = tiny
    bad = copy.copy(data)
    bad.train = copy.copy(data.train)
    bad.train.labels = None
    with pytest.raises(UserError, match="labels of the training split"):
        methods.create("triplet", **_tkw(src)).run(bad, RunContext(quiet=True))


def test_triplet_known_answer_of_the_shared_supervised_loop(tiny):
    """`triplet` through :class:`pipeline.SupervisedFinetuneMethod` (the loop it shares with `contrastive`)
    gives the numbers it had before that class was factored out (measured then: bit-identical)."""
    data, src = tiny
    r = methods.create("triplet", **_tkw(src)).run(data, RunContext(quiet=True, seed=2))
    e = r["embeddings"]
    assert r["stats"]["final_loss"] == pytest.approx(0.18290084600448608, rel=1e-5)
    assert r["stats"]["mean_semihard_triplets"] == 89.0
    assert float(np.abs(e).sum()) == pytest.approx(812.6910400390625, rel=1e-5)
    assert np.allclose(e[0, :4], [0.18709811568260193, -0.12159689515829086, -0.1272960901260376,
                                  -0.23965495824813843], atol=1e-5)


def test_contrastive_end_to_end_tuples_and_fine_tuning(tiny, monkeypatch):
    """The e2e `contrastive` (Radenovic et al.'s margin form): on class-balanced minibatches every image is a
    query with one positive of its class and its hardest negatives, one per other class (here 3 classes per
    batch -> 2 negatives), nearest first; the loss is Hadsell et al.'s Eq. 4 on those pairs; the trunk moves;
    seeded; zero epochs without the embedding is the pre-trained network."""
    import torch
    from visrep.methods.learning import pipeline, plugins
    from visrep.methods.learning.metric_losses import contrastive_tuples
    data, src = tiny
    seen, snap = [], {}

    def spy_tuples(d2, labels, k, rng):
        t = contrastive_tuples(d2, labels, k, rng)
        seen.append((d2, np.asarray(labels), k, t))
        return t

    real = pipeline.finetune

    def spy_finetune(net, *a, **k):
        snap["before"] = {n: v.detach().clone() for n, v in net.trunk.state_dict().items()}
        out = real(net, *a, **k)
        snap["after"] = {n: v.detach().clone() for n, v in net.trunk.state_dict().items()}
        return out

    monkeypatch.setattr(plugins, "contrastive_tuples", spy_tuples)
    monkeypatch.setattr(pipeline, "finetune", spy_finetune)
    r1 = methods.create("contrastive", **_tkw(src, epochs=2)).run(data, RunContext(quiet=True, seed=2))
    assert r1["stats"]["steps"] == len(seen) == 2 * -(-len(data.train) // 18)
    for d2, labels, k, t in seen:
        assert k == 5 and len(labels) == 18 and sorted(np.bincount(labels)[np.bincount(labels) > 0]) == [6, 6, 6]
        assert len(t) == 18 * 3                                    # per query: 1 positive + 2 negatives
        for q in range(18):
            pos, n1, n2 = t[t[:, 0] == q, 1]
            assert labels[pos] == labels[q] and pos != q
            assert labels[n1] != labels[q] and labels[n2] != labels[q] and labels[n1] != labels[n2]
            assert d2[q, n1] <= d2[q, n2]
            for n in (n1, n2):                                     # the nearest image of its class
                assert d2[q, n] == d2[q, labels == labels[n]].min()
    assert r1["stats"]["mean_pairs"] == 54.0
    moved = [n for n in snap["before"] if n.endswith("weight") and not torch.equal(snap["before"][n],
                                                                                   snap["after"][n])]
    assert len(moved) >= 2, moved
    monkeypatch.undo()
    r2 = methods.create("contrastive", **_tkw(src, epochs=2)).run(data, RunContext(quiet=True, seed=2))
    assert np.array_equal(r1["embeddings"], r2["embeddings"]) and r1["embeddings"].shape == (len(data), 64)
    assert np.allclose(np.linalg.norm(r1["embeddings"], axis=1), 1, atol=1e-5)
    base = methods.create("pretrained-net", **{k: v for k, v in _tkw(src).items() if k in
                                               ("pretrain_data", "pretrain_size", "pretrain_epochs", "width",
                                                "blocks")}).run(data, RunContext(quiet=True, seed=2))
    e0 = methods.create("contrastive", **_tkw(src, emb_dim=0, epochs=0)).run(data, RunContext(quiet=True, seed=2))
    assert np.allclose(e0["embeddings"], base["embeddings"], atol=1e-6)


def test_contrastive_loss_of_the_end_to_end_batch_is_eq4_on_its_pairs(tiny, monkeypatch):
    """The loss `contrastive` optimises on a minibatch equals Eq. 4 averaged over that batch's pairs, computed
    by hand from the embedding it saw (margin 0.7 on Euclidean distances)."""
    from visrep.methods.learning import plugins
    data, src = tiny
    got = []
    real = plugins.contrastive_loss

    def spy(emb, labels, pairs, margin):
        v = real(emb, labels, pairs, margin)
        e = emb.detach().numpy().astype(np.float64)
        d = np.sqrt(((e[pairs[:, 0]] - e[pairs[:, 1]]) ** 2).sum(1))
        same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
        want = np.where(same, 0.5 * d ** 2, 0.5 * np.maximum(0.0, margin - d) ** 2).mean()
        got.append((float(v.detach()), want, margin))
        return v

    monkeypatch.setattr(plugins, "contrastive_loss", spy)
    methods.create("contrastive", **_tkw(src, epochs=1)).run(data, RunContext(quiet=True, seed=0))
    assert got and all(m == 0.7 and v == pytest.approx(w, rel=1e-4, abs=1e-6) for v, w, m in got)


def test_head_variants_are_named_as_simplifications():
    for head, e2e in (("triplet-head", "triplet"), ("contrastive-head", "contrastive")):
        assert "head" in methods.create(head).summary and "simplification" in methods.create(head).summary
        assert "end to end" in methods.create(e2e).summary and "backbone" in methods.create(e2e).cfg


def test_mom_weights_file_and_bad_input(tiny, tmp_path):
    import torch
    from visrep.methods.learning.convnets import make_convnet
    data, _ = tiny
    torch.manual_seed(0)
    net = make_convnet(1, 4, 2)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    kw = _kw(None, weights=str(tmp_path / "w.pth"), epochs=0, emb_dim=0)
    out = methods.create("pretrained-net", weights=str(tmp_path / "w.pth"), width=4, blocks=2).run(
        data, RunContext(quiet=True))
    e0 = methods.create("mom", **kw).run(data, RunContext(quiet=True))
    assert np.allclose(out["embeddings"], e0["embeddings"], atol=1e-6)
    with pytest.raises(UserError, match="pretrain_data"):
        methods.create("mom", **_kw(None)).run(data, RunContext(quiet=True))


def test_mom_head_keeps_the_simplified_variant():
    m = methods.create("mom-head")
    assert "head" in m.summary and "simplification" in m.summary
    assert "features" in m.cfg and "backbone" in methods.create("mom").cfg


@pytest.mark.slow
def test_googlenet_trunk_of_the_full_scale_row(tmp_path):
    """The CUB row's backbone: torchvision GoogLeNet cut before its average pooling, fed as its ported weights
    expect (transform_input), from a state-dict file (random weights here: no download)."""
    import torch
    import torchvision
    from visrep.methods.learning.pipeline import _photo_trunk
    m = torchvision.models.get_model("googlenet", weights=None, init_weights=False, transform_input=True).eval()
    torch.save(m.state_dict(), tmp_path / "g.pth")
    trunk, c = _photo_trunk("googlenet", str(tmp_path / "g.pth"))
    trunk.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        f = trunk(x)
        m.fc = torch.nn.Identity()
        m.dropout = torch.nn.Identity()
        assert c == 1024 and f.shape[:2] == (2, 1024)
        assert torch.allclose(f.mean(dim=(2, 3)), m(x), atol=1e-5)     # GAP of the trunk = the network's pooled output
