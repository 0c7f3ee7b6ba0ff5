"""Feature saliency (FS) maps and saliency-weighted GeM pooling (talk Part II, object discovery).

- FS map, the talk's "feature saliency (FS) map: sparsity-sensitive channel weights on
  convolutional activations" (slide 63, citing Kalantidis, Mellina & Osindero ECCVW 2016 and
  Siméoni, Iscen, Tolias, Avrithis & Chum WACV 2018 / MVA 2019): the channels of the last
  convolutional map X (C, H, W) are summed with CroW's sparsity-sensitive channel weights
  ``w_c = log(sum_k Q_k / (eps + Q_c))`` (Kalantidis et al. 2016, Sec. 3.2, Eq. 5; ``Q_c`` the
  fraction of non-zero activations of channel c), ``FS(p) = sum_c w_c x_c(p)`` (H, W): channels
  that fire rarely (specific patterns) weigh more than channels active everywhere.
- Saliency-weighted GeM: ``v_c = (sum_p s(p) max(x_c(p), eps)^P / sum_p s(p))^{1/P}`` (C,), the
  GeM of Radenović, Tolias & Chum (TPAMI 2019, Eq. 2) with the uniform spatial average replaced
  by the average under a non-negative 2-D weight s (H, W): "global features, pooled from FS/OS
  regions" (slide 67). A uniform s gives GeM exactly; an all-zero s falls back to uniform.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

EPS = 1e-6


def _check_map(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or min(x.shape) < 1:
        raise UserError(f"expected a (C, H, W) activation map, got shape {x.shape}")
    return x


def channel_sparsity_weights(x, eps: float = 1e-6) -> np.ndarray:
    """CroW channel weights (Kalantidis et al. ECCVW 2016, Eq. 5) of a map (C, H, W) -> (C,) float64.

    ``Q_c`` = fraction of positions where channel c is non-zero; ``w_c = log(sum_k Q_k / (eps + Q_c))``.
    All-zero maps give all-zero weights.
    """
    x = _check_map(x)
    q = (x > 0).mean(axis=(1, 2))
    if q.sum() <= 0:
        return np.zeros(x.shape[0])
    return np.log(q.sum() / (eps + q))


def feature_saliency(x, eps: float = 1e-6) -> np.ndarray:
    """FS map (H, W) float64 of activations (C, H, W): channels summed with :func:`channel_sparsity_weights`."""
    x = _check_map(x)
    w = channel_sparsity_weights(x, eps)
    return np.maximum(np.tensordot(w, x, axes=(0, 0)), 0.0)


def weighted_gem(x, s, p: float = 3.0, eps: float = EPS) -> np.ndarray:
    """Saliency-weighted GeM (C,) float64 of activations x (C, H, W) under weights s (H, W) >= 0."""
    x = _check_map(x)
    s = np.asarray(s, dtype=np.float64)
    if s.shape != x.shape[1:]:
        raise UserError(f"saliency map of shape {s.shape} does not match the activation map {x.shape[1:]}")
    if not np.all(np.isfinite(s)) or (s < 0).any():
        raise UserError("saliency weights must be finite and non-negative")
    total = s.sum()
    w = np.full(s.shape, 1.0 / s.size) if total <= 0 else s / total
    return np.tensordot(np.maximum(x, eps) ** p, w, axes=([1, 2], [0, 1])) ** (1.0 / p)
