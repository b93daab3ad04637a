"""Code functions of FlexCMH: aligned indicator vectors -> b-bit codes.

Both schemes are fitted on the aligned indicator matrices ``Y_m`` (row r of
every ``Y_m`` is the same training object, Eq. 4-5) of all modalities at
once, so that a bit means the same thing in every modality, and both apply
unchanged to out-of-sample indicator vectors.

``"itq"``
    Centre with the pooled mean, project on the pooled principal directions
    (``b > k``: the k principal directions spread over ``b`` dimensions by a
    random matrix with orthonormal rows), and rotate with Iterative
    Quantization (Gong & Lazebnik 2011).  The rotation minimises
    ``sum_m ||B - V_m R||^2`` with ``B = sign(sum_m V_m R)`` -- Eq. 5 and 11
    with the relaxed per-modality codes ``V_m R``.

    Long codes (``b > max(k, 64)``): the projected data have rank <= k, so
    only the k x b block ``spread @ R`` of the rotation affects the codes and
    the objective; ITQ then runs on that block directly (each step the polar
    factor of a k x b matrix instead of a b x b SVD), which is the same
    iteration restricted to the subspace: the same optimisation at O(k^2 b)
    instead of O(b^3) per step.  The block starts from random orthonormal
    rows, distributed as ``spread @ R`` is; the codes are not bit-identical
    to a full b x b rotation started from the same seed.
``"kmeans"``
    The paper's repeated k-means (Sec. III-C): k-means
    into b groups gives a one-hot code; the largest entry of every row is set
    to 0 and k-means is run again; rounds stop when the assignments no longer
    change; a code is the OR of the rounds' one-hot codes.  Codebooks are
    learned once on the pooled aligned indicators.
"""
import numpy as np

from .._persist import FileFormatError
from .._state_checks import array_entry
from ._kernels import linear_code_signs

SCHEMES = ("itq", "kmeans")


def centred_product(Y, mu, M):
    """``(Y - mu) @ M`` as ``Y M - mu M``: no centred copy of ``Y`` (for
    many rows the copy costs more than the product; docs/flexcmh.md,
    "Training speed")."""
    out = Y @ M
    out -= mu @ M
    return out


def _orthonormal_rows(r, b, rng):
    """(r, b) random matrix with orthonormal rows (r <= b)."""
    G = rng.standard_normal((b, r))
    q, _ = np.linalg.qr(G)
    return np.ascontiguousarray(q[:, :r].T)


# Longest code (in bits) whose ITQ rotation is a full b x b matrix; longer
# codes (when also longer than k) rotate in the k-dim subspace.  64 keeps
# every code of up to 64 bits exactly as before the subspace path existed.
FULL_ROTATION_MAX_BITS = 64


def full_rotation(n_bits, k):
    """Whether ITQ keeps a full (n_bits, n_bits) rotation for k-dim
    indicators (else the rotation is folded into the projection ``W``)."""
    return n_bits <= max(k, FULL_ROTATION_MAX_BITS)


class ITQCode:
    """ITQ code function; state: mean ``mu`` (k,), projection ``W`` (k, b)
    and rotation ``R`` (b, b), or ``R=None`` when the rotation is folded
    into ``W`` (long codes, see :func:`full_rotation`)."""

    scheme = "itq"

    def __init__(self, mu, W, R=None):
        self.mu, self.W, self.R = mu, W, R
        # Kept only to warm-start the next fit: the (k, b) spread matrix
        # (full rotation) or rotated block ``spread @ R``, and the (k,
        # min(b, k)) principal basis.
        self.spread = None
        self.basis = None

    @classmethod
    def fit(cls, Ys, n_bits, rng, n_iter=50, previous=None):
        """Fit on aligned indicator matrices ``Ys`` (list, equal row counts).

        ``previous``: a fitted ITQCode whose rotation warm-starts this fit
        (used between outer iterations, where the indicators change little).
        """
        U = None

        def rotation_stats(mu, W, R):
            nonlocal U
            if U is None:
                U = np.add.reduce([centred_product(Y, mu, W) for Y in Ys])
            return U.T @ np.where(U @ R > 0, 1.0, -1.0)

        return cls.fit_from_moments(
            sum(Y.shape[0] for Y in Ys), np.add.reduce([Y.sum(axis=0) for Y in Ys]),
            np.add.reduce([Y.T @ Y for Y in Ys]), n_bits, rng, rotation_stats,
            n_iter=n_iter, previous=previous)

    @classmethod
    def fit_from_moments(cls, n_rows, sum_y, scatter, n_bits, rng, rotation_stats,
                         n_iter=50, previous=None):
        """Fit from sums over the rows, so that the rows may live anywhere.

        Parameters
        ----------
        n_rows : int
            Rows of all ``Y_m`` together.
        sum_y : ndarray (k,)
            Sum of the rows of all ``Y_m``.
        scatter : ndarray (k, k)
            ``sum_m Y_m^T Y_m``.
        rotation_stats : callable
            ``rotation_stats(mu, W, R)`` returns ``U^T sign(U R)`` with
            ``U = sum_m (Y_m - mu) W`` (sign: +1 where > 0, else -1).  ``W``
            is the same in every call of one fit, so ``U`` may be computed
            once.  Full rotation: ``W`` (k, b), ``R`` (b, b), result (b, b);
            otherwise ``W`` (k, k) (the principal directions), ``R`` (k, b)
            with orthonormal rows, result (k, b).
        """
        k = sum_y.shape[0]
        mu = sum_y / n_rows
        # Scatter matrix of the pooled rows without stacking or centring copies.
        cov = scatter - n_rows * np.outer(mu, mu)
        evals, evecs = np.linalg.eigh(cov)
        evecs = evecs[:, ::-1]
        # Fix each eigenvector's sign (largest-magnitude entry positive), so
        # that a warm-started rotation still fits the new projection.
        flip = np.sign(evecs[np.abs(evecs).argmax(axis=0), np.arange(k)])
        evecs = evecs * np.where(flip == 0, 1.0, flip)
        r = min(n_bits, k)
        previous_basis = getattr(previous, "basis", None)
        if previous_basis is not None and previous_basis.shape == (k, r):
            # Warm start: of the orthonormal bases of the new principal
            # subspace, take the one closest to the previous basis, so that
            # the warm-started rotation still fits.  Eigenvectors of close
            # eigenvalues swap and change sign from one fit to the next;
            # the codes then jumped until the rotation caught up
            # (docs/flexcmh.md, "Convergence").
            left, _, right = np.linalg.svd(evecs[:, :r].T @ previous_basis)
            evecs = np.concatenate([evecs[:, :r] @ (left @ right), evecs[:, r:]], axis=1)
        basis = np.ascontiguousarray(evecs[:, :r])
        warm = previous is not None and getattr(previous, "spread", None) is not None \
            and previous.spread.shape == (k, n_bits)
        if not full_rotation(n_bits, k):
            # Maximise tr(V^T E^T C^T B) over (k, b) V with orthonormal rows
            # (C: centred indicators, E: principal directions): the full
            # rotation's update restricted to the rows of spread @ R.
            E = np.ascontiguousarray(evecs)
            V = previous.spread if warm and previous.R is None \
                else _orthonormal_rows(k, n_bits, rng)
            for _ in range(n_iter):
                left, _, right = np.linalg.svd(rotation_stats(mu, E, V),
                                               full_matrices=False)
                V = left @ right
            code = cls(mu, np.ascontiguousarray(E @ V), None)
            code.spread, code.basis = V, basis
            return code
        spread = None
        if n_bits <= k:
            W = evecs[:, :n_bits]
        else:
            spread = previous.spread if warm else _orthonormal_rows(k, n_bits, rng)
            W = evecs @ spread
        W = np.ascontiguousarray(W)
        if previous is not None and previous.R is not None \
                and previous.R.shape == (n_bits, n_bits):
            R = previous.R
        else:
            R, _ = np.linalg.qr(rng.standard_normal((n_bits, n_bits)))
        for _ in range(n_iter):
            left, _, right = np.linalg.svd(rotation_stats(mu, W, R))
            R = left @ right
        code = cls(mu, W, np.ascontiguousarray(R))
        code.spread, code.basis = spread, basis
        return code

    def project(self, Y):
        """Continuous relaxation ``(Y - mu) W R`` of the codes."""
        return centred_product(Y, self.mu, self.projection)

    def linear_form(self, Y):
        """``(Y', mu, P)`` with the relaxation of the codes of ``Y`` equal to
        ``(Y' - mu) P`` (the code kernels' input; ``mu`` and ``P`` float64):
        here ``Y`` itself and the code's mean and projection ``W R``."""
        P = self.__dict__.get("_projection64")
        if P is None:
            P = self._projection64 = np.ascontiguousarray(self.projection, dtype=np.float64)
        return Y, self.mu.astype(np.float64), P

    def astype(self, dtype):
        """The code function with its arrays in ``dtype`` (the model's); the
        warm-start state of the next fit is kept as it is."""
        code = type(self)(self.mu.astype(dtype, copy=False), self.W.astype(dtype, copy=False),
                          None if self.R is None else self.R.astype(dtype, copy=False))
        code.spread, code.basis = self.spread, self.basis
        return code

    @property
    def projection(self):
        """``W R`` (k, b), formed once (the loop projects every iteration)."""
        P = self.__dict__.get("_projection")
        if P is None:
            P = self._projection = self.W if self.R is None else self.W @ self.R
        return P

    def signs(self, Y):
        """±1 int8 codes of indicator rows ``Y`` (the arithmetic of the
        training codes, :func:`flexcmh_fast.flexcmh._kernels.linear_code_signs`)."""
        _, mu, P = self.linear_form(Y)
        return linear_code_signs(np.ascontiguousarray(Y), mu, P)

    def state(self, prefix):
        arrays = {prefix + "mu": self.mu, prefix + "W": self.W}
        if self.R is not None:
            arrays[prefix + "R"] = self.R
        return arrays

    @classmethod
    def from_state(cls, arrays, prefix, n_bits=None, k=None):
        """Rebuild from :meth:`state`; the arrays must be finite floats of
        shapes (k,), (k, b) and (b, b) (the rotation required when
        :func:`full_rotation`, else optional; ``b = n_bits`` and the given
        ``k`` when not None), else :class:`FileFormatError`."""
        check_code_state(arrays, prefix, cls.scheme, n_bits, k)
        return cls(arrays[prefix + "mu"], arrays[prefix + "W"], arrays.get(prefix + "R"))


def _kmeans_pp(Y, n_groups, rng):
    """k-means++ seeding (rows of Y; duplicates allowed when Y has few rows)."""
    n = Y.shape[0]
    centers = np.empty((n_groups, Y.shape[1]))
    centers[0] = Y[rng.integers(n)]
    d2 = ((Y - centers[0]) ** 2).sum(axis=1)
    for g in range(1, n_groups):
        total = d2.sum()
        idx = rng.integers(n) if total <= 0 else int(
            np.searchsorted(np.cumsum(d2), rng.random() * total))
        centers[g] = Y[min(idx, n - 1)]
        d2 = np.minimum(d2, ((Y - centers[g]) ** 2).sum(axis=1))
    return centers


def _nearest(Y, centers):
    """Index of the nearest centre of every row (ties: smaller index)."""
    d = (centers ** 2).sum(axis=1)[None, :] - 2.0 * (Y @ centers.T)
    return d.argmin(axis=1)


def lloyd(Y, centers, n_iter):
    """Lloyd iterations from ``centers``; empty groups keep their centre."""
    centers = centers.copy()
    assign = _nearest(Y, centers)
    for _ in range(n_iter):
        counts = np.bincount(assign, minlength=centers.shape[0])
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, Y)
        nz = counts > 0
        centers[nz] = sums[nz] / counts[nz, None]
        new = _nearest(Y, centers)
        if np.array_equal(new, assign):
            break
        assign = new
    return centers, assign


def _peel(Y):
    """Set the largest entry of every row to 0 (ties: first column)."""
    Y = Y.copy()
    Y[np.arange(Y.shape[0]), Y.argmax(axis=1)] = 0.0
    return Y


class KMeansCode:
    """Repeated-k-means code function; state: codebooks (rounds, b, k)."""

    scheme = "kmeans"

    def __init__(self, codebooks):
        self.codebooks = codebooks

    @classmethod
    def fit(cls, Ys, n_bits, rng, n_iter=50, previous=None):
        """Fit on aligned indicator matrices ``Ys``; ``previous`` warm-starts
        each round's codebook from the same round of an earlier fit."""
        Y = np.vstack(Ys)
        k = Y.shape[1]
        books = []
        prev_assign = None
        # At most k rounds: after k peelings every row is zero.
        for r in range(k):
            if previous is not None and r < len(previous.codebooks):
                start = previous.codebooks[r]
            else:
                start = _kmeans_pp(Y, n_bits, rng)
            centers, assign = lloyd(Y, start, n_iter)
            books.append(centers)
            if prev_assign is not None and np.array_equal(assign, prev_assign):
                break
            prev_assign = assign
            Y = _peel(Y)
        return cls(np.stack(books))

    def signs(self, Y):
        """±1 int8 codes: OR over the rounds of the one-hot assignments."""
        bits = np.zeros((Y.shape[0], self.codebooks.shape[1]), dtype=bool)
        rows = np.arange(Y.shape[0])
        for r, centers in enumerate(self.codebooks):
            bits[rows, _nearest(Y, centers)] = True
            if r + 1 < len(self.codebooks):
                Y = _peel(Y)
        return np.where(bits, 1, -1).astype(np.int8)

    def project(self, Y):
        """The ±1 codes as floats (the scheme has no continuous relaxation)."""
        return self.signs(Y).astype(np.float64)

    def linear_form(self, Y):
        """``(Y', mu, P)`` with the ±1 codes of ``Y`` equal to ``(Y' - mu) P``:
        the codes themselves, a zero mean and the identity."""
        b = self.codebooks.shape[1]
        return self.signs(Y), np.zeros(b), np.eye(b)

    def astype(self, dtype):
        """The code function with its codebooks in ``dtype``."""
        return type(self)(self.codebooks.astype(dtype, copy=False))

    def state(self, prefix):
        return {prefix + "codebooks": self.codebooks}

    @classmethod
    def from_state(cls, arrays, prefix, n_bits=None, k=None):
        """Rebuild from :meth:`state`; the codebooks must be finite floats
        of shape (rounds >= 1, b, k) (with ``b = n_bits`` and the given
        ``k`` when not None), else :class:`FileFormatError`."""
        check_code_state(arrays, prefix, cls.scheme, n_bits, k)
        return cls(arrays[prefix + "codebooks"])


def code_class(scheme):
    return ITQCode if scheme == "itq" else KMeansCode


def check_code_state(arrays, prefix, scheme, n_bits=None, k=None):
    """Saved state of an ITQ or k-means code function for ``n_bits`` bits on
    ``k``-dimensional indicator vectors (``None``: whatever the arrays say,
    as long as they agree with each other).  Returns ``(n_bits, k)``."""
    if scheme == "itq":
        mu = array_entry(arrays, prefix + "mu", shape=(k,))
        W = array_entry(arrays, prefix + "W", shape=(mu.shape[0], n_bits))
        if W.shape[1] < 1:
            raise FileFormatError(f"entry {prefix + 'W'!r} of shape {W.shape} has no bit")
        # Long codes fold the rotation into W; files written before that
        # (a full rotation for every length) still load.
        if full_rotation(W.shape[1], mu.shape[0]) or prefix + "R" in arrays:
            array_entry(arrays, prefix + "R", shape=(W.shape[1], W.shape[1]))
        return W.shape[1], mu.shape[0]
    if scheme == "kmeans":
        books = array_entry(arrays, prefix + "codebooks", shape=(None, n_bits, k))
        if books.shape[0] < 1 or books.shape[1] < 1:
            raise FileFormatError(f"entry {prefix + 'codebooks'!r} of shape {books.shape} "
                                  "holds no codebook")
        return books.shape[1], books.shape[2]
    raise FileFormatError(f"unknown code scheme {scheme!r}")
