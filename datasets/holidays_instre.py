"""INRIA Holidays and INSTRE from their Matlab ground truth.

- ``holidays`` (Jégou, Douze & Schmid, ECCV 2008): 1491 images in 500 groups; the first image
  of each group is a query and also a database image. Layout::

      <root>/holidays/gnd_holidays.mat     <root>/holidays/jpg/<name>.jpg     (images, optional)
                                           <root>/holidays/jpg_rotated/<name>.jpg  (``rotated=true``)

  ``gnd_holidays.mat`` (see :mod:`visrep.datasets.matlab_gnd`): ``feature_name``, ``query_list``
  rows ``[name, 1-based index]``, ``gnd`` with ``ok`` (the other images of the group) and
  ``junk`` (the query itself). Default protocol ``holidays`` removes the query from its own
  list. ``rotated=true`` reads the manually rotated (upright) images that many CNN papers use
  (e.g. Gordo et al., Deep image retrieval, ECCV 2016) from ``jpg_rotated/``; same ground truth.
  With descriptors, ``features`` is (1491, d) in ``feature_name`` order; queries are their own
  database rows unless ``query_features`` gives (500, d).
- ``instre`` (Wang & Jiang, ACM TOMM 2015, split of Iscen et al. CVPR 2017): 27,293 database
  images, 1250 queries (not in the database) cropped by ``bbx``. Layout::

      <root>/instre/gnd_instre.mat         <root>/instre/INSTRE-S1/01a_canada_book/001.jpg ...

  With descriptors, both ``features`` (27293, d) and ``query_features`` (1250, d) are needed.
"""
from __future__ import annotations

from pathlib import Path

from visrep.api import DataFile, Dataset
from visrep.data import RetrievalData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile
from .image_files import crop_box, read_rgb
from .matlab_gnd import read_instre_gnd, read_matlab_gnd
from .oxford_paris import FEATURE_PARAMS, MatlabRetrievalDataset
from .revisitop import _features

_DTFD = "https://raw.githubusercontent.com/ljkong18/DTFD/0c75f379de56ae1f41cf3a0c90df25eb992c666e"
_INSTRE = "https://raw.githubusercontent.com/insikk/instre_evaluation/a0126ec2a460cb848bdc658a78faa7cd17448626"
#: INRIA's Holidays images (jpg1.tar.gz, jpg2.tar.gz: members jpg/<name>.jpg), from the FTP folder
#: that the Holidays page (lear.inrialpes.fr/people/jegou/data.php#holidays) links; no checksum or
#: exact size is published there, so each is pinned on first download. Both merge into holidays/jpg/.
_HOLIDAYS_FTP = "ftp://ftp.inrialpes.fr/pub/lear/douze/data"
_HOLIDAYS_SOURCE = "no published checksum (INRIA Holidays page): sha256 pinned on first download"


def matlab_ground_truth(dataset: MatlabRetrievalDataset, ctx) -> RetrievalData:
    """Ground truth only of an Oxford-style Matlab dataset (oxford5k, paris6k, 105k/106k, holidays)."""
    gpath = dataset.gnd_path(Path(ctx.data_root))
    if not gpath.exists():
        raise MissingDataError(f"{dataset.name}: ground truth {gpath} not found; set --data-root/$VISREP_DATA "
                               f"to the folder holding {dataset.folder}/ (or run `visrep data fetch {dataset.name}`)")
    g = read_matlab_gnd(gpath)
    data = RetrievalData(name=dataset.name, db_names=g["imlist"], query_names=g["qimlist"], gnd=g["gnd"],
                         query_db_index=g["qidx"])
    data.extra["gnd_path"] = str(gpath)
    data.manifest = manifest_hash({"gnd": gpath})
    return data


@register
class Holidays(MatlabRetrievalDataset):
    """INRIA Holidays; see the module docstring for the layout and the rotated variant."""

    name = "holidays"
    summary = "INRIA Holidays: 1491 images, 500 queries (query removed from its own list)"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency, ECCV 2008"
    default_protocol = "holidays"
    folder, gnd_file = "holidays", "gnd_holidays.mat"
    params = FEATURE_PARAMS + (
        Param("rotated", bool, False, "read the rotated (upright) images from holidays/jpg_rotated/"),
    )
    files = (DataFile("holidays/gnd_holidays.mat",
                      "8088e9508ca4ed1e2a09d5e76bbb20056a6e7d1f01bcb7519fc9b5036842bd53",
                      f"{_DTFD}/gnd_holidays.mat", 12334),) + tuple(
        PublishedFile(f"holidays/jpg{i}.tar.gz", None, f"{_HOLIDAYS_FTP}/jpg{i}.tar.gz", required=False,
                      source=_HOLIDAYS_SOURCE, pin=True, layout="merge", group="images") for i in (1, 2))

    def __init__(self, **given):
        super().__init__(**given)
        # the base loader knows FEATURE_PARAMS only; it reads self.cfg
        self._rotated = self.cfg["rotated"]

    def load_ground_truth(self, ctx) -> RetrievalData:
        """Names and ground truth only (no images, no descriptors): enough to score a ranking."""
        return matlab_ground_truth(self, ctx)

    def load(self, ctx) -> RetrievalData:
        if self._rotated and not self.cfg["features"]:
            jpg = Path(ctx.data_root) / self.folder / "jpg_rotated"
            if not jpg.is_dir():
                raise MissingDataError(f"holidays: rotated=true needs the upright images in {jpg}")
        data = super().load(ctx)
        if self._rotated and not self.cfg["features"]:
            jpg = Path(ctx.data_root) / self.folder / "jpg_rotated"
            names, qnames = data.db_names, data.query_names
            data.db_image = lambda i: read_rgb(jpg / f"{names[i]}.jpg")
            data.query_image = lambda j: read_rgb(jpg / f"{qnames[j]}.jpg")
            data.manifest = manifest_hash({"gnd": self.gnd_path(Path(ctx.data_root))}, {"rotated": True})
        data.extra["rotated"] = self._rotated
        return data


@register
class Instre(Dataset):
    name = "instre"
    task = "retrieval"
    summary = "INSTRE: 27293 images, 1250 cropped queries (Iscen et al. split)"
    cite = ("Wang & Jiang, INSTRE: a new benchmark for instance-level object retrieval, ACM TOMM 2015; "
            "Iscen, Tolias, Avrithis, Furon & Chum, Efficient diffusion on region manifolds, CVPR 2017")
    default_protocol = "instre"
    folder, gnd_file = "instre", "gnd_instre.mat"
    params = (
        Param("features", str, None, "database descriptor file (27293, d); None = use images"),
        Param("query_features", str, None, "query descriptor file (1250, d) of the cropped queries"),
        Param("query_crop", bool, True, "crop query images by their bbx (the standard protocol)"),
    )
    # images: not declared -- the owner's page (http://123.57.42.89/instre/home.html) names no archive
    # URL or checksum that could be verified here; put INSTRE-S1/, INSTRE-S2/, INSTRE-M/ under instre/
    files = (DataFile("instre/gnd_instre.mat",
                      "d21fcd0254bf4bb3863a646dccffae5e48a849991537b9a64ef07e74627d4b5f",
                      f"{_INSTRE}/gnd_instre.mat", 223899),)

    def load_ground_truth(self, ctx) -> RetrievalData:
        """Names and ground truth only (no images, no descriptors): enough to score a ranking."""
        gpath = Path(ctx.data_root) / self.folder / self.gnd_file
        if not gpath.exists():
            raise MissingDataError(f"instre: ground truth {gpath} not found; set --data-root/$VISREP_DATA "
                                   f"to the folder holding instre/ (or run `visrep data fetch instre`)")
        g = read_instre_gnd(gpath)
        data = RetrievalData(name=self.name, db_names=g["imlist"], query_names=g["qimlist"], gnd=g["gnd"])
        data.extra["gnd_path"] = str(gpath)
        data.manifest = manifest_hash({"gnd": gpath})
        return data

    def load(self, ctx) -> RetrievalData:
        root = Path(ctx.data_root)
        data = self.load_ground_truth(ctx)
        g = {"imlist": data.db_names, "qimlist": data.query_names, "gnd": data.gnd}
        files = {"gnd": Path(data.extra["gnd_path"])}
        cfg = self.cfg
        if cfg["features"]:
            if not cfg["query_features"]:
                raise UserError("instre: `features` needs `query_features` too (queries are not database images)")
            data.db_features = _features(cfg["features"], len(g["imlist"]), "database images", self.name)
            data.query_features = _features(cfg["query_features"], len(g["qimlist"]), "queries", self.name,
                                            d=data.db_features.shape[1])
            files.update(features=cfg["features"], query_features=cfg["query_features"])
        else:
            base = root / self.folder
            if not any(base.glob("INSTRE-*")):
                raise MissingDataError(f"instre: no images under {base} (INSTRE-S1/, INSTRE-S2/, INSTRE-M/) and "
                                       f"no `features` file given")
            imlist, qim, gnd, crop = g["imlist"], g["qimlist"], g["gnd"], cfg["query_crop"]
            data.db_image = lambda i: read_rgb(base / imlist[i])

            def query_image(j):
                img = read_rgb(base / qim[j])
                return crop_box(img, gnd[j]["bbx"]) if crop and "bbx" in gnd[j] else img
            data.query_image = query_image
        data.manifest = manifest_hash(files, {"query_crop": cfg["query_crop"]})
        return data
