import importlib
import os
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from visrep.cache import Cache
from visrep.results import load, write_record
from visrep.runner import DaskExecutor, LocalExecutor, RunSettings, run_job
from visrep.spec import expand_experiment, jobs_from_spec

PLUGIN_DIR = Path(__file__).parent / "plugins"


@pytest.fixture
def toy_plugin(monkeypatch):
    """tests/plugins on sys.path for this test only; importing visrep_testplugin registers toy-retrieval, slow-knn."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    importlib.import_module("visrep_testplugin")


def toy_grid(**params):
    return expand_experiment({"method": "slow-knn", "dataset": "toy-retrieval",
                              "params": params or {"tag": [1, 2], "noise": [0.0, 0.1]}})


def test_grid_expands_and_routes_parameters(toy_plugin):
    jobs = toy_grid()
    assert len(jobs) == 4
    assert {j.params["tag"] for j in jobs} == {1, 2}
    assert {j.dataset_params["noise"] for j in jobs} == {0.0, 0.1}
    assert len({j.job_id for j in jobs}) == 4
    assert all(j.protocol == "oxford" for j in jobs)


def test_local_run_writes_records_and_resumes(tmp_path, toy_plugin):
    settings = RunSettings(results_dir=str(tmp_path / "res"), quiet=True)
    jobs = toy_grid()
    first = LocalExecutor().map(jobs, settings)
    assert [r["_skipped"] for r in first] == [False] * 4
    assert all(r["metrics"]["map"] == 1.0 for r in first if r["dataset_params"]["noise"] == 0.0)
    again = LocalExecutor().map(jobs, settings)
    assert [r["_skipped"] for r in again] == [True] * 4
    forced = LocalExecutor().map(jobs[:1], RunSettings(results_dir=settings.results_dir, quiet=True, force=True))
    assert forced[0]["_skipped"] is False
    # repeated timings, one per query, land beside the per-item metrics
    assert len(first[0]["per_item"]["timings.query"]) == len(first[0]["per_item"]["map"])
    df = load(settings.results_dir)
    assert len(df) == 4 and {"metrics.map", "params.tag", "dataset_params.noise", "commit"} <= set(df.columns)


def _comparable(rec):
    return {k: rec[k] for k in ("job", "method", "dataset", "protocol", "params", "dataset_params",
                                "protocol_params", "seed", "metrics", "manifest", "summary")}


def test_dask_and_local_executors_give_identical_records(tmp_path):
    pytest.importorskip("dask.distributed")
    jobs = expand_experiment({"method": "alpha-qe", "dataset": "sample-views",
                              "params": {"n": [2, 4], "alpha": [0.0, 3.0]}})
    assert len(jobs) == 4
    local = LocalExecutor().map(jobs, RunSettings(results_dir=str(tmp_path / "local"), quiet=True,
                                                   cache_dir=str(tmp_path / "cache")))
    dask = DaskExecutor(n_workers=2).map(jobs, RunSettings(results_dir=str(tmp_path / "dask"), quiet=True,
                                                             cache_dir=str(tmp_path / "cache")))
    assert [_comparable(r) for r in local] == [_comparable(r) for r in dask]
    assert len(list((tmp_path / "dask").rglob("*.json"))) == 4


def test_killed_run_resumes_with_only_missing_jobs(tmp_path, toy_plugin_env):
    env = toy_plugin_env
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "visrep", "run", "--method", "slow-knn", "--dataset", "toy-retrieval",
           "--set", "tag=1,2,3,4,5,6", "--set", "sleep=0.7", "--results", str(res), "--quiet"]
    # the child gets the default SIGINT handler even when pytest was started from a shell that ignores
    # SIGINT (a child inherits SIG_IGN, and then Ctrl-C could not interrupt it)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler))
    deadline = time.time() + 60
    while time.time() < deadline and len(list(res.rglob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    done_before = {p.name for p in res.rglob("*.json")}
    assert 2 <= len(done_before) < 6, "the run should have been interrupted mid-grid"
    assert not list(res.rglob(".tmp-*")), "an interrupted run must not leave partial records"
    out = subprocess.run(cmd[:-1] + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert len(records) == 6
    assert {p.name for p in res.rglob("*.json")} >= done_before and len(list(res.rglob("*.json"))) == 6
    assert "6 job(s)" not in out.stdout


def test_second_run_reuses_cached_features(tmp_path, monkeypatch):
    import visrep.methods.search.plugins as hd  # the plugin module calls the kernel by this name
    calls = {"n": 0}
    original = hd.histogram_descriptor

    def counting(*a, **k):
        calls["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(hd, "histogram_descriptor", counting)
    [job] = expand_experiment({"method": "knn", "dataset": "sample-views", "params": {"descriptor": "histogram"}})
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), quiet=True, force=True)
    first = run_job(job, settings)
    n_images = calls["n"]
    assert n_images > 100  # every database image and query described once
    second = run_job(job, settings)
    assert calls["n"] == n_images, "the second run must reuse the cached descriptors"
    assert second["metrics"] == first["metrics"]
    settings.use_cache = False
    run_job(job, settings)
    assert calls["n"] == 2 * n_images


def test_cache_get_or_compute_counts(tmp_path):
    cache = Cache(tmp_path)
    calls = []
    f = lambda: calls.append(1) or np.arange(5)  # noqa: E731
    a = cache.get_or_compute("x", {"p": 1}, f)
    b = cache.get_or_compute("x", {"p": 1}, f)
    c = cache.get_or_compute("x", {"p": 2}, f)
    assert len(calls) == 2 and (a == b).all() and (c == a).all()
    assert (cache.hits, cache.misses) == (1, 2)
    obj = cache.get_or_compute("y", {"p": 1}, lambda: {"a": [1, 2]})
    assert cache.get_or_compute("y", {"p": 1}, lambda: None) == obj


def test_record_write_is_atomic(tmp_path):
    path = tmp_path / "r" / "x.json"
    with pytest.raises(ValueError):
        write_record(path, {"metrics": {"map": float("nan")}})
    assert not path.exists() and not list((tmp_path / "r").iterdir())
    write_record(path, {"metrics": {"map": 0.5}})
    assert json.loads(path.read_text())["metrics"]["map"] == 0.5


def test_spec_files_toml_and_yaml(tmp_path, toy_plugin):
    (tmp_path / "s.toml").write_text(
        '[[experiment]]\nmethod = "slow-knn"\ndataset = "toy-retrieval"\nparams = { tag = [1, 2, 3] }\n')
    (tmp_path / "s.yaml").write_text("method: slow-knn\ndataset: toy-retrieval\nparams: {tag: [1, 2]}\nseed: 3\n")
    assert len(jobs_from_spec(tmp_path / "s.toml")) == 3
    jobs = jobs_from_spec(tmp_path / "s.yaml")
    assert len(jobs) == 2 and jobs[0].seed == 3


def test_cli_runs_on_an_existing_dask_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    from visrep.commands import main
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        rc = main(["run", "-m", "aqe", "-d", "sample-views", "--set", "n=2,3", "--executor", "dask",
                   "--scheduler", cluster.scheduler_address, "--results", str(tmp_path / "d"), "--json"])
    assert rc == 0
    records = json.loads(capsys.readouterr().out)
    assert sorted(r["params"]["n"] for r in records) == [2, 3]
    assert len(list((tmp_path / "d").rglob("*.json"))) == 2


def test_lists_of_methods_expand_and_bad_names_are_clear(toy_plugin):
    from visrep.errors import UserError
    jobs = expand_experiment({"method": ["knn", "aqe"], "dataset": "toy-retrieval", "params": {"noise": [0.0, 0.1]}})
    assert sorted((j.method, j.dataset_params["noise"]) for j in jobs) == [
        ("aqe", 0.0), ("aqe", 0.1), ("knn", 0.0), ("knn", 0.1)]
    with pytest.raises(UserError, match="'method' must be a name or a list of names, got 3"):
        expand_experiment({"method": 3, "dataset": "toy-retrieval"})


def test_parallel_local_workers_give_the_records_of_a_sequential_run(tmp_path):
    jobs = expand_experiment({"method": "alpha-qe", "dataset": "sample-views",
                              "params": {"n": [2, 4], "alpha": [0.0, 3.0]}})
    one = LocalExecutor().map(jobs, RunSettings(results_dir=str(tmp_path / "one"), quiet=True,
                                                cache_dir=str(tmp_path / "cache")))
    two = LocalExecutor(workers=2).map(jobs, RunSettings(results_dir=str(tmp_path / "two"), quiet=True,
                                                         cache_dir=str(tmp_path / "cache")))
    assert [_comparable(r) for r in one] == [_comparable(r) for r in two]   # same order as the jobs
    assert len(list((tmp_path / "two").rglob("*.json"))) == 4
    assert os.environ.get("OMP_NUM_THREADS") == ORIGINAL_OMP                  # the parent's environment restored


ORIGINAL_OMP = os.environ.get("OMP_NUM_THREADS")


def test_a_failing_job_in_a_worker_is_the_run_s_error(tmp_path):
    from visrep.errors import UserError
    jobs = expand_experiment({"method": "knn", "dataset": "oxford5k", "data_root": str(tmp_path / "nowhere")})
    jobs += expand_experiment({"method": "aqe", "dataset": "sample-views", "params": {"n": 2}})
    with pytest.raises(UserError, match="not found"):
        LocalExecutor(workers=2).map(jobs, RunSettings(results_dir=str(tmp_path / "res"), quiet=True))


def test_worker_progress_is_relayed_to_the_parent():
    import queue

    from visrep import context
    q = queue.Queue()
    context.PROGRESS_RELAY = q
    try:
        ctx = context.RunContext(quiet=True)
        assert list(ctx.progress(range(5), desc="phase", total=5)) == list(range(5))
    finally:
        context.PROGRESS_RELAY = None
    pid, desc, done, total = q.get_nowait()          # the first item is sent at once, then at most every 0.5 s
    assert (pid, desc, done, total) == (os.getpid(), "phase", 1, 5)


@pytest.mark.parametrize("value, message", [("0", "a number >= 1"), ("many", "a number >= 1")])
def test_bad_workers_value(value, message, capsys):
    from visrep.commands import main
    assert main(["run", "-m", "aqe", "-d", "sample-views", "--workers", value, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_spec_workers_key(tmp_path):
    from visrep.errors import UserError
    from visrep.spec import read_spec
    assert read_spec("default").workers == "auto"
    bad = tmp_path / "bad.toml"
    bad.write_text('workers = 0\nmethod = "knn"\ndataset = "sample-views"\n')
    with pytest.raises(UserError, match="workers = 0"):
        read_spec(bad)


def test_parallel_schedule_starts_reused_trainings_first():
    """`dlp` loads the network `supervised` trains, `mt-dlp` the mean teacher's (Method.reuses): a parallel
    run takes supervised / mean-teacher jobs first, the reusing ones last, others in between, in the
    given order within each group."""
    from visrep.runner import schedule
    from visrep.spec import Job
    names = ["dlp", "knn", "supervised", "mt-dlp", "mean-teacher", "aqe"]
    jobs = [Job(method=m, dataset="mnist", protocol="classification") for m in names]
    assert [names[i] for i in schedule(jobs)] == ["supervised", "mean-teacher", "knn", "aqe", "dlp", "mt-dlp"]
    alone = [Job(method="knn", dataset="d", protocol="p"), Job(method="aqe", dataset="d", protocol="p")]
    assert schedule(alone) == [0, 1]
