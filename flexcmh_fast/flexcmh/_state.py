"""What a saved FlexCMH must hold: the check of its state (header ``meta``
and stored arrays) before ``FlexCMH._from_state`` reads it; every failure
raises :class:`~flexcmh_fast._persist.FileFormatError`."""
from .._persist import FileFormatError
from .._preprocess import KINDS
from .._state_checks import array_entry, meta_dict, meta_option, meta_sigmas, model_shape
from ..search._saved import packed_codes_entry
from ._codes import SCHEMES, check_code_state


def check_flexcmh_state(meta, arrays):
    """``FlexCMH`` state (formats 1 and 2): every meta field and array its
    ``_from_state`` reads, with consistent shapes, the fitted preprocessing
    included."""
    n_bits, n_features = model_shape(meta)
    n_mod = len(n_features)
    params = meta_dict(meta, "params")
    scheme = meta_option(params, "code_scheme", SCHEMES)
    encoder = meta_option(params, "encoder", ("nnls", "kernel"), default="nnls")
    k = None
    for m, d in enumerate(n_features):
        Z = array_entry(arrays, f"Z_{m}", shape=(d, k))
        k = Z.shape[1]
    check_code_state(arrays, "code_", scheme, n_bits, k)
    array_entry(arrays, "history", ndim=2)
    packed_codes_entry(arrays, "codes", n_bits)
    for m in range(n_mod):
        packed_codes_entry(arrays, f"train_codes_{m}", n_bits)
    array_entry(arrays, "cluster_matching", kinds="iu", ndim=2)
    pair_keys = meta.get("pair_keys")
    if not isinstance(pair_keys, list):
        raise FileFormatError(f"header meta 'pair_keys' must be a list. Got {pair_keys!r:.60}")
    for key in pair_keys:
        if (not isinstance(key, list) or len(key) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_mod
                           for v in key) or key[0] == key[1]):
            raise FileFormatError(f"header meta 'pair_keys' must hold [m, m2] pairs of "
                                  f"distinct modalities < {n_mod}. Got {key!r:.60}")
        array_entry(arrays, f"gamma_{key[0]}_{key[1]}", kinds="iu", ndim=2)
    if encoder == "kernel":
        meta_sigmas(meta, n_mod)
        for m, d in enumerate(n_features):
            anchors = array_entry(arrays, f"anchors_{m}", shape=(None, d))
            array_entry(arrays, f"encoder_weights_{m}", shape=(anchors.shape[0], k))
    check_preprocess_state(meta, arrays, n_features)


def check_preprocess_state(meta, arrays, n_features):
    """FlexCMH's fitted preprocessing (format 2): one known kind per
    modality, and for ``"standard"`` finite column means and positive scales."""
    kinds = meta.get("preprocess_kinds", ["none"] * len(n_features))
    if not isinstance(kinds, list) or len(kinds) != len(n_features):
        raise FileFormatError(f"header meta 'preprocess_kinds' must list {len(n_features)} "
                              f"kinds. Got {kinds!r:.60}")
    for m, (kind, d) in enumerate(zip(kinds, n_features)):
        if not isinstance(kind, str) or kind not in KINDS:
            raise FileFormatError(f"header meta 'preprocess_kinds'[{m}] must be one of "
                                  f"{list(KINDS)}. Got {kind!r:.60}")
        if kind == "standard":
            array_entry(arrays, f"pre_{m}_mean", shape=(d,))
            scale = array_entry(arrays, f"pre_{m}_scale", shape=(d,))
            if not (scale > 0).all():
                raise FileFormatError(f"array 'pre_{m}_scale' must be positive.")
