"""Tests for the peer baselines (flexcmh_fast.baselines): CCA-ITQ and SCM
against plain numpy references, CMFH against a dense reference of its
update rules and its objective's monotonicity, sparse = dense, bad input,
persistence, determinism, weak pairs and retrieval quality."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

import flexcmh_fast as fc
from flexcmh_fast import metrics
from flexcmh_fast.baselines import _cca_itq
from flexcmh_fast.baselines._linear import TrainingRows
from flexcmh_fast.search import unpack_codes

METHODS = ("cca_itq", "cmfh", "scm")


def make_data(n=150, dims=(12, 30), n_classes=4, seed=0, sparse_text=True):
    """Two modalities from shared classes; modality 1 non-negative and
    sparse-ish (CSR when ``sparse_text``), like bag-of-words text."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, n_classes, n)
    onehot = np.eye(n_classes)[lab]
    X0 = (onehot @ rng.standard_normal((n_classes, dims[0]))
          + 0.8 * rng.standard_normal((n, dims[0])))
    X1 = np.maximum(onehot @ rng.standard_normal((n_classes, dims[1]))
                    + 0.8 * rng.standard_normal((n, dims[1])) - 0.5, 0.0)
    return [X0, sp.csr_matrix(X1) if sparse_text else X1], lab


def fit(method, Xs, lab, n_bits=8, pairs="all", seed=0, **params):
    return fc.train(Xs, pairs, n_bits=n_bits, method=method, labels=[lab, lab],
                    random_state=seed, n_threads=1, **params)


def signs(model, X, m):
    return model.encode(X, m, packed=False).astype(np.float64)


# --------------------------------------------------------------------------
# Dense numpy references, written from the objectives (docs/baselines.md)
# --------------------------------------------------------------------------
def ridged_cov(Xc, reg):
    C = Xc.T @ Xc / Xc.shape[0]
    return C + reg * np.trace(C) / C.shape[0] * np.eye(C.shape[0])


def inv_sqrt(C):
    w, Q = np.linalg.eigh(C)
    return (Q / np.sqrt(w)) @ Q.T


def reference_cca_itq(X0, X1, n_bits, seed, reg=1e-4, power=4.0, n_iter=50):
    """CCA by symmetric whitening (not the Cholesky route of the package),
    then ITQ; returns the two projections (d_m x n_bits) and the losses."""
    Xc = [X0 - X0.mean(0), X1 - X1.mean(0)]
    n = X0.shape[0]
    S0, S1 = inv_sqrt(ridged_cov(Xc[0], reg)), inv_sqrt(ridged_cov(Xc[1], reg))
    U, s, Vt = np.linalg.svd(S0 @ (Xc[0].T @ Xc[1] / n) @ S1)
    k = min(n_bits, X0.shape[1], X1.shape[1])
    W0, W1 = S0 @ U[:, :k], S1 @ Vt[:k].T
    for j in range(k):   # canonical sign: largest |entry| of W0's column positive
        if W0[np.argmax(np.abs(W0[:, j])), j] < 0:
            W0[:, j] *= -1
            W1[:, j] *= -1
    W0, W1 = W0 * s[:k] ** power, W1 * s[:k] ** power
    V = np.vstack([Xc[0] @ W0, Xc[1] @ W1])
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.standard_normal((n_bits, k)))
    losses = []
    for _ in range(n_iter):
        B = np.where(V @ R.T >= 0, 1.0, -1.0)
        U2, _, Q2t = np.linalg.svd(B.T @ V, full_matrices=False)
        R = U2 @ Q2t
        losses.append(((B - V @ R.T) ** 2).sum() / V.shape[0])
    return W0 @ R.T, W1 @ R.T, np.array(losses)


def reference_scm(X0, X1, lab, n_bits, reg=1e-4):
    """Sequential SCM with the n x n similarity and residual formed
    explicitly and each bit from the generalised symmetric eigenproblem
    [[0, Cxy], [Cyx, 0]] w = l blockdiag(Cxx, Cyy) w."""
    Xc, Yc = X0 - X0.mean(0), X1 - X1.mean(0)
    n, dx = Xc.shape
    Y = np.eye(lab.max() + 1)[lab]
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    S = 2 * Yn @ Yn.T - 1
    R = n_bits * S
    Cxx, Cyy = ridged_cov(Xc, reg), ridged_cov(Yc, reg)
    Bx, By, objective = [], [], []
    for _ in range(n_bits):
        Cxy = Xc.T @ R @ Yc / n
        A = np.block([[np.zeros((dx, dx)), Cxy], [Cxy.T, np.zeros((Yc.shape[1],) * 2)]])
        D = scipy.linalg.block_diag(Cxx, Cyy)
        _, vecs = scipy.linalg.eigh(A, D)
        w = vecs[:, -1]
        bx = np.where(Xc @ w[:dx] >= 0, 1.0, -1.0)
        by = np.where(Yc @ w[dx:] >= 0, 1.0, -1.0)
        R = R - np.outer(bx, by)
        Bx.append(bx)
        By.append(by)
        objective.append((R ** 2).sum() / n ** 2)
    return np.array(Bx).T, np.array(By).T, np.array(objective)


def reference_cmfh(X0, X1, n_bits, seed, lam=0.5, mu=100.0, gamma=0.01, n_iter=10):
    """CMFH's update rules on dense centred data, and J evaluated from its
    definition; returns the objective per iteration and the final P_m."""
    Xs = [X0 - X0.mean(0), X1 - X1.mean(0)]
    lams = (lam, 1 - lam)
    V = np.random.default_rng(seed).standard_normal((X0.shape[0], n_bits))
    I = np.eye(n_bits)
    history = []
    for _ in range(n_iter):
        Us = [np.linalg.solve(V.T @ V + gamma / lm * I, V.T @ X) for lm, X in zip(lams, Xs)]
        Ps = [np.linalg.solve(X.T @ X + gamma / mu * np.eye(X.shape[1]), X.T @ V) for X in Xs]
        lhs = sum(lm * U @ U.T for lm, U in zip(lams, Us)) + (2 * mu + gamma) * I
        rhs = sum(lm * X @ U.T + mu * X @ P for lm, X, U, P in zip(lams, Xs, Us, Ps))
        V = np.linalg.solve(lhs, rhs.T).T
        J = (sum(lm * ((X - V @ U) ** 2).sum() for lm, X, U in zip(lams, Xs, Us))
             + mu * sum(((V - X @ P) ** 2).sum() for X, P in zip(Xs, Ps))
             + gamma * (sum((U ** 2).sum() for U in Us) + sum((P ** 2).sum() for P in Ps)
                        + (V ** 2).sum()))
        history.append(J)
    Ps = [np.linalg.solve(X.T @ X + gamma / mu * np.eye(X.shape[1]), X.T @ V) for X in Xs]
    return np.array(history), Ps, np.where(V >= 0, 1, -1)


# --------------------------------------------------------------------------
# Against the references
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [5, 8, 23])   # 23 > d_0 = 12: rectangular ITQ
def test_cca_itq_matches_numpy_reference(n_bits):
    Xs, lab = make_data(sparse_text=False)
    model = fit("cca_itq", Xs, lab, n_bits=n_bits, seed=3)
    W0, W1, losses = reference_cca_itq(Xs[0], Xs[1], n_bits, seed=3)
    np.testing.assert_allclose(model.projections_[0], W0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.projections_[1], W1, rtol=1e-6, atol=1e-9)
    # ITQ stops at its fixed point (tol=0): the reference's later losses repeat it
    n_iter = model.n_iter_
    np.testing.assert_allclose(model.history_["objective"], losses[:n_iter], rtol=1e-8)
    np.testing.assert_allclose(losses[n_iter:], losses[n_iter - 1], rtol=1e-12)
    np.testing.assert_array_equal(signs(model, Xs[0], 0), np.where(
        (Xs[0] - Xs[0].mean(0)) @ W0 >= 0, 1, -1))


def test_cca_directions_are_canonical():
    """W_m^T C_mm W_m = I and W_0^T C_01 W_1 = diag(correlations), decreasing."""
    Xs, _ = make_data(sparse_text=False)
    reg = 1e-3
    rows = np.arange(Xs[0].shape[0])
    means, W0, W1, corr = _cca_itq.cca_directions(TrainingRows(Xs[0], rows),
                                                  TrainingRows(Xs[1], rows), 6, reg)
    Xc = [X - X.mean(0) for X in Xs]
    n = Xs[0].shape[0]
    np.testing.assert_allclose(W0.T @ ridged_cov(Xc[0], reg) @ W0, np.eye(6), atol=1e-9)
    np.testing.assert_allclose(W1.T @ ridged_cov(Xc[1], reg) @ W1, np.eye(6), atol=1e-9)
    np.testing.assert_allclose(W0.T @ (Xc[0].T @ Xc[1] / n) @ W1, np.diag(corr), atol=1e-9)
    assert np.all(np.diff(corr) <= 1e-12) and 0 < corr[0] < 1


def test_itq_loss_never_increases():
    Xs, lab = make_data()
    model = fit("cca_itq", Xs, lab, n_bits=16, seed=1)
    losses = model.history_["objective"]
    assert np.all(np.diff(losses) <= 1e-9 * losses[:-1])


@pytest.mark.parametrize("n_bits", [1, 6, 40])   # 40 bits > both dims
def test_scm_matches_numpy_reference(n_bits):
    Xs, lab = make_data(n=90, dims=(7, 11), sparse_text=False, seed=2)
    model = fit("scm", Xs, lab, n_bits=n_bits)
    Bx, By, objective = reference_scm(Xs[0], Xs[1], lab, n_bits)
    ours_x, ours_y = signs(model, Xs[0], 0), signs(model, Xs[1], 1)
    # each bit is defined up to flipping both modalities' signs together
    flip = np.where((ours_x * Bx).sum(axis=0) >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(ours_x * flip, Bx)
    np.testing.assert_array_equal(ours_y * flip, By)
    np.testing.assert_allclose(model.history_["objective"], objective, rtol=1e-9)


def test_cmfh_matches_dense_reference_and_objective_never_increases():
    Xs, lab = make_data()
    dense = [Xs[0], Xs[1].toarray()]
    model = fit("cmfh", Xs, lab, n_bits=6, seed=4, max_iter=10, tol=0.0)
    ref_hist, ref_P, ref_B = reference_cmfh(dense[0], dense[1], 6, seed=4)
    ours = model.history_["objective"]
    np.testing.assert_allclose(ours, ref_hist, rtol=1e-8)
    for m in range(2):
        np.testing.assert_allclose(model.projections_[m], ref_P[m], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(unpack_codes(model.codes_, 6), ref_B)
    assert np.all(np.diff(ours) <= 1e-10 * ours[:-1])
    terms = {name: values[-1] for name, values in model.history_.items()}
    assert terms["objective"] == pytest.approx(
        sum(v for k, v in terms.items() if k != "objective"), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("params", [{}, {"lam": 0.9, "mu": 1.0, "gamma": 1.0}])
def test_cmfh_objective_never_increases(seed, params):
    Xs, lab = make_data(seed=seed)
    model = fit("cmfh", Xs, lab, n_bits=12, seed=seed, max_iter=40, tol=0.0, **params)
    J = model.history_["objective"]
    assert len(J) == 40
    assert np.all(np.diff(J) <= 1e-10 * J[:-1])


# --------------------------------------------------------------------------
# Sparse input, determinism, weak pairs, persistence
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_sparse_input_equals_dense(method):
    Xs, lab = make_data()
    dense = [Xs[0], Xs[1].toarray()]
    both_sparse = [sp.csr_matrix(Xs[0]), Xs[1]]
    a = fit(method, Xs, lab, n_bits=10)
    b = fit(method, dense, lab, n_bits=10)
    c = fit(method, both_sparse, lab, n_bits=10)
    for other in (b, c):
        for m in range(2):
            np.testing.assert_allclose(a.projections_[m], other.projections_[m],
                                       rtol=1e-6, atol=1e-9)
            np.testing.assert_array_equal(a.train_codes_[m], other.train_codes_[m])
    np.testing.assert_array_equal(a.encode(Xs[1], 1), a.encode(dense[1], 1))


@pytest.mark.parametrize("method", METHODS)
def test_sparse_input_never_densified(method, monkeypatch):
    """Only feature-by-feature products of sparse input are made dense,
    never a matrix with one row per sample."""
    Xs, lab = make_data(n=150)
    Xs = [sp.csr_matrix(Xs[0]), Xs[1]]
    seen = []

    def guard(original):
        def toarray(self, *args, **kwargs):
            seen.append(self.shape)
            assert 150 not in self.shape, f"densified a {self.shape} sparse matrix"
            return original(self, *args, **kwargs)
        return toarray

    for cls in (sp.csr_matrix, sp.csc_matrix):
        monkeypatch.setattr(cls, "toarray", guard(cls.toarray))
        monkeypatch.setattr(cls, "todense", lambda self, *a, **k: pytest.fail("todense"))
    model = fit(method, Xs, lab, n_bits=8)
    model.encode(Xs[1], 1)
    assert seen          # the covariance products did go through toarray


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_fixed_random_state(method):
    Xs, lab = make_data()
    a, b = fit(method, Xs, lab, seed=7), fit(method, Xs, lab, seed=7)
    for m in range(2):
        np.testing.assert_array_equal(a.projections_[m], b.projections_[m])
        np.testing.assert_array_equal(a.train_codes_[m], b.train_codes_[m])


@pytest.mark.parametrize("method", METHODS)
def test_weak_pairs_train_on_known_pairs_only(method):
    """With a pair list the model equals the one trained on the paired rows
    alone; every training row of each modality still gets a code."""
    Xs, lab = make_data(n=160)
    rng = np.random.default_rng(0)
    rows0 = rng.choice(160, 70, replace=False)
    rows1 = rng.permutation(160)[:130]            # modality 1 has other extra rows
    X1 = sp.vstack([Xs[1][rows0], Xs[1][np.setdiff1d(rows1, rows0)]]).tocsr()
    lab1 = np.concatenate([lab[rows0], lab[np.setdiff1d(rows1, rows0)]])
    pairs = np.stack([rows0, np.arange(70)], axis=1)[::-1].copy()   # any pair order
    weak = fc.train([Xs[0], X1], pairs, n_bits=8, method=method, labels=[lab, lab1],
                    random_state=5, n_threads=1)
    order = pairs[:, 0]
    alone = fc.train([Xs[0][order], X1[pairs[:, 1]]], "all", n_bits=8, method=method,
                     labels=[lab[order], lab1[pairs[:, 1]]], random_state=5, n_threads=1)
    for m in range(2):
        np.testing.assert_allclose(weak.projections_[m], alone.projections_[m], atol=1e-9)
    assert weak.train_codes_[0].shape == (160, 1)
    assert weak.train_codes_[1].shape == (X1.shape[0], 1)
    np.testing.assert_array_equal(weak.codes_, alone.codes_)
    np.testing.assert_array_equal(weak.train_codes_[0][order], alone.train_codes_[0])


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip(method, tmp_path):
    Xs, lab = make_data()
    model = fit(method, Xs, lab, n_bits=13)
    path = tmp_path / f"{method}.npz"
    model.save(path)
    loaded = fc.load(path)
    assert type(loaded) is type(model) and loaded.n_bits_ == 13
    for m, X in enumerate(Xs):
        np.testing.assert_array_equal(loaded.encode(X, m), model.encode(X, m))
        np.testing.assert_array_equal(loaded.train_codes_[m], model.train_codes_[m])
    np.testing.assert_array_equal(loaded.codes_, model.codes_)
    assert list(loaded.history_) == list(model.history_)
    for name, values in model.history_.items():
        np.testing.assert_array_equal(loaded.history_[name], values)
    assert loaded.get_params() == model.get_params()
    assert loaded.n_iter_ == model.n_iter_


def test_load_rejects_inconsistent_file(tmp_path):
    from flexcmh_fast._persist import read_state, save_state

    Xs, lab = make_data()
    fit("cmfh", Xs, lab).save(tmp_path / "good.npz")
    _, meta, arrays = read_state(tmp_path / "good.npz")
    assert meta["n_bits"] == 8 and meta["n_features"] == [12, 30]
    arrays["projection_1"] = arrays["projection_1"][:, :3]
    save_state(tmp_path / "bad.npz", "CMFH", meta, arrays)
    with pytest.raises(fc.FileFormatError, match=r"entry 'projection_1' must have shape "
                                                 r"\(30, 8\)"):
        fc.load(tmp_path / "bad.npz")
    del arrays["mean_0"]
    save_state(tmp_path / "missing.npz", "CMFH", meta, arrays)
    with pytest.raises(fc.FileFormatError, match="entry 'mean_0' is missing"):
        fc.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("method", METHODS)
def test_state_check_accepts_saved_state_and_rejects_edits(method, tmp_path):
    from flexcmh_fast._persist import read_state, save_state
    from flexcmh_fast.baselines._state import check_linear_hash_state

    Xs, lab = make_data()
    model = fit(method, Xs, lab, n_bits=11)
    model.save(tmp_path / "good.npz")
    kind, meta, arrays = read_state(tmp_path / "good.npz")
    check_linear_hash_state(meta, arrays, type(model).HISTORY_TERMS)
    for key, bad in (("history", np.zeros((3, 9))), ("mean_1", np.zeros(29)),
                     ("train_codes_0", np.zeros((150, 2), dtype=np.uint8)[:, :1])):
        edited = dict(arrays, **{key: bad})
        save_state(tmp_path / "bad.npz", kind, meta, edited)
        with pytest.raises(fc.FileFormatError, match=f"entry '{key}'"):
            fc.load(tmp_path / "bad.npz")


def test_encode_edge_cases():
    Xs, lab = make_data()
    model = fit("scm", Xs, lab, n_bits=70)       # not a multiple of 8 or 64
    assert model.encode(Xs[0][:0], 0).shape == (0, 9)
    one = model.encode(Xs[1][:1], 1, packed=False)
    assert one.shape == (1, 70) and set(np.unique(one)) <= {-1, 1}
    with pytest.raises(ValueError, match="'X' must have 30 features"):
        model.encode(Xs[0], 1)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method, params, exc, match", [
    ("cca_itq", {"n_clusters": 3}, TypeError, r"Unknown parameter\(s\) \['n_clusters'\].*"
                                              r"Valid parameters: \['callback', 'eigen_power'"),
    ("cca_itq", {"reg": 0.0}, ValueError, r"'reg' must be a finite float in \(0"),
    ("cca_itq", {"eigen_power": -1}, ValueError, "'eigen_power'"),
    ("cca_itq", {"max_iter": -1}, ValueError, r"'max_iter' must be an int >= 0. Got -1"),
    ("cmfh", {"lam": 1.0}, ValueError, r"'lam' must be a finite float in \(0.0, 1.0\)"),
    ("cmfh", {"mu": "big"}, TypeError, "'mu' must be a finite float"),
    ("cmfh", {"gamma": -1.0}, ValueError, "'gamma'"),
    ("cmfh", {"mu": -1.0}, ValueError,
     r"'mu' must be a finite float in \(0.0, inf\]. Got -1.0 instead."),
    ("cmfh", {"tol": float("nan")}, ValueError, "'tol'"),
    ("scm", {"reg": None}, TypeError, "'reg'"),
    ("scm", {"lam": 0.5}, TypeError, r"Unknown parameter\(s\) \['lam'\]"),
    ("scm", {"max_iter": 5}, ValueError, r"'max_iter' must be None for SCM \(it learns "
                                         r"exactly n_bits bits.*Got 5 instead"),
])
def test_bad_params_name_the_argument(method, params, exc, match):
    Xs, lab = make_data(n=40)
    with pytest.raises(exc, match=match):
        fit(method, Xs, lab, **params)


@pytest.mark.parametrize("method", METHODS)
def test_bad_data_errors(method):
    Xs, lab = make_data(n=40)
    with pytest.raises(ValueError, match="'pairs' must give at least 2 pairs"):
        fc.train(Xs, None, method=method, labels=[lab, lab])
    with pytest.raises(ValueError, match="'pairs' must give at least 2 pairs.*Got 1"):
        fc.train(Xs, np.array([[0, 0]]), method=method, labels=[lab, lab])
    with pytest.raises(ValueError, match="exactly 2 matrices. Got 3"):
        fc.train(Xs + [Xs[0]], "all", method=method, labels=[lab] * 3)


def test_scm_needs_labels():
    Xs, lab = make_data(n=40)
    with pytest.raises(ValueError, match="SCM needs 'labels'"):
        fc.train(Xs, "all", method="scm")
    with pytest.raises(ValueError, match="'labels' disagree"):
        fc.train(Xs, "all", method="scm", labels=[lab, (lab + 1) % 4])


# --------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_well_above_chance_on_synthetic_data(method):
    data = fc.datasets.make_multimodal(n_samples=900, random_state=0)
    X, y = data.modalities, data.labels
    tr, te = np.arange(600), np.arange(600, 900)
    model = fc.train([M[tr] for M in X], "all", n_bits=32, method=method,
                     labels=[y[tr], y[tr]], random_state=0, n_threads=1)
    for q, db in ((0, 1), (1, 0)):
        mAP = metrics.mean_average_precision(model.encode(X[q][te], q),
                                             model.encode(X[db][tr], db),
                                             y[te], y[tr], n_bits=32)
        assert mAP > 0.35, (method, q, mAP)          # chance ~ 0.1 (10 classes)


# --------------------------------------------------------------------------
# float32: a float32 model, without a copy of the data, as good as float64
# --------------------------------------------------------------------------
def fitted_float_dtypes(model):
    """The dtype of every float array the model holds (``name_`` attributes
    and their lists)."""
    found = {}
    for name, value in vars(model).items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if name.endswith("_") and isinstance(item, np.ndarray) and item.dtype.kind == "f":
                found[f"{name}[{i}]"] = item.dtype
    return found


def multimodal(n=1500, seed=0, dtype=np.float32):
    data = fc.datasets.make_multimodal(n_samples=n, random_state=seed)
    return [X.astype(dtype) for X in data.modalities], np.asarray(data.labels)


def map_both_ways(model, Xs, lab, train, test):
    return [metrics.mean_average_precision(model.encode(Xs[q][test], q),
                                           model.encode(Xs[1 - q][train], 1 - q),
                                           lab[test], lab[train], n_bits=model.n_bits_)
            for q in (0, 1)]


def reference_products(X, rows, Z, W):
    """Centred products of rows ``rows`` of ``X`` in float64 numpy."""
    Xp = np.asarray(X[rows].toarray() if sp.issparse(X) else X[rows], dtype=np.float64)
    Xc = Xp - Xp.mean(axis=0)
    return {"mean": Xp.mean(axis=0), "gram": Xc.T @ Xc, "t_dot": Xc.T @ Z, "dot": Xc @ W,
            "centred": Xc}


@pytest.mark.parametrize("block_rows", [7, 64, 1024])      # partial, several, one block
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_float32_training_rows_match_float64_reference(layout, block_rows, monkeypatch):
    """The blocked float32 products equal float64 numpy on the same values,
    for every row or a gathered subset, including a column whose mean is far
    larger than its spread (a float32 sum of uncentred squares would lose
    it entirely); CSR blocks (by stored values) end elsewhere than the
    dense blocks of the other modality."""
    from flexcmh_fast.baselines import _linear

    monkeypatch.setattr(_linear, "BLOCK_ROWS", block_rows)
    monkeypatch.setattr(_linear, "CSR_BLOCK_NNZ", 3 * block_rows)
    rng = np.random.default_rng(0)
    n, d = 150, 9
    dense = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.4)
    dense[:, 0] = 1e4 + rng.standard_normal(n)
    X = (sp.csr_matrix(dense) if layout == "csr" else dense).astype(np.float32)
    other = rng.standard_normal((n, 4)).astype(np.float32)
    Z, W, w = rng.standard_normal((n, 3)), rng.standard_normal((d, 5)), rng.standard_normal(d)
    for rows in (np.arange(n), rng.permutation(n)[:97]):
        ref = reference_products(X, rows, Z[:len(rows)], W)
        got = TrainingRows(X, rows)
        assert got.blocked and got.n == len(rows)
        assert got.bounds[0] == 0 and got.bounds[-1] == len(rows)
        assert (len(got.bounds) > 2) == (block_rows < len(rows))
        np.testing.assert_allclose(got.mean, ref["mean"], rtol=1e-12)
        # Gram and cross products: float64 arithmetic on the float32 values
        # (CSR: centred analytically, exact up to float64 rounding of the
        # uncentred sums).
        atol = 1e-14 * n * 1e8 if layout == "csr" else 1e-6
        np.testing.assert_allclose(got.gram(), ref["gram"], rtol=1e-9, atol=atol)
        o = TrainingRows(other, rows)
        oc = other[rows].astype(np.float64) - other[rows].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(got.cross(o), ref["centred"].T @ oc, rtol=1e-9, atol=atol)
        np.testing.assert_allclose(o.cross(got), oc.T @ ref["centred"], rtol=1e-9, atol=atol)
        # Thin products: float32 within a block, float64 across blocks.
        scale = np.abs(ref["centred"]).max()
        np.testing.assert_allclose(got.t_dot(Z[:len(rows)]), ref["t_dot"],
                                   atol=1e-5 * scale * len(rows))
        np.testing.assert_allclose(got.dot(W), ref["dot"], atol=1e-5 * scale * d)
        b, xtb = got.signs_t_dot(w)
        values = ref["centred"] @ w
        clear = np.abs(values) > 1e-3 * scale
        np.testing.assert_array_equal(b[clear], np.where(values[clear] >= 0, 1.0, -1.0))
        np.testing.assert_allclose(xtb, ref["centred"].T @ b, atol=1e-5 * scale * len(rows))


@pytest.mark.parametrize("method", METHODS)
def test_float32_fit_is_float32_and_as_good_as_float64(method):
    Xs32, lab = multimodal()
    Xs64 = [X.astype(np.float64) for X in Xs32]
    train, test = np.arange(1200), np.arange(1200, 1500)
    models = [fc.train([X[train] for X in Xs], "all", method=method, n_bits=32,
                       labels=[lab[train]] * 2, random_state=0, n_threads=1)
              for Xs in (Xs32, Xs64)]
    m32, m64 = models
    dtypes = fitted_float_dtypes(m32)
    assert "projections_[1]" in dtypes and "means_[0]" in dtypes
    assert set(dtypes.values()) == {np.dtype(np.float32)}, dtypes
    assert set(fitted_float_dtypes(m64).values()) == {np.dtype(np.float64)}
    assert abs(m32.n_iter_ - m64.n_iter_) <= 0.1 * m64.n_iter_
    map32, map64 = (map_both_ways(m, Xs, lab, train, test)
                    for m, Xs in ((m32, Xs32), (m64, Xs64)))
    np.testing.assert_allclose(map32, map64, atol=0.01)
    for m in range(2):
        if method != "cmfh":   # (CMFH's training codes are its learned codes)
            # The training codes are the model's own codes of its training rows.
            np.testing.assert_array_equal(m32.encode(Xs32[m][train], m),
                                          m32.train_codes_[m])
        # A float64 query to a float32 model gives the codes of its float32 cast.
        query = Xs64[m][test] * (1.0 + 1e-9)
        np.testing.assert_array_equal(m32.encode(query, m),
                                      m32.encode(query.astype(np.float32), m))


@pytest.mark.parametrize("method", METHODS)
def test_mixed_dtypes_give_a_float64_model(method):
    """One float32 modality: a float64 model, from the float32 values (the
    model of their float64 cast, up to the float32 rounding of the thin
    products); a float32 query to a float64 model gives the codes of its
    float64 cast."""
    Xs32, lab = multimodal(n=400)
    mixed = [Xs32[0], Xs32[1].astype(np.float64)]
    cast = [X.astype(np.float64) for X in Xs32]
    a, b = (fc.train(Xs, "all", method=method, n_bits=16, labels=[lab, lab], random_state=0,
                     n_threads=1, **({"max_iter": 5} if method == "cmfh" else {}))
            for Xs in (mixed, cast))
    assert set(fitted_float_dtypes(a).values()) == {np.dtype(np.float64)}
    for m in range(2):
        np.testing.assert_allclose(a.projections_[m], b.projections_[m],
                                   atol=1e-3 * np.abs(b.projections_[m]).max())
        np.testing.assert_array_equal(a.encode(Xs32[m], m), a.encode(cast[m], m))
        if method != "cmfh":
            np.testing.assert_array_equal(a.encode(Xs32[m], m), a.train_codes_[m])


@pytest.mark.parametrize("method", METHODS)
def test_save_load_keeps_float32(method, tmp_path):
    Xs32, lab = multimodal(n=400)
    model = fc.train(Xs32, "all", method=method, n_bits=13, labels=[lab, lab],
                     random_state=0, n_threads=1)
    model.save(tmp_path / "m.npz")
    back = fc.load(tmp_path / "m.npz")
    assert fitted_float_dtypes(back) == fitted_float_dtypes(model)
    assert set(fitted_float_dtypes(back).values()) == {np.dtype(np.float32)}
    for m in range(2):
        np.testing.assert_array_equal(back.projections_[m], model.projections_[m])
        np.testing.assert_array_equal(back.encode(Xs32[m], m), model.encode(Xs32[m], m))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_float32_fit_makes_no_copy_of_the_data(method, layout, monkeypatch):
    """No float64 copy and no full-size copy of the data appear during a
    float32 fit on three quarters of the rows (known pairs): the traced peak
    stays well below the size of the larger modality (for CSR: its stored
    values and column indices).  The blocks of rows the fit and the input
    checks read are made smaller than in a real fit so that they stay small
    next to the data of this small test."""
    import tracemalloc

    from flexcmh_fast import _validation
    from flexcmh_fast.baselines import _linear

    monkeypatch.setattr(_validation, "_CHECK_BLOCK_BYTES", 1 << 20)
    monkeypatch.setattr(_linear, "BLOCK_ROWS", 256)
    monkeypatch.setattr(_linear, "CSR_BLOCK_NNZ", 1 << 16)
    rng = np.random.default_rng(0)
    n, lab = 16_000, rng.integers(0, 8, 16_000)
    if layout == "dense":
        X = np.maximum(rng.standard_normal((8, 768)).astype(np.float32)[lab]
                       + rng.standard_normal((n, 768), dtype=np.float32), 0)
        size = X.nbytes
    else:
        X = sp.random(n, 384, density=0.5, format="csr", dtype=np.float32, random_state=0)
        X.data += np.repeat(lab, np.diff(X.indptr)).astype(np.float32)
        size = X.data.nbytes + X.indices.nbytes
    T = (rng.standard_normal((8, 24)).astype(np.float32)[lab]
         + rng.standard_normal((n, 24), dtype=np.float32))
    known = np.sort(rng.permutation(n)[: 3 * n // 4])
    estimator = {"cca_itq": fc.CCAITQ(n_bits=8, random_state=0, n_threads=1),
                 "cmfh": fc.CMFH(n_bits=8, max_iter=3, random_state=0, n_threads=1),
                 "scm": fc.SCM(n_bits=8, n_threads=1)}[method]
    tracemalloc.start()
    try:
        model = estimator.fit([X, T], np.stack([known, known], axis=1), [lab, lab])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.projections_[0].dtype == np.float32
    assert peak < 0.5 * size, (peak, size)
