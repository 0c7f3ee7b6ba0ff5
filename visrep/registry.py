"""Lazy registries of method, dataset and protocol plugins.

Plugins are classes declared next to their code with ``@register``::

    @register
    class KNN(Method):
        name = "knn"
        task = "retrieval"
        ...

A registry imports the modules of its package (``visrep.methods``, ``visrep.datasets``,
``visrep.protocols``) the first time it is asked for a name, plus every module that an
installed distribution names under the ``visrep.plugins`` entry-point group. Plugin
modules keep heavy imports (torch, faiss, cv2) inside functions, so that listing is
cheap; ``tests/test_core_registry.py`` checks this in a fresh interpreter.

Registration rejects (TypeError) a ``task``, ``output_tasks`` or ``data_tasks`` entry outside the
closed set of :mod:`visrep.tasks`, which also holds the rule of which plugins run together.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from importlib import metadata
from typing import Iterator

from .errors import UserError, did_you_mean
from .params import Param, resolve_params
from .tasks import check_task

KINDS = ("method", "dataset", "protocol")
_PACKAGES = {"method": "visrep.methods", "dataset": "visrep.datasets", "protocol": "visrep.protocols"}
ENTRY_POINT_GROUP = "visrep.plugins"


class Plugin:
    """Base of all plugins: a name, a one-line summary, a citation, declared parameters.

    Instances hold validated parameter values in ``self.cfg`` (defaults filled in).
    """

    kind: str = ""
    name: str = ""
    task: str = ""
    summary: str = ""
    cite: str = ""
    params: tuple[Param, ...] = ()

    def __init__(self, **given):
        self.cfg = resolve_params(self.params, given, f"{self.kind} '{self.name}'")

    @classmethod
    def param_names(cls) -> list[str]:
        return [p.name for p in cls.params]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.cfg.items())
        return f"{type(self).__name__}({args})"


class Registry:
    """Name -> plugin class, filled on first use by importing the plugin package."""

    def __init__(self, kind: str):
        self.kind = kind
        self._plugins: dict[str, type[Plugin]] = {}
        self._discovered = False

    def add(self, cls: type[Plugin]) -> type[Plugin]:
        if not cls.name:
            raise TypeError(f"{cls.__qualname__} must set a non-empty `name`")
        where = f"{self.kind} '{cls.name}' ({cls.__module__}.{cls.__qualname__})"
        check_task(cls.task, where)  # the closed set of visrep/tasks.py
        for attr in ("output_tasks", "data_tasks"):
            if isinstance(getattr(cls, attr, ()), str):
                raise TypeError(f"{where}: `{attr}` must be a tuple of tasks, got a string")
            for extra in getattr(cls, attr, ()) or ():
                check_task(extra, where, f"entry of `{attr}`")
        old = self._plugins.get(cls.name)
        if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"{self.kind} name '{cls.name}' is registered twice: "
                            f"{old.__module__}.{old.__qualname__} and {cls.__module__}.{cls.__qualname__}")
        self._plugins[cls.name] = cls
        return cls

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(_PACKAGES[self.kind])
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            if info.ispkg:  # a chapter room of methods/: its plugins live in <room>/plugins.py
                if importlib.util.find_spec(info.name + ".plugins") is not None:
                    importlib.import_module(info.name + ".plugins")
            else:
                importlib.import_module(info.name)
        load_entry_points()

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._plugins)

    def __iter__(self) -> Iterator[type[Plugin]]:
        return (self._plugins[n] for n in self.names())

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._plugins

    def get(self, name: str) -> type[Plugin]:
        self._discover()
        try:
            return self._plugins[name]
        except KeyError:
            raise UserError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._plugins)}; "
                            f"`visrep list {self.kind}s` shows all") from None

    def create(self, name: str, **params) -> Plugin:
        return self.get(name)(**params)


REGISTRIES = {kind: Registry(kind) for kind in KINDS}
methods = REGISTRIES["method"]
datasets = REGISTRIES["dataset"]
protocols = REGISTRIES["protocol"]

_entry_points_loaded = False


def load_entry_points() -> None:
    """Import the plugin modules that installed distributions declare (group ``visrep.plugins``)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def register(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: add a Method, Dataset or Protocol subclass to its registry."""
    if cls.kind not in REGISTRIES:
        raise TypeError(f"{cls.__qualname__} must derive from Method, Dataset or Protocol")
    return REGISTRIES[cls.kind].add(cls)
