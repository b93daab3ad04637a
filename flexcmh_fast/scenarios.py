"""Training scenarios of the FlexCMH protocol (paper Section IV) and the
random train/test split.

Starting from paired data (row ``i`` of every modality is object ``i``):

* ``"paired"`` - every correspondence known (``pairs="all"``).
* ``"weak"`` (scenario 2a) - a fraction ``paired_fraction`` (default 50%)
  of the objects keep a known correspondence; the others' correspondence is
  hidden.
* ``"weak2b"`` - as ``"weak"``, then a fraction ``removed_fraction``
  (default 10%) of the rows of every modality >= 1 (the texts) is removed,
  so the modalities have different sample counts.
* ``"unpaired"`` - no correspondence known.

To hide the unknown correspondences the rows of every modality >= 1 are
put in a random order (the known pairs are then given explicitly as row
index pairs), so a learner cannot recover them from the row positions.
Labels are permuted along with the rows; they are meant for evaluation and
the labels ablation only, never as training signal for unsupervised methods.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import _describe, check_float, check_int, check_option, check_random_state

SCENARIOS = ("paired", "weak", "weak2b", "unpaired")

__all__ = ["SCENARIOS", "Scenario", "train_test_split", "make_scenario"]


def train_test_split(n, test_size=0.3, random_state=None):
    """Random split of ``n`` objects into train and test rows.

    Parameters
    ----------
    n : int >= 2
    test_size : float in (0, 1), default=0.3
        Fraction of test objects; the count is ``round(test_size * n)``,
        clipped to ``[1, n - 1]``.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    train_idx, test_idx : ndarray of int64
        Disjoint, sorted, covering ``range(n)``.
    """
    n = check_int(n, "n", 2)
    test_size = check_float(test_size, "test_size", 0.0, 1.0, low_inclusive=False,
                            high_inclusive=False)
    rng = check_random_state(random_state)
    n_test = min(max(int(round(test_size * n)), 1), n - 1)
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


@dataclass
class Scenario:
    """Training data of one scenario.

    Attributes
    ----------
    name : str
    modalities : list of matrices
        Training matrices; rows of modality >= 1 are permuted (and some
        removed for ``"weak2b"``) except in ``"paired"``.
    pairs : "all", ndarray (P, 2), dict or None
        Known correspondences, ready for :func:`flexcmh_fast.train`: ``"all"``
        (paired), a ``(P, 2)`` array of (row in modality 0, row in modality
        1) for two modalities or ``{(m, m2): (P, 2)}`` for more (weak
        scenarios), ``None`` (unpaired).
    labels : list of ndarray or None
        One label array per modality, in the rows' order.
    true_pairs : ndarray (P, 2) or dict
        Hidden truth in the same format as a weak ``pairs`` (every object
        present in both modalities), for diagnostics only.
    objects : list of ndarray
        Per modality, the original object index of every row.
    """

    name: str
    modalities: list
    pairs: Any
    labels: Any
    true_pairs: Any
    objects: list


def _pairs_between(obj_a, obj_b, keep):
    """Row pairs (row in a, row in b) of the objects present in both whose
    object index satisfies ``keep`` (boolean over object ids)."""
    # Dense position lookup: object id -> row in b (or -1).
    n_obj = max(int(obj_a.max(initial=-1)), int(obj_b.max(initial=-1))) + 1
    lookup = np.full(n_obj, -1, dtype=np.int64)
    lookup[obj_b] = np.arange(obj_b.size)
    rows_b = lookup[obj_a]
    sel = (rows_b >= 0) & keep[obj_a]
    out = np.stack([np.flatnonzero(sel), rows_b[sel]], axis=1).astype(np.int64)
    return np.ascontiguousarray(out)


def _format_pairs(objects, keep, n_mod):
    if n_mod == 2:
        return _pairs_between(objects[0], objects[1], keep)
    return {(m, m2): _pairs_between(objects[m], objects[m2], keep)
            for m in range(n_mod) for m2 in range(m + 1, n_mod)}


def make_scenario(modalities, labels, scenario, *, paired_fraction=0.5, removed_fraction=0.1,
                  random_state=None):
    """Build the training data of one scenario from paired data.

    Parameters
    ----------
    modalities : list of matrices
        Paired training data: ``M >= 2`` matrices (dense or sparse) with the
        same number of rows.
    labels : ndarray or None
        One label row per object (1-D or 2-D); permuted with the rows.
    scenario : {"paired", "weak", "weak2b", "unpaired"}
    paired_fraction : float in [0, 1], default=0.5
        ``"weak"`` / ``"weak2b"``: fraction of objects whose correspondence
        stays known (``round(paired_fraction * n)`` objects).
    removed_fraction : float in [0, 1), default=0.1
        ``"weak2b"``: fraction of the rows of every modality >= 1 removed
        (``round(removed_fraction * n)`` rows, chosen independently per
        modality); known pairs that lose a row are dropped.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    Scenario
    """
    scenario = check_option(scenario, "scenario", SCENARIOS)
    paired_fraction = check_float(paired_fraction, "paired_fraction", 0.0, 1.0)
    removed_fraction = check_float(removed_fraction, "removed_fraction", 0.0, 1.0,
                                   high_inclusive=False)
    if not isinstance(modalities, (list, tuple)) or len(modalities) < 2:
        raise TypeError(
            "'modalities' must be a list of at least 2 matrices (paired rows). "
            f"Got {_describe(modalities)} instead."
        )
    for m, X in enumerate(modalities):
        if not (sp.issparse(X) or isinstance(X, np.ndarray)) or X.ndim != 2:
            raise TypeError(
                f"'modalities[{m}]' must be a 2-D ndarray or scipy.sparse matrix. "
                f"Got {_describe(X)} instead."
            )
    n = modalities[0].shape[0]
    if any(X.shape[0] != n for X in modalities):
        raise ValueError(
            "'modalities' must be paired: the same number of rows in every modality. "
            f"Got {[X.shape[0] for X in modalities]} instead."
        )
    if n < 2:
        raise ValueError(f"'modalities' must have at least 2 rows. Got {n}.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim not in (1, 2) or labels.shape[0] != n:
            raise ValueError(
                f"'labels' must have one row per object ({n}). Got {_describe(labels)} instead."
            )
    rng = check_random_state(random_state)
    n_mod = len(modalities)

    objects = [np.arange(n, dtype=np.int64)]
    if scenario == "paired":
        objects += [np.arange(n, dtype=np.int64) for _ in range(1, n_mod)]
    else:
        objects += [rng.permutation(n).astype(np.int64) for _ in range(1, n_mod)]
    if scenario == "weak2b":
        n_remove = int(round(removed_fraction * n))
        n_remove = min(n_remove, n - 1)
        for m in range(1, n_mod):
            drop = rng.choice(n, size=n_remove, replace=False)
            keep_rows = np.setdiff1d(np.arange(n), drop)  # sorted: order stays random
            objects[m] = objects[m][keep_rows]

    known = np.zeros(n, dtype=bool)
    if scenario == "paired":
        known[:] = True
    elif scenario in ("weak", "weak2b"):
        n_known = int(round(paired_fraction * n))
        known[rng.choice(n, size=n_known, replace=False)] = True

    train_mods = [X if scenario == "paired" else X[obj] for X, obj in zip(modalities, objects)]
    train_mods = [sp.csr_matrix(X) if sp.issparse(X) else np.ascontiguousarray(X)
                  for X in train_mods]
    true_pairs = _format_pairs(objects, np.ones(n, dtype=bool), n_mod)
    if scenario == "paired":
        pairs = "all"
    elif scenario == "unpaired":
        pairs = None
    else:
        pairs = _format_pairs(objects, known, n_mod)
    scen_labels = None if labels is None else [labels[obj] for obj in objects]
    return Scenario(scenario, train_mods, pairs, scen_labels, true_pairs, objects)
