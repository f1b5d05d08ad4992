"""Fixed DCT dictionaries for the double-sparsity convolutions.

The overcomplete 1-D DCT follows the K-SVD literature (Rubinstein's
``odctdict``): with ``n`` samples and ``m`` atoms, atom 0 is constant and atom
``j > 0`` is ``cos(pi * j * t / m)`` for ``t = 0 .. n-1`` minus its mean; every
atom is scaled to unit L2 norm. The 2-D dictionary is the Kronecker product of
two 1-D ones, so every 2-D atom is a separable ``k x k`` kernel; the 3-D
``odct3`` (the default) is the Kronecker product of a channel DCT and the 2-D
one, so every output's atom is separable over (channel, row, column).

All arrays returned here are NumPy arrays (the dictionary is built once on the
host); a layer moves its weight to the GPU itself. Nothing is random: there is
no seed, and the same arguments always give the same bits.
"""

import functools
import math

import numpy as np

from minids.errors import MinidsError
from minids.hashing import splitmix64

_DTYPES = (np.float32, np.float64)


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise MinidsError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.type not in _DTYPES:
        raise MinidsError(f"dictionary dtype must be float32 or float64, got {dtype}")
    return dtype


@functools.lru_cache(maxsize=None)
def _odct1d64(n, m, remove_mean=True):
    """Read-only float64 (n, m) overcomplete 1-D DCT; columns are atoms.

    ``remove_mean=False`` keeps every cosine's mean (its DC component).
    """
    t = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(m, dtype=np.float64)[None, :]
    if remove_mean:
        # cos(x) - 1 = -2 sin^2(x/2): the same atom after removing the mean, but
        # without the cancellation that cos(x) ~ 1 causes for low frequencies.
        atoms = -2.0 * np.sin(np.pi * j * t / (2 * m)) ** 2
        atoms -= atoms.mean(axis=0, keepdims=True)
        atoms[:, 0] = 1.0
    else:
        atoms = np.cos(np.pi * j * t / m)
    atoms /= np.linalg.norm(atoms, axis=0, keepdims=True)
    atoms.setflags(write=False)
    return atoms


def odct1d(n, m, dtype=np.float64):
    """Overcomplete 1-D DCT dictionary.

    Args:
        n: samples per atom (the kernel size), ``n >= 2``.
        m: number of atoms, ``m >= 1``. ``m >= n`` gives an overcomplete
            dictionary; ``m < n`` is allowed and gives the first ``m``
            atoms of the same family (an undercomplete set).
        dtype: float32 or float64.

    Returns:
        A new (n, m) array of ``dtype``; column ``j`` is atom ``j`` with unit
        L2 norm. Column 0 is the constant ``1/sqrt(n)``.
    """
    # n = 1 would make every atom j > 0 identically zero after removing its mean.
    n = _check_positive_int("n (samples per atom)", n, minimum=2)
    m = _check_positive_int("m (number of atoms)", m)
    return _odct1d64(n, m).astype(_check_dtype(dtype))


@functools.lru_cache(maxsize=None)
def _odct2d64(k, m, remove_mean=True):
    """Read-only float64 (m*m, k, k) separable 2-D DCT atoms, row-major."""
    a = _odct1d64(k, m, remove_mean)
    # atoms[i_v, i_h, t_v, t_h] = a[t_v, i_v] * a[t_h, i_h]
    atoms = np.einsum("vi,hj->ijvh", a, a).reshape(m * m, k, k)
    atoms.setflags(write=False)
    return atoms


def odct2d(k, m, dtype=np.float64):
    """Overcomplete 2-D DCT dictionary: Kronecker product of two 1-D ones.

    Args:
        k: atom side in pixels, ``k >= 2``.
        m: atoms per axis, ``m >= 1``.
        dtype: float32 or float64.

    Returns:
        A new (m*m, k, k) array of ``dtype``. Atom ``i_v * m + i_h`` is
        ``outer(a[:, i_v], a[:, i_h])`` with ``a = odct1d(k, m)``: row-major,
        vertical frequency major. Every atom has unit Frobenius norm.
    """
    k = _check_positive_int("k (kernel size)", k, minimum=2)
    m = _check_positive_int("m (atoms per axis)", m)
    return _odct2d64(k, m).astype(_check_dtype(dtype))


def atoms_per_axis(c_out, c_in):
    """Atoms per axis for a fixed conv: ``m = ceil(sqrt(c_out * c_in))`` (exact integers)."""
    count = c_out * c_in
    m = math.isqrt(count)
    return m if m * m == count else m + 1


def _check_conv_shape(c_out, c_in, k):
    """(c_out, c_in, k) of a fixed conv as ints, or a MinidsError."""
    return (_check_positive_int("c_out", c_out), _check_positive_int("c_in", c_in),
            _check_positive_int("k (kernel size)", k, minimum=2))


def _pair_atoms(c_out, c_in, k, remove_mean):
    """Read-only float64 (c_out*c_in, k, k): the first c_out*c_in row-major 2-D atoms
    of ``m = atoms_per_axis(c_out, c_in)`` per axis, one per (output, input) pair."""
    return _odct2d64(k, atoms_per_axis(c_out, c_in), remove_mean)[: c_out * c_in]


def dct_conv_weight(c_out, c_in, k, dtype=np.float32):
    """Fixed OIHW weight of a DCT convolution (the ``odct2`` dictionary).

    Each (output, input) pair gets its own atom: with
    ``m = atoms_per_axis(c_out, c_in)`` the first ``c_out * c_in`` of the
    ``m * m`` row-major 2-D atoms of ``odct2d(k, m)`` are reshaped to
    (c_out, c_in, k, k), so ``weight[o, i]`` is 2-D atom ``o * c_in + i``.
    For 3 -> 192 at 5x5 that is the full 24 x 24 grid.

    When ``c_out * c_in < k * k`` (a very small layer) ``m < k`` and the set
    is undercomplete; the same rule still applies.

    Args:
        c_out, c_in: output and input channels (>= 1).
        k: kernel side in pixels (>= 2).
        dtype: float32 (default) or float64.

    Returns:
        A new (c_out, c_in, k, k) NumPy array of ``dtype``; every kernel has
        unit Frobenius norm. Callers may modify it: the cache is not shared.
    """
    c_out, c_in, k = _check_conv_shape(c_out, c_in, k)
    atoms = _pair_atoms(c_out, c_in, k, remove_mean=True)
    return atoms.reshape(c_out, c_in, k, k).astype(_check_dtype(dtype))


def _hash_order(count):
    """The numbers 0 .. count-1 sorted by their splitmix64 hash (a fixed permutation)."""
    return np.argsort(splitmix64(np.arange(count, dtype=np.uint64)), kind="stable")


def mixed_dct_conv_weight(c_out, c_in, k, dtype=np.float32):
    """Fixed OIHW weight of the ``odct2-mixed`` dictionary: odct2's atoms, dealt in a scrambled order.

    The same ``c_out * c_in`` atoms as :func:`dct_conv_weight`, but pair
    ``(o, i)`` gets atom ``order[o * c_in + i]``, where ``order`` sorts the
    atom numbers ``0 .. c_out*c_in - 1`` by their splitmix64 hash (a fixed,
    documented integer function: no random generator, the same bits on every
    machine). In odct2's row-major order the vertical frequency of an atom
    changes only with the output channel when ``c_in`` is ``m``: the 192 → 192
    3×3 convolution of NiN then has rank 3 (every output is a vertical
    filtering of one feature map); scrambled, every fixed convolution of
    NiN has full rank. See docs/method.md.

    Returns:
        A new (c_out, c_in, k, k) NumPy array of ``dtype``; unit-norm kernels.
    """
    weight = dct_conv_weight(c_out, c_in, k, np.float64)
    count = weight.shape[0] * weight.shape[1]
    atoms = weight.reshape(count, k, k)[_hash_order(count)]
    return atoms.reshape(weight.shape).astype(_check_dtype(dtype))


#: offset of the hash input for odct2-dc's signs, so they do not follow the order's hashes
_SIGN_HASH_OFFSET = np.uint64(1 << 40)


def dc_dct_conv_weight(c_out, c_in, k, dtype=np.float32):
    """Fixed OIHW weight of the ``odct2-dc`` dictionary: overcomplete DCT atoms that keep their mean.

    The 1-D atoms are ``cos(pi * j * t / m)`` scaled to unit norm, *without*
    removing their mean (odct2 removes it from every atom but the constant),
    and the 2-D atoms are their Kronecker products, taken as in odct2 (the
    first ``c_out * c_in`` of the ``m * m`` row-major atoms). They are dealt
    in odct2-mixed's scrambled order, and atom ``p`` (pair ``o * c_in + i``)
    is negated when bit 0 of ``splitmix64(p + 2**40)`` is set.

    Why: after a ReLU and a pooling, the inputs of conv2 and conv3 are
    positive and smooth. Zero-mean atoms filter their smooth part out, so
    with odct2-mixed conv2/conv3 pass mostly the white noise of the dropout
    before them; DS-NiN then learns from that noise and predicts badly at
    test time, with dropout off (odct2 itself is held back by its rank
    first). Atoms that keep their mean pass the smooth signal; the random
    signs keep the positive means from adding up over the input channels
    (outputs keep He's scale). See docs/method.md.

    Returns:
        A new (c_out, c_in, k, k) NumPy array of ``dtype``; unit-norm kernels.
    """
    c_out, c_in, k = _check_conv_shape(c_out, c_in, k)
    count = c_out * c_in
    atoms = _pair_atoms(c_out, c_in, k, remove_mean=False)[_hash_order(count)]
    flip = splitmix64(np.arange(count, dtype=np.uint64) + _SIGN_HASH_OFFSET) & np.uint64(1)
    atoms = atoms * np.where(flip == 1, -1.0, 1.0)[:, None, None]
    return atoms.reshape(c_out, c_in, k, k).astype(_check_dtype(dtype))


def odct3_atoms_per_axis(c_out, c_in, k):
    """Atoms per axis (n_c, n_v, n_h) of the ``odct3`` dictionary of a fixed conv.

    For ``c_in > 1``, with ``S = c_in * k * k``, axis ``d`` (``c_in``, ``k``,
    ``k``) gets ``ceil((c_out * sqrt(d**3 / S)) ** (1/3))`` atoms, computed in
    float64; their product is at least ``c_out``. For ``c_in == 1`` the channel
    axis has one atom (the constant) and each spatial axis ``ceil(sqrt(c_out))``.
    """
    c_out, c_in, k = _check_conv_shape(c_out, c_in, k)
    if c_in == 1:
        m = math.isqrt(c_out)
        m = m if m * m == c_out else m + 1
        return 1, m, m
    volume = float(c_in * k * k)
    return tuple(int(math.ceil((c_out * math.sqrt(d ** 3 / volume)) ** (1.0 / 3.0)))
                 for d in (c_in, k, k))


def odct3_frequencies(c_out, c_in, k):
    """(c_out, 3) int array: the (channel, vertical, horizontal) frequency of each output atom.

    Row ``o`` is ``(i_c, i_v, i_h)``, the column index of atom ``o`` in the
    Kronecker product, ``i_c`` slowest: ``o = (i_c * n_v + i_v) * n_h + i_h``.
    """
    _, n_v, n_h = odct3_atoms_per_axis(c_out, c_in, k)
    o = np.arange(c_out)
    return np.stack([o // (n_v * n_h), (o // n_h) % n_v, o % n_h], axis=1)


def odct3_factors(c_out, c_in, k):
    """The 1-D DCTs whose Kronecker product is ``odct3``: float64 arrays
    ``(a_c, a_v, a_h)`` of shapes (c_in, n_c), (k, n_v), (k, n_h), columns are
    atoms. For ``c_in == 1``, ``a_c`` is the (1, 1) array [[1.0]]."""
    n_c, n_v, n_h = odct3_atoms_per_axis(c_out, c_in, k)
    a_c = np.ones((1, 1)) if c_in == 1 else _odct1d64(c_in, n_c)
    return a_c, _odct1d64(k, n_v), _odct1d64(k, n_h)


def odct3_conv_weight(c_out, c_in, k, dtype=np.float32):
    """Fixed OIHW weight of the ``odct3`` dictionary: one 3-D overcomplete DCT atom per output.

    The dictionary is ``kron(a_c, kron(a_v, a_h))`` of the 1-D overcomplete
    DCTs of :func:`odct3_factors`, an (c_in*k*k, n_c*n_v*n_h) matrix whose
    rows are (channel, row, column) and whose columns are (i_c, i_v, i_h),
    ``i_c`` slowest; output channel ``o`` is its column ``o`` reshaped to
    (c_in, k, k). For ``c_in == 1`` this is the 2-D ``kron(a_v, a_h)``.
    Built in float64, then cast. See docs/method.md.

    Returns:
        A new (c_out, c_in, k, k) NumPy array of ``dtype``; every output's
        kernel has unit norm over its whole (c_in, k, k) volume.
    """
    c_out, c_in, k = _check_conv_shape(c_out, c_in, k)
    a_c, a_v, a_h = odct3_factors(c_out, c_in, k)
    i_c, i_v, i_h = odct3_frequencies(c_out, c_in, k).T
    # weight[o, c, y, x] = a_c[c, i_c(o)] * a_v[y, i_v(o)] * a_h[x, i_h(o)]
    weight = np.einsum("co,yo,xo->ocyx", a_c[:, i_c], a_v[:, i_v], a_h[:, i_h])
    return weight.astype(_check_dtype(dtype))


DICTIONARIES = {"odct3": odct3_conv_weight, "odct2": dct_conv_weight,
                "odct2-mixed": mixed_dct_conv_weight, "odct2-dc": dc_dct_conv_weight}
#: the paper author's 3-D dictionary; the odct2 family gives each (output, input) pair its own
#: 2-D atom (docs/method.md)
DEFAULT_DICTIONARY = "odct3"
#: dictionaries whose atoms span all input channels (one unit-norm atom per output)
VOLUME_DICTIONARIES = ("odct3",)


def he_gain(dictionary, weight, rectified_input):
    """Factor that scales a dictionary's unit-norm atoms to keep He's second moment.

    Args:
        dictionary: the dictionary's name.
        weight: its (c_out, c_in, k, k) unscaled atoms.
        rectified_input: True when the layer's input comes out of a ReLU
            (every fixed layer of DS-NiN but the first).

    He's rule gives every output a second moment of twice the input's, which
    the ReLU after it halves. An odct2-family kernel holds ``c_in`` unit-norm
    atoms: gain sqrt(2 / c_in), as for zero-mean inputs. An ``odct3`` kernel
    is one unit-norm atom a: for a zero-mean input the gain is sqrt(2); for a
    rectified input x = relu(z), z ~ N(0, s²), E[x]² = E[x²] / π, so
    E[(a·x)²] = E[x²] ((1 - 1/π) + (Σa)² / π), and the gain is
    sqrt(2 / ((1 - 1/π) + mean over outputs of (Σa)² / π)). See docs/models.md.
    """
    c_in = weight.shape[1]
    if dictionary not in VOLUME_DICTIONARIES:
        return np.sqrt(2.0 / c_in)
    if not rectified_input:
        return np.sqrt(2.0)
    sums = np.asarray(weight, dtype=np.float64).reshape(weight.shape[0], -1).sum(axis=1)
    return np.sqrt(2.0 / ((1.0 - 1.0 / np.pi) + np.mean(sums ** 2) / np.pi))


def get_dictionary(name):
    """Return the weight builder ``f(c_out, c_in, k, dtype)`` registered as ``name``."""
    try:
        return DICTIONARIES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(DICTIONARIES))
        raise MinidsError(f"unknown dictionary {name!r}; known: {known}") from None
