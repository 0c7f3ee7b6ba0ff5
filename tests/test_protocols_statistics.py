"""Paired statistics for claims: known answers, and per-item values whose mean is the metric."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.protocols.statistics import (
    Interval,
    bootstrap_mean,
    bootstrap_mean_seeds,
    bootstrap_ratio,
    decide_at_least,
    decide_greater,
    decide_within,
    paired_bootstrap,
    paired_bootstrap_seeds,
)
from visrep.reports.evaluate import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, decide_check
from visrep.reports.tables import Check


def test_bootstrap_known_answers():
    iv = paired_bootstrap([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert iv.mean == pytest.approx(0.1) and iv.lo == pytest.approx(0.1) and iv.hi == pytest.approx(0.1) and iv.n == 3
    same = paired_bootstrap([0.2, 0.9], [0.2, 0.9])
    assert (same.mean, same.lo, same.hi) == (0, 0, 0)
    # NaN items (a query without positives) leave the pairing
    iv = paired_bootstrap([1.0, np.nan, 0.0], [0.0, 0.3, 0.0])
    assert iv.n == 2 and iv.mean == pytest.approx(0.5)
    # the interval of a mean of n fair coin flips has the textbook width 2 * 1.96 * 0.5 / sqrt(n)
    x = np.tile([0.0, 1.0], 200)
    iv = bootstrap_mean(x)
    assert iv.mean == 0.5 and iv.hi - iv.lo == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(400), rel=0.1)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])


def test_two_way_bootstrap_over_seeds_and_items():
    """Seeds x items (Owen's pigeonhole bootstrap): one seed is the plain bootstrap; a difference
    between seeds widens the interval; identical seeds give the interval of one seed's items."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, (3, 2000))
    one = bootstrap_mean_seeds(x[:1])
    assert one == bootstrap_mean(x[0])
    same = bootstrap_mean_seeds(np.repeat(x[:1], 3, axis=0))
    assert same.mean == pytest.approx(x[0].mean()) and same.hi - same.lo == pytest.approx(one.hi - one.lo, rel=0.1)
    shifted = bootstrap_mean_seeds(x + np.array([[-1.0], [0.0], [1.0]]))   # seeds disagree by +-1
    assert shifted.mean == pytest.approx(x.mean()) and shifted.lo < -0.3 and shifted.hi > 1.3
    # NaN cells do not count; an item with no finite value leaves
    y = x.copy()
    y[0, :1000] = np.nan
    y[:, 5] = np.nan
    iv = bootstrap_mean_seeds(y)
    assert iv.n == 1999 and iv.mean == pytest.approx(np.nanmean(y))
    # paired: the differences a - b per (seed, item)
    d = paired_bootstrap_seeds(x + 0.25, x)
    assert (d.mean, d.lo, d.hi) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError):
        paired_bootstrap_seeds(x, x[:2])


def test_claims_with_seeds_are_decided_over_seeds():
    """decide_check on lists of records (one per seed): means over seeds, two-way interval; a gain that
    one seed shows and the others reverse is not a win."""
    rng = np.random.default_rng(1)
    base = [rng.uniform(0.2, 0.8, 300) for _ in range(3)]
    c = Check("greater", "a", "metrics.map", b="b")
    better = [np.clip(b + 0.05, 0, 1) for b in base]
    r = decide_check(c, [_rec(v.mean(), v.tolist()) for v in better], [_rec(v.mean(), v.tolist()) for v in base])
    assert r.outcome == HOLDS and "two-way bootstrap over 3 seeds x 300 items" in r.text and "means over 3 seeds" in r.text
    assert r.a == pytest.approx(np.mean([v.mean() for v in better]))
    flip = [np.clip(b + s, 0, 1) for b, s in zip(base, (0.3, -0.1, -0.1))]     # one lucky seed
    assert decide_check(c, [_rec(v.mean(), v.tolist()) for v in flip],
                        [_rec(v.mean(), v.tolist()) for v in base]).outcome == INCONCLUSIVE
    assert decide_check(c, [_rec(v.mean(), v.tolist()) for v in flip[:1]],
                        [_rec(v.mean(), v.tolist()) for v in base[:1]]).outcome == HOLDS


def test_decisions():
    assert decide_greater(Interval(0.02, 0.01, 0.03, 50)) is True
    assert decide_greater(Interval(-0.02, -0.03, -0.01, 50)) is False
    assert decide_greater(Interval(0.01, -0.01, 0.03, 50)) is None
    assert decide_greater(Interval(0.0, 0.0, 0.0, 50)) is None          # equal is not better
    assert decide_at_least(Interval(0.0, 0.0, 0.0, 50)) is True          # but is at least as good
    assert decide_within(Interval(0.001, -0.002, 0.004, 50), 0.005) is True
    assert decide_within(Interval(0.02, 0.01, 0.03, 50), 0.005) is False
    assert decide_within(Interval(0.004, -0.001, 0.009, 50), 0.005) is None
    assert decide_greater(Interval(float("nan"), float("nan"), float("nan"), 0)) is None


def _rec(map_, aps):
    return {"metrics": {"map": map_}, "per_item": {"map": aps}}


def test_claims_decided_per_query_not_on_the_means():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 60)
    better = np.clip(base + 0.05, 0, 1)
    noisy = base + rng.normal(0, 0.2, 60)
    c = Check("greater", "a", "metrics.map", b="b")
    assert decide_check(c, _rec(better.mean(), better.tolist()), _rec(base.mean(), base.tolist())).outcome == HOLDS
    assert decide_check(c, _rec(base.mean(), base.tolist()), _rec(better.mean(), better.tolist())).outcome == DOES_NOT_HOLD
    # a higher mean that one noisy query decides is not a win
    r = decide_check(c, _rec(noisy.mean(), noisy.tolist()), _rec(base.mean(), base.tolist()))
    assert r.outcome == INCONCLUSIVE and r.lo < 0 < r.hi and "paired bootstrap over 60 items" in r.text
    # None in a record stands for a query that does not count
    r = decide_check(c, _rec(0.5, [1.0, None, 0.5]), _rec(0.25, [0.5, 0.1, 0.0]))
    assert r.n == 2
    # timings have no per-item values: the two numbers are compared, and the text says so
    t = decide_check(Check("less", "a", "timings.query", b="b"), {"metrics": {}, "timings": {"query": 1.0}},
                     {"metrics": {}, "timings": {"query": 2.0}})
    assert t.outcome == HOLDS and t.n == 0 and "no per-item values" in t.how


def test_speed_claims_decided_on_repeated_timings():
    # known answer: a constant 4x ratio per query has a degenerate interval at 4
    iv = bootstrap_ratio([4.0, 8.0, 12.0], [1.0, 2.0, 3.0])
    assert (iv.mean, iv.lo, iv.hi, iv.n) == (4.0, 4.0, 4.0, 3)
    rng = np.random.default_rng(0)
    slow = rng.lognormal(np.log(10e-3), 0.3, 80)
    fast = slow / 12 * rng.lognormal(0, 0.05, 80)
    c = Check("ratio_at_least", "slow", "timings.query", b="fast", value=10)
    rec = lambda t: {"metrics": {}, "timings": {"query": float(t.mean())}, "per_item": {"timings.query": t.tolist()}}  # noqa: E731
    r = decide_check(c, rec(slow), rec(fast))
    assert r.outcome == HOLDS and 10 < r.lo < 12 < r.hi < 14 and "paired bootstrap over 80 timed items" in r.how
    # about 10x with noisy timings: the interval straddles 10, so the claim is inconclusive, not a coin flip
    noisy = slow / 10 * rng.lognormal(0, 0.5, 80)
    r = decide_check(c, rec(slow), rec(noisy))
    assert r.outcome == INCONCLUSIVE and r.lo < 10 < r.hi
    # unpaired repeats (different counts) are resampled independently
    r = decide_check(c, rec(slow), rec(fast[:30] * 3))
    assert r.outcome == DOES_NOT_HOLD and r.hi < 10 and "repeats" in r.how


def test_per_item_means_are_the_metrics(oxford5k_features):
    from visrep.context import RunContext
    from visrep.registry import datasets, methods, protocols
    ctx = RunContext(data_root=oxford5k_features.parent.parent, quiet=True)
    data = datasets.create("oxford5k", features=str(oxford5k_features)).load(ctx)
    out = methods.create("knn").run(data, ctx)
    for name in ("oxford", "instre"):
        m, per = protocols.create(name).score(out, data)
        assert np.nanmean(per["map"]) == pytest.approx(m["map"], abs=1e-12)
        assert np.count_nonzero(np.isfinite(per["map"])) == m["n_queries"]


def test_per_item_of_the_learning_protocols_average_to_their_metrics():
    from visrep.datasets.episodes import sample_episodes
    from visrep.protocols.classification import Classification
    from visrep.protocols.few_shot import FewShot
    from visrep.protocols.metric_learning import MetricLearning

    from visrep.data import LabelledData

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 20)
    pool = LabelledData("toy", labels, [str(i) for i in range(6)], "test")
    ep = sample_episodes(pool, 5, 1, 2, n_episodes=4, seed=0)
    pred = ep.query_labels.copy()
    pred[0, :5] = (pred[0, :5] + 1) % 5
    m, per = FewShot().score({"predictions": pred}, ep)
    assert per["accuracy"].tolist() == [0.5, 1, 1, 1] and np.mean(per["accuracy"]) == m["accuracy"]
    scores = rng.standard_normal((len(labels), 6))
    m, per = Classification().score({"scores": scores}, pool)
    assert np.mean(per["top1_error"]) == pytest.approx(m["top1_error"])
    assert np.mean(per["accuracy"]) == pytest.approx(m["accuracy"])
    x = rng.standard_normal((len(labels), 8)) + 3 * np.eye(6, 8)[labels]
    m, per = MetricLearning(nmi=False).score({"embeddings": x}, pool)
    for k in (1, 2, 4, 8):
        assert np.mean(per[f"recall@{k}"]) == pytest.approx(m[f"recall@{k}"])
