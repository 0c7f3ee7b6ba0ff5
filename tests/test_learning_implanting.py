"""Implanting (Lifchitz, Avrithis, Picard & Bursuc, CVPR 2019, Sec. 3.3): new filters alongside the
last `implant_layers` conv layers, trained on the support set while the old filters stay frozen."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.learning.few_shot import (
    frozen_activations,
    implant_episode,
    implant_episodes,
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


def reference_implant_episode(acts, pools, sup, sup_y, qry, n_way, width, lr, steps, seed, scale, init_std=1e-2):
    """The one-episode implementation before batching (kept here as the reference): -> (scores, implants)."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    sup_t = torch.as_tensor(np.asarray(sup))
    y = torch.as_tensor(np.asarray(sup_y), dtype=torch.long)
    implants = make_implants(acts, width, init_std)

    def feats(idx):
        return implanted_features(acts, pools, implants, idx)

    with torch.no_grad():
        g = F.normalize(feats(sup_t).mean(dim=(2, 3)), dim=1)
        w0 = torch.stack([g[y == c].mean(0) for c in range(n_way)])
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD(list(implants.parameters()) + [w], lr=lr, momentum=0.9)
    for _ in range(steps):
        f = F.normalize(feats(sup_t), dim=1)
        s = scale * torch.einsum("kchw,nc->knhw", f, F.normalize(w, dim=1))
        loss = F.cross_entropy(s, y[:, None, None].expand(-1, s.shape[2], s.shape[3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fs = feats(sup_t).mean(dim=(2, 3)).numpy()
        fq = feats(torch.as_tensor(np.asarray(qry))).mean(dim=(2, 3)).numpy()
    return prototype_scores(fs, np.asarray(sup_y), fq, n_way), implants


def random_episodes(n_items, n_ep, n_way=3, k_shot=2, n_query=4, seed=0):
    """(sups (E, K), labels (E, K), queries (E, q)): disjoint random draws from n_items pool items."""
    rng = np.random.default_rng(seed)
    perm = np.stack([rng.permutation(n_items)[:n_way * (k_shot + n_query)] for _ in range(n_ep)])
    labels = np.stack([rng.permutation(np.repeat(np.arange(n_way), k_shot)) for _ in range(n_ep)])
    return perm[:, :n_way * k_shot], labels, perm[:, n_way * k_shot:]


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_block_of_episodes_equals_each_episode_alone(net_and_images, n_layers):
    """implant_episodes (blocks of 3, then a block of E = 1) == the old per-episode training, episode by
    episode: scores and trained implant weights, with different support sets, labels and seeds."""
    m, x = net_and_images
    acts, pools = frozen_activations(m, x, n_layers)
    sups, sys_, qrys = random_episodes(len(x), 4, seed=n_layers)
    seeds = [7, 3, 11, 5]
    kw = {"n_way": 3, "width": 4, "lr": 0.05, "steps": 15, "scale": 10.0}
    s, imps = implant_episodes(acts, pools, sups, sys_, qrys, seeds=seeds, block=3, return_implants=True, **kw)
    assert s.shape == (4, 12, 3) and len(imps) == 4
    for e in range(4):
        ref, ref_imp = reference_implant_episode(acts, pools, sups[e], sys_[e], qrys[e], seed=seeds[e], **kw)
        assert np.abs(s[e] - ref).max() < 1e-5
        for a, b in zip(imps[e].parameters(), ref_imp.parameters()):
            assert a.shape == b.shape and (a - b).abs().max() < 1e-5
    one = implant_episode(acts, pools, sups[1], sys_[1], qrys[1], seed=seeds[1], **kw)    # E = 1
    assert np.abs(one - s[1]).max() < 1e-5
    whole = implant_episodes(acts, pools, sups, sys_, qrys, seeds=seeds, block=4, **kw)  # block size is free
    assert np.abs(whole - s).max() < 1e-5
    assert not np.allclose(s[0], s[1])                       # the episodes differ
    with pytest.raises(ValueError):
        implant_episodes(acts, pools, sups, sys_, qrys, seeds=seeds[:3], **kw)


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


def test_dense_classification_blocks_do_not_change_episode_scores(digit_classes):
    """The method trains episodes in blocks of 25: 28 episodes (blocks of 25 + 3) give the first 4
    episodes the scores that a run on those 4 alone (one block) gives."""
    from dataclasses import replace

    from visrep.datasets.episodes import sample_episodes
    base, novel = digit_classes
    ep = sample_episodes(novel, 5, 2, 3, 28, seed=1)
    ep.base = base
    first = replace(ep, **{k: getattr(ep, k)[:4] for k in ("support", "query", "support_labels", "query_labels",
                                                          "classes")})
    kw = {"width": 4, "blocks": 2, "epochs": 1, "implanting": True, "implant_steps": 3, "implant_width": 3}
    r = methods.create("dense-classification", **kw).run(ep, RunContext(quiet=True))["scores"]
    r4 = methods.create("dense-classification", **kw).run(first, RunContext(quiet=True))["scores"]
    assert r.shape == (28, 15, 5) and r4.shape == (4, 15, 5)
    assert np.abs(r[:4] - r4).max() < 1e-5
