"""Classification error rates and the labelled-subset protocol of semi-supervised papers.

- top-1 / top-5 error (Krizhevsky, Sutskever & Hinton, ImageNet classification with deep
  convolutional neural networks, NeurIPS 2012): an item counts as correct at k when its true
  class is among the k highest scores. Ties are resolved in the item's favour only when they
  must be: correct iff fewer than k classes score strictly higher than the true class.
- semi-supervised (Tarvainen & Valpola, Mean teachers, NeurIPS 2017; Iscen, Tolias, Avrithis
  & Chum, Label propagation for deep semi-supervised learning, CVPR 2019): a run trains with
  N labelled images taken from one split file; papers report the test error as mean ± std
  over split files (seeds). :func:`labelled_subset_summary` aggregates one metric over runs.

Outputs contract (task ``classification``): ``outputs["scores"]`` float (n, n_classes)
(logits or probabilities) and/or ``outputs["predictions"]`` int (n,), for the items of the
dataset (a LabelledData, ``data.labels`` (n,)). Metrics: ``top1_error``, ``top5_error`` (when
scores with >= 5 classes are given), ``accuracy`` = 1 - top-1 error (fractions).
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(n,) bool: fewer than k classes score strictly above the true class."""
    scores = np.asarray(scores, dtype=np.float64)
    true = scores[np.arange(len(labels)), labels]
    return (scores > true[:, None]).sum(axis=1) < k


def labelled_subset_summary(values) -> dict:
    """Mean and sample std (ddof = 1 as in the papers' tables; 0 for one run) of per-split values."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise UserError("labelled-subset summary needs at least one run")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n_runs": int(v.size)}


@register
class Classification(Protocol):
    name = "classification"
    task = "classification"
    summary = "top-1 / top-5 error rate (fractions); semi-supervised runs aggregate as mean +- std over splits"
    cite = "Krizhevsky, Sutskever & Hinton, NeurIPS 2012 (top-1/top-5); Tarvainen & Valpola, NeurIPS 2017 (SSL protocol)"

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        labels = np.asarray(data.labels)
        n = len(labels)
        m = {}
        if "scores" in outputs:
            s = np.asarray(outputs["scores"])
            if s.ndim != 2 or s.shape[0] != n:
                raise UserError(f"scores for {data.name}: expected shape ({n}, n_classes), got {s.shape}")
            if s.dtype.kind not in "fiu" or not np.isfinite(s).all():
                raise UserError(f"scores for {data.name}: must be finite numbers")
            if labels.size and labels.max() >= s.shape[1]:
                raise UserError(f"scores for {data.name}: {s.shape[1]} columns but labels reach {labels.max()}")
            wrong = ~topk_correct(s, labels, 1).astype(bool)
            m["top1_error"] = float(wrong.mean())
            if s.shape[1] >= 5:
                m["top5_error"] = float(1 - topk_correct(s, labels, 5).mean())
        elif "predictions" in outputs:
            p = np.asarray(outputs["predictions"]).ravel()
            if p.shape != (n,) or p.dtype.kind not in "iu":
                raise UserError(f"predictions for {data.name}: expected ({n},) integers, got {p.shape} {p.dtype}")
            wrong = p != labels
            m["top1_error"] = float(np.mean(wrong))
        else:
            raise UserError(f"protocol 'classification' needs outputs['scores'] (n, C) or ['predictions'] (n,); "
                            f"got keys {sorted(outputs)}")
        m["accuracy"] = 1.0 - m["top1_error"]
        wrong = wrong.astype(np.float64)
        return m, {"top1_error": wrong, "accuracy": 1.0 - wrong}

    def format(self, metrics: dict, data) -> str:
        s = f">> {data.name}: top-1 error {100 * metrics['top1_error']:.2f} %"
        if "top5_error" in metrics:
            s += f", top-5 error {100 * metrics['top5_error']:.2f} %"
        return s
