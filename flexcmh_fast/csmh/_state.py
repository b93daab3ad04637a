"""What a saved CSMH must hold: the check of its state (header ``meta`` and
stored arrays) before ``CSMH._from_state`` reads it; every failure raises
:class:`~flexcmh_fast._persist.FileFormatError`."""
from .._state_checks import array_entry, meta_dict, meta_int, meta_sigmas, model_shape
from ..search._saved import packed_codes_entry


def check_csmh_state(meta, arrays):
    """``CSMH`` state (formats 1 and 2): every meta field and array its
    ``_from_state`` reads, with consistent shapes."""
    n_bits, n_features = model_shape(meta)
    meta_sigmas(meta, len(n_features))
    meta_dict(meta, "params")
    if "n_threads" in meta:
        meta_int(meta, "n_threads", 1)
    packed_codes_entry(arrays, "codes", n_bits)
    array_entry(arrays, "history", ndim=2)
    for m, d in enumerate(n_features):
        anchors = array_entry(arrays, f"anchors_{m}", shape=(None, d))
        array_entry(arrays, f"weights_{m}", shape=(anchors.shape[0] + 1, n_bits))
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)
