"""The public namespace: what ``flexcmh_fast`` and its public submodules
export, ``dir()``, ``from flexcmh_fast import *``, and which parts import
without the optional Dask extra (simulated in a fresh interpreter by an
import hook that makes ``dask`` and ``distributed`` fail to import)."""
import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import flexcmh_fast as fc
import flexcmh_fast.search

# Public submodules that must declare __all__.
DECLARED = {"search", "metrics", "datasets", "scenarios", "distributed", "flexcmh", "csmh",
            "baselines"}

# Prepended to the code of a fresh interpreter: Dask is not installed.
WITHOUT_DASK = '''
import importlib.abc, sys

class NoDask(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoDask())
'''


def run_python(code, cwd):
    """Run ``code`` in a fresh interpreter that imports the same flexcmh_fast as this test."""
    env = dict(os.environ, PYTHONPATH=str(Path(fc.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def public_submodules():
    """Names of every public (no part starting with ``_``) module under flexcmh_fast."""
    names = []
    for info in pkgutil.walk_packages(fc.__path__, "flexcmh_fast.",
                                      onerror=lambda name: None):
        parts = info.name.split(".")[1:]
        if not any(part.startswith("_") for part in parts):
            names.append(info.name)
    return names


def test_search_names_are_the_package_names():
    assert flexcmh_fast.search.HammingIndex is fc.HammingIndex
    assert flexcmh_fast.search.pack_codes is fc.pack_codes
    assert flexcmh_fast.search.unpack_codes is fc.unpack_codes
    assert fc.search is flexcmh_fast.search


def test_distributed_reexports_the_sharded_index():
    pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    from flexcmh_fast import distributed

    assert distributed.ShardedHammingIndex is flexcmh_fast.search.ShardedHammingIndex
    assert callable(distributed.encode) and callable(distributed.train)


def test_dir_lists_public_names_only():
    # Import private modules first: importing a submodule binds it as an
    # attribute of the package, which dir() must still not show.
    for name in ("_validation", "_persist", "search._index", "search._layout", "_train"):
        importlib.import_module("flexcmh_fast." + name)
    for name in ("train", "HammingIndex"):  # lazy attributes, cached once read
        getattr(fc, name)
    names = dir(fc)
    public = [name for name in names if not (name.startswith("__") and name.endswith("__"))]
    assert sorted(public) == sorted(set(fc.__all__) | {"distributed"})
    assert "importlib" not in names and "__version__" in names
    assert not [name for name in public if name.startswith("_")]


def test_all_names_resolve():
    assert len(set(fc.__all__)) == len(fc.__all__)
    for name in fc.__all__:
        assert getattr(fc, name) is not None, name
    assert isinstance(fc.search, types.ModuleType)
    # distributed needs Dask: it is a public submodule, but not in __all__.
    assert "distributed" not in fc.__all__
    checked = set()
    for module_name in public_submodules():
        if module_name.split(".")[1] == "distributed" and importlib.util.find_spec("dask") is None:
            continue
        module = importlib.import_module(module_name)
        if not hasattr(module, "__all__"):
            continue
        checked.add(module_name.removeprefix("flexcmh_fast."))
        assert len(set(module.__all__)) == len(module.__all__), module_name
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module_name}.{name}"
    if importlib.util.find_spec("dask") is None:
        checked.add("distributed")
    assert DECLARED <= checked


def test_star_import_imports_all_and_not_dask(tmp_path):
    code = (
        "import sys\n"
        "from flexcmh_fast import *\n"
        "import flexcmh_fast as fc\n"
        "names = set(globals())\n"
        "missing = [n for n in fc.__all__ if n not in names]\n"
        "assert not missing, missing\n"
        "assert HammingIndex is search.HammingIndex\n"
        "assert 'distributed' not in names\n"
        "dask = sorted(k for k in sys.modules if k.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not dask, dask\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_star_import_without_dask(tmp_path):
    code = WITHOUT_DASK + (
        "from flexcmh_fast import *\n"
        "import flexcmh_fast as fc\n"
        "assert all(name in globals() for name in fc.__all__)\n"
        "try:\n"
        "    import dask\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('the import hook did not block dask')\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_search_without_dask(tmp_path):
    code = WITHOUT_DASK + (
        "import numpy as np\n"
        "from flexcmh_fast.search import *\n"
        "import flexcmh_fast.search as search\n"
        "assert all(name in globals() for name in search.__all__)\n"
        "codes = pack_codes(np.eye(4, 12, dtype=np.int8))\n"
        "dist, ids = HammingIndex(codes, n_bits=12).search(codes[:2], 1)\n"
        "assert ids.ravel().tolist() == [0, 1] and dist.ravel().tolist() == [0, 0]\n"
        "for build in (lambda: ShardedHammingIndex(codes, 12),\n"
        "              lambda: __import__('flexcmh_fast.distributed')):\n"
        "    try:\n"
        "        build()\n"
        "    except ImportError as exc:\n"
        "        assert 'needs Dask' in str(exc) and 'flexcmh_fast[dask]' in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit('no ImportError without Dask')\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
