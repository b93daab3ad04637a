"""Dask scale-out: distributed encoding and sharded exact search.

The cluster tests run on a real ``LocalCluster(processes=True, n_workers=2,
threads_per_worker=1)`` started and closed by the ``client`` fixture
(conftest.py); their results must equal the single-machine ``model.encode`` /
``HammingIndex`` exactly.  The merge helpers are also checked against a plain NumPy reference
without a cluster, and subprocesses check that only
``flexcmh_fast.distributed`` imports Dask.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import flexcmh_fast as fc  # noqa: E402
from flexcmh_fast import distributed as fd  # noqa: E402
from flexcmh_fast.search import _sharded  # noqa: E402

pytestmark = pytest.mark.distributed



def run_python(code, cwd):
    """Run ``code`` in a fresh interpreter that imports the same flexcmh_fast as this test."""
    env = dict(os.environ, PYTHONPATH=str(Path(fc.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def model_and_data():
    rng = np.random.default_rng(0)
    n = 150
    X0 = rng.standard_normal((n, 12))
    X1 = sp.random(n, 40, density=0.15, format="csr", random_state=1)
    X1.data = rng.standard_normal(X1.nnz)
    model = fc.train([X0, X1], pairs="all", n_bits=13, random_state=0, n_threads=1)
    return model, X0, X1


def random_codes(rng, n, n_bits):
    return fc.pack_codes(rng.integers(0, 2, (n, n_bits)))


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


# ----------------------------------------------------------------------
# Merge helpers against a plain NumPy reference (no cluster)
# ----------------------------------------------------------------------
def reference_topk(dist, ids, k):
    """Sort each row by (distance, id) with Python tuples, keep k."""
    out_d, out_i = [], []
    for d_row, i_row in zip(dist, ids):
        pairs = sorted(zip(d_row.tolist(), i_row.tolist()))[:k]
        out_d.append([p[0] for p in pairs])
        out_i.append([p[1] for p in pairs])
    return np.array(out_d, dtype=np.int32), np.array(out_i, dtype=np.int64)


@pytest.mark.parametrize("k", [1, 5, 17, 40])
def test_merge_topk_matches_reference(k):
    rng = np.random.default_rng(k)
    parts = []
    offset = 0
    for width in (7, 12, 1, 20):
        d = rng.integers(0, 5, (9, width)).astype(np.int32)  # many ties
        i = offset + np.argsort(rng.random((9, width)), axis=1).astype(np.int64)
        parts.append((d, i))
        offset += width
    got = _sharded.merge_topk(k, *parts)
    want = reference_topk(np.hstack([p[0] for p in parts]),
                          np.hstack([p[1] for p in parts]), k)
    assert_same(got, want)


def test_merge_topk_extreme_values():
    d = np.array([[4096, 0]], dtype=np.int32)
    i = np.array([[(1 << 51) - 1, (1 << 51) - 2]], dtype=np.int64)
    got = _sharded.merge_topk(2, (d, i), (np.array([[4096]], np.int32), np.array([[5]], np.int64)))
    assert_same(got, (np.array([[0, 4096]], np.int32), np.array([[(1 << 51) - 2, 5]])))


def test_merge_range_matches_reference():
    rng = np.random.default_rng(3)
    n_q = 6
    parts, all_rows = [], [[] for _ in range(n_q)]
    offset = 0
    for _ in range(3):
        counts = rng.integers(0, 5, n_q)
        counts[2] = 0  # a query with no result anywhere
        lims = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        d = rng.integers(0, 3, lims[-1]).astype(np.int32)
        i = (offset + rng.permutation(50)[:lims[-1]]).astype(np.int64)
        parts.append((lims, d, i))
        for j in range(n_q):
            rows = slice(lims[j], lims[j + 1])
            all_rows[j] += list(zip(d[rows].tolist(), i[rows].tolist()))
        offset += 50
    lims, d, i = _sharded.merge_range(*parts)
    assert lims.dtype == np.int64 and d.dtype == np.int32 and i.dtype == np.int64
    for j in range(n_q):
        want = sorted(all_rows[j])
        assert list(zip(d[lims[j]:lims[j + 1]].tolist(), i[lims[j]:lims[j + 1]].tolist())) == want


# ----------------------------------------------------------------------
# Sharded search == single HammingIndex
# ----------------------------------------------------------------------
@pytest.mark.parametrize("n_bits, split_every", [(8, 2), (13, 3), (64, 8), (200, 2)])
def test_sharded_search_equals_single_index(client, n_bits, split_every):
    rng = np.random.default_rng(n_bits)
    n = 1000
    db = random_codes(rng, n, n_bits)
    db[500:520] = db[3]  # exact duplicates across shards: ties decided by global id
    queries = np.vstack([random_codes(rng, 40, n_bits), db[[3, 999, 0]]])
    # Uneven shards, one empty, one of a single code.
    codes = da.from_array(db, chunks=((100, 0, 1, 299, 250, 350), db.shape[1]))
    index = fd.ShardedHammingIndex(codes, n_bits, split_every=split_every)
    single = fc.HammingIndex(db, n_bits=n_bits)
    assert len(index) == n and index.n_bits == n_bits
    assert index.n_shards == 5 and index.shard_sizes == (100, 1, 299, 250, 350)
    for k in (1, 10, 100, n, n + 7):
        assert_same(index.search(queries, k), single.search(queries, k))
    for radius in (0, n_bits // 4, n_bits // 2, n_bits + 3):
        assert_same(index.range_search(queries, radius), single.range_search(queries, radius))
    assert_same([index.distance_histogram(queries)], [single.distance_histogram(queries)])


def test_shards_stay_on_workers_and_merge_is_a_tree(client):
    rng = np.random.default_rng(4)
    db = random_codes(rng, 500, 16)
    index = fd.ShardedHammingIndex(da.from_array(db, chunks=100), 16, split_every=2)
    before = client.who_has(index._shards)
    with distributed.get_task_stream(client) as stream:
        index.search(random_codes(rng, 10, 16), 5)
    names = [t["key"].split("-")[0] for t in stream.data]
    # No shard is rebuilt: one search task per shard, 5 -> 3 -> 2 -> 1 merges.
    assert "build_shard" not in names
    assert names.count("shard_search") == 5
    assert names.count("merge_topk") == 3 + 2 + 1
    assert client.who_has(index._shards) == before
    assert all(before.values())


def test_sharded_search_repeated_batches_and_dask_queries(client):
    rng = np.random.default_rng(5)
    db = random_codes(rng, 600, 32)
    queries = random_codes(rng, 25, 32)
    index = fd.ShardedHammingIndex(da.from_array(db, chunks=(150, 4)), 32, n_threads=2)
    single = fc.HammingIndex(db, n_bits=32)
    want = single.search(queries, 7)
    # The same batch twice in a row must not reuse (or lose) the previous batch's data.
    for _ in range(3):
        assert_same(index.search(queries, 7), want)
    assert_same(index.search(da.from_array(queries, chunks=10), 7), want)
    # A second index over the same codes is independent of the first.
    again = fd.ShardedHammingIndex(da.from_array(db, chunks=(150, 4)), 32)
    del index
    assert_same(again.search(queries, 7), want)


def test_sharded_unknown_chunk_sizes_and_column_chunks(client):
    rng = np.random.default_rng(6)
    db = random_codes(rng, 800, 24)
    arr = da.from_array(db, chunks=(200, 1))  # 3 column chunks: joined on build
    kept = arr[arr[:, 0] < 128]  # boolean filter: row chunk sizes unknown
    assert np.isnan(kept.shape[0])
    index = fd.ShardedHammingIndex(kept, 24)
    single = fc.HammingIndex(np.ascontiguousarray(db[db[:, 0] < 128]), n_bits=24)
    assert len(index) == len(single)
    queries = random_codes(rng, 30, 24)
    assert_same(index.search(queries, 50), single.search(queries, 50))
    assert_same(index.range_search(queries, 6), single.range_search(queries, 6))


def test_sharded_empty_database_and_empty_queries(client):
    rng = np.random.default_rng(7)
    empty = fd.ShardedHammingIndex(da.zeros((0, 2), dtype=np.uint8, chunks=(5, 2)), 16)
    single = fc.HammingIndex(np.zeros((0, 2), np.uint8), n_bits=16)
    queries = random_codes(rng, 4, 16)
    assert len(empty) == 0 and empty.n_shards == 0
    assert_same(empty.search(queries, 3), single.search(queries, 3))
    assert_same(empty.range_search(queries, 16), single.range_search(queries, 16))
    assert_same([empty.distance_histogram(queries)], [single.distance_histogram(queries)])

    db = random_codes(rng, 50, 16)
    index = fd.ShardedHammingIndex(da.from_array(db, chunks=20), 16)
    single = fc.HammingIndex(db, n_bits=16)
    none = np.zeros((0, 2), np.uint8)
    assert_same(index.search(none, 5), single.search(none, 5))
    assert_same(index.range_search(none, 5), single.range_search(none, 5))
    assert_same([index.distance_histogram(none)], [single.distance_histogram(none)])
    assert "n_shards=3" in repr(index)


def test_sharded_bad_input(client, monkeypatch):
    rng = np.random.default_rng(8)
    db = random_codes(rng, 40, 13)
    codes = da.from_array(db, chunks=20)
    with pytest.raises(TypeError, match="'codes' must be a dask.array"):
        fd.ShardedHammingIndex(db, 13)
    with pytest.raises(TypeError, match="'codes' must have dtype uint8"):
        fd.ShardedHammingIndex(codes.astype(np.int16), 13)
    with pytest.raises(ValueError, match="'codes' must be 2-D with 4 bytes per code for n_bits=32"):
        fd.ShardedHammingIndex(codes, 32)
    with pytest.raises(ValueError, match="'n_bits' must be an int"):
        fd.ShardedHammingIndex(codes, 0)
    with pytest.raises(ValueError, match="'split_every' must be an int >= 2"):
        fd.ShardedHammingIndex(codes, 13, split_every=1)
    with pytest.raises(ValueError, match="'n_threads'"):
        fd.ShardedHammingIndex(codes, 13, n_threads=0)
    with pytest.raises(TypeError, match="'client' must be a dask.distributed.Client"):
        fd.ShardedHammingIndex(codes, 13, client="tcp://nowhere:8786")

    def no_client():
        raise ValueError("No global client found")
    monkeypatch.setattr(distributed, "get_client", no_client)
    with pytest.raises(ValueError, match="no dask.distributed Client is running"):
        fd.ShardedHammingIndex(codes, 13)
    monkeypatch.undo()

    # Nonzero padding bits are found on the worker and re-raised here.
    bad = db.copy()
    bad[33, 1] |= 1
    with pytest.raises(ValueError, match="nonzero padding bits"):
        fd.ShardedHammingIndex(da.from_array(bad, chunks=20), 13, client=client)

    index = fd.ShardedHammingIndex(codes, 13, client=client)
    with pytest.raises(ValueError, match="'queries' must have 2 bytes per code"):
        index.search(random_codes(rng, 3, 24), 5)
    with pytest.raises(TypeError, match="'queries' must have dtype uint8"):
        index.search(db.astype(np.int64), 5)
    with pytest.raises(ValueError, match="'k' must be an int >= 1"):
        index.search(db[:2], 0)
    with pytest.raises(TypeError, match="'k' must be an int"):
        index.search(db[:2], 2.5)
    with pytest.raises(ValueError, match="'radius' must be an int >= 0"):
        index.range_search(db[:2], -1)


# ----------------------------------------------------------------------
# Distributed encoding == model.encode
# ----------------------------------------------------------------------
@pytest.mark.parametrize("packed", [True, False])
def test_encode_dense_chunks(client, model_and_data, packed):
    model, X0, _ = model_and_data
    X = da.from_array(X0, chunks=((40, 0, 60, 50), (5, 7)))  # two column chunks
    codes = fd.encode(model, X, 0, packed=packed)
    assert isinstance(codes, da.Array)
    width = 2 if packed else 13
    assert codes.dtype == (np.uint8 if packed else np.int8)
    assert codes.chunks == ((40, 0, 60, 50), (width,))
    # The model is one node of the graph, shared by every block's task.
    model_keys = [key for key in dict(codes.__dask_graph__())
                  if str(key).startswith(type(model).__name__ + "-")]
    assert len(model_keys) == 1
    got = codes.compute()
    want = model.encode(X0, 0, packed=packed)
    assert_same([got], [want])


def test_encode_sparse_chunks(client, model_and_data):
    model, _, X1 = model_and_data
    X = da.from_array(X1.toarray(), chunks=(35, 40)).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, 40)))
    codes = fd.encode(model, X, 1)
    assert_same([codes.compute()], [model.encode(X1, 1)])
    # Each block is encoded on its own: block i equals model.encode of rows of block i.
    assert_same([codes.blocks[2].compute()], [model.encode(X1[70:105], 1)])
    # Two encodings in one graph keep distinct keys (no output-name collision).
    other = fd.encode(model, X[::-1], 1)
    got, got_other = da.compute(codes, other)
    assert_same([got, got_other], [model.encode(X1, 1), model.encode(X1[::-1], 1)])


def test_encode_unknown_chunks_then_sharded_search(client, model_and_data):
    model, X0, _ = model_and_data
    X = da.from_array(X0, chunks=30)
    X = X[X[:, 0] > -0.5]  # unknown row chunk sizes
    codes = fd.encode(model, X, 0)
    assert np.isnan(codes.shape[0])
    kept = X0[X0[:, 0] > -0.5]
    want_codes = model.encode(kept, 0)
    index = fd.ShardedHammingIndex(codes, model.n_bits)
    single = fc.HammingIndex(want_codes, n_bits=model.n_bits)
    queries = fd.encode(model, da.from_array(X0[:20], chunks=7), 0)
    assert len(index) == kept.shape[0]
    assert_same(index.search(queries, 9), single.search(model.encode(X0[:20], 0), 9))


def test_encode_bad_input(client, model_and_data):
    model, X0, _ = model_and_data
    X = da.from_array(X0, chunks=50)
    with pytest.raises(TypeError, match="'model' must be a trained flexcmh_fast model"):
        fd.encode("model", X, 0)
    with pytest.raises(TypeError, match="'X' must be a dask.array.Array"):
        fd.encode(model, X0, 0)
    with pytest.raises(ValueError, match="'X' must have 12 features"):
        fd.encode(model, X[:, :5], 0)
    with pytest.raises(ValueError, match="'X' must be 2-D"):
        fd.encode(model, X[:, 0], 0)
    with pytest.raises(TypeError, match="'X' must hold real numbers"):
        fd.encode(model, X.astype(complex), 0)
    with pytest.raises(ValueError, match="'modality' must be an int in \\[0, 1\\]"):
        fd.encode(model, X, 2)
    with pytest.raises(TypeError, match="'packed' must be a bool"):
        fd.encode(model, X, 0, packed=1)
    # encode is lazy: values are checked on the workers when a block is computed.
    bad = X0.copy()
    bad[120, 3] = np.nan
    codes = fd.encode(model, da.from_array(bad, chunks=50), 0)
    with pytest.raises(ValueError, match="'X' must not contain NaN or inf"):
        codes.compute()


def test_single_machine_package_does_not_import_dask(tmp_path):
    code = (
        "import importlib, pkgutil, sys, numpy as np, flexcmh_fast as fc\n"
        "for name in fc._LAZY: getattr(fc, name)\n"
        "for mod in pkgutil.iter_modules(fc.__path__):\n"
        "    if mod.name not in ('distributed', '_distributed_train', '__main__'):\n"
        "        importlib.import_module('flexcmh_fast.' + mod.name)\n"
        "rng = np.random.default_rng(0)\n"
        "m = fc.train([rng.random((30, 4)), rng.random((30, 5))], pairs='all', n_bits=8,\n"
        "             random_state=0, n_threads=1)\n"
        "index = fc.HammingIndex(m.encode(rng.random((5, 4)), 0), n_bits=8)\n"
        "index.search(m.encode(rng.random((2, 4)), 0), 2)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not bad, bad\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_without_dask_names_the_extra(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['dask'] = None  # simulate an environment without Dask\n"
        "try:\n"
        "    import flexcmh_fast.distributed\n"
        "except ImportError as exc:\n"
        "    assert \"flexcmh_fast[dask]\" in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
