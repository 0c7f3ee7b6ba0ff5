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
  attacked images) and seconds per image;
- graph smoothness of the perturbation r = x_adv - x on the graph of the clean image x (Zhang,
  Avrithis, Furon & Amsaleg, Smooth adversarial examples, EURASIP JIS 2020, §3): 4-neighbour
  weights w_ij = exp(-lam ||x_i - x_j||^2) (colour distance for RGB images), W_n = D^{-1/2} W D^{-1/2}, L = I - W_n, and the
  Rayleigh quotient r^T L r / r^T r = sum_{i~j} w_ij (r_i / sqrt(d_i) - r_j / sqrt(d_j))^2 / ||r||^2
  in [0, 2] (0: r proportional to D^{1/2} 1, constant on connected flat regions; large: r
  alternates across flat areas), mean over successful examples; lam = 10 as in the paper's MNIST
  graphs (pixel values in [0, 1]).

Outputs contract (task ``adversarial``): ``adversarial`` float (n, ...) in [0, 1] with the
shape of the clean images; ``adv_predictions`` int (n,) (or ``success`` bool (n,));
optional ``clean`` float (n, ...) in [0, 1] (default: ``data.x`` / 255 for uint8),
``clean_predictions`` int (n,), ``iterations`` (n,), ``time`` total seconds (or
``timings["attack"]``), ``indices`` int (m,): when an attack covers only some items of the
dataset (e.g. the first 1000 test images), every array above has m rows, one per listed item,
and the labels and clean images are those items'. Metrics: ``success_rate``, ``l2_mean``, ``l2_median``, ``linf_mean``,
``iterations_mean``, ``time_per_image``, ``n_attacked``, ``graph_smoothness``. Per item (the record's
``per_item``): ``success_rate`` (1 / 0 per attacked image, NaN if left out), ``l2_mean`` (the L2 of each
successful example, NaN otherwise) and ``graph_smoothness``: :func:`robustness_curve` turns them into the
success-vs-distortion curve of the report.
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


def graph_smoothness(clean: np.ndarray, adv: np.ndarray, lam: float = 10.0) -> np.ndarray:
    """(n,) r^T (I - D^{-1/2} W D^{-1/2}) r / r^T r of r = adv - clean on each clean image's 4-neighbour graph.

    clean, adv (n, H, W) or (n, H, W, C) in [0, 1]: one graph on the pixels, weights from the squared colour
    distance summed over the C channels (the grey-level difference when C = 1), the energies of the C channels of
    r on it summed; NaN where r = 0.
    Zhang et al., Smooth adversarial examples, EURASIP JIS 2020, §3 (the graph and Laplacian of the attack).
    """
    x = np.asarray(clean, np.float64)
    r = np.asarray(adv, np.float64) - x
    if x.ndim == 3:
        x, r = x[..., None], r[..., None]
    wr = np.exp(-lam * ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum(-1, keepdims=True))    # (n, H, W-1, 1)
    wd = np.exp(-lam * ((x[:, 1:] - x[:, :-1]) ** 2).sum(-1, keepdims=True))          # (n, H-1, W, 1)
    d = np.zeros_like(x)
    d[:, :, 1:] += wr
    d[:, :, :-1] += wr
    d[:, 1:] += wd
    d[:, :-1] += wd
    s = r / np.sqrt(np.maximum(d, 1e-300))
    energy = (wr * (s[:, :, 1:] - s[:, :, :-1]) ** 2).reshape(len(x), -1).sum(1) + \
        (wd * (s[:, 1:] - s[:, :-1]) ** 2).reshape(len(x), -1).sum(1)
    norm = (r * r).reshape(len(x), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, energy / np.where(norm > 0, norm, 1.0), np.nan)


def success_at_distortion(l2: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """(m,) fraction of attacked images whose adversarial example has L2 <= eps[j] (success vs distortion budget).

    l2 (n,): the per-image L2 of each attacked image's successful adversarial example, NaN (or inf)
    where the attack failed (a failure counts as never successful); images not attacked are left
    out by the caller (the protocol's per-item ``success_rate`` is NaN for them). eps (m,) budgets.
    The curve is the empirical CDF of the successful L2s scaled by the success rate: it rises from
    0 to ``success_rate`` at eps >= max L2 (the "success rate vs distortion" curve of e.g. Rony et
    al. CVPR 2019, Fig. 4, and Zhang et al. TIFS 2021).
    """
    d = np.asarray(l2, np.float64).ravel()
    e = np.asarray(eps, np.float64).ravel()
    if d.size == 0:
        return np.full(e.shape, np.nan)
    ok = np.sort(d[np.isfinite(d)])
    return np.searchsorted(ok, e, side="right") / d.size


def robustness_curve(per_item: dict, eps: np.ndarray | None = None, n_eps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(eps (m,), fraction (m,)) of a record's per-item values of this protocol (lists with None = NaN).

    per_item["success_rate"] (n,): 1 / 0 per attacked image, NaN for images left out; per_item["l2_mean"]
    (n,): L2 of the successful examples, NaN for failures. eps defaults to n_eps points on [0, 1.05 max L2].
    """
    s = np.array([np.nan if v is None else v for v in per_item.get("success_rate", [])], np.float64)
    d = np.array([np.nan if v is None else v for v in per_item.get("l2_mean", [])], np.float64)
    if s.shape != d.shape:
        raise UserError(f"per-item success_rate {s.shape} and l2_mean {d.shape} differ in length")
    attacked = np.isfinite(s)
    d = np.where(attacked & (s > 0), d, np.nan)[attacked]
    if eps is None:
        top = np.nanmax(d) if np.isfinite(d).any() else 1.0
        eps = np.linspace(0.0, 1.05 * top, n_eps)
    return np.asarray(eps, np.float64), success_at_distortion(d, eps)


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
        Param("smooth_lambda", float, 10.0, "lam of the graph weights exp(-lam (x_i - x_j)^2) of graph_smoothness "
              "(10: the smooth-adversarial paper's MNIST graphs)", low=0),
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
        smooth = graph_smoothness(clean, adv, self.cfg["smooth_lambda"]) if clean.ndim in (3, 4) else None
        if smooth is not None and (ok & np.isfinite(smooth)).any():
            m["graph_smoothness"] = float(np.nanmean(np.where(ok, smooth, np.nan)))
        if "iterations" in outputs:
            m["iterations_mean"] = float(np.asarray(outputs["iterations"], np.float64).ravel()[attacked].mean())
        t = outputs.get("time", (outputs.get("timings") or {}).get("attack"))
        if t is not None:
            m["time_per_image"] = float(t) / n
        per_item = {"success_rate": np.where(attacked, ok, np.nan).astype(np.float64),
                    "l2_mean": np.where(ok, l2, np.nan).astype(np.float64)}
        if smooth is not None:
            per_item["graph_smoothness"] = np.where(ok, smooth, np.nan).astype(np.float64)
        return {k: v for k, v in m.items() if not (isinstance(v, float) and np.isnan(v))}, per_item

    def format(self, metrics: dict, data) -> str:
        s = f">> {data.name}: success {100 * metrics['success_rate']:.2f} %"
        if "l2_mean" in metrics:
            s += f", L2 mean {metrics['l2_mean']:.3f} median {metrics['l2_median']:.3f}"
        return s
