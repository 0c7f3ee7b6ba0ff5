"""Geo clustering, location and tag suggestion (Avrithis et al. ACM-MM 2010; VIRaL, MTAP 2011):
known answers for the kernels (haversine on exact arcs and city pairs, with scikit-learn as the
peer; KVQ geo clusters of constructed groups; the location vote and tag votes on hand-made
neighbour lists), the suggestion protocol on hand-made outputs, the PROXY metadata of
sample-views, and the plugins end to end on the small sample-views."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.errors import UserError

FAST = {"k": 256, "max_features": 200, "vocab_niter": 5}
R = 6371008.8


# ---------------------------------------------------------------- haversine
def test_haversine_exact_arcs_and_city_pairs():
    from visrep.methods.collections.geo import haversine_m, pairwise_haversine_m
    from visrep.protocols.suggestion import great_circle_m

    # exact arcs on the sphere: a quarter meridian, half the equator, one degree of the equator, zero
    assert haversine_m(0, 0, 90, 0) == pytest.approx(np.pi * R / 2, rel=1e-12)
    assert haversine_m(0, 0, 0, 180) == pytest.approx(np.pi * R, rel=1e-12)
    assert haversine_m(0, 10, 0, 11) == pytest.approx(np.pi * R / 180, rel=1e-12)
    assert haversine_m(48.0, 2.0, 48.0, 2.0) == 0.0
    # antimeridian: 179.5 E to 179.5 W on the equator is 1 degree, not 359
    assert haversine_m(0, 179.5, 0, -179.5) == pytest.approx(np.pi * R / 180, rel=1e-9)
    # city pairs (great-circle distances on the mean-radius sphere): Paris-London ~343.5 km, New York-Los Angeles ~3936 km
    paris, london = (48.8566, 2.3522), (51.5074, -0.1278)
    ny, la = (40.7128, -74.0060), (34.0522, -118.2437)
    assert haversine_m(*paris, *london) == pytest.approx(343.5e3, abs=0.5e3)
    assert haversine_m(*ny, *la) == pytest.approx(3936e3, abs=2e3)
    # symmetric, and the protocol's own implementation agrees
    assert haversine_m(*paris, *london) == pytest.approx(haversine_m(*london, *paris), rel=1e-14)
    assert great_circle_m(*ny, *la) == pytest.approx(haversine_m(*ny, *la), rel=1e-14)
    # peer: scikit-learn's haversine on the unit sphere, radians
    from sklearn.metrics.pairwise import haversine_distances
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-80, 80, 20), rng.uniform(-180, 180, 20)
    D = pairwise_haversine_m(lat, lon)
    ref = haversine_distances(np.radians(np.column_stack([lat, lon]))) * R
    np.testing.assert_allclose(D, ref, rtol=1e-9, atol=1e-6)
    with pytest.raises(UserError, match="latitudes"):
        pairwise_haversine_m([0, 91], [0, 0])


# ---------------------------------------------------------------- geo clustering (KVQ)
def _group(lat0, lon0, n, spread_m, rng):
    from visrep.datasets.sample_views_meta import offset_latlon
    return offset_latlon(np.full(n, lat0), np.full(n, lon0), rng.uniform(-spread_m, spread_m, n),
                         rng.uniform(-spread_m, spread_m, n))


def test_geo_clusters_two_groups_5km_apart():
    from visrep.datasets.sample_views_meta import offset_latlon
    from visrep.methods.collections.geo import geo_clusters, haversine_m
    rng = np.random.default_rng(1)
    a = _group(37.97, 23.72, 7, 10.0, rng)
    blat, blon = offset_latlon(37.97, 23.72, 5000.0, 0.0)
    b = _group(float(blat), float(blon), 5, 10.0, rng)
    lat, lon = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    perm = rng.permutation(12)
    labels, centres = geo_clusters(lat[perm], lon[perm], 1000.0)
    truth = (np.arange(12) >= 7)[perm]
    assert len(centres) == 2 and (labels[centres] == np.arange(2)).all()
    assert len(set(zip(labels, truth))) == 2                         # the groups, exactly
    # a radius above 5 km merges them; one below the 10 m spread splits a group
    assert len(geo_clusters(lat, lon, 6000.0)[1]) == 1
    assert len(geo_clusters(lat, lon, 1.0)[1]) > 2
    # distortion bound: every image within the radius of its centre
    lab, C = geo_clusters(lat, lon, 20.0)
    assert (haversine_m(lat, lon, lat[C[lab]], lon[C[lab]]) <= 20.0).all()
    with pytest.raises(UserError, match="radius"):
        geo_clusters(lat, lon, 0.0)


def test_greedy_cover_hand_made():
    from visrep.methods.collections.kvq import kvq_solve
    # points on a line at 0, 1, 2, 10, 11 with radius 1: centre 1 covers {0, 1, 2}; then 10 / 11 tie on
    # gain and affinity -> the lower index (10) covers {10, 11}
    x = np.array([0.0, 1, 2, 10, 11])
    D = np.abs(x[:, None] - x[None])
    labels, centres = kvq_solve(D <= 1, -D, "greedy")
    assert centres.tolist() == [1, 3] and labels.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(UserError, match="cover itself"):
        kvq_solve(np.zeros((2, 2), bool), np.zeros((2, 2)), "greedy")


def test_geo_plus_visual_equals_visual_kvq_inside_each_geo_cluster():
    from visrep.methods.collections.kvq import kvq_lp_weights
    from visrep.methods.collections.scene_maps import kvq_clusters
    rng = np.random.default_rng(3)
    n = 30
    W = np.triu(rng.integers(0, 40, (n, n)).astype(float), 1)
    W = W + W.T
    geo = rng.integers(0, 3, n)
    Wm = np.where(geo[:, None] == geo[None], W, 0.0)
    masked, _ = kvq_clusters(Wm, 20, "greedy")
    for g in range(3):                                  # greedy: the same partition as KVQ block by block
        idx = np.flatnonzero(geo == g)
        lab, _ = kvq_clusters(W[np.ix_(idx, idx)], 20, "greedy")
        a, b = masked[idx], lab
        assert len(set(zip(a, b))) == len(set(a)) == len(set(b))
    assert all(len(set(geo[masked == c])) == 1 for c in np.unique(masked))
    # LP: the program of disjoint blocks separates (its optimum is the sum of the blocks' optima) and no
    # cluster spans two geo clusters (an image only joins a centre that covers it)
    masked, _ = kvq_clusters(Wm, 20, "lp")
    assert all(len(set(geo[masked == c])) == 1 for c in np.unique(masked))
    def cover(M):
        return (M >= 20) | np.eye(len(M), dtype=bool)
    blocks = sum(kvq_lp_weights(cover(W[np.ix_(geo == g, geo == g)]))[1] for g in range(3))
    assert kvq_lp_weights(cover(Wm))[1] == pytest.approx(blocks, abs=1e-7)


def test_geo_clusters_lp_on_a_street():
    """Images every 600 m along a meridian, radius 1 km: each covers its two neighbours only (600 m in,
    1200 m out), a path, so the paper's LP takes the domination number ceil(n / 3) of centres (the
    covering matrix is an interval matrix: the LP's vertex is integral), each image within 1 km of its centre."""
    from visrep.datasets.sample_views_meta import offset_latlon
    from visrep.methods.collections.geo import geo_clusters, haversine_m
    for n in (5, 9, 13):
        lat, lon = offset_latlon(np.full(n, 45.0), np.full(n, 7.0), np.zeros(n), 600.0 * np.arange(n))
        labels, centres = geo_clusters(lat, lon, 1000.0, "lp")
        assert len(centres) == int(np.ceil(n / 3)) and (labels[centres] == np.arange(len(centres))).all()
        assert (haversine_m(lat, lon, lat[centres[labels]], lon[centres[labels]]) <= 1000.0).all()
        assert len(geo_clusters(lat, lon, 1000.0, "greedy")[1]) >= len(centres)
    with pytest.raises(UserError, match="solver"):
        geo_clusters(lat, lon, 1000.0, "simplex")


@pytest.mark.slow
def test_kvq_lp_scales_to_5000_geo_points():
    """Timing of the paper's LP at n = 5000 random geo points (a 20 km square, radius 1 km: ~40 images per
    disc; ~194k covering pairs). The time is printed, never judged; the test checks the distortion bound of
    the LP's clusters and LP value <= greedy's number of centres (the LP is a relaxation). Measured (1 core):
    LP 16 s, value 137.9, optimum fractional on ~1800 images, so alpha > 0 gives ~1800 centres vs greedy's 210."""
    import time

    from visrep.datasets.sample_views_meta import offset_latlon
    from visrep.methods.collections.geo import (
        geo_clusters,
        haversine_m,
        pairwise_haversine_m,
    )
    from visrep.methods.collections.kvq import kvq_lp_weights
    rng = np.random.default_rng(0)
    n = 5000
    lat, lon = offset_latlon(np.full(n, 48.0), np.full(n, 2.0), rng.uniform(0, 20e3, n), rng.uniform(0, 20e3, n))
    cover = pairwise_haversine_m(lat, lon) <= 1000.0
    t0 = time.perf_counter()
    alpha, value = kvq_lp_weights(cover)
    t_lp = time.perf_counter() - t0
    labels, centres = geo_clusters(lat, lon, 1000.0, "lp")
    _, greedy = geo_clusters(lat, lon, 1000.0, "greedy")
    print(f"n={n} nnz={int(cover.sum())} LP {t_lp:.2f} s value {value:.3f}, lp centres {len(centres)}, "
          f"greedy centres {len(greedy)}, fractional {int(((alpha > 1e-6) & (alpha < 1 - 1e-6)).sum())}")
    assert (haversine_m(lat, lon, lat[centres[labels]], lon[centres[labels]]) <= 1000.0).all()
    assert value <= len(greedy) + 1e-9


# ---------------------------------------------------------------- location vote and tag votes
def test_location_vote_hand_computed():
    from visrep.datasets.sample_views_meta import offset_latlon
    from visrep.methods.collections.geo import (
        haversine_m,
        location_vote,
        spherical_mean,
    )
    # neighbours: three at site A (inliers 10, 20, 30 -> 60), two at site B 5 km east (50 + 5 = 55)
    A, B = (41.0, 2.0), offset_latlon(41.0, 2.0, 5000.0, 0.0)
    lat = np.array([A[0], A[0], A[0], B[0], B[0]], float)
    lon = np.array([A[1], A[1], A[1], B[1], B[1]], float)
    la, lo, members = location_vote(lat, lon, [10, 20, 30, 50, 5], 1000.0)
    assert members.tolist() == [0, 1, 2] and (la, lo) == pytest.approx(A, abs=1e-12)
    # B's two images outvote A's three when B has more inliers (60 vs 59); with counts A wins 3 to 2
    la, lo, members = location_vote(lat, lon, [10, 20, 29, 50, 10], 1000.0)
    assert members.tolist() == [3, 4] and haversine_m(la, lo, *B) < 1e-6
    assert location_vote(lat, lon, np.ones(5), 1000.0)[2].tolist() == [0, 1, 2]
    # the estimate is the weighted centre: two points 100 m apart on a meridian, weights 1 and 3 -> 75 m along
    p = offset_latlon(np.full(2, 41.0), np.full(2, 2.0), np.zeros(2), np.array([0.0, 100.0]))
    la, lo, _ = location_vote(p[0], p[1], [1.0, 3.0], 1000.0)
    assert haversine_m(la, lo, 41.0, 2.0) == pytest.approx(75.0, abs=1e-6) and lo == pytest.approx(2.0, abs=1e-12)
    # symmetric points: the spherical mean is the midpoint exactly
    assert spherical_mean([10.0, -10.0], [30.0, 30.0]) == pytest.approx((0.0, 30.0), abs=1e-12)
    # no neighbour: no estimate
    la, lo, members = location_vote([], [], [], 1000.0)
    assert np.isnan(la) and np.isnan(lo) and len(members) == 0
    with pytest.raises(UserError, match="positive weight"):
        location_vote([1.0], [1.0], [0.0], 1000.0)


def test_tag_votes_order():
    from visrep.methods.collections.geo import tag_votes
    tags = [("bridge", "london", "night"), ("london", "bridge", "bridge"), ("paris", "night")]
    # weights 2, 1, 3 (sum 6): bridge 3/6, london 3/6, night 5/6, paris 3/6 -> night, then ties by name
    got = tag_votes(tags, [2, 1, 3])
    assert [t for t, _ in got] == ["night", "bridge", "london", "paris"]
    assert [s for _, s in got] == pytest.approx([5 / 6, 0.5, 0.5, 0.5])
    # counts: bridge 2/3, london 2/3, night 2/3, paris 1/3
    assert [t for t, _ in tag_votes(tags, [1, 1, 1])] == ["bridge", "london", "night", "paris"]
    assert tag_votes([], []) == [] and tag_votes([("a",)], [0.0]) == []


# ---------------------------------------------------------------- the suggestion protocol
def _toy_data():
    from visrep.data import RetrievalData
    meta = {"lat": np.array([0.0, 0.0, 0.0, 0.0]), "lon": np.array([0.0, 0.0, 0.0, 0.0]),
            "scene_tags": [("a", "b"), ("a", "b"), ("c",), ("c",)], "tags": [("a",), ("b",), ("c",), ("c",)]}
    return RetrievalData(name="toy", db_names=list("wxyz"), query_names=[], gnd=[], extra={"meta": meta})


def test_suggestion_protocol_hand_made():
    from visrep.registry import protocols
    data = _toy_data()
    deg = 180 / (np.pi * R)                 # degrees of latitude per metre
    P = protocols.create("suggestion")
    out = {"locations": np.array([[50 * deg, 0], [500 * deg, 0], [5000 * deg, 0], [np.nan, np.nan]]),
           "tags": [["a", "x", "b"], ["x"], ["c", "a", "b", "d", "e"], []]}
    m, per = P.score(out, data)
    assert m["answered"] == 0.75 and m["within_100m"] == 0.25 and m["within_1km"] == 0.5
    assert m["median_error_m"] == pytest.approx(500.0) and m["mean_error_m"] == pytest.approx(5550 / 3)
    assert np.isnan(per["mean_error_m"][3]) and np.nanmean(per["mean_error_m"]) == pytest.approx(m["mean_error_m"])
    # P@1: 1, 0, 1, 0; P@3: 2/3, 0, 1/3, 0; P@5: 2/5, 0, 1/5, 0
    assert m["tag_p@1"] == 0.5 and m["tag_p@3"] == pytest.approx(1 / 4) and m["tag_p@5"] == pytest.approx(3 / 20)
    for k in ("within_100m", "tag_p@3"):
        assert per[k].mean() == pytest.approx(m[k])
    with pytest.raises(UserError, match="locations"):
        P.score({"locations": np.zeros((3, 2))}, data)
    with pytest.raises(UserError, match="needs"):
        P.score({"ranks": np.zeros((4, 1), int)}, data)
    from visrep.data import RetrievalData
    with pytest.raises(UserError, match="geo-tags"):
        P.score(out, RetrievalData(name="bare", db_names=list("wxyz"), query_names=[], gnd=[]))


# ---------------------------------------------------------------- proxy metadata of sample-views
def test_sample_views_proxy_metadata(small_views):
    from visrep.datasets.sample_views_meta import (
        image_meta,
        load_meta_table,
        scene_meta,
    )
    from visrep.methods.collections.geo import haversine_m
    data, _ = small_views
    meta, table = data.extra["meta"], load_meta_table()
    assert meta["proxy"] and len(meta["lat"]) == len(meta["tags"]) == data.n_db
    # every view is a view of its scene: objects of the ground truth, distractors of their own photograph
    for j, g in enumerate(data.gnd):
        assert {meta["scene"][i] for i in g["ok"]} == {data.extra["query_meta"]["scene"][j]}
    for i in range(data.n_db):
        la, lo, st = scene_meta(table, meta["scene"][i])
        assert haversine_m(meta["lat"][i], meta["lon"][i], la, lo) <= table["jitter_m"] + 1e-6
        assert meta["scene_tags"][i] == st and meta["tags"][i]
        assert set(meta["tags"][i]) <= set(st) | set(table["noise_tags"]) and set(meta["tags"][i]) & set(st)
    # an image's draws depend on its name only: the same image among other views gets the same metadata
    again = image_meta(table, meta["scene"][::-1], data.db_names[::-1])
    np.testing.assert_array_equal(again["lat"][::-1], meta["lat"])
    assert again["tags"][::-1] == meta["tags"]
    # not all images keep the same tags (a subset is drawn per image)
    assert len({meta["tags"][i] for i in range(data.n_db)}) > len(set(meta["scene"]))


# ---------------------------------------------------------------- plugins end to end
def test_view_clustering_geo_modes(small_views):
    from visrep.methods.collections.geo import geo_clusters

    from visrep.registry import methods, protocols
    data, ctx = small_views
    meta = data.extra["meta"]
    P = protocols.create("clustering")
    vis = methods.create("view-clustering", shortlist=5, **FAST).run(data, ctx)
    geo = methods.create("view-clustering", shortlist=5, mode="geo", **FAST).run(data, ctx)
    both = methods.create("view-clustering", shortlist=5, mode="geo+visual", **FAST).run(data, ctx)
    # geo: one cluster per site of the proxy metadata present (sites are hundreds of km apart, scenes of a site
    # within 1 km of its centre scene)
    sites = {load_site(s) for s in meta["scene"]}
    assert geo["stats"]["clusters"] == len(sites)
    np.testing.assert_array_equal(geo["labels"], geo_clusters(meta["lat"], meta["lon"], 1000.0)[0])
    # geo alone mixes the 3 object scenes of a site; visual inside geo clusters separates them
    assert P.evaluate(geo, data)["purity"] < 0.5 and P.evaluate(both, data)["purity"] == 1.0
    # two stages: no visual cluster spans two geo clusters
    assert all(len(set(geo["labels"][both["labels"] == c])) == 1 for c in np.unique(both["labels"]))
    assert P.evaluate(both, data)["nmi"] >= P.evaluate(vis, data)["nmi"] - 1e-12
    with pytest.raises(UserError, match="mode"):
        methods.create("view-clustering", mode="gps")


def load_site(scene):
    from visrep.datasets.sample_views_meta import load_meta_table
    return load_meta_table()["scenes"][scene]["site"]


def test_location_and_tag_suggest_leave_one_out(small_views):
    from visrep.registry import methods, protocols
    data, ctx = small_views
    P = protocols.create("suggestion")
    loc = methods.create("location-suggest", shortlist=5, **FAST).run(data, ctx)
    m = P.evaluate(loc, data)
    answered = np.isfinite(loc["locations"]).all(1)
    assert (answered == (loc["neighbours"] > 0)).all()
    # object scenes have 3 views: most are verified with another view of their scene; distractors (1 view) never
    obj = np.asarray(data.extra["object_of_view"]) >= 0
    assert answered[obj].mean() > 0.8 and not answered[~obj].any()
    # verified neighbours are views of the same scene, so the error is within the 10 m jitter of two images
    assert m["median_error_m"] < 20.0 and m["within_100m"] == m["answered"]
    tags = methods.create("tag-suggest", shortlist=5, **FAST).run(data, ctx)
    t = P.evaluate(tags, data)
    # suggestions are the neighbours' tags, by non-increasing score; none for an image without neighbours
    W = loc["neighbours"]
    for i in range(data.n_db):
        assert (len(tags["tags"][i]) > 0) == (W[i] > 0)
        assert np.all(np.diff(tags["tag_scores"][i]) <= 0)
    # the graph is the same, so the same images are answered; the neighbours are views of the same scene, so
    # most suggestions are scene tags (noise tags are 0-2 of an image's ~5; measured P@1 0.92 of the answered)
    assert t["tag_p@1"] <= answered.mean() and t["tag_p@1"] >= 0.75 * answered.mean()
    assert t["tag_p@5"] >= 0.5 * answered.mean()


def test_geo_modes_need_geo_tags_and_vote_count_runs(small_views):
    from visrep.data import RetrievalData
    from visrep.errors import MissingDataError
    from visrep.registry import methods, protocols
    data, ctx = small_views
    bare = RetrievalData(name="bare", db_names=list("ab"), query_names=[], gnd=[])
    for name, kw in (("view-clustering", {"mode": "geo"}), ("location-suggest", {}), ("tag-suggest", {})):
        with pytest.raises(MissingDataError, match="geo-tags"):
            methods.create(name, **kw).run(bare, ctx)
    inl = methods.create("location-suggest", shortlist=5, **FAST).run(data, ctx)
    cnt = methods.create("location-suggest", shortlist=5, vote="count", **FAST).run(data, ctx)
    # the same verified neighbours answer; only the weights of the vote differ
    np.testing.assert_array_equal(np.isfinite(inl["locations"]), np.isfinite(cnt["locations"]))
    assert protocols.create("suggestion").evaluate(cnt, data)["median_error_m"] < 20.0
