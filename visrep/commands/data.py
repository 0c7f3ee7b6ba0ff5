"""``visrep data list | fetch NAME | verify NAME``: the datasets' files, downloaded and verified.

``fetch`` downloads what is missing or wrong (progress bar, resume, sha256, atomic move; see
:mod:`visrep.datasets.download`) under ``--root`` (default ``$VISREP_DATA`` or
``~/.cache/visrep``); ``--mirror URL`` (or ``$VISREP_MIRROR``) replaces the official URLs by
``URL/<path>``. ``verify`` re-hashes what is on disk; it exits with 1 when a required file is
missing or does not match its sha256.
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
    v = sub.add_parser("verify", help="check a dataset's files against their sha256")
    v.add_argument("name")
    v.add_argument("--root", help="data root (default: $VISREP_DATA)")


def _root(args) -> Path:
    from ..context import default_data_root
    return Path(args.root) if args.root else default_data_root()


def _handler(args) -> int:
    from ..datasets.download import fetch_dataset, verify_dataset
    root = _root(args)
    quiet = getattr(args, "quiet", False)
    if args.data_command == "fetch":
        fetch_dataset(args.name, root, mirror=args.mirror, quiet=quiet,
                      log=(lambda *a: None) if quiet else (lambda m: print(m, file=sys.stderr)))
        print(f"{args.name}: files in place under {root}")
        return 0
    if args.data_command == "verify":
        bad = 0
        for path, status, required in verify_dataset(args.name, root):
            print(f"{status:<9} {path}{'' if required else ' (optional)'}")
            bad += required and status in ("missing", "mismatch")
        return 1 if bad else 0
    from ..registry import datasets
    rows = []
    for cls in datasets:
        rows.append({"name": cls.name, "task": cls.task,
                     "files": [{"path": df.path, "url": df.url, "sha256": df.sha256, "size": df.size,
                                "present": (root / df.path).exists()} for df in cls.files]})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            have = sum(f["present"] for f in r["files"])
            print(f"{r['name']:<16} {r['task']:<16} {have}/{len(r['files'])} files under {root}")
    return 0


COMMAND = Command("data", _add, _handler, "list, fetch (download + verify) or verify datasets' files", order=60)
