"""Out-of-sample encoders of FlexCMH: indicator vectors of new samples.

``"kernel"`` (default): kernel ridge regression from RBF features against
anchor rows to the learned training indicators.  ``"nnls"``: the paper's
Eq. 3 reading, ``h = argmin_{h >= 0} ||x - Z_m h||^2`` with the learned
centroids.  The regression's statistics are sums over rows
(:func:`encoder_gram`), so row blocks of the data add up.
"""
import numpy as np
import scipy.linalg

from .._rbf import kernel_block, mean_anchor_distance, row_sq_norms
from .._threads import imap_concurrently, row_spans
from . import _kernels as K
from . import _tuning as T
from ._start import gram, xz


def known_rows(pairs, m, k):
    """Sorted rows of modality m with a known partner in some modality, or
    None (= every row) when there are fewer than ``10 k`` of them.

    The kernel encoder is fitted on these rows: their indicators were tied
    to their true partners by the pair term, whereas inferred partners
    (Eq. 2) are mostly wrong when the modalities' clusters correspond poorly,
    so the other rows' indicators are a noisier regression target.  With
    only a handful of known pairs, though, a regression onto k indicator
    columns from them would be fitted on too few rows; ``10 k`` is a guard
    (not tuned: the validated settings had hundreds of known pairs per
    cluster)."""
    found = [g[:, 0] if a == m else g[:, 1] for (a, b), g in pairs.items()
             if m in (a, b) and g.size]
    rows = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.int64)
    return rows if rows.size >= 10 * k else None


def encoder_width(X_probe, anchors):
    """RBF width: ``ENC_SIGMA_FACTOR`` times the mean probe-to-anchor distance."""
    mean_dist = mean_anchor_distance(X_probe, anchors)
    # Constant data (every distance 0): any width gives the same features.
    return float(T.ENC_SIGMA_FACTOR * mean_dist) if mean_dist > 0 else 1.0


def rbf_blocks_concurrently(take, n, anchors, sigma, workers, use):
    """``use(start, stop, Phi)`` for every block of ``ENC_BLOCK`` rows of the
    ``n`` rows ``take(start, stop)`` (preprocessed), with ``Phi`` their RBF
    features against the anchors: the blocks spread over ``workers``
    threads (:func:`flexcmh_fast._threads.imap_concurrently`), the results
    yielded in block order."""
    a_sq = row_sq_norms(anchors)
    anchors_t = np.ascontiguousarray(anchors.T)
    spans = row_spans(n, T.ENC_BLOCK)

    def block(i, parallel):
        s, e = spans[i]
        out = np.empty((e - s, anchors.shape[0]), dtype=anchors.dtype)
        return use(s, e, kernel_block(take(s, e), anchors, a_sq, sigma, out, anchors_t,
                                      parallel))

    return imap_concurrently(block, len(spans), workers)


def encoder_gram(take, indicators, n, anchors, sigma, workers=1):
    """``Phi^T Phi`` (a, a) and ``Phi^T H`` (a, k) over ``n`` regression rows,
    float64: sums over rows, so partitions of the rows can be added up.

    ``take(start, stop)`` gives the preprocessed rows ``start .. stop`` and
    ``indicators(start, stop)`` their indicators; blocks of rows on
    ``workers`` threads (:func:`rbf_blocks_concurrently`), their sums added
    in block order: the same result for any number of workers."""
    def sums(s, e, Phi):
        # The Gram matrix and its solve stay float64 (docs/flexcmh.md,
        # "float32, precision and memory").
        Phi = Phi.astype(np.float64, copy=False)
        return Phi.T @ Phi, Phi.T @ np.asarray(indicators(s, e), dtype=np.float64)

    a = anchors.shape[0]
    G, R = np.zeros((a, a)), None
    for g, r in rbf_blocks_concurrently(take, n, anchors, sigma, workers, sums):
        G += g
        R = r if R is None else R + r
    return G, R


def encoder_weights(G, R):
    """Ridge solution ``(G + eps I)^-1 R``, ``eps = ENC_RIDGE`` x mean diag G.

    ``G + eps I`` is symmetric positive definite: solved by Cholesky (half
    the flops of LU), by LU if rounding made the factorisation fail."""
    a = G.shape[0]
    G = G.copy()
    eps = T.ENC_RIDGE * max(np.trace(G) / a, 1e-300)
    G[np.diag_indices(a)] += eps
    try:
        factor = scipy.linalg.cho_factor(G, check_finite=False)
        W = scipy.linalg.cho_solve(factor, R, check_finite=False)
    except np.linalg.LinAlgError:
        W = np.linalg.solve(G, R)
    return np.ascontiguousarray(W)


def kernel_indicators(take, n, anchors, sigma, weights, workers=1):
    """``h = phi(x) W`` of ``n`` rows (``take(start, stop)``: the
    preprocessed rows ``start .. stop``): RBF features against the anchors
    times the weights, in the weights' dtype; blocks of rows on ``workers``
    threads (each row's result does not depend on them)."""
    out = np.empty((n, weights.shape[1]), dtype=weights.dtype)

    def product(s, e, Phi):
        np.matmul(Phi, weights, out=out[s:e])

    for _ in rbf_blocks_concurrently(take, n, anchors, sigma, workers, product):
        pass
    return out


def preprocessed_rows(X, prep, dtype):
    """``take(start, stop)``: the rows ``start .. stop`` of ``X`` (queries,
    dense or CSR, checked by ``prep.check_input``) preprocessed by ``prep``
    in ``dtype``, a block at a time, so that no transformed copy of all of
    ``X`` is made.  The row factors are taken first, in one pass."""
    factors = prep.factors_of(X)

    def take(s, e):
        return prep.apply(X[s:e], None if factors is None else factors[s:e], dtype)

    return take


def nnls_indicators(take, n, Z):
    """``h = argmin_{h >= 0} ||x - Z h||^2`` per row (Eq. 3 with the learned
    centroids) of ``n`` rows (``take(start, stop)``: the preprocessed rows),
    in ``Z``'s dtype, ``ENCODE_BATCH`` rows at a time."""
    from threadpoolctl import threadpool_limits

    Q = gram(Z)
    out = np.zeros((n, Z.shape[1]), dtype=Z.dtype)
    # One BLAS thread beside the Numba kernel (see flexcmh_fast._threads).
    with threadpool_limits(limits=1, user_api="blas"):
        for s, e in row_spans(n, T.ENCODE_BATCH):
            K.nnls_rows(Q, xz(take(s, e), Z), np.zeros(e - s), out[s:e], T.ENCODE_SWEEPS,
                        T.ENCODE_TOL)
    return out


def draw_encoder_rows(n, n_anchors, rng, rows=None):
    """The random draws of a kernel encoder among the candidate rows ``rows``
    (sorted; None: all ``n``): sorted rows of the anchors, of the (at most
    ``ENC_WIDTH_SAMPLE``) rows that set the RBF width, and of the (at most
    ``ENC_FIT_SAMPLE``) regression rows.

    Separate from :func:`solve_kernel_encoder` so that a fit can make every
    modality's draws first, in a fixed order, and then solve the encoders in
    any order or at once."""
    cand = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    size = cand.size
    anchors = cand[np.sort(rng.choice(size, min(n_anchors, size), replace=False))]
    probes = cand[np.sort(rng.choice(size, min(size, T.ENC_WIDTH_SAMPLE), replace=False))]
    fit = (cand if size <= T.ENC_FIT_SAMPLE
           else cand[np.sort(rng.choice(size, T.ENC_FIT_SAMPLE, replace=False))])
    return anchors, probes, fit


def solve_kernel_encoder(drawn, take_rows, gram):
    """Kernel ridge regression from a modality's samples to their learned
    training indicators (the out-of-sample encoder ``encoder="kernel"``).

    ``phi(x) = exp(-||x - a_j||^2 / (2 sigma^2))`` over the anchors ``a_j``,
    ``sigma`` = ``ENC_SIGMA_FACTOR`` times the mean probe-to-anchor distance,
    and ``W = argmin ||Phi W - H||^2 + eps ||W||^2`` over the regression rows
    with ``eps = ENC_RIDGE`` times the mean diagonal of ``Phi^T Phi``.  Cost
    ``O(min(n, ENC_FIT_SAMPLE) * n_anchors * (d + n_anchors))``.

    Parameters
    ----------
    drawn : tuple of ndarray
        Anchor, probe and regression rows (:func:`draw_encoder_rows`).
    take_rows : callable
        ``take_rows(rows)``: the feature rows ``rows`` (sorted), dense or CSR.
    gram : callable
        ``gram(rows, anchors, sigma)``: :func:`encoder_gram` of the rows
        ``rows`` (sorted) and their indicators, wherever they live.

    Returns
    -------
    anchors : ndarray (a, d), sigma : float, weights : ndarray (a, k)
        In the dtype of the rows ``take_rows`` gives (the model's); the
        Gram matrix and the solve are float64.
    """
    anchor_rows, probe_rows, fit_rows = drawn
    anchors = take_rows(anchor_rows)
    anchors = np.ascontiguousarray(anchors.toarray() if hasattr(anchors, "toarray")
                                   else anchors)
    sigma = encoder_width(take_rows(probe_rows), anchors)
    G, R = gram(fit_rows, anchors, sigma)
    return anchors, sigma, encoder_weights(G, R).astype(anchors.dtype, copy=False)
