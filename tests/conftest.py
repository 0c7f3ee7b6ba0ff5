"""Shared fixtures: the workplace's real data (skip when absent), isolated results and cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from visrep.context import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; tests that need it skip with the reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data folder ../shared/data (or $VISREP_SHARED_DATA) is absent")
    return path


@pytest.fixture(scope="session")
def oxford5k_features(shared_data):
    path = shared_data / "retrieval" / "oxford5k" / "oxford_features_caffenet_pca128.fvecs"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test writes results and cache under its own tmp folder."""
    monkeypatch.setenv("VISREP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def toy_plugin_env(tmp_path):
    """Environment for a `python -m visrep` child that sees tests/plugins/visrep_testplugin.py as an
    installed distribution's entry point (group ``visrep.plugins``): the toy dataset and slow method."""
    plugin_dir = Path(__file__).parent / "plugins"
    dist = tmp_path / "ep" / "visrep_testplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: visrep-testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[visrep.plugins]\ntoy = visrep_testplugin\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path / 'ep'}:{plugin_dir}"}
