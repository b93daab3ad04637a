"""Checkpoints of a FlexCMH fit: the settings ``checkpoint``,
``checkpoint_every``, ``checkpoint_seconds`` and ``resume``.

A checkpoint is a file in the format of saved models
(:mod:`flexcmh_fast._persist`: versioned, every entry checked, written
atomically) of kind ``"FlexCMHCheckpoint"``, written after an outer
iteration of the loop.  It holds

* the driver's model: the centroids and their ridges, the code function with
  its warm-start state, the cluster matching, the fitted preprocessing, the
  aligned rows per partition, the code-fit moments kept from the last
  round, the Gromov–Wasserstein sample and couplings, whether the code
  priorities were drawn, and on Dask Γ's inferred pairs once Γ stopped
  changing (``FlexCMHFit.keep_correspondence``);
* the loop's state (:class:`~flexcmh_fast.flexcmh._loop.LoopState`: the
  counters, the previous objective, the re-ranking schedule, the history);
* the random generator's state, and its states before the per-row draws
  (``FlexCMHFit.draw_per_row``);
* a fingerprint: the settings that shape the fit (all but
  :data:`RUN_SETTINGS`), a digest of the data (the rows as given, per
  partition, the labels and the known pairs) and the partitions' row
  counts;
* when the partition lives in the fitting process (one machine), its
  per-row state (``_partition.partition_state``), so that the resumed fit
  is bit-identical to an uninterrupted one.  On Dask that state stays on
  the workers: the file does not grow with the number of samples, and the
  resumed fit rebuilds every partition from the centroids
  (``_partition.restore``), as after a lost worker.

A resumed fit continues after the iteration its checkpoint was written at;
a stop asked for by the callback is not kept.
"""
import dataclasses
import hashlib
import json
import numbers
import os
import time

import numpy as np

from .._persist import CHECKPOINT_KINDS, FileFormatError, read_state, save_state
from .._preprocess import Preprocessor
from .._state_checks import array_entry, meta_dict, meta_int, meta_int_list, meta_option
from ..search._saved import packed_codes_entry
from . import _partition as P
from ._codes import SCHEMES, check_code_state, code_class
from ._loop import TERMS, LoopState
from ._state import check_preprocess_state

(KIND,) = CHECKPOINT_KINDS
# Settings that steer the run, not the fit: a resumed fit may change them.
RUN_SETTINGS = ("n_threads", "verbose", "callback", "checkpoint", "checkpoint_every",
                "checkpoint_seconds", "resume")
# The per-row draws a checkpoint keeps the generator's state for.
DRAWS = ("label_rank", "code_priority")
_LOOP_FIELDS = ("n_iter", "previous_objective", "repairs", "repair_next", "converged",
                "objective_change", "code_changes")


def check_checkpoint_settings(params):
    """The checkpoint settings of validated ``params`` go together."""
    if params["resume"] and params["checkpoint"] is None:
        raise ValueError("'resume' needs 'checkpoint', the file to resume from. Got "
                         "resume=True and checkpoint=None instead.")
    if params["checkpoint"] is not None and params["checkpoint_every"] is None \
            and params["checkpoint_seconds"] is None:
        raise ValueError("A 'checkpoint' file needs 'checkpoint_every' or "
                         "'checkpoint_seconds' to say when to write it. Got both None "
                         "instead.")


class Checkpointer:
    """Writes a fit's checkpoints to ``path`` every ``every`` iterations
    and after ``seconds`` seconds (either may be None)."""

    def __init__(self, path, every, seconds, fingerprint):
        self.path, self.every, self.seconds = path, every, seconds
        self.fingerprint = fingerprint
        self.last_iter, self.last_time = 0, time.monotonic()

    @classmethod
    def create(cls, fit):
        """The checkpointer of ``fit`` (None without a ``checkpoint`` file)."""
        p = fit.p
        if p["checkpoint"] is None:
            return None
        return cls(p["checkpoint"], p["checkpoint_every"], p["checkpoint_seconds"],
                   fingerprint(fit))

    def start(self, n_iter):
        """The loop starts (or resumes) after ``n_iter`` iterations."""
        self.last_iter, self.last_time = n_iter, time.monotonic()

    def after_iteration(self, fit):
        """Write a checkpoint when one is due."""
        n_iter = fit.loop.n_iter
        if (self.every is not None and n_iter - self.last_iter >= self.every) or \
                (self.seconds is not None
                 and time.monotonic() - self.last_time >= self.seconds):
            save_state(self.path, KIND, *checkpoint_state(fit, self.fingerprint))
            self.start(n_iter)


# ---- the fingerprint --------------------------------------------------------
def _settings(params):
    """The settings that shape the fit, as JSON values."""
    out = {}
    for name, value in params.items():
        if name in RUN_SETTINGS:
            continue
        if name == "random_state" and not (value is None or isinstance(value, numbers.Integral)):
            value = type(value).__name__  # a generator: its state is in the checkpoint
        out[name] = value.item() if isinstance(value, np.generic) else value
    return json.loads(json.dumps(out))


def fingerprint(fit):
    """The settings, data digest and partition row counts of ``fit``."""
    digest = hashlib.blake2b(digest_size=16)
    for part_digest in fit.backend.run(P.data_digest):
        digest.update(part_digest.encode())
    for key in sorted(fit.pairs):
        digest.update(repr(key).encode())
        digest.update(np.ascontiguousarray(fit.pairs[key], dtype=np.int64).data)
    return {"settings": _settings(fit.p), "data": digest.hexdigest(),
            "sizes": fit.backend.sizes.tolist(), "rows": bool(fit.backend.in_process)}


def _describe_layout(fp):
    sizes = fp["sizes"]
    if fp["rows"]:
        return f"on one machine ({sizes[0]} rows per modality)"
    return f"on Dask over {len(sizes)} partitions of {sizes} rows"


def check_fingerprint(path, saved, current):
    """Refuse to resume from a checkpoint of other settings, other data or
    another partitioning (``ValueError`` saying which)."""
    again = ("Resume with the same data and settings, or pass resume=False to start "
             "again (the file is then overwritten).")
    names = sorted(set(saved["settings"]) | set(current["settings"]))
    missing = object()
    diff = [name for name in names
            if saved["settings"].get(name, missing) != current["settings"].get(name, missing)]
    if diff:
        shown = ", ".join(f"{name}={saved['settings'].get(name)!r} there, "
                          f"{current['settings'].get(name)!r} here" for name in diff)
        raise ValueError(f"The checkpoint {path!r} was written by a fit with other "
                         f"settings: {shown}. {again}")
    if saved["rows"] != current["rows"] or saved["sizes"] != current["sizes"]:
        raise ValueError(f"The checkpoint {path!r} was written by a fit "
                         f"{_describe_layout(saved)}; this fit runs "
                         f"{_describe_layout(current)}. {again}")
    if saved["data"] != current["data"]:
        raise ValueError(f"The checkpoint {path!r} was written by a fit on other data (the "
                         "digest of the rows, labels and known pairs differs). " + again)


# ---- saving -------------------------------------------------------------------
def _to_json(value):
    """Generator states as JSON: arrays become tagged lists."""
    if isinstance(value, dict):
        return {key: _to_json(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__array__", "dtype"}:
            return np.asarray(value["__array__"], dtype=np.dtype(value["dtype"]))
        return {key: _from_json(v) for key, v in value.items()}
    return value


def checkpoint_state(fit, fp):
    """(meta, arrays) of the checkpoint of ``fit`` now (after an iteration)."""
    loop, code = fit.loop, fit.code
    loop_meta = {}
    for name in _LOOP_FIELDS:
        value = getattr(loop, name)
        loop_meta[name] = bool(value) if isinstance(value, (bool, np.bool_)) else \
            int(value) if isinstance(value, numbers.Integral) else float(value)
    meta = {
        "fingerprint": fp,
        "loop": loop_meta,
        "history_terms": list(TERMS),
        "rng": _to_json(fit.rng.bit_generator.state),
        "draw_states": _to_json(fit.draw_states),
        "dtype": fit.dtype.name,
        "n_features": [int(Z.shape[0]) for Z in fit.Z],
        "preprocess_kinds": [pp.kind for pp in fit.preprocessors],
        "code_scheme": code.scheme,
        "z_ridge": [float(e) for e in fit.z_ridge],
        "aligned_counts": [int(c) for c in fit.aligned_counts],
        "moments_rows": None if fit.moments is None else int(fit.moments[0]),
        "code_priorities": bool(fit.code_priorities),
        "gw_sample": fit.gw_rows is not None,
        "gw_couplings": sorted(int(m) for m in fit.gw_couplings),
        "gamma_version": int(fit.gamma_version),
        "kept_gamma": fit.kept_inferred is not None and fit.kept_version == fit.gamma_version,
    }
    arrays = {f"Z_{m}": Z for m, Z in enumerate(fit.Z)}
    arrays["cluster_matching"] = np.asarray(fit.cluster_matching, dtype=np.int64)
    arrays.update(code.state("code_"))
    for name in ("spread", "basis"):  # ITQ's warm start of the next code fit
        value = getattr(code, name, None)
        if value is not None:
            arrays[f"code_{name}"] = value
    for m, pp in enumerate(fit.preprocessors):
        arrays.update(pp.state(f"pre_{m}_"))
    arrays["history"] = np.asarray(loop.history, dtype=np.float64).reshape(-1, len(TERMS))
    if fit.moments is not None:
        arrays["moments_sum"] = np.asarray(fit.moments[1], dtype=np.float64)
        arrays["moments_scatter"] = np.asarray(fit.moments[2], dtype=np.float64)
    if fit.gw_rows is not None:
        for m, (rows, dist) in enumerate(zip(fit.gw_rows, fit.gw_distances)):
            arrays[f"gw_rows_{m}"] = np.asarray(rows, dtype=np.int64)
            arrays[f"gw_distances_{m}"] = dist
    for m, coupling in fit.gw_couplings.items():
        arrays[f"gw_coupling_{m}"] = coupling
    if meta["kept_gamma"]:
        for q, inferred in enumerate(fit.kept_inferred):
            for (m, m2), g in inferred.items():
                arrays[f"kept_{q}_{m}_{m2}"] = g
    if fp["rows"]:
        (state,) = fit.backend.run(P.partition_state)
        arrays.update({f"part_{name}": np.asarray(a) for name, a in state.items()})
    return meta, arrays


# ---- resuming -------------------------------------------------------------------
@dataclasses.dataclass
class Resumed:
    """A checkpoint read back: its ``path`` and the partition's per-row
    state (None when the partitions are rebuilt from the centroids)."""

    path: str
    rows: dict


def resume_state(fit):
    """Restore the driver and loop state of ``fit`` from its checkpoint
    when ``resume`` is set and the file exists; returns :class:`Resumed`, or
    None (then the fit starts from the beginning).

    Raises
    ------
    FileFormatError
        The file is damaged, not a checkpoint, or its content inconsistent.
    ValueError
        It was written by a fit with other settings, data or partitions.
    """
    ck = fit.checkpoints
    if ck is None or not fit.p["resume"] or not os.path.exists(ck.path):
        return None
    kind, meta, arrays = read_state(ck.path)
    if kind != KIND:
        raise FileFormatError(f"{ck.path!r} holds a {kind}, not a checkpoint of a fit "
                              "('checkpoint' must name a checkpoint file to resume from).")
    try:
        check_checkpoint_state(meta, arrays)
    except FileFormatError as exc:
        raise FileFormatError(f"{ck.path!r} is not a valid checkpoint: {exc}") from None
    check_fingerprint(ck.path, meta["fingerprint"], ck.fingerprint)
    saved_rng = meta["rng"].get("bit_generator")
    if saved_rng != type(fit.rng.bit_generator).__name__:
        raise ValueError(f"The checkpoint {ck.path!r} was written with a {saved_rng} random "
                         f"generator; 'random_state' gives a "
                         f"{type(fit.rng.bit_generator).__name__} here.")
    try:
        _restore_driver(fit, meta, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FileFormatError(f"{ck.path!r} is not a valid checkpoint: {exc}") from None
    rows = {name[5:]: a for name, a in arrays.items() if name.startswith("part_")}
    return Resumed(ck.path, rows if meta["fingerprint"]["rows"] else None)


def _restore_driver(fit, meta, arrays):
    M = len(meta["n_features"])
    fit.dtype = np.dtype(meta["dtype"])
    fit.preprocessors = [Preprocessor.from_state(kind, arrays, f"pre_{m}_")
                         for m, kind in enumerate(meta["preprocess_kinds"])]
    fit.Z = [arrays[f"Z_{m}"] for m in range(M)]
    fit.z_ridge = [float(e) for e in meta["z_ridge"]]
    fit.cluster_matching = arrays["cluster_matching"]
    code = code_class(meta["code_scheme"]).from_state(arrays, "code_")
    if "code_spread" in arrays or "code_basis" in arrays:
        code.spread, code.basis = arrays.get("code_spread"), arrays.get("code_basis")
    fit.code = code
    fit.aligned_counts = [int(c) for c in meta["aligned_counts"]]
    fit.moments = None if meta["moments_rows"] is None else (
        int(meta["moments_rows"]), arrays["moments_sum"], arrays["moments_scatter"])
    fit.code_priorities = bool(meta["code_priorities"])
    if meta["gw_sample"]:
        fit.gw_rows = [arrays[f"gw_rows_{m}"] for m in range(M)]
        fit.gw_distances = [arrays[f"gw_distances_{m}"] for m in range(M)]
    fit.gw_couplings = {int(m): arrays[f"gw_coupling_{m}"] for m in meta["gw_couplings"]}
    fit.gamma_version = int(meta["gamma_version"])
    if meta["kept_gamma"]:
        fit.kept_version = fit.gamma_version
        fit.kept_inferred = [{(m, m2): arrays[f"kept_{q}_{m}_{m2}"]
                              for m in range(M) for m2 in range(m + 1, M)}
                             for q in range(len(meta["aligned_counts"]))]
    fit.draw_states = _from_json(meta["draw_states"])
    fit.rng.bit_generator.state = _from_json(meta["rng"])
    fit.loop = LoopState(**meta["loop"],
                         history=[tuple(float(v) for v in row) for row in arrays["history"]])


# ---- the checks of a checkpoint's content -------------------------------------
def _meta_bool(meta, key):
    if not isinstance(meta.get(key), bool):
        raise FileFormatError(f"header meta {key!r} must be a bool. Got {meta.get(key)!r:.60}")
    return meta[key]


def _meta_number(meta, key):
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FileFormatError(f"header meta {key!r} must be a number. Got {value!r:.60}")
    return float(value)


def check_checkpoint_state(meta, arrays):
    """Every field and array a resumed fit reads, with consistent types and
    shapes; :class:`FileFormatError` otherwise."""
    fp = meta_dict(meta, "fingerprint")
    settings = meta_dict(fp, "settings")
    if not isinstance(fp.get("data"), str):
        raise FileFormatError("fingerprint 'data' must be a string")
    rows = _meta_bool(fp, "rows")
    n_features = meta_int_list(meta, "n_features", low=1)
    M = len(n_features)
    sizes = fp.get("sizes")
    if not isinstance(sizes, list) or not sizes or not all(
            isinstance(s, list) and len(s) == M
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in s)
            for s in sizes) or (rows and len(sizes) != 1):
        raise FileFormatError(f"fingerprint 'sizes' must list the row counts of the "
                              f"{M} modalities per partition. Got {sizes!r:.80}")
    n_bits = meta_int(settings, "n_bits", 1)
    dtype = meta_option(meta, "dtype", ("float32", "float64"))
    k = None
    for m, d in enumerate(n_features):
        Z = array_entry(arrays, f"Z_{m}", shape=(d, k))
        k = Z.shape[1]
        if Z.dtype != dtype:
            raise FileFormatError(f"entry 'Z_{m}' is {Z.dtype}, the fit's dtype {dtype}")
    matching = array_entry(arrays, "cluster_matching", kinds="iu", shape=(M, k))
    if not all(np.array_equal(np.sort(row), np.arange(k)) for row in matching):
        raise FileFormatError("entry 'cluster_matching' must hold a permutation per row")
    scheme = meta_option(meta, "code_scheme", SCHEMES)
    check_code_state(arrays, "code_", scheme, n_bits, k)
    for name in ("code_spread", "code_basis"):
        if name in arrays:
            array_entry(arrays, name, shape=(k, None))
    check_preprocess_state(meta, arrays, n_features)
    loop = meta_dict(meta, "loop")
    if sorted(loop) != sorted(_LOOP_FIELDS):
        raise FileFormatError(f"header meta 'loop' must hold {list(_LOOP_FIELDS)}. "
                              f"Got {sorted(loop)!r:.120}")
    n_iter = meta_int(loop, "n_iter", 0)
    meta_int(loop, "repairs", 0)
    for name in ("repair_next", "converged"):
        _meta_bool(loop, name)
    for name in ("previous_objective", "objective_change", "code_changes"):
        _meta_number(loop, name)
    if meta.get("history_terms") != list(TERMS):
        raise FileFormatError(f"header meta 'history_terms' must be {list(TERMS)}")
    array_entry(arrays, "history", shape=(n_iter, len(TERMS)), finite=False)
    z_ridge = meta.get("z_ridge")
    if not isinstance(z_ridge, list) or len(z_ridge) != M:
        raise FileFormatError(f"header meta 'z_ridge' must list {M} numbers")
    for m in range(M):
        _meta_number({"z_ridge": z_ridge[m]}, "z_ridge")
    meta_int_list(meta, "aligned_counts", low=0, length=len(sizes))
    if meta_int(meta, "moments_rows", 0, allow_none=True) is not None:
        array_entry(arrays, "moments_sum", shape=(k,))
        array_entry(arrays, "moments_scatter", shape=(k, k))
    _meta_bool(meta, "code_priorities")
    if _meta_bool(meta, "gw_sample"):
        for m in range(M):
            sample = array_entry(arrays, f"gw_rows_{m}", kinds="iu", ndim=1)
            array_entry(arrays, f"gw_distances_{m}", shape=(sample.shape[0],) * 2)
    for m in meta_int_list(meta, "gw_couplings", low=1):
        if m >= M:
            raise FileFormatError(f"header meta 'gw_couplings' names modality {m} of {M}")
        array_entry(arrays, f"gw_coupling_{m}", ndim=2)
    meta_int(meta, "gamma_version", 0)
    if _meta_bool(meta, "kept_gamma"):
        for q, part_sizes in enumerate(sizes):
            for m in range(M):
                for m2 in range(m + 1, M):
                    g = array_entry(arrays, f"kept_{q}_{m}_{m2}", kinds="iu", shape=(None, 2))
                    if g.size and (g.min() < 0 or g[:, 0].max() >= part_sizes[m]
                                   or g[:, 1].max() >= part_sizes[m2]):
                        raise FileFormatError(f"entry 'kept_{q}_{m}_{m2}' holds rows out of "
                                              "range")
    if not isinstance(meta_dict(meta, "rng").get("bit_generator"), str):
        raise FileFormatError("header meta 'rng' must be a generator state")
    draws = meta_dict(meta, "draw_states")
    if not set(draws) <= set(DRAWS) or not all(isinstance(s, dict) for s in draws.values()):
        raise FileFormatError(f"header meta 'draw_states' must map some of {list(DRAWS)} to "
                              "generator states")
    if rows:
        _check_rows(arrays, sizes[0], k, n_bits, dtype)
    elif any(name.startswith("part_") for name in arrays):
        raise FileFormatError("per-row entries in a checkpoint whose fingerprint says "
                              "it holds none")


def _check_rows(arrays, n, k, n_bits, dtype):
    """The per-row state of the one partition (``n``: rows per modality)."""
    M = len(n)
    for m in range(M):
        for name in ("H", "XZ"):
            a = array_entry(arrays, f"part_{name}_{m}", shape=(n[m], k))
            if a.dtype != dtype:
                raise FileFormatError(f"entry 'part_{name}_{m}' is {a.dtype}, the fit's "
                                      f"dtype {dtype}")
        packed_codes_entry(arrays, f"part_code_bits_{m}", n_bits, n_rows=n[m])
        if "part_gram_H_0" in arrays:
            array_entry(arrays, f"part_gram_H_{m}", shape=(k, k))
        if "part_label_rank_0" in arrays:
            array_entry(arrays, f"part_label_rank_{m}", shape=(n[m],))
        for m2 in range(m + 1, M):
            g = array_entry(arrays, f"part_gamma_{m}_{m2}", kinds="iu", shape=(None, 2))
            if g.size and (g.min() < 0 or g[:, 0].max() >= n[m] or g[:, 1].max() >= n[m2]):
                raise FileFormatError(f"entry 'part_gamma_{m}_{m2}' holds rows out of range")
    packed_codes_entry(arrays, "part_B", n_bits)
    array_entry(arrays, "part_disagreements", kinds="iu", shape=())
    if "part_code_priority" in arrays:
        array_entry(arrays, "part_code_priority", shape=(n[0],))
