"""Revisited Oxford / Paris (ROxford5k, RParis6k) from the revisitop pickles, optionally + R1M.

Radenović, Iscen, Tolias, Avrithis & Chum, Revisiting Oxford and Paris, CVPR 2018. Layout
under the data root (that of revisitop's ``data/datasets`` and cnnimageretrieval-pytorch's
``data/test``)::

    <root>/roxford5k/gnd_roxford5k.pkl     <root>/roxford5k/jpg/<name>.jpg   (images, optional)
    <root>/rparis6k/gnd_rparis6k.pkl       <root>/rparis6k/jpg/<name>.jpg

The pickle is a dict: ``imlist`` (4993 / 6322 database image names), ``qimlist`` (70 query
names, not in the database), ``gnd`` list of 70 dicts with 0-based ``easy``, ``hard``,
``junk`` index lists and ``bbx`` (x1, y1, x2, y2) query box. Queries are cropped by ``bbx``
(the revisitop protocol) unless ``query_crop=false``.

Without images, ``features`` names an (n_db, d) database descriptor file and
``query_features`` an (n_q, d) file of the (cropped) queries -- both required, since revisitop
queries are not database images. ``distractors`` names an (n_distractors, d) file of R1M
descriptors appended to the database (``+R1M`` in the papers); ground-truth indices are
unchanged because distractors come last.

``roxford5k-r1m`` / ``rparis6k-r1m`` (the tables' names) are the same datasets with the R1M
distractors always appended: from images, the revisitop1m layout of revisitop's
``download_distractors``::

    <root>/revisitop1m/revisitop1m.txt      (one image name per line, relative to jpg/, no extension)
    <root>/revisitop1m/jpg/<name>.jpg

(``r1m_images`` takes the first N names of the list), or from descriptors with ``distractors``.

Trust: the pickle at the declared path is checked against its declared sha256 before it is read
(a mismatch is a UserError, exit 2), and every pickle, declared or a user's own, is read with
:mod:`visrep.safe_pickle` (containers and arrays only: a pickle cannot run code here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.api import DataFile, Dataset
from visrep.data import RetrievalData
from visrep.descriptor_files import read_descriptors
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile
from .image_files import crop_box, read_rgb
from .oxford_paris import vgg_images

REVISITOP_URL = "http://cmp.felk.cvut.cz/revisitop/data/datasets"

#: R1M, the revisited 1M distractors, as revisitop's python/download.py (download_distractors)
#: fetches them: 100 jpg tarballs extracted into revisitop1m/jpg/ and the image list
#: revisitop1m/revisitop1m.txt (names relative to jpg/, no extension). No checksum or size is
#: published (revisitop page and script), so each is pinned on first download. Not a loader of its
#: own (``distractors`` takes R1M descriptors): ``visrep data fetch revisitop1m`` fetches this set.
R1M_URL = "http://ptak.felk.cvut.cz/revisitop/revisitop1m"
R1M_SOURCE = "no published checksum (revisitop python/download.py, download_distractors): sha256 pinned on first download"
R1M_FILES = (PublishedFile("revisitop1m/revisitop1m.txt", None, f"{R1M_URL}/revisitop1m.txt", source=R1M_SOURCE,
                           pin=True),) + tuple(
    PublishedFile(f"revisitop1m/revisitop1m.{i}.tar.gz", None, f"{R1M_URL}/jpg/revisitop1m.{i}.tar.gz",
                  required=False, source=R1M_SOURCE, pin=True, extract_to="revisitop1m/jpg", layout="merge",
                  group="images") for i in range(1, 101))


def read_revisitop_pickle(path: str | Path, dataset=None, root: str | Path | None = None) -> dict:
    """Read ``gnd_<dataset>.pkl`` -> dict(imlist, qimlist, gnd) with int64 index arrays.

    With `dataset` and `root`, a file the dataset declares is first checked against its sha256;
    the pickle is always read with the restricted unpickler (:func:`visrep.safe_pickle.load`).
    Raises UserError naming the file for: a checksum mismatch, a pickle asking for code, a
    missing, truncated or non-pickle file, missing keys, a gnd list whose length differs from
    qimlist, a query without easy/hard/junk, or an index outside [0, len(imlist)).
    """
    from .download import read_pickle
    path = Path(path)
    if not path.exists():
        raise UserError(f"ground-truth file {path} does not exist")
    d = read_pickle(path, "revisitop pickle", dataset, root)
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a dict with imlist, qimlist, gnd; got {type(d).__name__}")
    for key in ("imlist", "qimlist", "gnd"):
        if key not in d:
            raise UserError(f"{path}: missing key '{key}' (keys: {', '.join(sorted(map(str, d)))}); "
                            f"expected imlist, qimlist, gnd")
    for key in ("imlist", "qimlist", "gnd"):
        if not isinstance(d[key], (list, tuple, np.ndarray)):
            raise UserError(f"{path}: '{key}' must be a list, got {type(d[key]).__name__}")
    imlist = [str(x) for x in d["imlist"]]
    qimlist = [str(x) for x in d["qimlist"]]
    if len(d["gnd"]) != len(qimlist):
        raise UserError(f"{path}: {len(d['gnd'])} gnd entries for {len(qimlist)} queries")
    n = len(imlist)
    gnd = []
    for j, g in enumerate(d["gnd"]):
        if not isinstance(g, dict):
            raise UserError(f"{path}: gnd[{j}] is a {type(g).__name__}, expected a dict")
        entry = {}
        for key in ("easy", "hard", "junk"):
            if key not in g:
                raise UserError(f"{path}: gnd[{j}] has no '{key}' list (keys: {', '.join(sorted(map(str, g)))})")
            try:
                idx = np.asarray(g[key], dtype=np.int64).ravel()
            except (TypeError, ValueError, OverflowError) as e:
                raise UserError(f"{path}: gnd[{j}]['{key}'] is not a list of integers ({e})") from None
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise UserError(f"{path}: gnd[{j}]['{key}'] index out of range [0, {n})")
            entry[key] = idx
        if "bbx" in g and g["bbx"] is not None:
            try:
                bbx = np.asarray(g["bbx"], dtype=np.float64).ravel()
            except (TypeError, ValueError) as e:
                raise UserError(f"{path}: gnd[{j}]['bbx'] is not 4 numbers ({e})") from None
            if bbx.size == 4:
                entry["bbx"] = bbx
        gnd.append(entry)
    return {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}


def _features(path: str, n: int, what: str, name: str, d: int | None = None) -> np.ndarray:
    x = read_descriptors(path)
    if x.dtype.kind not in "fiu":
        raise UserError(f"{path}: descriptors must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if n >= 0 and x.shape[0] != n:
        raise UserError(f"{path}: {x.shape[0]} descriptors but {name} has {n} {what}")
    if d is not None and x.shape[1] != d:
        raise UserError(f"{path}: dimension {x.shape[1]} differs from the database descriptors' {d}")
    return x


class RevisitopDataset(Dataset):
    """ROxford5k / RParis6k: revisitop pickle ground truth, images or descriptor files."""

    task = "retrieval"
    default_protocol = "revisitop"
    folder: str = ""
    params = (
        Param("features", str, None, "database descriptor file (n_db, d): .fvecs/.npy/...; None = use images"),
        Param("query_features", str, None, "query descriptor file (n_q, d) of the cropped queries "
              "(required with `features`)"),
        Param("distractors", str, None, "R1M: descriptor file (n, d) appended to the database"),
        Param("query_crop", bool, True, "crop query images by their bbx (the revisitop protocol)"),
    )

    @property
    def gnd_file(self) -> str:
        return f"gnd_{self.folder}.pkl"

    def load_ground_truth(self, ctx) -> RetrievalData:
        """Names and ground truth only (no images, no descriptors): enough to score a ranking."""
        gpath = Path(ctx.data_root) / self.folder / self.gnd_file
        if not gpath.exists():
            raise MissingDataError(f"{self.name}: ground truth {gpath} not found; set --data-root/$VISREP_DATA "
                                   f"to the folder holding {self.folder}/ (or run `visrep data fetch {self.name}`)")
        g = read_revisitop_pickle(gpath, self, ctx.data_root)
        data = RetrievalData(name=self.name, db_names=list(g["imlist"]), query_names=g["qimlist"], gnd=g["gnd"])
        data.extra["gnd_path"] = str(gpath)
        data.manifest = manifest_hash({"gnd": gpath})
        return data

    def load(self, ctx) -> RetrievalData:
        root = Path(ctx.data_root)
        data = self.load_ground_truth(ctx)
        g = {"imlist": list(data.db_names), "qimlist": data.query_names, "gnd": data.gnd}
        files = {"gnd": Path(data.extra["gnd_path"])}
        cfg = self.cfg
        if cfg["features"]:
            if not cfg["query_features"]:
                raise UserError(f"{self.name}: `features` needs `query_features` too (revisitop queries are "
                                f"not database images)")
            db = _features(cfg["features"], len(g["imlist"]), "database images", self.name)
            q = _features(cfg["query_features"], len(g["qimlist"]), "queries", self.name, d=db.shape[1])
            files.update(features=cfg["features"], query_features=cfg["query_features"])
            data.db_features, data.query_features = db, q
        elif cfg["query_features"]:
            raise UserError(f"{self.name}: `query_features` given without `features` (database descriptors)")
        else:
            jpg = root / self.folder / "jpg"
            if not jpg.is_dir():
                raise MissingDataError(f"{self.name}: no images at {jpg} and no `features` file given; "
                                       f"pass --set features=FILE --set query_features=FILE")
            imlist, qim, gnd, crop = g["imlist"], g["qimlist"], g["gnd"], cfg["query_crop"]
            data.db_image = lambda i: read_rgb(jpg / f"{imlist[i]}.jpg")

            def query_image(j):
                img = read_rgb(jpg / f"{qim[j]}.jpg")
                return crop_box(img, gnd[j]["bbx"]) if crop and "bbx" in gnd[j] else img
            data.query_image = query_image
        if cfg["distractors"]:
            if data.db_features is None:
                raise UserError(f"{self.name}: `distractors` are descriptors; give `features` and "
                                f"`query_features` as well")
            x = _features(cfg["distractors"], -1, "distractors", self.name, d=data.db_features.shape[1])
            data.db_features = np.concatenate([data.db_features, x])
            data.db_names += [f"distractor_{i:07d}" for i in range(len(x))]
            data.name = f"{self.name}+r1m"
            data.extra["n_distractors"] = len(x)
            files["distractors"] = cfg["distractors"]
        data.extra["images_dir"] = str(root / self.folder / "jpg")
        data.manifest = manifest_hash(files, {"query_crop": cfg["query_crop"]})
        return data


@register
class ROxford5k(RevisitopDataset):
    name = "roxford5k"
    summary = "Revisited Oxford: 4993 images, 70 queries, Easy/Medium/Hard (revisitop pickle)"
    cite = "Radenović, Iscen, Tolias, Avrithis & Chum, Revisiting Oxford and Paris, CVPR 2018"
    folder = "roxford5k"
    files = (DataFile("roxford5k/gnd_roxford5k.pkl",
                      "ba7967754bd2d7d2210a5799f9c45ad5835e269a80ef9d3eba44caa35816c471",
                      f"{REVISITOP_URL}/roxford5k/gnd_roxford5k.pkl", 149871),) + vgg_images("roxford5k", True)


@register
class RParis6k(RevisitopDataset):
    name = "rparis6k"
    summary = "Revisited Paris: 6322 images, 70 queries, Easy/Medium/Hard (revisitop pickle)"
    cite = "Radenović, Iscen, Tolias, Avrithis & Chum, Revisiting Oxford and Paris, CVPR 2018"
    folder = "rparis6k"
    files = (DataFile("rparis6k/gnd_rparis6k.pkl",
                      "d2e729a5293dda7dda8a15c8383424a42e4964a2c4cfea2f32fa85d11d2df499",
                      f"{REVISITOP_URL}/rparis6k/gnd_rparis6k.pkl", 276508),) + vgg_images("rparis6k", False)


class RevisitopR1M(RevisitopDataset):
    """A revisited dataset + the R1M distractors, appended after its database (images or descriptors)."""

    params = RevisitopDataset.params + (
        Param("r1m_images", int, None, "only the first N R1M images of revisitop1m.txt (None: all 1,001,001)",
              low=1),
    )

    def load(self, ctx) -> RetrievalData:
        cfg = self.cfg
        if cfg["features"]:
            if not cfg["distractors"]:
                raise UserError(f"{self.name}: with descriptor files, `distractors` must name the R1M descriptors "
                                f"(or use the dataset {self.folder} for no distractors)")
            data = super().load(ctx)
            data.name = f"{self.folder}+r1m"
            return data
        if cfg["distractors"]:
            raise UserError(f"{self.name}: `distractors` are descriptors; from images the R1M images are read "
                            f"from revisitop1m/ (give `features` and `query_features` to use descriptor files)")
        data = super().load(ctx)
        base = Path(ctx.data_root) / "revisitop1m"
        listing = base / "revisitop1m.txt"
        if not listing.is_file():
            raise MissingDataError(f"{self.name}: R1M image list {listing} not found (`visrep data fetch "
                                   f"revisitop1m`, or pass R1M descriptors with `distractors`)")
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        if cfg["r1m_images"]:
            names = names[:cfg["r1m_images"]]
        jpg = base / "jpg"
        for end in {names[0], names[-1]} if names else ():     # a missing folder is an error before any work
            if not (jpg / f"{end}.jpg").is_file():
                raise MissingDataError(f"{self.name}: R1M image {jpg / end}.jpg (listed in {listing}) not found; "
                                       f"extract the revisitop1m tarballs into {jpg} (`visrep data fetch revisitop1m`)")
        n_db, own = len(data.db_names), data.db_image

        def db_image(i):
            return own(i) if i < n_db else read_rgb(jpg / f"{names[i - n_db]}.jpg")
        data.db_image = db_image
        data.db_names = list(data.db_names) + names
        data.name = f"{self.folder}+r1m"
        data.extra["n_distractors"] = len(names)
        data.manifest = manifest_hash({"gnd": Path(data.extra["gnd_path"]), "r1m_list": listing},
                                      {"query_crop": cfg["query_crop"], "r1m_images": cfg["r1m_images"]})
        return data


@register
class ROxford5kR1M(RevisitopR1M):
    name = "roxford5k-r1m"
    summary = "Revisited Oxford + the 1M R1M distractors (images from revisitop1m/, or descriptor files)"
    cite = ROxford5k.cite
    folder = "roxford5k"
    files = ROxford5k.files


@register
class RParis6kR1M(RevisitopR1M):
    name = "rparis6k-r1m"
    summary = "Revisited Paris + the 1M R1M distractors (images from revisitop1m/, or descriptor files)"
    cite = RParis6k.cite
    folder = "rparis6k"
    files = RParis6k.files
