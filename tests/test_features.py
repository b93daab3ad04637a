"""The fit's view of the data (``Features``) and the streaming kernels behind
it, against plain numpy on the materialised preprocessed rows: every kind,
dense (C and Fortran order) and CSR, float32 and float64, edge sizes."""
import numpy as np
import pytest
import scipy.sparse as sp

from flexcmh_fast._feature_stats import feature_stats, merge_column_stats, row_chunks, row_sums
from flexcmh_fast._preprocess import KINDS, Preprocessor
from flexcmh_fast.flexcmh import _tuning
from flexcmh_fast.flexcmh._features import Features, model_dtype
from flexcmh_fast.flexcmh._passes import dense_xth, dense_xz


def reference_rows(X, kind, mean=None, scale=None):
    """The preprocessed rows in float64, from the definitions."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    if kind == "none":
        return X
    if kind == "standard":
        return (X - mean) / scale
    Y = np.sqrt(X) if kind == "hellinger" else X
    norms = np.linalg.norm(Y, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return Y / norms


def make(n, d, sparse, dtype, order="C", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d)) * (rng.random((n, d)) < 0.4)
    if n > 2:
        X[1] = 0.0                      # an all-zero row
    X = X.astype(dtype)
    if sparse:
        return sp.csr_matrix(X)
    return np.asfortranarray(X) if order == "F" else np.ascontiguousarray(X)


CASES = [(sparse, dtype, order) for sparse in (False, True)
         for dtype in (np.float64, np.float32)
         for order in (("C",) if sparse else ("C", "F"))]


@pytest.mark.parametrize("sparse,dtype,order,streamed",
                         [case + (streamed,) for case in CASES
                          for streamed in ((True,) if case[0] else (True, False))])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_products_and_rows_match_materialised_rows(sparse, dtype, order, streamed, kind, n,
                                                  monkeypatch):
    """Both paths of the dense products: the streaming Numba kernels (thin
    Z) and BLAS (wider Z; Hellinger rows in blocks of square roots, made
    tiny here so that several blocks and a partial one are used); CSR has
    one path."""
    monkeypatch.setattr(_tuning, "STREAM_MAX_COLUMNS", 16 if streamed else 0)
    monkeypatch.setattr(_tuning, "ROOT_BLOCK_BYTES", 13 * 8 * 3)
    d, k = 13, 5
    X = make(n, d, sparse, dtype, order, seed=n)
    before = X.copy()
    f = Features(X, dtype)
    assert f.X is X                                  # kept as given: no copy
    prep = Preprocessor.from_stats(kind, f.column_stats, dtype)
    f.set_preprocessing(prep)
    ref = reference_rows(X, kind, prep.mean, prep.scale)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((d, k)).astype(dtype)
    H = rng.random((n, k)).astype(dtype)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    got = f.xz(Z)
    assert got.shape == (n, k) and got.dtype == dtype
    np.testing.assert_allclose(got, ref @ Z.astype(np.float64), **tol)
    buf = np.full((n, k), np.nan, dtype=dtype)
    assert f.xz(Z, out=buf) is buf
    np.testing.assert_array_equal(buf, got)
    XtH = f.xth(H)
    assert XtH.shape == (d, k) and XtH.dtype == np.float64 and XtH.flags.c_contiguous
    np.testing.assert_allclose(XtH, ref.T @ H.astype(np.float64), **tol)
    np.testing.assert_allclose(f.sqx, (ref ** 2).sum(axis=1), **tol)
    assert f.sqx_total == pytest.approx(float(f.sqx.sum()))
    rows = np.array([0, n - 1]) if n else np.empty(0, dtype=np.int64)
    sample = f.rows(rows)
    assert sample.dtype == dtype and sp.issparse(sample) == sparse
    np.testing.assert_allclose(sample.toarray() if sparse else sample, ref[rows], **tol)
    # A query transformed alone gets exactly the values of its training row.
    if n:
        alone = prep.transform(X[n - 1:n])
        np.testing.assert_array_equal(alone.toarray() if sparse else alone,
                                      f.rows(np.array([n - 1])).toarray() if sparse
                                      else f.rows(np.array([n - 1])))
    # The caller's matrix is never modified.
    if sparse:
        np.testing.assert_array_equal(X.toarray(), before.toarray())
    else:
        np.testing.assert_array_equal(X, before)


@pytest.mark.parametrize("sparse", [False, True])
def test_blocks_cover_the_rows_in_order(sparse):
    X = make(23, 6, sparse, np.float32)
    f = Features(X, np.float32)
    f.set_preprocessing(Preprocessor("l2"))
    rows = np.array([0, 3, 4, 9, 22])
    got = list(f.blocks(rows, 2))
    assert [(s, e) for s, e, _ in got] == [(0, 2), (2, 4), (4, 5)]
    stacked = sp.vstack([b for *_, b in got]).toarray() if sparse \
        else np.vstack([b for *_, b in got])
    ref = reference_rows(X, "l2")[rows]
    np.testing.assert_allclose(stacked, ref, rtol=1e-6)
    assert sum(e - s for s, e, _ in f.blocks(None, 10)) == 23


@pytest.mark.parametrize("sparse", [False, True])
def test_statistics_of_row_blocks_add_up(sparse):
    """Column statistics are sums over rows: two row blocks merge into the
    whole matrix's (the Dask partitions' preprocessing fit)."""
    X = make(300, 9, sparse, np.float64, seed=3)
    if not sparse:
        X[5, 2] = -0.5
    whole = feature_stats(X)[1]
    parts = merge_column_stats([feature_stats(X[:120])[1], feature_stats(X[120:])[1]])
    dense = X.toarray() if sparse else X
    assert whole["n"] == parts["n"] == 300
    np.testing.assert_allclose(whole["sum"], dense.sum(0), rtol=1e-12)
    np.testing.assert_allclose(parts["sumsq"], (dense ** 2).sum(0), rtol=1e-12)
    assert whole["zeros"] == parts["zeros"] == int((dense == 0).sum())
    assert whole["min"] == parts["min"] == dense.min()
    (row_sum, row_sumsq), _ = feature_stats(X)
    np.testing.assert_allclose(row_sum, dense.sum(1), rtol=1e-12)
    np.testing.assert_allclose(row_sumsq, (dense ** 2).sum(1), rtol=1e-12)


def test_stats_do_not_depend_on_threads():
    import numba

    X = make(5000, 40, False, np.float32, seed=4)
    got = []
    for t in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(t)
        try:
            (rs, rq), cols = feature_stats(X)
            f = Features(X, np.float32)
            f.set_preprocessing(Preprocessor("hellinger"))
            H = np.random.default_rng(0).random((5000, 6)).astype(np.float32)
            got.append((rs, cols["sumsq"], f.xth(H), f.xz(np.ones((40, 6), np.float32))))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("root", [True, False])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 130])
def test_dense_kernels_tiles_and_flushes(n, root):
    """The streaming dense kernels over partial row tiles and partial flush
    blocks, with and without row factors, against numpy in float64."""
    rng = np.random.default_rng(n)
    X = rng.random((n, 37)).astype(np.float32)
    f = np.sqrt(X.astype(np.float64)) if root else X.astype(np.float64)
    scale = rng.random(n) + 0.5
    Zt = rng.standard_normal((3, 37)).astype(np.float32)
    out = np.full((n, 3), np.nan, dtype=np.float32)
    dense_xz(X, root, scale, Zt, out)
    ref = (f * scale[:, None]) @ Zt.T.astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    dense_xz(X, root, np.empty(0), Zt, out)
    np.testing.assert_allclose(out, f @ Zt.T.astype(np.float64), rtol=1e-5, atol=1e-5)
    W = rng.random((n, 3)).astype(np.float32)
    got = dense_xth(X, root, W, row_chunks(n, 37 * 3))
    np.testing.assert_allclose(got, f.T @ W, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d", [1, 7, 8, 9, 37])
def test_row_sums_alone_equal_the_training_pass(d):
    """A row's sums do not depend on the rows read with it: queries get the
    factors of their training rows, to the bit."""
    rng = np.random.default_rng(d)
    X = rng.random((300, d)).astype(np.float32)
    (rs, rq), _ = feature_stats(X)
    alone = [row_sums(X[i:i + 1]) for i in (0, 150, 299)]
    for i, (s, q) in zip((0, 150, 299), alone):
        assert s[0] == rs[i] and q[0] == rq[i]
    np.testing.assert_allclose(rs, X.astype(np.float64).sum(1), rtol=1e-12)
    np.testing.assert_allclose(rq, (X.astype(np.float64) ** 2).sum(1), rtol=1e-12)


def test_model_dtype_rule():
    f32, f64 = np.zeros((2, 2), np.float32), np.zeros((2, 2))
    assert model_dtype([f32, sp.csr_matrix(f32)]) == np.float32
    assert model_dtype([f32, f64]) == np.float64


def test_hellinger_refuses_negative_values():
    f = Features(np.array([[1.0, -1.0], [0.0, 2.0]]), np.float64)
    with pytest.raises(ValueError, match="needs non-negative features"):
        f.set_preprocessing(Preprocessor("hellinger"))
