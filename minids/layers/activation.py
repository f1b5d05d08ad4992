"""Element-wise activations."""

from minids.backend import get_array_module
from minids.layers.base import Layer, swap_nc


class ReLU(Layer):
    """y = max(x, 0), any shape; the gradient at x = 0 is taken as 0.

    ``inplace=True`` (used by :class:`~minids.layers.Sequential` where no one
    else holds the array) overwrites ``x`` in forward and ``dy`` in backward
    instead of allocating new arrays, and keeps the mask in a reused block;
    the results are the same.
    """

    def forward(self, x, train=True, inplace=False):
        xp = get_array_module(x)
        y = xp.maximum(x, 0, out=x if inplace else None)
        if inplace and x.ndim == 4 and swap_nc(x).flags.c_contiguous:
            mask = swap_nc(self.scratch("mask", swap_nc(x).shape, xp.bool_, xp))
            self._positive = xp.greater(y, 0, out=mask)
        else:
            self._positive = y > 0
        return y

    def backward(self, dy, inplace=False):
        xp = get_array_module(dy)
        dx = xp.multiply(dy, self._positive, out=dy if inplace else None)
        self._positive = None
        return dx
