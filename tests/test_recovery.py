"""Distributed fits and sharded searches that survive lost workers, on a
``LocalCluster`` of worker processes (killed with SIGKILL; their nanny
starts a new worker in their place).

A worker holding partitions is killed at the start of the fit, mid-loop
and during the encoder fit: the fit completes, warns, its held-out MAP is
within 0.01 of the undisturbed fit on the same data, and the recovery
re-does less than 30% of the work (the undisturbed fit's rounds run once
more would double it).  When every worker leaves, the fit fails within a
bounded time, naming the lost workers.  A sharded search with a worker
killed between or during searches returns the undisturbed results.
"""
import os
import signal
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

import flexcmh_fast as fc  # noqa: E402
from flexcmh_fast import _dask, datasets, metrics  # noqa: E402
from flexcmh_fast import distributed as fd  # noqa: E402
from flexcmh_fast.distributed import _backend  # noqa: E402
from flexcmh_fast.flexcmh import _partition as P  # noqa: E402
from flexcmh_fast.search import _shard_tasks  # noqa: E402

pytestmark = [pytest.mark.distributed,
              pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")]

N_WORKERS = 3
N_TRAIN, BLOCK = 3000, 500
SETTINGS = dict(n_bits=16, n_clusters=8, random_state=0, max_iter=8, tol=0.0)


def to_dask(X, block):
    """Row blocks of ``block`` rows as a dask array whose blocks Dask can
    compute again (graph nodes holding the rows)."""
    meta = sp.csr_matrix((0, X.shape[1])) if sp.issparse(X) else np.empty((0, X.shape[1]))
    parts = [X[s:s + block] for s in range(0, X.shape[0], block)]
    return da.concatenate([da.from_delayed(dask.delayed(p), shape=p.shape, dtype=X.dtype,
                                           meta=meta.astype(X.dtype)) for p in parts])


class _Cluster:
    """The module's LocalCluster of worker processes and its client; started
    again when a killed worker does not come back."""

    def __init__(self):
        self.cluster = self.client = None
        self.start()

    def start(self):
        self.cluster = distributed.LocalCluster(processes=True, n_workers=N_WORKERS,
                                                threads_per_worker=1, dashboard_address=None)
        self.client = distributed.Client(self.cluster, set_as_default=False)

    def close(self):
        self.client.close()
        self.cluster.close()


@pytest.fixture(scope="module")
def cluster():
    cluster = _Cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def client(cluster):
    """The module's client, with all its workers back: nannies restart
    killed ones, and when one does not (a rare failure of the restart on
    loaded hosts, not what these tests are about) the cluster is started
    again."""
    try:
        cluster.client.wait_for_workers(N_WORKERS, timeout=60)
    except TimeoutError:
        cluster.close()
        cluster.start()
        cluster.client.wait_for_workers(N_WORKERS, timeout=120)
    return cluster.client


@pytest.fixture(scope="module")
def weak():
    """Weakly paired, well separated data (a quarter of the pairs known)."""
    d = datasets.make_multimodal(N_TRAIN + 400, n_classes=8, noise=0.5, random_state=0)
    X0, X1 = d.modalities
    known = np.sort(np.random.default_rng(0).choice(N_TRAIN, N_TRAIN // 4, replace=False))
    return {"train": (X0[:N_TRAIN], X1[:N_TRAIN]), "test": (X0[N_TRAIN:], X1[N_TRAIN:]),
            "labels": (d.labels[:N_TRAIN], d.labels[N_TRAIN:]),
            "pairs": np.stack([known, known], axis=1)}


def held_out_map(model, weak):
    (A, B), (Q0, Q1), (lab, lab_q) = weak["train"], weak["test"], weak["labels"]
    return np.array([metrics.mean_average_precision(
        model.encode(Q, q), model.encode(D, 1 - q), lab_q, lab, n_bits=16)
        for q, Q, D in ((0, Q0, B), (1, Q1, A))])


def kill(client, address):
    """SIGKILL the worker process at ``address``."""
    os.kill(client.run(os.getpid, workers=[address])[address], signal.SIGKILL)


class Recorder:
    """Spies on the fit's Dask backend: counts its rounds, keeps it, and
    kills the worker of partition 0 when ``step`` is sent the ``nth`` time."""

    def __init__(self, monkeypatch, client, step=None, nth=1):
        self.client, self.step, self.nth = client, step, nth
        self.sent, self.backends, self.killed = 0, [], None
        send = _backend.DaskBackend._send

        def spy(backend, entry, parts):
            futures = send(backend, entry, parts)
            if backend not in self.backends:
                self.backends.append(backend)
            if entry.step is self.step:
                self.sent += 1
                if self.sent == self.nth:
                    self.killed = backend.workers[0]
                    kill(self.client, self.killed)
            return futures

        monkeypatch.setattr(_backend.DaskBackend, "_send", spy)

    @property
    def backend(self):
        return self.backends[-1]


def train(client, weak, **settings):
    return fd.train([to_dask(X, BLOCK) for X in weak["train"]], weak["pairs"], client=client,
                    **{**SETTINGS, **settings})


@pytest.fixture(scope="module")
def undisturbed(cluster, weak):
    client = cluster.client
    # Warm-up: every worker imports the trainer and loads its compiled
    # kernels, so that the time measured below is the fit's own.
    small = [to_dask(X[:600], 100) for X in weak["train"]]
    fd.train(small, "all", n_bits=16, n_clusters=4, max_iter=1, random_state=0, client=client)
    start = time.perf_counter()
    monkeypatch = pytest.MonkeyPatch()
    recorder = Recorder(monkeypatch, client)
    try:
        model = train(client, weak)
    finally:
        monkeypatch.undo()
    return {"model": model, "seconds": time.perf_counter() - start,
            "rounds": recorder.backend.seq, "map": held_out_map(model, weak)}


@pytest.mark.parametrize("stage, step, nth", [
    ("the start", P.init_indicators, 1),
    ("iteration 4", P.update_h, 4),
    ("the encoder fit", P.indicator_gram, 1),
])
def test_fit_survives_a_killed_worker(client, weak, undisturbed, monkeypatch, capsys, stage,
                                      step, nth):
    recorder = Recorder(monkeypatch, client, step, nth)
    with pytest.warns(RuntimeWarning, match=rf"were lost with worker\(s\) .* during {stage}; "
                                            "they were loaded again"):
        model = train(client, weak, verbose=True)
    assert "FlexCMH (Dask): Partitions [0" in capsys.readouterr().err
    backend = recorder.backend
    (record,) = backend.recoveries
    assert record["stage"] == stage and 0 in record["partitions"]
    assert record["lost_workers"] == [recorder.killed]
    assert recorder.killed not in backend.workers
    assert model.n_iter_ == undisturbed["model"].n_iter_
    # The lazy results are whole: every training row has its code.
    assert client.compute(model.train_codes_[0]).result().shape == (N_TRAIN, 2)
    assert np.abs(held_out_map(model, weak) - undisturbed["map"]).max() <= 0.01
    # The cost, counted in work (deterministic): the rounds replayed on the
    # reloaded partitions and their restore (counted as 5 rounds: the NNLS
    # sweeps, X Z twice, Γ, two H passes and the codes are about that),
    # against every partition running every round of the undisturbed fit;
    # running the fit again would add 100%.
    n_parts = len(backend.sizes)
    extra = (record["rounds_replayed"] + 5) * len(record["partitions"])
    assert backend.seq == undisturbed["rounds"]
    assert extra <= 0.3 * undisturbed["rounds"] * n_parts
    # In time only a loose bound (noticing the loss, at most one
    # LIVENESS_PERIOD, and the recovery against the undisturbed fit on
    # warm workers): on shared cores a new worker's start can land in the
    # recovery.  The fit's extra seconds are measured by
    # bench/distributed_recovery.py (docs/scaling_out.md).
    assert record["seconds"] + _dask.LIVENESS_PERIOD <= 0.5 * undisturbed["seconds"]


class Interrupted(Exception):
    pass


def test_dask_fit_resumes_from_its_checkpoint(client, weak, undisturbed, tmp_path):
    """On Dask a checkpoint holds the driver's state only (not the rows):
    the resumed fit rebuilds the partitions from the centroids and gives
    the same codes up to the recovery tolerance."""
    path = tmp_path / "dask.npz"

    def interrupt(iteration, state):
        if iteration == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(client, weak, checkpoint=path, checkpoint_every=4, callback=interrupt)
    kind, meta, arrays = fc._persist.read_state(path)
    assert meta["loop"]["n_iter"] == 4 and not any(k.startswith("part_") for k in arrays)
    resumed = train(client, weak, checkpoint=path, checkpoint_every=4, resume=True)
    assert resumed.n_iter_ == undisturbed["model"].n_iter_
    assert np.abs(held_out_map(resumed, weak) - undisturbed["map"]).max() <= 0.01
    with pytest.raises(ValueError, match="on Dask over 6 partitions"):
        fc.train(list(weak["train"]), weak["pairs"], checkpoint=path, resume=True, **SETTINGS)


def test_lost_codes_of_a_fitted_model_fail_fast(client, undisturbed):
    """After the fit the training codes stay on the workers as data without
    lineage: a block lost with its worker (the undisturbed model's, its
    worker killed here or by an earlier test) raises when computed, it
    does not wait for the worker forever."""
    model = undisturbed["model"]
    blocks = distributed.client.futures_of(model.train_codes_[1])
    # The earlier tests' kills may have taken some blocks already.
    live = [f for f in blocks if f.status == "finished"]
    held = [sorted(w) for w in client.who_has(live).values() if w] if live else []
    if held:
        kill(client, held[0][0])
    outcome = []

    def compute():
        try:
            client.compute(model.train_codes_[1]).result()
            outcome.append("computed")
        except Exception as exc:  # the error Dask raises for lost data
            outcome.append(exc)

    worker = threading.Thread(target=compute, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert outcome and isinstance(outcome[0], Exception), outcome


def test_no_worker_left_fails_within_bounded_time(weak, monkeypatch):
    """Every worker leaves for good: the fit raises, naming the lost
    workers and partitions, instead of waiting for ever (here after a wait
    of 2 s for a worker to join; by default ``WORKER_WAIT``)."""
    assert _dask.WORKER_WAIT + 4 * _dask.LIVENESS_PERIOD < 120
    monkeypatch.setattr(_dask, "WORKER_WAIT", 2.0)
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=None)
    own = distributed.Client(cluster, set_as_default=False)
    gone, start = [], []
    try:
        def scale_to_zero(iteration, state):
            if iteration == 2:
                gone.extend(sorted(own.nthreads()))
                cluster.scale(0)
                start.append(time.monotonic())

        with pytest.raises(RuntimeError, match=r"No Dask worker is left") as info:
            train(own, weak, callback=scale_to_zero)
        assert time.monotonic() - start[0] < 120
        message = str(info.value)
        assert all(address in message for address in gone) and "partitions [" in message
    finally:
        own.close()
        cluster.close()


def _source_block_gone():
    raise OSError("the source file is gone")


def test_a_reload_that_fails_raises_its_error(client):
    """A lost partition whose source block cannot be computed again: the
    recovery raises the block's error instead of waiting on the failed
    load (a wait that ends with a failed future asks why once more)."""
    backend = _backend.DaskBackend(client, "reload-fails")
    backend.workers = ["tcp://127.0.0.1:9"]  # left the cluster
    backend.sizes = np.array([[10]])
    backend.blocks = [[dask.delayed(_source_block_gone, pure=False)()]]
    backend.load_args = (2, 5, 1.0, 1)
    outcome = []

    def recover():
        try:
            backend._recover([0])
            outcome.append("returned")
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=recover, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the recovery kept waiting on a failed load"
    (error,) = outcome
    assert isinstance(error, RuntimeError), error
    assert "could not be loaded again from its source blocks" in str(error)
    assert "the source file is gone" in str(error)


# ---- the sharded index ----------------------------------------------------------
N_CODES, N_SHARDS = 240_000, 6


@pytest.fixture
def sharded(client):
    """An index of 6 shards and a batch of queries whose search takes long
    enough (tenths of a second) for a kill to land while it runs."""
    rng = np.random.default_rng(1)
    codes = fc.pack_codes(rng.integers(0, 2, (N_CODES, 32)))
    index = fd.ShardedHammingIndex(to_dask(codes, N_CODES // N_SHARDS), n_bits=32,
                                   client=client)
    queries = fc.pack_codes(rng.integers(0, 2, (3000, 32)))
    return index, fc.HammingIndex(codes, n_bits=32), queries


def assert_same(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def shard_holder(client, index):
    return sorted(client.who_has([index._shards[0]])[index._shards[0].key])[0]


def test_sharded_search_after_a_worker_is_killed(client, sharded):
    index, single, queries = sharded
    assert_same(index.search(queries, 10), single.search(queries, 10))
    kill(client, shard_holder(client, index))
    start = time.monotonic()
    assert_same(index.search(queries, 10), single.search(queries, 10))
    assert_same(index.range_search(queries[:200], 8), single.range_search(queries[:200], 8))
    np.testing.assert_array_equal(index.distance_histogram(queries),
                                  single.distance_histogram(queries))
    assert time.monotonic() - start < 60


def test_sharded_search_with_a_worker_killed_during_it(client, sharded, monkeypatch):
    """The worker holding the first shard is killed as soon as the batch is
    sent: the batch waiting on it is sent again (with the shards it held
    computed again elsewhere) and the results are the undisturbed ones."""
    index, single, queries = sharded
    want = single.search(queries, 25)
    submit = _shard_tasks.submit_batch
    batches = []

    def spy(*args):
        root, pins = submit(*args)
        batches.append(pins)
        if len(batches) == 1:
            kill(client, pins[0][0])
        return root, pins

    monkeypatch.setattr(_shard_tasks, "submit_batch", spy)
    start = time.monotonic()
    assert_same(index.search(queries, 25), want)
    assert time.monotonic() - start < 60
    # The kill landed while the batch ran: it was sent again.
    assert len(batches) >= 2
