"""Datasets: loaders for the standard cross-modal .mat files and a synthetic
multi-modal generator (the built-in default dataset).

Every loader returns a :class:`MultiModalDataset`: one feature matrix per
modality with aligned rows (row ``i`` of every modality is the same object),
one label row per object, and the file's fixed train/test split when it has
one.  Files are never modified.  Both MATLAB layouts are read: v5 files and
v7.3 (HDF5) files.

Modules: ``_container`` (:class:`MultiModalDataset`), ``_matfile`` (the
.mat / HDF5 reader), ``_loaders`` (:func:`load_mat`, :func:`load_wiki`),
``_synthetic`` (:func:`make_multimodal`).  :func:`normalize_rows` is the
stateless part of the model's preprocessing
(:mod:`flexcmh_fast._preprocess`), for data prepared outside a model.
"""
from .._preprocess import normalize_rows
from ._container import MultiModalDataset
from ._loaders import load_mat, load_wiki
from ._synthetic import make_multimodal

__all__ = ["MultiModalDataset", "load_wiki", "load_mat", "make_multimodal", "normalize_rows"]
