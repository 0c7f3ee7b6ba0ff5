"""Expanding Gaussian mixtures (EGM) generalized from points to 2-D functions (saliency maps).

The talk (slides 63-64): "EGM generalized from points to 2d functions (images)" (Avrithis &
Kalantidis, *Approximate Gaussian mixtures for large scale vocabularies*, ECCV 2012; Siméoni,
Iscen, Tolias, Avrithis & Chum, WACV 2018 / MVA 2019). A saliency map S (H, W) >= 0 is read as
a set of points, the grid positions p_i (N = H W, 2) in (row, column) cell units, each with a
mass s_i = S(p_i) / sum S; EGM fits an isotropic Gaussian mixture
``sum_k pi_k N(p; mu_k, sigma_k^2 I)`` to this weighted point set and infers the number of
components, as EGM does for points:

1. Initialization: one component on every point of positive mass (mu_k = p_k, pi_k = s_k,
   sigma_k = ``sigma0`` cells), as EGM starts with all data points as components.
2. E-step: ``gamma_ik = pi_k N(p_i; mu_k, sigma_k^2) / sum_j pi_j N(p_i; mu_j, sigma_j^2)``.
3. M-step with masses (the point-set equations with each point counted s_i times):
   ``N_k = sum_i s_i gamma_ik``, ``pi_k = N_k``, ``mu_k = sum_i s_i gamma_ik p_i / N_k``,
   ``2 sigma_k^2 = sum_i s_i gamma_ik ||p_i - mu_k||^2 / N_k``.
   Expand (AGM Sec. 3.3: "overestimate the extent of each component as much as this does not
   overlap with its neighbours"): our reading is that the points for which k is the most
   responsible component count with full weight, ``2 sigma_k^2 = max(that, sum_{i in V_k} s_i
   ||p_i - mu_k||^2 / sum_{i in V_k} s_i)`` with V_k = {i : argmax_j gamma_ij = k}; floored at
   ``min_sigma``^2 (a grid of cells has no finer scale).
4. P-step (purge, AGM Sec. 3.2, eqs. for the generalized responsibility): with the L2 inner
   product of two components ``<p_i, p_k> = pi_i pi_k N(mu_i; mu_k, (sigma_i^2 + sigma_k^2) I)``,
   components are visited by decreasing pi and component i is purged when
   ``rho_i = ||p_i||^2 / (||p_i||^2 + sum_{j kept} <p_i, p_j>)`` falls below ``tau``; pi is
   renormalized over the kept ones.
5. Stop when nothing was purged and no mean moved more than ``tol`` cells, or after ``niter``.

Output: means (K, 2) (row, col) float64, variances (K,), weights (K,) summing to 1, sorted by
decreasing weight; :func:`mixture_map` evaluates the fitted density on the grid (H, W), the 2-D
weight used for pooling. The defaults tau = 0.5 and sigma0 = 1 cell are ours (not numbers we could read in the papers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from visrep.errors import UserError


@dataclass
class EGMResult:
    """A fitted 2-D mixture: mu (K, 2) (row, col), sigma2 (K,), pi (K,); history of K per iteration."""

    mu: np.ndarray
    sigma2: np.ndarray
    pi: np.ndarray
    history: list = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.pi)


def _log_gauss2(d2: np.ndarray, s2: np.ndarray) -> np.ndarray:
    return -np.log(2 * np.pi * s2) - d2 / (2 * s2)


def purge_mask(mu: np.ndarray, sigma2: np.ndarray, pi: np.ndarray, tau: float) -> np.ndarray:
    """AGM P-step over 2-D isotropic components -> (K,) bool, True = purged.

    Visit components by decreasing pi (ties: lower index first); purge i when
    ``rho_i = ||p_i||^2 / (||p_i||^2 + sum_{j kept} <p_i, p_j>) < tau``, where
    ``<p_i, p_j> = pi_i pi_j N(mu_i; mu_j, (sigma_i^2 + sigma_j^2) I)`` and ``||p_i||^2 = <p_i, p_i>``.
    """
    K = len(pi)
    d2 = ((mu[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    s2 = sigma2[:, None] + sigma2[None, :]
    ip = pi[:, None] * pi[None, :] * np.exp(_log_gauss2(d2, s2))          # (K, K) inner products
    order = np.lexsort((np.arange(K), -pi))
    purged = np.ones(K, bool)
    kept_sum = np.zeros(K)                                                # sum_{j kept} <p_i, p_j>
    for i in order:
        self_ip = ip[i, i]
        if pi[i] <= 0 or self_ip <= 0:
            continue
        if self_ip / (self_ip + kept_sum[i]) >= tau:
            purged[i] = False
            kept_sum += ip[:, i]
    return purged


def egm_fit(S, sigma0: float = 1.0, tau: float = 0.5, niter: int = 30, min_sigma: float = 0.5,
            tol: float = 1e-3) -> EGMResult:
    """Fit EGM (see the module docstring) to a saliency map S (H, W) >= 0 -> :class:`EGMResult`."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or min(S.shape) < 1:
        raise UserError(f"EGM needs a 2-D saliency map (H, W), got shape {S.shape}")
    if not np.all(np.isfinite(S)) or (S < 0).any():
        raise UserError("EGM needs a finite, non-negative saliency map")
    if not 0 < tau <= 1:
        raise UserError(f"EGM: tau must be in (0, 1], got {tau}")
    H, W = S.shape
    rr, cc = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    pts = np.stack([rr.ravel(), cc.ravel()], 1)
    s = S.ravel()
    if s.sum() <= 0:          # nothing salient: one broad component over the whole map
        return EGMResult(np.array([[(H - 1) / 2, (W - 1) / 2]]), np.array([max(H, W) ** 2 / 4.0]), np.ones(1))
    s = s / s.sum()
    live = s > 0
    pts_l, s_l = pts[live], s[live]
    mu, pi = pts_l.copy(), s_l.copy()
    sigma2 = np.full(len(pi), float(sigma0) ** 2)
    floor = float(min_sigma) ** 2
    history = []
    for _ in range(niter):
        d2 = ((pts_l[:, None, :] - mu[None, :, :]) ** 2).sum(-1)           # (n, K)
        logp = np.log(pi)[None] + _log_gauss2(d2, sigma2[None])
        logp -= logp.max(1, keepdims=True)
        g = np.exp(logp)
        g /= g.sum(1, keepdims=True)
        r = s_l[:, None] * g                                              # mass-weighted responsibilities
        nk = r.sum(0)
        ok = nk > 1e-12
        mu_new = mu.copy()
        mu_new[ok] = (r[:, ok].T @ pts_l) / nk[ok, None]
        d2n = ((pts_l[:, None, :] - mu_new[None, :, :]) ** 2).sum(-1)
        soft = (r * d2n).sum(0) / np.maximum(nk, 1e-300) / 2
        owner = g.argmax(1)
        inner_mass = np.bincount(owner, s_l, minlength=len(pi))
        inner_d2 = np.bincount(owner, s_l * d2n[np.arange(len(s_l)), owner], minlength=len(pi))
        inner = np.where(inner_mass > 0, inner_d2 / np.maximum(inner_mass, 1e-300) / 2, 0.0)
        sigma2_new = np.maximum(np.maximum(soft, inner), floor)
        pi_new = np.where(ok, nk, 0.0)
        moved = float(np.sqrt(((mu_new - mu) ** 2).sum(1)).max())
        purged = purge_mask(mu_new, sigma2_new, pi_new, tau) | ~ok
        keep = ~purged
        mu, sigma2, pi = mu_new[keep], sigma2_new[keep], pi_new[keep] / pi_new[keep].sum()
        history.append(int(keep.sum()))
        if not purged.any() and moved <= tol:
            break
    order = np.argsort(-pi, kind="stable")
    return EGMResult(mu[order], sigma2[order], pi[order], history)


def mixture_map(res: EGMResult, shape: tuple[int, int]) -> np.ndarray:
    """The fitted density ``sum_k pi_k N(p; mu_k, sigma_k^2 I)`` on the (H, W) grid -> (H, W) float64."""
    H, W = shape
    rr, cc = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    d2 = (rr[..., None] - res.mu[:, 0]) ** 2 + (cc[..., None] - res.mu[:, 1]) ** 2
    return (res.pi * np.exp(_log_gauss2(d2, res.sigma2))).sum(-1)
