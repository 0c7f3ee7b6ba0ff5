"""miniImageNet with the Ravi & Larochelle split (Optimization as a model for few-shot learning,
ICLR 2017): 64 / 16 / 20 classes (train / val / test), 600 images each. Layout::

    <root>/miniimagenet/train.csv, val.csv, test.csv    "filename,label" (header line), e.g.
                                                         n0153282900000005.jpg,n01532829
    <root>/miniimagenet/images/<filename>                (84x84 images, optional)

``csv_dir`` points elsewhere for the CSVs (e.g. ``shared/data/splits/miniimagenet_ravi``).
Loading gives :class:`EpisodeData`: ``n_episodes`` seeded N-way K-shot episodes drawn from the
chosen split (default test), see :mod:`visrep.datasets.episodes`, and the 64-class ``train`` split
as ``base`` (what few-shot learners train on). With the images present, both carry their pixels
``x`` (n, 84, 84, 3) uint8, resized to the benchmark's 84 x 84 when a file has another size.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from visrep.api import DataFile, Dataset
from visrep.data import LabelledData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile, check_known
from .episodes import sample_episodes
from .image_files import read_rgb
from .ssl_splits import published_label_files

_RAVI = "https://raw.githubusercontent.com/twitter-research/meta-learning-lstm/0cffa2481619ce643d0951bd637bf05b23ef827a/data/miniImagenet"
_SUMS = {"train": ("498519cd8e49ce97ed26a4a3638966698ae41ab35e9c68538319fc9b46ba7d2f", 1228815),
         "val": ("5658a59921ca027ee76af92949869c5d6f41d77592ff3b18db325a9d10c893b9", 307215),
         "test": ("2b7cfa78342995761a572a8158e539bc4e0a80f9bbd7d00c1e17a460fbbb93fa", 384015)}


def read_split_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """(file names, wnid labels) of a Ravi split CSV; UserError naming the file and row."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"miniImageNet split file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read miniImageNet split file {path}: {e}") from None
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise UserError(f"{path}: expected the header 'filename,label'")
    files, labels = [], []
    for i, r in enumerate(rows[1:], 2):
        if not r:
            continue
        if len(r) != 2:
            raise UserError(f"{path}:{i}: expected 'filename,label', got {','.join(r)!r}")
        files.append(r[0])
        labels.append(r[1])
    return files, labels


def read_split(csv_dir: str | Path, split: str, image_dir: str | Path | None = None) -> LabelledData:
    """One split as LabelledData (labels 0.. in order of first appearance of each wnid)."""
    path = Path(csv_dir) / f"{split}.csv"
    files, wnids = read_split_csv(path)
    names = list(dict.fromkeys(wnids))
    index = {w: i for i, w in enumerate(names)}
    image = None
    if image_dir is not None:
        image = lambda i: read_rgb(Path(image_dir) / files[i])  # noqa: E731
    d = LabelledData("miniimagenet", np.array([index[w] for w in wnids]), names, split, paths=files, image=image)
    d.manifest = manifest_hash({split: path})
    return d


@register
class MiniImageNet(Dataset):
    name = "miniimagenet"
    task = "few-shot"
    default_protocol = "few-shot"
    summary = "miniImageNet (Ravi split 64/16/20 classes): seeded N-way K-shot episodes"
    cite = "Vinyals et al., Matching networks, NeurIPS 2016; Ravi & Larochelle, ICLR 2017 (split)"
    params = (
        Param("split", str, "test", "split the episodes come from", choices=("train", "val", "test")),
        Param("n_way", int, 5, "classes per episode", low=2),
        Param("k_shot", int, 1, "labelled support images per class", low=1),
        Param("n_query", int, 15, "query images per class", low=1),
        Param("n_episodes", int, 600, "episodes", low=1),
        Param("episode_seed", int, 0, "seed of the episode sampler"),
        Param("csv_dir", str, None, "folder of train/val/test.csv (default <root>/miniimagenet)"),
    )
    files = tuple(DataFile(f"miniimagenet/{s}.csv", sha, f"{_RAVI}/{s}.csv", size) for s, (sha, size) in _SUMS.items())

    def load(self, ctx):
        base = Path(ctx.data_root) / "miniimagenet"
        csv_dir = Path(self.cfg["csv_dir"]) if self.cfg["csv_dir"] else base
        img = base / "images"
        have_images = img.is_dir()
        pool = read_split(csv_dir, self.cfg["split"], img if have_images else None)
        base = None
        if (csv_dir / "train.csv").exists():
            base = pool if self.cfg["split"] == "train" else read_split(csv_dir, "train", img if have_images else None)
        if have_images:
            for d in {id(pool): pool, id(base): base}.values():
                if d is not None:
                    d.x = _pixels(img, d.paths, ctx)
        c = self.cfg
        ep = sample_episodes(pool, c["n_way"], c["k_shot"], c["n_query"], c["n_episodes"], c["episode_seed"])
        ep.base = base if have_images else None   # a base split without pixels cannot train anything
        ep.manifest = pool.manifest
        return ep


def _pixels(image_dir: Path, files, ctx, size: int = 84) -> np.ndarray:
    """(n, size, size, 3) uint8 pixels of the listed image files, resized (area) where they differ."""
    import cv2
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i in ctx.progress(range(len(files)), desc="miniimagenet images", total=len(files), unit="img"):
        im = read_rgb(image_dir / files[i])
        out[i] = im if im.shape[:2] == (size, size) else cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
    return out


# ---------------------------------------------------------------- the semi-supervised classification view
#: LP-DeepSSL's archives (Iscen et al. CVPR 2019, README "Mini-Imagenet"); no checksum is published
_LPDEEP = "http://ptak.felk.cvut.cz/personal/toliageo/share/lpdeep"
_LPDEEP_SOURCE = ("ahmetius/LP-DeepSSL README (train.tar.gz / test.tar.gz, extracted into "
                  "data-local/images/miniimagenet): no published checksum")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def read_image_folder(folder: Path) -> tuple[list[str], list[str]]:
    """(relative paths ``<wnid>/<file>``, wnids) of an ImageFolder split (``<folder>/<wnid>/<image>``), in
    torchvision's ImageFolder order: classes sorted, files sorted within a class. MissingDataError if absent."""
    if not folder.is_dir():
        raise MissingDataError(f"miniImageNet (semi-supervised) folder {folder} not found")
    paths, wnids = [], []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f.name for f in cls.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        paths += [f"{cls.name}/{f}" for f in files]
        wnids += [cls.name] * len(files)
    if not paths:
        raise UserError(f"{folder}: no class folders with images (expected {folder}/<wnid>/<image>.JPEG)")
    return paths, wnids


@register
class MiniImageNetSSL(Dataset):
    """miniImageNet as the semi-supervised papers classify it (Iscen et al. CVPR 2019, their datasets: all 100
    classes, 500 training and 100 test images per class, 84 x 84). Layout (LP-DeepSSL's archives, extracted)::

        <root>/miniimagenet-ssl/train/<wnid>/image_<N>.JPEG     50,000 images
        <root>/miniimagenet-ssl/test/<wnid>/image_<N>.JPEG      10,000 images

    ``N`` numbers the 60,000 images of the 100 classes (600 a class); the labelled subsets
    (``ssl_labels/miniimagenet/<n>_balanced_labels/0S.txt``, lines ``image_<N>.JPEG <wnid>``) are matched by
    class folder and file name. Pixels (n, 84, 84, 3) uint8, resized (area) where a file has another size.
    """

    name = "miniimagenet-classification"
    task = "classification"
    default_protocol = "classification"
    summary = "miniImageNet, 100 classes, 500 train / 100 test images each (LP-DeepSSL layout), labelled subsets"
    cite = "Vinyals et al., Matching networks, NeurIPS 2016; Iscen et al., Label propagation for deep SSL, CVPR 2019"
    folder = "miniimagenet-ssl"
    params = (
        Param("labelled", int, None, "semi-supervised: number of labelled training images (a split file)", low=1),
        Param("label_split", int, 0, "which split file 0S.txt of the labelled subsets", low=0),
        Param("labels_dir", str, None, "folder of ssl_labels/ (default <root>/ssl_labels)"),
    )
    files = tuple(PublishedFile(f"miniimagenet-ssl/{s}.tar.gz", None, f"{_LPDEEP}/{s}.tar.gz", required=False,
                                source=_LPDEEP_SOURCE, pin=True, layout="merge", group="images")
                  for s in ("train", "test")) + published_label_files("miniimagenet")

    def load(self, ctx) -> LabelledData:
        import hashlib
        base = Path(ctx.data_root) / self.folder
        splits = {}
        for split in ("train", "test"):                       # both listed before any pixel is read
            splits[split] = read_image_folder(base / split)
        names = sorted(set(splits["train"][1]))
        if sorted(set(splits["test"][1])) != names:
            raise UserError(f"{base}: train/ and test/ hold different class folders "
                            f"({len(names)} vs {len(set(splits['test'][1]))})")
        index = {w: i for i, w in enumerate(names)}
        parts = {split: LabelledData(self.name, np.array([index[w] for w in wnids]), names, split, paths=paths)
                 for split, (paths, wnids) in splits.items()}
        test = parts["test"]
        test.train = parts["train"]
        files = {}
        if self.cfg["labelled"]:                              # the split file, checked before any pixel is read
            from .ssl_splits import labelled_indices_by_name, split_file
            lab_dir = Path(self.cfg["labels_dir"]) if self.cfg["labels_dir"] else Path(ctx.data_root) / "ssl_labels"
            sf = split_file(lab_dir, "miniimagenet", self.cfg["labelled"], self.cfg["label_split"])
            check_known(self, ctx.data_root, sf)              # a published split file: its digest first
            test.train.labelled_idx = labelled_indices_by_name(sf, test.train)
            files["labelled"] = sf
        for split, d in parts.items():
            d.x = _pixels(base / split, d.paths, ctx)
        extra = {f"{s}_pixels": hashlib.sha256(np.ascontiguousarray(d.x).data).hexdigest() for s, d in parts.items()}
        extra.update({f"{s}_files": hashlib.sha256("\n".join(d.paths).encode()).hexdigest() for s, d in parts.items()})
        test.manifest = manifest_hash(files, extra)
        return test
