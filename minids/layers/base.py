"""The layer protocol shared by every layer, and the activation memory layout.

A layer follows Torch7's ``nn`` split, in CS231n's plain style:

* ``forward(x, train=True)`` returns ``y`` and keeps what backward needs;
* ``backward(dy)`` returns ``dx`` and fills ``grads`` (same keys as ``params``).

What forward keeps for backward goes through :meth:`Layer.keep` and comes
back once through :meth:`Layer.take`: a backward without a training forward
before it raises the same one-line ValueError in every layer.

``params`` maps a name to a trainable array; ``buffers`` maps a name to a fixed
array (such as a DCT weight) that is saved with the model but never trained.
The weights file stores every array of both under the layer's name, and
``file_attrs()`` (the layer's settings) beside them, so a new layer with
weights needs no change to the file format.
Arrays are NumPy or CuPy; a layer takes the array module from its input.

Memory layout: activations are (N, C, H, W) at every layer's boundary, with
any strides. Layers that allocate a 4-D result allocate it channel-major,
(C, N, H, W) in memory, and hand out the (N, C, H, W) view given by
:func:`swap_nc`. A convolution then reads its input and writes its output as
one contiguous (C, N·H·W) matrix, so a chain of layers runs its GEMMs without
transposing copies. A plain C-contiguous NCHW input works too (one copy).

The one other layout is channels-last, (N, H, W, C) in memory
(:func:`is_channels_last`; the view :func:`channels_last_view` hands out):
a k×k convolution writes it where :class:`~minids.layers.Sequential` asks
(its output feeds a 1×1 convolution), a 1×1 convolution, a ReLU and a
pooling keep their input's layout, and a fixed convolution's channel DCT
reads either (docs/performance.md, "Channels-last 1×1 convolutions": the
1×1 GEMMs run faster on it).
"""

import numpy as np

from minids.backend import get_array_module, to_device


class Layer:
    """Base class: no parameters, no buffers; subclasses override the passes."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}

    #: what the last training forward kept for backward (see :meth:`keep`)
    _kept = None

    def forward(self, x, train=True):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def keep(self, state):
        """Hold ``state`` for the next backward; None (what an evaluation forward keeps) holds nothing."""
        self._kept = state

    def take(self):
        """The state :meth:`keep` holds, released; ValueError when no training forward came first."""
        state, self._kept = self._kept, None
        if state is None:
            raise ValueError(f"{self!r}: backward needs a forward pass with train=True first")
        return state

    @classmethod
    def gradcheck_cases(cls):
        """The :class:`minids.layers.cases.Case` list that ``minids gradcheck`` runs for this class."""
        return []

    #: the total of :func:`minids.flops.model_flops` this layer's FLOPs count in ("conv" or "pool"),
    #: None for a layer whose cost is not counted (ReLU, dropout, the loss)
    flops_kind = None

    def output_shape(self, shape):
        """The (C, H, W) of one image's output for input (C, H, W); ValueError when it does not fit."""
        return tuple(shape)

    def flops(self, shape):
        """Forward FLOPs per image on an input of (C, H, W) (see :mod:`minids.flops`)."""
        return 0

    def factored_flops(self, shape, channels_last=False):
        """The FLOPs minids really computes, where that differs from :meth:`flops` (else None);
        ``channels_last``: the layer writes its output channels-last (a network asks it to)."""
        return None

    def file_attrs(self):
        """Settings stored with the layer's arrays in a weights file (plain ints, bools, int arrays)."""
        return {}

    def to(self, xp):
        """Move parameters and buffers to the device of array module ``xp``."""
        for store in (self.params, self.buffers):
            for name, array in store.items():
                store[name] = to_device(array, xp)
        self.grads = {}
        self.__dict__.pop("_scratch", None)
        return self

    def scratch(self, name, shape, dtype, xp):
        """A C-contiguous array of ``shape`` kept by the layer for reuse; contents undefined.

        For large temporaries that never leave the layer (im2col columns, masks):
        reusing them saves the page faults of a fresh allocation every step. The
        array for ``name`` is a view of one flat block that grows when needed, so
        a smaller batch reuses it too. Valid until the next call with ``name``.
        """
        size = int(np.prod(shape))
        store = self.__dict__.setdefault("_scratch", {})
        block = store.get(name)
        if (block is None or block.size < size or block.dtype != dtype
                or get_array_module(block) is not xp):
            block = store[name] = xp.empty(size, dtype=dtype)
        return block[:size].reshape(shape)

    def __repr__(self):
        return f"{type(self).__name__}()"


def check_rank(layer, x, rank=4):
    """Raise ValueError naming ``layer`` when ``x`` is not ``rank``-D (NCHW for 4)."""
    if x.ndim != rank:
        layout = "NCHW" if rank == 4 else f"{rank}-D"
        raise ValueError(f"{layer!r} expects a {layout} input, got shape {tuple(x.shape)}")


def as_dtype(dtype):
    """Normalise a dtype argument (float32 by default) to a NumPy dtype."""
    return np.dtype(np.float32 if dtype is None else dtype)


def swap_nc(x):
    """Swap the first two axes of a 4-D array (a view); 2-D arrays pass through.

    (N, C, H, W) <-> (C, N, H, W). It is its own inverse.
    """
    return x.transpose(1, 0, 2, 3) if x.ndim == 4 else x


#: the axis orders under which a 4-D (N, C, H, W) activation may lie C-contiguous in
#: memory: channel-major, then channels-last; each with its inverse
_STORAGE_ORDERS = (((1, 0, 2, 3), (1, 0, 2, 3)), ((0, 2, 3, 1), (0, 3, 1, 2)))


def storage(x):
    """(stored, inverse): the C-contiguous array that the 4-D view ``x`` reorders
    (``x`` is ``stored.transpose(inverse)``); None when ``x`` lies in neither of
    the two layouts. A view that lies in both (a 1-channel or 1-image array)
    counts as channel-major."""
    if x.ndim != 4:
        return None
    for axes, inverse in _STORAGE_ORDERS:
        stored = x.transpose(axes)
        if stored.flags.c_contiguous:
            return stored, inverse
    return None


def is_channels_last(x):
    """True when the (N, C, H, W) view ``x`` lies channels-last, (N, H, W, C)
    C-contiguous in memory (and not also channel-major: :func:`storage`)."""
    found = storage(x)
    return found is not None and found[1] == _STORAGE_ORDERS[1][1]


def channels_last_view(rows, n, h, w):
    """The (N, C, H, W) view of a channels-last (N·H·W, C) matrix ``rows``."""
    return rows.reshape(n, h, w, rows.shape[1]).transpose(0, 3, 1, 2)


def channel_rows(x):
    """``x`` (N, C, H, W) as a (C, N·H·W) matrix: a view where ``x`` lies
    channel-major or channels-last (then the transpose of a C-contiguous
    (N·H·W, C) matrix, which a GEMM reads as it is), else a channel-major copy."""
    n, c, h, w = x.shape
    if is_channels_last(x):
        return x.transpose(0, 2, 3, 1).reshape(n * h * w, c).T
    xp = get_array_module(x)
    return xp.ascontiguousarray(swap_nc(x)).reshape(c, n * h * w)
