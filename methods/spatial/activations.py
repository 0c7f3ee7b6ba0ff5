"""Deep spatial matching (DSM): local features and visual words from CNN activations.

Siméoni, Avrithis & Chum, *Local features and visual words emerge in activations*, CVPR 2019.
The last convolutional activation map X (C, h, w) of the network that gives the global
descriptor (here the one named by ``descriptor``, default GeM on the ImageNet
EfficientNet-Lite0 of :mod:`visrep.methods.cnn.backbones`) holds, in each channel, blobs that
behave as local features; the channel index acts as their visual word ("no vocabulary
needed", slide 60). The global descriptor ranks the database; the top ``shortlist`` images are
spatially verified with these features by fast spatial matching (single-correspondence
hypotheses, best by inliers, least-squares affine refinement: :func:`visrep.methods.spatial.geometry.
fast_spatial_matching`) and re-ordered by their inlier count (ties keep the global order).

Detection (:func:`activation_features`): in every channel, the local maxima of the map
(3 x 3 neighbourhood, value >= ``min_activation`` x the channel's maximum, at most
``per_channel`` strongest per channel). Each maximum's region is the connected set of cells
around it with activation >= half the peak (a single-threshold extremal region); the feature
frame is (x, y, scale, 0): the activation-weighted centroid of the region and sqrt(region
area), both mapped to image pixels by the stride of the map; orientation 0 (upright).
Tentative correspondences: features of the same channel in the two images, restricted to the
``channels`` channels with the largest values in the query's global descriptor (the channels
that carry the global similarity; without this selection the about 1000 channels of a 12 x 12
map give about one feature per channel everywhere and random inliers abound: measured
mAP 0.51 on sample-views with all channels).

Deviations from the paper, stated plainly:
- the paper detects MSER regions on each channel and uses their ellipses (affine frames); here
  one extremal region per local maximum at a fixed relative threshold (half the peak) gives
  an upright, isotropic frame (3-dof hypotheses: translation + scale) -- the talk's
  example slide ("local maxima on each activation channel are local features") describes
  this simpler variant;
- the network is the ImageNet EfficientNet-Lite0 (no fine-tuned VGG/ResNet weights here), at a
  single scale, and no diffusion follows the re-ranking (the talk's table reports DSM with
  diffusion);
- the inlier threshold is in cells of the activation map (``threshold`` x the stride, in
  pixels of the database image).

Stride: a map cell is ``stride`` pixels of the network input, the network's total stride (32 for
EfficientNet and ResNet, 16 for VGG-16's conv5), not input size / map size: with "same"
padding a map has ceil(input / stride) cells, so a 300 px side gives 10 cells of 32 px, not of
30 (:func:`network_stride`); divided by the resize factor of the input it is in image pixels.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def network_stride(input_hw: tuple[int, int], map_hw: tuple[int, int]) -> int:
    """Total stride of a network (a power of two) from its input (H, W) and its map (h, w): the
    power of two nearest to the larger of H / h, W / w (a map of ceil(H / S) cells gives
    H / h in (S - S / h, S], nearest to S for h >= 2)."""
    r = max(input_hw[0] / map_hw[0], input_hw[1] / map_hw[1])
    return int(2 ** round(np.log2(max(r, 1.0))))



def image_stride(image_hw: tuple[int, int], map_hw: tuple[int, int], imsize: int | None, scale: float = 1.0) -> float:
    """Size in image pixels of one cell of a map (h, w) computed from an image (H, W) resized as
    :meth:`visrep.methods.cnn.backbones.Backbone.preprocess` does (longer side min(imsize, max(H, W))
    x scale): the network's stride (:func:`network_stride` on the resized input) over the resize
    factor."""
    H, W = image_hw
    target = max(H, W) * scale if imsize is None else min(imsize, max(H, W)) * scale
    s = target / max(H, W)
    hin, win = (max(1, round(H * s)), max(1, round(W * s))) if abs(s - 1) > 1e-6 else (H, W)
    return network_stride((hin, win), map_hw) * (H / hin)

def activation_features(x: np.ndarray, image_hw: tuple[int, int], per_channel: int = 2,
                        min_activation: float = 0.1, region_level: float = 0.5,
                        stride: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local features of one activation map.

    x: (C, h, w) float, non-negative. image_hw: (H, W) pixels of the image the map describes.
    stride: size of a map cell in image pixels (the network's stride over the resize factor of
    the input, see the module notes); None = H / h and W / w (a map that tiles the image exactly).
    Cell (i, j) covers pixels [j s, (j + 1) s) x [i s, (i + 1) s).
    Returns (channels (n,) int64, frames (n, 4) float64 (x, y, scale, 0) in image pixels).
    """
    from scipy import ndimage

    x = np.asarray(x, np.float32)
    if x.ndim != 3 or min(x.shape) < 1:
        raise UserError(f"activation_features: expected a (C, h, w) map, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError("activation_features: the activation map has NaN or infinite values")
    _, h, w = x.shape
    H, W = image_hw
    sy, sx = (H / h, W / w) if stride is None else (float(stride), float(stride))
    peak = x.max(axis=(1, 2))
    mx = ndimage.maximum_filter(x, size=(1, 3, 3), mode="constant", cval=-np.inf)
    cand = (x == mx) & (x > 0) & (x >= min_activation * peak[:, None, None])
    ch, ii, jj = np.nonzero(cand)
    if len(ch) == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    val = x[ch, ii, jj]
    order = np.lexsort((-val, ch))                       # by channel, strongest first
    ch, ii, jj, val = ch[order], ii[order], jj[order], val[order]
    rank = np.arange(len(ch)) - np.searchsorted(ch, ch)  # rank inside its channel
    keep = rank < per_channel
    ch, ii, jj, val = ch[keep], ii[keep], jj[keep], val[keep]
    # every feature's extremal region at once: its channel thresholded at region_level x its peak,
    # one slice per feature, labelled with 4-connectivity inside each slice only (one label call)
    xs = x[ch]                                                         # (n, h, w)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    lab, n_lab = ndimage.label(xs >= region_level * val[:, None, None], structure=structure)
    comp = lab[np.arange(len(ch)), ii, jj]                             # the region of each maximum
    flat, wts = lab.ravel(), xs.ravel().astype(np.float64)
    yy, xx = np.broadcast_to(np.mgrid[0:h, 0:w][:, None], (2, len(ch), h, w)).reshape(2, -1)
    tot = np.bincount(flat, wts, n_lab + 1)[comp]
    cy = np.bincount(flat, wts * yy, n_lab + 1)[comp] / tot
    cx = np.bincount(flat, wts * xx, n_lab + 1)[comp] / tot
    area = np.bincount(flat, None, n_lab + 1)[comp]
    frames = np.stack([(cx + 0.5) * sx, (cy + 0.5) * sy, np.sqrt(area) * np.sqrt(sx * sy), np.zeros(len(ch))], 1)
    return ch.astype(np.int64), frames


