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

A channels-last input ((N, H, W, C) in memory, :mod:`minids.layers.base`)
is pooled in its own layout, and so is its gradient: both layouts are one
5-D view (L, M, H, W, I) of the same code, (C, N, H, W, 1) channel-major and
(N, 1, H, W, C) channels-last, whose blocks of the lead axis L go to the
threads; a tap's slice is then I times as far along the flat planes.

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
from minids.layers.base import Layer, check_rank, is_channels_last, swap_nc
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


def _as5(x, last):
    """The (N, C, H, W) view ``x`` as the 5-D view pooling works on: (N, 1, H, W, C)
    if ``last`` (channels-last), else (C, N, H, W, 1) (module docstring)."""
    return x.transpose(0, 2, 3, 1)[:, None] if last else swap_nc(x)[..., None]


def _as4(x5, last):
    """The (N, C, H, W) view of a 5-D view from :func:`_as5`."""
    return x5[:, 0].transpose(0, 3, 1, 2) if last else swap_nc(x5[..., 0])


def _embed(grid, block, fill):
    """Write the 5-D ``block`` into the first rows and columns (axes 2 and 3) of
    ``grid`` and ``fill`` into the rest."""
    rows, cols = block.shape[2:4]
    grid[:, :, :rows, :cols] = block
    grid[:, :, rows:] = fill
    grid[:, :, :rows, cols:] = fill


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

    def _phase_planes(self, x5, plan, fill):
        """{phase: flat plane run} of the 5-D input ``x5`` (L, M, H, W, I):
        L·M·PH·PW·I elements (the padded input's pixels of that phase, ``fill``
        past the input) plus a tail that the last taps' slices run into."""
        xp = get_array_module(x5)
        plane_h, plane_w, taps = plan
        s = self.stride
        lead, mid, _, _, inner = x5.shape
        size = lead * mid * plane_h * plane_w * inner
        tail = max(offset for _, _, offset in taps) * inner
        planes = {phase: xp.empty(size + tail, dtype=x5.dtype)
                  for phase in sorted({phase for _, phase, _ in taps})}

        def split(lo, hi):
            for (a, b), plane in planes.items():
                # this phase's pixels that a window reads (in floor mode the last
                # rows or columns may lie past every window), then the fill past them
                _embed(plane[:size].reshape(lead, mid, plane_h, plane_w, inner)[lo:hi],
                       x5[lo:hi, :, a::s, b::s][:, :, :plane_h, :plane_w], fill)

        threads.for_blocks(xp, lead, x5.size, split)
        for plane in planes.values():
            plane[size:] = fill
        return planes

    def _separable(self, x5, h_out, w_out, fold, divisor=None):
        """The pooled (L, M, H_out, W_out, I) block of the 5-D input ``x5``
        (L, M, H, W, I) by two 1-D passes, along H then along W (module docstring).
        ``fold(acc, window, out=acc)`` (``xp.maximum`` or ``xp.add``) folds a tap
        into the windows it reaches; ``divisor`` (H_out, W_out), if given, divides
        the result."""
        xp = get_array_module(x5)
        lead, mid, _, w, inner = x5.shape
        columns = self.scratch("columns", (lead, mid, h_out, w, inner), x5.dtype, xp)
        y = xp.empty((lead, mid, h_out, w_out, inner), dtype=x5.dtype)

        # the columns of a chunk of the lead axis are read back from cache
        per_lead = (columns.size + y.size) // max(lead, 1) * x5.dtype.itemsize

        def pool(lo, hi):
            for start, stop in threads.cache_chunks(xp, lo, hi, per_lead):
                self._pool_axis(x5[start:stop], columns[start:stop], 2, fold)
                self._pool_axis(columns[start:stop], y[start:stop], 3, fold)
                if divisor is not None:
                    y[start:stop] /= divisor[:, :, None]

        threads.for_blocks(xp, lead, x5.size, pool)
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

    def _wide(self, dy, plan, last):
        """The output gradient (N, C, H_out, W_out) on the wide grid, zero past the
        outputs, in the layout of :func:`_as5` with ``last``: flat (L·M·PH·PW·I,)."""
        xp = get_array_module(dy)
        plane_h, plane_w, _ = plan
        dy5 = _as5(dy, last)
        lead, mid, _, _, inner = dy5.shape
        wide = xp.empty((lead, mid, plane_h, plane_w, inner), dtype=dy.dtype)

        threads.for_blocks(xp, lead, wide.size, lambda lo, hi: _embed(wide[lo:hi], dy5[lo:hi], 0))
        return wide.reshape(-1)

    def _narrow(self, wide, plan, shape5, last):
        """The outputs (N, C, H_out, W_out), in the layout of :func:`_as5` with
        ``last``, from a flat wide result; ``shape5`` is their (L, M, H_out, W_out, I)."""
        xp = get_array_module(wide)
        plane_h, plane_w, _ = plan
        lead, mid, h_out, w_out, inner = shape5
        grid = wide.reshape(lead, mid, plane_h, plane_w, inner)
        return _as4(xp.ascontiguousarray(grid[:, :, :h_out, :w_out]), last)

    def _spread(self, x_shape, plan, dy_wide, term, last):
        """The input gradient, an (N, C, H, W) view in the layout of :func:`_as5`
        with ``last``, from the wide output gradient ``dy_wide`` (:meth:`_wide`):
        for every tap, ``term(index, start, stop)`` — the gradient that tap
        ``index`` sends from the wide outputs [start, stop) — added at the plane
        positions the tap read, then the planes interleaved into the input's pixels."""
        n, c, h, w = x_shape
        lead, mid, inner = (n, 1, c) if last else (c, n, 1)
        plane_h, plane_w, taps = plan
        s = self.stride
        per_lead = mid * plane_h * plane_w * inner
        xp, dtype = get_array_module(dy_wide), dy_wide.dtype
        planes = {phase: xp.empty(lead * per_lead, dtype=dtype)
                  for phase in sorted({phase for _, phase, _ in taps})}
        # the pixels each phase plane holds; those of no plane (no window reads them) get 0
        extents = {(a, b): (min(len(range(a, h, s)), plane_h), min(len(range(b, w, s)), plane_w))
                   for a, b in planes}
        covered = len(planes) == s * s and all(
            extents[a, b] == (len(range(a, h, s)), len(range(b, w, s))) for a, b in planes)
        dx = (xp.empty if covered else xp.zeros)((lead, mid, h, w, inner), dtype=dtype)

        def add(lo, hi):
            start, stop = lo * per_lead, hi * per_lead
            for plane in planes.values():
                plane[start:stop] = 0
            for index, phase, offset in taps:
                # the slice stays inside this block: the outputs whose reads would
                # cross into the next block are past the wide grid's last real
                # row, and their gradient is zero
                shift = offset * inner
                planes[phase][start + shift:stop] += term(index, start, stop - shift)
            for (a, b), plane in planes.items():
                rows, cols = extents[a, b]
                grid = plane.reshape(lead, mid, plane_h, plane_w, inner)
                dx[lo:hi, :, a::s, b::s][:, :, :rows, :cols] = grid[lo:hi, :, :rows, :cols]

        threads.for_blocks(xp, lead, dx.size, add)
        return _as4(dx, last)


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
        last = is_channels_last(x)
        x5 = _as5(x, last)
        if not train:  # evaluation needs only the max
            self.keep(None)
            return _as4(self._separable(x5, h_out, w_out, xp.maximum), last)
        lead, mid, _, _, inner = x5.shape
        plan = self._plan(h_out, w_out)
        planes = self._phase_planes(x5, plan, -xp.inf)
        size = lead * mid * plan[0] * plan[1] * inner
        y = xp.empty(size, dtype=x.dtype)
        per_lead = size // lead
        # which tap won each window, for backward
        argmax = xp.zeros(size, dtype=xp.uint8)
        improved = xp.empty(size, dtype=xp.bool_)
        tagged = xp.empty(size, dtype=xp.uint8)

        # the running max and its tap stay in cache over the k² taps of a chunk
        chunk_bytes = x.dtype.itemsize + 3

        def pool(lo, hi):
            for start, stop in threads.cache_chunks(xp, lo * per_lead, hi * per_lead, chunk_bytes):
                best = y[start:stop]
                arg, better, tag = argmax[start:stop], improved[start:stop], tagged[start:stop]
                for index, phase, offset in plan[2]:
                    window = planes[phase][start + offset * inner:stop + offset * inner]
                    if index == 0:  # tap (0, 0) lies inside every window
                        best[...] = window
                        continue
                    # taps come in increasing index order, so the last strict improvement
                    # is the largest index that improved: a max, no masked assignment
                    xp.greater(window, best, out=better)
                    xp.multiply(better.view(xp.uint8), xp.uint8(index), out=tag)
                    xp.maximum(arg, tag, out=arg)
                    xp.maximum(best, window, out=best)

        threads.for_blocks(xp, lead, size, pool)
        self.keep((x.shape, plan, argmax, last))
        return self._narrow(y, plan, (lead, mid, h_out, w_out, inner), last)

    def backward(self, dy):
        x_shape, plan, argmax, last = self.take()
        dy_wide = self._wide(dy, plan, last)
        return self._spread(x_shape, plan, dy_wide, lambda index, start, stop: (
            dy_wide[start:stop] * (argmax[start:stop] == index)), last)


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
        last = is_channels_last(x)
        counts = self._counts(xp, x.shape[2:], (h_out, w_out), x.dtype)
        y = self._separable(_as5(x, last), h_out, w_out, xp.add, divisor=counts)
        if train:
            plan = self._plan(h_out, w_out)
            self.keep((x.shape, plan, self._wide_counts(counts, plan), last))
        else:
            self.keep(None)
        return _as4(y, last)

    def backward(self, dy):
        x_shape, plan, counts, last = self.take()
        share = self._wide(dy, plan, last)
        inner = x_shape[1] if last else 1
        share.reshape(-1, counts.size, inner)[...] /= counts[:, None]
        return self._spread(x_shape, plan, share, lambda index, start, stop: share[start:stop], last)


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
