import math

import numpy as np
import pytest

from helpers import hand_splitmix64
from minids.dictionary import (DICTIONARIES, atoms_per_axis, dc_dct_conv_weight, dct_conv_weight,
                               get_dictionary, mixed_dct_conv_weight, odct1d, odct2d)
from minids.errors import MinidsError


def hand_atom_1d(n, m, j):
    """Atom j of the n-sample, m-atom overcomplete DCT, written out with math.cos."""
    if j == 0:
        return [1 / math.sqrt(n)] * n
    v = [math.cos(math.pi * j * t / m) for t in range(n)]
    mean = sum(v) / n
    v = [x - mean for x in v]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


@pytest.mark.parametrize("n,m", [(5, 24), (3, 192), (5, 136), (5, 3), (2, 1)])
def test_1d_unit_norm_and_constant_atom(n, m):
    a = odct1d(n, m)
    assert a.shape == (n, m) and a.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(a[:, 0], 1 / math.sqrt(n), rtol=1e-15)
    np.testing.assert_allclose(a[:, 1:].sum(axis=0), 0.0, atol=1e-14)  # zero mean


@pytest.mark.parametrize("j", [0, 1, 7, 23])
def test_1d_atoms_match_hand_cosine(j):
    np.testing.assert_allclose(odct1d(5, 24)[:, j], hand_atom_1d(5, 24, j), rtol=0, atol=1e-15)


def test_2d_atoms_are_row_major_outer_products():
    k, m = 5, 24
    d = odct2d(k, m)
    assert d.shape == (m * m, k, k)
    np.testing.assert_allclose(np.linalg.norm(d.reshape(m * m, -1), axis=1), 1.0, rtol=1e-14)
    for i_v, i_h in [(0, 0), (0, 5), (3, 0), (11, 17), (23, 23)]:
        expected = [[hand_atom_1d(k, m, i_v)[tv] * hand_atom_1d(k, m, i_h)[th]
                     for th in range(k)] for tv in range(k)]
        np.testing.assert_allclose(d[i_v * m + i_h], expected, rtol=0, atol=1e-15)
    # Atom (0, 5) varies only horizontally: every row is the same.
    assert np.allclose(d[5], d[5][0:1, :])


def test_first_layer_is_the_24x24_grid():
    assert atoms_per_axis(192, 3) == 24
    w = dct_conv_weight(192, 3, 5)
    assert w.shape == (192, 3, 5, 5) and w.dtype == np.float32
    grid = odct2d(5, 24)
    for o, i in [(0, 0), (0, 2), (1, 0), (77, 1), (191, 2)]:
        np.testing.assert_array_equal(w[o, i], grid[o * 3 + i].astype(np.float32))
    # The whole grid is used, each atom once.
    np.testing.assert_array_equal(w.reshape(576, 5, 5), grid.astype(np.float32))


def test_other_layers_take_a_prefix_of_the_grid():
    assert atoms_per_axis(192, 96) == 136  # ceil(sqrt(18432)) = ceil(135.76)
    assert atoms_per_axis(192, 192) == 192
    w = dct_conv_weight(192, 96, 5, dtype=np.float64)
    grid = odct2d(5, 136)
    np.testing.assert_array_equal(w.reshape(-1, 5, 5), grid[:192 * 96])
    np.testing.assert_array_equal(w[100, 50], grid[100 * 96 + 50])


def test_small_layer_is_undercomplete_but_defined():
    w = dct_conv_weight(1, 1, 5, dtype=np.float64)  # m = 1 < k: the constant atom only
    np.testing.assert_allclose(w, np.full((1, 1, 5, 5), 0.2), rtol=1e-15)
    w = dct_conv_weight(2, 3, 3, dtype=np.float64)  # m = 3: first 6 of the 3x3 grid
    np.testing.assert_array_equal(w.reshape(6, 3, 3), odct2d(3, 3)[:6])


def test_deterministic_and_dtypes():
    a, b = dct_conv_weight(16, 8, 3), dct_conv_weight(16, 8, 3)
    assert a is not b
    np.testing.assert_array_equal(a, b)
    w64 = dct_conv_weight(16, 8, 3, dtype=np.float64)
    assert w64.dtype == np.float64
    np.testing.assert_array_equal(w64.astype(np.float32), a)
    assert odct1d(5, 7, dtype=np.float32).dtype == np.float32
    with pytest.raises(MinidsError, match="float32 or float64"):
        dct_conv_weight(4, 4, 3, dtype=np.int32)


def test_cache_cannot_be_corrupted():
    for build in (lambda: dct_conv_weight(4, 3, 5, dtype=np.float64),
                  lambda: odct2d(5, 4), lambda: odct1d(5, 4)):
        first = build()
        expected = first.copy()
        assert first.flags.writeable
        first[...] = 123.0
        np.testing.assert_array_equal(build(), expected)


@pytest.mark.parametrize("args", [(0, 3, 5), (3, 0, 5), (3, 3, 1), (3, 3, 2.5), (-1, 3, 3)])
def test_bad_sizes_are_user_errors(args):
    with pytest.raises(MinidsError):
        dct_conv_weight(*args)


def test_registry():
    assert DICTIONARIES["odct2"] is dct_conv_weight
    assert get_dictionary("odct2") is dct_conv_weight
    assert get_dictionary("odct2-mixed") is mixed_dct_conv_weight
    assert get_dictionary("odct2-dc") is dc_dct_conv_weight
    with pytest.raises(MinidsError, match="unknown dictionary 'dct9'; known: odct2, odct2-dc, odct2-mixed"):
        get_dictionary("dct9")


def test_hand_splitmix64_is_the_reference():
    assert hand_splitmix64(0) == 0xE220A8397B1DCDAF  # splitmix64 seeded with 0: first output


@pytest.mark.parametrize("c_out,c_in,k", [(6, 4, 3), (12, 3, 5), (5, 7, 2)])
def test_mixed_deals_odct2_atoms_in_hash_order(c_out, c_in, k):
    mixed = mixed_dct_conv_weight(c_out, c_in, k, np.float64)
    plain = dct_conv_weight(c_out, c_in, k, np.float64).reshape(c_out * c_in, k, k)
    count = c_out * c_in
    order = sorted(range(count), key=hand_splitmix64)
    assert mixed.shape == (c_out, c_in, k, k)
    for o in range(c_out):
        for i in range(c_in):
            np.testing.assert_array_equal(mixed[o, i], plain[order[o * c_in + i]])
    assert sorted(order) == list(range(count))  # the same atoms, each once
    np.testing.assert_array_equal(mixed_dct_conv_weight(c_out, c_in, k, np.float32),
                                  mixed.astype(np.float32))


def rank(weight):
    s = np.linalg.svd(weight.reshape(weight.shape[0], -1), compute_uv=False)
    return int((s > 1e-8 * s[0]).sum())


def test_row_major_odct2_makes_nin_conv3_rank_3_and_mixed_fixes_it():
    # conv3 of NiN, 192 -> 192 at 3x3: m = 192, so weight[o, i] = outer(a[:, o], a[:, i]) and
    # every output is a vertical filtering of one map; 3-sample atoms span 3 dimensions.
    assert rank(dct_conv_weight(192, 192, 3, np.float64)) == 3
    assert rank(mixed_dct_conv_weight(192, 192, 3, np.float64)) == 192
    # conv2, 96 -> 192 at 5x5: rank 114 of 192 in odct2's order, full when mixed
    assert rank(dct_conv_weight(192, 96, 5, np.float64)) == 114
    assert rank(mixed_dct_conv_weight(192, 96, 5, np.float64)) == 192


def hand_cosine_1d(n, m, j):
    """Cosine j of n samples and m atoms, unit norm, its mean kept (odct2-dc's 1-D atom)."""
    v = [math.cos(math.pi * j * t / m) for t in range(n)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


@pytest.mark.parametrize("c_out,c_in,k", [(6, 4, 3), (12, 3, 5), (5, 7, 2)])
def test_dc_deals_signed_mean_keeping_cosines_in_hash_order(c_out, c_in, k):
    weight = dc_dct_conv_weight(c_out, c_in, k, np.float64)
    count, m = c_out * c_in, math.ceil(math.sqrt(c_out * c_in))
    order = sorted(range(count), key=hand_splitmix64)
    assert weight.shape == (c_out, c_in, k, k)
    for o in range(c_out):
        for i in range(c_in):
            pair = o * c_in + i
            vertical, horizontal = divmod(order[pair], m)  # row-major atom number
            sign = -1.0 if hand_splitmix64(pair + 2 ** 40) & 1 else 1.0
            expected = sign * np.outer(hand_cosine_1d(k, m, vertical), hand_cosine_1d(k, m, horizontal))
            np.testing.assert_allclose(weight[o, i], expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dc_dct_conv_weight(c_out, c_in, k, np.float32),
                                  weight.astype(np.float32))


def test_dc_has_full_rank_and_passes_smooth_inputs_that_odct2_blocks():
    assert rank(dc_dct_conv_weight(192, 192, 3, np.float64)) == 192
    assert rank(dc_dct_conv_weight(192, 96, 5, np.float64)) == 192
    # A constant input map (the smooth part of a pooled ReLU output): every odct2 kernel but
    # the constant atom sums to zero, so only one of conv3's 192*192 pairs responds to it.
    sums_odct2 = dct_conv_weight(192, 192, 3, np.float64).sum(axis=(2, 3))
    assert np.count_nonzero(np.abs(sums_odct2) > 1e-9) == 1
    sums_dc = dc_dct_conv_weight(192, 192, 3, np.float64).sum(axis=(2, 3))
    assert np.mean(np.abs(sums_dc) > 0.1) > 0.5
    # the signs keep the positive means from adding up: the responses of the 192 outputs to a
    # constant all-ones input are centred (mean of the row sums small against their spread)
    responses = sums_dc.sum(axis=1)
    assert abs(responses.mean()) < 0.5 * responses.std()


def hand_odct3_weight(c_out, c_in, k):
    """odct3 written out from its formula: per-axis atom counts, the Kronecker
    product as nested loops over (channel, row, column), the first c_out columns."""
    if c_in == 1:
        m = math.ceil(math.sqrt(c_out))
        counts = (1, m, m)
    else:
        volume = c_in * k * k
        counts = tuple(math.ceil((c_out * math.sqrt(d ** 3 / volume)) ** (1 / 3)) for d in (c_in, k, k))
    n_c, n_v, n_h = counts
    weight = np.zeros((c_out, c_in, k, k))
    for o in range(c_out):
        i_c, rest = divmod(o, n_v * n_h)  # column (i_c, i_v, i_h), i_c slowest
        i_v, i_h = divmod(rest, n_h)
        channel = [1.0] if c_in == 1 else hand_atom_1d(c_in, n_c, i_c)
        vertical, horizontal = hand_atom_1d(k, n_v, i_v), hand_atom_1d(k, n_h, i_h)
        for c in range(c_in):
            for y in range(k):
                for x in range(k):
                    weight[o, c, y, x] = channel[c] * vertical[y] * horizontal[x]
    return counts, weight


@pytest.mark.parametrize("c_out,c_in,k,counts,rank", [
    (192, 3, 5, (5, 7, 7), 75), (192, 96, 5, (16, 4, 4), 192), (192, 192, 3, (24, 3, 3), 192),
    (192, 1, 5, (1, 14, 14), 25)])
def test_odct3_matches_the_formula_written_out(c_out, c_in, k, counts, rank):
    from minids.dictionary import odct3_atoms_per_axis, odct3_conv_weight
    hand_counts, hand = hand_odct3_weight(c_out, c_in, k)
    assert hand_counts == counts  # (5,7,7), (16,4,4), (24,3,3) and the 2-D rule's 14x14
    assert odct3_atoms_per_axis(c_out, c_in, k) == counts
    weight = odct3_conv_weight(c_out, c_in, k, np.float64)
    assert weight.shape == (c_out, c_in, k, k) and weight.dtype == np.float64
    np.testing.assert_allclose(weight, hand, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(weight.reshape(c_out, -1), axis=1), 1.0, rtol=1e-14)
    assert np.linalg.matrix_rank(weight.reshape(c_out, -1)) == rank
    np.testing.assert_array_equal(odct3_conv_weight(c_out, c_in, k), weight.astype(np.float32))


def test_odct3_is_the_default_and_odct2_family_stays():
    from minids.dictionary import DEFAULT_DICTIONARY
    assert DEFAULT_DICTIONARY == "odct3"
    assert {"odct3", "odct2", "odct2-mixed", "odct2-dc"} <= set(DICTIONARIES)


def test_he_gain_for_zero_mean_and_rectified_inputs():
    from minids.dictionary import he_gain
    # zero-mean input: every output kernel gets He's squared norm 2
    for name, c_in in (("odct3", 96), ("odct3", 1), ("odct2", 96), ("odct2-dc", 3)):
        atoms = get_dictionary(name)(192, c_in, 5, np.float64)
        weight = atoms * he_gain(name, atoms, rectified_input=False)
        np.testing.assert_allclose((weight ** 2).reshape(192, -1).sum(axis=1), 2.0, rtol=1e-12)
    # rectified input: only odct3's all-constant atom 0 has a non-zero sum, sqrt(c_in k k);
    # the average second moment ((1 - 1/pi) g^2 + g^2 S / (pi c_out)) must be 2
    atoms = get_dictionary("odct3")(192, 96, 5, np.float64)
    assert math.isclose(atoms[0].sum(), math.sqrt(96 * 25), rel_tol=1e-12)
    np.testing.assert_allclose(atoms[1:].reshape(191, -1).sum(axis=1), 0.0, atol=1e-12)
    gain = he_gain("odct3", atoms, rectified_input=True)
    assert math.isclose(gain ** 2 * ((1 - 1 / math.pi) + 96 * 25 / (math.pi * 192)), 2.0, rel_tol=1e-12)
    odct2 = get_dictionary("odct2")(192, 96, 5, np.float64)
    assert he_gain("odct2", odct2, rectified_input=True) == np.sqrt(2.0 / 96)  # unchanged rule
