"""Peer baselines run on the same splits, API and evaluation as FlexCMH and
CSMH: CCA-ITQ (Gong et al., TPAMI 2013), CMFH (Ding, Guo, Zhou, CVPR 2014)
and sequential SCM (Zhang, Li, AAAI 2014).  See docs/baselines.md.

Each private module holds the method's ``PARAMS`` (name -> default),
``check_params(**params)`` and ``fit_<method>(Xs, pairs, *, n_bits, labels,
rng, n_threads, verbose, callback, **params)``, dispatched by
:func:`flexcmh_fast.train` (``method="cca_itq"``, ``"cmfh"``, ``"scm"``).
"""
import importlib

#: method name -> private module holding PARAMS, check_params and fit_<method>.
MODULES = {
    "cca_itq": "flexcmh_fast.baselines._cca_itq",
    "cmfh": "flexcmh_fast.baselines._cmfh",
    "scm": "flexcmh_fast.baselines._scm",
}


def method_module(method):
    """The module of a baseline method (imported on first use)."""
    return importlib.import_module(MODULES[method])


def fit_function(method):
    """``fit_<method>`` of a baseline."""
    return getattr(method_module(method), f"fit_{method}")
