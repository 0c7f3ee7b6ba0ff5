"""``visrep list [methods|datasets|protocols|tables]``: the registered plugins, or the paper tables."""
from __future__ import annotations

import json

from ..errors import UserError
from . import Command


def _add_list(p):
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "methods", "datasets", "protocols", "tables"], help="what to list")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _cmd_list(args) -> int:
    from ..registry import REGISTRIES
    kinds = ["method", "dataset", "protocol"] if args.what == "all" else [args.what.rstrip("s")]
    if args.what == "tables":
        try:
            from ..reports.tables import list_tables
        except ImportError:
            raise UserError("paper tables are not available in this installation") from None
        rows = list_tables()
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                print(f"{r['name']:<28} {r['title']}")
        return 0
    out = {}
    for kind in kinds:
        out[kind + "s"] = [{"name": c.name, "task": c.task, "summary": c.summary, "cite": c.cite,
                            "params": {p.name: p.default for p in c.params}} for c in REGISTRIES[kind]]
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    for kind, rows in out.items():
        print(f"{kind}:")
        for r in rows:
            print(f"  {r['name']:<20} {r['task']:<16} {r['summary']}")
    return 0


COMMAND = Command("list", _add_list, _cmd_list, "list methods, datasets, protocols or paper tables", order=10)
