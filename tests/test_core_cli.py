"""The command line as users and scripts drive it: outputs, exit codes, and bad input."""
import json

import numpy as np
import pytest

from visrep.commands import main
from visrep.descriptor_files import write_vecs


def no_records(tmp_path):
    return not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_list_shows_plugins(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "knn" in out and "alpha-qe" in out and "histogram" in out


def test_default_spec_is_the_main_job(capsys, tmp_path):
    from visrep.spec import jobs_from_spec
    skipped = []
    jobs = jobs_from_spec("default", skipped=skipped)
    on_views = {j.method for j in jobs if j.dataset == "sample-views"}
    assert {"knn", "aqe", "alpha-qe", "bow", "he", "asmk", "asmk-star"} <= on_views
    # the full main job runs in .ci/run; here its first experiment, end to end, then `show`
    assert main(["run", "-m", "knn", "-d", "sample-views", "--set", "descriptor=histogram", "--quiet"]) == 0
    [path] = list((tmp_path / "results" / "sample-views").rglob("*.json"))
    assert 0.5 < json.loads(path.read_text())["metrics"]["map"] <= 1.0
    assert main(["show"]) == 0
    assert "sample-views" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--method", "knnn", "--dataset", "oxford5k"], "unknown method 'knnn' (did you mean: knn"),
    (["--method", "knn", "--dataset", "oxford"], "unknown dataset 'oxford'"),
    (["--method", "knn", "--dataset", "oxford5k", "--protocol", "ap"], "unknown protocol 'ap'"),
    (["--method", "aqe", "--dataset", "sample-views", "--set", "n=0"], "parameter 'n' of method 'aqe' must be a int >= 1, got '0'"),
    (["--method", "aqe", "--dataset", "sample-views", "--set", "n=two"], "got 'two'"),
    (["--method", "knn", "--dataset", "sample-views", "--set", "metric=cos"], "one of ip, l2"),
    (["--method", "knn", "--dataset", "sample-views", "--set", "nn=3"], "no parameter 'nn'"),
    (["--method", "knn", "--dataset", "sample-views", "--set", "descriptor=aqe"], "not a descriptor"),
    (["--method", "knn", "--dataset", "oxford5k", "--data-root", "/nonexistent/root"], "ground truth /nonexistent/root/oxford5k/gnd_oxford5k.mat not found"),
    (["--method", "knn"], "needs a spec file, or --method and --dataset"),
    (["no-such-spec.toml"], "spec file no-such-spec.toml does not exist"),
])
def test_bad_input_is_one_clear_line_with_exit_2(argv, message, capsys, tmp_path):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visrep: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert no_records(tmp_path)


def test_descriptor_file_must_match_the_dataset(capsys, tmp_path, shared_data):
    root = str(shared_data / "retrieval")
    wrong_count = tmp_path / "ten.fvecs"
    write_vecs(wrong_count, np.ones((10, 4), np.float32))
    assert main(["run", "-m", "knn", "-d", "oxford5k", "--data-root", root, "--set", f"features={wrong_count}"]) == 2
    assert "10 descriptors but oxford5k has 5063 database images" in capsys.readouterr().err
    truncated = tmp_path / "cut.fvecs"
    truncated.write_bytes(wrong_count.read_bytes()[:-3])
    assert main(["run", "-m", "knn", "-d", "oxford5k", "--data-root", root, "--set", f"features={truncated}"]) == 2
    assert "truncated" in capsys.readouterr().err
    q = tmp_path / "q.npy"
    np.save(q, np.ones((55, 3), np.float32))
    db = tmp_path / "db.npy"
    np.save(db, np.ones((5063, 4), np.float32))
    assert main(["run", "-m", "knn", "-d", "oxford5k", "--data-root", root, "--set", f"features={db}",
                 "--set", f"query_features={q}"]) == 2
    assert "dimension 3 differs from the database's 4" in capsys.readouterr().err
    nan = tmp_path / "nan.npy"
    x = np.ones((5063, 4), np.float32)
    x[7, 2] = np.nan
    np.save(nan, x)
    assert main(["run", "-m", "knn", "-d", "oxford5k", "--data-root", root, "--set", f"features={nan}"]) == 2
    assert "descriptor 7 contains NaN" in capsys.readouterr().err
    assert main(["run", "-m", "knn", "-d", "oxford5k", "--data-root", root, "--set", "features=/no/file.fvecs"]) == 2
    assert "/no/file.fvecs does not exist" in capsys.readouterr().err
    assert no_records(tmp_path)


def test_json_output_is_a_list_of_records(capsys):
    assert main(["run", "-m", "knn", "-d", "sample-views", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert isinstance(records, list) and len(records) == 1
    assert {"method", "dataset", "protocol", "params", "metrics"} <= set(records[0])
    assert 0.0 <= records[0]["metrics"]["map"] <= 1.0


def test_descriptor_parameters_inline(capsys):
    def run(descriptor):
        assert main(["run", "-m", "knn", "-d", "sample-views", "--set", f"descriptor={descriptor}", "--json"]) == 0
        return json.loads(capsys.readouterr().out)[0]["metrics"]["map"]
    default, small = run("histogram"), run("histogram:size=16")
    assert default != small  # the parameter reaches the descriptor (and its cache key)
    assert run("histogram:size=128") == default
    assert main(["run", "-m", "knn", "-d", "sample-views", "--set", "descriptor=histogram:size"]) == 2
    assert "expected NAME:key=value;key=value" in capsys.readouterr().err
    assert main(["run", "-m", "knn", "-d", "sample-views", "--set", "descriptor=histogram:size=0"]) == 2
    assert "parameter 'size' of method 'histogram'" in capsys.readouterr().err


COMMANDS = ["list", "run", "show", "report", "rehearse", "eval", "data", "bench"]


def test_help_lists_every_subcommand_in_order():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "visrep", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [ln.split()[0] for ln in out.stdout.splitlines() if ln.startswith("    ") and ln.split()]
    assert [c for c in lines if c in COMMANDS] == COMMANDS, out.stdout
    from visrep.commands import commands
    assert [c.name for c in commands()] == COMMANDS
    bench = subprocess.run([sys.executable, "-m", "visrep", "bench", "--help"], capture_output=True, text=True,
                           timeout=120)
    assert bench.returncode == 0, bench.stderr
    assert all(a in bench.stdout for a in ("quick", "run", "publish", "continuous"))


def test_no_subcommand_prints_help_with_exit_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bench_builds_the_readme_commands(capsys):
    import subprocess
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout with commits")
    assert main(["bench", "quick", "--dry-run"]) == 0
    machine, quick = capsys.readouterr().out.strip().splitlines()
    assert machine.endswith("asv machine --yes")
    assert "asv run --quick" in quick and f"--set-commit-hash {head}" in quick
    assert main(["bench", "continuous", "--dry-run", "-b", "search"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(
        "asv continuous --show-stderr -E virtualenv --bench search HEAD~1 HEAD")
    assert main(["bench", "publish", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith("asv publish")


def test_bench_says_what_is_missing(capsys, monkeypatch, tmp_path):
    import visrep.commands.bench as bench
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    monkeypatch.setattr(bench.sys, "executable", str(tmp_path / "python"))
    assert main(["bench", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "visrep: error: `visrep bench` needs airspeed velocity: pip install asv (or the dev extra)")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)  # a folder outside any git checkout, and no source checkout to fall back on
    monkeypatch.setattr(bench, "SOURCE", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert main(["bench", "--dry-run"]) == 2
    assert "is not a git checkout" in capsys.readouterr().err
