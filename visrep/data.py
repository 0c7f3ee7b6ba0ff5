"""Data objects that datasets hand to methods and protocols.

Conventions (those of revisitop): indices are 0-based; a ranking is an int array of shape
(n_db, n_queries), column j listing database indices for query j, best first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


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
