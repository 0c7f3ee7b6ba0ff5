"""Regional CNN descriptors (many vectors per image) and generalized max-pooling weights.

Used by regional diffusion (``diffusion --set regional=NAME``; Iscen et al. CVPR 2017,
Sec. 4.1) and R-Match style regional search (Razavian et al. 2015; Tolias et al. ICLR 2016;
the talk's FSR table, "Regional features: R-Match, m = 21"):

- ``regional_features(data, ctx, name)``: for the CNN descriptor ``name`` (mac, spoc, gem,
  rmac, crow), the L2-normalized vectors of the whole map and of each R-MAC region
  (:func:`visrep.methods.cnn_pooling.rmac_regions`, L = 3: 1 + 20 = 21 regions for a 4:3
  image), pooled by that descriptor's pooling (MAC for mac/rmac/crow, SPoC, GeM); cached like
  global features.
- ``gmp_weights``: generalized max-pooling (Murray & Perronnin, CVPR 2014) weights of an
  image's regions, ``c = (V^T V + lambda I)^{-1} 1`` with lambda = 1 (authors' ``gmpweights.m``):
  image score = ``sum_r c_r f_r`` over its regions' diffusion scores f_r, which down-weights
  regions that repeat (bursty) content.

Shapes: regions (N, d) float32 unit rows, ``image_of`` (N,) int64 image index; queries
(M, d) with ``query_of`` (M,); coefficients (N,) float64.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def gmp_weights(vectors: np.ndarray, image_of: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """GMP weights (N,) for regional vectors (N, d) grouped by ``image_of`` (N,)."""
    v = np.asarray(vectors, dtype=np.float64)
    image_of = np.asarray(image_of)
    coeff = np.zeros(len(v))
    order = np.argsort(image_of, kind="stable")
    bounds = np.flatnonzero(np.diff(image_of[order])) + 1
    for grp in np.split(order, bounds):
        if grp.size == 0:
            continue
        V = v[grp]
        coeff[grp] = np.linalg.solve(V @ V.T + lam * np.eye(len(grp)), np.ones(len(grp)))
    return coeff


def _pool_for(method):
    from . import cnn_pooling as cp
    if method.name == "gem":
        return lambda x: cp.gem(x, method.cfg["p"])
    if method.name == "spoc":
        return cp.spoc
    return cp.mac


def describe_regions(method, images, n, ctx, desc) -> tuple[np.ndarray, np.ndarray]:
    """Regional vectors of `n` images -> (vectors (N, d) float32, image_of (N,) int64)."""
    from .cnn_pooling import regional_vectors
    net = method.backbone()
    pool = _pool_for(method)
    L = method.cfg.get("L", 3)
    vecs, owner = [], []
    for i in ctx.progress(range(n), desc=desc, total=n, unit="img"):
        fm = next(iter(method.feature_maps(images(i), net)))
        r = regional_vectors(fm, L, pool)
        vecs.append(r)
        owner.append(np.full(len(r), i, np.int64))
    return np.concatenate(vecs).astype(np.float32), np.concatenate(owner)


def regional_features(data, ctx, name: str):
    """(db regions, query regions, image_of, query_of, GMP coefficients) for descriptor `name`, cached."""
    from visrep.cache import code_version
    from visrep.registry import methods

    from .cnn_pooling import CNNDescriptor
    method = methods.create(name)
    if not isinstance(method, CNNDescriptor):
        raise UserError(f"parameter 'regional' must name a CNN descriptor (mac, spoc, gem, rmac, crow), got '{name}'")
    if not data.has_images:
        raise UserError(f"regional descriptor '{name}' needs images, but {data.name} was loaded without images")
    key = {"regional": name, "params": method.cfg, "code": code_version(describe_regions),
           "manifest": data.manifest}
    db, image_of = ctx.cache.get_or_compute("regional_features", {**key, "split": "db"}, lambda: describe_regions(
        method, data.db_image, data.n_db, ctx, f"{name} regions database"))
    q, query_of = ctx.cache.get_or_compute("regional_features", {**key, "split": "query"}, lambda: describe_regions(
        method, data.query_image, data.n_queries, ctx, f"{name} regions queries"))
    coeff = gmp_weights(db, image_of)
    return db, q, image_of, query_of, coeff
