"""Convolutions: a trainable ``Conv2d`` and the fixed-weight ``FixedConv2d``.

Both compute y = W ⋆ x + b with weights OIHW (C_out, C_in, k, k) as one GEMM
on im2col columns; a 1×1, stride-1, unpadded convolution is a plain GEMM on
the input itself. See :mod:`minids.layers.im2col` for the column layout. On
NumPy the GEMMs and the bias pass are split over the cores by
:mod:`minids.backend.threads`.

Memory: a trainable k×k convolution keeps its columns from forward for the
weight gradient, in a block it reuses every step (:meth:`Layer.scratch`); the
column gradient of backward reuses the same block once the weight gradient is
done, so each k×k layer holds one column block between steps. Where no weight
gradient is needed (a fixed convolution, or evaluation) the columns are built
and consumed one chunk of images at a time (at most ``CHUNK_BYTES``), and
backward folds the input gradient chunk by chunk too, so a very large batch
never needs its whole column matrix. A short GEMM (K = C_in·k·k ≤
``SHORT_GEMM_K``, a first layer) on NumPy instead gives each thread a block
of the images, unfolded, multiplied and biased a cache-sized chunk
(``threads.GEMM_CHUNK_BYTES``) at a time: its GEMM is cheap beside the
columns' round trip through memory.
``needs_input_grad = False`` (set on a network's first layer) skips the input
gradient: backward then returns None.

Layout (:mod:`minids.layers.base`): a 1×1 convolution of a channels-last
input computes channels-last, (N·H·W, C_in) @ Wᵀ, the orientation in which
OpenBLAS runs these GEMMs fastest. A k×k convolution writes its output
channels-last when forward is asked to (``channels_last=True``) and its
GEMM is short, K = C_in·k·k ≤ ``SHORT_GEMM_K`` (a first layer): its
columns stay channel-major, and the transposed GEMM on them is faster than
the channel-major one at K = 75 but slower at NiN's conv2, K = 2,400
(docs/performance.md, "Channels-last 1×1 convolutions"). A k×k
convolution unfolds a channels-last input from a channel-major copy (one
transposing copy; im2col's taps read the channels-last strides far slower).
Every convolution hands its input gradient back in its input's layout.
"""

import numpy as np

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import (Layer, as_dtype, channel_rows, channels_last_view, check_rank,
                                is_channels_last, swap_nc)
from minids.layers.cases import Case, normal
from minids.layers.im2col import col2im, im2col, output_size
from minids.layers.separable import (channel_factored_forward, channel_factored_input_grad,
                                     factored_forward, factored_input_grad)

#: largest im2col block (bytes) built at once where the columns need not be kept;
#: smaller blocks save memory but make BLAS slower (2 blocks of NiN's conv2 at
#: batch 128 cost 10 % more than one on 2 cores), so only very large batches split
CHUNK_BYTES = 512 * 2**20


class Conv2d(Layer):
    """Trainable 2-D convolution.

    Parameters: ``weight`` (c_out, c_in, k, k), He-normal initialised
    (std = sqrt(2 / (c_in·k·k))) from ``rng``; ``bias`` (c_out,), zeros.
    Input (N, c_in, H, W) → output (N, c_out, H_out, W_out).
    """

    fixed = False
    #: False skips the input gradient (backward returns None); for a network's first layer
    needs_input_grad = True
    #: the longest GEMM K = c_in·k·k of a k×k convolution counted as short (a first layer):
    #: it writes a channels-last output when asked, and unfolds cache-sized chunks per thread
    SHORT_GEMM_K = 256

    def __init__(self, c_in, c_out, k, stride=1, padding=0, dtype=None, rng=None):
        super().__init__()
        self.c_in, self.c_out, self.k = c_in, c_out, k
        self.stride, self.padding = stride, padding
        dtype = as_dtype(dtype)
        rng = np.random.default_rng() if rng is None else rng
        std = np.sqrt(2.0 / (c_in * k * k))
        self.params["weight"] = (rng.standard_normal((c_out, c_in, k, k)) * std).astype(dtype)
        self.params["bias"] = np.zeros(c_out, dtype=dtype)

    flops_kind = "conv"

    @classmethod
    def gradcheck_cases(cls):
        def conv(*args, **kwargs):
            return lambda rng: Conv2d(*args, dtype=np.float64, rng=rng, **kwargs)
        return [Case("conv3x3 pad1", conv(3, 4, 3, padding=1), normal(2, 3, 7, 7)),
                Case("conv5x5 stride2 pad2 odd", conv(3, 5, 5, stride=2, padding=2), normal(2, 3, 9, 7)),
                Case("conv3x3 stride2", conv(2, 3, 3, stride=2), normal(3, 2, 8, 9)),
                Case("conv1x1", conv(6, 4, 1), normal(3, 6, 5, 5))]

    def output_shape(self, shape):
        c, h, w = shape
        if c != self.c_in:
            raise ValueError(f"expects {self.c_in} input channels, got {c}")
        h_out, w_out = (output_size(n, self.k, self.stride, self.padding) for n in (h, w))
        if h_out < 1 or w_out < 1:
            raise ValueError(f"too small: {h}x{w} for a {self.k}x{self.k} kernel")
        return self.c_out, h_out, w_out

    def dense_multiply_adds(self, h, w):
        """Multiply-adds per image of the dense forward on an h×w input: c_in·k·k·c_out·H_out·W_out."""
        h_out = output_size(h, self.k, self.stride, self.padding)
        w_out = output_size(w, self.k, self.stride, self.padding)
        return self.c_out * self.c_in * self.k * self.k * h_out * w_out

    def flops(self, shape):
        """2 × the dense multiply-adds (a multiply-add is 2 FLOPs; the bias is not counted)."""
        self.output_shape(shape)  # the input fits
        return 2 * self.dense_multiply_adds(*shape[1:])

    def file_attrs(self):
        return {"k": int(self.k), "stride": int(self.stride), "padding": int(self.padding),
                "fixed": bool(self.fixed)}

    @property
    def weight(self):
        """The (c_out, c_in, k, k) kernel, trainable or fixed."""
        return self.buffers["weight"] if self.fixed else self.params["weight"]

    @property
    def bias(self):
        """The (c_out,) bias, always trainable."""
        return self.params["bias"]

    @property
    def has_short_gemm(self):
        """True when the GEMM's K = c_in·k·k is at most ``SHORT_GEMM_K``."""
        return self.c_in * self.k * self.k <= self.SHORT_GEMM_K

    @property
    def is_pointwise(self):
        """True for a 1×1, stride-1, unpadded convolution (no im2col needed)."""
        return self.k == 1 and self.stride == 1 and self.padding == 0

    def __repr__(self):
        return (f"{type(self).__name__}({self.c_in}, {self.c_out}, k={self.k}, "
                f"stride={self.stride}, padding={self.padding})")

    def forward(self, x, train=True, channels_last=False):
        """``channels_last=True`` asks for the output channels-last; a 1×1
        convolution keeps its input's layout whatever it is asked (module docstring)."""
        check_rank(self, x)
        if x.shape[1] != self.c_in:
            raise ValueError(f"{self!r} expects {self.c_in} input channels, "
                             f"got shape {tuple(x.shape)}")
        xp = get_array_module(x)
        n, _, h, w = x.shape
        h_out = output_size(h, self.k, self.stride, self.padding)
        w_out = output_size(w, self.k, self.stride, self.padding)
        if h_out < 1 or w_out < 1:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the kernel")
        weight = self.weight.reshape(self.c_out, -1)
        keep_cols = train and not self.fixed
        pixels = h_out * w_out
        x_last = is_channels_last(x)
        last = x_last if self.is_pointwise else self._writes_channels_last(channels_last)
        if x_last and not self.is_pointwise:
            x = swap_nc(xp.ascontiguousarray(swap_nc(x)))  # channel-major, for im2col
        if self.is_pointwise:
            cols = channel_rows(x)
            y = self._gemm(weight, cols, last)
            self._add_bias(y, last)
        elif keep_cols:
            cols = im2col(x, self.k, self.stride, self.padding,
                          out=self.scratch("cols", weight.shape[1:] + (n * pixels,), x.dtype, xp))
            y = self._gemm(weight, cols, last)
            self._add_bias(y, last)
        else:
            cols = None
            y = self._unfolded_forward(x, weight, last, pixels)
        self.keep(("dense", x.shape, x_last, cols if keep_cols else None) if train else None)
        return self._output_view(y, last, n, h_out, w_out)

    def _unfolded_forward(self, x, weight, last, pixels):
        """The output matrix, bias added, of ``weight`` (c_out, K) on the im2col
        columns of ``x`` (N, c_in, H, W), without keeping the columns: channel-major
        (c_out, N·pixels), or with ``last`` channels-last (N·pixels, c_out); the
        columns built a chunk of images at a time (:meth:`_image_chunks`)."""
        xp = get_array_module(x)
        n = x.shape[0]
        y = xp.empty((n * pixels, self.c_out) if last else (self.c_out, n * pixels), dtype=x.dtype)

        def unfold(start, stop, block):
            cols = self.scratch(block, (weight.shape[1], (stop - start) * pixels), x.dtype, xp)
            im2col(x[start:stop], self.k, self.stride, self.padding, out=cols)
            rows = slice(start * pixels, stop * pixels)
            out = y[rows] if last else y[:, rows]
            self._gemm(weight, cols, last, out=out)
            self._add_bias(out, last)

        self._image_chunks(xp, n, pixels, unfold)
        return y

    def _image_chunks(self, xp, n, pixels, fn):
        """Call ``fn(start, stop, block)`` over chunks [start, stop) of the n images,
        ``block`` the name of the scratch block for the chunk's columns. With a
        short GEMM (:attr:`has_short_gemm`) on NumPy each thread takes a block of
        the images, a cache-sized chunk of columns at a time
        (:func:`threads.gemm_chunks`); else the chunks (at most ``CHUNK_BYTES``)
        run in turn, their GEMMs split over the threads."""
        per_image = self.c_in * self.k * self.k * pixels * self.bias.dtype.itemsize
        # the first block reuses the layer's "cols" block: free once any weight gradient is done
        if xp is np and self.has_short_gemm:
            threads.gemm_chunks(xp, n, per_image, lambda start, stop, block: fn(
                start, stop, f"cols{block}" if block else "cols"))
            return
        step = max(1, CHUNK_BYTES // max(per_image, 1))
        for start in range(0, n, step):
            fn(start, min(start + step, n), "cols")

    def _writes_channels_last(self, asked):
        """Whether this k×k convolution writes a channels-last output when ``asked`` (module docstring)."""
        return asked and self.has_short_gemm

    @staticmethod
    def _gemm(weight, cols, last, out=None):
        """``weight`` (c_out, K) @ ``cols`` (K, P): channel-major (c_out, P), or
        with ``last`` its transpose, the channels-last (P, c_out)."""
        if last:
            return threads.matmul_rows(cols.T, weight.T, out=out)
        return threads.matmul(weight, cols, out=out)

    def _output_view(self, y, last, n, h_out, w_out):
        """The (N, c_out, H_out, W_out) view of the output matrix ``y``: (c_out, P), or
        with ``last`` (P, c_out)."""
        if last:
            return channels_last_view(y, n, h_out, w_out)
        return swap_nc(y.reshape(self.c_out, n, h_out, w_out))

    def _add_bias(self, y, last=False):
        """Add the bias to the output matrix ``y``, channel-major (c_out, P) or with
        ``last`` channels-last (P, c_out), in place, split over the cores."""
        xp = get_array_module(y)
        if last:
            threads.for_blocks(xp, y.shape[0], y.size,
                                lambda lo, hi: xp.add(y[lo:hi], self.bias, out=y[lo:hi]))
            return
        bias = self.bias[:, None]
        threads.for_blocks(xp, self.c_out, y.size,
                            lambda lo, hi: xp.add(y[lo:hi], bias[lo:hi], out=y[lo:hi]))

    def _bias_grad(self, dy_rows):
        """The bias gradient (c_out,): the row sums of the output gradient
        ``dy_rows`` (c_out, N·H·W) from :func:`channel_rows`. Channel-major (a
        C-contiguous matrix), split over the cores by channel (each row summed as
        in one call, so the result does not depend on the split); channels-last
        (the transpose of one), by pixels, the blocks' sums added in order."""
        xp = get_array_module(dy_rows)
        if not dy_rows.flags.c_contiguous:
            pixels = dy_rows.T  # (N·H·W, c_out), C-contiguous
            sums = {}
            threads.for_blocks(xp, pixels.shape[0], pixels.size,
                                lambda lo, hi: sums.__setitem__(lo, pixels[lo:hi].sum(axis=0)))
            return sum(sums[lo] for lo in sorted(sums))
        grad = xp.empty(self.c_out, dtype=dy_rows.dtype)
        threads.for_blocks(xp, self.c_out, dy_rows.size,
                            lambda lo, hi: dy_rows[lo:hi].sum(axis=1, out=grad[lo:hi]))
        return grad

    def backward(self, dy):
        _, x_shape, x_last, cols = self.take()
        return self._dense_backward(dy, x_shape, x_last, cols)

    def _dense_backward(self, dy, x_shape, x_last, cols):
        """Backward through the im2col GEMMs; ``x_last``: the input was channels-last;
        ``cols``: forward's columns (None if fixed)."""
        xp = get_array_module(dy)
        n, c, h, w = x_shape
        dy2 = channel_rows(dy)  # (c_out, P); the transpose of a (P, c_out) matrix if channels-last
        self.grads["bias"] = self._bias_grad(dy2)
        if not self.fixed:
            self.grads["weight"] = threads.matmul_nt(dy2, cols).reshape(self.weight.shape)
        if not self.needs_input_grad:
            return None
        weight = self.weight.reshape(self.c_out, -1)
        if self.is_pointwise:
            if x_last:
                return channels_last_view(threads.matmul_rows(dy2.T, weight), n, h, w)
            return swap_nc(threads.matmul(weight.T, dy2).reshape(c, n, h, w))
        pixels = dy2.shape[1] // n
        dx = xp.zeros((c, n, h, w), dtype=dy.dtype)

        def fold(start, stop, block):
            dcols = self.scratch(block, (weight.shape[1], (stop - start) * pixels), dy.dtype, xp)
            threads.matmul(weight.T, dy2[:, start * pixels:stop * pixels], out=dcols)
            col2im(dcols, (stop - start, c, h, w), self.k, self.stride, self.padding,
                   out=dx[:, start:stop])

        self._image_chunks(xp, n, pixels, fold)
        if x_last:
            return xp.ascontiguousarray(dx.transpose(1, 2, 3, 0)).transpose(0, 3, 1, 2)
        return swap_nc(dx)


class FixedConv2d(Conv2d):
    """Convolution with a given, untrainable weight and a trainable bias.

    ``weight`` (c_out, c_in, k, k) is stored as a buffer: it is not in
    ``params``, gets no gradient, and backward does not compute one. This is
    the double-sparsity layer whose weight is a fixed DCT dictionary.

    ``factors`` (a :class:`minids.layers.separable.KroneckerFactors` equal to
    ``weight``, or None) lets forward and backward run through the weight's
    Kronecker structure (:meth:`path`): fully factored where that needs at
    most ``1 / MIN_SAVING`` of the dense multiply-adds, else through the
    channel DCT alone where that needs at most ``1 / MIN_CHANNEL_SAVING``;
    the dense ``weight`` stays the reference and gives the same result.
    ``force_path`` ('factored', 'channel' or 'dense'; None: by cost) takes
    that path whatever it costs (tests, gradcheck, benchmarks).
    """

    fixed = True
    #: the factored path is taken where it saves at least this factor of multiply-adds
    MIN_SAVING = 20
    #: else the channel-factored path where it saves at least this factor
    MIN_CHANNEL_SAVING = 2

    @classmethod
    def gradcheck_cases(cls):
        def factored(c_out, c_in, k, stride=1, padding=0, channel_only=False):
            """An odct3 fixed convolution that always runs through its factors (all
            three, or with ``channel_only`` the channel DCT alone)."""
            def build(rng):
                from minids.models import dictionary_factors
                factors = dictionary_factors("odct3", c_out, c_in, k, gain=1.5)
                return FixedConv2d(factors.dense(), stride=stride, padding=padding, dtype=np.float64,
                                   factors=factors, force_path="channel" if channel_only else "factored")
            return build
        return [Case("fixedconv5x5 pad2",
                     lambda rng: FixedConv2d(rng.standard_normal((4, 3, 5, 5)), padding=2, dtype=np.float64),
                     normal(2, 3, 7, 7)),
                Case("fixedconv5x5 pad2 odct3 factored", factored(9, 4, 5, padding=2), normal(2, 4, 7, 6)),
                Case("fixedconv3x3 stride2 pad1 odct3 factored", factored(7, 3, 3, stride=2, padding=1),
                     normal(2, 3, 7, 8)),
                Case("fixedconv5x5 1-channel odct3 factored", factored(6, 1, 5), normal(2, 1, 7, 7)),
                Case("fixedconv5x5 pad2 odct3 channel-factored", factored(60, 3, 5, padding=2, channel_only=True),
                     normal(2, 3, 6, 7)),
                Case("fixedconv3x3 stride2 odct3 channel-factored",
                     factored(7, 3, 3, stride=2, channel_only=True), normal(2, 3, 7, 8))]

    PATHS = ("factored", "channel", "dense")

    def __init__(self, weight, stride=1, padding=0, dtype=None, factors=None, force_path=None):
        dtype = as_dtype(dtype)
        c_out, c_in, k, k2 = weight.shape
        if k != k2:
            raise ValueError(f"FixedConv2d needs square kernels, got weight shape {weight.shape}")
        if force_path not in (None,) + self.PATHS:
            raise ValueError(f"force_path must be one of {', '.join(self.PATHS)} or None, got {force_path!r}")
        if force_path in ("factored", "channel") and factors is None:
            raise ValueError(f"force_path={force_path!r} needs the weight's factors")
        Layer.__init__(self)
        self.c_in, self.c_out, self.k = c_in, c_out, k
        self.stride, self.padding = stride, padding
        xp = get_array_module(weight)
        self.buffers["weight"] = xp.array(weight, dtype=dtype)
        self.params["bias"] = xp.zeros(c_out, dtype=dtype)
        self.factors = factors
        self.force_path = force_path

    def file_attrs(self):
        """Conv2d's, plus with factors 'atoms' (the dictionary column of each output),
        'dictionary_outputs' (the column count of the dictionary they were cut from)
        and 'gain' (the norm of every output's atom)."""
        attrs = super().file_attrs()
        if self.factors is not None:
            attrs["atoms"] = np.asarray(self.factors.atoms, dtype=np.int64)
            attrs["dictionary_outputs"] = int(self.factors.full_outputs)
            attrs["gain"] = float(self.factors.gain)
        return attrs

    def factored_flops(self, shape, channels_last=False):
        """2 × the multiply-adds of the path forward takes, where that is not the dense one, else None."""
        _, h, w = shape
        path = self.path(h, w, channels_last)
        return None if path == "dense" else 2 * self.multiply_adds(h, w)[path]

    def multiply_adds(self, h, w):
        """{path: multiply-adds per image on an h×w input} for each path this layer has."""
        costs = {"dense": self.dense_multiply_adds(h, w)}
        if self.factors is not None:
            costs["factored"] = self.factors.multiply_adds(h, w, self.stride, self.padding)
            costs["channel"] = self.factors.channel_multiply_adds(h, w, self.stride, self.padding)
        return costs

    def path(self, h, w, channels_last=False):
        """How forward computes an h×w input: 'factored', 'channel' (the channel DCT,
        then k×k convolutions per channel frequency) or 'dense'. Where forward is
        asked for a channels-last output (``channels_last``) and writes one, the
        dense GEMM replaces the channel-factored path: that path's GEMMs, one per
        channel frequency, would each write a slice of every channels-last row,
        which made conv1 slower than the dense GEMM (docs/performance.md)."""
        if self.force_path is not None:
            return self.force_path
        costs = self.multiply_adds(h, w)
        for path, saving in (("factored", self.MIN_SAVING), ("channel", self.MIN_CHANNEL_SAVING)):
            if path in costs and costs[path] * saving <= costs["dense"]:
                if path == "channel" and self._writes_channels_last(channels_last):
                    return "dense"
                return path
        return "dense"

    def forward(self, x, train=True, channels_last=False):
        """``channels_last=True`` asks for the output channels-last: the dense path
        writes it (:meth:`Conv2d.forward`), the factored ones stay channel-major."""
        check_rank(self, x)
        if x.shape[1] != self.c_in:
            raise ValueError(f"{self!r} expects {self.c_in} input channels, "
                             f"got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        path = self.path(h, w, channels_last)
        if path == "dense":
            return super().forward(x, train, channels_last)
        if h + 2 * self.padding < self.k or w + 2 * self.padding < self.k:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} is smaller than the kernel")
        if path == "factored":
            y = factored_forward(self.factors, x, self.stride, self.padding)
        else:
            pixels = output_size(h, self.k, self.stride, self.padding) * output_size(
                w, self.k, self.stride, self.padding)
            cols = self.scratch("cols", (self.factors.a_c.shape[1] * self.k * self.k, n * pixels),
                                x.dtype, get_array_module(x))
            y = channel_factored_forward(self.factors, x, self.stride, self.padding, cols=cols)
        self._add_bias(y.reshape(self.c_out, -1))
        self.keep((path, x.shape, is_channels_last(x), None) if train else None)
        return swap_nc(y)

    def backward(self, dy):
        path, x_shape, x_last, cols = self.take()
        if path == "dense":
            return self._dense_backward(dy, x_shape, x_last, cols)
        dy_rows = channel_rows(dy)
        self.grads["bias"] = self._bias_grad(dy_rows)
        if not self.needs_input_grad:
            return None
        n, _, h, w = x_shape
        input_grad = factored_input_grad if path == "factored" else channel_factored_input_grad
        dx = input_grad(self.factors, dy_rows, x_shape, self.stride, self.padding, channels_last=x_last)
        return channels_last_view(dx, n, h, w) if x_last else swap_nc(dx)
