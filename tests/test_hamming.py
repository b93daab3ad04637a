"""HammingIndex and the _hamming kernels against a plain numpy reference
(np.bitwise_count on XOR), and against faiss IndexBinaryFlat when installed."""
import os
import subprocess
import sys

import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast import _hamming
from flexcmh_fast.search import HammingIndex, hamming_distances

BITS = [1, 7, 8, 63, 64, 65, 128, 256, 1000, 4096]
PATHS = _hamming.available_popcount_paths()


# ----------------------------------------------------------------------
# Reference and data
# ----------------------------------------------------------------------
def ref_distances(queries, codes):
    """Obviously-correct Hamming distances: popcount of XOR, summed over bytes."""
    if queries.shape[0] == 0 or codes.shape[0] == 0:
        return np.zeros((queries.shape[0], codes.shape[0]), dtype=np.int64)
    return np.bitwise_count(queries[:, None, :] ^ codes[None, :, :]).sum(axis=-1, dtype=np.int64)


def ref_search(queries, codes, k):
    dist = ref_distances(queries, codes)
    n = codes.shape[0]
    k = min(k, n)
    D = np.empty((queries.shape[0], k), dtype=np.int64)
    I = np.empty((queries.shape[0], k), dtype=np.int64)
    for j in range(queries.shape[0]):
        order = np.lexsort((np.arange(n), dist[j]))[:k]  # by distance, then id
        D[j] = dist[j, order]
        I[j] = order
    return D, I


def random_codes(rng, n, n_bits, n_distinct=None):
    """Random packed codes; with n_distinct, drawn from a small pool (many ties)."""
    if n_distinct is None:
        bits = rng.integers(0, 2, (n, n_bits))
    else:
        pool = rng.integers(0, 2, (n_distinct, n_bits))
        bits = pool[rng.integers(0, n_distinct, n)]
    return fc.pack_codes(bits.astype(np.int8))


@pytest.fixture(autouse=True)
def force_threading():
    """Small test problems would run on one thread; force the parallel split."""
    previous = _hamming._set_min_work_per_thread(0)
    yield
    _hamming._set_min_work_per_thread(previous)


@pytest.fixture(params=PATHS)
def path(request):
    """Run the test on every popcount path this CPU supports."""
    previous = _hamming.set_popcount_path(request.param)
    yield request.param
    _hamming.set_popcount_path(previous)


# ----------------------------------------------------------------------
# Exactness against numpy
# ----------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", BITS)
def test_search_matches_numpy(n_bits, path):
    rng = np.random.default_rng(n_bits)
    n = 301
    db = random_codes(rng, n, n_bits, n_distinct=20)            # many ties
    queries = np.concatenate([random_codes(rng, 20, n_bits), db[:5]])
    for n_threads in (1, 2):
        index = HammingIndex(db, n_bits=n_bits, n_threads=n_threads)
        for k in (1, 10, n, n + 7):
            D, I = index.search(queries, k)
            rD, rI = ref_search(queries, db, k)
            assert D.dtype == np.int32 and I.dtype == np.int64
            assert D.shape == I.shape == (queries.shape[0], min(k, n))
            np.testing.assert_array_equal(D, rD)
            np.testing.assert_array_equal(I, rI)


@pytest.mark.parametrize("n_bits", BITS)
def test_range_histogram_distances_match_numpy(n_bits, path):
    rng = np.random.default_rng(1000 + n_bits)
    n = 203
    db = random_codes(rng, n, n_bits, n_distinct=30)
    queries = random_codes(rng, 13, n_bits)
    ref = ref_distances(queries, db)
    for n_threads in (1, 2):
        index = HammingIndex(db, n_bits=n_bits, n_threads=n_threads)
        np.testing.assert_array_equal(index.distances(queries), ref)
        np.testing.assert_array_equal(hamming_distances(queries, db, n_bits, n_threads), ref)
        hist = index.distance_histogram(queries)
        assert hist.dtype == np.int64 and hist.shape == (13, n_bits + 1)
        np.testing.assert_array_equal(hist.sum(axis=1), n)
        expected = np.stack([np.bincount(r, minlength=n_bits + 1) for r in ref])
        np.testing.assert_array_equal(hist, expected)
        for radius in sorted({0, 1, n_bits // 2, n_bits, n_bits + 5}):
            lims, D, I = index.range_search(queries, radius)
            assert lims.dtype == np.int64 and D.dtype == np.int32 and I.dtype == np.int64
            assert lims.shape == (14,) and lims[0] == 0 and lims[-1] == D.size == I.size
            for j in range(13):
                hit = np.flatnonzero(ref[j] <= radius)
                hit = hit[np.lexsort((hit, ref[j, hit]))]      # by (distance, id)
                np.testing.assert_array_equal(I[lims[j]:lims[j + 1]], hit)
                np.testing.assert_array_equal(D[lims[j]:lims[j + 1]], ref[j, hit])
        lims, D, I = index.range_search(queries, n_bits)
        np.testing.assert_array_equal(np.diff(lims), n)


@pytest.mark.parametrize("n_bits,n", [(64, 40_000), (1000, 5_000), (130, 3_001), (250, 2_999),
                                      (128, 17_000), (150, 11_500), (256, 8_800)])
def test_crosses_cache_chunks_and_tiles(n_bits, n, path):
    """Databases larger than one cache chunk (256 KiB: 16,384 codes of 128 bits,
    8,192 of 256), query counts not a multiple of the tile: 43 queries are 5
    tiles of 8 + 2 + 1 and, on the AVX2 path, a task with 32 or more queries
    transposes whole chunks to nibbles (one thread here) while smaller tasks
    (two threads: 8 queries each) transpose group by group."""
    rng = np.random.default_rng(7)
    db = random_codes(rng, n, n_bits)
    queries = random_codes(rng, 43, n_bits)
    rD, rI = ref_search(queries, db, 50)
    for n_threads in (1, 2):
        D, I = HammingIndex(db, n_bits=n_bits, n_threads=n_threads).search(queries, 50)
        np.testing.assert_array_equal(D, rD)
        np.testing.assert_array_equal(I, rI)


def clustered_bits(rng, n, n_bits, n_centres, n_flips):
    """Bits of n codes, each a random centre with n_flips random bits flipped."""
    centres = rng.integers(0, 2, (n_centres, n_bits))
    bits = centres[rng.integers(0, n_centres, n)]
    for i in range(n):
        bits[i, rng.choice(n_bits, n_flips, replace=False)] ^= 1
    return bits


@pytest.mark.parametrize("n_bits", [65, 100, 128, 192, 200, 256])
@pytest.mark.parametrize("n_queries", [3, 40])
def test_clustered_codes_and_complements(n_bits, n_queries, path):
    """Codes a few bits from a few centres (many candidates per group, many
    equal distances, ids taken in order from the AVX2 byte distances), and
    the complement of every query in the database: a distance of n_bits, which
    at 256 bits is 0 modulo 256 in the AVX2 byte counts and must come out as
    256.  3 queries are tiles of 2 + 1, 40 a task that transposes whole chunks
    (one thread) or 5 tiles of 8 (two threads)."""
    rng = np.random.default_rng(n_bits + n_queries)
    q_bits = clustered_bits(rng, n_queries, n_bits, 12, 2)
    db_bits = clustered_bits(rng, 3000, n_bits, 12, 3)
    at = rng.choice(3000, n_queries, replace=False)
    db_bits[at] = 1 - q_bits                                    # complements
    db_bits[rng.choice(3000, 5, replace=False)] = q_bits[0]     # exact copies
    db, queries = fc.pack_codes(db_bits.astype(np.int8)), fc.pack_codes(q_bits.astype(np.int8))
    dist = ref_distances(queries, db)
    assert (dist[np.arange(n_queries), at] == n_bits).all()
    for n_threads in (1, 2):
        index = HammingIndex(db, n_bits=n_bits, n_threads=n_threads, method="linear")
        for k in (1, 100, 1000, 3000):
            D, I = index.search(queries, k)
            rD, rI = ref_search(queries, db, k)
            np.testing.assert_array_equal(D, rD)
            np.testing.assert_array_equal(I, rI)
        D, I = index.search(queries, 3001)                     # k > n: the complement is last
        np.testing.assert_array_equal(D[:, -1], n_bits)
        np.testing.assert_array_equal(I[:, -1], at)
        for radius in (0, 4, n_bits - 1, n_bits):
            lims, D, I = index.range_search(queries, radius)
            for j in range(n_queries):
                hit = np.flatnonzero(dist[j] <= radius)
                hit = hit[np.lexsort((hit, dist[j, hit]))]
                np.testing.assert_array_equal(I[lims[j]:lims[j + 1]], hit)
                np.testing.assert_array_equal(D[lims[j]:lims[j + 1]], dist[j, hit])


def test_decreasing_distances_stress_selection(path):
    """Every new code is closer than all before it: maximal insertions and buffer compactions."""
    n_bits, n = 256, 2000
    signs = np.zeros((n, n_bits), dtype=np.int8)
    for i in range(n):  # code i has (n - i) * 256 // n ones -> distance to 0 decreases with i
        signs[i, :(n - i) * n_bits // n] = 1
    db = fc.pack_codes(signs)
    queries = np.zeros((3, n_bits // 8), dtype=np.uint8)
    for k in (1, 7, 100, 999):
        for n_threads in (1, 2):
            D, I = HammingIndex(db, n_bits=n_bits, n_threads=n_threads).search(queries, k)
            rD, rI = ref_search(queries, db, k)
            np.testing.assert_array_equal(D, rD)
            np.testing.assert_array_equal(I, rI)


def test_query_batches(monkeypatch):
    """Large query sets are searched in batches: same answer as one call."""
    from flexcmh_fast.search import _index

    rng = np.random.default_rng(13)
    db = random_codes(rng, 500, 40, n_distinct=60)
    queries = random_codes(rng, 37, 40)
    index = HammingIndex(db, n_bits=40, n_threads=2)
    whole = index.search(queries, 9)
    monkeypatch.setattr(_index, "_QUERY_BATCH", 8)
    for a, b in zip(whole, index.search(queries, 9)):
        np.testing.assert_array_equal(a, b)


def test_all_ties_smallest_ids_win(path):
    db = np.zeros((50, 1), dtype=np.uint8)
    queries = np.zeros((4, 1), dtype=np.uint8)
    D, I = HammingIndex(db, n_bits=5, n_threads=2).search(queries, 10)
    np.testing.assert_array_equal(D, 0)
    np.testing.assert_array_equal(I, np.tile(np.arange(10), (4, 1)))


@pytest.mark.parametrize("n_queries", [1, 3, 17, 64])
def test_threads_and_work_split_identical(n_queries):
    """Few queries split the database between threads, many split the queries: same answer."""
    rng = np.random.default_rng(3)
    db = random_codes(rng, 2500, 32, n_distinct=200)
    queries = random_codes(rng, n_queries, 32)
    one = HammingIndex(db, n_bits=32, n_threads=1)
    two = HammingIndex(db, n_bits=32, n_threads=2)
    for a, b in zip(one.search(queries, 40), two.search(queries, 40)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(one.range_search(queries, 12), two.range_search(queries, 12)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.distance_histogram(queries), two.distance_histogram(queries))
    np.testing.assert_array_equal(one.search(queries, 40)[1], ref_search(queries, db, 40)[1])


def test_forced_portable_path_identical():
    rng = np.random.default_rng(4)
    db = random_codes(rng, 777, 200, n_distinct=50)
    queries = random_codes(rng, 21, 200)
    index = HammingIndex(db, n_bits=200, n_threads=2)
    results = {}
    for name in PATHS:
        previous = _hamming.set_popcount_path(name)
        try:
            assert _hamming.cpu_popcount_path() == name
            results[name] = (index.search(queries, 33), index.range_search(queries, 95),
                             index.distance_histogram(queries), index.distances(queries))
        finally:
            _hamming.set_popcount_path(previous)
    fast = results[PATHS[0]]
    for name in PATHS[1:]:
        for a, b in zip(fast, results[name]):
            pairs = zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,))
            for x, y in pairs:
                np.testing.assert_array_equal(x, y)


def test_small_problems_run_on_one_thread():
    _hamming._set_min_work_per_thread(1 << 22)
    assert _hamming._plan(10, 100, 1, 2)[0] == 1          # tiny: one thread
    assert _hamming._plan(1000, 125_000, 1, 2)[:2] == (2, 1)  # many queries: split queries
    assert _hamming._plan(1, 10**7, 2, 2)[:2] == (2, 2)       # one query: split the database


def test_popcount_path_api():
    assert _hamming.cpu_popcount_path() in ("avx512-vpopcntdq", "avx2", "popcnt", "portable")
    assert "portable" in PATHS
    with pytest.raises(ValueError, match="'name'"):
        _hamming.set_popcount_path("sse9")
    previous = _hamming.set_popcount_path("portable")
    try:
        assert _hamming.cpu_popcount_path() == "portable"
    finally:
        _hamming.set_popcount_path(previous)
    assert _hamming.set_popcount_path("auto") == previous
    assert _hamming.cpu_popcount_path() == PATHS[0]


def test_environment_variable_forces_portable_path():
    env = dict(os.environ, FLEXCMH_FAST_POPCOUNT="portable")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    out = subprocess.run(
        [sys.executable, "-c", "import flexcmh_fast._hamming as h; print(h.cpu_popcount_path())"],
        env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "portable"


# ----------------------------------------------------------------------
# faiss
# ----------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [8, 64, 128, 256, 1000])
def test_search_matches_faiss(n_bits):
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(11)
    db = random_codes(rng, 3000, n_bits, n_distinct=400)
    queries = random_codes(rng, 25, n_bits)
    k = 20
    flat = faiss.IndexBinaryFlat(n_bits)
    flat.add(db)
    fD, fI = flat.search(queries, k)
    D, I = HammingIndex(db, n_bits=n_bits, n_threads=2).search(queries, k)
    np.testing.assert_array_equal(D, fD)
    # faiss does not promise an order inside ties: compare ids strictly below the k-th distance.
    for j in range(queries.shape[0]):
        below = D[j] < D[j, -1]
        assert set(I[j, below]) == set(fI[j, fD[j] < fD[j, -1]])
    lims_f, fRD, fRI = flat.range_search(queries, n_bits // 4)
    lims, RD, RI = HammingIndex(db, n_bits=n_bits).range_search(queries, n_bits // 4 - 1)
    # faiss's binary range search is "distance < radius".
    np.testing.assert_array_equal(lims, lims_f)
    for j in range(queries.shape[0]):
        a = np.lexsort((fRI[lims[j]:lims[j + 1]], fRD[lims[j]:lims[j + 1]]))
        np.testing.assert_array_equal(RI[lims[j]:lims[j + 1]], fRI[lims[j]:lims[j + 1]][a])


# ----------------------------------------------------------------------
# Edge cases, building, persistence
# ----------------------------------------------------------------------
def test_empty_queries_and_empty_index():
    rng = np.random.default_rng(5)
    db = random_codes(rng, 10, 70)
    index = HammingIndex(db, n_bits=70)
    none = np.empty((0, 9), dtype=np.uint8)
    D, I = index.search(none, 3)
    assert D.shape == I.shape == (0, 3)
    lims, RD, RI = index.range_search(none, 5)
    np.testing.assert_array_equal(lims, [0])
    assert RD.size == RI.size == 0
    assert index.distance_histogram(none).shape == (0, 71)
    assert index.distances(none).shape == (0, 10)

    empty = HammingIndex(n_bits=70)
    assert len(empty) == 0 and empty.codes.shape == (0, 9)
    D, I = empty.search(db[:2], 4)
    assert D.shape == I.shape == (2, 0)
    lims, RD, RI = empty.range_search(db[:2], 70)
    np.testing.assert_array_equal(lims, [0, 0, 0])
    np.testing.assert_array_equal(empty.distance_histogram(db[:2]), 0)
    assert empty.distances(db[:2]).shape == (2, 0)
    assert HammingIndex(np.empty((0, 9), np.uint8), n_bits=70).search(db[:1], 1)[1].shape == (1, 0)


def test_huge_k_is_capped_at_the_database_size(path):
    # k far beyond the database (and beyond int32) must neither allocate
    # (n_queries, k) results nor fail: the result has min(k, n) columns.
    rng = np.random.default_rng(40)
    db, queries = random_codes(rng, 1000, 40), random_codes(rng, 3, 40)
    index = HammingIndex(db, n_bits=40)
    want = ref_search(queries, db, 1000)
    for k in (1000, 1001, 10**9, 2**31 + 5, 2**63 - 1):
        D, I = index.search(queries, k)
        assert D.shape == I.shape == (3, 1000)
        np.testing.assert_array_equal(D, want[0])
        np.testing.assert_array_equal(I, want[1])


def test_one_code_database_and_k_larger_than_n(path):
    code = fc.pack_codes(np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1]]))
    index = HammingIndex(code, n_bits=9)
    queries = fc.pack_codes(np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0]]))
    D, I = index.search(queries, 3)
    np.testing.assert_array_equal(D, [[0], [5]])
    np.testing.assert_array_equal(I, [[0], [0]])
    lims, RD, RI = index.range_search(queries, 0)
    np.testing.assert_array_equal(lims, [0, 1, 1])
    np.testing.assert_array_equal(index.distance_histogram(queries).sum(axis=1), [1, 1])


def test_add_in_batches_equals_one_batch():
    rng = np.random.default_rng(6)
    n_bits = 100
    db = random_codes(rng, 1000, n_bits, n_distinct=80)
    queries = random_codes(rng, 12, n_bits)
    whole = HammingIndex(db, n_bits=n_bits)
    parts = HammingIndex(n_bits=n_bits)
    cuts = [0, 0, 1, 8, 9, 16, 23, 400, 401, 1000]
    for a, b in zip(cuts[:-1], cuts[1:]):
        assert parts.add(np.ascontiguousarray(db[a:b])) is parts
    assert len(parts) == len(whole) == 1000
    np.testing.assert_array_equal(parts.codes, db)
    for a, b in zip(whole.search(queries, 25), parts.search(queries, 25)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.distances(queries), parts.distances(queries))


def test_codes_property_roundtrip_and_is_a_copy():
    rng = np.random.default_rng(8)
    db = random_codes(rng, 37, 129)
    index = HammingIndex(db, n_bits=129)
    codes = index.codes
    np.testing.assert_array_equal(codes, db)
    codes[:] = 0
    np.testing.assert_array_equal(index.codes, db)


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(9)
    db = random_codes(rng, 123, 65)
    queries = random_codes(rng, 7, 65)
    index = HammingIndex(db, n_bits=65, n_threads=1)
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = fc.load(path)
    assert isinstance(loaded, HammingIndex)
    assert loaded.n_bits == 65 and len(loaded) == 123 and loaded.n_threads == 1
    np.testing.assert_array_equal(loaded.codes, db)
    for a, b in zip(index.search(queries, 9), loaded.search(queries, 9)):
        np.testing.assert_array_equal(a, b)
    HammingIndex(db, n_bits=65, n_threads=np.int64(2)).save(path)  # numpy int is JSON-safe
    assert fc.load(path).n_threads == 2
    HammingIndex(n_bits=3).save(tmp_path / "empty.npz")
    assert len(fc.load(tmp_path / "empty.npz")) == 0


def test_pickle_roundtrip():
    import pickle

    rng = np.random.default_rng(12)
    db = random_codes(rng, 50, 77)
    index = HammingIndex(db, n_bits=77, n_threads=1)
    clone = pickle.loads(pickle.dumps(index))
    assert clone.n_bits == 77 and clone.n_threads == 1 and len(clone) == 50
    for a, b in zip(index.search(db, 5), clone.search(db, 5)):
        np.testing.assert_array_equal(a, b)


def test_public_names():
    assert fc.HammingIndex is HammingIndex
    assert repr(HammingIndex(n_bits=4)) == "HammingIndex(n_codes=0, n_bits=4, method='auto')"


# ----------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------
def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="'n_bits'"):
        HammingIndex()
    with pytest.raises(ValueError, match="'n_bits'"):
        HammingIndex(n_bits=0)
    with pytest.raises(ValueError, match="'n_bits'"):
        HammingIndex(n_bits=4097)
    with pytest.raises(TypeError, match="'n_bits'"):
        HammingIndex(n_bits=8.0)
    with pytest.raises(ValueError, match="'n_threads'"):
        HammingIndex(n_bits=8, n_threads=0)
    with pytest.raises(TypeError, match="'n_threads'"):
        HammingIndex(n_bits=8, n_threads="2")
    index = HammingIndex(n_bits=8)
    with pytest.raises(ValueError, match="'n_threads'"):
        index.n_threads = -5


@pytest.mark.parametrize("method", ["add", "search", "range_search", "distance_histogram"])
def test_bad_codes_are_rejected(method):
    rng = np.random.default_rng(10)
    good = random_codes(rng, 6, 12)
    index = HammingIndex(good, n_bits=12)
    name = "codes" if method == "add" else "queries"
    extra = {"search": (3,), "range_search": (2,)}.get(method, ())
    call = getattr(index, method)
    bad = [
        (TypeError, good.astype(np.int64)),                  # wrong dtype
        (TypeError, good.tolist()),                          # not an ndarray
        (ValueError, np.zeros((6, 3), np.uint8)),            # wrong width
        (ValueError, good[:, 0].copy()),                     # 1-D
        (ValueError, np.zeros((6, 4), np.uint8)[:, ::2]),    # non-contiguous
        (ValueError, good | np.uint8(1)),                    # nonzero padding bits
    ]
    for exc, arr in bad:
        with pytest.raises(exc, match=f"'{name}'"):
            call(arr, *extra)
    assert len(index) == 6  # nothing was added by a failing call


def test_bad_k_and_radius():
    index = HammingIndex(np.zeros((3, 1), np.uint8), n_bits=8)
    q = np.zeros((1, 1), np.uint8)
    for k, exc in [(0, ValueError), (-1, ValueError), (1.5, TypeError), (None, TypeError),
                   (True, TypeError)]:
        with pytest.raises(exc, match="'k'"):
            index.search(q, k)
    for r, exc in [(-1, ValueError), (0.5, TypeError), ("2", TypeError)]:
        with pytest.raises(exc, match="'radius'"):
            index.range_search(q, r)
    assert index.search(q, np.int64(2))[1].tolist() == [[0, 1]]


def test_hamming_distances_bad_input():
    codes = np.zeros((3, 2), np.uint8)
    with pytest.raises(ValueError, match="'n_bits'"):
        hamming_distances(codes, codes, 0)
    with pytest.raises(ValueError, match="'codes'"):
        hamming_distances(codes, np.zeros((3, 3), np.uint8), 16)
    with pytest.raises(ValueError, match="'queries'"):
        hamming_distances(np.zeros((3, 3), np.uint8), codes, 16)


def test_load_rejects_inconsistent_file(tmp_path):
    from flexcmh_fast._persist import save_state

    path = tmp_path / "bad.npz"
    save_state(path, "HammingIndex", {"n_bits": 8, "n_codes": 5, "n_threads": None},
               {"codes": np.zeros((3, 1), np.uint8)})
    with pytest.raises(fc.FileFormatError, match="not a valid HammingIndex file: .*codes"):
        fc.load(path)
    save_state(path, "HammingIndex", {"n_bits": 8}, {"codes": np.zeros((3, 1), np.uint8)})
    with pytest.raises(fc.FileFormatError, match="n_codes"):
        fc.load(path)
