"""``visrep report`` and ``visrep bench``, registered into the core CLI (visrep/cli.py imports this module)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from visrep.cli import add_command
from visrep.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def _add_report(p):
    p.add_argument("--out", default="report", help="output folder for index.html, report.md, plots (default: ./report)")
    p.add_argument("--results", help="results directory (default: ./results or $VISREP_RESULTS)")
    p.add_argument("--data-root", help="data root for full-scale cells (default: $VISREP_DATA or ~/.cache/visrep)")
    p.add_argument("--run-missing", action="store_true",
                   help="first run every cell and claim whose method and data are here but which has no record")
    p.add_argument("--asv-results", help="asv results folder for the speed-history plot (default: ./.asv/results)")
    p.add_argument("--json", action="store_true", help="print the summary (statuses per table and claim) as JSON")


def _cmd_report(args) -> int:
    import json

    from .generate import generate
    quiet = getattr(args, "quiet", False) or args.json
    summary = generate(args.out, args.results, data_root=args.data_root, run_missing=args.run_missing,
                       asv_results=args.asv_results, quiet=quiet)
    if args.json:
        print(json.dumps(summary, indent=1))
    elif not quiet:
        for tid, s in summary["tables"].items():
            claims = ", ".join(f"{k}: {v}" for k, v in s["claims"].items())
            print(f"{tid:<22} {s['status']:<15} {claims}")
        print(f"report: {summary['index']} and {summary['markdown']} ({summary['records']} records)")
    return 0


def _add_bench(p):
    p.add_argument("action", nargs="?", default="quick", choices=["quick", "run", "publish", "continuous"],
                   help="quick: `asv run --quick` on HEAD (smoke test); run: full asv run on HEAD; publish: build "
                        "the asv site in .asv/html; continuous: compare HEAD~1 with HEAD")
    p.add_argument("--bench", "-b", help="regular expression selecting benchmarks")


def _cmd_bench(args) -> int:
    asv = shutil.which("asv") or (str(Path(sys.executable).parent / "asv")
                                  if (Path(sys.executable).parent / "asv").exists() else None)
    if asv is None:
        raise UserError("`visrep bench` needs airspeed velocity: pip install asv (or the dev extra)")
    if not (REPO / "asv.conf.json").exists():
        raise UserError(f"no asv.conf.json in {REPO}: `visrep bench` works from a source checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    sel = ["--bench", args.bench] if args.bench else []
    subprocess.run([asv, "machine", "--yes"], cwd=REPO, check=False, capture_output=True)
    if args.action == "quick":
        cmd = [asv, "run", "--quick", "--show-stderr", "--set-commit-hash", head, *sel]
    elif args.action == "run":
        cmd = [asv, "run", "--show-stderr", "--set-commit-hash", head, *sel]
    elif args.action == "publish":
        cmd = [asv, "publish"]
    else:
        cmd = [asv, "continuous", "--show-stderr", "HEAD~1", "HEAD", *sel]
    print("$ " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=REPO).returncode


add_command("report", _add_report, _cmd_report, "build the report (static HTML + Markdown) from the result store")
add_command("bench", _add_bench, _cmd_bench, "speed benchmarks with airspeed velocity (asv) on this checkout")
