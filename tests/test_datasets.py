"""Loaders on small .mat files written here in every layout, the synthetic
generator, and (marked wiki) the real Wiki files."""
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from flexcmh_fast import datasets


def wiki_like(rng, n_tr=30, n_te=12, n_classes=4):
    """Arrays of the wikiData.mat layout (rows = objects, labels 1-based)."""
    return {
        "I_tr": rng.random((n_tr, 7)), "I_te": rng.random((n_te, 7)),
        "T_tr": rng.random((n_tr, 5)), "T_te": rng.random((n_te, 5)),
        "L_tr": rng.integers(1, n_classes + 1, (n_tr, 1)).astype(np.uint8),
        "L_te": rng.integers(1, n_classes + 1, (n_te, 1)).astype(np.uint8),
    }


def write_v73(path, arrays, userblock=True):
    """A MATLAB v7.3-style file: HDF5 (with MATLAB's 512-byte header block),
    every 2-D array stored transposed, sparse matrices as data/ir/jc groups."""
    h5py = pytest.importorskip("h5py")
    kwargs = {"userblock_size": 512} if userblock else {}
    with h5py.File(path, "w", **kwargs) as fh:
        for name, value in arrays.items():
            if sp.issparse(value):
                csc = sp.csc_matrix(value)
                grp = fh.create_group(name)
                grp.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
                grp["data"], grp["ir"], grp["jc"] = csc.data, csc.indices.astype(np.uint64), \
                    csc.indptr.astype(np.uint64)
            else:
                fh[name] = np.asarray(value).T
    if userblock:
        with open(path, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, written by the tests".ljust(116))


def check_wiki_like(ds, arrays):
    n_tr = arrays["I_tr"].shape[0]
    np.testing.assert_allclose(ds.modalities[0], np.vstack([arrays["I_tr"], arrays["I_te"]]))
    np.testing.assert_allclose(ds.modalities[1], np.vstack([arrays["T_tr"], arrays["T_te"]]))
    labels = np.concatenate([arrays["L_tr"].ravel(), arrays["L_te"].ravel()]).astype(int) - 1
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.train_idx, np.arange(n_tr))
    np.testing.assert_array_equal(ds.test_idx, np.arange(n_tr, ds.n_samples))
    assert ds.names == ["image", "text"]
    assert ds.modalities[0].flags.c_contiguous and ds.modalities[0].dtype == np.float64


def test_wiki_v5(tmp_path):
    arrays = wiki_like(np.random.default_rng(0))
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    check_wiki_like(datasets.load_wiki(tmp_path), arrays)
    check_wiki_like(datasets.load_wiki(tmp_path / "wikiData.mat"), arrays)
    check_wiki_like(datasets.load_mat(tmp_path / "wikiData.mat"), arrays)


@pytest.mark.parametrize("userblock", [True, False])
def test_wiki_v73_transposed_one_hot(tmp_path, userblock):
    rng = np.random.default_rng(1)
    arrays = wiki_like(rng)
    stored = dict(arrays)
    for s in ("tr", "te"):  # one-hot labels, as some v7.3 distributions have
        stored[f"L_{s}"] = np.eye(4, dtype=np.uint8)[arrays[f"L_{s}"].ravel() - 1]
    write_v73(tmp_path / "wikiData.mat", stored, userblock)
    ds = datasets.load_wiki(tmp_path)
    check_wiki_like(ds, arrays)


def test_wiki_tfidf_sparse_text(tmp_path):
    rng = np.random.default_rng(2)
    arrays = wiki_like(rng)
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    tf_tr = sp.random(30, 50, density=0.1, random_state=3, format="csr")
    tf_te = sp.random(12, 50, density=0.1, random_state=4, format="csr")
    # Dense in the real file; sparse here: both must give a CSR text modality.
    scipy.io.savemat(tmp_path / "wiki_tfidf.mat", {"T_tfidf_tr": tf_tr.toarray(),
                                                   "T_tfidf_te": tf_te,
                                                   "I_tr": arrays["I_tr"],
                                                   "I_te": arrays["I_te"]})
    ds = datasets.load_wiki(tmp_path, text="tfidf")
    assert sp.isspmatrix_csr(ds.modalities[1]) and ds.modalities[1].shape == (42, 50)
    np.testing.assert_allclose(ds.modalities[1].toarray(), sp.vstack([tf_tr, tf_te]).toarray())
    np.testing.assert_allclose(ds.modalities[0], np.vstack([arrays["I_tr"], arrays["I_te"]]))
    assert ds.labels.shape == (42,)


def test_wiki_tfidf_v73_sparse_group(tmp_path):
    rng = np.random.default_rng(5)
    arrays = wiki_like(rng)
    write_v73(tmp_path / "wikiData.mat", arrays)
    tf_tr = sp.random(30, 50, density=0.1, random_state=3, format="csr")
    tf_te = sp.random(12, 50, density=0.1, random_state=4, format="csr")
    write_v73(tmp_path / "wiki_tfidf.mat", {"T_tfidf_tr": tf_tr, "T_tfidf_te": tf_te})
    ds = datasets.load_wiki(tmp_path, text="tfidf")
    np.testing.assert_allclose(ds.modalities[1].toarray(), sp.vstack([tf_tr, tf_te]).toarray())


def mirflickr_like(rng, n=40, n_labels=6):
    lab = (rng.random((n, n_labels)) < 0.3).astype(np.uint8)
    return {"XAll": rng.standard_normal((n, 9)),
            "YAll": (rng.random((n, 20)) < 0.1).astype(np.float64),
            "LAll": lab}


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_xall_layout_multilabel(tmp_path, fmt):
    rng = np.random.default_rng(6)
    arrays = mirflickr_like(rng)
    path = tmp_path / "mirflickr.mat"
    if fmt == "v5":
        scipy.io.savemat(path, arrays)
    else:
        write_v73(path, arrays)
    ds = datasets.load_mat(path, sparse=[False, True])
    np.testing.assert_allclose(ds.modalities[0], arrays["XAll"])
    assert sp.isspmatrix_csr(ds.modalities[1])
    np.testing.assert_allclose(ds.modalities[1].toarray(), arrays["YAll"])
    np.testing.assert_array_equal(ds.labels, arrays["LAll"])
    assert ds.labels.dtype == np.uint8 and ds.train_idx is None and ds.test_idx is None
    assert ds.names == ["image", "text"]


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_split_layout_multilabel_explicit_names(tmp_path, fmt):
    rng = np.random.default_rng(7)
    arrays = {"img_tr": rng.random((20, 4)), "img_te": rng.random((8, 4)),
              "tag_tr": rng.random((20, 6)), "tag_te": rng.random((8, 6)),
              "lab_tr": (rng.random((20, 5)) < 0.4).astype(np.uint8),
              "lab_te": (rng.random((8, 5)) < 0.4).astype(np.uint8)}
    path = tmp_path / "nus.mat"
    if fmt == "v5":
        scipy.io.savemat(path, arrays)
    else:
        write_v73(path, arrays)
    ds = datasets.load_mat(path, ["img", "tag"], "lab", names=["a", "b"])
    np.testing.assert_allclose(ds.modalities[1], np.vstack([arrays["tag_tr"], arrays["tag_te"]]))
    np.testing.assert_array_equal(ds.labels, np.vstack([arrays["lab_tr"], arrays["lab_te"]]))
    assert len(ds.train_idx) == 20 and len(ds.test_idx) == 8 and ds.names == ["a", "b"]


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        datasets.load_wiki(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="wikiData.mat"):
        datasets.load_wiki(tmp_path)
    with pytest.raises(FileNotFoundError):
        datasets.load_mat(tmp_path / "nope.mat")
    with pytest.raises(TypeError, match="path"):
        datasets.load_mat(3)
    (tmp_path / "junk.mat").write_bytes(b"this is not a mat file at all" * 10)
    with pytest.raises(ValueError, match="Could not read"):
        datasets.load_mat(tmp_path / "junk.mat")
    rng = np.random.default_rng(8)
    arrays = wiki_like(rng)
    del arrays["T_te"]
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    with pytest.raises(ValueError, match=r"T_te.*Variables in the file"):
        datasets.load_wiki(tmp_path)
    with pytest.raises(ValueError, match="recognise the layout"):
        datasets.load_mat(tmp_path / "wikiData.mat")
    arrays = wiki_like(rng)
    arrays["T_tr"] = arrays["T_tr"][:-3]
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    with pytest.raises(ValueError, match="T_tr.*rows"):
        datasets.load_wiki(tmp_path)
    arrays = wiki_like(rng)
    arrays["L_te"] = arrays["L_te"][:-1]
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    with pytest.raises(ValueError, match="L_te"):
        datasets.load_wiki(tmp_path)
    arrays = wiki_like(rng)
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    with pytest.raises(FileNotFoundError, match="wiki_tfidf"):
        datasets.load_wiki(tmp_path, text="tfidf")
    with pytest.raises(ValueError, match="text"):
        datasets.load_wiki(tmp_path, text="bow")
    m = mirflickr_like(rng)
    m["LAll"] = m["LAll"][:10]
    scipy.io.savemat(tmp_path / "m.mat", m)
    with pytest.raises(ValueError, match="LAll"):
        datasets.load_mat(tmp_path / "m.mat")
    with pytest.raises(ValueError, match="one-hot"):
        scipy.io.savemat(tmp_path / "m2.mat", mirflickr_like(rng))
        datasets.load_mat(tmp_path / "m2.mat", single_label=True)


def test_make_multimodal_default_and_determinism():
    ds = datasets.make_multimodal(random_state=0)
    assert ds.n_samples == 2000 and ds.n_modalities == 2
    assert ds.modalities[0].shape == (2000, 64) and isinstance(ds.modalities[0], np.ndarray)
    X = ds.modalities[1]
    assert sp.isspmatrix_csr(X) and X.shape == (2000, 300)
    assert X.data.min() > 0 and np.all(np.diff(X.indptr) > 0)  # non-negative, no empty rows
    np.testing.assert_allclose(np.sqrt(X.multiply(X).sum(axis=1)).A.ravel(), 1.0)
    assert 0.02 < X.nnz / (2000 * 300) < 0.2
    assert ds.labels.shape == (2000,) and set(np.unique(ds.labels)) == set(range(10))
    again = datasets.make_multimodal(random_state=0)
    np.testing.assert_array_equal(ds.modalities[0], again.modalities[0])
    assert (ds.modalities[1] != again.modalities[1]).nnz == 0
    other = datasets.make_multimodal(random_state=1)
    assert not np.array_equal(ds.labels, other.labels)


def test_make_multimodal_multilabel_three_modalities():
    ds = datasets.make_multimodal(300, 5, (8, 40, 12), ("dense", "sparse", "dense"),
                                  multilabel=True, random_state=3)
    assert [X.shape[1] for X in ds.modalities] == [8, 40, 12]
    assert ds.labels.shape == (300, 5) and ds.labels.dtype == np.uint8
    assert ds.labels.sum(axis=1).min() >= 1 and ds.labels.sum(axis=1).mean() > 1
    assert ds.names == ["dense0", "sparse1", "dense2"]


def test_make_multimodal_classes_are_separable():
    """Same-class objects are closer in the dense modality than others."""
    ds = datasets.make_multimodal(400, 4, (16, 50), noise=0.3, random_state=2)
    X, y = ds.modalities[0], ds.labels
    centroids = np.stack([X[y == c].mean(axis=0) for c in range(4)])
    pred = np.argmin(((X[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert (pred == y).mean() > 0.9


def test_make_multimodal_errors():
    with pytest.raises(ValueError, match="n_samples"):
        datasets.make_multimodal(1)
    with pytest.raises(ValueError, match="kinds"):
        datasets.make_multimodal(10, kinds=("dense",))
    with pytest.raises(ValueError, match="kinds\\[1\\]"):
        datasets.make_multimodal(10, kinds=("dense", "image"))
    with pytest.raises(ValueError, match="n_features"):
        datasets.make_multimodal(10, n_features=(5,), kinds=("dense",))
    with pytest.raises(ValueError, match="noise"):
        datasets.make_multimodal(10, noise=-1.0)
    with pytest.raises(TypeError, match="multilabel"):
        datasets.make_multimodal(10, multilabel=1)


def test_dataset_checks_and_subset():
    with pytest.raises(ValueError, match="aligned"):
        datasets.MultiModalDataset([np.zeros((3, 2)), np.zeros((4, 2))], np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        datasets.MultiModalDataset([np.zeros((3, 2)), np.zeros((3, 2))], np.zeros(4))
    ds = datasets.make_multimodal(50, random_state=0)
    sub = ds.subset([3, 1])
    np.testing.assert_array_equal(sub.modalities[0], ds.modalities[0][[3, 1]])
    np.testing.assert_array_equal(sub.labels, ds.labels[[3, 1]])
    assert "MultiModalDataset" in repr(ds)


@pytest.mark.wiki
def test_real_wiki(wiki_dir):
    folder = wiki_dir
    ds = datasets.load_wiki(folder)
    assert ds.modalities[0].shape == (2866, 128) and ds.modalities[1].shape == (2866, 10)
    assert len(ds.train_idx) == 2173 and len(ds.test_idx) == 693
    np.testing.assert_array_equal(
        np.bincount(ds.labels[ds.train_idx]),
        [138, 272, 244, 248, 202, 178, 186, 144, 214, 347])
    np.testing.assert_array_equal(np.bincount(ds.labels[ds.test_idx]),
                                  [34, 88, 96, 85, 65, 58, 51, 41, 71, 104])
    # Categories agree with the list files (1-based there).
    cats = [int(line.split()[-1]) - 1
            for line in (folder / "wiki_testset_txt_img_cat.list").read_text().split("\n")
            if line.strip()]
    np.testing.assert_array_equal(ds.labels[ds.test_idx], cats)
    tf = datasets.load_wiki(folder, text="tfidf")
    assert sp.isspmatrix_csr(tf.modalities[1]) and tf.modalities[1].shape == (2866, 1000)
    assert 0.05 < tf.modalities[1].nnz / (2866 * 1000) < 0.1
    np.testing.assert_array_equal(tf.labels, ds.labels)


def test_normalize_rows_matches_numpy_dense_and_sparse():
    import scipy.sparse as sp

    from flexcmh_fast.datasets import normalize_rows
    rng = np.random.default_rng(0)
    X = rng.random((6, 5))
    X[2] = 0.0                                   # an all-zero row stays zero
    ref_l2 = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    ref_l2[2] = 0.0
    ref_h = np.sqrt(X) / np.maximum(np.linalg.norm(np.sqrt(X), axis=1, keepdims=True), 1e-300)
    ref_h[2] = 0.0
    np.testing.assert_allclose(normalize_rows(X, "l2"), ref_l2, rtol=1e-12)
    np.testing.assert_allclose(normalize_rows(X, "hellinger"), ref_h, rtol=1e-12)
    out = normalize_rows(sp.csr_matrix(X), "hellinger")
    assert sp.issparse(out)
    np.testing.assert_allclose(out.toarray(), ref_h, rtol=1e-12)
    assert normalize_rows(X, "none") is X
    with pytest.raises(ValueError, match="non-negative"):
        normalize_rows(-X - 1, "hellinger")
    with pytest.raises(ValueError, match="'kind' must be one of"):
        normalize_rows(X, "zscore")


def test_named_variables_errors(tmp_path):
    """Explicit variable names: every missing variable is listed, for the
    all layout and for the bases of the split layout."""
    rng = np.random.default_rng(9)
    arrays = mirflickr_like(rng, n=12)
    arrays.update(img_tr=rng.random((8, 2)), img_te=rng.random((4, 2)),
                  lab_tr=rng.integers(0, 2, (8, 1)))
    path = tmp_path / "named.mat"
    scipy.io.savemat(path, arrays)
    with pytest.raises(ValueError, match=r"has no variable\(s\) \['ZAll', 'QAll'\]\. Variables"):
        datasets.load_mat(path, ["XAll", "ZAll"], "QAll")
    with pytest.raises(ValueError, match=r"no variable\(s\) \['XAll_tr', 'XAll_te', 'lab_te'\]"):
        datasets.load_mat(path, ["img", "XAll"], "lab")
    with pytest.raises(TypeError, match="'modalities' must be a sequence of variable names"):
        datasets.load_mat(path, "XAll", "LAll")
    with pytest.raises(TypeError, match="'labels' must be the label variable's name"):
        datasets.load_mat(path, ["XAll"], 3)
    with pytest.raises(ValueError, match="'labels' is given without 'modalities'"):
        datasets.load_mat(path, labels="LAll")
    with pytest.raises(ValueError, match=r"'sparse' must have one bool per modality \(2\)"):
        datasets.load_mat(path, ["XAll", "YAll"], "LAll", sparse=[True])
    ds = datasets.load_mat(path, ["XAll", "YAll"], "LAll")
    assert ds.train_idx is None and ds.names == ["image", "text"]


def test_public_names():
    """The package exports exactly its public names; normalize_rows is the
    model's preprocessing, not a second implementation."""
    from flexcmh_fast import _preprocess

    assert sorted(datasets.__all__) == ["MultiModalDataset", "load_mat", "load_wiki",
                                        "make_multimodal", "normalize_rows"]
    public = {name for name in dir(datasets) if not name.startswith("_")}
    assert public == set(datasets.__all__)
    assert datasets.normalize_rows is _preprocess.normalize_rows
