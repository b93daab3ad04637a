"""CMFH (Ding, Guo, Zhou, CVPR 2014): collective matrix factorisation
hashing.  Both modalities of a paired object are factorised with one shared
latent representation, learned together with a linear projection per
modality for out-of-sample data.

Written from the paper; the objective is set out term by term in
``docs/baselines.md``.  With ``n`` known pairs, centred feature matrices
``X_m`` (n x d_m, rows are samples), ``r`` bits:

    J(V, U, P) =  lam      ||X_0 - V U_0||^2 + (1 - lam) ||X_1 - V U_1||^2   reconstruction
               +  mu       (||V - X_0 P_0||^2 + ||V - X_1 P_1||^2)           projection
               +  gamma    (||U_0||^2 + ||U_1||^2 + ||P_0||^2 + ||P_1||^2 + ||V||^2)

``V`` (n x r) is the unified representation, ``U_m`` (r x d_m) the bases,
``P_m`` (d_m x r) the hash projections.  Each update below is the exact
minimiser of ``J`` over one block with the others fixed (a ridge
regression), so ``J`` never increases:

    U_m = (V^T V + gamma / lam_m I)^{-1} V^T X_m
    P_m = (X_m^T X_m + gamma / mu I)^{-1} X_m^T V
    V   = (sum_m lam_m X_m U_m^T + mu sum_m X_m P_m)
          (sum_m lam_m U_m U_m^T + (2 mu + gamma) I)^{-1}

Codes: ``sign(V)`` for the training objects, ``sign((x - mean_m) P_m)``
for new samples.
"""
import numpy as np
import scipy.linalg

from .._params import Float, Param, table
from .._progress import progress
from .._threads import thread_limits
from .._validation import check_n_threads
from ._linear import LinearHashEstimator, TrainingRows, paired_rows, sign_codes

PARAMETERS = table(
    lam=Param(0.5, Float(0.0, 1.0, low_open=True, high_open=True),
              "weight of modality 0's reconstruction (modality 1: 1 - lam)"),
    mu=Param(100.0, Float(0.0, low_open=True), "weight of the projection (out-of-sample) "
                                                 "terms"),
    gamma=Param(0.01, Float(0.0, low_open=True), "ridge weight on every factor"),
    max_iter=100,
    tol=1e-5,
)

HISTORY_TERMS = ("objective", "reconstruction_0", "reconstruction_1", "projection_0",
                 "projection_1", "regularization")


class _Problem:
    """The fixed data of one CMFH fit (the training rows of both modalities,
    :class:`~flexcmh_fast.baselines._linear.TrainingRows`: centred through
    their means and Gram matrices, sparse input never densified), its block
    updates and its objective."""

    def __init__(self, data, lam, mu, gamma):
        self.data = data
        self.means = [X.mean for X in data]
        grams = [X.gram() for X in data]
        self.sq_norms = [float(np.trace(G)) for G in grams]
        self.grams = grams
        self.lams = (lam, 1.0 - lam)
        self.mu, self.gamma = mu, gamma
        # The P-step's system does not depend on V: factor it once.
        self.p_factors = []
        for G in grams:
            A = G.copy()
            A[np.diag_indices_from(A)] += gamma / mu
            self.p_factors.append(scipy.linalg.cho_factor(A, lower=True, check_finite=False))

    def xt_v(self, V):
        """``X_m^T V`` (centred) for both modalities."""
        return [X.t_dot(V) for X in self.data]

    def u_step(self, V, XtV):
        r = V.shape[1]
        out = []
        for lam_m, XtV_m in zip(self.lams, XtV):
            A = V.T @ V
            A[np.diag_indices(r)] += self.gamma / lam_m
            out.append(scipy.linalg.solve(A, XtV_m.T, assume_a="pos"))
        return out

    def p_step(self, XtV):
        return [scipy.linalg.cho_solve(f, XtV_m, check_finite=False)
                for f, XtV_m in zip(self.p_factors, XtV)]

    def v_step(self, Us, Ps):
        r = Us[0].shape[0]
        rhs = 0.0
        A = np.zeros((r, r))
        for X, lam_m, U, P in zip(self.data, self.lams, Us, Ps):
            rhs = rhs + X.dot(lam_m * U.T + self.mu * P)
            A += lam_m * (U @ U.T)
        A[np.diag_indices(r)] += 2.0 * self.mu + self.gamma
        # V A = rhs with A symmetric positive definite
        return scipy.linalg.solve(A, rhs.T, assume_a="pos").T

    def terms(self, V, Us, Ps, XtV):
        """Every term of J, weighted as in J, from Gram-sized products."""
        VtV = V.T @ V
        out = {}
        for m in range(2):
            U, P = Us[m], Ps[m]
            recon = (self.sq_norms[m] - 2.0 * float((U * XtV[m].T).sum())
                     + float((VtV * (U @ U.T)).sum()))
            proj = (float(np.trace(VtV)) - 2.0 * float((P * XtV[m]).sum())
                    + float((P * (self.grams[m] @ P)).sum()))
            out[f"reconstruction_{m}"] = self.lams[m] * max(recon, 0.0)
            out[f"projection_{m}"] = self.mu * max(proj, 0.0)
        out["regularization"] = self.gamma * (
            sum(float((U ** 2).sum()) for U in Us) + sum(float((P ** 2).sum()) for P in Ps)
            + float(np.trace(VtV)))
        out["objective"] = sum(out.values())
        return out


class CMFH(LinearHashEstimator):
    """CMFH (Ding, Guo, Zhou, CVPR 2014): collective matrix factorisation
    hashing, ``h_m(x) = sign((x - mean_m) P_m)``.

    Trained on the known pairs of two modalities (with weakly-paired data,
    on the known pairs only); unsupervised (``labels`` are ignored).  The
    objective ``J`` and its block updates are set out in
    ``docs/baselines.md``; every update is an exact block minimiser, so
    ``J`` never increases.

    Parameters
    ----------
    n_bits : int in [1, 4096], default=32
        Dimension ``r`` of the unified representation ``V``.
    lam : float in (0, 1), default=0.5
        Weight of modality 0's reconstruction; modality 1 gets ``1 - lam``.
    mu : float > 0, default=100.0
        Weight of the projection terms ``||V - X_m P_m||^2``.
    gamma : float > 0, default=0.01
        Ridge weight on every factor.
    max_iter : int >= 0, default=100
        Iterations at most (0: the projections of the random start).
    tol : float >= 0, default=1e-5
        Stop when the relative decrease of ``J`` is at most ``tol``.
    n_threads : int, None or -1, default=None
        BLAS threads in ``fit`` and ``encode`` (None / -1: every core).
    random_state : None, int or numpy.random.Generator, default=None
        Seed of the random start of ``V``.
    verbose : bool, default=False
        Progress bar (tqdm) with ``J``.
    callback : callable, default=None
        ``callback(iteration, state)`` after every iteration (from 1);
        ``state`` holds ``objective``, ``terms`` (dict) and ``V``.
        Returning ``True`` stops.

    Attributes
    ----------
    n_bits_ : int
    n_features_ : list of int
    means_, projections_, codes_, train_codes_ :
        See :class:`~flexcmh_fast.baselines._linear.LinearHashEstimator`;
        ``codes_`` is ``sign(V)`` of the known pairs.
    history_ : dict of ndarray
        Per iteration: ``objective`` (``J``) and its weighted terms
        ``reconstruction_0``, ``reconstruction_1``, ``projection_0``,
        ``projection_1`` and ``regularization``.
    n_iter_ : int
    """

    _parameters = PARAMETERS
    kind = "CMFH"
    HISTORY_TERMS = HISTORY_TERMS

    def __init__(self, n_bits=32, lam=0.5, mu=100.0, gamma=0.01, max_iter=100, tol=1e-5,
                 n_threads=None, random_state=None, verbose=False, callback=None):
        self.n_bits = n_bits
        self.lam = lam
        self.mu = mu
        self.gamma = gamma
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback

    def _fit(self, Xs, pairs, labels, params, rng):
        rows = paired_rows(Xs, pairs, "CMFH")
        callback = params["callback"]
        with thread_limits(check_n_threads(params["n_threads"])):
            data = [TrainingRows(X, r) for X, r in zip(Xs, rows)]
            prob = _Problem(data, params["lam"], params["mu"], params["gamma"])
            V = rng.standard_normal((data[0].n, params["n_bits"]))
            XtV = prob.xt_v(V)
            history = []
            bar = progress(params["max_iter"], "CMFH", params["verbose"])
            prev = None
            it = 0
            for it in range(1, params["max_iter"] + 1):
                Us = prob.u_step(V, XtV)
                Ps = prob.p_step(XtV)
                V = prob.v_step(Us, Ps)
                XtV = prob.xt_v(V)
                terms = prob.terms(V, Us, Ps, XtV)
                history.append([terms[t] for t in HISTORY_TERMS])
                cur = terms["objective"]
                bar.update(1, objective=cur)
                stop = callback is not None and bool(callback(it, {
                    "objective": cur,
                    "terms": {t: v for t, v in terms.items() if t != "objective"},
                    "V": V}))
                if prev is not None and prev - cur <= params["tol"] * abs(prev):
                    stop = True
                prev = cur
                if stop:
                    break
            bar.close()
            # The hash projections that go with the final V.
            Ps = prob.p_step(XtV)
            self._store(Xs, rows, prob.means, Ps, history, it, learned=sign_codes(V))
