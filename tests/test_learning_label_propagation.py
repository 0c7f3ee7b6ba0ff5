"""Deep label propagation (Iscen et al. CVPR 2019): graph, CG propagation, certainty and class weights.

Cross-check: the propagation step gives the same predictions as scikit-learn's LabelSpreading
(Zhou et al. 2004) run on the same affinity matrix and alpha.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from visrep.methods.learning.label_propagation import (
    class_weights,
    dlp_graph,
    label_matrix,
    propagate,
    pseudo_labels,
)

from visrep.errors import UserError


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


def _balanced(y, per, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in range(10)]))


def test_graph_is_symmetric_normalized_without_self_loops(digits):
    x, _ = digits
    w = dlp_graph(x, k=10)
    assert w.shape == (len(x), len(x))
    assert abs(w - w.T).max() < 1e-6
    assert np.all(w.diagonal() == 0)
    # D^{-1/2} (A + A^T) D^{-1/2}: the largest eigenvalue of a normalized affinity is 1
    top = sp.linalg.eigsh(w.astype(np.float64), k=1, which="LA")[0][0]
    assert top == pytest.approx(1.0, abs=1e-6)


def test_propagation_solves_eq10(digits):
    x, y = digits
    w = dlp_graph(x, k=10)
    li = _balanced(y, 3)
    z = propagate(w, li, y[li], 10, alpha=0.9, tol=1e-12, maxiter=500)
    Y = label_matrix(li, y[li], len(x), 10)
    resid = z - 0.9 * (w @ z) - Y
    assert np.abs(resid).max() < 1e-8


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_propagation_matches_sklearn_labelspreading(digits, alpha):
    from sklearn.semi_supervised import LabelSpreading
    from visrep.methods.manifolds.knn_graph import knn
    x, y = digits
    k = 10
    w = dlp_graph(x, k=k)
    li = _balanced(y, 3)
    z = propagate(w, li, y[li], 10, alpha=alpha, tol=1e-12, maxiter=1000)
    ours = z.argmax(1)
    # the same unnormalized affinity A + A^T for scikit-learn, which normalizes it itself
    sims, ids = knn(x, k + 1)
    rows = np.repeat(np.arange(len(x)), k + 1)
    keep = ids.ravel() != rows
    a = sp.csr_matrix((np.maximum(sims.ravel(), 0)[keep] ** 3, (rows[keep], ids.ravel()[keep])), shape=(len(x),) * 2)
    dense = (a + a.T).toarray()
    lab = np.full(len(x), -1)
    lab[li] = y[li]
    ls = LabelSpreading(kernel=lambda p, q: dense, alpha=alpha, max_iter=400, tol=1e-10).fit(x, lab)
    theirs = ls.label_distributions_.argmax(1)
    assert np.array_equal(ours, theirs)
    assert (ours == y).mean() > 0.8        # and propagation from 30 labels is far above chance


def test_pseudo_labels_certainty_hand_computed():
    z = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-1.0, 3.0], [0.5, 0.5]])
    y, w = pseudo_labels(z, labelled_idx=np.array([4]), labels=np.array([0]))
    assert y.tolist() == [0, 0, 0, 1, 0]
    assert w[0] == pytest.approx(1.0)          # one-hot: zero entropy
    assert w[1] == pytest.approx(0.0)          # uniform: maximal entropy
    assert w[2] == 0.0                         # never reached
    assert w[3] == pytest.approx(1.0)          # negative entries clipped to 0
    assert w[4] == 1.0                         # labelled: weight 1, true label
    p = np.array([0.75, 0.25])
    _, w2 = pseudo_labels(np.array([[3.0, 1.0]]))
    assert w2[0] == pytest.approx(1 + (p * np.log(p)).sum() / np.log(2))


def test_class_weights_inverse_frequency():
    y = np.array([0, 0, 0, 1])
    z = class_weights(y, 2)
    assert z[1] / z[0] == pytest.approx(3.0)
    assert z[y].mean() == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(UserError):
        label_matrix(np.array([0, 1]), np.array([0]), 5, 2)
    with pytest.raises(UserError):
        label_matrix(np.array([0]), np.array([3]), 5, 2)
    with pytest.raises(UserError):
        dlp_graph(np.ones((1, 3), np.float32), k=5)


def _tiny_ssl(digits_images):
    from visrep.data import LabelledData
    x, y = digits_images
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, te = perm[:500], perm[500:800]
    names = [str(i) for i in range(10)]
    train = LabelledData("digits", y[tr], names, "train", x=x[tr])
    train.labelled_idx = _balanced(train.labels, 5)
    test = LabelledData("digits", y[te], names, "test", x=x[te])
    test.train = train
    return test


@pytest.fixture(scope="module")
def digit_images():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images * (255 / 16)).astype(np.uint8), d.target


def test_dlp_and_supervised_run_deterministically(digit_images):
    from visrep.protocols.classification import Classification

    from visrep.context import RunContext
    from visrep.registry import methods
    data = _tiny_ssl(digit_images)
    kw = {"width": 8, "blocks": 2, "batch": 32}
    out = {}
    for name, extra in (("supervised", {"epochs": 20}), ("dlp", {"sup_epochs": 20, "rounds": 3, "k": 10})):
        runs = [methods.create(name, **kw, **extra).run(data, RunContext(quiet=True, seed=1)) for _ in range(2)]
        assert runs[0]["scores"].shape == (len(data), 10)
        assert np.array_equal(runs[0]["scores"], runs[1]["scores"])     # seeded -> identical on CPU
        out[name] = Classification().evaluate(runs[0], data)["top1_error"]
    assert out["supervised"] < 0.75 and out["dlp"] < 0.75                 # 50 labels, 10 classes: chance error is 0.9


def test_dlp_needs_a_labelled_subset(digit_images):
    from visrep.context import RunContext
    from visrep.registry import methods
    data = _tiny_ssl(digit_images)
    data.train.labelled_idx = None
    with pytest.raises(UserError, match="labelled"):
        methods.create("dlp").run(data, RunContext(quiet=True))
