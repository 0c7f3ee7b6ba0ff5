"""Total recall, scene maps and view clustering on the real sample photographs (sample-views, small),
and the clustering protocol on hand-made partitions (with scikit-learn as the peer for NMI)."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.errors import UserError

FAST = {"k": 256, "max_features": 200, "vocab_niter": 5}


def _map(data, out):
    from visrep.registry import protocols
    return protocols.create("oxford").evaluate(out, data)["map"]


def _is_permutation(r, n_db):
    return all(sorted(r[:, j]) == list(range(n_db)) for j in range(r.shape[1]))


def test_total_recall_verifies_only_true_views_and_does_not_lose_to_bow(small_views):
    from visrep.registry import methods
    data, ctx = small_views
    bow = methods.create("bow", **FAST).run(data, ctx)
    qe = methods.create("total-recall", shortlist=5, **FAST).run(data, ctx)
    assert qe["ranks"].shape == (data.n_db, data.n_queries) and _is_permutation(qe["ranks"], data.n_db)
    v = qe["verified_counts"]
    assert v.sum() > data.n_queries and qe["stats"]["requeries_per_query"] > 0
    # the verified images are merged at the top: with >= 20 inliers they are all views of the query's object
    for j in range(data.n_queries):
        assert np.isin(qe["ranks"][:v[j], j], data.gnd[j]["ok"]).all(), data.query_names[j]
    assert _map(data, qe) >= _map(data, bow) - 1e-9


def test_total_recall_iterations_and_scene_maps_qe_run(small_views):
    from visrep.registry import methods
    data, ctx = small_views
    one = methods.create("total-recall", shortlist=5, iterations=1, **FAST).run(data, ctx)
    assert one["stats"]["requeries_per_query"] <= 1
    qe2 = methods.create("scene-maps-qe", shortlist=5, **FAST).run(data, ctx)
    assert _is_permutation(qe2["ranks"], data.n_db) and qe2["stats"]["scene_map_features"] > 0
    for j in range(data.n_queries):
        assert np.isin(qe2["ranks"][:qe2["verified_counts"][j], j], data.gnd[j]["ok"]).all()
    assert _map(data, qe2) > 0.7


def test_scene_maps_index_fewer_documents_and_return_member_images(small_views):
    from visrep.registry import methods, protocols
    data, ctx = small_views
    sm = methods.create("scene-maps", shortlist=5, **FAST).run(data, ctx)
    st = sm["stats"]
    assert _is_permutation(sm["ranks"], data.n_db)
    assert st["scene_maps"] < data.n_db and st["images_per_scene_map"] > 1
    assert st["features_per_scene_map"] > st["features_per_image"]
    assert _map(data, sm) > 0.7
    vc = methods.create("view-clustering", shortlist=5, **FAST).run(data, ctx)   # the same cached graph
    assert vc["stats"]["clusters"] == st["scene_maps"]
    m = protocols.create("clustering").evaluate(vc, data)
    # clusters are made of pairs with >= 20 verified inliers: on these photographs, views of one object only
    assert m["purity"] == 1.0 and m["nmi"] > 0.8, m


def test_clustering_protocol_hand_made_and_sklearn_peer():
    from sklearn.metrics import normalized_mutual_info_score
    from visrep.protocols.clustering import (
        contingency,
        nmi,
        purity,
        scenes_from_ground_truth,
    )

    from visrep.data import RetrievalData
    from visrep.registry import protocols

    gnd = [{"ok": np.array([0, 1, 2]), "junk": np.zeros(0, int)}, {"ok": np.array([3, 4]), "junk": np.zeros(0, int)}]
    assert scenes_from_ground_truth(gnd, 6).tolist() == [0, 0, 0, 1, 1, -1]
    data = RetrievalData(name="toy", db_names=[str(i) for i in range(6)], query_names=["a", "b"], gnd=gnd)
    P = protocols.create("clustering")
    # clusters {0,1}, {2,3,4}, {5}: purity (2 + 2) / 5, inverse purity (2 + 2) / 5
    m, per = P.score({"labels": np.array([0, 0, 1, 1, 1, 2])}, data)
    assert m["purity"] == pytest.approx(0.8) and m["inverse_purity"] == pytest.approx(0.8)
    assert m["n_clusters"] == 2 and m["n_labelled"] == 5
    assert np.isnan(per["purity"][5]) and np.nanmean(per["purity"]) == pytest.approx(m["purity"])
    k, c = np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(c, k, average_method="geometric"))
    # perfect, all-in-one, and random partitions
    assert P.evaluate({"labels": np.array([5, 5, 5, 7, 7, 0])}, data)["nmi"] == pytest.approx(1.0)
    assert nmi(contingency(np.zeros(5, int), c)) == 0.0 and purity(contingency(np.zeros(5, int), c)) == 0.6
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 7, 300), rng.integers(0, 5, 300)
    assert nmi(contingency(a, b)) == pytest.approx(normalized_mutual_info_score(b, a, average_method="geometric"))
    with pytest.raises(UserError, match="labels"):
        P.evaluate({"labels": np.zeros(3, int)}, data)
    with pytest.raises(UserError, match="labels"):
        P.evaluate({"ranks": np.zeros((6, 2), int)}, data)
