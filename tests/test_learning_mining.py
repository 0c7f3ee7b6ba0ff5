"""Mining on manifolds (Iscen et al. CVPR 2018): tuple mining, triplet loss (cross-checked with
pytorch-metric-learning), the identity-initialized head, and the metric-learning outputs."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.mining import (
    make_head,
    mine,
    select_anchors,
    triplet_loss,
    tuples_from_pools,
)
from visrep.methods.learning.pipeline import pretrained_features
from visrep.methods.manifolds.knn_graph import build_graph, knn

from visrep.errors import UserError


@pytest.fixture(scope="module")
def digits_split(digits_unseen):
    return digits_unseen


def test_mined_sets_follow_the_definitions(digits_split):
    tr, _ = pretrained_features(digits_split, {"features": "pixels-pca", "pca_dim": 16})
    g = build_graph(tr, k=10)
    deg = np.asarray(g.A.sum(1)).ravel()
    anchors = select_anchors(tr, deg, 30, 10)
    _, nn = knn(tr, 11)
    for a in anchors[1:]:                          # no anchor among an earlier anchor's Euclidean neighbours
        earlier = anchors[:list(anchors).index(a)]
        assert a not in nn[earlier].ravel()
    pools = mine(tr, g.W, anchors, 10, 20, 0.9)
    assert len(pools) == len(anchors)
    _, enn = knn(tr, 11, queries=tr[anchors])
    labels = digits_split.train.labels
    purity_pos, purity_euc = [], []
    for j, (a, pos, neg) in enumerate(pools):
        e = set(enn[j].tolist()) - {a}
        assert not set(pos) & e                    # S+ = M \ E
        assert set(neg) <= e and a not in set(pos) | set(neg)      # S- subset of E
        assert len(pos) <= 20 and len(neg) <= 10
        purity_pos += (labels[pos] == labels[a]).tolist()
        purity_euc += (labels[list(e)] == labels[a]).tolist()
    # hard positives far along the manifold are still mostly the anchor's class (labels unused in mining)
    assert np.mean(purity_pos) > 0.8


def test_triplet_loss_matches_pytorch_metric_learning():
    import torch
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.reducers import MeanReducer
    torch.manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(20, 8), dim=1)
    a, p, n = torch.randint(0, 20, (3, 50))
    keep = (a != p) & (a != n)
    a, p, n = a[keep], p[keep], n[keep]
    ours = triplet_loss(e[a], e[p], e[n], 0.3)
    ref = TripletMarginLoss(margin=0.3, distance=LpDistance(normalize_embeddings=True, p=2, power=2),
                            reducer=MeanReducer())(e, torch.zeros(20), indices_tuple=(a, p, n))
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    assert pml is not None


def test_head_starts_at_the_pretrained_embedding():
    import torch
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(7, 12), dim=1)
    assert torch.allclose(make_head(12, 5)(x), x, atol=1e-6)


def test_tuples_and_bad_input(digits_split):
    rng = np.random.default_rng(0)
    t = tuples_from_pools([(3, np.array([5, 6]), np.array([9])), (4, np.array([], int), np.array([1]))], 4, rng)
    assert t.shape == (4, 3) and set(t[:, 0]) == {3} and set(t[:, 1]) <= {5, 6} and set(t[:, 2]) == {9}
    with pytest.raises(UserError, match="given"):
        pretrained_features(digits_split, {"features": "given", "pca_dim": 8})
    bare = digits_split.subset(np.arange(10))
    with pytest.raises(UserError, match="training split"):
        pretrained_features(bare, {"features": "auto", "pca_dim": 8})


def test_mom_and_pretrained_outputs(digits_split):
    from visrep.protocols.metric_learning import MetricLearning

    from visrep.context import RunContext
    from visrep.registry import methods
    base = methods.create("pretrained", pca_dim=16).run(digits_split, RunContext(quiet=True))
    kw = {"pca_dim": 16, "k": 10, "n_anchors": 100, "k_euclidean": 10, "k_manifold": 20, "epochs": 2}
    r1 = methods.create("mom-head", **kw).run(digits_split, RunContext(quiet=True, seed=3))
    r2 = methods.create("mom-head", **kw).run(digits_split, RunContext(quiet=True, seed=3))
    assert r1["embeddings"].shape == (len(digits_split), 16)
    assert np.array_equal(r1["embeddings"], r2["embeddings"])
    assert np.allclose(np.linalg.norm(r1["embeddings"], axis=1), 1, atol=1e-5)
    m0 = MetricLearning(nmi=False).evaluate(base, digits_split)
    m1 = MetricLearning(nmi=False).evaluate(r1, digits_split)
    assert m0["recall@1"] > 0.8 and m1["recall@1"] > 0.8      # both far above chance (0.2) on unseen classes
    assert r1["stats"]["n_anchors"] > 10
