"""flexcmh_fast.metrics against the plain references of reference_metrics.py."""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import reference_metrics as ref

from flexcmh_fast import _hamming, metrics
from flexcmh_fast.search import HammingIndex, as_words, pack_codes


def random_codes(rng, n, n_bits, n_distinct=None):
    """Random packed codes; with ``n_distinct`` only that many different
    codes occur, which makes Hamming ties frequent."""
    bits = rng.random((n if n_distinct is None else n_distinct, n_bits)) < 0.5
    if n_distinct is not None:
        bits = bits[rng.integers(0, n_distinct, n)]
    return pack_codes(bits.astype(np.int8))


def random_labels(rng, n, kind, n_classes=4):
    if kind == "single":
        return rng.integers(0, n_classes, n)
    lab = (rng.random((n, n_classes)) < 0.3).astype(np.uint8)
    lab[rng.random(n) < 0.1] = 0  # some objects without any label
    return lab


# code lengths covering one word, the 2- and 4-word paths, odd widths and
# padding bits; label kinds 1-D and 2-D (incl. > 64 classes: several words).
CASES = [
    (3, "single", 3), (8, "single", 4), (13, "multi", 5), (64, "single", 10),
    (100, "multi", 6), (128, "single", 70), (200, "multi", 130), (256, "multi", 3),
]


@pytest.fixture(params=CASES, ids=[f"{b}bits-{k}-{c}cls" for b, k, c in CASES])
def data(request):
    n_bits, kind, n_classes = request.param
    rng = np.random.default_rng(n_bits * 7 + n_classes)
    n_q, n_db = 9, 70
    # Few distinct codes -> many ties (the case where tie handling matters).
    q = random_codes(rng, n_q, n_bits, n_distinct=4)
    db = random_codes(rng, n_db, n_bits, n_distinct=6)
    return q, db, random_labels(rng, n_q, kind, n_classes), \
        random_labels(rng, n_db, kind, n_classes), n_bits


@pytest.mark.parametrize("top_k", [None, 1, 7, 70, 500])
def test_stable_ap_exact(data, top_k):
    q, db, ql, dl, n_bits = data
    got = metrics.average_precision(q, db, ql, dl, n_bits=n_bits, top_k=top_k, n_threads=2)
    # Bit-identical to the reference that adds precisions in index order ...
    np.testing.assert_array_equal(
        got, ref.ap_stable_index_order(q, db, ql, dl, n_bits, top_k))
    # ... and equal (up to summation order) to the textbook sorted-list AP.
    np.testing.assert_allclose(got, ref.ap_stable(q, db, ql, dl, n_bits, top_k),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("top_k", [None, 1, 7, 70])
def test_aware_ap_matches_reference(data, top_k):
    q, db, ql, dl, n_bits = data
    got = metrics.average_precision(q, db, ql, dl, n_bits=n_bits, ties="aware",
                                    top_k=top_k, n_threads=2)
    np.testing.assert_allclose(got, ref.ap_aware(q, db, ql, dl, n_bits, top_k),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_aware_ap_is_expected_ap_over_tie_orders(seed):
    rng = np.random.default_rng(seed)
    q = random_codes(rng, 5, 3)
    db = random_codes(rng, 7, 3)
    ql, dl = rng.integers(0, 2, 5), rng.integers(0, 2, 7)
    got = metrics.average_precision(q, db, ql, dl, n_bits=3, ties="aware")
    np.testing.assert_allclose(got, ref.ap_aware_bruteforce(q, db, ql, dl, 3), atol=1e-12)


def test_map_excludes_queries_without_relevant_items():
    rng = np.random.default_rng(0)
    q, db = random_codes(rng, 6, 16), random_codes(rng, 30, 16)
    ql = np.array([0, 1, 2, 9, 9, 1])  # class 9 absent from the database
    dl = rng.integers(0, 3, 30)
    ap = metrics.average_precision(q, db, ql, dl, n_bits=16)
    assert np.isnan(ap[3]) and np.isnan(ap[4]) and not np.isnan(ap[[0, 1, 2, 5]]).any()
    value, excluded = metrics.mean_average_precision(q, db, ql, dl, n_bits=16,
                                                     return_excluded=True)
    assert excluded == 2
    assert value == pytest.approx(np.nanmean(ap))
    assert metrics.mean_average_precision(q, db, ql, dl, n_bits=16) == value
    # Every query excluded -> NaN, count reported.
    v, e = metrics.mean_average_precision(q, db, np.full(6, 7), dl, n_bits=16,
                                          return_excluded=True)
    assert np.isnan(v) and e == 6


def test_perfect_and_worst_rankings():
    # Database: 3 relevant codes at distance 0, 3 irrelevant at distance 8.
    q = pack_codes(np.zeros((1, 8), dtype=np.int8))
    db = pack_codes(np.array([[0] * 8] * 3 + [[1] * 8] * 3, dtype=np.int8))
    assert metrics.mean_average_precision(q, db, [1], [1, 1, 1, 0, 0, 0], n_bits=8) == 1.0
    # Relevant items last: AP = mean(1/4, 2/5, 3/6).
    worst = metrics.mean_average_precision(q, db, [1], [0, 0, 0, 1, 1, 1], n_bits=8)
    assert worst == pytest.approx((1 / 4 + 2 / 5 + 3 / 6) / 3)
    # All tied: stable order by index; aware = expectation.
    db_tied = pack_codes(np.zeros((4, 8), dtype=np.int8))
    stable = metrics.mean_average_precision(q, db_tied, [1], [0, 1, 0, 1], n_bits=8)
    assert stable == pytest.approx((1 / 2 + 2 / 4) / 2)
    aware = metrics.mean_average_precision(q, db_tied, [1], [0, 1, 0, 1], n_bits=8,
                                           ties="aware")
    assert aware == pytest.approx(float(ref.ap_aware_bruteforce(
        q, db_tied, np.array([1]), np.array([0, 1, 0, 1]), 8)[0]))


@pytest.mark.parametrize("ties", ["stable", "aware"])
def test_precision_at_k(data, ties):
    q, db, ql, dl, n_bits = data
    ks = [5, 1, 70, 12, 5]
    got = metrics.precision_at_k(q, db, ql, dl, ks, n_bits=n_bits, ties=ties)
    reference = (ref.precision_at_k_stable if ties == "stable" else ref.precision_at_k_aware)
    np.testing.assert_allclose(got, reference(q, db, ql, dl, n_bits, ks), atol=1e-12)
    assert metrics.precision_at_k(q, db, ql, dl, 12, n_bits=n_bits, ties=ties)[0] == \
        pytest.approx(got[3])


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_precision_recall_curve(data, average):
    q, db, ql, dl, n_bits = data
    prec, rec, radii = metrics.precision_recall_curve(q, db, ql, dl, n_bits=n_bits,
                                                      average=average)
    p_ref, r_ref = ref.pr_curve(q, db, ql, dl, n_bits, average)
    np.testing.assert_allclose(prec, p_ref, atol=1e-12)
    np.testing.assert_allclose(rec, r_ref, atol=1e-12)
    np.testing.assert_array_equal(radii, np.arange(n_bits + 1))
    assert rec[-1] == pytest.approx(1.0)


def test_precision_at_radius_counts_empty_ball_as_zero():
    q = pack_codes(np.array([[0] * 8, [1] * 8], dtype=np.int8))
    db = pack_codes(np.array([[0] * 8, [0] * 7 + [1], [1] * 4 + [0] * 4], dtype=np.int8))
    ql, dl = np.array([1, 1]), np.array([1, 0, 1])
    # Query 0: ball of radius 2 = {0, 1}, one relevant -> 1/2.  Query 1: the
    # nearest code is at distance 4 -> empty ball -> 0.
    assert metrics.precision_at_radius(q, db, ql, dl, n_bits=8, radius=2) == pytest.approx(0.25)
    assert metrics.precision_at_radius(q, db, ql, dl, n_bits=8, radius=0) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    q, db = random_codes(rng, 20, 12, 5), random_codes(rng, 50, 12, 8)
    ql, dl = rng.integers(0, 3, 20), rng.integers(0, 3, 50)
    for r in (0, 2, 5):
        got = metrics.precision_at_radius(q, db, ql, dl, n_bits=12, radius=r)
        assert got == pytest.approx(ref.pr_curve(q, db, ql, dl, 12)[0][r])


def test_retrieval_report_consistent(data):
    q, db, ql, dl, n_bits = data
    rep = metrics.retrieval_report(q, db, ql, dl, n_bits=n_bits, ks=[1, 5], radius=0)
    m, excl = metrics.mean_average_precision(q, db, ql, dl, n_bits=n_bits,
                                             return_excluded=True)
    assert rep["map"] == m and rep["n_excluded"] == excl
    assert rep["map_aware"] == pytest.approx(
        metrics.mean_average_precision(q, db, ql, dl, n_bits=n_bits, ties="aware"))
    np.testing.assert_allclose(rep["precision_at_k"],
                               metrics.precision_at_k(q, db, ql, dl, [1, 5], n_bits=n_bits))
    assert rep["precision_at_radius"] == pytest.approx(
        metrics.precision_at_radius(q, db, ql, dl, n_bits=n_bits, radius=0))
    assert len(rep["pr_precision"]) == n_bits + 1


def test_threads_do_not_change_results():
    rng = np.random.default_rng(5)
    q, db = random_codes(rng, 101, 48, 30), random_codes(rng, 3000, 48, 300)
    ql, dl = rng.integers(0, 10, 101), rng.integers(0, 10, 3000)
    for ties in ("stable", "aware"):
        one = metrics.average_precision(q, db, ql, dl, n_bits=48, ties=ties, n_threads=1)
        two = metrics.average_precision(q, db, ql, dl, n_bits=48, ties=ties, n_threads=2)
        np.testing.assert_array_equal(one, two)


def test_matches_hamming_index_ranking():
    """The stable tie-break is the order of HammingIndex.search (ties by id)."""
    rng = np.random.default_rng(11)
    q, db = random_codes(rng, 12, 16, 5), random_codes(rng, 40, 16, 7)
    ql, dl = rng.integers(0, 3, 12), rng.integers(0, 3, 40)
    _, ids = HammingIndex(db, n_bits=16).search(q, k=40)
    rel = ref.relevance(ql, dl)
    expected = [ref.ap_of_ranking(rel[i, ids[i]]) for i in range(12)]
    np.testing.assert_allclose(metrics.average_precision(q, db, ql, dl, n_bits=16),
                               expected, atol=1e-13)


def test_labels_in_float_and_one_hot_form():
    rng = np.random.default_rng(2)
    q, db = random_codes(rng, 8, 10, 4), random_codes(rng, 25, 10, 5)
    ql, dl = rng.integers(0, 4, 8), rng.integers(0, 4, 25)
    base = metrics.average_precision(q, db, ql, dl, n_bits=10)
    np.testing.assert_array_equal(
        base, metrics.average_precision(q, db, ql.astype(float) + 100, dl.astype(float) + 100,
                                        n_bits=10))
    np.testing.assert_array_equal(
        base, metrics.average_precision(q, db, np.eye(4, dtype=int)[ql], np.eye(4)[dl],
                                        n_bits=10))


def test_empty_queries():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 10, 8)
    q = np.zeros((0, 1), dtype=np.uint8)
    assert metrics.average_precision(q, db, np.zeros(0, int), np.zeros(10, int),
                                     n_bits=8).shape == (0,)
    v, e = metrics.mean_average_precision(q, db, np.zeros(0, int), np.zeros(10, int),
                                          n_bits=8, return_excluded=True)
    assert np.isnan(v) and e == 0


class FakeModel:
    """Encodes modality m by the sign of column m (enough to test wiring)."""
    n_bits = 8

    def encode(self, X, modality):
        X = np.asarray(X, dtype=float)
        return pack_codes((X[:, :8] > 0).astype(np.int8))


def test_evaluate_retrieval():
    rng = np.random.default_rng(4)
    Xq, Xdb = rng.standard_normal((15, 8)), rng.standard_normal((40, 8))
    yq, ydb = rng.integers(0, 3, 15), rng.integers(0, 3, 40)
    model = FakeModel()
    expected = metrics.mean_average_precision(model.encode(Xq, 0), model.encode(Xdb, 1), yq, ydb,
                                              n_bits=8)
    assert metrics.evaluate_retrieval(model, Xq, 0, yq, Xdb, 1, ydb) == expected
    with pytest.raises(TypeError, match="model"):
        metrics.evaluate_retrieval(object(), Xq, 0, yq, Xdb, 1, ydb)
    with pytest.raises(TypeError, match="query_modality"):
        metrics.evaluate_retrieval(model, Xq, "0", yq, Xdb, 1, ydb)


def test_invalid_inputs():
    rng = np.random.default_rng(0)
    q, db = random_codes(rng, 4, 12), random_codes(rng, 9, 12)
    ql, dl = rng.integers(0, 2, 4), rng.integers(0, 2, 9)
    ap = metrics.average_precision
    with pytest.raises(ValueError, match="ties"):
        ap(q, db, ql, dl, n_bits=12, ties="random")
    with pytest.raises(TypeError, match="db_codes"):
        ap(q, db.astype(np.int64), ql, dl, n_bits=12)
    with pytest.raises(ValueError, match="query_codes"):
        ap(q, db, ql, dl, n_bits=24)
    with pytest.raises(ValueError, match="padding"):
        ap(q, db | np.uint8(1), ql, dl, n_bits=12)
    with pytest.raises(ValueError, match="query_labels"):
        ap(q, db, ql[:3], dl, n_bits=12)
    with pytest.raises(ValueError, match="both"):
        ap(q, db, ql, np.eye(2, dtype=int)[dl], n_bits=12)
    with pytest.raises(ValueError, match="label columns"):
        ap(q, db, np.eye(3, dtype=int)[ql], np.eye(2, dtype=int)[dl], n_bits=12)
    with pytest.raises(ValueError, match=">= 0"):
        ap(q, db, ql - 5, dl, n_bits=12)
    with pytest.raises(ValueError, match="0 and 1"):
        ap(q, db, np.full((4, 2), 2), np.ones((9, 2)), n_bits=12)
    with pytest.raises(ValueError, match="integers"):
        ap(q, db, ql + 0.5, dl, n_bits=12)
    with pytest.raises(TypeError, match="query_labels"):
        ap(q, db, "abcd", dl, n_bits=12)
    with pytest.raises(ValueError, match="top_k"):
        ap(q, db, ql, dl, n_bits=12, top_k=0)
    with pytest.raises(ValueError, match="db_codes"):
        ap(q, db[:0], ql, dl[:0], n_bits=12)
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(q, db, ql, dl, [0, 3], n_bits=12)
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(q, db, ql, dl, [10], n_bits=12)
    with pytest.raises(ValueError, match="ks"):
        metrics.precision_at_k(q, db, ql, dl, [1.5], n_bits=12)
    with pytest.raises(ValueError, match="radius"):
        metrics.precision_at_radius(q, db, ql, dl, n_bits=12, radius=13)
    with pytest.raises(ValueError, match="average"):
        metrics.precision_recall_curve(q, db, ql, dl, n_bits=12, average="weighted")
    with pytest.raises(ValueError, match="n_threads"):
        ap(q, db, ql, dl, n_bits=12, n_threads=0)


def test_huge_class_ids_are_renumbered():
    rng = np.random.default_rng(9)
    q, db = random_codes(rng, 10, 16, 4), random_codes(rng, 30, 16, 6)
    ql, dl = rng.integers(0, 3, 10), rng.integers(0, 3, 30)
    base = metrics.average_precision(q, db, ql, dl, n_bits=16)
    for offset in (70_000, 2**40):
        np.testing.assert_array_equal(
            base, metrics.average_precision(q, db, ql + offset, dl + offset, n_bits=16))


@pytest.mark.parametrize("n_bits", [1, 4096])
def test_extreme_code_lengths(n_bits):
    rng = np.random.default_rng(n_bits)
    q, db = random_codes(rng, 5, n_bits, 3), random_codes(rng, 40, n_bits, 4)
    ql, dl = rng.integers(0, 3, 5), rng.integers(0, 3, 40)
    for top_k in (None, 9):
        np.testing.assert_array_equal(
            metrics.average_precision(q, db, ql, dl, n_bits=n_bits, top_k=top_k),
            ref.ap_stable_index_order(q, db, ql, dl, n_bits, top_k))
        np.testing.assert_allclose(
            metrics.average_precision(q, db, ql, dl, n_bits=n_bits, ties="aware", top_k=top_k),
            ref.ap_aware(q, db, ql, dl, n_bits, top_k), atol=1e-12)


@pytest.fixture(params=_hamming.available_popcount_paths())
def popcount_path(request):
    """Run the test on one popcount path (shared by _hamming and _ranking)."""
    previous = _hamming.set_popcount_path(request.param)
    yield request.param
    _hamming.set_popcount_path(previous)


def test_ranking_pass_on_every_popcount_path(popcount_path):
    """The ranking pass of every popcount path the CPU supports (the fast
    pass too, where it runs) equals the plain reference: AP, relevant counts
    and distance histograms, both label kinds, 1 to 4 words and more."""
    from flexcmh_fast import _ranking
    assert _hamming.cpu_popcount_path() == popcount_path
    rng = np.random.default_rng(21)
    for n_bits, kind in ((64, "single"), (128, "multi"), (200, "single"), (24, "multi"),
                         (256, "multi"), (1, "single")):
        q, db = random_codes(rng, 9, n_bits, 4), random_codes(rng, 300, n_bits, 50)
        ql, dl = random_labels(rng, 9, kind), random_labels(rng, 300, kind)
        q_lab, db_lab, db_ids = metrics._label_inputs(ql, dl, 9, 300)
        dist, rel = ref.hamming(q, db, n_bits), ref.relevance(ql, dl)
        want_all = np.stack([np.bincount(d, minlength=n_bits + 1) for d in dist])
        want_rel = np.stack([np.bincount(d[r], minlength=n_bits + 1) for d, r in zip(dist, rel)])
        for fast_pass in (None, False):
            for stable in (True, False):
                args = (as_words(q), as_words(db), q_lab, db_lab, db_ids,
                        n_bits, stable, True, 0, np.array([1, 10], dtype=np.int64), True, 2)
                ap, n_rel, _, h_all, h_rel = _ranking.rank_stats(*args, fast_pass=fast_pass)
                want_ap = (ref.ap_stable_index_order(q, db, ql, dl, n_bits) if stable
                           else ref.ap_aware(q, db, ql, dl, n_bits))
                np.testing.assert_allclose(ap, want_ap, rtol=0, atol=1e-12)
                np.testing.assert_array_equal(n_rel, rel.sum(axis=1))
                np.testing.assert_array_equal(h_all, want_all)
                np.testing.assert_array_equal(h_rel, want_rel)


def test_fast_pass_follows_the_selected_path():
    """The fast pass is part of the AVX-512 path: forcing a lower path (as
    FLEXCMH_FAST_POPCOUNT or set_popcount_path do) switches it off, and
    forcing it there is a clear error."""
    from flexcmh_fast import _ranking
    rng = np.random.default_rng(3)
    q, db = random_codes(rng, 3, 64), random_codes(rng, 50, 64)
    q_lab, db_lab, db_ids = metrics._label_inputs(rng.integers(0, 3, 3), rng.integers(0, 3, 50),
                                                  3, 50)
    args = (as_words(q), as_words(db), q_lab, db_lab, db_ids, 64, True, True,
            0, np.zeros(0, dtype=np.int64), False, 1)
    previous = _hamming.set_popcount_path("portable")
    try:
        assert not _ranking.fast_pass_available()
        with pytest.raises(ValueError, match="'portable' is selected"):
            _ranking.rank_stats(*args, fast_pass=True)
    finally:
        _hamming.set_popcount_path(previous)


def test_ranking_follows_the_environment_variable(tmp_path):
    """FLEXCMH_FAST_POPCOUNT selects the path of both extensions at import.
    (The subprocesses run outside the repository, where a source checkout
    without built extensions would shadow the installed package.)"""
    code = ("import numpy as np; from flexcmh_fast import _hamming, _ranking, metrics; "
            "print(_hamming.cpu_popcount_path(), _ranking.fast_pass_available(), "
            "metrics.mean_average_precision(np.arange(40, dtype=np.uint8).reshape(20, 2), "
            "np.arange(40, dtype=np.uint8).reshape(20, 2)[::-1].copy(), np.arange(20) % 3, "
            "np.arange(20) % 3, n_bits=16))")
    env = dict(os.environ, FLEXCMH_FAST_POPCOUNT="portable")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout.split()
    env.pop("FLEXCMH_FAST_POPCOUNT")
    auto = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["portable", "False"]
    assert out[2] == auto[2]


@pytest.mark.parametrize("n_bits", [1, 7, 8, 56, 63, 64, 65, 100, 127, 128])
def test_fast_pass_matches_portable_pass(n_bits):
    """The AVX-512 GFNI pass (word-major blocks of 64 codes, chunks of 16
    blocks, per-distance masks) is bit-identical to the portable pass:
    several chunks, a partial last block, every distance incl. n_bits (exact
    complements of the queries), both label kinds, stable and tie-aware."""
    from flexcmh_fast import _ranking
    if not _ranking.fast_pass_available():
        pytest.skip("the CPU lacks AVX-512 VBMI / BITALG / VPOPCNTDQ or GFNI")
    rng = np.random.default_rng(n_bits)
    n_q, n_db = 11, 2 * 16 * 64 + 37
    q_bits = rng.random((n_q, n_bits)) < 0.5
    # Database: near copies, exact copies and exact complements of the
    # queries (distances 0 and n_bits) and random codes, shuffled.
    flip = rng.random((n_db, n_bits)) < rng.random((n_db, 1))
    db_bits = q_bits[rng.integers(0, n_q, n_db)] ^ flip
    db_bits[:n_q] = ~q_bits
    db_bits[n_q:2 * n_q] = q_bits
    db_bits = db_bits[rng.permutation(n_db)]
    q, db = pack_codes(q_bits.astype(np.int8)), pack_codes(db_bits.astype(np.int8))
    # 5 classes: one byte per class id (stable) / database sorted by class
    # (tie-aware); 300 classes: 32-bit ids; multi-label: label words.
    for kind, n_classes in (("single", 5), ("single", 300), ("multi", 5)):
        ql = random_labels(rng, n_q, kind, n_classes)
        dl = random_labels(rng, n_db, kind, n_classes)
        if kind == "single":
            ql[0] = n_classes + 7  # a class absent from the database
        q_lab, db_lab, db_ids = metrics._label_inputs(ql, dl, n_q, n_db)
        for stable in (True, False):
            for top_k in (0, 100):
                args = (as_words(q), as_words(db), q_lab, db_lab, db_ids,
                        n_bits, stable, True, top_k, np.array([1, 64, 1000], dtype=np.int64),
                        True, 2)
                fast = _ranking.rank_stats(*args, fast_pass=True)
                previous = _hamming.set_popcount_path("portable")
                try:
                    portable = _ranking.rank_stats(*args)
                finally:
                    _hamming.set_popcount_path(previous)
                for a, b in zip(fast, portable):
                    np.testing.assert_array_equal(a, b)
    # Inputs outside the fast pass are rejected when it is forced.
    q_lab, db_lab, db_ids = metrics._label_inputs(np.eye(70, dtype=int)[:n_q],
                                                  np.eye(70, dtype=int)[rng.integers(0, 70, n_db)],
                                                  n_q, n_db)
    with pytest.raises(ValueError, match="64 labels"):
        _ranking.rank_stats(as_words(q), as_words(db), q_lab, db_lab, db_ids,
                            n_bits, True, True, 0, np.zeros(0, dtype=np.int64), False, 1,
                            fast_pass=True)
