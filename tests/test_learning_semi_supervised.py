"""Mean teacher, pseudo-labels and MT + DLP: known answers of the kernels, property tests of the loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import itertools

from visrep.methods.learning.semi_supervised import (
    ema_decay_at,
    ema_update,
    mt_loss,
    perturb,
    pseudo_label_targets,
    pseudo_label_weight,
    sigmoid_rampup,
    softmax_mse,
    train_two_stream,
    two_stream_batches,
)


def _net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


def test_ema_update_equals_its_formula():
    t, s = _net(0), _net(1)
    t0 = [p.detach().clone() for p in t.parameters()]
    ema_update(t, s, 0.9)
    for p, p0, q in zip(t.parameters(), t0, s.parameters()):
        assert torch.allclose(p, 0.9 * p0 + 0.1 * q)
    assert ema_decay_at(0, 0.99) == 0.0 and ema_decay_at(1, 0.99) == 0.5 and ema_decay_at(10 ** 6, 0.99) == 0.99


def test_training_loop_teacher_is_the_ema_of_the_student_iterates():
    """Replay the loop: the teacher after n steps is the alpha_t-recursion over the student's iterates."""
    x = torch.rand(40, 1, 4, 4)
    y = torch.randint(0, 3, (40,))
    student, teacher = _net(0), _net(5)
    t_init = [p.detach().clone() for p in teacher.parameters()]
    iterates = []

    def loss(s, t, idx, ep):
        iterates.append([p.detach().clone() for p in student.parameters()])   # params before this step
        return torch.nn.functional.cross_entropy(s, y[idx]) + softmax_mse(s, t).mean()

    _, steps = train_two_stream(student, x, np.arange(10), np.arange(10, 40), 2, loss, batch=10,
                                labelled_per_batch=4, teacher=teacher, ema_decay=0.7, ema_decay_after=0.9,
                                rampup_epochs=1.0, max_shift=1, sigma=0.1, seed=3)
    iterates = iterates[1:] + [[p.detach().clone() for p in student.parameters()]]   # params after each step
    assert steps == len(iterates) == 10
    want = t_init
    for k, params in enumerate(iterates, start=1):
        t_frac = (k - 1) // 5 + ((k - 1) % 5) / 5            # fractional epoch of step k (5 batches per epoch)
        a = ema_decay_at(k, 0.7 if t_frac < 1.0 else 0.9)
        want = [a * w + (1 - a) * p for w, p in zip(want, params)]
    for p, w in zip(teacher.parameters(), want):
        assert torch.allclose(p, w, atol=1e-6)


def test_sigmoid_rampup_and_pseudo_label_schedule():
    assert sigmoid_rampup(0, 5) == pytest.approx(math.exp(-5)) and sigmoid_rampup(5, 5) == 1.0
    assert sigmoid_rampup(2.5, 5) == pytest.approx(math.exp(-5 * 0.25)) and sigmoid_rampup(9, 5) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
    v = [sigmoid_rampup(t, 5) for t in np.linspace(0, 5, 11)]
    assert all(a < b for a, b in itertools.pairwise(v))
    # Lee 2013, Eq. 16 with his values alpha_f = 3, T1 = 100, T2 = 600
    assert pseudo_label_weight(99.9, 100, 600, 3) == 0.0 and pseudo_label_weight(100, 100, 600, 3) == 0.0
    assert pseudo_label_weight(350, 100, 600, 3) == pytest.approx(1.5)
    assert pseudo_label_weight(600, 100, 600, 3) == 3.0 and pseudo_label_weight(1000, 100, 600, 3) == 3.0
    with pytest.raises(Exception, match="T2 > T1"):
        pseudo_label_weight(1, 5, 5, 3)


def test_softmax_mse_known_answer_and_no_gradient_to_the_teacher():
    s = torch.zeros(1, 2, requires_grad=True)                   # p = (1/2, 1/2)
    t = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)   # p = (3/4, 1/4)
    j = softmax_mse(s, t)
    assert j.item() == pytest.approx((0.25 ** 2 + 0.25 ** 2) / 2)
    j.sum().backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0
    assert softmax_mse(torch.ones(3, 4), torch.ones(3, 4) * 7).abs().max() == 0


def test_pseudo_label_targets_argmax_and_threshold_semantics():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.85, 0.05]]))
    y, keep = pseudo_label_targets(logits)
    assert y.tolist() == [0, 2, 1] and keep.all()                # threshold 0 (Lee): every item
    _, keep = pseudo_label_targets(logits, 0.7)
    assert keep.tolist() == [True, False, True]                  # >= threshold is kept
    _, keep = pseudo_label_targets(logits, 0.9)
    assert not keep.any()


def test_perturb_translates_within_the_range_and_adds_noise():
    x = torch.zeros(6, 1, 12, 12)
    x[:, 0, 4:8, 5:7] = torch.arange(1, 9, dtype=torch.float32).reshape(4, 2)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(perturb(x, 0, 0.0, g), x)
    out = perturb(x, 2, 0.0, g)
    for i in range(6):
        ok = [torch.equal(out[i], torch.roll(x[i], (dy, dx), dims=(1, 2))) for dy in range(-2, 3)
              for dx in range(-2, 3)]
        assert sum(ok) == 1                                       # exactly one shift in [-2, 2]^2
    noisy = perturb(x, 0, 0.15, g)
    assert 0.12 < float((noisy - x).std()) < 0.18


def test_two_stream_batches_cover_unlabelled_once_with_fixed_labelled_share():
    g = torch.Generator().manual_seed(1)
    lab, unl = np.arange(7), np.arange(7, 57)
    b = two_stream_batches(lab, unl, 10, 4, g)
    assert len(b) == 9
    u = np.concatenate([bb.numpy()[4:] for bb in b])
    assert sorted(u.tolist()) == unl.tolist()
    assert all(np.isin(bb.numpy()[:4], lab).all() for bb in b)


# ---------------------------------------------------------------- plugins end to end on real MNIST (tiny)
@pytest.fixture(scope="module")
def mnist():
    from visrep.context import RunContext, shared_data_dir
    from visrep.registry import datasets
    shared = shared_data_dir()
    if shared is None or not (shared / "classification" / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST test set (../shared/data/classification/mnist) is absent")
    ctx = RunContext(shared / "classification", quiet=True)
    d = datasets.create("mnist", labelled=50, train_from_test=400).load(ctx)
    test = d.subset(np.arange(300))                  # score 300 of the 9,600 test items: a fast check
    test.train = d.train
    return test, ctx


@pytest.mark.parametrize("name, params", [
    ("mean-teacher", {"epochs": 1, "width": 4, "blocks": 2}),
    ("pseudo-label", {"epochs": 2, "t1": 0.0, "t2": 1.0, "width": 4, "blocks": 2}),
    ("mt-dlp", {"mt_epochs": 1, "rounds": 1, "k": 10, "width": 4, "blocks": 2}),
])
def test_plugins_run_and_output_the_classification_contract(mnist, name, params):
    from visrep.registry import methods
    data, ctx = mnist
    out = methods.create(name, **params).run(data, ctx)
    assert out["scores"].shape == (300, 10) and np.isfinite(out["scores"]).all()
    assert out["stats"]["n_labelled"] == 50


def test_mt_loss_known_answer():
    """sum over labelled of w_i CE / B + w_max * rampup(t) * sum_i J_i / B, on a batch of 3 (2 labelled)."""
    s = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    y = torch.tensor([0, -1, 1])
    w = torch.tensor([0.5, 1.0, 2.0])
    idx = torch.tensor([0, 1, 2])
    got = mt_loss(y, y >= 0, 10.0, 4.0, w)(s, t, idx, 2.0)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce2 = math.log(2.0)
    j = softmax_mse(s, t).sum().item()
    want = (0.5 * ce0 + 2.0 * ce2) / 3 + 10.0 * math.exp(-5 * 0.25) * j / 3
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_supervised_network_is_trained_once_and_is_dlp_step_one(mnist, tmp_path):
    """`supervised` and step 1 of `dlp` (same seed, labelled subset and settings) share one training through
    the cache: DLP after `supervised` is a cache hit and gives exactly the scores of DLP on an empty cache;
    a different labelled subset is another entry."""
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.registry import methods
    data, base_ctx = mnist
    net = {"width": 4, "blocks": 2}

    def ctx_at(folder):
        ctx = RunContext(base_ctx.data_root, cache=Cache(tmp_path / folder), quiet=True)
        ctx.loader_version = base_ctx.loader_version
        return ctx

    shared = ctx_at("shared")
    sup = methods.create("supervised", epochs=3, **net).run(data, shared)
    hits = shared.cache.hits
    dlp_shared = methods.create("dlp", sup_epochs=3, rounds=1, k=10, **net).run(data, shared)
    assert shared.cache.hits == hits + 1
    dlp_alone = methods.create("dlp", sup_epochs=3, rounds=1, k=10, **net).run(data, ctx_at("alone"))
    np.testing.assert_array_equal(dlp_shared["scores"], dlp_alone["scores"])
    assert not np.array_equal(sup["scores"], dlp_alone["scores"])        # the rounds did train further
    # another labelled subset: a miss, not the stored network
    other = data.subset(np.arange(300))
    other.train = data.train.subset(np.arange(len(data.train.labels))[::-1].copy())
    other.train.labelled_idx = np.sort(len(data.train.labels) - 1 - np.asarray(data.train.labelled_idx))
    misses = shared.cache.misses
    methods.create("supervised", epochs=3, **net).run(other, shared)
    assert shared.cache.misses > misses


def test_mean_teacher_row_is_mt_dlp_stage_one(mnist, tmp_path):
    """`mean-teacher` and stage 1 of `mt-dlp` with the same settings (the DLP code's train_stage1 with isMT)
    are one training through the cache: MT+DLP after MT is a hit with exactly the scores of MT+DLP alone;
    another EMA decay is another training (a miss)."""
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.registry import methods
    data, base_ctx = mnist
    common = {"width": 4, "blocks": 2, "ema_decay": 0.97, "ema_decay_after": 0.97}

    def ctx_at(folder):
        ctx = RunContext(base_ctx.data_root, cache=Cache(tmp_path / folder), quiet=True)
        ctx.loader_version = base_ctx.loader_version
        return ctx

    shared = ctx_at("shared")
    methods.create("mean-teacher", epochs=1, **common).run(data, shared)
    hits = shared.cache.hits
    both = methods.create("mt-dlp", mt_epochs=1, rounds=1, k=10, **common).run(data, shared)
    assert shared.cache.hits == hits + 1
    alone = methods.create("mt-dlp", mt_epochs=1, rounds=1, k=10, **common).run(data, ctx_at("alone"))
    np.testing.assert_array_equal(both["scores"], alone["scores"])
    assert both["stats"] == alone["stats"]
    misses = shared.cache.misses
    methods.create("mean-teacher", epochs=1, **{**common, "ema_decay_after": 0.99}).run(data, shared)
    assert shared.cache.misses > misses


def test_perturb_flip_mirrors_about_half_of_the_images_and_nothing_else():
    x = torch.rand(400, 3, 5, 7)
    g = torch.Generator().manual_seed(3)
    out = perturb(x, 0, 0.0, g, flip=True)
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(400)])
    mirrored = torch.tensor([torch.equal(out[i], x[i].flip(2)) for i in range(400)])
    assert bool((same ^ mirrored).all())                          # each image exactly one of the two
    assert 160 < int(mirrored.sum()) < 240                         # p = 1/2 (binomial 400: +-4 sigma)


def test_papers_networks_shapes_unit_features_and_parameters():
    """DLP's networks (LP-DeepSSL architectures.py): C13 (128-d, weight-normalized) on 32x32, ResNet-18 (512-d)
    on 84x84; features L2-normalized before the classifier (isL2); parameter counts of the published layouts."""
    from visrep.methods.learning.convnets import make_classifier
    torch.manual_seed(0)
    c13 = make_classifier("cnn13", 3, 10).eval()
    f = c13.embed(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 128) and torch.allclose(f.norm(dim=1), torch.ones(2), atol=1e-5)
    assert c13(torch.rand(2, 3, 32, 32)).shape == (2, 10) and c13.head.out_features == 10
    convs = [m for m in c13.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.padding[0]) for m in convs] == [
        (3, 128, 3, 1), (128, 128, 3, 1), (128, 128, 3, 1), (128, 256, 3, 1), (256, 256, 3, 1), (256, 256, 3, 1),
        (256, 512, 3, 0), (512, 256, 1, 0), (256, 128, 1, 0)]
    n_params = sum(p.numel() for p in c13.parameters())
    # weights + biases of the 9 convs and the classifier, weight-norm gains (one per output unit), batch norm affine
    w = sum(m.in_channels * m.out_channels * m.kernel_size[0] ** 2 + 2 * m.out_channels for m in convs)
    assert n_params == w + 10 * 128 + 2 * 10 + 2 * sum(m.out_channels for m in convs)
    r18 = make_classifier("resnet18", 3, 100).eval()
    f = r18.embed(torch.rand(2, 3, 84, 84))
    assert f.shape == (2, 512) and torch.allclose(f.norm(dim=1), torch.ones(2), atol=1e-5)
    assert sum(p.numel() for p in r18.trunk.parameters()) == 11176512     # torchvision resnet18 minus its fc
    with pytest.raises(Exception, match="unknown network"):
        make_classifier("vgg", 3, 10)


def test_mean_teacher_trains_the_weight_normalized_cnn13():
    """EMA over weight-norm's (g, v) parameters, as the MT code: the teacher stays a copy of the architecture."""
    from visrep.methods.learning.convnets import make_classifier
    from visrep.methods.learning.semi_supervised import copy_model
    torch.manual_seed(0)
    student = make_classifier("cnn13", 3, 4)
    teacher = copy_model(student)
    x = torch.rand(12, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3] + [-1] * 8)
    hist, steps = train_two_stream(student, x, np.arange(4), np.arange(4, 12), 1, mt_loss(y, y >= 0, 1.0, 0.0),
                                   batch=6, labelled_per_batch=2, teacher=teacher, ema_decay=0.5, max_shift=2,
                                   sigma=0.0, flip=True)
    assert steps == 2 and np.isfinite(hist).all()                 # 8 unlabelled, 4 per batch
    moved = [not torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters())]
    assert any(moved) and len(list(teacher.parameters())) == len(list(student.parameters()))


def test_perturb_reflect_padding_mirrors_the_border():
    """pad='reflect' (the MT code's RandomTranslateWithReflect): a shifted image's uncovered border repeats the
    image mirrored about its edge row/column, never zeros."""
    x = torch.arange(1, 1 + 6 * 6, dtype=torch.float32).reshape(1, 1, 6, 6).repeat(50, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = perturb(x, 2, 0.0, g, pad="reflect")
    padded = torch.nn.functional.pad(x[:1], (2, 2, 2, 2), mode="reflect")[0, 0]
    windows = {tuple(padded[dy:dy + 6, dx:dx + 6].flatten().tolist()) for dy in range(5) for dx in range(5)}
    assert all(tuple(o[0].flatten().tolist()) in windows for o in out) and bool((out > 0).all())
    assert len({tuple(o[0].flatten().tolist()) for o in out}) > 5       # several different shifts drawn


def test_supervised_training_perturbs_batches_only_when_asked(mnist):
    """augmented_loss: None for the proxies (max_shift 0, no flip: results unchanged); with flips and shifts the
    same seed gives another network than without."""
    from visrep.methods.learning.pipeline import augmented_loss
    from visrep.registry import methods
    assert augmented_loss(methods.create("supervised").cfg, 0) is None
    assert augmented_loss(methods.create("supervised", flip=True).cfg, 0) is not None
    data, ctx = mnist
    a = methods.create("supervised", epochs=1, width=4, blocks=2).run(data, ctx)["scores"]
    b = methods.create("supervised", epochs=1, width=4, blocks=2, max_shift=2, flip=True, pad="reflect").run(
        data, ctx)["scores"]
    assert a.shape == b.shape and not np.allclose(a, b)


def test_perturb_rotation_known_answers():
    """rotate: a centred disc stays (nearest-pixel resampling), a 90-degree range turns a bar into one of its
    rotations or in between; zero rotation and rotate=0 leave images untouched."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    disc = (((yy - 10) ** 2 + (xx - 10) ** 2) <= 36).float()[None, None].repeat(8, 1, 1, 1)
    out = perturb(disc, 0, 0.0, g, rotate=10.0)
    assert float((out - disc).abs().sum()) <= 8 * 8              # a handful of rim pixels at most per image
    assert torch.equal(perturb(disc, 0, 0.0, g, rotate=0.0), disc)
    bar = torch.zeros(1, 1, 21, 21)
    bar[0, 0, 10, 2:19] = 1.0                                     # horizontal bar through the centre
    vertical = perturb(bar.repeat(200, 1, 1, 1), 0, 0.0, g, rotate=90.0)
    ends = vertical[:, 0, 10, 2] + vertical[:, 0, 10, 18]         # the bar's tips stay only for small angles
    assert bool((vertical[:, 0, 10, 10] == 1).all())               # the centre never moves
    assert 0 < int((ends == 0).sum()) < 200


def test_input_norm_standardizes_inside_the_network():
    from visrep.methods.learning.convnets import CHANNEL_STATS, make_classifier
    torch.manual_seed(0)
    plain = make_classifier("cnn13", 3, 5).eval()
    torch.manual_seed(0)
    normed = make_classifier("cnn13", 3, 5, input_norm="cifar").eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CHANNEL_STATS["cifar"])
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(normed(x), plain((x - mean) / std), atol=1e-5)
    assert torch.allclose(normed.embed(x), plain.embed((x - mean) / std), atol=1e-5)
    assert normed.head is normed.net.head and normed.head.out_features == 5
    assert {k for k in normed.state_dict() if not k.startswith("net.")} == {"mean", "std"}
    with pytest.raises(Exception, match="channels"):
        make_classifier("convnet", 1, 5, input_norm="miniimagenet")
