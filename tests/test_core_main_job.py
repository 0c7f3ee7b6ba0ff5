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
