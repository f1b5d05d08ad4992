"""An ordered container of named layers."""

from minids.layers.base import Layer


class Sequential(Layer):
    """Runs ``layers`` forward in order and backward in reverse.

    ``layers`` is a list of layers (named "0", "1", ...) or of (name, layer)
    pairs. ``params``, ``grads`` and ``buffers`` are dicts keyed by qualified
    name ``"<layer>.<tensor>"`` whose values are the layers' own arrays, so an
    optimizer that updates them in place updates the layers.
    """

    def __init__(self, layers):  # no Layer.__init__: params/grads/buffers are derived
        pairs = [item if isinstance(item, tuple) else (str(i), item)
                 for i, item in enumerate(layers)]
        self.names = [name for name, _ in pairs]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"Sequential layer names must be unique, got {self.names}")
        self.layers = [layer for _, layer in pairs]

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
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __repr__(self):
        rows = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.named_layers())
        return f"Sequential(\n{rows}\n)"
