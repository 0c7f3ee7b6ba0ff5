"""Implanting (Lifchitz, Avrithis, Picard & Bursuc, CVPR 2019, Sec. 3.3): new filters alongside the
last `implant_layers` conv layers, trained on the support set while the old filters stay frozen."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.few_shot import (
    frozen_activations,
    implant_episode,
    implanted_features,
    make_implants,
    prototype_scores,
    trunk_blocks,
)

from visrep.context import RunContext
from visrep.errors import UserError
from visrep.registry import methods


@pytest.fixture(scope="module")
def net_and_images():
    import torch
    from visrep.methods.learning.convnets import make_convnet
    torch.manual_seed(0)
    m = make_convnet(1, 6, 3, n_classes=4, cosine=True).eval()
    return m, torch.rand(30, 1, 16, 16)


def test_activations_are_the_frozen_network(net_and_images):
    import torch
    m, x = net_and_images
    assert len(trunk_blocks(m)) == 3
    for n_layers in (1, 2, 3):
        acts, pools = frozen_activations(m, x, n_layers, batch=7)
        assert len(acts) == n_layers + 1 and len(pools) == n_layers
        with torch.no_grad():
            assert torch.allclose(acts[-1], m.feature_map(x), atol=1e-6)
        assert (pools[-1] is None) and all(p is not None for p in pools[:-1])   # no pooling after the last block
    with pytest.raises(ValueError):
        frozen_activations(m, x, 4)


def test_zero_implants_equal_the_original_network(net_and_images):
    import torch
    m, x = net_and_images
    acts, pools = frozen_activations(m, x, 2)
    imp = make_implants(acts, 5, init_std=0)
    idx = torch.arange(len(x))
    f = implanted_features(acts, pools, imp, idx)
    assert f.shape[1] == acts[-1].shape[1] + 5 and torch.all(f[:, -5:] == 0)
    assert torch.equal(f[:, :-5], acts[-1])
    # ... so the episode's scores before any step are the original network's prototype scores
    sup, sy, q = np.arange(10), np.repeat(np.arange(5), 2), np.arange(10, 30)
    with torch.no_grad():
        g = m.embed(x).numpy()
    ref = prototype_scores(g[sup], sy, g[q], 5)
    s0 = implant_episode(acts, pools, sup, sy, q, 5, 5, lr=0.1, steps=0, seed=0, scale=10.0, init_std=0)
    assert np.allclose(s0, ref, atol=1e-5)


def test_implants_train_and_old_filters_stay_frozen(net_and_images):
    import torch
    m, x = net_and_images
    before = {k: v.clone() for k, v in m.state_dict().items()}
    acts, pools = frozen_activations(m, x, 2)
    old = [a.clone() for a in acts]
    sup, sy, q = np.arange(10), np.repeat(np.arange(5), 2), np.arange(10, 30)
    s0, i0 = implant_episode(acts, pools, sup, sy, q, 5, 4, lr=0.05, steps=0, seed=1, scale=10.0,
                             return_implants=True)
    s1, i1 = implant_episode(acts, pools, sup, sy, q, 5, 4, lr=0.05, steps=20, seed=1, scale=10.0,
                             return_implants=True)
    s2 = implant_episode(acts, pools, sup, sy, q, 5, 4, lr=0.05, steps=20, seed=1, scale=10.0)
    assert np.array_equal(s1, s2)                                  # seeded
    assert not np.array_equal(s1, s0)
    for a, b in zip(i0.parameters(), i1.parameters()):              # every implant tensor moved from its init
        assert (a - b).abs().max() > 1e-6
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # old filters untouched
    assert all(torch.equal(a, b) for a, b in zip(old, acts))       # old activations untouched


def test_implants_of_layer_two_see_the_implants_of_layer_one(net_and_images):
    m, x = net_and_images
    acts, _ = frozen_activations(m, x, 3)
    imp = make_implants(acts, 4)
    assert [c.in_channels for c in imp] == [acts[0].shape[1], acts[1].shape[1] + 4, acts[2].shape[1] + 4]
    assert all(c.out_channels == 4 and c.kernel_size == (3, 3) for c in imp)


@pytest.fixture(scope="module")
def digit_episodes(digit_classes):
    from visrep.datasets.episodes import sample_episodes
    base, novel = digit_classes
    ep = sample_episodes(novel, 5, 5, 10, 4, seed=0)
    ep.base = base
    return ep


def test_tiny_dense_classification_with_implanting(digit_episodes):
    kw = {"width": 4, "blocks": 2, "epochs": 1, "implanting": True, "implant_steps": 3, "implant_width": 3}
    for layers in (1, 2):
        r1 = methods.create("dense-classification", implant_layers=layers, **kw).run(digit_episodes,
                                                                                    RunContext(quiet=True))
        r2 = methods.create("dense-classification", implant_layers=layers, **kw).run(digit_episodes,
                                                                                    RunContext(quiet=True))
        assert r1["scores"].shape == (4, 50, 5) and np.array_equal(r1["scores"], r2["scores"])
    assert methods.create("dense-classification").cfg["implant_layers"] == 2
    with pytest.raises(UserError, match="implant_layers"):
        methods.create("dense-classification", implant_layers=3, **kw).run(digit_episodes, RunContext(quiet=True))
