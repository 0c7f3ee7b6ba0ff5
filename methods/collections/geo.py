"""Geo clustering of a geo-tagged collection, and location / tag suggestion from verified neighbours.

Papers and my reading of them:

- Avrithis, Kalantidis, Tolias & Spyrou, *Retrieving landmark and non-landmark images from
  community photo collections*, ACM-MM 2010, Sec. 3 ("view clustering"), and Kalantidis et al.,
  *VIRaL: visual image retrieval and localization*, MTAP 2011, Sec. 3: a geo-tagged collection is
  clustered first *geographically*, then *visually* inside each geo cluster. Both steps are vector
  quantization with a guaranteed distortion bound -- kernel vector quantization (KVQ, Tipping &
  Schölkopf AISTATS 2001): the fewest codebook vectors (centres, themselves images) such that
  every image lies within radius r of one. For geo clustering the distance is the geographic
  (great-circle) distance and r a radius in metres (the authors' project page draws the geo
  clusters as "codebook vectors and cluster boundaries" -- circles -- and motivates the radius
  by "two images taken 2 km apart are unlikely to depict the same building": with r = 1 km every
  two members of a cluster are at most 2r = 2 km apart). :func:`geo_clusters` solves KVQ as the
  paper does, by its linear program (:mod:`visrep.methods.collections.kvq`; or, with kvq="greedy",
  by the greedy set-cover approximation, a simplification), as
  :func:`visrep.methods.collections.scene_maps.kvq_clusters` does for the visual step, and assigns
  each image to its nearest covering centre.
- VIRaL, Sec. 6 ("location recognition") and the demo's "Estimated location" / "Suggested tags":
  the query is matched against the collection, the spatially verified results vote. My reading:
  the locations of the verified results are geo-clustered (same KVQ, radius r), the cluster with
  the largest vote wins, and the estimate is the (weighted) centre of its members
  (:func:`location_vote`; vote = sum of inliers, or the plain count); suggested tags are the
  tags of the verified results ranked by their summed votes (:func:`tag_votes`).

Distances: the haversine great-circle distance on a sphere of the mean Earth radius
R = 6371008.8 m (IUGG), d = 2R asin(sqrt(sin^2(dphi/2) + cos phi1 cos phi2 sin^2(dlambda/2))).
Shapes: latitudes / longitudes (n,) float64 degrees; weights (n,) float64 >= 0.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

from .kvq import kvq_solve

#: mean Earth radius in metres (IUGG)
EARTH_RADIUS_M = 6371008.8


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in metres between (lat1, lon1) and (lat2, lon2) (degrees; numpy
    broadcasting): 2R asin(sqrt(hav(dphi) + cos phi1 cos phi2 hav(dlambda))), hav(x) = sin^2(x/2)."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def pairwise_haversine_m(lat, lon) -> np.ndarray:
    """(n, n) float64 great-circle distances in metres between all pairs of n points."""
    lat, lon = _check_latlon(lat, lon, "pairwise_haversine_m")
    return haversine_m(lat[:, None], lon[:, None], lat[None], lon[None])


def _check_latlon(lat, lon, where: str) -> tuple[np.ndarray, np.ndarray]:
    lat = np.asarray(lat, np.float64).ravel()
    lon = np.asarray(lon, np.float64).ravel()
    if lat.shape != lon.shape:
        raise UserError(f"{where}: {len(lat)} latitudes but {len(lon)} longitudes")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or (np.abs(lat) > 90).any():
        raise UserError(f"{where}: latitudes must be finite degrees in [-90, 90] and longitudes finite")
    return lat, lon


def geo_clusters(lat, lon, radius_m: float, kvq: str = "lp") -> tuple[np.ndarray, np.ndarray]:
    """Geo clusters by KVQ with great-circle distance (Avrithis et al. 2010, Sec. 3; VIRaL Sec. 3).

    lat, lon (n,) degrees; radius_m > 0: every image lies within radius_m metres of its cluster's
    centre (an image), so two members are at most 2 radius_m apart. K_ij = [d(i, j) <= radius_m].
    kvq="lp": Tipping & Schölkopf's linear program (:func:`visrep.methods.collections.kvq.kvq_lp`,
    centres alpha_i > 1e-6); kvq="greedy": the greedy set-cover simplification. Returns (labels (n,)
    int64, centres (n_clusters,) int64 image ids; labels[centres[c]] == c); images join the nearest
    covering centre.
    """
    if not radius_m > 0:
        raise UserError(f"geo_clusters: radius_m must be > 0 metres, got {radius_m}")
    D = pairwise_haversine_m(lat, lon)
    return kvq_solve(D <= radius_m, -D, kvq)


def spherical_mean(lat, lon, weights=None) -> tuple[float, float]:
    """Weighted mean position on the sphere: the normalised weighted sum of the unit vectors of the
    points, back to (lat, lon) degrees. lat, lon, weights (n,) with sum(weights) > 0."""
    lat, lon = _check_latlon(lat, lon, "spherical_mean")
    w = np.ones(len(lat)) if weights is None else np.asarray(weights, np.float64).ravel()
    if len(w) != len(lat) or len(lat) == 0 or (w < 0).any() or w.sum() <= 0:
        raise UserError("spherical_mean: need n >= 1 points and n non-negative weights with a positive sum")
    p, q = np.radians(lat), np.radians(lon)
    v = (w[:, None] * np.column_stack([np.cos(p) * np.cos(q), np.cos(p) * np.sin(q), np.sin(p)])).sum(0)
    return float(np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))), float(np.degrees(np.arctan2(v[1], v[0])))


def location_vote(lat, lon, weights, radius_m: float, kvq: str = "lp") -> tuple[float, float, np.ndarray]:
    """Estimated location of a query from its verified neighbours (VIRaL, my reading: see above).

    lat, lon (m,) degrees of the m verified neighbours; weights (m,) > 0 their votes (inliers, or
    ones). The neighbours are geo-clustered (:func:`geo_clusters`, radius_m, solver `kvq`); the cluster of
    largest summed vote wins (ties: more members, then the cluster of the lower centre index);
    the estimate is the vote-weighted :func:`spherical_mean` of its members.
    Returns (lat, lon, members (k,) int64 indices into the m neighbours); (nan, nan, empty) when
    m == 0.
    """
    lat, lon = _check_latlon(lat, lon, "location_vote")
    w = np.asarray(weights, np.float64).ravel()
    if len(w) != len(lat) or (w <= 0).any():
        raise UserError(f"location_vote: need one positive weight per neighbour, got {len(w)} for {len(lat)}")
    if len(lat) == 0:
        return float("nan"), float("nan"), np.zeros(0, np.int64)
    labels, centres = geo_clusters(lat, lon, radius_m, kvq)
    vote = np.bincount(labels, w, len(centres))
    count = np.bincount(labels, minlength=len(centres))
    best = int(np.lexsort((centres, -count, -vote))[0])
    members = np.flatnonzero(labels == best)
    la, lo = spherical_mean(lat[members], lon[members], w[members])
    return la, lo, members


def tag_votes(tag_lists, weights) -> list[tuple[str, float]]:
    """Suggested tags from the tags of verified neighbours, by weighted votes.

    tag_lists: m iterables of str (a tag counts once per neighbour); weights (m,) >= 0. The score
    of tag t is sum_i w_i [t in tags_i] / sum_i w_i (in [0, 1]). Returns [(tag, score)] sorted by
    score (descending), ties by tag (ascending); [] when m == 0 or all weights are 0.
    """
    w = np.asarray(weights, np.float64).ravel()
    tag_lists = [tuple(dict.fromkeys(t)) for t in tag_lists]
    if len(w) != len(tag_lists) or (w < 0).any():
        raise UserError(f"tag_votes: need one non-negative weight per neighbour, got {len(w)} for {len(tag_lists)}")
    if len(w) == 0 or w.sum() <= 0:
        return []
    vocab = sorted({t for tags in tag_lists for t in tags})
    if not vocab:
        return []
    index = {t: k for k, t in enumerate(vocab)}
    rows = np.repeat(np.arange(len(tag_lists)), [len(t) for t in tag_lists])
    cols = np.fromiter((index[t] for tags in tag_lists for t in tags), np.int64, len(rows))
    score = np.bincount(cols, w[rows], len(vocab)) / w.sum()
    order = np.lexsort((np.arange(len(vocab)), -score))        # vocab is sorted: index order = tag order
    return [(vocab[k], float(score[k])) for k in order if score[k] > 0]
