"""The package's shape, read from its source with ``ast`` so that it survives the next change.

- The import rule: ``cycnn.nn`` imports nothing from the other subpackages; ``data`` and ``io`` use only ``nn``;
  ``train`` uses ``nn``, ``data`` and ``io``; ``viz`` may use all of those and ``cli`` sits on top.
- No import cycle anywhere between cycnn's modules, counting the imports inside functions.
- Size: no function over 60 lines, no module over 400 lines.
"""
import ast
from importlib import resources
from pathlib import Path

import pytest

PACKAGE = Path(str(resources.files("cycnn")))
# What each subpackage may import from cycnn besides itself; "cycnn.errors" and "cycnn.version" are leaves for all.
ALLOWED = {
    "nn": set(),
    "data": {"nn"},
    "io": {"nn"},
    "train": {"nn", "data", "io"},
    "viz": {"nn", "data", "io", "train"},
    "cli": {"nn", "data", "io", "train", "viz"},
}
LEAVES = {"cycnn.errors", "cycnn.version"}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name):
    """The cycnn modules ``name`` imports (``from cycnn.x import y`` counts as cycnn.x.y when that is a module)."""
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cycnn"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cycnn":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    found.add(full)
                elif not alias.name.startswith("_"):  # a name defined in the module (not a compiled kernel)
                    found.add(node.module)
    return found - {name}


def subpackage(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_import_names_a_module_of_the_package():
    for name in MODULES:
        for target in imports_of(name):
            assert target in MODULES, f"{name} imports {target}, which is not a module of cycnn"


@pytest.mark.parametrize("name", [n for n in MODULES if subpackage(n)])
def test_the_import_rule_holds(name):
    own = subpackage(name)
    for target in imports_of(name) - LEAVES:
        other = subpackage(target)
        assert other == own or other in ALLOWED[own], f"{name} (cycnn.{own}) may not import {target}"


def test_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_rule_and_the_cycle_check_would_catch_a_violation(tmp_path, monkeypatch):
    """The checks read real import statements, including one hidden in a function."""
    source = "def f():\n    from cycnn.train.trainer import Trainer\n"
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "cycnn.nn.fake", fake)
    assert "cycnn.train.trainer" in imports_of("cycnn.nn.fake")
    with pytest.raises(AssertionError, match="may not import"):
        test_the_import_rule_holds("cycnn.nn.fake")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_and_modules_are_short(name):
    text = MODULES[name].read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_FUNCTION_LINES, f"{name}.{node.name} has {lines} lines"


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages by name: a new subpackage missing there imports from a source tree but
    not from an installed cycnn (as CI runs it)."""
    import tomllib
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    listed = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
