"""Local features: DoG + SIFT (OpenCV) with full frames, RootSIFT.

- SIFT: Lowe, Distinctive image features from scale-invariant keypoints, IJCV 2004 (difference of
  Gaussians detector, 128-D gradient-orientation histogram descriptor).
- RootSIFT: Arandjelović & Zisserman, Three things everyone should know to improve object
  retrieval, CVPR 2012: L1-normalize each SIFT descriptor, then take the element-wise square
  root (so that the Euclidean distance between RootSIFTs is the Hellinger kernel of SIFTs);
  the result has unit L2 norm.

A set of local features of one image is a pair ``(desc, frames)``: ``desc`` (n, 128) float32,
``frames`` (n, 4) float32 with columns x, y, scale (OpenCV keypoint ``size``, the diameter of
the meaningful neighbourhood), orientation (radians, counter-clockwise in image coordinates as
OpenCV reports degrees). An image with no keypoints (or an empty or flat image) gives
``n = 0``: it is indexed as empty and every method scores it zero.

:func:`visrep.methods.local.pipeline.local_features` runs extraction over a dataset, cached per
split. The registered methods ``sift`` and ``rootsift`` (in ``plugins.py``) are *retrieval* methods: they rank the database
by the number of mutual nearest-neighbour descriptor matches that also pass Lowe's ratio test
(0.8), a brute-force pairwise baseline (quadratic in images; use it on small sets only).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

SIFT_DIM = 128


def _to_gray_uint8(image: np.ndarray, where: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.size == 0:
        return np.zeros((0, 0), np.uint8)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        import cv2
        if img.dtype != np.uint8:
            raise UserError(f"{where}: expected uint8 RGB, got dtype {img.dtype}")
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    elif img.ndim != 2:
        raise UserError(f"{where}: expected an HxW or HxWx3 image, got shape {img.shape}")
    if img.dtype != np.uint8:
        if img.dtype.kind == "f":
            img = np.clip(img * (255.0 if img.size and img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        else:
            raise UserError(f"{where}: expected a uint8 or float image, got dtype {img.dtype}")
    return np.ascontiguousarray(img)


def rootsift(desc: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman CVPR 2012): sqrt(x / ||x||_1). (n, d) -> (n, d) float32."""
    desc = np.asarray(desc, dtype=np.float32)
    if desc.ndim != 2:
        raise UserError(f"rootsift: descriptors must be (n, d), got shape {desc.shape}")
    if np.any(desc < 0):
        raise UserError("rootsift: SIFT descriptors must be non-negative")
    return np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), eps)).astype(np.float32)


def extract_sift(image: np.ndarray, kind: str = "sift", max_features: int | None = 2000,
                 where: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """DoG keypoints + SIFT descriptors of one image.

    image: (H, W, 3) uint8 RGB or (H, W) gray. Returns ``desc`` (n, 128) float32 (SIFT: OpenCV's
    values in [0, 255] scaled to unit L2 norm; RootSIFT: as :func:`rootsift`) and ``frames``
    (n, 4) float32 (x, y, scale, orientation in radians). ``max_features`` keeps the strongest
    n by detector response (None = all). Empty / flat images give n = 0.
    """
    import cv2

    if kind not in ("sift", "rootsift"):
        raise UserError(f"local feature kind must be 'sift' or 'rootsift', got {kind!r}")
    gray = _to_gray_uint8(image, where)
    empty = (np.zeros((0, SIFT_DIM), np.float32), np.zeros((0, 4), np.float32))
    if gray.size == 0 or min(gray.shape) < 8:
        return empty
    sift = cv2.SIFT_create(nfeatures=int(max_features) if max_features else 0)
    kps, desc = sift.detectAndCompute(gray, None)
    if desc is None or len(kps) == 0:
        return empty
    if max_features and len(kps) > max_features:  # OpenCV may keep ties beyond nfeatures
        keep = np.argsort([-k.response for k in kps], kind="stable")[:max_features]
        kps = [kps[i] for i in keep]
        desc = desc[keep]
    frames = np.array([(k.pt[0], k.pt[1], k.size, np.deg2rad(k.angle)) for k in kps], np.float32)
    desc = desc.astype(np.float32)
    if kind == "rootsift":
        desc = rootsift(desc)
    else:
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return desc, frames


def check_descriptors(desc, dim: int | None, where: str) -> np.ndarray:
    """Validate one image's descriptors: (n, d) real, finite; returns float32 C-contiguous."""
    arr = np.asarray(desc)
    if arr.ndim != 2:
        raise UserError(f"{where}: descriptors must be a 2-D (n, d) array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise UserError(f"{where}: descriptors must be real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[0] and arr.shape[1] != dim:
        raise UserError(f"{where}: descriptors have dimension {arr.shape[1]}, expected {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise UserError(f"{where}: descriptors contain NaN or infinite values")
    return arr


def stack_features(desc_list, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-image descriptors -> (all (N, d) float32, image_ids (N,) int64)."""
    dims = {np.asarray(d).shape[1] for d in desc_list if np.asarray(d).ndim == 2 and len(d)}
    if len(dims) > 1:
        raise UserError(f"{where}: images have descriptors of different dimensions {sorted(dims)}")
    dim = dims.pop() if dims else SIFT_DIM
    arrs = [check_descriptors(d, dim, f"{where} image {i}") if len(d) else np.zeros((0, dim), np.float32)
            for i, d in enumerate(desc_list)]
    ids = np.repeat(np.arange(len(arrs), dtype=np.int64), [len(a) for a in arrs])
    return (np.concatenate(arrs) if arrs else np.zeros((0, dim), np.float32)), ids


def mutual_nn_matches(a: np.ndarray, b: np.ndarray, ratio: float = 0.8) -> int:
    """Number of mutual nearest neighbours between descriptor sets a (n, d) and b (m, d) that
    also pass Lowe's ratio test (IJCV 2004, Sec. 7.1) in both directions."""
    if len(a) == 0 or len(b) == 0:
        return 0
    d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)
    ab = d2.argmin(1)
    ba = d2.argmin(0)
    mutual = ba[ab] == np.arange(len(a))
    if ratio < 1 and d2.shape[1] > 1:
        part = np.partition(d2, 1, axis=1)[:, :2]
        mutual &= part[:, 0] < ratio ** 2 * part[:, 1]
    if ratio < 1 and d2.shape[0] > 1:
        part = np.partition(d2, 1, axis=0)[:2]
        mutual &= (part[0] < ratio ** 2 * part[1])[ab]
    return int(mutual.sum())


