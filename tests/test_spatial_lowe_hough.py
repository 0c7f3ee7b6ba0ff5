"""Lowe's Hough voting (IJCV 2004 Sec. 7.3-7.4): known answers on constructed correspondences.

Real photographs (self, known similarity / homography, unrelated) are in
tests/test_spatial_known_answers.py; the re-ranking run on sample-views in tests/test_spatial_real.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.spatial import geometry as G
from visrep.methods.spatial.lowe_hough import (
    agreement,
    fit_affine_batch,
    hough_clusters,
    hough_votes,
    lowe_hough_matching,
    one_to_one_counts,
)

from visrep.errors import UserError

D = 400.0                       # larger dimension of image A (pixels)


def _frames_under(M, t, n, seed, noise=0.0):
    """Frames of A and their images in B under x -> M x + t; B's scale and orientation are those of
    the similarity part of M (exact for a similarity). noise: pixels of position noise in B."""
    rng = np.random.default_rng(seed)
    fa = np.column_stack([rng.uniform(0, D, n), rng.uniform(0, 0.75 * D, n), rng.uniform(2, 10, n),
                          rng.uniform(0, 2 * np.pi, n)])
    s = np.sqrt(abs(np.linalg.det(M)))
    ang = np.arctan2(M[1, 0] - M[0, 1], M[0, 0] + M[1, 1])
    fb = fa.copy()
    fb[:, :2] = fa[:, :2] @ M.T + t + rng.normal(0, 1, (n, 2)) * noise
    fb[:, 2] *= s
    fb[:, 3] = np.mod(fa[:, 3] + ang, 2 * np.pi)
    return fa, fb


def _sim(s, a):
    return s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_votes_of_a_known_similarity_fall_in_one_bin():
    """Every correspondence of one similarity votes in the bin of the true pose, computed by hand:
    scale 1.5 -> log2 = 0.585 in bin 0 ([0, 1)); 100 degrees -> bin 3 ([90, 120)); location = the
    centre of A (200, 200) mapped into B, in bins of 0.25 x 400 x 2^0.5 = 141.4 px."""
    a, s, t = np.deg2rad(100.0), 1.5, np.array([250.0, 120.0])
    M = _sim(s, a)
    fa, fb = _frames_under(M, t, 60, seed=0)
    pairs = np.column_stack([np.arange(60)] * 2)
    bins = hough_votes(fa, fb, pairs, D)
    assert bins.shape == (60, 16, 4)
    assert all(len(np.unique(b, axis=0)) == 16 for b in bins)          # 2 bins per dimension: 16 entries
    loc = M @ np.array([200.0, 200.0]) + t
    w = 0.25 * D * 2 ** 0.5
    true_bin = np.array([0, 3, int(np.floor(loc[0] / w)), int(np.floor(loc[1] / w))])
    assert all((b == true_bin).all(1).sum() == 1 for b in bins)        # each correspondence votes there once
    members, votes = hough_clusters(bins)
    assert votes[0] == 60 and members[0].all()
    # with noise (1 px, and +-3 degrees / +-5 % on the frames) away from bin borders: the same bin
    rng = np.random.default_rng(1)
    fa, fb = _frames_under(M, t, 60, seed=2, noise=1.0)
    fb[:, 2] *= rng.uniform(0.95, 1.05, 60)
    fb[:, 3] += np.deg2rad(rng.uniform(-3, 3, 60))
    bins = hough_votes(fa, fb, pairs, D)
    assert all((b == true_bin).all(1).sum() == 1 for b in bins)


def test_two_closest_bins_per_dimension_by_hand():
    """Orientation 44 degrees votes in bins [0, 30) and [30, 60); 46 in [30, 60) and [60, 90); 355
    in [330, 360) and [0, 30) (cyclic); scale 1.3 (log2 0.38) in bins -1 and 0, 1.5 (0.58) in 0 and 1."""
    fa = np.array([[10.0, 10.0, 4.0, 0.0]] * 4)
    fb = np.array([[10.0, 10.0, 4.0 * 1.3, np.deg2rad(44)], [10.0, 10.0, 4.0 * 1.5, np.deg2rad(46)],
                   [10.0, 10.0, 4.0, np.deg2rad(355)], [10.0, 10.0, 4.0, np.deg2rad(10)]])
    bins = hough_votes(fa, fb, np.column_stack([np.arange(4)] * 2), D)
    assert set(bins[0, :, 1]) == {0, 1} and set(bins[1, :, 1]) == {1, 2} and set(bins[2, :, 1]) == {11, 0}
    assert set(bins[0, :, 0]) == {-1, 0} and set(bins[1, :, 0]) == {0, 1}
    assert set(bins[3, :, 1]) == {11, 0}                                   # 10 degrees: [330, 360) and [0, 30)


def test_known_affine_transform_is_recovered_among_outliers():
    """40 correspondences of an affine map (shear 0.1, scale 0.8, 20 degrees) and 40 random ones:
    the verified cluster is exactly the 40, and the least-squares affine map is the true one."""
    M = _sim(0.8, np.deg2rad(20)) @ np.array([[1.0, 0.1], [0.0, 1.0]])
    t = np.array([30.0, -15.0])
    fa, fb = _frames_under(M, t, 80, seed=3)
    rng = np.random.default_rng(4)
    fb[40:, :2] = rng.uniform(0, D, (40, 2))
    fb[40:, 3] = rng.uniform(0, 2 * np.pi, 40)
    pairs = np.column_stack([np.arange(80)] * 2)
    r = lowe_hough_matching(fa, fb, pairs, image_size=D)
    assert r["score"] == 40 and r["inliers"][:40].all() and not r["inliers"][40:].any()
    assert np.allclose(r["T"][:2, :2], M, atol=1e-9) and np.allclose(r["T"][:2, 2], t, atol=1e-7)
    assert r["verified"] >= 1 and r["clusters"] >= 1


def test_outliers_of_a_cluster_are_removed_and_missed_matches_added():
    """Sec. 7.4: a cluster's outliers are discarded and the solution re-solved; the top-down phase
    adds matches that agree with the model but voted elsewhere. Constructed: 30 exact matches; a
    cluster made of 12 of them plus 3 wrong ones; verification ends with exactly the 30."""
    M, t = _sim(1.2, 0.3), np.array([10.0, 40.0])
    fa, fb = _frames_under(M, t, 33, seed=5)
    fb[30:, :2] += [[150.0, 0.0], [0.0, -170.0], [120.0, 120.0]]        # 3 wrong positions (tolerance 60 px)
    pairs = np.column_stack([np.arange(33)] * 2)
    pa, pb = fa[:, :2], fb[:, :2]
    cluster = np.zeros((1, 33), bool)
    cluster[0, :12] = cluster[0, 30:] = True
    T, valid = fit_affine_batch(cluster, pa, pb)
    assert valid[0] and not np.allclose(T[0, :, :2], M, atol=1e-3)      # the wrong ones pull the first fit
    agree = agreement(T, fa, fb, pairs, D)[0]
    T2, _ = fit_affine_batch((cluster & agree)[None, 0], pa, pb)
    full = agreement(T2, fa, fb, pairs, D)[0]
    assert full[:30].all() and not full[30:].any()
    assert one_to_one_counts(full[None], pairs, 33, 33)[0] == 30


def test_random_correspondences_score_low():
    rng = np.random.default_rng(6)
    n = 300
    fa = np.column_stack([rng.uniform(0, D, n), rng.uniform(0, D, n), rng.uniform(2, 10, n), rng.uniform(0, 6.28, n)])
    fb = np.column_stack([rng.uniform(0, D, n), rng.uniform(0, D, n), rng.uniform(2, 10, n), rng.uniform(0, 6.28, n)])
    r = lowe_hough_matching(fa, fb, np.column_stack([np.arange(n)] * 2), image_size=D)
    assert r["score"] < 0.05 * n


def test_one_to_one_counts_match_the_scalar_count():
    rng = np.random.default_rng(7)
    pairs = rng.integers(0, 20, (60, 2))
    masks = rng.random((5, 60)) < 0.4
    assert list(one_to_one_counts(masks, pairs, 20, 20)) == [G.one_to_one_count(pairs, m) for m in masks]


def test_bad_input_is_a_user_error():
    fa = np.array([[1.0, 1.0, 2.0, 0.0]] * 3)
    with pytest.raises(UserError, match="orientation"):
        lowe_hough_matching(fa, fa, np.zeros((3, 2), np.int64), orientation_bin_deg=25.0)
    with pytest.raises(UserError, match="frames"):
        lowe_hough_matching(np.zeros((3, 6)), fa, np.zeros((3, 2), np.int64))
    assert lowe_hough_matching(fa, fa, np.zeros((0, 2), np.int64))["score"] == 0
