"""The main job's spec gives the same metrics as before the design step moved methods/ into rooms.

tests/golden/default_spec_metrics.json holds the metrics of every record of ``visrep run default``
measured at commit 356dbed (the last commit with a flat methods/). A refactoring that changes
any of them changed a number, not only the code's shape. About 25 s on 2 cores from a cold cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from visrep.context import shared_data_dir
from visrep.runner import LocalExecutor, RunSettings
from visrep.spec import jobs_from_spec

GOLDEN = Path(__file__).resolve().parent / "golden" / "default_spec_metrics.json"


def _key(method, dataset, protocol, params, dataset_params) -> str:
    def short(d):
        return {k: (Path(v).name if isinstance(v, str) and "/" in v else v) for k, v in d.items()}
    return json.dumps([method, dataset, protocol, short(params), short(dataset_params)], sort_keys=True)


def test_main_job_metrics_unchanged(tmp_path):
    if shared_data_dir() is None:   # sample-views adds the real Graffiti views from it: other numbers without
        pytest.skip("the golden numbers were measured with ../shared/data present (Oxford5k, Graffiti)")
    golden = {_key(r["method"], r["dataset"], r["protocol"], r["params"], r["dataset_params"]): r["metrics"]
              for r in json.loads(GOLDEN.read_text())["records"]}
    skipped: list[str] = []
    jobs = jobs_from_spec("default", skipped=skipped)
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), quiet=True)
    records = LocalExecutor().map(jobs, settings)
    expected = golden
    got = {_key(r["method"], r["dataset"], r["protocol"], r["params"], r["dataset_params"]): r["metrics"]
           for r in records}
    assert set(got) == set(expected), (sorted(set(expected) - set(got))[:3], sorted(set(got) - set(expected))[:3])
    for key, metrics in expected.items():
        # 1e-6: the order of floating-point sums differs with the BLAS thread count (OMP_NUM_THREADS),
        # which moves a diffusion mAP by ~1e-8; any change of method moves it by far more
        assert got[key] == pytest.approx(metrics, rel=1e-6, abs=1e-9), key


def test_default_spec_adds_every_claim_run(tmp_path):
    """``claims = "all"``: the main job includes every run a claim needs that can run here, once."""
    from visrep.reports.evaluate import NOT_RUN, Resolver, claim_jobs, claim_run_seeds
    from visrep.reports.tables import load_tables
    from visrep.spec import read_spec
    assert read_spec("default")[1] == "all"
    tables = load_tables()
    jobs, not_here = claim_jobs(tmp_path / "res", tables=tables)
    assert len({j.job_id for j in jobs}) == len(jobs) > 0
    resolver = Resolver(tmp_path / "res")
    ids = {j.job_id for j in jobs}
    for table in tables:
        for claim in table.claims:
            for name in claim.runs:
                variants = claim_run_seeds(claim, table.runs[name])
                res = resolver.resolve(variants[0][1])          # the first seed: in the main job
                assert res.status != NOT_RUN or res.job.job_id in ids, (table.id, claim.id, name)
                for _, later in variants[1:]:                   # later seeds: for --run-missing
                    other = resolver.resolve(later)
                    assert other.job is None or other.job.job_id not in ids, (table.id, claim.id, name)
    # what cannot run here is said with its table, claim, run and reason
    assert all(s.count("/") >= 2 and ": " in s for s in not_here)


def test_spec_claims_key_is_checked(tmp_path):
    from visrep.errors import UserError
    from visrep.spec import read_spec
    spec = tmp_path / "s.toml"
    spec.write_text('claims = "some"\n')
    with pytest.raises(UserError, match=r'the only value is "all"'):
        read_spec(spec)
    spec.write_text('claims = "all"\n')
    assert read_spec(spec)[:2] == ([], "all")


@pytest.mark.slow
def test_readme_main_job_leaves_no_claim_not_run(tmp_path):
    """The README's two commands in fresh results/cache folders: no claim of the report reads 'not run'."""
    import os
    import subprocess
    import sys
    import time
    env = {**os.environ, "VISREP_RESULTS": str(tmp_path / "results"), "VISREP_CACHE": str(tmp_path / "cache")}
    t0 = time.perf_counter()
    for cmd in (["run", "default", "--quiet"], ["report", "--out", str(tmp_path / "report"), "--json"]):
        proc = subprocess.run([sys.executable, "-m", "visrep", *cmd], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    wall = time.perf_counter() - t0
    print(f"README main job, cold: {wall:.0f} s")
    claims = json.loads(proc.stdout)["claims"]
    assert (tmp_path / "report" / "report.md").exists() and claims
    not_run = sorted(c for c, status in claims.items() if status == "not run")
    assert not not_run, f"claims still 'not run' after the main job: {not_run}"
    assert wall <= 600, f"the main job took {wall:.0f} s cold (budget 10 minutes on 2 cores)"
