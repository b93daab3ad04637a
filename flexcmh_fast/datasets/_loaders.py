"""Loaders of the standard cross-modal .mat files: the split layout
(``<M>_tr`` / ``<M>_te``), the all layout (``XAll`` / ``YAll`` / ``LAll``)
and the Wikipedia benchmark."""
import os

import numpy as np
import scipy.sparse as sp

from .._validation import _describe, check_bool, check_option
from ._container import MultiModalDataset
from ._matfile import MatFile, as_features, as_labels, check_path, infer_rows, zero_based


def read_split(mat, bases, label_base, single_label):
    """``<base>_tr`` / ``<base>_te`` variables -> modalities and labels with
    the rows concatenated train then test, ``train_idx``, ``test_idx``."""
    mat.require([f"{k}_{s}" for k in bases + [label_base] for s in ("tr", "te")])
    parts = {}
    n_rows = {}
    for suffix in ("tr", "te"):
        raw = [mat.get(f"{base}_{suffix}") for base in bases]
        raw_lab = mat.get(f"{label_base}_{suffix}")
        n = infer_rows(raw, raw_lab)
        feats = [as_features(X, f"{base}_{suffix}", n, mat.path) for X, base in zip(raw, bases)]
        lab = as_labels(raw_lab, f"{label_base}_{suffix}", n, mat.path, single_label)
        parts[suffix] = (feats, lab)
        n_rows[suffix] = n
    labs = [parts["tr"][1], parts["te"][1]]
    if labs[0].ndim != labs[1].ndim or (labs[0].ndim == 2 and labs[0].shape[1] != labs[1].shape[1]):
        raise ValueError(
            f"Train and test labels in {mat.path!r} have different layouts: "
            f"{labs[0].shape} and {labs[1].shape}."
        )
    if labs[0].ndim == 1:
        labs = zero_based(labs)
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


def read_all(mat, keys, label_key, single_label):
    """One variable per modality holding every object -> modalities, labels
    and no split (None, None)."""
    mat.require(keys + [label_key])
    raw = [mat.get(k) for k in keys]
    lab_raw = mat.get(label_key)
    n = infer_rows(raw, lab_raw)
    modalities = [as_features(X, k, n, mat.path) for X, k in zip(raw, keys)]
    labels = as_labels(lab_raw, label_key, n, mat.path, single_label)
    if labels.ndim == 1:
        labels = zero_based([labels])[0]
    return modalities, labels, None, None


def default_names(keys):
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
    path = check_path(path)
    if os.path.isdir(path):
        raise ValueError(f"'path' must be a .mat file, got the directory {path!r}.")
    single_label = check_bool(single_label, "single_label")
    mat = MatFile(path)
    try:
        if modalities is None:
            if labels is not None:
                raise ValueError("'labels' is given without 'modalities'; give both or neither.")
            read, keys, label_key = detect_layout(mat)
        else:
            read, keys, label_key = named_layout(mat, modalities, labels)
        mods, labs, tr, te = read(mat, keys, label_key, single_label)
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
        names = default_names(keys)
    return MultiModalDataset(mods, labs, tr, te, list(names))


def detect_layout(mat):
    """The reader, modality keys and label key of a file of a known layout:
    ``I`` / ``T`` / ``L`` split, then ``XAll`` / ``YAll`` / ``LAll``."""
    if all(f"{b}_{s}" in mat for b in ("I", "T", "L") for s in ("tr", "te")):
        return read_split, ["I", "T"], "L"
    if all(k in mat for k in ("XAll", "YAll", "LAll")):
        return read_all, ["XAll", "YAll"], "LAll"
    raise ValueError(
        f"Could not recognise the layout of {mat.path!r}: expected I_tr/I_te/T_tr/"
        "T_te/L_tr/L_te or XAll/YAll/LAll (or pass 'modalities' and 'labels'). "
        f"Variables in the file: {mat.variables}."
    )


def named_layout(mat, modalities, labels):
    """The reader, modality keys and label key for the variable names the
    caller gave: full variables (all layout) or bases of ``<name>_tr`` /
    ``<name>_te`` (split layout; missing ones are reported)."""
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
    variables = keys + [label_key]
    if not all(k in mat for k in variables) and any(
            f"{k}_tr" in mat or f"{k}_te" in mat for k in variables):
        return read_split, keys, label_key
    return read_all, keys, label_key


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
    path = check_path(path)
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
    mat = MatFile(tfidf_file)
    try:
        mat.require(["T_tfidf_tr", "T_tfidf_te"])
        n_tr, n_te = len(data.train_idx), len(data.test_idx)
        tr = sp.csr_matrix(as_features(mat.get("T_tfidf_tr"), "T_tfidf_tr", n_tr, tfidf_file))
        te = sp.csr_matrix(as_features(mat.get("T_tfidf_te"), "T_tfidf_te", n_te, tfidf_file))
    finally:
        mat.close()
    text_mat = sp.vstack([tr, te], format="csr")
    text_mat.sort_indices()
    return MultiModalDataset([data.modalities[0], text_mat], data.labels, data.train_idx,
                             data.test_idx, ["image", "text"])
