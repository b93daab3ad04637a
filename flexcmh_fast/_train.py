"""``train``: the functional entry point (build a method's estimator from
the registry and fit it)."""
from ._registry import estimator_class
from ._validation import check_parameter_names


def train(modalities, pairs=None, *, method="flexcmh", labels=None, **params):
    """Learn hash functions for every modality: ``method``'s estimator with
    ``params``, fitted.

    ``fc.train(Xs, pairs, method="flexcmh", n_bits=32, random_state=0)`` is
    ``fc.FlexCMH(n_bits=32, random_state=0).fit(Xs, pairs)``: the same
    validation, the same codes.

    Parameters
    ----------
    modalities : list of array-like or scipy.sparse matrices
        One ``(n_m, d_m)`` feature matrix per modality (M >= 2).  Sample counts
        may differ between modalities.  Sparse input (CSR) is never densified.
    pairs : None, "all", ndarray of shape (P, 2), or dict
        Known correspondences: ``None`` (none known), ``"all"`` (row i of every
        modality is one object), a ``(P, 2)`` int array of (row in modality 0,
        row in modality 1), or ``{(m, m2): (P, 2) array}`` for any modalities.
    method : {"flexcmh", "csmh", "cca_itq", "cmfh", "scm"}, default="flexcmh"
        ``"flexcmh"``: :class:`flexcmh_fast.FlexCMH` (unsupervised, weakly
        paired data).  ``"csmh"``: :class:`flexcmh_fast.CSMH` (supervised;
        needs complete pairs and ``labels``).  ``"cca_itq"``, ``"cmfh"``
        (unsupervised) and ``"scm"`` (needs ``labels``): the peer baselines
        :class:`flexcmh_fast.CCAITQ`, :class:`flexcmh_fast.CMFH` and
        :class:`flexcmh_fast.SCM` (two modalities, trained on the known
        pairs).
    labels : list of ndarray, optional
        One array per modality: 1-D class ids or 2-D 0/1 multi-label matrix.
        Not used by the default FlexCMH (only by ``matching="labels"``).
    **params
        Settings of the method's estimator (``n_bits``, ``random_state``,
        ``n_threads``, ``verbose``, ``callback``, ...; see its docstring).
        Unknown names raise ``TypeError`` listing the valid ones.

    Returns
    -------
    FlexCMH, CSMH, CCAITQ, CMFH or SCM
        The fitted estimator (``encode``, ``codes_``, ``history_``, ``save``).
    """
    cls = estimator_class(method)
    check_parameter_names(params, cls._parameters, f"method={method!r}")
    return cls(**params).fit(modalities, pairs, labels)
