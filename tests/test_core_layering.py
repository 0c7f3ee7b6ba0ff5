"""The core imports no plugin and no report; the CLI (visrep/commands/) imports them only inside handlers.

Plugins reach the core through the registries (``visrep.registry`` imports the plugin
packages by name at run time), never through an import statement of a core module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "visrep"
OUTER = ("visrep.methods", "visrep.datasets", "visrep.protocols", "visrep.reports")


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The absolute module names an Import/ImportFrom node brings in (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # `from visrep import methods` imports visrep.methods as much as `import visrep.methods`
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def _outer(names: list[str]) -> list[str]:
    return [n for n in names if any(n == o or n.startswith(o + ".") for o in OUTER)]


def _imports(path: Path, top_level_only: bool) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module, is_package = _module_name(path), path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if not (top_level_only and inside):
                found.extend((child.lineno, n) for n in _outer(_imported(child, module, is_package)))
            visit(child, inside)

    visit(tree, False)
    return found


CORE_MODULES = sorted(p for p in CORE.rglob("*.py") if "commands" not in p.relative_to(CORE).parts)
COMMAND_MODULES = sorted((CORE / "commands").rglob("*.py"))


def test_the_module_lists_are_not_empty():
    assert any(p.name == "registry.py" for p in CORE_MODULES)
    assert any(p.name == "run.py" for p in COMMAND_MODULES)


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE.parent)))
def test_core_imports_no_plugin_and_no_report(path):
    bad = _imports(path, top_level_only=False)
    assert not bad, f"{path.relative_to(CORE.parent)} imports " + ", ".join(f"{n} (line {i})" for i, n in bad) + \
        ": the core reaches plugins through visrep.registry only; move the code to the plugin or report side"


@pytest.mark.parametrize("path", COMMAND_MODULES, ids=lambda p: str(p.relative_to(CORE.parent)))
def test_commands_import_plugins_and_reports_only_inside_functions(path):
    bad = _imports(path, top_level_only=True)
    assert not bad, f"{path.relative_to(CORE.parent)} imports " + ", ".join(f"{n} (line {i})" for i, n in bad) + \
        " at module level: import them inside the handler so that building the parser stays cheap"


def test_the_checker_resolves_relative_and_nested_imports():
    src = ("from ..reports.tables import list_tables\n"
           "def f():\n    from ..methods.search import knn\n    import visrep.datasets.cub\n"
           "from visrep import protocols\nfrom . import Command\nimport visrep.registry\n")
    tree = ast.parse(src)
    names = [n for node in ast.walk(tree) for n in _outer(_imported(node, "visrep.commands.probe", False))]
    assert set(names) == {"visrep.reports.tables", "visrep.reports.tables.list_tables", "visrep.protocols",
                          "visrep.methods.search", "visrep.methods.search.knn", "visrep.datasets.cub"}
    top = [n for node in tree.body for n in _outer(_imported(node, "visrep.commands.probe", False))]
    assert "visrep.methods.search" not in top and "visrep.protocols" in top
    assert _outer(_imported(ast.parse("from .reports import tables").body[0], "visrep.spec", False)) == [
        "visrep.reports", "visrep.reports.tables"]
    assert _outer(_imported(ast.parse("from .reports import tables").body[0], "visrep", True)) == [
        "visrep.reports", "visrep.reports.tables"]
