"""Fault suite for saved files: permissions, interrupted saves, and every
corrupted, truncated, foreign or hand-edited file.

Each damaged file must either load with exactly the saved content or raise
:class:`FileFormatError` naming the file -- never another exception, never
silently different content.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast._persist import FileFormatError, load, read_state, save_state
from flexcmh_fast.csmh._state import check_csmh_state
from flexcmh_fast.flexcmh._state import check_flexcmh_state
from flexcmh_fast.search._saved import check_index_state


@pytest.fixture(scope="module")
def small_index():
    codes = np.array([[0b10110000, 0xFF], [0, 0x0F], [0x81, 0xF0]], dtype=np.uint8)
    return fc.HammingIndex(codes, n_bits=16)


@pytest.fixture(scope="module")
def small_model():
    rng = np.random.default_rng(0)
    return fc.train([rng.random((12, 3)), rng.random((12, 4))], None, n_bits=8,
                    n_clusters=2, random_state=0, max_iter=2, encoder="nnls")


@pytest.fixture(scope="module")
def small_csmh():
    rng = np.random.default_rng(1)
    X = [rng.random((30, 3)), rng.random((30, 4))]
    y = rng.integers(0, 3, 30)
    return fc.train(X, "all", n_bits=8, method="csmh", labels=[y, y], random_state=0,
                    n_anchors=10, max_iter=2)


def same_state(a, b):
    (kind_a, meta_a, arrays_a), (kind_b, meta_b, arrays_b) = a, b
    return (kind_a == kind_b and meta_a == meta_b and arrays_a.keys() == arrays_b.keys()
            and all(arrays_a[k].dtype == arrays_b[k].dtype
                    and np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a))


def damaged_outcomes(path, original, variants):
    """Write each damaged variant of a file to ``path`` and classify the
    outcome of reading it: ``"same"``, ``"error"`` (FileFormatError naming
    the file); anything else fails the test."""
    counts = {"same": 0, "error": 0}
    for label, data in variants:
        path.write_bytes(data)
        try:
            state = read_state(path)
        except FileFormatError as exc:
            assert str(path) in str(exc), (label, exc)
            counts["error"] += 1
            continue
        assert same_state(state, original), f"{label}: loaded different content"
        counts["same"] += 1
    return counts


def bit_flips(data, positions, bits=range(8)):
    for pos in positions:
        for bit in bits:
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            yield f"flip byte {pos} bit {bit}", bytes(flipped)


def zip_record_bytes(data):
    """Offsets of the zip structure outside the members' (CRC-protected)
    contents: local headers with names, central directory, end record."""
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:
        infos = archive.infolist()
    covered = set()
    for info in infos:
        start = info.header_offset
        covered.update(range(start, start + 30 + len(info.filename.encode())))
    cd_start = max(i.header_offset + 30 + len(i.filename) + i.compress_size for i in infos)
    covered.update(range(cd_start, len(data)))
    return sorted(covered)


# ---------------------------------------------------------------------------
# Permissions and interrupted saves
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_file_mode_follows_umask(tmp_path, small_index, umask):
    old = os.umask(umask)
    try:
        small_index.save(tmp_path / "index.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "index.npz").stat().st_mode & 0o777 == 0o666 & ~umask


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_save_removes_temporaries_of_dead_processes(tmp_path, small_index):
    from flexcmh_fast._persist import _host_tag

    host = _host_tag()
    dead = tmp_path / f".flexcmh_tmp_{host}_{_dead_pid()}_0a1b.npz"
    alive = tmp_path / f".flexcmh_tmp_{host}_{os.getpid()}_0a1b.npz"
    other_host = tmp_path / f".flexcmh_tmp_{host}x_{_dead_pid()}_0a1b.npz"
    foreign = tmp_path / ".flexcmh_tmp_notours.npz"
    for p in (dead, alive, other_host, foreign):
        p.write_bytes(b"partial")
    small_index.save(tmp_path / "index.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["index.npz", alive.name, other_host.name, foreign.name])


_SAVE_ONCE = textwrap.dedent("""
    import sys
    import numpy as np
    import flexcmh_fast as fc
    index = fc.HammingIndex(np.full((400_000, 64), 0x5A, np.uint8), n_bits=512)
    print("ready", flush=True)
    index.save(sys.argv[1])
""")


def _kill_during_save(folder, target):
    """Start a 25 MB save in a subprocess and SIGKILL it once its temporary
    exists; returns the temporaries left behind (none if the save won the
    race and completed first)."""
    # cwd: not the repository root, whose source tree would shadow the
    # installed package (and its compiled extension).
    proc = subprocess.Popen([sys.executable, "-c", _SAVE_ONCE, str(target)],
                            stdout=subprocess.PIPE, text=True, cwd=folder)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not any(n.startswith(".flexcmh_tmp_") for n in os.listdir(folder)):
            assert time.monotonic() < deadline, "the subprocess never started its save"
            assert proc.poll() is None, "the subprocess ended before its save started"
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    return [n for n in os.listdir(folder) if n.startswith(".flexcmh_tmp_")]


def test_save_killed_midway_keeps_old_file_and_next_save_cleans_up(tmp_path, small_index):
    target = tmp_path / "index.npz"
    for _ in range(3):  # the kill may (rarely) come after the rename
        small_index.save(target)
        before = target.read_bytes()
        litter = _kill_during_save(tmp_path, target)
        if litter:
            break
    assert litter, "three kills all came after the save had completed"
    assert target.read_bytes() == before  # the old file, intact
    np.testing.assert_array_equal(load(target, kind="HammingIndex").codes, small_index.codes)
    small_index.save(target)
    assert os.listdir(tmp_path) == ["index.npz"]
    np.testing.assert_array_equal(load(target).codes, small_index.codes)


# ---------------------------------------------------------------------------
# Damaged files: bit flips and truncations
# ---------------------------------------------------------------------------
def test_every_bit_flip_of_an_index(tmp_path, small_index):
    path = tmp_path / "index.npz"
    small_index.save(path)
    data = path.read_bytes()
    original = read_state(path)
    counts = damaged_outcomes(tmp_path / "bad.npz", original,
                              bit_flips(data, range(len(data))))
    # Most flips are detected; those in dates, flags and the like are harmless.
    assert counts["error"] > counts["same"] > 0


def test_bit_flips_of_a_model(tmp_path, small_model):
    """Every bit of the zip records (where no CRC protects); one bit per
    byte elsewhere, cycling through the bit positions (CRC-32 detects any
    single-bit error in a member's contents)."""
    path = tmp_path / "model.npz"
    small_model.save(path)
    data = path.read_bytes()
    original = read_state(path)
    records = zip_record_bytes(data)
    others = sorted(set(range(len(data))) - set(records))

    def variants():
        yield from bit_flips(data, records)
        for pos in others:
            yield from bit_flips(data, [pos], [pos % 8])

    counts = damaged_outcomes(tmp_path / "bad.npz", original, variants())
    assert counts["error"] > counts["same"] > 0
    # What loads identically at the archive level loads the same model.
    back = load(path, kind="FlexCMH")
    np.testing.assert_array_equal(back.codes_, small_model.codes_)


@pytest.mark.parametrize("which", ["index", "model"])
def test_every_truncation(tmp_path, small_index, small_model, which):
    obj = small_index if which == "index" else small_model
    path = tmp_path / "obj.npz"
    obj.save(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for size in range(len(data)):
        bad.write_bytes(data[:size])
        with pytest.raises(FileFormatError, match="bad.npz"):
            load(bad)


# ---------------------------------------------------------------------------
# Foreign and hand-edited files
# ---------------------------------------------------------------------------
def write_npz(path, header=None, **arrays):
    if header is not None:
        text = header if isinstance(header, str) else json.dumps(header)
        arrays["__meta__"] = np.frombuffer(text.encode(), np.uint8)
    np.savez(path, **arrays)


GOOD_HEADER = {"format": "flexcmh_fast", "format_version": 1, "kind": "HammingIndex",
               "meta": {"n_bits": 8, "n_codes": 1, "n_threads": None}}


def edited(**changes):
    header = dict(GOOD_HEADER)
    for key, value in changes.items():
        if value is KeyError:
            del header[key]
        else:
            header[key] = value
    return header


FOREIGN = {
    "empty file": lambda p: p.write_bytes(b""),
    "text": lambda p: p.write_text("hello"),
    "plain .npy": lambda p: np.save(open(p, "wb"), np.zeros(3)),
    "npz without header": lambda p: write_npz(p, a=np.zeros(2)),
    "pickled object entry": lambda p: np.savez(p, __meta__=np.frombuffer(
        json.dumps(GOOD_HEADER).encode(), np.uint8), codes=np.array([None], dtype=object)),
    "header not JSON": lambda p: write_npz(p, "{not json", codes=np.zeros((1, 1), np.uint8)),
    "header not UTF-8": lambda p: np.savez(p, __meta__=np.frombuffer(b"\xff\xfe", np.uint8)),
    "header a JSON list": lambda p: write_npz(p, "[1, 2]", codes=np.zeros((1, 1), np.uint8)),
    "header a float array": lambda p: np.savez(p, __meta__=np.zeros(3)),
    "other format": lambda p: write_npz(p, edited(format="other")),
    "no kind": lambda p: write_npz(p, edited(kind=KeyError)),
    "unknown kind": lambda p: write_npz(p, edited(kind="Pipeline")),
    "kind not a string": lambda p: write_npz(p, edited(kind=3)),
    "no meta": lambda p: write_npz(p, edited(meta=KeyError)),
    "meta a list": lambda p: write_npz(p, edited(meta=[1])),
    "no format_version": lambda p: write_npz(p, edited(format_version=KeyError)),
    "format_version 0": lambda p: write_npz(p, edited(format_version=0)),
    "format_version -5": lambda p: write_npz(p, edited(format_version=-5)),
    "format_version true": lambda p: write_npz(p, edited(format_version=True)),
    "format_version 1.0": lambda p: write_npz(p, edited(format_version=1.0)),
    "format_version '1'": lambda p: write_npz(p, edited(format_version="1")),
    "format_version 2": lambda p: write_npz(p, edited(format_version=2)),
    "package_version a number": lambda p: write_npz(p, edited(package_version=1)),
    "entry not listed": lambda p: write_npz(p, edited(arrays={}),
                                            codes=np.zeros((1, 1), np.uint8)),
    "listed entry missing": lambda p: write_npz(p, edited(arrays={
        "codes": {"dtype": "|u1", "shape": [1, 1]}})),
    "entry of another dtype than listed": lambda p: write_npz(p, edited(arrays={
        "codes": {"dtype": "<f8", "shape": [1, 1]}}), codes=np.zeros((1, 1), np.uint8)),
    "non-.npy member": lambda p: _zip_with_extra_member(p),
}


def _zip_with_extra_member(path):
    write_npz(path, GOOD_HEADER, codes=np.zeros((1, 1), np.uint8))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "hello")


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_foreign_or_edited_file_raises_file_format_error(tmp_path, case):
    path = tmp_path / "file.npz"
    FOREIGN[case](path)
    with pytest.raises(FileFormatError, match="file.npz") as info:
        load(path)
    assert isinstance(info.value, ValueError)  # documented: a ValueError subclass


def test_good_hand_written_index_loads_and_kind_is_checked(tmp_path):
    path = tmp_path / "index.npz"
    write_npz(path, GOOD_HEADER, codes=np.array([[0xF0]], np.uint8))
    assert len(load(path, kind="HammingIndex")) == 1
    with pytest.raises(FileFormatError, match="holds a HammingIndex, not the FlexCMH"):
        load(path, kind="FlexCMH")
    for bad in ("index", 3, ""):
        with pytest.raises(ValueError, match="'kind' must be None or one of"):
            load(path, kind=bad)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        load(tmp_path)


def resave(tmp_path, obj, edit):
    """Save ``obj``, apply ``edit(meta, arrays)`` to its state and write it
    back as a well-formed file (so only the state's consistency is wrong)."""
    path = tmp_path / "orig.npz"
    obj.save(path)
    kind, meta, arrays = read_state(path)
    edit(meta, arrays)
    out = tmp_path / "edited.npz"
    save_state(out, kind, meta, arrays)
    return out, meta, arrays


def _set(key, value):
    def edit(meta, arrays):
        meta[key] = value
    return edit


def _array(key, value):
    def edit(meta, arrays):
        arrays[key] = value
    return edit


def _drop(key):
    def edit(meta, arrays):
        del arrays[key]
    return edit


INDEX_EDITS = {
    "n_bits 32": _set("n_bits", 32), "n_bits 0": _set("n_bits", 0),
    "n_bits '16'": _set("n_bits", "16"), "n_bits 9": _set("n_bits", 9),
    "n_bits true": _set("n_bits", True), "n_codes 4": _set("n_codes", 4),
    "n_threads 0": _set("n_threads", 0), "n_threads 'x'": _set("n_threads", "x"),
    "codes float": _array("codes", np.zeros((3, 2))),
    "codes 1-D": _array("codes", np.zeros(6, np.uint8)),
    "no codes": _drop("codes"),
}
MODEL_EDITS = {
    "n_bits 32": _set("n_bits", 32), "n_bits 0": _set("n_bits", 0),
    "n_bits '16'": _set("n_bits", "16"), "n_bits 16": _set("n_bits", 16),
    "n_features wrong": _set("n_features", [3, 5]),
    "n_features one modality": _set("n_features", [3]),
    "n_iter -1": _set("n_iter", -1),
    "params a list": _set("params", []),
    "pair_keys out of range": _set("pair_keys", [[0, 7]]),
    "rotation 8x16": _array("code_R", np.eye(8, 16)),
    "rotation 16x16": _array("code_R", np.eye(16)),
    "rotation with NaN": _array("code_R", np.full((8, 8), np.nan)),
    "projection wrong width": _array("code_W", np.zeros((2, 16))),
    "mean wrong length": _array("code_mu", np.zeros(3)),
    "centroids wrong rows": _array("Z_1", np.zeros((5, 2))),
    "centroids int": _array("Z_0", np.zeros((3, 2), np.int64)),
    "codes 2 bytes wide": _array("codes", np.zeros((11, 2), np.uint8)),
    "train codes float": _array("train_codes_0", np.zeros((12, 1))),
    "no rotation": _drop("code_R"),
    "no gamma": _drop("gamma_0_1"),
}
CSMH_EDITS = {
    "n_bits 16": _set("n_bits", 16), "n_bits '8'": _set("n_bits", "8"),
    "sigmas negative": _set("sigmas", [-1.0, 1.0]),
    "sigmas one": _set("sigmas", [1.0]),
    "weights wrong width": _array("weights_0", np.zeros((11, 16))),
    "anchors wrong width": _array("anchors_1", np.zeros((10, 5))),
    "codes 2 bytes wide": _array("codes", np.zeros((30, 2), np.uint8)),
    "no history": _drop("history"),
}


@pytest.mark.parametrize("case", sorted(INDEX_EDITS))
def test_edited_index_state_is_rejected_by_the_state_check(tmp_path, small_index, case):
    path, meta, arrays = resave(tmp_path, small_index, INDEX_EDITS[case])
    with pytest.raises(FileFormatError):
        check_index_state(meta, arrays)


@pytest.mark.parametrize("case", sorted(MODEL_EDITS))
def test_edited_model_state_is_rejected_by_the_state_check(tmp_path, small_model, case):
    path, meta, arrays = resave(tmp_path, small_model, MODEL_EDITS[case])
    with pytest.raises(FileFormatError):
        check_flexcmh_state(meta, arrays)


@pytest.mark.parametrize("case", sorted(CSMH_EDITS))
def test_edited_csmh_state_is_rejected_by_the_state_check(tmp_path, small_csmh, case):
    path, meta, arrays = resave(tmp_path, small_csmh, CSMH_EDITS[case])
    with pytest.raises(FileFormatError):
        check_csmh_state(meta, arrays)


def test_state_checks_accept_what_save_writes(tmp_path, small_index, small_model, small_csmh):
    for obj, check in ((small_index, check_index_state), (small_model, check_flexcmh_state),
                       (small_csmh, check_csmh_state)):
        path, meta, arrays = resave(tmp_path, obj, lambda meta, arrays: None)
        check(meta, arrays)
    rng = np.random.default_rng(2)
    kernel_kmeans = fc.train([rng.random((12, 3)), rng.random((12, 4))], None, n_bits=12,
                             n_clusters=3, random_state=0, max_iter=2, code_scheme="kmeans")
    path, meta, arrays = resave(tmp_path, kernel_kmeans, lambda meta, arrays: None)
    check_flexcmh_state(meta, arrays)
    X = rng.random((5, 3))
    np.testing.assert_array_equal(load(path).encode(X, 0), kernel_kmeans.encode(X, 0))


def _load_edited(tmp_path, obj, edit):
    path, _, _ = resave(tmp_path, obj, edit)
    return load(path)


# Through fc.load: the loaders call the state checks (each method's _state module).

@pytest.mark.parametrize("case", sorted(MODEL_EDITS))
def test_edited_model_fails_at_load(tmp_path, small_model, case):
    with pytest.raises(FileFormatError, match="edited.npz"):
        _load_edited(tmp_path, small_model, MODEL_EDITS[case])


@pytest.mark.parametrize("case", sorted(CSMH_EDITS))
def test_edited_csmh_fails_at_load(tmp_path, small_csmh, case):
    with pytest.raises(FileFormatError, match="edited.npz"):
        _load_edited(tmp_path, small_csmh, CSMH_EDITS[case])
