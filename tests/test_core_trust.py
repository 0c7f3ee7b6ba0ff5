"""Nothing read from disk is trusted: cache entries, records and folders (issue 10, items 2-5, 8).

Each test is a hostile or broken input that the code before this change got wrong: a swapped or
damaged cache entry used silently, a hostile pickle in the cache run, a stale record kept after
its features file changed, a damaged record stopping resume and ``visrep show``, a full disk or
an unusable folder found only after the work, two runs into one folder computing every job twice.
"""
from __future__ import annotations

import errno
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from visrep.cache import Cache, CacheWarning
from visrep.commands import main
from visrep.descriptor_files import read_vecs, write_vecs
from visrep.runner import RunSettings, run_job
from visrep.spec import expand_experiment

PLUGIN_DIR = Path(__file__).parent / "plugins"


# ---------------------------------------------------------------- cache (item 3 and no code from data)
def test_swapped_cache_entry_is_recomputed_not_used(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("graph", {"k": 10}, lambda: np.full(3, 10))
    cache.get_or_compute("graph", {"k": 30}, lambda: np.full(3, 30))
    a, b = cache.path_for("graph", {"k": 10}), cache.path_for("graph", {"k": 30})
    for suffix in (".npy", ".json"):          # a valid entry of another key put in k=30's place
        b.with_suffix(suffix).write_bytes(a.with_suffix(suffix).read_bytes())
    with pytest.warns(CacheWarning, match="another key"):
        value = cache.get_or_compute("graph", {"k": 30}, lambda: np.full(3, 30))
    assert value.tolist() == [30, 30, 30]
    assert cache.get_or_compute("graph", {"k": 30}, lambda: None).tolist() == [30, 30, 30]   # stored again


def test_damaged_cache_entry_is_recomputed(tmp_path):
    cache = Cache(tmp_path)
    cache.get_or_compute("features", {"s": "db"}, lambda: np.arange(100.0))
    path = cache.path_for("features", {"s": "db"}).with_suffix(".npy")
    data = bytearray(path.read_bytes())
    data[-8:] = b"\x00" * 8                    # same size, other numbers: only the digest sees it
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="digest"):
        assert cache.get_or_compute("features", {"s": "db"}, lambda: np.arange(100.0))[-1] == 99.0


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_hostile_pickle_in_cache_never_runs(tmp_path):
    cache = Cache(tmp_path / "c")
    cache.get_or_compute("vocabulary", {"k": 1}, lambda: {"centroids": np.zeros((1, 2))})
    base = cache.path_for("vocabulary", {"k": 1})
    marker = tmp_path / "PWNED"
    evil = pickle.dumps(_Hostile(str(marker)))
    base.with_suffix(".pkl").write_bytes(evil)
    meta = json.loads(base.with_suffix(".json").read_text())
    import hashlib
    meta["sha256"] = hashlib.sha256(evil).hexdigest()   # even with a forged digest
    base.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.warns(CacheWarning, match="Path.touch|pathlib"):
        value = cache.get_or_compute("vocabulary", {"k": 1}, lambda: {"centroids": np.ones((1, 2))})
    assert not marker.exists() and value["centroids"].sum() == 2


def test_full_disk_on_cache_write_warns_and_goes_on(tmp_path, monkeypatch):
    import visrep.cache as vc

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vc, "_atomic_write", full)
    with pytest.warns(CacheWarning, match="No space left"):
        assert Cache(tmp_path).get_or_compute("x", {"a": 1}, lambda: np.arange(3)).tolist() == [0, 1, 2]


# ---------------------------------------------------------------- folders (item 4)
def _knn_args(results, cache):
    return ["run", "-m", "knn", "-d", "sample-views", "--set", "descriptor=histogram", "--quiet",
            "--results", str(results), "--cache-dir", str(cache)]


@pytest.mark.parametrize("which", ["results", "cache"])
def test_unusable_folder_is_an_error_before_any_work(tmp_path, monkeypatch, capsys, which):
    import visrep.runner as runner
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = blocker / "sub"                                  # cannot be created: its parent is a file
    calls = []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: calls.append(1))
    folders = {"results": tmp_path / "res", "cache": tmp_path / "cache", which: bad}
    assert main(_knn_args(folders["results"], folders["cache"])) == 2
    err = capsys.readouterr().err
    assert f"the {which} folder {bad} is not writable" in err and not calls


def test_unusable_report_folder_is_an_error_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["report", "--out", str(blocker / "out"), "--results", str(tmp_path / "res")]) == 2
    assert "the report folder" in capsys.readouterr().err


def test_full_disk_on_record_write_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import visrep.results as vr
    real = vr.os.replace

    def full(src, dst):
        if str(dst).endswith(".json") and "res" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(vr.os, "replace", full)
    assert main(_knn_args(tmp_path / "res", tmp_path / "cache")) == 2
    err = capsys.readouterr().err
    assert "cannot write the result record" in err and "No space left" in err
    assert not list((tmp_path / "res").rglob(".tmp-*"))


# ---------------------------------------------------------------- records (items 2 and 5)
def test_damaged_record_is_set_aside_and_rerun_and_show_goes_on(tmp_path, capsys):
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "c"), quiet=True)
    jobs = expand_experiment({"method": ["knn", "aqe"], "dataset": "sample-views",
                              "params": {"descriptor": "histogram"}})
    first = [run_job(j, settings) for j in jobs]
    bad = Path(first[0]["_path"])
    bad.write_text('{"metrics": {"map": 0.5}')            # truncated
    again = run_job(jobs[0], settings)
    err = capsys.readouterr().err
    assert not again["_skipped"] and again["metrics"] == first[0]["metrics"]
    assert "damaged record" in err and (bad.parent / (bad.name + ".corrupt")).exists()
    bad.write_text("[]")                                    # damaged again: show lists it and goes on
    assert main(["show", str(tmp_path / "res")]) == 0
    out = capsys.readouterr()
    assert "aqe" in out.out and "not a visrep result record" in out.err


def test_changed_features_file_gives_a_fresh_record(tmp_path, oxford5k_features, capsys):
    feats = tmp_path / "feats.fvecs"
    x = read_vecs(oxford5k_features)
    write_vecs(feats, x)
    root = str(oxford5k_features.parent.parent)
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "c"), quiet=True)

    def run():
        [job] = expand_experiment({"method": "knn", "dataset": "oxford5k", "data_root": root,
                                   "params": {"features": str(feats)}})
        return run_job(job, settings)

    before = run()
    assert before["metrics"]["map"] == pytest.approx(0.4029, abs=5e-5)
    write_vecs(feats, x[np.random.default_rng(0).permutation(len(x))])   # same path, new content
    after = run()
    assert not after["_skipped"] and after["job"] != before["job"]
    assert after["metrics"]["map"] < 0.2                   # the shuffled database: a new, honest number
    assert "dataset_params.features changed" in capsys.readouterr().err
    live = list((tmp_path / "res").rglob("*.json"))
    assert [p.name for p in live] == [Path(after["_path"]).name]
    assert Path(before["_path"] + ".superseded").exists()


# ---------------------------------------------------------------- concurrent runs (item 8)
def test_two_runs_into_one_folder_compute_each_job_once(tmp_path, toy_plugin_env):
    env = toy_plugin_env
    cmd = [sys.executable, "-m", "visrep", "run", "--method", "slow-knn", "--dataset", "toy-retrieval",
           "--set", "tag=1,2,3,4", "--set", "sleep=0.4", "--results", str(tmp_path / "res")]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    # each run ends with "4 job(s), R run, D already done, ...": between them every job ran once
    import re
    ran = [int(re.search(r"4 job\(s\), (\d+) run, (\d+) already done", err).group(1)) for _, err in outs]
    assert sum(ran) == 4, ran
    assert len(list((tmp_path / "res").rglob("*.json"))) == 4


def test_user_error_types():
    assert issubclass(CacheWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Cache(enabled=False).get_or_compute("x", {}, lambda: 1) == 1


def test_parallel_workers_compute_a_missing_cache_entry_once(tmp_path):
    """Two processes that miss the same entry at once: one computes it (under the entry's lock), the
    other waits and reads the stored value (the computation runs once; both get the same value)."""
    import subprocess
    import sys
    code = (
        "import sys, time, numpy as np\n"
        "from visrep.cache import Cache\n"
        "def compute():\n"
        "    open(sys.argv[2], 'a').write('computed\\n')\n"
        "    time.sleep(1.0)\n"
        "    return np.arange(4)\n"
        "v = Cache(sys.argv[1]).get_or_compute('net', {'seed': 0}, compute)\n"
        "print(v.tolist())\n")
    log = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache"), str(log)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["[0, 1, 2, 3]"] * 2
    assert log.read_text().count("computed") == 1
