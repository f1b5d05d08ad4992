"""Counting exact zeros in weights (the paper's Figure 7 and filter pruning).

Only exact zeros count (``-0.0`` is a zero, a tiny non-zero or NaN is not):
the shrink step of :class:`minids.optim.MomentumShrink` produces exact zeros.
Figure 7 counts the zero coefficients of the coefficient layers, the 1x1
convs that follow each fixed DCT conv, over their weight tensors only: pass
weight tensors, not biases. Arrays may be NumPy or CuPy; results are Python
floats and ints.
"""

from minids.backend import get_array_module
from minids.errors import MinidsError


def _zeros(array):
    """Number of exactly-zero entries of ``array`` (a Python int)."""
    xp = get_array_module(array)
    return int(array.size) - int(xp.count_nonzero(array))


def zero_fraction(array):
    """Fraction in [0, 1] of the entries of ``array`` (any shape) that are exactly zero."""
    if array.size == 0:
        raise MinidsError("cannot measure the sparsity of an empty array")
    return _zeros(array) / int(array.size)


def layer_sparsity(weights):
    """Zero fraction per layer: dict name -> weight array, returns dict name -> float."""
    return {name: zero_fraction(w) for name, w in weights.items()}


def overall_sparsity(weights):
    """Zero fraction over all entries of all arrays in ``weights`` pooled together.

    Large layers weigh more than small ones (this is not the mean of
    :func:`layer_sparsity`).
    """
    total = sum(int(w.size) for w in weights.values())
    if total == 0:
        raise MinidsError("cannot measure the sparsity of no weights")
    return sum(_zeros(w) for w in weights.values()) / total


def _check_oihw(w):
    if w.ndim < 2:
        raise MinidsError(f"expected an (out, in, ...) weight, got shape {tuple(w.shape)}")


def zero_filters(w):
    """Number of output channels ``o`` with ``w[o]`` entirely zero; ``w`` is (O, I, kH, kW) or (O, I)."""
    _check_oihw(w)
    xp = get_array_module(w)
    return int(xp.count_nonzero(~xp.any(w.reshape(w.shape[0], -1) != 0, axis=1)))


def zero_inputs(w):
    """Number of input channels ``i`` with ``w[:, i]`` entirely zero (over every output)."""
    _check_oihw(w)
    xp = get_array_module(w)
    per_input = xp.swapaxes(w, 0, 1).reshape(w.shape[1], -1)
    return int(xp.count_nonzero(~xp.any(per_input != 0, axis=1)))
