"""What the three peer baselines share: linear hash functions on centred
features, sparse-aware centred products, the known pairs they train on,
and the estimator base class.

Every baseline hashes a sample ``x`` of modality ``m`` by
``sign((x - mean_m) W_m)`` (ties at zero give +1): CCA-ITQ with its CCA
directions and ITQ rotation folded into ``W_m``, CMFH with its projection
``P_m``, SCM with one projection column per sequentially learned bit.

float32 input gives a float32 model and is never copied as a whole
(:class:`TrainingRows`, :func:`hash_signs`; ``docs/baselines.md``,
"float32").
"""
import numpy as np
import scipy.sparse as sp

from .._base import HashingEstimator, history_dict
from .._params import Float, Param
from .._threads import thread_limits
from .._validation import _describe, check_n_threads
from ..search import pack_codes
from ._state import check_linear_hash_state


# --------------------------------------------------------------------------
# Training data: two modalities, the known pairs
# --------------------------------------------------------------------------
def paired_rows(Xs, pairs, method):
    """The rows of the known pairs: ``(rows_0, rows_1)``, row ``rows_0[t]``
    of modality 0 and ``rows_1[t]`` of modality 1 are object ``t``.

    The baselines are two-modality methods trained on paired objects; with
    weakly-paired data they train on the known pairs only.
    """
    if len(Xs) != 2:
        raise ValueError(
            f"{method} is a two-modality method: 'modalities' must hold exactly "
            f"2 matrices. Got {len(Xs)} instead."
        )
    p = pairs.get((0, 1))
    n_pairs = 0 if p is None else p.shape[0]
    if n_pairs < 2:
        raise ValueError(
            f"{method} trains on known pairs: 'pairs' must give at least 2 "
            f"pairs between modality 0 and modality 1. Got {n_pairs} instead."
        )
    return p[:, 0], p[:, 1]


def take_rows(X, rows):
    """Rows of a dense or CSR matrix (all rows: the matrix itself, no copy)."""
    if rows.shape[0] == X.shape[0] and np.array_equal(rows, np.arange(X.shape[0])):
        return X
    return X[rows]


# --------------------------------------------------------------------------
# Centred products that never densify sparse input
# --------------------------------------------------------------------------
def column_means(X):
    """Mean of every column, as a 1-D float64 array."""
    return np.asarray(X.mean(axis=0), dtype=np.float64).ravel()


def centred_gram(X, mean):
    """``(X - 1 mean)^T (X - 1 mean)``, d x d.

    For CSR input the centring is analytic, ``X^T X - n mean mean^T``, so
    only the sparse product is formed (d x d dense result: fine for d up to
    a few thousand)."""
    if sp.issparse(X):
        gram = (X.T @ X).toarray()
        gram -= X.shape[0] * np.outer(mean, mean)
        return (gram + gram.T) / 2.0
    Xc = X - mean
    return Xc.T @ Xc


def centred_cross(X, mean_x, Y, mean_y):
    """``(X - 1 mean_x)^T (Y - 1 mean_y)``, d_x x d_y dense, centred
    analytically (``X^T Y - n mean_x mean_y^T``) so CSR input stays sparse."""
    cross = X.T @ Y
    cross = cross.toarray() if sp.issparse(cross) else np.asarray(cross)
    return cross - X.shape[0] * np.outer(mean_x, mean_y)


def ridge_covariance(gram, n, reg):
    """Centred covariance ``gram / n`` (``gram`` the centred Gram matrix of
    ``n`` rows) plus ``reg`` times its mean diagonal on the diagonal
    (``reg`` alone for all-constant features): a ridge relative to the
    data's scale, so ``reg`` means the same for SIFT counts and for
    unit-norm TF-IDF rows."""
    cov = gram / n
    scale = float(np.trace(cov)) / cov.shape[0]
    cov[np.diag_indices_from(cov)] += reg * (scale if scale > 0 else 1.0)
    return cov


def centred_t_dot(X, mean, Z):
    """``(X - 1 mean)^T Z`` (d x k) for a dense ``Z`` of shape (n, k)."""
    return np.asarray(X.T @ Z) - np.outer(mean, Z.sum(axis=0))


def centred_dot(X, mean, W):
    """``(X - 1 mean) W`` (n x k) for a dense ``W`` of shape (d, k)."""
    return np.asarray(X @ W) - mean @ W


def sign_codes(values):
    """±1 int8 codes, ties at zero to +1 (the package's convention)."""
    return np.where(values >= 0, 1, -1).astype(np.int8)


# --------------------------------------------------------------------------
# The training rows of a modality (float32: read block by block), the model's dtype
# --------------------------------------------------------------------------
# Rows of a block of a dense float32 modality: every float32 sum over rows
# runs over at most this many rows before it is added into float64, and a
# block cast to float64 takes 8 * BLOCK_ROWS * d bytes (docs/baselines.md,
# "float32").
BLOCK_ROWS = 1024
# Stored values of a block of a float32 CSR modality (computed in float64:
# the block's size bounds only the memory of its float64 copy).
CSR_BLOCK_NNZ = 1 << 20


def model_dtype(Xs):
    """The dtype of a model fitted on ``Xs``: float32 when every modality is
    float32, else float64."""
    return np.dtype(np.float32) if all(X.dtype == np.float32 for X in Xs) \
        else np.dtype(np.float64)


def model_array(values, dtype):
    """A fitted float array as the model keeps it, C-contiguous in ``dtype``."""
    return np.ascontiguousarray(values, dtype=dtype)


def _add_sparse(out, S):
    """``out += S`` for a dense ``out`` and a sparse ``S`` of its shape,
    without a dense temporary."""
    S = S.tocsr()
    S.sum_duplicates()
    out[np.repeat(np.arange(S.shape[0]), np.diff(S.indptr)), S.indices] += S.data


class TrainingRows:
    """The training rows of one modality, rows ``rows`` of ``X`` (the known
    pairs, in pair order), and the centred products the baselines take of
    them.

    float64 matrices are read as whole matrices: the rows are taken once
    (no copy when they are every row in order) and each product is one BLAS
    or sparse product.  float32 matrices are never copied as a whole and
    never cast to float64 as a whole: they are read a block of rows at a
    time (:meth:`_block_bounds`).  The Gram and cross products, which the
    methods' solves are sensitive to, are float64 products of each block
    cast to float64.  The thin products (``X^T Z``, ``X W``) of a dense
    float32 block are centred and multiplied in float32; CSR blocks are cast
    to float64 and centred analytically.  Sums over blocks and every result
    are float64 (``docs/baselines.md``, "float32").

    Parameters
    ----------
    X : ndarray or CSR matrix (n_m, d)
        Validated float32 / float64 rows.
    rows : int ndarray (n,)
        The rows of ``X`` that are training objects, in pair order.

    Attributes
    ----------
    n, d : int
    mean : float64 ndarray (d,)
        The mean of the training rows.
    """

    def __init__(self, X, rows):
        self.X = X
        self.rows = rows
        self.n, self.d = rows.shape[0], X.shape[1]
        self.sparse = sp.issparse(X)
        self.blocked = X.dtype != np.float64
        # The thin products of dense float32 blocks run in float32, all others in float64.
        self.float32 = X.dtype == np.float32 and not self.sparse
        self._every_row = rows.shape[0] == X.shape[0] and np.array_equal(
            rows, np.arange(X.shape[0]))
        if not self.blocked:
            self.Xp = take_rows(X, rows)
            self.mean = column_means(self.Xp)
        self.bounds = self._block_bounds()
        if not self.blocked:
            return
        total = np.zeros(self.d)
        for _, _, B in self._blocks():
            # (scipy sums a float32 CSR matrix in float32 whatever dtype is asked for)
            total += (np.bincount(B.indices, weights=B.data, minlength=self.d) if self.sparse
                      else B.sum(axis=0, dtype=np.float64))
        self.mean = total / self.n

    # ---- blocks of rows ------------------------------------------------------
    def _block_bounds(self):
        """The first row of every block and ``n``: dense blocks of
        :data:`BLOCK_ROWS` rows, CSR blocks of about :data:`CSR_BLOCK_NNZ`
        stored values (at least one row)."""
        if not self.sparse:
            return np.append(np.arange(0, self.n, BLOCK_ROWS), self.n)
        counts = np.diff(self.X.indptr)
        ends = np.cumsum(counts if self._every_row else counts[self.rows])
        starts = np.searchsorted(ends, np.arange(0, ends[-1], CSR_BLOCK_NNZ), side="right")
        return np.union1d(starts[starts < self.n], [0, self.n])

    def _rows(self, s, e):
        """Training rows ``s:e`` as stored (a CSR block of every row shares
        the matrix's arrays)."""
        if not self._every_row:
            return self.X[self.rows[s:e]]
        if not self.sparse:
            return self.X[s:e]
        X = self.X
        a, b = X.indptr[s], X.indptr[e]
        return sp.csr_matrix((X.data[a:b], X.indices[a:b], X.indptr[s:e + 1] - a),
                             shape=(e - s, self.d))

    def _blocks(self, dtype=None, centred=False, bounds=None):
        """Yield ``(start, stop, block)`` over the training rows, block by
        block (:meth:`_block_bounds`, or ``bounds``): the rows as stored
        (``dtype`` None) or cast to ``dtype``; dense blocks minus ``mean``
        rounded to ``dtype`` when ``centred`` (:attr:`shift` is what that
        rounding leaves in float32 blocks)."""
        mean = self.mean.astype(dtype) if centred else None
        bounds = self.bounds if bounds is None else bounds
        for s, e in zip(bounds[:-1], bounds[1:]):
            B = self._rows(s, e)
            if centred:
                B = np.subtract(B, mean, dtype=dtype)
            elif dtype is not None:
                B = B.astype(dtype, copy=False)
            yield s, e, B

    @property
    def shift(self):
        """``mean - float32(mean)``: every row of a centred float32 block is
        off by it, and the thin products subtract its share in float64."""
        return self.mean - self.mean.astype(np.float32)

    # ---- products --------------------------------------------------------------
    def gram(self):
        """``(X - 1 mean)^T (X - 1 mean)``, d x d float64."""
        if not self.blocked:
            return centred_gram(self.Xp, self.mean)
        out = np.zeros((self.d, self.d))
        if not self.sparse:
            for _, _, C in self._blocks(np.float64, centred=True):
                out += C.T @ C
            return out
        for _, _, B in self._blocks(np.float64):
            _add_sparse(out, B.T @ B)
        out -= self.n * np.outer(self.mean, self.mean)
        return (out + out.T) / 2.0

    def cross(self, other):
        """``(X - 1 mean)^T (Y - 1 mean_Y)`` with the training rows ``other``
        of another modality (the same objects), d x d_Y float64."""
        if not (self.blocked or other.blocked):
            return centred_cross(self.Xp, self.mean, other.Xp, other.mean)
        out = np.zeros((self.d, other.d))
        # Blocks within a block of each modality.
        bounds = np.union1d(self.bounds, other.bounds)
        if not (self.sparse or other.sparse):
            for (_, _, A), (_, _, B) in zip(self._blocks(np.float64, True, bounds),
                                            other._blocks(np.float64, True, bounds)):
                out += A.T @ B
            return out
        for (_, _, A), (_, _, B) in zip(self._blocks(np.float64, bounds=bounds),
                                        other._blocks(np.float64, bounds=bounds)):
            if sp.issparse(A) and sp.issparse(B):
                _add_sparse(out, A.T @ B)
            elif sp.issparse(B):
                out += np.asarray(B.T @ A).T
            else:
                out += np.asarray(A.T @ B)
        return out - self.n * np.outer(self.mean, other.mean)

    def t_dot(self, Z):
        """``(X - 1 mean)^T Z``, d x k float64, for a float64 ``Z`` (n, k)."""
        if not self.blocked:
            return centred_t_dot(self.Xp, self.mean, Z)
        out = np.zeros((self.d, Z.shape[1]))
        if self.float32:
            for s, e, C in self._blocks(np.float32, centred=True):
                out += C.T @ Z[s:e].astype(np.float32)
            return out - np.outer(self.shift, Z.sum(axis=0))
        for s, e, B in self._blocks(np.float64):
            out += np.asarray(B.T @ Z[s:e])
        return out - np.outer(self.mean, Z.sum(axis=0))

    def dot(self, W):
        """``(X - 1 mean) W``, n x k float64, for a float64 ``W`` (d, k)."""
        if not self.blocked:
            return centred_dot(self.Xp, self.mean, W)
        out = np.empty((self.n, W.shape[1]))
        if self.float32:
            W32, offset = W.astype(np.float32), self.shift @ W
            for s, e, C in self._blocks(np.float32, centred=True):
                out[s:e] = C @ W32
                out[s:e] -= offset
            return out
        offset = self.mean @ W
        for s, e, B in self._blocks(np.float64):
            out[s:e] = np.asarray(B @ W) - offset
        return out

    def signs_t_dot(self, w):
        """``b = sign((X - 1 mean) w)`` (float64 ±1, ties +1) and
        ``(X - 1 mean)^T b`` (d float64) for a float64 ``w`` (d,); blocked,
        both come from one read of the rows."""
        if not self.blocked:
            b = sign_codes(centred_dot(self.Xp, self.mean, w[:, None]))[:, 0].astype(np.float64)
            return b, centred_t_dot(self.Xp, self.mean, b[:, None])[:, 0]
        b = np.empty(self.n)
        out = np.zeros(self.d)
        if self.float32:
            w32, offset = w.astype(np.float32), float(self.shift @ w)
            for s, e, C in self._blocks(np.float32, centred=True):
                bb = np.where(C @ w32 >= offset, np.float32(1.0), np.float32(-1.0))
                out += C.T @ bb
                b[s:e] = bb
            return b, out - self.shift * b.sum()
        offset = float(self.mean @ w)
        for s, e, B in self._blocks(np.float64):
            b[s:e] = np.where(np.asarray(B @ w) - offset >= 0, 1.0, -1.0)
            out += np.asarray(B.T @ b[s:e])
        return b, out - self.mean * b.sum()


def hash_signs(X, mean, W):
    """``sign((X - mean) W)`` as ±1 int8 (ties +1), computed in the
    model's dtype (``W.dtype``): a float64 model reads float64 ``X`` as
    one matrix and casts float32 ``X`` to float64 a block of rows at a
    time; a float32 model casts float64 ``X`` to float32 a block at a time,
    centres dense blocks before the product and multiplies in float32."""
    dtype = W.dtype
    if X.dtype == dtype == np.float64:
        return sign_codes(centred_dot(X, mean, W))
    out = np.empty((X.shape[0], W.shape[1]), dtype=np.int8)
    centre = dtype == np.float32 and not sp.issparse(X)
    offset = mean @ W
    for s in range(0, X.shape[0], BLOCK_ROWS):
        e = min(X.shape[0], s + BLOCK_ROWS)
        if centre:
            values = np.subtract(X[s:e], mean, dtype=dtype) @ W
        else:
            values = np.asarray(X[s:e].astype(dtype, copy=False) @ W) - offset
        out[s:e] = sign_codes(values)
    return out


def top_singular_pair(T):
    """Leading singular triple ``(u, s, v)`` of a dense matrix, with the sign
    fixed so that the largest-magnitude entry of ``u`` is positive."""
    U, S, Vt = np.linalg.svd(T, full_matrices=False)
    u, v = U[:, 0], Vt[0]
    if u[np.argmax(np.abs(u))] < 0:
        u, v = -u, -v
    return u, float(S[0]), v


def orient_columns(W, *others):
    """Flip the sign of column ``k`` of ``W`` (and of every matrix in
    ``others``) so that its largest-magnitude entry is positive: SVD and
    eigen solvers return directions up to sign, this makes them canonical."""
    flip = np.where(W[np.argmax(np.abs(W), axis=0), np.arange(W.shape[1])] < 0, -1.0, 1.0)
    return (W * flip,) + tuple(O * flip for O in others)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------
def ridge_param():
    """The ``reg`` setting of CCA-ITQ and SCM (one declaration, one meaning)."""
    return Param(1e-4, Float(0.0, low_open=True), "ridge on each covariance, relative to "
                                                  "its mean diagonal")


# --------------------------------------------------------------------------
# The estimator base class
# --------------------------------------------------------------------------
class LinearHashEstimator(HashingEstimator):
    """Base of the baselines: ``F_m(x) = sign((x - mean_m) W_m)``.

    Subclasses set ``kind``, ``HISTORY_TERMS`` (the names of ``history_``)
    and ``_parameters``, and implement ``_fit``, which ends with
    :meth:`_store`.  Their fitted attributes:

    - ``means_`` : list of ndarray (d_m,), the training mean of every
      modality (the centring of the hash function);
    - ``projections_`` : list of ndarray (d_m, n_bits), ``W_m``;
    - ``codes_`` : ndarray of uint8 (n_pairs, ceil(n_bits / 8)), the codes
      of the training objects (the known pairs, in pair order): the learned
      unified codes where the method learns them (CMFH), otherwise the
      modality-0 hash codes;
    - ``train_codes_`` : list of ndarray of uint8 (n_m, ceil(n_bits / 8)),
      codes of every training row of each modality in its own row order
      (the learned code for the rows of known pairs where the method learns
      codes, the hash function's code otherwise);
    - ``history_`` : dict of 1-D arrays, one per name of ``HISTORY_TERMS``;
    - ``n_iter_`` : int.
    """

    HISTORY_TERMS = ()
    # float32 data give a float32 model (docs/baselines.md, "float32").
    _preserves_dtype = ("float32", "float64")

    def _store(self, Xs, rows, means, projections, history, n_iter, learned=None):
        """Set the fitted attributes, in the model's dtype
        (:func:`model_dtype`); ``learned`` (±1, one row per known pair)
        overrides the hash codes of the known pairs' rows."""
        dtype = model_dtype(Xs)
        self.means_ = [model_array(m, dtype) for m in means]
        self.projections_ = [model_array(w, dtype) for w in projections]
        self.train_codes_ = []
        for m, X in enumerate(Xs):
            signs = hash_signs(X, self.means_[m], self.projections_[m])
            if learned is not None:
                signs[rows[m]] = learned
            self.train_codes_.append(pack_codes(signs))
        self.codes_ = (pack_codes(learned) if learned is not None
                       else self.train_codes_[0][rows[0]])
        self.history_ = history_dict(history, self.HISTORY_TERMS)
        self.n_iter_ = int(n_iter)

    def _encode_signs(self, X, modality):
        with thread_limits(check_n_threads(self.n_threads)):
            return hash_signs(X, self.means_[modality], self.projections_[modality])

    def _get_state(self):
        arrays = {}
        for m in range(len(self.n_features_)):
            arrays[f"mean_{m}"] = self.means_[m]
            arrays[f"projection_{m}"] = self.projections_[m]
        return {}, arrays

    @classmethod
    def _check_state(cls, meta, arrays):
        check_linear_hash_state(meta, arrays, cls.HISTORY_TERMS)

    def _set_state(self, meta, arrays):
        M = len(self.n_features_)
        means = [arrays[f"mean_{m}"] for m in range(M)]
        projections = [arrays[f"projection_{m}"] for m in range(M)]
        # The fit's rule: a float32 model when every saved array is float32.
        dtype = model_dtype(means + projections)
        self.means_ = [model_array(a, dtype) for a in means]
        self.projections_ = [model_array(a, dtype) for a in projections]


class NoneOnly:
    """A common setting a method has no use for: ``None`` only (a value
    would be silently ignored otherwise)."""

    def __init__(self, method, reason):
        self.method, self.reason = method, reason

    def __call__(self, value, name):
        if value is not None:
            raise ValueError(f"'{name}' must be None for {self.method} ({self.reason}). "
                             f"Got {_describe(value)} instead.")
        return None
