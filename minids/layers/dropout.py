"""Inverted dropout."""

import numpy as np

from minids.backend import get_array_module, random_uniform
from minids.layers.base import Layer, swap_nc


class Dropout(Layer):
    """Zero each element with probability ``p`` in training and scale the rest
    by 1/(1-p); the identity at evaluation.

    The mask is drawn from ``rng``, a ``numpy.random.Generator`` that the run
    owns and seeds (its state is saved with a checkpoint so that a resumed run
    draws the same masks). On the GPU the mask is drawn on the device from a
    seed taken from ``rng``.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = np.random.default_rng() if rng is None else rng

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def forward(self, x, train=True):
        if not train or self.p == 0.0:
            self._mask = None
            return x
        xp = get_array_module(x)
        keep = random_uniform(self.rng, swap_nc(x).shape, xp, x.dtype) >= self.p
        self._mask = swap_nc(keep * x.dtype.type(1.0 / (1.0 - self.p)))
        return x * self._mask

    def backward(self, dy):
        mask, self._mask = self._mask, None
        return dy if mask is None else dy * mask
