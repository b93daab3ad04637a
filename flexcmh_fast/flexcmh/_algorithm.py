"""FlexCMH's Algorithm 1, written once for every backend.

The driver :class:`FlexCMHFit` keeps what does not grow with the number of
samples (centroids ``Z``, the code function, the cluster matching, the
history) and runs the steps of :mod:`flexcmh_fast.flexcmh._partition` on
the partitions through a *backend*:

``backend.run(step, *args, per_part=None, combine=False)``
    ``step(partition, *args[, per_part[p]])`` on every partition; the list
    of results in partition order, or with ``combine`` their element-wise
    sum.
``backend.lazy(step, *args, dtypes, per_part=None)``
    ``step(partition, ...)`` returns a tuple of row blocks, one per dtype;
    back: per dtype, the partitions' blocks concatenated: a numpy array on
    one machine, a dask array kept on the workers on Dask.
``backend.mark(point)``
    A :class:`RestorePoint`: from here on, a partition loaded afresh (after
    a lost worker) is brought to the fit's state by ``point``, then by the
    rounds run since (the Dask backend replays them on it alone).  Only
    backends whose partitions live elsewhere get one: the in-process
    backend never loses its partition.
``backend.peek(step)``
    ``step(partition)`` of the one in-process partition, or None when the
    partitions live elsewhere (for the callback's in-memory state).
``backend.sizes`` (partitions x modalities row counts), ``backend.traffic()``
    (bytes to / from the partitions since the last call).
``backend.in_process``
    Whether the partitions live in this process: then independent
    per-modality work (the kernel encoders) runs on several Python threads.

:class:`LocalBackend` is one in-process partition holding all the data (the
single-machine fit); ``flexcmh_fast.distributed`` provides the Dask one.
Every random draw is made here, in a fixed order, so both backends make the
same draws, and with one partition the same fit.

Checkpoints (``checkpoint``, ``resume``; :mod:`._checkpoint`) save the
driver's state and the loop's, written here for both backends.
"""
import sys
import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from .._base import history_dict
from .._feature_stats import merge_column_stats
from .._preprocess import Preprocessor, per_modality
from .._progress import progress
from .._validation import available_cores
from . import _partition as P
from . import _tuning as T
from ._checkpoint import Checkpointer, resume_state
from ._codes import ITQCode, code_class
from ._encoder import draw_encoder_rows, known_rows, solve_kernel_encoder
from ._gromov import entropic_gw
from ._kernels import match_scores
from ._loop import (
    TERMS,
    LoopState,
    continuous_objective,
    convergence_test,
    schedule_repair,
    warn_not_converged,
)
from ._matching import (
    NO_CORRESPONDENCE,
    choose_matching,
    coupling_scores,
    is_fully_paired,
    matching_cost,
    profile_scale,
    sample_distances,
    scaled_sq_norms,
    size_scores,
    uses_gw_score,
    uses_size_score,
)
from ._start import kmeans, kmeans_subsample, z_from_stats, z_ridge


def add(*parts):
    """Element-wise sum of equally shaped results (arrays, numbers, and
    lists / tuples / dicts of them)."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: add(*(part[key] for part in parts)) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(add(*items) for items in zip(*parts))
    total = first
    for part in parts[1:]:
        total = total + part
    return total


def split_rows(rows, offsets):
    """Sorted global rows -> per-partition local rows (partition p holds
    global rows ``offsets[p]:offsets[p+1]``)."""
    cut = np.searchsorted(rows, offsets)
    return [rows[cut[p]:cut[p + 1]] - offsets[p] for p in range(len(offsets) - 1)]


def local_pairs(pairs, offsets, n_parts):
    """Known pairs per partition (local row numbers), order kept.  Raises if
    a pair joins rows of different partitions."""
    local = [{} for _ in range(n_parts)]
    for (m, m2), g in pairs.items():
        pa = np.searchsorted(offsets[m], g[:, 0], side="right") - 1
        pb = np.searchsorted(offsets[m2], g[:, 1], side="right") - 1
        bad = np.flatnonzero(pa != pb)
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"'pairs' must join rows of the same partition (row block p of modality "
                f"{m} with row block p of modality {m2}); pair {tuple(g[i])} joins block "
                f"{pa[i]} with block {pb[i]} ({bad.size} such pairs). Rechunk the "
                "modalities so that paired rows share a block index.")
        for p in range(n_parts):
            sel = g[pa == p]
            local[p][(m, m2)] = np.ascontiguousarray(
                sel - np.array([offsets[m][p], offsets[m2][p]], dtype=np.int64))
    return local


def check_n_clusters(k, n_samples):
    for m, n in enumerate(n_samples):
        if k > n:
            raise ValueError(
                f"'n_clusters' must be <= the number of samples of every modality; "
                f"modality {m} has {n} samples. Got {k} instead.")


class LocalBackend:
    """All the data as one in-process partition (the single-machine fit)."""

    in_process = True

    def __init__(self, partition):
        self.partition = partition
        self.sizes = np.array([partition.n], dtype=np.int64)

    def run(self, step, *args, per_part=None, combine=False):
        out = step(self.partition, *args, *(() if per_part is None else (per_part[0],)))
        return out if combine else [out]

    def lazy(self, step, *args, dtypes, per_part=None):
        return list(self.run(step, *args, per_part=per_part)[0])

    def peek(self, step):
        return step(self.partition)

    def traffic(self):
        return 0, 0


class RestorePoint:
    """What brings a partition loaded afresh (its rows only) to the fit's
    state at one point of the fit: ``step(partition, *args(p))``, with
    ``step`` :func:`~flexcmh_fast.flexcmh._partition.restore`; ``stage``
    names the point in messages ("iteration 7")."""

    step = staticmethod(P.restore)

    def __init__(self, stage, state, own):
        self.stage, self.state, self.own = stage, state, own

    def args(self, p):
        return self.state, self.own(p)


class FlexCMHFit:
    """One FlexCMH fit (Algorithm 1) over the partitions of ``backend``.

    Parameters
    ----------
    backend : LocalBackend or the Dask backend
        Partitions already loaded (``backend.sizes`` known).
    pairs : dict {(m, m2): int64 (P, 2)}
        Known pairs in global row numbers (validated).
    params : dict
        Validated settings of :class:`flexcmh_fast.FlexCMH`.
    rng : numpy.random.Generator
        The source of every random draw.
    desc : str
        Label of the progress bar.
    """

    def __init__(self, backend, pairs, params, rng, desc="FlexCMH"):
        # Settings and the data's layout (fixed for the fit).
        self.backend = backend
        self.rng = rng
        self.p = params
        self.desc = desc
        self.k = params["n_clusters"]
        self.n_bits = params["n_bits"]
        sizes = backend.sizes
        self.M = sizes.shape[1]
        self.n = [int(s) for s in sizes.sum(axis=0)]
        check_n_clusters(self.k, self.n)
        self.offsets = [np.concatenate([[0], np.cumsum(sizes[:, m])]).astype(np.int64)
                        for m in range(self.M)]
        self.pairs = pairs
        self.fully_paired = is_fully_paired(pairs, self.n)
        self.part_pairs = local_pairs(pairs, self.offsets, sizes.shape[0])
        backend.run(P.set_pairs, self.fully_paired, per_part=self.part_pairs)
        self.labels_matching = params["matching"] == "labels"
        # The clusters are matched by scores (profiles, sizes, GW) unless every
        # pair is known or labels give the correspondence; with ``joint``
        # they are re-matched every iteration, and Γ's inferred pairs are
        # re-ranked in the first n_repairs of them.
        self.scores_matching = not (self.fully_paired or self.labels_matching)
        self.rematch = params["joint"] and self.scores_matching
        self.repair_budget = params["n_repairs"] if self.rematch else 0
        self.code_cls = code_class(params["code_scheme"])
        # With at most CODE_SAMPLE rows in modality 0 every code fit uses all
        # aligned rows, so their moments can come with the round that rebuilds
        # Γ (or sets Z) instead of a round of their own.
        self.all_rows_fit = params["code_scheme"] == "itq" and self.n[0] <= T.CODE_SAMPLE

        # The model (what the partitions' rows do not hold).
        self.dtype = None           # of every fitted array (the data's, set by preprocess)
        self.preprocessors = None   # per modality, fitted by preprocess
        self.Z = None               # centroids per modality, (d_m, k)
        self.z_ridge = None         # the Z step's ridge per modality
        self.cluster_matching = np.tile(np.arange(self.k, dtype=np.int64), (self.M, 1))
        self.code = None            # the code function of the indicators
        # The outer loop's counters, schedule and history.
        self.loop = LoopState()
        # Wall-clock seconds of the fit's phases (phase_seconds_).
        self.phase_seconds = {}

        # Derived from the partitions, kept between rounds.
        self.aligned_counts = None  # aligned rows per partition (set with Γ)
        # Moments of the aligned indicators for the code fit, when they came
        # with the last round (all_rows_fit); None when H changed since.
        self.moments = None
        # match_score="gw": sampled rows per modality, the distances within
        # each sample and the GW couplings of modality 0's sample with
        # modality m's (made once, when first needed).
        self.gw_rows = None
        self.gw_distances = None
        self.gw_couplings = {}
        # Whether the partitions hold code_sample's row priorities (drawn
        # once, when first needed).
        self.code_priorities = False
        # The generator's state before each per-row draw (draw_per_row), so
        # that a partition rebuilt after a lost worker gets its rows' draws.
        self.draw_states = {}
        # Γ's rebuilds so far, and Γ's inferred pairs per partition as of
        # rebuild kept_version (keep_correspondence).
        self.gamma_version = 0
        self.kept_inferred = None
        self.kept_version = None
        # Writes the checkpoints (None without a 'checkpoint' path).
        self.checkpoints = Checkpointer.create(self)

    # ---- helpers ---------------------------------------------------------
    def take_rows(self, m, rows):
        """Rows ``rows`` (sorted global) of modality m and their squared norms."""
        got = self.backend.run(P.take_rows, m, per_part=split_rows(rows, self.offsets[m]))
        Xr = [x for x, _ in got]
        X = sp.vstack(Xr, format="csr") if sp.issparse(Xr[0]) else np.vstack(Xr)
        return X, np.concatenate([s for _, s in got])

    def solve_z(self, stats):
        """Centroids in the model's dtype from the float64 statistics."""
        self.z_ridge = [z_ridge(G) for _, G in stats]
        return [z_from_stats(XtH, G, eps).astype(self.dtype, copy=False)
                for (XtH, G), eps in zip(stats, self.z_ridge)]

    # ---- Eq. 3: k-means seeded SemiNMF ------------------------------------
    def init_semi_nmf(self):
        starts = [[] for _ in range(self.backend.sizes.shape[0])]
        for m in range(self.M):
            sub = kmeans_subsample(self.n[m], self.rng)
            rows = np.arange(self.n[m]) if sub is None else sub
            Xr, sqx = self.take_rows(m, rows)
            assign, centres = kmeans(Xr, sqx, self.k, self.rng)
            for p, local in enumerate(split_rows(np.arange(self.n[m]), self.offsets[m])):
                starts[p].append(("assign", assign[local + self.offsets[m][p]])
                                 if sub is None else ("centres", centres))
        Z = self.solve_z(self.backend.run(P.init_indicators, per_part=starts, combine=True))
        for _ in range(T.INIT_ITERS):
            Z = self.solve_z(self.backend.run(P.semi_nmf_sweep, Z, combine=True))
        self.Z = Z

    # ---- Eq. 1-2: cluster matching and Γ -----------------------------------
    def match_and_pair(self, use_scores, rematch, repair=False):
        """Set Z on the partitions, (re)match the clusters, rebuild Γ.

        Votes: known pairs, and with ``matching="labels"`` (FlexCMH(nC)) the
        label correspondence Γ too, which then stands in for the profiles."""
        votes_for = [m for m in range(1, self.M)
                     if self.labels_matching or (0, m) in self.pairs]
        masses, votes = self.backend.run(P.cluster_summaries, self.Z, votes_for,
                                         self.labels_matching, combine=True)
        scores = self.matching_scores(masses) if use_scores else {}
        perms = {}
        for m in range(1, self.M):
            cost = matching_cost(scores.get(m, []), votes.get(m), self.k)
            perm = choose_matching(cost, rematch)
            if perm is not None:
                perms[m] = perm
                self.Z[m] = np.ascontiguousarray(self.Z[m][:, perm])
                self.cluster_matching[m] = self.cluster_matching[m][perm]
        # Γ is rebuilt when the matching changes and in the re-ranking
        # iterations (``repair``: the schedule of _loop.schedule_repair).
        rebuild = bool(perms) or not rematch or repair
        out = self.backend.run(P.relabel, perms, self.all_rows_fit, rebuild)
        self.gamma_version += rebuild or self.labels_matching
        self.aligned_counts = [count for count, _ in out]
        self.moments = add(*(mo for _, mo in out)) if self.all_rows_fit else None

    def matching_scores(self, masses):
        """Per modality m >= 1, the score matrices of its clusters against
        modality 0's: Eq. 1 profiles, plus the size and Gromov–Wasserstein
        scores where ``match_score`` asks for them (``masses``: per-cluster
        member counts and indicator sums)."""
        counts = [c for c, _ in masses]
        scales = [profile_scale(c, w) for c, w in masses]
        sqzs = [scaled_sq_norms(self.Z[m], scales[m]) for m in range(self.M)]
        profs = self.cluster_profiles(scales, sqzs)
        gw_for = [m for m in range(1, self.M)
                  if uses_gw_score(self.p["match_score"], self.pairs, m)]
        if gw_for:
            self.fit_gw(gw_for)
            clusters = {m: self.sample_clusters(m) for m in [0] + gw_for}
        scores = {}
        for m in range(1, self.M):
            scores[m] = [match_scores(profs[0][0], profs[0][1], sqzs[0],
                                      profs[m][0], profs[m][1], sqzs[m])]
            if uses_size_score(self.p["match_score"], self.pairs, m):
                scores[m].append(size_scores(counts[0], counts[m]))
            if m in gw_for:
                scores[m].append(coupling_scores(self.gw_couplings[m], clusters[0],
                                                 clusters[m], self.k))
        return scores

    def cluster_profiles(self, scales, sqzs):
        """Eq. 1 profiles of every modality's clusters over all partitions:
        per modality the top-ns distances (k, ns) and member counts."""
        got = self.backend.run(P.profiles, scales, sqzs)
        profs = []
        for m in range(self.M):
            # Top-ns lists merge exactly: the ns smallest of the union.
            merged = np.concatenate([g[m][0] for g in got], axis=1)
            merged.sort(axis=1)
            profs.append((np.ascontiguousarray(merged[:, :self.p["n_neighbors"]]),
                          add(*(g[m][1] for g in got))))
        return profs

    def fit_gw(self, modalities):
        """Gromov–Wasserstein couplings of a random sample of modality 0's
        rows with one of each modality in ``modalities`` (``T.GW_SAMPLE``
        rows each, drawn once; distances within each sample).  Cost:
        O(GW_SAMPLE^2 d) for the distances and O(GW_ITERS GW_SAMPLE^3) for
        the alignment, whatever n."""
        if self.gw_rows is None:
            self.gw_rows = [np.sort(self.rng.choice(n, min(n, T.GW_SAMPLE), replace=False))
                            for n in self.n]
            self.gw_distances = [sample_distances(*self.take_rows(m, rows))
                                 for m, rows in enumerate(self.gw_rows)]
        for m in modalities:
            if m not in self.gw_couplings:
                self.gw_couplings[m] = entropic_gw(
                    self.gw_distances[0], self.gw_distances[m], eps=T.GW_EPS,
                    max_iter=T.GW_ITERS, n_threads=self.requested_threads())

    def sample_clusters(self, m):
        """Current hard clusters of modality m's GW-sampled rows."""
        got = self.backend.run(P.row_clusters, m,
                               per_part=split_rows(self.gw_rows[m], self.offsets[m]))
        return np.concatenate(got)

    # ---- Eq. 5, 10-11: codes -------------------------------------------------
    def code_sample(self):
        """Per partition, the code fit's sample of about ``CODE_SAMPLE``
        aligned rows drawn at random (a random subset, as ITQ is usually
        trained, so that the code fit's cost does not grow with n), as the
        fraction the partitions select their rows by
        (``Partition.aligned_rows``); None for every partition when there
        are no more aligned rows than that.

        Every modality-0 row draws a random priority once; the sample is the
        aligned rows whose priority is below ``CODE_SAMPLE / aligned rows``,
        so it stays put from one iteration to the next and changes by a few
        rows when a re-ranking changes the aligned set.  A new subset each
        iteration moved the principal directions of the in-loop code
        function, and with them the codes, even once the indicators had
        settled, so a large fit never met the convergence test
        (docs/flexcmh.md, "Training speed")."""
        counts = np.asarray(self.aligned_counts, dtype=np.int64)
        total = int(counts.sum())
        if total == 0:
            raise ValueError(NO_CORRESPONDENCE)
        if total <= T.CODE_SAMPLE:
            return [None] * len(counts)
        if not self.code_priorities:
            self.backend.run(P.set_code_priorities,
                             per_part=self.draw_per_row("code_priority"))
            self.code_priorities = True
        return [T.CODE_SAMPLE / total] * len(counts)

    def update_codes(self, n_iter, sample):
        """Fit the code function on the aligned rows in ``sample`` (per
        partition, :meth:`code_sample`; None: all), then B (Eq. 11).

        The fit is warm-started from the previous code function.  Returns the
        terms of Eq. 6 and the fraction of the training codes' bits that
        changed since the last call."""
        if self.code_cls is ITQCode:
            code = self.fit_itq(n_iter, sample)
        else:
            got = self.backend.run(P.aligned_indicators, per_part=sample)
            Ys = [np.concatenate([g[m] for g in got]) for m in range(self.M)]
            code = self.code_cls.fit(Ys, self.n_bits, self.rng, n_iter=n_iter,
                                     previous=self.code)
        # Fitted in float64 from float64 moments, applied in the model's dtype.
        self.code = code.astype(self.dtype)
        Lc, Ls, Lq, changed, bits = self.backend.run(P.apply_code, self.code, combine=True)
        return (float(Lc), max(float(Ls), 0.0), float(Lq)), changed / max(bits, 1)

    def final_codes(self, kernel_enc):
        """The code function that ``encode`` applies (``CODE_ITERS_FINAL``
        iterations).

        With the kernel encoder it is fitted afresh (a new random start, not
        warm-started from the loop's code function) on the *encoded*
        indicators of (at most ``CODE_SAMPLE``) aligned training rows: on
        what it will be applied to rather than on the learned indicators,
        which the regression only approximates.  Both choices gave better
        validation MAP in both directions on Wiki (docs/flexcmh.md, "Final
        code function").  Otherwise (``encoder="nnls"``) it is warm-started
        and fitted on the learned indicators of every aligned row."""
        if kernel_enc is None:
            self.update_codes(T.CODE_ITERS_FINAL, [None] * self.backend.sizes.shape[0])
            return
        sample = self.code_sample()
        self.backend.run(P.encode_aligned, kernel_enc, self.block_workers(),
                         per_part=sample)
        self.moments = None  # those of the learned indicators
        self.code = None     # a fresh start
        self.update_codes(T.CODE_ITERS_FINAL, [None] * len(sample))

    def fit_itq(self, n_iter, sample):
        if self.moments is not None:
            n_rows, sum_y, scatter = self.moments  # every aligned row, as needed here
        else:
            n_rows, sum_y, scatter = self.backend.run(P.code_moments, per_part=sample,
                                                      combine=True)
        first = [True]

        def rotation_stats(mu, W, R):
            if first[0]:
                first[0] = False
                return self.backend.run(P.itq_project, mu, W, R, per_part=sample,
                                        combine=True)
            return self.backend.run(P.itq_cross, R, combine=True)

        return ITQCode.fit_from_moments(int(n_rows), sum_y, scatter, self.n_bits, self.rng,
                                        rotation_stats, n_iter=n_iter, previous=self.code)

    def ridge_term(self):
        """``sum_m eps_m ||Z_m||^2``: with the inter-modal and reconstruction
        terms, what the H and Z steps minimise (the convergence test's
        continuous objective)."""
        return float(sum(eps * P.inner(Z, Z) for eps, Z in zip(self.z_ridge, self.Z)))

    # ---- kernel encoder ----------------------------------------------------
    def requested_threads(self):
        """The threads asked for (``n_threads``, default all cores), for the
        work whose cost does not grow with n (GW alignment, kernel encoders):
        it gets them even where a small fit's kernels run on one thread."""
        return self.p["n_threads"] or available_cores()

    def block_workers(self):
        """Python threads for the blocks of rows of the kernel encoders' work
        (RBF features and their products, each block's BLAS on one thread):
        :meth:`requested_threads` when the partitions are in this process,
        else 1 (on Dask each worker runs its partitions)."""
        return self.requested_threads() if self.backend.in_process else 1

    def kernel_encoders(self):
        """The kernel encoder of every modality, one after the other, each
        with its blocks of rows on :meth:`block_workers` threads (the same
        encoders for any number)."""
        drawn = [draw_encoder_rows(self.n[m], self.p["n_anchors"], self.rng,
                                   known_rows(self.pairs, m, self.k)) for m in range(self.M)]

        def solve(m):
            def take(rows):
                return self.take_rows(m, rows)[0]

            def gram(rows, anchors, sigma):
                return self.backend.run(P.indicator_gram, m, anchors, sigma,
                                        self.block_workers(), combine=True,
                                        per_part=split_rows(rows, self.offsets[m]))

            return solve_kernel_encoder(drawn[m], take, gram)

        return [solve(m) for m in range(self.M)]

    # ---- preprocessing ----------------------------------------------------------
    def preprocess(self):
        """Fit each modality's preprocessing from sums over its rows, apply it
        on the partitions; returns the fitted preprocessors."""
        got = self.backend.run(P.data_stats)
        self.dtype = got[0][0]
        preps = [Preprocessor.from_stats(setting, merge_column_stats([s[m] for _, s in got]),
                                         self.dtype)
                 for m, setting in enumerate(per_modality(self.p["preprocess"], self.M))]
        if any(pp.kind != "none" for pp in preps):
            self.backend.run(P.preprocess, preps)
        return preps

    # ---- Algorithm 1 ---------------------------------------------------------
    def run(self):
        """Fit; returns the fitted attributes of :class:`flexcmh_fast.FlexCMH`."""
        p = self.p
        with self.phase("start"):
            if not self.resume():
                self.start()
        bar = progress(p["max_iter"], self.desc, p["verbose"])
        bar.update(self.loop.n_iter)
        if self.checkpoints is not None:
            self.checkpoints.start(self.loop.n_iter)
        try:
            with self.phase("loop"):
                while not self.loop.finished(p["max_iter"]):
                    self.mark(f"iteration {self.loop.n_iter + 1}")
                    terms, ridge, code_changes = self.iterate()
                    self.end_iteration(terms, ridge, code_changes, bar)
                    self.keep_correspondence()
                    if self.checkpoints is not None:
                        self.checkpoints.after_iteration(self)
        finally:
            bar.close()
        warn_not_converged(self.loop, p["max_iter"], p["tol"], stacklevel=4)
        # The encoder is fitted after training, so the choice of encoder does
        # not change the learned H, Z or Γ; the final code function is fitted
        # on what the encoder makes of the training rows.
        self.mark("the encoder fit")
        with self.phase("encoders"):
            kernel_enc = self.kernel_encoders() if p["encoder"] == "kernel" else None
        with self.phase("final_codes"):
            self.final_codes(kernel_enc)
        self.mark("the results")
        return self.results(kernel_enc)

    @contextmanager
    def phase(self, name):
        """Time a phase of the fit into ``phase_seconds`` (wall clock)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = time.perf_counter() - t0

    def resume(self):
        """Continue from the checkpoint (``resume=True`` and the file
        exists): the driver's and the loop's state from the file, the
        partitions' per-row state from it too when they are in this process,
        else rebuilt from the centroids (:func:`P.restore`).  Returns whether
        the fit resumed; without a checkpoint it starts from the beginning."""
        state = resume_state(self)
        if state is None:
            return False
        if state.rows is not None:
            self.backend.run(P.set_partition_state, self.preprocessors, self.Z, self.code,
                             per_part=[state.rows])
        else:
            point = self.restore_point(f"iteration {self.loop.n_iter}")
            self.backend.run(P.restore, point.state,
                             per_part=[point.own(q) for q in range(len(self.part_pairs))])
        if self.p["verbose"]:
            print(f"{self.desc}: resuming from the checkpoint {state.path!r} after iteration "
                  f"{self.loop.n_iter}.", file=sys.stderr)
        return True

    # ---- restoring partitions -------------------------------------------
    def draw_per_row(self, name):
        """The per-row random draw ``name`` (``"label_rank"``: per modality,
        ``"code_priority"``: modality 0's rows), split by partition; the
        generator's state before it is kept (:meth:`redraw_per_row`)."""
        self.draw_states[name] = self.rng.bit_generator.state
        return self._per_row(name, self.rng)

    def redraw_per_row(self, name, state):
        """The draw :meth:`draw_per_row` made from the generator in ``state``."""
        bits = type(self.rng.bit_generator)()
        bits.state = state
        return self._per_row(name, np.random.Generator(bits))

    def _per_row(self, name, rng):
        n_parts = len(self.part_pairs)
        if name == "label_rank":
            ranks = [rng.random(n) for n in self.n]
            return [[r[self.offsets[m][q]:self.offsets[m][q + 1]] for m, r in enumerate(ranks)]
                    for q in range(n_parts)]
        priority, offsets = rng.random(self.n[0]), self.offsets[0]
        return [priority[offsets[q]:offsets[q + 1]] for q in range(n_parts)]

    def keep_correspondence(self):
        """Where partitions can be lost (not in this process), keep Γ's
        inferred pairs once Γ stops changing: no re-ranking to come, or the
        loop has ended (the encoder and the final code function read Γ as
        it is).  A partition rebuilt later gets that very Γ back.  Ranked
        again from re-derived indicators it would differ, stay (nothing
        re-ranks it any more) and lead the fit to another optimum
        (docs/scaling_out.md, "Fault tolerance").  Fully paired, Γ is the
        known pairs."""
        loop = self.loop
        if self.backend.in_process or self.fully_paired or \
                self.kept_version == self.gamma_version:
            return
        if not loop.finished(self.p["max_iter"]) and (
                loop.repair_next or loop.repairs < self.repair_budget):
            return
        self.kept_inferred = self.backend.run(P.inferred_pairs)
        self.kept_version = self.gamma_version

    def mark(self, stage):
        """Give a backend whose partitions can be lost the restore point of
        ``stage`` (see the backend protocol)."""
        if not self.backend.in_process:
            self.backend.mark(self.restore_point(stage))

    def restore_point(self, stage):
        """The :class:`RestorePoint` of the fit now (after the start): the
        driver's pairs, preprocessing, centroids and code function as they
        are now, Γ's inferred pairs when kept (:meth:`keep_correspondence`),
        and the per-row draws made so far, drawn again only when a
        partition needs them."""
        state = {"fully_paired": self.fully_paired, "preprocessors": self.preprocessors,
                 "Z": list(self.Z), "code": self.code}
        draws, made = dict(self.draw_states), {}
        kept = self.kept_inferred if self.kept_version == self.gamma_version else None

        def drawn(name, q):
            if name not in draws:
                return None
            if name not in made:
                made[name] = self.redraw_per_row(name, draws[name])
            return made[name][q]

        def own(q):
            return {"pairs": self.part_pairs[q], "label_rank": drawn("label_rank", q),
                    "code_priority": drawn("code_priority", q),
                    "inferred": None if kept is None else kept[q]}

        return RestorePoint(stage, state, own)

    def start(self):
        """Preprocessing, the k-means seeded SemiNMF start (Eq. 3), the first
        cluster matching, Γ and codes; the loop's first reference objective."""
        self.preprocessors = self.preprocess()
        if self.labels_matching:
            self.backend.run(P.set_label_ranks, per_part=self.draw_per_row("label_rank"))
        self.init_semi_nmf()
        self.match_and_pair(self.scores_matching, False)
        terms, _ = self.update_codes(T.CODE_ITERS_LOOP, self.code_sample())
        self.keep_correspondence()
        self.backend.traffic()  # the callback reports the loop's traffic only
        self.loop.previous_objective = continuous_objective(terms, self.ridge_term())

    def iterate(self):
        """One outer iteration: the H and Z steps, the cluster matching and Γ
        (re-ranked when the schedule says so), the codes.  Returns the terms
        of Eq. 6, the centroid ridge and the fraction of the training codes'
        bits that changed."""
        # H (with the pair term over Γ), then Z from the new H.
        self.Z = self.solve_z(self.backend.run(P.update_h, combine=True))
        self.moments = None  # H changed
        # Eq. 1-2: re-match the clusters and rebuild Γ, or only hand Z over.
        if self.rematch:
            self.match_and_pair(True, True, self.loop.repair_next)
        else:
            out = self.backend.run(P.set_z, self.Z, self.all_rows_fit)
            self.moments = add(*out) if self.all_rows_fit else None
        # Eq. 5, 10-11: the code function and B.
        terms, code_changes = self.update_codes(T.CODE_ITERS_LOOP, self.code_sample())
        return terms, self.ridge_term(), code_changes

    def end_iteration(self, terms, ridge, code_changes, bar):
        """History, progress bar, callback, convergence test and the next
        iteration's re-ranking, in ``self.loop``."""
        loop = self.loop
        loop.record(terms, ridge, code_changes)
        sent, received = self.backend.traffic()
        bar.update(1, objective=sum(terms))
        callback = self.p["callback"]
        loop.stopped = callback is not None and bool(
            callback(loop.n_iter, self.callback_state(terms, ridge, sent, received)))
        current = continuous_objective(terms, ridge)
        met, loop.objective_change = convergence_test(loop.previous_objective, current,
                                                      code_changes, self.p["tol"])
        loop.code_changes = code_changes
        loop.converged = schedule_repair(loop, met, self.repair_budget)
        loop.previous_objective = current

    def callback_state(self, terms, ridge, sent, received):
        """The ``state`` argument of the user's callback."""
        return {"objective": sum(terms), "terms": dict(zip(TERMS[1:], terms + (ridge,))),
                "Z": self.Z, "H": self.backend.peek(P.indicators),
                "correspondence": self.backend.peek(lambda part: part.gamma),
                "bytes_sent": sent, "bytes_received": received}

    def results(self, kernel_enc):
        M, n_parts = self.M, self.backend.sizes.shape[0]
        # Γ holds every pair of modalities (Partition.build_gamma).
        keys = [(m, m2) for m in range(M) for m2 in range(m + 1, M)]
        blocks = self.backend.lazy(
            P.result_blocks, dtypes=[np.uint8] * (M + 1) + [np.int64] * len(keys),
            per_part=[[int(self.offsets[m][q]) for m in range(M)] for q in range(n_parts)])
        train_codes, codes = blocks[:M], blocks[M]
        correspondence = dict(zip(keys, blocks[M + 1:]))
        out = {
            "preprocessors_": self.preprocessors,
            "converged_": self.loop.converged,
            "centroids_": [np.ascontiguousarray(Z) for Z in self.Z],
            "code_": self.code,
            "history_": history_dict(self.loop.history, TERMS),
            "codes_": codes,
            "train_codes_": train_codes,
            "cluster_matching_": self.cluster_matching,
            "correspondence_": correspondence,
            "n_iter_": self.loop.n_iter,
            "phase_seconds_": dict(self.phase_seconds),
        }
        if kernel_enc is None:
            out.update(anchors_=None, sigmas_=None, encoder_weights_=None)
        else:
            out.update(anchors_=[np.ascontiguousarray(a) for a, _, _ in kernel_enc],
                       sigmas_=[float(s) for _, s, _ in kernel_enc],
                       encoder_weights_=[np.ascontiguousarray(w) for _, _, w in kernel_enc])
        return out
