"""Object detection scored from boxes: CorLoc and VOC-style average precision at IoU 0.5.

- IoU of two boxes (x0, y0, x1, y1), continuous coordinates: |A n B| / |A u B| (Everingham et al.,
  The PASCAL Visual Object Classes (VOC) challenge, IJCV 2010, eq. 1).
- CorLoc (Deselaers, Alexe & Ferrari, Localizing objects while learning their appearance, ECCV 2010;
  the weakly-supervised detection standard): for an image known to contain class c, its top-scoring
  box of class c localizes correctly when its IoU with a ground-truth box of class c is >= 0.5.
  Per-image value: the fraction of the image's classes localized correctly (NaN for an image with no
  object, which does not count). ``corloc`` = the mean over images (what claims compare, paired per
  image); ``corloc_class`` = the mean over classes of the per-class fractions (the WSOD tables' form;
  equal to ``corloc`` on a test set with one object per image and as many images per class); ``top_iou`` =
  the mean IoU of those top boxes (the continuous quantity CorLoc thresholds; a diagnostic).
- AP at IoU 0.5 (VOC): per class, detections of all test images sorted by score, each matched
  greedily to the unmatched ground-truth box of the same class with the highest IoU (>= 0.5: true
  positive; otherwise, or if that box is already taken, false positive); AP = area under the
  precision-recall curve with precision made monotone (the all-point interpolation of VOC 2010+).
  ``map50`` = mean AP over the classes that have ground truth.

Outputs contract (task ``detection``): ``outputs["boxes"]``, ``["scores"]``, ``["classes"]``: lists
with one entry per test image of the dataset (``data.test_idx`` order): (m, 4) float boxes
(x0, y0, x1, y1) in pixels, (m,) float scores, (m,) int classes in [0, n_classes).
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register

IOU_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (n, m) float64 of boxes a (n, 4) and b (m, 4), (x0, y0, x1, y1); 0 where the union is empty."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def corloc_per_image(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes,
                     thr: float = IOU_THRESHOLD) -> tuple[np.ndarray, list[dict]]:
    """Per-image CorLoc (n,) float (NaN: no ground-truth object) and, per image, {class: hit (bool)}.

    Lists of length n: pred (m_i, 4) / (m_i,) / (m_i,), gt (k_i, 4) / (k_i,). An image whose class c
    has no predicted box of class c counts as a miss for c."""
    values, hits = np.full(len(gt_boxes), np.nan), []
    for i, (pb, ps, pc, gb, gc) in enumerate(zip(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes)):
        pb, ps, pc = np.asarray(pb, np.float64).reshape(-1, 4), np.asarray(ps, np.float64).ravel(), np.asarray(pc).ravel()
        gb, gc = np.asarray(gb, np.float64).reshape(-1, 4), np.asarray(gc).ravel()
        h = {}
        for c in np.unique(gc):
            mine = np.flatnonzero(pc == c)
            if mine.size == 0:
                h[int(c)] = False
                continue
            top = mine[np.argmax(ps[mine])]
            h[int(c)] = bool(box_iou(pb[top], gb[gc == c]).max() >= thr)
        hits.append(h)
        if h:
            values[i] = np.mean(list(h.values()))
    return values, hits


def top_box_iou(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes) -> np.ndarray:
    """Per-image (n,) float: the mean over the image's classes c of the IoU between its top-scoring box of
    class c and the closest ground-truth box of class c (0 without a box of class c; NaN: no object). The
    continuous quantity CorLoc thresholds at 0.5 (shown as ``top_iou``; a diagnostic, not a WSOD standard)."""
    out = np.full(len(gt_boxes), np.nan)
    for i, (pb, ps, pc, gb, gc) in enumerate(zip(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes)):
        pb, ps, pc = np.asarray(pb, np.float64).reshape(-1, 4), np.asarray(ps, np.float64).ravel(), np.asarray(pc).ravel()
        gb, gc = np.asarray(gb, np.float64).reshape(-1, 4), np.asarray(gc).ravel()
        v = []
        for c in np.unique(gc):
            mine = np.flatnonzero(pc == c)
            v.append(box_iou(pb[mine[np.argmax(ps[mine])]], gb[gc == c]).max() if mine.size else 0.0)
        if v:
            out[i] = np.mean(v)
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+): sum over recall steps of the monotone precision envelope."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def average_precision(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, c: int,
                      thr: float = IOU_THRESHOLD) -> float:
    """VOC AP of class c over all images (NaN when no ground-truth box of class c); inputs as
    :func:`corloc_per_image`. Ties in score keep image order (stable sort)."""
    dets = [(i, j) for i, pc in enumerate(pred_classes) for j in np.flatnonzero(np.asarray(pc).ravel() == c)]
    n_gt = sum(int(np.sum(np.asarray(g).ravel() == c)) for g in gt_classes)
    if n_gt == 0:
        return float("nan")
    if not dets:
        return 0.0
    scores = np.array([np.asarray(pred_scores[i], np.float64).ravel()[j] for i, j in dets])
    order = np.argsort(-scores, kind="stable")
    taken = [np.zeros(int(np.sum(np.asarray(g).ravel() == c)), bool) for g in gt_classes]
    tp = np.zeros(len(dets))
    for rank, d in enumerate(order):
        i, j = dets[d]
        gb = np.asarray(gt_boxes[i], np.float64).reshape(-1, 4)[np.asarray(gt_classes[i]).ravel() == c]
        if len(gb) == 0:
            continue
        ov = box_iou(np.asarray(pred_boxes[i], np.float64).reshape(-1, 4)[j], gb)[0]
        k = int(np.argmax(ov))
        if ov[k] >= thr and not taken[i][k]:
            taken[i][k] = True
            tp[rank] = 1
    ctp = np.cumsum(tp)
    return voc_ap(ctp / n_gt, ctp / np.arange(1, len(tp) + 1))


@register
class Detection(Protocol):
    name = "detection"
    task = "detection"
    summary = "CorLoc (top box IoU >= 0.5, per image) and VOC mAP@0.5 on a detection dataset's test images"
    cite = ("Deselaers, Alexe & Ferrari, ECCV 2010 (CorLoc); Everingham et al., The PASCAL VOC challenge, "
            "IJCV 2010 (IoU, AP)")

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        test = np.asarray(data.test_idx)
        n = len(test)
        missing = [k for k in ("boxes", "scores", "classes") if k not in outputs]
        if missing:
            raise UserError(f"protocol 'detection' needs outputs {missing} (one entry per test image); "
                            f"got keys {sorted(outputs)}")
        pb, ps, pc = outputs["boxes"], outputs["scores"], outputs["classes"]
        for key, v in (("boxes", pb), ("scores", ps), ("classes", pc)):
            if len(v) != n:
                raise UserError(f"outputs['{key}'] for {data.name}: {len(v)} entries but {n} test images")
        for i in range(n):
            b = np.asarray(pb[i])
            m_i = len(b) if b.size else 0
            bad_shape = b.size and (b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all())
            if bad_shape or len(np.ravel(ps[i])) != m_i or len(np.ravel(pc[i])) != m_i:
                raise UserError(f"outputs for test image {i} of {data.name}: boxes must be finite (m, 4) with m "
                                f"scores and m classes, got {b.shape}")
        gb = [data.boxes[t] for t in test]
        gc = [data.box_classes[t] for t in test]
        per, hits = corloc_per_image(pb, ps, pc, gb, gc)
        per_class = {}
        for h in hits:
            for c, v in h.items():
                per_class.setdefault(c, []).append(v)
        top_iou = top_box_iou(pb, ps, pc, gb, gc)
        aps = np.array([average_precision(pb, ps, pc, gb, gc, c) for c in range(data.n_classes)])
        m = {"corloc": float(np.nanmean(per)) if np.isfinite(per).any() else float("nan"),
             "corloc_class": float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else float("nan"),
             "map50": float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan"),
             "top_iou": float(np.nanmean(top_iou)) if np.isfinite(top_iou).any() else float("nan"),
             "n_images": n}
        return m, {"corloc": per, "top_iou": top_iou}

    def format(self, metrics: dict, data) -> str:
        return (f">> {data.name}: CorLoc {100 * metrics['corloc']:.2f} %, mAP@0.5 {100 * metrics['map50']:.2f} % "
                f"({metrics['n_images']} test images)")
