"""PROXY geo-tags and tags of the sample-views images (datasets/sample_views_meta.toml).

The photographs of sample-views carry no real location or tags. For geo clustering and
location / tag suggestion (Avrithis et al. ACM-MM 2010; Kalantidis et al., VIRaL, MTAP 2011)
each scene (source photograph) is given a made-up location and tag set in the TOML file beside
this module; every image of a scene gets the scene's location moved by a small seeded offset
(a uniform point in a disc of ``jitter_m`` metres) and a seeded subset of the scene's tags plus
a few uninformative noise tags. The draws of one image depend only on the file's ``seed`` and the
image's name, so adding views never changes the metadata of the others.

These are *proxy* metadata, documented as such wherever they are shown; never real geo-tags.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import tomllib

from visrep.errors import UserError

META_FILE = Path(__file__).with_name("sample_views_meta.toml")
#: mean Earth radius in metres (IUGG), as in the haversine distance of methods/collections/geo.py
EARTH_RADIUS_M = 6371008.8


def load_meta_table(path: Path = META_FILE) -> dict:
    """The parsed TOML table (sites, scenes, seed, jitter_m, keep, max_noise, noise_tags)."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{path}: cannot read the sample-views proxy metadata ({e})") from None
    for key in ("sites", "scenes", "seed", "jitter_m", "keep", "max_noise", "noise_tags"):
        if key not in table:
            raise UserError(f"{path}: missing key {key!r}")
    for name, s in table["scenes"].items():
        if s.get("site") not in table["sites"]:
            raise UserError(f"{path}: scene {name!r} names unknown site {s.get('site')!r}")
    return table


def offset_latlon(lat: np.ndarray, lon: np.ndarray, east_m: np.ndarray, north_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) in degrees moved by (east_m, north_m) metres on the local tangent plane
    (equirectangular approximation: exact to well under a millimetre for offsets of a few km)."""
    lat = np.asarray(lat, np.float64)
    dlat = np.degrees(np.asarray(north_m, np.float64) / EARTH_RADIUS_M)
    dlon = np.degrees(np.asarray(east_m, np.float64) / (EARTH_RADIUS_M * np.cos(np.radians(lat))))
    return lat + dlat, np.asarray(lon, np.float64) + dlon


def scene_meta(table: dict, scene: str) -> tuple[float, float, tuple[str, ...]]:
    """(lat, lon, tags) of one scene: its site's centre moved by (east_m, north_m); its own tags then
    its site's."""
    if scene not in table["scenes"]:
        raise UserError(f"sample-views proxy metadata: no scene {scene!r} in {META_FILE.name}")
    s = table["scenes"][scene]
    site = table["sites"][s["site"]]
    lat, lon = offset_latlon(site["lat"], site["lon"], s["east_m"], s["north_m"])
    tags = tuple(dict.fromkeys([*s["tags"], *site["tags"]]))
    return float(lat), float(lon), tags


def image_meta(table: dict, scenes: list[str], image_names: list[str]) -> dict:
    """Per-image proxy metadata of images showing `scenes` (one scene name per image).

    Returns {"lat": (n,) float64 degrees, "lon": (n,) float64, "tags": list of n tuples of str
    (the image's proxy user tags), "scene_tags": list of n tuples (its scene's full tag set, the
    ground truth of tag suggestion), "scene_lat" / "scene_lon": (n,) the scene's location,
    "scene": list of n scene names, "proxy": True}.
    """
    if len(scenes) != len(image_names):
        raise UserError(f"image_meta: {len(scenes)} scenes for {len(image_names)} images")
    n = len(scenes)
    lat, lon = np.zeros(n), np.zeros(n)
    slat, slon = np.zeros(n), np.zeros(n)
    tags, scene_tags = [], []
    noise = list(table["noise_tags"])
    for i, (scene, name) in enumerate(zip(scenes, image_names)):
        la, lo, st = scene_meta(table, scene)
        rng = np.random.default_rng([int(table["seed"]), zlib.crc32(name.encode())])
        r = table["jitter_m"] * np.sqrt(rng.uniform())
        a = rng.uniform(0, 2 * np.pi)
        lat[i], lon[i] = offset_latlon(la, lo, r * np.cos(a), r * np.sin(a))
        slat[i], slon[i] = la, lo
        keep = rng.uniform(size=len(st)) < table["keep"]
        if not keep.any():
            keep[rng.integers(len(st))] = True
        own = [t for t, k in zip(st, keep) if k]
        n_noise = int(rng.integers(0, table["max_noise"] + 1))
        extra = [noise[k] for k in rng.choice(len(noise), size=n_noise, replace=False)] if n_noise else []
        tags.append(tuple(dict.fromkeys(own + extra)))
        scene_tags.append(st)
    return {"lat": lat, "lon": lon, "tags": tags, "scene_tags": scene_tags, "scene_lat": slat,
            "scene_lon": slon, "scene": list(scenes), "proxy": True}
