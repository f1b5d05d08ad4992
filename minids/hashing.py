"""splitmix64, the integer hash behind minids' deterministic permutations and dropout masks.

Written with plain uint64 array arithmetic (which wraps around), so NumPy and
CuPy give the same bits on any machine.
"""

import numpy as np


def splitmix64(x):
    """splitmix64 of uint64 array ``x`` (NumPy or CuPy): the generator's output for state ``x``."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hashed_uniform(key, shape, xp, dtype):
    """Uniform [0, 1) samples: element ``i`` is ``splitmix64(key + i)`` scaled.

    Args:
        key: a Python int in [0, 2**64), the draw's key.
        shape: output shape; elements are numbered in C order.
        xp: numpy or cupy; dtype: float32 (24 random bits) or float64 (53).
    Returns:
        an array of ``shape`` and ``dtype`` on the device of ``xp``, the same
        bits on NumPy and CuPy.
    """
    count = int(np.prod(shape))
    z = splitmix64(xp.arange(count, dtype=xp.uint64) + xp.uint64(key))
    bits = 53 if np.dtype(dtype) == np.float64 else 24
    values = (z >> np.uint64(64 - bits)).astype(dtype) * np.dtype(dtype).type(2.0 ** -bits)
    return values.reshape(shape)
