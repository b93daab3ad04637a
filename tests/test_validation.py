import numpy as np
import pytest
import scipy.sparse as sp

from flexcmh_fast._validation import (check_float, check_int, check_matrix, check_n_threads,
                                      check_option, check_random_state)


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
