"""Metric-learning, few-shot, classification, adversarial and quantization protocols:
hand-computed answers and cross-checks with scikit-learn / pytorch-metric-learning."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.protocols.adversarial import Adversarial
from visrep.protocols.classification import Classification, labelled_subset_summary
from visrep.protocols.few_shot import FewShot, mean_ci95
from visrep.protocols.metric_learning import MetricLearning, nmi, nmi_per_item, recall_at_k
from visrep.protocols.quantization import (
    Quantization,
    exact_nearest_neighbour,
    recall_at_r,
)

from visrep.data import LabelledData, RetrievalData
from visrep.errors import UserError


def _ld(labels, n_classes=None, x=None):
    labels = np.asarray(labels)
    return LabelledData("toy", labels, [str(i) for i in range(n_classes or labels.max() + 1)], "test", x=x)


def test_recall_at_k_hand_computed():
    # 1-D points: 0, 1, 10, 11, 30 with labels a a b a b
    x = np.array([[0.0], [1.0], [10.0], [11.0], [30.0]])
    y = np.array([0, 0, 1, 0, 1])
    r = recall_at_k(x, y, ks=(1, 2, 4), metric="euclidean")
    # NN: 0->1 (hit), 1->0 (hit), 10->11 (miss), 11->10 (miss), 30->11 (miss): R@1 = 2/5
    # 2-NN: 10->{11,1} miss; 11->{10,1} hit; 30->{11,10} hit: R@2 = 4/5; R@4 = 5/5
    assert r == {1: 0.4, 2: 0.8, 4: 1.0}


def test_metric_learning_matches_pml_and_sklearn():
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from sklearn.metrics import normalized_mutual_info_score
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 25)
    x = (rng.normal(size=(8, 16))[y] * 0.6 + rng.normal(size=(200, 16))).astype(np.float32)
    m = MetricLearning().evaluate({"embeddings": x}, _ld(y))
    xn = torch.nn.functional.normalize(torch.from_numpy(x))
    pml = AccuracyCalculator(include=("precision_at_1",), k=1).get_accuracy(xn, torch.from_numpy(y))
    assert m["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-12)
    assert m["recall@1"] <= m["recall@2"] <= m["recall@4"] <= m["recall@8"] <= 1
    for _ in range(5):
        a, b = rng.integers(0, 6, 300), rng.integers(0, 9, 300)
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-12)
    assert nmi(y, y) == pytest.approx(1.0) and 0 < m["nmi"] <= 1
    with pytest.raises(UserError, match=r"row 3 contains NaN"):
        bad = x.copy()
        bad[3, 0] = np.nan
        MetricLearning().evaluate({"embeddings": bad}, _ld(y))
    with pytest.raises(UserError, match=r"expected shape \(200, d\)"):
        MetricLearning().evaluate({"embeddings": x[:10]}, _ld(y))


def test_nmi_per_item_values_are_the_influence_values_of_nmi():
    """Their mean is NMI exactly, and each is the jackknife pseudo-value n NMI - (n-1) NMI(-i) to first order."""
    rng = np.random.default_rng(1)
    t = rng.integers(0, 5, 1500)
    p = np.where(rng.random(1500) < 0.6, t, rng.integers(0, 6, 1500))  # clusters agreeing with 60% of labels
    v = nmi_per_item(t, p)
    assert v.shape == (1500,) and v.mean() == pytest.approx(nmi(t, p), abs=1e-12)
    n, full = len(t), nmi(t, p)
    idx = rng.choice(n, 40, replace=False)
    pseudo = np.array([n * full - (n - 1) * nmi(np.delete(t, i), np.delete(p, i)) for i in idx])
    assert np.abs(pseudo - v[idx]).max() < 0.03 * np.ptp(v[idx])  # second-order terms only
    assert np.corrcoef(pseudo, v[idx])[0, 1] > 0.999
    assert np.allclose(nmi_per_item(t, t), 1.0)  # perfect clustering: every item's value is 1
    m, per_item = MetricLearning().score({"embeddings": np.eye(6)[t % 6].astype(np.float32)}, _ld(t))
    assert per_item["nmi"].mean() == pytest.approx(m["nmi"], abs=1e-12)


def test_few_shot_mean_and_ci():
    from visrep.datasets.episodes import sample_episodes
    pool = _ld(np.repeat(np.arange(6), 20))
    ep = sample_episodes(pool, 5, 1, 2, n_episodes=4, seed=0)
    pred = ep.query_labels.copy()
    pred[0, :5] = (pred[0, :5] + 1) % 5      # episode 0: 5 of 10 wrong
    m = FewShot().evaluate({"predictions": pred}, ep)
    acc = np.array([0.5, 1, 1, 1])
    assert m["accuracy"] == pytest.approx(0.875)
    assert m["ci95"] == pytest.approx(1.96 * acc.std() / 2) and m["n_episodes"] == 4
    assert mean_ci95([0.5, 0.5]) == (0.5, 0.0)
    with pytest.raises(UserError, match="episode-local labels"):
        FewShot().evaluate({"predictions": pred + 5}, ep)


def test_classification_top1_top5_and_ssl_summary():
    s = np.array([[0.1, 0.9, 0, 0, 0, 0], [0.5, 0.4, 0.3, 0.2, 0.1, 0.0], [0, 0, 0, 0, 0, 1.0]])
    y = np.array([1, 5, 0])
    m = Classification().evaluate({"scores": s}, _ld(y, 6))
    # top-1: only item 0 right; top-5: item 1's true class is 6th -> wrong; item 2: class 0 ties with 4 others
    # below class 5 (strictly higher: one) -> within top-5
    assert m["top1_error"] == pytest.approx(2 / 3) and m["top5_error"] == pytest.approx(1 / 3)
    assert Classification().evaluate({"predictions": np.array([1, 5, 1])}, _ld(y, 6))["top1_error"] == pytest.approx(1 / 3)
    summ = labelled_subset_summary([0.1, 0.2, 0.3])
    assert summ["mean"] == pytest.approx(0.2) and summ["std"] == pytest.approx(0.1) and summ["n_runs"] == 3
    with pytest.raises(UserError, match=r"expected shape \(3, n_classes\)"):
        Classification().evaluate({"scores": s[:2]}, _ld(y, 6))


def test_adversarial_hand_computed():
    clean = np.zeros((3, 2, 2))
    adv = clean.copy()
    adv[0, 0, 0] = 0.3
    adv[0, 1, 1] = 0.4      # L2 0.5, Linf 0.4
    adv[1, 0, 0] = 1.0      # L2 1.0
    adv[2, 0, 1] = 0.2      # failed attack
    data = _ld([0, 1, 2], 3, x=(clean * 255).astype(np.uint8))
    out = {"adversarial": adv, "adv_predictions": np.array([1, 0, 2]), "iterations": np.array([10, 20, 30]),
           "time": 0.6}
    m = Adversarial().evaluate(out, data)
    assert m["success_rate"] == pytest.approx(2 / 3)
    assert m["l2_mean"] == pytest.approx(0.75) and m["l2_median"] == pytest.approx(0.75)
    assert m["linf_mean"] == pytest.approx(0.7) and m["iterations_mean"] == 20 and m["time_per_image"] == pytest.approx(0.2)
    m2 = Adversarial(normalise="sqrt_dim").evaluate(out, data)
    assert m2["l2_mean"] == pytest.approx(0.75 / 2)
    out["clean_predictions"] = np.array([0, 2, 2])   # image 1 was misclassified already: not attacked
    assert Adversarial().evaluate(out, data)["success_rate"] == pytest.approx(1 / 2)
    with pytest.raises(UserError, match="in \\[0, 1\\]"):
        Adversarial().evaluate({**out, "adversarial": adv + 2}, data)


def test_quantization_recall_mse_bytes():
    import faiss
    rng = np.random.default_rng(0)
    db = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    gt = exact_nearest_neighbour(db, q)
    index = faiss.IndexFlatL2(16)
    index.add(db)
    assert np.array_equal(gt, index.search(q, 1)[1][:, 0])
    # ranks: true NN at position j % 3 for query j (others filled with distinct wrong ids)
    ranks = np.empty((100, 40), np.int64)
    for j in range(40):
        others = np.setdiff1d(np.arange(500), [gt[j]])[:99]
        col = list(others)
        col.insert(j % 3 if j < 36 else 99, gt[j])   # queries 36..39: NN only at position 99
        ranks[:, j] = col
    assert recall_at_r(ranks, gt, (1, 2, 3, 100)) == {1: 12 / 40, 2: 24 / 40, 3: 36 / 40, 100: 1.0}
    data = RetrievalData("toy", [str(i) for i in range(500)], [str(j) for j in range(40)], [{}] * 40,
                         db_features=db, query_features=q)
    xq = db + 0.5
    m = Quantization().evaluate({"ranks": ranks, "reconstruction": xq, "codes": np.zeros((500, 8), np.uint8)}, data)
    assert m["recall@1"] == 12 / 40 and m["recall@100"] == 1.0 and "recall@1000" not in m
    assert m["mse"] == pytest.approx(16 * 0.25) and m["bytes_per_vector"] == 8.0


def test_quantization_scores_the_vectors_the_method_searched():
    # the method searched L2-normalized vectors: ground truth and MSE follow them, not the raw features
    db = np.array([[10.0, 0.0], [0.0, 1.0]], np.float32)
    q = np.array([[1.0, 1.2]], np.float32)          # raw nearest: db 1; after L2 normalization: db 1 too
    dbn, qn = db / np.linalg.norm(db, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    data = RetrievalData("toy", ["a", "b"], ["q"], [{}], db_features=db, query_features=q,
                         extra={"gt_nn": np.array([0])})    # (deliberately wrong) gt of the raw vectors
    out = {"ranks": np.array([[1], [0]]), "reconstruction": dbn * 0.5, "bytes_per_vector": 2,
           "db_vectors": dbn, "query_vectors": qn}
    m = Quantization().evaluate(out, data)
    assert m == {"recall@1": 1.0, "mse": pytest.approx(0.25), "bytes_per_vector": 2.0}
    assert Quantization().evaluate({k: out[k] for k in ("ranks",)}, data) == {"recall@1": 0.0}   # gt_nn used
    with pytest.raises(UserError, match="db_vectors must be"):
        Quantization().evaluate({**out, "query_vectors": np.zeros((1, 3), np.float32)}, data)
