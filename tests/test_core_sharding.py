"""Per-shard kNN graph search and query groups: same results locally and on a Dask cluster."""
import numpy as np
import pytest
from visrep.methods.manifolds.knn_graph import build_graph, knn

from visrep.errors import UserError
from visrep.sharding import shard_map


def unit_rows(n, d=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_shard_map_without_a_cluster_is_a_plain_map():
    assert shard_map(lambda i, c: i * c, [1, 2, 3], c=10) == [10, 20, 30]


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_sharded_knn_equals_one_search(shards):
    x = unit_rows(500)
    s1, i1 = knn(x, 12)
    s2, i2 = knn(x, 12, shards=shards)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    g1, g2 = build_graph(x, k=12), build_graph(x, k=12, shards=shards)
    assert abs(g1.W - g2.W).max() < 1e-6


def test_more_shards_than_vectors_is_an_error():
    with pytest.raises(UserError, match="'shards' \\(20\\) is larger than the database \\(10 vectors\\)"):
        knn(unit_rows(10), 3, shards=20)


def test_shards_run_as_dask_tasks(tmp_path, shared_data, oxford5k_features):
    distributed = pytest.importorskip("dask.distributed")
    from visrep.runner import DaskExecutor, LocalExecutor, RunSettings
    from visrep.spec import expand_experiment
    x = unit_rows(400, seed=1)
    ref = knn(x, 8)[1]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        np.testing.assert_array_equal(knn(x, 8, shards=4)[1], ref)  # from a client process
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        assert any("search_shard" in p for p in prefixes), prefixes
    exp = {"method": "diffusion", "dataset": "oxford5k", "data_root": str(shared_data / "retrieval"),
           "params": {"features": str(oxford5k_features), "k": 30, "alpha": 0.9}}
    [plain] = expand_experiment(exp)
    [sharded] = expand_experiment({**exp, "params": {**exp["params"], "shards": 2}})
    local = LocalExecutor().map([plain], RunSettings(results_dir=str(tmp_path / "a"), quiet=True, use_cache=False))
    on_dask = DaskExecutor(n_workers=2).map([sharded], RunSettings(results_dir=str(tmp_path / "b"), quiet=True,
                                                                      use_cache=False))
    assert on_dask[0]["metrics"]["map"] == pytest.approx(local[0]["metrics"]["map"], abs=1e-9)
    assert round(local[0]["metrics"]["map"], 4) == 0.4516
