"""Portable, versioned on-disk format for models and indexes.

A file is a NumPy ``.npz`` archive holding only plain numeric arrays plus
one ``__meta__`` entry: UTF-8 JSON with the format name, format version,
object kind and the object's scalar parameters.  Loading uses
``allow_pickle=False``, so a file can never execute code.  Files are written
to a temporary name in the target folder and renamed into place, so a
failed ``save`` leaves nothing half-written.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_NAME = "flexcmh_fast"
FORMAT_VERSION = 1

# kind -> "module:attribute" of a class with a ``_from_state(meta, arrays)``
# classmethod; imported lazily so loading an index does not import Numba.
_REGISTRY = {
    "HammingIndex": "flexcmh_fast._index:HammingIndex",
    "FlexCMHModel": "flexcmh_fast._flexcmh:FlexCMHModel",
    "CSMHModel": "flexcmh_fast._csmh:CSMHModel",
    "CCAITQModel": "flexcmh_fast.baselines._cca_itq:CCAITQModel",
    "CMFHModel": "flexcmh_fast.baselines._cmfh:CMFHModel",
    "SCMModel": "flexcmh_fast.baselines._scm:SCMModel",
}


def save_state(path, kind, meta, arrays):
    """Atomically write ``meta`` (JSON-able dict) and ``arrays`` to ``path``."""
    path = os.fspath(path)
    if kind not in _REGISTRY:
        raise ValueError(f"Unknown object kind {kind!r} for saving.")
    for key, value in arrays.items():
        if key == "__meta__" or not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise TypeError(f"Cannot save entry {key!r}: only numeric arrays are stored.")
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "meta": meta,
    }
    from . import __version__

    header["package_version"] = __version__
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"'path' must be in an existing folder. Got {path!r} instead.")
    fd, tmp = tempfile.mkstemp(prefix=".flexcmh_tmp_", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=blob, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_state(path):
    """Read a file written by :func:`save_state`: returns (kind, meta, arrays)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "__meta__" not in npz.files:
                raise ValueError
            header = json.loads(npz["__meta__"].tobytes().decode("utf-8"))
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    except (ValueError, OSError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(
            f"{path!r} is not a flexcmh_fast file (expected a .npz written by save())."
        ) from None
    if header.get("format") != FORMAT_NAME:
        raise ValueError(f"{path!r} is not a flexcmh_fast file.")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path!r} has format version {version!r}; this flexcmh_fast reads "
            f"versions <= {FORMAT_VERSION}. Upgrade flexcmh_fast to load it."
        )
    return header["kind"], header["meta"], arrays


def load(path):
    """Load a model or index saved with its ``save`` method.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    FlexCMHModel, CSMHModel or HammingIndex
    """
    kind, meta, arrays = read_state(path)
    if kind not in _REGISTRY:
        raise ValueError(f"{os.fspath(path)!r} holds an unknown object kind {kind!r}.")
    module_name, attr = _REGISTRY[kind].split(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), attr)
    return cls._from_state(meta, arrays)
