"""Job identity and cache keys: files count by content, not by the path that reaches them.

Known answers: the same file by a relative, an absolute and a symlinked path gives one job id;
changing one byte of it gives another; every cached intermediate is keyed through
``RunContext.cached`` with the code of its whole chapter room, the dataset manifest and the
loader version.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from visrep.methods.search.ranking import ranks_from_scores

from visrep.cache import Cache, _code_unit, code_version
from visrep.context import RunContext
from visrep.manifest import by_content, content_id
from visrep.runner import RunSettings, run_job
from visrep.spec import Job, expand_experiment


def _job(features) -> Job:
    return Job("knn", "oxford5k", "oxford", dataset_params={"features": str(features)})


def test_same_file_by_any_path_is_one_job(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    f = tmp_path / "a" / "x.fvecs"
    f.write_bytes(b"\x01\x02\x03")
    (tmp_path / "link.fvecs").symlink_to(f)
    monkeypatch.chdir(tmp_path)
    ids = {_job(p).job_id for p in (f, "a/x.fvecs", "./a/../a/x.fvecs", tmp_path / "link.fvecs")}
    assert len(ids) == 1
    assert _job(f).inputs == {"dataset_params.features": content_id(f)}
    assert content_id(f).startswith("sha256:")
    before = _job(f).job_id
    f.write_bytes(b"\x01\x02\x04")   # same path, new content: a new job (no stale record)
    assert _job(f).job_id != before


def test_values_that_name_no_file_keep_their_text(tmp_path):
    assert content_id("rootsift") is None and content_id(str(tmp_path / "absent.fvecs")) is None
    a, b = _job(tmp_path / "absent1.fvecs"), _job(tmp_path / "absent2.fvecs")
    assert a.job_id != b.job_id and a.inputs == {}
    # a job sent to a Dask worker as a dict keeps the identity it was made with
    assert Job(**a.to_dict()).job_id == a.job_id


def test_folder_content_identity(tmp_path):
    d = tmp_path / "bins"
    d.mkdir()
    (d / "1.bin").write_bytes(b"aa")
    first = content_id(d)
    (d / "2.bin").write_bytes(b"bb")
    assert first.startswith("sha256-dir:") and content_id(d) != first
    assert by_content({"train": str(d), "k": 3}) == {"train": content_id(d), "k": 3}


def test_record_holds_inputs_and_is_found_again_by_another_path(tmp_path, oxford5k_features, monkeypatch):
    root = str(oxford5k_features.parent.parent)
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), quiet=True)
    [job] = expand_experiment({"method": "knn", "dataset": "oxford5k", "data_root": root,
                               "params": {"features": str(oxford5k_features)}})
    first = run_job(job, settings)
    assert first["inputs"] == {"dataset_params.features": content_id(oxford5k_features)}
    monkeypatch.chdir(oxford5k_features.parent)
    [again] = expand_experiment({"method": "knn", "dataset": "oxford5k", "data_root": root,
                                 "params": {"features": oxford5k_features.name}})
    second = run_job(again, settings)
    assert second["_skipped"] and second["job"] == first["job"]
    assert second["metrics"]["map"] == pytest.approx(0.4029, abs=5e-5)


def test_cache_keys_cover_room_code_manifest_and_loader(tmp_path):
    # the code of a plugin class is its whole chapter room (kernels included) plus its bases
    name, files = _code_unit(__import__("visrep.methods.cnn.plugins", fromlist=["x"]))
    assert name == "visrep.methods.cnn" and {"pooling.py", "pipeline.py", "plugins.py"} <= {f.name for f in files}
    from visrep.methods.cnn.plugins import GeM
    from visrep.methods.cnn.pooling import gem
    assert code_version(GeM) != code_version(gem)          # GeM also counts its bases (visrep.api, search room)

    class Data:
        manifest = "m1"

    calls = []
    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    ctx.loader_version = "L1"

    def compute(split="db"):
        calls.append(split)
        return np.arange(3)

    out = ctx.per_split(Data(), "features", {"p": 1}, [gem], compute)
    assert calls == ["db", "query"] and set(out) == {"db", "query"}
    ctx.per_split(Data(), "features", {"p": 1}, [gem], compute)
    assert calls == ["db", "query"]                          # both splits from the cache
    ctx.loader_version = "L2"                               # another loader: recomputed
    ctx.per_split(Data(), "features", {"p": 1}, [gem], compute)
    assert calls == ["db", "query"] * 2
    d2 = Data()
    d2.manifest = "m2"                                      # other data files: recomputed
    ctx.per_split(d2, "features", {"p": 1}, [gem], compute)
    assert len(calls) == 6
    ctx.per_split(d2, "features", {"p": 2}, [gem], compute)  # other parameters: recomputed
    assert len(calls) == 8


def test_cache_key_follows_file_content_not_path(tmp_path):
    f = tmp_path / "train.fvecs"
    f.write_bytes(b"abc")
    ctx = RunContext(cache=Cache(tmp_path / "c"), quiet=True)
    n = []
    ctx.cached("vocabulary", {"train": str(f)}, [content_id], lambda: n.append(1) or 1)
    ctx.cached("vocabulary", {"train": os.path.relpath(f)}, [content_id], lambda: n.append(1) or 1)
    assert n == [1]
    f.write_bytes(b"abd")
    ctx.cached("vocabulary", {"train": str(f)}, [content_id], lambda: n.append(1) or 1)
    assert n == [1, 1]


def test_ranks_from_scores_known_answers():
    s = np.array([[0.1, 3.0], [0.5, 1.0], [0.5, 2.0], [0.0, 1.0]])
    np.testing.assert_array_equal(ranks_from_scores(s), [[1, 0], [2, 2], [0, 1], [3, 3]])  # ties: database order
    tie = np.array([[0, 0], [0.1, 0], [0.9, 0], [0, 5]])
    np.testing.assert_array_equal(ranks_from_scores(s, tie), [[2, 0], [1, 2], [0, 3], [3, 1]])
    np.testing.assert_array_equal(ranks_from_scores(s, topk=2), [[1, 0], [2, 2]])


def test_one_experiment_type_for_specs_cli_and_tables(tmp_path):
    """A spec file entry and a claim run of a table are the same type and give the same job."""
    from visrep.reports.tables import load_table

    from visrep.spec import Experiment, load_spec_file

    body = 'method = "knn"\ndataset = "sample-views"\nseed = 3\nparams = { metric = "ip" }\n'
    spec = tmp_path / "one.toml"
    spec.write_text(body)
    table = tmp_path / "t.toml"
    table.write_text('id = "t"\ntitle = "t"\nslide = 1\nkind = "figure"\ncitation = "c"\n[runs.nn]\n' + body
                     + '[[claim]]\nid = "c"\ntext = "c"\nchecks = [{ relation = "at_least", a = "nn", '
                       'metric = "metrics.map", value = 0 }]\n')
    [from_spec] = load_spec_file(spec)
    run = load_table(table).runs["nn"]
    assert isinstance(from_spec, Experiment) and isinstance(run, Experiment) and run.name == "nn"
    [a], [b] = from_spec.jobs(), run.jobs()
    assert a.job_id == b.job_id and a.seed == 3
    with pytest.raises(Exception, match="unknown key 'parms' .did you mean: params"):
        Experiment.from_dict({"method": "knn", "dataset": "sample-views", "parms": {}})


def test_large_file_digests_are_remembered_across_runs(tmp_path, monkeypatch):
    import visrep.manifest as vm
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vm, "MEMO_MIN_BYTES", 4)
    f = tmp_path / "big.fvecs"
    f.write_bytes(b"0123456789")
    first = vm.file_sha256(f)
    vm._sha_cache.clear()                                   # a new process
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    assert vm.file_sha256(f) == first and str(f) not in opened    # read from the memo, not rehashed
    f.write_bytes(b"0123456789!")                           # new size and mtime: hashed again
    assert vm.file_sha256(f) != first
