"""Cluster matching (Eq. 1) from per-cluster summaries.

Every function here works on small per-cluster arrays (member counts,
indicator sums, ordered-neighbour profiles, known-pair votes), which row
blocks of the data add up exactly: the same matching serves one machine and
a Dask cluster.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from . import _tuning as T

NO_CORRESPONDENCE = (
    "FlexCMH found no correspondence between the modalities (every cluster is empty in "
    "some modality); check the data or lower 'n_clusters'.")


def is_fully_paired(pairs, n_samples):
    """Whether every sample of every modality has a known partner in every
    other modality (then Γ is the known pairs alone)."""
    M = len(n_samples)
    return all(
        (m, m2) in pairs
        and np.unique(pairs[(m, m2)][:, 0]).size == n_samples[m]
        and np.unique(pairs[(m, m2)][:, 1]).size == n_samples[m2]
        for m in range(M) for m2 in range(m + 1, M))


def scaled_sq_norms(Z, scale):
    """Squared norms of the centroids (columns of Z) times ``scale**2``
    (float64)."""
    return (Z.astype(np.float64, copy=False) ** 2).sum(axis=0) * scale ** 2


def uses_size_score(match_score, pairs, m):
    """Whether matching modality m to modality 0 adds the size score:
    ``"profiles+sizes"``, ``"gw"``, or ``"auto"`` and no known pair links
    them (known pairs' votes are direct evidence, and the size term only
    added noise to them on Wiki validation data: docs/flexcmh.md, "Cluster
    matching without known pairs")."""
    return match_score in ("profiles+sizes", "gw") or (
        match_score == "auto" and (0, m) not in pairs)


def uses_gw_score(match_score, pairs, m):
    """Whether matching modality m to modality 0 adds the Gromov–Wasserstein
    score: ``"gw"``, or ``"auto"`` and no known pair links them (chosen on
    Wiki validation splits, docs/flexcmh.md "Completely unpaired data")."""
    return match_score == "gw" or (match_score == "auto" and (0, m) not in pairs)


def sample_distances(X, sqx):
    """Euclidean distances between the rows of X (dense or CSR), given
    their squared norms."""
    G = X @ X.T
    G = G.toarray() if hasattr(G, "toarray") else np.asarray(G)
    return np.sqrt(np.maximum(sqx[:, None] + sqx[None, :] - 2.0 * G, 0.0))


def coupling_scores(coupling, clusters_a, clusters_b, k):
    """``1 - W / max W`` with ``W[c, c2]`` the coupling mass between the
    sampled members of cluster c (first modality) and of c2 (second); rows
    without a cluster (-1) take no part.  0 is the best-supported pair."""
    W = np.zeros((k, k))
    ok_a, ok_b = clusters_a >= 0, clusters_b >= 0
    sub = coupling[np.ix_(ok_a, ok_b)]
    a, b = clusters_a[ok_a], clusters_b[ok_b]
    # Sum the columns by cluster of b, then the rows by cluster of a.
    by_b = np.zeros((sub.shape[0], k))
    np.add.at(by_b.T, b, sub.T)
    np.add.at(W, a, by_b)
    top = W.max()
    return 1.0 - W / top if top > 0 else np.zeros((k, k))


def profile_scale(counts, sums):
    """Per-cluster mean indicator of the members at their own cluster.

    SemiNMF fixes only the product H Z^T: column c of H may carry any scale
    s_c with z_c / s_c.  The centroid as it appears in its members'
    reconstruction is z_c times their mean indicator, and that is the
    centroid the profiles are measured from."""
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def size_scores(count_a, count_b):
    """``|log(n_c / n_c2)|``: clusters of the same concept should hold
    similar fractions of their modality's samples (``inf`` if either is
    empty).  Sample counts of the modalities may differ, so fractions."""
    frac = [np.asarray(c, dtype=np.float64) / max(float(np.sum(c)), 1.0)
            for c in (count_a, count_b)]
    with np.errstate(divide="ignore", invalid="ignore"):
        S = np.abs(np.log(frac[0][:, None] / frac[1][None, :]))
    S[~np.isfinite(S)] = np.inf
    return S


def matching_cost(scores, votes, k):
    """Cost of aligning cluster c of modality 0 with c2 of another modality.

    Every score matrix (Eq. 1 profiles, optionally the size score) scaled to
    [0, 1] (``inf``, an empty cluster: 2), minus the known-pair votes scaled
    to [0, 1], so a cluster pair backed by many known pairs wins unless its
    profiles disagree strongly."""
    cost = np.zeros((k, k))
    for S in scores:
        finite = np.isfinite(S)
        top = S[finite].max() if finite.any() else 1.0
        cost += np.where(finite, S / (top if top > 0 else 1.0), 2.0)
    if votes is not None and votes.max() > 0:
        cost -= votes / votes.max()
    return cost


def choose_matching(cost, rematch):
    """Hungarian assignment of ``cost``; None when the clusters stay as they are.

    When re-matching (``rematch``, the clusters are already aligned) the new
    assignment replaces the current one only if it lowers the total cost by
    more than ``T.REMATCH_MARGIN`` per cluster: near-ties would otherwise flip
    back and forth between iterations and scramble the coupled indicators."""
    k = cost.shape[0]
    _, perm = linear_sum_assignment(cost)
    ident = np.arange(k)
    if rematch and (cost[ident, ident].sum() - cost[ident, perm].sum()
                    <= T.REMATCH_MARGIN * k):
        return None
    return None if np.array_equal(perm, ident) else perm
