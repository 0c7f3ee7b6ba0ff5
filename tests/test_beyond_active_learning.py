"""Deep active learning (Siméoni et al. ICPR 2020): acquisition known answers and the plugin end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from visrep.methods.beyond.active_learning import (
    acquire_entropy,
    acquire_jlp,
    acquire_random,
    k_center_greedy,
    prediction_entropy,
)

from visrep.errors import UserError


# ---------------------------------------------------------------- acquisition functions (known answers)
def test_prediction_entropy_known_answers():
    p = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(prediction_entropy(p), [np.log(4), 0.0, np.log(2)], atol=1e-12)


def test_entropy_picks_the_most_uncertain_unlabelled_items():
    p = np.array([[0.5, 0.5],      # most uncertain, but labelled: never picked
                  [0.9, 0.1],
                  [0.6, 0.4],      # most uncertain unlabelled
                  [0.99, 0.01],
                  [0.7, 0.3]])
    assert acquire_entropy(p, np.array([1, 2, 3, 4]), 2).tolist() == [2, 4]
    assert acquire_entropy(p, np.array([1, 2, 3, 4]), 1).tolist() == [2]
    # ties: smaller index first
    q = np.full((4, 3), 1 / 3)
    assert acquire_entropy(q, np.array([3, 1, 2]), 2).tolist() == [1, 2]


def test_random_is_seeded_unique_and_within_the_unlabelled_set():
    unl = np.arange(10, 60)
    a = acquire_random(unl, 20, np.random.default_rng(3))
    b = acquire_random(unl, 20, np.random.default_rng(3))
    c = acquire_random(unl, 20, np.random.default_rng(4))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 20 and np.isin(a, unl).all()
    with pytest.raises(UserError, match="exceeds"):
        acquire_random(unl, 51, np.random.default_rng(0))


def test_core_set_picks_the_farthest_point_then_the_next_farthest():
    v = np.array([[0.0], [1.0], [5.0], [10.0], [2.0]])
    # labelled {0}: distances 1, 5, 10, 2 -> 10 first; then min distances to {0, 10}: 1, 5, -, 2 -> 5
    assert k_center_greedy(v, np.array([0]), np.array([1, 2, 3, 4]), 2).tolist() == [3, 2]
    # 2-D: the corner farthest from both labelled points
    w = np.array([[0, 0], [1, 0], [0, 1], [3, 3], [1, 1]], dtype=float)
    assert k_center_greedy(w, np.array([0, 1]), np.array([2, 3, 4]), 1).tolist() == [3]
    # no labelled item yet: farthest from the mean of the pool first
    assert k_center_greedy(v, np.zeros(0, np.int64), np.arange(5), 1).tolist() == [3]


def test_core_set_never_picks_twice_even_with_duplicates():
    v = np.array([[0.0], [4.0], [4.0], [4.0]])
    got = k_center_greedy(v, np.array([0]), np.array([1, 2, 3]), 3)
    assert sorted(got.tolist()) == [1, 2, 3]


def _path_graph(n):
    import scipy.sparse as sp
    from visrep.methods.manifolds.knn_graph import normalize
    i = np.arange(n - 1)
    a = sp.csr_matrix((np.ones(n - 1, np.float32), (i, i + 1)), shape=(n, n))
    wn, _ = normalize((a + a.T).tocsr())
    return wn


def test_jlp_picks_the_item_least_reached_by_diffusion_from_the_labelled_set():
    # path 0 - 1 - 2 - 3 - 4 - 5 - 6, labelled end 0: diffusion decays along the path, the far end is least reached
    wn = _path_graph(7)
    assert acquire_jlp(wn, np.array([0]), np.arange(1, 7), 1).tolist() == [6]
    # then, with 0 and 6 both sources, the middle of the path is least reached
    assert acquire_jlp(wn, np.array([0]), np.arange(1, 7), 2).tolist() == [6, 3]


def test_jlp_reaches_other_components_first():
    import scipy.sparse as sp
    from visrep.methods.manifolds.knn_graph import normalize
    # clique {0, 1, 2, 3} holds the labelled item 0; the pair {4, 5} is another component (z = 0 there)
    rows, cols = zip(*[(i, j) for i in range(4) for j in range(4) if i != j], strict=True)
    a = sp.csr_matrix((np.ones(len(rows) + 2, np.float32), (list(rows) + [4, 5], list(cols) + [5, 4])), shape=(6, 6))
    wn, _ = normalize(a)
    got = acquire_jlp(wn, np.array([0]), np.arange(1, 6), 2)
    assert got[0] == 4 and len(set(got.tolist())) == 2 and 0 not in got


# ---------------------------------------------------------------- the plugin end to end (real Fashion-MNIST, tiny)
FASHION = Path("/usr/share/datasets")


@pytest.fixture(scope="module")
def fashion():
    from visrep.context import RunContext
    from visrep.registry import datasets
    if not (FASHION / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist, /usr/share/datasets) is absent")
    ctx = RunContext(FASHION, quiet=True)
    d = datasets.create("fashion-mnist", labelled=10, train_size=200).load(ctx)
    test = d.subset(np.arange(200))                 # score 200 of the 10,000 test items: a fast check
    test.train = d.train
    return test, ctx


TINY = {"budget": 5, "cycles": 3, "epochs": 2, "lp_epochs": 1, "width": 4, "blocks": 2, "k": 10, "batch": 20,
        "labelled_per_batch": 10}


@pytest.mark.parametrize("strategy", ["random", "entropy", "coreset", "jlp"])
def test_plugin_grows_the_labelled_set_by_budget_without_repeats(fashion, strategy):
    from visrep.registry import methods
    data, ctx = fashion
    out = methods.create("active-learning", strategy=strategy, **TINY).run(data, ctx)
    st = out["stats"]
    assert out["scores"].shape == (200, 10) and np.isfinite(out["scores"]).all()
    assert st["n_labelled_per_cycle"] == [10, 15, 20] and st["n_labelled"] == 20
    li = np.asarray(st["labelled_idx"])
    assert len(set(li.tolist())) == 20                                    # never acquired twice
    assert li[:10].tolist() == data.train.labelled_idx.tolist()           # the initial balanced set comes first
    assert ((li >= 0) & (li < len(data.train))).all()
    assert all(sum(c) == 5 for c in st["acquired_class_counts"])
    assert all(a is not None and 0 <= a <= 1 for a in st["pseudo_label_accuracy_per_cycle"])


def test_plugin_is_deterministic_and_supervised_mode_has_no_pseudo_labels(fashion):
    from visrep.registry import methods
    data, ctx = fashion
    a = methods.create("active-learning", strategy="random", semi_supervised=False, **TINY).run(data, ctx)
    b = methods.create("active-learning", strategy="random", semi_supervised=False, **TINY).run(data, ctx)
    assert a["stats"]["labelled_idx"] == b["stats"]["labelled_idx"]
    np.testing.assert_array_equal(a["scores"], b["scores"])
    assert a["stats"]["pseudo_label_accuracy_per_cycle"] == [None, None, None]


def test_plugin_rejects_a_budget_beyond_the_pool(fashion):
    from visrep.registry import methods
    data, ctx = fashion
    with pytest.raises(UserError, match="budget"):
        methods.create("active-learning", **{**TINY, "budget": 100}).run(data, ctx)


def test_train_cycle_pseudo_labels_follow_the_classes_on_separable_images():
    """Two classes of 8x8 images (bright top half vs bright bottom half, plus noise), 2 labels each:
    the propagated pseudo-labels of the 76 unlabelled items must be (almost) all right, and the
    labelled items keep their true labels -- an index mix-up between pool and labels would give ~50 %."""
    torch = pytest.importorskip("torch")
    from visrep.methods.beyond.active_learning import train_cycle
    from visrep.methods.learning.convnets import make_convnet
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = rng.uniform(0, 0.2, (80, 1, 8, 8)).astype(np.float32)
    x[y == 0, :, :4] += 0.8
    x[y == 1, :, 4:] += 0.8
    perm = rng.permutation(80)
    x, y = x[perm], y[perm]
    labelled = np.concatenate([np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)[:2]])
    torch.manual_seed(0)
    model = make_convnet(1, 4, 2, 2)
    out = train_cycle(model, torch.from_numpy(x), labelled, y[labelled], 2, epochs=20, lp_epochs=2, k=10,
                      batch=20, labelled_per_batch=4)
    yp = out["pseudo_labels"]
    assert yp.shape == (80,) and (yp[labelled] == y[labelled]).all()
    unl = np.setdiff1d(np.arange(80), labelled)
    assert np.mean(yp[unl] == y[unl]) >= 0.95


def test_ceal_keeps_the_confident_unlabelled_items_with_their_argmax():
    from visrep.methods.beyond.active_learning import ceal_pseudo_labels
    p = np.array([[0.999, 0.001], [0.5, 0.5], [0.002, 0.998], [0.9, 0.1], [1.0, 0.0]])
    # normalized entropies: 0.011, 1, 0.021, 0.469, 0 -> below 0.1: items 0, 2, 4 (item 4 is labelled: excluded)
    idx, y = ceal_pseudo_labels(p, np.array([0, 1, 2, 3]), threshold=0.1, decay=0.0, cycle=0)
    assert idx.tolist() == [0, 2] and y.tolist() == [0, 1]
    # the threshold decays with the cycle: 0.1 - 0.005 * 18 = 0.01 keeps none of them but a one-hot row
    idx, _ = ceal_pseudo_labels(p, np.array([0, 1, 2, 3, 4]), threshold=0.1, decay=0.005, cycle=18)
    assert idx.tolist() == [4]


def test_plugin_with_ceal_runs_and_refuses_ceal_with_label_propagation(fashion):
    from visrep.registry import methods
    data, ctx = fashion
    out = methods.create("active-learning", strategy="entropy", semi_supervised=False, ceal=True,
                         ceal_threshold=0.9, **TINY).run(data, ctx)
    assert out["stats"]["n_labelled_per_cycle"] == [10, 15, 20]
    assert len(out["stats"]["ceal_pseudo_labels_per_cycle"]) == 2
    with pytest.raises(UserError, match="ceal"):
        methods.create("active-learning", ceal=True, **TINY).run(data, ctx)
