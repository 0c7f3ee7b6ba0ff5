"""Few clean and many noisy labels: a Fashion-MNIST proxy of the setting of Iscen, Tolias, Avrithis,
Chum & Schmid, "Graph convolutional networks for learning with few clean and many noisy labels",
ECCV 2020 (arXiv:1910.00324).

The paper: per novel class, k clean labelled images (Low-shot ImageNet / Places365, k = 1, 2, 5,
10, 20) plus many images of YFCC100M that carry the class as a noisy label; the test images of the
novel classes are classified. Here (``fashion-mnist-noisy``), from the real Fashion-MNIST files
(Debian ``dataset-fashion-mnist``, data root ``/usr/share/datasets``):

- clean: ``k_shot`` images per class of the 60k training split, drawn with seed ``episode``;
- noisy: ``noisy_per_class`` images per class from the rest of the training split (the pool),
  labelled with the class whatever their true class, by one of two documented noise models:

  ``retrieval`` (visual retrieval, visually plausible noise): the pool images ranked by their
  cosine similarity to the nearest clean image of the class, in the pixel feature (pixels / 255,
  L2-normalised), top ``noisy_per_class`` kept. The wrong ones are the other classes' look-alikes
  (shirt / T-shirt / pullover / coat); the noise rate is whatever retrieval gives (about 0.2 at
  5 shots, 500 per class).

  ``symmetric`` (text-tag-like noise, independent of appearance): a fraction ``noise_rate`` of the
  class's noisy images drawn uniformly from the pool images of the other classes, the rest from
  its own class (seed ``episode + 1``).

  An image may be retrieved for several classes (as a YFCC image whose tags name several
  classes): it then appears once per class with each label.
- test: the 10k test split (all 10 classes are the "novel" classes; no base classes here).

``data.train`` holds the clean images first (``labelled_idx``) then the noisy ones, with the
observed labels; ``train.extra["clean"]`` (bool) marks the clean ones; ``extra["true_labels"]`` and
``extra["source_index"]`` (index in the 60k training split) are kept for diagnostics only (a method
must not train on them). Why a dataset and not method parameters: the noisy labels are data, like a
labelled-subset file; every method (the GCN weighting and its baselines, or ``supervised``) then reads
the same noisy set, which the dataset's manifest identifies, and claims compare them item by item.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Dataset
from visrep.data import LabelledData
from visrep.errors import UserError
from visrep.manifest import manifest_hash
from visrep.params import Param
from visrep.registry import register

from .mnist import FashionMNIST, balanced_subset


def _pixels(x: np.ndarray) -> np.ndarray:
    """(n, H, W) uint8 -> (n, H*W) float32 pixels / 255 with unit L2 rows (the retrieval feature)."""
    v = x.reshape(len(x), -1).astype(np.float32) / 255.0
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, n, out=np.zeros_like(v), where=n > 0)


def noisy_sets(train_x: np.ndarray, train_labels: np.ndarray, n_classes: int, k_shot: int, per_class: int,
               noise: str, noise_rate: float, episode: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean (C*k,) indices, noisy (C*m,) indices, noisy labels (C*m,)) into the training split.

    Clean: ``k_shot`` per class (seed ``episode``), in class order. Noisy: ``per_class`` per class
    from the pool (training split minus the clean images) by the noise model of the module docstring.
    """
    clean = balanced_subset(train_labels, k_shot * n_classes, n_classes, episode, "fashion-mnist-noisy")
    clean = clean[np.argsort(train_labels[clean], kind="stable")]
    pool = np.setdiff1d(np.arange(len(train_labels)), clean)
    if per_class > len(pool):
        raise UserError(f"fashion-mnist-noisy: noisy_per_class={per_class} exceeds the {len(pool)} pool images")
    noisy, labels = [], []
    if noise == "retrieval":
        V = _pixels(train_x)
        S = V[pool] @ V[clean].T                           # (pool, C*k) cosine similarities
        for c in range(n_classes):
            score = S[:, c * k_shot:(c + 1) * k_shot].max(axis=1)
            noisy.append(pool[np.argsort(-score, kind="stable")[:per_class]])
            labels.append(np.full(per_class, c))
    elif noise == "symmetric":
        rng = np.random.default_rng(episode + 1)
        n_wrong = round(noise_rate * per_class)
        for c in range(n_classes):
            own, other = pool[train_labels[pool] == c], pool[train_labels[pool] != c]
            if per_class - n_wrong > len(own):
                raise UserError(f"fashion-mnist-noisy: class {c} has {len(own)} pool images, fewer than the "
                                f"{per_class - n_wrong} correctly labelled noisy ones asked for")
            noisy.append(np.concatenate([rng.choice(own, per_class - n_wrong, replace=False),
                                         rng.choice(other, n_wrong, replace=False)]))
            labels.append(np.full(per_class, c))
    else:
        raise UserError(f"fashion-mnist-noisy: noise must be 'retrieval' or 'symmetric', got {noise!r}")
    return clean, np.concatenate(noisy), np.concatenate(labels).astype(np.int64)


@register
class FashionMNISTNoisy(Dataset):
    name = "fashion-mnist-noisy"
    task = "classification"
    default_protocol = "classification"
    summary = ("Fashion-MNIST with few clean and many noisy labels: k clean training images per class + "
               "noisy ones by visual retrieval or symmetric noise; scored on the 10k test split")
    cite = ("Xiao, Rasul & Vollgraf 2017 (data); Iscen, Tolias, Avrithis, Chum & Schmid, ECCV 2020 "
            "(few clean + many noisy setting)")
    params = (
        Param("k_shot", int, 5, "clean labelled training images per class (the paper: 1, 2, 5, 10, 20)", low=1),
        Param("noisy_per_class", int, 500, "noisy images per class (proxy size)", low=1),
        Param("noise", str, "retrieval", "noise model: 'retrieval' (nearest pool images of the class's clean "
              "images, pixel cosine) or 'symmetric' (noise_rate of them from other classes, uniformly)",
              choices=("retrieval", "symmetric")),
        Param("noise_rate", float, 0.5, "symmetric noise: fraction of wrong labels among the noisy images",
              low=0.0, high=1.0),
        Param("episode", int, 0, "seed of the clean draw (and of the symmetric noise draw: episode + 1)", low=0),
    )
    files = FashionMNIST.files
    system_dirs = FashionMNIST.system_dirs

    def load(self, ctx) -> LabelledData:
        c = self.cfg
        src = FashionMNIST()
        train_all, test = src.read(ctx, "train"), src.read(ctx, "test")
        C = train_all.n_classes
        clean, noisy, noisy_labels = noisy_sets(train_all.x, train_all.labels, C, c["k_shot"], c["noisy_per_class"],
                                                c["noise"], c["noise_rate"], c["episode"])
        idx = np.concatenate([clean, noisy])
        train = LabelledData(self.name, np.concatenate([train_all.labels[clean], noisy_labels]),
                             list(train_all.class_names), "train", x=train_all.x[idx])
        train.labelled_idx = np.arange(len(clean))
        train.extra = {"clean": np.arange(len(idx)) < len(clean), "true_labels": train_all.labels[idx].copy(),
                       "source_index": idx}
        test.name = self.name
        test.train = train
        settings = {k: c[k] for k in ("k_shot", "noisy_per_class", "noise", "episode")}
        if c["noise"] == "symmetric":
            settings["noise_rate"] = c["noise_rate"]
        test.manifest = manifest_hash({}, {"train": train_all.manifest, "test": test.manifest, **settings})
        return test
