"""CIFAR-10 / CIFAR-100 from the python pickles (Krizhevsky, Learning multiple layers of
features from tiny images, 2009). Layout (the extracted official archives)::

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta

Each batch is a pickle (``encoding='bytes'``) dict with ``b'data'`` (n, 3072) uint8 (1024 R,
then G, then B values of a 32x32 image, row-major) and ``b'labels'`` (CIFAR-10) or
``b'fine_labels'`` (CIFAR-100). Images come back as (n, 32, 32, 3) uint8 RGB.

Semi-supervised protocol: ``labelled=N`` with ``label_split=S`` marks the labelled subset of
the training set from ``<labels_dir>/<dataset>/N_balanced_labels/0S.txt`` (see
:mod:`visrep.datasets.ssl_splits`) as ``data.train.labelled_idx``.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from visrep.api import DataFile, Dataset
from visrep.data import LabelledData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register


def read_cifar_batch(path: str | Path, label_key: bytes = b"labels") -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch -> (images (n, 32, 32, 3) uint8, labels (n,) int64)."""
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"CIFAR batch {path} not found")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"{path}: not a readable CIFAR pickle, truncated or damaged ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{path}: expected keys b'data' and {label_key!r}, got {keys}")
    x = np.asarray(d[b"data"], dtype=np.uint8)
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise UserError(f"{path}: b'data' must be (n, 3072) with n labels, got {x.shape} and {len(y)} labels")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), y


def _meta_names(path: Path, key: bytes, n: int) -> list[str]:
    if path.exists():
        try:
            with open(path, "rb") as f:
                m = pickle.load(f, encoding="bytes")
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
        names = _meta_names(base / self.meta_file, self.names_key, self.n_classes)
        xt, yt = read_cifar_batch(base / self.test_file, self.label_key)
        test = LabelledData(self.name, yt, names, "test", x=xt)
        files = {"test": base / self.test_file}
        parts = [base / f for f in self.train_files]
        if all(p.exists() for p in parts):
            batches = [read_cifar_batch(p, self.label_key) for p in parts]
            test.train = LabelledData(self.name, np.concatenate([b[1] for b in batches]), names, "train",
                                      x=np.concatenate([b[0] for b in batches]))
            files.update({f"train{i}": p for i, p in enumerate(parts)})
        if self.cfg["labelled"]:
            from .ssl_splits import labelled_indices, split_file
            if test.train is None:
                raise MissingDataError(f"{self.name}: labelled={self.cfg['labelled']} needs the training batches in {base}")
            lab_dir = Path(self.cfg["labels_dir"]) if self.cfg["labels_dir"] else Path(ctx.data_root) / "ssl_labels"
            sf = split_file(lab_dir, self.name, self.cfg["labelled"], self.cfg["label_split"])
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
    files = (DataFile("cifar-10-python.tar.gz", None, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      170498071),)


@register
class Cifar100(_Cifar):
    name = "cifar100"
    summary = "CIFAR-100: 50k train / 10k test 32x32 colour images, 100 fine classes (python pickles)"
    cite = "Krizhevsky, Learning multiple layers of features from tiny images, 2009"
    folder = "cifar-100-python"
    train_files = ("train",)
    test_file, meta_file = "test", "meta"
    label_key, names_key, n_classes = b"fine_labels", b"fine_label_names", 100
    files = (DataFile("cifar-100-python.tar.gz", None, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      169001437),)
