"""A simple hand-crafted global descriptor: gradient-orientation and hue-saturation histograms.

Baseline global descriptor of the embedded benchmark, needing no learned weights:
- orientation histograms of image gradients (8 signed bins, magnitude-weighted) over the
  whole image and a 2x2 grid (in the spirit of HOG, Dalal & Triggs CVPR 2005);
- a hue-saturation colour histogram (8 x 4 bins, weighted by saturation; Swain & Ballard
  IJCV 1991), which ignores brightness and so tolerates illumination changes.
Each block is square-rooted (Hellinger / power normalization) and L2-normalized; the blocks
are concatenated and L2-normalized: (5 * 8 + 32,) = (72,) float32 per image.
"""
from __future__ import annotations

import numpy as np


def _block(h: np.ndarray) -> np.ndarray:
    h = np.sqrt(np.maximum(h, 0))
    n = np.linalg.norm(h)
    return h / n if n > 0 else h


def histogram_descriptor(image: np.ndarray, size: int = 128, orientations: int = 8) -> np.ndarray:
    """(72,) float32 descriptor of an (H, W, 3) uint8 RGB image (see module docstring)."""
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        from visrep.errors import UserError
        raise UserError(f"histogram descriptor needs an HxWx3 RGB image of at least 2x2 pixels, got {image.shape}")
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy)
    b = ((np.arctan2(gy, gx) + np.pi) / (2 * np.pi) * orientations).astype(int) % orientations
    blocks = [_block(np.bincount(b.ravel(), mag.ravel(), orientations))]
    half = size // 2
    for y in (0, half):
        for x in (0, half):
            bb, mm = b[y:y + half, x:x + half], mag[y:y + half, x:x + half]
            blocks.append(_block(np.bincount(bb.ravel(), mm.ravel(), orientations)))
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hue = (hsv[..., 0].astype(int) * 8) // 180
    sat = (hsv[..., 1].astype(int) * 4) // 256
    blocks.append(_block(np.bincount((hue * 4 + sat).ravel(), hsv[..., 1].ravel().astype(np.float32), 32)))
    v = np.concatenate(blocks).astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


