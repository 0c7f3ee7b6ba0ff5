"""Location and tag suggestion, leave-one-out over a geo-tagged, tagged collection (VIRaL).

Every database image is a query against all the others (a method must not use its own
metadata). The truth is the dataset's per-image metadata ``data.extra["meta"]``: ``lat``,
``lon`` (n_db,) degrees and ``scene_tags`` (the image's scene's full tag set); on sample-views
these are PROXY metadata (datasets/sample_views_meta.toml), never real geo-tags.

Metrics (per-item values whose mean is the metric, so claims can pair them):

- location (``outputs["locations"]`` (n_db, 2) lat/lon degrees, a NaN row = no estimate):
  error = great-circle (haversine) distance in metres to the image's geo-tag (Earth radius
  6371008.8 m); ``answered`` = fraction with an estimate; ``within_100m`` / ``within_1km`` =
  fraction of *all* images whose error is at most 100 m / 1 km (no estimate = a miss);
  ``median_error_m`` and ``mean_error_m`` over the answered images (NaN when none);
- tags (``outputs["tags"]``: n_db ranked lists of suggested tags): ``tag_p@k`` for k = 1, 3, 5 =
  |top-k suggestions ∩ scene tags| / k per image (fewer than k suggestions count as wrong ones).
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register

EARTH_RADIUS_M = 6371008.8
THRESHOLDS_M = {"within_100m": 100.0, "within_1km": 1000.0}
TAG_KS = (1, 3, 5)


def great_circle_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine distance in metres (degrees in, numpy broadcasting)."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dl = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def precision_at_k(suggested: list, truth: set, k: int) -> float:
    """|first k of `suggested` ∩ truth| / k."""
    return len(set(list(suggested)[:k]) & truth) / k


@register
class Suggestion(Protocol):
    name = "suggestion"
    task = "suggestion"
    data_tasks = ("retrieval",)
    summary = ("leave-one-out location error (median, % within 100 m / 1 km) and tag precision@1/3/5 against the "
               "database images' geo-tags and scene tags")
    cite = ("Kalantidis, Tolias, Avrithis, Phinikettos, Spyrou, Mylonas & Kollias, VIRaL: visual image retrieval "
            "and localization, MTAP 2011 (location and tag suggestion)")

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        meta = (getattr(data, "extra", None) or {}).get("meta")
        if not meta or "lat" not in meta:
            raise UserError(f"protocol 'suggestion': dataset {data.name} carries no per-image geo-tags "
                            f"(extra['meta'] with lat, lon, scene_tags); sample-views has proxy ones")
        if "locations" not in outputs and "tags" not in outputs:
            raise UserError(f"protocol 'suggestion' needs outputs['locations'] (n_db, 2) and/or outputs['tags'] "
                            f"(n_db lists); got keys {sorted(outputs)}")
        n = data.n_db
        metrics, per = {}, {}
        if "locations" in outputs:
            L = np.asarray(outputs["locations"], np.float64)
            if L.shape != (n, 2):
                raise UserError(f"locations for {data.name}: expected ({n}, 2) (lat, lon), got {L.shape}")
            ok = np.isfinite(L).all(1)
            err = np.full(n, np.nan)
            err[ok] = great_circle_m(L[ok, 0], L[ok, 1], np.asarray(meta["lat"])[ok], np.asarray(meta["lon"])[ok])
            metrics["answered"] = float(ok.mean())
            per["answered"] = ok.astype(np.float64)
            for key, t in THRESHOLDS_M.items():
                hit = np.where(ok, err <= t, False).astype(np.float64)
                metrics[key] = float(hit.mean())
                per[key] = hit
            metrics["median_error_m"] = float(np.median(err[ok])) if ok.any() else float("nan")
            metrics["mean_error_m"] = float(err[ok].mean()) if ok.any() else float("nan")
            per["mean_error_m"] = err
        if "tags" in outputs:
            tags = outputs["tags"]
            if len(tags) != n or any(isinstance(t, str) for t in tags):
                raise UserError(f"tags for {data.name}: expected {n} ranked lists of tags, got {len(tags)} items")
            truth = [set(t) for t in meta["scene_tags"]]
            for k in TAG_KS:
                p = np.array([precision_at_k(tags[i], truth[i], k) for i in range(n)])
                metrics[f"tag_p@{k}"] = float(p.mean())
                per[f"tag_p@{k}"] = p
        metrics["n_images"] = n
        return metrics, per

    def format(self, metrics: dict, data) -> str:
        parts = []
        if "answered" in metrics:
            parts.append(f"location: answered {metrics['answered']:.3f}, median error {metrics['median_error_m']:.1f} m, "
                         f"within 100 m {metrics['within_100m']:.3f}, within 1 km {metrics['within_1km']:.3f}")
        if "tag_p@1" in metrics:
            parts.append("tags: " + ", ".join(f"P@{k} {metrics[f'tag_p@{k}']:.3f}" for k in TAG_KS))
        return f">> {data.name} (leave-one-out, {metrics['n_images']} images): " + "; ".join(parts)
