"""Adversarial-attack protocol: success rate, distortion, iterations and time per image.

As reported in Zhang, Avrithis, Furon & Amsaleg, "Walking on the edge: fast, low-distortion
adversarial examples", IEEE TIFS 2021 (the boundary projection, BP, attack) and in the
C&W / DDN papers it compares with:

- success rate P_suc: fraction of attacked images whose adversarial example is misclassified
  (untargeted) -- images the model already misclassifies are left out by default
  (``only_correct``), as is usual;
- distortion: L2 norm of the perturbation ``x_adv - x`` with pixel values in [0, 1] (not
  divided by the number of pixels or by the norm of x), averaged (mean and median) over the
  successful examples only; ``normalise=sqrt_dim`` divides by sqrt(number of values) instead
  (the root-mean-square per pixel convention of some papers);
- L-infinity of the perturbation (mean over successful examples), iterations (mean over all
  attacked images) and seconds per image.

Outputs contract (task ``adversarial``): ``adversarial`` float (n, ...) in [0, 1] with the
shape of the clean images; ``adv_predictions`` int (n,) (or ``success`` bool (n,));
optional ``clean`` float (n, ...) in [0, 1] (default: ``data.x`` / 255 for uint8),
``clean_predictions`` int (n,), ``iterations`` (n,), ``time`` total seconds (or
``timings["attack"]``), ``indices`` int (m,): when an attack covers only some items of the
dataset (e.g. the first 1000 test images), every array above has m rows, one per listed item,
and the labels and clean images are those items'. Metrics: ``success_rate``, ``l2_mean``, ``l2_median``, ``linf_mean``,
``iterations_mean``, ``time_per_image``, ``n_attacked``.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register


def perturbation_norms(clean: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L2 (n,), L-inf (n,)) of adv - clean per image, values in [0, 1]."""
    d = (np.asarray(adv, np.float64) - np.asarray(clean, np.float64)).reshape(len(clean), -1)
    return np.sqrt((d * d).sum(1)), np.abs(d).max(1) if d.shape[1] else np.zeros(len(d))


@register
class Adversarial(Protocol):
    name = "adversarial"
    task = "adversarial"
    summary = "attack success rate, L2 (mean/median over successes, images in [0,1]), L-inf, iterations, time"
    cite = "Zhang, Avrithis, Furon & Amsaleg, Walking on the edge: fast, low-distortion adversarial examples, TIFS 2021"
    params = (
        Param("only_correct", bool, True, "attack only images the model classifies correctly"),
        Param("normalise", str, "none", "L2 normalisation: none (plain L2 on [0,1] images) or sqrt_dim",
              choices=("none", "sqrt_dim")),
    )

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        labels = np.asarray(data.labels)
        idx = None
        if outputs.get("indices") is not None:
            idx = np.asarray(outputs["indices"])
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= len(labels))):
                raise UserError(f"outputs['indices'] for {data.name}: expected (m,) integers in [0, {len(labels)}), "
                                f"got shape {idx.shape} dtype {idx.dtype}")
            labels = labels[idx]
        n = len(labels)
        if "adversarial" not in outputs:
            raise UserError(f"protocol 'adversarial' needs outputs['adversarial'] (n, ...); got keys {sorted(outputs)}")
        adv = np.asarray(outputs["adversarial"], dtype=np.float64)
        if "clean" in outputs:
            clean = np.asarray(outputs["clean"], dtype=np.float64)
        elif getattr(data, "x", None) is not None:
            x = data.x if idx is None else data.x[idx]
            clean = np.asarray(x, dtype=np.float64) / (255.0 if data.x.dtype == np.uint8 else 1.0)
        else:
            raise UserError(f"protocol 'adversarial' needs outputs['clean'] for {data.name} (no arrays in the dataset)")
        if adv.shape != clean.shape or len(adv) != n:
            raise UserError(f"adversarial examples for {data.name}: shape {adv.shape} differs from the clean images "
                            f"{clean.shape} ({n} labels)")
        if not np.isfinite(adv).all() or adv.min() < 0 or adv.max() > 1:
            raise UserError(f"adversarial examples for {data.name}: values must be finite and in [0, 1]")
        if "success" in outputs:
            success = np.asarray(outputs["success"], bool).ravel()
        elif "adv_predictions" in outputs:
            success = np.asarray(outputs["adv_predictions"]).ravel() != labels
        else:
            raise UserError("protocol 'adversarial' needs outputs['adv_predictions'] (n,) or ['success'] (n,)")
        if success.shape != (n,):
            raise UserError(f"success/adv_predictions for {data.name}: expected ({n},), got {success.shape}")
        attacked = np.ones(n, bool)
        if self.cfg["only_correct"] and "clean_predictions" in outputs:
            attacked = np.asarray(outputs["clean_predictions"]).ravel() == labels
        if not attacked.any():
            raise UserError(f"{data.name}: no image is attacked (all are misclassified already)")
        ok = success & attacked
        l2, linf = perturbation_norms(clean, adv)
        if self.cfg["normalise"] == "sqrt_dim":
            l2 = l2 / np.sqrt(clean[0].size)
        m = {"success_rate": float(ok.sum() / attacked.sum()), "n_attacked": int(attacked.sum())}
        m["l2_mean"] = float(l2[ok].mean()) if ok.any() else float("nan")
        m["l2_median"] = float(np.median(l2[ok])) if ok.any() else float("nan")
        m["linf_mean"] = float(linf[ok].mean()) if ok.any() else float("nan")
        if "iterations" in outputs:
            m["iterations_mean"] = float(np.asarray(outputs["iterations"], np.float64).ravel()[attacked].mean())
        t = outputs.get("time", (outputs.get("timings") or {}).get("attack"))
        if t is not None:
            m["time_per_image"] = float(t) / n
        per_item = {"success_rate": np.where(attacked, ok, np.nan).astype(np.float64),
                    "l2_mean": np.where(ok, l2, np.nan).astype(np.float64)}
        return {k: v for k, v in m.items() if not (isinstance(v, float) and np.isnan(v))}, per_item

    def format(self, metrics: dict, data) -> str:
        s = f">> {data.name}: success {100 * metrics['success_rate']:.2f} %"
        if "l2_mean" in metrics:
            s += f", L2 mean {metrics['l2_mean']:.3f} median {metrics['l2_median']:.3f}"
        return s
