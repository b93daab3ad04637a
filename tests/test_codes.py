"""pack_codes / unpack_codes / check_codes: layout, round trips and bad input."""
import numpy as np
import pytest

import flexcmh_fast as fc
from flexcmh_fast._codes import check_codes, n_bytes_for


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
    assert packed.shape == (5, n_bytes_for(n_bits))
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
