"""One partition of a FlexCMH fit and the steps run on it.

A :class:`Partition` holds a block of rows of every modality (row block p of
each) with all the state of the fit that grows with the number of samples:
the indicators ``H``, the products ``X Z``, the cluster assignments and the
correspondence Γ.  The driver (:mod:`flexcmh_fast.flexcmh._algorithm`) runs
the module-level step functions below, ``step(partition, *args)``, on every
partition through a backend and combines what they return: sums over rows
(added up), or per-cluster top-ns lists (merged).  On one machine the whole
data set is one in-process partition; on Dask each worker holds its
partitions for the whole fit.

Known pairs join rows of the same partition, so the H step of a sample
finds its partners' indicators locally.  Eq. 2's inferred pairs are ranked
within a partition: with one partition that is the paper's Γ.
"""
import hashlib

import numba
import numpy as np
import scipy.sparse as sp

from . import _kernels
from . import _tuning as T
from ._codes import centred_product
from ._encoder import encoder_gram, kernel_indicators
from ._features import Features, model_dtype
from ._start import gram, nearest_centres, start_indicators


def label_groups(lab):
    """Group of every sample for FlexCMH(nC): its class id, or for a 2-D
    multi-label matrix its first label (-1 for a sample with none)."""
    if lab.ndim == 1:
        return lab.astype(np.int64)
    g = lab.argmax(axis=1).astype(np.int64)
    g[lab.max(axis=1) == 0] = -1
    return g


class Partition:
    """Rows of every modality held together, with their share of the fit.

    Parameters
    ----------
    Xs : list of ndarray or CSR matrix
        The partition's rows of each modality (validated float32 / float64,
        kept as given: :class:`~flexcmh_fast.flexcmh._features.Features`).
    k, ns : int
        Clusters and profile length (Eq. 1).
    lam : float
        Weight of the quantisation term of Eq. 6.
    matching : {"clusters", "labels"}
    labels : list of ndarray or None
        The rows' labels (``matching="labels"`` only).
    threads : int or None
        Threads of this partition's kernels where the backend sets them per
        round (Dask); None: all cores of the process.
    kernels : module
        The kernel set (the Numba kernels; the tests' numpy references).
    """

    def __init__(self, Xs, k, ns, lam, matching="clusters", labels=None, threads=None,
                 kernels=_kernels):
        self.K = kernels
        # Every array the fit keeps per row (H, X Z, ...) is in this dtype.
        self.dtype = model_dtype(Xs)
        self.features = [Features(X, self.dtype) for X in Xs]
        self.M = len(Xs)
        self.n = [X.shape[0] for X in Xs]
        self.k, self.ns, self.lam, self.matching = k, ns, lam, matching
        self.threads = threads
        self.pairs = {}
        self.fully_paired = False
        self.label_group = None if labels is None else [label_groups(lab) for lab in labels]
        self.label_rank = None
        self.H = self.Z = self.XZ = None
        self._linear = None
        # H^T H per modality from the last Z statistics, reused by the
        # objective; None once H has changed since.
        self.gram_H = None
        self._assign = [None] * self.M
        self.gamma = self.adj = self._aligned = None
        # The code function, the packed common code of the aligned rows and
        # the bits in which the modalities' codes disagree with it, and the
        # packed codes of every row (apply_code).
        self.code = self.B = None
        self.disagreements = 0
        self.code_bits = None
        self.itq_U = None
        # Kernel-encoded indicators of aligned rows (encode_aligned): when
        # set, the code function is fitted on them instead of on H.
        self.encoded = None
        self.code_priority = None

    def assignment(self, m):
        """Hard clusters of modality m (cached until H_m changes)."""
        if self._assign[m] is None:
            self._assign[m] = self.K.hard_assignments(self.H[m])
        return self._assign[m]

    def set_z(self, Zs):
        self.Z = list(Zs)
        # Into the previous X Z buffers (the H step has used them).
        buffers = [None] * self.M if self.XZ is None else self.XZ
        self.XZ = [f.xz(Z, out=B) for f, Z, B in zip(self.features, Zs, buffers)]
        self._assign = [None] * self.M

    def set_preprocessing(self, preprocessors):
        for f, pp in zip(self.features, preprocessors):
            f.set_preprocessing(pp)

    # ---- Eq. 1: per-cluster summaries ----------------------------------
    def votes(self, m0, m, pair_lists):
        """Votes V[c, c2]: pairs (i, j) with i in cluster c of m0, j in c2 of m."""
        a0, a1 = self.assignment(m0), self.assignment(m)
        V = np.zeros((self.k, self.k))
        for pr in pair_lists:
            ci, cj = a0[pr[:, 0]], a1[pr[:, 1]]
            ok = (ci >= 0) & (cj >= 0)
            np.add.at(V, (ci[ok], cj[ok]), 1.0)
        return V

    def cluster_mass(self, m):
        """Members per cluster of modality m and the sum of their indicator
        at their own cluster."""
        return self.K.cluster_mass(self.H[m], self.assignment(m), self.k)

    def profiles(self, m, scale, sqz):
        """Eq. 1 profiles (top-ns distances, counts) of modality m's clusters
        measured from the scaled centroids."""
        return self.K.nn_profiles(self.XZ[m], scale, self.features[m].sqx,
                                  sqz, self.assignment(m), self.k, self.ns,
                                  numba.get_num_threads())

    def permute(self, m, perm):
        """Relabel modality m's clusters: new cluster c is old ``perm[c]``."""
        self.H[m] = np.ascontiguousarray(self.H[m][:, perm])
        self._assign[m] = None
        if self.gram_H is not None:
            self.gram_H[m] = np.ascontiguousarray(self.gram_H[m][np.ix_(perm, perm)])
        self.Z[m] = np.ascontiguousarray(self.Z[m][:, perm])
        self.XZ[m] = np.ascontiguousarray(self.XZ[m][:, perm])

    # ---- Eq. 2, 4: sample correspondence Γ ------------------------------
    def build_gamma(self):
        """Γ for every modality pair: known pairs plus inferred pairs among the
        samples without a known partner (ranked within matched clusters, or
        within label classes for ``matching="labels"``)."""
        gamma = {}
        for m in range(self.M):
            for m2 in range(m + 1, self.M):
                known = self.pairs.get((m, m2), np.empty((0, 2), dtype=np.int64))
                if self.fully_paired:
                    gamma[(m, m2)] = known
                    continue
                if self.matching == "labels":
                    a, b = self.label_group[m].copy(), self.label_group[m2].copy()
                    sa, sb = self.label_rank[m], self.label_rank[m2]
                    n_groups = int(max(a.max(initial=-1), b.max(initial=-1))) + 1
                else:
                    a, b = self.assignment(m).copy(), self.assignment(m2).copy()
                    sa = self.H[m][np.arange(self.n[m]), np.maximum(a, 0)]
                    sb = self.H[m2][np.arange(self.n[m2]), np.maximum(b, 0)]
                    n_groups = self.k
                # Known pairs override inferred ones: their samples are not
                # paired again.
                a[known[:, 0]] = -1
                b[known[:, 1]] = -1
                inferred = self.K.rank_pairs(a, sa, b, sb, max(n_groups, 1))
                gamma[(m, m2)] = np.vstack([known, inferred])
        self.gamma = gamma
        self._aligned = None
        self._adjacency()

    def _adjacency(self):
        """Per modality: CSR adjacency into the stacked partner indicators."""
        self.adj = []
        for m in range(self.M):
            offs, selfs, others, mods = 0, [], [], []
            for m2 in range(self.M):
                if m2 == m:
                    continue
                g = self.gamma[(min(m, m2), max(m, m2))]
                si, oi = (g[:, 0], g[:, 1]) if m < m2 else (g[:, 1], g[:, 0])
                selfs.append(si)
                others.append(oi + offs)
                mods.append(m2)
                offs += self.n[m2]
            ptr, idx = self.K.pair_adjacency(self.n[m], np.concatenate(selfs),
                                             np.concatenate(others))
            self.adj.append((ptr, idx, np.diff(ptr).astype(np.float64), mods))

    # ---- Eq. 7-8: H step ------------------------------------------------
    def update_H(self):
        self.gram_H = None
        for m in range(self.M):
            ptr, idx, deg, mods = self.adj[m]
            partners = (self.H[mods[0]] if len(mods) == 1
                        else np.vstack([self.H[m2] for m2 in mods]))
            # The linear term, in one buffer kept for the fit (see set_z).
            if self._linear is None:
                self._linear = np.empty((max(self.n), self.k), dtype=self.dtype)
            C = self._linear[:self.n[m]]
            self.K.gather_sum(ptr, idx, partners, self.XZ[m], C)
            self.K.nnls_rows(gram(self.Z[m]), C, deg, self.H[m], T.H_SWEEPS, 0.0)
            self._assign[m] = None

    # ---- Eq. 5, 10-11: codes ----------------------------------------------
    def aligned(self):
        """Rows of the training correspondence: modality-0 samples with a
        partner in every other modality (first partner; repeats removed).
        Cached until Γ is rebuilt."""
        if self._aligned is None:
            self._aligned = self._aligned_rows()
        return self._aligned

    def _aligned_rows(self):
        if self.M == 2 and not self.gamma[(0, 1)].size:
            return [np.empty(0, dtype=np.int64)] * 2
        keep = np.ones(self.n[0], dtype=bool)
        partner = []
        for m in range(1, self.M):
            g = self.gamma[(0, m)]
            first = np.full(self.n[0], -1, dtype=np.int64)
            # Reverse order so that the first listed partner wins.
            first[g[::-1, 0]] = g[::-1, 1]
            keep &= first >= 0
            partner.append(first)
        return [np.arange(self.n[0])[keep]] + [p[keep] for p in partner]

    def aligned_rows(self, sample):
        """The aligned rows, or with ``sample`` (a fraction) those whose
        modality-0 row has a code priority below it: the code fit's sample,
        worked out here from the rows the partition holds now (so it is the
        same wherever the rows were rebuilt)."""
        rows = self.aligned()
        if sample is None:
            return rows
        keep = np.flatnonzero(self.code_priority[rows[0]] < sample)
        return [r[keep] for r in rows]

    def code_inputs(self, sample):
        """The rows the code function is fitted on, one matrix per modality
        (row r = one aligned object): the learned indicators of the aligned
        rows in ``sample`` (None: all; :meth:`aligned_rows`), or, once
        :func:`encode_aligned` has run, its encoded rows (``sample`` was
        applied there)."""
        if self.encoded is not None:
            return self.encoded
        return [H[r] for H, r in zip(self.H, self.aligned_rows(sample))]

    def apply_code(self, code):
        """Set the code function: the packed codes of every row of every
        modality and the common code B (Eq. 11) of the aligned rows, with the
        bits in which the modalities' own codes disagree with B (the
        quantisation term); returns the bits of the training codes that
        changed since the last call and the number of bits (the codes' share
        of the convergence test)."""
        self.code = code
        self.itq_U = None
        forms = [code.linear_form(H) for H in self.H]
        mu, P = forms[0][1], forms[0][2]
        width = (P.shape[1] + 7) // 8
        previous = self.code_bits or [np.empty((0, width), dtype=np.uint8)] * self.M
        bits, changed = [], 0
        for (Y, _, _), prev in zip(forms, previous):
            out = np.empty((Y.shape[0], width), dtype=np.uint8)
            changed += int(self.K.linear_code_bits(Y, mu, P, prev, out))
            bits.append(out)
        total = sum(b.shape[0] for b in bits) * P.shape[1]
        if self.code_bits is None:
            changed = total
        self.code_bits = bits
        rows = np.array(self.aligned(), dtype=np.int64).reshape(self.M, -1)
        self.B = np.empty((rows.shape[1], width), dtype=np.uint8)
        self.disagreements = int(self.K.linear_common_code(
            tuple(np.ascontiguousarray(Y) for Y, _, _ in forms), rows, mu, P, self.B))
        return changed, total

    # ---- Eq. 6 ------------------------------------------------------------
    def objective_sums(self):
        """The terms of Eq. 6 as plain sums over samples and pairs (so
        partitions add up); the reconstruction sum may round slightly below 0."""
        Lc = 0.0
        for (m, m2), g in self.gamma.items():
            Lc += self.K.pair_loss(g, self.H[m], self.H[m2])
        Ls = 0.0
        for m in range(self.M):
            H, Z = self.H[m], self.Z[m]
            HtH = gram(H) if self.gram_H is None else self.gram_H[m]
            Ls += (self.features[m].sqx_total - 2.0 * inner(H, self.XZ[m])
                   + np.einsum("ij,ij->", HtH, gram(Z)))
        Lq = self.lam * 4.0 * self.disagreements
        return Lc, Ls, Lq


# --------------------------------------------------------------------------
# Steps: ``step(partition, *args)``, run by a backend on every partition.
# --------------------------------------------------------------------------
def inner(A, B):
    """``sum_ij A_ij B_ij`` in float64 (the objective's sums)."""
    if A.dtype == B.dtype == np.float64:
        return float(np.einsum("ij,ij->", A, B))
    # numpy's einsum casts float32 to float64 through a buffer; the kernel
    # reads the operands once.
    return _kernels.inner_float64(A, B)


def _all_z_stats(part):
    """Sufficient statistics of the Z step per modality, ``X^T H`` and
    ``H^T H`` (float64 sums over rows, so row blocks add up)."""
    stats = [(f.xth(H), gram(H)) for f, H in zip(part.features, part.H)]
    part.gram_H = [G for _, G in stats]
    return stats


def data_stats(part):
    """The model's dtype and every modality's column statistics."""
    return part.dtype, [f.column_stats for f in part.features]


def preprocess(part, preprocessors):
    """Apply the fitted preprocessing from now on (as the rows are read)."""
    part.set_preprocessing(preprocessors)


def set_pairs(part, fully_paired, pairs):
    part.pairs = pairs
    part.fully_paired = fully_paired


def set_label_ranks(part, ranks):
    """Ranks within a label class for FlexCMH(nC) (a random draw: samples of
    the same class are interchangeable)."""
    part.label_rank = ranks


def take_rows(part, m, rows):
    """The preprocessed rows ``rows`` of modality m and their squared norms."""
    f = part.features[m]
    return f.rows(rows), f.sqx[rows]


def row_clusters(part, m, rows):
    """Hard clusters of rows ``rows`` (local) of modality m."""
    return part.assignment(m)[rows]


def init_indicators(part, starts):
    """SemiNMF start: one-hot k-means clusters + 0.2 (``("assign", a)``: the
    clusters, ``("centres", C)``: nearest of the centres); back: Z statistics."""
    part.H = []
    for m, (kind, value) in enumerate(starts):
        assign = value if kind == "assign" else nearest_centres(part.features[m], value)
        part.H.append(start_indicators(assign, part.k, part.dtype))
    part.XZ = [None] * part.M
    part.Z = [None] * part.M
    part._assign = [None] * part.M
    return _all_z_stats(part)


def semi_nmf_sweep(part, Zs):
    """One SemiNMF warm-up iteration (H by NNLS from X Z), then Z statistics."""
    for m, (f, Z) in enumerate(zip(part.features, Zs)):
        # X Z goes into the buffers the loop keeps (Partition.set_z).
        part.XZ[m] = f.xz(Z, out=part.XZ[m])
        part.K.nnls_rows(gram(Z), part.XZ[m], np.zeros(part.n[m]), part.H[m], T.H_SWEEPS, 0.0)
    return _all_z_stats(part)


def update_h(part):
    for _ in range(T.H_PASSES):
        part.update_H()
    return _all_z_stats(part)


def set_z(part, Zs, moments):
    """Set Z (and X Z); with ``moments``, back: the code-fit moments of all
    aligned rows (which the next code fit uses when it needs no subset)."""
    part.set_z(Zs)
    return code_moments(part, None) if moments else None


def cluster_summaries(part, Zs, votes_for, vote_gamma):
    """Set Z (and X Z); back: per modality member counts and indicator sums
    per cluster, and the votes of the modality pairs (0, m) in ``votes_for``
    (known pairs, plus Γ with ``vote_gamma``, which builds it first)."""
    part.set_z(Zs)
    if vote_gamma:
        part.build_gamma()
    masses = [part.cluster_mass(m) for m in range(part.M)]
    votes = {}
    for m in votes_for:
        lists = [part.pairs[(0, m)]] if (0, m) in part.pairs else []
        if vote_gamma:
            lists.append(part.gamma[(0, m)])
        votes[m] = part.votes(0, m, lists)
    return masses, votes


def profiles(part, scales, sqzs):
    return [part.profiles(m, scales[m], sqzs[m]) for m in range(part.M)]


def relabel(part, perms, moments, rebuild=True):
    """Relabel clusters, rebuild Γ (``rebuild``); back: the number of aligned
    rows and, with ``moments``, their code-fit moments."""
    for m, perm in perms.items():
        part.permute(m, perm)
    if rebuild:
        part.build_gamma()
    return part.aligned()[0].size, (code_moments(part, None) if moments else None)


def set_code_priorities(part, priorities):
    """Random priorities of the partition's modality-0 rows (code samples)."""
    part.code_priority = priorities


def code_moments(part, sample):
    """Rows, row sum and scatter ``Y^T Y`` (float64) of the code-fit rows."""
    Ys = part.code_inputs(sample)
    return (sum(Y.shape[0] for Y in Ys), np.add.reduce([Y.sum(axis=0, dtype=np.float64)
                                                        for Y in Ys]),
            np.add.reduce([gram(Y) for Y in Ys]))


def aligned_indicators(part, sample):
    return part.code_inputs(sample)


def encode_aligned(part, encoders, workers, sample):
    """Encode the aligned rows in ``sample`` (None: all) of every modality
    with its kernel encoder ``(anchors, sigma, weights)``, blocks of rows on
    ``workers`` threads; the code function is then fitted on these
    (:meth:`Partition.code_inputs`)."""
    rows = part.aligned_rows(sample)
    part.encoded = []
    for m, (anchors, sigma, weights) in enumerate(encoders):
        f, r = part.features[m], rows[m]
        part.encoded.append(kernel_indicators(lambda s, e, f=f, r=r: f.rows(r[s:e]), len(r),
                                              anchors, sigma, weights, workers))


def itq_project(part, mu, W, R, sample):
    """Keep ``U = sum_m (Y_m - mu) W`` on the partition for the rotation rounds."""
    part.itq_U = np.add.reduce([centred_product(Y, mu, W) for Y in part.code_inputs(sample)])
    return itq_cross(part, R)


def itq_cross(part, R):
    U = part.itq_U
    return U.T @ np.where(U @ R > 0, 1.0, -1.0)


def apply_code(part, code):
    """Set the code function; back: the terms of Eq. 6 and the changed and
    total bits of the training codes."""
    changes = part.apply_code(code)
    return part.objective_sums() + changes


def indicator_gram(part, m, anchors, sigma, workers, rows):
    """The kernel encoder's sums over the regression rows ``rows`` of
    modality m (:func:`flexcmh_fast.flexcmh._encoder.encoder_gram`)."""
    f, H = part.features[m], part.H[m]
    return encoder_gram(lambda s, e: f.rows(rows[s:e]), lambda s, e: H[rows[s:e]], len(rows),
                        anchors, sigma, workers)


def result_blocks(part, offsets):
    """The partition's share of the fitted model, as row blocks: the
    training codes of each modality, the common codes B, and Γ of every
    pair of modalities (m < m2, in order) in global row numbers
    (``offsets[m]``: the global row of the partition's first row of
    modality m)."""
    gammas = [part.gamma[(m, m2)] + np.array([offsets[m], offsets[m2]], dtype=np.int64)
              for m in range(part.M) for m2 in range(m + 1, part.M)]
    return (*part.code_bits, part.B, *gammas)


def indicators(part):
    """The partition's indicators (the callback's state on one machine)."""
    return part.H


# --------------------------------------------------------------------------
# Restoring a partition: after a lost worker (Dask), from a checkpoint.
# --------------------------------------------------------------------------
# Rows of a dense block hashed at a time (a copy of each block when the
# rows are not C-contiguous).
_DIGEST_ROWS = 4096


def data_digest(part):
    """A digest of the partition's rows as given (dtype, shape and values;
    the CSR structure) and of its label groups: its share of the data
    fingerprint a checkpoint carries."""
    digest = hashlib.blake2b(digest_size=16)
    for f in part.features:
        X = f.X
        digest.update(f"{X.dtype.str}{X.shape}{sp.issparse(X)}".encode())
        if sp.issparse(X):
            for a in (X.indptr, X.indices, X.data):
                digest.update(np.ascontiguousarray(a).data)
        else:
            for s in range(0, X.shape[0], _DIGEST_ROWS):
                digest.update(np.ascontiguousarray(X[s:s + _DIGEST_ROWS]).data)
    for g in part.label_group or ():
        digest.update(np.ascontiguousarray(g).data)
    return digest.hexdigest()


def restore(part, state, own):
    """Bring a partition loaded afresh (its rows only) to the state of the
    fit from what the driver holds (``FlexCMHFit.restore_point``): the known
    pairs, the preprocessing, the random ranks and code priorities, then H
    re-derived from the current centroids (``RESTORE_SWEEPS`` NNLS sweeps
    of Eq. 3 from the nearest centroid), X Z, Γ (as the driver kept it once
    it stopped changing, else ranked from that H), ``H_PASSES`` H steps with
    the pair term (as every iteration ends with), and the codes of the
    current code function."""
    set_pairs(part, state["fully_paired"], own["pairs"])
    preprocess(part, state["preprocessors"])
    part.label_rank = own["label_rank"]
    part.code_priority = own["code_priority"]
    Zs = state["Z"]
    part.XZ = None
    part.gram_H = None
    # X Z once: the nearest centroids and the NNLS sweeps read it, and so
    # does the loop.
    part.set_z(Zs)
    part.H = []
    for f, Z, XZ in zip(part.features, Zs, part.XZ):
        H = start_indicators(nearest_centres(f, Z.T, XZ), part.k, part.dtype)
        part.K.nnls_rows(gram(Z), XZ, np.zeros(f.n), H, T.RESTORE_SWEEPS, 0.0)
        part.H.append(H)
    if own["inferred"] is None:
        part.build_gamma()
    else:
        part.gamma = {key: np.vstack([part.pairs.get(key, np.empty((0, 2), dtype=np.int64)),
                                      g.astype(np.int64)])
                      for key, g in own["inferred"].items()}
        part._aligned = None
        part._adjacency()
    for _ in range(T.H_PASSES):
        part.update_H()
    part.code_bits = None
    part.apply_code(state["code"])


def inferred_pairs(part):
    """Γ's inferred pairs (after the known ones, ``build_gamma``) per pair
    of modalities, in the partition's rows: what the driver keeps of Γ once
    it stops changing, so that a partition rebuilt after a lost worker gets
    the very Γ back (``FlexCMHFit.keep_correspondence``)."""
    small = max(part.n) < 2 ** 31
    return {key: g[len(part.pairs.get(key, ())):].astype(np.int32 if small else np.int64)
            for key, g in part.gamma.items()}


def partition_state(part):
    """The per-row state the loop reads later, as named arrays (a
    checkpoint's share of the partition): H, X Z, H^T H when kept, Γ, the
    training codes, B and its disagreements, the random ranks and code
    priorities.  The rest is derived from these (assignments, Γ's
    adjacency, the aligned rows) or rebuilt before it is read (``itq_U``,
    the encoded rows)."""
    state = {"B": part.B, "disagreements": np.array(part.disagreements, dtype=np.int64)}
    for m in range(part.M):
        state[f"H_{m}"] = part.H[m]
        state[f"XZ_{m}"] = part.XZ[m]
        state[f"code_bits_{m}"] = part.code_bits[m]
        if part.gram_H is not None:
            state[f"gram_H_{m}"] = part.gram_H[m]
        if part.label_rank is not None:
            state[f"label_rank_{m}"] = part.label_rank[m]
    for (m, m2), g in part.gamma.items():
        state[f"gamma_{m}_{m2}"] = g
    if part.code_priority is not None:
        state["code_priority"] = part.code_priority
    return state


def set_partition_state(part, preprocessors, Zs, code, state):
    """Set the state :func:`partition_state` returned (with the driver's
    preprocessing, centroids and code function), exactly."""
    M = part.M
    preprocess(part, preprocessors)
    part.H = [state[f"H_{m}"] for m in range(M)]
    part.Z = list(Zs)
    part.XZ = [state[f"XZ_{m}"] for m in range(M)]
    part.gram_H = [state[f"gram_H_{m}"] for m in range(M)] if "gram_H_0" in state else None
    part.label_rank = [state[f"label_rank_{m}"] for m in range(M)] \
        if "label_rank_0" in state else None
    part.code_priority = state.get("code_priority")
    part._assign = [None] * M
    part.gamma = {(m, m2): state[f"gamma_{m}_{m2}"] for m in range(M) for m2 in range(m + 1, M)}
    part._aligned = None
    part._adjacency()
    part.code = code
    part.code_bits = [state[f"code_bits_{m}"] for m in range(M)]
    part.B = state["B"]
    part.disagreements = int(state["disagreements"])
    part.itq_U = part.encoded = None


# Steps that only read a partition: a partition rebuilt after a loss skips
# them when it replays the rounds since the driver's last restore point.
READ_ONLY_STEPS = frozenset({
    data_stats, take_rows, row_clusters, profiles, code_moments,
    aligned_indicators, itq_cross, indicator_gram, result_blocks, indicators, data_digest,
    inferred_pairs, partition_state})
