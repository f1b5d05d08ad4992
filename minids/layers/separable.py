"""A fixed convolution computed through its Kronecker structure.

When every output kernel is ``g · a_c[:, i_c(o)] ⊗ a_v[:, i_v(o)] ⊗ a_h[:, i_h(o)]``
(the ``odct3`` dictionary), the convolution factors exactly into three
linear maps (docs/performance.md, "Structured fixed convolutions"):

1. a channel DCT: ``z = a_cᵀ x``, a 1×1 convolution from c_in maps to the
   U channel frequencies the outputs use;
2. a vertical 1-D filter bank: every map of ``z`` filtered by the V
   vertical atoms (k taps, stride, zero padding);
3. a horizontal 1-D filter bank: every map of step 2 filtered by the H
   horizontal atoms.

Step 3 yields the U·V·H products; output channel ``o`` is the product
``(i_c(o), i_v(o), i_h(o))``. The input gradient is the adjoint of the three
steps in reverse order. Each 1-D bank is one GEMM on k stacked shifted views
(the 1-D im2col), so NumPy and CuPy run the same code: on NumPy each thread
runs the steps on a cache-sized chunk of its images at a time, on CuPy the
whole batch is one chunk.

The channel-factored path stops after step 1: each output is then a k×k
convolution of the one map ``z[i_c(o)]`` with its spatial kernel
``a_v[:, i_v(o)] ⊗ a_h[:, i_h(o)]``, one im2col GEMM with K = k² per run of
outputs that share a channel frequency instead of K = c_in·k². It pays where
the input has few channels (conv1 on colour images), where the full
factorisation's intermediate maps cost more than they save.
"""

import numpy as np

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import channel_rows, swap_nc
from minids.layers.im2col import col2im, im2col, output_size


class KroneckerFactors:
    """The factors of a fixed convolution whose kernels are Kronecker products.

    Args:
        a_c: (c_in, U) channel atoms, the kernel gain folded in.
        a_v: (k, V) vertical atoms; a_h: (k, H) horizontal atoms.
        frequencies: (c_out, 3) ints, row o = (u, v, h) indices into the
            columns of a_c, a_v, a_h.
        atoms: (c_out,) ints, the column of the full dictionary that output o
            is (default 0 .. c_out-1); ``full_outputs``: that dictionary's
            number of columns (default c_out). A pruned layer keeps a subset.
        gain: the kernel gain folded into ``a_c`` (kept so that a weights file
            can store it and a reload rebuild the same factors).

    All arrays are float64 NumPy on the host; :meth:`arrays` casts them to
    the dtype and device of a layer's input.
    """

    def __init__(self, a_c, a_v, a_h, frequencies, atoms=None, full_outputs=None, gain=1.0):
        self.a_c, self.a_v, self.a_h = (np.asarray(a, dtype=np.float64) for a in (a_c, a_v, a_h))
        self.gain = float(gain)
        self.frequencies = np.asarray(frequencies, dtype=np.int64).reshape(-1, 3)
        count = self.frequencies.shape[0]
        self.atoms = np.arange(count) if atoms is None else np.asarray(atoms, dtype=np.int64)
        self.full_outputs = count if full_outputs is None else int(full_outputs)
        u, v, h = self.frequencies.T
        sizes = (self.a_c.shape[1], self.a_v.shape[1], self.a_h.shape[1])
        #: row of the (H·V·U)-row product matrix that holds output o
        self.rows = (h * sizes[1] + v) * sizes[0] + u
        self._device = {}

    @property
    def c_out(self):
        return self.frequencies.shape[0]

    @property
    def c_in(self):
        return self.a_c.shape[0]

    @property
    def k(self):
        return self.a_v.shape[0]

    def dense(self):
        """The (c_out, c_in, k, k) float64 weight these factors compute."""
        u, v, h = self.frequencies.T
        return np.einsum("co,yo,xo->ocyx", self.a_c[:, u], self.a_v[:, v], self.a_h[:, h])

    def subset(self, outputs):
        """The factors of the outputs ``outputs`` (indices) only, with every channel
        frequency and 1-D atom that none of them uses dropped."""
        picked = self.frequencies[np.asarray(outputs, dtype=np.int64)]
        kept = [np.unique(picked[:, axis]) for axis in range(3)]
        renumbered = np.stack([np.searchsorted(kept[axis], picked[:, axis]) for axis in range(3)],
                              axis=1)
        return KroneckerFactors(self.a_c[:, kept[0]], self.a_v[:, kept[1]], self.a_h[:, kept[2]],
                                renumbered, self.atoms[np.asarray(outputs, dtype=np.int64)],
                                self.full_outputs, self.gain)

    def multiply_adds(self, h, w, stride, padding):
        """Multiply-adds per image of the factored forward on an h×w input."""
        k, (c_in, n_u), n_v, n_h = self.k, self.a_c.shape, self.a_v.shape[1], self.a_h.shape[1]
        h_out, w_out = output_size(h, k, stride, padding), output_size(w, k, stride, padding)
        return (c_in * n_u * h * w + n_u * n_v * k * h_out * (w + 2 * padding)
                + n_u * n_v * n_h * k * h_out * w_out)

    def channel_multiply_adds(self, h, w, stride, padding):
        """Multiply-adds per image of the channel-factored forward on an h×w input."""
        k, (c_in, n_u) = self.k, self.a_c.shape
        h_out, w_out = output_size(h, k, stride, padding), output_size(w, k, stride, padding)
        return c_in * n_u * h * w + self.c_out * k * k * h_out * w_out

    def channel_runs(self):
        """[(u, lo, hi)]: outputs lo .. hi-1 all use channel frequency u (maximal runs, in order)."""
        u = self.frequencies[:, 0]
        edges = [0, *(np.flatnonzero(np.diff(u)) + 1).tolist(), len(u)]
        return [(int(u[lo]), lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]

    def arrays(self, xp, dtype):
        """(a_c, a_v, a_h, rows) on the device of ``xp`` in ``dtype`` (cached)."""
        key = (xp.__name__, np.dtype(dtype).str)
        if key not in self._device:
            self._device[key] = tuple(xp.asarray(a, dtype=dtype) for a in (self.a_c, self.a_v, self.a_h)) \
                + (xp.asarray(self.rows),)
        return self._device[key]

    def channel_arrays(self, xp, dtype):
        """(a_c, kernels) on the device of ``xp`` in ``dtype`` (cached): ``kernels``
        (c_out, k·k) holds output o's spatial kernel a_v[:, i_v(o)] ⊗ a_h[:, i_h(o)]."""
        key = ("channel", xp.__name__, np.dtype(dtype).str)
        if key not in self._device:
            _, v, h = self.frequencies.T
            kernels = np.einsum("yo,xo->oyx", self.a_v[:, v], self.a_h[:, h]).reshape(self.c_out, -1)
            self._device[key] = (xp.asarray(self.a_c, dtype=dtype), xp.asarray(kernels, dtype=dtype))
        return self._device[key]


def _taps(k, stride, count):
    """Slices of the k shifted views: tap t reads t, t + stride, ..., (count values)."""
    return [slice(t, t + stride * (count - 1) + 1, stride) for t in range(k)]


def _chunk_bytes(factors, h, w, stride, padding, itemsize):
    """Bytes of the intermediate arrays of one image in :func:`factored_forward`
    (its adjoint's are the same sizes): the cache-sized chunks of
    :func:`threads.gemm_chunks` are cut by it."""
    k, p = factors.k, padding
    n_u, n_v, n_h = factors.a_c.shape[1], factors.a_v.shape[1], factors.a_h.shape[1]
    h_out, w_out = output_size(h, k, stride, p), output_size(w, k, stride, p)
    wide = w + 2 * p
    floats = (n_u * (h * w + (h + 2 * p) * wide) + (k + n_v) * n_u * h_out * wide
              + (k * n_v + n_v * n_h) * n_u * h_out * w_out + factors.c_out * h_out * w_out)
    return floats * itemsize


def factored_forward(factors, x, stride, padding):
    """Forward of the factored convolution, without bias.

    Each thread takes a block of the images and runs the three steps on a
    cache-sized chunk of them at a time (:func:`threads.gemm_chunks`).

    Args:
        factors: :class:`KroneckerFactors`.
        x: (N, c_in, H, W) input (any strides; the channel DCT reads a
            channel-major or channels-last one without a copy).
        stride, padding: as the dense convolution's.
    Returns:
        (c_out, N, H_out, W_out) C-contiguous output.
    """
    xp = get_array_module(x)
    a_c, a_v, a_h, rows = factors.arrays(xp, x.dtype)
    n, c_in, h, w = x.shape
    k, p = factors.k, padding
    h_out, w_out = output_size(h, k, stride, p), output_size(w, k, stride, p)
    n_u, n_v, n_h = a_c.shape[1], a_v.shape[1], a_h.shape[1]
    x_rows = channel_rows(x)  # (c_in, N·H·W)
    y = xp.empty((factors.c_out, n * h_out * w_out), dtype=x.dtype)

    def chunk(start, stop, _):
        m = stop - start
        z = threads.matmul(a_c.T, x_rows[:, start * h * w:stop * h * w]).reshape(n_u, m, h, w)
        # the vertical taps of the zero-padded channel frequencies, (k, U, m, H_out, W + 2p)
        z_pad = xp.zeros((n_u, m, h + 2 * p, w + 2 * p), dtype=x.dtype)
        z_pad[:, :, p:p + h, p:p + w] = z
        rows_v = xp.empty((k, n_u, m, h_out, w + 2 * p), dtype=x.dtype)
        for t, tap in enumerate(_taps(k, stride, h_out)):
            rows_v[t] = z_pad[:, :, tap]
        vertical = threads.matmul(a_v.T, rows_v.reshape(k, -1)).reshape(n_v, n_u, m, h_out, w + 2 * p)
        cols_h = xp.empty((k, n_v, n_u, m, h_out, w_out), dtype=x.dtype)
        for t, tap in enumerate(_taps(k, stride, w_out)):
            cols_h[t] = vertical[..., tap]
        products = threads.matmul(a_h.T, cols_h.reshape(k, -1))  # (H, V·U·m·H_out·W_out)
        products = products.reshape(n_h * n_v * n_u, m * h_out * w_out)
        y[:, start * h_out * w_out:stop * h_out * w_out] = products[rows]

    threads.gemm_chunks(xp, n, _chunk_bytes(factors, h, w, stride, p, x.dtype.itemsize), chunk)
    return y.reshape(factors.c_out, n, h_out, w_out)


def _input_in_layout(a_c, d_z, channels_last, out=None):
    """The adjoint of the channel DCT: ``a_c`` (c_in, U) @ ``d_z`` (U, N, H, W),
    as (c_in, N, H, W) or with ``channels_last`` as its (N·H·W, c_in) transpose;
    written into ``out`` (an array or view of that shape) if given."""
    n_u, n, h, w = d_z.shape
    d_z = d_z.reshape(n_u, -1)
    if channels_last:
        return threads.matmul_rows(d_z.T, a_c.T, out=out)
    dx = threads.matmul(a_c, d_z).reshape(a_c.shape[0], n, h, w)
    if out is None:
        return dx
    out[...] = dx
    return out


def factored_input_grad(factors, dy_rows, x_shape, stride, padding, channels_last=False):
    """Input gradient of :func:`factored_forward` (its adjoint), a cache-sized
    chunk of images at a time per thread as the forward.

    Args:
        dy_rows: (c_out, N·H_out·W_out) output gradient (any strides).
        x_shape: (N, c_in, H, W) of the forward input.
        channels_last: return the gradient channels-last.
    Returns:
        (c_in, N, H, W) C-contiguous input gradient, or with ``channels_last``
        its (N·H·W, c_in) C-contiguous transpose.
    """
    xp = get_array_module(dy_rows)
    a_c, a_v, a_h, rows = factors.arrays(xp, dy_rows.dtype)
    n, c_in, h, w = x_shape
    k, p = factors.k, padding
    h_out, w_out = output_size(h, k, stride, p), output_size(w, k, stride, p)
    n_u, n_v, n_h = a_c.shape[1], a_v.shape[1], a_h.shape[1]
    dtype = dy_rows.dtype
    dx = xp.empty((n * h * w, c_in) if channels_last else (c_in, n, h, w), dtype=dtype)

    def chunk(start, stop, _):
        m = stop - start
        # the products' gradient: the output gradient at the kept products, zero elsewhere
        d_products = xp.zeros((n_h * n_v * n_u, m * h_out * w_out), dtype=dtype)
        d_products[rows] = dy_rows[:, start * h_out * w_out:stop * h_out * w_out]
        d_cols_h = threads.matmul(a_h, d_products.reshape(n_h, -1)).reshape(k, n_v, n_u, m, h_out, w_out)
        d_vertical = xp.zeros((n_v, n_u, m, h_out, w + 2 * p), dtype=dtype)
        for t, tap in enumerate(_taps(k, stride, w_out)):
            d_vertical[..., tap] += d_cols_h[t]
        d_rows_v = threads.matmul(a_v, d_vertical.reshape(n_v, -1)).reshape(k, n_u, m, h_out, w + 2 * p)
        d_z_pad = xp.zeros((n_u, m, h + 2 * p, w + 2 * p), dtype=dtype)
        for t, tap in enumerate(_taps(k, stride, h_out)):
            d_z_pad[:, :, tap] += d_rows_v[t]
        d_z = xp.ascontiguousarray(d_z_pad[:, :, p:p + h, p:p + w])
        _input_in_layout(a_c, d_z, channels_last,
                         out=dx[start * h * w:stop * h * w] if channels_last else dx[:, start:stop])

    threads.gemm_chunks(xp, n, _chunk_bytes(factors, h, w, stride, p, dtype.itemsize), chunk)
    return dx


def channel_factored_forward(factors, x, stride, padding, cols=None):
    """Forward of the channel-factored convolution, without bias.

    Args:
        factors: :class:`KroneckerFactors`.
        x: (N, c_in, H, W) input (any strides, as :func:`factored_forward`'s).
        stride, padding: as the dense convolution's.
        cols: optional C-contiguous (U·k·k, N·H_out·W_out) block for the columns.
    Returns:
        (c_out, N, H_out, W_out) C-contiguous output.
    """
    xp = get_array_module(x)
    a_c, kernels = factors.channel_arrays(xp, x.dtype)
    n, c_in, h, w = x.shape
    k, n_u = factors.k, a_c.shape[1]
    h_out, w_out = output_size(h, k, stride, padding), output_size(w, k, stride, padding)
    z = threads.matmul(a_c.T, channel_rows(x)).reshape(n_u, n, h, w)
    cols = im2col(swap_nc(z), k, stride, padding, out=cols)
    y = xp.empty((factors.c_out, n * h_out * w_out), dtype=x.dtype)
    for u, lo, hi in factors.channel_runs():
        threads.matmul(kernels[lo:hi], cols[u * k * k:(u + 1) * k * k], out=y[lo:hi])
    return y.reshape(factors.c_out, n, h_out, w_out)


def channel_factored_input_grad(factors, dy_rows, x_shape, stride, padding, channels_last=False):
    """Input gradient of :func:`channel_factored_forward` (its adjoint).

    Args:
        dy_rows: (c_out, N·H_out·W_out) output gradient (any strides).
        x_shape: (N, c_in, H, W) of the forward input.
        channels_last: return the gradient channels-last.
    Returns:
        as :func:`factored_input_grad`.
    """
    xp = get_array_module(dy_rows)
    a_c, kernels = factors.channel_arrays(xp, dy_rows.dtype)
    n, c_in, h, w = x_shape
    k, n_u = factors.k, a_c.shape[1]
    d_cols = xp.zeros((n_u * k * k, dy_rows.shape[1]), dtype=dy_rows.dtype)
    for u, lo, hi in factors.channel_runs():
        d_cols[u * k * k:(u + 1) * k * k] += threads.matmul(kernels[lo:hi].T, dy_rows[lo:hi])
    d_z = swap_nc(col2im(d_cols, (n, n_u, h, w), k, stride, padding))  # (U, N, H, W)
    return _input_in_layout(a_c, d_z, channels_last)
