"""FlexCMH trainer: planted-truth recovery, determinism, options, persistence,
bad inputs; one Wiki check (marked ``wiki``)."""
import os
import warnings

import numba
import numpy as np
import pytest
import reference_flexcmh as R
import scipy.sparse as sp

import flexcmh_fast as fc
from flexcmh_fast.flexcmh import _encoder as E
from flexcmh_fast.flexcmh import _matching as F
from flexcmh_fast.flexcmh import _tuning as T


def fit_kernel_encoder(X, H, n_anchors, rng, rows=None):
    """The kernel encoder of in-memory rows X with indicators H."""
    def gram(r, A, s):
        Xr, Hr = X[r], H[r]
        return E.encoder_gram(lambda a, b: Xr[a:b], lambda a, b: Hr[a:b], len(r), A, s)

    return E.solve_kernel_encoder(E.draw_encoder_rows(X.shape[0], n_anchors, rng, rows),
                                  lambda r: X[r], gram)


def planted(n_per=80, k=4, p=8, d0=20, d1=40, seed=0, sparse=False):
    """Two modalities generated from k shared latent clusters.

    Latent sample = centre_c + sigma_c * noise with a distinct spread per
    cluster; modality 0 embeds it with a random orthogonal map (dense),
    modality 1 with a coordinate permutation into d1 > p dimensions (so it is
    naturally sparse).  Both maps preserve distances, so the clusters'
    ordered-neighbour profiles agree across modalities.  The rows of
    modality 1 are shuffled: the true correspondence is unknown.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, p)) * 10.0
    sigma = 0.3 * (1 + np.arange(k))
    y = np.repeat(np.arange(k), n_per)
    lat0 = centres[y] + sigma[y, None] * rng.standard_normal((y.size, p))
    lat1 = centres[y] + sigma[y, None] * rng.standard_normal((y.size, p))
    A, _ = np.linalg.qr(rng.standard_normal((d0, p)))
    X0 = lat0 @ A.T
    cols = rng.permutation(d1)[:p]
    X1 = np.zeros((y.size, d1))
    X1[:, cols] = lat1
    shuffle = rng.permutation(y.size)
    X1, y1 = X1[shuffle], y[shuffle]
    if sparse:
        X1 = sp.csr_matrix(X1)
    return X0, X1, y, y1


def cross_map(q_codes, db_codes, q_lab, db_lab):
    """MAP of Hamming ranking (stable tie-break by database index)."""
    q = q_codes.astype(np.int32)
    d = db_codes.astype(np.int32)
    dist = (q.shape[1] - q @ d.T) // 2
    aps = []
    for i in range(q.shape[0]):
        rel = db_lab[np.argsort(dist[i], kind="stable")] == q_lab[i]
        hits = np.flatnonzero(rel)
        aps.append(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))
    return float(np.mean(aps))


@pytest.mark.parametrize("sparse", [False, True])
def test_planted_clusters_recovered_without_pairs(sparse):
    X0, X1, y0, y1 = planted(sparse=sparse)
    model = fc.train([X0, X1], None, n_bits=16, n_clusters=4, random_state=0,
                     max_iter=30, n_threads=2)
    h0 = model.indicators(X0, 0).argmax(1)
    h1 = model.indicators(X1, 1).argmax(1)
    # Each aligned cluster holds one planted cluster in both modalities.
    for c in range(4):
        t0 = np.bincount(y0[h0 == c], minlength=4)
        t1 = np.bincount(y1[h1 == c], minlength=4)
        assert t0.argmax() == t1.argmax()
        assert t0.max() >= 0.9 * t0.sum() and t1.max() >= 0.9 * t1.sum()
    # The planted matching is a bijection between the modalities' clusters.
    dominant0 = [np.bincount(y0[h0 == c], minlength=4).argmax() for c in range(4)]
    assert sorted(dominant0) == [0, 1, 2, 3]
    # Retrieval across modalities far above chance (0.25).
    q = model.encode(X0, 0, packed=False)
    db = model.encode(X1, 1, packed=False)
    assert cross_map(q, db, y0, y1) > 0.85
    assert cross_map(db, q, y1, y0) > 0.85


def test_same_seed_same_codes_and_different_seed_runs():
    X0, X1, _, _ = planted(n_per=40, seed=3)
    pairs = np.stack([np.arange(20), np.arange(20)], 1)
    runs = [fc.train([X0, X1], pairs, n_bits=24, n_clusters=4, random_state=7,
                     max_iter=10) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].codes_, runs[1].codes_)
    for term in runs[0].history_:
        np.testing.assert_array_equal(runs[0].history_[term], runs[1].history_[term])
    np.testing.assert_array_equal(runs[0].encode(X1, 1), runs[1].encode(X1, 1))
    one_thread = fc.train([X0, X1], pairs, n_bits=24, n_clusters=4, random_state=7,
                          max_iter=10, n_threads=1)
    np.testing.assert_array_equal(runs[0].codes_, one_thread.codes_)


def test_model_attributes_and_history():
    X0, X1, _, _ = planted(n_per=30, seed=1)
    model = fc.train([X0, X1], None, n_bits=12, n_clusters=4, random_state=0, max_iter=5,
                     tol=0.0)
    assert model.n_iter_ == 5
    h = model.history_
    assert list(h) == ["objective", "inter_modal", "reconstruction", "quantization",
                       "centroid_ridge", "code_changes"]
    assert all(v.shape == (5,) and (v >= 0).all() for v in h.values())
    assert (h["code_changes"] <= 1).all()
    np.testing.assert_allclose(h["objective"],
                               h["inter_modal"] + h["reconstruction"] + h["quantization"])
    assert model.codes_.dtype == np.uint8 and model.codes_.shape[1] == 2
    assert model.cluster_matching_.shape == (2, 4)
    np.testing.assert_array_equal(model.cluster_matching_[0], np.arange(4))
    assert sorted(model.cluster_matching_[1]) == [0, 1, 2, 3]
    g = model.correspondence_[(0, 1)]
    assert g.dtype == np.int64 and g.shape[1] == 2
    assert model.n_features_ == [X0.shape[1], X1.shape[1]]
    assert model.encode(X0[:0], 0).shape == (0, 2)


def test_train_codes_are_the_codes_of_the_training_indicators():
    X0, X1, _, _ = planted(n_per=30, seed=1)
    seen = {}

    def keep_indicators(it, state):
        seen["H"] = [H.copy() for H in state["H"]]

    model = fc.train([X0, X1[:100]], None, n_bits=12, n_clusters=4, random_state=0,
                     max_iter=5, callback=keep_indicators)
    assert [c.shape for c in model.train_codes_] == [(X0.shape[0], 2), (100, 2)]
    for m in range(2):
        np.testing.assert_array_equal(model.train_codes_[m],
                                      fc.pack_codes(model.code_.signs(seen["H"][m])))


def test_paired_all_skips_matching_and_keeps_known_pairs():
    X0, X1, _, _ = planted(n_per=30, seed=2)
    model = fc.train([X0, X1], "all", n_bits=8, n_clusters=4, random_state=0, max_iter=3)
    g = model.correspondence_[(0, 1)]
    np.testing.assert_array_equal(g, np.stack([np.arange(120)] * 2, 1))
    assert model.codes_.shape == (120, 1)


def test_known_pairs_kept_and_override_inferred():
    X0, X1, _, _ = planted(n_per=30, seed=4)
    known = np.array([[0, 5], [1, 7], [2, 9]])
    model = fc.train([X0, X1], known, n_bits=8, n_clusters=4, random_state=0, max_iter=3)
    g = model.correspondence_[(0, 1)]
    np.testing.assert_array_equal(g[:3], known)
    rest = g[3:]
    assert not np.isin(rest[:, 0], known[:, 0]).any()
    assert not np.isin(rest[:, 1], known[:, 1]).any()


def test_three_modalities_different_sizes_sparse_and_dict_pairs():
    rng = np.random.default_rng(5)
    X0, X1, _, _ = planted(n_per=30, seed=5, sparse=True)
    X2 = rng.random((90, 7))
    pairs = {(0, 2): np.array([[0, 1], [3, 4]]), (2, 1): np.array([[5, 6]])}
    model = fc.train([X0, X1, X2], pairs, n_bits=10, n_clusters=3, random_state=0,
                     max_iter=4)
    assert set(model.correspondence_) == {(0, 1), (0, 2), (1, 2)}
    np.testing.assert_array_equal(model.correspondence_[(1, 2)][0], [6, 5])
    for m, X in enumerate([X0, X1, X2]):
        assert model.encode(X[:7], m).shape == (7, 2)


def test_ablations_nj_and_nc():
    X0, X1, y0, y1 = planted(n_per=30, seed=6)
    nj = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=5,
                  joint=False)
    assert nj.get_params()["joint"] is False
    nc = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=5,
                  matching="labels", labels=[y0, y1])
    g = nc.correspondence_[(0, 1)]
    np.testing.assert_array_equal(y0[g[:, 0]], y1[g[:, 1]])
    assert g.shape[0] == y0.size
    with pytest.raises(ValueError, match="labels"):
        fc.train([X0, X1], None, n_bits=8, n_clusters=4, matching="labels")


def test_labels_ignored_by_default():
    X0, X1, y0, y1 = planted(n_per=30, seed=14)
    a = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=4)
    b = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=4,
                 labels=[y0, y1])
    np.testing.assert_array_equal(a.codes_, b.codes_)
    np.testing.assert_array_equal(a.encode(X1, 1), b.encode(X1, 1))


def test_kmeans_code_scheme():
    X0, X1, y0, y1 = planted(n_per=40, seed=7)
    model = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=10,
                     code_scheme="kmeans")
    codes = model.encode(X0, 0, packed=False)
    assert set(np.unique(codes)) <= {-1, 1}
    # Every code has at least one set bit (one-hot OR over the rounds).
    assert (codes == 1).any(axis=1).all()


def test_callback_stops_and_verbose_progress(capsys):
    X0, X1, _, _ = planted(n_per=20, seed=8)
    seen = []

    def cb(it, state):
        seen.append((it, state["objective"]))
        assert set(state) >= {"objective", "terms", "H", "Z", "correspondence"}
        return it == 3

    model = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=50,
                     tol=0.0, callback=cb, verbose=True)
    assert model.n_iter_ == 3 and [s[0] for s in seen] == [1, 2, 3]
    assert "FlexCMH" in capsys.readouterr().err


@pytest.mark.parametrize("n_repairs", [0, 3])
def test_inferred_pairs_re_ranked_in_the_first_n_repairs_iterations(monkeypatch, n_repairs):
    from flexcmh_fast.flexcmh import _partition as P

    X0, X1, _, _ = planted(n_per=30, seed=4)
    calls, passes = [], [0]
    relabel, update_H = P.relabel, P.Partition.update_H

    def spy_relabel(part, perms, moments, rebuild=True):
        calls.append((bool(perms), rebuild))
        return relabel(part, perms, moments, rebuild)

    def spy_update_H(part):
        passes[0] += 1
        return update_H(part)

    monkeypatch.setattr(P, "relabel", spy_relabel)
    monkeypatch.setattr(P.Partition, "update_H", spy_update_H)
    # Codes that never count as settled: re-ranking must not wait for them.
    monkeypatch.setattr(T, "CODE_CHANGE_TOL", -1.0)
    pairs = np.stack([np.arange(40), np.arange(40)], 1)
    model = fc.train([X0, X1], pairs, n_bits=8, n_clusters=4, random_state=0, max_iter=8,
                     tol=0.0, n_repairs=n_repairs)
    assert model.n_iter_ == 8 and passes[0] == 8 * T.H_PASSES
    # calls[0] builds the first Γ before the loop; calls[t] is iteration t,
    # which re-ranks in iterations 2 .. n_repairs + 1 and otherwise
    # rebuilds Γ only when the cluster matching changed.
    assert len(calls) == 9 and calls[0][1]
    for t, (matching_changed, rebuilt) in enumerate(calls[1:], start=1):
        assert rebuilt == (2 <= t <= n_repairs + 1 or matching_changed), t


@pytest.mark.parametrize("encoder", ["kernel", "nnls"])
def test_encode_batched_dense_sparse_agree(monkeypatch, encoder):
    X0, X1, _, _ = planted(n_per=30, seed=9, sparse=True)
    model = fc.train([X0, X1], None, n_bits=16, n_clusters=4, random_state=0, max_iter=5,
                     encoder=encoder)
    assert model.encoder == encoder
    full = model.encode(X1, 1)
    h = model.indicators(X1, 1)
    monkeypatch.setattr(T, "ENCODE_BATCH", 7)
    monkeypatch.setattr(T, "ENC_BLOCK", 7)
    np.testing.assert_array_equal(model.encode(X1, 1), full)
    np.testing.assert_array_equal(model.encode(X1.toarray(), 1), full)
    np.testing.assert_allclose(model.indicators(X1.toarray(), 1), h, rtol=1e-10, atol=1e-12)
    for rows in (slice(0, 1), slice(3, 50)):
        np.testing.assert_array_equal(model.encode(X1[rows], 1), full[rows])


@pytest.mark.parametrize("sparse", [False, True])
def test_kernel_encoder_matches_numpy_reference(sparse):
    rng = np.random.default_rng(3)
    X = np.abs(rng.standard_normal((60, 7))) * (rng.random((60, 7)) < 0.6)
    H = np.abs(rng.standard_normal((60, 4)))
    Xin = sp.csr_matrix(X) if sparse else X
    A, sigma, W = fit_kernel_encoder(Xin, H, 25, np.random.default_rng(0))
    assert A.shape == (25, 7) and W.shape == (25, 4)
    # The anchors are distinct training rows, in row order.
    rows = [int(np.flatnonzero((X == a).all(axis=1))[0]) for a in A]
    assert rows == sorted(set(rows))
    # Every row is a probe (n <= 1000) and a regression row (n <= 20000).
    assert sigma == pytest.approx(T.ENC_SIGMA_FACTOR * R.mean_distance(X, A), rel=1e-9)
    W_ref = R.kernel_ridge_weights(X, H, A, sigma, T.ENC_RIDGE)
    np.testing.assert_allclose(W, W_ref, rtol=1e-7, atol=1e-9)
    # More anchors than samples: every row is an anchor.
    A2, _, W2 = fit_kernel_encoder(Xin, H, 500, np.random.default_rng(0))
    np.testing.assert_array_equal(A2, X)
    assert W2.shape == (60, 4)


def test_kernel_encoder_subsampled_fit_matches_reference(monkeypatch):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 5))
    H = np.abs(rng.standard_normal((50, 3)))
    monkeypatch.setattr(T, "ENC_FIT_SAMPLE", 20)
    A, sigma, W = fit_kernel_encoder(X, H, 10, np.random.default_rng(1))
    # Replay the documented draws: anchors, probe rows, regression rows.
    r = np.random.default_rng(1)
    np.testing.assert_array_equal(A, X[np.sort(r.choice(50, 10, replace=False))])
    r.choice(50, 50, replace=False)
    sub = np.sort(r.choice(50, 20, replace=False))
    np.testing.assert_allclose(W, R.kernel_ridge_weights(X[sub], H[sub], A, sigma, T.ENC_RIDGE),
                               rtol=1e-7, atol=1e-9)


def test_encoder_weights_cholesky_and_lu_fallback():
    rng = np.random.default_rng(5)
    Phi = rng.random((30, 8))
    G, Rhs = Phi.T @ Phi, rng.random((8, 3))
    ridge = G + T.ENC_RIDGE * np.trace(G) / 8 * np.eye(8)
    np.testing.assert_allclose(E.encoder_weights(G, Rhs), np.linalg.solve(ridge, Rhs),
                               rtol=1e-9)
    # Indefinite G (no Gram matrix is, but rounding can make one so): the
    # Cholesky factorisation fails and LU solves the same system.
    G = np.array([[1.0, 3.0], [3.0, 1.0]])
    Rhs = np.array([[1.0], [2.0]])
    ridge = G + T.ENC_RIDGE * np.eye(2)
    np.testing.assert_allclose(E.encoder_weights(G, Rhs), np.linalg.solve(ridge, Rhs),
                               rtol=1e-12)


def test_kernel_encoder_model_indicators_and_codes():
    X0, X1, _, _ = planted(n_per=25, seed=14, sparse=True)
    model = fc.train([X0, X1], None, n_bits=16, n_clusters=4, random_state=0, max_iter=5,
                     n_anchors=30)
    assert model.get_params()["encoder"] == "kernel" and model.n_anchors == 30
    for m, X in enumerate([X0, X1.toarray()]):
        A, sigma, W = model.anchors_[m], model.sigmas_[m], model.encoder_weights_[m]
        assert A.shape == (30, X.shape[1]) and W.shape == (30, 4) and sigma > 0
        h_ref = R.rbf_features(X, A, sigma) @ W
        np.testing.assert_allclose(model.indicators(X, m), h_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(model.encode(X, m, packed=False),
                                      model.code_.signs(model.indicators(X, m)))
    # The encoder is fitted after training: Z and Γ do not depend on it.
    nnls = fc.train([X0, X1], None, n_bits=16, n_clusters=4, random_state=0, max_iter=5,
                    encoder="nnls")
    assert nnls.anchors_ is None
    for m in range(2):
        np.testing.assert_array_equal(nnls.centroids_[m], model.centroids_[m])
    np.testing.assert_array_equal(nnls.correspondence_[(0, 1)], model.correspondence_[(0, 1)])
    # The final code function is fitted on the encoded aligned rows (each
    # modality-0 row with its first partner in Γ): its mean is theirs (the
    # learned indicators' mean differs: the regression only approximates them).
    g = np.asarray(model.correspondence_[(0, 1)])
    first = np.unique(g[:, 0], return_index=True)[1]
    pooled = np.vstack([model.indicators(X0[g[first, 0]], 0),
                        model.indicators(X1[g[first, 1]], 1)])
    np.testing.assert_allclose(model.code_.mu, pooled.mean(axis=0), rtol=1e-9, atol=1e-12)



def test_final_code_fitted_on_sampled_encoded_rows(monkeypatch):
    """More aligned rows than CODE_SAMPLE: the final code function is fitted
    on the encoded indicators of the aligned rows whose random priority is
    below CODE_SAMPLE / aligned rows (about CODE_SAMPLE of them)."""
    from flexcmh_fast.flexcmh import _partition as P

    X0, X1, _, _ = planted(n_per=25, seed=15)
    monkeypatch.setattr(T, "CODE_SAMPLE", 30)
    seen = []
    encode_aligned = P.encode_aligned

    def spy(part, encoders, workers, sample):
        encode_aligned(part, encoders, workers, sample)
        seen.append((part.aligned_rows(sample), [Y.copy() for Y in part.encoded],
                     part.code_priority.copy(), part.aligned()))

    monkeypatch.setattr(P, "encode_aligned", spy)
    model = fc.train([X0, X1], "all", n_bits=8, n_clusters=4, random_state=0, max_iter=5,
                     n_anchors=30)
    assert len(seen) == 1
    rows, encoded, priority, aligned = seen[0]
    assert aligned[0].size == 100  # every row paired
    np.testing.assert_array_equal(rows[0], np.flatnonzero(priority < 30 / 100))
    assert 10 <= rows[0].size <= 50 and rows[1].size == rows[0].size
    for m, X in enumerate([X0, X1]):
        np.testing.assert_allclose(encoded[m], model.indicators(X[rows[m]], m),
                                   rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.code_.mu, np.vstack(encoded).mean(axis=0),
                               rtol=1e-9, atol=1e-12)
    # The nnls encoder keeps the code function of the learned indicators.
    seen.clear()
    fc.train([X0, X1], "all", n_bits=8, n_clusters=4, random_state=0, max_iter=5,
             encoder="nnls")
    assert not seen

def test_save_load_roundtrip(tmp_path):
    X0, X1, _, _ = planted(n_per=30, seed=10)
    for scheme, encoder in (("itq", "kernel"), ("kmeans", "kernel"), ("itq", "nnls")):
        model = fc.train([X0, X1], None, n_bits=12, n_clusters=4, random_state=0,
                         max_iter=3, code_scheme=scheme, encoder=encoder)
        path = tmp_path / f"m_{scheme}_{encoder}.npz"
        model.save(path)
        back = fc.load(path)
        assert isinstance(back, fc.FlexCMH)
        for m, X in enumerate([X0, X1]):
            np.testing.assert_array_equal(back.encode(X, m), model.encode(X, m))
        np.testing.assert_array_equal(back.codes_, model.codes_)
        for m in range(2):
            np.testing.assert_array_equal(back.train_codes_[m], model.train_codes_[m])
        for term in model.history_:
            np.testing.assert_array_equal(back.history_[term], model.history_[term])
        np.testing.assert_array_equal(back.correspondence_[(0, 1)],
                                      model.correspondence_[(0, 1)])
        assert back.get_params() == model.get_params()
        assert back.encoder == encoder
        if encoder == "kernel":
            for m in range(2):
                np.testing.assert_array_equal(back.anchors_[m], model.anchors_[m])
                np.testing.assert_array_equal(back.encoder_weights_[m],
                                              model.encoder_weights_[m])
                assert back.sigmas_[m] == model.sigmas_[m]


def test_load_corrupt_kernel_encoder(tmp_path):
    from flexcmh_fast._persist import read_state, save_state
    X0, X1, _, _ = planted(n_per=20, seed=15)
    model = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=2,
                     n_anchors=10)
    path = tmp_path / "m.npz"
    model.save(path)
    kind, meta, arrays = read_state(path)
    for key, value in (("encoder_weights_1", np.zeros((10, 3))), ("anchors_0", np.zeros((10, 2)))):
        bad = dict(arrays)
        bad[key] = value
        save_state(tmp_path / "bad.npz", kind, meta, bad)
        with pytest.raises(fc.FileFormatError, match=f"not a valid FlexCMH file: .*{key}"):
            fc.load(tmp_path / "bad.npz")
    bad = dict(arrays)
    del bad["anchors_1"]
    save_state(tmp_path / "bad.npz", kind, meta, bad)
    with pytest.raises(fc.FileFormatError, match="anchors_1"):
        fc.load(tmp_path / "bad.npz")


def test_save_failure_leaves_nothing(tmp_path):
    X0, X1, _, _ = planted(n_per=20, seed=11)
    model = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=2)
    with pytest.raises(ValueError):
        model.save(tmp_path / "missing_dir" / "m.npz")
    model.code_.R = model.code_.R.astype(object)  # unsaveable entry
    with pytest.raises(TypeError):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_clusters=500), "n_clusters"),
    (dict(n_clusters=0), "n_clusters"),
    (dict(n_bits=0), "n_bits"),
    (dict(code_scheme="pca"), "code_scheme"),
    (dict(matching="random"), "matching"),
    (dict(n_neighbors=0), "n_neighbors"),
    (dict(lam=-1.0), "lam"),
    (dict(tol=float("nan")), "tol"),
    (dict(max_iter=-1), "max_iter"),
    (dict(encoder="knn"), "encoder"),
    (dict(n_anchors=0), "n_anchors"),
    (dict(match_score="qap"), "match_score"),
])
def test_bad_parameters(kwargs, match):
    X0, X1, _, _ = planted(n_per=20, seed=12)
    args = dict(n_bits=8, n_clusters=4, random_state=0, max_iter=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fc.train([X0, X1], None, **args)


def test_bad_inputs():
    X0, X1, _, _ = planted(n_per=20, seed=13)
    with pytest.raises(TypeError, match="Unknown parameter"):
        fc.train([X0, X1], None, n_bits=8, n_cluster=4)
    with pytest.raises(TypeError, match="n_anchors"):
        fc.train([X0, X1], None, n_bits=8, n_clusters=4, n_anchors=2.5)
    with pytest.raises(ValueError, match="at least 2"):
        fc.train([X0], None, n_bits=8)
    bad = X0.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fc.train([bad, X1], None, n_bits=8, n_clusters=4)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        fc.train([bad, X1], None, n_bits=8, n_clusters=4)
    with pytest.raises(ValueError, match="pairs"):
        fc.train([X0, X1], np.array([[0, 500]]), n_bits=8, n_clusters=4)
    with pytest.raises(ValueError, match="duplicated"):
        fc.train([X0, X1], np.array([[0, 1], [0, 1]]), n_bits=8, n_clusters=4)
    model = fc.train([X0, X1], None, n_bits=8, n_clusters=4, random_state=0, max_iter=1)
    with pytest.raises(ValueError, match="features"):
        model.encode(X1, 0)
    with pytest.raises(ValueError, match="modality"):
        model.encode(X0, 2)
    with pytest.raises(ValueError, match="NaN"):
        model.encode(np.full((2, X0.shape[1]), np.nan), 0)


@pytest.mark.wiki
def test_wiki_weak_pairs_beats_chance(wiki_dir):
    from flexcmh_fast import datasets, scenarios

    data = datasets.load_wiki(wiki_dir)
    img = datasets.normalize_rows(data.modalities[0], "hellinger")
    txt = datasets.normalize_rows(data.modalities[1], "l2")
    tr, te = scenarios.train_test_split(data.n_samples, 0.3, random_state=0)
    scen = scenarios.make_scenario([img[tr], txt[tr]], data.labels[tr], "weak", random_state=0)
    model = fc.train(scen.modalities, scen.pairs, n_bits=16, random_state=0)
    q = model.encode(img[te], 0, packed=False)
    db = model.encode(scen.modalities[1], 1, packed=False)
    assert cross_map(q, db, data.labels[te], scen.labels[1]) > 0.17  # chance ~0.11


def test_size_scores_match_numpy_reference():
    # Cluster sizes of assignments [0, 0, 1, 2, 2, 2, -1] and
    # [3, 1, 1, 0, 0, 0, 0, 2, -1, 3] (-1: in no cluster).
    S = F.size_scores(np.array([2, 1, 3, 0]), np.array([4, 2, 1, 2]))
    f0 = np.array([2, 1, 3, 0]) / 6
    f1 = np.array([4, 2, 1, 2]) / 9
    for c in range(4):
        for c2 in range(4):
            expect = np.inf if f0[c] == 0 else abs(np.log(f0[c] / f1[c2]))
            assert S[c, c2] == pytest.approx(expect)


@pytest.mark.parametrize("match_score", ["profiles", "profiles+sizes", "gw", "auto"])
def test_match_scores_recover_planted_clusters(match_score):
    X0, X1, y0, y1 = planted(seed=2)
    model = fc.train([X0, X1], None, n_bits=16, n_clusters=4, random_state=0,
                     max_iter=30, match_score=match_score)
    assert model.match_score == match_score
    h0 = model.indicators(X0, 0).argmax(1)
    h1 = model.indicators(X1, 1).argmax(1)
    # Aligned clusters: each latent cluster gets the same index in both modalities.
    for c in range(4):
        assert np.bincount(h0[y0 == c], minlength=4).argmax() == \
            np.bincount(h1[y1 == c], minlength=4).argmax()


def test_auto_match_score_uses_sizes_and_gw_only_without_known_pairs():
    X0, X1, y0, y1 = planted(n_per=30, seed=16)
    known = np.array([[i, int(np.flatnonzero(y1 == y0[i])[i % 5])] for i in range(0, 120, 4)])

    def fit(pairs, score):
        return fc.train([X0, X1], pairs, n_bits=8, n_clusters=4, random_state=0,
                        max_iter=5, match_score=score)

    for pairs, same in ((known, "profiles"), (None, "gw")):
        a, b = fit(pairs, "auto"), fit(pairs, same)
        np.testing.assert_array_equal(a.cluster_matching_, b.cluster_matching_)
        for m in range(2):
            np.testing.assert_array_equal(a.train_codes_[m], b.train_codes_[m])


def test_kernel_encoder_on_candidate_rows_matches_reference():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6))
    H = np.abs(rng.standard_normal((40, 3)))
    rows = np.array([1, 4, 5, 9, 12, 20, 21, 30, 33, 39])
    A, sigma, W = fit_kernel_encoder(sp.csr_matrix(X), H, 4, np.random.default_rng(2), rows=rows)
    r = np.random.default_rng(2)
    np.testing.assert_array_equal(A, X[rows[np.sort(r.choice(10, 4, replace=False))]])
    assert sigma == pytest.approx(T.ENC_SIGMA_FACTOR * R.mean_distance(X[rows], A), rel=1e-9)
    np.testing.assert_allclose(W, R.kernel_ridge_weights(X[rows], H[rows], A, sigma, T.ENC_RIDGE),
                               rtol=1e-7, atol=1e-9)


def test_kernel_encoder_fitted_on_known_pairs():
    X0, X1, y0, y1 = planted(n_per=30, seed=17)
    # 10 same-class pairs per planted cluster, every row at most once.
    known = np.vstack([np.stack([np.flatnonzero(y0 == c)[:10], np.flatnonzero(y1 == c)[:10]], 1)
                       for c in range(4)])
    model = fc.train([X0, X1], known, n_bits=8, n_clusters=4, random_state=0, max_iter=3)
    assert E.known_rows({(0, 1): known}, 1, 4).tolist() == sorted(set(known[:, 1]))
    assert E.known_rows({}, 0, 4) is None
    # Fewer than 10 k known rows: every row is used.
    assert E.known_rows({(0, 1): known}, 0, 5) is None
    three = {(0, 1): np.array([[0, 5], [2, 6]]), (1, 2): np.array([[5, 1], [7, 0]])}
    assert E.known_rows(three, 1, 0).tolist() == [5, 6, 7]
    assert E.known_rows(three, 2, 0).tolist() == [0, 1]
    for m, X in enumerate([X0, X1]):
        # 40 known rows < 1000 anchors: the anchors are exactly the known rows.
        np.testing.assert_array_equal(model.anchors_[m], X[np.unique(known[:, m])])


# ------------------------------------------------ preprocessing and stopping
def test_auto_preprocessing_rule_and_encode_applies_it(tmp_path):
    rng = np.random.default_rng(0)
    hist = rng.random((120, 30)) * (rng.random((120, 30)) < 0.5)     # histograms: zeros
    props = rng.random((120, 6)) + 0.1                                # dense proportions
    tfidf = sp.random(120, 50, density=0.2, random_state=1, format="csr")
    mixed = rng.standard_normal((120, 5))
    model = fc.train([hist, props, tfidf, mixed], "all", n_bits=8, n_clusters=3,
                     random_state=0, max_iter=5)
    assert [pp.kind for pp in model.preprocessors_] == ["hellinger", "l2", "l2", "none"]
    # encode = the encoder on the preprocessed rows; CSR stays sparse.
    H = E.nnls_indicators if model.anchors_ is None else None
    h_hist = R.rbf_features(np.sqrt(hist) / np.linalg.norm(np.sqrt(hist), axis=1,
                                                              keepdims=True),
                            model.anchors_[0], model.sigmas_[0]) @ model.encoder_weights_[0]
    np.testing.assert_allclose(model.indicators(hist, 0), h_hist, rtol=1e-9, atol=1e-12)
    assert H is None
    np.testing.assert_array_equal(model.encode(tfidf, 2), model.encode(tfidf.toarray(), 2))
    with pytest.raises(ValueError, match="'X' must be non-negative"):
        model.encode(-hist, 0)
    std = fc.train([hist, mixed], "all", n_bits=8, n_clusters=3, random_state=0, max_iter=3,
                   preprocess=["none", "standard"])
    pp = std.preprocessors_[1]
    np.testing.assert_allclose(pp.mean, mixed.mean(0))
    np.testing.assert_allclose(pp.scale, mixed.std(0))
    std.save(tmp_path / "m.npz")
    back = fc.load(tmp_path / "m.npz")
    assert [p.kind for p in back.preprocessors_] == ["none", "standard"]
    np.testing.assert_array_equal(back.encode(mixed, 1), std.encode(mixed, 1))
    with pytest.raises(ValueError, match="needs non-negative features"):
        fc.train([hist, mixed], "all", n_bits=8, n_clusters=3, preprocess="hellinger")
    with pytest.raises(ValueError, match="one kind per modality"):
        fc.train([hist, mixed], "all", n_bits=8, n_clusters=3, preprocess=["l2"])
    with pytest.raises(ValueError, match=r"'preprocess\[1\]' must be one of"):
        fc.train([hist, mixed], "all", n_bits=8, n_clusters=3, preprocess=["l2", "log"])


@pytest.mark.parametrize("kind", ["l2", "hellinger"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_row_normalisation_matches_formula(kind, dtype, sparse):
    """Rows normalised to unit norm (after the square root for Hellinger):
    the formula up to rounding, zero rows kept, the input untouched, the
    requested dtype, CSR kept sparse; a row gets the same values alone as
    among others (queries encoded one by one agree with a batch)."""
    from flexcmh_fast import _preprocess as PP

    rng = np.random.default_rng(1)
    X = (rng.random((11, 6)) * (rng.random((11, 6)) < 0.5)).astype(dtype)
    X[4] = 0.0
    Xin = sp.csr_matrix(X) if sparse else X
    before = X.copy()
    Y = np.sqrt(X.astype(np.float64)) if kind == "hellinger" else X.astype(np.float64)
    norms = np.linalg.norm(Y, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out = PP.Preprocessor(kind).transform(Xin)
    assert out.dtype == dtype and sp.issparse(out) == sparse
    dense = out.toarray() if sparse else out
    np.testing.assert_allclose(dense, Y / norms, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_array_equal(X, before)
    assert not dense[4].any() and out is not Xin
    one = PP.Preprocessor(kind).transform(Xin[7:8])
    np.testing.assert_array_equal(one.toarray() if sparse else one, dense[7:8])
    assert PP.Preprocessor(kind).transform(Xin[:0]).shape == (0, 6)
    as32 = PP.Preprocessor(kind).transform(Xin, np.float32)
    assert as32.dtype == np.float32


def test_convergence_flag_and_warning():
    d = fc.datasets.make_multimodal(n_samples=300, noise=0.5, random_state=0)
    X0, X1 = d.modalities
    pairs = np.stack([np.arange(150), np.arange(150)], 1)
    model = fc.train([X0, X1], pairs, n_bits=16, random_state=0)
    assert model.converged_ and model.n_iter_ < 500
    h = model.history_
    cont = h["inter_modal"] + h["reconstruction"] + h["centroid_ridge"]
    assert abs(cont[-1] - cont[-2]) <= 1e-4 * cont[-2]
    assert h["code_changes"][-1] <= 0.01
    with pytest.warns(fc.ConvergenceWarning, match="max_iter=2 before converging"):
        short = fc.train([X0, X1], pairs, n_bits=16, random_state=0, max_iter=2)
    assert not short.converged_ and short.n_iter_ == 2


def test_convergence_test_and_repair_schedule_rules(monkeypatch):
    from flexcmh_fast.flexcmh import _loop as L

    assert L.continuous_objective((2.0, 3.0, 7.0), 0.5) == 5.5  # quantisation left out
    assert L.convergence_test(100.0, 99.995, 0.01, 1e-4) == (True, pytest.approx(5e-5))
    assert L.convergence_test(100.0, 99.0, 0.0, 1e-4)[0] is False
    assert L.convergence_test(100.0, 100.0, 0.0101, 1e-4)[0] is False
    monkeypatch.setattr(T, "CODE_CHANGE_TOL", 0.5)  # read at call time
    assert L.convergence_test(100.0, 100.0, 0.3, 0.0)[0] is True
    assert L.convergence_test(0.0, 0.0, 0.0, 0.0) == (True, 0.0)

    # No budget: the strict test alone, never a re-ranking.
    loop = L.LoopState()
    assert L.schedule_repair(loop, True, 0) and not loop.repair_next and loop.repairs == 0
    # Budget 2: an iteration that did not re-rank cannot converge; one that
    # re-ranked can; after the budget the strict test alone.
    loop = L.LoopState()
    got = []
    for met in (True, False, True, True, True):
        got.append((L.schedule_repair(loop, met, 2), loop.repair_next, loop.repairs))
    assert got == [(False, True, 1), (False, True, 2), (True, False, 2), (True, False, 2),
                   (True, False, 2)]


def test_warning_only_when_max_iter_runs_out():
    from flexcmh_fast.flexcmh import _loop as L

    def warned(**state):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            L.warn_not_converged(L.LoopState(objective_change=0.5, code_changes=0.25,
                                             **state), 3, 1e-4, stacklevel=1)
        return [str(w.message) for w in caught if w.category is fc.ConvergenceWarning]

    assert warned(n_iter=2) == [] and warned(n_iter=3, converged=True) == []
    assert warned(n_iter=3, stopped=True) == []
    message, = warned(n_iter=3)
    assert "max_iter=3" in message and "0.5 vs tol=0.0001" in message and "25.00%" in message


@pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")
@pytest.mark.parametrize("pairs, matching", [("all", "clusters"), ("half", "clusters"),
                                             (None, "clusters"), ("half", "labels")])
def test_fit_sets_no_attribute_outside_init(monkeypatch, pairs, matching):
    """Every attribute of the driver exists after __init__ (the loop's state
    in ``loop``), so a fit's state is readable in one place."""
    from flexcmh_fast.flexcmh import _algorithm as A

    X0, X1, y0, y1 = planted(n_per=20, seed=3)
    n = X0.shape[0]
    known = {"all": "all", "half": np.stack([np.arange(0, n, 2)] * 2, 1), None: None}[pairs]
    seen = {}
    run = A.FlexCMHFit.run

    def spy(fit):
        seen["init"] = set(vars(fit))
        fitted = run(fit)
        seen["run"] = set(vars(fit))
        seen["loop"] = fit.loop
        return fitted

    monkeypatch.setattr(A.FlexCMHFit, "run", spy)
    model = fc.train([X0, X1], known, labels=[y0, y1] if matching == "labels" else None, n_bits=8,
                     n_clusters=4, max_iter=4, match_score="gw", matching=matching,
                     random_state=0)
    assert seen["run"] == seen["init"]
    assert model.n_iter_ == seen["loop"].n_iter == len(seen["loop"].history) <= 4
    assert model.converged_ is seen["loop"].converged


def test_dense_product_threads_only_for_large_products():
    """Large dense products run BLAS on the fit's threads although the fit
    holds BLAS to one thread; small ones and CSR products keep the limit."""
    from threadpoolctl import threadpool_info

    from flexcmh_fast import _threads
    from flexcmh_fast._threads import dense_product_threads, thread_limits

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("no BLAS library reported by threadpoolctl")
    with thread_limits(2, blas=1):
        if numba.get_num_threads() < 2:
            pytest.skip("needs 2 Numba threads")
        with dense_product_threads(_threads.LARGE_PRODUCT - 1):
            assert blas_threads() == {1}
        with dense_product_threads(_threads.LARGE_PRODUCT):
            assert blas_threads() == {2}
        assert blas_threads() == {1}
        # Products of the data between Numba parallel kernels have their
        # own, higher threshold; the k-means start passes the general one.
        between = _threads.PRODUCT_BETWEEN_KERNELS
        assert between > _threads.LARGE_PRODUCT
        with dense_product_threads(between - 1, large=between):
            assert blas_threads() == {1}
        with dense_product_threads(between, large=between):
            assert blas_threads() == {2}
    with thread_limits(1, blas=1), dense_product_threads(10 * _threads.LARGE_PRODUCT):
        assert blas_threads() == {1}


def test_data_products_use_the_between_kernels_threshold(monkeypatch):
    """The fit's wide products of the data (dense, no square root: BLAS)
    ask for BLAS threads from PRODUCT_BETWEEN_KERNELS multiply-adds on; the
    k-means start's products from LARGE_PRODUCT; thin, CSR and square-root
    products run in Numba (or in single-threaded BLAS on Python threads)
    and ask for none."""
    from flexcmh_fast import _threads
    from flexcmh_fast._preprocess import Preprocessor
    from flexcmh_fast.flexcmh import _features, _start, _tuning

    asked = []

    def spy(multiply_adds, threads=None, large=_threads.LARGE_PRODUCT):
        asked.append((multiply_adds, large))
        return _threads.dense_product_threads(multiply_adds, threads, large)

    monkeypatch.setattr(_features, "dense_product_threads", spy)
    monkeypatch.setattr(_start, "dense_product_threads", spy)
    rng = np.random.default_rng(0)
    X = rng.random((30, 20))
    f = _features.Features(X, np.float64)
    f.xz(np.ones((20, 4)))
    f.xth(np.ones((30, 4)))
    assert asked == []                      # thin: the streaming kernels
    monkeypatch.setattr(_tuning, "STREAM_MAX_COLUMNS", 2)
    f.xz(np.ones((20, 4)))
    f.xth(np.ones((30, 4)))
    assert asked == [(30 * 20 * 4, _threads.PRODUCT_BETWEEN_KERNELS)] * 2
    asked.clear()
    _start.xz(X, np.ones((20, 4)))
    assert asked == [(30 * 20 * 4, _threads.LARGE_PRODUCT)]
    asked.clear()
    f.set_preprocessing(Preprocessor("hellinger"))
    f.xz(np.ones((20, 4)))
    f.xth(np.ones((30, 4)))
    g = _features.Features(sp.csr_matrix(X), np.float64)
    g.xz(np.ones((20, 4)))
    g.xth(np.ones((30, 4)))
    assert asked == []


def test_map_concurrently_order_flags_and_errors():
    from flexcmh_fast._threads import map_concurrently

    assert map_concurrently(lambda i, par: (i, par), 3, 1) == [(0, True), (1, True), (2, True)]
    assert map_concurrently(lambda i, par: (i, par), 3, 8) == [(0, False), (1, False),
                                                                (2, False)]
    assert map_concurrently(lambda i, par: (i, par), 1, 4) == [(0, True)]
    assert map_concurrently(lambda i, par: i, 0, 2) == []

    def fail(i, parallel):
        if i == 1:
            raise ValueError("modality 1 failed")
        return i

    with pytest.raises(ValueError, match="modality 1 failed"):
        map_concurrently(fail, 3, 2)


@pytest.mark.parametrize("sparse", [False, True])
def test_rbf_serial_kernels_match_parallel(sparse):
    """The GIL-free serial RBF kernels (used on several threads at once) give
    exactly the parallel kernels' features."""
    from flexcmh_fast._rbf import kernel_block

    rng = np.random.default_rng(3)
    Xd = rng.random((37, 9)) * (rng.random((37, 9)) < 0.4)
    X = sp.csr_matrix(Xd) if sparse else Xd
    A = rng.random((11, 9))
    A[0] = Xd[0]                                   # a zero distance
    a_sq = np.einsum("ij,ij->i", A, A)
    par = kernel_block(X, A, a_sq, 0.7, np.empty((37, 11)))
    ser = kernel_block(X, A, a_sq, 0.7, np.empty((37, 11)), parallel=False)
    np.testing.assert_array_equal(ser, par)
    np.testing.assert_allclose(ser, R.rbf_features(Xd, A, 0.7), rtol=1e-12, atol=1e-14)
    assert ser[0, 0] == 1.0


def test_kernel_encoders_on_threads_match_one_thread(monkeypatch):
    """With more than one thread the blocks of rows of the kernel encoders
    and of the encoding of the aligned rows run concurrently (serial kernels
    on Python threads, sums added in block order); the model is
    bit-identical to the one-thread fit."""
    from flexcmh_fast.flexcmh import _encoder as Enc

    X0, X1, _, _ = planted(n_per=40, seed=5, sparse=True)
    pairs = np.stack([np.arange(60), np.arange(60)], 1)
    monkeypatch.setattr(T, "ENC_BLOCK", 13)               # several blocks of rows
    workers = []
    real = Enc.imap_concurrently

    def spy(func, n_items, n_workers):
        workers.append((n_items, n_workers))
        return real(func, n_items, n_workers)

    monkeypatch.setattr(Enc, "imap_concurrently", spy)
    models = [fc.train([X0, X1], pairs, n_bits=16, n_clusters=4, random_state=0,
                       n_threads=threads) for threads in (1, 2)]
    # Per fit: each modality's Gram sums, then each modality's encoded rows.
    assert [w for _, w in workers] == [1] * 4 + [2] * 4
    assert all(n_items > 1 for n_items, _ in workers)
    one, two = models
    assert sp.issparse(X1)
    for m in range(2):
        np.testing.assert_array_equal(one.anchors_[m], two.anchors_[m])
        np.testing.assert_array_equal(one.encoder_weights_[m], two.encoder_weights_[m])
        assert one.sigmas_[m] == two.sigmas_[m]
        np.testing.assert_array_equal(one.encode([X0, X1][m], m), two.encode([X0, X1][m], m))
    np.testing.assert_array_equal(one.code_.R, two.code_.R)


def test_code_sample_drawn_once(monkeypatch):
    """More aligned rows than CODE_SAMPLE: every iteration's in-loop code
    function is fitted on the same sampled rows (a new subset each iteration
    moved the codes and kept the fit from converging)."""
    from flexcmh_fast.flexcmh import _partition as P

    X0, X1, _, _ = planted(n_per=25, seed=16)
    monkeypatch.setattr(T, "CODE_SAMPLE", 30)
    seen = []
    aligned_rows = P.Partition.aligned_rows

    def spy(part, sample):
        rows = aligned_rows(part, sample)
        if sample is not None:
            seen.append(rows[0])
        return rows

    monkeypatch.setattr(P.Partition, "aligned_rows", spy)
    fc.train([X0, X1], "all", n_bits=8, n_clusters=4, random_state=0, max_iter=6, tol=0)
    assert len(seen) >= 6 and 10 <= seen[0].size <= 50
    for rows in seen[1:]:
        np.testing.assert_array_equal(rows, seen[0])


def test_objective_reuses_gram_of_h_only_while_h_is_unchanged():
    """The reconstruction term reuses H^T H from the Z statistics; after a
    cluster relabelling (``permute``) it must still equal
    ``sum_m ||X_m - H_m Z_m^T||^2`` computed from scratch."""
    from flexcmh_fast.flexcmh import _partition as P

    rng = np.random.default_rng(3)
    k, n = 4, 50
    Xs = [rng.standard_normal((n, 6)), sp.random(n, 9, density=0.4, format="csr",
                                                 random_state=1)]
    part = P.Partition(Xs, k, 2, 1.0)
    P.init_indicators(part, [("assign", rng.integers(0, k, n)) for _ in Xs])
    Zs = [rng.standard_normal((X.shape[1], k)) for X in Xs]
    P.semi_nmf_sweep(part, Zs)
    part.set_z(Zs)
    part.gamma, part.disagreements = {}, 0

    def from_scratch():
        dense = [X.toarray() if sp.issparse(X) else X for X in Xs]
        return sum(float(((X - H @ Z.T) ** 2).sum())
                   for X, H, Z in zip(dense, part.H, part.Z))

    assert part.gram_H is not None
    np.testing.assert_allclose(part.objective_sums()[1], from_scratch(), rtol=1e-10)
    part.permute(1, np.array([2, 0, 3, 1]))
    np.testing.assert_allclose(part.objective_sums()[1], from_scratch(), rtol=1e-10)
