"""No import cycle between the modules of ``flexcmh_fast``.

The graph is read from the source tree with :mod:`ast` (nothing is
imported), so it also covers modules that need optional dependencies.

Nodes
    Every module of the package: each ``.py`` file (a package is its
    ``__init__.py``), plus compiled extension modules as leaves (their
    imports cannot be read from Python source).

Edges: module ``A`` imports module ``B`` when ``A`` holds, at module level,
inside a function or class, or in any branch of an ``if`` / ``try``,

- ``import B`` or ``import B as x``;
- ``from B import name`` (``name`` not a submodule of ``B``), or
  ``from P import name`` with ``B = P.name`` a submodule of ``P``;
- ``importlib.import_module("B")`` (or ``import_module``) with a literal
  string; a relative literal is resolved against its ``package`` argument,
  which must be a literal, ``__name__`` or ``__package__`` (anything else
  fails the test, so no literal import can go unseen).

Relative imports are resolved against the importing module's package.
Imports under ``if TYPE_CHECKING:`` are skipped (they never run).
``importlib.import_module`` with a computed name (the lazy attributes of
``flexcmh_fast/__init__.py``, the registry's ``"module:attr"`` strings) is
not an edge: those imports run on first use of an attribute, never while a
module is being imported.

Package ``__init__`` files count: importing ``a.b.c`` runs ``a``, ``a.b``
and ``a.b.c``, so the edge goes to all three, except to the importer itself
and to the importer's own enclosing packages.  Those *parent-package edges*
are not counted because Python initialises a package before any of its
submodules: when ``a.b.c`` runs, ``a`` and ``a.b`` have already started, so
the implicit import of a module's own parents can never be the import that
closes a cycle; counting it would flag every package whose ``__init__``
imports one of its submodules (``pkg/__init__.py: from ._mod import X``,
with ``pkg._mod`` implicitly importing ``pkg``), which is the ordinary
structure.  Hence ``from . import _tuning`` in ``pkg/_mod.py`` is an edge
to ``pkg._tuning`` only.

An explicit import of a *name defined in* one of the importer's parent
packages (``from .. import __version__``, ``from . import SomeClass`` in
``pkg/_mod.py``, ``import flexcmh_fast`` inside the package) is counted:
it reads the parent's ``__init__``, which may not have run that far yet.
"""
import ast
import textwrap
from pathlib import Path

import pytest

import flexcmh_fast

PACKAGE_DIR = Path(flexcmh_fast.__file__).resolve().parent
_EXTENSION_SUFFIXES = (".so", ".pyd")


def _module_names(root):
    """``{module name: path of its source or None (extension)}`` under the
    package folder ``root``."""
    base = root.name
    modules = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        rel = path.relative_to(root)
        if path.suffix == ".py":
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([base] + parts)] = path
        elif path.suffix in _EXTENSION_SUFFIXES:
            stem = path.name.split(".")[0]  # _hamming.cpython-311-x86_64-linux-gnu.so
            modules[".".join([base] + list(rel.parent.parts) + [stem])] = None
    return modules


def _ancestors(name):
    """``"a.b.c"`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    """Collects ``(target module, explicit, line)`` of every import of one
    module; ``explicit`` marks a name read from ``target`` itself (as
    opposed to a submodule imported through it)."""

    def __init__(self, module, is_package, modules):
        self.module, self.modules = module, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.found, self.errors = [], []

    def _resolve(self, name, level, line):
        if level == 0:
            return name
        parts = self.package.split(".")
        if level - 1 >= len(parts):
            self.errors.append(f"{self.module}:{line}: relative import beyond the top")
            return None
        base = ".".join(parts[:len(parts) - (level - 1)])
        return f"{base}.{name}" if name else base

    def visit_If(self, node):
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self.found.append((alias.name, True, node.lineno))

    def visit_ImportFrom(self, node):
        base = self._resolve(node.module or "", node.level, node.lineno)
        if base is None:
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and sub in self.modules:
                self.found.append((sub, False, node.lineno))
            else:
                self.found.append((base, True, node.lineno))

    def visit_Call(self, node):
        func = node.func
        is_import_module = (
            (isinstance(func, ast.Attribute) and func.attr == "import_module"
             and isinstance(func.value, ast.Name) and func.value.id == "importlib")
            or (isinstance(func, ast.Name) and func.id == "import_module"))
        if is_import_module and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self._literal_import_module(node)
        self.generic_visit(node)

    def _literal_import_module(self, node):
        name = node.args[0].value
        level = len(name) - len(name.lstrip("."))
        if level == 0:
            self.found.append((name, True, node.lineno))
            return
        package = node.args[1] if len(node.args) > 1 else next(
            (kw.value for kw in node.keywords if kw.arg == "package"), None)
        if isinstance(package, ast.Constant) and isinstance(package.value, str):
            anchor = package.value
        elif isinstance(package, ast.Name) and package.id in ("__name__", "__package__"):
            anchor = self.module if package.id == "__name__" else self.package
        else:
            self.errors.append(f"{self.module}:{node.lineno}: import_module({name!r}) "
                               "with a package argument that cannot be read from the source")
            return
        parts = anchor.split(".")
        base = ".".join(parts[:len(parts) - (level - 1)])
        rest = name[level:]
        self.found.append((f"{base}.{rest}" if rest else base, True, node.lineno))


def import_graph(root):
    """``(edges, errors)``: ``edges[A] = {B: "file:line", ...}`` between the
    modules of the package at ``root`` (rules in the module docstring)."""
    modules = _module_names(root)
    edges = {name: {} for name in modules}
    errors = []
    for module, path in modules.items():
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        collector = _ImportCollector(module, path.name == "__init__.py", modules)
        collector.visit(tree)
        errors += collector.errors
        own_parents = set(_ancestors(module))
        for target, explicit, line in collector.found:
            chain = [t for t in _ancestors(target) + [target] if t in modules]
            for node in chain:
                if node == module:
                    continue
                if node in own_parents and not (explicit and node == target):
                    continue  # parent-package edge (see the module docstring)
                edges[module].setdefault(
                    node, f"{path.relative_to(root.parent)}:{line}")
    return edges, errors


def find_cycle(edges):
    """One cycle of the graph as ``[a, b, ..., a]``, or None."""
    state = {}  # node -> 1 on the current path, 2 done
    for start in sorted(edges):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(edges[nxt])))
    return None


def _describe_cycle(cycle, edges):
    return "\n".join(f"  {a} -> {b}  ({edges[a][b]})" for a, b in zip(cycle, cycle[1:]))


def test_the_package_has_no_import_cycle():
    edges, errors = import_graph(PACKAGE_DIR)
    assert not errors, "\n".join(errors)
    assert len(edges) > 30 and any(edges.values())  # the tree was read
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle:\n" + _describe_cycle(cycle, edges)


def _reachable(edges, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("module", ["_registry", "_validation", "_params", "_state_checks",
                                    "_persist", "_base"])
def test_shared_modules_import_no_method_package(module):
    """The shared layers (registry, validation, parameter tables, the state
    checks' helpers, the file format, the estimator base) reach no method
    package, not even through other modules."""
    edges, _ = import_graph(PACKAGE_DIR)
    methods = ("flexcmh_fast.flexcmh", "flexcmh_fast.csmh", "flexcmh_fast.baselines")
    reached = _reachable(edges, f"flexcmh_fast.{module}")
    assert not sorted(m for m in reached if m.startswith(methods))


# ---------------------------------------------------------------- the checker itself
def _package(tmp_path, files):
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _cycle(tmp_path, files):
    edges, errors = import_graph(_package(tmp_path, files))
    assert not errors
    return find_cycle(edges)


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    cycle = _cycle(tmp_path, {
        "__init__.py": "",
        "_a.py": "from ._b import g\n",
        "_b.py": "def g():\n    from ._a import f\n",
    })
    assert cycle is not None and set(cycle) == {"pkg._a", "pkg._b"}


def test_checker_finds_a_cycle_through_import_module_and_init_files(tmp_path):
    # pkg._a imports pkg.sub.x: that runs pkg/sub/__init__.py, which imports pkg._a.
    cycle = _cycle(tmp_path, {
        "__init__.py": "",
        "_a.py": "import importlib\n\ndef f():\n"
                 "    return importlib.import_module('.sub.x', __package__)\n",
        "sub/__init__.py": "from .. import _a\n",
        "sub/x.py": "",
    })
    assert cycle is not None and set(cycle) == {"pkg._a", "pkg.sub"}


def test_checker_counts_a_name_read_from_the_parent_package(tmp_path):
    cycle = _cycle(tmp_path, {
        "__init__.py": "from ._a import f\nVERSION = 1\n",
        "_a.py": "def f():\n    from . import VERSION\n",
    })
    assert cycle == ["pkg", "pkg._a", "pkg"] or cycle == ["pkg._a", "pkg", "pkg._a"]


def test_checker_skips_parent_package_edges_and_type_checking(tmp_path):
    edges, errors = import_graph(_package(tmp_path, {
        "__init__.py": "from ._a import f\n",
        "_a.py": "from typing import TYPE_CHECKING\nfrom . import _b\n"
                 "if TYPE_CHECKING:\n    from . import f\nelse:\n    import os\n",
        "_b.py": "import pkg._c\n",  # runs pkg too, but pkg is _b's own parent
        "_c.py": "import typing\nif typing.TYPE_CHECKING:\n    from ._a import f\n",
    }))
    assert not errors
    assert {a: set(b) for a, b in edges.items()} == {
        "pkg": {"pkg._a"}, "pkg._a": {"pkg._b"}, "pkg._b": {"pkg._c"}, "pkg._c": set()}
    assert find_cycle(edges) is None


def test_checker_refuses_an_unreadable_relative_import_module(tmp_path):
    edges, errors = import_graph(_package(tmp_path, {
        "__init__.py": "",
        "_a.py": "import importlib\nP = 'pkg'\nimportlib.import_module('._b', P)\n",
        "_b.py": "",
    }))
    assert len(errors) == 1 and "cannot be read from the source" in errors[0]


@pytest.mark.parametrize("line", ["from ._b import x", "from . import _b",
                                  "import pkg._b", "import importlib; "
                                  "importlib.import_module('pkg._b')"])
def test_checker_reads_every_import_form(tmp_path, line):
    edges, _ = import_graph(_package(tmp_path, {
        "__init__.py": "", "_a.py": line + "\n", "_b.py": "x = 1\n"}))
    assert set(edges["pkg._a"]) == {"pkg._b"}
