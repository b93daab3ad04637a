"""The FlexCMH Numba kernels against the plain numpy references."""
import numba
import numpy as np
import pytest
import reference_flexcmh as R
import scipy.sparse as sp

from flexcmh_fast.flexcmh import _kernels as K


def _assignments(rng, n, k, empty=(), small=(), unassigned=0.0):
    """Random cluster labels with chosen empty clusters and clusters of 1-3 members."""
    allowed = np.array([c for c in range(k) if c not in empty and c not in small])
    a = allowed[rng.integers(0, allowed.size, n)]
    pos = 0
    for c in small:
        m = 1 + c % 3
        a[pos:pos + m] = c
        pos += m
    if unassigned:
        a[rng.random(n) < unassigned] = -1
    return a.astype(np.int64)


def _data(rng, n, d, k, sparse):
    if sparse:
        X = sp.random(n, d, density=0.1, format="csr", random_state=rng.integers(1 << 30))
        X.data = rng.standard_normal(X.data.size)
        Xd = X.toarray()
    else:
        X = Xd = rng.standard_normal((n, d))
    Z = rng.standard_normal((d, k))
    xz = np.ascontiguousarray(X @ Z)
    sqx = (Xd ** 2).sum(axis=1)
    sqz = (Z ** 2).sum(axis=0)
    return X, Xd, Z, xz, sqx, sqz


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n_chunks", [1, 2, 3, 7])
def test_nn_profiles_matches_reference(sparse, n_chunks):
    rng = np.random.default_rng(0)
    n, d, k, ns = 300, 12, 9, 5
    X, Xd, Z, xz, sqx, _ = _data(rng, n, d, k, sparse)
    a = _assignments(rng, n, k, empty=(2, 7), small=(4, 5), unassigned=0.05)
    # Distances from the centroids scaled column by column (profile_scale).
    scale = rng.uniform(0.5, 2.0, k)
    sqz = ((Z * scale) ** 2).sum(axis=0)
    prof, cnt = K.nn_profiles(xz, scale, sqx, sqz, a, k, ns, n_chunks)
    rprof, rcnt = R.nn_profiles(xz, scale, sqx, sqz, a, k, ns)
    dprof, dcnt = R.nn_profiles_direct(Xd, Z * scale, a, ns)
    np.testing.assert_array_equal(cnt, rcnt)
    np.testing.assert_array_equal(cnt, dcnt)
    np.testing.assert_allclose(prof, rprof, rtol=0, atol=0)
    np.testing.assert_allclose(prof, dprof, rtol=1e-9, atol=1e-9)
    assert np.isinf(prof[2]).all() and np.isinf(prof[7]).all()
    # Clusters with fewer than ns members: exactly count finite entries.
    np.testing.assert_array_equal(np.isfinite(prof).sum(1), np.minimum(cnt, ns))
    assert cnt[4] <= 2 and cnt[5] <= 3
    assert np.all(np.diff(prof[np.isfinite(prof).all(axis=1)], axis=1) >= 0)


def test_nn_profiles_more_chunks_than_samples():
    rng = np.random.default_rng(1)
    xz, sqx, sqz = rng.random((3, 4)), rng.random(3) + 4, rng.random(4)
    a = np.array([0, 0, 3], dtype=np.int64)
    prof, cnt = K.nn_profiles(xz, np.ones(4), sqx, sqz, a, 4, 2, 16)
    rprof, rcnt = R.nn_profiles(xz, np.ones(4), sqx, sqz, a, 4, 2)
    np.testing.assert_array_equal(prof, rprof)
    np.testing.assert_array_equal(cnt, rcnt)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_scores_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ka, kb, ns = 7, 6, 5
    pa, pb = np.sort(rng.random((ka, ns)), axis=1), np.sort(rng.random((kb, ns)), axis=1)
    ca, cb = rng.integers(0, 9, ka), rng.integers(0, 9, kb)
    ca[0], cb[1] = 0, 2  # an empty cluster and one with fewer than ns members
    pa[ca < ns] = np.where(np.arange(ns)[None, :] < ca[ca < ns, None], pa[ca < ns], np.inf)
    pb[cb < ns] = np.where(np.arange(ns)[None, :] < cb[cb < ns, None], pb[cb < ns], np.inf)
    za, zb = rng.random(ka) + 0.1, rng.random(kb) + 0.1
    S = K.match_scores(pa, ca, za, pb, cb, zb)
    Sr = R.match_scores(pa, ca, za, pb, cb, zb)
    np.testing.assert_allclose(S, Sr, rtol=1e-12)
    assert np.isinf(S[0]).all()
    np.testing.assert_array_equal(np.isfinite(S), (ca[:, None] > 0) & (cb[None, :] > 0))


def test_match_scores_identical_profiles_score_zero():
    rng = np.random.default_rng(3)
    p = np.sort(rng.random((4, 5)), axis=1)
    c = np.full(4, 9)
    z = rng.random(4) + 0.5
    S = K.match_scores(p, c, z, p, c, z)
    np.testing.assert_allclose(np.diag(S), 0.0, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rank_pairs_matches_reference(seed):
    rng = np.random.default_rng(seed)
    k, na, nb = 8, 200, 150
    a = _assignments(rng, na, k, empty=(1,), small=(3,), unassigned=0.1)
    b = _assignments(rng, nb, k, empty=(5,), small=(6,), unassigned=0.1)
    # Rounded scores create ties, which must break by sample index.
    sa, sb = np.round(rng.random(na), 1), np.round(rng.random(nb), 1)
    P = K.rank_pairs(a, sa, b, sb, k)
    Pr = R.rank_pairs(a, sa, b, sb, k)
    np.testing.assert_array_equal(P, Pr)
    assert not np.isin(P[:, 0], np.flatnonzero(a < 0)).any()
    assert np.array_equal(a[P[:, 0]], b[P[:, 1]])
    assert len(np.unique(P[:, 0])) == len(P) and len(np.unique(P[:, 1])) == len(P)


def test_rank_pairs_empty():
    a = np.full(5, -1, dtype=np.int64)
    P = K.rank_pairs(a, np.zeros(5), a, np.zeros(5), 3)
    assert P.shape == (0, 2)


@pytest.mark.parametrize("sparse", [False, True])
def test_nnls_rows_converges_to_exact_nnls(sparse):
    rng = np.random.default_rng(4)
    n, d, k = 40, 15, 6
    X, _, Z, xz, _, _ = _data(rng, n, d, k, sparse)
    Q = Z.T @ Z
    H = np.zeros((n, k))
    K.nnls_rows(Q, xz, np.zeros(n), H, 5000, 1e-13)
    for i in range(n):
        np.testing.assert_allclose(H[i], R.nnls_exact(Q, xz[i]), atol=1e-6)
    assert (H >= 0).all()


@pytest.mark.parametrize("n", [0, 1, 60, 261])
def test_nnls_rows_matches_reference_sweeps_and_coupling(n):
    # n = 60 and 261 end in a partial tile of rows (tiles of K.NNLS_TILE);
    # a zero column of A gives a coordinate without curvature (skipped in
    # the rows with diag = 0), and with tol > 0 rows of one tile stop after
    # different sweeps.
    rng = np.random.default_rng(5)
    k = 7
    A = rng.standard_normal((20, k))
    A[:, 3] = 0.0
    Q = A.T @ A
    C = rng.standard_normal((n, k))
    diag = rng.integers(0, 3, n).astype(float)
    H0 = rng.random((n, k))
    for sweeps, tol in ((1, 0.0), (3, 0.0), (50, 1e-3)):
        H, Hr = H0.copy(), H0.copy()
        K.nnls_rows(Q, C, diag, H, sweeps, tol)
        R.nnls_rows(Q, C, diag, Hr, sweeps, tol)
        np.testing.assert_allclose(H, Hr, rtol=1e-10, atol=1e-12)


def test_nnls_rows_never_increases_objective():
    rng = np.random.default_rng(6)
    n, k = 30, 5
    A = rng.standard_normal((9, k))
    Q, C, diag = A.T @ A, rng.standard_normal((n, k)), np.ones(n)
    H = rng.random((n, k))

    def f(H):
        return (np.einsum("ij,jk,ik->i", H, Q, H) + diag * (H ** 2).sum(1)
                - 2 * (H * C).sum(1))

    before = f(H)
    K.nnls_rows(Q, C, diag, H, 1, 0.0)
    assert np.all(f(H) <= before + 1e-12)


def test_gather_sum_and_pair_loss():
    rng = np.random.default_rng(7)
    n, m, k = 50, 40, 4
    src = rng.random((m, k))
    pairs = np.stack([rng.integers(0, n, 120), rng.integers(0, m, 120)], 1).astype(np.int64)
    order = np.argsort(pairs[:, 0], kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=n), out=ptr[1:])
    idx = np.ascontiguousarray(pairs[order, 1])
    base = rng.standard_normal((n, k))
    out, ref = np.empty((n, k)), np.empty((n, k))
    K.gather_sum(ptr, idx, src, base, out)
    R.gather_sum(ptr, idx, src, base, ref)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    assert (np.diff(ptr) == 0).any()  # rows without a partner get base alone
    # In place (out is base).
    inplace = base.copy()
    K.gather_sum(ptr, idx, src, inplace, inplace)
    np.testing.assert_array_equal(inplace, out)
    Ha = rng.random((n, k))
    np.testing.assert_allclose(K.pair_loss(pairs, Ha, src), R.pair_loss(pairs, Ha, src),
                               rtol=1e-12)
    assert K.pair_loss(np.empty((0, 2), dtype=np.int64), Ha, src) == 0.0


@pytest.mark.parametrize("n", [0, 1, 37])
def test_hard_assignments_and_cluster_mass_match_reference(n):
    rng = np.random.default_rng(11)
    k = 5
    # Quantised entries make ties; zero rows and rows of negatives get -1.
    H = np.round(rng.random((n, k)) * 3) / 3
    if n > 2:
        H[1] = 0.0
        H[2] = -rng.random(k)
        H[0] = [0.5, 0.9, 0.9, 0.1, 0.9]  # tie: first maximum wins
    a = K.hard_assignments(H)
    np.testing.assert_array_equal(a, R.hard_assignments(H))
    if n > 2:
        assert a[0] == 1 and a[1] == -1 and a[2] == -1
    counts, sums = K.cluster_mass(H, a, k)
    ref_counts, ref_sums = R.cluster_mass(H, a, k)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12, atol=0)


def test_nnls_rows_independent_of_thread_count():
    rng = np.random.default_rng(12)
    n, k = 301, 7
    A = rng.standard_normal((k, k))
    Q, C, diag = A @ A.T, rng.standard_normal((n, k)), rng.random(n)
    old = numba.get_num_threads()
    results = []
    try:
        for t in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(t)
            H = np.abs(rng.standard_normal((n, k))) * 0 + 0.5
            K.nnls_rows(Q, C, diag, H, 3, 0.0)
            results.append(H)
    finally:
        numba.set_num_threads(old)
    ref = np.full((n, k), 0.5)
    R.nnls_rows(Q, C, diag, ref, 3, 0.0)
    for H in results:
        np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-12)


def test_kernels_independent_of_thread_count():
    rng = np.random.default_rng(8)
    n, k = 500, 6
    xz, sqx, sqz = rng.random((n, k)), rng.random(n) + 6, rng.random(k)
    scale = rng.uniform(0.5, 2.0, k)
    a = rng.integers(0, k, n).astype(np.int64)
    pairs = np.stack([rng.integers(0, n, 300), rng.integers(0, n, 300)], 1).astype(np.int64)
    Ha = rng.random((n, k))
    old = numba.get_num_threads()
    results = []
    try:
        for t in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(t)
            results.append((K.nn_profiles(xz, scale, sqx, sqz, a, k, 5, t)[0],
                            K.rank_pairs(a, xz[:, 0], a, xz[:, 1], k),
                            K.pair_loss(pairs, Ha, Ha)))
    finally:
        numba.set_num_threads(old)
    for r in results[1:]:
        np.testing.assert_array_equal(r[0], results[0][0])
        np.testing.assert_array_equal(r[1], results[0][1])
        assert r[2] == results[0][2]


@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_nearest_from_products_matches_argmin_with_ties(n):
    rng = np.random.default_rng(n)
    k = 6
    # Integer-valued products and norms: many exact ties between centres.
    P = rng.integers(-3, 4, (n, k)).astype(np.float64)
    sq = rng.integers(0, 4, k).astype(np.float64)
    sq[4] = sq[1]
    P[:, 4] = P[:, 1]                       # centres 1 and 4 tie on every row
    a, best = K.nearest_from_products(P, sq)
    a_ref, best_ref = R.nearest_from_products(P, sq)
    np.testing.assert_array_equal(a, a_ref)
    np.testing.assert_array_equal(best, best_ref)
    assert not np.any(a == 4) or n == 0     # the first of a tie wins
    one, _ = K.nearest_from_products(P[:, :1], sq[:1])
    assert np.all(one == 0)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("n", [1, 9, 400])
def test_cluster_sums_match_indicator_product(sparse, n):
    """Row sums per cluster, empty clusters included, dense and CSR (never
    densified), bit-identical to the indicator-matrix product."""
    from flexcmh_fast.flexcmh._start import cluster_sums

    rng = np.random.default_rng(n)
    k = 5
    assign = _assignments(rng, n, k, empty=(3,))
    X = (sp.random(n, 12, density=0.3, format="csr", random_state=n) if sparse
         else rng.standard_normal((n, 12)))
    sums, counts = cluster_sums(X, assign, k)
    sums_ref, counts_ref = R.cluster_sums(X, assign, k)
    np.testing.assert_allclose(sums, sums_ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(counts, counts_ref)
    assert counts[3] == 0 and not sums[3].any()
    # In-order sums: the same values as the scipy product the start used before.
    M = sp.csr_matrix((np.ones(n), (assign, np.arange(n))), shape=(k, n))
    old = M @ X
    np.testing.assert_array_equal(sums, old.toarray() if sp.issparse(old) else old)


@pytest.mark.parametrize("n", [0, 1, 57])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_xz_and_xz_into_buffer(n, index_dtype):
    from flexcmh_fast.flexcmh._passes import csr_xz
    from flexcmh_fast.flexcmh._start import xz

    rng = np.random.default_rng(13)
    d, k = 30, 7
    X = sp.random(n, d, density=0.2, format="csr", random_state=3)
    X.data = rng.standard_normal(X.data.size)
    if n > 2:
        X = sp.vstack([X[:2], sp.csr_matrix((1, d)), X[2:]], format="csr")  # an empty row
    X.indptr, X.indices = X.indptr.astype(index_dtype), X.indices.astype(index_dtype)
    Z = rng.standard_normal((d, k))
    out = np.full((X.shape[0], k), np.nan)
    csr_xz(X.indptr, X.indices, X.data, False, np.empty(0), Z, out)
    np.testing.assert_allclose(out, X.toarray() @ Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out, X @ Z)  # scipy's order of additions
    # Row factors and square roots as a preprocessed copy would hold them.
    scale = rng.random(X.shape[0]) + 0.5
    A = abs(X)
    csr_xz(A.indptr, A.indices, A.data, True, scale, Z, out)
    copy = A.sqrt()
    copy.data = np.repeat(scale, np.diff(copy.indptr)) * copy.data
    np.testing.assert_array_equal(out, copy @ Z)
    # Unsorted and duplicate entries are summed, like scipy.
    U = sp.csr_matrix((np.array([1.0, 2.0, -3.0]), np.array([4, 1, 4]), np.array([0, 3])),
                      shape=(1, d))
    u = np.empty((1, k))
    csr_xz(U.indptr, U.indices, U.data, False, np.empty(0), Z, u)
    np.testing.assert_allclose(u, U.toarray() @ Z, rtol=1e-12, atol=1e-12)
    # xz writes into the caller's buffer, dense or CSR, and returns it.
    for data in (X, X.toarray()):
        buf = np.full((X.shape[0], k), np.nan)
        got = xz(data, Z[:, ::-1], out=buf)
        assert got is buf
        np.testing.assert_allclose(buf, X.toarray() @ Z[:, ::-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(xz(X.toarray(), Z), X.toarray() @ Z)
    assert xz(X.astype(np.float32), Z).dtype == np.float32




@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_bits", [1, 8, 13, 64, 70])
@pytest.mark.parametrize("n", [0, 1, 300])
def test_linear_code_kernels_match_reference(dtype, n_bits, n):
    """Codes of the code step: signs, packed bits (numpy's layout, padding
    zero), changed bits, the common code of aligned rows and the
    disagreements of the quantisation term, with exact zeros (ties: -1)."""
    rng = np.random.default_rng(n_bits + n)
    k = 6
    Ys = [rng.random((n, k)).astype(dtype), rng.random((n + 5, k)).astype(dtype)]
    mu = rng.random(k).astype(dtype).astype(np.float64)    # the code's arrays, as float64
    P = rng.standard_normal((k, n_bits)).astype(dtype).astype(np.float64)
    if n:
        Ys[0][0] = mu                     # projection exactly zero: sign -1
    width = (n_bits + 7) // 8
    np.testing.assert_array_equal(K.linear_code_signs(Ys[0], mu, P),
                                  R.linear_code_signs(Ys[0], mu, P))
    previous = np.empty((0, width), np.uint8)
    out, ref = np.empty((n, width), np.uint8), np.empty((n, width), np.uint8)
    assert K.linear_code_bits(Ys[0], mu, P, previous, out) == 0
    R.linear_code_bits(Ys[0], mu, P, previous, ref)
    np.testing.assert_array_equal(out, ref)
    flipped = ref.copy()
    if n:
        flipped[::3] ^= np.packbits(np.ones(n_bits, bool))
    got = K.linear_code_bits(Ys[0], mu, P, flipped, out)
    assert got == R.linear_code_bits(Ys[0], mu, P, flipped, ref) == len(flipped[::3]) * n_bits
    rows = np.stack([rng.permutation(n)[:max(n - 2, 0)],
                     rng.permutation(n + 5)[:max(n - 2, 0)]]).astype(np.int64)
    B, B_ref = np.empty((rows.shape[1], width), np.uint8), np.empty((rows.shape[1], width),
                                                                      np.uint8)
    assert K.linear_common_code(tuple(Ys), rows, mu, P, B) == \
        R.linear_common_code(Ys, rows, mu, P, B_ref)
    np.testing.assert_array_equal(B, B_ref)


@pytest.mark.parametrize("n, pairs", [(0, 0), (1, 3), (7, 0), (50, 120)])
def test_pair_adjacency_matches_stable_argsort(n, pairs):
    """Partners grouped by row in the order of the pairs (rows without
    partners included), equal to the stable-argsort reference."""
    rng = np.random.default_rng(n + pairs)
    self_idx = rng.integers(0, max(n, 1), pairs).astype(np.int64)
    other_idx = rng.integers(0, 1000, pairs).astype(np.int64)
    ptr, idx = K.pair_adjacency(n, self_idx, other_idx)
    rptr, ridx = R.pair_adjacency(n, self_idx, other_idx)
    np.testing.assert_array_equal(ptr, rptr)
    np.testing.assert_array_equal(idx, ridx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 65, 1000])
def test_inner_float64_against_einsum(dtype, n):
    """The objective's float64 sum of products (fixed blocks) against
    numpy's float64 einsum, and the same value on one thread."""
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, 7)).astype(dtype)
    B = rng.standard_normal((n, 7)).astype(dtype)
    want = np.einsum("ij,ij->", A, B, dtype=np.float64)
    got = K.inner_float64(A, B)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    numba.set_num_threads(1)
    try:
        assert K.inner_float64(A, B) == got
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

def test_every_parallel_kernel_runs_only_its_prange_loops_in_parallel():
    """Every parallel Numba kernel of the package takes ``PRANGE_ONLY`` (one
    ParallelOptions object: a dict would lose its keys at the first
    compilation, and the next signature would compile every array
    expression as a parallel region again)."""
    import importlib
    import pkgutil

    import flexcmh_fast
    from flexcmh_fast._threads import PRANGE_ONLY

    assert PRANGE_ONLY.prange and not (PRANGE_ONLY.numpy or PRANGE_ONLY.reduction
                                       or PRANGE_ONLY.setitem or PRANGE_ONLY.comprehension)
    parallel = {}
    for info in pkgutil.walk_packages(flexcmh_fast.__path__, "flexcmh_fast."):
        if info.name.startswith(("flexcmh_fast.distributed", "flexcmh_fast.experiments")):
            continue  # optional dependencies; no Numba kernels
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == info.name:
                option = obj.targetoptions.get("parallel")
                if option:
                    parallel[f"{info.name}.{name}"] = option
    assert len(parallel) >= 20, sorted(parallel)
    assert all(option is PRANGE_ONLY for option in parallel.values()), {
        name: option for name, option in parallel.items() if option is not PRANGE_ONLY}
