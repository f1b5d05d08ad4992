"""An ordered container of named layers."""

from minids.layers.activation import ReLU
from minids.layers.base import Layer
from minids.layers.conv import Conv2d
from minids.layers.dropout import Dropout
from minids.layers.pooling import MaxPool2d


class Sequential(Layer):
    """Runs ``layers`` forward in order and backward in reverse.

    ``layers`` is a list of layers (named "0", "1", ...) or of (name, layer)
    pairs. ``params``, ``grads`` and ``buffers`` are dicts keyed by qualified
    name ``"<layer>.<tensor>"`` whose values are the layers' own arrays, so an
    optimizer that updates them in place updates the layers.

    A ReLU right before a max pooling runs after it instead, on the pooled
    output (a quarter of the values for 3×3 windows of stride 2): the max of
    the clipped values is the clipped max, and the gradient is the same bit
    for bit (docs/performance.md, "ReLU before max pooling").

    A ReLU that runs right after a convolution or a max pooling runs in
    place: that layer's output is a new array that nothing else holds, and so
    is the gradient that reaches the ReLU in backward when some layer that
    runs later (not a Dropout or ReLU, which may pass it through) made it.

    A k×k convolution whose output reaches a 1×1 convolution through ReLUs
    only writes it channels-last (``channels_last=True``), and the 1×1
    convolutions, ReLUs and pooling behind it keep that layout: the 1×1
    GEMMs run faster on it (docs/performance.md, "Channels-last 1×1
    convolutions"); the results are the same.

    ``needs_input_grad`` (True by default) mirrors the first layer's flag:
    set it to False on a network whose input gradient is not wanted, and
    backward returns None without computing it.
    """

    def __init__(self, layers):  # no Layer.__init__: params/grads/buffers are derived
        pairs = [item if isinstance(item, tuple) else (str(i), item)
                 for i, item in enumerate(layers)]
        self.names = [name for name, _ in pairs]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"Sequential layer names must be unique, got {self.names}")
        self.layers = [layer for _, layer in pairs]

    @property
    def needs_input_grad(self):
        return getattr(self.layers[0], "needs_input_grad", True)

    @needs_input_grad.setter
    def needs_input_grad(self, value):
        if not hasattr(self.layers[0], "needs_input_grad"):
            raise ValueError(f"{self.layers[0]!r} always computes its input gradient")
        self.layers[0].needs_input_grad = bool(value)

    def _schedule(self):
        """(order, in_place, channels_last): the indices of the layers in the order
        forward runs them (backward runs it reversed), each ReLU before a max
        pooling moved after it; the set of the ReLUs that run in place and that of
        the convolutions asked for a channels-last output (class docstring)."""
        layers = self.layers
        order = list(range(len(layers)))
        for i in range(len(layers) - 1):
            if isinstance(layers[i], ReLU) and isinstance(layers[i + 1], MaxPool2d):
                order[i], order[i + 1] = i + 1, i
        in_place = {i for position, i in enumerate(order)
                    if isinstance(layers[i], ReLU) and position > 0
                    and isinstance(layers[order[position - 1]], (Conv2d, MaxPool2d))
                    and any(not isinstance(layers[later], (ReLU, Dropout)) for later in order[position + 1:])}
        channels_last = set()
        for position, i in enumerate(order):
            if isinstance(layers[i], Conv2d) and not layers[i].is_pointwise:
                behind = next((layers[j] for j in order[position + 1:]
                               if not isinstance(layers[j], ReLU)), None)
                if isinstance(behind, Conv2d) and behind.is_pointwise:
                    channels_last.add(i)
        return order, in_place, channels_last

    def channels_last_outputs(self):
        """The names of the layers whose output forward asks to be channels-last."""
        _, _, channels_last = self._schedule()
        return {self.names[i] for i in channels_last}

    def named_layers(self):
        """List of (name, layer) pairs in order."""
        return list(zip(self.names, self.layers))

    def __getitem__(self, name):
        return self.layers[self.names.index(name)]

    def _collect(self, attribute):
        return {f"{name}.{key}": array
                for name, layer in self.named_layers()
                for key, array in getattr(layer, attribute).items()}

    @property
    def params(self):
        return self._collect("params")

    @property
    def grads(self):
        return self._collect("grads")

    @property
    def buffers(self):
        return self._collect("buffers")

    def to(self, xp):
        for layer in self.layers:
            layer.to(xp)
        return self

    def forward(self, x, train=True):
        order, in_place, channels_last = self._schedule()
        for i in order:
            layer = self.layers[i]
            if i in in_place:
                x = layer.forward(x, train, inplace=True)
            elif i in channels_last:
                x = layer.forward(x, train, channels_last=True)
            else:
                x = layer.forward(x, train)
        return x

    def backward(self, dy):
        order, in_place, _ = self._schedule()
        for i in reversed(order):
            layer = self.layers[i]
            dy = layer.backward(dy, inplace=True) if i in in_place else layer.backward(dy)
        return dy

    def __repr__(self):
        rows = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.named_layers())
        return f"Sequential(\n{rows}\n)"
