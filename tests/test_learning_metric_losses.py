"""Supervised metric-learning baselines of the MoM tables: contrastive (Hadsell et al. 2006 Eq. 4, margin form
of Radenovic et al. 2016) and triplet with semi-hard negatives (FaceNet, Schroff et al. 2015 Eq. 1 and Sec. 3.2).

Known answers on hand pairs / triplets / batches, properties on random batches, a cross-check against
pytorch-metric-learning (skipped when it is absent), and tiny runs of the head-on-frozen-descriptor plugins
(`contrastive-head`, `triplet-head`; the end-to-end `contrastive` and `triplet` are tested in
test_learning_mom_e2e.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.metric_losses import (
    class_balanced_batches,
    contrastive_loss,
    contrastive_terms,
    contrastive_tuples,
    hardest_negatives,
    semihard_mask,
    semihard_triplets,
    squared_distances,
    triplet_batch_loss,
    triplet_terms,
)


def _t(a):
    import torch
    return torch.tensor(np.asarray(a, np.float64))


def _unit(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- contrastive: known answers
def test_contrastive_known_answer_on_hand_pairs():
    # 1-D points on the first axis; labels: 0, 0, 1, 2, 0
    emb = _t([[0.0, 0], [0.0, 0], [0.3, 0], [1.0, 0], [0.0, 0.3]])
    labels = np.array([0, 0, 1, 2, 0])
    pairs = np.array([[0, 1],     # positive at distance 0          -> 0
                      [0, 4],     # positive at distance 0.3        -> 1/2 0.3^2 = 0.045
                      [0, 2],     # negative inside the margin 0.7  -> 1/2 (0.7 - 0.3)^2 = 0.08
                      [0, 3],     # negative outside the margin     -> 0
                      [2, 3]])    # negative at distance exactly 0.7 -> 0
    d = np.sqrt(squared_distances(emb.numpy())[pairs[:, 0], pairs[:, 1]])
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    terms = contrastive_terms(_t(d), same, 0.7).numpy()
    assert np.allclose(terms, [0.0, 0.045, 0.08, 0.0, 0.0], atol=1e-12)
    # the hinge of a negative inside the margin is margin - d (0.4 here), squared and halved by Eq. 4
    assert np.isclose(np.sqrt(2 * terms[2]), 0.7 - 0.3)
    assert np.isclose(float(contrastive_loss(emb, labels, pairs, 0.7)), (0.045 + 0.08) / 5)


def test_contrastive_gradient_pulls_positives_and_pushes_negatives():
    import torch
    emb = _t([[0.0, 0], [0.2, 0], [0.4, 0]]).requires_grad_(True)
    labels = np.array([0, 0, 1])
    contrastive_loss(emb, labels, np.array([[0, 1], [0, 2]]), 0.7).backward()
    g = emb.grad.numpy()
    assert g[1, 0] > 0          # descent moves the positive (x = 0.2) towards the anchor (x = 0)
    assert g[2, 0] < 0          # and the negative inside the margin (x = 0.4) away from it
    assert torch.isfinite(emb.grad).all()


def test_hardest_negatives_one_per_class_nearest_first():
    x = np.array([[0.0], [0.1], [0.2], [0.25], [0.5], [0.9]])
    labels = np.array([0, 0, 1, 1, 2, 3])
    hn = hardest_negatives(squared_distances(x), labels, 3)
    assert hn[0].tolist() == [2, 4, 5]          # class 1's nearest (0.2, not 0.25), then classes 2, 3
    assert hn[5].tolist() == [4, 3, 1]          # from 0.9: 0.5 (class 2), 0.25 (class 1), 0.1 (class 0)
    assert hardest_negatives(squared_distances(x), labels, 5)[0].tolist() == [2, 4, 5, -1, -1]


def test_contrastive_tuples_structure():
    x = _unit(30, 4, 1)
    labels = np.repeat(np.arange(5), 6)
    pairs = contrastive_tuples(squared_distances(x), labels, 2, np.random.default_rng(0))
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert len(pairs) == 30 * 3 and same.sum() == 30          # one positive + two negatives per query
    assert (pairs[:, 0] != pairs[:, 1]).all()
    hn = hardest_negatives(squared_distances(x), labels, 2)
    for q in range(30):
        rows = pairs[pairs[:, 0] == q]
        assert sorted(rows[~same[pairs[:, 0] == q], 1]) == sorted(hn[q])


# ---------------------------------------------------------------- triplet: known answers and semi-hard selection
def test_triplet_known_answer():
    emb = _t([[0.0, 0], [0.1, 0], [0.3, 0], [2.0, 0]])
    trip = np.array([[0, 1, 2],    # 0.01 - 0.09 + 0.2 = 0.12
                     [0, 1, 3]])   # 0.01 - 4 + 0.2 < 0 -> 0
    assert np.allclose(triplet_terms(emb, trip, 0.2).numpy(), [0.12, 0.0])
    assert np.isclose(float(triplet_batch_loss(emb, trip, 0.2)), 0.06)
    assert float(triplet_batch_loss(emb, np.zeros((0, 3), np.int64), 0.2)) == 0.0


def test_semihard_selection_on_a_hand_batch():
    # anchor 0 at x = 0, its positive 1 at x = 0.5 (d^2 = 0.25); alpha = 0.2, so semi-hard: 0.25 < d^2 < 0.45
    x = np.array([[0.0], [0.5], [0.3], [0.6], [0.65], [0.7]])
    labels = np.array([0, 0, 1, 2, 3, 4])       # d^2 to the anchor: 0.09 (hard), 0.36, 0.4225 (semi-hard), 0.49 (easy)
    d2 = squared_distances(x)
    assert semihard_triplets(d2, labels, 0.2, "all").tolist() == [[0, 1, 3], [0, 1, 4]]
    assert semihard_triplets(d2, labels, 0.2, "hardest").tolist() == [[0, 1, 3]]
    m = semihard_mask(d2, labels, 0.2)
    assert np.argwhere(m).tolist() == [[0, 1, 3], [0, 1, 4]]  # anchor 1 (x = 0.5): every negative is hard
    # a larger margin admits the easy negative too; none when every negative is hard
    assert semihard_triplets(d2, labels, 0.3, "all").tolist() == [[0, 1, 3], [0, 1, 4], [0, 1, 5]]
    assert len(semihard_triplets(squared_distances(np.array([[0.0], [0.5], [0.1]])), np.array([0, 0, 1]), 0.2)) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semihard_properties_on_random_batches(seed):
    x = _unit(48, 5, seed)
    labels = np.random.default_rng(seed).integers(0, 4, 48)
    d2 = squared_distances(x)
    alpha = 0.3
    allt = semihard_triplets(d2, labels, alpha, "all")
    assert len(allt) > 0
    assert np.array_equal(allt, np.argwhere(semihard_mask(d2, labels, alpha)))
    a, p, n = allt.T
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[n] != labels[a]).all()
    assert ((d2[a, p] < d2[a, n]) & (d2[a, n] < d2[a, p] + alpha)).all()
    hard = semihard_triplets(d2, labels, alpha, "hardest")
    # one per anchor-positive pair that has a semi-hard negative, the nearest of them
    assert len(hard) == len({(i, j) for i, j, _ in allt})
    for i, j, k in hard:
        cand = allt[(allt[:, 0] == i) & (allt[:, 1] == j), 2]
        assert d2[i, k] == d2[i, cand].min()
    # every semi-hard triplet has a positive loss below alpha (Eq. 1): they lie inside the margin
    terms = triplet_terms(_t(x), allt, alpha).numpy()
    assert (terms > 0).all() and (terms < alpha).all()


def test_class_balanced_batches():
    labels = np.repeat(np.arange(6), [50, 50, 50, 50, 50, 3])
    batches = class_balanced_batches(labels, 10, 4, np.random.default_rng(0))
    assert len(batches) == -(-len(labels) // 40)
    for b in batches:
        counts = np.bincount(labels[b], minlength=6)
        assert sorted(counts[counts > 0].tolist()) == [10, 10, 10, 10]
        big = [c for c in range(5) if counts[c]]
        for c in big:                             # drawn without replacement where the class is large enough
            assert len(set(b[labels[b] == c].tolist())) == 10
    fixed = class_balanced_batches(labels, 10, 4, np.random.default_rng(0), n_batches=3)   # a set budget
    assert len(fixed) == 3 and all(len(b) == 40 for b in fixed)


# ---------------------------------------------------------------- cross-check with pytorch-metric-learning
def test_losses_match_pytorch_metric_learning():
    pytest.importorskip("pytorch_metric_learning", reason="peer pytorch-metric-learning is not installed "
                        "(pip install 'visrep[peers]')")
    import torch
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import ContrastiveLoss, TripletMarginLoss
    from pytorch_metric_learning.miners import TripletMarginMiner
    from pytorch_metric_learning.reducers import DoNothingReducer, MeanReducer
    x = torch.tensor(_unit(64, 6, 7))
    y = torch.arange(64) % 4
    d2 = squared_distances(x.numpy())
    # semi-hard mining: the same triplets (PML: 0 < d_an - d_ap <= margin on squared distances)
    sq = LpDistance(power=2)
    a, p, n = TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=sq)(x, y)
    peer = {tuple(t) for t in np.stack([a.numpy(), p.numpy(), n.numpy()], 1).tolist()}
    ours = semihard_triplets(d2, y.numpy(), 0.2, "all")
    assert len(peer) > 100 and peer == {tuple(t) for t in ours.tolist()}
    # the loss over the same triplets (FaceNet Eq. 1, mean)
    ref = TripletMarginLoss(margin=0.2, distance=sq, reducer=MeanReducer())(x, y, (a, p, n))
    assert np.isclose(float(triplet_batch_loss(x, ours, 0.2)), float(ref), rtol=1e-6)
    hard = semihard_triplets(d2, y.numpy(), 0.2, "hardest")
    ref_h = TripletMarginLoss(margin=0.2, distance=sq, reducer=MeanReducer())(x, y, tuple(torch.as_tensor(c)
                                                                                          for c in hard.T))
    assert np.isclose(float(triplet_batch_loss(x, hard, 0.2)), float(ref_h), rtol=1e-6)
    # contrastive on the same pairs: PML's per-pair hinge terms (d and [m - d]_+, Euclidean) squared and halved
    # are Hadsell et al.'s Eq. 4 terms
    pairs = contrastive_tuples(d2, y.numpy(), 3, np.random.default_rng(0))
    same = y.numpy()[pairs[:, 0]] == y.numpy()[pairs[:, 1]]
    pp, nn = (torch.as_tensor(pairs[same]), torch.as_tensor(pairs[~same]))
    out = ContrastiveLoss(pos_margin=0, neg_margin=0.7, distance=LpDistance(), reducer=DoNothingReducer())(
        x, y, (pp[:, 0], pp[:, 1], nn[:, 0], nn[:, 1]))
    peer_terms = torch.cat([out["pos_loss"]["losses"], out["neg_loss"]["losses"]]).double()
    ours_mean = float(contrastive_loss(x, y.numpy(), np.concatenate([pairs[same], pairs[~same]]), 0.7))
    assert np.isclose(ours_mean, float((0.5 * peer_terms ** 2).mean()), rtol=1e-6)
    assert (out["neg_loss"]["losses"] > 0).any()


# ---------------------------------------------------------------- the plugins end to end
@pytest.fixture(scope="module")
def digits_split(digits_unseen):
    from visrep.data import LabelledData
    train = digits_unseen.train
    seen = LabelledData("digits", train.labels, train.class_names, "test", x=train.x)   # the training classes as test set
    seen.train = train
    return digits_unseen, seen


def _violated(emb, labels, n=20000, seed=0):
    """Fraction of random triplets (a, p same class, n other class) with ||a - p|| > ||a - n||."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    cnt = np.bincount(labels)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    a = rng.integers(0, len(labels), n)
    c = labels[a]
    p = order[start[c] + rng.integers(0, cnt[c])]
    q = order[(start[c] + cnt[c] + rng.integers(0, len(labels) - cnt[c])) % len(labels)]
    assert (labels[p] == c).all() and (labels[q] != c).all()
    return float(np.mean(((emb[a] - emb[p]) ** 2).sum(1) > ((emb[a] - emb[q]) ** 2).sum(1)))


@pytest.mark.parametrize("name", ["contrastive-head", "triplet-head"])
def test_plugins_end_to_end(digits_split, name):
    from visrep.context import RunContext
    from visrep.registry import methods
    unseen, seen = digits_split
    kw = {"pca_dim": 8, "epochs": 8, "lr": 3e-3, "per_class": 20}
    r1 = methods.create(name, **kw).run(unseen, RunContext(quiet=True, seed=3))
    r2 = methods.create(name, **kw).run(unseen, RunContext(quiet=True, seed=3))
    assert r1["embeddings"].shape == (len(unseen), 8)
    assert np.array_equal(r1["embeddings"], r2["embeddings"])                    # seeded
    assert np.allclose(np.linalg.norm(r1["embeddings"], axis=1), 1, atol=1e-5)
    assert r1["stats"]["steps"] == 8 * -(-len(unseen.train) // 100)
    # with labels, training must pull the training classes together: tested on the training classes themselves,
    # the fraction of violated random triplets falls well below that of the pre-trained start (8.3% -> ~1%)
    base = _violated(methods.create("pretrained", pca_dim=8).run(seen, RunContext(quiet=True))["embeddings"],
                     seen.labels)
    got = _violated(methods.create(name, **kw).run(seen, RunContext(quiet=True, seed=3))["embeddings"], seen.labels)
    assert base > 0.05 and got < base / 2, (name, base, got)


def test_plugins_need_training_labels(digits_split):
    from visrep.context import RunContext
    from visrep.errors import UserError
    from visrep.registry import methods
    unseen, _ = digits_split
    import copy
    bad = copy.copy(unseen)
    bad.train = copy.copy(unseen.train)
    bad.train.labels = None
    with pytest.raises(UserError, match="labels of the training split"):
        methods.create("triplet-head", pca_dim=8, epochs=1).run(bad, RunContext(quiet=True))
