"""Few-shot: prototypes, the dense classification loss, implanting, and the episode outputs."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.few_shot import dense_loss, prototype_scores

from visrep.errors import UserError


def test_prototype_scores_hand_computed():
    sup = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    s = prototype_scores(sup, np.array([0, 1, 1]), np.array([[1.0, 1.0]]), 2)
    assert s.shape == (1, 2)
    assert s[0] == pytest.approx([2 ** -0.5, 2 ** -0.5])
    s2 = prototype_scores(sup, np.array([0, 1, 1]), np.array([[3.0, 1.0]]), 2)
    assert s2[0].argmax() == 0


def test_dense_loss_equals_gap_loss_on_constant_maps():
    import torch
    import torch.nn.functional as F
    from visrep.methods.learning.convnets import make_convnet
    torch.manual_seed(0)
    net = make_convnet(in_ch=1, width=4, blocks=2, n_classes=3, cosine=True)
    f = torch.randn(5, net.dim, 1, 1).expand(-1, -1, 3, 3)
    net.feature_map = lambda x: f
    y = torch.tensor([0, 1, 2, 0, 1])
    dense = dense_loss(net, None, y)
    gap = F.cross_entropy(net.classify(f.mean(dim=(2, 3))), y, reduction="none")
    assert torch.allclose(dense, gap, atol=1e-6)
    # on a non-constant map the dense loss is the mean of per-position losses
    g = torch.randn(5, net.dim, 2, 2)
    net.feature_map = lambda x: g
    per = torch.stack([F.cross_entropy(net.classify(g[:, :, i, j]), y, reduction="none")
                       for i in range(2) for j in range(2)], 1).mean(1)
    assert torch.allclose(dense_loss(net, None, y), per, atol=1e-6)


@pytest.fixture(scope="module")
def digit_episodes(digit_classes):
    from visrep.datasets.episodes import sample_episodes
    base, novel = digit_classes
    ep = sample_episodes(novel, 5, 5, 10, 20, seed=0)
    ep.base = base
    return ep


@pytest.mark.parametrize("name,extra", [("cosine-classifier", {}), ("dense-classification", {}),
                                        ("dense-classification", {"implanting": True, "implant_steps": 5})])
def test_few_shot_methods(digit_episodes, name, extra):
    from visrep.protocols.few_shot import FewShot

    from visrep.context import RunContext
    from visrep.registry import methods
    m = methods.create(name, width=8, blocks=2, epochs=3, **extra)
    out = m.run(digit_episodes, RunContext(quiet=True, seed=0))
    assert out["scores"].shape == (20, 50, 5)
    acc = FewShot().evaluate(out, digit_episodes)["accuracy"]
    assert acc > 0.5                    # unseen digits, 5-way 5-shot: chance is 0.2
    again = methods.create(name, width=8, blocks=2, epochs=3, **extra).run(digit_episodes, RunContext(quiet=True, seed=0))
    assert np.array_equal(out["scores"], again["scores"])


def test_few_shot_needs_base_classes(digit_episodes):
    import copy

    from visrep.context import RunContext
    from visrep.registry import methods
    ep = copy.copy(digit_episodes)
    ep.base = None
    with pytest.raises(UserError, match="base"):
        methods.create("dense-classification").run(ep, RunContext(quiet=True))
