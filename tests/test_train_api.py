"""The train() dispatcher: validation of the inputs every method shares."""
import numpy as np
import pytest
import scipy.sparse as sp

import flexcmh_fast as fc
from flexcmh_fast._validation import normalize_labels, normalize_pairs


def test_public_api_names():
    for name in ("train", "load", "HammingIndex", "pack_codes", "unpack_codes",
                 "metrics", "datasets", "scenarios"):
        assert hasattr(fc, name), name
    with pytest.raises(AttributeError):
        _ = fc.not_a_thing


def test_normalize_pairs_forms():
    assert normalize_pairs(None, [3, 4]) == {}
    out = normalize_pairs("all", [3, 3, 3])
    assert sorted(out) == [(0, 1), (0, 2), (1, 2)]
    assert np.array_equal(out[(0, 1)], [[0, 0], [1, 1], [2, 2]])
    out = normalize_pairs(np.array([[0, 3], [2, 1]]), [3, 4])
    assert out[(0, 1)].dtype == np.int64
    out = normalize_pairs({(1, 0): [[3, 0]]}, [3, 4])  # reversed key is flipped
    assert np.array_equal(out[(0, 1)], [[0, 3]])


@pytest.mark.parametrize("pairs, n, msg", [
    ("all", [3, 4], "same number of samples"),
    ("some", [3, 3], "'pairs' must be one of"),
    (np.array([[0, 4]]), [3, 4], "column 1 indexes modality 1"),
    (np.array([[-1, 0]]), [3, 4], "column 0 indexes modality 0"),
    (np.array([[0, 1], [0, 1]]), [3, 4], "duplicated pairs"),
    (np.array([0, 1]), [3, 4], r"shape \(P, 2\)"),
    (np.array([[0.5, 1]]), [3, 4], "integers"),
    ({(0, 0): [[0, 0]]}, [3, 4], "two different modalities"),
    ({(0, 5): [[0, 0]]}, [3, 4], "two different modalities"),
    (np.array([[0, 1]]), [3, 4, 5], "only for two modalities"),
])
def test_normalize_pairs_errors(pairs, n, msg):
    with pytest.raises(ValueError, match=msg):
        normalize_pairs(pairs, n)


def test_normalize_labels():
    assert normalize_labels(None, [2, 3]) is None
    out = normalize_labels([[0, 1], np.array([1, 1, 2])], [2, 3])
    assert out[0].dtype == np.int64
    multi = normalize_labels([np.eye(3)[:2], np.eye(3)], [2, 3])
    assert multi[0].dtype == np.uint8
    with pytest.raises(ValueError, match=r"^'labels' must be one array per modality \(1-D "
                                         r"class ids or 2-D 0/1 matrices\): CSMH needs "
                                         r"'labels'. Got None instead.$"):
        normalize_labels(None, [2, 3], required_by="CSMH")
    with pytest.raises(ValueError, match="'labels\\[1\\]' must have 3 rows"):
        normalize_labels([[0, 1], [0, 1]], [2, 3])
    with pytest.raises(ValueError, match="all 1-D"):
        normalize_labels([[0, 1], np.eye(3)], [2, 3])
    with pytest.raises(ValueError, match="only 0 and 1"):
        normalize_labels([np.full((2, 3), 2), np.eye(3)], [2, 3])


def test_train_rejects_bad_common_inputs():
    X = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError, match="at least 2 modalities"):
        fc.train([X])
    with pytest.raises(TypeError, match="'modalities' must be a list"):
        fc.train(X)
    with pytest.raises(ValueError, match="'method' must be one of"):
        fc.train([X, X], method="deep")
    with pytest.raises(ValueError, match="'n_bits' must be an int in \\[1, 4096\\]. Got 0"):
        fc.train([X, X], n_bits=0)
    with pytest.raises(TypeError, match="Unknown parameter"):
        fc.train([X, X], n_clustres=3)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="modalities\\[1\\]' must not contain NaN"):
        fc.train([X, bad])
    with pytest.raises(ValueError, match="modalities\\[0\\]' must have at least 1 row"):
        fc.train([X[:0], sp.csr_matrix(X)])
    with pytest.raises(TypeError, match="'callback' must be callable"):
        fc.train([X, X], callback=3)


def test_missing_extension_says_what_to_do():
    from flexcmh_fast._ext import load_extension

    with pytest.raises(ImportError, match="not built in .*run from another folder"):
        load_extension("_not_an_extension")


def test_progress_off_a_terminal_is_one_line_per_update(capsys):
    X = np.random.default_rng(0).random((40, 5))
    fc.train([X, X], "all", n_bits=8, n_clusters=3, random_state=0, max_iter=3, verbose=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "FlexCMH" in err
    lines = [line for line in err.splitlines() if "FlexCMH" in line]
    assert len(lines) == len(set(lines))
