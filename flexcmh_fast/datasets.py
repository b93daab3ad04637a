"""Datasets: loaders for the standard cross-modal .mat files and a synthetic
multi-modal generator (the built-in default dataset).

Every loader returns a :class:`MultiModalDataset`: one feature matrix per
modality with aligned rows (row ``i`` of every modality is the same object),
one label row per object, and the file's fixed train/test split when it has
one.  Files are never modified.  Both MATLAB layouts are read: v5 files
(``scipy.io.loadmat``) and v7.3 files (HDF5, read with ``h5py``), where
MATLAB stores every array transposed (``I_tr`` appears as 128 x 2173) and
labels are often one-hot (10 x N).
"""
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ._validation import (_describe, check_bool, check_float, check_int,
                          check_option, check_random_state)

__all__ = ["MultiModalDataset", "load_wiki", "load_mat", "make_multimodal", "normalize_rows"]


@dataclass
class MultiModalDataset:
    """Paired multi-modal data.

    Attributes
    ----------
    modalities : list of ndarray or scipy.sparse.csr_matrix
        One ``(n_samples, d_m)`` float64 matrix per modality; rows aligned.
    labels : ndarray
        1-D int64 class ids (0-based) or 2-D uint8 0/1 multi-label matrix,
        one row per object.
    train_idx, test_idx : ndarray of int64 or None
        The file's fixed split (row indices), or ``None`` when it has none.
    names : list of str
        Modality names (e.g. ``["image", "text"]``).
    """

    modalities: list
    labels: np.ndarray
    train_idx: np.ndarray = None
    test_idx: np.ndarray = None
    names: list = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.modalities, (list, tuple)) or len(self.modalities) < 1:
            raise TypeError(
                "'modalities' must be a non-empty list of matrices. "
                f"Got {_describe(self.modalities)} instead."
            )
        self.modalities = list(self.modalities)
        n = self.modalities[0].shape[0]
        for m, X in enumerate(self.modalities):
            if X.shape[0] != n:
                raise ValueError(
                    f"Modality {m} has {X.shape[0]} rows but modality 0 has {n}; "
                    "rows must be aligned (row i of every modality is one object)."
                )
        if self.labels.shape[0] != n:
            raise ValueError(
                f"'labels' has {self.labels.shape[0]} rows but the modalities have {n}."
            )
        if not self.names:
            self.names = [f"modality{m}" for m in range(len(self.modalities))]
        if len(self.names) != len(self.modalities):
            raise ValueError(
                f"'names' must have one entry per modality ({len(self.modalities)}). "
                f"Got {self.names!r} instead."
            )

    @property
    def n_samples(self):
        """Number of objects (rows)."""
        return self.modalities[0].shape[0]

    @property
    def n_modalities(self):
        return len(self.modalities)

    def subset(self, idx):
        """Rows ``idx`` of every modality and of the labels (``train_idx`` /
        ``test_idx`` are dropped: they index the full dataset)."""
        idx = np.asarray(idx, dtype=np.int64)
        return MultiModalDataset([X[idx] for X in self.modalities], self.labels[idx],
                                 names=list(self.names))

    def __repr__(self):
        shapes = ", ".join(
            f"{name}: {X.shape[0]}x{X.shape[1]}{' sparse' if sp.issparse(X) else ''}"
            for name, X in zip(self.names, self.modalities))
        split = ("" if self.train_idx is None
                 else f", split {len(self.train_idx)}/{len(self.test_idx)}")
        kind = ("1-D classes" if self.labels.ndim == 1
                else f"{self.labels.shape[1]} multi-labels")
        return f"MultiModalDataset({shapes}; labels: {kind}{split})"


# --------------------------------------------------------------------------
# .mat reading (MATLAB v5 and v7.3 / HDF5)
# --------------------------------------------------------------------------

def _check_path(path, name="path"):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"'{name}' must be a file path. Got {_describe(path)} instead.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"'{name}': no such file or directory: {path!r}.")
    return path


def _is_hdf5(path):
    with open(path, "rb") as fh:
        head = fh.read(520)
    # v7.3 .mat files are HDF5 with a 512-byte user block; plain HDF5 has the
    # signature at offset 0.
    sig = b"\x89HDF\r\n\x1a\n"
    return head[:8] == sig or head[512:520] == sig


class _MatFile:
    """Uniform read access to the variables of a v5 or v7.3 .mat file.

    ``get(name)`` returns a dense ndarray or a CSR matrix in MATLAB's
    orientation (HDF5 arrays are transposed back, HDF5 sparse groups rebuilt
    from data / ir / jc).
    """

    def __init__(self, path):
        self.path = path
        self.hdf5 = _is_hdf5(path)
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


def _as_features(value, name, n_rows, path):
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


def _as_labels(value, name, n_rows, path, single_label):
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


def _zero_based(ids_list):
    """Shift class ids to start at 0 when every id is >= 1 (MATLAB's 1-based)."""
    lo = min(int(ids.min()) for ids in ids_list if ids.size)
    if lo >= 1:
        return [ids - 1 for ids in ids_list]
    if lo < 0:
        raise ValueError(f"Class ids must be >= 0 (or 1-based). Got minimum {lo}.")
    return ids_list


def _read_split(mat, bases, label_base, single_label):
    """``<base>_tr`` / ``<base>_te`` variables -> concatenated rows + split."""
    parts = {}
    n_rows = {}
    for suffix in ("tr", "te"):
        raw = [mat.get(f"{base}_{suffix}") for base in bases]
        raw_lab = mat.get(f"{label_base}_{suffix}")
        n = _infer_rows(raw, raw_lab)
        feats = [_as_features(X, f"{base}_{suffix}", n, mat.path) for X, base in zip(raw, bases)]
        lab = _as_labels(raw_lab, f"{label_base}_{suffix}", n, mat.path, single_label)
        parts[suffix] = (feats, lab)
        n_rows[suffix] = n
    labs = [parts["tr"][1], parts["te"][1]]
    if labs[0].ndim != labs[1].ndim or (labs[0].ndim == 2 and labs[0].shape[1] != labs[1].shape[1]):
        raise ValueError(
            f"Train and test labels in {mat.path!r} have different layouts: "
            f"{labs[0].shape} and {labs[1].shape}."
        )
    if labs[0].ndim == 1:
        labs = _zero_based(labs)
    modalities = []
    for m in range(len(bases)):
        a, b = parts["tr"][0][m], parts["te"][0][m]
        if a.shape[1] != b.shape[1]:
            raise ValueError(
                f"{bases[m]}_tr and {bases[m]}_te in {mat.path!r} have different numbers "
                f"of features: {a.shape[1]} and {b.shape[1]}."
            )
        modalities.append(sp.vstack([a, b], format="csr") if sp.issparse(a) or sp.issparse(b)
                          else np.ascontiguousarray(np.vstack([a, b])))
    labels = np.concatenate(labs, axis=0)
    n_tr, n_te = n_rows["tr"], n_rows["te"]
    return (modalities, labels, np.arange(n_tr, dtype=np.int64),
            np.arange(n_tr, n_tr + n_te, dtype=np.int64))


def _infer_rows(raw, raw_lab):
    """Number of objects: the dimension of the first matrix that every other
    matrix and the labels share (rows preferred).  Files written in either
    orientation are thus read correctly; a mismatch is reported later by
    the per-variable checks with the variable's name."""
    first = raw[0].shape
    for cand in (first[0], first[-1]):
        if all(cand in X.shape for X in raw[1:]) and cand in np.shape(raw_lab):
            return cand
    return first[0]


def _read_all(mat, keys, label_key, single_label):
    raw = [mat.get(k) for k in keys]
    lab_raw = mat.get(label_key)
    n = _infer_rows(raw, lab_raw)
    modalities = [_as_features(X, k, n, mat.path) for X, k in zip(raw, keys)]
    labels = _as_labels(lab_raw, label_key, n, mat.path, single_label)
    if labels.ndim == 1:
        labels = _zero_based([labels])[0]
    return modalities, labels


def _default_names(keys):
    known = {"I": "image", "T": "text", "XAll": "image", "YAll": "text",
             "IAll": "image", "FAll": "image"}
    names = [known.get(k, k) for k in keys]
    return names if len(set(names)) == len(names) else list(keys)


def load_mat(path, modalities=None, labels=None, *, names=None, sparse=None,
             single_label=False):
    """Load a cross-modal dataset from a .mat file (MATLAB v5 or v7.3/HDF5).

    Two layouts are recognised:

    * split: ``<M>_tr`` / ``<M>_te`` per modality and ``<L>_tr`` / ``<L>_te``
      labels (e.g. ``I_tr``, ``T_tr``, ``L_tr``; MIRFlickr-25K and Wiki
      distributions).  Rows are concatenated train then test and the split
      is kept in ``train_idx`` / ``test_idx``.
    * all: one variable per modality holding every object (``XAll``,
      ``YAll``, labels ``LAll``; NUS-WIDE / MIRFlickr distributions of
      DCMH).  No fixed split.

    Parameters
    ----------
    path : str or path-like
        The .mat file.
    modalities : sequence of str, optional
        Variable names: bases of the split layout (``("I", "T")``) or full
        names of the all layout (``("XAll", "YAll")``).  ``None``
        auto-detects ``I``/``T``/``L`` then ``XAll``/``YAll``/``LAll``.
    labels : str, optional
        Label variable (base ``"L"`` or full ``"LAll"``); required when
        ``modalities`` is given.
    names : sequence of str, optional
        Modality names for the dataset (default from the variable names).
    sparse : sequence of bool, optional
        Per modality, convert to CSR (e.g. bag-of-words tags).  Sparse
        variables of the file stay sparse in any case.
    single_label : bool, default=False
        Turn one-hot label matrices into 1-D class ids (error if a row is
        not one-hot).  1-D / column-vector labels are class ids anyway
        (made 0-based when they start at 1).

    Returns
    -------
    MultiModalDataset

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a readable .mat file, missing variables (the message lists the
        variables present), mismatched row or feature counts, bad labels.
    """
    path = _check_path(path)
    if os.path.isdir(path):
        raise ValueError(f"'path' must be a .mat file, got the directory {path!r}.")
    single_label = check_bool(single_label, "single_label")
    mat = _MatFile(path)
    try:
        if modalities is None:
            if labels is not None:
                raise ValueError("'labels' is given without 'modalities'; give both or neither.")
            if all(f"{b}_{s}" in mat for b in ("I", "T", "L") for s in ("tr", "te")):
                layout, keys, label_key = "split", ["I", "T"], "L"
            elif all(k in mat for k in ("XAll", "YAll", "LAll")):
                layout, keys, label_key = "all", ["XAll", "YAll"], "LAll"
            else:
                raise ValueError(
                    f"Could not recognise the layout of {path!r}: expected I_tr/I_te/T_tr/"
                    "T_te/L_tr/L_te or XAll/YAll/LAll (or pass 'modalities' and 'labels'). "
                    f"Variables in the file: {mat.variables}."
                )
        else:
            if isinstance(modalities, str) or not all(isinstance(k, str) for k in modalities) \
                    or len(modalities) < 1:
                raise TypeError(
                    "'modalities' must be a sequence of variable names. "
                    f"Got {_describe(modalities)} instead."
                )
            if not isinstance(labels, str):
                raise TypeError(
                    "'labels' must be the label variable's name when 'modalities' is given. "
                    f"Got {_describe(labels)} instead."
                )
            keys, label_key = list(modalities), labels
            # Names present as full variables -> "all" layout; otherwise they
            # are bases of <name>_tr / <name>_te (missing ones are reported).
            if all(k in mat for k in keys + [label_key]):
                layout = "all"
            elif any(f"{k}_tr" in mat or f"{k}_te" in mat for k in keys + [label_key]):
                layout = "split"
            else:
                layout = "all"
                mat.require(keys + [label_key])
        if layout == "split":
            mat.require([f"{k}_{s}" for k in keys + [label_key] for s in ("tr", "te")])
            mods, labs, tr, te = _read_split(mat, keys, label_key, single_label)
        else:
            mods, labs = _read_all(mat, keys, label_key, single_label)
            tr = te = None
    finally:
        mat.close()
    if sparse is not None:
        if len(sparse) != len(mods):
            raise ValueError(
                f"'sparse' must have one bool per modality ({len(mods)}). Got {sparse!r} instead."
            )
        mods = [sp.csr_matrix(X) if s and not sp.issparse(X) else X
                for X, s in zip(mods, sparse)]
    if names is None:
        names = _default_names(keys)
    return MultiModalDataset(mods, labs, tr, te, list(names))


def load_wiki(path, text="lda"):
    """Load the Wikipedia image-text benchmark (Rasiwasia et al. 2010).

    Parameters
    ----------
    path : str or path-like
        The folder holding ``wikiData.mat`` (and ``wiki_tfidf.mat`` for
        ``text="tfidf"``), or the ``wikiData.mat`` file itself.  MATLAB v5
        and v7.3 (HDF5, transposed arrays, one-hot labels) are accepted.
    text : {"lda", "tfidf"}, default="lda"
        ``"lda"``: the 10-d LDA topic proportions ``T_*``.  ``"tfidf"``: the
        1000-d TF-IDF vectors ``T_tfidf_*`` of ``wiki_tfidf.mat`` as a sparse
        CSR modality (labels from ``wikiData.mat``; both files share the row
        order).

    Returns
    -------
    MultiModalDataset
        modalities ``[image (n x 128), text]``, labels 0-based class ids
        (file classes 1-10 become 0-9), the fixed 2173/693 split in
        ``train_idx`` / ``test_idx``.
    """
    text = check_option(text, "text", ("lda", "tfidf"))
    path = _check_path(path)
    if os.path.isdir(path):
        folder, data_file = path, os.path.join(path, "wikiData.mat")
        if not os.path.exists(data_file):
            raise FileNotFoundError(f"No wikiData.mat in the folder {path!r}.")
    else:
        folder, data_file = os.path.dirname(path), path
    data = load_mat(data_file, ["I", "T"], "L", names=["image", "text"], single_label=True)
    if text == "lda":
        return data
    tfidf_file = os.path.join(folder, "wiki_tfidf.mat")
    if not os.path.exists(tfidf_file):
        raise FileNotFoundError(
            f"text='tfidf' needs wiki_tfidf.mat beside wikiData.mat; not found: {tfidf_file!r}."
        )
    mat = _MatFile(tfidf_file)
    try:
        mat.require(["T_tfidf_tr", "T_tfidf_te"])
        n_tr, n_te = len(data.train_idx), len(data.test_idx)
        tr = sp.csr_matrix(_as_features(mat.get("T_tfidf_tr"), "T_tfidf_tr", n_tr, tfidf_file))
        te = sp.csr_matrix(_as_features(mat.get("T_tfidf_te"), "T_tfidf_te", n_te, tfidf_file))
    finally:
        mat.close()
    text_mat = sp.vstack([tr, te], format="csr")
    text_mat.sort_indices()
    return MultiModalDataset([data.modalities[0], text_mat], data.labels, data.train_idx,
                             data.test_idx, ["image", "text"])


# --------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------

def make_multimodal(n_samples=2000, n_classes=10, n_features=(64, 300),
                    kinds=("dense", "sparse"), multilabel=False, *, latent_dim=16,
                    noise=1.0, doc_length=40, extra_label_prob=0.15, random_state=None):
    """Synthetic paired multi-modal data from shared latent classes.

    Every object draws a class (with ``multilabel``, a primary class plus
    each other class with probability ``extra_label_prob``) and a latent
    vector ``z`` = mean of its classes' centres (unit-variance Gaussian
    centres in ``latent_dim`` dimensions) + ``noise`` * standard Gaussian
    noise.  Each modality then renders ``z`` in its own way:

    * ``"dense"``: ``z @ W_m + 0.1 * noise`` with a random Gaussian
      ``W_m`` (``latent_dim x d_m``) - Gaussian-like image features.
    * ``"sparse"``: a bag of words.  Each class owns a topic (a Dirichlet
      distribution concentrated on a few words); a document of Poisson
      (``doc_length``) words mixes its classes' topics with weights
      ``softmax(z @ V)`` and a background distribution; features are
      ``log(1 + counts)`` with rows L2-normalised, as a non-negative CSR
      matrix (~``doc_length / d_m`` dense).

    Parameters
    ----------
    n_samples : int >= 2
    n_classes : int >= 2
    n_features : sequence of int
        Dimension of every modality (its length is the number of modalities).
    kinds : sequence of {"dense", "sparse"}
        One per modality.
    multilabel : bool, default=False
        2-D 0/1 labels with possibly several classes per object.
    latent_dim : int >= 1
    noise : float >= 0
        Latent noise; larger means harder retrieval.
    doc_length : int >= 1
        Mean number of words per sparse document.
    extra_label_prob : float in [0, 1]
        Multi-label only: probability of each extra class.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    MultiModalDataset
        No fixed split (``train_idx = test_idx = None``); names
        ``["dense0", "sparse1", ...]``.
    """
    n_samples = check_int(n_samples, "n_samples", 2)
    n_classes = check_int(n_classes, "n_classes", 2)
    latent_dim = check_int(latent_dim, "latent_dim", 1)
    noise = check_float(noise, "noise", 0.0)
    doc_length = check_int(doc_length, "doc_length", 1)
    extra_label_prob = check_float(extra_label_prob, "extra_label_prob", 0.0, 1.0)
    multilabel = check_bool(multilabel, "multilabel")
    if isinstance(n_features, (str, bytes)) or not hasattr(n_features, "__len__"):
        raise TypeError(f"'n_features' must be a sequence of ints. Got {_describe(n_features)}.")
    n_features = [check_int(d, f"n_features[{m}]", 1) for m, d in enumerate(n_features)]
    if len(n_features) < 2:
        raise ValueError(f"'n_features' must list at least 2 modalities. Got {n_features}.")
    if isinstance(kinds, str) or len(kinds) != len(n_features):
        raise ValueError(
            f"'kinds' must have one entry per modality ({len(n_features)}). Got {kinds!r} instead."
        )
    kinds = [check_option(k, f"kinds[{m}]", ("dense", "sparse")) for m, k in enumerate(kinds)]
    rng = check_random_state(random_state)

    primary = rng.integers(0, n_classes, n_samples)
    member = np.zeros((n_samples, n_classes), dtype=np.uint8)
    member[np.arange(n_samples), primary] = 1
    if multilabel:
        member |= (rng.random((n_samples, n_classes)) < extra_label_prob).astype(np.uint8)
    centres = rng.standard_normal((n_classes, latent_dim))
    weights = member / member.sum(axis=1, keepdims=True)
    z = weights @ centres + noise * rng.standard_normal((n_samples, latent_dim))

    modalities, names = [], []
    for m, (d, kind) in enumerate(zip(n_features, kinds)):
        if kind == "dense":
            W = rng.standard_normal((latent_dim, d)) / np.sqrt(latent_dim)
            X = z @ W + 0.1 * rng.standard_normal((n_samples, d))
            modalities.append(np.ascontiguousarray(X))
        else:
            modalities.append(_bag_of_words(rng, z, member, d, doc_length))
        names.append(f"{kind}{m}")
    labels = member if multilabel else primary.astype(np.int64)
    return MultiModalDataset(modalities, labels, None, None, names)


def _bag_of_words(rng, z, member, n_words, doc_length):
    n_samples, n_classes = member.shape
    # Topics concentrated on a few words each, plus a flat background.
    topics = rng.dirichlet(np.full(n_words, 0.05), size=n_classes)
    background = rng.dirichlet(np.full(n_words, 1.0))
    V = rng.standard_normal((z.shape[1], n_classes))
    logits = z @ V
    logits = np.where(member > 0, logits, -np.inf)
    mix = np.exp(logits - logits.max(axis=1, keepdims=True))
    mix /= mix.sum(axis=1, keepdims=True)
    probs = 0.8 * (mix @ topics) + 0.2 * background
    lengths = np.maximum(1, rng.poisson(doc_length, n_samples))
    rows, cols, vals = [], [], []
    for i in range(n_samples):
        counts = rng.multinomial(lengths[i], probs[i] / probs[i].sum())
        nz = np.flatnonzero(counts)
        rows.append(np.full(nz.size, i))
        cols.append(nz)
        vals.append(np.log1p(counts[nz]))
    X = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_samples, n_words))
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / norms) @ X
    X = sp.csr_matrix(X)
    X.sort_indices()
    return X


ROW_NORMALIZATIONS = ("none", "l2", "hellinger")


def normalize_rows(X, kind):
    """Row-wise feature normalisation (needs no fitted statistics, so it can be
    applied before a train/test split without leaking information).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n_samples, n_features)
    kind : {"none", "l2", "hellinger"}
        ``"l2"``: each row divided by its L2 norm.  ``"hellinger"``: the
        element-wise square root, then L2 (for non-negative histograms such
        as bag-of-visual-words; the square root damps bursty words).
        All-zero rows stay zero.

    Returns
    -------
    ndarray or CSR matrix (float64); ``X`` itself for ``"none"``.
    """
    from ._preprocess import Preprocessor
    from ._validation import check_matrix, check_option

    check_option(kind, "kind", ROW_NORMALIZATIONS)
    if kind == "none":
        return X
    return Preprocessor(kind).transform(check_matrix(X, "X"))
