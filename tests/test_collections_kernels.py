"""Known answers of the photo-collection kernels: total recall's expansion, KVQ clusters, scene maps."""
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
    labels, centres = S.kvq_clusters(W, 20)
    assert centres.tolist() == [0, 3, 5]           # 0 covers {0,1,2} (ties with 1 and 2 broken by inliers)
    assert labels.tolist() == [0, 0, 0, 1, 1, 2]
    assert (labels[centres] == np.arange(len(centres))).all()


def test_kvq_clusters_star_and_assignment_to_the_strongest_centre():
    # a hub covering everybody gives one cluster; with two centres, a shared image joins the stronger
    W = np.zeros((5, 5))
    W[0, 1:] = W[1:, 0] = 30
    labels, centres = S.kvq_clusters(W, 20)
    assert centres.tolist() == [0] and (labels == 0).all()
    W = np.zeros((6, 6))
    for a, b, w in [(0, 1, 30), (0, 2, 30), (3, 4, 30), (3, 5, 30), (3, 2, 90)]:
        W[a, b] = W[b, a] = w
    labels, centres = S.kvq_clusters(W, 20)
    assert centres.tolist() == [3, 0]                # 3 covers {2, 3, 4, 5}, then 0 covers {0, 1}
    assert labels.tolist() == [1, 1, 0, 0, 0, 0]     # 2 is covered by both: it joins 3 (90 > 30 inliers)
    with pytest.raises(UserError, match="square"):
        S.kvq_clusters(np.zeros((2, 3)), 1)


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
