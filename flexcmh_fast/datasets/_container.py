"""The container every loader and generator returns."""
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._validation import _describe


@dataclass
class MultiModalDataset:
    """Paired multi-modal data.

    Attributes
    ----------
    modalities : list of ndarray or scipy.sparse.csr_matrix
        One ``(n_samples, d_m)`` float64 matrix per modality; rows aligned.
    labels : ndarray
        1-D int64 class ids (0-based) or 2-D uint8 0/1 multi-label matrix,
        one row per object.
    train_idx, test_idx : ndarray of int64 or None
        The file's fixed split (row indices), or ``None`` when it has none.
    names : list of str
        Modality names (e.g. ``["image", "text"]``).
    """

    modalities: list
    labels: np.ndarray
    train_idx: np.ndarray = None
    test_idx: np.ndarray = None
    names: list = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.modalities, (list, tuple)) or len(self.modalities) < 1:
            raise TypeError(
                "'modalities' must be a non-empty list of matrices. "
                f"Got {_describe(self.modalities)} instead."
            )
        self.modalities = list(self.modalities)
        n = self.modalities[0].shape[0]
        for m, X in enumerate(self.modalities):
            if X.shape[0] != n:
                raise ValueError(
                    f"Modality {m} has {X.shape[0]} rows but modality 0 has {n}; "
                    "rows must be aligned (row i of every modality is one object)."
                )
        if self.labels.shape[0] != n:
            raise ValueError(
                f"'labels' has {self.labels.shape[0]} rows but the modalities have {n}."
            )
        if not self.names:
            self.names = [f"modality{m}" for m in range(len(self.modalities))]
        if len(self.names) != len(self.modalities):
            raise ValueError(
                f"'names' must have one entry per modality ({len(self.modalities)}). "
                f"Got {self.names!r} instead."
            )

    @property
    def n_samples(self):
        """Number of objects (rows)."""
        return self.modalities[0].shape[0]

    @property
    def n_modalities(self):
        return len(self.modalities)

    def subset(self, idx):
        """Rows ``idx`` of every modality and of the labels (``train_idx`` /
        ``test_idx`` are dropped: they index the full dataset)."""
        idx = np.asarray(idx, dtype=np.int64)
        return MultiModalDataset([X[idx] for X in self.modalities], self.labels[idx],
                                 names=list(self.names))

    def __repr__(self):
        shapes = ", ".join(
            f"{name}: {X.shape[0]}x{X.shape[1]}{' sparse' if sp.issparse(X) else ''}"
            for name, X in zip(self.names, self.modalities))
        split = ("" if self.train_idx is None
                 else f", split {len(self.train_idx)}/{len(self.test_idx)}")
        kind = ("1-D classes" if self.labels.ndim == 1
                else f"{self.labels.shape[1]} multi-labels")
        return f"MultiModalDataset({shapes}; labels: {kind}{split})"
