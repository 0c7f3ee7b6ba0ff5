"""CUB-200-2011 (Wah, Branson, Welinder, Perona & Belongie, Caltech-UCSD Birds-200-2011, 2011).

Layout (the official archive ``CUB_200_2011.tgz`` extracted)::

    <root>/CUB_200_2011/images.txt              "<image id> <class folder>/<file>.jpg"
    <root>/CUB_200_2011/image_class_labels.txt  "<image id> <class id 1..200>"
    <root>/CUB_200_2011/train_test_split.txt    "<image id> <1 = train, 0 = test>"
    <root>/CUB_200_2011/classes.txt             "<class id> <class folder>"   (optional)
    <root>/CUB_200_2011/images/<class folder>/<file>.jpg

Metric-learning split (Oh Song, Xiang, Jegelka & Savarese, Deep metric learning via lifted
structured feature embedding, CVPR 2016): classes 1-100 train, 101-200 test (5,864 / 5,924
images); labels are renumbered 0..99 within each split. ``split_mode=classification`` uses
``train_test_split.txt`` instead (200 classes in both splits).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.api import Dataset
from visrep.data import LabelledData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile
from .image_files import read_rgb


def _read_table(path: Path, ncols: int = 2) -> list[list[str]]:
    if not path.exists():
        raise MissingDataError(f"CUB-200-2011 file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read CUB-200-2011 table {path}: {e}") from None
    rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=ncols - 1)
        if len(parts) != ncols:
            raise UserError(f"{path}:{ln}: expected {ncols} fields, got {line!r}")
        rows.append(parts)
    return rows


def read_cub(root: str | Path) -> dict:
    """Read the CUB tables -> dict(paths, class_id (1-based), is_train (bool), class_names), by image id."""
    root = Path(root)
    imgs = _read_table(root / "images.txt")
    labs = _read_table(root / "image_class_labels.txt")
    split = _read_table(root / "train_test_split.txt")
    if not imgs:
        raise UserError(f"{root / 'images.txt'}: no images listed")
    try:
        ids = np.array([int(r[0]) for r in imgs], np.int64)
        lab = {int(a): int(b) for a, b in labs}
        tr = {int(a): int(b) for a, b in split}
    except (ValueError, OverflowError) as e:
        raise UserError(f"{root}: CUB tables must hold integer ids ({e})") from None
    missing = [i for i in ids if i not in lab or i not in tr]
    if missing:
        raise UserError(f"{root}: image id {missing[0]} of images.txt is missing from "
                        f"{'image_class_labels.txt' if missing[0] not in lab else 'train_test_split.txt'}")
    class_id = np.array([lab[i] for i in ids], np.int64)
    if class_id.min() < 1:
        raise UserError(f"{root / 'image_class_labels.txt'}: class ids are 1-based, got {class_id.min()}")
    n_classes = int(class_id.max())
    if n_classes > max(len(ids), 200):
        raise UserError(f"{root / 'image_class_labels.txt'}: class id {n_classes} for {len(ids)} images")
    if (root / "classes.txt").exists():
        try:
            names = {int(a): b for a, b in _read_table(root / "classes.txt")}
        except (ValueError, OverflowError) as e:
            raise UserError(f"{root / 'classes.txt'}: class ids must be integers ({e})") from None
        class_names = [names.get(c, str(c)) for c in range(1, n_classes + 1)]
    else:
        folders = {}
        for (_, p), c in zip(imgs, class_id):
            folders.setdefault(int(c), p.split("/")[0])
        class_names = [folders.get(c, str(c)) for c in range(1, n_classes + 1)]
    return {"paths": [r[1] for r in imgs], "class_id": class_id, "is_train": np.array([tr[i] == 1 for i in ids]),
            "class_names": class_names}


@register
class CUB200(Dataset):
    name = "cub200"
    task = "metric-learning"
    default_protocol = "metric-learning"
    summary = "CUB-200-2011 birds; metric-learning split: classes 1-100 train, 101-200 test"
    cite = "Wah et al., The Caltech-UCSD Birds-200-2011 dataset, 2011; Oh Song et al., CVPR 2016 (split)"
    params = (
        Param("split_mode", str, "metric-learning", "'metric-learning' (classes 1-100 / 101-200) or "
              "'classification' (train_test_split.txt)", choices=("metric-learning", "classification")),
        Param("features", str, None, "optional (n_test, d) descriptor file of the test images, in images.txt order"),
    )
    # md5: the one CaltechDATA lists for the record, which public CUB loaders check (e.g.
    # TDeVries/cub2011_dataset, avalanche's CUB200: tgz_md5); no sha256 is published
    files = (PublishedFile("CUB_200_2011.tgz", None,
                           "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz", 1150585339,
                           md5="97eceeb196236b17998738112f37df78",
                           source="CaltechDATA record 65de6-vp158 (md5 used by public CUB loaders)"),)

    def load(self, ctx) -> LabelledData:
        base = Path(ctx.data_root) / "CUB_200_2011"
        if not base.is_dir():
            raise MissingDataError(f"cub200: folder {base} not found (extract CUB_200_2011.tgz there)")
        t = read_cub(base)
        img_dir = base / "images"
        if self.cfg["split_mode"] == "metric-learning":
            half = len(t["class_names"]) // 2
            tr, te = t["class_id"] <= half, t["class_id"] > half
            splits = {"train": (tr, 1, t["class_names"][:half]), "test": (te, half + 1, t["class_names"][half:])}
        else:
            splits = {"train": (t["is_train"], 1, t["class_names"]), "test": (~t["is_train"], 1, t["class_names"])}
        out = {}
        for s, (mask, first, names) in splits.items():
            idx = np.flatnonzero(mask)
            paths = [t["paths"][i] for i in idx]
            out[s] = LabelledData("cub200", t["class_id"][idx] - first, list(names), s, paths=paths,
                                  image=(lambda p: (lambda i: read_rgb(img_dir / p[i])))(paths))
        test = out["test"]
        test.train = out["train"]
        files = {k: base / k for k in ("images.txt", "image_class_labels.txt", "train_test_split.txt")}
        if self.cfg["features"]:
            from visrep.descriptor_files import read_descriptors
            x = read_descriptors(self.cfg["features"]).astype(np.float32, copy=False)
            if len(x) != len(test):
                raise UserError(f"{self.cfg['features']}: {len(x)} descriptors but cub200 has {len(test)} test images")
            test.x = x
            files["features"] = self.cfg["features"]
        test.manifest = manifest_hash(files, {"split_mode": self.cfg["split_mode"]})
        return test
