"""The cluttered-objects proxy: deterministic, built from real photographs, objects where the boxes say."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.errors import UserError
from visrep.registry import datasets

pytest.importorskip("skimage")
pytest.importorskip("cv2")

SMALL = {"views": 2, "distractors": 3, "side": 128}


def _load(**kw):
    return datasets.create("cluttered-objects", **{**SMALL, **kw}).load(None)


def test_structure_and_ground_truth():
    d = _load()
    assert d.n_queries == 24 and d.n_db == 12 * 2 + 3             # every object view is a query (INSTRE)
    assert d.extra["proxy"] is True
    for j, g in enumerate(d.gnd):
        assert g["ok"].tolist() == [j + 1 - 2 * (j % 2)] and g["junk"].tolist() == [j]   # the other view; itself
        assert g["bbx"] == pytest.approx(d.extra["boxes"][j])
        x1, y1, x2, y2 = g["bbx"].astype(int)
        assert np.array_equal(d.query_image(j), d.db_image(j)[y1:y2, x1:x2])
    assert all(b is None for b in d.extra["boxes"][-3:])
    for i in range(24):
        x1, y1, x2, y2 = d.extra["boxes"][i]
        assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
        assert d.db_image(i).shape == (128, 128, 3) and d.db_image(i).dtype == np.uint8


def test_deterministic_and_seeded():
    a, b = _load(), _load()
    assert a.manifest == b.manifest
    assert all(np.array_equal(a.db_image(i), b.db_image(i)) for i in range(a.n_db))
    c = _load(seed=1)
    assert c.manifest != a.manifest
    assert not np.array_equal(a.db_image(0), c.db_image(0))


def test_the_box_holds_the_pasted_object():
    """Pasting at the object's own size and no rotation puts the query crop's pixels inside the box."""
    from visrep.datasets.cluttered_objects import paste
    d = _load()
    obj = d.query_image(0)[:20, :30]
    canvas = np.zeros((400, 400, 3), np.uint8)
    h, w = obj.shape[:2]
    out, box = paste(canvas, obj, max(h, w), 0.0, 200.0, 200.0, 1.0)
    x1, y1, x2, y2 = box.astype(int)
    assert (x2 - x1, y2 - y1) == (w, h)
    assert np.abs(out[y1:y2, x1:x2].astype(int) - obj.astype(int)).mean() < 2.0
    assert not out[:y1].any() and not out[y2:].any()
    # in the benchmark's views the box differs from the background around it
    img = d.db_image(0)
    x1, y1, x2, y2 = d.extra["boxes"][0].astype(int)
    assert img[y1:y2, x1:x2].std() > 0


def test_objects_are_crops_of_real_photographs():
    from visrep.datasets.cluttered_objects import OBJECTS
    from visrep.datasets.sample_views import _read_source, package_image_path
    d = _load()
    src = _read_source(package_image_path(*OBJECTS[2][0]), 256)
    H, W = src.shape[:2]
    rx0, ry0, rx1, ry1 = OBJECTS[2][1]
    assert d.extra["object_boxes"][2] == pytest.approx([rx0 * W, ry0 * H, rx1 * W, ry1 * H])
    # the view's box is about object_size (x 0.8-1.2, rotated by at most 15 degrees) of the image side
    x1, y1, x2, y2 = d.extra["boxes"][4]
    assert 0.2 * 0.8 * 128 - 2 <= max(x2 - x1, y2 - y1) <= 0.2 * 1.2 * 128 * 1.4 + 2


def test_bad_parameters():
    with pytest.raises(UserError):
        datasets.create("cluttered-objects", object_size=2.0)
    with pytest.raises(UserError):
        datasets.create("cluttered-objects", views=0)
