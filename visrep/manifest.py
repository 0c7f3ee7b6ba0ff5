"""Dataset manifest hashes: which exact files a result was computed from."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_sha_cache: dict[tuple, str] = {}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, memoized on (path, size, mtime) within the process."""
    path = Path(path)
    st = os.stat(path)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def manifest_hash(files: dict[str, str | Path], extra: dict | None = None) -> str:
    """Hash of {role: sha256 of file} plus `extra` settings; 16 hex characters."""
    h = hashlib.sha256()
    for role in sorted(files):
        h.update(f"{role}={file_sha256(files[role])};".encode())
    for k in sorted(extra or {}):
        h.update(f"{k}={extra[k]};".encode())
    return h.hexdigest()[:16]
