"""Known answers of the photo-collection kernels: total recall's expansion, KVQ clusters (the paper's linear
program and the greedy simplification), scene maps."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.collections import query_expansion as Q
from visrep.methods.collections import scene_maps as S
from visrep.methods.spatial.geometry import apply_homography

from visrep.errors import UserError


def _similarity(scale, angle, tx, ty):
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1.0]])


# ---------------------------------------------------------------------------------------- total recall

def test_back_projection_recovers_query_positions_and_the_region():
    rng = np.random.default_rng(0)
    T = _similarity(0.7, 0.4, 30, -12) @ np.array([[1, 0.05, 0], [0.02, 1, 0], [1e-4, -2e-4, 1]])
    xy_q = rng.uniform(-50, 250, size=(200, 2))           # query positions, some outside the region
    xy_db = apply_homography(T, xy_q)
    back, inside = Q.back_project_inside(xy_db, T, np.array([0, 0, 200, 150]))
    assert np.allclose(back, xy_q, atol=1e-8)
    expect = (xy_q[:, 0] >= 0) & (xy_q[:, 0] <= 200) & (xy_q[:, 1] >= 0) & (xy_q[:, 1] <= 150)
    assert (inside == expect).all() and 0 < expect.sum() < len(expect)
    with pytest.raises(UserError, match="region"):
        Q.back_project_inside(xy_db, T, np.array([10, 0, 0, 5]))


def test_tfidf_vector_by_hand():
    idf = np.array([0.0, 1.0, 2.0, 0.5])
    v = Q.tfidf_vector(np.array([1, 1, 2, 0]), idf)
    expect = np.array([0.0, 2.0, 2.0, 0.0]) / np.sqrt(8.0)          # tf (1, 2, 1, 0) x idf
    assert np.allclose(v, expect)
    assert np.allclose(Q.tfidf_vector(np.zeros(0, int), idf), 0)
    with pytest.raises(UserError):
        Q.tfidf_vector(np.array([4]), idf)


def test_average_expansion_is_the_papers_mean():
    d0 = np.array([1.0, 0, 0])
    e = np.array([[0, 1.0, 0], [0, 0.6, 0.8]])
    assert np.allclose(Q.average_expansion(d0, e), [1 / 3, 1.6 / 3, 0.8 / 3])
    assert np.allclose(Q.average_expansion(d0, np.zeros((0, 3))), d0)


def test_expansion_reaches_an_image_the_query_does_not_share_words_with():
    """The point of query expansion: image 2 shares no word with the query, only with the verified
    image 1's back-projected features; the expanded query ranks it above the unrelated image 3."""
    idf = np.ones(6)
    D = np.stack([Q.tfidf_vector(w, idf) for w in ([0, 1], [0, 1, 2, 3], [2, 3], [4, 5])])
    d0 = Q.tfidf_vector(np.array([0, 1]), idf)
    assert (D @ d0)[2] == 0 == (D @ d0)[3]
    s = D @ Q.average_expansion(d0, Q.tfidf_vector(np.array([0, 1, 2, 3]), idf)[None])
    assert s[2] > 0 == s[3]


def test_merge_verified_puts_verified_first_by_inliers():
    ranking = np.array([4, 0, 3, 1, 2])
    out = Q.merge_verified(np.array([1, 3, 2]), np.array([30, 50, 30]), ranking)
    # 3 (50 inliers), then 1 and 2 tied at 30: 1 comes earlier in the ranking; then 4, 0
    assert out.tolist() == [3, 1, 2, 4, 0]
    assert Q.merge_verified(np.zeros(0, int), np.zeros(0), ranking).tolist() == ranking.tolist()


# ---------------------------------------------------------------------------------------- view clustering

def test_kvq_clusters_two_scenes_and_a_singleton():
    W = np.zeros((6, 6))
    for a, b, w in [(0, 1, 40), (0, 2, 30), (1, 2, 25), (3, 4, 60), (2, 3, 5)]:   # 2-3: below the threshold
        W[a, b] = W[b, a] = w
    labels, centres = S.kvq_clusters(W, 20, "greedy")
    assert centres.tolist() == [0, 3, 5]           # 0 covers {0,1,2} (ties with 1 and 2 broken by inliers)
    assert labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert (labels[centres] == np.arange(len(centres))).all()


def test_kvq_clusters_star_and_assignment_to_the_strongest_centre():
    # a hub covering everybody gives one cluster; with two centres, a shared image joins the stronger
    W = np.zeros((5, 5))
    W[0, 1:] = W[1:, 0] = 30
    labels, centres = S.kvq_clusters(W, 20, "greedy")
    assert centres.tolist() == [0] and (labels == 0).all()
    W = np.zeros((6, 6))
    for a, b, w in [(0, 1, 30), (0, 2, 30), (3, 4, 30), (3, 5, 30), (3, 2, 90)]:
        W[a, b] = W[b, a] = w
    labels, centres = S.kvq_clusters(W, 20, "greedy")
    assert centres.tolist() == [3, 0]                # 3 covers {2, 3, 4, 5}, then 0 covers {0, 1}
    assert labels.tolist() == [1, 1, 0, 0, 0, 0]     # 2 is covered by both: it joins 3 (90 > 30 inliers)
    with pytest.raises(UserError, match="square"):
        S.kvq_clusters(np.zeros((2, 3)), 1)


# ------------------------------------------------------------------ KVQ: the paper's LP vs the greedy cover

def _graph(n, edges, w=30.0):
    W = np.zeros((n, n))
    for a, b in edges:
        W[a, b] = W[b, a] = w
    return W


def _cover(W, t=20):
    return (np.maximum(W, W.T) >= t) | np.eye(len(W), dtype=bool)


def _assert_valid(W, labels, centres, t=20):
    """Every image joins a centre that covers it (the distortion bound), and each centre keeps itself."""
    C = _cover(W, t)
    n = len(W)
    assert C[centres[labels], np.arange(n)].all()
    assert (labels[centres] == np.arange(len(centres))).all() and len(set(centres.tolist())) == len(centres)


def test_kvq_lp_finds_two_centres_where_greedy_takes_three():
    """Set-cover counterexample for the greedy rule: a hub m covers 8 images, more than either true centre
    a (covers a, a1..a4, m) or b (covers b, b1..b4), but {a, b} is the only cover by 2 (a4's and b4's
    constraints share no image, so the LP value is >= 2; m's and b1's force alpha_a = alpha_b = 1)."""
    from visrep.methods.collections.kvq import kvq_greedy, kvq_lp, kvq_lp_weights
    a, b, m = 0, 5, 10
    A, B = [1, 2, 3, 4], [6, 7, 8, 9]
    edges = [(a, x) for x in A] + [(b, x) for x in B] + [(m, x) for x in A[:3] + B[:3]] + [(m, a)]
    W = _graph(11, edges)
    C = _cover(W)
    assert kvq_greedy(C, W).tolist() == [m, b, a]     # m first (gain 8), then b ({b, b4}), then a ({a4})
    alpha, value = kvq_lp_weights(C)
    assert value == pytest.approx(2.0, abs=1e-9)
    np.testing.assert_allclose(alpha, np.eye(11)[a] + np.eye(11)[b], atol=1e-9)
    assert kvq_lp(C).tolist() == [a, b]
    for kvq, k in (("lp", 2), ("greedy", 3)):
        labels, centres = S.kvq_clusters(W, 20, kvq)
        assert len(centres) == k
        _assert_valid(W, labels, centres)
    labels, centres = S.kvq_clusters(W, 20, "lp")
    assert labels.tolist() == [0] * 5 + [1] * 5 + [0]   # m is covered by a only


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 11, 30, 31, 32])
def test_kvq_lp_on_a_path_takes_the_domination_number(n):
    """Images on a path (each verified with its two neighbours): the fewest centres is the domination
    number ceil(n / 3); the covering matrix is an interval matrix (totally unimodular), so the LP's
    vertex solution is integral and takes exactly that many."""
    from visrep.methods.collections.kvq import kvq_lp_weights
    W = _graph(n, [(i, i + 1) for i in range(n - 1)])
    alpha, value = kvq_lp_weights(_cover(W))
    assert value == pytest.approx(np.ceil(n / 3), abs=1e-9)
    assert np.allclose(alpha, np.round(alpha), atol=1e-9)
    labels, centres = S.kvq_clusters(W, 20, "lp")
    assert len(centres) == int(np.ceil(n / 3))
    _assert_valid(W, labels, centres)


def test_kvq_lp_two_cliques_and_a_singleton():
    """Two cliques (4 and 3 images) and an unmatched image: one centre per clique, the singleton alone;
    the clusters are the cliques whichever member the LP picks."""
    W = _graph(8, [(i, j) for i in range(4) for j in range(i + 1, 4)] + [(4, 5), (4, 6), (5, 6)])
    labels, centres = S.kvq_clusters(W, 20, "lp")
    assert len(centres) == 3 and centres[0] < 4 <= centres[1] < 7 and centres[2] == 7
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    _assert_valid(W, labels, centres)


@pytest.mark.parametrize("W", [
    _graph(6, [(i, i + 1) for i in range(5)]),                                      # path of 6: {1, 4}
    _graph(10, [(0, i) for i in range(1, 5)] + [(5, i) for i in range(6, 9)]),     # two stars and a singleton
], ids=["path6", "stars"])
def test_kvq_lp_and_greedy_agree_on_a_unique_optimum(W):
    """When the optimal cover is unique (and greedy finds it), both solvers give the same clusters: the same
    centre for every image (centre ids; the LP lists centres ascending, greedy in the order taken)."""
    from visrep.methods.collections.kvq import kvq_lp_weights
    lab_lp, c_lp = S.kvq_clusters(W, 20, "lp")
    lab_g, c_g = S.kvq_clusters(W, 20, "greedy")
    assert sorted(c_g.tolist()) == c_lp.tolist()
    np.testing.assert_array_equal(c_lp[lab_lp], c_g[lab_g])
    assert kvq_lp_weights(_cover(W))[1] == pytest.approx(len(c_lp), abs=1e-9)


def test_kvq_lp_fractional_optimum_of_an_odd_cycle_still_covers():
    """The LP is a relaxation: on a 5-cycle its unique optimum is alpha = 1/3 everywhere (value 5/3; summing
    the 5 constraints gives 3 sum(alpha) >= 5, and the tight system is invertible), so every image has
    alpha > 0 and is a centre -- 5 centres where 2 suffice -- yet every image is covered."""
    from visrep.methods.collections.kvq import kvq_lp_weights
    W = _graph(5, [(i, (i + 1) % 5) for i in range(5)])
    alpha, value = kvq_lp_weights(_cover(W))
    assert value == pytest.approx(5 / 3, abs=1e-9)
    np.testing.assert_allclose(alpha, 1 / 3, atol=1e-9)
    labels, centres = S.kvq_clusters(W, 20, "lp")
    assert centres.tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [0, 1, 2, 3, 4]
    assert len(S.kvq_clusters(W, 20, "greedy")[1]) == 2


def test_kvq_lp_bounds_against_exact_set_cover_and_greedy():
    """Random verification graphs: LP value <= exact minimum cover (scipy's MILP, and brute force on 10
    images) <= greedy; an integral LP solution is an optimal cover; both solvers always cover every image."""
    from itertools import combinations

    from scipy.optimize import Bounds, LinearConstraint, milp
    from visrep.methods.collections.kvq import kvq_lp_weights
    rng = np.random.default_rng(0)
    for trial in range(12):
        n = 10 if trial < 4 else 40
        W = np.triu(rng.integers(0, 40, (n, n)) * (rng.random((n, n)) < 0.25), 1).astype(float)
        W = W + W.T
        C = _cover(W)
        alpha, value = kvq_lp_weights(C)
        exact = milp(np.ones(n), constraints=LinearConstraint(C.T.astype(float), lb=1), integrality=np.ones(n),
                     bounds=Bounds(0, 1))
        best = round(exact.fun)
        if n == 10:                                     # brute force: the smallest k with a covering k-subset
            brute = next(k for k in range(1, n + 1) for S_ in combinations(range(n), k) if C[list(S_)].any(0).all())
            assert brute == best
        lab_lp, c_lp = S.kvq_clusters(W, 20, "lp")
        lab_g, c_g = S.kvq_clusters(W, 20, "greedy")
        _assert_valid(W, lab_lp, c_lp)
        _assert_valid(W, lab_g, c_g)
        assert value <= best + 1e-9 and best <= len(c_g)
        if np.allclose(alpha, np.round(alpha), atol=1e-9):
            assert len(c_lp) == best


def test_kvq_lp_failure_is_a_user_error_naming_greedy(monkeypatch):
    import scipy.optimize
    from visrep.methods.collections.kvq import kvq_lp

    class Failed:
        status, x, fun, message = 4, None, None, "numerical difficulties"

    monkeypatch.setattr(scipy.optimize, "linprog", lambda *a, **k: Failed())
    with pytest.raises(UserError, match='kvq="greedy"'):
        kvq_lp(np.eye(3, dtype=bool))
    with pytest.raises(UserError, match="solver"):
        S.kvq_clusters(np.zeros((3, 3)), 20, "exact")


# ---------------------------------------------------------------------------------------- scene maps

def test_merge_features_same_word_within_radius_only():
    xy = np.array([[0, 0], [1, 1], [2.5, 2], [0, 0], [100, 100], [np.nan, 0]])
    words = np.array([7, 7, 7, 8, 7, 7])
    mxy, mw, group = S.merge_features(xy, words, 2.0)
    # 0-1 and 1-2 are within 2 px (a chain of three); word 8 at the same place stays apart; NaN dropped
    assert len(mw) == 3 and group[5] == -1
    assert group[0] == group[1] == group[2] != group[3] != group[4]
    assert np.allclose(mxy[group[0]], [3.5 / 3, 1.0]) and mw[group[3]] == 8
    assert len(S.merge_features(xy, words, 0.0)[1]) == 5           # radius 0: only drops the NaN


def test_scene_map_of_known_homographies_puts_every_feature_in_place():
    """Views of one scene related to the reference by known homographies: aligned by those
    homographies, every view's features land on the reference feature they depict, so the scene
    map has exactly the reference's features (plus each view's own extra features) at the right place."""
    rng = np.random.default_rng(1)
    ref_xy = rng.uniform(0, 400, size=(150, 2))
    ref_w = rng.permutation(1000)[:150]
    Hs = [_similarity(0.8, 0.3, 20, 40),
          np.array([[1.1, 0.1, -30], [-0.05, 0.9, 10], [2e-4, 1e-4, 1]]),
          _similarity(1.3, -0.5, -60, 5)]
    xy_list, w_list, to_ref = [ref_xy], [ref_w], [np.eye(3)]
    for k, H in enumerate(Hs):                       # view k sees a random 70% of the reference features
        keep = rng.random(150) < 0.7
        extra = rng.uniform(0, 400, size=(10, 2))     # and 10 features of its own (new words)
        xy_list.append(np.vstack([apply_homography(H, ref_xy[keep]), extra]))
        w_list.append(np.concatenate([ref_w[keep], 2000 + 10 * k + np.arange(10)]))
        to_ref.append(np.linalg.inv(H))              # view -> reference
    mxy, mw, source = S.build_scene_map(xy_list, w_list, to_ref, radius=1.0)
    assert len(mw) == 150 + 3 * 10
    pos = {int(w): p for w, p in zip(mw, mxy)}
    assert all(np.allclose(pos[int(w)], p, atol=1e-6) for w, p in zip(ref_w, ref_xy))
    for k, H in enumerate(Hs):                        # the extra features sit at their own projected place
        extra_xy = xy_list[k + 1][-10:]
        expect = apply_homography(np.linalg.inv(H), extra_xy)
        got = np.array([pos[2000 + 10 * k + i] for i in range(10)])
        assert np.allclose(got, expect, atol=1e-6)
    assert np.bincount(source).tolist() == [len(x) for x in xy_list]


def _photo_views():
    import cv2
    import skimage.data
    from visrep.methods.local.features import extract_sift
    img = skimage.data.astronaut()[::2, ::2].copy()
    h, w = img.shape[:2]
    Hs = [_similarity(0.8, 0.25, 30, 10),
          np.array([[0.95, 0.08, 12], [-0.04, 0.9, 20], [1.5e-4, -1e-4, 1]])]
    views = [cv2.warpPerspective(img, H, (w, h)) for H in Hs]
    feats = [extract_sift(im, "rootsift", 600) for im in [img, *views]]
    return img, Hs, feats


def test_scene_map_of_real_views_aligned_by_verified_homographies():
    """The same with homographies *estimated* by spatial verification on a real photograph:
    view features land within a pixel or two of where the true homography puts them, and
    features seen in several views are merged into one scene-map feature."""
    _img, Hs, feats = _photo_views()
    (d0, f0) = feats[0]
    # a vocabulary with one word per reference descriptor: view features get the word of their
    # nearest reference descriptor when it passes the ratio test, else a word of their own
    words = [np.arange(len(d0))]
    for d, _ in feats[1:]:
        d2 = ((d[:, None, :] - d0[None]) ** 2).sum(-1)
        nn = np.argsort(d2, 1)[:, :2]
        ok = d2[np.arange(len(d)), nn[:, 0]] < 0.64 * d2[np.arange(len(d)), nn[:, 1]]
        words.append(np.where(ok, nn[:, 0], 10**6 + np.arange(len(d))))
    to_ref, xy_list = [np.eye(3)], [f0[:, :2].astype(float)]
    for k, H in enumerate(Hs):
        fk = feats[k + 1][1]
        inl, T = S.verify_pair(fk, words[k + 1], f0, words[0], threshold=4.0, model="homography")
        assert inl > 50 and T is not None
        xy = fk[:, :2].astype(float)
        est, true = S.project_points(T, xy), apply_homography(np.linalg.inv(H), xy)
        err = np.sqrt(((est - true) ** 2).sum(1))
        assert np.median(err) < 1.0 and np.percentile(err, 90) < 2.5, (np.median(err), np.percentile(err, 90))
        to_ref.append(T)
        xy_list.append(xy)
    _mxy, mw, _ = S.build_scene_map(xy_list, words, to_ref, radius=3.0)
    n_all = sum(len(x) for x in xy_list)
    assert len(mw) < n_all - 100, "features seen in several views must merge"
