"""Element-wise activations."""

from minids.backend import get_array_module
from minids.layers.base import Layer


class ReLU(Layer):
    """y = max(x, 0), any shape; the gradient at x = 0 is taken as 0.

    ``inplace=True`` (used by :class:`~minids.layers.Sequential` where no one
    else holds the array) overwrites ``x`` in forward and ``dy`` in backward
    instead of allocating new arrays; the results are the same.
    """

    def forward(self, x, train=True, inplace=False):
        xp = get_array_module(x)
        y = xp.maximum(x, 0, out=x if inplace else None)
        self._positive = y > 0
        return y

    def backward(self, dy, inplace=False):
        xp = get_array_module(dy)
        dx = xp.multiply(dy, self._positive, out=dy if inplace else None)
        self._positive = None
        return dx
