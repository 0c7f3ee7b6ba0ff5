"""The ``visrep`` command line: one module of this package per subcommand.

Exit codes: 0 success; 1 a job failed for a reason that is not the user's (a bug, a crash);
2 bad input (unknown name, bad parameter, missing file) -- nothing is written in that case;
130 interrupted (Ctrl-C; finished jobs are kept).

Each module ``visrep/commands/<name>.py`` declares ``COMMAND = Command(...)``;
:func:`build_parser` finds them by iterating this package (modules whose name starts with
``_`` are skipped), so adding a subcommand is adding a module. Command modules import only
the standard library and light core modules at top level: plugins, reports and heavy
libraries (torch, pandas, numpy...) are imported inside the handlers, so that building the
parser -- and ``visrep list`` -- stays cheap. The core (``visrep/`` outside this package)
imports no plugin and no report; tests/test_core_layering.py checks both rules.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from dataclasses import dataclass
from typing import Callable

from ..errors import UserError

# NB: importing the submodules `list` and `eval` binds those names in this module's globals
# (as attributes of the package), shadowing the builtins here: code below must not call them.


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``handler(args)`` runs it and
    returns the exit code; ``order`` places it in ``visrep --help`` (then by name)."""

    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    help: str
    order: int = 100


def commands() -> tuple[Command, ...]:
    """Every subcommand of this package, in ``--help`` order."""
    found = []
    for info in pkgutil.iter_modules(__path__, __name__ + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        command = getattr(module, "COMMAND", None)
        if not isinstance(command, Command):
            raise TypeError(f"{info.name} declares no COMMAND = Command(...)")
        found.append(command)
    return tuple(sorted(found, key=lambda c: (c.order, c.name)))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    parser = argparse.ArgumentParser(prog="visrep", description="Benchmark and reproduction suite for visual search "
                                     "and representation learning (Avrithis, 'Exploring and Learning from Visual Data').")
    parser.add_argument("--version", action="version", version=f"visrep {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or human lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or human lines")
        command.add_arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except UserError as e:
        print(f"visrep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visrep: interrupted; finished jobs are kept, rerun to resume", file=sys.stderr)
        return 130
