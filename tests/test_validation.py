import numpy as np
import pytest
import scipy.sparse as sp

from flexcmh_fast._validation import (
    check_float,
    check_int,
    check_matrix,
    check_n_threads,
    check_option,
    check_random_state,
)


def test_check_int_messages():
    assert check_int(np.int64(3), "n", 1, 5) == 3
    with pytest.raises(ValueError, match=r"'n_bits' must be an int in \[1, 4096\]. Got 0 instead."):
        check_int(0, "n_bits", 1, 4096)
    with pytest.raises(TypeError, match="'k' must be an int"):
        check_int(2.0, "k", 1)
    with pytest.raises(TypeError, match="'k' must be an int"):
        check_int(True, "k", 1)


def test_check_float_bounds():
    assert check_float(0.5, "a", 0, 1) == 0.5
    with pytest.raises(ValueError, match="'a' must be a finite float in \\(0, 1\\]"):
        check_float(0.0, "a", 0, 1, low_inclusive=False)
    with pytest.raises(ValueError, match="'a'"):
        check_float(float("nan"), "a")
    with pytest.raises(TypeError, match="'a'"):
        check_float("1", "a")


def test_check_option():
    assert check_option("itq", "code_scheme", ("itq", "kmeans")) == "itq"
    with pytest.raises(ValueError, match="'code_scheme' must be one of"):
        check_option("pca", "code_scheme", ("itq", "kmeans"))
    with pytest.raises(ValueError, match="'code_scheme'"):
        check_option(["itq"], "code_scheme", ("itq", "kmeans"))


def test_check_n_threads():
    assert check_n_threads(None) >= 1
    assert check_n_threads(-1) == check_n_threads(None)
    assert check_n_threads(1) == 1
    with pytest.raises(ValueError, match="'n_threads'"):
        check_n_threads(0)


def test_check_random_state():
    a = check_random_state(3).integers(0, 1000, 5)
    b = check_random_state(3).integers(0, 1000, 5)
    assert np.array_equal(a, b)
    g = np.random.default_rng(0)
    assert check_random_state(g) is g
    with pytest.raises(TypeError, match="'random_state'"):
        check_random_state("seed")
    with pytest.raises(ValueError, match="'random_state'"):
        check_random_state(-1)


def test_check_matrix_dense_and_sparse():
    X = np.arange(6, dtype=np.int32).reshape(2, 3)
    out = check_matrix(X, "X")
    assert out.dtype == np.float64 and out.flags.c_contiguous
    S = sp.coo_matrix(X)
    out = check_matrix(S, "X")
    assert sp.isspmatrix_csr(out) and out.dtype == np.float64
    assert np.array_equal(out.toarray(), X)
    with pytest.raises(TypeError, match="'X' must be a dense array"):
        check_matrix(S, "X", allow_sparse=False)


@pytest.mark.parametrize("bad, exc, msg", [
    (np.zeros(3), ValueError, "must be 2-D"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN or inf"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or inf"),
    (np.array([["a", "b"]]), TypeError, "real numbers"),
    ("text", TypeError, "2-D array"),
    (np.zeros((2, 0)), ValueError, "at least one feature"),
])
def test_check_matrix_errors(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        check_matrix(bad, "X")


def test_check_matrix_sparse_nan_and_width():
    S = sp.csr_matrix(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_matrix(S, "X")
    with pytest.raises(ValueError, match="must have 3 features"):
        check_matrix(np.zeros((2, 2)), "X", n_features=3)


def test_check_matrix_does_not_modify_input():
    S = sp.csr_matrix((np.array([1.0, 2.0]), np.array([1, 1]), np.array([0, 2])), shape=(1, 2))
    before = (S.data.copy(), S.indices.copy())
    check_matrix(S, "X")
    assert np.array_equal(S.data, before[0]) and np.array_equal(S.indices, before[1])


# ---------------------------------------------------------------- one rule per kind of value
def test_check_matrix_gives_plain_ndarrays_for_subclasses():
    """np.matrix and masked arrays come back as plain ndarrays (a matrix's
    ``*`` and row slicing would change every product downstream); the
    baselines fit them as they fit the arrays."""
    import flexcmh_fast as fc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 3))
    for sub in (np.matrix(X), np.ma.masked_array(X)):
        out = check_matrix(sub, "X")
        assert type(out) is np.ndarray
        np.testing.assert_array_equal(out, X)
    X0, X1 = rng.standard_normal((40, 8)), rng.standard_normal((40, 5))
    labels = [rng.integers(0, 3, 40)] * 2
    want = fc.CMFH(n_bits=8, random_state=0).fit([X0, X1], "all", labels)
    got = fc.CMFH(n_bits=8, random_state=0).fit([np.matrix(X0), np.matrix(X1)], "all", labels)
    for a, b in zip(got.train_codes_, want.train_codes_):
        np.testing.assert_array_equal(a, b)


def test_check_n_threads_one_bound_resolved_or_kept():
    from flexcmh_fast._validation import available_cores, max_threads

    assert check_n_threads(None, resolve=False) is None
    assert check_n_threads(-1, resolve=False) is None
    assert check_n_threads(np.int64(3), resolve=False) == 3
    assert check_n_threads(-1) == available_cores()
    assert check_n_threads(max_threads()) == max_threads()
    for bad in (max_threads() + 1, 10**6, 0, -2):
        for resolve in (True, False):
            with pytest.raises(ValueError, match=rf"^'n_threads' must be None, -1 or an int "
                                                 rf">= 1 and <= {max_threads()}. Got {bad} "
                                                 r"instead.$"):
                check_n_threads(bad, resolve=resolve)
    with pytest.raises(TypeError, match="'n_threads' must be an int. Got 2.0"):
        check_n_threads(2.0)


def test_estimators_and_index_share_the_thread_bound():
    """An estimator refuses n_threads=10**6 with the message HammingIndex gives."""
    import flexcmh_fast as fc

    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError) as index_error:
        fc.HammingIndex(np.zeros((2, 1), np.uint8), n_bits=8, n_threads=10**6)
    for cls in (fc.FlexCMH, fc.CSMH, fc.CCAITQ, fc.CMFH, fc.SCM):
        with pytest.raises(ValueError) as est_error:
            cls(n_threads=10**6).fit([X, X], "all", [np.zeros(20), np.zeros(20)])
        assert str(est_error.value) == str(index_error.value)


def test_check_random_state_without_resolving():
    g, legacy = np.random.default_rng(0), np.random.RandomState(0)
    assert check_random_state(g, resolve=False) is g
    assert check_random_state(legacy, resolve=False) is legacy
    assert check_random_state(None, resolve=False) is None
    seed = check_random_state(np.int64(7), resolve=False)
    assert seed == 7 and type(seed) is int
    for bad, exc in ((-1, ValueError), ("seed", TypeError), (True, TypeError), (1.5, TypeError)):
        for resolve in (True, False):
            with pytest.raises(exc, match=r"^'random_state' must be None, a non-negative int "
                                          r"or a numpy Generator. Got "):
                check_random_state(bad, resolve=resolve)
    # the parameter table's constraint is this rule
    from flexcmh_fast._params import COMMON

    for bad in (-1, "seed", True):
        with pytest.raises((TypeError, ValueError)) as table_error:
            COMMON["random_state"].check(bad, "random_state")
        with pytest.raises(type(table_error.value)) as rule_error:
            check_random_state(bad)
        assert str(table_error.value) == str(rule_error.value)


def test_check_int_allowing_none():
    assert check_int(None, "k", 1, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^'k' must be None or an int >= 1. Got 0 instead.$"):
        check_int(0, "k", 1, allow_none=True)
    with pytest.raises(TypeError, match="'k' must be None or an int >= 1. Got 'a' of type str"):
        check_int("a", "k", 1, allow_none=True)


def test_check_callable_and_parameter_names():
    from flexcmh_fast._validation import check_callable, check_parameter_names

    assert check_callable(None, "callback") is None and check_callable(len, "callback") is len
    with pytest.raises(TypeError, match="^'callback' must be callable or None. Got 3 instead.$"):
        check_callable(3, "callback")
    with pytest.raises(TypeError, match="^'f' must be callable. Got None instead.$"):
        check_callable(None, "f", allow_none=False)
    check_parameter_names({"a": 1}, ["a", "b"], "X")
    with pytest.raises(TypeError, match=r"^Unknown parameter\(s\) \['c', 'd'\] for X. "
                                        r"Valid parameters: \['a', 'b'\].$"):
        check_parameter_names({"d": 1, "a": 2, "c": 3}, ["b", "a"], "X")
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['c'\]"):
        check_parameter_names({"c": 1}, ["a"], "X", error=ValueError)


def test_check_modalities_with_an_own_check_of_each():
    from flexcmh_fast._validation import check_modalities

    X = np.ones((3, 2))
    with pytest.raises(TypeError, match="^'modalities' must be a list of things, one per "):
        check_modalities(X, str, expected="things")
    with pytest.raises(ValueError, match="at least 2 modalities. Got 1 instead."):
        check_modalities([X], str)
    seen = check_modalities((X, X), lambda value, name: name)
    assert seen == ["modalities[0]", "modalities[1]"]
    with pytest.warns(UserWarning, match="'modalities\\[1\\]' is constant"):
        out = check_modalities([np.arange(6.0).reshape(3, 2), X])
    assert all(o.dtype == np.float64 for o in out)


def test_one_needs_labels_message():
    """Every estimator that needs labels says so in the same words."""
    import flexcmh_fast as fc

    X = np.random.default_rng(0).random((20, 3))
    for est, who in ((fc.CSMH(), "CSMH"), (fc.SCM(), "SCM"),
                     (fc.FlexCMH(matching="labels"), "FlexCMH with matching='labels'")):
        with pytest.raises(ValueError, match=rf"^'labels' must be one array per modality "
                                             rf"\(1-D class ids or 2-D 0/1 matrices\): "
                                             rf"{est._labels_required_by(est._validated_params())}"
                                             rf" needs 'labels'. Got None instead.$"):
            est.fit([X, X], "all")
        assert est._labels_required_by(est._validated_params()) == who
    assert fc.FlexCMH()._labels_required_by(fc.FlexCMH()._validated_params()) is None
