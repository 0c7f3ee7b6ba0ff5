"""Global descriptors for retrieval methods: precomputed ones, or computed and cached.

A retrieval method (task ``retrieval``) ranks with vectors. It takes them from the dataset
when the dataset has precomputed descriptors, else from the descriptor plugin named by its
``descriptor`` parameter (task ``descriptor``), run over the dataset's images and cached by
(descriptor, its parameters, its code version, dataset manifest, split).
"""
from __future__ import annotations

import numpy as np

from .errors import UserError
from .params import Param, split_outside

DESCRIPTOR_PARAM = Param("descriptor", str, "auto",
                         "global descriptor: 'auto' = the dataset's precomputed vectors, else its default "
                         "descriptor; or a descriptor method with optional parameters, 'NAME' or "
                         "'NAME:key=value;key=value' (e.g. 'gem:p=4;imsize=512'); a list value in "
                         "brackets, as everywhere (e.g. 'gem:p=4;scales=[1,0.707]')")


def parse_descriptor(spec: str) -> tuple[str, dict]:
    """'gem:p=4;imsize=512' -> ('gem', {'p': '4', 'imsize': '512'}); values are validated by the plugin.

    A list value is written in brackets ('gem:scales=[1,0.707]' -> {'scales': '[1,0.707]'});
    ';' separates parameters only outside brackets.
    """
    name, _, rest = spec.partition(":")
    params = {}
    try:
        items = split_outside(rest, ";")
    except ValueError as e:
        raise UserError(f"descriptor '{spec}': {e}; expected NAME:key=value;key=[a,b]") from None
    for item in filter(None, (x.strip() for x in items)):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"descriptor '{spec}': expected NAME:key=value;key=value, got '{item}'")
        params[key.strip()] = value.strip()
    return name.strip(), params


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """`x` scaled to unit L2 norm along `axis` (rows of an (n, d) array by default; zero vectors stay
    zero), as float32. The one normalization of visrep: descriptors, pooled CNN vectors, whitening."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def describe_images(descriptor, images, n: int, ctx, desc: str) -> np.ndarray:
    """Run a descriptor method over `n` images from the callable `images(i)` -> (n, d) float32."""
    return descriptor.describe((images(i) for i in range(n)), n, ctx, desc=desc)


def retrieval_features(data, ctx, descriptor="auto") -> tuple[np.ndarray, np.ndarray]:
    """(database (n_db, d), queries (n_q, d)) L2-normalized float32 vectors for `data`.

    `descriptor` is 'auto', a descriptor spec string (see :func:`parse_descriptor`), or a
    descriptor method instance (whose own parameters are used).
    """
    from .registry import methods

    if isinstance(descriptor, str):
        if descriptor == "auto" and data.has_features:
            return l2_normalize(data.db_features), l2_normalize(data.query_features)
        if descriptor == "auto":
            name, params = data.extra.get("default_descriptor", ""), dict(data.extra.get("default_descriptor_params", {}))
            if not name:
                raise UserError(f"{data.name} has no precomputed descriptors: give --set features=FILE "
                                f"or --set descriptor=NAME (a descriptor method)")
        else:
            name, params = parse_descriptor(descriptor)
        method = methods.create(name, **params)
    else:
        method = descriptor
    if method.task != "descriptor":
        raise UserError(f"method '{method.name}' is a {method.task} method, not a descriptor")
    if not data.has_images:
        raise UserError(f"descriptor '{method.name}' needs images, but {data.name} was loaded without images")
    feats = ctx.per_split(data, "features", {"descriptor": method.name, "params": method.cfg}, [type(method)],
                          lambda split: describe_images(
                              method, data.db_image if split == "db" else data.query_image,
                              data.n_db if split == "db" else data.n_queries, ctx,
                              f"{method.name} {'database' if split == 'db' else 'queries'}"))
    return l2_normalize(feats["db"]), l2_normalize(feats["query"])
