"""im2col / col2im, vectorised over batch and pixels.

The only Python loop runs over the k×k kernel offsets; each offset moves one
strided slice of shape (C, N, H_out, W_out) at once.

Column layout: ``cols[c*k*k + i*k + j, n*H_out*W_out + h*W_out + w]`` holds the
input pixel that kernel tap (i, j) of channel c sees at output position (h, w)
of sample n, so ``weight.reshape(C_out, C*k*k) @ cols`` is the whole batch's
convolution in one GEMM, channel-major (C_out, N·H_out·W_out).
"""

from minids.backend import get_array_module
from minids.layers.base import swap_nc


def output_size(size, k, stride, padding):
    """Output length of a convolution along one axis (floor mode)."""
    return (size + 2 * padding - k) // stride + 1


def im2col(x, k, stride, padding):
    """Unfold ``x`` (N, C, H, W), any strides, into columns (C*k*k, N*H_out*W_out)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    h_out = output_size(h, k, stride, padding)
    w_out = output_size(w, k, stride, padding)
    xc = swap_nc(x)
    if padding:
        padded = xp.zeros((c, n, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
        padded[:, :, padding:padding + h, padding:padding + w] = xc
        xc = padded
    cols = xp.empty((c, k, k, n, h_out, w_out), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xc[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
    return cols.reshape(c * k * k, n * h_out * w_out)


def col2im(cols, x_shape, k, stride, padding):
    """Fold columns (C*k*k, N*H_out*W_out) back to an (N, C, H, W) view, summing overlaps.

    The adjoint of :func:`im2col`: it turns column gradients into the input gradient.
    """
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    h_out = output_size(h, k, stride, padding)
    w_out = output_size(w, k, stride, padding)
    cols = cols.reshape(c, k, k, n, h_out, w_out)
    dx = xp.zeros((c, n, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride] += cols[:, i, j]
    if padding:
        dx = dx[:, :, padding:padding + h, padding:padding + w]
    return swap_nc(dx)
