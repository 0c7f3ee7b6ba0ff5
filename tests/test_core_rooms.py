"""The shape of methods/: one room per chapter, kernels apart from plugins, one name for one thing.

Each room holds kernel modules (arrays in, arrays out: no registry, no run context, no plugin
configuration), at most one ``pipeline.py`` (family base classes) and one ``plugins.py`` (every
``@register`` class of the chapter, and nothing numerical).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from visrep.registry import methods

METHODS = Path(__file__).resolve().parent.parent / "methods"
ROOMS = sorted(p.parent.name for p in METHODS.glob("*/__init__.py"))


def _modules():
    for room in ROOMS:
        for f in sorted((METHODS / room).glob("*.py")):
            if f.name != "__init__.py":
                yield room, f


def _registers(tree) -> bool:
    return any(isinstance(n, ast.ClassDef) and any(
        (isinstance(d, ast.Name) and d.id == "register") for d in n.decorator_list) for n in tree.body)


def test_no_flat_modules_and_every_room_has_plugins():
    assert not [p.name for p in METHODS.glob("*.py") if p.name != "__init__.py"], "methods/ holds rooms only"
    assert set(ROOMS) >= {"search", "local", "spatial", "compact", "cnn", "manifolds", "learning", "attacks"}
    for room in ROOMS:
        assert (METHODS / room / "plugins.py").exists(), f"methods/{room}/ has no plugins.py"


@pytest.mark.parametrize("room,path", list(_modules()), ids=lambda x: getattr(x, "name", x))
def test_kernels_apart_from_plugins(room, path):
    tree = ast.parse(path.read_text())
    if path.name == "plugins.py":
        # registered classes, their private bases and parameter tuples; no numerical function
        funcs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        assert not funcs, f"{room}/plugins.py defines functions {funcs}: kernels belong in a module beside it"
        return
    assert not _registers(tree), f"{room}/{path.name} registers a plugin: plugins belong in {room}/plugins.py"
    if path.name == "pipeline.py":
        return
    src = path.read_text()
    for bad in ("visrep.registry", "visrep.api", "ctx.", "self.cfg", "cfg["):
        assert bad not in src, f"kernel module {room}/{path.name} uses {bad!r} (kernels: arrays in, arrays out)"


def test_plugin_classes_are_named_after_their_registered_name():
    for cls in methods:
        if not cls.__module__.startswith("visrep.methods."):
            continue   # outside plugins (entry points, the test plugin) choose their own layout
        assert cls.__name__.lower() == cls.name.replace("-", "").lower(), (cls.name, cls.__name__)
        assert cls.__module__.endswith(".plugins"), f"{cls.name} is registered outside a plugins.py"


def test_one_name_for_one_thing():
    """A top-level name is defined in one kernel/pipeline module of methods/ only."""
    seen: dict[str, str] = {}
    dup = []
    for room, path in _modules():
        if path.name == "plugins.py":
            continue
        for n in ast.parse(path.read_text()).body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
                where = f"{room}/{path.name}"
                if n.name in seen:
                    dup.append(f"{n.name}: {seen[n.name]} and {where}")
                seen[n.name] = where
    assert not dup, dup
