"""DSM: local features from activation maps (known answers) and a re-ranking run on real photographs."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.spatial.activations import (
    activation_features,
    image_stride,
    network_stride,
)

from visrep.errors import UserError


def test_activation_maxima_known_answer():
    x = np.zeros((3, 8, 10), np.float32)
    x[0, 2, 3] = 1.0                                   # one peak, region of one cell
    x[1, 4:6, 6:8] = 0.6                               # plateau 2x2 ...
    x[1, 4, 6] = 1.0                                   # ... with its peak at (4, 6)
    ch, fr = activation_features(x, (80, 100), per_channel=2, min_activation=0.1)
    assert list(ch) == [0, 1]                          # channel 2 is empty
    assert np.allclose(fr[0], [(3 + 0.5) * 10, (2 + 0.5) * 10, 10.0, 0.0])
    # channel 1: region = 2x2 plateau (>= half the peak), weighted centroid, scale sqrt(4) * 10
    w = np.array([[1.0, 0.6], [0.6, 0.6]])
    cy = (w * np.array([[4, 4], [5, 5]])).sum() / w.sum()
    cx = (w * np.array([[6, 7], [6, 7]])).sum() / w.sum()
    assert np.allclose(fr[1], [(cx + 0.5) * 10, (cy + 0.5) * 10, 20.0, 0.0])


def test_activation_features_keep_strongest_per_channel():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 1, 1], x[0, 5, 5], x[0, 7, 1] = 0.5, 1.0, 0.05
    ch, fr = activation_features(x, (9, 9), per_channel=1, min_activation=0.1)
    assert len(ch) == 1 and np.allclose(fr[0, :2], [5.5, 5.5])
    ch, fr = activation_features(x, (9, 9), per_channel=5, min_activation=0.1)
    assert len(ch) == 2                                  # 0.05 < 0.1 x peak


def test_network_stride_not_image_over_map():
    """Siméoni et al. CVPR 2019 map a feature of the activation tensor to the image by the
    network's stride (32 px for EfficientNet / ResNet, 16 for VGG conv5), and a "same"-padded net
    gives ceil(side / stride) cells: a 300 x 320 input has a 10 x 10 map of 32 px cells, not 30."""
    assert network_stride((300, 320), (10, 10)) == 32
    assert network_stride((512, 384), (16, 12)) == 32
    assert network_stride((500, 375), (32, 24)) == 16            # VGG-16 conv5_3: ceil(500/16), ceil(375/16)
    assert network_stride((33, 33), (2, 2)) == 16                # below 2 cells the ratio is ambiguous
    # in image pixels, when the backbone resized the image (longer side 1024 -> imsize 512): 64 px
    assert image_stride((768, 1024), (12, 16), 512) == 64.0
    assert image_stride((300, 320), (10, 10), 1024) == 32.0      # no resize below imsize
    # a peak in cell (row 2, column 9) of a 10 x 10 map of a 300 x 320 image: x = 9.5 cells of 32 px
    x = np.zeros((1, 10, 10), np.float32)
    x[0, 2, 9] = 1.0
    _, fr = activation_features(x, (300, 320), stride=32.0)
    assert np.allclose(fr[0], [9.5 * 32, 2.5 * 32, 32.0, 0.0])
    _, fr = activation_features(x, (300, 320))                   # without a stride: image / map (the old default)
    assert np.allclose(fr[0], [9.5 * 32, 2.5 * 30, np.sqrt(30 * 32), 0.0])


def _regions_one_by_one(x, ch, ii, jj, val, sx, sy, level=0.5):
    """The definition, one maximum at a time: the 4-connected region of cells >= level x peak around it,
    its activation-weighted centroid and sqrt(area), in pixels."""
    from scipy import ndimage
    h, w = x.shape[1:]
    out = []
    for c, i, j, v in zip(ch, ii, jj, val):
        lab, _ = ndimage.label(x[c] >= level * v)
        region = lab == lab[i, j]
        wts = x[c].astype(np.float64) * region
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = (wts * yy).sum() / wts.sum(), (wts * xx).sum() / wts.sum()
        out.append(((cx + 0.5) * sx, (cy + 0.5) * sy, np.sqrt(region.sum()) * np.sqrt(sx * sy), 0.0))
    return np.array(out).reshape(-1, 4)


def test_activation_regions_equal_the_one_by_one_definition():
    """All regions labelled in one call (a slice per feature) equal labelling each maximum's channel alone;
    blobs touching each other across the slice boundary must not merge."""
    rng = np.random.default_rng(0)
    from scipy import ndimage
    x = ndimage.gaussian_filter(rng.random((40, 12, 15)).astype(np.float32), (0, 1.2, 1.2))
    x = np.maximum(x - np.median(x), 0)
    ch, fr = activation_features(x, (12 * 32, 15 * 32), per_channel=3, min_activation=0.1, stride=32.0)
    assert len(ch) > 60
    mx = ndimage.maximum_filter(x, size=(1, 3, 3), mode="constant", cval=-np.inf)
    cand = (x == mx) & (x > 0) & (x >= 0.1 * x.max(axis=(1, 2))[:, None, None])
    c, i, j = np.nonzero(cand)
    v = x[c, i, j]
    o = np.lexsort((-v, c))
    c, i, j, v = c[o], i[o], j[o], v[o]
    keep = (np.arange(len(c)) - np.searchsorted(c, c)) < 3
    want = _regions_one_by_one(x, c[keep], i[keep], j[keep], v[keep], 32.0, 32.0)
    assert np.array_equal(ch, c[keep])
    np.testing.assert_allclose(fr, want, rtol=1e-6, atol=1e-6)


def test_activation_features_bad_input():
    with pytest.raises(UserError, match="map"):
        activation_features(np.zeros((4, 4)), (4, 4))
    with pytest.raises(UserError, match="NaN"):
        activation_features(np.full((1, 4, 4), np.nan), (4, 4))


def test_dsm_rejects_a_non_cnn_descriptor():
    from visrep.registry import methods
    with pytest.raises(UserError, match="CNN"):
        methods.create("dsm", descriptor="histogram")._descriptor()


@pytest.mark.slow
def test_dsm_reranks_gem_shortlist_on_real_photographs(tmp_path):
    pytest.importorskip("timm")
    from visrep.cache import Cache, code_version
    from visrep.context import RunContext
    from visrep.registry import datasets, methods, protocols
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    ds = datasets.create("sample-views", views=3, distractor_views=1, graffiti=False, max_side=256)
    data = ds.load(ctx)
    ctx.loader_version = code_version(type(ds))
    out = methods.create("dsm", shortlist=10).run(data, ctx)
    r = out["ranks"]
    assert all(sorted(r[:, j]) == list(range(data.n_db)) for j in range(data.n_queries))
    assert out["stats"]["features_per_image"] > 10
    assert protocols.create("oxford").evaluate(out, data)["map"] > 0.5
