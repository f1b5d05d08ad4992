"""Element-wise activations."""

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import Layer
from minids.layers.cases import Case, away_from_zero

#: the axis orders under which a 4-D (N, C, H, W) activation may lie C-contiguous in
#: memory (minids.layers.base): channel-major, then channels-last; with their inverses
_STORAGE_ORDERS = (((1, 0, 2, 3), (1, 0, 2, 3)), ((0, 2, 3, 1), (0, 3, 1, 2)))


def _storage(x):
    """(stored, inverse): the C-contiguous array that the 4-D view ``x`` reorders
    (``x`` is ``stored.transpose(inverse)``); None when ``x`` lies in neither of
    minids' layouts. A view that lies in both counts as channel-major."""
    if x.ndim != 4:
        return None
    for axes, inverse in _STORAGE_ORDERS:
        stored = x.transpose(axes)
        if stored.flags.c_contiguous:
            return stored, inverse
    return None


class ReLU(Layer):
    """y = max(x, 0), any shape; the gradient at x = 0 is taken as 0.

    ``inplace=True`` (used by :class:`~minids.layers.Sequential` where no one
    else holds the array) overwrites ``x`` in forward and ``dy`` in backward
    instead of allocating new arrays, and keeps the mask in a reused block;
    the results are the same. Evaluation (``train=False``) keeps no mask.
    """

    @classmethod
    def gradcheck_cases(cls):
        return [Case("relu", lambda rng: ReLU(), away_from_zero(2, 3, 5, 5))]

    def forward(self, x, train=True, inplace=False):
        xp = get_array_module(x)
        storage = _storage(x) if inplace else None
        if storage is not None:
            stored, inverse = storage
            flat = stored.reshape(-1)
            # evaluation needs no mask: one pass
            mask = self.scratch("mask", flat.shape, xp.bool_, xp) if train else None
            # the mask is computed from the clipped values while they are in cache
            chunk_bytes = flat.dtype.itemsize + 1
            zero = threads.zeros_operand(xp, chunk_bytes, flat.dtype)

            def relu(lo, hi):
                for start, stop in threads.cache_chunks(xp, lo, hi, chunk_bytes):
                    chunk, chunk_zero = flat[start:stop], zero[:stop - start]
                    xp.maximum(chunk, chunk_zero, out=chunk)
                    if mask is not None:
                        xp.greater(chunk, chunk_zero, out=mask[start:stop])

            threads.for_blocks(xp, flat.size, flat.size, relu)
            self.keep(mask.reshape(stored.shape).transpose(inverse) if train else None)
            return x
        y = xp.maximum(x, 0, out=x if inplace else None)
        self.keep(y > 0 if train else None)
        return y

    def backward(self, dy, inplace=False):
        xp = get_array_module(dy)
        mask = self.take()
        storage = _storage(dy) if inplace and mask.shape == dy.shape else None
        mask_storage = _storage(mask) if storage is not None else None
        if mask_storage is not None and mask_storage[1] == storage[1]:  # the same layout
            flat = storage[0].reshape(-1)
            # 0/1 bytes: NumPy multiplies by them faster than by bools
            keep = mask_storage[0].reshape(-1).view(xp.uint8)
            threads.for_blocks(xp, flat.size, flat.size,
                                lambda lo, hi: xp.multiply(flat[lo:hi], keep[lo:hi], out=flat[lo:hi]))
            return dy
        return xp.multiply(dy, mask, out=dy if inplace else None)
