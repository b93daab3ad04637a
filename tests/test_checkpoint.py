"""Checkpoints of a FlexCMH fit on one machine (``checkpoint``,
``checkpoint_every``, ``checkpoint_seconds``, ``resume``).

A fit interrupted after a checkpoint, whether stopped through the callback
or killed in a subprocess, resumes to a model identical to the
uninterrupted fit's: the same iterations, history, centroids, code
function, encoders, codes and correspondence, bit for bit.  Checkpoints of
other data or settings are refused with a ``ValueError``; damaged or foreign
files raise ``FileFormatError``.
"""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast import FileFormatError, datasets
from flexcmh_fast._persist import read_state, save_state

pytestmark = pytest.mark.filterwarnings("ignore::flexcmh_fast.ConvergenceWarning")

SETTINGS = dict(n_bits=16, n_clusters=6, random_state=0, max_iter=14, n_threads=1)


def make_data(dtype=np.float64):
    d = datasets.make_multimodal(400, n_classes=6, n_features=(24, 60), noise=0.6,
                                 random_state=3)
    known = np.arange(0, 400, 3)
    return {"X": [X.astype(dtype) for X in d.modalities],
            "pairs": np.stack([known, known], axis=1), "labels": [d.labels, d.labels]}


@pytest.fixture(scope="module")
def data():
    return make_data()


def fit(data, pairs="given", labels=None, **settings):
    pairs = data["pairs"] if isinstance(pairs, str) else pairs
    return fc.FlexCMH(**{**SETTINGS, **settings}).fit(data["X"], pairs, labels)


def assert_identical(got, want):
    assert got.n_iter_ == want.n_iter_ and got.converged_ == want.converged_
    for term, values in want.history_.items():
        np.testing.assert_array_equal(got.history_[term], values, err_msg=term)
    for a, b in zip(got.centroids_, want.centroids_):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.cluster_matching_, want.cluster_matching_)
    for name, value in want.code_.state("").items():
        np.testing.assert_array_equal(got.code_.state("")[name], value, err_msg=name)
    np.testing.assert_array_equal(got.codes_, want.codes_)
    for a, b in zip(got.train_codes_, want.train_codes_):
        np.testing.assert_array_equal(a, b)
    assert set(got.correspondence_) == set(want.correspondence_)
    for key, g in want.correspondence_.items():
        np.testing.assert_array_equal(got.correspondence_[key], g)
    assert (got.anchors_ is None) == (want.anchors_ is None)
    if want.anchors_ is not None:
        assert got.sigmas_ == want.sigmas_
        for a, b in zip(got.encoder_weights_ + got.anchors_,
                        want.encoder_weights_ + want.anchors_):
            np.testing.assert_array_equal(a, b)


# The code schemes, encoders, matchings and scores that keep state of their
# own in the driver or the partition (k-means codebooks, the ITQ warm start,
# the moments kept for the final nnls code fit, label ranks, the GW sample).
CONFIGS = {
    "default": {},
    "kmeans": {"code_scheme": "kmeans", "max_iter": 9},
    "nnls": {"encoder": "nnls"},
    "labels": {"matching": "labels", "labels": True},
    "gw_unpaired": {"match_score": "gw", "pairs": None},
    "standard_n_repairs": {"preprocess": "standard", "n_repairs": 3, "n_threads": None},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_after_a_callback_stop_is_bit_identical(data, tmp_path, name):
    extra = dict(CONFIGS[name])
    if extra.pop("labels", False):
        extra["labels"] = data["labels"]
    path = tmp_path / "fit.ckpt.npz"
    full = fit(data, **extra)
    stopped = fit(data, checkpoint=path, checkpoint_every=3,
                  callback=lambda it, state: it == 7, **extra)
    assert stopped.n_iter_ == 7 and path.is_file()
    assert read_state(path)[1]["loop"]["n_iter"] == 6
    resumed = fit(data, checkpoint=path, checkpoint_every=3, resume=True, **extra)
    assert_identical(resumed, full)


def test_float32_fit_resumes_bit_identically(tmp_path):
    data = make_data(np.float32)
    path = tmp_path / "fit.npz"
    full = fit(data)
    fit(data, checkpoint=path, checkpoint_every=4, callback=lambda it, state: it == 5)
    resumed = fit(data, checkpoint=path, resume=True, checkpoint_every=4)
    assert resumed.centroids_[0].dtype == np.float32
    assert_identical(resumed, full)


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_resume_after_the_process_is_killed(data, tmp_path):
    """The fitting process is killed (SIGKILL, from its callback after
    iteration 9); a new process resumes from the checkpoint of iteration 8."""
    path = tmp_path / "killed.npz"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import flexcmh_fast as fc
        from test_checkpoint import SETTINGS, make_data

        def kill(iteration, state):
            if iteration == 9:
                os.kill(os.getpid(), signal.SIGKILL)

        data = make_data()
        fc.FlexCMH(**SETTINGS, checkpoint={str(path)!r}, checkpoint_every=4,
                   callback=kill).fit(data["X"], data["pairs"])
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(fc.__file__).resolve().parents[1]))
    # From another folder: `python -c` puts the working directory first on
    # sys.path, and the source tree has no compiled extension when the
    # package is installed (CI).
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert read_state(path)[1]["loop"]["n_iter"] == 8
    resumed = fit(data, checkpoint=path, checkpoint_every=4, resume=True)
    assert_identical(resumed, fit(data))


def test_resume_without_a_checkpoint_starts_afresh_and_writes_one(data, tmp_path, capsys):
    path = tmp_path / "new.npz"
    model = fit(data, checkpoint=path, checkpoint_every=5, resume=True, verbose=True)
    assert_identical(model, fit(data))
    assert read_state(path)[1]["loop"]["n_iter"] == 10
    assert "resuming" not in capsys.readouterr().err
    # The run settings may change; verbose says where the fit resumes.
    again = fit(data, checkpoint=str(path), checkpoint_every=2, resume=True, verbose=True,
                n_threads=2)
    assert "resuming from the checkpoint" in capsys.readouterr().err
    assert_identical(again, model)


def test_checkpoint_by_seconds(data, tmp_path):
    path = tmp_path / "timed.npz"
    fit(data, checkpoint=path, checkpoint_every=None, checkpoint_seconds=1e-9,
        callback=lambda it, state: it == 4)
    kind, meta, arrays = read_state(path)
    assert kind == "FlexCMHCheckpoint" and meta["loop"]["n_iter"] == 4
    # One machine: the per-row state is in the file (H, X Z, Γ, codes).
    assert {"part_H_0", "part_XZ_1", "part_gamma_0_1", "part_code_bits_0"} <= set(arrays)


def test_other_data_or_settings_are_refused(data, tmp_path):
    path = tmp_path / "ck.npz"
    fit(data, checkpoint=path, checkpoint_every=2, callback=lambda it, state: it == 2)
    other = {"X": [data["X"][0].copy(), data["X"][1]], "pairs": data["pairs"]}
    other["X"][0][5, 3] += 1e-9
    with pytest.raises(ValueError, match="written by a fit on other data"):
        fit(other, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="other data"):
        fit(data, pairs=data["pairs"][1:], checkpoint=path, resume=True)
    with pytest.raises(ValueError, match=r"other settings: n_bits=16 there, 8 here"):
        fit(data, checkpoint=path, resume=True, n_bits=8)
    with pytest.raises(ValueError, match=r"random_state=0 there, 1 here"):
        fit(data, checkpoint=path, resume=True, random_state=1)
    with pytest.raises(ValueError, match="one machine"):
        fit({"X": [X[:300] for X in data["X"]], "pairs": None}, pairs=None,
            checkpoint=path, resume=True)


def damage(path, how):
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[len(raw) // 2] ^= 0x40
    elif how == "truncate":
        raw = raw[:len(raw) // 3]
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_checkpoint_raises_file_format_error(data, tmp_path, how):
    path = tmp_path / "ck.npz"
    fit(data, checkpoint=path, checkpoint_every=2, callback=lambda it, state: it == 2)
    damage(path, how)
    with pytest.raises(FileFormatError, match="damaged|corrupt"):
        fit(data, checkpoint=path, resume=True)


def test_inconsistent_or_foreign_files_raise_file_format_error(data, tmp_path):
    path = tmp_path / "ck.npz"
    fit(data, checkpoint=path, checkpoint_every=2, callback=lambda it, state: it == 2)
    kind, meta, arrays = read_state(path)
    # Edited by hand: indicators of the wrong shape.
    save_state(path, kind, meta, dict(arrays, part_H_0=arrays["part_H_0"][:-1]))
    with pytest.raises(FileFormatError, match=r"not a valid checkpoint.*part_H_0"):
        fit(data, checkpoint=path, resume=True)
    # Loop counters that do not match the history.
    save_state(path, kind, dict(meta, loop=dict(meta["loop"], n_iter=5)), arrays)
    with pytest.raises(FileFormatError, match="'history' must have shape"):
        fit(data, checkpoint=path, resume=True)
    # A saved model is not a checkpoint, and a checkpoint is not a model.
    model = fit(data)
    model.save(path)
    with pytest.raises(FileFormatError, match="holds a FlexCMH, not a checkpoint"):
        fit(data, checkpoint=path, resume=True)
    save_state(path, kind, meta, arrays)
    with pytest.raises(FileFormatError, match="checkpoint of an unfinished fit"):
        fc.load(path)


@pytest.mark.parametrize("settings, error, match", [
    ({"checkpoint": 3}, TypeError, r"'checkpoint' must be None or a file path"),
    ({"checkpoint": "/no/such/folder/ck.npz"}, ValueError, "in an existing folder"),
    ({"checkpoint_every": 0}, ValueError, r"'checkpoint_every' must be None or an int >= 1"),
    ({"checkpoint_seconds": 0.0}, ValueError, r"'checkpoint_seconds' must be None or a "
                                              r"finite float in \(0.0, inf\]"),
    ({"resume": "yes"}, TypeError, "'resume' must be a bool"),
    ({"resume": True}, ValueError, "'resume' needs 'checkpoint'"),
    ({"checkpoint": "ck.npz", "checkpoint_every": None}, ValueError,
     "needs 'checkpoint_every' or 'checkpoint_seconds'"),
])
def test_bad_checkpoint_settings(data, settings, error, match):
    with pytest.raises(error, match=match):
        fit(data, **settings)
