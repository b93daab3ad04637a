"""flexcmh_fast: cross-modal hashing from weakly-paired data.

Learn hash functions that map every modality (image features, text
features, ...) to short binary codes, from data where only some (or none)
of the cross-modal correspondences are known (FlexCMH), or from labelled
paired data (CSMH); search the codes exactly with :class:`HammingIndex`.

Public API
----------
FlexCMH, CSMH, CCAITQ, CMFH, SCM (estimators), train, load, HammingIndex, pack_codes,
unpack_codes, NotFittedError, ConvergenceWarning, FileFormatError,
DegenerateDataWarning, and the submodules search (the Hamming search
engine), metrics, datasets and scenarios: ``__all__``, what
``from flexcmh_fast import *`` imports.  The submodule distributed (Dask
scale-out) needs the optional ``dask`` extra, so it is not in ``__all__``:
import it by name (``from flexcmh_fast import distributed``).  The layout is
described in ``docs/architecture.md``.
"""
import importlib

from . import _registry

__version__ = "0.2.0"

# Attributes are imported on first use: ``import flexcmh_fast`` stays fast
# and does not import Numba until a trainer or kernel is needed.  The
# estimator classes come from the method registry.
_LAZY = {
    "train": "._train",
    "load": "._persist",
    "HammingIndex": ".search",
    "pack_codes": ".search",
    "unpack_codes": ".search",
    **_registry.estimator_exports(),
    "NotFittedError": "._base",
    "ConvergenceWarning": "._base",
    "FileFormatError": "._persist",
    "DegenerateDataWarning": "._validation",
}
# Public submodules; all but distributed (which needs Dask) are in __all__.
_SUBMODULES = ("search", "metrics", "datasets", "scenarios", "distributed")

__all__ = sorted(list(_LAZY) + [name for name in _SUBMODULES if name != "distributed"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'flexcmh_fast' has no attribute {name!r}")


def __dir__():
    # The public names and the module's dunders only: not this module's
    # helpers, nor the private submodules that imports bind here.
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted(set(__all__) | set(_SUBMODULES) | dunders)
