"""A detection proxy for nano-supervised detection: the cluttered-objects images, split for NSOD.

The setting of Yang, Shi, Xu, Ferrari & Avrithis, Training object detectors from few weakly-labeled
and many unlabeled images (Pattern Recognition 2021, arXiv:1912.00384): a detector is trained from
*one or few* images per class with image-level labels only, plus *many* completely unlabeled images,
and is evaluated on held-out test images. No VOC images are here, so this proxy reuses the generator
of :mod:`visrep.datasets.cluttered_objects` (object crops of real photographs pasted on real
background photographs, seeded): every database view of an object is one image with one object,
its class = the object (12 classes), its box = the pasted object's box; the generator's distractors
(background only, no known class) join the unlabeled images, as the paper's unlabeled images come
"in the wild" and may hold no labeled class.

Split (seeded, per class): ``labeled`` images per class whose image-level label is given (boxes never
used for training), ``test`` images per class (boxes used by the protocol only), the other views plus
all distractors unlabeled. Images are ``side`` pixels square. Meant to compare methods with each
other at proxy scale, never with the paper's VOC numbers.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from visrep.api import Dataset
from visrep.cache import code_version
from visrep.params import Param
from visrep.registry import register

from .cluttered_objects import OBJECTS, ClutteredObjects


@dataclass
class DetectionData:
    """A detection dataset (task ``detection``).

    ``image(i)`` -> HxWx3 uint8 RGB of image i in [0, n); ``boxes[i]`` (k_i, 4) float64 ground-truth
    boxes (x0, y0, x1, y1) and ``box_classes[i]`` (k_i,) int64 (k_i = 0 for an image with no object);
    ``labels`` (n, n_classes) bool image-level labels (known to a method for ``labeled_idx`` only);
    ``labeled_idx``, ``unlabeled_idx``, ``test_idx``: disjoint int64 index arrays.
    """

    name: str
    class_names: list[str]
    image: Callable[[int], np.ndarray]
    boxes: list
    box_classes: list
    labels: np.ndarray
    labeled_idx: np.ndarray
    unlabeled_idx: np.ndarray
    test_idx: np.ndarray
    image_names: list[str] = field(default_factory=list)
    manifest: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_images(self) -> int:
        return len(self.boxes)


def nsod_split(object_of: np.ndarray, n_labeled: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """(labeled, unlabeled, test) int64 indices: per class (object_of >= 0) a seeded permutation of its
    images gives `n_labeled` labeled then `n_test` test images; the rest and every image with
    object_of < 0 are unlabeled. Sorted index arrays."""
    rng = np.random.default_rng(seed)
    lab, test = [], []
    for c in np.unique(object_of[object_of >= 0]):
        idx = rng.permutation(np.flatnonzero(object_of == c))
        lab.append(idx[:n_labeled])
        test.append(idx[n_labeled:n_labeled + n_test])
    lab, test = np.sort(np.concatenate(lab)), np.sort(np.concatenate(test))
    unl = np.setdiff1d(np.arange(len(object_of)), np.concatenate([lab, test]))
    return lab.astype(np.int64), unl.astype(np.int64), test.astype(np.int64)


@register
class ClutteredDetection(Dataset):
    name = "cluttered-detection"
    task = "detection"
    default_protocol = "detection"
    summary = ("NSOD proxy: cluttered-objects images (one pasted object each, 12 classes) split into few "
               "weakly-labeled, many unlabeled (+ background-only) and test images")
    cite = ("visrep proxy after the setting of Yang, Shi, Xu, Ferrari & Avrithis, Pattern Recognition 2021 "
            "(arXiv:1912.00384); images of the cluttered-objects generator")
    params = (
        Param("views", int, 10, "images per class (views of each object)", low=2, high=20),
        Param("distractors", int, 12, "background-only images, all unlabeled", low=0, high=500),
        Param("side", int, 256, "side of the square images in pixels", low=64, high=2048),
        Param("object_size", float, 0.3, "longer side of a pasted object, as a fraction of the image side",
              low=0.05, high=1.0),
        Param("labeled", int, 1, "weakly-labeled images per class (the paper: one or few)", low=1),
        Param("test", int, 3, "test images per class", low=1),
        Param("seed", int, 0, "generator and split seed", low=0),
    )

    def load(self, ctx) -> DetectionData:
        cfg = self.cfg
        if cfg["labeled"] + cfg["test"] >= cfg["views"] + 1:
            from visrep.errors import UserError
            raise UserError(f"dataset '{self.name}': labeled ({cfg['labeled']}) + test ({cfg['test']}) must leave "
                            f"room in views ({cfg['views']})")
        src = ClutteredObjects(views=cfg["views"], distractors=cfg["distractors"], side=cfg["side"],
                               object_size=cfg["object_size"], seed=cfg["seed"]).load(ctx)
        object_of = np.asarray(src.extra["object_of_view"])
        n = src.n_db
        boxes = [np.zeros((0, 4)) if b is None else np.asarray(b, np.float64).reshape(1, 4) for b in src.extra["boxes"]]
        box_classes = [np.zeros(0, np.int64) if c < 0 else np.array([c], np.int64) for c in object_of]
        labels = np.zeros((n, len(OBJECTS)), bool)
        labels[object_of >= 0, object_of[object_of >= 0]] = True
        lab, unl, test = nsod_split(object_of, cfg["labeled"], cfg["test"], cfg["seed"])
        h = hashlib.sha256(f"{src.manifest};{code_version(ClutteredDetection)};{sorted(cfg.items())}".encode())
        names = [f"{src_[0][1].rsplit('.', 1)[0]}" for src_ in OBJECTS]
        return DetectionData(name=self.name, class_names=names, image=src.db_image, boxes=boxes,
                             box_classes=box_classes, labels=labels, labeled_idx=lab, unlabeled_idx=unl,
                             test_idx=test, image_names=list(src.db_names), manifest=h.hexdigest()[:16],
                             extra={"proxy": True, "object_of": object_of})
