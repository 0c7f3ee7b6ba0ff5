"""Dataset manifest hashes: which exact files a result was computed from."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_sha_cache: dict[tuple, str] = {}

#: files smaller than this are hashed again each run (cheaper than the memo's own file access)
MEMO_MIN_BYTES = 1 << 24


def _memo_path(key: tuple) -> Path | None:
    from .cache import default_cache_dir
    try:
        return default_cache_dir() / "sha256" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
    except Exception:  # noqa: BLE001 - no usable home folder: no memo
        return None


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, memoized on (resolved path, size, mtime) within the process and, for files
    of 16 MiB or more, across runs in ``<cache>/sha256/`` (a memo a failed write simply skips)."""
    path = Path(path)
    st = os.stat(path)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _sha_cache:
        return _sha_cache[key]
    memo = _memo_path(key) if st.st_size >= MEMO_MIN_BYTES else None
    if memo is not None:
        try:
            digest = memo.read_text().strip()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                _sha_cache[key] = digest
                return digest
        except OSError:
            pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    _sha_cache[key] = h.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(_sha_cache[key])
        except OSError:
            pass
    return _sha_cache[key]


def manifest_hash(files: dict[str, str | Path], extra: dict | None = None) -> str:
    """Hash of {role: sha256 of file} plus `extra` settings; 16 hex characters."""
    h = hashlib.sha256()
    for role in sorted(files):
        h.update(f"{role}={file_sha256(files[role])};".encode())
    for k in sorted(extra or {}):
        h.update(f"{k}={extra[k]};".encode())
    return h.hexdigest()[:16]


def names_a_path(value) -> bool:
    """Whether a parameter value looks like a file path (a PathLike, or a string with a separator or a suffix)."""
    if isinstance(value, os.PathLike):
        return True
    return isinstance(value, str) and bool(value) and ("/" in value or os.sep in value or bool(Path(value).suffix))


def content_id(value) -> str | None:
    """"sha256:<hex>" of the file `value` names, "sha256-dir:<hex>" of a folder (its files by
    relative name and content), None when `value` names nothing on disk."""
    if not names_a_path(value):
        return None
    path = Path(value)
    if path.is_file():
        return "sha256:" + file_sha256(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(f for f in path.rglob("*") if f.is_file()):
            h.update(f"{f.relative_to(path)}={file_sha256(f)};".encode())
        return "sha256-dir:" + h.hexdigest()
    return None


def by_content(obj):
    """`obj` (nested dicts/lists) with every string that names a file or folder replaced by its
    :func:`content_id`, so keys do not depend on where a file is mounted and change with its content."""
    if isinstance(obj, dict):
        return {k: by_content(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [by_content(v) for v in obj]
    return content_id(obj) or obj
