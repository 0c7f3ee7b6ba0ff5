"""Labelled-subset files of semi-supervised papers (mean teacher, Tarvainen & Valpola, NeurIPS
2017; label propagation, Iscen, Tolias, Avrithis & Chum, CVPR 2019: ``data-local/labels``).

Layout: ``<labels_dir>/<dataset>/<N>_balanced_labels/<SS>.txt`` (dataset ``cifar10``,
``cifar100``, ``miniimagenet``; ``SS`` = 00, 01, ... one file per random split), one
``<filename> <class name>`` per line, e.g. ``47689_airplane.png airplane``. CIFAR: the number before
the first ``_`` of the file name is the image's index in the training set, in the order of the
official training batches (:func:`labelled_indices`). miniImageNet (``image_10776.JPEG n01532829``):
the number counts all 60,000 images, so a line is matched by class folder and file name
(:func:`labelled_indices_by_name`).
"""
from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

import numpy as np

from visrep.errors import MissingDataError, UserError

from .download import PublishedFile

_INDEX = re.compile(r"^(\d+)")


@functools.lru_cache(maxsize=None)
def published_label_files(dataset: str) -> tuple:
    """The LP-DeepSSL labelled-subset files of `dataset` ('cifar10', 'cifar100', 'miniimagenet') that the tables
    use, as optional PublishedFiles (group 'labels') ``ssl_labels/<dataset>/<N>_balanced_labels/<SS>.txt`` with
    their sha256 and size at the pinned commit (``ssl_labels.toml``) and raw.githubusercontent.com URLs there."""
    doc = tomllib.loads(Path(__file__).with_name("ssl_labels.toml").read_text())
    base = f"https://raw.githubusercontent.com/ahmetius/LP-DeepSSL/{doc['commit']}/data-local/labels"
    return tuple(PublishedFile(f"ssl_labels/{p}", v["sha256"], f"{base}/{p}", v["size"], required=False,
                               source=f"ahmetius/LP-DeepSSL at {doc['commit']}", group="labels")
                 for p, v in doc["files"].items() if p.split("/")[0] == dataset)


def split_file(labels_dir: str | Path, dataset: str, n_labelled: int, split: int) -> Path:
    """Path of the split file; MissingDataError listing what exists when it is absent."""
    base = Path(labels_dir) / dataset
    path = base / f"{n_labelled}_balanced_labels" / f"{split:02d}.txt"
    if not path.exists():
        have = sorted(p.name for p in base.glob("*_balanced_labels")) if base.is_dir() else []
        raise MissingDataError(f"labelled-subset file {path} not found"
                               + (f"; available: {', '.join(have)}" if have else ""))
    return path


def read_label_file(path: str | Path) -> tuple[list[str], list[str]]:
    """(file names, class names) of a split file; UserError naming the file and line when malformed."""
    path = Path(path)
    names, labels = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read labelled-subset file {path}: {e}") from None
    for ln, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise UserError(f"{path}:{ln}: expected '<file name> <class name>', got {line!r}")
        names.append(parts[0])
        labels.append(parts[1])
    if not names:
        raise UserError(f"{path}: no entries")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"{path}: file {dup} is listed more than once")
    return names, labels


def file_indices(names: list[str], path: str | Path = "split file") -> np.ndarray:
    """Training-set indices parsed from the file names (see the module docstring)."""
    out = np.empty(len(names), np.int64)
    for i, n in enumerate(names):
        m = _INDEX.match(n)
        if not m:
            raise UserError(f"{path}: cannot read a training index from file name {n!r}")
        out[i] = int(m.group(1))
    return out


def labelled_indices(path: str | Path, train) -> np.ndarray:
    """Indices into `train` (a LabelledData) of the labelled subset, checked against its labels."""
    names, labels = read_label_file(path)
    idx = file_indices(names, path)
    if idx.max() >= len(train):
        raise UserError(f"{path}: index {idx.max()} beyond the {len(train)} training images")
    class_of = {c: i for i, c in enumerate(train.class_names)}
    unknown = sorted(set(labels) - set(class_of))
    if unknown:
        raise UserError(f"{path}: unknown class names {unknown[:3]} (classes: {train.class_names[:5]}...)")
    want = np.array([class_of[c] for c in labels])
    bad = np.flatnonzero(train.labels[idx] != want)
    if bad.size:
        b = int(bad[0])
        raise UserError(f"{path}: {names[b]} is labelled {labels[b]} but training image {idx[b]} is "
                        f"{train.class_names[train.labels[idx[b]]]}: the file does not match this training set order")
    return idx


def labelled_indices_by_name(path: str | Path, train) -> np.ndarray:
    """Indices into `train` (a LabelledData whose ``paths`` are ``<class name>/<file name>``) of the labelled
    subset of a split file; UserError naming the first line whose image the training split lacks."""
    names, labels = read_label_file(path)
    where = {p: i for i, p in enumerate(train.paths or [])}
    idx = np.empty(len(names), np.int64)
    for i, (n, c) in enumerate(zip(names, labels)):
        j = where.get(f"{c}/{n}")
        if j is None:
            raise UserError(f"{path}: {n} ({c}) is not in the training split ({len(where)} images): the file does "
                            f"not belong to this copy of the dataset")
        idx[i] = j
    return idx


def class_counts(path: str | Path) -> dict[str, int]:
    """Class name -> number of labelled images in a split file (balanced files have equal counts)."""
    _, labels = read_label_file(path)
    u, c = np.unique(labels, return_counts=True)
    return dict(zip(u.tolist(), c.tolist()))
