"""Multi-index hashing search (HammingIndex method="mih" / "auto") against the
numpy reference of test_hamming (popcount of XOR, (distance, id) order) and
against the linear scan, on random and clustered codes."""
import pickle

import numpy as np
import pytest
from test_hamming import random_codes, ref_distances, ref_search

import flexcmh_fast as fc
from flexcmh_fast import _hamming
from flexcmh_fast.search import HammingIndex, _index, _mih

PATHS = _hamming.available_popcount_paths()


def clustered_codes(rng, n, n_bits, n_centres, flips):
    """Codes of ``n_centres`` random centres with ``flips`` random bits flipped
    (a bit may be flipped twice, so at most ``flips`` differ).  The centres
    depend on (n_bits, n_centres) only: database and queries share them."""
    centres = np.random.default_rng([n_bits, n_centres]).integers(0, 2, (n_centres, n_bits))
    bits = centres[rng.integers(0, n_centres, n)]
    rows = np.arange(n)
    for _ in range(flips):
        bits[rows, rng.integers(0, n_bits, n)] ^= 1
    return fc.pack_codes(bits.astype(np.int8))


def ref_range(queries, codes, radius):
    dist = ref_distances(queries, codes)
    lims, D, I = [0], [], []
    for j in range(queries.shape[0]):
        hit = np.flatnonzero(dist[j] <= radius)
        order = hit[np.argsort(dist[j, hit], kind="stable")]  # by distance, then id
        D.append(dist[j, order])
        I.append(order)
        lims.append(lims[-1] + order.size)
    return np.array(lims), np.concatenate(D), np.concatenate(I)


def assert_search_equal(index, queries, codes, k):
    D, I = index.search(queries, k)
    rD, rI = ref_search(queries, codes, k)
    assert D.dtype == np.int32 and I.dtype == np.int64
    np.testing.assert_array_equal(D, rD)
    np.testing.assert_array_equal(I, rI)


def assert_range_equal(index, queries, codes, radius):
    lims, D, I = index.range_search(queries, radius)
    rlims, rD, rI = ref_range(queries, codes, radius)
    assert lims.dtype == np.int64 and D.dtype == np.int32 and I.dtype == np.int64
    np.testing.assert_array_equal(lims, rlims)
    np.testing.assert_array_equal(D, rD)
    np.testing.assert_array_equal(I, rI)


@pytest.fixture(params=PATHS)
def path(request):
    previous = _hamming.set_popcount_path(request.param)
    yield request.param
    _hamming.set_popcount_path(previous)


# ----------------------------------------------------------------------
# Exactness
# ----------------------------------------------------------------------
def test_every_code_length_1_to_256():
    """Every length, so every substring split and padding gap is exercised."""
    rng = np.random.default_rng(0)
    for n_bits in range(1, 257):
        n = int(rng.integers(1, 90))
        db = (clustered_codes(rng, n, n_bits, 4, 2) if n_bits % 2
              else random_codes(rng, n, n_bits, n_distinct=max(1, n // 3)))  # ties
        queries = np.concatenate([random_codes(rng, 3, n_bits), db[:2]])
        index = HammingIndex(db, n_bits=n_bits, method="mih", n_threads=2)
        for k in (1, 3, n, n + 5):
            assert_search_equal(index, queries, db, k)
        for radius in (0, n_bits // 3, n_bits):
            assert_range_equal(index, queries, db, radius)


@pytest.mark.parametrize("n_bits", [16, 32, 60, 64, 100, 128, 256])
def test_random_and_clustered_codes(n_bits, path):
    rng = np.random.default_rng(n_bits)
    for db in (random_codes(rng, 3000, n_bits),
               clustered_codes(rng, 3000, n_bits, 40, max(1, n_bits // 16))):
        queries = np.concatenate([random_codes(rng, 10, n_bits), db[::600],
                                  clustered_codes(rng, 10, n_bits, 40, 3)])
        for n_threads in (1, 2):
            index = HammingIndex(db, n_bits=n_bits, method="mih", n_threads=n_threads)
            for k in (1, 10, 250):
                assert_search_equal(index, queries, db, k)
            for radius in (0, 2, n_bits // 4):
                assert_range_equal(index, queries, db, radius)


def test_ties_are_broken_by_smaller_id():
    # 500 copies of 3 codes: every distance is a large tie.
    rng = np.random.default_rng(3)
    db = random_codes(rng, 1500, 64, n_distinct=3)
    queries = np.concatenate([db[:3], random_codes(rng, 4, 64)])
    index = HammingIndex(db, n_bits=64, method="mih")
    for k in (1, 7, 499, 500, 501, 1499, 1500):
        assert_search_equal(index, queries, db, k)
    assert_range_equal(index, queries, db, 0)
    assert_range_equal(index, queries, db, 64)


def test_empty_index_and_empty_queries():
    rng = np.random.default_rng(4)
    empty = HammingIndex(n_bits=64, method="mih")
    q = random_codes(rng, 3, 64)
    D, I = empty.search(q, 5)
    assert D.shape == I.shape == (3, 0)
    lims, D, I = empty.range_search(q, 64)
    np.testing.assert_array_equal(lims, [0, 0, 0, 0])
    assert D.size == I.size == 0

    db = random_codes(rng, 100, 64)
    index = HammingIndex(db, n_bits=64, method="mih")
    none = np.zeros((0, 8), np.uint8)
    D, I = index.search(none, 5)
    assert D.shape == I.shape == (0, 5)
    lims, D, I = index.range_search(none, 3)
    np.testing.assert_array_equal(lims, [0])
    assert index.mih_nbytes == 0  # nothing searched, nothing built


def test_one_code_and_k_larger_than_n():
    code = fc.pack_codes(np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1]]))
    index = HammingIndex(code, n_bits=9, method="mih")
    queries = fc.pack_codes(np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1], [0] * 9]))
    D, I = index.search(queries, 10**9)
    np.testing.assert_array_equal(D, [[0], [5]])
    np.testing.assert_array_equal(I, [[0], [0]])
    assert_range_equal(index, queries, code, 4)
    assert_range_equal(index, queries, code, 9)


def test_add_after_build_rebuilds_the_tables():
    rng = np.random.default_rng(5)
    db = clustered_codes(rng, 700, 48, 10, 3)
    queries = clustered_codes(rng, 12, 48, 10, 3)
    index = HammingIndex(db[:300], n_bits=48, method="mih")
    assert_search_equal(index, queries, db[:300], 20)
    assert index.mih_nbytes > 0
    index.add(db[300:650]).add(db[650:])
    assert index.mih_nbytes == 0  # stale tables dropped
    assert_search_equal(index, queries, db, 20)
    assert_range_equal(index, queries, db, 6)


# ----------------------------------------------------------------------
# "auto": the budget fallback and the cost model
# ----------------------------------------------------------------------
@pytest.fixture
def small_auto_threshold(monkeypatch):
    """Let "auto" consider hashing on test-sized databases."""
    monkeypatch.setattr(_index, "_AUTO_MIN_CODES", 1000)


def test_auto_mixes_hashing_and_scan_exactly(small_auto_threshold, monkeypatch):
    rng = np.random.default_rng(6)
    db = clustered_codes(rng, 4000, 64, 20, 2)
    # Near queries are hashed cheaply, random ones exceed the budget and are
    # scanned; both kinds mixed in one call, before and after the pilot.
    near, far = clustered_codes(rng, 40, 64, 20, 2), random_codes(rng, 40, 64)
    queries = np.concatenate([near[:8], far[:4], near[8:], far[4:]])
    index = HammingIndex(db, n_bits=64)
    calls = []
    real_topk = _mih._MIHTables.topk

    def spy(self, words, q, k, budget, n_threads):
        result = real_topk(self, words, q, k, budget, n_threads)
        calls.append(result[2])
        return result

    monkeypatch.setattr(_mih._MIHTables, "topk", spy)
    monkeypatch.setattr(_index, "_PILOT_QUERIES", 8)
    # Scanning 4000 codes is cheap: price hashing as cheap too, so that the
    # budget (half a scan, 2000 units) lets the near queries through.
    monkeypatch.setattr(_index, "_SCAN_CODES_PER_UNIT", dict.fromkeys(PATHS, 1))
    assert_search_equal(index, queries, db, 5)
    work = np.concatenate(calls)
    assert work.size == 80  # pilot accepted: every query tried by hashing
    assert (work < 0).any() and (work > 0).any()  # some scanned, some hashed
    assert_range_equal(index, queries, db, 3)


def test_auto_scans_random_long_codes(small_auto_threshold, monkeypatch):
    rng = np.random.default_rng(7)
    db, queries = random_codes(rng, 5000, 128), random_codes(rng, 100, 128)
    index = HammingIndex(db, n_bits=128)
    calls = []
    real_topk = _mih._MIHTables.topk
    monkeypatch.setattr(_mih._MIHTables, "topk",
                        lambda self, *a: calls.append(a[1].shape[0]) or real_topk(self, *a))
    assert_search_equal(index, queries, db, 10)
    assert calls == [100 // 16]  # the pilot only (1 query in 16): the rest is scanned


def test_auto_uses_the_scan_when_hashing_cannot_help(monkeypatch):
    rng = np.random.default_rng(8)
    db = random_codes(rng, 2000, 64)
    monkeypatch.setattr(_mih._MIHTables, "__init__", None)  # any table build fails
    index = HammingIndex(db, n_bits=64)  # below _AUTO_MIN_CODES
    assert_search_equal(index, db[:5], db, 3)
    monkeypatch.setattr(_index, "_AUTO_MIN_CODES", 1000)
    assert_search_equal(index, db[:5], db, 2000 // 64 + 1)  # k too large a share
    assert_range_equal(index, db[:5], db, 16)  # radius too large a share
    long = HammingIndex(random_codes(rng, 2000, 300), n_bits=300)  # > 256 bits
    long.search(long.codes[:2], 3)


# ----------------------------------------------------------------------
# Memory, persistence, threads, validation
# ----------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [32, 64, 128, 256])
def test_tables_take_at_most_four_times_the_packed_codes(n_bits):
    n = 1 << 16
    db = random_codes(np.random.default_rng(n_bits), n, n_bits)
    index = HammingIndex(db, n_bits=n_bits, method="mih")
    index.search(db[:1], 1)
    assert 0 < index.mih_nbytes <= 4 * db.nbytes


@pytest.mark.parametrize("n_bits, n", [(1, 10), (9, 5), (64, 10**6), (65, 3000), (256, 2**20)])
def test_substring_plan_covers_every_bit_once(n_bits, n):
    sub = _mih.plan_substrings(n_bits, n)
    assert sub[1].sum() == n_bits and (sub[1] >= 1).all() and (sub[1] <= 24).all()
    covered = np.zeros(8 * -(-n_bits // 8), dtype=int)
    for lo, length, gap_off, gap_len in sub.T:
        read = np.arange(lo, lo + length + gap_len)
        covered[np.delete(read, np.arange(gap_off, gap_off + gap_len))] += 1
    pad = covered.size - n_bits
    valid = np.ones(covered.size, dtype=bool)
    valid[covered.size - 8:covered.size - 8 + pad] = False  # low bits of the last byte
    np.testing.assert_array_equal(covered, valid.astype(int))


def test_save_load_and_pickle_keep_the_method(tmp_path):
    rng = np.random.default_rng(9)
    db = clustered_codes(rng, 500, 40, 8, 2)
    index = HammingIndex(db, n_bits=40, method="mih", n_threads=2)
    want = index.search(db[:9], 12)
    index.save(tmp_path / "mih.npz")
    for other in (fc.load(tmp_path / "mih.npz"), pickle.loads(pickle.dumps(index))):
        assert other.method == "mih" and other.n_threads == 2 and len(other) == 500
        got = other.search(db[:9], 12)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert repr(index) == "HammingIndex(n_codes=500, n_bits=40, method='mih')"


def test_files_without_a_method_load_as_auto(tmp_path):
    from flexcmh_fast._persist import save_state
    db = random_codes(np.random.default_rng(10), 20, 16)
    save_state(tmp_path / "old.npz", "HammingIndex",
               {"n_bits": 16, "n_codes": 20, "n_threads": None}, {"codes": db})
    assert fc.load(tmp_path / "old.npz").method == "auto"


def test_results_do_not_depend_on_threads(monkeypatch):
    rng = np.random.default_rng(11)
    db = clustered_codes(rng, 5000, 64, 30, 3)
    queries = clustered_codes(rng, 101, 64, 30, 3)
    want = HammingIndex(db, n_bits=64, method="linear").search(queries, 17)
    for n_threads in (1, 2, 3, None):
        got = HammingIndex(db, n_bits=64, method="mih", n_threads=n_threads).search(queries, 17)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_bad_method():
    for bad in ("MIH", "hash", None, 1):
        with pytest.raises(ValueError, match="'method' must be one of"):
            HammingIndex(n_bits=64, method=bad)
    with pytest.raises(ValueError, match="'method'='mih' supports codes of at most 256 bits"):
        HammingIndex(n_bits=257, method="mih")
    assert HammingIndex(n_bits=257, method="auto").method == "auto"


def test_mih_refuses_more_codes_than_uint32_ids(monkeypatch):
    monkeypatch.setattr(_index, "_MIH_MAX_CODES", 10)
    rng = np.random.default_rng(12)
    index = HammingIndex(random_codes(rng, 8, 32), n_bits=32, method="mih")
    with pytest.raises(ValueError, match="at most 10 codes"):
        index.add(random_codes(rng, 3, 32))
    assert len(index) == 8


# ----------------------------------------------------------------------
# Sharded index: every shard hashes
# ----------------------------------------------------------------------
@pytest.mark.distributed
def test_sharded_index_with_mih_and_huge_k(client):
    da = pytest.importorskip("dask.array")
    from flexcmh_fast import distributed as fd
    rng = np.random.default_rng(13)
    db = clustered_codes(rng, 900, 64, 12, 3)
    queries = clustered_codes(rng, 15, 64, 12, 3)
    sharded = fd.ShardedHammingIndex(da.from_array(db, chunks=250), 64, method="mih")
    single = HammingIndex(db, n_bits=64, method="linear")
    for k in (1, 30, 900, 10**9, 2**31 + 5):
        got, want = sharded.search(queries, k), single.search(queries, k)
        assert got[0].shape == (15, min(k, 900))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    for got, want in zip(sharded.range_search(queries, 7), single.range_search(queries, 7)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="'method' must be one of"):
        fd.ShardedHammingIndex(da.from_array(db, chunks=250), 64, method="fast")
