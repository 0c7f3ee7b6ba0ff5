"""Verified downloads of the files each dataset declares (``Dataset.files``).

``fetch_file`` downloads into ``<dest>.part`` with a progress bar, resumes a partial file with
an HTTP ``Range`` request (restarting if the server ignores it), checks the size and the
sha256 (or the md5 its publisher gives, see :class:`PublishedFile`), and only then renames the
file into place (``os.replace``: atomic on one filesystem). A checksum mismatch deletes the
partial file and raises UserError, so nothing wrong is ever left at the destination.

Archives (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``) are extracted after verification into a
temporary folder next to their destination (tarfile's ``data`` filter: no absolute paths, no
``..``, no links or devices out of the folder; zip members likewise), moved into place only when
the whole archive is out, and then marked complete by ``<archive>.extracted``. A refused or
interrupted extraction leaves nothing half-done, and a fetch that finds the archive without its
marker extracts again.

Loaders call :func:`check_known` before unpickling a file a dataset declares (its downloads
``files`` and the archive ``members`` it extracts): a digest mismatch is a UserError (exit 2)
naming the file, the expected and the found digest and what to do. Files with no declared
digest are 'unchecked': only :mod:`visrep.safe_pickle` guards them.

The base URL can be overridden for mirrors and tests: ``$VISREP_MIRROR`` or ``--mirror URL``
makes every file come from ``<mirror>/<DataFile.path>``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from visrep.api import DataFile
from visrep.errors import UserError

CHUNK = 1 << 16
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class PublishedFile(DataFile):
    """A DataFile whose publisher gives an md5 rather than a sha256 (CIFAR, MNIST, CUB).

    ``md5`` is checked exactly like ``sha256`` (before a file is put in place or unpickled);
    ``source`` says where the digest comes from; ``inside`` names the archive an extracted
    member comes from (members are verified, never downloaded on their own).
    """

    md5: str | None = None
    source: str = ""
    inside: str | None = None


class ChecksumMismatch(UserError):
    """A file visrep knows does not have its declared digest (it was not read)."""


def _hash(path: str | Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: str | Path) -> str:
    return _hash(path, "sha256")


def declared_digest(df) -> tuple[str, str] | None:
    """(algorithm, hex digest) declared for DataFile `df` (sha256 preferred), or None."""
    if df.sha256:
        return "sha256", df.sha256.lower()
    md5 = getattr(df, "md5", None)
    if md5:
        return "md5", md5.lower()
    return None


_VERIFIED: dict[tuple, str] = {}


def file_digest(path: str | Path, algo: str) -> str:
    """Digest of `path`, remembered for this process while its size and mtime do not change."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, algo)
    if key not in _VERIFIED:
        _VERIFIED[key] = _hash(path, algo)
    return _VERIFIED[key]


def mismatch_message(path, algo: str, expected: str, found: str, dataset: str | None = None) -> str:
    fetch = f"run `visrep data fetch {dataset}`" if dataset else "download it again"
    return (f"{path}: {algo} mismatch: expected {expected}, found {found}. This is not the file the "
            f"publisher serves (damaged, replaced or another version), so it was not read. "
            f"Delete it and {fetch}, or pass the right file.")


def check_file(path: str | Path, df, dataset: str | None = None) -> str:
    """Verify `path` against DataFile `df`'s digest: 'ok', 'unchecked' (none declared) or ChecksumMismatch."""
    want = declared_digest(df)
    if want is None:
        return "unchecked"
    algo, expected = want
    try:
        found = file_digest(path, algo)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if found != expected:
        raise ChecksumMismatch(mismatch_message(path, algo, expected, found, dataset))
    return "ok"


def known_files(dataset) -> tuple:
    """Every DataFile a dataset (class or instance) declares: its downloads and its archives' members."""
    return tuple(getattr(dataset, "files", ())) + tuple(getattr(dataset, "members", ()))


def check_known(dataset, root: str | Path, path: str | Path) -> str:
    """Before reading `path`: verify it if `dataset` declares it under `root`.

    Returns 'ok' (digest matches), 'unchecked' (declared without a digest) or 'unknown' (not a
    file the dataset declares, e.g. a user's own ground truth elsewhere); raises
    ChecksumMismatch (a UserError, exit 2) naming the file, both digests and what to do.
    """
    path = Path(path)
    try:
        target = path.resolve()
        root = Path(root).resolve()
    except OSError:
        return "unknown"
    for df in known_files(dataset):
        if (root / df.path).resolve() == target:
            return check_file(path, df, getattr(dataset, "name", None))
    return "unknown"


def file_url(df, mirror: str | None = None) -> str:
    """Where to download DataFile `df`: the mirror (argument or $VISREP_MIRROR) or its official URL."""
    mirror = mirror or os.environ.get("VISREP_MIRROR")
    if mirror:
        return mirror.rstrip("/") + "/" + df.path.lstrip("/")
    if not df.url:
        raise UserError(f"{df.path}: no download URL is known; put the file there by hand (or use --mirror)")
    return df.url


def read_pickle(path: str | Path, what: str, dataset=None, root: str | Path | None = None,
                encoding: str = "ASCII"):
    """Unpickle `path` safely: its declared digest first (when `dataset` declares it under `root`), then
    always :mod:`visrep.safe_pickle` (containers and arrays only; nothing is ever called).

    UserError naming the file for a mismatch, a refused global, or a truncated/damaged pickle.
    """
    from visrep import safe_pickle
    path = Path(path)
    if dataset is not None and root is not None:
        check_known(dataset, root, path)
    try:
        return safe_pickle.load(path, encoding=encoding)
    except safe_pickle.UnsafePickleError:
        raise
    except UserError as e:
        cause = e.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
        raise UserError(f"{path}: not a readable {what}, truncated or damaged ({detail})") from None


def fetch_file(url: str, dest: str | Path, sha256: str | None = None, size: int | None = None,
               quiet: bool = False, timeout: float = 60.0, md5: str | None = None) -> Path:
    """Download `url` to `dest` (resume, verify sha256 or md5, atomic rename). Returns `dest`."""
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
    for algo, want in (("sha256", sha256), ("md5", None if sha256 else md5)):
        if not want:
            continue
        digest = _hash(part, algo)
        if digest != want.lower():
            part.unlink()
            raise ChecksumMismatch(f"{url}: {algo} mismatch for {dest.name} (expected {want}, got {digest}); "
                                   f"the corrupted download was removed and nothing was put in place")
    os.replace(part, dest)
    return dest


def marker_path(archive: Path) -> Path:
    """``<archive>.extracted``: written once every member of `archive` is in place."""
    return archive.with_name(archive.name + ".extracted")


def is_archive(path: str | Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def _safe_zip_members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    out = []
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise UserError(f"{archive}: refused member '{info.filename}' (absolute or outside the folder); "
                            f"the archive was removed and nothing was extracted")
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise UserError(f"{archive}: refused member '{info.filename}' (a symbolic link); "
                            f"the archive was removed and nothing was extracted")
        out.append(info)
    return out


def extract(archive: Path, dest: Path | None = None) -> list[str]:
    """Extract a verified archive into `dest` (default: its folder) all at once; returns the top-level names.

    Members go to a temporary folder next to `dest` (tar: the ``data`` filter; zip: no absolute
    or ``..`` names, no links); only when all are out are the top-level entries moved into
    place (replacing a half-extracted leftover of the same name) and ``<archive>.extracted``
    written. A refused archive (a member escaping the folder) is deleted; any failure removes
    the temporary folder, so nothing half-done is left.
    """
    archive = Path(archive)
    dest = Path(dest) if dest is not None else archive.parent
    dest.mkdir(parents=True, exist_ok=True)
    marker = marker_path(archive)
    marker.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=dest))
    try:
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp, members=_safe_zip_members(zf, archive))
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
        except tarfile.FilterError as e:
            archive.unlink(missing_ok=True)
            raise UserError(f"{archive}: refused ({e}): a member would land outside the folder or is a "
                            f"link/device; the archive was removed and nothing was extracted") from None
        except UserError:
            archive.unlink(missing_ok=True)
            raise
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise UserError(f"{archive}: cannot extract ({type(e).__name__}: {e}); nothing was put in place, "
                            f"run the fetch again") from None
        names = sorted(p.name for p in tmp.iterdir())
        for name in names:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(json.dumps({"archive": archive.name, "entries": names}) + "\n")
    return names


def file_status(root: Path, df) -> str:
    """'ok', 'missing', 'unchecked' (no sha256 known) or 'mismatch' for DataFile `df` under `root`."""
    p = root / df.path
    if not p.exists():
        return "missing"
    if df.size is not None and p.stat().st_size != df.size:
        return "mismatch"
    try:
        return check_file(p, df)
    except ChecksumMismatch:
        return "mismatch"


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
            if is_archive(dest) and not marker_path(dest).exists():
                extract(dest)        # never extracted, or a previous extraction did not finish
                log(f"{df.path}: extracted into {dest.parent} (it had not been extracted completely)")
            out.append(dest)
            continue
        if status == "mismatch":
            dest.unlink()
            marker_path(dest).unlink(missing_ok=True)
        url = file_url(df, mirror)
        try:
            fetch_file(url, dest, df.sha256, df.size, quiet=quiet, md5=getattr(df, "md5", None))
        except UserError as e:
            if df.required or isinstance(e, ChecksumMismatch):
                raise
            log(f"{df.path}: skipped optional file ({e})")
            continue
        want = declared_digest(df)
        log(f"{df.path}: downloaded from {url}" + (f" and verified ({want[0]})" if want else
                                                   " (no checksum known: unchecked)"))
        if is_archive(dest):
            extract(dest)
            log(f"{df.path}: extracted into {dest.parent}")
        out.append(dest)
    return out


def verify_dataset(name: str, root: str | Path) -> list[tuple[str, str, bool]]:
    """[(path, status, required)] for every declared file of `name` under `root` (archive members too)."""
    from visrep.registry import datasets
    cls = datasets.get(name)
    root = Path(root)
    return [(df.path, file_status(root, df), df.required and not getattr(df, "inside", None))
            for df in known_files(cls)]
