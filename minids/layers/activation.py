"""Element-wise activations."""

from minids.layers.base import Layer


class ReLU(Layer):
    """y = max(x, 0), any shape; the gradient at x = 0 is taken as 0."""

    def forward(self, x, train=True):
        y = x * (x > 0)
        self._positive = y > 0
        return y

    def backward(self, dy):
        dx = dy * self._positive
        self._positive = None
        return dx
