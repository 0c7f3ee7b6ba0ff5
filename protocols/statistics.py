"""Paired comparisons of two methods over the same queries / episodes / images.

A claim "A beats B" is decided on the per-item values whose mean is the metric (per-query AP,
per-episode accuracy, per-image success): the mean of the paired differences d_i = a_i - b_i
with a 95% percentile-bootstrap interval (Efron & Tibshirani, An Introduction to the Bootstrap,
1993, ch. 13), resampling the items with replacement. Smucker, Allan & Carterette (A comparison
of statistical significance tests for information retrieval evaluation, CIKM 2007) find the
bootstrap and the randomization test agree for comparing retrieval systems over queries; the
bootstrap also gives the interval the report shows. Items where either value is missing (NaN:
a query without positives, an image one attack did not fool) are left out of the pairing.
A claim run with several training seeds on the same items is decided over seeds x items by the
two-way bootstrap of :func:`bootstrap_mean_seeds`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: resamples of every interval; the seed is fixed so the report is reproducible
N_BOOT = 10000
SEED = 0


@dataclass(frozen=True)
class Interval:
    """Mean difference (or mean) over ``n`` items and its bootstrap interval [lo, hi] at ``level``."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95


def _bootstrap_means(d: np.ndarray, n_boot: int, seed: int, chunk: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(d)
    out = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        out[s:s + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def bootstrap_mean(x, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95) -> Interval:
    """Mean of the finite values of `x` (n,) with its percentile-bootstrap interval."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    boots = _bootstrap_means(x, n_boot, seed)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return Interval(float(x.mean()), float(lo), float(hi), int(x.size), level)


def paired_bootstrap(a, b, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95) -> Interval:
    """Mean of a_i - b_i over the items where both are finite, with its percentile-bootstrap interval.

    `a`, `b`: (n,) per-item values of two runs on the same items in the same order.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values of different lengths: {a.shape} vs {b.shape}")
    both = np.isfinite(a) & np.isfinite(b)
    return bootstrap_mean(a[both] - b[both], n_boot, seed, level)


def bootstrap_mean_seeds(x, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95,
                         chunk: int = 100) -> Interval:
    """Mean over seeds x items of `x` (S, n) -- S training seeds evaluated on the same n items -- with
    a percentile interval of the two-way ("pigeonhole") bootstrap: every resample draws S seeds and
    n items with replacement, independently, and averages the finite cells of the crossed sample
    (Owen, The pigeonhole bootstrap, Ann. Appl. Stat. 2007). The interval thus holds both the
    variation between trainings and that between test items; with S = 1 it is :func:`bootstrap_mean`'s.
    ``Interval.n`` is the number of items with a finite value under some seed.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (seeds, items) values, got shape {x.shape}")
    if x.shape[0] == 1:
        return bootstrap_mean(x[0], n_boot, seed, level)
    keep = np.isfinite(x).any(axis=0)
    x = x[:, keep]
    S, n = x.shape
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    ok = np.isfinite(x)
    v = np.where(ok, x, 0.0)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        # how often each seed (m, S) and each item (m, n) is drawn; a cell (s, i) counts c_s * w_i times
        c = np.bincount((np.arange(m)[:, None] * S + rng.integers(0, S, size=(m, S))).ravel(),
                        minlength=m * S).reshape(m, S)
        w = np.bincount((np.arange(m)[:, None] * n + rng.integers(0, n, size=(m, n))).ravel(),
                        minlength=m * n).reshape(m, n).astype(np.float64)
        num, den = (w @ v.T * c).sum(1), (w @ ok.T.astype(np.float64) * c).sum(1)
        boots[s:s + m] = num / np.maximum(den, 1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [a, 1.0 - a])
    return Interval(float(v.sum() / ok.sum()), float(lo), float(hi), int(n), level)


def paired_bootstrap_seeds(a, b, n_boot: int = N_BOOT, seed: int = SEED, level: float = 0.95) -> Interval:
    """Mean of a - b over seeds x items, a and b (S, n) of two methods trained with the same S seeds
    on the same items (a cell counts where both are finite), with :func:`bootstrap_mean_seeds`' interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired (seeds, items) values of different shapes: {a.shape} vs {b.shape}")
    return bootstrap_mean_seeds(a - b, n_boot, seed, level)


def bootstrap_ratio(a, b, paired: bool = True, n_boot: int = N_BOOT, seed: int = SEED,
                    level: float = 0.95) -> Interval:
    """Ratio of means mean(a) / mean(b) of two sets of timings with its percentile-bootstrap interval.

    `a` (n,), `b` (m,): repeated timings (per query, per pair, per repeat; seconds, finite > 0 kept).
    ``paired`` (n == m, the same queries timed under both methods) resamples the same items of both,
    so the per-query difficulty cancels; otherwise the two sets are resampled independently.
    ``Interval.n`` is the number of items (paired) or the smaller set's size.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired timings of different lengths: {a.shape} vs {b.shape}")
        keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
        a, b = a[keep], b[keep]
    else:
        a, b = a[np.isfinite(a) & (a > 0)], b[np.isfinite(b) & (b > 0)]
    if a.size == 0 or b.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(n_boot, a.size))
    ib = ia if paired else rng.integers(0, b.size, size=(n_boot, b.size))
    boots = a[ia].mean(axis=1) / b[ib].mean(axis=1)
    q = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [q, 1.0 - q])
    return Interval(float(a.mean() / b.mean()), float(lo), float(hi), int(min(a.size, b.size)), level)


def decide_greater(iv: Interval) -> bool | None:
    """'A > B': True when the interval of A - B lies above 0, False below, None when it covers 0."""
    if iv.n == 0:
        return None
    if iv.lo > 0:
        return True
    if iv.hi < 0:
        return False
    return None


def decide_at_least(iv: Interval, value: float = 0.0) -> bool | None:
    """'A >= B' (or a mean >= value): True when the interval lies at or above `value`, False when it
    lies below, None when it straddles it."""
    if iv.n == 0:
        return None
    if iv.lo >= value:
        return True
    if iv.hi < value:
        return False
    return None


def decide_within(iv: Interval, tol: float) -> bool | None:
    """'|A - B| <= tol': True when the interval lies inside [-tol, tol], False when it lies wholly
    outside, None otherwise (an equivalence test read off the interval)."""
    if iv.n == 0:
        return None
    if -tol <= iv.lo and iv.hi <= tol:
        return True
    if iv.lo > tol or iv.hi < -tol:
        return False
    return None
