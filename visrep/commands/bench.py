"""``visrep bench [quick|run|publish|continuous]``: speed benchmarks with airspeed velocity (asv).

Wraps the commands of the README's "Speed tracking" section, run in the git checkout that
holds ``asv.conf.json`` (the current directory's checkout, else the one visrep is installed
from in editable mode):

==============  ==================================================================
``quick``       ``asv machine --yes``; ``asv run --quick --set-commit-hash $(git rev-parse HEAD)``
``run``         ``asv machine --yes``; ``asv run --set-commit-hash $(git rev-parse HEAD)``
``publish``     ``asv publish`` (the site in .asv/html; ``asv preview`` serves it)
``continuous``  ``asv machine --yes``; ``asv continuous -E virtualenv HEAD~1 HEAD``
==============  ==================================================================

``--bench REGEX`` selects benchmarks (not for ``publish``); ``--dry-run`` prints the commands
without running them. The exit code is asv's; 2 when asv is not installed or there is no
git checkout with an asv.conf.json.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import UserError
from . import Command

#: the source checkout of an editable install (repo root above visrep/commands/)
SOURCE = Path(__file__).resolve().parents[2]


def _add_bench(p):
    p.add_argument("action", nargs="?", default="quick", choices=["quick", "run", "publish", "continuous"],
                   help="quick: `asv run --quick` on HEAD (smoke test); run: full asv run on HEAD; publish: build "
                        "the asv site in .asv/html; continuous: compare HEAD~1 with HEAD (builds virtualenvs)")
    p.add_argument("--bench", "-b", help="regular expression selecting benchmarks")
    p.add_argument("--dry-run", action="store_true", help="print the asv commands instead of running them")


def find_asv() -> str:
    """The asv executable (on PATH, or beside this Python's executable in an unactivated venv)."""
    beside = Path(sys.executable).parent / "asv"
    asv = shutil.which("asv") or (str(beside) if beside.exists() else None)
    if asv is None:
        raise UserError("`visrep bench` needs airspeed velocity: pip install asv (or the dev extra)")
    return asv


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("`visrep bench` needs git (asv benchmarks commits of a git checkout)") from None


def find_checkout() -> Path:
    """The top of the git checkout holding asv.conf.json: the current directory's, else visrep's source."""
    tops = []
    for start in (Path.cwd(), SOURCE):
        if not start.is_dir():
            continue
        out = _git(["rev-parse", "--show-toplevel"], start)
        if out.returncode == 0 and out.stdout.strip():
            top = Path(out.stdout.strip())
            if (top / "asv.conf.json").exists():
                return top
            tops.append(top)
    if not tops:
        raise UserError(f"{Path.cwd()} is not a git checkout: `visrep bench` benchmarks commits of a source "
                        "checkout of visrep (git clone it and run from there)")
    raise UserError(f"no asv.conf.json in {tops[0]}: `visrep bench` works from a source checkout of visrep")


def bench_commands(action: str, asv: str, head: str, bench: str | None = None) -> list[list[str]]:
    """The asv command lines that `visrep bench ACTION` runs, in order."""
    sel = ["--bench", bench] if bench else []
    machine = [asv, "machine", "--yes"]
    if action == "quick":
        return [machine, [asv, "run", "--quick", "--show-stderr", "--set-commit-hash", head, *sel]]
    if action == "run":
        return [machine, [asv, "run", "--show-stderr", "--set-commit-hash", head, *sel]]
    if action == "publish":
        return [[asv, "publish"]]
    if action == "continuous":
        return [machine, [asv, "continuous", "--show-stderr", "-E", "virtualenv", *sel, "HEAD~1", "HEAD"]]
    raise UserError(f"unknown bench action {action!r}: one of quick, run, publish, continuous")


def _cmd_bench(args) -> int:
    asv = find_asv()
    repo = find_checkout()
    head = ""
    if args.action in ("quick", "run"):
        out = _git(["rev-parse", "HEAD"], repo)
        head = out.stdout.strip()
        if out.returncode != 0 or not head:
            raise UserError(f"git rev-parse HEAD failed in {repo} (a checkout without commits?): "
                            f"{out.stderr.strip()}")
    cmds = bench_commands(args.action, asv, head, args.bench)
    if args.dry_run:
        for cmd in cmds:
            print(" ".join(cmd))
        return 0
    quiet = getattr(args, "quiet", False)
    for cmd in cmds:
        if cmd[1] == "machine":  # records this machine's description once; quiet unless it fails
            done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}", file=sys.stderr)
                return done.returncode
            continue
        if not quiet:
            print("$ " + " ".join(cmd), file=sys.stderr)
        rc = subprocess.run(cmd, cwd=repo).returncode
        if rc != 0:
            return rc
    return 0


COMMAND = Command("bench", _add_bench, _cmd_bench,
                  "speed benchmarks with airspeed velocity (asv) on this checkout", order=70)
