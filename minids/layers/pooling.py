"""Spatial pooling: max, average (both with optional ceil mode) and global average.

Ceil mode follows Caffe/Torch7/PyTorch: the output is
``ceil((H - k) / stride) + 1`` long, minus one if the last window would start
past the input. Windows that run past the edge see only the elements inside:
max ignores the outside, average divides by the number of elements inside.

How the taps are read (docs/performance.md, "Pooling"). NumPy streams a
strided view whose rows are short (a tap's view of a (C, N, H, W) batch:
rows of W_out elements, stride ``stride``) several times slower than one long
contiguous run. So the input, padded past its edge (with −∞ for max, 0 for
average) to (PH·s) × (PW·s), PH = H_out + d + 1, PW = W_out + d,
d = (k − 1) // s, is split once into its stride phases: plane (a, b) holds
the pixels (a + s·r, b + s·c), all C·N planes of a phase flattened into one
run (each plane written straight from the input, the padding filled in
place). Tap (i, j) of every output in the batch is then one contiguous slice of
phase (i mod s, j mod s), shifted by (i // s)·PW + j // s. The outputs are
computed on the PH × PW grid ("wide"); those past H_out × W_out read across a
plane's edge and are dropped. Backward gathers the input gradient in the
same planes and interleaves them once.

Where no tap has to be recorded (the forward of average pooling, and of max
pooling in evaluation) the pooling runs as two 1-D passes instead, since max
and sum are separable: the windows along H into a (C, N, H_out, W) block (a
tap is a view of whole rows), then along W. The two passes read the input
once and half of it again, against the planes' split and k² taps
(docs/performance.md, "Pooling").
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


def _embed(grid, block, fill):
    """Write ``block`` into the first rows and columns (last two axes) of ``grid``
    and ``fill`` into the rest."""
    rows, cols = block.shape[-2:]
    grid[..., :rows, :cols] = block
    grid[..., rows:, :] = fill
    grid[..., :rows, cols:] = fill


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

    def _plan(self, h_out, w_out):
        """(PH, PW, taps): the phase planes' size and, per kernel tap (i, j) in
        row-major order, (index i·k + j, phase (i mod s, j mod s), offset
        (i // s)·PW + j // s of its slice in the flattened planes)."""
        s = self.stride
        d = (self.k - 1) // s
        plane_w = w_out + d
        taps = [(i * self.k + j, (i % s, j % s), (i // s) * plane_w + j // s)
                for i in range(self.k) for j in range(self.k)]
        return h_out + d + 1, plane_w, taps

    def _phase_planes(self, xc, plan, fill):
        """{phase: flat plane run} of the channel-major input ``xc`` (C, N, H, W):
        C·N·PH·PW elements (the padded input's pixels of that phase, ``fill``
        past the input) plus a tail that the last taps' slices run into."""
        xp = get_array_module(xc)
        plane_h, plane_w, taps = plan
        s = self.stride
        c, n, h, w = xc.shape
        size = c * n * plane_h * plane_w
        tail = max(offset for _, _, offset in taps)
        planes = {phase: xp.empty(size + tail, dtype=xc.dtype)
                  for phase in sorted({phase for _, phase, _ in taps})}

        def split(lo, hi):
            for (a, b), plane in planes.items():
                # this phase's pixels that a window reads (in floor mode the last
                # rows or columns may lie past every window), then the fill past them
                _embed(plane[:size].reshape(c, n, plane_h, plane_w)[lo:hi],
                       xc[lo:hi, :, a::s, b::s][:, :, :plane_h, :plane_w], fill)

        threads.for_blocks(xp, c, xc.size, split)
        for plane in planes.values():
            plane[size:] = fill
        return planes

    def _separable(self, xc, h_out, w_out, fold, divisor=None):
        """The pooled (C, N, H_out, W_out) block of the channel-major input ``xc``
        (C, N, H, W) by two 1-D passes, along H then along W (module docstring).
        ``fold(acc, window, out=acc)`` (``xp.maximum`` or ``xp.add``) folds a tap
        into the windows it reaches; ``divisor`` (H_out, W_out), if given, divides
        the result."""
        xp = get_array_module(xc)
        c, n, _, w = xc.shape
        columns = self.scratch("columns", (c, n, h_out, w), xc.dtype, xp)
        y = xp.empty((c, n, h_out, w_out), dtype=xc.dtype)

        def pool(lo, hi):
            self._pool_axis(xc[lo:hi], columns[lo:hi], 2, fold)
            self._pool_axis(columns[lo:hi], y[lo:hi], 3, fold)
            if divisor is not None:
                y[lo:hi] /= divisor

        threads.for_blocks(xp, c, xc.size, pool)
        return y

    def _pool_axis(self, src, dst, axis, fold):
        """Fill ``dst`` with the 1-D windows of ``src`` along ``axis`` folded by
        ``fold``: tap t of output j is src[s·j + t], and in ceil mode the last
        outputs' windows lack the taps past the input."""
        size, count = src.shape[axis], dst.shape[axis]
        s, lead = self.stride, (slice(None),) * axis
        for t in range(self.k):
            reached = min(count, -(-(size - t) // s))  # the outputs whose tap t is inside
            window = src[lead + (slice(t, t + s * (reached - 1) + 1, s),)]
            if t == 0:  # inside every window
                dst[...] = window
            else:
                acc = dst[lead + (slice(0, reached),)]
                fold(acc, window, out=acc)

    def _wide(self, dy, plan):
        """The output gradient (N, C, H_out, W_out) on the wide grid, zero past the
        outputs: flat (C·N·PH·PW,)."""
        xp = get_array_module(dy)
        n, c, h_out, w_out = dy.shape
        plane_h, plane_w, _ = plan
        wide = xp.empty((c, n, plane_h, plane_w), dtype=dy.dtype)
        dy_cn = swap_nc(dy)

        threads.for_blocks(xp, c, wide.size, lambda lo, hi: _embed(wide[lo:hi], dy_cn[lo:hi], 0))
        return wide.reshape(-1)

    def _narrow(self, wide, plan, c, n, h_out, w_out):
        """The outputs (N, C, H_out, W_out), channel-major, from a flat wide result."""
        xp = get_array_module(wide)
        plane_h, plane_w, _ = plan
        grid = wide.reshape(c, n, plane_h, plane_w)
        return swap_nc(xp.ascontiguousarray(grid[:, :, :h_out, :w_out]))

    def _spread(self, x_shape, plan, dy_wide, term):
        """The input gradient, an (N, C, H, W) view, from the wide output gradient
        ``dy_wide`` (:meth:`_wide`): for every tap, ``term(index, start, stop)`` —
        the gradient that tap ``index`` sends from the wide outputs [start, stop)
        — added at the plane positions the tap read, then the planes
        interleaved into the input's pixels."""
        n, c, h, w = x_shape
        plane_h, plane_w, taps = plan
        s = self.stride
        per_channel = n * plane_h * plane_w
        xp, dtype = get_array_module(dy_wide), dy_wide.dtype
        planes = {phase: xp.empty(c * per_channel, dtype=dtype)
                  for phase in sorted({phase for _, phase, _ in taps})}
        # the pixels each phase plane holds; those of no plane (no window reads them) get 0
        extents = {(a, b): (min(len(range(a, h, s)), plane_h), min(len(range(b, w, s)), plane_w))
                   for a, b in planes}
        covered = len(planes) == s * s and all(
            extents[a, b] == (len(range(a, h, s)), len(range(b, w, s))) for a, b in planes)
        dx = (xp.empty if covered else xp.zeros)((c, n, h, w), dtype=dtype)

        def add(lo, hi):
            start, stop = lo * per_channel, hi * per_channel
            for plane in planes.values():
                plane[start:stop] = 0
            for index, phase, offset in taps:
                # the slice stays inside this block's channels: the outputs whose
                # reads would cross into the next block are past the wide grid's
                # last real row, and their gradient is zero
                planes[phase][start + offset:stop] += term(index, start, stop - offset)
            for (a, b), plane in planes.items():
                rows, cols = extents[a, b]
                grid = plane.reshape(c, n, plane_h, plane_w)
                dx[lo:hi, :, a::s, b::s][:, :, :rows, :cols] = grid[lo:hi, :, :rows, :cols]

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
        if not train:  # evaluation needs only the max
            self.keep(None)
            return swap_nc(self._separable(xc, h_out, w_out, xp.maximum))
        c, n = xc.shape[:2]
        plan = self._plan(h_out, w_out)
        planes = self._phase_planes(xc, plan, -xp.inf)
        size = c * n * plan[0] * plan[1]
        y = xp.empty(size, dtype=x.dtype)
        per_channel = size // c
        # which tap won each window, for backward
        argmax = xp.zeros(size, dtype=xp.uint8)
        improved = xp.empty(size, dtype=xp.bool_)
        tagged = xp.empty(size, dtype=xp.uint8)

        def pool(lo, hi):
            start, stop = lo * per_channel, hi * per_channel
            best = y[start:stop]
            arg, better, tag = argmax[start:stop], improved[start:stop], tagged[start:stop]
            for index, phase, offset in plan[2]:
                window = planes[phase][start + offset:stop + offset]
                if index == 0:  # tap (0, 0) lies inside every window
                    best[...] = window
                    continue
                # taps come in increasing index order, so the last strict improvement
                # is the largest index that improved: a max, no masked assignment
                xp.greater(window, best, out=better)
                xp.multiply(better.view(xp.uint8), xp.uint8(index), out=tag)
                xp.maximum(arg, tag, out=arg)
                xp.maximum(best, window, out=best)

        threads.for_blocks(xp, c, size, pool)
        self.keep((x.shape, plan, argmax))
        return self._narrow(y, plan, c, n, h_out, w_out)

    def backward(self, dy):
        x_shape, plan, argmax = self.take()
        dy_wide = self._wide(dy, plan)
        return self._spread(x_shape, plan, dy_wide, lambda index, start, stop: (
            dy_wide[start:stop] * (argmax[start:stop] == index)))


class AvgPool2d(_Pool2d):
    """Mean over k×k windows; an edge window in ceil mode averages only the
    elements inside the input."""

    @classmethod
    def gradcheck_cases(cls):
        return [Case("avgpool3/2 ceil", lambda rng: AvgPool2d(3, 2, ceil_mode=True), normal(2, 3, 8, 8)),
                Case("avgpool3/2 ceil odd", lambda rng: AvgPool2d(3, 2, ceil_mode=True), normal(2, 2, 7, 9))]

    def _counts(self, xp, shape, out_shape, dtype):
        """Number of input elements inside each window, (H_out, W_out), for an
        input of ``shape`` (H, W)."""
        def along(size, out):
            starts = xp.arange(out) * self.stride
            return (xp.minimum(starts + self.k, size) - starts).astype(dtype)
        (h, w), (h_out, w_out) = shape, out_shape
        return along(h, h_out)[:, None] * along(w, w_out)[None, :]

    def _wide_counts(self, counts, plan):
        """``counts`` on the wide grid (1 past the outputs), flat (PH·PW,)."""
        xp = get_array_module(counts)
        plane_h, plane_w, _ = plan
        wide = xp.ones((plane_h, plane_w), dtype=counts.dtype)
        wide[:counts.shape[0], :counts.shape[1]] = counts
        return wide.reshape(-1)

    def forward(self, x, train=True):
        xp = get_array_module(x)
        h_out, w_out = self._geometry(x)
        xc = swap_nc(x)
        counts = self._counts(xp, xc.shape[2:], (h_out, w_out), x.dtype)
        y = self._separable(xc, h_out, w_out, xp.add, divisor=counts)
        if train:
            plan = self._plan(h_out, w_out)
            self.keep((x.shape, plan, self._wide_counts(counts, plan)))
        else:
            self.keep(None)
        return swap_nc(y)

    def backward(self, dy):
        x_shape, plan, counts = self.take()
        share = self._wide(dy, plan)
        share.reshape(-1, counts.size)[...] /= counts
        return self._spread(x_shape, plan, share, lambda index, start, stop: share[start:stop])


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
        self.keep(x.shape if train else None)
        return x.mean(axis=(2, 3))

    def backward(self, dy):
        xp = get_array_module(dy)
        n, c, h, w = self.take()
        dx = xp.empty((c, n, h, w), dtype=dy.dtype)
        dx[...] = (dy.T / (h * w))[:, :, None, None]
        return swap_nc(dx)
