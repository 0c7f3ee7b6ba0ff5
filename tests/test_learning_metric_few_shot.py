"""ProtoNet, matching networks and imprinted weights: known answers and properties of the kernels."""
from __future__ import annotations

import math

import numpy as np
import pytest

from visrep.errors import UserError

torch = pytest.importorskip("torch")

from visrep.methods.learning.metric_few_shot import (
    class_means,
    episode_log_probs,
    imprint_weights,
    matching_probs,
    protonet_logits,
    sample_base_episode,
    train_episodic,
)


def _separable_episode(rng, n_way=5, k_shot=5, n_query=15, d=8):
    """Classes at 10 * e_c, items within radius 1: every query is nearer to its own class mean."""
    centres = 10.0 * np.eye(d)[:n_way]
    def draw(n):
        u = rng.normal(size=(n_way, n, d))
        u /= np.maximum(np.linalg.norm(u, axis=2, keepdims=True), 1e-9)
        return (centres[:, None] + u * rng.uniform(0, 1, (n_way, n, 1))).reshape(-1, d)
    return (torch.tensor(draw(k_shot)), np.repeat(np.arange(n_way), k_shot),
            torch.tensor(draw(n_query)), np.repeat(np.arange(n_way), n_query))


@pytest.mark.parametrize("k_shot", [1, 5])
def test_protonet_is_perfect_on_separable_episodes(k_shot):
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, ys, q, yq = _separable_episode(rng, k_shot=k_shot)
        lp = episode_log_probs("protonet", s, ys, q, 5)
        assert (lp.argmax(1).numpy() == yq).all()
        assert torch.allclose(lp.exp().sum(1), torch.ones(len(q), dtype=lp.dtype))


def test_protonet_prototypes_and_distances_known_answer():
    s = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    protos = class_means(s, np.array([0, 0, 1]), 2)
    assert protos.tolist() == [[1.0, 0.0], [0.0, 4.0]]                 # Eq. 1
    q = torch.tensor([[1.0, 1.0]])
    assert protonet_logits(q, protos).tolist() == [[-1.0, -10.0]]      # -||q - c||^2 (Eq. 2)
    lp = episode_log_probs("protonet", s, np.array([0, 0, 1]), q, 2)
    assert lp[0, 0].item() == pytest.approx(-math.log(1 + math.exp(-9)), abs=1e-6)


def test_matching_attention_known_answer():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, -3.0]])           # cosines to q: 1, 0, 0
    p = matching_probs(torch.tensor([[5.0, 0.0]]), s, np.array([0, 1, 1]), 2)
    e = math.e
    assert p[0].tolist() == pytest.approx([e / (e + 2), 2 / (e + 2)])   # Eq. 1-2: softmax of cosines
    rng = np.random.default_rng(1)
    s, ys, q, yq = _separable_episode(rng)
    lp = episode_log_probs("matching", s, ys, q, 5)
    assert torch.allclose(lp.exp().sum(1), torch.ones(len(q), dtype=lp.dtype))
    assert (lp.argmax(1).numpy() == yq).all()


def test_imprinted_weights_are_normalized_class_means():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(12, 6))
    lab = np.array([0, 1, 2] * 4)
    w = imprint_weights(torch.tensor(emb), lab, 3).numpy()
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    want = np.stack([u[lab == c].mean(0) for c in range(3)])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(w, want) and np.allclose(np.linalg.norm(w, axis=1), 1)
    scaled = emb * rng.uniform(0.1, 10, (12, 1))                        # each phi(x) is normalized first
    assert np.allclose(imprint_weights(torch.tensor(scaled), lab, 3).numpy(), want)


def test_base_episode_sampler_and_episodic_training_reduce_the_loss():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 30)
    si, ys, qi, yq = sample_base_episode(labels, 3, 2, 5, rng)
    assert len(si) == 6 and len(qi) == 15 and not set(si) & set(qi)
    assert all(len(set(labels[si[ys == c]]) | set(labels[qi[yq == c]])) == 1 for c in range(3))
    # too few images per base class for K + Q is a clear error, not numpy's sampling ValueError
    with pytest.raises(UserError, match=r"needs 3 base classes with >= 7 images each .* has 1 such classes"):
        sample_base_episode(np.array([0] * 9 + [1] * 4 + [2] * 4), 3, 2, 5, rng)
    # a linear embedding learns separable 2-d clusters: the episodic loss goes down
    centres = rng.normal(size=(4, 2)) * 3
    x = torch.tensor(centres[labels] + rng.normal(size=(120, 2)) * 0.3, dtype=torch.float32)
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 4)
    for kind in ("protonet", "matching"):
        losses = train_episodic(lin, list(lin.parameters()), x, labels, kind, 30, 3, 1, 5, lr=3e-2, seed=0)
        assert np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.fixture(scope="module")
def fashion_episodes():
    from pathlib import Path

    from visrep.context import RunContext
    from visrep.registry import datasets
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is absent (Debian package dataset-fashion-mnist not installed)")
    ctx = RunContext("/usr/share/datasets", quiet=True)
    return datasets.create("fashion-mnist-fewshot", base_per_class=40, k_shot=1, n_episodes=4).load(ctx), ctx


@pytest.mark.parametrize("name, params", [
    ("protonet", {"episodes": 3, "width": 4, "blocks": 2}),
    ("matching-net", {"episodes": 3, "width": 4, "blocks": 2}),
    ("imprinting", {"epochs": 1, "width": 4, "blocks": 2}),
])
def test_few_shot_plugins_output_the_episode_contract(fashion_episodes, name, params):
    from visrep.registry import methods, protocols
    data, ctx = fashion_episodes
    out = methods.create(name, **params).run(data, ctx)
    assert out["scores"].shape == (4, 75, 5) and np.isfinite(out["scores"]).all()
    m, per = protocols.create("few-shot").score(out, data)
    assert 0 <= m["accuracy"] <= 1 and per["accuracy"].shape == (4,)
    if name != "imprinting":
        assert out["stats"]["train_way"] == 5 and out["stats"]["train_shot"] == 1


def test_imprinting_ranks_like_the_cosine_prototypes_of_the_gap_row():
    """Cosine to the imprinted weight = cosine to the mean of unit features: the GAP row's classifier."""
    from visrep.methods.learning.few_shot import prototype_scores
    rng = np.random.default_rng(4)
    s, q = rng.normal(size=(10, 7)), rng.normal(size=(30, 7))
    ys = np.repeat(np.arange(5), 2)
    w = imprint_weights(torch.tensor(s), ys, 5).numpy()
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert np.allclose(qn @ w.T, prototype_scores(s, ys, q, 5))
