"""Global descriptors for retrieval methods: precomputed ones, or computed and cached.

A retrieval method (task ``retrieval``) ranks with vectors. It takes them from the dataset
when the dataset has precomputed descriptors, else from the descriptor plugin named by its
``descriptor`` parameter (task ``descriptor``), run over the dataset's images and cached by
(descriptor, its parameters, its code version, dataset manifest, split).
"""
from __future__ import annotations

import numpy as np

from .cache import code_version
from .errors import UserError
from .params import Param

DESCRIPTOR_PARAM = Param("descriptor", str, "auto",
                         "global descriptor: 'auto' = the dataset's precomputed vectors, else its default "
                         "descriptor; or the name of a descriptor method (see `visrep list methods`)")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero). (n, d) float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def describe_images(descriptor, images, n: int, ctx, desc: str) -> np.ndarray:
    """Run a descriptor method over `n` images from the callable `images(i)` -> (n, d) float32."""
    return descriptor.describe((images(i) for i in range(n)), n, ctx, desc=desc)


def retrieval_features(data, ctx, descriptor: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(database (n_db, d), queries (n_q, d)) L2-normalized float32 vectors for `data`."""
    from .registry import methods

    if descriptor == "auto" and data.has_features:
        return l2_normalize(data.db_features), l2_normalize(data.query_features)
    name = data.extra.get("default_descriptor", "") if descriptor == "auto" else descriptor
    if not name:
        raise UserError(f"{data.name} has no precomputed descriptors: give --set features=FILE "
                        f"or --set descriptor=NAME (a descriptor method)")
    if not data.has_images:
        raise UserError(f"descriptor '{name}' needs images, but {data.name} was loaded without images")
    method = methods.create(name, **data.extra.get("default_descriptor_params", {})) if descriptor == "auto" \
        else methods.create(name)
    if method.task != "descriptor":
        raise UserError(f"method '{name}' is a {method.task} method, not a descriptor")
    key = {"descriptor": name, "params": method.cfg, "code": code_version(type(method)),
           "manifest": data.manifest, "loader": ctx.loader_version}
    db = ctx.cache.get_or_compute("features", {**key, "split": "db"},
                                  lambda: describe_images(method, data.db_image, data.n_db, ctx, f"{name} database"))
    q = ctx.cache.get_or_compute("features", {**key, "split": "query"},
                                 lambda: describe_images(method, data.query_image, data.n_queries, ctx, f"{name} queries"))
    return l2_normalize(db), l2_normalize(q)
