"""Real sample photographs as the input of attacks on an ImageNet network (task ``adversarial``).

Nothing to download: colour photographs shipped inside scikit-image, scikit-learn and matplotlib
(read as :mod:`visrep.datasets.sample_views` reads them), each centre-cropped to a square and
resized to ``size`` x ``size`` (224: EfficientNet-Lite0's ImageNet input) with area
interpolation. ``x`` (n, size, size, 3) uint8 RGB.

These photographs have no ImageNet ground truth. ``labels`` are all 0 (one placeholder class,
"photo"): the attacks with ``model = efficientnet-lite0`` attack the network's own top-1 class on
the clean image instead, and report ``success`` = the top-1 class changed.
"""
from __future__ import annotations

import hashlib

import numpy as np

from visrep.api import Dataset
from visrep.cache import code_version
from visrep.data import LabelledData
from visrep.errors import MissingDataError
from visrep.params import Param
from visrep.registry import register

from .sample_views import package_image_path

#: (package, file) of the colour photographs, in this order
PHOTOS = (
    ("skimage", "chelsea.png"), ("skimage", "coffee.png"), ("skimage", "astronaut.png"),
    ("skimage", "rocket.jpg"), ("skimage", "motorcycle_left.png"), ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"), ("matplotlib", "grace_hopper.jpg"),
)


def square_photo(path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB: the photograph at `path`, centre square crop, area-resized."""
    import cv2
    from PIL import Image
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except OSError:
        raise MissingDataError(f"sample image {path} is missing or unreadable; reinstall the package that ships it") from None
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if s > size
                                           else cv2.INTER_LINEAR))


@register
class PhotosAdversarial(Dataset):
    name = "photos-adversarial"
    task = "adversarial"
    default_protocol = "adversarial"
    summary = "real colour sample photographs (skimage/sklearn/matplotlib), square 224 px, to attack an ImageNet network"
    cite = "photographs shipped by scikit-image, scikit-learn and matplotlib"
    params = (Param("size", int, 224, "side of the square images in pixels", low=32, high=1024),)

    def load(self, ctx) -> LabelledData:
        size = self.cfg["size"]
        paths = [package_image_path(p, f) for p, f in PHOTOS]
        h = hashlib.sha256(f"{code_version(PhotosAdversarial)};{size}".encode())
        for p in paths:
            if not p.exists():
                raise MissingDataError(f"sample image {p} is missing; reinstall the package that ships it")
            h.update(hashlib.sha256(p.read_bytes()).digest())
        x = np.stack([square_photo(p, size) for p in paths])
        d = LabelledData(self.name, np.zeros(len(x), np.int64), ["photo"], "test", x=x,
                         paths=[str(p) for p in paths])
        d.manifest = h.hexdigest()[:16]
        return d
