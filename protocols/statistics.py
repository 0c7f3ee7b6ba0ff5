"""Paired comparisons of two methods over the same queries / episodes / images.

A claim "A beats B" is decided on the per-item values whose mean is the metric (per-query AP,
per-episode accuracy, per-image success): the mean of the paired differences d_i = a_i - b_i
with a 95% percentile-bootstrap interval (Efron & Tibshirani, An Introduction to the Bootstrap,
1993, ch. 13), resampling the items with replacement. Smucker, Allan & Carterette (A comparison
of statistical significance tests for information retrieval evaluation, CIKM 2007) find the
bootstrap and the randomization test agree for comparing retrieval systems over queries; the
bootstrap also gives the interval the report shows. Items where either value is missing (NaN:
a query without positives, an image one attack did not fool) are left out of the pairing.
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
