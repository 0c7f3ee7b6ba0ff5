"""Original Oxford5k / Paris6k (and +100k distractors) from their Matlab ground truth.

Layout under the data root (that of cnnimageretrieval-pytorch's ``test/`` folder)::

    <root>/oxford5k/gnd_oxford5k.mat      <root>/oxford5k/jpg/<name>.jpg   (images, optional)
    <root>/paris6k/gnd_paris6k.mat        ...
    <root>/oxford105k/gnd_Oxford105k.mat
    <root>/paris106k/gnd_Paris106k.mat

Without images, a run uses precomputed descriptors: ``features`` names an (n_db, d) file
(fvecs/npy/...) in ``feature_name`` order; queries are then full images (the query's own
database descriptor) unless ``query_features`` gives (n_q, d) cropped-query descriptors.
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
from .matlab_gnd import read_matlab_gnd

#: the Matlab ground-truth files as published with the DTFD code (same bytes as the sha256 below)
GND_MAT_URL = "https://raw.githubusercontent.com/ljkong18/DTFD/0c75f379de56ae1f41cf3a0c90df25eb992c666e/"

#: VGG's image tarballs (face-blurred "-v1" versions), at the URLs revisitop's python/download.py
#: (filipradenovic/revisitop be39832, download_datasets) uses; neither VGG's pages nor that script
#: publish a checksum or an exact size, so the first download is pinned (trust on first use).
#: Extracted flat into <folder>/jpg/, as that script does (``find -type f -exec mv``).
VGG_OXF_URL = "https://www.robots.ox.ac.uk/~vgg/data/oxbuildings"
VGG_PAR_URL = "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings"
VGG_SOURCE = ("no published checksum (VGG Oxford/Paris Buildings pages; revisitop python/download.py): "
              "sha256 pinned on first download")


def vgg_images(folder: str, oxford: bool) -> tuple:
    """The VGG image archive(s) of Oxford (1 tarball) or Paris (2), extracted flat into ``<folder>/jpg``."""
    names = (("oxford5k", VGG_OXF_URL, "oxbuild_images-v1.tgz"),) if oxford else tuple(
        ("paris6k", VGG_PAR_URL, f"paris_{i}-v1.tgz") for i in (1, 2))
    return tuple(PublishedFile(f"{home}/{name}", None, f"{url}/{name}", None, required=False, source=VGG_SOURCE,
                               pin=True, extract_to=f"{folder}/jpg", layout="flatten", group="images")
                 for home, url, name in names)


FEATURE_PARAMS = (
    Param("features", str, None, "database descriptor file (n_db, d): .fvecs/.npy/...; None = use images"),
    Param("query_features", str, None, "query descriptor file (n_q, d); None = take queries from the database"),
    Param("query_mode", str, "auto", "'crop' queries by their box, 'full' images, 'auto' = crop with images, "
          "full with database descriptors", choices=("auto", "crop", "full")),
)


def load_feature_pair(cfg: dict, n_db: int, qidx: np.ndarray, name: str):
    """Read ``features`` (+ ``query_features``) and check counts; returns (db, queries) float32."""
    db = read_descriptors(cfg["features"]).astype(np.float32, copy=False)
    if db.shape[0] != n_db:
        raise UserError(f"{cfg['features']}: {db.shape[0]} descriptors but {name} has {n_db} database images")
    if cfg["query_features"]:
        q = read_descriptors(cfg["query_features"]).astype(np.float32, copy=False)
        if q.shape[0] != len(qidx):
            raise UserError(f"{cfg['query_features']}: {q.shape[0]} descriptors but {name} has {len(qidx)} queries")
        if q.shape[1] != db.shape[1]:
            raise UserError(f"{cfg['query_features']}: dimension {q.shape[1]} differs from the database's {db.shape[1]}")
    else:
        if cfg["query_mode"] == "crop":
            raise UserError(f"{name}: query_mode=crop needs query_features (cropped-query descriptors) or images")
        q = db[qidx]
    return db, q


class MatlabRetrievalDataset(Dataset):
    """A retrieval dataset whose ground truth is an Oxford-style .mat file."""

    task = "retrieval"
    default_protocol = "oxford"
    folder: str = ""
    gnd_file: str = ""
    params = FEATURE_PARAMS

    def gnd_path(self, root: Path) -> Path:
        return root / self.folder / self.gnd_file

    def load(self, ctx) -> RetrievalData:
        root = Path(ctx.data_root)
        gpath = self.gnd_path(root)
        if not gpath.exists():
            raise MissingDataError(f"{self.name}: ground truth {gpath} not found; set --data-root/$VISREP_DATA "
                                   f"to the folder holding {self.folder}/ (or run `visrep data fetch {self.name}`)")
        g = read_matlab_gnd(gpath)
        files = {"gnd": gpath}
        data = RetrievalData(name=self.name, db_names=g["imlist"], query_names=g["qimlist"], gnd=g["gnd"],
                             query_db_index=g["qidx"])
        if self.cfg["features"]:
            data.db_features, data.query_features = load_feature_pair(self.cfg, len(g["imlist"]), g["qidx"], self.name)
            files["features"] = self.cfg["features"]
            if self.cfg["query_features"]:
                files["query_features"] = self.cfg["query_features"]
        else:
            jpg = root / self.folder / "jpg"
            if not jpg.is_dir():
                raise MissingDataError(f"{self.name}: no images at {jpg} and no `features` file given; "
                                       f"pass --set features=FILE for precomputed descriptors")
            crop = self.cfg["query_mode"] in ("auto", "crop")
            imlist, qim, gnd = g["imlist"], g["qimlist"], g["gnd"]
            data.db_image = lambda i: read_rgb(jpg / f"{imlist[i]}.jpg")

            def query_image(j):
                img = read_rgb(jpg / f"{qim[j]}.jpg")
                return crop_box(img, gnd[j]["bbx"]) if crop and "bbx" in gnd[j] else img
            data.query_image = query_image
        data.manifest = manifest_hash(files, {"query_mode": self.cfg["query_mode"]})
        return data


@register
class Oxford5k(MatlabRetrievalDataset):
    name = "oxford5k"
    summary = "Oxford Buildings 5k: 5063 images, 55 queries (Matlab ground truth)"
    cite = "Philbin et al., Object retrieval with large vocabularies and fast spatial matching, CVPR 2007"
    folder, gnd_file = "oxford5k", "gnd_oxford5k.mat"
    files = (DataFile("oxford5k/gnd_oxford5k.mat", "39b28133d7dcf6f8ada4ed63b4fcb863c55ca29f9872a22d7edf4cc87c0e1f07",
                      url=GND_MAT_URL + "gnd_oxford5k.mat", size=22628),) + vgg_images("oxford5k", True)


@register
class Paris6k(MatlabRetrievalDataset):
    name = "paris6k"
    summary = "Paris 6k: 6392 images, 55 queries (Matlab ground truth)"
    cite = "Philbin et al., Lost in quantization, CVPR 2008"
    folder, gnd_file = "paris6k", "gnd_paris6k.mat"
    files = (DataFile("paris6k/gnd_paris6k.mat", "98064a00ce5b66e67a75d1b7f410e0cf75a9dd2728be67031a228dc7cb2c6d44",
                      url=GND_MAT_URL + "gnd_paris6k.mat", size=34968),) + vgg_images("paris6k", False)


@register
class Oxford105k(MatlabRetrievalDataset):
    name = "oxford105k"
    summary = "Oxford5k + 100k Flickr distractors (Matlab ground truth)"
    cite = "Philbin et al., CVPR 2007"
    folder, gnd_file = "oxford105k", "gnd_Oxford105k.mat"
    files = (DataFile("oxford105k/gnd_Oxford105k.mat", "ebf6abe27990655ba1af68e982f185e15206e2fecac6e49aacd96e353909105b",
                      url=GND_MAT_URL + "gnd_Oxford105k.mat", size=372280),)


@register
class Paris106k(MatlabRetrievalDataset):
    name = "paris106k"
    summary = "Paris6k + 100k Flickr distractors (Matlab ground truth)"
    cite = "Philbin et al., CVPR 2008"
    folder, gnd_file = "paris106k", "gnd_Paris106k.mat"
    files = (DataFile("paris106k/gnd_Paris106k.mat", "107d9b31df5133f0f20246a07efdfdc0dd96bda883ee9f6ad3fd30992b0bd0ac",
                      url=GND_MAT_URL + "gnd_Paris106k.mat", size=389835),)
