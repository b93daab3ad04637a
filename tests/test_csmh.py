"""Tests for CSMH (flexcmh_fast.csmh): kernels against numpy references,
monotonicity of every update step, shapes, determinism, persistence and
bad input."""

import numpy as np
import pytest
import scipy.sparse as sp

import flexcmh_fast as fc
from flexcmh_fast.csmh import _solver as _csmh
from flexcmh_fast.search import unpack_codes


def make_data(n=120, dims=(12, 9), n_classes=4, seed=0, multilabel=False):
    rng = np.random.default_rng(seed)
    if multilabel:
        lab = (rng.random((n, n_classes)) < 0.35).astype(np.uint8)
        lab[np.arange(n), rng.integers(0, n_classes, n)] = 1
        lab[-1] = 0   # an object without any label: similar to nothing
        base = lab.astype(float)
    else:
        lab = rng.integers(0, n_classes, n)
        base = np.eye(n_classes)[lab]
    Xs = []
    for d in dims:
        proj = rng.standard_normal((n_classes, d))
        Xs.append(base @ proj + 0.7 * rng.standard_normal((n, d)))
    return Xs, lab


def small_problem(n=60, r=8, seed=0, multilabel=False, alpha=2.0, beta=3.0, gamma=1.5,
                  reg=1e-2):
    """A _Problem on random data plus random codes, for step-wise tests."""
    Xs, lab = make_data(n=n, seed=seed, multilabel=multilabel)
    rng = np.random.default_rng(seed)
    orders = [np.arange(n)] * len(Xs)
    Y = _csmh._label_matrix([lab] * len(Xs), orders)
    Ks = []
    for X in Xs:
        A = X[rng.choice(n, 15, replace=False)]
        K = np.empty((n, 16), dtype=np.float32)
        K[:, :-1] = _csmh.kernel_features(X, A, 3.0, dtype=np.float32)
        K[:, -1] = 1
        Ks.append(K)
    prob = _csmh._Problem(Ks, Y, r, alpha, beta, gamma, reg)
    B = np.where(rng.standard_normal((n, r)) >= 0, 1, -1).astype(np.int8)
    return prob, B, rng


def dense_objective(prob, B, Ws, G):
    """The objective written out with n x n matrices and explicit means:
    the obviously-correct reference for _Problem.terms."""
    n, r = B.shape
    Bf = B.astype(float)
    proj = [K.astype(float) @ W for K, W in zip(prob.Ks, Ws)]
    fit = sum(((Bf - p) ** 2).sum() for p in proj) / n
    ridge = prob.reg * sum((W[:-1] ** 2).sum() for W in Ws)
    marg = cond = 0.0
    for m in range(len(proj)):
        for m2 in range(m + 1, len(proj)):
            marg += ((proj[m].mean(0) - proj[m2].mean(0)) ** 2).sum()
            for c in range(prob.Y.shape[1]):
                w = prob.Y[:, c]
                if w.sum() == 0:
                    continue
                mc = (w[:, None] * proj[m]).sum(0) / w.sum()
                mc2 = (w[:, None] * proj[m2]).sum(0) / w.sum()
                cond += ((mc - mc2) ** 2).sum()
    label = prob.gamma * (((prob.Y - Bf @ G) ** 2).sum() / n + prob.reg * (G ** 2).sum())
    S = 2 * prob.Yn @ prob.Yn.T - 1
    sim = prob.alpha / (n * n * r) * ((r * S - Bf @ Bf.T) ** 2).sum()
    return fit + ridge + prob.beta * (marg + cond) + label + sim


# -------------------------------------------------------------------- kernels
@pytest.mark.parametrize("sparse", [False, True])
def test_kernel_features_match_numpy(sparse):
    rng = np.random.default_rng(1)
    X = rng.random((37, 6)) * (rng.random((37, 6)) < 0.5)
    X[[0, 8, 11]] = 0.0   # empty rows, incl. the first row of a block (8)
    A = rng.random((5, 6))
    ref = np.exp(-((X[:, None, :] - A[None]) ** 2).sum(-1) / (2 * 0.7 ** 2))
    Xin = sp.csr_matrix(X) if sparse else X
    # block_rows=8 crosses block boundaries, incl. a short last block
    got = _csmh.kernel_features(Xin, A, 0.7, block_rows=8)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    got32 = _csmh.kernel_features(Xin, A, 0.7, dtype=np.float32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, rtol=1e-6)


def test_kernel_features_identical_rows_and_empty():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = _csmh.kernel_features(A.copy(), A, 1.0)
    np.testing.assert_allclose(np.diag(got), 1.0)   # distance 0 clipped, never > 1
    assert got.max() <= 1.0
    assert _csmh.kernel_features(np.empty((0, 2)), A, 1.0).shape == (0, 2)


def test_similarity_residual_matches_dense():
    rng = np.random.default_rng(2)
    for multilabel in (False, True):
        _, lab = make_data(n=40, seed=3, multilabel=multilabel)
        Y = _csmh._label_matrix([lab, lab], [np.arange(40)] * 2)
        norms = np.linalg.norm(Y, axis=1, keepdims=True)
        Yn = Y / np.where(norms > 0, norms, 1)
        B = np.where(rng.random((40, 7)) < 0.5, 1.0, -1.0)
        S = 2 * Yn @ Yn.T - 1
        ref = ((7 * S - B @ B.T) ** 2).sum()
        assert np.isclose(_csmh._similarity_residual(B, Yn, 7), ref, rtol=1e-10)


@pytest.mark.parametrize("multilabel", [False, True])
def test_terms_match_dense_reference(multilabel):
    prob, B, rng = small_problem(multilabel=multilabel)
    Ws = prob.w_step(B)
    G = prob.g_step(B)
    assert np.isclose(prob.terms(B, Ws, G)["objective"], dense_objective(prob, B, Ws, G),
                      rtol=1e-9)


# ---------------------------------------------------- monotonicity of steps
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_w_step_is_exact_minimiser(seed):
    prob, B, rng = small_problem(seed=seed)
    G = prob.g_step(B)
    Ws0 = [rng.standard_normal(W.shape) * 0.1 for W in prob.w_step(B)]
    Ws = prob.w_step(B)
    j_star = prob.terms(B, Ws, G)["objective"]
    assert j_star <= prob.terms(B, Ws0, G)["objective"]
    # any small perturbation of any block increases the (convex) objective
    for m in range(len(Ws)):
        for _ in range(3):
            pert = [W.copy() for W in Ws]
            pert[m] += 1e-3 * rng.standard_normal(pert[m].shape)
            assert prob.terms(B, pert, G)["objective"] >= j_star - 1e-10


@pytest.mark.parametrize("beta", [0.0, 3.0])
def test_w_step_matches_dense_normal_equations(beta):
    """Woodbury solve == the full M(A+1)-square normal equations, dense."""
    prob, B, _ = small_problem(beta=beta, seed=6)     # two modalities, n = 60
    Xs, lab = make_data(n=60, dims=(5, 4, 3), seed=6)   # three modalities
    Y = _csmh._label_matrix([lab] * 3, [np.arange(60)] * 3)
    Ks = [np.hstack([_csmh.kernel_features(X, X[:10], 2.0), np.ones((60, 1))]) for X in Xs]
    for problem in (prob, _csmh._Problem(Ks, Y, 8, 1.0, beta, 1.0, 1e-2)):
        n, M = problem.n, problem.M
        K = [k.astype(float) for k in problem.Ks]
        E = [problem.Dt @ k for k in K]
        size = [k.shape[1] for k in K]
        off = np.concatenate([[0], np.cumsum(size)])
        A = np.zeros((off[-1], off[-1]))
        for m in range(M):
            reg = np.full(size[m], n * problem.reg)
            reg[-1] = 0
            A[off[m]:off[m + 1], off[m]:off[m + 1]] = (
                K[m].T @ K[m] + np.diag(reg) + n * beta * (M - 1) * E[m].T @ E[m])
            for m2 in range(M):
                if m2 != m:
                    A[off[m]:off[m + 1], off[m2]:off[m2 + 1]] = -n * beta * E[m].T @ E[m2]
        ref = np.linalg.solve(A, np.vstack([k.T @ B for k in K]))
        got = np.vstack(problem.w_step(B))
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9)


def test_float32_feature_storage_matches_float64(monkeypatch):
    """Past the memory budget the features are stored in float32 and upcast
    block by block: same model up to float32 rounding."""
    Xs, lab = make_data(n=150)
    a = train_small(Xs, lab, n_bits=32)
    monkeypatch.setattr(_csmh, "_FLOAT64_FEATURE_BYTES", 0)
    monkeypatch.setattr(_csmh, "_BLOCK_ROWS", 64)   # several blocks
    b = train_small(Xs, lab, n_bits=32)
    for m in range(2):
        np.testing.assert_allclose(a.weights_[m], b.weights_[m], rtol=1e-3, atol=1e-3)
        agree = (a.encode(Xs[m], m, packed=False) == b.encode(Xs[m], m, packed=False)).mean()
        assert agree > 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_g_step_is_exact_minimiser(seed):
    prob, B, rng = small_problem(seed=seed)
    Ws = prob.w_step(B)
    G = prob.g_step(B)
    j_star = prob.terms(B, Ws, G)["label"]
    for _ in range(5):
        assert prob.terms(B, Ws, G + 1e-3 * rng.standard_normal(G.shape))["label"] >= j_star


def reference_b_step(prob, B, Ws, G, n_sweeps):
    """Plain numpy coordinate descent with the same flip order, evaluating
    the full objective (dense n x n) for every candidate flip."""
    B = B.copy()
    flips = 0
    for _ in range(n_sweeps):
        sweep = 0
        for i in range(B.shape[0]):
            for k in range(B.shape[1]):
                before = dense_objective(prob, B, Ws, G)
                B[i, k] = -B[i, k]
                if dense_objective(prob, B, Ws, G) < before - 1e-9 * abs(before):
                    sweep += 1
                else:
                    B[i, k] = -B[i, k]
        flips += sweep
        if sweep == 0:
            break
    return B, flips


@pytest.mark.parametrize("multilabel", [False, True])
def test_b_step_matches_reference_and_decreases(multilabel):
    prob, B, rng = small_problem(n=18, r=5, multilabel=multilabel, seed=4)
    Ws = [W + 0.3 * rng.standard_normal(W.shape) for W in prob.w_step(B)]
    G = prob.g_step(B)
    ref_B, ref_flips = reference_b_step(prob, B, Ws, G, 2)
    got = B.copy()
    flips = prob.b_step(got, Ws, G, 2)
    assert flips == ref_flips > 0
    np.testing.assert_array_equal(got, ref_B)
    assert dense_objective(prob, got, Ws, G) < dense_objective(prob, B, Ws, G)


@pytest.mark.parametrize("alpha,gamma", [(0.0, 0.0), (5.0, 0.0), (0.0, 2.0), (1.0, 1.0)])
def test_each_step_decreases_objective_on_random_data(alpha, gamma):
    prob, B, rng = small_problem(n=80, r=12, alpha=alpha, gamma=gamma, seed=5)
    Ws = prob.w_step(B)
    G = prob.g_step(B)
    last = prob.terms(B, Ws, G)["objective"]
    for _ in range(4):
        prob.b_step(B, Ws, G, 1)
        j = prob.terms(B, Ws, G)["objective"]
        assert j <= last + 1e-9 * abs(last)
        last = j
        Ws = prob.w_step(B)
        j = prob.terms(B, Ws, G)["objective"]
        assert j <= last + 1e-9 * abs(last)
        last = j
        G = prob.g_step(B)
        j = prob.terms(B, Ws, G)["objective"]
        assert j <= last + 1e-9 * abs(last)
        last = j


def test_history_is_monotone():
    Xs, lab = make_data(n=150)
    model = fc.train(Xs, "all", n_bits=16, method="csmh", labels=[lab, lab],
                     random_state=0, n_threads=1, n_anchors=40, max_iter=8, tol=0.0)
    obj = model.history_["objective"]
    assert len(obj) == model.n_iter_ >= 1
    assert all(b <= a * (1 + 1e-12) for a, b in zip(obj, obj[1:]))
    h = {t: v[0] for t, v in model.history_.items()}
    assert list(h) == list(_csmh.HISTORY_TERMS)
    parts = sum(h[t] for t in ("fit", "ridge", "mmd_marginal", "mmd_conditional",
                               "label", "similarity"))
    assert np.isclose(parts, h["objective"])


# ------------------------------------------------- model: shapes, determinism
def train_small(Xs, lab, **kw):
    params = dict(n_bits=20, method="csmh", labels=[lab] * len(Xs), random_state=3,
                  n_threads=1, n_anchors=30, max_iter=5)
    params.update(kw)
    return fc.train(Xs, "all", **params)


def test_shapes_and_encode():
    Xs, lab = make_data(n=100)
    model = train_small(Xs, lab)
    assert isinstance(model, fc.CSMH) and model.kind == "CSMH"
    assert model.n_bits == 20 and model.n_features_ == [12, 9]
    assert model.codes_.shape == (100, 3) and model.codes_.dtype == np.uint8
    for m, X in enumerate(Xs):
        packed = model.encode(X[:7], m)
        signs = model.encode(X[:7], m, packed=False)
        assert packed.shape == (7, 3) and signs.shape == (7, 20)
        assert signs.dtype == np.int8 and set(np.unique(signs)) <= {-1, 1}
        np.testing.assert_array_equal(unpack_codes(packed, 20), signs)
        assert model.encode(X[:0], m).shape == (0, 3)
    # training codes are label-driven: same-class objects mostly agree
    B = unpack_codes(model.codes_, 20).astype(float)
    same = lab[:, None] == lab[None, :]
    sim = B @ B.T / 20
    assert sim[same].mean() > sim[~same].mean() + 0.5


def test_encode_reference():
    """encode == sign([phi(x), 1] W) computed in plain numpy."""
    Xs, lab = make_data(n=90)
    model = train_small(Xs, lab)
    for m, X in enumerate(Xs):
        A, W, s = model.anchors_[m], model.weights_[m], model.sigmas_[m]
        phi = np.exp(-((X[:, None, :] - A[None]) ** 2).sum(-1) / (2 * s * s))
        ref = np.where(phi @ W[:-1] + W[-1] >= 0, 1, -1)
        np.testing.assert_array_equal(model.encode(X, m, packed=False), ref)


def test_deterministic_and_thread_independent():
    Xs, lab = make_data(n=110)
    a = train_small(Xs, lab, n_threads=1)
    b = train_small(Xs, lab, n_threads=2)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    for m in range(2):
        np.testing.assert_allclose(a.weights_[m], b.weights_[m], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(a.encode(Xs[m], m), b.encode(Xs[m], m))
    c = train_small(Xs, lab, random_state=4)
    assert not np.array_equal(a.anchors_[0], c.anchors_[0])


def test_sparse_input_equals_dense():
    Xs, lab = make_data(n=100)
    Xs[1] = Xs[1] * (np.random.default_rng(0).random(Xs[1].shape) < 0.3)
    dense = train_small(Xs, lab)
    sparse = train_small([Xs[0], sp.csr_matrix(Xs[1])], lab)
    np.testing.assert_array_equal(dense.codes_, sparse.codes_)
    np.testing.assert_array_equal(dense.encode(Xs[1], 1),
                                  sparse.encode(sp.csr_matrix(Xs[1]), 1))


def test_permuted_pairing_reorders_rows():
    Xs, lab = make_data(n=80)
    perm = np.random.default_rng(9).permutation(80)
    # row i of modality 0 is paired with row perm[i] of modality 1
    X1 = np.empty_like(Xs[1])
    X1[perm] = Xs[1]
    lab1 = np.empty_like(lab)
    lab1[perm] = lab
    pairs = np.stack([np.arange(80), perm], axis=1)[::-1].copy()   # any row order
    base = train_small(Xs, lab)
    shuffled = fc.train([Xs[0], X1], pairs, n_bits=20, method="csmh", labels=[lab, lab1],
                        random_state=3, n_threads=1, n_anchors=30, max_iter=5)
    np.testing.assert_array_equal(base.codes_, shuffled.codes_)
    np.testing.assert_array_equal(base.encode(Xs[1], 1), shuffled.encode(Xs[1], 1))
    # train_codes_[m] holds each object's code at its row of modality m
    np.testing.assert_array_equal(shuffled.train_codes_[0], shuffled.codes_)
    np.testing.assert_array_equal(shuffled.train_codes_[1][perm], shuffled.codes_)


def test_three_modalities_and_multilabel():
    Xs, lab = make_data(n=90, dims=(8, 7, 5), multilabel=True)
    model = train_small(Xs, lab, n_bits=12)
    assert model.n_modalities_ == 3 and model.codes_.shape == (90, 2)
    assert model.history_["mmd_conditional"][-1] >= 0
    assert model.encode(Xs[2], 2, packed=False).shape == (90, 12)


def test_save_load_roundtrip(tmp_path):
    Xs, lab = make_data(n=70)
    model = train_small(Xs, lab)
    path = tmp_path / "csmh.npz"
    model.save(path)
    loaded = fc.load(path)
    assert isinstance(loaded, fc.CSMH)
    np.testing.assert_array_equal(loaded.codes_, model.codes_)
    for m in range(2):
        np.testing.assert_array_equal(loaded.train_codes_[m], model.train_codes_[m])
    assert list(loaded.history_) == list(model.history_) and loaded.n_iter_ == model.n_iter_
    for term in model.history_:
        np.testing.assert_array_equal(loaded.history_[term], model.history_[term])
    assert loaded.get_params() == model.get_params()
    for m in range(2):
        np.testing.assert_array_equal(loaded.encode(Xs[m], m), model.encode(Xs[m], m))


def test_callback_stops_early():
    Xs, lab = make_data(n=70)
    seen = []

    def cb(it, state):
        seen.append((it, state["objective"], state["B"].shape))
        assert set(state) == {"objective", "terms", "B"}
        return it == 2

    model = train_small(Xs, lab, callback=cb, max_iter=10, tol=0.0)
    assert model.n_iter_ == 2 and len(seen) == 2 and seen[0][2] == (70, 20)


# --------------------------------------------------------------- bad input
def test_missing_labels_or_pairs():
    Xs, lab = make_data(n=40)
    with pytest.raises(ValueError, match="needs 'labels'"):
        fc.train(Xs, "all", method="csmh", n_anchors=10)
    with pytest.raises(ValueError, match="completely paired"):
        fc.train(Xs, None, method="csmh", labels=[lab, lab], n_anchors=10)
    half = np.stack([np.arange(20), np.arange(20)], axis=1)
    with pytest.raises(ValueError, match="complete one-to-one pairing"):
        fc.train(Xs, half, method="csmh", labels=[lab, lab], n_anchors=10)
    many = np.stack([np.arange(40), np.zeros(40, dtype=int)], axis=1)
    with pytest.raises(ValueError, match="complete one-to-one pairing"):
        fc.train(Xs, many, method="csmh", labels=[lab, lab], n_anchors=10)
    with pytest.raises(ValueError, match="same number of samples"):
        fc.train([Xs[0], Xs[1][:30]], np.stack([np.arange(30)] * 2, axis=1),
                 method="csmh", labels=[lab, lab[:30]], n_anchors=10)


def test_inconsistent_pairs_and_labels():
    Xs, lab = make_data(n=40, dims=(4, 3, 2))
    idx = np.arange(40)
    p = np.stack([idx, idx], axis=1)
    bad = {(0, 1): p, (0, 2): p, (1, 2): np.stack([idx, np.roll(idx, 1)], axis=1)}
    with pytest.raises(ValueError, match="contradicts"):
        fc.train(Xs, bad, method="csmh", labels=[lab] * 3, n_anchors=10)
    with pytest.raises(ValueError, match="no entry"):
        fc.train(Xs, {(0, 1): p, (1, 2): p}, method="csmh", labels=[lab] * 3, n_anchors=10)
    other = lab.copy()
    other[0] = (other[0] + 1) % 4
    with pytest.raises(ValueError, match="disagree"):
        fc.train(Xs[:2], "all", method="csmh", labels=[lab, other], n_anchors=10)


def test_settings_resolved_for_the_data():
    """The fit's settings: n_anchors capped to the objects, one sigma per
    modality, frozen."""
    params = dict(fc.CSMH(n_anchors=500, sigma=[None, 2.0], tol=0.5).get_params(),
                  verbose=False)
    settings = _csmh.CSMHSettings.from_params(params, 120, 2)
    assert settings.n_anchors == 120 and settings.sigmas == (None, 2.0)
    assert settings.tol == 0.5 and settings.n_bits == 32 and settings.callback is None
    assert _csmh.CSMHSettings.from_params(dict(params, sigma=1.5), 700, 3).sigmas == (1.5,) * 3
    assert _csmh.CSMHSettings.from_params(dict(params, sigma=None), 700, 2).n_anchors == 500
    with pytest.raises(ValueError, match=r"one value per modality \(3\). Got 2"):
        _csmh.CSMHSettings.from_params(params, 120, 3)
    with pytest.raises(AttributeError):
        settings.tol = 1.0


@pytest.mark.parametrize("kw,exc,match", [
    ({"n_anchors": 0}, ValueError, "n_anchors"),
    ({"n_anchors": 2.5}, TypeError, "n_anchors"),
    ({"sigma": -1.0}, ValueError, "sigma"),
    ({"sigma": [1.0]}, ValueError, "one value per modality"),
    ({"sigma": [1.0, float("nan")]}, ValueError, r"sigma\[1\]"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"beta": "x"}, TypeError, "beta"),
    ({"gamma": float("inf")}, ValueError, "gamma"),
    ({"reg": 0.0}, ValueError, "reg"),
    ({"max_iter": -1}, ValueError, "max_iter"),
    ({"tol": -1e-3}, ValueError, "tol"),
    ({"n_sweeps": 0}, ValueError, "n_sweeps"),
    ({"n_clusters": 3}, TypeError, "Unknown parameter"),
])
def test_bad_params(kw, exc, match):
    Xs, lab = make_data(n=40)
    params = {"n_anchors": 10}
    params.update(kw)
    with pytest.raises(exc, match=match):
        fc.train(Xs, "all", method="csmh", labels=[lab, lab], **params)


def test_bad_encode_input():
    Xs, lab = make_data(n=50)
    model = train_small(Xs, lab)
    with pytest.raises(ValueError, match="12 features"):
        model.encode(Xs[1], 0)
    with pytest.raises(ValueError, match="modality"):
        model.encode(Xs[0], 2)
    bad = Xs[0].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.encode(bad, 0)


# ---------------------------------------------------------------- real data
@pytest.mark.wiki
def test_wiki_supervised_map(wiki_dir):
    data = fc.datasets.load_wiki(wiki_dir)          # the file's fixed 2173/693 split
    tr, te = data.train_idx, data.test_idx
    img, txt = np.sqrt(data.modalities[0]), data.modalities[1]
    I_tr, I_te, T_tr, T_te = img[tr], img[te], txt[tr], txt[te]
    L_tr, L_te = data.labels[tr], data.labels[te]
    # the documented Wiki setting: every training object is an anchor
    model = fc.train([I_tr, T_tr], "all", n_bits=16, method="csmh",
                     labels=[L_tr, L_tr], random_state=0, n_threads=2,
                     n_anchors=I_tr.shape[0])

    def mean_ap(q, db, ql, dl):
        dist = (16 - q.astype(float) @ db.T.astype(float)) / 2
        aps = []
        for i in range(len(q)):
            rel = dl[np.argsort(dist[i], kind="stable")] == ql[i]
            hits = np.cumsum(rel)
            aps.append((hits / np.arange(1, rel.size + 1))[rel].mean())
        return np.mean(aps)

    i2t = mean_ap(model.encode(I_te, 0, packed=False), model.encode(T_tr, 1, packed=False),
                  L_te, L_tr)
    t2i = mean_ap(model.encode(T_te, 1, packed=False), model.encode(I_tr, 0, packed=False),
                  L_te, L_tr)
    # paper's supervised competitors: SePH T->I >= .5345, GSPH I->T <= .2879
    assert t2i > 0.6 and i2t > 0.28, (i2t, t2i)


def test_verbose_progress(capsys):
    Xs, lab = make_data(n=60)
    train_small(Xs, lab, verbose=True, max_iter=2)
    err = capsys.readouterr().err
    assert "CSMH" in err and "objective=" in err
    train_small(Xs, lab, verbose=False, max_iter=2)
    assert capsys.readouterr().err == ""
