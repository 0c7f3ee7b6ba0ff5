"""MNIST and Fashion-MNIST from their IDX files (gzipped or not).

LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition,
Proc. IEEE 1998; Xiao, Rasul & Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017. Layout::

    <root>/mnist/train-images-idx3-ubyte[.gz]   <root>/mnist/train-labels-idx1-ubyte[.gz]
    <root>/mnist/t10k-images-idx3-ubyte[.gz]    <root>/mnist/t10k-labels-idx1-ubyte[.gz]
    <root>/fashion-mnist/...                    (same file names)

IDX: big-endian magic ``0x0000 08 ndim`` (08 = unsigned byte), ``ndim`` big-endian int32
sizes, then the data. Images come back as (n, 28, 28) uint8, labels (n,) int64. The test
split is required; the training split is attached as ``data.train`` when present.

Fashion-MNIST is also found where the Debian package ``dataset-fashion-mnist`` installs it
(``/usr/share/datasets/fashion-mnist/*.gz``, i.e. the same layout under the data root
``/usr/share/datasets``) when ``<root>/fashion-mnist`` does not hold it. The Debian ``.gz`` files
are re-compressed (their md5s differ from the publisher's), so Fashion-MNIST is verified by the
sha256 of the decompressed IDX bytes, which is the same whichever copy is read.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from visrep.api import Dataset
from visrep.data import LabelledData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
#: where Debian's package dataset-fashion-mnist puts the four .gz files (`dpkg -L dataset-fashion-mnist`)
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
#: sha256 of the decompressed IDX bytes, computed from dataset-fashion-mnist 0.0~git20200523.55506a9-1
#: (60,000 train / 10,000 test images, 6,000 / 1,000 per class, as published)
FASHION_PAYLOAD_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"


def read_idx(path: str | Path, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (optionally .gz) of unsigned bytes into an ndarray; UserError naming the file.

    ``sha256``: digest of the decompressed bytes to verify before parsing (ChecksumMismatch).
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read (truncated or not gzip: {e})") from None
    check_payload(path, raw, sha256)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise UserError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw[4:head], dtype=">i4"))
    size = int(np.prod(shape))
    if len(raw) - head != size:
        raise UserError(f"{path}: {len(raw) - head} data bytes, expected {size} for shape {shape} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape).copy()


class _Digests:
    """sha256 of decompressed IDX payloads already checked in this process (path, size, mtime)."""

    seen: ClassVar[dict] = {}


def check_payload(path: Path, raw: bytes, want: str | None) -> None:
    """ChecksumMismatch (a UserError) unless sha256(raw) == want; no-op when no digest is declared."""
    if not want:
        return
    import hashlib

    from .download import ChecksumMismatch
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if _Digests.seen.get(key) == want:
        return
    found = hashlib.sha256(raw).hexdigest()
    if found != want:
        raise ChecksumMismatch(f"{path}: sha256 of the decompressed IDX data is {found}, expected {want}: not the "
                               f"published file (damaged or another version), so it was not used. Delete it and "
                               f"fetch it again (`visrep data fetch`, or apt-get install --reinstall "
                               f"dataset-fashion-mnist)")
    _Digests.seen[key] = want


def _find(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.exists():
            return p
    return None


def read_mnist_split(folder: str | Path, split: str = "test", name: str = "mnist",
                     class_names=None, payload_sha256: dict | None = None) -> LabelledData:
    """Read one split (``train`` or ``test``) of an MNIST-layout folder.

    ``payload_sha256``: file stem -> sha256 of its decompressed IDX bytes (checked when given).
    """
    folder = Path(folder)
    prefix = "t10k" if split == "test" else "train"
    ip, lp = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
    if ip is None or lp is None:
        raise MissingDataError(f"{name}: {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz] "
                               f"not found in {folder}")
    sums = payload_sha256 or {}
    x = read_idx(ip, sums.get(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(lp, sums.get(f"{prefix}-labels-idx1-ubyte"))
    if x.ndim != 3 or y.ndim != 1:
        raise UserError(f"{ip}: expected (n, rows, cols) images and (n,) labels, got {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise UserError(f"{ip}: {len(x)} images but {lp} has {len(y)} labels")
    names = list(class_names or [str(i) for i in range(10)])
    d = LabelledData(name, y.astype(np.int64), names, split, x=x)
    d.manifest = manifest_hash({"images": ip, "labels": lp})
    return d


class _MnistLike(Dataset):
    task = "classification"
    default_protocol = "classification"
    folder = "mnist"
    class_names: tuple = tuple(str(i) for i in range(10))
    #: folders tried after ``<data root>/<folder>`` (system packages)
    system_dirs: tuple = ()
    #: file stem -> sha256 of the decompressed IDX bytes
    payload_sha256: ClassVar[dict] = {}
    params = (
        Param("split", str, "test", "split scored by the protocol", choices=("test", "train")),
        Param("labelled", int, None, "semi-supervised: N labelled training images, N/10 per class, drawn with "
              "seed label_split (MNIST has no standard split files)", low=10),
        Param("label_split", int, 0, "seed of the labelled-subset draw (one 'split file' per seed)", low=0),
        Param("train_from_test", int, None, "proxy where only t10k exists: move this many test images (seeded "
              "permutation, seed 0) into the training split; the protocol scores the rest", low=1),
        Param("train_size", int, None, "CPU proxy: keep this many training images (seeded permutation, seed 0, "
              "sorted) before the labelled subset is drawn from them", low=10),
    )

    def folder_in(self, root) -> Path:
        """``<root>/<folder>`` when it holds the test split, else the first system folder that does."""
        return find_folder(root, self.folder, self.system_dirs)

    def read(self, ctx, split: str) -> LabelledData:
        return read_mnist_split(self.folder_in(ctx.data_root), split, self.name, self.class_names,
                                self.payload_sha256)

    def load(self, ctx) -> LabelledData:
        folder = self.folder_in(ctx.data_root)
        data = read_mnist_split(folder, self.cfg["split"], self.name, self.class_names, self.payload_sha256)
        if self.cfg["split"] == "test":
            try:
                data.train = read_mnist_split(folder, "train", self.name, self.class_names, self.payload_sha256)
            except MissingDataError:
                data.train = None
        m = self.cfg["train_from_test"]
        if m is not None:
            if m >= len(data):
                raise UserError(f"parameter 'train_from_test' of dataset '{self.name}' must be below the "
                                f"{len(data)} test images, got {m}")
            perm = np.random.default_rng(0).permutation(len(data))
            manifest = data.manifest
            train = data.subset(np.sort(perm[:m]), split="train")
            data = data.subset(np.sort(perm[m:]))
            data.train = train
            data.manifest = manifest_hash({}, {"of": manifest, "train_from_test": m})
        t = self.cfg["train_size"]
        if t is not None:
            if data.train is None or t > len(data.train):
                raise UserError(f"parameter 'train_size' of dataset '{self.name}' must be at most the "
                                f"{0 if data.train is None else len(data.train)} training images, got {t}")
            keep = np.sort(np.random.default_rng(0).permutation(len(data.train))[:t])
            data.train = data.train.subset(keep, split="train")
            data.manifest = manifest_hash({}, {"of": data.manifest, "train_size": t})
        if self.cfg["labelled"] is not None:
            if data.train is None:
                raise MissingDataError(f"{self.name}: labelled={self.cfg['labelled']} needs a training split: the "
                                       f"train-*-ubyte files in {folder}, or train_from_test=M (proxy)")
            data.train.labelled_idx = balanced_subset(data.train.labels, self.cfg["labelled"],
                                                      len(self.class_names), self.cfg["label_split"], self.name)
            data.manifest = manifest_hash({}, {"of": data.manifest, "labelled": self.cfg["labelled"],
                                               "label_split": self.cfg["label_split"]})
        return data


def find_folder(root, folder: str, system_dirs=()) -> Path:
    """``<root>/<folder>`` if it holds t10k-images-idx3-ubyte[.gz], else the first of `system_dirs` that does.

    Falls back to ``<root>/<folder>`` (whose absence the reader reports) when none does.
    """
    first = Path(root) / folder
    for d in (first, *map(Path, system_dirs)):
        if _find(d, "t10k-images-idx3-ubyte") is not None:
            return d
    return first


def balanced_subset(labels: np.ndarray, n: int, n_classes: int, seed: int, where: str = "dataset") -> np.ndarray:
    """Sorted indices of n // n_classes items of every class, drawn without replacement (seeded)."""
    if n % n_classes:
        raise UserError(f"{where}: labelled={n} must be a multiple of the {n_classes} classes (balanced subset)")
    per = n // n_classes
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise UserError(f"{where}: class {c} has {len(idx)} training items, fewer than {per} labelled ones")
        out.append(rng.choice(idx, per, replace=False))
    return np.sort(np.concatenate(out))


#: where the md5 digests below come from (the t10k sha256s of MNIST were computed from the real files,
#: whose md5s equal these)
TORCHVISION = "torchvision/datasets/mnist.py (MNIST.resources, FashionMNIST.resources)"


def _files(folder, url, sums):
    return tuple(PublishedFile(f"{folder}/{stem}.gz", sha, f"{url}/{stem}.gz", size, required=req, md5=md5,
                               source=TORCHVISION if md5 else "sha256 of the real file (MANIFEST.tsv)")
                 for stem, sha, md5, size, req in sums)


@register
class MNIST(_MnistLike):
    name = "mnist"
    summary = "MNIST handwritten digits, 28x28 grey, 10 classes (IDX files)"
    cite = "LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition, 1998"
    folder = "mnist"
    files = _files("mnist", MNIST_URL, [
        ("t10k-images-idx3-ubyte", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", None, 1648877,
         True),
        ("t10k-labels-idx1-ubyte", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", None, 4542, True),
        ("train-images-idx3-ubyte", None, "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422, False),
        ("train-labels-idx1-ubyte", None, "d53e105ee54ea40749a09fcbcd1e9432", 28881, False),
    ])


@register
class FashionMNIST(_MnistLike):
    name = "fashion-mnist"
    summary = "Fashion-MNIST, 28x28 grey clothing images, 10 classes (IDX files)"
    cite = "Xiao, Rasul & Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017"
    folder = "fashion-mnist"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
    system_dirs = (DEBIAN_FASHION_DIR,)
    payload_sha256 = FASHION_PAYLOAD_SHA256
    files = _files("fashion-mnist", FASHION_URL, [
        ("t10k-images-idx3-ubyte", None, "bef4ecab320f06d8554ea6380940ec79", 4422102, True),
        ("t10k-labels-idx1-ubyte", None, "bb300cfdad3c16e7a12a480ee83cd310", 5148, True),
        ("train-images-idx3-ubyte", None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880, False),
        ("train-labels-idx1-ubyte", None, "25c81989df183df01b3e8a0aad5dffbe", 29515, False),
    ])


# ---------------------------------------------------------------- class-split views (Part III proxies)
def split_classes(data: LabelledData, first_held_out: int) -> tuple[LabelledData, LabelledData]:
    """(classes < first_held_out, classes >= first_held_out) of `data`, the second renumbered from 0.

    The metric-learning / few-shot convention (CUB: first 100 classes train, last 100 test).
    """
    if not 0 < first_held_out < data.n_classes:
        raise UserError(f"{data.name}: the held-out classes must start within 1..{data.n_classes - 1}, "
                        f"got {first_held_out}")
    lo = data.subset(data.labels < first_held_out)
    lo.class_names = data.class_names[:first_held_out]
    hi = data.subset(data.labels >= first_held_out)
    hi.labels = hi.labels - first_held_out
    hi.class_names = data.class_names[first_held_out:]
    return lo, hi


_FIRST = Param("first_held_out", int, 5, "classes from this one on are unseen in training (0-4 train, 5-9 test)",
               low=1, high=9)


@register
class MNISTUnseenClasses(Dataset):
    name = "mnist-unseen"
    task = "metric-learning"
    default_protocol = "metric-learning"
    summary = "MNIST t10k for metric learning on unseen classes: digits 0-4 train, 5-9 test (proxy of CUB's split)"
    cite = "LeCun et al. 1998 (data); Oh Song et al., CVPR 2016 (train/test class split protocol)"
    params = (_FIRST,)
    files = MNIST.files[:2]

    def load(self, ctx) -> LabelledData:
        full = read_mnist_split(Path(ctx.data_root) / "mnist", "test", "mnist")
        train, test = split_classes(full, self.cfg["first_held_out"])
        train.split = "train"
        test.name = train.name = self.name
        test.train = train
        test.manifest = manifest_hash({}, {"of": full.manifest, "first_held_out": self.cfg["first_held_out"]})
        return test


@register
class MNISTFewShot(Dataset):
    name = "mnist-fewshot"
    task = "few-shot"
    default_protocol = "few-shot"
    summary = "MNIST t10k few-shot: base digits 0-4 (data.base), N-way K-shot episodes on novel digits 5-9 (proxy)"
    cite = "LeCun et al. 1998 (data); Vinyals et al., NeurIPS 2016 (episodes)"
    params = (
        _FIRST,
        Param("n_way", int, 5, "classes per episode", low=2),
        Param("k_shot", int, 1, "labelled support images per class", low=1),
        Param("n_query", int, 15, "query images per class", low=1),
        Param("n_episodes", int, 600, "episodes", low=1),
        Param("episode_seed", int, 0, "seed of the episode sampler"),
    )
    files = MNIST.files[:2]

    def load(self, ctx):
        from .episodes import sample_episodes
        full = read_mnist_split(Path(ctx.data_root) / "mnist", "test", "mnist")
        base, novel = split_classes(full, self.cfg["first_held_out"])
        base.split, novel.split = "base", "novel"
        base.name = novel.name = self.name
        c = self.cfg
        ep = sample_episodes(novel, c["n_way"], c["k_shot"], c["n_query"], c["n_episodes"], c["episode_seed"])
        ep.base = base
        ep.manifest = manifest_hash({}, {"of": full.manifest, "first_held_out": c["first_held_out"]})
        return ep


@register
class MNISTAdversarial(Dataset):
    """The MNIST test split as the input of attacks (task ``adversarial``): the files and loader of ``mnist``."""

    name = "mnist-adversarial"
    task = "adversarial"
    default_protocol = "adversarial"
    summary = "MNIST t10k images and labels to attack with the adversarial protocol"
    cite = "LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition, 1998"
    files = MNIST.files[:2]

    def load(self, ctx):
        return read_mnist_split(Path(ctx.data_root) / "mnist", "test", self.name)


# ---------------------------------------------------------------- Fashion-MNIST views (the larger Part III proxy)
def per_class_cap(data: LabelledData, cap: int | None, seed: int = 0) -> LabelledData:
    """At most `cap` items of every class (seeded draw, sorted indices); `data` itself when cap is None."""
    if cap is None:
        return data
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.permutation(idx)[:cap]) for idx in (np.flatnonzero(data.labels == c)
                                                           for c in range(data.n_classes))]
    return data.subset(np.sort(np.concatenate(keep)), split=data.split)


def _fashion_splits(ctx, first_held_out: int, cap: int | None, name: str):
    """(train split, classes < h, capped per class; test split, classes >= h renumbered; manifest)."""
    src = FashionMNIST()
    train_all, test_all = src.read(ctx, "train"), src.read(ctx, "test")
    seen, _ = split_classes(train_all, first_held_out)
    _, unseen = split_classes(test_all, first_held_out)
    seen = per_class_cap(seen, cap)
    seen.name = unseen.name = name
    manifest = manifest_hash({}, {"train": train_all.manifest, "test": test_all.manifest,
                                  "first_held_out": first_held_out, "per_class": cap})
    return seen, unseen, manifest


@register
class FashionMNISTUnseenClasses(Dataset):
    name = "fashion-mnist-unseen"
    task = "metric-learning"
    default_protocol = "metric-learning"
    summary = ("Fashion-MNIST metric learning on unseen classes: training-split classes 0-4 train, test-split "
               "classes 5-9 test (proxy of CUB's class split)")
    cite = "Xiao, Rasul & Vollgraf 2017 (data); Oh Song et al., CVPR 2016 (train/test class split protocol)"
    params = (_FIRST, Param("train_per_class", int, None, "CPU proxy: at most this many training images per "
                            "class (seeded)", low=1))
    files = FashionMNIST.files
    system_dirs = FashionMNIST.system_dirs

    def load(self, ctx) -> LabelledData:
        train, test, manifest = _fashion_splits(ctx, self.cfg["first_held_out"], self.cfg["train_per_class"],
                                                self.name)
        train.split = "train"
        test.train = train
        test.manifest = manifest
        return test


@register
class FashionMNISTFewShot(Dataset):
    name = "fashion-mnist-fewshot"
    task = "few-shot"
    default_protocol = "few-shot"
    summary = ("Fashion-MNIST few-shot: base classes 0-4 of the training split (data.base), N-way K-shot episodes "
               "on novel classes 5-9 of the test split")
    cite = "Xiao, Rasul & Vollgraf 2017 (data); Vinyals et al., NeurIPS 2016 (episodes)"
    params = (
        _FIRST,
        Param("base_per_class", int, 600, "base images per class (seeded; 600 as in miniImageNet; None = all 6000)",
              low=1),
        Param("n_way", int, 5, "classes per episode", low=2),
        Param("k_shot", int, 1, "labelled support images per class", low=1),
        Param("n_query", int, 15, "query images per class", low=1),
        Param("n_episodes", int, 600, "episodes", low=1),
        Param("episode_seed", int, 0, "seed of the episode sampler"),
    )
    files = FashionMNIST.files
    system_dirs = FashionMNIST.system_dirs

    def load(self, ctx):
        from .episodes import sample_episodes
        c = self.cfg
        base, novel, manifest = _fashion_splits(ctx, c["first_held_out"], c["base_per_class"], self.name)
        base.split, novel.split = "base", "novel"
        ep = sample_episodes(novel, c["n_way"], c["k_shot"], c["n_query"], c["n_episodes"], c["episode_seed"])
        ep.base = base
        ep.manifest = manifest
        return ep
