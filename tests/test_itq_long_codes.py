"""ITQ for long codes: beyond ``max(k, 64)`` bits the rotation is solved in
the k-dim subspace the projected data span (``_flexcmh_codes``).

The subspace step must be the full b x b rotation step restricted to that
subspace (same iterates, same codes, from the same start), codes of up to
64 bits must keep the full rotation, and long-code models must save, load
and train on Dask.
"""
import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast.flexcmh._codes import (
    FULL_ROTATION_MAX_BITS,
    ITQCode,
    _orthonormal_rows,
    full_rotation,
)


def polar(M):
    left, _, right = np.linalg.svd(M, full_matrices=False)
    return left @ right


@pytest.mark.parametrize("k, n_bits", [(3, 8), (6, 40), (8, 96)])
def test_subspace_step_equals_full_rotation_step(k, n_bits):
    """From R0 and V0 = spread @ R0, every full step R <- polar(U^T sign(U R))
    (U = C E spread) gives spread @ R equal to the subspace step
    V <- polar(E^T C^T sign(C E V)), and the same codes."""
    rng = np.random.default_rng(k)
    C = rng.standard_normal((300, k)) * np.linspace(3, 1, k)
    E, _ = np.linalg.qr(rng.standard_normal((k, k)))
    spread = _orthonormal_rows(k, n_bits, rng)
    R, _ = np.linalg.qr(rng.standard_normal((n_bits, n_bits)))
    V = spread @ R
    U, Uk = C @ E @ spread, C @ E
    for _ in range(8):
        R = polar(U.T @ np.where(U @ R > 0, 1.0, -1.0))
        V = polar(Uk.T @ np.where(Uk @ V > 0, 1.0, -1.0))
        np.testing.assert_allclose(spread @ R, V, atol=1e-9)
        np.testing.assert_array_equal(U @ R > 0, Uk @ V > 0)


def moments(Y):
    return Y.shape[0], Y.sum(axis=0), Y.T @ Y


def test_long_codes_fold_the_rotation_and_short_codes_keep_it():
    rng = np.random.default_rng(0)
    Y = rng.random((200, 6))
    for n_bits, full in ((6, True), (40, True), (FULL_ROTATION_MAX_BITS, True),
                         (FULL_ROTATION_MAX_BITS + 1, False), (4096, False)):
        assert full_rotation(n_bits, 6) is full
        code = ITQCode.fit([Y], n_bits, np.random.default_rng(1), n_iter=5)
        assert code.W.shape == (6, n_bits)
        assert (code.R is not None) is full
        if not full:
            # The folded projection is the principal directions times a
            # block with orthonormal rows.
            np.testing.assert_allclose(code.W @ code.W.T, np.eye(6), atol=1e-10)
        signs = code.signs(Y)
        assert signs.shape == (200, n_bits) and set(np.unique(signs)) <= {-1, 1}
    # k above 64: a full rotation up to k bits.
    assert full_rotation(100, 100) and not full_rotation(101, 100)


def test_rotation_stats_shapes_and_warm_start():
    """The interface the Dask trainer implements: W is the same in every
    call of one fit; long codes pass the (k, k) principal directions and a
    (k, b) block and expect a (k, b) result."""
    rng = np.random.default_rng(2)
    Y = rng.random((150, 5))
    seen = []

    def stats(mu, W, R):
        seen.append((W.shape, R.shape))
        U = (Y - mu) @ W
        return U.T @ np.where(U @ R > 0, 1.0, -1.0)

    code = ITQCode.fit_from_moments(*moments(Y), 200, np.random.default_rng(3), stats,
                                    n_iter=4)
    assert seen == [((5, 5), (5, 200))] * 4
    # Warm start: no iteration keeps the previous block.
    again = ITQCode.fit_from_moments(*moments(Y), 200, np.random.default_rng(4), stats,
                                     n_iter=0, previous=code)
    np.testing.assert_array_equal(again.spread, code.spread)
    np.testing.assert_allclose(again.W, code.W, atol=1e-12)
    # Same result as the local fit from the rows.
    local = ITQCode.fit([Y], 200, np.random.default_rng(3), n_iter=4)
    np.testing.assert_allclose(local.W, code.W, atol=1e-10)


def test_itq_objective_decreases_for_long_codes():
    rng = np.random.default_rng(5)
    Y = rng.random((400, 8)) ** 3
    losses = []
    for n_iter in (0, 1, 5, 20):
        code = ITQCode.fit([Y], 512, np.random.default_rng(6), n_iter=n_iter)
        P = code.project(Y)
        losses.append(float(((np.where(P > 0, 1.0, -1.0) - P) ** 2).sum()))
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("n_bits", [65, 300])
def test_long_code_model_trains_saves_and_loads(tmp_path, n_bits):
    d = fc.datasets.make_multimodal(120, n_classes=4, n_features=(10, 16), random_state=1)
    X0, X1 = d.modalities
    model = fc.train([X0, X1], "all", n_bits=n_bits, n_clusters=4, random_state=0,
                     max_iter=3, encoder="nnls")
    assert model.code_.R is None and model.code_.W.shape == (4, n_bits)
    codes = model.encode(X0, 0)
    assert codes.shape == (120, -(-n_bits // 8))
    path = tmp_path / "long.npz"
    model.save(path)
    back = fc.load(path, kind="FlexCMH")
    np.testing.assert_array_equal(back.encode(X0, 0), codes)
    np.testing.assert_array_equal(back.encode(X1, 1), model.encode(X1, 1))
    # Same seed, same codes.
    again = fc.train([X0, X1], "all", n_bits=n_bits, n_clusters=4, random_state=0,
                     max_iter=3, encoder="nnls")
    np.testing.assert_array_equal(again.encode(X0, 0), codes)


def test_model_files_with_a_full_long_rotation_still_load(tmp_path):
    """Files written before the subspace path (a b x b rotation for every
    code length) encode with their stored rotation."""
    from flexcmh_fast._persist import read_state, save_state

    d = fc.datasets.make_multimodal(80, n_classes=3, n_features=(6, 9), random_state=2)
    X0, X1 = d.modalities
    model = fc.train([X0, X1], "all", n_bits=72, n_clusters=3, random_state=0, max_iter=2,
                     encoder="nnls")
    model.save(tmp_path / "m.npz")
    kind, meta, arrays = read_state(tmp_path / "m.npz")
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((72, 72)))
    arrays["code_R"] = rotation
    save_state(tmp_path / "old.npz", kind, meta, arrays)
    old = fc.load(tmp_path / "old.npz")
    expected = np.where((model.indicators(np.asarray(X0), 0) - model.code_.mu)
                        @ model.code_.W @ rotation > 0, 1, -1)
    np.testing.assert_array_equal(old.encode(X0, 0, packed=False), expected)


@pytest.mark.distributed
def test_dask_training_of_long_codes_equals_local(client):
    da = pytest.importorskip("dask.array")
    d = fc.datasets.make_multimodal(200, n_classes=4, n_features=(10, 16), random_state=3)
    X0, X1 = d.modalities
    from flexcmh_fast import distributed as fd

    kwargs = dict(n_bits=100, n_clusters=4, random_state=0, max_iter=3)
    dist = fd.train([da.from_array(X0, chunks=(200, 10)), da.from_array(X1, chunks=(200, 16))],
                    "all", client=client, **kwargs)
    single = fc.train([X0, X1], "all", n_threads=1, **kwargs)
    assert dist.code_.R is None
    np.testing.assert_allclose(dist.code_.W, single.code_.W, atol=1e-8)
    np.testing.assert_array_equal(dist.encode(X1, 1), single.encode(X1, 1))


@pytest.mark.parametrize("n_bits", [4, 7, 40, 200])
def test_warm_start_follows_the_principal_subspace(n_bits):
    """Two principal directions of nearly equal variance swap places (and the
    sign rule may flip them) when the indicators change slightly; the
    warm-started fit must keep its codes (no rotation step: n_iter=0), as
    the subspace did not move.  Short codes use the top n_bits directions
    (the pair swaps inside them), longer ones all k."""
    rng = np.random.default_rng(7)
    k = 6
    basis, _ = np.linalg.qr(rng.standard_normal((k, k)))
    # Centred, uncorrelated columns of equal variance: the variances below are
    # exact, so the two middle directions do swap.
    G = rng.standard_normal((2000, k))
    Z = np.linalg.qr(G - G.mean(axis=0))[0] * np.sqrt(2000)
    scales = np.array([5.0, 3.0, 2.0, 2.0, 1.2, 0.5])
    Y = (Z * scales) @ basis.T
    # Swap the order of the two directions of (nearly) equal variance.
    before = (Z * (scales + [0, 0, 0.01, -0.01, 0, 0])) @ basis.T
    after = (Z * (scales + [0, 0, -0.01, 0.01, 0, 0])) @ basis.T
    code = ITQCode.fit([before], n_bits, np.random.default_rng(8), n_iter=10)
    again = ITQCode.fit([after], n_bits, np.random.default_rng(9), n_iter=0, previous=code)
    agree = (code.signs(Y) == again.signs(Y)).mean()
    assert agree > 0.98, agree
    # The basis of the new fit spans the new principal subspace.
    r = min(n_bits, k)
    evecs = np.linalg.eigh(np.cov(after.T, bias=True))[1][:, ::-1][:, :r]
    np.testing.assert_allclose(again.basis @ again.basis.T, evecs @ evecs.T, atol=1e-8)
