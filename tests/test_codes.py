"""pack_codes / unpack_codes / check_codes: layout, round trips and bad
input; the layout module (bytes, words, merge keys) against plain references
and against the constants the compiled kernels were built with."""
import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast import _hamming
from flexcmh_fast._validation import MAX_BITS
from flexcmh_fast.search import _layout, as_words, check_codes, code_bytes


def reference_pack(bits):
    """Bit j of a code is bit 7 - j % 8 of byte j // 8 (MSB first), padding zero."""
    n, n_bits = bits.shape
    out = np.zeros((n, (n_bits + 7) // 8), dtype=np.uint8)
    for i in range(n):
        for j in range(n_bits):
            if bits[i, j]:
                out[i, j // 8] |= 1 << (7 - j % 8)
    return out


@pytest.mark.parametrize("n_bits", [1, 7, 8, 9, 63, 64, 65, 128, 1000, 4096])
def test_pack_matches_reference_and_roundtrips(n_bits):
    rng = np.random.default_rng(n_bits)
    bits = rng.integers(0, 2, (5, n_bits))
    packed = fc.pack_codes(bits)
    assert packed.dtype == np.uint8 and packed.flags.c_contiguous
    assert packed.shape == (5, code_bytes(n_bits))
    np.testing.assert_array_equal(packed, reference_pack(bits))
    signs = 2 * bits - 1
    np.testing.assert_array_equal(fc.pack_codes(signs), packed)
    np.testing.assert_array_equal(fc.pack_codes(signs.astype(np.float32)), packed)
    np.testing.assert_array_equal(fc.pack_codes(bits.astype(bool)), packed)
    unpacked = fc.unpack_codes(packed, n_bits)
    assert unpacked.dtype == np.int8
    np.testing.assert_array_equal(unpacked, signs)
    np.testing.assert_array_equal(fc.unpack_codes(packed, n_bits, signed=False), bits)
    check_codes(packed, "codes", n_bits)  # padding bits are zero


def test_bit_order_msb_first():
    packed = fc.pack_codes(np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1]]))
    np.testing.assert_array_equal(packed, [[0x81, 0x80]])


def test_constant_and_empty_inputs():
    np.testing.assert_array_equal(fc.pack_codes(np.ones((2, 3))), [[0xE0], [0xE0]])
    np.testing.assert_array_equal(fc.pack_codes(-np.ones((2, 3))), [[0], [0]])
    np.testing.assert_array_equal(fc.pack_codes(np.zeros((2, 3))), [[0], [0]])
    empty = fc.pack_codes(np.zeros((0, 20)))
    assert empty.shape == (0, 3) and empty.dtype == np.uint8
    assert fc.unpack_codes(empty, 20).shape == (0, 20)


def test_unpack_accepts_strided_views():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (6, 16))
    packed = fc.pack_codes(bits)
    np.testing.assert_array_equal(fc.unpack_codes(packed[::2], 16, signed=False), bits[::2])


def test_pack_bad_input():
    with pytest.raises(ValueError, match="'signs'.*NaN"):
        fc.pack_codes(np.array([[1.0, np.nan, -1.0]]))
    with pytest.raises(ValueError, match="'signs'.*NaN or inf"):
        fc.pack_codes(np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="'signs'"):
        fc.pack_codes(np.array([[1, 0, -1]]))               # mixes -1 and 0
    with pytest.raises(ValueError, match="'signs'"):
        fc.pack_codes(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="'signs'"):
        fc.pack_codes(np.array([1, -1, 1]))                 # 1-D
    with pytest.raises(ValueError, match="'signs.shape\\[1\\]'"):
        fc.pack_codes(np.ones((2, 4097)))
    with pytest.raises(ValueError, match="'signs.shape\\[1\\]'"):
        fc.pack_codes(np.ones((2, 0)))
    with pytest.raises(TypeError, match="'signs'"):
        fc.pack_codes(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="'signs'"):
        fc.pack_codes(np.ones((2, 2), dtype=complex))


def test_unpack_and_check_bad_input():
    good = fc.pack_codes(np.ones((3, 12)))
    with pytest.raises(ValueError, match="'n_bits'"):
        fc.unpack_codes(good, 0)
    with pytest.raises(TypeError, match="'packed'"):
        fc.unpack_codes(good.astype(np.int16), 12)
    with pytest.raises(ValueError, match="'packed'"):
        fc.unpack_codes(good, 24)                             # width mismatch
    with pytest.raises(ValueError, match="'packed'.*padding"):
        fc.unpack_codes(good | np.uint8(1), 12)
    with pytest.raises(TypeError, match="'codes'"):
        check_codes([[1, 2]], "codes", 16)
    with pytest.raises(ValueError, match="'codes'.*C-contiguous"):
        check_codes(np.zeros((4, 4), np.uint8)[:, ::2], "codes", 16)
    with pytest.raises(ValueError, match="'codes'.*2-D"):
        check_codes(np.zeros(2, np.uint8), "codes", 16)
    assert check_codes(good, "codes", 12) is good


# ----------------------------------------------------------------------
# The layout module
# ----------------------------------------------------------------------
def test_layout_constants_match_the_compiled_kernels():
    # hamming_kernels.h: HM_BLOCK, HM_QT, HM_KEY_SHIFT, read by _hamming.pyx.
    assert _layout.BLOCK_CODES == _hamming.BLOCK
    assert _layout.QUERY_TILE == _hamming.QUERY_TILE
    assert _layout.KEY_ID_BITS == _hamming.KEY_ID_BITS
    # A merge key holds the largest distance above the id bits.
    assert MAX_BITS.bit_length() + _layout.KEY_ID_BITS <= 64


@pytest.mark.parametrize("n_bits", [1, 7, 8, 9, 63, 64, 65, 128, 1000, 4096])
def test_code_bytes_and_words(n_bits):
    assert code_bytes(n_bits) == len(np.packbits(np.ones(n_bits, dtype=bool)))
    assert _layout.code_words(n_bits) == int(np.ceil(n_bits / 64))


@pytest.mark.parametrize("width", [1, 3, 8, 9, 16, 17])
def test_as_words_pads_and_keeps_every_bit(width):
    rng = np.random.default_rng(width)
    codes = rng.integers(0, 256, (5, width), dtype=np.uint8)
    words = as_words(codes)
    assert words.dtype == np.uint64 and words.flags.c_contiguous
    assert words.shape == (5, -(-width // 8))
    raw = words.view(np.uint8)
    np.testing.assert_array_equal(raw[:, :width], codes)
    assert not raw[:, width:].any()
    # Distances read from the words equal those of the bytes.
    np.testing.assert_array_equal(
        np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=-1),
        np.bitwise_count(codes[:, None, :] ^ codes[None, :, :]).sum(axis=-1))


def test_as_words_views_only_aligned_whole_words():
    codes = np.arange(48, dtype=np.uint8).reshape(3, 16)
    assert np.shares_memory(as_words(codes), codes)
    misaligned = np.frombuffer(bytes(49), dtype=np.uint8)[1:].reshape(3, 16)
    assert misaligned.ctypes.data % 8
    assert not np.shares_memory(as_words(misaligned), misaligned)
    strided = np.zeros((3, 32), np.uint8)[:, ::2]
    np.testing.assert_array_equal(as_words(strided).view(np.uint8), strided)
    assert as_words(np.zeros((2, 0), np.uint8)).shape == (2, 1)  # no bytes: one zero word
    assert as_words(np.zeros((0, 8), np.uint8)).shape == (0, 1)


def test_merge_keys_sort_by_distance_then_id():
    rng = np.random.default_rng(2)
    dist = rng.integers(0, 4097, 500).astype(np.int32)
    dist[:3] = [0, 4096, 4096]
    ids = rng.integers(0, 1 << _layout.KEY_ID_BITS, 500).astype(np.int64)
    ids[:3] = [(1 << _layout.KEY_ID_BITS) - 1, 0, (1 << _layout.KEY_ID_BITS) - 1]
    keys = _layout.merge_keys(dist, ids)
    back_d, back_i = _layout.split_keys(keys)
    assert back_d.dtype == np.int32 and back_i.dtype == np.int64
    np.testing.assert_array_equal(back_d, dist)
    np.testing.assert_array_equal(back_i, ids)
    order = sorted(range(500), key=lambda j: (int(dist[j]), int(ids[j])))
    np.testing.assert_array_equal(np.argsort(keys, kind="stable"), order)
