"""Spatial pooling: max, average (both with optional ceil mode) and global average.

Ceil mode follows Caffe/Torch7/PyTorch: the output is
``ceil((H - k) / stride) + 1`` long, minus one if the last window would start
past the input. Windows that run past the edge see only the elements inside:
max ignores the outside, average divides by the number of elements inside.
"""

import math

from minids.backend import get_array_module
from minids.layers.base import Layer, check_rank, swap_nc


def pool_output_size(size, k, stride, ceil_mode):
    """Output length of a pooling along one axis (no padding)."""
    if size < k:
        raise ValueError(f"pooling window {k} is larger than the input ({size})")
    if not ceil_mode:
        return (size - k) // stride + 1
    out = math.ceil((size - k) / stride) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return out


class _Pool2d(Layer):
    """Shared geometry of the k×k, stride-s pooling layers."""

    def __init__(self, k, stride=None, ceil_mode=False):
        super().__init__()
        self.k = k
        self.stride = k if stride is None else stride
        self.ceil_mode = ceil_mode

    def __repr__(self):
        return f"{type(self).__name__}({self.k}, stride={self.stride}, ceil_mode={self.ceil_mode})"

    def _geometry(self, x):
        """Return (h_out, w_out, padded h, padded w) for input x (N, C, H, W)."""
        check_rank(self, x)
        h, w = x.shape[2:]
        h_out = pool_output_size(h, self.k, self.stride, self.ceil_mode)
        w_out = pool_output_size(w, self.k, self.stride, self.ceil_mode)
        return h_out, w_out, (h_out - 1) * self.stride + self.k, (w_out - 1) * self.stride + self.k

    def _windows(self, h_out, w_out):
        """Yield (offset index, row slice, column slice) for every kernel tap."""
        s = self.stride
        for i in range(self.k):
            for j in range(self.k):
                yield i * self.k + j, slice(i, i + s * h_out, s), slice(j, j + s * w_out, s)


class MaxPool2d(_Pool2d):
    """Max over k×k windows. Ties send the gradient to one element: the first
    in row-major order within the window."""

    def forward(self, x, train=True):
        xp = get_array_module(x)
        h_out, w_out, hp, wp = self._geometry(x)
        c, n, h, w = swap_nc(x).shape
        padded = xp.full((c, n, max(h, hp), max(w, wp)), -xp.inf, dtype=x.dtype)
        padded[:, :, :h, :w] = swap_nc(x)
        y = xp.full((c, n, h_out, w_out), -xp.inf, dtype=x.dtype)
        argmax = xp.zeros((c, n, h_out, w_out), dtype=xp.uint8)
        for index, rows, cols in self._windows(h_out, w_out):
            window = padded[:, :, rows, cols]
            better = window > y
            y[better] = window[better]
            argmax[better] = index
        self._cache = (x.shape, padded.shape, argmax)
        return swap_nc(y)

    def backward(self, dy):
        xp = get_array_module(dy)
        x_shape, padded_shape, argmax = self._cache
        self._cache = None
        dyc = swap_nc(dy)
        dx = xp.zeros(padded_shape, dtype=dy.dtype)
        h_out, w_out = argmax.shape[2:]
        for index, rows, cols in self._windows(h_out, w_out):
            dx[:, :, rows, cols] += dyc * (argmax == index)
        return swap_nc(dx[:, :, :x_shape[2], :x_shape[3]])


class AvgPool2d(_Pool2d):
    """Mean over k×k windows; an edge window in ceil mode averages only the
    elements inside the input."""

    def _counts(self, xp, size, out, dtype):
        """Number of input elements inside each window along one axis, (out,)."""
        starts = xp.arange(out) * self.stride
        return (xp.minimum(starts + self.k, size) - starts).astype(dtype)

    def forward(self, x, train=True):
        xp = get_array_module(x)
        h_out, w_out, hp, wp = self._geometry(x)
        c, n, h, w = swap_nc(x).shape
        padded = xp.zeros((c, n, max(h, hp), max(w, wp)), dtype=x.dtype)
        padded[:, :, :h, :w] = swap_nc(x)
        y = xp.zeros((c, n, h_out, w_out), dtype=x.dtype)
        for _, rows, cols in self._windows(h_out, w_out):
            y += padded[:, :, rows, cols]
        counts = (self._counts(xp, h, h_out, x.dtype)[:, None]
                  * self._counts(xp, w, w_out, x.dtype)[None, :])
        y /= counts
        self._cache = (x.shape, padded.shape, counts)
        return swap_nc(y)

    def backward(self, dy):
        xp = get_array_module(dy)
        x_shape, padded_shape, counts = self._cache
        self._cache = None
        share = swap_nc(dy) / counts
        dx = xp.zeros(padded_shape, dtype=dy.dtype)
        h_out, w_out = counts.shape
        for _, rows, cols in self._windows(h_out, w_out):
            dx[:, :, rows, cols] += share
        return swap_nc(dx[:, :, :x_shape[2], :x_shape[3]])


class GlobalAvgPool(Layer):
    """Mean over H and W: (N, C, H, W) → (N, C)."""

    def forward(self, x, train=True):
        check_rank(self, x)
        self._shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        xp = get_array_module(dy)
        n, c, h, w = self._shape
        dx = xp.empty((c, n, h, w), dtype=dy.dtype)
        dx[...] = (dy.T / (h * w))[:, :, None, None]
        return swap_nc(dx)
