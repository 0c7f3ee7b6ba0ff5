"""Known-answer, property and peer tests of the spatial-matching kernels (methods/geometry.py, hpm)."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.spatial import geometry as G
from visrep.methods.spatial.hough_pyramid import hough_pyramid_matching, level_weights

from visrep.errors import UserError


def _similarity(s, a, tx, ty):
    c, si = s * np.cos(a), s * np.sin(a)
    return np.array([[c, -si, tx], [si, c, ty], [0, 0, 1.0]])


def _frames_under(H, n=60, seed=0, a=0.4, s=1.5):
    """Random frames in A and their images in B under the similarity H = s R(a) + t."""
    rng = np.random.default_rng(seed)
    fa = np.column_stack([rng.uniform(0, 400, n), rng.uniform(0, 300, n), rng.uniform(2, 10, n),
                          rng.uniform(0, 2 * np.pi, n)])
    fb = fa.copy()
    fb[:, :2] = G.apply_homography(H, fa[:, :2])
    fb[:, 2] *= s
    fb[:, 3] = np.mod(fa[:, 3] + a, 2 * np.pi)
    return fa, fb


def test_single_correspondence_gives_exact_similarity():
    H = _similarity(1.5, 0.4, 30, -20)
    fa, fb = _frames_under(H)
    pairs = np.column_stack([np.arange(60), np.arange(60)])
    T = G.correspondence_transforms(fa, fb, pairs)
    assert np.allclose(T, H[:2][None], atol=1e-9)
    P = G.similarity_parameters(fa, fb, pairs)
    assert np.allclose(P[:, 2], np.log(1.5)) and np.allclose(P[:, 3], 0.4)
    assert np.allclose(P[:, :2], [30, -20])


def test_affine_frames_give_the_affine_map():
    rng = np.random.default_rng(1)
    A = np.array([[1.2, 0.3], [-0.1, 0.8]])
    t = np.array([5.0, 7.0])
    Sa = rng.normal(size=(10, 2, 2)) + 3 * np.eye(2)
    pa = rng.uniform(0, 100, (10, 2))
    fa = np.column_stack([pa, Sa.reshape(10, 4)])
    fb = np.column_stack([pa @ A.T + t, (A @ Sa).reshape(10, 4)])
    T = G.correspondence_transforms(fa, fb, np.column_stack([np.arange(10)] * 2))
    assert np.allclose(T[:, :, :2], A) and np.allclose(T[:, :, 2], t)


def test_word_correspondences_enumerate_all_pairs():
    wa = np.array([3, 1, 3, 7])
    wb = np.array([3, 3, 9, 1, 7, 7])
    got = {tuple(p) for p in G.word_correspondences(wa, wb)}
    want = {(i, j) for i in range(4) for j in range(6) if wa[i] == wb[j]}
    assert got == want and len(want) == 7
    assert {tuple(p) for p in G.word_correspondences(wa, wb, max_per_word=1)} == {(1, 3)}


def test_nn_correspondences_recover_a_permutation():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(50, 16)).astype(np.float32)
    perm = rng.permutation(50)
    b = a[perm] + 0.01 * rng.normal(size=(50, 16)).astype(np.float32)
    p = G.nn_correspondences(a, b, ratio=0.8)
    assert len(p) == 50 and np.all(perm[p[:, 1]] == p[:, 0])


def test_fit_homography_and_affine_exact():
    rng = np.random.default_rng(3)
    H = np.array([[1.1, 0.2, 10], [-0.1, 0.9, 5], [2e-4, -1e-4, 1]])
    pa = rng.uniform(0, 500, (20, 2))
    assert np.allclose(G.fit_homography(pa, G.apply_homography(H, pa)), H, atol=1e-8)
    A = np.array([[0.9, 0.1, 3], [0.2, 1.1, -4]])
    assert np.allclose(G.fit_affine(pa, G.apply_affine(A, pa)), A)
    assert G.fit_homography(pa[:3], pa[:3]) is None
    assert G.fit_affine(np.zeros((3, 2)), np.zeros((3, 2))) is None     # degenerate


def _noisy_homography_problem(seed=4, m=300, outliers=0.5):
    rng = np.random.default_rng(seed)
    H = np.array([[0.9, 0.15, 20], [-0.1, 1.05, -10], [1e-4, 5e-5, 1]])
    pa = rng.uniform(0, 640, (m, 2))
    pb = G.apply_homography(H, pa) + rng.normal(0, 0.5, (m, 2))
    bad = rng.random(m) < outliers
    pb[bad] = rng.uniform(0, 640, (int(bad.sum()), 2))
    return H, pa, pb, ~bad


def test_ransac_recovers_homography_and_inliers():
    H, pa, pb, good = _noisy_homography_problem()
    Hest, mask = G.ransac_homography(pa, pb, 3.0, rng=np.random.default_rng(0))
    assert G.corner_error(Hest, H, 640, 640) < 2.0
    assert (mask & good).sum() >= 0.95 * good.sum() and (mask & ~good).sum() <= 3


def test_ransac_agrees_with_opencv_on_the_same_correspondences():
    cv2 = pytest.importorskip("cv2")
    H, pa, pb, _ = _noisy_homography_problem(seed=5)
    _, mine = G.ransac_homography(pa, pb, 3.0, rng=np.random.default_rng(0))
    Hc, mc = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    mc = mc.ravel().astype(bool)
    assert (mine & mc).sum() / (mine | mc).sum() > 0.95
    assert G.corner_error(Hc, H, 640, 640) < 2.0


def test_ransac_agrees_with_pydegensac():
    pydegensac = pytest.importorskip("pydegensac", reason="pydegensac not installed (pip install pydegensac)")
    _, pa, pb, _ = _noisy_homography_problem(seed=6)
    _, mine = G.ransac_homography(pa, pb, 3.0, rng=np.random.default_rng(0))
    _, md = pydegensac.findHomography(pa, pb, 3.0)
    assert (mine & md).sum() / (mine | md).sum() > 0.95


def test_fsm_finds_similarity_among_outliers():
    H = _similarity(1.5, 0.4, 30, -20)
    fa, fb = _frames_under(H, n=80)
    rng = np.random.default_rng(7)
    fb[40:, :2] = rng.uniform(0, 500, (40, 2))            # half are outliers
    pairs = np.column_stack([np.arange(80), np.arange(80)])
    r = G.fast_spatial_matching(fa, fb, pairs, threshold=2.0, model="affine")
    assert r["score"] == 40 and r["inliers"][:40].all() and not r["inliers"][40:].any()
    assert np.allclose(r["T"], H, atol=1e-6)


def test_one_to_one_count():
    pairs = np.array([[0, 0], [0, 1], [0, 2], [1, 3]])
    assert G.one_to_one_count(pairs, np.ones(4, bool)) == 2


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="frames"):
        G.check_frames(np.zeros((3, 5)))
    with pytest.raises(UserError, match="positive"):
        G.check_frames(np.zeros((3, 4)))
    with pytest.raises(UserError, match="out of range"):
        G.check_pairs(np.array([[0, 5]]), 2, 2)
    with pytest.raises(UserError):
        hough_pyramid_matching(np.ones((2, 4)), np.ones((2, 4)), np.array([[0, 0]]), levels=0)
    with pytest.raises(UserError, match="1..16"):
        hough_pyramid_matching(np.ones((2, 4)), np.ones((2, 4)), np.array([[0, 0]]), levels=17)


# ---- HPM

def test_hpm_level_weights_give_affinity_two_to_minus_level():
    w = level_weights(5)
    assert np.allclose([w[k:].sum() for k in range(5)], 2.0 ** -np.arange(5))


def test_hpm_known_answer_small_case():
    """Three correspondences of one similarity (same finest bin) + one far away:
    each of the three has affinity 1 to the two others and 2^-(L-1) to the far one."""
    H = _similarity(1.0, 0.0, 0, 0)
    fa, fb = _frames_under(H, n=4, a=0.0, s=1.0)
    fa[:, 3] = fb[:, 3] = 0.0
    fb[3, :2] += 700                                          # a different translation bin (t_max = 3.5 * 1100)
    fa[3, 2] = fb[3, 2] * 4                                   # and scale 1/4: other half of the log-scale range
    r = hough_pyramid_matching(fa, fb, np.column_stack([np.arange(4)] * 2), levels=5, image_size=1100)
    L = 5
    far = 2.0 ** -(L - 1)
    assert np.allclose(r["strengths"][:3], 2 + far)
    assert np.isclose(r["strengths"][3], 3 * far)
    assert np.isclose(r["score"], 3 * (2 + far) + 3 * far)


def test_hpm_conflicts_keep_one_correspondence_per_label():
    H = _similarity(1.0, 0.0, 0, 0)
    fa, fb = _frames_under(H, n=5, a=0.0, s=1.0)
    fa[:, 3] = fb[:, 3] = 0.0
    pairs = np.column_stack([np.arange(5)] * 2)
    labels = np.array([0, 0, 1, 2, 3])                       # two correspondences of the same word
    r = hough_pyramid_matching(fa, fb, pairs, labels=labels, image_size=500, conflicts="label")
    assert r["erased"].sum() == 1
    assert np.isclose(r["score"], 4 * 3)                     # 4 survivors, each grouped with 3 at level 0
    # one-to-one on features (the default): distinct features never conflict, whatever their word
    r = hough_pyramid_matching(fa, fb, pairs, labels=labels, image_size=500)
    assert r["erased"].sum() == 0 and np.isclose(r["score"], 5 * 4)
    # a feature of A matched twice in the same bin: only one of the two correspondences survives
    fb2 = np.vstack([fb, fb[:1]])
    r = hough_pyramid_matching(fa, fb2, np.vstack([pairs, [[0, 5]]]), image_size=500)
    assert r["erased"].sum() == 1 and np.isclose(r["score"], 5 * 4)


def test_hpm_is_invariant_to_similarity_and_prefers_consistent_matches():
    H = _similarity(1.3, 1.0, 40, 10)
    fa, fb = _frames_under(H, n=100, a=1.0, s=1.3)
    pairs = np.column_stack([np.arange(100)] * 2)
    good = hough_pyramid_matching(fa, fb, pairs, image_size=500)["score"]
    rng = np.random.default_rng(9)
    fr = fb.copy()
    fr[:, :2] = rng.uniform(0, 500, (100, 2))
    fr[:, 3] = rng.uniform(0, 2 * np.pi, 100)
    bad = hough_pyramid_matching(fa, fr, pairs, image_size=500)["score"]
    assert good > 5 * bad
    # a second similarity of the same image pair scores (nearly) the same (binning effects aside)
    H2 = _similarity(1.3, 1.0, 40.5, 10.5)
    fa2, fb2 = _frames_under(H2, n=100, a=1.0, s=1.3)
    assert abs(hough_pyramid_matching(fa2, fb2, pairs, image_size=500)["score"] - good) < 0.2 * good


def test_hpm_scales_linearly():
    """Cost grows about linearly with m (no enumeration of pairs): m = 40000 runs quickly."""
    rng = np.random.default_rng(10)
    m = 40000
    fa = np.column_stack([rng.uniform(0, 800, m), rng.uniform(0, 600, m), rng.uniform(1, 9, m), rng.uniform(0, 6, m)])
    fb = np.column_stack([rng.uniform(0, 800, m), rng.uniform(0, 600, m), rng.uniform(1, 9, m), rng.uniform(0, 6, m)])
    r = hough_pyramid_matching(fa, fb, np.column_stack([np.arange(m)] * 2), labels=np.arange(m) % 5000)
    assert r["strengths"].shape == (m,) and np.isfinite(r["score"])


def test_one_to_one_inliers_keep_the_least_error_per_feature():
    # A0 -> B0 (err 0), A0 -> B1 (err 1), A1 -> B1 (err 2), A2 -> B1 (err 0.5), A3 -> B3 (outside the mask)
    ids_a, ids_b = np.array([0, 0, 1, 2, 3]), np.array([0, 1, 1, 1, 3])
    err = np.array([0.0, 1.0, 2.0, 0.5, 0.0])
    keep = G.one_to_one_inliers(ids_a, ids_b, np.array([True, True, True, True, False]), err)
    assert list(keep) == [True, False, False, True, False]


def test_refinement_replaces_a_hypothesis_that_holds_a_false_match():
    """FSM/LO rule (Philbin et al. CVPR 2007 Sec. 4; Chum et al. DAGM 2003): the least-squares
    re-estimate replaces the hypothesis even when it has one inlier fewer. Constructed: 40 exact
    correspondences of an affine map A and a hypothesis T0 (A then a 0.01 rad rotation) whose
    inliers include one false match; the refinement must return A exactly (the old rule,
    'inliers must not drop', kept T0)."""
    rng = np.random.default_rng(11)
    A = np.array([[0.9, 0.12, 14.0], [-0.08, 1.05, -6.0]])
    pa = np.vstack([rng.uniform(0, 400, (40, 2)), [[395.0, 295.0]]])
    pb = G.apply_affine(A, pa)
    c, a = np.array([200.0, 150.0]), 0.01
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    T0 = np.hstack([R @ A[:, :2], (R @ (A[:, 2] - c) + c)[:, None]])
    q0, qa = G.apply_affine(T0, pa[40:])[0], G.apply_affine(A, pa[40:])[0]
    pb[40] = q0 + 2.9 * (q0 - qa) / np.linalg.norm(q0 - qa)      # the false match: 2.9 px from T0, 5.3 from A
    thr = 3.0
    m0 = G.transfer_errors(T0, pa, pb) < thr
    assert m0.all()                                      # the hypothesis holds all 41 (the false one too)
    assert (G.transfer_errors(A, pa, pb) < thr).sum() == 40
    T, mask = G.refine(pa, pb, m0, thr, "affine", errors=G.transfer_errors(T0, pa, pb))
    assert np.allclose(T, A, atol=1e-9) and mask.sum() == 40 and not mask[40]
    H, mask = G.refine(pa, pb, m0, thr, "homography")
    assert G.corner_error(H, np.vstack([A, [0, 0, 1]]), 400, 400) < 1e-6 and mask.sum() == 40


def test_ransac_refinement_on_many_to_many_self_correspondences_is_the_identity():
    """An image matched with itself by word correspondences: every feature with itself (error 0)
    plus features a few pixels apart that share a word. The re-estimate uses the inliers
    one-to-one, so it is exactly the identity (it was 2.2 px off at the corners on a real photo)."""
    rng = np.random.default_rng(12)
    p = rng.uniform(0, 300, (200, 2))
    near = np.vstack([p[:60] + rng.uniform(-3, 3, (60, 2))])    # 60 close detections of other features
    pts = np.vstack([p, near])
    n = len(pts)
    pairs = np.vstack([np.column_stack([np.arange(n)] * 2),
                       np.column_stack([np.arange(60), 200 + np.arange(60)]),
                       np.column_stack([200 + np.arange(60), np.arange(60)])])
    pa, pb = pts[pairs[:, 0]], pts[pairs[:, 1]]
    for given in (pairs, None):                         # feature ids given, or read from equal coordinates
        H, mask = G.ransac_homography(pa, pb, 4.0, 500, rng=np.random.default_rng(0), pairs=given)
        assert G.corner_error(H, np.eye(3), 300, 300) < 1e-6
        assert G.one_to_one_count(pairs, mask) == n


def _reference_pyramid_strengths(q, sides, levels):
    """The level-by-level formulation of HPM's grouping, conflicts and undo (Tolias & Avrithis ICCV
    2011 Sec. 3; IJCV 2013 Sec. 4.2), as it was before the levels were vectorized: one np.unique
    per level for the bins, per side for the group sizes, and a lexsort per side for the conflicts."""
    sides = [np.unique(s, return_inverse=True)[1].ravel().astype(np.int64) for s in sides]
    w = level_weights(levels)
    B = 2 ** (levels - 1)
    C = len(q)
    s = np.zeros(C)
    erased = np.zeros(C, bool)
    codes, processed = [], []
    for k in range(levels):
        qk = q >> k
        nb = B >> k
        code = ((qk[:, 0] * nb + qk[:, 1]) * nb + qk[:, 2]) * nb + qk[:, 3]
        code = np.unique(code, return_inverse=True)[1].ravel().astype(np.int64)
        n_bins = int(code.max()) + 1
        keys = [code * (int(lab.max()) + 1) + lab for lab in sides]
        n_unique = np.min([np.bincount(np.unique(key) // (int(lab.max()) + 1), minlength=n_bins)
                           for key, lab in zip(keys, sides)], axis=0)
        proc = n_unique[code] >= 2
        codes.append(code)
        processed.append(proc)
        live = proc & ~erased
        s[live] += w[k] * (n_unique[code[live]] - 1)
        idx = np.flatnonzero(live)
        for key in keys:
            if not len(idx):
                break
            order = np.lexsort((idx, -s[idx], key[idx]))
            kk = key[idx][order]
            first = np.ones(len(kk), bool)
            first[1:] = kk[1:] != kk[:-1]
            erased[idx[order][~first]] = True
            idx = idx[order][first]
    alive = ~erased
    strength = np.zeros(C)
    for k in range(levels):
        cnt = np.bincount(codes[k][alive], minlength=int(codes[k].max()) + 1)
        strength += w[k] * np.where(processed[k] & alive, cnt[codes[k]] - 1, 0)
    return strength, erased


@pytest.mark.parametrize("levels", [1, 2, 5, 8])
def test_hpm_compiled_kernel_is_bit_identical_to_the_level_by_level_reference(levels):
    from visrep.methods.spatial.hough_pyramid import _pyramid_strengths
    rng = np.random.default_rng(levels)
    B = 2 ** (levels - 1)
    for m in (2, 3, 30, 400):
        # clustered bins (ties of strength abound) and many-to-many features (conflicts abound)
        centre = rng.integers(0, B, 4)
        q = np.where(rng.random((m, 4)) < 0.6, centre, rng.integers(0, B, (m, 4))).astype(np.int64)
        for sides in ([rng.integers(0, max(m // 3, 1), m), rng.integers(0, max(m // 2, 1), m)],
                      [rng.integers(0, 7, m)]):
            s_new, e_new = _pyramid_strengths(q, sides, levels)
            s_ref, e_ref = _reference_pyramid_strengths(q, sides, levels)
            assert np.array_equal(e_new, e_ref) and np.array_equal(s_new, s_ref)
            assert s_new.sum() == s_ref.sum()


def _reference_hough_bins(params, levels, max_translation, max_scale=10.0):
    """HPM's finest bins as the numpy expression they were before the kernel was compiled."""
    B = 2 ** (levels - 1)
    tx, ty, ls, rot = params.T
    lms = np.log(max_scale)
    keep = ((tx >= -max_translation) & (tx < max_translation) & (ty >= -max_translation)
            & (ty < max_translation) & (ls >= -lms) & (ls < lms))
    idx = np.flatnonzero(keep)
    q = np.stack([(tx[idx] + max_translation) / (2 * max_translation) * B,
                  (ty[idx] + max_translation) / (2 * max_translation) * B,
                  (ls[idx] + lms) / (2 * lms) * B,
                  np.mod(rot[idx] + 5 * np.pi / 16, 2 * np.pi) / (2 * np.pi) * B], 1)
    return np.clip(np.floor(q).astype(np.int64), 0, B - 1), idx


@pytest.mark.parametrize("levels", [1, 3, 5, 8])
def test_hpm_compiled_bins_equal_the_numpy_expression_including_bounds(levels):
    from visrep.methods.spatial.hough_pyramid import hough_bins
    rng = np.random.default_rng(levels)
    m, t_max = 3000, 2240.0
    P = np.column_stack([rng.normal(0, 1500, m), rng.normal(0, 1500, m), rng.normal(0, 2, m),
                         rng.uniform(-7, 14, m)])
    P[:40, 3] = 2 * np.pi - 5 * np.pi / 16                  # rotation on the wrap-around
    P[40:80, 0] = -t_max                                    # on the lower bound (kept)
    P[80:120, 1] = t_max                                    # on the upper bound (dropped)
    P[120:160, 2] = np.log(10.0)                            # scale bound (dropped)
    q, kept = hough_bins(P, levels, t_max)
    q_ref, kept_ref = _reference_hough_bins(P, levels, t_max)
    assert 0 < len(kept) < m and np.array_equal(kept, kept_ref) and np.array_equal(q, q_ref)


def test_similarity_parameters_reject_a_feature_index_out_of_range():
    with pytest.raises(IndexError):
        G.similarity_parameters(np.ones((2, 4)), np.ones((3, 4)), np.array([[0, 3]]))
    assert G.similarity_parameters(np.ones((2, 4)), np.ones((3, 4)), np.zeros((0, 2), int)).shape == (0, 4)


def test_fsm_inlier_counts_equal_the_transfer_errors_counted():
    rng = np.random.default_rng(3)
    for m in (1, 7, 300):
        T = np.concatenate([np.eye(2)[None] + 0.1 * rng.normal(size=(m, 2, 2)), rng.normal(0, 5, (m, 2, 1))], 2)
        pa = rng.uniform(0, 100, (m, 2))
        pb = np.where(rng.random((m, 1)) < 0.5, pa + rng.normal(0, 3, (m, 2)), rng.uniform(0, 100, (m, 2)))
        pb[0] = T[0, :, :2] @ pa[0] + T[0, :, 2]                             # hypothesis 0 has an inlier
        ref = (G.transfer_errors(T, pa, pb) < 6.0).sum(1)
        assert np.array_equal(G.inlier_counts(T, pa, pb, 6.0), ref) and ref.max() > 0
