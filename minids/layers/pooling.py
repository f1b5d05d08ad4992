"""Spatial pooling: max, average (both with optional ceil mode) and global average.

Ceil mode follows Caffe/Torch7/PyTorch: the output is
``ceil((H - k) / stride) + 1`` long, minus one if the last window would start
past the input. Windows that run past the edge see only the elements inside:
max ignores the outside, average divides by the number of elements inside.
"""

import math

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import Layer, check_rank, swap_nc
from minids.layers.cases import Case, distinct, normal


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

    flops_kind = "pool"

    def output_shape(self, shape):
        c, h, w = shape
        try:
            return (c, *(pool_output_size(n, self.k, self.stride, self.ceil_mode) for n in (h, w)))
        except ValueError as err:
            raise ValueError(f"too small: {err}") from None

    def flops(self, shape):
        """One operation per window element read: k · k · C · H_out · W_out."""
        c, h_out, w_out = self.output_shape(shape)
        return self.k * self.k * c * h_out * w_out

    def _geometry(self, x):
        """Return (h_out, w_out) for input x (N, C, H, W)."""
        check_rank(self, x)
        h, w = x.shape[2:]
        return (pool_output_size(h, self.k, self.stride, self.ceil_mode),
                pool_output_size(w, self.k, self.stride, self.ceil_mode))

    def _windows(self, h, w, h_out, w_out):
        """Yield (tap index, output slices, input slices) for every kernel tap.

        Tap (i, j) of output (r, c) reads input (i + s·r, j + s·c); the output
        slices cover the windows whose tap lies inside the input (a ceil-mode
        edge window runs past it), the input slices the pixels they read.
        """
        s = self.stride
        for i in range(self.k):
            rows = min(h_out, (h - i + s - 1) // s)
            for j in range(self.k):
                cols = min(w_out, (w - j + s - 1) // s)
                yield (i * self.k + j, (slice(0, rows), slice(0, cols)),
                       (slice(i, i + s * (rows - 1) + 1, s), slice(j, j + s * (cols - 1) + 1, s)))

    def _spread(self, x_shape, out_hw, dy, term):
        """The input gradient, an (N, C, H, W) view: for every tap, ``term(index,
        channels, rows, cols)`` — the gradient that tap ``index`` sends from the
        output positions ``rows, cols`` of the channel slice — added at the
        input pixels the tap reads."""
        xp = get_array_module(dy)
        n, c, h, w = x_shape
        dx = xp.zeros((c, n, h, w), dtype=dy.dtype)
        windows = list(self._windows(h, w, *out_hw))

        def add(lo, hi):
            for index, (rows, cols), (in_rows, in_cols) in windows:
                dx[lo:hi, :, in_rows, in_cols] += term(index, slice(lo, hi), rows, cols)

        threads.for_blocks(xp, c, dx.size, add)
        return swap_nc(dx)


class MaxPool2d(_Pool2d):
    """Max over k×k windows. Ties send the gradient to one element: the first
    in row-major order within the window."""

    @classmethod
    def gradcheck_cases(cls):
        return [Case("maxpool3/2 ceil", lambda rng: MaxPool2d(3, 2, ceil_mode=True), distinct(2, 3, 8, 8)),
                Case("maxpool3/2 ceil odd", lambda rng: MaxPool2d(3, 2, ceil_mode=True), distinct(2, 2, 7, 9)),
                Case("maxpool2/2", lambda rng: MaxPool2d(2, 2), distinct(2, 3, 6, 6))]

    def forward(self, x, train=True):
        xp = get_array_module(x)
        h_out, w_out = self._geometry(x)
        xc = swap_nc(x)
        c, n, h, w = xc.shape
        y = xp.empty((c, n, h_out, w_out), dtype=x.dtype)
        argmax = xp.zeros((c, n, h_out, w_out), dtype=xp.uint8)
        windows = list(self._windows(h, w, h_out, w_out))

        def pool(lo, hi):
            for index, (rows, cols), (in_rows, in_cols) in windows:
                window = xc[lo:hi, :, in_rows, in_cols]
                if index == 0:  # tap (0, 0) lies inside every window
                    y[lo:hi] = window
                    continue
                best, arg = y[lo:hi, :, rows, cols], argmax[lo:hi, :, rows, cols]
                # taps come in increasing index order, so the last strict improvement
                # is the largest index that improved: a max, no masked assignment
                xp.maximum(arg, (window > best).astype(xp.uint8) * xp.uint8(index), out=arg)
                xp.maximum(best, window, out=best)

        threads.for_blocks(xp, c, x.size, pool)
        self._cache = (x.shape, argmax)
        return swap_nc(y)

    def backward(self, dy):
        x_shape, argmax = self._cache
        self._cache = None
        dyc = swap_nc(dy)
        return self._spread(x_shape, argmax.shape[2:], dy, lambda index, ch, rows, cols: (
            dyc[ch, :, rows, cols] * (argmax[ch, :, rows, cols] == index)))


class AvgPool2d(_Pool2d):
    """Mean over k×k windows; an edge window in ceil mode averages only the
    elements inside the input."""

    @classmethod
    def gradcheck_cases(cls):
        return [Case("avgpool3/2 ceil", lambda rng: AvgPool2d(3, 2, ceil_mode=True), normal(2, 3, 8, 8)),
                Case("avgpool3/2 ceil odd", lambda rng: AvgPool2d(3, 2, ceil_mode=True), normal(2, 2, 7, 9))]

    def _counts(self, xp, size, out, dtype):
        """Number of input elements inside each window along one axis, (out,)."""
        starts = xp.arange(out) * self.stride
        return (xp.minimum(starts + self.k, size) - starts).astype(dtype)

    def forward(self, x, train=True):
        xp = get_array_module(x)
        h_out, w_out = self._geometry(x)
        xc = swap_nc(x)
        c, n, h, w = xc.shape
        y = xp.empty((c, n, h_out, w_out), dtype=x.dtype)
        counts = (self._counts(xp, h, h_out, x.dtype)[:, None]
                  * self._counts(xp, w, w_out, x.dtype)[None, :])
        windows = list(self._windows(h, w, h_out, w_out))

        def pool(lo, hi):
            for index, (rows, cols), (in_rows, in_cols) in windows:
                if index == 0:  # tap (0, 0) lies inside every window
                    y[lo:hi] = xc[lo:hi, :, in_rows, in_cols]
                else:
                    y[lo:hi, :, rows, cols] += xc[lo:hi, :, in_rows, in_cols]
            y[lo:hi] /= counts

        threads.for_blocks(xp, c, x.size, pool)
        self._cache = (x.shape, counts)
        return swap_nc(y)

    def backward(self, dy):
        x_shape, counts = self._cache
        self._cache = None
        share = swap_nc(dy) / counts
        return self._spread(x_shape, counts.shape, dy,
                            lambda index, ch, rows, cols: share[ch, :, rows, cols])


class GlobalAvgPool(Layer):
    """Mean over H and W: (N, C, H, W) → (N, C)."""

    @classmethod
    def gradcheck_cases(cls):
        return [Case("globalavgpool", lambda rng: GlobalAvgPool(), normal(3, 4, 5, 5))]

    flops_kind = "pool"

    def output_shape(self, shape):
        return shape[0], 1, 1

    def flops(self, shape):
        """C · H · W additions."""
        c, h, w = shape
        return c * h * w

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
