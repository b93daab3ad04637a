"""Fault suite for the public API: arbitrary inputs (Hypothesis) either
must be accepted and give a result, or must raise a ValueError or TypeError
whose message names the offending argument (which one is decided here, by
plain rules written independently of the library's checks); degenerate data
gets a clear error or warning; concurrent searches equal serial ones.
"""
import numbers
import re
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import flexcmh_fast as fc
from flexcmh_fast import metrics
from flexcmh_fast._validation import (
    DegenerateDataWarning,
    check_finite_scale,
    check_matrix,
    max_threads,
    warn_if_constant,
)

FAULT_SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])

small_arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.int64, np.float64, np.float32, np.bool_,
                           np.complex128, np.dtype("<U2")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))

# Anything a user might pass by mistake.
weird = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 6), st.sampled_from([2**31, 2**63, 2**70, -2**63]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(max_size=4), st.binary(max_size=4),
    st.lists(st.integers(-2, 3), max_size=4),
    st.sampled_from([object(), {}, set(), (), [[1, 2], [3]], 1j, np.float32(2.5),
                     np.int64(3), np.bool_(True), "all", "itq", slice(2)]),
    small_arrays,
)
# Values every fault test tries, whatever Hypothesis draws: a ragged list,
# None, an int beyond 32 bits, an empty string.
TRAPS = ([[1, 2], [3]], None, 2**31, "")


def with_traps(test):
    """``test`` (given ``value``) run on the TRAPS as well."""
    for trap in TRAPS:
        test = example(value=trap)(test)
    return test


def check_outcome(call, valid, names):
    """Run ``call``.  When ``valid`` it must succeed (its result is returned);
    otherwise it must raise ValueError or TypeError with a message that names
    one of ``names`` (the invalid argument, or one whose validity depends on
    it) as a whole word."""
    if valid:
        return call()
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert any(re.search(rf"(?<!\w){re.escape(name)}(?!\w)", message) for name in names), (
        f"the error names none of {names}: {message}")
    return None


# ---------------------------------------------------------------------------
# What is valid: plain rules, one per kind of argument
# ---------------------------------------------------------------------------
def is_int(value, low=None, high=None):
    """A true integer (bools excluded) within the bounds."""
    return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            and (low is None or value >= low) and (high is None or value <= high))


def is_real(value, low=None):
    """A finite real number (bools excluded) >= low."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(float(value))) and (low is None or float(value) >= low))


def is_bool(value):
    return isinstance(value, (bool, np.bool_))


def is_n_threads(value):
    return value is None or is_int(value) and (value == -1 or 1 <= value <= max_threads())


def is_option(value, options):
    return isinstance(value, str) and value in options


def is_packed(value, n_rows, width):
    """Packed codes of ``width`` bytes, no padding bits (n_bits a multiple of 8)."""
    return (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 2
            and value.shape[1] == width and value.flags.c_contiguous
            and (n_rows is None or value.shape[0] == n_rows))


def is_pairs_array(value, n_samples):
    """A (P, 2) array of integer values indexing ``n_samples`` rows, no pair twice."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        return False
    if value.ndim != 2 or value.shape[1] != 2:
        return False
    if value.dtype.kind == "f" and not (np.isfinite(value).all()
                                        and (value == np.round(value)).all()):
        return False
    rows = {tuple(int(v) for v in row) for row in value}
    return (len(rows) == value.shape[0]
            and all(0 <= v < n_samples for row in rows for v in row))


def is_labels(value, n_rows):
    """1-D class ids: n_rows non-negative integer values (lists or arrays)."""
    if isinstance(value, (str, bytes, dict, set)) or value is None:
        return False
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged
        return False
    if arr.dtype.kind not in "biuf" or arr.shape != (n_rows,):
        return False
    return bool(np.isfinite(arr).all() and (arr == np.round(arr)).all() and (arr >= 0).all())


def is_ks(value, n_db, empty_ok=False):
    """An int, or a 1-D sequence of ints, every one in [1, n_db] (with
    ``empty_ok``, also None or an empty sequence)."""
    if value is None:
        return empty_ok
    if is_int(value):
        return 1 <= value <= n_db
    if not isinstance(value, (list, tuple, np.ndarray)):
        return False
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged
        return False
    if arr.size == 0:
        return empty_ok and (arr.ndim == 1 or not isinstance(value, np.ndarray))
    return (arr.ndim in (0, 1) and arr.dtype.kind in "iu"
            and bool(((arr >= 1) & (arr <= n_db)).all()))


@pytest.fixture(scope="module")
def data():
    d = fc.datasets.make_multimodal(40, n_classes=3, n_features=(5, 7), random_state=0)
    return d.modalities[0], d.modalities[1], d.labels


@pytest.fixture(scope="module")
def model(data):
    X0, X1, _ = data
    return fc.train([X0, X1], "all", n_bits=12, n_clusters=3, random_state=0, max_iter=2,
                    encoder="nnls")


N_TRAIN = 40  # rows of each modality of ``data``

# argument of train -> (is the value valid?, names an error may give).  The
# other arguments are valid: n_bits=8, n_clusters=3, random_state=0,
# max_iter=2, encoder="nnls", method "flexcmh", pairs "all", no labels.
TRAIN_RULES = {
    "n_bits": (lambda v: is_int(v, 1, 4096), ["n_bits"]),
    "n_clusters": (lambda v: v is None or is_int(v, 1, N_TRAIN), ["n_clusters"]),
    "max_iter": (lambda v: is_int(v, 0), ["max_iter"]),
    "tol": (lambda v: is_real(v, 0.0), ["tol"]),
    "random_state": (lambda v: v is None or is_int(v, 0), ["random_state"]),
    "n_threads": (is_n_threads, ["n_threads"]),
    # Any other method name is unknown, needs labels, or does not take
    # FlexCMH's n_clusters / encoder: the message says method=...
    "method": (lambda v: is_option(v, ("flexcmh",)), ["method"]),
    "code_scheme": (lambda v: is_option(v, ("itq", "kmeans")), ["code_scheme"]),
    "encoder": (lambda v: is_option(v, ("kernel", "nnls")), ["encoder"]),
    "lam": (lambda v: is_real(v, 0.0), ["lam"]),
    "pairs": (lambda v: v is None or is_option(v, ("all",)) or is_pairs_array(v, N_TRAIN)
              or isinstance(v, dict) and all(
                  isinstance(key, tuple) and key in ((0, 1), (1, 0))
                  and is_pairs_array(pairs, N_TRAIN) for key, pairs in v.items())
              and len({tuple(sorted(key)) for key in v}) == len(v), ["pairs"]),
    "labels": (lambda v: v is None, ["labels"]),
    # A matrix of other rows than modality 1 breaks pairs="all".
    "modality 0": (lambda v: False, ["modalities[0]", "pairs"]),
    "modalities": (lambda v: False, ["modalities"]),
    "verbose": (is_bool, ["verbose"]),
    "callback": (lambda v: v is None or callable(v), ["callback"]),
    "n_anchors": (lambda v: is_int(v, 1), ["n_anchors"]),
}
# Values of each argument that train must accept (beside what Hypothesis
# draws, which is mostly invalid).
TRAIN_GOOD = {
    "n_bits": [1, 13, np.int64(16)],
    "n_clusters": [None, 1, N_TRAIN],
    "max_iter": [0, 3, 2**70],
    "tol": [0, np.float32(0.5), 10**30],
    "random_state": [None, np.int64(7), 2**70],
    "n_threads": [None, -1, 1, 2],
    "method": ["flexcmh"],
    "code_scheme": ["itq", "kmeans"],
    "encoder": ["kernel", "nnls"],
    "lam": [0, 1e-3, 5],
    "pairs": [None, "all", {}, np.array([[0, 1], [2, 3]]), np.array([[0.0, 39.0]]),
              np.zeros((0, 2), np.int64), {(1, 0): np.array([[3, 4]])}],
    "labels": [None],
    "verbose": [False, np.bool_(True)],
    "callback": [None, lambda iteration, state: None, lambda iteration, state: True],
    "n_anchors": [1, 10**6],
}


def train_call(data, arg, value):
    """``fc.train`` on ``data`` with ``arg`` set to ``value``, as a thunk."""
    X0, X1, _ = data
    kwargs = dict(n_bits=8, n_clusters=3, random_state=0, max_iter=2, encoder="nnls")
    modalities, pairs = [X0, X1], "all"
    if arg == "modality 0":
        modalities = [value, X1]
    elif arg == "modalities":
        modalities = value
    elif arg == "pairs":
        pairs = value
    elif arg == "labels":
        kwargs["labels"] = value
    else:
        kwargs[arg] = value
    if arg == "max_iter" and is_int(value, 51):
        kwargs["tol"] = 1e-2  # a valid huge max_iter must still stop

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fc.train(modalities, pairs, **kwargs)
    return call


def check_trained(model, data):
    codes = model.encode(data[0][:3], 0)
    assert codes.dtype == np.uint8 and codes.shape == (3, -(-model.n_bits_ // 8))


@pytest.mark.parametrize("arg", sorted(TRAIN_RULES))
@FAULT_SETTINGS
@with_traps
@given(value=weird)
def test_train_bad_argument(data, arg, value):
    valid, names = TRAIN_RULES[arg]
    model = check_outcome(train_call(data, arg, value), valid(value), names)
    if model is not None:
        check_trained(model, data)


@pytest.mark.parametrize("arg, value", [(arg, value) for arg, values in TRAIN_GOOD.items()
                                        for value in values])
def test_train_good_argument(data, arg, value):
    valid, names = TRAIN_RULES[arg]
    assert valid(value)
    check_trained(check_outcome(train_call(data, arg, value), True, names), data)


ENCODE_RULES = {
    # Real matrices of the model's 5 features: the strategy never draws one.
    "X": (lambda v: False, ["X"]),
    "modality": (lambda v: is_int(v, 0, 1), ["modality"]),
    "packed": (is_bool, ["packed"]),
}
ENCODE_GOOD = {"modality": [0, 1, np.int64(1)], "packed": [True, np.bool_(False)]}


def check_encode(model, data, arg, value):
    args = {"X": data[0], "modality": 0, "packed": True}
    args[arg] = value
    if arg == "modality" and is_int(value, 0, 1):
        args["X"] = data[value]  # the modality's own features
    valid, names = ENCODE_RULES[arg]
    out = check_outcome(lambda: model.encode(**args), valid(value), names)
    if out is not None:
        packed = bool(args["packed"])
        assert out.dtype == (np.uint8 if packed else np.int8)
        assert out.shape == (N_TRAIN, 2 if packed else 12)
        signs = model.encode(args["X"], int(args["modality"]), packed=False)
        np.testing.assert_array_equal(out, fc.pack_codes(signs) if packed else signs)


@pytest.mark.parametrize("arg", sorted(ENCODE_RULES))
@FAULT_SETTINGS
@with_traps
@given(value=weird)
def test_encode_bad_argument(model, data, arg, value):
    check_encode(model, data, arg, value)


@pytest.mark.parametrize("arg, value", [(arg, value) for arg, values in ENCODE_GOOD.items()
                                        for value in values])
def test_encode_good_argument(model, data, arg, value):
    assert ENCODE_RULES[arg][0](value)
    check_encode(model, data, arg, value)


def check_index_construction(codes, n_bits, n_threads):
    bits_ok = is_int(n_bits, 1, 4096)
    codes_ok = codes is None or bits_ok and isinstance(codes, np.ndarray) and is_packed(
        codes, None, -(-n_bits // 8)) and not (
            n_bits % 8 and codes.size and (codes[:, -1] & ((1 << (8 - n_bits % 8)) - 1)).any())
    checks = {"n_bits": bits_ok, "n_threads": is_n_threads(n_threads), "codes": codes_ok}
    index = check_outcome(
        lambda: fc.HammingIndex(codes, n_bits=n_bits, n_threads=n_threads),
        all(checks.values()), [name for name, ok in checks.items() if not ok])
    if index is not None:
        assert index.n_bits == n_bits and len(index) == (0 if codes is None else len(codes))
        if codes is not None:
            np.testing.assert_array_equal(index.codes, codes)
    return index


@FAULT_SETTINGS
@given(codes=weird, n_bits=weird, n_threads=weird)
@example(codes=None, n_bits=2**31, n_threads=1)
@example(codes=np.zeros((2, 1), np.uint8), n_bits=9, n_threads=None)
@example(codes=np.ones((2, 1), np.uint8), n_bits=7, n_threads=None)
@example(codes=np.zeros((2, 1), np.uint8), n_bits=8, n_threads=2**31)
def test_index_construction_bad_arguments(codes, n_bits, n_threads):
    check_index_construction(codes, n_bits, n_threads)


@pytest.mark.parametrize("codes, n_bits, n_threads", [
    (None, 8, None), (np.zeros((0, 1), np.uint8), 5, 1), (np.full((3, 2), 0xF8, np.uint8), 13, -1),
    (np.arange(12, dtype=np.uint8).reshape(6, 2), np.int64(16), 2)])
def test_index_construction_good_arguments(codes, n_bits, n_threads):
    assert check_index_construction(codes, n_bits, n_threads) is not None


def _bounded_k(value):
    # Huge k is another fault (capping it is tracked separately); keep the
    # sizes small here.
    return not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                and value > 1000)


INDEX_DB = np.array([[1, 2], [3, 4], [255, 0]], np.uint8)  # 16 bits: no padding
INDEX_METHODS = ["search", "range_search", "distance_histogram", "distances", "add"]


def reference_distances(queries):
    return np.bitwise_count(queries[:, None, :] ^ INDEX_DB[None]).sum(axis=-1)


def check_index_method(method, queries):
    """``method`` of an index over INDEX_DB called with ``queries``."""
    index = fc.HammingIndex(INDEX_DB, n_bits=16)
    call = {"search": lambda: index.search(queries, 2),
            "range_search": lambda: index.range_search(queries, 3),
            "distance_histogram": lambda: index.distance_histogram(queries),
            "distances": lambda: index.distances(queries),
            "add": lambda: index.add(queries)}[method]
    name = "codes" if method == "add" else "queries"
    out = check_outcome(call, is_packed(queries, None, 2), [name])
    if out is None:
        return
    if method == "add":
        assert len(index) == 3 + len(queries)
        np.testing.assert_array_equal(index.codes, np.vstack([INDEX_DB, queries]))
        return
    dist = reference_distances(queries)
    if method == "search":
        np.testing.assert_array_equal(out[0], np.sort(dist, axis=1)[:, :2])
    elif method == "range_search":
        assert out[0].tolist() == [0, *np.cumsum((dist <= 3).sum(axis=1)).tolist()]
    elif method == "distance_histogram":
        want = np.array([np.bincount(row, minlength=17) for row in dist]).reshape(-1, 17)
        np.testing.assert_array_equal(out, want)
    else:
        np.testing.assert_array_equal(out, dist)


def check_index_parameter(method, param):
    """``k`` of search or ``radius`` of range_search."""
    index, good = fc.HammingIndex(INDEX_DB, n_bits=16), INDEX_DB[:1]
    dist = reference_distances(good)
    if method == "search":
        out = check_outcome(lambda: index.search(good, param), is_int(param, 1), ["k"])
        if out is not None:
            np.testing.assert_array_equal(out[0], np.sort(dist, axis=1)[:, :param])
    elif method == "range_search":
        out = check_outcome(lambda: index.range_search(good, param), is_int(param, 0),
                            ["radius"])
        if out is not None:
            assert out[0].tolist() == [0, int((dist <= param).sum())]


@pytest.mark.parametrize("method", INDEX_METHODS)
@FAULT_SETTINGS
@given(queries=weird, param=weird.filter(_bounded_k))
@example(queries=[[1, 2], [3]], param=None)
@example(queries=INDEX_DB.astype(np.int64), param=2**31)
@example(queries=np.asfortranarray(np.zeros((2, 2), np.uint8))[::2], param="")
def test_index_method_bad_arguments(method, queries, param):
    check_index_method(method, queries)
    check_index_parameter(method, param)


@pytest.mark.parametrize("method", INDEX_METHODS)
@pytest.mark.parametrize("queries, param", [
    (INDEX_DB[1:], 1), (np.zeros((0, 2), np.uint8), 0), (INDEX_DB[::-1].copy(), 1000),
    (np.full((5, 2), 0xFF, np.uint8), np.int64(3))])
def test_index_method_good_arguments(method, queries, param):
    assert is_packed(queries, None, 2)
    check_index_method(method, queries)
    check_index_parameter(method, param)


METRICS = {
    "average_precision": lambda q, d, lq, ld, **kw: metrics.average_precision(
        q, d, lq, ld, **kw),
    "mean_average_precision": lambda q, d, lq, ld, **kw: metrics.mean_average_precision(
        q, d, lq, ld, **kw),
    "precision_at_k": lambda q, d, lq, ld, **kw: metrics.precision_at_k(
        q, d, lq, ld, kw.pop("ks", 2), **kw),
    "precision_recall_curve": lambda q, d, lq, ld, **kw: metrics.precision_recall_curve(
        q, d, lq, ld, **kw),
    "precision_at_radius": lambda q, d, lq, ld, **kw: metrics.precision_at_radius(
        q, d, lq, ld, **kw),
    "retrieval_report": lambda q, d, lq, ld, **kw: metrics.retrieval_report(
        q, d, lq, ld, **kw),
}
_METRIC_KEYWORDS = {
    "average_precision": {"ties", "top_k", "n_threads"},
    "mean_average_precision": {"ties", "top_k", "n_threads"},
    "precision_at_k": {"ties", "ks", "n_threads"},
    "precision_recall_curve": {"average", "n_threads"},
    "precision_at_radius": {"radius", "n_threads"},
    "retrieval_report": {"ks", "radius", "n_threads"},
}
N_Q, N_DB = 4, 9  # queries and database codes of 16 bits (2 random bytes)


def metric_rule(name, arg):
    """(is the value valid?, names an error may give) for ``arg`` of metric
    ``name``; the other arguments are valid."""
    rules = {
        # Codes whose row count differs from their labels' are named by the
        # labels (and the database size bounds ks).
        "query_codes": (lambda v: is_packed(v, N_Q, 2), ["query_codes", "query_labels"]),
        "db_codes": (lambda v: is_packed(v, N_DB, 2), ["db_codes", "db_labels", "ks"]),
        "query_labels": (lambda v: is_labels(v, N_Q), ["query_labels"]),
        "db_labels": (lambda v: is_labels(v, N_DB), ["db_labels"]),
        # The random bytes leave no zero padding but at 16 bits; the radius
        # must stay within n_bits.
        "n_bits": (lambda v: is_int(v, 16, 16), ["n_bits", "radius"]),
        "ties": (lambda v: is_option(v, ("stable", "aware")), ["ties"]),
        "top_k": (lambda v: v is None or is_int(v, 1), ["top_k"]),
        "ks": (lambda v: is_ks(v, N_DB, empty_ok=name == "retrieval_report"), ["ks"]),
        "radius": (lambda v: is_int(v, 0, 16), ["radius"]),
        "average": (lambda v: is_option(v, ("macro", "micro")), ["average"]),
        "n_threads": (is_n_threads, ["n_threads"]),
    }
    return rules[arg]


METRIC_GOOD = {
    "query_codes": [np.full((N_Q, 2), 0xA5, np.uint8)],
    "query_labels": [[0, 1, 2, 0], np.array([0.0, 5.0, 2.0, 2.0]), np.ones(N_Q, bool)],
    "db_labels": [np.arange(N_DB)],
    "n_bits": [16, np.int64(16)],
    "ties": ["stable", "aware"],
    "top_k": [None, 1, 2**40],
    "ks": [1, [9, 1, 1], np.array([3])],
    "radius": [0, 16],
    "average": ["macro", "micro"],
    "n_threads": [None, -1, 1],
}
METRIC_ARGS = ["query_codes", "db_codes", "query_labels", "db_labels", "n_bits"]
METRIC_CASES = [(name, arg) for name in sorted(METRICS)
                for arg in METRIC_ARGS + sorted(_METRIC_KEYWORDS[name])]


def check_metric(name, arg, value):
    rng = np.random.default_rng(0)
    args = {"query_codes": rng.integers(0, 256, (N_Q, 2), dtype=np.uint8),
            "db_codes": rng.integers(0, 256, (N_DB, 2), dtype=np.uint8),
            "query_labels": rng.integers(0, 3, N_Q), "db_labels": rng.integers(0, 3, N_DB)}
    kwargs = {"n_bits": 16}
    if arg in args:
        args[arg] = value
    else:
        kwargs[arg] = value
    valid, names = metric_rule(name, arg)
    out = check_outcome(lambda: METRICS[name](*args.values(), **kwargs), valid(value), names)
    if out is not None and name in ("average_precision", "mean_average_precision"):
        assert np.all((np.asarray(out) >= 0) & (np.asarray(out) <= 1) | np.isnan(out))


@pytest.mark.parametrize("name, arg", METRIC_CASES)
@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@with_traps
@given(value=weird)
def test_metrics_bad_argument(name, arg, value):
    # top_k >= 2**63 is a known fault with its own test below.
    assume(not (arg == "top_k" and is_int(value, 2**63)))
    check_metric(name, arg, value)


@pytest.mark.parametrize("name, arg, value", [
    (name, arg, value) for name, arg in METRIC_CASES for value in METRIC_GOOD.get(arg, [])
] + [("retrieval_report", "ks", value) for value in ((), None, np.zeros(0, np.int64))])
def test_metrics_good_argument(name, arg, value):
    assert metric_rule(name, arg)[0](value)
    check_metric(name, arg, value)


@pytest.mark.parametrize("name", ["average_precision", "mean_average_precision"])
def test_metrics_huge_top_k(name):
    codes = np.zeros((3, 1), np.uint8)
    labels = np.array([0, 1, 0])
    full = METRICS[name](codes, codes, labels, labels, n_bits=8)
    huge = METRICS[name](codes, codes, labels, labels, n_bits=8, top_k=2**63)
    np.testing.assert_array_equal(huge, full)


def test_n_threads_beyond_the_bound_is_refused():
    codes = np.zeros((3, 1), np.uint8)
    for n_threads in (2**31, 10**6, 0, -2):
        with pytest.raises(ValueError, match="'n_threads' must be None, -1 or an int >= 1"):
            metrics.mean_average_precision(codes, codes, np.zeros(3), np.zeros(3), n_bits=8,
                                           n_threads=n_threads)
        with pytest.raises(ValueError, match="'n_threads' must be None, -1 or an int >= 1"):
            fc.HammingIndex(codes, n_bits=8, n_threads=n_threads)


def test_evaluate_retrieval_bad_arguments(model, data):
    X0, X1, y = data
    for bad in ({"query_modality": 5}, {"X_query": X1}, {"query_labels": y[:3]},
                {"ties": "random"}, {"top_k": 0}, {"model": "model"}):
        args = dict(model=model, X_query=X0, query_modality=0, query_labels=y,
                    X_db=X1, db_modality=1, db_labels=y)
        args.update(bad)
        with pytest.raises((ValueError, TypeError)):
            metrics.evaluate_retrieval(**args)


# ---------------------------------------------------------------------------
# Degenerate data
# ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(exponents=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
                            elements=st.floats(0, 160)),
       signs=st.integers(0, 2**24), sparse=st.booleans())
def test_check_finite_scale_matches_exact_sum_of_squares(exponents, signs, sparse):
    flip = np.array([1.0 if (signs >> i) & 1 else -1.0 for i in range(exponents.size)])
    X = 10.0 ** exponents * flip.reshape(exponents.shape)
    X[X < 1e10] = 0.0  # exact integers for the reference; sparse zeros
    X = sp.csr_matrix(X) if sparse else X
    # Reference: the exact sum of squares in Python ints (the values are
    # integers) against float64 max / 1e4; within 1e-9 of it either answer
    # is right.
    limit = int(np.finfo(np.float64).max) // 10**4
    total = sum(int(v) ** 2 for v in np.ravel(X.data if sparse else X))
    big, near = total > limit, abs(total - limit) <= limit // 10**9
    try:
        check_finite_scale(X, "X")
        assert not big or near
    except ValueError as exc:
        assert big or near
        assert "'X' holds values up to" in str(exc) and "Scale the features" in str(exc)


def test_check_finite_scale_bound():
    check_finite_scale(np.array([[1.3e152, 0.0], [0.0, -1e3]]), "X")  # 1.69e304
    check_finite_scale(sp.csr_matrix(np.full((100, 100), 1.3e150)), "X")  # 1.69e304
    for bad in (np.array([[-1.4e152, 0.0]]), sp.csr_matrix(np.full((100, 100), 1.4e150))):
        with pytest.raises(ValueError, match=r"exceeds 1\.8e\+304"):  # 1.96e304
            check_finite_scale(bad, "X")


def test_huge_values_are_refused_before_training(data):
    X0, X1, y = data
    for scale, sparse in ((1e200, False), (1e160, True)):
        bad = X0.copy()
        bad[3] *= scale
        bad = sp.csr_matrix(bad) if sparse else bad
        with pytest.raises(ValueError, match=r"'modalities\[0\]' holds values up to"):
            fc.train([bad, X1], "all", n_bits=8, n_clusters=3, random_state=0, max_iter=2)
    # Squares of 1e150 on 200 entries sum to < float64 max / 1e4: trains,
    # codes spread out.
    model = fc.train([X0 * 1e150, X1], "all", n_bits=8, n_clusters=3, random_state=0,
                     max_iter=2)
    assert len(np.unique(model.encode(X0 * 1e150, 0), axis=0)) > 2


def test_huge_values_are_refused_by_encode(model, data):
    with pytest.raises(ValueError, match="'X' holds values up to .*e\\+(199|200)"):
        model.encode(data[0] * 1e200, 0)


@pytest.mark.parametrize("make", [
    lambda: np.zeros((5, 3)), lambda: np.full((4, 2), -7.5),
    lambda: sp.csr_matrix((6, 4)), lambda: sp.csr_matrix(np.tile([0.0, 2.0, 0.0], (3, 1))),
    lambda: sp.csr_matrix((np.zeros(3), ([0, 1, 2], [1, 1, 1])), shape=(3, 2))])
def test_constant_matrix_warns(make):
    X = check_matrix(make(), "Xs[1]")
    with pytest.warns(DegenerateDataWarning, match=r"'Xs\[1\]' is constant: all \d+ samples"):
        assert warn_if_constant(X, "Xs[1]")


@pytest.mark.parametrize("make", [
    lambda: np.eye(3), lambda: np.zeros((1, 3)), lambda: np.zeros((0, 3)),
    lambda: sp.csr_matrix(np.eye(4)), lambda: sp.csr_matrix(([1.0], ([2], [0])), shape=(3, 2))])
def test_non_constant_matrix_does_not_warn(make):
    X = check_matrix(make(), "X")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_constant(X, "X")


@pytest.mark.parametrize("last_row", [[0.0, 2.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 0.0]])
def test_sparse_constant_check_reads_blocks_of_rows(last_row, monkeypatch):
    from flexcmh_fast import _validation

    monkeypatch.setattr(_validation, "_CHECK_BLOCK_BYTES", 16)     # a row or two a block
    X = check_matrix(sp.csr_matrix(np.vstack([np.tile([0.0, 2.0, 0.0], (7, 1)), [last_row]])),
                     "X")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        assert warn_if_constant(X, "X") == (last_row == [0.0, 2.0, 0.0])


def test_training_on_a_constant_modality_warns(data):
    X0, X1, _ = data
    with pytest.warns(DegenerateDataWarning, match=r"'modalities\[1\]' is constant"):
        fc.train([X0, np.zeros(X1.shape)], "all", n_bits=8, n_clusters=3, random_state=0,
                 max_iter=2)


# ---------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------
def test_concurrent_searches_equal_serial():
    rng = np.random.default_rng(7)
    db = rng.integers(0, 256, (3000, 9), dtype=np.uint8)
    db[:, -1] &= 0xF0  # 68 bits: zero padding
    index = fc.HammingIndex(db, n_bits=68, n_threads=2)
    # Database rows with 1-3 bits of the first byte flipped (padding stays
    # zero): queries near, not on, the database codes.
    flips = np.array([0x80, 0xC0, 0xE0], np.uint8)
    batches = []
    for i in range(12):
        q = db[rng.integers(0, 3000, 40)].copy()
        q[:, 0] ^= flips[i % 3]
        batches.append(q)
    serial = [(index.search(q, 15), index.range_search(q, 20), index.distance_histogram(q))
              for q in batches]
    # The serial results against a plain numpy reference.
    for q, ((d, i), (lims, rd, ri), hist) in zip(batches, serial):
        dist = np.bitwise_count(q[:, None, :] ^ db[None]).sum(axis=-1)
        assert (dist.min(axis=1) >= 1).all() and (dist.min(axis=1) <= 3).all()
        order = np.lexsort((np.broadcast_to(np.arange(3000), dist.shape), dist), axis=1)
        np.testing.assert_array_equal(i, order[:, :15])
        np.testing.assert_array_equal(d, np.take_along_axis(dist, order[:, :15], axis=1))
        np.testing.assert_array_equal(np.diff(lims), (dist <= 20).sum(axis=1))
        for j in range(len(q)):
            within = order[j][dist[j, order[j]] <= 20]
            np.testing.assert_array_equal(ri[lims[j]:lims[j + 1]], within)
            np.testing.assert_array_equal(rd[lims[j]:lims[j + 1]], dist[j, within])
        np.testing.assert_array_equal(hist, [np.bincount(row, minlength=69) for row in dist])
    results = [None] * len(batches)
    errors = []

    def work(i):
        try:
            q = batches[i]
            results[i] = (index.search(q, 15), index.range_search(q, 20),
                          index.distance_histogram(q))
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, serial):
        (gd, gi), ranged, hist = got
        (wd, wi), wranged, whist = want
        np.testing.assert_array_equal(gd, wd)
        np.testing.assert_array_equal(gi, wi)
        for a, b in zip(ranged, wranged):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(hist, whist)
