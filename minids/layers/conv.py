"""Convolutions: a trainable ``Conv2d`` and the fixed-weight ``FixedConv2d``.

Both compute y = W ⋆ x + b with weights OIHW (C_out, C_in, k, k) as one GEMM
on im2col columns; a 1×1, stride-1, unpadded convolution is a plain GEMM on
the input itself. See :mod:`minids.layers.im2col` for the column layout.
"""

import numpy as np

from minids.backend import get_array_module
from minids.layers.base import Layer, as_dtype, check_rank, swap_nc
from minids.layers.im2col import col2im, im2col, output_size


class Conv2d(Layer):
    """Trainable 2-D convolution.

    Parameters: ``weight`` (c_out, c_in, k, k), He-normal initialised
    (std = sqrt(2 / (c_in·k·k))) from ``rng``; ``bias`` (c_out,), zeros.
    Input (N, c_in, H, W) → output (N, c_out, H_out, W_out).
    """

    fixed = False

    def __init__(self, c_in, c_out, k, stride=1, padding=0, dtype=None, rng=None):
        super().__init__()
        self.c_in, self.c_out, self.k = c_in, c_out, k
        self.stride, self.padding = stride, padding
        dtype = as_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        std = np.sqrt(2.0 / (c_in * k * k))
        self.params["weight"] = (rng.standard_normal((c_out, c_in, k, k)) * std).astype(dtype)
        self.params["bias"] = np.zeros(c_out, dtype=dtype)

    @property
    def weight(self):
        """The (c_out, c_in, k, k) kernel, trainable or fixed."""
        return self.buffers["weight"] if self.fixed else self.params["weight"]

    @property
    def bias(self):
        """The (c_out,) bias, always trainable."""
        return self.params["bias"]

    @property
    def is_pointwise(self):
        """True for a 1×1, stride-1, unpadded convolution (no im2col needed)."""
        return self.k == 1 and self.stride == 1 and self.padding == 0

    def __repr__(self):
        return (f"{type(self).__name__}({self.c_in}, {self.c_out}, k={self.k}, "
                f"stride={self.stride}, padding={self.padding})")

    def forward(self, x, train=True):
        check_rank(self, x)
        if x.shape[1] != self.c_in:
            raise ValueError(f"{self!r} expects {self.c_in} input channels, "
                             f"got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        h_out = output_size(h, self.k, self.stride, self.padding)
        w_out = output_size(w, self.k, self.stride, self.padding)
        if h_out < 1 or w_out < 1:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the kernel")
        if self.is_pointwise:
            cols = swap_nc(x).reshape(self.c_in, n * h * w)
        else:
            cols = im2col(x, self.k, self.stride, self.padding)
        self._cache = (x.shape, cols)
        y = self.weight.reshape(self.c_out, -1) @ cols
        y += self.bias[:, None]
        return swap_nc(y.reshape(self.c_out, n, h_out, w_out))

    def backward(self, dy):
        x_shape, cols = self._cache
        self._cache = None
        n, c, h, w = x_shape
        dy2 = swap_nc(dy).reshape(self.c_out, -1)
        self.grads["bias"] = dy2.sum(axis=1)
        if not self.fixed:
            self.grads["weight"] = (dy2 @ cols.T).reshape(self.weight.shape)
        dcols = self.weight.reshape(self.c_out, -1).T @ dy2
        if self.is_pointwise:
            return swap_nc(dcols.reshape(c, n, h, w))
        return col2im(dcols, x_shape, self.k, self.stride, self.padding)


class FixedConv2d(Conv2d):
    """Convolution with a given, untrainable weight and a trainable bias.

    ``weight`` (c_out, c_in, k, k) is stored as a buffer: it is not in
    ``params``, gets no gradient, and backward does not compute one. This is
    the double-sparsity layer whose weight is a fixed DCT dictionary.
    """

    fixed = True

    def __init__(self, weight, stride=1, padding=0, dtype=None):
        dtype = as_dtype(dtype)
        c_out, c_in, k, k2 = weight.shape
        if k != k2:
            raise ValueError(f"FixedConv2d needs square kernels, got weight shape {weight.shape}")
        Layer.__init__(self)
        self.c_in, self.c_out, self.k = c_in, c_out, k
        self.stride, self.padding = stride, padding
        xp = get_array_module(weight)
        self.buffers["weight"] = xp.array(weight, dtype=dtype)
        self.params["bias"] = xp.zeros(c_out, dtype=dtype)
