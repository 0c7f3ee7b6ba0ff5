"""rwr / diffusion / fsr end to end through the CLI on the real Oxford5k descriptors (issue 6).

Numbers measured here (CaffeNet PCA-128, full-image queries, old Oxford protocol):
NN 0.403; diffusion k=30 alpha=0.9 about 0.42-0.44 (above NN); FSR on the same graph at
full rank equals CG at convergence.
"""
from __future__ import annotations

import json

import pytest

from visrep.commands import main


def run_json(capsys, *argv):
    rc = main(["run", *argv, "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


@pytest.fixture()
def common(shared_data, oxford5k_features):
    return ["--dataset", "oxford5k", "--data-root", str(shared_data / "retrieval"),
            "--set", f"features={oxford5k_features}"]


@pytest.mark.quick_reproduce
def test_diffusion_beats_nn_on_oxford5k(capsys, common):
    nn = run_json(capsys, "--method", "knn", *common)[0]["metrics"]["map"]
    rec = run_json(capsys, "--method", "diffusion", *common, "--set", "k=30", "--set", "alpha=0.9")[0]
    assert rec["params"]["k"] == 30 and rec["params"]["alpha"] == 0.9 and rec["params"]["gamma"] == 3.0
    assert rec["metrics"]["map"] > nn + 0.01
    t = rec["timings"]
    assert t["query"] > 0 and t["query_solve"] > 0
    assert rec["stats"]["graph_mb"] > 0 and rec["stats"]["mean_iterations"] <= 20


@pytest.mark.slow
def test_fsr_full_rank_matches_converged_cg_and_rwr(capsys, common):
    g = ["--set", "k=30", "--set", "alpha=0.9"]
    cg = run_json(capsys, "--method", "diffusion", *common, *g, "--set", "maxiter=1000", "--set", "tol=1e-10")[0]
    rw = run_json(capsys, "--method", "rwr", *common, *g, "--set", "maxiter=5000", "--set", "tol=1e-10")[0]
    fsr = run_json(capsys, "--method", "fsr", *common, *g, "--set", "rank=5063")[0]
    assert fsr["metrics"]["map"] == pytest.approx(cg["metrics"]["map"], abs=2e-4)
    assert rw["metrics"]["map"] == pytest.approx(cg["metrics"]["map"], abs=2e-4)
    assert fsr["stats"]["embedding_mb"] > 0


def test_bad_graph_parameters_exit_2(capsys, common):
    assert main(["run", "--method", "fsr", *common, "--set", "rank=6000", "--json"]) == 2
    assert "rank" in capsys.readouterr().err
    assert main(["run", "--method", "diffusion", *common, "--set", "alpha=1.0", "--json"]) == 2
    assert "alpha" in capsys.readouterr().err
    assert main(["run", "--method", "rwr", *common, "--set", "k=1", "--json"]) == 2
