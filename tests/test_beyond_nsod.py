"""Nano-supervised detection: the detection protocol's known answers, the proxy dataset, the kernels, a tiny run."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.protocols.detection import (
    average_precision,
    box_iou,
    corloc_per_image,
    voc_ap,
)

from visrep.registry import datasets, protocols


# ---------------------------------------------------------------- protocol: known answers
def test_iou_hand_made_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [0, 0, 5, 5], [20, 20, 30, 30]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 0.25, 0.0])
    assert box_iou(b, a)[:, 0] == pytest.approx(box_iou(a, b)[0])                 # symmetric
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0.0                      # empty union -> 0


def test_corloc_hand_made():
    gt_b = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10]]), np.zeros((0, 4)), np.array([[0, 0, 10, 10]])]
    gt_c = [np.array([0]), np.array([1]), np.zeros(0, int), np.array([0])]
    pb = [np.array([[0, 0, 10, 9], [50, 50, 60, 60]]),     # top box of class 0 is the good one: hit
          np.array([[0, 0, 10, 10], [50, 50, 60, 60]]),    # class 1's top box is the far one: miss
          np.array([[0, 0, 1, 1]]),                        # no object: does not count
          np.array([[0, 0, 10, 10]])]                      # only a box of class 1: miss for class 0
    ps = [np.array([0.9, 0.1]), np.array([0.2, 0.8]), np.array([1.0]), np.array([1.0])]
    pc = [np.array([0, 0]), np.array([1, 1]), np.array([0]), np.array([1])]
    v, hits = corloc_per_image(pb, ps, pc, gt_b, gt_c)
    assert np.isnan(v[2]) and v[[0, 1, 3]].tolist() == [1.0, 0.0, 0.0]
    assert hits[0] == {0: True} and hits[2] == {}


def test_ap_hand_made():
    gt_b = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    gt_c = [np.array([0]), np.array([0, 0])]
    # ranked: TP, FP (duplicate of a taken box), TP, FP (background): precision 1, 1/2, 2/3, 2/4 at recall 1/3, 1/3, 2/3, 2/3
    pb = [np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([[20, 20, 30, 30], [100, 100, 110, 110]])]
    ps = [np.array([0.9, 0.8]), np.array([0.7, 0.6])]
    pc = [np.array([0, 0]), np.array([0, 0])]
    assert average_precision(pb, ps, pc, gt_b, gt_c, 0) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert np.isnan(average_precision(pb, ps, pc, gt_b, gt_c, 1))         # no ground truth of class 1
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
    assert voc_ap(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == 0.5


def test_protocol_scores_outputs_and_rejects_bad_ones():
    from visrep.datasets.detection_proxy import DetectionData

    from visrep.errors import UserError
    boxes = [np.array([[0.0, 0, 10, 10]]), np.array([[5.0, 5, 20, 20]])]
    data = DetectionData(name="toy", class_names=["a", "b"], image=None, boxes=boxes,
                         box_classes=[np.array([0]), np.array([1])], labels=np.eye(2, dtype=bool),
                         labeled_idx=np.array([], int), unlabeled_idx=np.array([], int), test_idx=np.array([0, 1]))
    out = {"boxes": [np.array([[0.0, 0, 10, 10]]), np.array([[50.0, 50, 60, 60]])], "scores": [[1.0], [1.0]],
           "classes": [[0], [1]]}
    m, per = protocols.create("detection").score(out, data)
    assert m["corloc"] == 0.5 and m["corloc_class"] == 0.5 and m["map50"] == 0.5 and m["n_images"] == 2
    assert per["corloc"].tolist() == [1.0, 0.0] and per["top_iou"].tolist() == [1.0, 0.0]
    with pytest.raises(UserError, match="1 entries but 2 test images"):
        protocols.create("detection").score({k: v[:1] for k, v in out.items()}, data)
    with pytest.raises(UserError, match="needs outputs"):
        protocols.create("detection").score({"boxes": out["boxes"]}, data)


# ---------------------------------------------------------------- kernels
def test_proposals_and_pooling_weights():
    from visrep.methods.beyond.nsod import (
        box_cell_weights,
        roi_features,
        sliding_window_proposals,
    )
    b = sliding_window_proposals(100, 100, scales=(0.5,), ratios=(1.0,), stride=0.5)
    assert b.tolist() == [[x, y, x + 50, y + 50] for x in (0, 25, 50) for y in (0, 25, 50)]
    A = box_cell_weights(np.array([[0, 0, 50, 50], [25, 25, 75, 75]]), 100, 100, 2, 2)
    assert A.tolist() == [[1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]]
    maps = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)              # two images, one channel
    assert roi_features(maps, A)[:, :, 0].tolist() == [[0, 1.5], [4, 5.5]]


def test_wsddn_learns_a_planted_region():
    """Class c images hold one region with feature e_c among noise regions: WSDDN's top region for c is it."""
    from visrep.methods.beyond.nsod import l2n, wsddn_region_scores, wsddn_train
    rng = np.random.default_rng(0)
    N, R, d, C = 24, 10, 16, 3
    f = rng.normal(size=(N, R, d)).astype(np.float32) * 0.3
    f[:, :, :C] = 0
    cls, where = np.arange(N) % C, rng.integers(R, size=N)
    f[np.arange(N), where, cls] = 3.0
    f = l2n(f)
    p = wsddn_train(f, np.eye(C, dtype=bool)[cls], epochs=200, lr=0.05)
    x = wsddn_region_scores(p, f)
    assert (x[np.arange(N), :, cls].argmax(1) == where).all()
    assert (x.sum(1).argmax(1) == cls).all()


def test_region_similarity_margin_ignores_shared_background():
    from visrep.methods.beyond.nsod import (
        bootstrap_set,
        region_similarity,
        select_pseudo_labels,
    )
    e = np.eye(4, dtype=np.float32)
    bg = e[3]                                                 # a background region every image holds
    lab = np.stack([[e[0], bg], [e[1], bg]])                  # labeled images of classes 0 and 1
    unl = np.stack([[bg, e[1]], [bg, e[0]], [bg, bg]])        # class 1, class 0, background only
    s = region_similarity(unl, lab, np.eye(2, dtype=bool))
    assert s.tolist() == [[0, 1], [1, 0], [0, 0]]      # background regions give a 0 margin
    imgs, cls = bootstrap_set(s, 1)
    assert imgs.tolist() == [1, 0] and cls.tolist() == [0, 1]
    keep, c = select_pseudo_labels(np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]), 0.6)
    assert keep.tolist() == [0, 2] and c.tolist() == [0, 1]


# ---------------------------------------------------------------- dataset
SMALL = {"views": 4, "distractors": 2, "side": 128, "labeled": 1, "test": 1}


def test_dataset_split_is_seeded_and_consistent():
    pytest.importorskip("skimage")
    pytest.importorskip("cv2")
    a = datasets.create("cluttered-detection", **SMALL).load(None)
    b = datasets.create("cluttered-detection", **SMALL).load(None)
    c = datasets.create("cluttered-detection", **SMALL, seed=1).load(None)
    assert a.manifest == b.manifest != c.manifest
    for k in ("labeled_idx", "unlabeled_idx", "test_idx"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert np.array_equal(a.image(0), b.image(0))
    n = 12 * 4 + 2
    assert a.n_images == n and a.n_classes == 12
    parts = np.concatenate([a.labeled_idx, a.unlabeled_idx, a.test_idx])
    assert sorted(parts.tolist()) == list(range(n))                          # disjoint, complete
    assert len(a.labeled_idx) == 12 and len(a.test_idx) == 12 and len(a.unlabeled_idx) == 12 * 2 + 2
    assert (a.labels[a.labeled_idx].sum(0) == 1).all() and (a.labels[a.test_idx].sum(0) == 1).all()
    for i in range(n):                                   # one box per object image, none on background ones
        k = len(a.boxes[i])
        assert k == a.labels[i].sum() == len(a.box_classes[i]) <= 1
        if k:
            x0, y0, x1, y1 = a.boxes[i][0]
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and a.labels[i, a.box_classes[i][0]]
    assert (~a.labels[a.unlabeled_idx[-2:]]).all()       # the distractors are unlabeled, with no class


# ---------------------------------------------------------------- end to end
@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("timm")
    from visrep.runner import RunSettings, run_job
    from visrep.spec import expand_experiment
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), quiet=True)
    got = {}
    for use in (False, True):
        [job] = expand_experiment({"method": "nsod", "dataset": "cluttered-detection", "protocol": "detection",
                                   "params": {"use_unlabeled": use, "epochs": 30, "teacher_epochs": 30,
                                              "input_scale": 0.5, "pca_dim": 16},
                                   "dataset_params": SMALL})
        r = run_job(job, settings)
        got[use] = r
        assert 0 <= r["metrics"]["corloc"] <= 1 and 0 <= r["metrics"]["map50"] <= 1
        assert r["metrics"]["n_images"] == 12
    assert got[True]["stats"]["n_bootstrap"] > 0


def test_oicr_targets_hand_made():
    import torch
    from visrep.methods.beyond.nsod import oicr_targets, pairwise_iou
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]], np.float32)
    assert pairwise_iou(boxes, boxes)[0].tolist() == pytest.approx([1.0, 0.9, 0.0])
    prev = torch.tensor([[[0.6, 0.1], [0.3, 0.2], [0.1, 0.7]]])          # (1 image, 3 regions, 2 classes)
    tgt, w = oicr_targets(prev, torch.from_numpy(pairwise_iou(boxes, boxes)), torch.tensor([[1.0, 0.0]]))
    # class 0's top box is region 0; region 1 overlaps it (0.9): class 0; region 2: background (index 2)
    assert tgt.tolist() == [[0, 0, 2]] and w[0].tolist() == pytest.approx([0.6, 0.6, 0.6])
    tgt, w = oicr_targets(prev, torch.from_numpy(pairwise_iou(boxes, boxes)), torch.tensor([[0.0, 0.0]]))
    assert w.tolist() == [[0.0, 0.0, 0.0]]                               # an image with no label adds no loss


def test_pooling_weights_cell_offset():
    from visrep.methods.beyond.nsod import box_cell_weights
    # offset 0.5: cell 0 spans [-25, 25] px of a 100 px image with a 2 x 2 map, cell 1 [25, 75]
    A = box_cell_weights(np.array([[25, 25, 75, 75], [0, 0, 25, 25]]), 100, 100, 2, 2, offset=0.5)
    assert A.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
