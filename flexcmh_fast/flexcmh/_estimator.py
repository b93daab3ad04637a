"""The FlexCMH estimator: settings, ``fit`` on one machine, encoding, saving."""
import numpy as np

from .._base import HashingEstimator, history_dict
from .._params import (
    Bool,
    Float,
    Int,
    OptionalFloat,
    OptionalInt,
    OptionalPath,
    Options,
    Param,
    table,
)
from .._preprocess import Preprocessor, PreprocessSetting
from .._threads import thread_limits
from .._validation import available_cores, check_n_threads
from . import _tuning as T
from ._algorithm import FlexCMHFit, LocalBackend
from ._checkpoint import check_checkpoint_settings
from ._codes import SCHEMES, code_class
from ._encoder import kernel_indicators, nnls_indicators, preprocessed_rows
from ._partition import Partition
from ._state import check_flexcmh_state

PARAMETERS = table(
    preprocess=Param("auto", PreprocessSetting(),
                     "feature preprocessing per modality, fitted and applied by encode"),
    n_clusters=Param(None, OptionalInt(1),
                     "k, clusters per modality (None: 10, capped to the data)"),
    n_neighbors=Param(5, Int(1), "ns, length of the ordered-neighbour profiles (Eq. 1)"),
    lam=Param(1.0, Float(0.0), "weight of the quantisation term of Eq. 6"),
    max_iter=500,
    tol=1e-4,
    code_scheme=Param("itq", Options(*SCHEMES), "code function of the indicators"),
    joint=Param(True, Bool(), "re-match clusters every iteration (False: FlexCMH(nJ))"),
    n_repairs=Param(50, Int(0), "iterations that re-rank the inferred pairs"),
    matching=Param("clusters", Options("clusters", "labels"),
                   "correspondence from clusters, or from labels (FlexCMH(nC))"),
    encoder=Param("kernel", Options("kernel", "nnls"), "out-of-sample indicators"),
    n_anchors=Param(1000, Int(1), "anchors of the kernel encoder (capped to the data)"),
    match_score=Param("auto", Options("auto", "profiles", "profiles+sizes", "gw"),
                      "cluster matching score"),
    checkpoint=Param(None, OptionalPath(),
                     "file the fit's state is saved to while it trains (None: none)"),
    checkpoint_every=Param(10, OptionalInt(1),
                           "outer iterations between checkpoints (None: by time only)"),
    checkpoint_seconds=Param(None, OptionalFloat(0.0, low_open=True),
                             "wall-clock seconds between checkpoints, checked after each "
                             "iteration (None: by iterations only)"),
    resume=Param(False, Bool(), "continue from the checkpoint when the file exists "
                                "(else start from the beginning)"),
)


class FlexCMH(HashingEstimator):
    """FlexCMH: cross-modal hashing from weakly-paired data (Yu et al.).

    Clusters every modality with SemiNMF, matches clusters across modalities
    by their ordered-nearest-neighbour profiles (and known pairs), infers
    the missing sample correspondence within matched clusters, and learns
    the codes jointly (Algorithm 1); see ``docs/flexcmh.md``.

    Parameters
    ----------
    n_bits : int in [1, 4096], default=32
        Code length.
    preprocess : str or list of str, default="auto"
        Feature preprocessing, one kind for every modality or a list with
        one per modality: ``"none"``, ``"l2"`` (rows to unit norm),
        ``"hellinger"`` (square root, then L2; non-negative features),
        ``"standard"`` (columns to zero mean and unit variance; CSR only
        scaled), or ``"auto"``: chosen from the training data of each
        modality (non-negative CSR -> l2; non-negative dense with >= 10%
        zeros -> hellinger; other non-negative dense -> l2; negative values
        -> none; see :mod:`flexcmh_fast._preprocess`).  Fitted in
        ``fit``, saved with the model and applied by ``encode`` to every
        query (CSR stays sparse).
    n_clusters : int >= 1 or None, default=None
        k, clusters per modality (paper: 10 Wiki, 25 MIRFlickr, 80
        NUS-WIDE); at most the number of samples of every modality.
        ``None``: 10 (the paper's Wiki value), capped to the smallest
        modality's sample count.
    n_neighbors : int >= 1, default=5
        ns of Eq. 1.
    lam : float >= 0, default=1.0
        λ of Eq. 6 (weight of the quantisation term).
    max_iter : int >= 0, default=500
        Outer iterations of Algorithm 1 at most; reaching it without
        converging warns (:class:`flexcmh_fast.ConvergenceWarning`).
    tol : float >= 0, default=1e-4
        Convergence: the continuous objective (inter-modal plus
        reconstruction loss plus the centroid ridge) changes by at most
        ``tol`` times its value and at most 1% of the training codes' bits
        change in an iteration.
    code_scheme : {"itq", "kmeans"}, default="itq"
        Code function of the aligned indicators: ITQ (centre, project,
        rotate), or ``"kmeans"``, the paper's repeated k-means reading.
    joint : bool, default=True
        ``False``: FlexCMH(nJ), match once and never re-match.
    n_repairs : int >= 0, default=50
        How many iterations re-rank the inferred pairs of Γ (samples without
        a known partner) from the current indicators: every iteration after
        the first, until ``n_repairs`` re-rankings are spent; then Γ stays
        fixed and the fit runs to the convergence test.  They set most of the
        iteration count of weakly paired and unpaired fits: fewer re-rankings
        train faster and give a lower validation MAP; 0 keeps the first
        inferred pairs until the cluster matching changes (fastest).  The
        measured trade-off: ``docs/flexcmh.md``, "Convergence" (MAP and
        iterations) and "Training speed" (times).
    matching : {"clusters", "labels"}, default="clusters"
        ``"labels"``: FlexCMH(nC), the correspondence of samples without a
        known pair comes from equal labels (``fit`` then needs ``labels``).
    encoder : {"kernel", "nnls"}, default="kernel"
        Out-of-sample indicators of new samples.  ``"nnls"``: the paper's
        Eq. 3 reading, ``argmin_{h >= 0} ||x - Z_m h||^2``.  ``"kernel"``:
        kernel ridge regression from RBF features (against ``n_anchors``
        training rows) to the learned training indicators of the samples with
        a known partner (every sample if too few have one); better validation
        MAP on Wiki (``docs/flexcmh.md``, "Out-of-sample encoder").  With
        ``"kernel"`` the final code function is fitted on the encoded
        indicators of the aligned training rows (at most 20,000), what
        ``encode`` applies it to (``docs/flexcmh.md``, "Final code
        function").
    n_anchors : int >= 1, default=1000
        Anchors of the kernel encoder per modality (at most the rows it is
        fitted on).
    match_score : {"auto", "profiles", "profiles+sizes", "gw"}, default="auto"
        Cluster matching score.  ``"profiles"``: Eq. 1 alone.
        ``"profiles+sizes"``: Eq. 1 plus the mismatch ``|log(n_c / n_c')|`` of
        the clusters' relative sizes.  ``"gw"``: ``"profiles+sizes"`` plus
        the coupling mass between the clusters' members found by entropic
        Gromov–Wasserstein alignment of a random sample of each modality
        (compares distances *within* each modality, so it needs no shared
        features; 800 rows per modality, cost independent of n).
        ``"auto"``: ``"gw"`` for a modality pair without known pairs,
        ``"profiles"`` otherwise.
    n_threads : int, None or -1, default=None
        Threads of the Numba kernels (None / -1: every core of the process;
        on Dask, of each worker).  BLAS runs on one thread beside them.
    random_state : None, int or numpy.random.Generator, default=None
        Seed of every random choice; the same seed gives identical codes.
    verbose : bool, default=False
        Progress bar (tqdm) with the objective.
    callback : callable, default=None
        ``callback(iteration, state)`` after every iteration (``iteration``
        counts from 1); ``state`` holds ``objective``, ``terms`` (dict),
        ``Z``, ``H`` and ``correspondence`` (None on Dask, where they stay on
        the workers), ``bytes_sent`` and ``bytes_received`` (pickled bytes
        exchanged with Dask workers; 0 on one machine).  Returning ``True``
        stops training.
    checkpoint : str, os.PathLike or None, default=None
        File (in an existing folder) the fit's state is saved to while it
        trains, atomically, in the format of saved models (kind
        ``"FlexCMHCheckpoint"``; :func:`flexcmh_fast.load` refuses it): the
        centroids, code function, matching and preprocessing, the loop's
        counters and history, the random generator's state and a
        fingerprint of the settings and the data; on one machine also every
        row's indicators, ``X Z``, correspondence and codes (about ``16 (k
        + 1)`` bytes a row and modality), on Dask not (they stay on the
        workers; the file stays small).  ``None``: no checkpoints.  See
        ``docs/flexcmh.md``, "Checkpoints".
    checkpoint_every : int >= 1 or None, default=10
        A checkpoint is written after every ``checkpoint_every`` outer
        iterations (``None``: by time only).
    checkpoint_seconds : float > 0 or None, default=None
        Also write one after the first iteration that ends at least
        ``checkpoint_seconds`` seconds (wall clock) after the last
        checkpoint (or the loop's start).  ``None``: by iterations only.
    resume : bool, default=False
        ``True``: when the ``checkpoint`` file exists, continue the fit it
        was written by (same data and settings, else ``ValueError``; a
        damaged file raises :class:`flexcmh_fast.FileFormatError`); when it
        does not exist, start from the beginning (and write checkpoints).
        Settings that only steer the run may differ: ``n_threads``,
        ``verbose``, ``callback`` and the checkpoint settings.  On one
        machine the resumed fit's codes are identical to an uninterrupted
        fit's (with the same ``n_threads``); on Dask each partition is
        rebuilt from the saved centroids, as after a lost worker.
        ``False``: start from the beginning, overwriting the file at the
        first checkpoint.

    Attributes
    ----------
    n_bits_ : int
        Code length of the fitted hash functions.
    n_features_ : list of int
        Features per modality.
    centroids_ : list of ndarray (d_m, k)
        Learned centroids ``Z_m``, clusters aligned across modalities.
    code_ : ITQCode or KMeansCode
        The code function of the indicator vectors (``encoder="kernel"``:
        fitted on the encoded indicators of the aligned training rows).
    codes_ : ndarray of uint8 (n, ceil(n_bits/8))
        Common code B of the training correspondence (one row per aligned
        object: a modality-0 sample with a partner in every modality).
    train_codes_ : list of ndarray of uint8 (n_m, ceil(n_bits/8))
        Learned code of every training sample of each modality (the paper's
        H̃m), in that modality's row order: the database codes when the
        database is the training set (``docs/evaluation.md``).
    history_ : dict of ndarray
        Per iteration: ``objective`` (Eq. 6) and its terms ``inter_modal``
        (Lc, Eq. 4), ``reconstruction`` (Ls, Eq. 3) and ``quantization``
        (λLq, Eq. 5); ``centroid_ridge`` (the Z step's ridge, which with Lc
        and Ls is what the H and Z steps decrease) and ``code_changes`` (the
        fraction of the training codes' bits that changed).
    cluster_matching_ : ndarray of int64 (M, k)
        ``[m, c]``: the initial (k-means) cluster of modality m aligned to
        cluster c (row 0 is the identity).
    correspondence_ : dict {(m, m2): ndarray of int64 (P, 2)}
        Γ of the last iteration as index pairs (known pairs first).
    n_iter_ : int
        Outer iterations run.
    phase_seconds_ : dict of float
        Wall-clock seconds of the fit's phases: ``start`` (preprocessing, the
        k-means seeded SemiNMF start, the first matching and codes), ``loop`` (the
        iterations), ``encoders`` (the kernel encoders) and ``final_codes``
        (the code function ``encode`` applies).  Not saved: empty in a
        loaded model.
    converged_ : bool
        Whether the fit met its convergence test (False: stopped at
        ``max_iter`` or by the callback).
    preprocessors_ : list of Preprocessor
        The fitted preprocessing of each modality (``.kind``).
    anchors_, sigmas_, encoder_weights_ : lists (per modality) or None
        The kernel encoder (``encoder="kernel"``); None for ``"nnls"``.

    Examples
    --------
    >>> import numpy as np, flexcmh_fast as fc
    >>> data = fc.datasets.make_multimodal(n_samples=400, random_state=0)
    >>> model = fc.FlexCMH(n_bits=16, random_state=0).fit(data.modalities, pairs="all")
    >>> model.encode(data.modalities[0][:3], modality=0).shape
    (3, 2)
    """

    _parameters = PARAMETERS
    kind = "FlexCMH"
    # float32 data give a float32 model (docs/flexcmh.md, "Precision").
    _preserves_dtype = ("float32", "float64")

    def __init__(self, n_bits=32, preprocess="auto", n_clusters=None, n_neighbors=5, lam=1.0,
                 max_iter=500, tol=1e-4, code_scheme="itq", joint=True, n_repairs=50,
                 matching="clusters", encoder="kernel", n_anchors=1000, match_score="auto",
                 n_threads=None, random_state=None, verbose=False, callback=None,
                 checkpoint=None, checkpoint_every=10, checkpoint_seconds=None, resume=False):
        self.n_bits = n_bits
        self.preprocess = preprocess
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.lam = lam
        self.max_iter = max_iter
        self.tol = tol
        self.code_scheme = code_scheme
        self.joint = joint
        self.n_repairs = n_repairs
        self.matching = matching
        self.encoder = encoder
        self.n_anchors = n_anchors
        self.match_score = match_score
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.callback = callback
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.resume = resume

    def _validated_params(self):
        params = super()._validated_params()
        check_checkpoint_settings(params)
        return params

    def _labels_required_by(self, params):
        # FlexCMH(nC) takes the correspondence from equal labels.
        return "FlexCMH with matching='labels'" if params["matching"] == "labels" else None

    def _fit(self, Xs, pairs, labels, params, rng, kernels=None):
        if params["n_clusters"] is None:
            params = dict(params, n_clusters=min(T.DEFAULT_CLUSTERS,
                                                 min(X.shape[0] for X in Xs)))
        threads = params["n_threads"] or available_cores()
        # Below PARALLEL_MIN_SIZE indicator entries each kernel is so short
        # that waking worker threads costs more than it saves.
        if sum(X.shape[0] for X in Xs) * params["n_clusters"] < T.PARALLEL_MIN_SIZE:
            threads = 1
        extra = {} if kernels is None else {"kernels": kernels}
        part = Partition(Xs, params["n_clusters"], params["n_neighbors"], params["lam"],
                         params["matching"],
                         labels if params["matching"] == "labels" else None, **extra)
        with thread_limits(threads, blas=1):
            fitted = FlexCMHFit(LocalBackend(part), pairs, params, rng).run()
        self._set_fitted(fitted)

    def _set_fitted(self, fitted):
        for name, value in fitted.items():
            setattr(self, name, value)

    # ---- encoding --------------------------------------------------------
    def indicators(self, X, modality):
        """Indicator vectors of new samples (``X`` validated, dense or CSR,
        as given: the fitted preprocessing is applied here, block by block,
        in the model's dtype), by the fitted encoder."""
        prep, Z = self.preprocessors_[modality], self.centroids_[modality]
        prep.check_input(X)
        take = preprocessed_rows(X, prep, Z.dtype)
        if self.anchors_ is None:
            return nnls_indicators(take, X.shape[0], Z)
        # Blocks of rows on the threads, each with its BLAS products on one
        # thread: BLAS threads woken between Numba's would contend with them
        # (docs/flexcmh.md, "Training speed").
        threads = check_n_threads(self.n_threads)
        with thread_limits(threads, blas=1):
            return kernel_indicators(take, X.shape[0], self.anchors_[modality],
                                     self.sigmas_[modality], self.encoder_weights_[modality],
                                     threads)

    def _encode_signs(self, X, modality):
        return self.code_.signs(self.indicators(X, modality))

    # ---- saving ------------------------------------------------------------
    def _get_state(self):
        meta = {"converged": bool(self.converged_),
                "preprocess_kinds": [pp.kind for pp in self.preprocessors_],
                "code_scheme": self.code_.scheme,
                "pair_keys": [list(key) for key in self.correspondence_]}
        arrays = {f"Z_{m}": Z for m, Z in enumerate(self.centroids_)}
        arrays.update(self.code_.state("code_"))
        for m, pp in enumerate(self.preprocessors_):
            arrays.update(pp.state(f"pre_{m}_"))
        arrays["cluster_matching"] = self.cluster_matching_
        if self.anchors_ is not None:
            meta["sigmas"] = self.sigmas_
            for m, (A, W) in enumerate(zip(self.anchors_, self.encoder_weights_)):
                arrays[f"anchors_{m}"] = A
                arrays[f"encoder_weights_{m}"] = W
        for (m, m2), g in self.correspondence_.items():
            arrays[f"gamma_{m}_{m2}"] = np.asarray(g)
        return meta, arrays

    @classmethod
    def _history_from_state(cls, meta, arrays):
        if "history_terms" in meta:
            return super()._history_from_state(meta, arrays)
        # Format 1: Lc, Ls and λLq only; the objective is their sum.
        hist = np.asarray(arrays["history"], dtype=np.float64).reshape(-1, 3)
        return history_dict(np.column_stack([hist.sum(axis=1), hist]),
                            ["objective", "inter_modal", "reconstruction", "quantization"])

    @classmethod
    def _check_state(cls, meta, arrays):
        check_flexcmh_state(meta, arrays)

    def _set_state(self, meta, arrays):
        M = len(self.n_features_)
        # Files of format 1 kept the settings only in meta["params"].
        scheme = meta.get("code_scheme", meta["params"].get("code_scheme", "itq"))
        kernel = "sigmas" in meta
        if "encoder" not in meta["params"]:  # saved before the setting existed
            self.encoder = "kernel" if kernel else "nnls"
        # Format 1 files: no preprocessing, no convergence flag.
        if "preprocess_kinds" not in meta:
            self.preprocess = "none"
        kinds = meta.get("preprocess_kinds", ["none"] * M)
        self._set_fitted({
            "preprocessors_": [Preprocessor.from_state(kind, arrays, f"pre_{m}_")
                               for m, kind in enumerate(kinds)],
            "converged_": bool(meta.get("converged", False)),
            "centroids_": [_model_array(arrays[f"Z_{m}"]) for m in range(M)],
            "code_": code_class(scheme).from_state(arrays, "code_"),
            "cluster_matching_": arrays["cluster_matching"],
            "phase_seconds_": {},
            "correspondence_": {(int(a), int(b)): arrays[f"gamma_{a}_{b}"]
                                for a, b in meta["pair_keys"]},
            "anchors_": [_model_array(arrays[f"anchors_{m}"])
                         for m in range(M)] if kernel else None,
            "sigmas_": [float(s) for s in meta["sigmas"]] if kernel else None,
            "encoder_weights_": [_model_array(arrays[f"encoder_weights_{m}"])
                                 for m in range(M)] if kernel else None,
        })
        if kernel != (self.encoder == "kernel"):
            raise ValueError(f"encoder {self.encoder!r} disagrees with the saved kernel "
                             "encoder entries.")
        for m, (Z, d) in enumerate(zip(self.centroids_, self.n_features_)):
            if Z.ndim != 2 or Z.shape[0] != d:
                raise ValueError(f"centroids {m} have shape {Z.shape}.")
            if kernel:
                A, W = self.anchors_[m], self.encoder_weights_[m]
                if (A.ndim != 2 or A.shape[1] != d or W.ndim != 2
                        or W.shape != (A.shape[0], Z.shape[1]) or not self.sigmas_[m] > 0):
                    raise ValueError(f"kernel encoder {m} has anchors {A.shape}, weights "
                                     f"{W.shape}, sigma {self.sigmas_[m]}.")


def _model_array(values):
    """A saved float array as the model keeps it: float32 stays float32 (a
    model fitted on float32 data), anything else becomes float64."""
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    return np.ascontiguousarray(values, dtype=dtype)
