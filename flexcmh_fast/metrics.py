"""Retrieval metrics over packed binary codes.

Every metric ranks the whole database by Hamming distance to each query and
compares labels: a database item is *relevant* to a query when the two share
at least one label (1-D class ids: the same class; 2-D 0/1 multi-label
matrices: a common 1).  All statistics come from one compiled pass per query
(:mod:`flexcmh_fast._ranking`, OpenMP over queries) that computes the
Hamming distance and relevance of every database item, the histograms of
all / relevant items per distance and, for the stable tie-break, the
position of every relevant item inside its tie group.

Ties
----
Many database items share a Hamming distance, and the order inside such a tie
changes average precision.  ``ties="stable"`` orders every tie by database
index (the order of :class:`flexcmh_fast.HammingIndex` and of a stable sort).
``ties="aware"`` is the tie-aware AP of McSherry & Najork (ECIR 2008): the
expected AP over all orders inside every tie group, in closed form.

Exclusions
----------
Queries without any relevant database item have no defined AP
(:func:`average_precision` gives NaN for them).  Every averaged metric here
(MAP, precision@k, precision-recall curves, precision within a radius)
averages over the queries with at least one relevant item only;
``return_excluded=True`` (MAP) or :func:`retrieval_report` gives the number
of excluded queries.
"""
import numbers

import numpy as np

from ._validation import (
    _describe,
    as_array,
    check_int,
    check_n_bits,
    check_n_threads,
    check_option,
)
from .search import as_words, check_codes

TIES = ("stable", "aware")
# ``ks`` of _rank_stats when no precision@k is wanted (None is a bad ``ks``).
_NO_KS = object()

__all__ = [
    "average_precision",
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_curve",
    "precision_at_radius",
    "retrieval_report",
    "evaluate_retrieval",
]


def _engine():
    from ._ext import load_extension

    return load_extension("_ranking")


def _check_label_array(labels, name, n_rows):
    labels = as_array(labels, name, "a 1-D array of class ids or a 2-D 0/1 matrix")
    if labels.dtype.kind not in "biuf":
        raise TypeError(
            f"'{name}' must hold integers (class ids or 0/1). Got dtype {labels.dtype} instead."
        )
    if labels.ndim not in (1, 2):
        raise ValueError(
            f"'{name}' must be 1-D class ids or a 2-D 0/1 matrix. "
            f"Got {_describe(labels)} instead."
        )
    if labels.shape[0] != n_rows:
        raise ValueError(
            f"'{name}' must have one row per code ({n_rows}). Got shape {labels.shape} instead."
        )
    if labels.dtype.kind == "f":
        if labels.size and (not np.isfinite(labels).all()
                            or np.any(labels != np.round(labels))):
            raise ValueError(f"'{name}' must hold integers. Got non-integer or non-finite values.")
    if labels.ndim == 1:
        if labels.size and labels.min() < 0:
            raise ValueError(f"'{name}' class ids must be >= 0. Got {labels.min()} instead.")
        return labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(f"'{name}' as a 2-D multi-label matrix must hold only 0 and 1.")
    return labels.astype(np.uint8)


def _label_inputs(query_labels, db_labels, n_q, n_db):
    """Validate both label arrays and put them in the engine's form.

    Returns ``(q_words, db_words, db_ids)``.  Single-label data (1-D class
    ids) uses the id mode: ``db_ids`` holds uint32 class ids (renumbered
    when an id exceeds 2**32 - 1) and ``q_words[:, 0]`` the query ids - four
    bytes per database item and an equality test, whatever the number of
    classes.  Multi-label rows are packed into uint64 bit masks; ``db_ids``
    is then empty.
    """
    ql = _check_label_array(query_labels, "query_labels", n_q)
    dl = _check_label_array(db_labels, "db_labels", n_db)
    if ql.ndim != dl.ndim:
        raise ValueError(
            "'query_labels' and 'db_labels' must both be 1-D class ids or both 2-D "
            f"multi-label matrices. Got shapes {ql.shape} and {dl.shape} instead."
        )
    if ql.ndim == 1:
        if max(int(ql.max(initial=0)), int(dl.max(initial=0))) > np.iinfo(np.uint32).max:
            _, inverse = np.unique(np.concatenate([ql, dl]), return_inverse=True)
            ql, dl = inverse[:n_q], inverse[n_q:]
        return (np.ascontiguousarray(ql.astype(np.uint64).reshape(-1, 1)),
                np.zeros((0, 1), dtype=np.uint64), dl.astype(np.uint32))
    if ql.shape[1] != dl.shape[1]:
        raise ValueError(
            "'query_labels' and 'db_labels' must have the same number of label columns. "
            f"Got {ql.shape[1]} and {dl.shape[1]} instead."
        )
    return (as_words(np.packbits(ql, axis=1)), as_words(np.packbits(dl, axis=1)),
            np.zeros(0, dtype=np.uint32))


def _rank_stats(query_codes, db_codes, query_labels, db_labels, n_bits, ties,
                want_ap=True, top_k=None, ks=_NO_KS, want_hist=False, n_threads=None):
    """Validate everything and run the compiled engine once."""
    n_bits = check_n_bits(n_bits)
    check_codes(query_codes, "query_codes", n_bits)
    check_codes(db_codes, "db_codes", n_bits)
    ties = check_option(ties, "ties", TIES)
    n_threads = check_n_threads(n_threads)
    n_q, n_db = query_codes.shape[0], db_codes.shape[0]
    if n_db < 1:
        raise ValueError("'db_codes' must hold at least one code. Got 0 rows instead.")
    if n_db > np.iinfo(np.int32).max:
        raise ValueError(f"'db_codes' has {n_db} rows; at most 2**31 - 1 are supported.")
    if top_k is None:
        top_k = 0
    else:
        # Ranks beyond the database are the whole ranking: cap before the
        # engine's fixed-width integers see the value.
        top_k = min(check_int(top_k, "top_k", 1), max(db_codes.shape[0], 1))
    ks_sorted = np.zeros(0, dtype=np.int64)
    ks_inverse = None
    if ks is not _NO_KS:
        try:
            ks_arr = np.atleast_1d(ks)
        except ValueError:  # ragged nested sequences
            ks_arr = None
        if ks_arr is None or ks_arr.ndim != 1 or ks_arr.size == 0 \
                or ks_arr.dtype.kind not in "iu":
            raise ValueError(
                f"'ks' must be a non-empty 1-D sequence of ints in [1, {n_db}]. "
                f"Got {_describe(ks)} instead."
            )
        if ks_arr.min() < 1 or ks_arr.max() > n_db:
            raise ValueError(
                f"'ks' must hold ints in [1, {n_db}] (the database size). "
                f"Got values in [{ks_arr.min()}, {ks_arr.max()}] instead."
            )
        ks_sorted, ks_inverse = np.unique(ks_arr.astype(np.int64), return_inverse=True)
    q_lab, db_lab, db_ids = _label_inputs(query_labels, db_labels, n_q, n_db)
    engine = _engine()
    ap, n_rel, pk, h_all, h_rel = engine.rank_stats(
        as_words(query_codes), as_words(db_codes), q_lab, db_lab, db_ids,
        n_bits, ties == "stable", want_ap, top_k, ks_sorted, want_hist, n_threads)
    if ks_inverse is not None:
        pk = pk[:, ks_inverse.reshape(-1)]
    return ap, n_rel, pk, h_all, h_rel


def average_precision(query_codes, db_codes, query_labels, db_labels, *, n_bits,
                      ties="stable", top_k=None, n_threads=None):
    """Average precision of every query over the Hamming ranking of the database.

    Parameters
    ----------
    query_codes : ndarray of uint8, shape (n_queries, ceil(n_bits / 8))
        Packed query codes (see :func:`flexcmh_fast.pack_codes`).
    db_codes : ndarray of uint8, shape (n_db, ceil(n_bits / 8))
        Packed database codes.
    query_labels, db_labels : ndarray
        1-D class ids or 2-D 0/1 multi-label matrices (the same kind on both
        sides), one row per code.  Relevant = at least one shared label.
    n_bits : int
        Code length.
    ties : {"stable", "aware"}, default="stable"
        ``"stable"``: ties in Hamming distance are ordered by database index.
        ``"aware"``: expected AP over all orders inside each tie
        (McSherry & Najork 2008).
    top_k : int, optional
        Truncate the ranking at rank ``top_k`` (MAP@k).  AP@k is then the
        mean of precision@rank over the relevant items retrieved in the top
        ``top_k`` (0 when none is); with ``ties="aware"`` it is the expected
        sum of those precisions divided by the expected number of relevant
        items in the top ``top_k``.  ``None`` uses the whole ranking.
    n_threads : int, optional
        Threads (parallel over queries); ``None`` or -1 means all cores.

    Returns
    -------
    ap : ndarray of float64, shape (n_queries,)
        NaN for queries with no relevant item in the database.
    """
    ap, _, _, _, _ = _rank_stats(query_codes, db_codes, query_labels, db_labels,
                                 n_bits, ties, top_k=top_k, n_threads=n_threads)
    return ap


def mean_average_precision(query_codes, db_codes, query_labels, db_labels, *, n_bits,
                           ties="stable", top_k=None, n_threads=None,
                           return_excluded=False):
    """Mean of :func:`average_precision` over queries with a relevant item.

    Queries without any relevant database item are excluded from the mean
    (their AP is undefined).  Parameters as in :func:`average_precision`.

    Parameters
    ----------
    return_excluded : bool, default=False
        Also return the number of excluded queries.

    Returns
    -------
    map : float
        NaN when every query is excluded.
    n_excluded : int
        Only with ``return_excluded=True``.
    """
    ap = average_precision(query_codes, db_codes, query_labels, db_labels, n_bits=n_bits,
                           ties=ties, top_k=top_k, n_threads=n_threads)
    valid = ~np.isnan(ap)
    value = float(ap[valid].mean()) if valid.any() else float("nan")
    if return_excluded:
        return value, int(ap.size - valid.sum())
    return value


def precision_at_k(query_codes, db_codes, query_labels, db_labels, ks, *, n_bits,
                   ties="stable", n_threads=None):
    """Mean precision of the top ``k`` retrieved items, for every ``k`` in ``ks``.

    Parameters
    ----------
    ks : int or sequence of int
        Cut-offs in ``[1, n_db]`` (any order; duplicates allowed).
    ties : {"stable", "aware"}
        ``"aware"`` gives the expected precision over the orders inside the
        tie group cut by rank ``k``.

    Returns
    -------
    ndarray of float64, shape (len(ks),)
        Averaged over the queries with at least one relevant item.
    """
    _, n_rel, pk, _, _ = _rank_stats(query_codes, db_codes, query_labels, db_labels,
                                     n_bits, ties, want_ap=False, ks=ks,
                                     n_threads=n_threads)
    valid = n_rel > 0
    if not valid.any():
        return np.full(pk.shape[1], np.nan)
    return pk[valid].mean(axis=0)


def _curves_from_hist(h_all, h_rel, n_rel, average):
    """Precision and recall within every Hamming radius from the histograms."""
    valid = n_rel > 0
    cum_all = np.cumsum(h_all[valid], axis=1).astype(np.float64)
    cum_rel = np.cumsum(h_rel[valid], axis=1).astype(np.float64)
    n_valid = int(valid.sum())
    if n_valid == 0:
        nan = np.full(h_all.shape[1], np.nan)
        return nan, nan.copy()
    if average == "macro":
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(cum_all > 0, cum_rel / np.maximum(cum_all, 1), 0.0)
        recall = cum_rel / n_rel[valid, None]
        return prec.mean(axis=0), recall.mean(axis=0)
    tot_all = cum_all.sum(axis=0)
    tot_rel = cum_rel.sum(axis=0)
    prec = np.where(tot_all > 0, tot_rel / np.maximum(tot_all, 1), 0.0)
    return prec, tot_rel / n_rel[valid].sum()


def precision_recall_curve(query_codes, db_codes, query_labels, db_labels, *, n_bits,
                           average="macro", n_threads=None):
    """Precision and recall of Hamming-ball retrieval for radii 0..n_bits.

    At radius ``r`` every database item within Hamming distance ``r`` of the
    query is retrieved (tie handling does not matter here).

    Parameters
    ----------
    average : {"macro", "micro"}, default="macro"
        ``"macro"``: per-query precision and recall, averaged over queries
        (an empty ball has precision 0).  ``"micro"``: pooled counts over all
        queries.

    Returns
    -------
    precision, recall : ndarray of float64, shape (n_bits + 1,)
    radii : ndarray of int64, shape (n_bits + 1,)
        Averaged over the queries with at least one relevant item.
    """
    average = check_option(average, "average", ("macro", "micro"))
    _, n_rel, _, h_all, h_rel = _rank_stats(query_codes, db_codes, query_labels, db_labels,
                                            n_bits, "aware", want_ap=False, want_hist=True,
                                            n_threads=n_threads)
    prec, rec = _curves_from_hist(h_all, h_rel, n_rel, average)
    return prec, rec, np.arange(n_bits + 1, dtype=np.int64)


def precision_at_radius(query_codes, db_codes, query_labels, db_labels, *, n_bits,
                        radius=2, n_threads=None):
    """Mean precision of the items within Hamming distance ``radius``.

    Per query: relevant items in the ball / items in the ball, where a query
    whose ball is empty counts as precision 0; averaged over the queries with
    at least one relevant item.
    """
    n_bits_checked = check_n_bits(n_bits)
    radius = check_int(radius, "radius", 0, n_bits_checked)
    prec, _, _ = precision_recall_curve(query_codes, db_codes, query_labels, db_labels,
                                        n_bits=n_bits, n_threads=n_threads)
    return float(prec[radius])


def retrieval_report(query_codes, db_codes, query_labels, db_labels, *, n_bits,
                     ks=(), radius=2, n_threads=None):
    """Every metric at once, with two engine passes (stable and tie-aware).

    Parameters
    ----------
    ks : int or sequence of int, default=()
        Cut-offs of precision@k in ``[1, n_db]``; ``None`` or empty: none.
    radius : int in [0, n_bits], default=2
        Radius of precision within a Hamming ball.

    Other parameters as in :func:`average_precision`.

    Returns
    -------
    dict with keys
        ``map`` (stable tie-break), ``map_aware``, ``n_queries``,
        ``n_excluded`` (queries without a relevant item), ``ks`` and
        ``precision_at_k`` (stable; only if ``ks``), ``precision_at_radius``
        and ``radius``, ``pr_precision``, ``pr_recall`` (macro, radii
        0..n_bits).
    """
    no_ks = (ks is None or isinstance(ks, (list, tuple)) and not ks
             or isinstance(ks, np.ndarray) and ks.shape == (0,))
    radius = check_int(radius, "radius", 0, check_n_bits(n_bits))
    ap, n_rel, pk, h_all, h_rel = _rank_stats(
        query_codes, db_codes, query_labels, db_labels, n_bits, "stable",
        ks=_NO_KS if no_ks else ks, want_hist=True, n_threads=n_threads)
    ks = [] if no_ks else np.atleast_1d(ks).astype(np.int64).tolist()
    ap_aware, _, _, _, _ = _rank_stats(query_codes, db_codes, query_labels, db_labels,
                                       n_bits, "aware", n_threads=n_threads)
    valid = n_rel > 0
    prec, rec = _curves_from_hist(h_all, h_rel, n_rel, "macro")
    nan = float("nan")
    return {
        "map": float(ap[valid].mean()) if valid.any() else nan,
        "map_aware": float(ap_aware[valid].mean()) if valid.any() else nan,
        "n_queries": int(ap.size),
        "n_excluded": int((~valid).sum()),
        "ks": ks,
        "precision_at_k": (pk[valid].mean(axis=0).tolist() if valid.any() else [nan] * len(ks))
        if ks else [],
        "radius": radius,
        "precision_at_radius": float(prec[radius]),
        "pr_precision": prec.tolist(),
        "pr_recall": rec.tolist(),
    }


def evaluate_retrieval(model, X_query, query_modality, query_labels, X_db, db_modality,
                       db_labels, *, ties="stable", top_k=None, n_threads=None):
    """MAP of cross-modal retrieval with a trained model.

    Encodes ``X_query`` with the hash function of ``query_modality`` and
    ``X_db`` with that of ``db_modality`` (``model.encode``), then returns
    :func:`mean_average_precision` of the queries against the database.

    Returns
    -------
    float
    """
    if not hasattr(model, "encode") or not hasattr(model, "n_bits"):
        raise TypeError(
            "'model' must be a trained model with encode() and n_bits (from "
            f"flexcmh_fast.train). Got {type(model).__name__} instead."
        )
    for name, value in (("query_modality", query_modality), ("db_modality", db_modality)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"'{name}' must be an int. Got {_describe(value)} instead.")
    q_codes = model.encode(X_query, query_modality)
    db_codes = model.encode(X_db, db_modality)
    return mean_average_precision(q_codes, db_codes, query_labels, db_labels,
                                  n_bits=model.n_bits, ties=ties, top_k=top_k,
                                  n_threads=n_threads)
