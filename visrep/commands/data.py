"""``visrep data list | fetch NAME | verify NAME``: the datasets' files, downloaded and verified.

``fetch`` downloads what is missing or wrong (progress bar, resume, sha256, atomic move; see
:mod:`visrep.datasets.download`) under ``--root`` (default ``$VISREP_DATA`` or
``~/.cache/visrep``); ``--mirror URL`` (or ``$VISREP_MIRROR``) replaces the official URLs by
``URL/<path>``. ``verify`` re-hashes what is on disk (the downloads and the files extracted
from archives, against the sha256 or the publisher's md5); it exits with 1 when a required file
is missing or any file does not match its digest. A file with no known digest is 'unchecked':
visrep then reads it only through its restricted unpickler (:mod:`visrep.safe_pickle`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import Command


def _add(p):
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="datasets and their files")
    ls.add_argument("--root", help="data root (default: $VISREP_DATA)")
    ls.add_argument("--json", action="store_true")
    f = sub.add_parser("fetch", help="download and verify a dataset's files")
    f.add_argument("name")
    f.add_argument("--root", help="data root (default: $VISREP_DATA)")
    f.add_argument("--mirror", help="base URL replacing the official ones (default: $VISREP_MIRROR)")
    v = sub.add_parser("verify", help="check a dataset's files against their sha256 (or md5)")
    v.add_argument("name")
    v.add_argument("--root", help="data root (default: $VISREP_DATA)")


def _root(args) -> Path:
    from ..context import default_data_root
    return Path(args.root) if args.root else default_data_root()


def _handler(args) -> int:
    from ..datasets.download import (
        declared_digest,
        fetch_dataset,
        file_status,
        known_files,
    )
    root = _root(args)
    quiet = getattr(args, "quiet", False)
    if args.data_command == "fetch":
        fetch_dataset(args.name, root, mirror=args.mirror, quiet=quiet,
                      log=(lambda *a: None) if quiet else (lambda m: print(m, file=sys.stderr)))
        print(f"{args.name}: files in place under {root}")
        return 0
    from ..registry import datasets
    if args.data_command == "verify":
        bad = unchecked = 0
        for df in known_files(datasets.get(args.name)):
            status = file_status(root, df)
            inside = getattr(df, "inside", None)
            note = f" (extracted from {inside})" if inside else ("" if df.required else " (optional)")
            print(f"{status:<9} {df.path}{note}")
            bad += status == "mismatch" or (df.required and not inside and status == "missing")
            unchecked += status == "unchecked"
        if unchecked:
            print(f"unchecked: no checksum is known for {unchecked} file(s); visrep reads them only through "
                  f"its restricted unpickler (no code can run), but cannot tell whether they are the publisher's")
        if bad:
            print(f"mismatch/missing: delete the wrong files and run `visrep data fetch {args.name}`")
        return 1 if bad else 0
    rows = []
    for cls in datasets:
        rows.append({"name": cls.name, "task": cls.task,
                     "files": [{"path": df.path, "url": df.url, "sha256": df.sha256,
                                "md5": getattr(df, "md5", None), "checksum": (declared_digest(df) or (None,))[0],
                                "size": df.size, "present": (root / df.path).exists()} for df in cls.files]})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            have = sum(f["present"] for f in r["files"])
            print(f"{r['name']:<16} {r['task']:<16} {have}/{len(r['files'])} files under {root}")
    return 0


COMMAND = Command("data", _add, _handler, "list, fetch (download + verify) or verify datasets' files", order=60)
