"""Gromov–Wasserstein correspondence finder (match_score="gw")."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

import flexcmh_fast as fc
from flexcmh_fast.flexcmh import _matching as F
from flexcmh_fast.flexcmh._gromov import entropic_gw, gw_loss, sinkhorn


def planted_correspondence(n=240, k=4, p=3, d0=11, d1=6, seed=0, shuffle=True):
    """One latent point per object, seen through two random isometries into
    spaces of different dimensions (no shared features); modality 1's rows
    shuffled.  Clusters of equal size and spread, at an asymmetric layout.

    Returns X0, X1, the true partner in X1 of every row of X0, the latent
    cluster of every row of X0."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, p)) * 6.0
    y = np.repeat(np.arange(k), n // k)
    lat = centres[y] + rng.standard_normal((y.size, p))
    Q0 = np.linalg.qr(rng.standard_normal((d0, d0)))[0][:p]
    Q1 = np.linalg.qr(rng.standard_normal((d1, d1)))[0][:p]
    X0 = lat @ Q0 + 0.01 * rng.standard_normal((y.size, d0))
    X1 = lat @ Q1 + 0.01 * rng.standard_normal((y.size, d1))
    order = rng.permutation(y.size) if shuffle else np.arange(y.size)
    partner = np.argsort(order)  # X1[partner[i]] is object i
    return X0, X1[order], partner, y


def test_gw_recovers_planted_sample_correspondence():
    X0, X1, partner, _ = planted_correspondence(n=200, seed=1)
    T = entropic_gw(cdist(X0, X0), cdist(X1, X1), eps=1e-2)
    assert (T.argmax(axis=1) == partner).mean() >= 0.8


def test_gw_coupling_has_the_marginals_and_matches_pot():
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((30, 4)), rng.standard_normal((20, 7))
    C1, C2 = cdist(A, A), cdist(B, B)
    p = rng.random(30) + 0.1
    p /= p.sum()
    q = np.full(20, 1 / 20)
    T = entropic_gw(C1, C2, p, q, eps=0.05, max_iter=200, tol=1e-12)
    np.testing.assert_allclose(T.sum(axis=1), p, atol=1e-6)
    np.testing.assert_allclose(T.sum(axis=0), q, atol=1e-6)
    assert gw_loss(C1 / C1.mean(), C2 / C2.mean(), p, q, T) <= \
        gw_loss(C1 / C1.mean(), C2 / C2.mean(), p, q, np.outer(p, q)) + 1e-12
    ot = pytest.importorskip("ot")
    ref = ot.gromov.entropic_gromov_wasserstein(
        C1 / C1.mean(), C2 / C2.mean(), p, q, "square_loss", epsilon=0.05,
        max_iter=200, tol=1e-10)
    np.testing.assert_allclose(T, ref, rtol=1e-5, atol=1e-7 / T.size)


def test_gw_coupling_does_not_depend_on_the_thread_count():
    # 500 points: the iterations' products (2.5e8 multiply-adds) run on
    # n_threads BLAS threads.
    rng = np.random.default_rng(3)
    A, B = rng.random((500, 6)), rng.random((500, 3))
    C1, C2 = cdist(A, A), cdist(B, B)
    one = entropic_gw(C1, C2, eps=2e-2, max_iter=5, n_threads=1)
    two = entropic_gw(C1, C2, eps=2e-2, max_iter=5, n_threads=2)
    np.testing.assert_array_equal(one, two)


def test_gw_one_point_and_sinkhorn_reference():
    T = entropic_gw(np.zeros((1, 1)), np.zeros((1, 1)))
    np.testing.assert_allclose(T, [[1.0]])
    # Sinkhorn against the plain (non-warm-started) scaling iteration.
    rng = np.random.default_rng(0)
    C = rng.random((5, 4))
    p, q = np.full(5, 0.2), np.full(4, 0.25)
    P, _ = sinkhorn(C, p, q, 0.1, 5000, 1e-12)
    K = np.exp(-C / 0.1)
    u, v = np.ones(5), np.ones(4)
    for _ in range(5000):
        u = p / (K @ v)
        v = q / (K.T @ u)
    np.testing.assert_allclose(P, u[:, None] * K * v[None, :], atol=1e-10)


def test_coupling_scores_match_a_loop():
    rng = np.random.default_rng(4)
    coupling = rng.random((9, 7))
    ca = np.array([0, 2, 2, -1, 1, 0, 2, 1, 1])
    cb = np.array([1, -1, 0, 0, 2, 2, 1])
    W = np.zeros((3, 3))
    for i in range(9):
        for j in range(7):
            if ca[i] >= 0 and cb[j] >= 0:
                W[ca[i], cb[j]] += coupling[i, j]
    np.testing.assert_allclose(F.coupling_scores(coupling, ca, cb, 3), 1 - W / W.max())
    # No sampled row in any cluster: no preference.
    np.testing.assert_array_equal(
        F.coupling_scores(coupling, np.full(9, -1), cb, 3), np.zeros((3, 3)))


def test_sample_distances_dense_and_sparse():
    rng = np.random.default_rng(5)
    X = rng.random((12, 6)) * (rng.random((12, 6)) < 0.4)
    sq = (X ** 2).sum(axis=1)
    for Xr in (X, sp.csr_matrix(X)):
        np.testing.assert_allclose(F.sample_distances(Xr, sq), cdist(X, X), atol=1e-7)


@pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")
def test_gw_matching_recovers_planted_clusters_of_different_dimensions():
    """Equal cluster sizes: the size score has nothing to go on; GW finds the
    cluster correspondence from the internal geometry alone (on this draw
    match_score="auto" puts only half of the true pairs into matched
    clusters)."""
    X0, X1, partner, y = planted_correspondence(n=240, seed=5)
    model = fc.FlexCMH(n_bits=8, n_clusters=4, preprocess="none", match_score="gw",
                       max_iter=20, random_state=0).fit([X0, X1], None)
    h0 = model.indicators(X0, 0).argmax(axis=1)
    h1 = model.indicators(X1, 1).argmax(axis=1)
    # True pairs whose two sides land in the same (matched) cluster.
    assert (h0 == h1[partner]).mean() >= 0.8
    g = model.correspondence_[(0, 1)]
    assert (y[g[:, 0]] == y[np.argsort(partner)[g[:, 1]]]).mean() >= 0.8


@pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")
def test_gw_does_not_change_the_fully_paired_fit():
    X0, X1, _, _ = planted_correspondence(n=120, seed=3, shuffle=False)
    fits = [fc.FlexCMH(n_bits=8, n_clusters=4, match_score=s, max_iter=5,
                       random_state=0).fit([X0, X1], "all") for s in ("auto", "gw")]
    for m in range(2):
        np.testing.assert_array_equal(fits[0].train_codes_[m], fits[1].train_codes_[m])


@pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")
def test_gw_on_sparse_input_equals_dense_and_saves(tmp_path):
    X0, X1, _, _ = planted_correspondence(n=120, seed=4)
    X1 = np.where(np.abs(X1) > 0.3, X1, 0.0)
    # CSR products agree with the dense ones to rounding (1e-12).  The final
    # code function (50 ITQ steps: a full 8 x 8 rotation of rank-4 data whose
    # rows sit in 4 tight clusters) amplifies that into a different rotation,
    # so its codes are not compared; the GW matching, Γ, the centroids and
    # the loop's history (objective terms and code changes) are.
    kw = dict(n_bits=8, n_clusters=4, preprocess="none", match_score="gw", max_iter=5,
              random_state=0, encoder="nnls")
    dense = fc.FlexCMH(**kw).fit([X0, X1], None)
    sparse = fc.FlexCMH(**kw).fit([X0, sp.csr_matrix(X1)], None)
    np.testing.assert_array_equal(dense.cluster_matching_, sparse.cluster_matching_)
    for key, gamma in dense.correspondence_.items():
        np.testing.assert_array_equal(gamma, sparse.correspondence_[key])
    for Zd, Zs in zip(dense.centroids_, sparse.centroids_):
        np.testing.assert_allclose(Zd, Zs, rtol=1e-9, atol=1e-12)
    for term, values in dense.history_.items():
        np.testing.assert_allclose(values, sparse.history_[term], rtol=1e-9, atol=1e-12)
    path = tmp_path / "gw.npz"
    dense.save(path)
    loaded = fc.load(path)
    assert loaded.match_score == "gw"
    np.testing.assert_array_equal(loaded.encode(X0, 0), dense.encode(X0, 0))
