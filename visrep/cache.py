"""Content-addressed cache for expensive intermediates (features, vocabularies, graphs, weights).

An entry's key is the sha256 of a canonical JSON of what determines it: the kind of object,
the parameters that produced it, the code version of the module that computes it, the
dataset manifest hash and split. ``Cache.get_or_compute`` returns the stored value or calls
the function once and stores its result atomically. Values are numpy arrays (``.npy``) or
any other picklable object (``.pkl``), each with a ``.json`` of its key and sha256, checked on
every read (see :class:`Cache`).
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__


class _entry_lock:
    """Exclusive advisory lock (``fcntl.flock``) on ``base.lock`` while an entry is computed; a no-op where
    the folder cannot hold the lock file or the platform has no flock (the entry is then computed twice at
    worst, as before)."""

    def __init__(self, base: Path):
        self.path = base.with_suffix(".lock")
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


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
    """A directory of cached values addressed by key; ``enabled=False`` computes every time.

    An entry is a value file (``.npy`` for plain arrays, else a pickle) and a ``.json`` beside it
    holding the entry's kind, its full key and the sha256 of the value file. A read returns the
    value only if the stored key equals the requested one and the digest matches (pickles are then
    read by :mod:`visrep.safe_pickle`, which runs no code); anything else -- a damaged, truncated
    or swapped entry -- is recomputed with a warning. A failed write (full disk, read-only folder)
    warns and the job goes on without the cache.
    """

    def __init__(self, root: str | Path | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path_for(self, kind: str, key: dict) -> Path:
        return self.root / kind / hash_key(key)[:32]

    def check_writable(self) -> None:
        """UserError naming the cache folder when it cannot be created or written (before any work)."""
        if self.enabled:
            check_writable_dir(self.root, "cache", "choose another with --cache-dir or $VISREP_CACHE, or run with --no-cache")

    def get_or_compute(self, kind: str, key: dict, compute: Callable[[], Any]) -> Any:
        """Return the value cached under (kind, key), computing and storing it on a miss."""
        if not self.enabled:
            self.misses += 1
            return compute()
        base = self.path_for(kind, key)
        found, value = self._read(base, kind, key)
        if found:
            self.hits += 1
            return value
        # one computation per entry across processes: a parallel run's workers that miss the same entry
        # wait for the first one's value instead of computing it again (an exclusive lock on base.lock)
        with _entry_lock(base):
            found, value = self._read(base, kind, key)
            if found:
                self.hits += 1
                return value
            self.misses += 1
            value = compute()
            self._store(base, kind, key, value)
        return value

    def _read(self, base: Path, kind: str, key: dict) -> tuple[bool, Any]:
        meta_path = base.with_suffix(".json")
        if not meta_path.exists():
            return False, None
        problem = None
        try:
            meta = json.loads(meta_path.read_text())
            value_path = base.with_suffix("." + meta["format"])
            if meta.get("kind") != kind or canonical_json(meta.get("key")) != canonical_json(key):
                problem = "it was stored under another key"
            else:
                data = value_path.read_bytes()
                if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                    problem = "its content does not match its digest"
                elif meta["format"] == "npy":
                    return True, np.load(io.BytesIO(data), allow_pickle=False)
                elif meta["format"] == "pkl":
                    from .safe_pickle import loads
                    return True, loads(data, str(value_path))
                else:
                    problem = f"unknown format {meta['format']!r}"
        except Exception as e:  # noqa: BLE001 - any damage means: recompute
            problem = f"it cannot be read ({type(e).__name__}: {e})"
        warnings.warn(f"cache entry {base} ignored and recomputed: {problem}", CacheWarning, stacklevel=3)
        for suffix in (".json", ".npy", ".pkl"):
            base.with_suffix(suffix).unlink(missing_ok=True)
        return False, None

    def _store(self, base: Path, kind: str, key: dict, value: Any) -> None:
        if isinstance(value, np.ndarray) and value.dtype != object:
            fmt, writer = "npy", lambda f: np.save(f, value, allow_pickle=False)
        else:
            fmt, writer = "pkl", lambda f: pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            writer(buf)
            data = buf.getvalue()
            meta = canonical_json({"kind": kind, "key": key, "format": fmt,
                                   "sha256": hashlib.sha256(data).hexdigest(), "python": sys.version.split()[0]})
            base.with_suffix(".json").unlink(missing_ok=True)       # no moment with a new value and an old digest
            _atomic_write(base.with_suffix("." + fmt), data)
            _atomic_write(base.with_suffix(".json"), meta.encode())
        except OSError as e:
            warnings.warn(f"cache: could not store {base} ({e.strerror or e}); going on without caching it",
                          CacheWarning, stacklevel=3)


class CacheWarning(UserWarning):
    """A cache entry was ignored (damaged, swapped) or could not be stored."""


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_dir(path: str | Path, what: str, hint: str) -> Path:
    """Create `path` if needed and prove a file can be written in it; else a UserError naming it."""
    from .errors import UserError
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".tmp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"the {what} folder {path} is not writable ({e.strerror or e}); {hint}") from None
    return path
