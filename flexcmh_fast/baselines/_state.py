"""What a saved peer baseline must hold: the check of its state (header
``meta`` and stored arrays) before ``_from_state`` reads it; every failure
raises :class:`~flexcmh_fast._persist.FileFormatError`."""
from .._state_checks import array_entry, meta_dict, model_shape
from ..search._saved import packed_codes_entry


def check_linear_hash_state(meta, arrays, history_terms):
    """State of a peer baseline (``CCAITQ``, ``CMFH``, ``SCM``): a mean and
    a ``(d_m, n_bits)`` projection per modality, packed codes and a history
    with one column per name of ``history_terms``."""
    n_bits, n_features = model_shape(meta)
    meta_dict(meta, "params")
    packed_codes_entry(arrays, "codes", n_bits)
    array_entry(arrays, "history", shape=(None, len(history_terms)))
    for m, d in enumerate(n_features):
        array_entry(arrays, f"mean_{m}", shape=(d,))
        array_entry(arrays, f"projection_{m}", shape=(d, n_bits))
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)
