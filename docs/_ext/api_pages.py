"""Writes the API reference sources (``docs/api/``) from the package's ``__all__``.

At ``config-inited``, before Sphinx looks for the sources (and so before
autosummary reads them), this extension imports the installed
:mod:`flexcmh_fast` and writes

* ``api/index.rst``: every name of ``flexcmh_fast.__all__``, grouped by what
  it is (estimators, search, functions, exceptions and warnings), and the
  list of the public submodules;
* ``api/<module>.rst`` for every public submodule: its docstring and every
  name of its ``__all__``.

autosummary then writes one page per object (``api/generated/``).  A name
added to an ``__all__`` gets its page at the next build; nothing here lists
names.  Each object is documented once, under the first public name that
exports it (the top level first, then the submodules in order); another
module exporting it links there.  A public submodule is one listed in an
``__all__``, or a module of the package without a leading underscore in its
dotted path whose ``__all__`` exports an object not documented elsewhere
(the method subpackages only re-export the top-level estimators, so they get
no page).  ``docs/check_api_coverage.py`` checks the built site against the
``__all__`` lists.

Docstrings name public objects by short names (``:meth:`HammingIndex.search```
inside :mod:`flexcmh_fast.distributed`) or by a name that re-exports them; a
Python cross-reference that Sphinx cannot resolve is looked up once more as a
public name, relative to the docstring's module or to the package, and
resolved to where that object is documented, before it counts as missing.
"""
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

PACKAGE = "flexcmh_fast"
GENERATED_NOTE = ".. This file is written by docs/_ext/api_pages.py at every build: do not edit."

# Modules that hold the Hamming search engine: before the search subpackage
# (``flexcmh_fast.search``) they were private top-level modules.
_SEARCH_MODULES = ("flexcmh_fast.search", "flexcmh_fast._index", "flexcmh_fast._codes",
                   "flexcmh_fast._mih")


def _is_estimator(obj):
    return inspect.isclass(obj) and callable(getattr(obj, "fit", None)) \
        and callable(getattr(obj, "encode", None))


def _is_search(obj):
    module = getattr(obj, "__module__", "") or ""
    return any(module == m or module.startswith(m + ".") for m in _SEARCH_MODULES)


def _is_exception(obj):
    return inspect.isclass(obj) and issubclass(obj, BaseException)


# Groups of the package's top-level names, first match wins.
_TOP_GROUPS = (
    ("Estimators", "Hashing methods with the scikit-learn estimator interface: "
                   "``fit``, ``encode`` / ``transform``, ``save``, ``get_params`` / "
                   "``set_params``.", _is_estimator),
    ("Exact Hamming search", "The search engine and the packed code layout it reads.",
     lambda obj: _is_search(obj) and not _is_exception(obj)),
    ("Exceptions and warnings", None, _is_exception),
    ("Functions", None, inspect.isroutine),
    ("Classes and constants", None, lambda obj: True),
)


def public_names(module):
    """``module.__all__`` as (name, object) pairs, in the order written."""
    return [(name, getattr(module, name)) for name in module.__all__]


def _walk_public_modules(package):
    """Every importable module under ``package`` without a leading underscore
    in its dotted path."""
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional dependency is missing: nothing to document
            continue


def plan_pages(package):
    """The submodules that get a page, and where each object is documented.

    Returns ``(modules, home)``: the public submodules in page order, and
    ``{id(object): qualified name}`` of the one entry of every public object.
    """
    home = {}

    def claim(module):
        for name, obj in public_names(module):
            if not isinstance(obj, types.ModuleType):
                home.setdefault(id(obj), f"{module.__name__}.{name}")

    claim(package)
    modules, seen = [], set()
    queue = [obj for _, obj in public_names(package) if isinstance(obj, types.ModuleType)]
    while queue:
        module = queue.pop(0)
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        modules.append(module)
        claim(module)
        queue += [obj for _, obj in public_names(module) if isinstance(obj, types.ModuleType)]
    for module in _walk_public_modules(package):
        if module.__name__ in seen or not hasattr(module, "__all__"):
            continue
        if any(id(obj) not in home for _, obj in public_names(module)
               if not isinstance(obj, types.ModuleType)):
            modules.append(module)
            seen.add(module.__name__)
            claim(module)
    return modules, home


def _autosummary(names):
    lines = [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
    lines += [f"   {name}" for name in names]
    return lines + [""]


def _heading(text, char):
    return [text, char * len(text), ""]


def _relative(module_name):
    # autosummary entries are relative to the current module.
    return module_name[len(PACKAGE) + 1:]


def _index_page(package, modules):
    lines = [GENERATED_NOTE, "", ".. _api:", ""]
    lines += _heading("API reference", "=")
    lines += [f".. module:: {PACKAGE}", "", f".. currentmodule:: {PACKAGE}", ""]
    lines += [
        f"Every public name of ``{PACKAGE}``, from the package's ``__all__`` and those of "
        "its public submodules.  The names below are imported with "
        f"``import {PACKAGE} as fc`` (``fc.FlexCMH``, ``fc.HammingIndex``, ...); each "
        "submodule has its own page.", ""]
    remaining = [(name, obj) for name, obj in public_names(package)
                 if not isinstance(obj, types.ModuleType)]
    for title, blurb, test in _TOP_GROUPS:
        group = [name for name, obj in remaining if test(obj)]
        if not group:
            continue
        remaining = [(name, obj) for name, obj in remaining if name not in group]
        lines += _heading(title, "-")
        if blurb:
            lines += [blurb, ""]
        lines += _autosummary(group)
    lines += _heading("Submodules", "-")
    lines += [".. autosummary::", ""]
    lines += [f"   {_relative(module.__name__)}" for module in modules]
    lines += ["", ".. toctree::", "   :hidden:", ""]
    lines += [f"   {module.__name__}" for module in modules]
    return "\n".join(lines) + "\n"


def _kind(obj):
    if isinstance(obj, types.ModuleType):
        return "Submodules"
    if _is_exception(obj):
        return "Exceptions and warnings"
    if inspect.isclass(obj):
        return "Classes"
    if inspect.isroutine(obj):
        return "Functions"
    return "Constants"


def _module_page(module, home):
    lines = [GENERATED_NOTE, ""]
    lines += _heading(f"``{module.__name__}``", "=")
    lines += [f".. automodule:: {module.__name__}", "   :no-members:", "",
              f".. currentmodule:: {module.__name__}", ""]
    by_kind, elsewhere = {}, []
    for name, obj in public_names(module):
        qualified = f"{module.__name__}.{name}"
        if isinstance(obj, types.ModuleType) or home.get(id(obj)) == qualified:
            by_kind.setdefault(_kind(obj), []).append(name)
        else:
            elsewhere.append((name, home[id(obj)]))
    for kind in ("Classes", "Functions", "Constants", "Exceptions and warnings"):
        if kind in by_kind:
            lines += [f".. rubric:: {kind}", ""] + _autosummary(by_kind[kind])
    if "Submodules" in by_kind:
        lines += [".. rubric:: Submodules", "", ".. autosummary::", ""]
        lines += [f"   {name}" for name in by_kind["Submodules"]] + [""]
    if elsewhere:
        lines += [".. rubric:: Also exported here", ""]
        lines += [f"* ``{name}``: :obj:`{qualified}`" for name, qualified in elsewhere] + [""]
    return "\n".join(lines) + "\n"


def _write_if_changed(path, text):
    # Unchanged sources keep their time stamps: incremental builds stay incremental.
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


# Every public qualified name -> the qualified name its object is documented
# under (filled when the sources are written, read when references resolve).
_ALIASES = {}


def write_api_sources(app, config):
    package = importlib.import_module(PACKAGE)
    out = Path(app.srcdir) / "api"
    out.mkdir(exist_ok=True)
    modules, home = plan_pages(package)
    _ALIASES.clear()
    for module in (package, *modules):
        for name, obj in public_names(module):
            if not isinstance(obj, types.ModuleType):
                _ALIASES[f"{module.__name__}.{name}"] = home[id(obj)]
    _write_if_changed(out / "index.rst", _index_page(package, modules))
    for module in modules:
        _write_if_changed(out / f"{module.__name__}.rst", _module_page(module, home))


def _documented_name(name):
    """``name`` with its longest public-name prefix replaced by the name its
    object is documented under, or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        home = _ALIASES.get(".".join(parts[:end]))
        if home is not None:
            return ".".join([home, *parts[end:]])
    return None


def resolve_public_name(app, env, node, contnode):
    """``missing-reference``: resolve a short or re-exported public name."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target, f"{PACKAGE}.{target}"]
    if node.get("py:module"):
        candidates.insert(1, f"{node['py:module']}.{target}")
    domain = env.get_domain("py")
    for candidate in candidates:
        documented = _documented_name(candidate)
        if documented is None:
            continue
        resolved = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                       documented, node, contnode)
        if resolved is not None:
            return resolved
    return None


def setup(app):
    app.connect("config-inited", write_api_sources)
    app.connect("missing-reference", resolve_public_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
