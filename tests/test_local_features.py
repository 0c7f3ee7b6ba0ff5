"""Local features (SIFT / RootSIFT) and the pairwise matching baseline."""
import numpy as np
import pytest
from visrep.methods.local.features import (
    check_descriptors,
    extract_sift,
    mutual_nn_matches,
    rootsift,
    stack_features,
)

from visrep.errors import UserError


def _photo():
    from skimage import data
    return data.astronaut()


def test_rootsift_known_answer():
    x = np.array([[1.0, 3.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]], np.float32)
    r = rootsift(x)
    np.testing.assert_allclose(r, [[0.5, np.sqrt(0.75), 0, 0], [1, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1, atol=1e-6)
    # Hellinger kernel: <rootsift(a), rootsift(b)> = sum sqrt(a_i b_i) / sqrt(|a|_1 |b|_1)
    assert r[0] @ r[1] == pytest.approx(np.sqrt(1 * 4) / np.sqrt(4 * 4), abs=1e-6)
    with pytest.raises(UserError, match="non-negative"):
        rootsift(-x)


def test_extract_sift_frames_and_cap():
    img = _photo()
    d, f = extract_sift(img, "sift", 300)
    assert d.shape == (300, 128) and d.dtype == np.float32 and f.shape == (300, 4)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    h, w = img.shape[:2]
    assert (f[:, 0] >= 0).all() and (f[:, 0] < w).all() and (f[:, 1] < h).all()
    assert (f[:, 2] > 0).all() and (f[:, 3] >= 0).all() and (f[:, 3] < 2 * np.pi + 1e-6).all()
    dr, fr = extract_sift(img, "rootsift", 300)
    np.testing.assert_array_equal(f, fr)
    assert (dr >= 0).all()


def test_rotation_gives_matching_frames():
    """A 90 degree rotation keeps keypoints: matched frames differ by ~90 degrees, same scale."""
    img = _photo()[100:356, 100:356]
    rot = np.ascontiguousarray(np.rot90(img))  # counter-clockwise
    d1, f1 = extract_sift(img, "rootsift", 500)
    d2, f2 = extract_sift(rot, "rootsift", 500)
    sim = d1 @ d2.T
    a, b = np.arange(len(d1)), sim.argmax(1)
    good = (sim.argmax(0)[b] == a) & (sim[a, b] > 0.95)
    assert good.sum() > 30
    dang = np.mod(f2[b[good], 3] - f1[a[good], 3], 2 * np.pi)
    # the median orientation change is 90 degrees one way or the other (OpenCV's angle convention)
    med = np.median(np.minimum(np.abs(dang - np.pi / 2), np.abs(dang - 3 * np.pi / 2)))
    assert med < 0.1
    np.testing.assert_allclose(np.median(f2[b[good], 2] / f1[a[good], 2]), 1.0, atol=0.05)


def test_empty_and_flat_images_give_no_features():
    for img in (np.zeros((0, 0, 3), np.uint8), np.full((64, 64, 3), 128, np.uint8), np.zeros((4, 4), np.uint8)):
        d, f = extract_sift(img)
        assert d.shape == (0, 128) and f.shape == (0, 4)


def test_bad_images_and_descriptors():
    with pytest.raises(UserError, match="image"):
        extract_sift(np.zeros((5, 5, 5, 5), np.uint8))
    with pytest.raises(UserError, match="dtype"):
        extract_sift(np.zeros((32, 32, 3), np.int64))
    with pytest.raises(UserError, match="kind"):
        extract_sift(_photo(), "surf")
    with pytest.raises(UserError, match="dimension 64, expected 128"):
        check_descriptors(np.zeros((3, 64)), 128, "img")
    with pytest.raises(UserError, match="real numbers"):
        check_descriptors(np.array([["a"] * 128]), 128, "img")
    with pytest.raises(UserError, match="different dimensions"):
        stack_features([np.zeros((2, 128)), np.zeros((2, 64))], "db")
    x, ids = stack_features([np.ones((2, 128)), np.zeros((0, 128)), np.ones((1, 128))], "db")
    assert x.shape == (3, 128) and ids.tolist() == [0, 0, 2]


def test_mutual_nn_matches_known_answer():
    a = np.array([[1, 0], [0, 1], [5, 5]], np.float32)
    b = np.array([[1.05, 0], [0, 1.1], [-7, 3]], np.float32)
    assert mutual_nn_matches(a, b, ratio=1.0) == 2
    assert mutual_nn_matches(a, b, ratio=0.8) == 2
    assert mutual_nn_matches(a, np.zeros((0, 2), np.float32)) == 0
    pair = np.array([[1, 0], [1, 0.01]], np.float32)   # equidistant from b: fails the ratio test
    assert mutual_nn_matches(pair, np.array([[1, 0.005]], np.float32), ratio=0.8) == 0
    assert mutual_nn_matches(pair, np.array([[1, 0.005]], np.float32), ratio=1.0) == 1


def test_registered_names_and_light_import():
    import subprocess
    import sys
    code = ("import sys; from visrep.registry import methods; names = methods.names(); "
            "need = ['sift','rootsift','kmeans','akm','rakm','agm','bow','he','he-wgc','vlad','smk','asmk',"
            "'asmk-star','pq','ivfadc','lopq']; missing = [n for n in need if n not in names]; "
            "heavy = [m for m in ('torch','faiss','cv2','sklearn','skimage','timm') if m in sys.modules]; "
            "print(missing, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.endswith("[] []"), out
