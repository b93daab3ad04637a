"""Portable, versioned on-disk format for models and indexes.

A file is a NumPy ``.npz`` archive holding only plain numeric arrays plus
one ``__meta__`` entry: UTF-8 JSON with the format name, format version,
object kind and the object's scalar parameters.  Loading never unpickles,
so a file can never execute code.

Writing: the archive goes to a temporary file
``.flexcmh_tmp_<host>_<pid>_<token>.npz`` in the target folder, created with
the permissions the umask gives (like any file the user creates), flushed to
disk and renamed into place, so a failed ``save`` leaves the old file
intact.  A process killed mid-save cannot remove its temporary; the next
``save`` into the same folder from the same host removes every temporary of
ours whose process is no longer running (POSIX; on Windows temporaries of
killed saves are left in place).

Reading: every archive member is read to its end, so the zip CRC-32 of every
entry is checked (a single flipped bit anywhere in the data is detected);
the entries must be exactly those the header lists with their dtypes and
shapes (a damaged zip directory can hide an entry without failing any CRC),
and every header field is type-checked.  Any unreadable, corrupted,
truncated, foreign or hand-edited file raises :class:`FileFormatError`
naming the file and what is wrong.
"""
import errno
import json
import math
import os
import re
import socket
import zipfile

import numpy as np

from ._registry import resolve, saved_kinds

FORMAT_NAME = "flexcmh_fast"
# Version 2: models are the estimators (kinds "FlexCMH" / "CSMH", settings
# in meta["params"], history with named terms).  Version 1 model files
# (kinds "FlexCMHModel" / "CSMHModel") still load, as the estimators.
FORMAT_VERSION = 2

# kind -> "module:attribute" of a class with a ``_from_state(meta, arrays)``
# classmethod, imported on first use so that loading an index does not
# import Numba: the saved kinds of the file format itself, then those of
# every hashing method (from the method registry).
_KINDS = {
    "HammingIndex": "flexcmh_fast.search:HammingIndex",
    **saved_kinds(),
}
# Checkpoints of an unfinished fit: written and read by the fit that resumes
# (flexcmh/_checkpoint.py), never loaded as an object.
CHECKPOINT_KINDS = ("FlexCMHCheckpoint",)

_TMP_PREFIX = ".flexcmh_tmp_"
_TMP_PATTERN = re.compile(re.escape(_TMP_PREFIX) + r"(?P<host>[A-Za-z0-9-]*)_(?P<pid>\d+)_"
                          r"[0-9a-f]+\.npz\Z")
_READ_CHUNK = 1 << 24  # bytes per read when filling an array from the archive


class FileFormatError(ValueError):
    """A file cannot be loaded as a flexcmh_fast model or index.

    Raised for every unreadable, corrupted, truncated, foreign or
    hand-edited file (and for a file holding another kind of object than
    the one asked for); the message names the file and what is wrong.
    Subclass of :class:`ValueError`.
    """


def _host_tag():
    """This host's name reduced to the characters allowed in a temp name."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]


def _process_running(pid):
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else (or cannot tell)
    return True


def _remove_stale_temporaries(folder):
    """Remove our temporaries in ``folder`` left by killed processes of this
    host (a temporary of a running process, or of another host sharing the
    folder, is left alone)."""
    host = _host_tag()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _TMP_PATTERN.match(name)
        if (match is None or match["host"] != host
                or _process_running(int(match["pid"]))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:  # removed concurrently, or not ours to remove
            pass


def _create_temporary(folder):
    """Open a new temporary file in ``folder``; mode 0o666 minus the umask."""
    prefix = f"{_TMP_PREFIX}{_host_tag()}_{os.getpid()}_"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f"{prefix}{os.urandom(8).hex()}.npz")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def save_state(path, kind, meta, arrays):
    """Atomically write ``meta`` (JSON-able dict) and ``arrays`` to ``path``."""
    path = os.fspath(path)
    if kind not in _KINDS and kind not in CHECKPOINT_KINDS:
        raise ValueError(f"Unknown object kind {kind!r} for saving.")
    for key, value in arrays.items():
        if key == "__meta__" or not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise TypeError(f"Cannot save entry {key!r}: only numeric arrays are stored.")
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "meta": meta,
        # The entries' table of contents: a damaged zip directory can hide
        # entries without any CRC failing, so the reader compares.
        "arrays": {key: {"dtype": value.dtype.str, "shape": list(value.shape)}
                   for key, value in arrays.items()},
    }
    from . import __version__

    header["package_version"] = __version__
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"'path' must be in an existing folder. Got {path!r} instead.")
    _remove_stale_temporaries(folder)
    fd, tmp = _create_temporary(folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=blob, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_member(archive, info):
    """One ``.npy`` member as an array, read to the member's end so that
    zipfile checks its CRC-32; the declared shape must match the stored
    byte count before anything is allocated."""
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ValueError(f"is stored uncompressed but its sizes differ "
                         f"({info.compress_size} and {info.file_size} bytes)")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError("holds Python objects (only numeric arrays are stored)")
        n_bytes = math.prod(shape) * dtype.itemsize
        header_bytes = fh.tell()
        if info.file_size - header_bytes != n_bytes:
            raise ValueError(f"declares shape {shape} of {dtype} ({n_bytes} bytes) but "
                             f"holds {info.file_size - header_bytes} bytes")
        array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
        flat = memoryview(array.reshape(-1, order="A").view(np.uint8)) if n_bytes else None
        done = 0
        while done < n_bytes:
            chunk = fh.read(min(_READ_CHUNK, n_bytes - done))
            if not chunk:
                raise ValueError("ends before its data")
            flat[done:done + len(chunk)] = chunk
            done += len(chunk)
        if fh.read(1):
            raise ValueError("has bytes after its data")
    return array


def _fail(path, what):
    return FileFormatError(f"{path!r} is not a flexcmh_fast file, or is damaged: {what}.")


def read_state(path):
    """Read a file written by :func:`save_state`: returns (kind, meta, arrays).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The file cannot be opened.
    FileFormatError
        The file is not an intact flexcmh_fast file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, f"No such file: {path!r}", path)
    with open(path, "rb") as raw:
        if os.fstat(raw.fileno()).st_size == 0:
            raise _fail(path, "the file is empty")
        try:
            with zipfile.ZipFile(raw) as archive:
                infos = archive.infolist()
                names = [info.filename for info in infos]
                if len(set(names)) != len(names):
                    raise ValueError("an entry name appears twice")
                entries = {}
                for info in infos:
                    if not info.filename.endswith(".npy"):
                        raise ValueError(f"entry {info.filename!r} is not a .npy array")
                    try:
                        entries[info.filename[:-4]] = _read_member(archive, info)
                    except MemoryError:
                        raise
                    except Exception as exc:
                        raise ValueError(f"entry {info.filename!r}: {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:
            if isinstance(exc, zipfile.BadZipFile) and not zipfile.is_zipfile(raw):
                what = "not a .npz archive written by save()"
            else:
                what = f"the archive is corrupt or truncated ({exc})"
            raise _fail(path, what) from None
    blob = entries.pop("__meta__", None)
    if blob is None:
        raise _fail(path, "no '__meta__' header entry (not written by save())")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise _fail(path, f"the '__meta__' entry is {blob.dtype} of shape {blob.shape}, "
                          "not 1-D uint8 JSON text")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"the header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _fail(path, f"the header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT_NAME:
        raise _fail(path, f"header 'format' is {header.get('format')!r}, "
                          f"not {FORMAT_NAME!r}")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(path, f"header 'format_version' must be an int >= 1. Got {version!r}")
    if version > FORMAT_VERSION:
        raise FileFormatError(
            f"{path!r} has format version {version}; this flexcmh_fast reads "
            f"versions <= {FORMAT_VERSION}. Upgrade flexcmh_fast to load it.")
    kind = header.get("kind")
    if not isinstance(kind, str) or (kind not in _KINDS and kind not in CHECKPOINT_KINDS):
        raise _fail(path, f"header 'kind' must be one of "
                          f"{sorted(_KINDS) + list(CHECKPOINT_KINDS)}. Got {kind!r}")
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise _fail(path, f"header 'meta' must be a JSON object. Got {meta!r:.60}")
    if not isinstance(header.get("package_version", ""), str):
        raise _fail(path, "header 'package_version' must be a string")
    _check_contents(path, header, entries)
    return kind, meta, entries


def _check_contents(path, header, entries):
    """The entries must be exactly those the header lists (files written
    before the header listed them are accepted as they are)."""
    if "arrays" not in header:
        return
    listed = header["arrays"]
    if not isinstance(listed, dict):
        raise _fail(path, "header 'arrays' must be a JSON object")
    missing = sorted(set(listed) - set(entries))
    extra = sorted(set(entries) - set(listed))
    if missing or extra:
        raise _fail(path, f"entries {missing} are missing and {extra} unexpected")
    for key, spec in listed.items():
        array = entries[key]
        if (not isinstance(spec, dict) or spec.get("dtype") != array.dtype.str
                or spec.get("shape") != list(array.shape)):
            raise _fail(path, f"entry {key!r} is {array.dtype.str} of shape "
                              f"{list(array.shape)}; the header lists {spec!r:.80}")


def load(path, kind=None):
    """Load a model or index saved with its ``save`` method.

    Parameters
    ----------
    path : str or os.PathLike
    kind : None or str, default=None
        The kind of object expected: ``"HammingIndex"`` or an estimator's
        ``kind`` (``"FlexCMH"``, ``"CSMH"``, ``"CCAITQ"``, ``"CMFH"``,
        ``"SCM"``, or the format-1 names ``"FlexCMHModel"`` /
        ``"CSMHModel"``); a file holding another kind raises
        :class:`FileFormatError` (names of the same class count as one
        kind).  ``None`` accepts any kind.

    Returns
    -------
    HammingIndex or a fitted estimator (FlexCMH, CSMH, CCAITQ, CMFH, SCM)

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FileFormatError
        The file is corrupted, truncated, foreign or edited so that it no
        longer describes a valid object, or holds another ``kind``.
    """
    if kind is not None and (not isinstance(kind, str) or kind not in _KINDS):
        raise ValueError(f"'kind' must be None or one of {sorted(_KINDS)}. "
                         f"Got {kind!r} instead.")
    stored_kind, meta, arrays = read_state(path)
    path = os.fspath(path)
    if stored_kind in CHECKPOINT_KINDS:
        raise FileFormatError(
            f"{path!r} is a checkpoint of an unfinished fit ({stored_kind}), not a model: "
            "resume the fit with FlexCMH(checkpoint=path, resume=True).fit(...) on the same "
            "data and settings.")
    # Kinds registered to the same class (a renamed kind kept for old files)
    # are one kind.
    if kind is not None and _KINDS[stored_kind] != _KINDS[kind]:
        raise FileFormatError(f"{path!r} holds a {stored_kind}, not the {kind} asked for.")
    cls = resolve(_KINDS[stored_kind])
    try:
        return cls._from_state(meta, arrays)
    except MemoryError:
        raise
    except Exception as exc:
        # Whatever the stored state trips over (a missing key, a wrong type
        # or shape) is a property of the file.
        detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise FileFormatError(f"{path!r} is not a valid {stored_kind} file: {detail}") from None
