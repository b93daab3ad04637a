"""Scenario builders and the random split."""
import numpy as np
import pytest
import scipy.sparse as sp

from flexcmh_fast import scenarios
from flexcmh_fast._validation import normalize_pairs


def paired_data(n=40, n_mod=2, seed=0):
    rng = np.random.default_rng(seed)
    # Column 0 of every modality holds the object id, so tests can check
    # which object a row is.
    mods = []
    for m in range(n_mod):
        X = rng.random((n, 3 + m))
        X[:, 0] = np.arange(n)
        mods.append(sp.csr_matrix(X) if m == 1 else X)
    labels = rng.integers(0, 4, n)
    return mods, labels


def object_ids(X):
    return np.asarray((X[:, 0].toarray() if sp.issparse(X) else X[:, 0])).ravel().astype(int)


def test_train_test_split():
    tr, te = scenarios.train_test_split(100, 0.3, random_state=0)
    assert len(te) == 30 and len(tr) == 70
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(100))
    assert np.all(np.diff(tr) > 0) and tr.dtype == np.int64
    tr2, te2 = scenarios.train_test_split(100, 0.3, random_state=0)
    np.testing.assert_array_equal(te, te2)
    assert not np.array_equal(te, scenarios.train_test_split(100, 0.3, random_state=1)[1])
    tr, te = scenarios.train_test_split(3, 0.01, random_state=0)
    assert len(te) == 1 and len(tr) == 2
    with pytest.raises(ValueError, match="test_size"):
        scenarios.train_test_split(10, 1.0)
    with pytest.raises(ValueError, match="'n'"):
        scenarios.train_test_split(1)
    with pytest.raises(TypeError, match="random_state"):
        scenarios.train_test_split(10, random_state="x")


def test_paired():
    mods, labels = paired_data()
    sc = scenarios.make_scenario(mods, labels, "paired", random_state=0)
    assert sc.pairs == "all" and sc.name == "paired"
    for X, Y in zip(sc.modalities, mods):
        assert (X != Y).nnz == 0 if sp.issparse(X) else np.array_equal(X, Y)
    np.testing.assert_array_equal(sc.true_pairs, np.stack([np.arange(40)] * 2, axis=1))
    np.testing.assert_array_equal(sc.labels[1], labels)


@pytest.mark.parametrize("name", ["weak", "weak2b", "unpaired"])
def test_hidden_correspondence(name):
    mods, labels = paired_data()
    sc = scenarios.make_scenario(mods, labels, name, random_state=3)
    ids0, ids1 = object_ids(sc.modalities[0]), object_ids(sc.modalities[1])
    np.testing.assert_array_equal(ids0, np.arange(40))  # modality 0 untouched
    assert not np.array_equal(ids1[:20], np.arange(20))  # text rows permuted
    np.testing.assert_array_equal(ids1, sc.objects[1])
    assert sp.isspmatrix_csr(sc.modalities[1])
    # Labels follow the rows.
    np.testing.assert_array_equal(sc.labels[1], labels[ids1])
    np.testing.assert_array_equal(sc.labels[0], labels)
    # The hidden truth pairs rows of the same object.
    tp = sc.true_pairs
    np.testing.assert_array_equal(ids0[tp[:, 0]], ids1[tp[:, 1]])
    n_text = 36 if name == "weak2b" else 40
    assert sc.modalities[1].shape[0] == n_text and tp.shape == (n_text, 2)
    if name == "unpaired":
        assert sc.pairs is None
        return
    p = sc.pairs
    assert p.dtype == np.int64 and p.shape[1] == 2
    np.testing.assert_array_equal(ids0[p[:, 0]], ids1[p[:, 1]])  # known pairs are true
    if name == "weak":
        assert p.shape[0] == 20
    else:  # 20 known objects, minus those whose text was removed
        assert 10 <= p.shape[0] <= 20
    normalize_pairs(p, [X.shape[0] for X in sc.modalities])  # accepted by train


def test_fractions_and_determinism():
    mods, labels = paired_data(100)
    sc = scenarios.make_scenario(mods, labels, "weak2b", paired_fraction=0.2,
                                 removed_fraction=0.25, random_state=5)
    assert sc.modalities[1].shape[0] == 75
    assert sc.pairs.shape[0] <= 20
    again = scenarios.make_scenario(mods, labels, "weak2b", paired_fraction=0.2,
                                    removed_fraction=0.25, random_state=5)
    np.testing.assert_array_equal(sc.pairs, again.pairs)
    np.testing.assert_array_equal(sc.objects[1], again.objects[1])
    sc = scenarios.make_scenario(mods, labels, "weak", paired_fraction=0.0, random_state=0)
    assert sc.pairs.shape == (0, 2)
    sc = scenarios.make_scenario(mods, labels, "weak", paired_fraction=1.0, random_state=0)
    assert sc.pairs.shape == (100, 2)


def test_three_modalities():
    mods, labels = paired_data(30, n_mod=3)
    sc = scenarios.make_scenario(mods, labels, "weak2b", random_state=1)
    assert isinstance(sc.pairs, dict) and set(sc.pairs) == {(0, 1), (0, 2), (1, 2)}
    ids = [object_ids(X) for X in sc.modalities]
    for (a, b), p in sc.pairs.items():
        np.testing.assert_array_equal(ids[a][p[:, 0]], ids[b][p[:, 1]])
    for (a, b), p in sc.true_pairs.items():
        np.testing.assert_array_equal(ids[a][p[:, 0]], ids[b][p[:, 1]])
    assert sc.modalities[1].shape[0] == 27 and sc.modalities[2].shape[0] == 27
    normalize_pairs(sc.pairs, [X.shape[0] for X in sc.modalities])
    assert len(sc.labels) == 3


def test_without_labels_and_multilabel():
    mods, _ = paired_data(20)
    assert scenarios.make_scenario(mods, None, "unpaired", random_state=0).labels is None
    lab = (np.random.default_rng(0).random((20, 3)) < 0.5).astype(np.uint8)
    sc = scenarios.make_scenario(mods, lab, "unpaired", random_state=0)
    np.testing.assert_array_equal(sc.labels[1], lab[sc.objects[1]])


def test_errors():
    mods, labels = paired_data(10)
    with pytest.raises(ValueError, match="scenario"):
        scenarios.make_scenario(mods, labels, "semi")
    with pytest.raises(ValueError, match="paired"):
        scenarios.make_scenario([mods[0], mods[1][:5]], labels, "weak")
    with pytest.raises(TypeError, match="modalities"):
        scenarios.make_scenario(mods[0], labels, "weak")
    with pytest.raises(TypeError, match="modalities\\[1\\]"):
        scenarios.make_scenario([mods[0], "text"], labels, "weak")
    with pytest.raises(ValueError, match="labels"):
        scenarios.make_scenario(mods, labels[:4], "weak")
    with pytest.raises(ValueError, match="paired_fraction"):
        scenarios.make_scenario(mods, labels, "weak", paired_fraction=1.5)
    with pytest.raises(ValueError, match="removed_fraction"):
        scenarios.make_scenario(mods, labels, "weak2b", removed_fraction=1.0)
