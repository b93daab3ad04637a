"""Declarative parameter tables (scikit-learn's ``_parameter_constraints``
pattern): every setting of a method is declared once, with its default, its
type and range or options, and a one-line description.  The estimators'
``fit``, :func:`flexcmh_fast.train` and the distributed trainer all validate
through :func:`validate_params`, so they accept the same values and raise
the same messages.  The constraints are thin wrappers of the checks in
:mod:`flexcmh_fast._validation`: one rule per kind of value.
"""
from dataclasses import dataclass
from typing import Any

from ._validation import (
    MAX_BITS,
    check_bool,
    check_callable,
    check_file_path,
    check_float,
    check_int,
    check_n_threads,
    check_option,
    check_random_state,
)


class Int:
    """An int in ``[low, high]`` (either bound may be None)."""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def __call__(self, value, name):
        return check_int(value, name, self.low, self.high)


class OptionalInt(Int):
    """None, or an int in ``[low, high]``."""

    def __call__(self, value, name):
        return check_int(value, name, self.low, self.high, allow_none=True)


class Float:
    """A finite float within the bounds (``low_open`` / ``high_open``: that
    bound excluded)."""

    def __init__(self, low=None, high=None, low_open=False, high_open=False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def __call__(self, value, name):
        return check_float(value, name, self.low, self.high,
                           low_inclusive=not self.low_open,
                           high_inclusive=not self.high_open)


class OptionalFloat(Float):
    """None, or a finite float within the bounds."""

    def __call__(self, value, name):
        return check_float(value, name, self.low, self.high,
                           low_inclusive=not self.low_open,
                           high_inclusive=not self.high_open, allow_none=True)


class OptionalPath:
    """None, or the path (``str`` or ``os.PathLike``, kept as a ``str``) of
    a file in an existing folder."""

    def __call__(self, value, name):
        return check_file_path(value, name)


class Options:
    """One of a fixed set of values (strings or bools)."""

    def __init__(self, *options):
        self.options = options

    def __call__(self, value, name):
        return check_option(value, name, self.options)


class Bool:
    def __call__(self, value, name):
        return check_bool(value, name)


class Threads:
    """``None`` or ``-1`` (every core of the process doing the work) or an
    int in [1, max_threads()], the bound of every thread count.  "Every
    core" is kept as ``None``: each backend resolves it where the work runs
    (this process, or each Dask worker)."""

    def __call__(self, value, name):
        return check_n_threads(value, name, resolve=False)


class RandomState:
    """None, a non-negative int, or a numpy Generator / RandomState, checked
    by :func:`~flexcmh_fast._validation.check_random_state`'s rule; the
    estimator resolves it into a Generator once, at the start of ``fit``."""

    def __call__(self, value, name):
        return check_random_state(value, name, resolve=False)


class CallableOrNone:
    def __call__(self, value, name):
        return check_callable(value, name, allow_none=True)


@dataclass(frozen=True)
class Param:
    """One declared setting: default, constraint (a callable
    ``(value, name) -> validated value``) and a one-line description."""

    default: Any
    check: Any
    doc: str = ""


# Settings every hashing method has, with the same meaning everywhere.
COMMON = {
    "n_bits": Param(32, Int(1, MAX_BITS), "code length in bits"),
    "max_iter": Param(None, Int(0), "outer iterations at most (0: none)"),
    "tol": Param(None, Float(0.0), "relative objective change that stops the loop"),
    "n_threads": Param(None, Threads(), "threads of the kernels (None / -1: all cores)"),
    "random_state": Param(None, RandomState(), "seed of every random choice"),
    "verbose": Param(False, Bool(), "progress bar (tqdm) with the objective"),
    "callback": Param(None, CallableOrNone(),
                      "callback(iteration, state) after every iteration; True stops"),
}


def table(**specific):
    """A method's table: the common settings (method defaults for
    ``max_iter`` / ``tol`` given as plain values) plus its own."""
    out = dict(COMMON)
    for name, value in specific.items():
        if isinstance(value, Param):
            out[name] = value
        else:  # a method default for a common setting
            out[name] = Param(value, COMMON[name].check, COMMON[name].doc)
    return out


def validate_params(params, spec):
    """Validate ``params`` (a dict of settings named by the table ``spec``;
    names are checked where settings are given, with
    :func:`~flexcmh_fast._validation.check_parameter_names`).

    Each value is checked by its constraint (``TypeError`` / ``ValueError``
    naming it).  Returns a new dict of validated values, defaults filled in.
    """
    return {name: p.check(params.get(name, p.default), name) for name, p in spec.items()}
