"""float32 end to end: float32 data give a float32 model without a copy of
the data, with the float64 model's quality; the dtype survives saving."""
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import flexcmh_fast as fc
from flexcmh_fast._validation import MAX_SUM_OF_SQUARES, check_finite_scale, check_matrix


def weakly_paired(n=1500, seed=0, dtype=np.float32):
    data = fc.datasets.make_multimodal(n_samples=n, n_features=(48, 200), random_state=seed)
    img, txt = data.modalities
    img = np.abs(img).astype(dtype)                  # non-negative dense: Hellinger
    txt = txt.astype(dtype)                          # non-negative CSR: L2
    rng = np.random.default_rng(seed)
    known = np.sort(rng.permutation(n)[: n // 2])
    return [img, txt], np.stack([known, known], axis=1), np.asarray(data.labels)


def fitted_float_arrays(model):
    """Every float array the model holds (attributes, code function,
    preprocessing)."""
    found = {}
    for name, value in vars(model).items():
        if not name.endswith("_"):
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        for i, item in enumerate(items):
            if isinstance(item, np.ndarray) and item.dtype.kind == "f":
                found[f"{name}[{i}]"] = item.dtype
            for attr, arr in vars(item).items() if hasattr(item, "__dict__") else ():
                if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" \
                        and not attr.startswith(("spread", "basis", "_")):
                    found[f"{name}[{i}].{attr}"] = arr.dtype
    return found


def map_i2t(model, Xs, labels):
    q = model.encode(Xs[0][:300], 0)
    db = model.encode(Xs[1], 1)
    return fc.metrics.mean_average_precision(q, db, labels[:300], labels, n_bits=model.n_bits_)


@pytest.mark.parametrize("encoder", ["kernel", "nnls"])
def test_float32_fit_is_float32_and_as_good_as_float64(encoder):
    Xs32, pairs, labels = weakly_paired()
    Xs64 = [X.astype(np.float64) for X in Xs32]
    kw = dict(n_bits=32, random_state=0, encoder=encoder, n_anchors=300)
    m32 = fc.FlexCMH(**kw).fit(Xs32, pairs)
    m64 = fc.FlexCMH(**kw).fit(Xs64, pairs)
    dtypes = fitted_float_arrays(m32)
    assert dtypes and set(dtypes.values()) == {np.dtype(np.float32)}, dtypes
    assert set(fitted_float_arrays(m64).values()) == {np.dtype(np.float64)}
    assert m32.converged_ and m64.converged_
    assert abs(m32.n_iter_ - m64.n_iter_) <= max(2, 0.1 * m64.n_iter_)
    assert abs(map_i2t(m32, Xs32, labels) - map_i2t(m64, Xs64, labels)) < 0.03
    # A float64 query to a float32 model is computed in float32: the codes of
    # its float32 cast.
    X64 = Xs32[0][:50].astype(np.float64) + 1e-9
    np.testing.assert_array_equal(m32.encode(X64, 0), m32.encode(X64.astype(np.float32), 0))


def test_mixed_dtypes_give_a_float64_model():
    Xs32, pairs, _ = weakly_paired(n=400)
    model = fc.FlexCMH(n_bits=16, random_state=0, max_iter=3).fit(
        [Xs32[0], Xs32[1].astype(np.float64)], pairs)
    assert set(fitted_float_arrays(model).values()) == {np.dtype(np.float64)}


def test_save_load_keeps_float32(tmp_path):
    Xs32, pairs, _ = weakly_paired(n=400)
    model = fc.FlexCMH(n_bits=24, random_state=0, max_iter=5,
                       preprocess=["standard", "l2"]).fit(Xs32, pairs)
    model.save(tmp_path / "m.npz")
    back = fc.load(tmp_path / "m.npz")
    assert fitted_float_arrays(back) == fitted_float_arrays(model)
    assert set(fitted_float_arrays(back).values()) == {np.dtype(np.float32)}
    for m in range(2):
        np.testing.assert_array_equal(back.encode(Xs32[m], m), model.encode(Xs32[m], m))


def test_float32_fit_makes_no_copy_of_the_data(monkeypatch):
    """No float64 copy and no full-size copy of the data appear during a
    float32 fit: the traced peak stays well below the larger modality's
    size.  The samples and blocks of rows the fit materialises (k-means
    sample, kernel encoder blocks) are made smaller than in a real fit so
    that they stay small next to the data of this small test."""
    from flexcmh_fast.flexcmh import _tuning

    monkeypatch.setattr(_tuning, "ENC_BLOCK", 2048)
    monkeypatch.setattr(_tuning, "KMEANS_SAMPLE", 2000)
    rng = np.random.default_rng(0)
    n, d = 20_000, 1024
    lab = rng.integers(0, 8, n)
    X = np.maximum(rng.standard_normal((8, d)).astype(np.float32)[lab]
                   + rng.standard_normal((n, d), dtype=np.float32), 0)
    T = (rng.standard_normal((8, 32)).astype(np.float32)[lab]
         + rng.standard_normal((n, 32), dtype=np.float32))
    fc.FlexCMH(n_bits=16, random_state=0, max_iter=2, n_anchors=50).fit([X[:500], T[:500]],
                                                                          "all")
    tracemalloc.start()
    try:
        model = fc.FlexCMH(n_bits=16, random_state=0, max_iter=3, n_anchors=50).fit(
            [X, T], "all")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.centroids_[0].dtype == np.float32
    assert peak < 0.6 * X.nbytes, (peak, X.nbytes)


def test_check_matrix_keeps_float32_layout_and_memory():
    X = np.asfortranarray(np.random.default_rng(0).random((20, 5)).astype(np.float32))
    got = check_matrix(X, "X")
    assert got is X
    C = sp.random(30, 8, density=0.3, format="csr", dtype=np.float32, random_state=0)
    assert check_matrix(C, "X") is C
    assert check_matrix(X.astype(np.int32), "X").dtype == np.float64
    assert check_matrix(X.astype(np.float16), "X").dtype == np.float64
    unsorted = sp.csr_matrix((np.array([1.0, 2.0], np.float32), np.array([3, 1]),
                              np.array([0, 2])), shape=(1, 8))
    fixed = check_matrix(unsorted, "X")
    assert fixed is not unsorted and fixed.has_sorted_indices and fixed.dtype == np.float32
    assert list(unsorted.indices) == [3, 1]           # the caller's matrix unchanged


def test_float32_scale_bound():
    bound32 = MAX_SUM_OF_SQUARES[np.dtype(np.float32)]
    assert bound32 == pytest.approx(float(np.finfo(np.float32).max) / 1e4)
    ok = np.full((10, 10), np.sqrt(bound32 / 100) * 0.9, dtype=np.float32)
    check_finite_scale(ok, "X")
    check_finite_scale(ok.astype(np.float64) * 1e10, "X")     # fine in float64
    with pytest.raises(ValueError, match=r"'X' holds values up to .*float32 max / 1e4"):
        check_finite_scale(ok * np.float32(2.0), "X")
    with pytest.raises(ValueError, match="'modalities\\[0\\]' holds values"):
        fc.train([ok * np.float32(2.0), ok], "all", n_bits=8, n_clusters=2)
