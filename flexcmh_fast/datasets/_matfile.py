"""Reading the variables of MATLAB .mat files: v5 files (``scipy.io``) and
v7.3 files (HDF5, read with ``h5py``), where MATLAB stores every array
transposed (``I_tr`` appears as 128 x 2173) and labels are often one-hot
(10 x N).  Variables come back as float64 features or label arrays with one
row per object, whatever the file's orientation.
"""
import os

import numpy as np
import scipy.sparse as sp

from .._validation import _describe


def check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"'{name}' must be a file path. Got {_describe(path)} instead.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"'{name}': no such file or directory: {path!r}.")
    return path


def is_hdf5(path):
    with open(path, "rb") as fh:
        head = fh.read(520)
    # v7.3 .mat files are HDF5 with a 512-byte user block; plain HDF5 has the
    # signature at offset 0.
    sig = b"\x89HDF\r\n\x1a\n"
    return head[:8] == sig or head[512:520] == sig


class MatFile:
    """Uniform read access to the variables of a v5 or v7.3 .mat file.

    ``get(name)`` returns a dense ndarray or a CSR matrix in MATLAB's
    orientation (HDF5 arrays are transposed back, HDF5 sparse groups rebuilt
    from data / ir / jc).
    """

    def __init__(self, path):
        self.path = path
        self.hdf5 = is_hdf5(path)
        if self.hdf5:
            try:
                import h5py
            except ImportError:
                raise ImportError(
                    f"{path!r} is a MATLAB v7.3 (HDF5) file; reading it needs h5py "
                    "('pip install h5py' or 'pip install flexcmh-fast[hdf5]')."
                ) from None
            try:
                self._h5 = h5py.File(path, "r")
            except OSError as exc:
                raise ValueError(f"Could not read {path!r} as a MATLAB v7.3 file: {exc}") from None
            self.variables = sorted(k for k in self._h5.keys() if not k.startswith("#"))
        else:
            import scipy.io
            try:
                self._vars = scipy.io.whosmat(path)
            except Exception as exc:
                raise ValueError(
                    f"Could not read {path!r} as a MATLAB .mat file: {exc}"
                ) from None
            self.variables = sorted(v[0] for v in self._vars)
            self._cache = {}

    def close(self):
        if self.hdf5:
            self._h5.close()

    def __contains__(self, name):
        return name in self.variables

    def require(self, names):
        missing = [n for n in names if n not in self.variables]
        if missing:
            raise ValueError(
                f"{self.path!r} has no variable(s) {missing}. "
                f"Variables in the file: {self.variables}."
            )

    def get(self, name):
        self.require([name])
        if self.hdf5:
            obj = self._h5[name]
            if hasattr(obj, "keys"):  # MATLAB sparse: group with data / ir / jc
                if not {"data", "ir", "jc"} <= set(obj.keys()):
                    raise ValueError(f"Variable {name!r} in {self.path!r} is not a matrix.")
                n_rows = int(obj.attrs.get("MATLAB_sparse"))
                jc = obj["jc"][()].astype(np.int64)
                mat = sp.csc_matrix(
                    (obj["data"][()].astype(np.float64), obj["ir"][()].astype(np.int64), jc),
                    shape=(n_rows, jc.size - 1))
                return mat.tocsr()
            arr = obj[()]
            # MATLAB writes column-major: the HDF5 view is the transpose.
            return np.ascontiguousarray(arr.T) if arr.ndim == 2 else arr
        if name not in self._cache:
            import scipy.io
            self._cache[name] = scipy.io.loadmat(self.path, variable_names=[name])[name]
        value = self._cache[name]
        if sp.issparse(value):
            return sp.csr_matrix(value)
        return value


def as_features(value, name, n_rows, path):
    """Feature matrix with ``n_rows`` rows: float64 dense or CSR.  A matrix
    with ``n_rows`` columns but not rows (a transposed layout) is turned."""
    if sp.issparse(value):
        mat = sp.csr_matrix(value, dtype=np.float64)
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or arr.ndim != 2:
            raise ValueError(
                f"Variable {name!r} in {path!r} must be a 2-D numeric matrix. "
                f"Got {_describe(arr)} instead."
            )
        mat = arr.astype(np.float64)
    if n_rows is not None and mat.shape[0] != n_rows:
        if mat.shape[1] == n_rows:
            mat = mat.T
        else:
            raise ValueError(
                f"Variable {name!r} in {path!r} has shape {mat.shape}; expected {n_rows} "
                "rows (one per object, as in the other variables)."
            )
    if sp.issparse(mat):
        mat = sp.csr_matrix(mat)
        mat.sort_indices()
        return mat
    if not np.isfinite(mat).all():
        raise ValueError(f"Variable {name!r} in {path!r} contains NaN or inf.")
    return np.ascontiguousarray(mat)


def as_labels(value, name, n_rows, path, single_label):
    """Labels with ``n_rows`` rows.  A column vector / row vector is class
    ids; a 0/1 matrix is multi-label, or (``single_label``) one-hot turned
    into class ids.  Class ids are made 0-based when they start at 1."""
    arr = value.toarray() if sp.issparse(value) else np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim not in (1, 2):
        raise ValueError(f"Variable {name!r} in {path!r} must be a numeric label array.")
    if arr.ndim == 2 and 1 in arr.shape and max(arr.shape) == n_rows:
        arr = arr.reshape(-1)
    if arr.ndim == 2 and arr.shape[0] != n_rows and arr.shape[1] == n_rows:
        arr = arr.T
    if arr.shape[0] != n_rows:
        raise ValueError(
            f"Variable {name!r} in {path!r} has shape {arr.shape}; expected {n_rows} "
            "label rows (one per object, as in the feature matrices)."
        )
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or np.any(arr != np.round(arr))):
        raise ValueError(f"Variable {name!r} in {path!r} must hold integer labels.")
    if arr.ndim == 1:
        ids = arr.astype(np.int64)
        return ids
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"Variable {name!r} in {path!r}: a 2-D label matrix must hold 0/1.")
    arr = arr.astype(np.uint8)
    if single_label:
        if not np.all(arr.sum(axis=1) == 1):
            raise ValueError(
                f"Variable {name!r} in {path!r} is not one-hot (rows must have exactly one 1) "
                "but single-label class ids are expected."
            )
        return arr.argmax(axis=1).astype(np.int64)
    return arr


def zero_based(ids_list):
    """Shift class ids to start at 0 when every id is >= 1 (MATLAB's 1-based)."""
    lo = min(int(ids.min()) for ids in ids_list if ids.size)
    if lo >= 1:
        return [ids - 1 for ids in ids_list]
    if lo < 0:
        raise ValueError(f"Class ids must be >= 0 (or 1-based). Got minimum {lo}.")
    return ids_list


def infer_rows(raw, raw_lab):
    """Number of objects: the dimension of the first matrix that every other
    matrix and the labels share (rows preferred).  Files written in either
    orientation are thus read correctly; a mismatch is reported later by
    the per-variable checks with the variable's name."""
    first = raw[0].shape
    for cand in (first[0], first[-1]):
        if all(cand in X.shape for X in raw[1:]) and cand in np.shape(raw_lab):
            return cand
    return first[0]
