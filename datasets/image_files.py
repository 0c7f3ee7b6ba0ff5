"""Reading images of the standard layouts (``<root>/<dataset>/jpg/<name>.jpg``) as RGB uint8."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import UserError


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file into an (H, W, 3) uint8 RGB array; UserError if missing or unreadable."""
    import cv2

    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path} (missing or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def crop_box(img: np.ndarray, bbx) -> np.ndarray:
    """Crop (x1, y1, x2, y2) like revisitop's ``imcrop`` (floor/ceil, clipped to the image)."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbx)
    x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
    x2, y2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
    if x2 <= x1 or y2 <= y1:
        raise UserError(f"query box {tuple(bbx)} is empty inside a {w}x{h} image")
    return img[y1:y2, x1:x2]
