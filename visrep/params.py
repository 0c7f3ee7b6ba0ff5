"""Typed, documented parameters for plugins (methods, datasets, protocols).

A plugin declares ``params = (Param("k", int, 50, "neighbours", low=1), ...)``; the
runner validates user values (``--set k=30`` arrives as the string ``"30"``) and fills
defaults, so every record carries the complete parameter set.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import UserError, did_you_mean


@dataclass(frozen=True)
class Param:
    """One parameter: name, type (int, float, str, bool or None for free-form), default, doc.

    ``low``/``high`` bound numbers (inclusive unless ``open_low``/``open_high``);
    ``choices`` restricts strings. ``None`` is allowed as a value when ``default is None``.
    """

    name: str
    type: type | None
    default: Any
    doc: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: Sequence[str] | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high}")
        kind = self.type.__name__ if self.type else "value"
        return f"{kind} " + " and ".join(parts) if parts else kind

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert and check `value`; raise UserError naming `owner` and this parameter."""
        where = f"parameter '{self.name}' of {owner}"
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and self.default is None):
            if self.default is None:
                return None
            raise UserError(f"{where} must be a {self.describe_range()}, got None")
        t = self.type
        original = value
        try:
            if t is bool:
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low in ("1", "true", "yes", "on"):
                        value = True
                    elif low in ("0", "false", "no", "off"):
                        value = False
                    else:
                        raise ValueError(value)
                elif not isinstance(value, (bool, int)):
                    raise ValueError(value)
                value = bool(value)
            elif t is int:
                if isinstance(value, bool):
                    raise ValueError(value)
                if isinstance(value, float):
                    if not value.is_integer():
                        raise ValueError(value)
                    value = int(value)
                value = int(value) if isinstance(value, str) else value
                if not isinstance(value, int):
                    raise ValueError(value)
            elif t is float:
                if isinstance(value, bool):
                    raise ValueError(value)
                value = float(value)
                if math.isnan(value):
                    raise ValueError(value)
            elif t is str:
                value = str(value)
        except (TypeError, ValueError):
            raise UserError(f"{where} must be a {self.describe_range()}, got {original!r}") from None
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{where} must be {self.describe_range()}, got {value!r}"
                            + did_you_mean(value, self.choices))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = ((self.low is not None and (value < self.low or (self.open_low and value == self.low)))
                   or (self.high is not None and (value > self.high or (self.open_high and value == self.high))))
            if bad:
                raise UserError(f"{where} must be a {self.describe_range()}, got {original!r}")
        return value


def resolve_params(declared: Sequence[Param], given: dict, owner: str) -> dict:
    """Validate `given` against `declared`; return all parameters with defaults filled in."""
    by_name = {p.name: p for p in declared}
    unknown = [k for k in given if k not in by_name]
    if unknown:
        k = unknown[0]
        known = ", ".join(sorted(by_name)) or "none"
        raise UserError(f"{owner} has no parameter '{k}'{did_you_mean(k, by_name)}; its parameters: {known}")
    out = {}
    for p in declared:
        out[p.name] = p.coerce(given[p.name], owner) if p.name in given else p.default
    return out
