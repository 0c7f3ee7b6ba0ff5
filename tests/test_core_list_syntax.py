"""One list syntax everywhere: list parameters take one list (brackets on the command line), a comma
makes a grid only for single-valued parameters, mistakes are errors; one spelling of the shared folder."""
from __future__ import annotations

import pytest

from visrep.errors import MissingDataError, UserError
from visrep.features import parse_descriptor
from visrep.params import (
    Param,
    parse_assignments,
    parse_list,
    plugin_classes,
    resolve_params,
)
from visrep.registry import protocols
from visrep.spec import SHARED, expand_experiment, jobs_from_spec, substitute_shared


def cli_jobs(*sets, method="pretrained", dataset="mnist-unseen", protocol=None):
    """What `visrep run -m METHOD -d DATASET --set ...` expands to."""
    params = parse_assignments(list(sets), plugin_classes(method, dataset, protocol))
    return expand_experiment({"method": method, "dataset": dataset, "protocol": protocol, "params": params},
                             where="command line")


# ---------------------------------------------------------------- Param(type=list)
KS = Param("ks", list, [1, 2, 4, 8], "k of Recall@k", item=int, low=1)


def test_list_param_takes_lists_and_bracket_strings():
    assert KS.coerce([1, 2], "p") == [1, 2]
    assert KS.coerce((4, 8.0), "p") == [4, 8]
    assert KS.coerce("[1,2,4,8]", "p") == [1, 2, 4, 8]
    assert KS.coerce(" [ 1, 2 ] ", "p") == [1, 2]
    assert resolve_params((KS,), {}, "p") == {"ks": [1, 2, 4, 8]}
    default = resolve_params((KS,), {}, "p")["ks"]
    default.append(99)  # a fresh list each time: the declaration is not changed
    assert resolve_params((KS,), {}, "p")["ks"] == [1, 2, 4, 8]
    words = Param("names", list, ["a"], item=str, choices=("a", "b c"))
    assert words.coerce('[a, "b c"]', "p") == ["a", "b c"]
    assert KS.describe_range() == "list of int >= 1"


@pytest.mark.parametrize("value, fragment", [
    ("1,2,4,8", "ks=[1,2,4,8]"),
    ("4", "ks=[4]"),
    (4, "in brackets, e.g. ks=[1,2,4,8]"),
    ("[1,0]", "item 2 of parameter 'ks' of p must be a int >= 1, got '0'"),
    ("[1,x]", "got 'x'"),
    ("[1,2", "cannot read the list"),
    ("[]", "at least 1 item"),
    ([[1, 2]], "flat list"),
])
def test_list_param_mistakes_are_clear_errors(value, fragment):
    with pytest.raises(UserError) as e:
        KS.coerce(value, "p")
    assert fragment in str(e.value)


def test_parse_list():
    assert parse_list("[1,2,4,8]") == ["1", "2", "4", "8"]
    assert parse_list("[[1,2],[4]]") == [["1", "2"], ["4"]]
    assert parse_list("['a,b', c]") == ["a,b", "c"]
    assert parse_list("[]") == []
    for bad in ("1,2", "[1,,2]", "[1,2]]", "[[1,2]"):
        with pytest.raises(ValueError):
            parse_list(bad)


# ---------------------------------------------------------------- command line rule
def test_cli_bracket_list_is_one_job():
    jobs = cli_jobs("ks=[1,2,4,8]")
    assert len(jobs) == 1 and jobs[0].protocol == "metric-learning"
    assert jobs[0].protocol_params["ks"] == [1, 2, 4, 8]


def test_cli_unbracketed_list_is_an_error_naming_the_bracket_form():
    with pytest.raises(UserError, match=r"ks=\[1,2,4,8\]"):
        cli_jobs("ks=1,2,4,8")
    with pytest.raises(UserError, match=r"ks=\[2\]"):  # one value: still a list
        cli_jobs("ks=2")


def test_cli_grid_of_lists():
    jobs = cli_jobs("ks=[1,2],[4,8]")
    assert [j.protocol_params["ks"] for j in jobs] == [[1, 2], [4, 8]]


def test_cli_comma_on_a_scalar_is_a_grid():
    jobs = cli_jobs("k=30,50", method="diffusion", dataset="sample-views")
    assert [j.params["k"] for j in jobs] == [30, 50]
    with pytest.raises(UserError, match="k=30,50"):  # brackets on a single-valued parameter
        cli_jobs("k=[30,50]", method="diffusion", dataset="sample-views")


def test_cli_unknown_key_falls_through_to_did_you_mean():
    with pytest.raises(UserError, match=r"no parameter 'kss'.*did you mean: ks"):
        cli_jobs("kss=[1,2]")


def test_cli_paths_and_descriptors_with_brackets_stay_one_value():
    params = parse_assignments(["features=./a,b.fvecs", "descriptor=gem:p=4;scales=[1,0.707]"],
                               plugin_classes("knn", "sample-views"))
    assert params == {"features": "./a,b.fvecs", "descriptor": "gem:p=4;scales=[1,0.707]"}
    params = parse_assignments(["descriptor=gem:scales=[1,0.707],mac"], plugin_classes("knn", "sample-views"))
    assert params == {"descriptor": ["gem:scales=[1,0.707]", "mac"]}


# ---------------------------------------------------------------- scales, rs, descriptor strings
def test_scales_given_as_a_list():
    from visrep.registry import methods
    [job] = cli_jobs("scales=[1,0.707]", method="gem", dataset="sample-views")
    assert job.params["scales"] == [1.0, 0.707]
    assert methods.create("gem", **job.params).scales == (1.0, 0.707)
    assert methods.create("gem", scales=[1, 0.5]).scales == (1.0, 0.5)
    with pytest.raises(UserError, match=r"scales=\[1;0.707\]|in brackets"):
        cli_jobs("scales=1;0.707", method="gem", dataset="sample-views")
    with pytest.raises(UserError, match="scales"):
        cli_jobs("scales=[1,-1]", method="gem", dataset="sample-views")


def test_descriptor_list_values_use_brackets():
    from visrep.registry import methods
    name, params = parse_descriptor("gem:p=4;scales=[1,0.707];imsize=512")
    assert (name, params) == ("gem", {"p": "4", "scales": "[1,0.707]", "imsize": "512"})
    assert methods.create(name, **params).scales == (1.0, 0.707)
    with pytest.raises(UserError, match="descriptor"):
        parse_descriptor("gem:scales=[1;p=4")


def test_quantization_rs_is_a_list():
    assert protocols.create("quantization").cfg["rs"] == [1, 10, 100]
    assert protocols.create("quantization", rs="[1,5]").cfg["rs"] == [1, 5]
    with pytest.raises(UserError, match=r"rs=\[1,5\]"):
        protocols.create("quantization", rs="1,5")


# ---------------------------------------------------------------- spec files
def test_spec_file_list_is_one_job_list_of_lists_a_grid(tmp_path):
    spec = tmp_path / "ml.toml"
    spec.write_text('method = "pretrained"\ndataset = "mnist-unseen"\n'
                    'params = { ks = [1, 2], pca_dim = [8, 16] }\n')
    jobs = jobs_from_spec(spec)
    assert [(j.protocol_params["ks"], j.params["pca_dim"]) for j in jobs] == [([1, 2], 8), ([1, 2], 16)]
    spec.write_text('method = "pretrained"\ndataset = "mnist-unseen"\nprotocol_params = { ks = [[1], [1, 2]] }\n')
    assert [j.protocol_params["ks"] for j in jobs_from_spec(spec)] == [[1], [1, 2]]
    spec.write_text('method = "pretrained"\ndataset = "mnist-unseen"\nparams = { ks = "1,2" }\n')
    with pytest.raises(UserError, match=r"ks=\[1,2\]"):
        jobs_from_spec(spec)
    spec.write_text('method = "pretrained"\ndataset = "mnist-unseen"\nparams = { ks = [[1], 2] }\n')
    with pytest.raises(UserError, match="list of lists"):
        jobs_from_spec(spec)


# ---------------------------------------------------------------- ${shared}
def test_one_spelling_of_the_shared_folder(tmp_path):
    assert SHARED == "${shared}"
    assert substitute_shared({"a": ["${shared}/x"]}, tmp_path) == {"a": [f"{tmp_path}/x"]}
    with pytest.raises(MissingDataError, match="shared"):
        substitute_shared("${shared}/x", None)
    with pytest.raises(UserError, match=r"\$\{shared\}"):
        substitute_shared("{shared}/x", tmp_path)
    from reports.evaluate import _NoShared, substitute
    assert substitute("${shared}/retrieval", tmp_path) == f"{tmp_path}/retrieval"
    with pytest.raises(_NoShared):
        substitute("${shared}/retrieval", None)


def test_spec_and_table_files_use_the_one_spelling():
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    files = [*root.glob("specs/**/*.toml"), *root.glob("reports/tables/*.toml"), root / "visrep/specs/default.toml"]
    assert files
    for f in files:
        for line in f.read_text().splitlines():
            code = line.split("#", 1)[0]
            assert "{shared}" not in code.replace("${shared}", ""), f"{f}: {line}"
            if not code.lstrip().startswith("source"):  # a table's source is a label shown, not a path read
                assert not ('"../shared/data' in code and "=" in code.split('"', 1)[0]), f"{f}: {line}"


# ---------------------------------------------------------------- real run
@pytest.fixture(scope="module")
def mnist_root():
    from visrep.context import shared_data_dir
    shared = shared_data_dir()
    if shared is None or not (shared / "classification" / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST test set (../shared/data/classification/mnist) is absent")
    return shared / "classification"


def test_ks_list_runs_and_writes_recall_at_each_k(mnist_root, tmp_path):
    from visrep.runner import RunSettings, run_job
    params = parse_assignments(["ks=[1,2,4,8]", "nmi=false", "pca_dim=8"],
                               plugin_classes("pretrained", "mnist-unseen"))
    [job] = expand_experiment({"method": "pretrained", "dataset": "mnist-unseen", "params": params},
                              data_root=str(mnist_root), where="command line")
    rec = run_job(job, RunSettings(results_dir=str(tmp_path / "results"), quiet=True, use_cache=False))
    assert rec["protocol_params"]["ks"] == [1, 2, 4, 8]
    assert sorted(rec["metrics"]) == ["recall@1", "recall@2", "recall@4", "recall@8"]
    r = [rec["metrics"][f"recall@{k}"] for k in (1, 2, 4, 8)]
    assert 0 < r[0] <= r[1] <= r[2] <= r[3] <= 1
