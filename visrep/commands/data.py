"""``visrep data list [--table ID|all] | fetch NAME [--repin] | verify NAME``: the datasets' files.

``fetch`` downloads what is missing or wrong (progress bar, resume, sha256, atomic move; see
:mod:`visrep.datasets.download`) under ``--root`` (default ``$VISREP_DATA`` or
``~/.cache/visrep``); ``--mirror URL`` (or ``$VISREP_MIRROR``) replaces the official URLs by
``URL/<path>``; ``--no-images`` skips the image archives. NAME is a dataset, ``revisitop1m``
(the R1M distractor images) or a table's name such as ``roxford5k-r1m`` (roxford5k + revisitop1m).

Trust on first use: an archive whose owner publishes no checksum (Oxford/Paris, R1M, Holidays
image tarballs) has its sha256 and size pinned in ``<root>/.visrep-pins.json`` on its first
download; later fetches and ``verify`` check against the pin, and ``fetch --repin`` accepts a
changed file. ``verify`` re-hashes what is on disk (the downloads and the files extracted from
archives, against the sha256, the publisher's md5 or the pin); it exits with 1 when a required
file is missing or any file does not match. A file with no known digest and no pin is
'unchecked': visrep then reads it only through its restricted unpickler (:mod:`visrep.safe_pickle`).

``list --table ID`` (or ``all``) shows, for each table of ``reports/tables/*.toml``, the
datasets its columns and runs name, the status of each of their files under the root
(ok / pinned / unchecked / missing / extracted / mismatch) and the download size still needed
where the owners state sizes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import Command


def _add(p):
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="datasets and their files (--table: what a table still needs)")
    ls.add_argument("--root", help="data root (default: $VISREP_DATA)")
    ls.add_argument("--table", help="a table id of reports/tables (e.g. dsm) or 'all': the files its datasets need")
    ls.add_argument("--json", action="store_true")
    f = sub.add_parser("fetch", help="download and verify a dataset's files")
    f.add_argument("name")
    f.add_argument("--root", help="data root (default: $VISREP_DATA)")
    f.add_argument("--mirror", help="base URL replacing the official ones (default: $VISREP_MIRROR)")
    f.add_argument("--repin", action="store_true",
                   help="accept a file with no published checksum that differs from its pin, and pin it anew")
    f.add_argument("--no-images", action="store_true", help="skip the image archives (ground truth only)")
    v = sub.add_parser("verify", help="check a dataset's files against their sha256 (or md5, or pin)")
    v.add_argument("name")
    v.add_argument("--root", help="data root (default: $VISREP_DATA)")


def _root(args) -> Path:
    from ..context import default_data_root
    return Path(args.root) if args.root else default_data_root()


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _verify(args, root: Path) -> int:
    from ..datasets.download import (
        dataset_known_files,
        file_status,
        load_pins,
        pin_note,
        wants_pin,
    )
    pins = load_pins(root)
    bad = unchecked = pinned = 0
    for df in dataset_known_files(args.name):
        status = file_status(root, df, pins)
        inside = getattr(df, "inside", None)
        note = f" (extracted from {inside})" if inside else ("" if df.required else " (optional)")
        pin = pins.get(df.path) if wants_pin(df) else None
        if status == "pinned":
            note += f" ({pin_note(pin)})"
            pinned += 1
        elif status == "mismatch" and pin is not None:
            note += (f" (differs from its pin: {pin_note(pin)}; run `visrep data fetch {args.name}` to download "
                     f"it again, or `visrep data fetch {args.name} --repin` to accept a changed file)")
        elif status == "unchecked" and wants_pin(df):
            note += f" (no published checksum, not pinned yet: `visrep data fetch {args.name}` pins it)"
        print(f"{status:<9} {df.path}{note}")
        bad += status == "mismatch" or (df.required and not inside and status == "missing")
        unchecked += status == "unchecked"
    if pinned:
        print(f"pinned: {pinned} file(s) have no published checksum; they match the sha256 pinned on their first "
              f"download in {root / '.visrep-pins.json'} (trust on first use)")
    if unchecked:
        print(f"unchecked: no checksum is known for {unchecked} file(s); visrep reads them only through "
              f"its restricted unpickler (no code can run), but cannot tell whether they are the publisher's")
    if bad:
        print(f"mismatch/missing: delete the wrong files and run `visrep data fetch {args.name}`")
    return 1 if bad else 0


def _runs(files: list) -> list[list]:
    """Consecutive files of one group (``images``, ``labels``) alike in status and kind, grouped (R1M's 100
    tarballs, the 40 labelled-subset files of CIFAR-10 print as one line each)."""
    def kind(f):
        return f["status"], f["required"], f["group"], f["pin"]

    out: list[list] = []
    for f in files:
        if out and f["group"] and kind(out[-1][0]) == kind(f):
            out[-1].append(f)
        else:
            out.append([f])
    return out


def _list_tables(args, root: Path) -> int:
    from ..datasets.download import table_file_status
    from ..errors import UserError, did_you_mean
    from ..reports.tables import load_tables
    tables = load_tables()
    if args.table != "all":
        ids = [t.id for t in tables]
        if args.table not in ids:
            raise UserError(f"unknown table '{args.table}'{did_you_mean(args.table, ids)}; `visrep list tables` "
                            f"shows all")
        tables = [t for t in tables if t.id == args.table]
    reports = [table_file_status(t, root) for t in tables]
    if args.json:
        print(json.dumps(reports, indent=1))
        return 0
    for r in reports:
        print(f"table {r['table']}: {r['title']}  (data root {root})")
        shown: set[str] = set()
        for d in r["datasets"]:
            files = d["files"]
            counts: dict[str, int] = {}
            for f in files:
                counts[f["status"]] = counts.get(f["status"], 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no files"
            print(f"  {d['name']:<18} {summary}" + (f"  [{d['note']}]" if d["note"] else ""))
            new = [f for f in files if f["path"] not in shown]
            if len(new) < len(files):
                print(f"    ({len(files) - len(new)} file(s) listed above)")
            shown.update(f["path"] for f in files)
            for group in _runs(new):
                f = group[0]
                sizes = [g["size"] for g in group]
                size = ("size not stated" if None in sizes
                        else _size(sum(sizes)) + (" in all" if len(group) > 1 else ""))
                extra = ["optional" if not f["required"] else "", f["group"], size,
                         "no published checksum" if f["pin"] else ""]
                what = f["path"] if len(group) == 1 else f"{len(group)} files: {f['path']} ... {group[-1]['path']}"
                print(f"    {f['status']:<9} {what}  ({', '.join(x for x in extra if x)})")
        need = _size(r["missing_bytes"]) + " of stated size"
        if r["missing_unknown"]:
            need += f" + {r['missing_unknown']} file(s) of unstated size"
        print(f"  still to download: {need}")
    return 0


def _handler(args) -> int:
    from ..datasets.download import declared_digest, fetch_dataset
    root = _root(args)
    quiet = getattr(args, "quiet", False)
    if args.data_command == "fetch":
        fetch_dataset(args.name, root, mirror=args.mirror, quiet=quiet, repin=args.repin, images=not args.no_images,
                      log=(lambda *a: None) if quiet else (lambda m: print(m, file=sys.stderr)))
        print(f"{args.name}: files in place under {root}")
        return 0
    if args.data_command == "verify":
        return _verify(args, root)
    if args.table:
        return _list_tables(args, root)
    from ..registry import datasets
    rows = []
    for cls in datasets:
        rows.append({"name": cls.name, "task": cls.task,
                     "files": [{"path": df.path, "url": df.url, "sha256": df.sha256,
                                "md5": getattr(df, "md5", None), "checksum": (declared_digest(df) or (None,))[0],
                                "pin": bool(getattr(df, "pin", False)), "source": getattr(df, "source", ""),
                                "size": df.size, "present": (root / df.path).exists()} for df in cls.files]})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            have = sum(f["present"] for f in r["files"])
            print(f"{r['name']:<16} {r['task']:<16} {have}/{len(r['files'])} files under {root}")
    return 0


COMMAND = Command("data", _add, _handler, "list, fetch (download + verify) or verify datasets' files", order=60)
