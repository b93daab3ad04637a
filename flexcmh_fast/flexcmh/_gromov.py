"""Entropic Gromov–Wasserstein alignment (square loss) in numpy.

Gromov–Wasserstein (GW) couples two point sets by comparing their *internal*
distance matrices, so the two modalities need no shared feature space and
may have different dimensions.  FlexCMH uses it on a fixed-size sub-sample
of each modality to find a label-free correspondence when no pair is known
(``match_score="gw"``; ``docs/flexcmh.md``).

The solver is the projected-gradient scheme of Peyré, Cuturi and Solomon
(ICML 2016): with the square loss the GW gradient at a coupling T is
``2 (c1 + c2 - 2 C1 T C2)`` (``c1``, ``c2`` the constant terms), and each
iteration is a log-domain Sinkhorn projection of that cost.  Cost per
iteration: ``O(s^3)`` for the products and ``O(s^2)`` per Sinkhorn sweep,
``s`` the sub-sample size (independent of the number of samples).
"""
import numpy as np

from .._threads import dense_product_threads


def sinkhorn(cost, p, q, eps, n_iter, tol, v=None):
    """Entropic optimal transport plan of ``cost`` between marginals p, q,
    and the column scaling ``v`` that warm-starts the next call (None:
    ones).  The kernel is ``exp(-(cost - min cost) / eps)``; ``eps`` is
    raised, if needed, to 1/600 of the cost range so that it cannot
    underflow."""
    spread = cost - cost.min()
    eps = max(eps, float(spread.max()) / 600.0)
    K = np.exp(-spread / eps)
    v = np.ones(q.size) if v is None else v
    for _ in range(n_iter):
        u = p / np.maximum(K @ v, 1e-300)
        v_new = q / np.maximum(K.T @ u, 1e-300)
        done = np.max(np.abs(v_new - v)) <= tol * np.max(v_new)
        v = v_new
        if done:
            break
    return u[:, None] * K * v[None, :], v


def gw_loss(C1, C2, p, q, T):
    """Square-loss GW objective ``sum_ijkl (C1_ik - C2_jl)^2 T_ij T_kl``."""
    const = (C1 ** 2 @ p)[:, None] + (C2 ** 2 @ q)[None, :]
    return float(np.sum((const - 2.0 * C1 @ T @ C2.T) * T))


def entropic_gw(C1, C2, p=None, q=None, eps=5e-3, max_iter=100, tol=1e-7,
                sinkhorn_iter=200, n_threads=None):
    """Entropic Gromov–Wasserstein coupling of two metric-measure spaces.

    Parameters
    ----------
    C1 : ndarray (s1, s1)
        Symmetric distances within the first set.
    C2 : ndarray (s2, s2)
        Symmetric distances within the second set (other units allowed:
        each matrix is divided by its mean first).
    p, q : ndarray (s1,), (s2,) or None
        Masses of the points (uniform when None); each sums to 1.
    eps : float > 0
        Entropic regularisation (relative to the mean-normalised distances).
    max_iter : int
        Outer (projected-gradient) iterations at most.
    tol : float
        Stop when the coupling changes by at most this much (max abs).
    sinkhorn_iter : int
        Sinkhorn sweeps per projection at most.
    n_threads : int or None
        BLAS threads of the iterations' products when they are large (None:
        Numba's current thread count); the result does not depend on it.

    Returns
    -------
    T : ndarray (s1, s2)
        The coupling (row sums p, column sums q up to Sinkhorn's tolerance).
    """
    C1 = np.asarray(C1, dtype=np.float64)
    C2 = np.asarray(C2, dtype=np.float64)
    s1, s2 = C1.shape[0], C2.shape[0]
    p = np.full(s1, 1.0 / s1) if p is None else np.asarray(p, dtype=np.float64)
    q = np.full(s2, 1.0 / s2) if q is None else np.asarray(q, dtype=np.float64)
    C1 = C1 / max(C1.mean(), 1e-300)
    C2 = C2 / max(C2.mean(), 1e-300)
    const = (C1 ** 2 @ p)[:, None] + (C2 ** 2 @ q)[None, :]
    T = np.outer(p, q)
    g = None
    # The two products of an iteration (s^3 multiply-adds each: 5e8 at
    # s = 800) run on n_threads BLAS threads, like the other large dense
    # products.
    with dense_product_threads(s1 * s2 * (s1 + s2), n_threads):
        for _ in range(max_iter):
            # Gradient of the GW objective at T (C1, C2 symmetric; the same
            # scale as POT's, so ``eps`` means what it means there).  The
            # Sinkhorn scaling of one projection warm-starts the next: the
            # costs change little between iterations.
            grad = 2.0 * (const - 2.0 * C1 @ T @ C2)
            T_new, g = sinkhorn(grad, p, q, eps, sinkhorn_iter, 1e-6, g)
            done = np.max(np.abs(T_new - T)) <= tol
            T = T_new
            if done:
                break
    return T
