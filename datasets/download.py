"""Verified downloads of the files each dataset declares (``Dataset.files``).

``fetch_file`` downloads into ``<dest>.part`` with a progress bar, resumes a partial file with
an HTTP ``Range`` request (restarting if the server ignores it), checks the size and the
sha256, and only then renames the file into place (``os.replace``: atomic on one filesystem).
A checksum mismatch deletes the partial file and raises UserError, so nothing wrong is ever
left at the destination. Archives (``.tar.gz``, ``.tgz``) are extracted next to themselves
after verification (tarfile's ``data`` filter: no absolute paths or links out of the folder).

The base URL can be overridden for mirrors and tests: ``$VISREP_MIRROR`` or ``--mirror URL``
makes every file come from ``<mirror>/<DataFile.path>``.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from visrep.errors import UserError

CHUNK = 1 << 16


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_url(df, mirror: str | None = None) -> str:
    """Where to download DataFile `df`: the mirror (argument or $VISREP_MIRROR) or its official URL."""
    mirror = mirror or os.environ.get("VISREP_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + df.path.lstrip("/")
    if not df.url:
        raise UserError(f"{df.path}: no download URL is known; put the file there by hand (or use --mirror)")
    return df.url


def fetch_file(url: str, dest: str | Path, sha256: str | None = None, size: int | None = None,
               quiet: bool = False, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (resume, verify, atomic rename). Returns `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "visrep"})
    if have and (size is None or have < size):
        req.add_header("Range", f"bytes={have}-")
    try:
        if size is not None and have == size:
            resp = None
        else:
            resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:       # range not satisfiable: the partial file may be complete
            resp = None
        else:
            raise UserError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"download of {url} failed: {getattr(e, 'reason', e)}") from None
    if resp is not None:
        with resp:
            resumed = resp.status == 206
            if not resumed:
                have = 0
            total = resp.headers.get("Content-Length")
            total = (int(total) + have) if total is not None else size
            bar = None
            if not quiet:
                from tqdm.auto import tqdm
                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, file=sys.stderr,
                           leave=False)
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while block := resp.read(CHUNK):
                        f.write(block)
                        if bar:
                            bar.update(len(block))
            except (OSError, urllib.error.URLError) as e:
                raise UserError(f"download of {url} interrupted after {part.stat().st_size} bytes ({e}); "
                                f"run the command again to resume") from None
            finally:
                if bar:
                    bar.close()
    got = part.stat().st_size
    if size is not None and got != size:
        if got < size:
            raise UserError(f"download of {url} stopped at {got} of {size} bytes; run again to resume ({part})")
        part.unlink()
        raise UserError(f"{url}: got {got} bytes, expected {size}; the download was removed")
    if sha256:
        digest = sha256_of(part)
        if digest != sha256:
            part.unlink()
            raise UserError(f"{url}: sha256 mismatch for {dest.name} (expected {sha256}, got {digest}); "
                            f"the corrupted download was removed and nothing was put in place")
    os.replace(part, dest)
    return dest


def extract(archive: Path) -> None:
    """Extract a verified .tar.gz/.tgz next to itself (safe 'data' filter)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(archive.parent, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{archive}: cannot extract ({e})") from None


def file_status(root: Path, df) -> str:
    """'ok', 'missing', 'unchecked' (no sha256 known) or 'mismatch' for DataFile `df` under `root`."""
    p = root / df.path
    if not p.exists():
        return "missing"
    if df.size is not None and p.stat().st_size != df.size:
        return "mismatch"
    if not df.sha256:
        return "unchecked"
    from visrep.manifest import file_sha256
    return "ok" if file_sha256(p) == df.sha256 else "mismatch"


def fetch_dataset(name: str, root: str | Path, mirror: str | None = None, quiet: bool = False,
                  log=print) -> list[Path]:
    """Download every file of dataset `name` under `root` that is missing or wrong; returns their paths."""
    from visrep.registry import datasets
    cls = datasets.get(name)
    if not cls.files:
        raise UserError(f"dataset '{name}' declares no downloadable files")
    root = Path(root)
    out = []
    for df in cls.files:
        dest = root / df.path
        status = file_status(root, df)
        if status in ("ok", "unchecked"):
            log(f"{df.path}: present ({status})")
            out.append(dest)
            continue
        url = file_url(df, mirror)
        try:
            fetch_file(url, dest, df.sha256, df.size, quiet=quiet)
        except UserError as e:
            if df.required:
                raise
            log(f"{df.path}: skipped optional file ({e})")
            continue
        log(f"{df.path}: downloaded from {url}" + (" and verified" if df.sha256 else " (no sha256 known)"))
        if dest.name.endswith((".tar.gz", ".tgz")):
            extract(dest)
            log(f"{df.path}: extracted into {dest.parent}")
        out.append(dest)
    return out


def verify_dataset(name: str, root: str | Path) -> list[tuple[str, str, bool]]:
    """[(path, status, required)] for every declared file of `name` under `root`."""
    from visrep.registry import datasets
    cls = datasets.get(name)
    root = Path(root)
    return [(df.path, file_status(root, df), df.required) for df in cls.files]
