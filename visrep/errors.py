"""Errors that visrep reports to the user as one clear line (CLI exit code 2).

Raise :class:`UserError` for anything the user can fix: an unknown name, a bad
parameter value, a missing or malformed file. Everything else is a bug and is
allowed to raise normally (CLI exit code 1).
"""
from __future__ import annotations

import difflib


class UserError(Exception):
    """A problem with the user's input; the message names the thing and what was expected."""


class MissingDataError(UserError):
    """Data that a job needs is not on disk (tests turn this into a skip)."""


def did_you_mean(name: str, choices) -> str:
    """Return ' (did you mean: a, b?)' for close matches of `name` among `choices`, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
