"""MNIST and Fashion-MNIST from their IDX files (gzipped or not).

LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document recognition,
Proc. IEEE 1998; Xiao, Rasul & Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017. Layout::

    <root>/mnist/train-images-idx3-ubyte[.gz]   <root>/mnist/train-labels-idx1-ubyte[.gz]
    <root>/mnist/t10k-images-idx3-ubyte[.gz]    <root>/mnist/t10k-labels-idx1-ubyte[.gz]
    <root>/fashion-mnist/...                    (same file names)

IDX: big-endian magic ``0x0000 08 ndim`` (08 = unsigned byte), ``ndim`` big-endian int32
sizes, then the data. Images come back as (n, 28, 28) uint8, labels (n,) int64. The test
split is required; the training split is attached as ``data.train`` when present.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from visrep.api import Dataset
from visrep.data import LabelledData
from visrep.errors import MissingDataError, UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .download import PublishedFile

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally .gz) of unsigned bytes into an ndarray; UserError naming the file."""
    path = Path(path)
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read (truncated or not gzip: {e})") from None
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


def _find(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.exists():
            return p
    return None


def read_mnist_split(folder: str | Path, split: str = "test", name: str = "mnist",
                     class_names=None) -> LabelledData:
    """Read one split (``train`` or ``test``) of an MNIST-layout folder."""
    folder = Path(folder)
    prefix = "t10k" if split == "test" else "train"
    ip, lp = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
    if ip is None or lp is None:
        raise MissingDataError(f"{name}: {prefix}-images-idx3-ubyte[.gz] / {prefix}-labels-idx1-ubyte[.gz] "
                               f"not found in {folder}")
    x, y = read_idx(ip), read_idx(lp)
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
    params = (
        Param("split", str, "test", "split scored by the protocol", choices=("test", "train")),
        Param("labelled", int, None, "semi-supervised: N labelled training images, N/10 per class, drawn with "
              "seed label_split (MNIST has no standard split files)", low=10),
        Param("label_split", int, 0, "seed of the labelled-subset draw (one 'split file' per seed)", low=0),
        Param("train_from_test", int, None, "proxy where only t10k exists: move this many test images (seeded "
              "permutation, seed 0) into the training split; the protocol scores the rest", low=1),
    )

    def load(self, ctx) -> LabelledData:
        folder = Path(ctx.data_root) / self.folder
        data = read_mnist_split(folder, self.cfg["split"], self.name, self.class_names)
        if self.cfg["split"] == "test":
            try:
                data.train = read_mnist_split(folder, "train", self.name, self.class_names)
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
        if self.cfg["labelled"] is not None:
            if data.train is None:
                raise MissingDataError(f"{self.name}: labelled={self.cfg['labelled']} needs a training split: the "
                                       f"train-*-ubyte files in {folder}, or train_from_test=M (proxy)")
            data.train.labelled_idx = balanced_subset(data.train.labels, self.cfg["labelled"],
                                                      len(self.class_names), self.cfg["label_split"], self.name)
            data.manifest = manifest_hash({}, {"of": data.manifest, "labelled": self.cfg["labelled"],
                                               "label_split": self.cfg["label_split"]})
        return data


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
