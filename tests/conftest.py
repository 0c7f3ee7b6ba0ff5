"""Shared fixtures: the workplace's real data (skip when absent), isolated results and cache."""
from __future__ import annotations

import os

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
