"""Typed, documented parameters for plugins (methods, datasets, protocols).

A plugin declares ``params = (Param("k", int, 50, "neighbours", low=1), ...)``; the
runner validates user values (``--set k=30`` arrives as the string ``"30"``) and fills
defaults, so every record carries the complete parameter set.

A parameter whose value is a list declares ``type=list`` and the type of its items:
``Param("ks", list, [1, 2, 4, 8], "k of Recall@k", item=int, low=1)`` (bounds and choices
apply to each item). It takes a list from a spec file (``ks = [1, 2]``) or Python, or the
bracket form ``"[1,2,4,8]"`` from the command line; its value is stored as a plain list.

One list syntax everywhere (:func:`parse_assignments` is the command line's rule): brackets
make a list; a comma outside brackets makes a grid, and only for single-valued parameters
(``--set k=30,50`` is two jobs, ``--set ks=[1,2,4,8]`` is one, ``--set ks=[1,2],[4,8]`` is a
grid of two lists; ``--set ks=1,2,4,8`` is an error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import UserError, did_you_mean


@dataclass(frozen=True)
class Param:
    """One parameter: name, type (int, float, str, bool, list, or None for free-form), default, doc.

    ``low``/``high`` bound numbers (inclusive unless ``open_low``/``open_high``);
    ``choices`` restricts strings. ``None`` is allowed as a value when ``default is None``.
    For ``type=list``, ``item`` is the type of every item (int, float, str, bool or None),
    ``low``/``high``/``choices`` apply to each item, and a list needs at least ``min_items``.
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
    item: type | None = None
    min_items: int = 1
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.type is list:
            if isinstance(self.default, (list, tuple)):  # kept as a tuple so that Param stays hashable
                object.__setattr__(self, "default", tuple(self.default))
            elif self.default is not None:
                raise TypeError(f"Param '{self.name}': a list parameter needs a list (or None) as default")
        elif self.item is not None:
            raise TypeError(f"Param '{self.name}': 'item' is only for type=list")

    @property
    def is_list(self) -> bool:
        return self.type is list

    def default_value(self) -> Any:
        """The default as a parameter value (a fresh list for list parameters)."""
        return list(self.default) if self.is_list and self.default is not None else self.default

    def describe_range(self, of_item: bool = False) -> str:
        """'int >= 1', 'one of a, b', 'list of int >= 1' (`of_item`: the range of one item of a list)."""
        if self.choices:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            parts = []
            if self.low is not None:
                parts.append(f"{'>' if self.open_low else '>='} {self.low}")
            if self.high is not None:
                parts.append(f"{'<' if self.open_high else '<='} {self.high}")
            t = self.item if self.is_list else self.type
            kind = t.__name__ if t else "value"
            text = f"{kind} " + " and ".join(parts) if parts else kind
        if self.is_list and not of_item:
            return f"list of items each {text}" if self.choices else f"list of {text}"
        return text

    def example(self) -> str:
        """The bracket form of the default (or of a made-up list), e.g. '[1,2,4,8]'."""
        items = self.default if self.is_list and self.default else {int: (1, 2), float: (0.5, 1.0)}.get(
            self.item, ("a", "b"))
        return "[" + ",".join(str(x) for x in items) + "]"

    def coerce(self, value: Any, owner: str) -> Any:
        """Convert and check `value`; raise UserError naming `owner` and this parameter."""
        where = f"parameter '{self.name}' of {owner}"
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and self.default is None):
            if self.default is None:
                return None
            raise UserError(f"{where} must be a {self.describe_range()}, got None")
        if self.is_list:
            return self._coerce_list(value, where)
        return self._coerce_scalar(self.type, value, where, self.describe_range())

    def _coerce_list(self, value: Any, where: str) -> list:
        if isinstance(value, str):
            text = value.strip()
            if not text.startswith("["):
                shown = f"[{text}]" if text else self.example()
                raise UserError(f"{where} is a list: write it in brackets, e.g. {self.name}={shown} "
                                f"(a comma outside brackets makes a grid, and only for single-valued "
                                f"parameters), got {value!r}")
            try:
                items = parse_list(text)
            except ValueError as e:
                raise UserError(f"{where}: cannot read the list {value!r} ({e}); write e.g. "
                                f"{self.name}={self.example()}") from None
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise UserError(f"{where} must be a {self.describe_range()} in brackets, e.g. "
                            f"{self.name}={self.example()}, got {value!r}")
        if len(items) < self.min_items:
            raise UserError(f"{where} needs at least {self.min_items} item(s), got {value!r}")
        kind = self.describe_range(of_item=True)
        out = []
        for i, v in enumerate(items):
            at = f"item {i + 1} of {where}"
            if isinstance(v, (list, tuple, dict)):
                raise UserError(f"{at} must be a {kind}, got {v!r} (one value of '{self.name}' is a flat "
                                f"list; a list of lists makes a grid only in a spec file or --set)")
            if v is None:
                raise UserError(f"{at} must be a {kind}, got None")
            out.append(self._coerce_scalar(self.item, v, at, kind))
        return out

    def _coerce_scalar(self, t, value: Any, where: str, kind: str) -> Any:
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
                if not math.isfinite(value):  # NaN and +-inf: no parameter takes them as a meaningful value
                    raise UserError(f"{where} must be a finite {kind}, got {original!r}")
            elif t is str:
                if isinstance(value, (list, tuple, dict)):
                    raise ValueError(value)
                value = str(value)
        except (TypeError, ValueError):
            raise UserError(f"{where} must be a {kind}, got {original!r}") from None
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{where} must be {kind}, got {value!r}" + did_you_mean(value, self.choices))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bad = ((self.low is not None and (value < self.low or (self.open_low and value == self.low)))
                   or (self.high is not None and (value > self.high or (self.open_high and value == self.high))))
            if bad:
                raise UserError(f"{where} must be a {kind}, got {original!r}")
        return value


def check_at_most(value: int | None, limit: int, name: str, owner: str, what: str, hint: str = "") -> None:
    """The one rule for count parameters against the data: a value above `limit` is an error.

    Call it where a parameter such as ``k``, ``kq``, ``n``, ``rank`` or ``topk`` meets the data,
    before any expensive work. `owner` names the plugin (``"method 'diffusion'"``, as in
    ``Plugin.cfg``'s messages), `what` says what bounds it (``"oxford5k has 5063 database
    vectors"``), `hint` adds an alternative (``"or topk=None for all"``). None passes.
    """
    if value is not None and value > limit:
        raise UserError(f"parameter '{name}' of {owner} is {value}, but {what}: use {name} <= {limit}"
                        + (f" ({hint})" if hint else ""))


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
        out[p.name] = p.coerce(given[p.name], owner) if p.name in given else p.default_value()
    return out


# ---------------------------------------------------------------- the one list syntax
_QUOTES = "\"'"


def split_outside(text: str, sep: str) -> list[str]:
    """Split `text` on the character `sep` where it is outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in _QUOTES:
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("']' without '['")
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote:
        raise ValueError(f"unclosed quote {quote}")
    if depth:
        raise ValueError("'[' without ']'")
    parts.append(text[start:])
    return parts


def parse_list(text: str) -> list:
    """The bracket form: '[1,2,4,8]' -> ['1', '2', '4', '8'] (items stay strings: the parameter converts
    them); '[a, "b c"]' -> ['a', 'b c']; '[]' -> []; nested '[[1,2],[4]]' -> [['1', '2'], ['4']]."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("expected [item,item,...]")
    inner = text[1:-1]
    split_outside(text, ",")  # checks brackets and quotes of the whole
    if not inner.strip():
        return []
    out = []
    for part in split_outside(inner, ","):
        part = part.strip()
        if not part:
            raise ValueError("empty item")
        if part.startswith("["):
            out.append(parse_list(part))
        elif len(part) >= 2 and part[0] in _QUOTES and part[-1] == part[0]:
            out.append(part[1:-1])
        else:
            out.append(part)
    return out


def find_param(key: str, classes: Iterable) -> Param | None:
    """The declaration of `key` in the first of `classes` (plugin classes; None entries skipped) that has it."""
    for cls in classes:
        for p in getattr(cls, "params", ()) if cls is not None else ():
            if p.name == key:
                return p
    return None


def plugin_classes(method: str | None, dataset: str | None, protocol: str | None = None) -> list:
    """Method, dataset and protocol classes by name, in the order parameters are looked up (method
    first); `protocol` defaults to the dataset's standard protocol; absent names are left out."""
    from .registry import datasets, methods, protocols
    out = [methods.get(method) if method else None]
    dataset_cls = datasets.get(dataset) if dataset else None
    out.append(dataset_cls)
    protocol = protocol or (dataset_cls.default_protocol if dataset_cls is not None else None)
    out.append(protocols.get(protocol) if protocol else None)
    return [c for c in out if c is not None]


def parse_assignments(items: Sequence[str] | None, classes: Iterable) -> dict:
    """Command-line ``key=value`` strings -> a params dict for :func:`visrep.spec.expand_experiment`.

    For a list parameter (declared with ``type=list`` in one of `classes`) the value is one list in
    brackets, ``ks=[1,2,4,8]``, or a grid of lists, ``ks=[1,2],[4,8]``; an unbracketed comma there is
    an error. For a single-valued parameter a comma outside brackets makes a grid (``k=30,50``) unless
    the value is a path (starts with '/' or '.'); a bracketed value is an error. Unknown keys are
    passed through for ``expand_experiment`` to report.
    """
    classes = list(classes)
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        p = find_param(k, classes)
        if p is None:
            out[k] = v
            continue
        if p.is_list:
            try:
                parts = [x.strip() for x in split_outside(v, ",")]
                if not all(x.startswith("[") for x in parts):
                    raise ValueError("")
                lists = [parse_list(x) for x in parts]
            except ValueError as e:
                bracket = f"[{v}]" if v and "[" not in v else p.example()
                raise UserError(f"--set {item}: parameter '{k}' is a list: write it in brackets, {k}={bracket} "
                                f"(one value), or {k}=[..],[..] for a grid of lists; a comma outside brackets "
                                f"makes a grid only for single-valued parameters" + (f" ({e})" if str(e) else "")) from None
            out[k] = lists[0] if len(lists) == 1 else lists
            continue
        if v.startswith("[") and p.type in (int, float, bool):
            raise UserError(f"--set {item}: parameter '{k}' takes a single value, not a list; for a grid write "
                            f"{k}={v.strip('[]')}")
        if v.startswith(("/", ".")):  # a path: commas are part of it
            out[k] = v
            continue
        try:
            parts = split_outside(v, ",")
        except ValueError:  # unbalanced brackets or quotes in a free-form string
            parts = v.split(",")
        out[k] = parts if len(parts) > 1 else v
    return out
