"""Fail when a public name has no entry in the built site's API reference.

Usage, after ``sphinx-build -W -b html docs docs/_build/html``::

    python docs/check_api_coverage.py [docs/_build/html]

The public names are read when this runs, from the installed package:
``flexcmh_fast.__all__`` and the ``__all__`` of every public submodule (one
listed in an ``__all__``, or any module of the package whose dotted path has
no part starting with ``_``; a module without ``__all__`` declares nothing).
The entries are read from the site's ``objects.inv``, the inventory Sphinx
writes of every documented object.

A name passes when the inventory has a Python entry for it under its module
(``flexcmh_fast.metrics.average_precision``), or for the same object under
another public name (``flexcmh_fast.baselines.CCAITQ`` is documented as
``flexcmh_fast.CCAITQ``), and the entry's page exists.  A submodule listed in
an ``__all__`` needs its module entry.  Exit status 1 lists what is missing.
"""
import importlib
import pkgutil
import posixpath
import sys
import types
from pathlib import Path

from sphinx.util.inventory import InventoryFile

PACKAGE = "flexcmh_fast"


def public_modules(package):
    """Every public module of ``package``, by dotted name."""
    modules = {package.__name__: package}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            modules[info.name] = importlib.import_module(info.name)
    queue = list(modules.values())
    while queue:  # modules listed in an __all__, wherever they live
        module = queue.pop()
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) and value.__name__ not in modules:
                modules[value.__name__] = value
                queue.append(value)
    return modules


def documented_entries(html):
    """``{qualified name: page path}`` of the Python entries of the site."""
    with open(html / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", posixpath.join)
    entries = {}
    for role, items in inventory.items():
        if role.startswith("py:"):
            for name, item in items.items():
                uri = item.uri if hasattr(item, "uri") else item[2]
                entries[name] = uri.split("#")[0]
    return entries


def main(argv):
    html = Path(argv[1] if len(argv) > 1 else "docs/_build/html")
    if not (html / "objects.inv").is_file():
        sys.exit(f"check_api_coverage.py: no objects.inv in {html}; build the site first")
    modules = public_modules(importlib.import_module(PACKAGE))
    public = [(module_name, name, getattr(module, name))
              for module_name, module in sorted(modules.items())
              for name in getattr(module, "__all__", ())]
    entries = documented_entries(html)

    def documented(qualified):
        return qualified in entries and (html / entries[qualified]).is_file()

    missing = []
    for module_name, name, value in public:
        if isinstance(value, types.ModuleType):
            names = [value.__name__]
        else:
            names = [f"{other_module}.{other}" for other_module, other, other_value in public
                     if other_value is value]
        if not any(documented(qualified) for qualified in names):
            missing.append(f"{module_name}.{name}")
    if missing:
        print(f"{len(missing)} public name(s) without an API reference entry in {html}:")
        for qualified in missing:
            print(f"  {qualified}")
        print("Each name of an __all__ gets its page from docs/_ext/api_pages.py at the "
              "next build; a name missing here was left out of the generated sources or "
              "failed to document.")
        return 1
    with_all = sum(hasattr(module, "__all__") for module in modules.values())
    print(f"API coverage: all {len(public)} names of {with_all} __all__ lists "
          f"({', '.join(sorted(m for m in modules if hasattr(modules[m], '__all__')))}) "
          f"have an entry in {html / 'objects.inv'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
