"""An INSTRE-like proxy: small objects pasted on cluttered real backgrounds, with boxes.

INSTRE (Wang & Jiang 2015) shows small particular objects on background clutter, the case
where object discovery helps most (talk slide 67). Its images are not available here, so this
*proxy* is built deterministically (seeded) from real photographs that ship inside
scikit-image, scikit-learn and matplotlib:

- *objects*: a fixed crop of each object photograph of the sample-views benchmark
  (:mod:`visrep.datasets.sample_views`);
- *database views*: the object crop under a random similarity (scale so that its longer side is
  ``object_size`` of the canvas side, +-15 degrees rotation) and a brightness change, pasted at a
  random position on a random crop of a *background* photograph (textures, scenes, micrographs
  that are never objects); the object's box in the view is ``data.extra["boxes"]``;
- *distractors*: background crops with no object.

Queries, as in INSTRE: every database view of an object is a query, cropped by its box; ``ok``
= the other views of the same object, ``junk`` = the query's own image (INSTRE's protocol: mAP).
Small (default 12 objects x 6 views + 12 distractors, 384 pixels square) and meant to compare
methods with each other, never with published INSTRE numbers.
"""
from __future__ import annotations

import functools
import hashlib

import numpy as np

from visrep.api import Dataset
from visrep.cache import code_version
from visrep.data import RetrievalData
from visrep.errors import MissingDataError
from visrep.params import Param
from visrep.registry import register

from .sample_views import _read_source, package_image_path

GENERATOR_VERSION = 2

#: object photographs (a subset of sample-views' objects) and the crop (x0, y0, x1, y1) in
#: relative coordinates that is the object
OBJECTS = (
    (("skimage", "astronaut.png"), (0.25, 0.05, 0.75, 0.55)),
    (("skimage", "camera.png"), (0.2, 0.05, 0.75, 0.75)),
    (("skimage", "chelsea.png"), (0.25, 0.0, 0.8, 0.85)),
    (("skimage", "coffee.png"), (0.15, 0.05, 0.85, 0.85)),
    (("skimage", "rocket.jpg"), (0.3, 0.0, 0.7, 0.95)),
    (("skimage", "motorcycle_left.png"), (0.1, 0.1, 0.9, 0.9)),
    (("skimage", "coins.png"), (0.1, 0.1, 0.6, 0.6)),
    (("skimage", "page.png"), (0.05, 0.05, 0.6, 0.7)),
    (("skimage", "retina.jpg"), (0.2, 0.2, 0.8, 0.8)),
    (("sklearn", "china.jpg"), (0.2, 0.1, 0.7, 0.8)),
    (("sklearn", "flower.jpg"), (0.2, 0.1, 0.8, 0.9)),
    (("matplotlib", "grace_hopper.jpg"), (0.15, 0.0, 0.85, 0.7)),
)
#: background photographs: textures, micrographs, scenes that never show an object
BACKGROUNDS = (
    ("skimage", "brick.png"), ("skimage", "grass.png"), ("skimage", "gravel.png"),
    ("skimage", "text.png"), ("skimage", "cell.png"), ("skimage", "clock_motion.png"),
    ("skimage", "hubble_deep_field.jpg"), ("skimage", "moon.png"), ("skimage", "ihc.png"),
    ("matplotlib", "Minduka_Present_Blue_Pack.png"),
)


def paste(canvas: np.ndarray, obj: np.ndarray, size: int, angle_deg: float, cx: float, cy: float,
          gain: float) -> tuple[np.ndarray, np.ndarray]:
    """Paste `obj` (h, w, 3) on `canvas` (S, S, 3): longer side `size` pixels, rotated by `angle_deg`
    about its centre placed at (cx, cy), intensities times `gain` -> (image, box (x1, y1, x2, y2))."""
    import cv2
    h, w = obj.shape[:2]
    s = size / max(h, w)
    M = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, s)
    M[:, 2] += (cx - w / 2, cy - h / 2)
    S = canvas.shape[1], canvas.shape[0]
    warped = cv2.warpAffine(obj, M, S, flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((h, w), 255, np.uint8), M, S, flags=cv2.INTER_NEAREST) > 0
    warped = np.clip(warped.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    out = canvas.copy()
    out[mask] = warped[mask]
    ys, xs = np.nonzero(mask)
    return out, np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def background_crop(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (30-70% of the shorter side), rotated by a random multiple of 90 degrees and
    randomly mirrored (so that crops of one photograph rarely look alike), resized to `side`."""
    import cv2
    h, w = img.shape[:2]
    c = max(8, int(min(h, w) * rng.uniform(0.3, 0.7)))
    y0, x0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
    crop = np.rot90(img[y0:y0 + c, x0:x0 + c], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (side, side), interpolation=cv2.INTER_AREA)


@register
class ClutteredObjects(Dataset):
    name = "cluttered-objects"
    task = "retrieval"
    default_protocol = "oxford"
    summary = "INSTRE-like proxy: small object crops of real photographs pasted on real cluttered backgrounds, with boxes"
    cite = ("visrep proxy benchmark after INSTRE (Wang & Jiang, ACM TOMM 2015); photographs from scikit-image, "
            "scikit-learn, matplotlib")
    params = (
        Param("views", int, 6, "database views per object", low=1, high=20),
        Param("distractors", int, 12, "database images with background only", low=0, high=500),
        Param("side", int, 384, "side of the square database images in pixels", low=64, high=2048),
        Param("object_size", float, 0.2, "longer side of a pasted object, as a fraction of the image side",
              low=0.05, high=1.0),
        Param("seed", int, 0, "generator seed (a different seed is a different benchmark)", low=0),
    )

    def load(self, ctx) -> RetrievalData:
        cfg = self.cfg
        rng = np.random.default_rng(1309 + 1000 * cfg["seed"] + GENERATOR_VERSION)
        obj_paths = [package_image_path(*src) for src, _ in OBJECTS]
        bg_paths = [package_image_path(*src) for src in BACKGROUNDS]
        h = hashlib.sha256(f"{code_version(ClutteredObjects)};{sorted(cfg.items())}".encode())
        for p in (*obj_paths, *bg_paths):
            if not p.exists():
                raise MissingDataError(f"sample image {p} is missing; reinstall the package that ships it")
            h.update(hashlib.sha256(p.read_bytes()).digest())
        side = cfg["side"]
        sources = [_read_source(p, 2 * side) for p in obj_paths]
        backgrounds = [_read_source(p, 2 * side) for p in bg_paths]
        q_boxes, objects = [], []          # the object crops and their boxes in the source photographs
        for img, (_, (rx0, ry0, rx1, ry1)) in zip(sources, OBJECTS):
            H, W = img.shape[:2]
            box = np.array([rx0 * W, ry0 * H, rx1 * W, ry1 * H])
            x0, y0, x1, y1 = box.astype(int)
            q_boxes.append(box)
            objects.append(np.ascontiguousarray(img[y0:y1, x0:x1]))
        # the recipe of every database image, drawn once in a fixed order
        recipes = []
        for j in range(len(OBJECTS)):
            for v in range(cfg["views"]):
                size = side * cfg["object_size"] * rng.uniform(0.8, 1.2)
                half = size / 2
                recipes.append({"object": j, "name": f"{obj_paths[j].stem}_view{v}",
                                "bg": int(rng.integers(len(backgrounds))), "bg_seed": int(rng.integers(2**31)),
                                "size": round(size), "angle": float(rng.uniform(-15, 15)),
                                "cx": float(rng.uniform(half, side - half)), "cy": float(rng.uniform(half, side - half)),
                                "gain": float(rng.uniform(0.75, 1.15))})
        for d in range(cfg["distractors"]):
            recipes.append({"object": -1, "name": f"distractor{d}", "bg": int(rng.integers(len(backgrounds))),
                            "bg_seed": int(rng.integers(2**31))})

        @functools.cache
        def render(i: int) -> tuple[np.ndarray, np.ndarray | None]:
            r = recipes[i]
            canvas = background_crop(backgrounds[r["bg"]], side, np.random.default_rng(r["bg_seed"]))
            if r["object"] < 0:
                return canvas, None
            return paste(canvas, objects[r["object"]], r["size"], r["angle"], r["cx"], r["cy"], r["gain"])

        def db_image(i: int) -> np.ndarray:
            return render(i)[0].copy()

        boxes = [render(i)[1] for i in range(len(recipes))]
        object_of = np.array([r["object"] for r in recipes])
        views = np.flatnonzero(object_of >= 0)

        def query_image(j: int) -> np.ndarray:
            x1, y1, x2, y2 = boxes[views[j]].astype(int)
            return render(int(views[j]))[0][y1:y2, x1:x2].copy()

        gnd = [{"ok": np.setdiff1d(np.flatnonzero(object_of == object_of[i]), [i]), "junk": np.array([i]),
                "bbx": boxes[i]} for i in views]
        return RetrievalData(
            name=self.name, db_names=[r["name"] for r in recipes], query_names=[recipes[i]["name"] for i in views],
            gnd=gnd, db_image=db_image, query_image=query_image, manifest=h.hexdigest()[:16],
            query_db_index=views,
            extra={"object_of_view": object_of, "boxes": boxes, "object_boxes": q_boxes,
                   "default_descriptor": "gem", "proxy": True})

