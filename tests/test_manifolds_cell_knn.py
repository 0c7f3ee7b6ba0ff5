"""The 'cells' kNN-graph index (methods/manifolds/cell_knn.py): exact when every cell is compared with
every cell, high recall on clustered data with few cells, the voting rule on a hand example."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.errors import UserError
from visrep.methods.manifolds.cell_knn import cell_knn, voted_cells
from visrep.methods.manifolds.knn_graph import build_graph, knn


def _clustered(n, d=16, per=20, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((max(2, n // per), d)).astype(np.float32)
    x = c[rng.integers(0, len(c), n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_every_cell_probed_is_the_exact_search():
    x = _clustered(1500)
    s_ex, i_ex = knn(x, 10)
    s, i = cell_knn(x, 10, nlist=12, probe=12, seed=1)
    assert np.allclose(s, s_ex, atol=1e-5)
    same = (i == i_ex) | np.isclose(s, s_ex, atol=1e-6)                     # ties may swap
    assert same.all() and (i[:, 0] == np.arange(len(x))).all()


def test_few_cells_probed_keep_a_high_recall_and_the_requested_id_type():
    x = _clustered(4000)
    _, i_ex = knn(x, 20)
    s, i = cell_knn(x, 20, nlist=80, probe=8, votes=4, seed=0, id_dtype=np.int32)
    assert i.dtype == np.int32 and s.dtype == np.float32
    recall = np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(i, i_ex)])
    assert 0.9 < recall < 1.0, recall                                        # approximate, and not by much
    assert (np.diff(s, axis=1) <= 1e-6).all()                                # rows by decreasing similarity
    # fewer vectors in the probed cells than k: id -1, similarity 0 for the missing places
    s2, i2 = cell_knn(x[:30], 25, nlist=10, probe=1, votes=1, seed=0)
    assert ((i2 == -1) == (s2 == 0)).all() and (i2 == -1).any()


def test_voted_cells_hand_example():
    """Cell 0's members name cell 2 three times and cell 1 once: [0, 2, 1]; cell 1's one member names cell 0:
    [1, 0], then the nearest remaining centroid (2); cells without members take their nearest centroids,
    themselves first."""
    fine = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], np.float32)
    cell = np.array([0, 0, 0, 0, 1])
    top = np.array([[0, 2], [0, 2], [0, 1], [0, 2], [1, 0]])
    got = voted_cells(cell, top, fine, 3)
    assert got.tolist() == [[0, 2, 1], [1, 0, 2], [2, 1, 0], [3, 1, 2]]


def test_graph_with_the_cells_index():
    x = _clustered(3000)
    g = build_graph(x, k=15, index="cells", nprobe=16)
    ex = build_graph(x, k=15)
    assert (abs(g.W - g.W.T)).max() < 1e-6 and g.info["index"] == "cells"
    overlap = g.A.multiply(ex.A).nnz / ex.A.nnz                               # mutual edges found
    assert overlap > 0.9, overlap
    with pytest.raises(UserError, match="graph index 'cells' builds the kNN graph of the database itself"):
        knn(x, 5, queries=x[:3], index="cells")


@pytest.mark.parametrize("shards", [2, 3])
def test_cells_in_shards_give_the_same_lists_as_one_piece(shards):
    x = _clustered(3000)
    one = knn(x, 12, index="cells", nprobe=8)
    parts = knn(x, 12, index="cells", nprobe=8, shards=shards)
    assert np.array_equal(one[1], parts[1]) and np.array_equal(one[0], parts[0])
    assert (one[1][:, 0] == np.arange(len(x))).mean() > 0.99               # rows filled, each vector first


def test_cells_in_shards_on_a_dask_cluster_give_the_same_graph():
    distributed = pytest.importorskip("distributed")
    x = _clustered(2000)
    one = build_graph(x, k=10, index="cells", nprobe=8)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        two = build_graph(x, k=10, index="cells", nprobe=8, shards=2)
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    assert any("search_cells" in p for p in prefixes), prefixes
    assert (one.W != two.W).nnz == 0 and np.array_equal(one.W.indices, two.W.indices)
