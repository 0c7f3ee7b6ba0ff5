"""Regional CNN descriptors (many vectors per image) and generalized max-pooling weights.

Used by regional diffusion (``diffusion --set regional=NAME``; Iscen et al. CVPR 2017,
Sec. 4.1) and R-Match style regional search (Razavian et al. 2015; Tolias et al. ICLR 2016;
the talk's FSR table, "Regional features: R-Match, m = 21"):

- ``regional_features(data, ctx, name)``: for the CNN descriptor ``name`` (mac, spoc, gem,
  rmac, crow), the L2-normalized vectors of the whole map and of each R-MAC region
  (:func:`visrep.methods.cnn.pooling.rmac_regions`, L = 3: 1 + 20 = 21 regions for a 4:3
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


