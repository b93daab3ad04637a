"""The outer loop's state and its rules (Algorithm 1).

:class:`LoopState` is everything the loop carries from one iteration to the
next besides the model itself (centroids, code function, cluster matching
and Γ): counters, the previous objective, the re-ranking schedule and the
history.  The rules that read and update it are plain functions: the
convergence test, the re-ranking ("repair") schedule of Γ's inferred pairs
and the warning when ``max_iter`` runs out (``docs/flexcmh.md``,
"Convergence").
"""
import math
import warnings
from dataclasses import dataclass, field

from .._base import ConvergenceWarning
from . import _tuning as T

# history_: the objective of Eq. 6, its three terms, the centroid ridge of
# the Z step, and the fraction of the training codes' bits that changed in
# the iteration.
TERMS = ("objective", "inter_modal", "reconstruction", "quantization", "centroid_ridge",
         "code_changes")


@dataclass
class LoopState:
    """What the outer loop carries from one iteration to the next.

    Attributes
    ----------
    n_iter : int
        Iterations done.
    previous_objective : float
        :func:`continuous_objective` after the last iteration (before the
        first: after the start).
    repairs : int
        Re-rankings of Γ's inferred pairs done.
    repair_next : bool
        Whether the next iteration re-ranks them.
    converged : bool
        Whether the last iteration met the convergence test.
    stopped : bool
        Whether the callback asked to stop.
    objective_change : float
        Relative change of the continuous objective in the last iteration
        (NaN before the first).
    code_changes : float
        Fraction of the training codes' bits that changed in the last
        iteration (NaN before the first).
    history : list of tuple
        One row per iteration, the columns :data:`TERMS`.
    """

    n_iter: int = 0
    previous_objective: float = math.nan
    repairs: int = 0
    repair_next: bool = False
    converged: bool = False
    stopped: bool = False
    objective_change: float = math.nan
    code_changes: float = math.nan
    history: list = field(default_factory=list)

    def finished(self, max_iter):
        """Whether the loop ends here: converged, stopped by the callback, or
        ``max_iter`` iterations done."""
        return self.converged or self.stopped or self.n_iter >= max_iter

    def record(self, terms, ridge, code_changes):
        """Count one iteration and append its row of ``history_``."""
        self.n_iter += 1
        self.history.append((sum(terms),) + tuple(terms) + (ridge, code_changes))


def continuous_objective(terms, ridge):
    """Inter-modal loss + reconstruction loss + centroid ridge: what the H
    and Z steps decrease.  The quantisation term counts disagreeing bits, an
    integer that jumps between iterations, so the convergence test leaves it
    out."""
    return terms[0] + terms[1] + ridge


def convergence_test(previous, current, code_changes, tol):
    """The strict test: the continuous objective changed by at most ``tol``
    of its previous value and at most ``CODE_CHANGE_TOL`` of the training
    codes' bits changed.  Returns ``(met, relative change)``."""
    change = abs(previous - current) / max(abs(previous), 1e-300)
    return change <= tol and code_changes <= T.CODE_CHANGE_TOL, change


def schedule_repair(loop, met, budget):
    """Whether the fit has converged after an iteration whose strict test
    gave ``met``; sets ``loop.repair_next`` and counts the re-rankings.

    Γ's inferred pairs are re-ranked from the current indicators in every
    iteration after the first until ``budget`` re-rankings are spent; then
    Γ stays fixed and the H / Z steps settle.  Re-ranking without end (the
    paper's loop) reorders near-ties within clusters and the objective never
    settles.  While re-rankings remain, only an iteration that re-ranked may
    count as converged.  ``budget`` is 0 when the clusters are never
    re-matched."""
    if loop.repairs < budget:
        converged = met and loop.repair_next
        loop.repair_next = not converged
        loop.repairs += loop.repair_next
        return converged
    loop.repair_next = False
    return met


def warn_not_converged(loop, max_iter, tol, stacklevel):
    """The :class:`ConvergenceWarning` of a fit that ran ``max_iter``
    iterations (at least one) without converging or being stopped."""
    if loop.n_iter == max_iter > 0 and not (loop.converged or loop.stopped):
        warnings.warn(
            f"FlexCMH stopped at max_iter={max_iter} before converging (relative change of "
            f"the continuous objective {loop.objective_change:.2g} vs tol={tol:g}, "
            f"{loop.code_changes:.2%} of the code bits changed in the last iteration); "
            "raise 'max_iter' or 'tol'.", ConvergenceWarning, stacklevel=stacklevel + 1)
