"""flexcmh_fast: cross-modal hashing from weakly-paired data.

Learn hash functions that map every modality (image features, text
features, ...) to short binary codes, from data where only some (or none)
of the cross-modal correspondences are known (FlexCMH), or from labelled
paired data (CSMH); search the codes exactly with :class:`HammingIndex`.

Public API
----------
FlexCMH, CSMH, CCAITQ, CMFH, SCM (estimators), train, load, HammingIndex, pack_codes,
unpack_codes, NotFittedError, ConvergenceWarning, FileFormatError,
DegenerateDataWarning, and the submodules metrics, datasets,
scenarios, distributed.  The layout is described in ``docs/architecture.md``.
"""
import importlib

__version__ = "0.2.0"

# Attributes are imported on first use: ``import flexcmh_fast`` stays fast
# and does not import Numba until a trainer or kernel is needed.
_LAZY = {
    "train": "._train",
    "load": "._persist",
    "HammingIndex": ".search",
    "pack_codes": ".search",
    "unpack_codes": ".search",
    "FlexCMH": ".flexcmh",
    "CSMH": ".csmh",
    "CCAITQ": ".baselines",
    "CMFH": ".baselines",
    "SCM": ".baselines",
    "NotFittedError": "._base",
    "ConvergenceWarning": "._base",
    "FileFormatError": "._persist",
    "DegenerateDataWarning": "._validation",
}
_SUBMODULES = ("metrics", "datasets", "scenarios", "distributed")

__all__ = sorted(list(_LAZY) + ["metrics", "datasets", "scenarios", "distributed"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'flexcmh_fast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
