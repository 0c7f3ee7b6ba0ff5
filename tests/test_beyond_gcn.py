"""GCN cleaning of noisy labels (Iscen et al., ECCV 2020): kernels on hand graphs, a clean-vs-noisy toy,
determinism, the noisy-label dataset's noise models, and the `gcn-noisy` plugin end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from visrep.methods.beyond import gcn
from visrep.methods.beyond.gcn import (
    gcn_adjacency,
    gcn_forward,
    gcn_relevance,
    paper_lambda,
    reciprocal_knn_affinity,
    relevance_auc,
    train_gcn_cleaner,
    weighted_prototypes,
)

from visrep.data import LabelledData
from visrep.errors import UserError

FASHION = Path("/usr/share/datasets/fashion-mnist")

# the hand graph: a weighted path 0 -1- 1 -2- 2; with self-loops the degrees are 2, 4, 3
A3 = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])


def test_normalized_adjacency_known_answer():
    row = gcn_adjacency(A3, "row").toarray()
    np.testing.assert_allclose(row, [[1 / 2, 1 / 2, 0], [1 / 4, 1 / 4, 2 / 4], [0, 2 / 3, 1 / 3]])
    sym = gcn_adjacency(A3, "sym").toarray()
    d = np.array([2.0, 4.0, 3.0])
    want = np.array([[1 / 2, 1 / np.sqrt(8), 0], [1 / np.sqrt(8), 1 / 4, 2 / np.sqrt(12)],
                     [0, 2 / np.sqrt(12), 1 / 3]])
    np.testing.assert_allclose(sym, want)
    np.testing.assert_allclose(sym, (A3 + np.eye(3)) / np.sqrt(np.outer(d, d)))
    np.testing.assert_allclose(row.sum(1), 1.0)          # row-stochastic
    np.testing.assert_allclose(sym, sym.T)                 # symmetric
    with pytest.raises(UserError, match="normalization"):
        gcn_adjacency(A3, "left")
    with pytest.raises(UserError, match="non-negative"):
        gcn_adjacency(-A3)


def test_gcn_propagation_equals_its_formula_on_a_hand_graph(monkeypatch):
    # known answer on two linked nodes: A_hat = [[.5, .5], [.5, .5]] (row), X = I
    A2 = gcn_adjacency(np.array([[0.0, 1.0], [1.0, 0.0]]))
    W1, b1 = np.array([[1.0, -1.0], [2.0, 0.0]]), np.array([0.0, 0.5])
    W2, b2 = np.array([[2.0], [3.0]]), np.array([-1.0])
    # A X W1 = [[1.5, -.5]] x2; + b1 -> [1.5, 0]; ReLU -> [1.5, 0]; @ W2 -> 3; A . -> 3; + b2 -> 2
    np.testing.assert_allclose(gcn_forward(np.eye(2), A2, W1, b1, W2, b2), [2.0, 2.0], rtol=1e-6)
    # the formula A ReLU(A X W1 + b1) W2 + b2 on the 3-node hand graph, both normalisations, dense and sparse
    rng = np.random.default_rng(0)
    X, W1, b1, W2, b2 = (rng.normal(size=s) for s in ((3, 4), (4, 5), (5,), (5, 1), (1,)))
    for norm in ("row", "sym"):
        A = gcn_adjacency(A3, norm).toarray()
        want = (A @ np.maximum(A @ X @ W1 + b1, 0) @ W2 + b2).ravel()
        np.testing.assert_allclose(gcn_forward(X, A, W1, b1, W2, b2), want, rtol=1e-5, atol=1e-6)
        monkeypatch.setattr(gcn, "DENSE_MAX", 0)          # the sparse path for large graphs
        np.testing.assert_allclose(gcn_forward(X, A, W1, b1, W2, b2), want, rtol=1e-5, atol=1e-6)
        monkeypatch.setattr(gcn, "DENSE_MAX", 4096)


def test_reciprocal_knn_affinity_keeps_mutual_neighbours_only():
    ang = np.deg2rad([0.0, 10.0, 30.0, 90.0])
    V = np.stack([np.cos(ang), np.sin(ang)], 1)
    # 1-NN: 0 -> 1, 1 -> 0, 2 -> 1, 3 -> 2: only 0 <-> 1 is mutual
    A = reciprocal_knn_affinity(V, 1).toarray()
    want = np.zeros((4, 4))
    want[0, 1] = want[1, 0] = np.cos(np.deg2rad(10))
    np.testing.assert_allclose(A, want, rtol=1e-6)
    # 2-NN: 0 -> {1, 2}, 1 -> {0, 2}, 2 -> {1, 0}, 3 -> {2, 1}: the triangle 0-1-2, node 3 cut off
    A = reciprocal_knn_affinity(V, 2).toarray()
    assert (A > 0).sum() == 6 and not A[3].any() and np.allclose(A, A.T) and not np.diag(A).any()
    # negative similarities are clipped at 0 (antipodal points are each other's only neighbour)
    assert not reciprocal_knn_affinity(np.array([[1.0, 0.0], [-1.0, 0.0]]), 1).toarray().any()


def _two_clusters(seed=0, n_clean=5, n_right=45, n_wrong=50, d=8, spread=0.1):
    rng = np.random.default_rng(seed)
    e = np.eye(d)
    right = e[0] + spread * rng.normal(size=(n_clean + n_right, d))
    wrong = e[1] + spread * rng.normal(size=(n_wrong, d))
    V = gcn.l2_rows(np.concatenate([right, wrong]))
    truth = np.r_[np.ones(n_clean + n_right, bool), np.zeros(n_wrong, bool)]
    return V, truth


def test_gcn_ranks_clean_above_noisy_on_a_toy():
    V, truth = _two_clusters()
    A = gcn_adjacency(reciprocal_knn_affinity(V, 10))
    rel, params, losses = train_gcn_cleaner(V, A, n_clean=5, lam=0.1, seed=0)
    noisy_rel, noisy_truth = rel[5:], truth[5:]
    assert noisy_rel[noisy_truth].min() > noisy_rel[~noisy_truth].max()
    assert relevance_auc(noisy_rel, noisy_truth) == 1.0
    assert losses[-1] < losses[0]
    # the returned parameters reproduce the relevance through gcn_forward (evaluation mode, no dropout)
    logits = gcn_forward(V, A, params["W1"], params["b1"], params["W2"], params["b2"])
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), rel, rtol=1e-5, atol=1e-6)


def test_gcn_relevance_per_class_and_seeded_determinism():
    V, truth = _two_clusters()
    labels = np.zeros(len(V), int)
    clean = np.arange(len(V)) < 5
    w1 = gcn_relevance(V, labels, clean, 2, k=10, lam=0.1, seed=3)
    w2 = gcn_relevance(V, labels, clean, 2, k=10, lam=0.1, seed=3)
    np.testing.assert_array_equal(w1, w2)
    assert (w1[clean] == 1).all() and relevance_auc(w1[~clean], truth[~clean]) == 1.0
    w3 = gcn_relevance(V, labels, clean, 2, k=10, lam=0.1, seed=4)
    assert not np.array_equal(w1, w3)
    # a class with noisy items but no clean one gets weight 0 (nothing to learn clean from)
    w4 = gcn_relevance(V, np.r_[np.zeros(60, int), np.ones(40, int)], clean, 2, k=10, lam=0.1)
    assert (w4[60:] == 0).all()


def test_weighted_prototypes_lambda_and_auc_known_answers():
    V = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 4.0]])
    P = weighted_prototypes(V, np.array([0, 0, 1, 1]), np.array([1.0, 3.0, 0.0, 2.0]), 2)
    np.testing.assert_allclose(P, [[1 / np.sqrt(10), 3 / np.sqrt(10)], [0.6, 0.8]], rtol=1e-6)
    assert paper_lambda(1) == 0.01 and paper_lambda(5) == 0.5 and paper_lambda(20) == 5.0
    assert paper_lambda(3) == 0.05 and paper_lambda(100) == 5.0       # nearest tabulated shot (log scale)
    # pairs (correct, wrong): (.9, .1) (.9, .5) (.5, .1) win, (.5, .5) ties: 3.5 / 4
    assert relevance_auc([0.9, 0.1, 0.5, 0.5], [True, False, True, False]) == 0.875


def test_weighted_cosine_classifier_ignores_zero_weight_items():
    from visrep.methods.beyond.gcn import train_weighted_cosine_classifier
    V, _ = _two_clusters()
    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    w = np.ones(100)
    W = train_weighted_cosine_classifier(V, labels, w, 2, epochs=20)
    assert ((V @ W.T).argmax(1) == labels).mean() == 1.0
    flipped = labels.copy()
    flipped[:10] = 1                                      # ten wrong labels, weighted 0: no effect at all
    w0 = np.r_[np.zeros(10), np.ones(90)]
    np.testing.assert_allclose(train_weighted_cosine_classifier(V, flipped, w0, 2, epochs=20),
                               train_weighted_cosine_classifier(V[10:], labels[10:], w0[10:], 2, epochs=20),
                               rtol=1e-5, atol=1e-6)


def test_noise_models_of_the_dataset():
    from visrep.datasets.noisy_labels import noisy_sets
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    x = (rng.random((120, 4, 4)) * 255).astype(np.uint8)
    clean, noisy, nl = noisy_sets(x, labels, 3, 2, 10, "symmetric", 0.3, episode=0)
    assert len(clean) == 6 and (labels[clean] == np.repeat(np.arange(3), 2)).all()
    assert len(noisy) == 30 and (nl == np.repeat(np.arange(3), 10)).all()
    assert not set(noisy) & set(clean)
    assert np.mean(labels[noisy] != nl) == pytest.approx(0.3)   # exactly round(0.3 * 10) wrong per class
    # retrieval: the pool images most similar to a clean image of the class, in order
    clean, noisy, nl = noisy_sets(x, labels, 3, 2, 5, "retrieval", 0.0, episode=1)
    v = x.reshape(120, -1).astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pool = np.setdiff1d(np.arange(120), clean)
    for c in range(3):
        s = (v[pool] @ v[clean[2 * c:2 * c + 2]].T).max(1)
        np.testing.assert_array_equal(noisy[5 * c:5 * c + 5], pool[np.argsort(-s, kind="stable")[:5]])
    with pytest.raises(UserError, match="noise must be"):
        noisy_sets(x, labels, 3, 2, 5, "tags", 0.0, episode=0)


def _toy_data():
    """A LabelledData of vectors: 2 clean + 8 noisy (2 wrong) per class, 2 classes; test = cluster centres."""
    V, _ = _two_clusters(n_clean=0, n_right=50, n_wrong=50)
    tr_idx = np.r_[0, 1, 50, 51, 2:8, 8, 9, 52:58, 58, 59]          # clean 0,1 | 50,51; noisy ...
    labels = np.r_[0, 0, 1, 1, [0] * 6, 1, 1, [1] * 6, 0, 0]        # the last two of each noisy block are wrong
    truth = np.r_[0, 0, 1, 1, [0] * 6, 0, 0, [1] * 6, 1, 1]
    train = LabelledData("toy", labels, ["a", "b"], "train", x=V[tr_idx])
    train.labelled_idx = np.arange(4)
    train.extra = {"clean": np.arange(20) < 4, "true_labels": truth}
    test = LabelledData("toy", np.r_[np.zeros(40, int), np.ones(40, int)], ["a", "b"], "test",
                        x=np.concatenate([V[10:50], V[60:100]]))
    test.train = train
    return test


@pytest.mark.parametrize("weighting", ["gcn", "clean-only", "uniform"])
@pytest.mark.parametrize("classifier", ["prototype", "cosine"])
def test_plugin_runs_on_vectors(weighting, classifier):
    from visrep.protocols.classification import Classification

    from visrep.context import RunContext
    from visrep.registry import methods
    data = _toy_data()
    m = methods.create("gcn-noisy", weighting=weighting, classifier=classifier, k=5, cosine_epochs=10)
    out = m.run(data, RunContext(quiet=True))
    assert out["scores"].shape == (80, 2)
    assert Classification().evaluate(out, data)["accuracy"] == 1.0      # separable clusters
    s = out["stats"]
    assert s["n_clean"] == 4 and s["n_noisy"] == 16 and s["k_shot"] == 2 and s["noise_rate"] == 0.25
    if weighting == "gcn":
        assert s["gcn_lambda"] == 0.05 and s["relevance_auc"] > 0.5


def test_plugin_needs_a_training_split():
    from visrep.context import RunContext
    from visrep.registry import methods
    data = _toy_data()
    data.train = None
    with pytest.raises(UserError, match="fashion-mnist-noisy"):
        methods.create("gcn-noisy").run(data, RunContext(quiet=True))


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"Fashion-MNIST (Debian dataset-fashion-mnist) absent: {FASHION}")
def test_end_to_end_on_fashion_mnist_through_the_runner(tmp_path):
    from visrep.runner import RunSettings, run_job
    from visrep.spec import expand_experiment
    recs = {}
    for weighting in ("gcn", "clean-only"):
        (job,) = expand_experiment({"method": "gcn-noisy", "dataset": "fashion-mnist-noisy",
                                    "data_root": str(FASHION.parent), "params": {"weighting": weighting, "iters": 20},
                                    "dataset_params": {"k_shot": 2, "noisy_per_class": 40, "noise": "symmetric"}})
        recs[weighting] = run_job(job, RunSettings(results_dir=str(tmp_path / "results"), quiet=True))
    for rec in recs.values():
        assert len(rec["per_item"]["top1_error"]) == 10000 and 0.3 < rec["metrics"]["accuracy"] < 0.9
        assert rec["stats"]["n_clean"] == 20 and rec["stats"]["n_noisy"] == 400 and rec["stats"]["noise_rate"] == 0.5
    assert 0.5 < recs["gcn"]["stats"]["relevance_auc"] <= 1.0
