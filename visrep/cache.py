"""Content-addressed cache for expensive intermediates (features, vocabularies, graphs, weights).

An entry's key is the sha256 of a canonical JSON of what determines it: the kind of object,
the parameters that produced it, the code version of the module that computes it, the
dataset manifest hash and split. ``Cache.get_or_compute`` returns the stored value or calls
the function once and stores its result atomically. Values are numpy arrays (``.npy``) or
any other picklable object (``.pkl``).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, used for every hash in visrep."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot hash object of type {type(o).__name__}")


def hash_key(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


_unit_hashes: dict[str, str] = {}


def _code_unit(module) -> tuple[str, list[Path]]:
    """The source files a module's results depend on: for a module of a chapter room
    (``visrep.methods.<room>.*``) every module of the room (kernels, pipeline, plugins), else the
    module's own file."""
    name = getattr(module, "__name__", "?")
    try:
        path = Path(inspect.getsourcefile(module))
    except TypeError:
        return name, []
    parts = name.split(".")
    if len(parts) >= 4 and parts[:2] == ["visrep", "methods"]:
        return ".".join(parts[:3]), sorted(path.parent.glob("*.py"))
    return name, [path]


def code_version(*objs: Any) -> str:
    """visrep version + 12 hex of the sources that define `objs` (functions, classes, modules).

    A class counts with every class of its MRO; code inside a chapter room of ``methods/`` counts
    as the whole room, so a cached result changes when any kernel of its chapter changes.
    """
    units: dict[str, list[Path]] = {}
    for obj in objs:
        items = inspect.getmro(obj) if inspect.isclass(obj) else (obj,)
        for item in items:
            module = item if inspect.ismodule(item) else inspect.getmodule(item)
            if module is None or getattr(module, "__name__", "") == "builtins":
                continue
            name, files = _code_unit(module)
            units.setdefault(name, files)
    h = hashlib.sha256()
    for name in sorted(units):
        if name not in _unit_hashes:
            u = hashlib.sha256(name.encode())
            for f in units[name]:
                try:
                    u.update(f.name.encode() + f.read_bytes())
                except OSError:
                    u.update(f.name.encode())
            _unit_hashes[name] = u.hexdigest()
        h.update(_unit_hashes[name].encode())
    return f"{__version__}+{h.hexdigest()[:12]}"


def default_cache_dir() -> Path:
    root = os.environ.get("VISREP_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visrep" / "cache"


class Cache:
    """A directory of cached values addressed by key; ``enabled=False`` computes every time."""

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path_for(self, kind: str, key: dict) -> Path:
        return self.root / kind / hash_key(key)[:32]

    def get_or_compute(self, kind: str, key: dict, compute: Callable[[], Any]) -> Any:
        """Return the value cached under (kind, key), computing and storing it on a miss."""
        if not self.enabled:
            self.misses += 1
            return compute()
        base = self.path_for(kind, key)
        for suffix, loader in ((".npy", _load_npy), (".pkl", _load_pkl)):
            path = base.with_suffix(suffix)
            if path.exists():
                try:
                    value = loader(path)
                except Exception:  # a damaged entry is recomputed, never trusted
                    path.unlink(missing_ok=True)
                    break
                self.hits += 1
                return value
        self.misses += 1
        value = compute()
        self._store(base, key, value)
        return value

    def _store(self, base: Path, key: dict, value: Any) -> None:
        base.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, np.ndarray) and value.dtype != object:
            suffix, writer = ".npy", lambda f: np.save(f, value, allow_pickle=False)
        else:
            suffix, writer = ".pkl", lambda f: pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        fd, tmp = tempfile.mkstemp(dir=base.parent, prefix=".tmp-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                writer(f)
            os.replace(tmp, base.with_suffix(suffix))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = base.with_suffix(".json")
        meta.write_text(canonical_json({"kind": base.parent.name, "key": key, "python": sys.version.split()[0]}))


def _load_npy(path: Path):
    return np.load(path, allow_pickle=False)


def _load_pkl(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)
