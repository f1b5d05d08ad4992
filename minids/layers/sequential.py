"""An ordered container of named layers."""

from minids.layers.activation import ReLU
from minids.layers.base import Layer
from minids.layers.conv import Conv2d
from minids.layers.dropout import Dropout


class Sequential(Layer):
    """Runs ``layers`` forward in order and backward in reverse.

    ``layers`` is a list of layers (named "0", "1", ...) or of (name, layer)
    pairs. ``params``, ``grads`` and ``buffers`` are dicts keyed by qualified
    name ``"<layer>.<tensor>"`` whose values are the layers' own arrays, so an
    optimizer that updates them in place updates the layers.

    A ReLU right after a convolution runs in place: the convolution's output is
    a new array that nothing else holds, and so is the gradient that reaches
    the ReLU in backward when some later layer (not a Dropout or ReLU, which
    may pass it through) made it.

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

    def _inplace_relus(self):
        """Indices of the ReLUs that may run in place (see the class docstring)."""
        layers = self.layers
        return {i for i, layer in enumerate(layers)
                if isinstance(layer, ReLU) and i > 0 and isinstance(layers[i - 1], Conv2d)
                and any(not isinstance(later, (ReLU, Dropout)) for later in layers[i + 1:])}

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
        inplace = self._inplace_relus()
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, train, inplace=True) if i in inplace else layer.forward(x, train)
        return x

    def backward(self, dy):
        inplace = self._inplace_relus()
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            dy = layer.backward(dy, inplace=True) if i in inplace else layer.backward(dy)
        return dy

    def __repr__(self):
        rows = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.named_layers())
        return f"Sequential(\n{rows}\n)"
