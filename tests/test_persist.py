import os

import numpy as np
import pytest

from flexcmh_fast._persist import load, read_state, save_state


def test_round_trip_and_atomic_write(tmp_path):
    path = tmp_path / "obj.npz"
    save_state(path, "HammingIndex", {"n_bits": 8}, {"codes": np.arange(4, dtype=np.uint8)})
    kind, meta, arrays = read_state(path)
    assert kind == "HammingIndex" and meta == {"n_bits": 8}
    assert np.array_equal(arrays["codes"], np.arange(4, dtype=np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["obj.npz"]  # no temporary left behind


def test_failed_save_leaves_nothing(tmp_path):
    path = tmp_path / "obj.npz"
    with pytest.raises(TypeError, match="only numeric arrays"):
        save_state(path, "HammingIndex", {}, {"x": np.array([object()], dtype=object)})
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="existing folder"):
        save_state(tmp_path / "missing" / "obj.npz", "HammingIndex", {}, {})


def test_rejects_foreign_and_future_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a flexcmh_fast file"):
        load(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a flexcmh_fast file"):
        load(text)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")
    import json
    blob = np.frombuffer(json.dumps({"format": "flexcmh_fast", "format_version": 99,
                                     "kind": "HammingIndex", "meta": {}}).encode(), np.uint8)
    future = tmp_path / "future.npz"
    np.savez(future, __meta__=blob)
    with pytest.raises(ValueError, match="format version 99"):
        load(future)
