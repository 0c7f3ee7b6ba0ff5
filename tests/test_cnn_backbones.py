"""The talk's networks as parameters: VGG16 / ResNet-101 with MAC, GeM, R-MAC heads, loaded from
cnnimageretrieval-pytorch checkpoints (``retrievalSfM120k-*`` layout) and plain torchvision state dicts.

Checkpoints are built here in the exact published layout from randomly initialized torchvision
models (nothing is downloaded): ``{'state_dict': {features.*, pool.p, whiten.weight, whiten.bias},
'meta': {architecture, local_whitening, pooling, regional, whitening, mean, std, outputdim}}``,
the trunk cut as ``init_network`` cuts it. The descriptors are checked against an independent
torch implementation of ``ImageRetrievalNet.forward`` and against hand-computed pooling values.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from visrep.errors import UserError
from visrep.methods.cnn.backbones import cirtorch_checkpoint

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
F = torch.nn.functional


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Random VGG16 and ResNet-101 (built once), their cirtorch checkpoints and plain state dicts."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("nets")
    out = {}
    for arch, pooling in (("vgg16", "gem"), ("resnet101", "gem")):
        if arch == "vgg16":     # only the conv layers get random values (the 102M-weight classifier is not used)
            with torch.device("meta"):
                net = torchvision.models.vgg16(weights=None)
            net.features.to_empty(device="cpu")
            for m in net.features:
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        else:
            net = torchvision.models.get_model(arch, weights=None)
        net.eval()
        dim = 512 if arch == "vgg16" else 2048
        ck = cirtorch_checkpoint(net, arch, pooling, dim, gem_p=2.5)
        torch.save(ck, d / f"retrievalSfM120k-{arch}-{pooling}.pth")
        out[arch] = (net, ck, d)
    torch.save(out["resnet101"][0].state_dict(), d / "resnet101-plain.pth")
    return out


def _image(h=72, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reference_trunk(net, arch, x):
    """The trunk by hand from the torchvision modules: VGG features[:30] (no last max-pool), ResNet to layer4."""
    with torch.inference_mode():
        if arch == "vgg16":
            return net.features[:30](x)
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(y))))


def _reference_forward(net, arch, ck, x, pooling):
    """ImageRetrievalNet.forward (cnnimageretrieval), written with torch ops: l2n(W l2n(pool(f)) + b)."""
    f = _reference_trunk(net, arch, x)
    if pooling == "gem":
        p = float(ck["state_dict"]["pool.p"])
        v = F.avg_pool2d(f.clamp(min=1e-6).pow(p), f.shape[-2:]).pow(1.0 / p).flatten()
    else:
        v = f.amax(dim=(2, 3)).flatten()
    v = v / v.norm()
    W, b = ck["state_dict"]["whiten.weight"], ck["state_dict"]["whiten.bias"]
    v = W.double() @ v.double() + b.double()
    return (v / v.norm()).numpy()


# ---------------------------------------------------------------- layout of the checkpoints
def test_checkpoint_keys_are_the_published_layout(nets):
    """Known key names and shapes of retrievalSfM120k-vgg16-gem / -resnet101-gem (features, pool.p, whiten)."""
    _, ck, _ = nets["vgg16"]
    sd = ck["state_dict"]
    assert len([k for k in sd if k.startswith("features.")]) == 26
    assert tuple(sd["features.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["features.28.weight"].shape) == (512, 512, 3, 3)
    assert "features.30.weight" not in sd and tuple(sd["pool.p"].shape) == (1,)
    _, ck, _ = nets["resnet101"]
    sd = ck["state_dict"]
    assert tuple(sd["features.0.weight"].shape) == (64, 3, 7, 7)
    assert tuple(sd["features.1.running_var"].shape) == (64,)
    assert tuple(sd["features.7.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert tuple(sd["features.6.22.bn2.weight"].shape) == (256,)          # 23 blocks in layer3
    assert tuple(sd["whiten.weight"].shape) == (2048, 2048) and tuple(sd["whiten.bias"].shape) == (2048,)


@pytest.mark.parametrize("arch", ["vgg16", "resnet101"])
def test_cirtorch_checkpoint_loads_and_gives_cirtorch_descriptors(nets, arch):
    from visrep.methods.cnn.backbones import load_backbone

    from visrep.registry import methods
    net, ck, d = nets[arch]
    path = d / f"retrievalSfM120k-{arch}-gem.pth"
    b = load_backbone(None, str(path))                  # architecture from meta
    assert b.arch == arch and b.pooling == "gem" and b.gem_p == pytest.approx(2.5)
    for k, v in b.trunk.state_dict().items():
        assert torch.equal(v, ck["state_dict"]["features." + k]), k
    np.testing.assert_array_equal(b.whiten[0], ck["state_dict"]["whiten.weight"].double().numpy())
    img = _image()
    x = b.preprocess(img, imsize=None)
    np.testing.assert_allclose(b.features(x).numpy(), _reference_trunk(net, arch, x).numpy(), rtol=1e-5, atol=1e-6)
    # gem: the learned p, then the learned whitening layer (cirtorch forward)
    m = methods.create("gem", backbone=arch, weights=str(path), imsize=96)
    np.testing.assert_allclose(m.describe_one(img), _reference_forward(net, arch, ck, x, "gem"), atol=2e-5)
    # mac on the same network (the talk's MoM rows test a MAC-trained net with MAC and R-MAC)
    m = methods.create("mac", weights=str(path), imsize=96)
    np.testing.assert_allclose(m.describe_one(img), _reference_forward(net, arch, ck, x, "mac"), atol=2e-5)
    # whitening = none: the plain pooled vector
    m = methods.create("gem", weights=str(path), imsize=96, whitening="none", p=3.0)
    f = _reference_trunk(net, arch, x)[0].numpy()
    g = (np.maximum(f, 1e-6).astype(np.float64) ** 3).mean(axis=(1, 2)) ** (1 / 3)
    np.testing.assert_allclose(m.describe_one(img), g / np.linalg.norm(g), atol=1e-5)


@pytest.mark.parametrize("arch", [pytest.param("vgg16", marks=pytest.mark.slow), "resnet101"])
def test_plain_torchvision_state_dict_by_backbone_name(nets, arch):
    from visrep.registry import methods
    net, _, d = nets[arch]
    if arch == "vgg16":     # a whole torchvision VGG16 (528 MB file): slow
        torch.manual_seed(1)
        net = torchvision.models.vgg16(weights=None).eval()
        torch.save(net.state_dict(), d / "vgg16-plain.pth")
    m = methods.create("mac", backbone=arch, weights=str(d / f"{arch}-plain.pth"), imsize=96)
    img = _image(seed=1)
    b = m.backbone()
    f = _reference_trunk(net, arch, b.preprocess(img, imsize=96))[0].numpy()
    assert f.shape[0] == (512 if arch == "vgg16" else 2048)
    if arch == "vgg16":
        assert f.shape[1:] == (4, 6)                    # 72x96 / 16: conv5_3 before the last max-pool
    v = f.max(axis=(1, 2))
    np.testing.assert_allclose(m.describe_one(img), v / np.linalg.norm(v), atol=1e-6)
    # the old spelling still works, and must agree with backbone
    assert methods.create("mac", arch=arch, weights=str(d / f"{arch}-plain.pth")).network == arch
    with pytest.raises(UserError, match="disagree"):
        methods.create("mac", arch="vgg16", backbone="resnet101")


def test_lw_whitening_in_meta_loads_with_weights_only(nets, tmp_path):
    """Published TPAMI files keep a learned whitening {'m', 'P'} as numpy arrays in meta['Lw']."""
    from visrep.registry import methods
    net, ck, _ = nets["vgg16"]
    rng = np.random.default_rng(0)
    mu, P = rng.normal(size=(512, 1)).astype(np.float32), rng.normal(size=(512, 512)).astype(np.float32)
    ck2 = {"state_dict": {k: v for k, v in ck["state_dict"].items() if not k.startswith("whiten.")},
           "meta": {**ck["meta"], "whitening": False, "Lw": {"retrieval-SfM-120k": {"ss": {"m": mu, "P": P}}}}}
    path = tmp_path / "lw.pth"
    torch.save(ck2, path)
    img = _image(seed=2)
    m = methods.create("gem", weights=str(path), imsize=96, whitening="retrieval-SfM-120k")
    x = m.backbone().preprocess(img, imsize=96)
    f = _reference_trunk(net, "vgg16", x)
    v = F.avg_pool2d(f.clamp(min=1e-6).pow(2.5), f.shape[-2:]).pow(1 / 2.5).flatten().double().numpy()
    v = v / np.linalg.norm(v)
    w = P.astype(np.float64) @ (v - mu[:, 0])
    np.testing.assert_allclose(m.describe_one(img), w / np.linalg.norm(w), atol=2e-5)
    with pytest.raises(UserError, match="whitening 'retrieval-SfM-30k' .* is not in"):
        methods.create("gem", weights=str(path), imsize=96, whitening="retrieval-SfM-30k").describe_one(img)


# ---------------------------------------------------------------- refusals, each naming what is wrong
def _variant(nets, tmp_path, name, edit):
    _, ck, _ = nets["vgg16"]
    ck2 = {"state_dict": dict(ck["state_dict"]), "meta": dict(ck["meta"])}
    edit(ck2)
    path = tmp_path / name
    torch.save(ck2, path)
    return str(path)


def test_bad_checkpoints_are_user_errors_naming_the_first_bad_key(nets, tmp_path):
    from visrep.methods.cnn.backbones import load_backbone

    def shape(ck):
        ck["state_dict"]["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    with pytest.raises(UserError, match=r"'features.5.weight' has shape \(128, 64, 5, 5\)"):
        load_backbone(None, _variant(nets, tmp_path, "shape.pth", shape))

    def missing(ck):
        del ck["state_dict"]["features.7.bias"]
    with pytest.raises(UserError, match=r"'features.7.bias' .* missing"):
        load_backbone(None, _variant(nets, tmp_path, "missing.pth", missing))

    def extra(ck):
        ck["state_dict"]["lwhiten.weight"] = torch.zeros(512, 512)
    with pytest.raises(UserError, match="local whitening"):
        load_backbone(None, _variant(nets, tmp_path, "lw.pth", extra))

    def nowhiten(ck):
        del ck["state_dict"]["whiten.weight"], ck["state_dict"]["whiten.bias"]
    with pytest.raises(UserError, match="meta whitening = True"):
        load_backbone(None, _variant(nets, tmp_path, "nowhiten.pth", nowhiten))
    good = str(nets["vgg16"][2] / "retrievalSfM120k-vgg16-gem.pth")
    with pytest.raises(UserError, match="cnnimageretrieval 'vgg16' network, but backbone = 'resnet101'"):
        load_backbone("resnet101", good)
    with pytest.raises(UserError, match="say which network"):
        load_backbone(None, str(nets["resnet101"][2] / "resnet101-plain.pth"))
    # a plain resnet101 state dict given as vgg16: counts differ, the first names are given
    with pytest.raises(UserError, match=r"tensors in the file but the architecture has 32; first names: file "
                                        r"'conv1.weight', architecture 'features.0.weight'"):
        load_backbone("vgg16", str(nets["resnet101"][2] / "resnet101-plain.pth"))


def test_pickled_code_is_refused(tmp_path):
    """torch.load(weights_only=True): a checkpoint carrying an arbitrary object is not unpickled."""
    from visrep.methods.cnn.backbones import load_backbone
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"features.0.weight": torch.zeros(1)}, "meta": {"architecture": "vgg16",
                "hook": np.random.default_rng}}, path)
    with pytest.raises(UserError, match="cannot read weights file"):
        load_backbone(None, str(path))


# ---------------------------------------------------------------- pooling, hand-computed on constructed maps
def test_rmac_regions_of_a_3x5_map_by_hand():
    """cnnimageretrieval's grid on H=3, W=5: w = 3, overlap closest to 0.4 with 2 positions at l = 1
    (b = 2: overlap 1/3); l = 1 side 3 at columns 0, 2; l = 2 side 2 at rows 0, 1 x columns 0, 1, 3
    (step 1.5, floored); l = 3 side 1 (wl2 = -1) at rows 0, 1, 2 x columns 0, 1, 2, 4."""
    from visrep.methods.cnn.pooling import rmac_regions
    expect = [(0, 0, 3), (0, 2, 3)]
    expect += [(t, c, 2) for t in (0, 1) for c in (0, 1, 3)]
    expect += [(t, c, 1) for t in (0, 1, 2) for c in (0, 1, 2, 4)]
    assert rmac_regions(3, 5, L=3) == expect


def test_mac_gem_rmac_known_answers_on_a_constructed_map():
    """Channel 0 all ones, channel 1 a single spike at (0, 4) of a 3 x 5 map."""
    from visrep.methods.cnn.pooling import gem, mac, rmac
    x = np.zeros((2, 3, 5), np.float32)
    x[0] = 1.0
    x[1, 0, 4] = 2.0
    np.testing.assert_allclose(mac(x), [1.0, 2.0])
    # GeM p = 3: (mean of x^3)^(1/3) with eps = 1e-6 clamping the 14 zeros
    np.testing.assert_allclose(gem(x, 3.0), [1.0, ((8 + 14e-18) / 15) ** (1 / 3)], rtol=1e-6)
    # R-MAC: the whole map and 3 of the 20 regions hold the spike -> (1, 2)/sqrt 5; the other 17 -> (1, 0)
    s = 4 / math.sqrt(5)
    np.testing.assert_allclose(rmac(x, L=3), [17 + s, 2 * s], rtol=1e-6)
    # GeM p = 1 is the mean, p -> large tends to MAC
    np.testing.assert_allclose(gem(x, 1.0), [1.0, 2 / 15], rtol=1e-5)


def test_trunk_only_state_dict(nets, tmp_path):
    """A features-only file (as cnnimageretrieval's imagenet-caffe-vgg16-features-*.pth) loads into the trunk."""
    from visrep.methods.cnn.backbones import load_backbone
    _, ck, _ = nets["vgg16"]
    sd = {k.removeprefix("features."): v for k, v in ck["state_dict"].items() if k.startswith("features.")}
    torch.save(sd, tmp_path / "vgg16-features.pth")
    b = load_backbone("vgg16", str(tmp_path / "vgg16-features.pth"))
    for k, v in b.trunk.state_dict().items():
        assert torch.equal(v, sd[k]), k
    with pytest.raises(UserError, match="without an ImageNet classifier"):
        b.classify(_image())


def test_feature_maps_are_computed_once_across_methods(tmp_path):
    """image_features through the job's cache (ctx.cached): one entry per (network identity, size, image
    content); a second method on the same image at the same size reads it (equal maps, a hit), another
    image or size computes; a network is identified by its weights file's digest."""
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.methods.cnn.backbones import load_backbone
    from visrep.methods.cnn.pipeline import image_features
    from visrep.registry import methods
    net = load_backbone("efficientnet_lite0")
    assert net.identity.startswith("efficientnet_lite0:") and len(net.identity.split(":")[1]) == 64
    ctx = RunContext(cache=Cache(tmp_path / "cache"), quiet=True)
    cache = ctx.cache
    img = _image(64, 80)
    direct = net.features(net.preprocess(img, 1024))[0].numpy()
    first = image_features(net, img, 1024, 1.0, ctx)
    assert cache.misses == 1 and np.array_equal(first, direct)
    gem, rmac = methods.create("gem"), methods.create("rmac")
    v = gem.describe_one(img, net, ctx)                         # GeM reads the map R-MAC left, and vice versa
    assert cache.hits == 1 and np.allclose(v, gem.describe_one(img, net))
    next(iter(rmac.feature_maps(img, net, ctx)))
    assert cache.hits == 2 and cache.misses == 1
    image_features(net, _image(64, 80, seed=1), 1024, 1.0, ctx)      # another image
    image_features(net, img, 32, 1.0, ctx)                             # another size
    assert cache.misses == 3
