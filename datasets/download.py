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

Trust on first use (TOFU), explicitly: an archive whose owner publishes no checksum (VGG's
Oxford/Paris tarballs, revisitop's R1M tarballs, INRIA Holidays) is declared with
``PublishedFile(..., pin=True, source="... no published checksum")``. Its first download is hashed
and recorded in ``<root>/.visrep-pins.json`` ({path relative to the root: {sha256, size, url,
date}}; JSON only, nothing is unpickled); later fetches and ``visrep data verify`` check against
that pin, and a different file is a :class:`PinMismatch` naming the file, both digests and the
way to accept it (``visrep data fetch NAME --repin``). A malformed pin file is a UserError before
anything is downloaded. Files with no digest and no ``pin`` stay 'unchecked'.

An archive may be extracted elsewhere than its own folder (``extract_to``, relative to the
root) and with a ``layout``: 'replace' (top-level entries replace those of the same name, the
default), 'merge' (files are moved into the existing tree: several archives filling one folder,
e.g. Holidays' jpg1/jpg2, R1M's 100 tarballs) or 'flatten' (every file lands directly in the
folder, as revisitop's ``python/download.py`` does for the Oxford/Paris tarballs). Its marker is
then ``.<folder name>.<archive name>.extracted`` next to that folder; an archive deleted after a
complete extraction has status 'extracted' (not downloaded again).

The base URL can be overridden for mirrors and tests: ``$VISREP_MIRROR`` or ``--mirror URL``
makes every file come from ``<mirror>/<DataFile.path>``.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
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
    ``source`` says where the digest comes from (or that none is published); ``inside`` names
    the archive an extracted member comes from (members are verified, never downloaded on their
    own). ``pin``: no checksum is published, so the first download's sha256 and size are pinned
    under the data root (trust on first use). ``extract_to`` (a folder relative to the root;
    default the archive's) and ``layout`` ('replace', 'merge' or 'flatten') say where an archive's
    files go; ``group`` = 'images' marks image archives (``visrep data fetch --no-images``).
    """

    md5: str | None = None
    source: str = ""
    inside: str | None = None
    pin: bool = False
    extract_to: str | None = None
    layout: str = "replace"
    group: str = ""


LAYOUTS = ("replace", "merge", "flatten")
PIN_FILE = ".visrep-pins.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ChecksumMismatch(UserError):
    """A file visrep knows does not have its declared digest (it was not read)."""


class PinMismatch(ChecksumMismatch):
    """A file with no published checksum differs from the sha256 pinned on its first download."""


def pins_path(root: str | Path) -> Path:
    """``<root>/.visrep-pins.json``: the sha256 pinned on first download of files with no published checksum."""
    return Path(root) / PIN_FILE


def load_pins(root: str | Path) -> dict:
    """{relative path: {"sha256", "size", "url", "date"}} from the pin file ({} if there is none).

    Read as JSON only (nothing is unpickled or evaluated). Anything else than that mapping -- bad
    JSON, a digest that is not 64 hex digits, a size that is not a non-negative integer -- is a
    UserError naming the file and the entry, raised before any download.
    """
    path = pins_path(root)
    if not path.exists():
        return {}
    fix = "fix it or delete it (each file is then pinned again on its next download)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: malformed pin file, not readable as JSON ({e}); {fix}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: malformed pin file: expected an object {{path: {{sha256, size, url, date}}}}, "
                        f"got {type(doc).__name__}; {fix}")
    for rel, pin in doc.items():
        if not isinstance(pin, dict):
            raise UserError(f"{path}: malformed pin file: entry '{rel}' is a {type(pin).__name__}, "
                            f"expected {{sha256, size, url, date}}; {fix}")
        sha, size = pin.get("sha256"), pin.get("size")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise UserError(f"{path}: malformed pin file: entry '{rel}' has sha256 {sha!r}, expected 64 "
                            f"lower-case hex digits; {fix}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(f"{path}: malformed pin file: entry '{rel}' has size {size!r}, expected a "
                            f"non-negative integer; {fix}")
        for key in ("url", "date"):
            if pin.get(key) is not None and not isinstance(pin[key], str):
                raise UserError(f"{path}: malformed pin file: entry '{rel}' has {key} {pin[key]!r}, "
                                f"expected a string; {fix}")
    return doc


def save_pins(root: str | Path, pins: dict) -> Path:
    """Write the pin file atomically (a temporary file, then ``os.replace``)."""
    path = pins_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def pin_note(pin: dict) -> str:
    """'no published checksum: pinned sha256 … on first download (date, url)' for messages."""
    return (f"no published checksum: pinned sha256 {pin['sha256']} ({pin['size']} bytes) on first download"
            f" ({pin.get('date') or 'date unknown'}, {pin.get('url') or 'url unknown'})")


def pin_mismatch_message(root: str | Path, rel: str, pin: dict, found: str, size: int, name: str | None,
                         where: str = "this copy") -> str:
    cmd = f"visrep data fetch {name or 'DATASET'} --repin"
    return (f"{rel}: sha256 {found} ({size} bytes) differs from the sha256 pinned on first download, "
            f"{pin['sha256']} ({pin['size']} bytes, from {pin.get('url')} on {pin.get('date')}; pin file "
            f"{pins_path(root)}). No checksum is published for this file, so visrep trusts the first copy it "
            f"downloaded; {where} differs (the publisher replaced the file, or it is damaged or tampered with) "
            f"and nothing was put in place. If you trust the new copy, re-pin it: `{cmd}`.")


def wants_pin(df) -> bool:
    """True for a file declared trust-on-first-use: ``pin=True`` and no published digest."""
    return bool(getattr(df, "pin", False)) and declared_digest(df) is None


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
               quiet: bool = False, timeout: float = 60.0, md5: str | None = None, check=None) -> Path:
    """Download `url` to `dest` (resume, verify sha256 or md5, atomic rename). Returns `dest`.

    ``check(part)``, if given, is called on the complete ``<dest>.part`` after the size and digest
    checks and before the rename; an exception from it removes the partial file and propagates.
    """
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
    if check is not None:
        try:
            check(part)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


def marker_path(archive: Path, dest: Path | None = None) -> Path:
    """Written once every member of `archive` is in place: ``<archive>.extracted`` when it is
    extracted into its own folder, else ``<dest's parent>/.<dest name>.<archive name>.extracted``
    (next to the folder, so that an image folder holds images only)."""
    archive = Path(archive)
    if dest is None or Path(dest) == archive.parent:
        return archive.with_name(archive.name + ".extracted")
    dest = Path(dest)
    return dest.parent / f".{dest.name}.{archive.name}.extracted"


def extract_dir(root: Path, df) -> Path | None:
    """Where DataFile `df`'s archive goes (``root/extract_to``), or None for its own folder."""
    to = getattr(df, "extract_to", None)
    return Path(root) / to if to else None


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


def _place(tmp: Path, dest: Path, layout: str, archive: Path) -> list[str]:
    """Move what `tmp` holds into `dest` by `layout`; returns the top-level names placed."""
    if layout == "replace":
        names = sorted(p.name for p in tmp.iterdir())
        for name in names:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp / name, target)
        return names
    files = sorted(p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink())
    if layout == "flatten":
        seen: dict[str, Path] = {}
        for f in files:
            if f.name in seen:
                raise UserError(f"{archive}: two members are named {f.name} ({seen[f.name].relative_to(tmp)} and "
                                f"{f.relative_to(tmp)}); they cannot both go into {dest}; nothing was put in place")
            seen[f.name] = f
        pairs = [(f, dest / f.name) for f in files]
    else:
        pairs = [(f, dest / f.relative_to(tmp)) for f in files]
    for src, target in pairs:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(src, target)
    return sorted({t.relative_to(dest).parts[0] for _, t in pairs})


def extract(archive: Path, dest: Path | None = None, layout: str = "replace") -> list[str]:
    """Extract a verified archive into `dest` (default: its folder) all at once; returns the top-level names.

    Members go to a temporary folder inside `dest` (tar: the ``data`` filter; zip: no absolute
    or ``..`` names, no links); only when all are out are they moved into place -- by `layout`:
    'replace' (top-level entries replace a half-extracted leftover of the same name), 'merge'
    (files join the existing tree) or 'flatten' (every file directly in `dest`) -- and the marker
    (:func:`marker_path`) written. A refused archive (a member escaping the folder) is deleted;
    any failure removes the temporary folder, so nothing half-done is left.
    """
    archive = Path(archive)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    dest = Path(dest) if dest is not None else archive.parent
    dest.mkdir(parents=True, exist_ok=True)
    marker = marker_path(archive, dest)
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
        names = _place(tmp, dest, layout, archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker.write_text(json.dumps({"archive": archive.name, "entries": names}) + "\n")
    return names


def file_status(root: Path, df, pins: dict | None = None) -> str:
    """Status of DataFile `df` under `root`.

    'ok' (declared digest matches), 'pinned' (no published digest; matches the sha256 pinned on
    first download), 'unchecked' (no digest and no pin), 'missing', 'extracted' (an archive
    deleted after a complete extraction: its marker is there) or 'mismatch' (size, digest or
    pin differ). `pins` defaults to the root's pin file (read only for a ``pin=True`` file).
    """
    root = Path(root)
    p = root / df.path
    if not p.exists():
        return "extracted" if is_archive(p) and marker_path(p, extract_dir(root, df)).exists() else "missing"
    if df.size is not None and p.stat().st_size != df.size:
        return "mismatch"
    if wants_pin(df):
        pin = (load_pins(root) if pins is None else pins).get(df.path)
        if pin is None:
            return "unchecked"
        if p.stat().st_size != pin["size"] or file_digest(p, "sha256") != pin["sha256"]:
            return "mismatch"
        return "pinned"
    try:
        return check_file(p, df)
    except ChecksumMismatch:
        return "mismatch"


#: table dataset names with no loader of their own: the datasets whose files they need
DATASET_ALIASES = {"roxford5k-r1m": ("roxford5k", "revisitop1m"), "rparis6k-r1m": ("rparis6k", "revisitop1m")}
#: file sets that are not a registered dataset: name -> (module, attribute)
FILE_SETS = {"revisitop1m": ("visrep.datasets.revisitop", "R1M_FILES")}


def dataset_files(name: str) -> tuple:
    """The downloads (``files``) of dataset `name`, of a file set (revisitop1m) or of an alias (roxford5k-r1m)."""
    if name in DATASET_ALIASES:
        out, seen = [], set()
        for part in DATASET_ALIASES[name]:
            for df in dataset_files(part):
                if df.path not in seen:
                    seen.add(df.path)
                    out.append(df)
        return tuple(out)
    if name in FILE_SETS:
        import importlib
        mod, attr = FILE_SETS[name]
        return tuple(getattr(importlib.import_module(mod), attr))
    from visrep.registry import datasets
    return tuple(datasets.get(name).files)


def dataset_known_files(name: str) -> tuple:
    """Downloads and archive members of `name` (see :func:`dataset_files`, :func:`known_files`)."""
    if name in DATASET_ALIASES or name in FILE_SETS:
        return dataset_files(name)
    from visrep.registry import datasets
    return known_files(datasets.get(name))


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def fetch_dataset(name: str, root: str | Path, mirror: str | None = None, quiet: bool = False,
                  log=print, repin: bool = False, images: bool = True) -> list[Path]:
    """Download every file of dataset `name` under `root` that is missing or wrong; returns their paths.

    The pin file is read first (a malformed one is a UserError before any download). A ``pin``
    file (no published checksum) is pinned on its first download, checked against its pin
    afterwards (:class:`PinMismatch`), and re-pinned only with ``repin=True``. ``images=False``
    skips the image archives (``group='images'``).
    """
    files = dataset_files(name)
    if not files:
        raise UserError(f"dataset '{name}' declares no downloadable files")
    root = Path(root)
    pins = load_pins(root)
    out = []
    for df in files:
        dest = root / df.path
        where = extract_dir(root, df)
        layout = getattr(df, "layout", "replace")
        if not images and getattr(df, "group", "") == "images":
            log(f"{df.path}: skipped (image archive; --no-images)")
            continue
        status = file_status(root, df, pins)
        if status == "extracted":
            log(f"{df.path}: already extracted into {where or dest.parent} (the archive was deleted afterwards)")
            out.append(dest)
            continue
        if status in ("ok", "pinned", "unchecked"):
            if status == "unchecked" and wants_pin(df):
                pins[df.path] = {"sha256": file_digest(dest, "sha256"), "size": dest.stat().st_size,
                                 "url": None, "date": _today()}
                save_pins(root, pins)
                log(f"{df.path}: present; {pin_note(pins[df.path])} -- pinned the copy found on disk "
                    f"(not downloaded by visrep) in {pins_path(root)}")
            elif status == "pinned":
                log(f"{df.path}: present (matches its pin; {pin_note(pins[df.path])})")
            else:
                log(f"{df.path}: present ({status})")
            if is_archive(dest) and not marker_path(dest, where).exists():
                extract(dest, where, layout)        # never extracted, or a previous extraction did not finish
                log(f"{df.path}: extracted into {where or dest.parent} (it had not been extracted completely)")
            out.append(dest)
            continue
        if status == "mismatch":
            dest.unlink()
            marker_path(dest, where).unlink(missing_ok=True)
        url = file_url(df, mirror)
        expect = pins.get(df.path) if wants_pin(df) and not repin else None
        got: dict = {}

        def check(part: Path, df=df, expect=expect, got=got, url=url):
            if not wants_pin(df):
                return
            got.update(sha256=_hash(part, "sha256"), size=part.stat().st_size)
            if expect is not None and (got["sha256"] != expect["sha256"] or got["size"] != expect["size"]):
                raise PinMismatch(pin_mismatch_message(root, df.path, expect, got["sha256"], got["size"], name,
                                                       where=f"the copy now served at {url}"))
        try:
            fetch_file(url, dest, df.sha256, df.size, quiet=quiet, md5=getattr(df, "md5", None), check=check)
        except UserError as e:
            if df.required or isinstance(e, ChecksumMismatch):
                raise
            log(f"{df.path}: skipped optional file ({e})")
            continue
        want = declared_digest(df)
        if want:
            log(f"{df.path}: downloaded from {url} and verified ({want[0]})")
        elif got:
            log(f"{df.path}: downloaded from {url}")
        else:
            log(f"{df.path}: downloaded from {url} (no checksum known: unchecked)")
        if is_archive(dest):
            extract(dest, where, layout)
            log(f"{df.path}: extracted into {where or dest.parent}")
        if got:        # pinned only once the archive is out (a refused archive is never pinned)
            old = pins.get(df.path)
            if old is None or old["sha256"] != got["sha256"] or old["size"] != got["size"]:
                pins[df.path] = {"sha256": got["sha256"], "size": got["size"], "url": url, "date": _today()}
                save_pins(root, pins)
                if old is None:
                    log(f"{df.path}: {pin_note(pins[df.path])}, recorded in {pins_path(root)}; later fetches and "
                        f"`visrep data verify {name}` check against it")
                else:
                    log(f"{df.path}: re-pinned (--repin): sha256 {got['sha256']} replaces {old['sha256']} "
                        f"in {pins_path(root)}")
            else:
                log(f"{df.path}: matches its pin ({pin_note(old)})")
        out.append(dest)
    return out


def verify_dataset(name: str, root: str | Path) -> list[tuple[str, str, bool]]:
    """[(path, status, required)] for every declared file of `name` under `root` (archive members too)."""
    root = Path(root)
    pins = load_pins(root)
    return [(df.path, file_status(root, df, pins), df.required and not getattr(df, "inside", None))
            for df in dataset_known_files(name)]


def table_datasets(table) -> list[str]:
    """The dataset names a table's columns and runs name, in order of first appearance."""
    names: list[str] = []
    cands = [c.dataset for c in getattr(table, "columns", [])]
    for run in getattr(table, "runs", {}).values():
        ds = run.dataset
        cands += list(ds) if isinstance(ds, (list, tuple)) else [ds]
    for n in cands:
        if n and n not in names:
            names.append(n)
    return names


def table_file_status(table, root: str | Path) -> dict:
    """What a table still needs under `root`.

    Returns {"table", "title", "datasets": [{"name", "note", "files": [{"path", "status", "size",
    "required", "group", "source"}]}], "missing_bytes" (known sizes of missing/mismatched files,
    each path counted once), "missing_unknown" (how many of those have no stated size)}.
    """
    from visrep.registry import datasets
    root = Path(root)
    pins = load_pins(root)
    rows, need = [], {}
    for name in table_datasets(table):
        note = ""
        if name in DATASET_ALIASES:
            note = "= " + " + ".join(DATASET_ALIASES[name])
        try:
            files = dataset_files(name)
        except UserError:
            files, note = (), "no loader and no declared files"
        if not files and not note:
            note = "declares no downloadable files" + (" (built in or generated)" if name in datasets else "")
        frows = []
        for df in files:
            st = file_status(root, df, pins)
            frows.append({"path": df.path, "status": st, "size": df.size, "required": df.required,
                          "group": getattr(df, "group", ""), "source": getattr(df, "source", ""),
                          "pin": wants_pin(df)})
            if st in ("missing", "mismatch"):
                need[df.path] = df.size
        rows.append({"name": name, "note": note, "files": frows})
    return {"table": table.id, "title": table.title, "datasets": rows,
            "missing_bytes": sum(v for v in need.values() if v is not None),
            "missing_unknown": sum(v is None for v in need.values())}
