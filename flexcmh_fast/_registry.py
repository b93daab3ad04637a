"""The hashing methods, listed once.

:func:`flexcmh_fast.train` (method names and estimator classes),
:func:`flexcmh_fast.load` (the kinds of saved file each method reads), the
package's lazy exports (estimator class names), the ``flexcmh-fast``
command line (``--method``) and the experiment protocol (which training data
a method gets) all read :data:`METHODS`: adding a method is one entry.

Entries name their estimator class as a ``"module:attr"`` string, imported
on first use, and this module imports nothing at module level, so that
reading the registry (building the CLI parser, loading a ``HammingIndex``
file) does not import Numba.  Saved kinds that are not methods
(``HammingIndex``) belong to the file format (:mod:`flexcmh_fast._persist`).
"""
import importlib

# What correspondence a method trains on (``Method.pairs``).
ANY_PAIRS = "any"            # none, some or all pairs known, sample counts may differ
KNOWN_PAIRS = "known"        # the known pairs of two modalities (at least 2); every row encoded
COMPLETE_PAIRS = "complete"  # completely paired data: one object per row of every modality
PAIR_NEEDS = (ANY_PAIRS, KNOWN_PAIRS, COMPLETE_PAIRS)


class Method:
    """One hashing method.

    Attributes
    ----------
    name : str
        ``method=`` of :func:`flexcmh_fast.train` and ``--method`` of the
        command line.
    estimator : str
        ``"module:attr"`` of its estimator class, imported on first use.
    kinds : tuple of str
        Kinds of saved file it loads from: first the ``kind`` its ``save``
        writes, then older names kept so files of earlier formats load.
    pairs : {"any", "known", "complete"}
        The correspondence it trains on: ``"any"`` (none, some or all pairs
        known), ``"known"`` (it trains on the known pairs, at least 2, and
        encodes every row), ``"complete"`` (completely paired data; the
        experiment protocol gives it the objects with a known pair as one
        paired set).
    labels : bool
        Whether it trains on labels (supervised; ``fit`` without labels
        raises).
    """

    __slots__ = ("name", "estimator", "kinds", "pairs", "labels")

    def __init__(self, name, estimator, kinds, pairs, labels=False):
        if pairs not in PAIR_NEEDS:
            raise ValueError(f"'pairs' must be one of {list(PAIR_NEEDS)}. Got {pairs!r} "
                             "instead.")
        self.name, self.estimator, self.kinds = name, estimator, tuple(kinds)
        self.pairs, self.labels = pairs, bool(labels)

    @property
    def class_name(self):
        """Name of the estimator class (the package exports it)."""
        return self.estimator.rpartition(":")[2]

    def __repr__(self):
        return (f"Method({self.name!r}, {self.estimator!r}, kinds={self.kinds}, "
                f"pairs={self.pairs!r}, labels={self.labels})")


METHODS = (
    Method("flexcmh", "flexcmh_fast.flexcmh:FlexCMH", ("FlexCMH", "FlexCMHModel"), ANY_PAIRS),
    Method("csmh", "flexcmh_fast.csmh:CSMH", ("CSMH", "CSMHModel"), COMPLETE_PAIRS,
           labels=True),
    Method("cca_itq", "flexcmh_fast.baselines:CCAITQ", ("CCAITQ",), KNOWN_PAIRS),
    Method("cmfh", "flexcmh_fast.baselines:CMFH", ("CMFH",), KNOWN_PAIRS),
    Method("scm", "flexcmh_fast.baselines:SCM", ("SCM",), KNOWN_PAIRS, labels=True),
)


def method_names():
    """The methods' names, in registry order."""
    return tuple(m.name for m in METHODS)


def get_method(name):
    """The :class:`Method` called ``name``.

    Raises
    ------
    ValueError
        ``name`` is not a registered method (the message lists them).
    """
    from ._validation import check_option

    check_option(name, "method", method_names())
    return next(m for m in METHODS if m.name == name)


def resolve(target):
    """The object a ``"module:attr"`` string names (importing the module)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def estimator_class(name):
    """The estimator class of method ``name`` (imported now)."""
    return resolve(get_method(name).estimator)


def saved_kinds():
    """``{kind of saved file: "module:attr" of the class that loads it}``
    for every method (older kinds included)."""
    return {kind: m.estimator for m in METHODS for kind in m.kinds}


def estimator_exports():
    """``{estimator class name: module}``, the package's lazy exports."""
    return {m.class_name: m.estimator.partition(":")[0] for m in METHODS}
