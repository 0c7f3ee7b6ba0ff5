"""CIFAR-10 / CIFAR-100 from the python pickles (Krizhevsky, Learning multiple layers of
features from tiny images, 2009). Layout (the extracted official archives)::

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta

Each batch is a pickle (``encoding='bytes'``) dict with ``b'data'`` (n, 3072) uint8 (1024 R,
then G, then B values of a 32x32 image, row-major) and ``b'labels'`` (CIFAR-10) or
``b'fine_labels'`` (CIFAR-100). Images come back as (n, 32, 32, 3) uint8 RGB.

Trust: the archives are checked against the md5 the publisher's loaders use (torchvision's
``datasets/cifar.py``: ``tgz_md5`` and the per-batch md5s, the latter declared here as the
archive's ``members``); every batch is checked before it is read, and always read with
:mod:`visrep.safe_pickle` (containers and arrays only: a batch cannot run code). Batches with no
declared digest (none today) would be guarded by the restricted unpickler alone.

Semi-supervised protocol: ``labelled=N`` with ``label_split=S`` marks the labelled subset of
the training set from ``<labels_dir>/<dataset>/N_balanced_labels/0S.txt`` (see
:mod:`visrep.datasets.ssl_splits`) as ``data.train.labelled_idx``.
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

from .download import PublishedFile, check_known, read_pickle
from .ssl_splits import published_label_files

#: where the md5 digests below come from
TORCHVISION = "torchvision/datasets/cifar.py (CIFAR10/CIFAR100: tgz_md5, train_list, test_list, meta)"


def read_cifar_batch(path: str | Path, label_key: bytes = b"labels", dataset=None,
                     root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch -> (images (n, 32, 32, 3) uint8, labels (n,) int64).

    With `dataset` and `root`, a batch the dataset declares is checked against its md5 first;
    the pickle is always read with the restricted unpickler.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"CIFAR batch {path} not found")
    d = read_pickle(path, "CIFAR pickle", dataset, root, encoding="bytes")
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(map(repr, d)) if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{path}: expected keys b'data' and {label_key!r}, got {keys}")
    try:
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[label_key], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{path}: b'data' / {label_key!r} are not arrays of integers ({e})") from None
    if x.ndim != 2 or x.shape[1] != 3072 or y.ndim != 1 or len(x) != len(y):
        raise UserError(f"{path}: b'data' must be (n, 3072) with n labels, got {x.shape} and {y.shape} labels")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y


def _meta_names(path: Path, key: bytes, n: int, dataset=None, root=None) -> list[str]:
    if path.exists():
        m = read_pickle(path, "CIFAR meta pickle", dataset, root, encoding="bytes")
        try:
            return [x.decode() if isinstance(x, bytes) else str(x) for x in m[key]]
        except Exception as e:  # noqa: BLE001 - any damage is the user's file
            raise UserError(f"{path}: cannot read class names {key!r} ({type(e).__name__}: {e})") from None
    return [str(i) for i in range(n)]


class _Cifar(Dataset):
    task = "classification"
    default_protocol = "classification"
    folder = ""
    train_files: tuple = ()
    test_file = ""
    meta_file = ""
    label_key = b"labels"
    names_key = b"label_names"
    n_classes = 10
    params = (
        Param("labelled", int, None, "semi-supervised: number of labelled training images (a split file)", low=1),
        Param("label_split", int, 0, "which split file 0S.txt of the labelled subsets", low=0),
        Param("labels_dir", str, None, "folder of ssl_labels/ (default <root>/ssl_labels)"),
    )

    def load(self, ctx) -> LabelledData:
        base = Path(ctx.data_root) / self.folder
        if not base.is_dir():
            raise MissingDataError(f"{self.name}: folder {base} not found (the extracted python archive)")
        root = Path(ctx.data_root)
        names = _meta_names(base / self.meta_file, self.names_key, self.n_classes, self, root)
        xt, yt = read_cifar_batch(base / self.test_file, self.label_key, self, root)
        test = LabelledData(self.name, yt, names, "test", x=xt)
        files = {"test": base / self.test_file}
        parts = [base / f for f in self.train_files]
        if all(p.exists() for p in parts):
            batches = [read_cifar_batch(p, self.label_key, self, root) for p in parts]
            test.train = LabelledData(self.name, np.concatenate([b[1] for b in batches]), names, "train",
                                      x=np.concatenate([b[0] for b in batches]))
            files.update({f"train{i}": p for i, p in enumerate(parts)})
        if self.cfg["labelled"]:
            from .ssl_splits import labelled_indices, split_file
            if test.train is None:
                raise MissingDataError(f"{self.name}: labelled={self.cfg['labelled']} needs the training batches in {base}")
            lab_dir = Path(self.cfg["labels_dir"]) if self.cfg["labels_dir"] else Path(ctx.data_root) / "ssl_labels"
            sf = split_file(lab_dir, self.name, self.cfg["labelled"], self.cfg["label_split"])
            check_known(self, root, sf)                       # a published split file: its digest first
            test.train.labelled_idx = labelled_indices(sf, test.train)
            files["labelled"] = sf
        test.manifest = manifest_hash(files)
        return test


@register
class Cifar10(_Cifar):
    name = "cifar10"
    summary = "CIFAR-10: 50k train / 10k test 32x32 colour images, 10 classes (python pickles)"
    cite = "Krizhevsky, Learning multiple layers of features from tiny images, 2009"
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file, meta_file = "test_batch", "batches.meta"
    files = (PublishedFile("cifar-10-python.tar.gz", None, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           170498071, md5="c58f30108f718f92721af3b95e74349a", source=TORCHVISION),
             ) + published_label_files("cifar10")
    members = tuple(PublishedFile(f"cifar-10-batches-py/{f}", md5=md5, source=TORCHVISION, required=False,
                                  inside="cifar-10-python.tar.gz") for f, md5 in (
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"), ("test_batch", "40351d587109b95175f43aff81a1287e"),
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")))


@register
class Cifar100(_Cifar):
    name = "cifar100"
    summary = "CIFAR-100: 50k train / 10k test 32x32 colour images, 100 fine classes (python pickles)"
    cite = "Krizhevsky, Learning multiple layers of features from tiny images, 2009"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file, meta_file = "test", "meta"
    label_key, names_key, n_classes = b"fine_labels", b"fine_label_names", 100
    files = (PublishedFile("cifar-100-python.tar.gz", None, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                           169001437, md5="eb9058c3a382ffc7106e4002c42a8d85", source=TORCHVISION),
             ) + published_label_files("cifar100")
    members = tuple(PublishedFile(f"cifar-100-python/{f}", md5=md5, source=TORCHVISION, required=False,
                                  inside="cifar-100-python.tar.gz") for f, md5 in (
        ("train", "16019d7e3df5f24257cddd939b257f8d"), ("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
        ("meta", "7973b15100ade9c7d40fb424638fde48")))
