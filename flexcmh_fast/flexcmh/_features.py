"""A modality's training rows as the FlexCMH fit reads them.

:class:`Features` holds the caller's matrix as it was given (dense float32
or float64 in any memory layout, or CSR; never copied, never densified)
and the fitted preprocessing (:class:`flexcmh_fast._preprocess.Preprocessor`),
which it applies as the rows are read.  The fit reads the data only
through it: the products with the centroids ``X Z`` and with the
indicators ``X^T H`` (one streaming pass each), and samples of rows
(k-means start, anchors, regression rows), which it materialises
preprocessed.

Products are computed in the data's dtype (float32 data: float32
products); what they produce is stored in the model's dtype and sums over
rows are float64 (``docs/flexcmh.md``, "Precision").
"""
import threading

import numba
import numpy as np
import scipy.sparse as sp

from .._feature_stats import feature_stats, row_chunks
from .._preprocess import Preprocessor
from .._threads import PRODUCT_BETWEEN_KERNELS, dense_product_threads, imap_concurrently, row_spans
from . import _tuning as T
from ._passes import csr_xth, csr_xz, dense_centred_sq_norms, dense_root_block, dense_xth, dense_xz

_NO_FACTORS = np.empty(0)


def model_dtype(Xs):
    """The dtype of a model fitted on the matrices ``Xs``: float32 when all
    of them are float32, else float64."""
    return np.dtype(np.float32) if all(X.dtype == np.float32 for X in Xs) \
        else np.dtype(np.float64)


class Features:
    """One modality's rows and their preprocessing.

    Parameters
    ----------
    X : ndarray or CSR matrix (n, d)
        Validated float32 / float64 rows, kept as given.
    dtype : numpy dtype
        The model's dtype (:func:`model_dtype`): of the products' results,
        of the samples and of everything fitted from them.

    Attributes
    ----------
    sqx : float64 ndarray (n,)
        Squared norms of the preprocessed rows.
    sqx_total : float
        Their sum (the constant of the reconstruction term).
    column_stats : dict
        Column statistics of the raw rows (what the preprocessing is fitted
        from; :func:`flexcmh_fast._feature_stats.feature_stats`).
    """

    def __init__(self, X, dtype):
        self.X = X
        self.sparse = sp.issparse(X)
        self.n, self.d = X.shape
        self.dtype = np.dtype(dtype)
        (self.row_sum, self.row_sumsq), self.column_stats = feature_stats(X)
        self.prep = Preprocessor("none")
        self.factors = None
        self.sqx = self.row_sumsq
        self.sqx_total = float(self.sqx.sum())
        self._w = None          # rows of H times the row factors (xth)

    def set_preprocessing(self, prep):
        """Apply ``prep`` from now on (row factors from the row sums; the
        squared norms of ``"standard"`` rows take one pass)."""
        if prep.root and self.column_stats["min"] < 0:
            raise ValueError("preprocess='hellinger' needs non-negative features; a modality "
                             f"has negative values (min {self.column_stats['min']:.3g}).")
        self.prep = prep
        self.factors = prep.row_factors(self.row_sum, self.row_sumsq)
        if prep.kind == "none":
            self.sqx = self.row_sumsq
        elif prep.kind == "standard":
            inv = 1.0 / np.asarray(prep.scale, dtype=np.float64)
            if self.sparse:
                # CSR is only scaled (no centring): sum_j (x_ij / s_j)^2.
                X = self.X
                self.sqx = np.bincount(np.repeat(np.arange(self.n), np.diff(X.indptr)),
                                       weights=(X.data * inv[X.indices]) ** 2,
                                       minlength=self.n)
            else:
                self.sqx = dense_centred_sq_norms(
                    self.X, np.asarray(prep.mean, dtype=np.float64), inv)
        else:
            sums = self.row_sum if prep.root else self.row_sumsq
            self.sqx = sums * self.factors ** 2
        self.sqx_total = float(self.sqx.sum())

    # ---- the two streaming products ------------------------------------
    def _streamed(self, k):
        """Whether dense products with ``k`` columns run in the Numba kernels
        (thin: bound by reading the data) rather than in BLAS (wider: bound
        by arithmetic; docs/flexcmh.md, "Training speed")."""
        return k <= T.STREAM_MAX_COLUMNS

    def _root_block_products(self, product):
        """``product(start, stop, block)`` for each block of rows, ``block``
        the square roots of the rows (Hellinger rows for BLAS), yielded in
        block order: the blocks spread over the fit's threads, each taking
        its square roots and its single-threaded BLAS product on its own
        thread (BLAS threads woken between Numba's would contend with them)."""
        rows = max(1, T.ROOT_BLOCK_BYTES // max(1, self.d * self.X.dtype.itemsize))
        spans = row_spans(self.n, rows)
        local = threading.local()    # one square-root buffer per thread

        def task(i, parallel):
            s, e = spans[i]
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty((rows, self.d), dtype=self.X.dtype)
            dense_root_block(self.X, s, e, buf)
            return product(s, e, buf[: e - s])

        return imap_concurrently(task, len(spans), numba.get_num_threads())

    def xz(self, Z, out=None, large=PRODUCT_BETWEEN_KERNELS):
        """The preprocessed rows times ``Z`` (d, k): ``(n, k)`` in the model's
        dtype, written into ``out`` (C-contiguous) when given (the loop keeps
        one buffer per modality instead of fresh memory every iteration).
        ``large``: multiply-adds from which a dense BLAS product runs on
        every thread (:func:`flexcmh_fast._threads.dense_product_threads`)."""
        k = Z.shape[1]
        if out is None:
            out = np.empty((self.n, k), dtype=self.dtype)
        prep, data_dtype = self.prep, self.X.dtype
        inv = None if prep.kind != "standard" else 1.0 / np.asarray(prep.scale, np.float64)
        # Column scales of "standard" move onto Z: (X / s) Z = X (Z / s).
        Zc = np.ascontiguousarray((Z if inv is None else Z * inv[:, None]), dtype=data_dtype)
        factors = _NO_FACTORS if self.factors is None else self.factors
        if self.sparse:
            X = self.X
            csr_xz(X.indptr, X.indices, X.data, prep.root, factors, Zc, out)
        elif self._streamed(k):
            dense_xz(self.X, prep.root, factors, np.ascontiguousarray(Zc.T), out)
        else:
            def product(s, e, block):
                if out.dtype == data_dtype:
                    np.matmul(block, Zc, out=out[s:e])
                else:
                    out[s:e] = block @ Zc

            if prep.root:
                for _ in self._root_block_products(product):
                    pass
            else:
                with dense_product_threads(self.n * self.d * k, large=large):
                    product(0, self.n, self.X)
            if self.factors is not None:
                out *= self.factors[:, None]
        if prep.kind == "standard" and not self.sparse:
            # (X - mean) Z / s = X (Z / s) - mean (Z / s)
            out -= np.asarray(prep.mean, np.float64) @ (Z * inv[:, None])
        return out

    def _scaled_rows(self, H):
        """``H`` times the row factors, C-contiguous in the data's dtype:
        ``H`` itself when nothing changes, else a buffer kept for the fit
        (fresh (n, k) arrays every iteration cost page faults)."""
        if self.factors is None and H.dtype == self.X.dtype and H.flags.c_contiguous:
            return H
        if self._w is None or self._w.shape != H.shape:
            self._w = np.empty(H.shape, dtype=self.X.dtype)
        if self.factors is None:
            self._w[...] = H
        else:
            np.multiply(H, self.factors[:, None], out=self._w, casting="same_kind")
        return self._w

    def xth(self, H):
        """The preprocessed rows' transpose times ``H`` (n, k): ``(d, k)``
        float64, a sum over rows (row blocks of the data add up)."""
        prep = self.prep
        W = self._scaled_rows(H)
        k = H.shape[1]
        if self.sparse:
            X = self.X
            out = csr_xth(X.indptr, X.indices, X.data, prep.root, W, self.d,
                          row_chunks(self.n, self.d * k))
        elif self._streamed(k):
            out = dense_xth(self.X, prep.root, W, row_chunks(self.n, self.d * k))
        else:
            def product(s, e, block):
                # (W^T X)^T: the faster form for n >> d > k (docs/flexcmh.md,
                # "Training speed").
                return np.asarray((W[s:e].T @ block).T, dtype=np.float64)

            if prep.root:
                # Added in block order: the same sums whatever the threads.
                out = sum(self._root_block_products(product), np.zeros((self.d, k)))
            else:
                with dense_product_threads(self.n * self.d * k,
                                           large=PRODUCT_BETWEEN_KERNELS):
                    out = product(0, self.n, self.X)
        if prep.kind == "standard":
            mean = np.asarray(prep.mean, np.float64)
            if not self.sparse:
                out = out - np.outer(mean, H.sum(axis=0, dtype=np.float64))
            out = out / np.asarray(prep.scale, np.float64)[:, None]
        return np.ascontiguousarray(out)

    # ---- samples ------------------------------------------------------------
    def rows(self, rows):
        """The preprocessed rows ``rows`` (sorted indices; a sample or a
        block) as a new matrix in the model's dtype (CSR stays CSR)."""
        factors = None if self.factors is None else self.factors[rows]
        # Indexing with an array copies the rows: transform that copy in place.
        return self.prep.apply(self.X[np.asarray(rows)], factors, self.dtype, copy=False)

    def blocks(self, rows, block_rows):
        """Yield ``(start, stop, block)``: :meth:`rows` of
        ``rows[start:stop]`` (None: every row), ``block_rows`` at a time."""
        n = self.n if rows is None else len(rows)
        for s, e in row_spans(n, block_rows):
            yield s, e, self.rows(np.arange(s, e) if rows is None else rows[s:e])
