"""The package's layout: no import cycle between its modules, and their imports of each other at the top.

An import inside a function hides a dependency from the reader of the module's first lines, and can hide an
import cycle. The few that stay are deliberate, each listed below with the reason it cannot be at the top.
"""

from __future__ import annotations

import ast
import pathlib

import dpsd_lite

PACKAGE = pathlib.Path(dpsd_lite.__file__).parent

# (module, function, module it imports): imports of the package's own modules inside functions, on purpose
DELIBERATE = {
    ("dpsd_lite", "__getattr__", "dpsd_lite.runs"): "`import dpsd_lite` must not import torch",
    ("dpsd_lite.cli", "main", "dpsd_lite.commands"): "--help and argument errors answer without importing torch",
    ("dpsd_lite.config", "_native_bfloat16", "dpsd_lite.utils"): "config stays torch-free: the CLI checks --set with it",
}

PENDING = {}  # imports that should move to the top, with the change that will move them
PENDING_CYCLES = []  # cycles that should go, likewise


def _modules() -> dict:
    """{dotted module name: path} of every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imported(module: str, path: pathlib.Path, node) -> set:
    """The package modules an import statement in ``module`` loads (a name of a package may be a module)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "dpsd_lite" and a.name in MODULES}
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "dpsd_lite":
        return set()
    found = {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    # a module's own package (e.g. `from . import __version__`) is no edge: Python ran its __init__ first
    return {m for m in found if m in MODULES and not module.startswith(m + ".")}


def _imports():
    """Every import of a package module: (module, enclosing function or None, imported module, statement)."""
    rows = []
    for module, path in MODULES.items():
        def visit(node, function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, f"{function}.{child.name}" if function else child.name)
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{function}.{child.name}" if function else child.name)
                elif isinstance(child, (ast.Import, ast.ImportFrom)):
                    rows.extend((module, function, target, child) for target in _imported(module, path, child))
                else:
                    visit(child, function)

        visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return rows


IMPORTS = _imports()


def _function(name: str | None) -> str | None:
    """A method's import is keyed by its function's name alone (``Dashboard._work`` → ``_work``)."""
    return name.rsplit(".", 1)[-1] if name else name


def test_imports_of_the_package_are_at_the_top_of_each_module():
    inside = {(m, _function(f), t) for m, f, t, _ in IMPORTS if f is not None}
    allowed = set(DELIBERATE) | set(PENDING)
    unexpected = sorted(f"{m}.{f} imports {t}" for m, f, t in inside - allowed)
    assert not unexpected, ("imports of the package's own modules inside functions (move them to the module's top, "
                            "or add them to DELIBERATE with the reason):\n" + "\n".join(unexpected))
    stale = sorted(f"{m}.{f} imports {t}" for m, f, t in allowed - inside)
    assert not stale, "no longer inside a function, remove from DELIBERATE or PENDING:\n" + "\n".join(stale)


def test_module_level_imports_of_the_package_come_before_any_code():
    """At the top means in the import block: not after a constant or a function a reader has passed."""
    late = []
    for module, path in MODULES.items():
        body = ast.parse(path.read_text(encoding="utf-8")).body
        seen_code = None
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if seen_code is not None and _imported(module, path, node):
                    late.append(f"{module}, line {node.lineno}: after line {seen_code}")
            elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring
                seen_code = seen_code or node.lineno
    assert not late, "imports of the package below the module's code:\n" + "\n".join(late)


def _cycles(edges: dict) -> list:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(set(edges).union(*edges.values())):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_between_the_package_modules():
    """Over every import, at the top or inside a function: a cycle is a cycle even when an import hides in one."""
    edges = {}
    for module, _, target, _ in IMPORTS:
        edges.setdefault(module, set()).add(target)
    cycles = _cycles(edges)
    unexpected = [sorted(c) for c in cycles if c not in PENDING_CYCLES]
    assert not unexpected, f"import cycles between the package's modules: {unexpected}"
    resolved = [sorted(c) for c in PENDING_CYCLES if c not in cycles]
    assert not resolved, f"no longer a cycle, remove from PENDING_CYCLES: {resolved}"


def test_the_checks_see_imports_inside_functions_and_cycles():
    """The checks themselves: they find what they look for (a check that finds nothing proves nothing)."""
    assert ("dpsd_lite.cli", "main", "dpsd_lite.commands") in {(m, f, t) for m, f, t, _ in IMPORTS}
    assert ("dpsd_lite.commands", None, "dpsd_lite.transcribe") in {(m, f, t) for m, f, t, _ in IMPORTS}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": {"c"}}) == []
