"""im2col / col2im, vectorised over batch and pixels, without a padded copy.

The only Python loop runs over the k×k kernel offsets; each offset moves one
strided slice of shape (C, N, H_out', W_out') at once (on NumPy, blocks of
channels in parallel threads), where the primes mark
the output positions whose tap falls inside the input. Taps that fall in the
zero padding are written as zeros (im2col) or skipped (col2im), so neither
function builds a padded copy of the input.

Column layout: ``cols[c*k*k + i*k + j, n*H_out*W_out + h*W_out + w]`` holds the
input pixel that kernel tap (i, j) of channel c sees at output position (h, w)
of sample n, so ``weight.reshape(C_out, C*k*k) @ cols`` is the whole batch's
convolution in one GEMM, channel-major (C_out, N·H_out·W_out).
"""

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import swap_nc


def output_size(size, k, stride, padding):
    """Output length of a convolution along one axis (floor mode)."""
    return (size + 2 * padding - k) // stride + 1


def tap_range(offset, size, out, stride, padding):
    """Output positions [lo, hi) whose tap at kernel ``offset`` lies inside the input.

    Position r reads input index ``offset - padding + stride * r``; returns
    (lo, hi, first input index) with hi ≤ lo when no position does.
    """
    start = offset - padding
    lo = max(0, -(start // stride)) if start < 0 else 0
    hi = min(out, (size - 1 - start) // stride + 1) if start < size else 0
    return lo, hi, start + stride * lo


def _taps(k, stride, padding, h, w, h_out, w_out):
    """Yield (i, j, output rows slice, output cols slice, input rows slice, input cols slice)."""
    for i in range(k):
        r0, r1, a = tap_range(i, h, h_out, stride, padding)
        for j in range(k):
            c0, c1, b = tap_range(j, w, w_out, stride, padding)
            if r1 <= r0 or c1 <= c0:
                yield i, j, None, None, None, None
                continue
            yield (i, j, slice(r0, r1), slice(c0, c1),
                   slice(a, a + stride * (r1 - r0 - 1) + 1, stride),
                   slice(b, b + stride * (c1 - c0 - 1) + 1, stride))


def im2col(x, k, stride, padding, out=None):
    """Unfold ``x`` (N, C, H, W), any strides, into columns (C*k*k, N*H_out*W_out).

    ``out``, if given, is a C-contiguous array of that shape to fill.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    h_out = output_size(h, k, stride, padding)
    w_out = output_size(w, k, stride, padding)
    xc = swap_nc(x)
    shape = (c, k, k, n, h_out, w_out)
    cols = xp.empty(shape, dtype=x.dtype) if out is None else out.reshape(shape)
    taps = list(_taps(k, stride, padding, h, w, h_out, w_out))

    def unfold(lo, hi):
        for i, j, rows, columns, in_rows, in_cols in taps:
            dst = cols[lo:hi, i, j]
            if rows is None:
                dst[...] = 0
                continue
            # zero the border strips whose tap lies in the padding, then copy the inside
            dst[:, :, :rows.start] = 0
            dst[:, :, rows.stop:] = 0
            dst[:, :, rows, :columns.start] = 0
            dst[:, :, rows, columns.stop:] = 0
            dst[:, :, rows, columns] = xc[lo:hi, :, in_rows, in_cols]

    threads.for_blocks(xp, c, cols.size, unfold)
    return cols.reshape(c * k * k, n * h_out * w_out)


def col2im(cols, x_shape, k, stride, padding, out=None):
    """Fold columns (C*k*k, N*H_out*W_out) back to an (N, C, H, W) view, summing overlaps.

    The adjoint of :func:`im2col`: it turns column gradients into the input
    gradient. ``out``, if given, is a zero-filled (C, N, H, W) array (or view)
    to accumulate into; otherwise a new channel-major one is allocated.
    """
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    h_out = output_size(h, k, stride, padding)
    w_out = output_size(w, k, stride, padding)
    cols = cols.reshape(c, k, k, n, h_out, w_out)
    dx = xp.zeros((c, n, h, w), dtype=cols.dtype) if out is None else out
    taps = [tap for tap in _taps(k, stride, padding, h, w, h_out, w_out) if tap[2] is not None]

    def fold(lo, hi):
        for i, j, rows, columns, in_rows, in_cols in taps:
            dx[lo:hi, :, in_rows, in_cols] += cols[lo:hi, i, j, :, rows, columns]

    threads.for_blocks(xp, c, cols.size, fold)
    return swap_nc(dx)
