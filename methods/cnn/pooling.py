"""Global CNN descriptors by pooling convolutional activations: MAC, SPoC, GeM, R-MAC, CroW.

All pool the last convolutional map X (C, H, W) float32, non-negative, of a backbone
(:mod:`visrep.methods.cnn.backbones`; default the real ImageNet EfficientNet-Lite0) into a
(C,) vector, then L2-normalize:

- MAC, max-pooling: ``v_c = max_{ij} x_cij`` (Tolias, Sicre & Jégou, *Particular object
  retrieval with integral max-pooling of CNN activations*, ICLR 2016, Eq. 1; Razavian et al. 2015).
- SPoC, sum-pooling: ``v_c = mean_{ij} x_cij`` (Babenko & Lempitsky, *Aggregating local deep
  features for image retrieval*, ICCV 2015; the mean, as cnnimageretrieval, ranks the same).
- GeM, generalized mean: ``v_c = (mean_{ij} max(x_cij, eps)^p)^{1/p}`` (Radenović, Tolias &
  Chum, *Fine-tuning CNN image retrieval with no human annotation*, TPAMI 2019, Eq. 2); p = 3
  fixed here (learning p is a training concern: pass the learned value as ``p``). p = 1 is
  SPoC, p -> inf is MAC.
- R-MAC, regional MAC (Tolias et al. ICLR 2016, Sec. 3): square regions of side
  ``floor(2 min(H, W) / (l + 1))`` at scales l = 1..L, placed uniformly with about 40%
  overlap along the longer side (the number of positions chosen to make the overlap closest
  to 0.4, as in the authors' and cnnimageretrieval's code); each region's MAC is
  L2-normalized and the sum over the regions and the whole map is L2-normalized. (The
  paper's per-region PCA-whitening is learned: use ``whiten`` on the result, or the regional
  vectors with :mod:`visrep.methods.cnn.whitening`.)
- CroW, cross-dimensional weighting (Kalantidis, Mellina & Osindero, ECCV Workshops 2016,
  Sec. 3, a = b = 2): spatial weights ``S = (S' / ||S'||_a)^{1/b}`` with ``S'_ij = sum_c x_cij``,
  channel weights ``w_c = log(sum_k Q_k / (eps + Q_c))`` with ``Q_c`` the fraction of non-zero
  activations of channel c, ``v_c = w_c sum_ij S_ij x_cij`` (the talk's "feature saliency").

Multi-scale (cnnimageretrieval ``extract_ms``): the image is described at each scale s of
``scales`` (longer side ``imsize * s``) and the per-scale vectors combined as
``(mean_s v_s^m)^{1/m}`` with m = p for GeM and 1 otherwise, then L2-normalized. Scales are a
list parameter: ``--set 'scales=[1,0.707,1.414]'`` on the command line, ``scales = [1, 0.707,
1.414]`` in a spec file.

Output: (n, C) float32, unit rows (C = 1280 for EfficientNet-Lite0).
"""
from __future__ import annotations

import math

import numpy as np

from visrep.errors import UserError
from visrep.features import l2_normalize

EPS = 1e-6



def _check_map(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or min(x.shape) < 1:
        raise UserError(f"expected a (C, H, W) activation map, got shape {x.shape}")
    return x


def mac(x: np.ndarray) -> np.ndarray:
    """Max-pooling (C, H, W) -> (C,)."""
    return _check_map(x).max(axis=(1, 2))


def spoc(x: np.ndarray) -> np.ndarray:
    """Average (sum) pooling (C, H, W) -> (C,)."""
    return _check_map(x).mean(axis=(1, 2))


def gem(x: np.ndarray, p: float = 3.0, eps: float = EPS) -> np.ndarray:
    """Generalized-mean pooling (TPAMI 2019 Eq. 2) (C, H, W) -> (C,)."""
    x = _check_map(x).astype(np.float64)
    return (np.maximum(x, eps) ** p).mean(axis=(1, 2)) ** (1.0 / p)


def rmac_regions(H: int, W: int, L: int = 3, overlap: float = 0.4) -> list[tuple[int, int, int]]:
    """R-MAC regions of an H x W map as (top, left, side) squares, scales l = 1..L (ICLR 2016 Sec. 3).

    Side ``floor(2 min(H, W) / (l + 1))``; along the longer side l + extra positions where
    extra in 1..6 makes the overlap of the l = 1 regions closest to `overlap`; positions spread
    uniformly from border to border (floored). The whole map is not included (see :func:`rmac`).
    """
    w = min(H, W)
    extra_w = extra_h = 0
    if H != W:
        steps = np.arange(2, 8, dtype=np.float64)
        b = (max(H, W) - w) / (steps - 1)
        best = int(np.argmin(np.abs((w * w - w * b) / (w * w) - overlap)))
        if H < W:
            extra_w = best + 1
        else:
            extra_h = best + 1
    out = []
    for l in range(1, L + 1):
        wl = math.floor(2 * w / (l + 1))
        if wl == 0:
            continue
        wl2 = math.floor(wl / 2 - 1)

        def starts(size, extra, l=l, wl=wl, wl2=wl2):
            m = l + extra                       # number of positions along this side
            step = 0.0 if m == 1 else (size - wl) / (m - 1)
            return [int(math.floor(wl2 + i * step) - wl2) for i in range(m)]
        for top in starts(H, extra_h):
            for left in starts(W, extra_w):
                out.append((top, left, wl))
    return out


def regional_vectors(x: np.ndarray, L: int = 3, pool=mac, include_full: bool = True) -> np.ndarray:
    """L2-normalized pooled vectors of the R-MAC regions (+ the whole map first) -> (m, C)."""
    x = _check_map(x)
    vecs = [pool(x)] if include_full else []
    for top, left, s in rmac_regions(x.shape[1], x.shape[2], L):
        vecs.append(pool(x[:, top:top + s, left:left + s]))
    return l2_normalize(np.stack(vecs))


def rmac(x: np.ndarray, L: int = 3) -> np.ndarray:
    """R-MAC: sum of the L2-normalized MACs of the whole map and of its regions (C,) (not normalized)."""
    return regional_vectors(x, L, mac, include_full=True).sum(axis=0)


def crow(x: np.ndarray, a: float = 2.0, b: float = 2.0, eps: float = 1e-6) -> np.ndarray:
    """CroW cross-dimensional weighting (Kalantidis et al. 2016, Sec. 3) (C, H, W) -> (C,)."""
    x = _check_map(x).astype(np.float64)
    s = x.sum(axis=0)
    z = (s ** a).sum() ** (1.0 / a)
    S = (s / z) ** (1.0 / b) if z > 0 else np.zeros_like(s)
    q = (x > 0).mean(axis=(1, 2))
    w = np.log(q.sum() / (eps + q)) if q.sum() > 0 else np.zeros_like(q)
    return w * (x * S[None]).sum(axis=(1, 2))


