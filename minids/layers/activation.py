"""Element-wise activations."""

from minids.backend import get_array_module
from minids.backend import threads
from minids.layers.base import Layer, storage
from minids.layers.cases import Case, away_from_zero


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
        laid = storage(x) if inplace else None
        if laid is not None:
            stored, inverse = laid
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
        laid = storage(dy) if inplace and mask.shape == dy.shape else None
        mask_laid = storage(mask) if laid is not None else None
        if mask_laid is not None and mask_laid[1] == laid[1]:  # the same layout
            flat = laid[0].reshape(-1)
            # 0/1 bytes: NumPy multiplies by them faster than by bools
            keep = mask_laid[0].reshape(-1).view(xp.uint8)
            threads.for_blocks(xp, flat.size, flat.size,
                                lambda lo, hi: xp.multiply(flat[lo:hi], keep[lo:hi], out=flat[lo:hi]))
            return dy
        return xp.multiply(dy, mask, out=dy if inplace else None)
