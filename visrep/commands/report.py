"""``visrep report``: the static HTML + Markdown report built from the result store (see :mod:`visrep.reports`)."""
from __future__ import annotations

from . import Command


def _add_report(p):
    p.add_argument("--out", default="report", help="output folder for index.html, report.md, plots (default: ./report)")
    p.add_argument("--results", help="results directory (default: ./results or $VISREP_RESULTS)")
    p.add_argument("--data-root", help="data root for full-scale cells (default: $VISREP_DATA or ~/.cache/visrep)")
    p.add_argument("--run-missing", action="store_true",
                   help="first run every cell and claim whose method and data are here but which has no record")
    p.add_argument("--asv-results", help="asv results folder for the speed-history plot (default: ./.asv/results)")
    p.add_argument("--rehearsal", help="folder of a `visrep rehearse` run whose rehearsal.json becomes the report's "
                                       "readiness section (default: ./rehearsal when it holds one)")
    p.add_argument("--json", action="store_true", help="print the summary (statuses per table and claim) as JSON")


def _cmd_report(args) -> int:
    import json

    from ..cache import check_writable_dir
    from ..reports.generate import generate
    quiet = getattr(args, "quiet", False) or args.json
    check_writable_dir(args.out, "report", "choose another with --out")
    if args.run_missing:
        from ..results import default_results_dir
        check_writable_dir(args.results or default_results_dir(), "results", "choose another with --results")
    from pathlib import Path

    from ..errors import UserError
    rehearsal = Path(args.rehearsal or "rehearsal") / "rehearsal.json"
    if not rehearsal.exists():
        if args.rehearsal:
            raise UserError(f"--rehearsal {args.rehearsal}: no rehearsal.json there (run `visrep rehearse --out "
                            f"{args.rehearsal}` first)")
        rehearsal = None
    summary = generate(args.out, args.results, data_root=args.data_root, run_missing=args.run_missing,
                       asv_results=args.asv_results, quiet=quiet, rehearsal=rehearsal)
    if args.json:
        print(json.dumps(summary, indent=1))
    elif not quiet:
        for tid, s in summary["tables"].items():
            claims = ", ".join(f"{k}: {v}" for k, v in s["claims"].items())
            print(f"{tid:<22} {s['status']:<15} {claims}")
        print(f"report: {summary['index']} and {summary['markdown']} ({summary['records']} records)")
    return 0


COMMAND = Command("report", _add_report, _cmd_report,
                  "build the report (static HTML + Markdown) from the result store", order=40)
