"""The embedded default benchmark: real sample photographs seen under known transformations.

Nothing to download: the photographs ship inside scikit-image, scikit-learn and matplotlib.
Each *object* photograph gives one query (a crop with its box, as Oxford queries are) and
several database *views* made by known homographies, crops, scale, blur and illumination
changes; *distractor* photographs give views that match no query. When the workplace's real
data is present, the Oxford "Graffiti" sequence joins as one more object whose views are
real viewpoint changes with their real ground-truth homographies.

Ground truth has the structure of the real datasets: ``ok`` (all views) and ``junk`` (none)
for the original Oxford protocol, and ``easy`` / ``hard`` for the revisitop protocol. The
homography from the object photograph to each view is in ``data.extra["homographies"]``.

For geo clustering and location / tag suggestion every image also carries PROXY metadata
(made up, never real geo-tags; :mod:`visrep.datasets.sample_views_meta`):
``data.extra["meta"]`` (database images) and ``data.extra["query_meta"]`` (queries) hold
``lat``, ``lon`` (n,) degrees, ``tags`` (per image, a seeded subset of its scene's tags plus
noise tags) and ``scene_tags`` (the scene's full tag set).

This is a *proxy* benchmark: small (about 130 images), easy for strong descriptors, and
useful to check orderings between methods, not to compare with published numbers.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visrep.api import Dataset
from visrep.cache import code_version
from visrep.data import RetrievalData
from visrep.errors import MissingDataError
from visrep.params import Param
from visrep.registry import register

GENERATOR_VERSION = 1

#: (package, file) of the object photographs, each queried once
OBJECTS = (
    ("skimage", "astronaut.png"), ("skimage", "camera.png"), ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"), ("skimage", "rocket.jpg"), ("skimage", "motorcycle_left.png"),
    ("skimage", "hubble_deep_field.jpg"), ("skimage", "coins.png"), ("skimage", "page.png"),
    ("skimage", "retina.jpg"), ("skimage", "ihc.png"), ("skimage", "moon.png"),
    ("sklearn", "china.jpg"), ("sklearn", "flower.jpg"), ("matplotlib", "grace_hopper.jpg"),
)
#: photographs that only appear as distractor views
DISTRACTORS = (
    ("skimage", "brick.png"), ("skimage", "grass.png"), ("skimage", "gravel.png"),
    ("skimage", "text.png"), ("skimage", "horse.png"), ("skimage", "cell.png"),
    ("skimage", "clock_motion.png"), ("matplotlib", "Minduka_Present_Blue_Pack.png"),
)


@dataclass(frozen=True)
class View:
    """A transformed copy of a source photograph: homography, blur sigma, gain, offset."""

    source: int
    name: str
    H: np.ndarray
    size: tuple[int, int]  # (width, height) of the output
    blur: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    difficulty: str = "easy"
    object: int = -1                       # index of the queried object shown, -1 for distractors
    object_H: np.ndarray | None = None     # homography object photo -> view when the view is a real photo


def package_image_path(package: str, filename: str) -> Path:
    """Path of a sample image shipped inside an installed package."""
    if package == "skimage":
        import skimage
        return Path(skimage.__file__).parent / "data" / filename
    if package == "sklearn":
        import sklearn.datasets
        return Path(sklearn.datasets.__file__).parent / "images" / filename
    if package == "matplotlib":
        import matplotlib
        return Path(matplotlib.get_data_path()) / "sample_data" / filename
    raise ValueError(package)


def _read_source(path: Path, max_side: int) -> np.ndarray:
    """Read a photograph as RGB uint8, longest side scaled to `max_side`.

    Pillow decodes (libpng would print a warning for page.png's ICC profile on every run).
    """
    import cv2
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except OSError:
        raise MissingDataError(f"sample image {path} is missing or unreadable; reinstall the package that ships it") from None
    s = max_side / max(img.shape[:2])
    if s < 1:
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _similarity(scale: float, angle_deg: float, w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
    """3x3 homography: rotate/scale about the source centre, centred in the output."""
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    T1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1.0]])
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    T2 = np.array([[1, 0, out_w / 2], [0, 1, out_h / 2], [0, 0, 1.0]])
    return T2 @ R @ T1


def _perspective(w: int, h: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Homography moving the four corners inwards by up to `strength` of the size."""
    import cv2
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(0, strength, size=(4, 2)) * np.array([w, h])
    sign = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    return cv2.getPerspectiveTransform(src, np.float32(src + sign * jitter)).astype(np.float64)


def _crop(x0: float, y0: float, cw: float, ch: float, out_w: int, out_h: int) -> np.ndarray:
    """Homography cropping the box (x0, y0, cw, ch) and scaling it to the output size."""
    sx, sy = out_w / cw, out_h / ch
    return np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy], [0, 0, 1.0]])


def make_views(source: int, name: str, w: int, h: int, rng: np.random.Generator, n_views: int,
               obj: int = -1, severity: float = 1.0) -> list[View]:
    """The database views of one photograph: easy ones first, then hard ones.

    ``severity`` > 1 makes every change stronger (smaller scale and crops, larger rotation and
    perspective, more blur and darkening); 1 is the default benchmark.
    """
    recipes = [
        ("scale", "easy"), ("illumination", "easy"), ("perspective", "easy"),
        ("rotate", "hard"), ("crop", "hard"), ("blur-dark", "hard"), ("strong-perspective", "hard"),
    ]
    sv = float(severity)
    views = []
    for v in range(n_views):
        kind, difficulty = recipes[v % len(recipes)]
        H, size, blur, gain, offset = np.eye(3), (w, h), 0.0, 1.0, 0.0
        if kind == "scale":
            s = rng.uniform(0.6, 0.8) ** sv
            size = (max(16, round(w * s)), max(16, round(h * s)))
            H = np.diag([s, s, 1.0])
        elif kind == "illumination":
            gain, offset = rng.uniform(0.6, 0.8) ** sv, rng.uniform(20, 40)
        elif kind == "perspective":
            H = _perspective(w, h, min(0.12 * sv, 0.3), rng)
        elif kind == "rotate":
            scale, sign = rng.uniform(0.55, 0.75) ** sv, rng.choice([-1, 1])
            H = _similarity(scale, sign * min(rng.uniform(20, 40) * sv, 120.0), w, h, w, h)
        elif kind == "crop":
            cw, ch = w * rng.uniform(0.5, 0.65) ** sv, h * rng.uniform(0.5, 0.65) ** sv
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            H = _crop(x0, y0, cw, ch, w, h)
        elif kind == "blur-dark":
            H, blur, gain, offset = np.diag([0.8, 0.8, 1.0]), rng.uniform(1.5, 2.5) * sv, rng.uniform(0.4, 0.55) ** sv, 0.0
            size = (round(w * 0.8), round(h * 0.8))
        elif kind == "strong-perspective":
            H = _perspective(w, h, min(0.25 * sv, 0.4), rng)
        views.append(View(source, f"{name}_{v}_{kind}", H, size, blur, gain, offset, difficulty, obj))
    return views


def render(img: np.ndarray, view: View) -> np.ndarray:
    """Apply a view's homography, blur and affine intensity change to an RGB uint8 image."""
    import cv2
    out = cv2.warpPerspective(img, view.H, view.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if view.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), view.blur)
    if view.gain != 1.0 or view.offset != 0.0:
        out = np.clip(out.astype(np.float32) * view.gain + view.offset, 0, 255).astype(np.uint8)
    return out


def _graffiti(shared: Path | None, max_side: int):
    """(images, homographies from image 1) of the real Graffiti sequence, or None."""
    if shared is None:
        return None
    folder = shared / "localfeatures" / "graf"
    if not (folder / "img1.png").exists():
        return None
    imgs = [_read_source(folder / f"img{i}.png", 10**6) for i in range(1, 7)]
    s = max_side / max(imgs[0].shape[:2])
    S = np.diag([s, s, 1.0])
    import cv2
    imgs = [cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA) for im in imgs]
    Hs = [S @ np.loadtxt(folder / f"H1to{i}p") @ np.linalg.inv(S) for i in range(2, 7)]
    return imgs, Hs


@register
class SampleViews(Dataset):
    name = "sample-views"
    task = "retrieval"
    default_protocol = "oxford"
    summary = "embedded default: real sample photographs under known homographies/crops/blur/light, with distractors"
    cite = "visrep proxy benchmark (photographs from scikit-image, scikit-learn, matplotlib; Graffiti from Mikolajczyk et al. IJCV 2005)"
    params = (
        Param("views", int, 6, "database views per object photograph", low=1, high=20),
        Param("distractor_views", int, 4, "views per distractor photograph", low=0, high=20),
        Param("max_side", int, 384, "longest image side in pixels", low=64, high=2048),
        Param("graffiti", bool, True, "add the real Graffiti sequence when ../shared/data has it"),
        Param("severity", float, 1.0, "strength of the transformations (1 = default; 2 = a harder benchmark "
              "on which CNN descriptors no longer saturate)", low=0.5, high=3.0),
    )

    def load(self, ctx) -> RetrievalData:
        from visrep.context import shared_data_dir
        cfg = self.cfg
        rng = np.random.default_rng(20120 + GENERATOR_VERSION)
        sources = [package_image_path(p, f) for p, f in (*OBJECTS, *DISTRACTORS)]
        # the generator's source is part of the data: hash it, so cached features follow code changes
        h = hashlib.sha256(f"{code_version(SampleViews)};{sorted(cfg.items())}".encode())
        for p in sources:
            if not p.exists():
                raise MissingDataError(f"sample image {p} is missing; reinstall the package that ships it")
            h.update(hashlib.sha256(p.read_bytes()).digest())
        images = [_read_source(p, cfg["max_side"]) for p in sources]
        names = [p.stem for p in sources]
        db_views: list[View] = []
        for i, img in enumerate(images):
            is_object = i < len(OBJECTS)
            n = cfg["views"] if is_object else cfg["distractor_views"]
            db_views += make_views(i, names[i], img.shape[1], img.shape[0], rng, n, i if is_object else -1,
                                   cfg["severity"])
        queries = []  # (source, box)
        for i in range(len(OBJECTS)):
            hh, ww = images[i].shape[:2]
            cw, ch = ww * 0.7, hh * 0.7
            x0, y0 = rng.uniform(0.05, 0.25) * ww, rng.uniform(0.05, 0.25) * hh
            queries.append((i, np.array([x0, y0, x0 + cw, y0 + ch])))
        graf = _graffiti(shared_data_dir(), cfg["max_side"]) if cfg["graffiti"] else None
        if graf is not None:
            gimgs, gH = graf
            src = len(images)
            images.append(gimgs[0])
            names.append("graffiti")
            for k, (gi, H) in enumerate(zip(gimgs[1:], gH), start=2):
                images.append(gi)  # real view k is its own source, shown with an identity warp
                db_views.append(View(len(images) - 1, f"graffiti_img{k}", np.eye(3), (gi.shape[1], gi.shape[0]),
                                     difficulty="easy" if k <= 3 else "hard", object=len(queries), object_H=H))
            hh, ww = gimgs[0].shape[:2]
            queries.append((src, np.array([0.1 * ww, 0.1 * hh, 0.9 * ww, 0.9 * hh])))
            h.update(b"graffiti")
            for i in range(2, 7):
                h.update((shared_data_dir() / "localfeatures" / "graf" / f"H1to{i}p").read_bytes())
        object_of_view = np.array([v.object for v in db_views])
        difficulty = np.array([v.difficulty for v in db_views])
        gnd = []
        for j, (src, box) in enumerate(queries):
            mine = object_of_view == j
            gnd.append({
                "ok": np.flatnonzero(mine), "junk": np.zeros(0, np.int64),
                "easy": np.flatnonzero(mine & (difficulty == "easy")),
                "hard": np.flatnonzero(mine & (difficulty == "hard")),
                "bbx": box,
            })

        @functools.lru_cache(maxsize=None)
        def db_image(i: int) -> np.ndarray:
            v = db_views[i]
            return render(images[v.source], v)

        def query_image(j: int) -> np.ndarray:
            src, (x1, y1, x2, y2) = queries[j]
            return images[src][int(y1):int(y2), int(x1):int(x2)].copy()

        homographies = [v.object_H if v.object_H is not None else v.H for v in db_views]
        # PROXY geo-tags and tags (datasets/sample_views_meta.toml; never real geo-tags): the scene of a
        # view is its object's source photograph, or its own photograph for a distractor view
        # (absent from an install without the TOML: the images and ground truth are unchanged, geo methods then
        # raise MissingDataError)
        from .sample_views_meta import META_FILE, image_meta, load_meta_table
        meta_extra = {}
        if META_FILE.exists():
            table = load_meta_table()
            h.update(META_FILE.read_bytes())
            scene_of_view = [names[queries[v.object][0]] if v.object >= 0 else names[v.source] for v in db_views]
            meta_extra = {"meta": image_meta(table, scene_of_view, [v.name for v in db_views]),
                          "query_meta": image_meta(table, [names[s] for s, _ in queries],
                                                   [f"{names[s]}_query" for s, _ in queries])}
        return RetrievalData(
            name=self.name, db_names=[v.name for v in db_views], query_names=[names[s] for s, _ in queries],
            gnd=gnd, db_image=db_image, query_image=query_image, manifest=h.hexdigest()[:16],
            extra={"homographies": homographies, "object_of_view": object_of_view,
                   "default_descriptor": "histogram", "proxy": True, **meta_extra})
