"""Inverted dropout."""

import numpy as np

from minids.backend import get_array_module, random_uniform
from minids.hashing import hashed_uniform
from minids.layers.base import Layer, swap_nc
from minids.layers.cases import Case, normal

#: how masks are drawn: "splitmix64" (a 64-bit key from the run's generator per
#: draw, the values hashed from it on the device: the same masks on NumPy and on
#: any GPU); "legacy" (files written before it: the generator's own values on
#: the host, CuPy's generator on a GPU)
MASK_STREAMS = ("splitmix64", "legacy")


class Dropout(Layer):
    """Zero each element with probability ``p`` in training and scale the rest
    by 1/(1-p); the identity at evaluation.

    The mask comes from ``rng``, a ``numpy.random.Generator`` that the run
    owns and seeds; its state is saved with a checkpoint, so a resumed run
    draws the same masks. With the ``splitmix64`` stream (the default) each
    draw takes one 64-bit key from ``rng`` and element ``i`` of the mask is
    ``splitmix64(key + i)`` (:func:`minids.hashing.hashed_uniform`),
    computed on the input's device: NumPy and CuPy draw the same masks bit
    for bit, on any GPU.
    """

    @classmethod
    def gradcheck_cases(cls):
        return [Case("dropout", lambda rng: Dropout(0.5, rng), normal(2, 3, 4, 4))]

    def __init__(self, p=0.5, rng=None, stream="splitmix64"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        if stream not in MASK_STREAMS:
            raise ValueError(f"unknown dropout mask stream {stream!r}; known: {', '.join(MASK_STREAMS)}")
        self.p, self.stream = p, stream
        self.rng = np.random.default_rng() if rng is None else rng

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def _uniform(self, shape, xp, dtype):
        if self.stream == "legacy":
            return random_uniform(self.rng, shape, xp, dtype)
        key = int(self.rng.integers(0, 2**64, dtype=np.uint64))
        return hashed_uniform(key, shape, xp, np.float64 if dtype == np.float64 else np.float32)

    def forward(self, x, train=True):
        if not train or self.p == 0.0:
            self.keep((None,) if train else None)  # backward: the identity
            return x
        xp = get_array_module(x)
        kept = self._uniform(swap_nc(x).shape, xp, x.dtype) >= self.p
        mask = swap_nc(kept * x.dtype.type(1.0 / (1.0 - self.p)))
        self.keep((mask,))
        return x * mask

    def backward(self, dy):
        (mask,) = self.take()
        return dy if mask is None else dy * mask
