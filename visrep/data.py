"""Data objects that datasets hand to methods and protocols (the contracts of visrep/tasks.py).

Conventions (those of revisitop): indices are 0-based; a ranking is an int array of shape
(n_db, n_queries), column j listing database indices for query j, best first.

- :class:`RetrievalData` -- an instance-retrieval benchmark (task ``retrieval``).
- :class:`LabelledData` -- one split of a labelled set: ``x`` (n, H, W[, C]) uint8 images or
  (n, d) float32 vectors, or ``None`` with ``paths`` + ``image(i)`` for image folders;
  ``labels`` (n,) int64 in [0, n_classes); ``class_names``; ``split``. Tasks
  ``classification``, ``metric-learning`` and ``adversarial``; ``train`` optionally holds the
  training split and ``labelled_idx`` the labelled subset (semi-supervised protocol).
- :class:`EpisodeData` -- few-shot episodes sampled from a LabelledData
  (:mod:`visrep.datasets.episodes`): ``support`` (E, N*K) and ``query`` (E, N*Q) indices into
  ``pool``, with episode-local labels 0..N-1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import UserError


@dataclass
class RetrievalData:
    """An instance-retrieval benchmark: database, queries and per-query ground truth.

    ``gnd[j]`` is a dict of 0-based int arrays: ``ok`` and ``junk`` (original Oxford/Paris,
    Holidays, INSTRE), and/or ``easy``, ``hard``, ``junk`` (revisitop), optional ``bbx``
    (x1, y1, x2, y2) query box. Features, when precomputed, are float32 (n, d) and (n_q, d).
    Images, when available, come from ``db_image(i)`` / ``query_image(j)`` as HxWx3 uint8 RGB
    (queries cropped to their box unless the protocol uses full images).
    """

    name: str
    db_names: list[str]
    query_names: list[str]
    gnd: list[dict]
    db_features: np.ndarray | None = None
    query_features: np.ndarray | None = None
    db_image: Callable[[int], np.ndarray] | None = None
    query_image: Callable[[int], np.ndarray] | None = None
    query_db_index: np.ndarray | None = None
    manifest: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_db(self) -> int:
        return len(self.db_names)

    @property
    def n_queries(self) -> int:
        return len(self.query_names)

    @property
    def has_features(self) -> bool:
        return self.db_features is not None and self.query_features is not None

    @property
    def has_images(self) -> bool:
        return self.db_image is not None and self.query_image is not None


# ---------------------------------------------------------------- labelled images
@dataclass
class LabelledData:
    """A labelled split. Shapes: x (n, ...) or None; labels (n,) int64; class_names len n_classes."""

    name: str
    labels: np.ndarray
    class_names: list[str]
    split: str = "test"
    x: np.ndarray | None = None
    paths: list[str] | None = None
    image: Callable[[int], np.ndarray] | None = None
    train: "LabelledData | None" = None
    labelled_idx: np.ndarray | None = None
    manifest: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).ravel()
        n = len(self.labels)
        if self.x is not None and len(self.x) != n:
            raise UserError(f"{self.name} ({self.split}): {len(self.x)} items but {n} labels")
        if self.paths is not None and len(self.paths) != n:
            raise UserError(f"{self.name} ({self.split}): {len(self.paths)} paths but {n} labels")
        if n and (self.labels.min() < 0 or self.labels.max() >= max(len(self.class_names), 1)):
            raise UserError(f"{self.name} ({self.split}): labels must lie in [0, {len(self.class_names)}), "
                            f"got [{self.labels.min()}, {self.labels.max()}]")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx, split: str | None = None) -> "LabelledData":
        """Items `idx` (int array or boolean mask), same classes."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        image = None
        if self.image is not None:
            base = self.image
            image = lambda i: base(int(idx[i]))  # noqa: E731
        return LabelledData(self.name, self.labels[idx], self.class_names, split or self.split,
                            x=None if self.x is None else self.x[idx],
                            paths=None if self.paths is None else [self.paths[i] for i in idx],
                            image=image, manifest=self.manifest, extra=dict(self.extra))

    def get(self, i: int) -> np.ndarray:
        """Item i as an array (from ``x`` or the image loader)."""
        if self.x is not None:
            return self.x[i]
        if self.image is not None:
            return self.image(i)
        raise UserError(f"{self.name} ({self.split}) holds labels only (no images or vectors)")


@dataclass
class EpisodeData:
    """Few-shot episodes: E episodes of N classes, K support and Q query items per class.

    ``support`` (E, N*K) and ``query`` (E, N*Q) int64 indices into ``pool``; ``support_labels``
    (E, N*K) and ``query_labels`` (E, N*Q) episode-local labels in [0, N); ``classes`` (E, N)
    the pool's class ids of each episode. ``base``: the base-class training split, or None.
    """

    name: str
    pool: LabelledData
    n_way: int
    k_shot: int
    n_query: int
    support: np.ndarray
    query: np.ndarray
    support_labels: np.ndarray
    query_labels: np.ndarray
    classes: np.ndarray
    seed: int = 0
    manifest: str = ""
    base: "LabelledData | None" = None

    @property
    def n_episodes(self) -> int:
        return int(self.support.shape[0])
