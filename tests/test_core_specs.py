"""The Part II run specs expand into valid jobs (names and parameters checked), and the registry."""
from __future__ import annotations

from pathlib import Path

import pytest

from visrep.spec import jobs_from_spec

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs" / "part2").glob("*.toml"))


def test_part2_plugins_are_registered():
    from visrep.registry import methods
    for name in ("mac", "spoc", "gem", "rmac", "crow", "whiten", "rwr", "diffusion", "fsr"):
        cls = methods.get(name)
        assert cls.cite and cls.summary
    for name in ("rwr", "diffusion", "fsr"):
        assert {"k", "alpha", "gamma"} <= set(methods.get(name).param_names())
    assert "rank" in methods.get("fsr").param_names()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_expands(path, shared_data):
    jobs = jobs_from_spec(path)
    assert jobs
    for j in jobs:
        assert j.method in ("knn", "aqe", "alpha-qe", "diffusion", "rwr", "fsr", "mac", "spoc", "gem", "rmac",
                            "crow", "whiten")


def test_oxford_proxy_spec_has_paper_defaults_and_grid(shared_data):
    jobs = jobs_from_spec(SPECS[[p.name for p in SPECS].index("oxford5k_proxy.toml")])
    diff = [(j.params["k"], j.params["alpha"]) for j in jobs if j.method == "diffusion"]
    assert (50, 0.99) in diff and (30, 0.9) in diff and len(diff) == 16
    assert all(j.params["gamma"] == 3.0 for j in jobs if j.method in ("diffusion", "fsr", "rwr"))
