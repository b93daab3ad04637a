"""Behaviour shared by every trained cross-modal hashing model."""
import numpy as np

from ._codes import pack_codes
from ._persist import save_state
from ._validation import check_bool, check_int, check_matrix


class HashingModel:
    """Base class: validated ``encode`` and ``save`` for a trained model.

    Subclasses set ``kind`` (the persisted kind name), fill ``n_bits``,
    ``n_features_`` (one int per modality), and implement
    ``_encode_signs(X, modality)`` returning a ±1 int8 matrix, ``_get_state()``
    returning ``(meta, arrays)`` and the classmethod ``_from_state``.
    """

    kind = None

    @property
    def n_modalities(self):
        """Number of modalities the model encodes."""
        return len(self.n_features_)

    def encode(self, X, modality, packed=True):
        """Hash samples of one modality to binary codes.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Samples of modality ``modality``; may be data never seen in
            training, any batch size including zero rows.  Sparse input is
            never densified.
        modality : int
            Index of the modality ``X`` belongs to (order of ``train``).
        packed : bool, default=True
            ``True``: packed uint8 codes of shape (n_samples, ceil(n_bits/8))
            (most significant bit first, padding zero).  ``False``: ±1 int8
            of shape (n_samples, n_bits).

        Returns
        -------
        ndarray
        """
        modality = check_int(modality, "modality", 0, self.n_modalities - 1)
        packed = check_bool(packed, "packed")
        X = check_matrix(X, "X", n_features=self.n_features_[modality])
        signs = self._encode_signs(X, modality)
        return pack_codes(signs) if packed else signs

    def save(self, path):
        """Save the model to ``path`` (portable ``.npz``; no pickled objects).

        The file is written atomically: on failure nothing is left behind.
        Load it with :func:`flexcmh_fast.load`.
        """
        meta, arrays = self._get_state()
        save_state(path, self.kind, meta, arrays)

    def _encode_signs(self, X, modality):  # pragma: no cover - abstract
        raise NotImplementedError

    def _get_state(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}(n_bits={self.n_bits}, "
                f"n_modalities={self.n_modalities})")


def as_int_array(values, name):
    """Integer ndarray view of ``values`` with a clear error for non-integers."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        if arr.size and (not np.isfinite(arr).all() or np.any(arr != np.round(arr))):
            raise ValueError(f"'{name}' must hold integers. Got non-integer values.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    else:
        raise TypeError(f"'{name}' must be an integer array. Got dtype {arr.dtype} instead.")
    return arr
