"""Per-query online timings of diffusion / rwr / fsr (issue 16) and the speed claims decided on them.

With ``query_batch = 1`` each query is solved alone and timed; the record carries
``per_item["timings.query"]`` and ``["timings.query_solve"]`` (one positive time per query), and
``ratio_at_least`` claims are decided by the paired bootstrap of the ratio of means over queries.
A block of queries (the default) is not split into per-query times: no per-item timings then.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np
import pytest
from visrep.methods.manifolds.plugins import Diffusion
from visrep.reports.evaluate import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, decide_check
from visrep.reports.tables import Check, load_tables

from visrep.context import RunContext
from visrep.runner import RunSettings, run_job
from visrep.spec import expand_experiment

PLUGIN_DIR = Path(__file__).parent / "plugins"


@pytest.fixture
def toy(monkeypatch):
    """The 12-vector / 3-query toy-retrieval dataset of tests/plugins (3 clusters of 4)."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    return importlib.import_module("visrep_testplugin")


def _run(tmp_path, method, **params):
    [job] = expand_experiment({"method": method, "dataset": "toy-retrieval",
                               "params": {"k": 4, "kq": 2, "alpha": 0.9, **params}})
    return run_job(job, RunSettings(results_dir=str(tmp_path / "res"), quiet=True))


@pytest.mark.parametrize("method,extra", [("diffusion", {}), ("rwr", {}), ("fsr", {"rank": 6}),
                                          ("diffusion", {"truncate": 6})])
def test_one_query_at_a_time_records_one_positive_time_per_query(tmp_path, toy, method, extra):
    one = _run(tmp_path, method, query_batch=1, **extra)
    block = _run(tmp_path, method, **extra)
    nq = len(one["per_item"]["map"])
    assert nq == 3
    for phase in ("query", "query_solve"):
        t = np.array(one["per_item"][f"timings.{phase}"], dtype=float)
        assert t.shape == (nq,) and np.all(t > 0)
    # the solve is part of the query's time, and the scalar is the mean of the per-query times
    assert np.all(np.array(one["per_item"]["timings.query_solve"]) <= np.array(one["per_item"]["timings.query"]))
    assert one["timings"]["query_solve"] == pytest.approx(np.mean(one["per_item"]["timings.query_solve"]), abs=2e-6)
    # same rankings either way; a block's time is not split into per-query times
    assert one["per_item"]["map"] == pytest.approx(block["per_item"]["map"], abs=1e-6)
    assert "timings.query_solve" not in block["per_item"] and "timings.query" not in block["per_item"]


def test_per_query_times_are_each_querys_own(toy):
    """Known answer: a solver that sleeps 0, 0 and 150 ms for queries 0, 1, 2 is timed as such
    (a block time divided by the queries would give each about 50 ms). Sleeps are lower bounds
    of the measured times; the margins leave room for a loaded machine."""
    delays = {0: 0.0, 1: 0.0, 2: 0.15}

    class SlowDiffusion(Diffusion):
        def score(self, graph, state, batch):
            time.sleep(sum(delays[j] for j in range(batch.cols.start, batch.cols.stop)))
            return super().score(graph, state, batch)

    ctx = RunContext(quiet=True)
    data = toy.ToyRetrieval().load(ctx)
    out = SlowDiffusion(k=4, kq=2, query_batch=1).run(data, ctx)
    t = out["per_item_timings"]["query_solve"]
    assert t.shape == (3,)
    assert t[2] >= 0.15 and t[0] < 0.1 and t[1] < 0.1
    assert "per_item_timings" not in SlowDiffusion(k=4, kq=2).run(data, ctx)


def _record(per_query):
    per_query = np.asarray(per_query, float)
    return {"metrics": {}, "timings": {"query_solve": float(per_query.mean())},
            "per_item": {"timings.query_solve": per_query.tolist()}}


def test_speed_claim_decided_by_the_paired_ratio_bootstrap():
    rng = np.random.default_rng(0)
    hard = rng.uniform(1, 3, 40)                          # per-query difficulty shared by both methods
    cg = _record(10e-3 * hard * rng.uniform(0.95, 1.05, 40))
    fsr = _record(1e-3 * hard * rng.uniform(0.95, 1.05, 40))
    check = lambda v: decide_check(Check("ratio_at_least", "cg", "timings.query_solve", b="fsr", value=v), cg, fsr)
    r = check(5)
    assert r.outcome == HOLDS and "paired bootstrap over 40 timed items" in r.how
    assert r.lo < 10 < r.hi and r.lo > 9                  # the shared difficulty cancels: a tight interval
    assert check(100).outcome == DOES_NOT_HOLD
    # a handful of noisy queries straddling the factor: inconclusive, not a verdict
    noisy = lambda s, n: _record(s * rng.lognormal(0, 1, n))
    r = decide_check(Check("ratio_at_least", "cg", "timings.query_solve", b="fsr", value=10),
                     noisy(10e-3, 5), noisy(1e-3, 5))
    assert r.outcome in (INCONCLUSIVE, HOLDS, DOES_NOT_HOLD) and r.n == 5 and r.lo < r.hi


def test_the_talks_speed_claims_compare_per_query_timings():
    """fsr_speed/fsr-100x-faster and cg_vs_rwr/cg-faster: timings.query_solve of runs that solve
    one query at a time (so the records carry per-query times and the claims get an interval)."""
    tables = {t.id: t for t in load_tables()}
    for table_id, claim_id in (("fsr_speed", "fsr-100x-faster"), ("cg_vs_rwr", "cg-faster")):
        t = tables[table_id]
        claim = next(c for c in t.claims if c.id == claim_id)
        for c in claim.checks:
            assert c.relation == "ratio_at_least" and c.metric == "timings.query_solve"
            for run in (c.a, c.b):
                assert t.runs[run].params.get("query_batch") == 1, (table_id, run)


def test_regional_vectors_one_query_at_a_time_rank_as_in_a_block():
    """The regional branch (several vectors per image and per query, scores pooled per image):
    the same ranks one query at a time as in one block, one time per query."""
    from visrep.data import RetrievalData
    rng = np.random.default_rng(1)
    centres = np.eye(3, 8, dtype=np.float32)
    image_of = np.repeat(np.arange(6), 3)                     # 6 images x 3 regions, 2 images per cluster
    db = centres[image_of // 2] + 0.1 * rng.standard_normal((18, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    query_of = np.array([0, 0, 1, 1, 2, 2])                   # 3 queries of 2 regions each
    q = centres[query_of] + 0.1 * rng.standard_normal((6, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gnd = [{"ok": np.array([2 * c, 2 * c + 1]), "junk": np.zeros(0, np.int64)} for c in range(3)]
    data = RetrievalData(name="regional-toy", db_names=[f"db{i}" for i in range(6)],
                         query_names=[f"q{j}" for j in range(3)], gnd=gnd, manifest="regional-toy")

    class RegionalToy(Diffusion):
        def _vectors(self, data, ctx):
            return db, q, image_of, query_of, np.ones(len(db))

    ctx = RunContext(quiet=True)
    one = RegionalToy(k=4, kq=3, query_batch=1).run(data, ctx)
    block = RegionalToy(k=4, kq=3).run(data, ctx)
    np.testing.assert_array_equal(one["ranks"], block["ranks"])
    t = one["per_item_timings"]["query_solve"]
    assert t.shape == (3,) and np.all(t > 0)
    assert {tuple(sorted(one["ranks"][:2, j])) for j in range(3)} == {(0, 1), (2, 3), (4, 5)}


@pytest.mark.parametrize("method", ["regional-diffusion", "regional-fsr"])
def test_regional_graph_methods_time_each_query_alone(monkeypatch, method):
    """RegionalGraphMethod (regional-diffusion / regional-fsr, the graph over all database regions):
    ``query_batch = 1`` gives the same ranks as one block, and one positive time per query whose
    solve is part of it; a block records none."""
    from visrep.data import RetrievalData
    from visrep.methods.manifolds import pipeline as mp
    from visrep.registry import methods
    rng = np.random.default_rng(2)
    centres = np.eye(3, 8, dtype=np.float32)
    image_of = np.repeat(np.arange(6), 3)                     # 6 images x 3 regions, 2 images per cluster
    db = centres[image_of // 2] + 0.1 * rng.standard_normal((18, 8)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    query_of = np.array([0, 0, 1, 1, 2, 2])
    q = centres[query_of] + 0.1 * rng.standard_normal((6, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    regions = mp.RegionalVectors(db=db, q=q, image_of=image_of, query_of=query_of, coeff=np.ones(len(db)))
    monkeypatch.setattr(mp, "regional_search_vectors", lambda method, data, ctx: regions)
    gnd = [{"ok": np.array([2 * c, 2 * c + 1]), "junk": np.zeros(0, np.int64)} for c in range(3)]
    data = RetrievalData(name="regional-toy", db_names=[f"db{i}" for i in range(6)],
                         query_names=[f"q{j}" for j in range(3)], gnd=gnd, manifest="regional-toy")
    extra = {"rank": 6} if method == "regional-fsr" else {}
    ctx = RunContext(quiet=True)
    one = methods.create(method, k=4, kq=3, query_batch=1, **extra).run(data, ctx)
    block = methods.create(method, k=4, kq=3, **extra).run(data, ctx)
    np.testing.assert_array_equal(one["ranks"], block["ranks"])
    t, ts = one["per_item_timings"]["query"], one["per_item_timings"]["query_solve"]
    assert t.shape == ts.shape == (3,) and np.all(ts > 0) and np.all(ts <= t)
    assert "per_item_timings" not in block
    assert {tuple(sorted(one["ranks"][:2, j])) for j in range(3)} == {(0, 1), (2, 3), (4, 5)}
