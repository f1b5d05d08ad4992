"""Gradient check: central finite differences against the analytic backward.

For a layer f and a fixed random projection R, the scalar L = Σ f(x)·R has
∂L/∂x = f.backward(R) and ∂L/∂θ = f.grads[θ]. The numeric gradient perturbs
one element at a time by ±h in float64 NumPy on the CPU. On a GPU the same
layer is copied to the device, its analytic gradients computed there with
CuPy and compared with the NumPy numeric ones.

The error of a tensor is max|analytic − numeric| / max(max|analytic|,
max|numeric|): the largest deviation relative to the tensor's scale. It
stays meaningful for elements whose true gradient is near zero, where an
element-wise ratio would only measure rounding. A tensor passes at ≤ 1e-6.

Inputs are drawn away from the kinks of ReLU (|x| ≥ 0.1) and with distinct,
well-separated values for max pooling, so ±h never crosses a kink; ties are
tested separately with hand-computed gradients (tests/test_layers.py).
"""

import copy
from dataclasses import dataclass

import numpy as np

from minids import layers
from minids.backend import to_device, to_host
from minids.layers import SoftmaxNLL
from minids.layers.cases import Case, away_from_zero, normal
from minids.models import build_model

TOLERANCE = 1e-6
STEP = 1e-5


@dataclass
class Result:
    """The check of one tensor: ``case`` name, ``tensor`` ('input' or a parameter name)."""
    case: str
    tensor: str
    shape: tuple
    error: float

    @property
    def passed(self):
        return bool(self.error <= TOLERANCE)


def _reset_dropout(model, seed):
    """Give every layer that draws random numbers (dropout) a fresh generator, so that
    each forward draws the same mask."""
    for layer in getattr(model, "layers", [model]):
        if hasattr(layer, "rng"):
            layer.rng = np.random.default_rng(seed)


def _forward(model, x, labels):
    """The layer's output: its input first, then the labels for a loss (a second input)."""
    return model.forward(x, train=True) if labels is None else model.forward(x, labels, train=True)


def _scalar(model, x, projection, labels, seed):
    """The checked scalar L = Σ y·R (for a loss, y and R are scalars)."""
    _reset_dropout(model, seed)
    return float((_forward(model, x, labels) * projection).sum())


def _analytic(model, x, projection, labels, seed):
    """Analytic gradients {name: array} of L by backward(R); 'input' is dL/dx."""
    _reset_dropout(model, seed)
    _forward(model, x, labels)
    dx = model.backward(projection)
    grads = {name: to_host(g) for name, g in model.grads.items()}
    grads["input"] = to_host(dx)
    return grads


def _numeric(model, x, projection, labels, seed):
    """Central-difference gradients {name: array} of L, on the CPU in float64."""
    tensors = dict(model.params, input=x)
    numeric = {}
    for name, array in tensors.items():
        grad = np.zeros_like(array)
        flat, flat_grad = array.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + STEP
            plus = _scalar(model, x, projection, labels, seed)
            flat[i] = saved - STEP
            minus = _scalar(model, x, projection, labels, seed)
            flat[i] = saved
            flat_grad[i] = (plus - minus) / (2 * STEP)
        numeric[name] = grad
    return numeric


def relative_error(analytic, numeric):
    """max|a − n| / max(max|a|, max|n|); 0 when both are all zero."""
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    return 0.0 if scale == 0 else float(np.abs(analytic - numeric).max() / scale)


def check_case(case, xp=np, seed=0):
    """Check one case on the device of ``xp``; return a list of :class:`Result`."""
    rng = np.random.default_rng(seed)
    model = case.build(rng)
    x = case.make_input(rng)
    labels = case.labels
    _reset_dropout(model, seed)
    projection = rng.standard_normal(np.shape(_forward(model, x, labels)))  # 0-d for a loss
    numeric = _numeric(model, x, projection, labels, seed)
    device_model = copy.deepcopy(model).to(xp)
    analytic = _analytic(device_model, to_device(x, xp), to_device(projection, xp),
                         None if labels is None else to_device(labels, xp), seed)
    results = []
    for name, num in numeric.items():
        if name not in analytic:
            raise AssertionError(f"{case.name}: backward gave no gradient for {name}")
        results.append(Result(case.name, name, num.shape, relative_error(analytic[name], num)))
    return results


def _tiny_network(name):
    """Builder of a float64 NiN-shaped network from :func:`build_model`, 3×10×10 → 4
    classes, narrow enough for finite differences; DS-NiN gets the real DCT atoms.

    Biases are drawn away from zero: where ReLU zeroes every input channel of a
    pixel, the next pre-activation equals its bias, and a zero bias would sit
    exactly on the next ReLU's kink.
    """
    def build(rng):
        net = build_model(name, in_channels=3, num_classes=4, dtype=np.float64,
                          widths=(6, 5, 4, 6, 5, 4, 5, 4), rng=rng)
        for key, bias in net.params.items():
            if key.endswith(".bias"):
                bias[...] = away_from_zero(*bias.shape)(rng)
        return _NetWithLoss(net)
    return build


class _NetWithLoss:
    """A network followed by SoftmaxNLL, checked as one function of (x, labels)."""

    def __init__(self, net):
        self.net, self.loss = net, SoftmaxNLL()
        self.layers = net.layers

    @property
    def params(self):
        return self.net.params

    @property
    def grads(self):
        return self.net.grads

    def forward(self, x, labels, train=True):
        return self.loss.forward(self.net.forward(x, train=train), labels, train=train)

    def backward(self, dy=None):
        return self.net.backward(self.loss.backward(dy))

    def to(self, xp):
        self.net.to(xp)
        return self


#: every layer's own cases (``gradcheck_cases()`` of each class in minids.layers), then two
#: whole networks with their loss
CASES = [case for name in layers.__all__ for case in getattr(layers, name).gradcheck_cases()] + [
    Case("network nin", _tiny_network("nin"), normal(2, 3, 10, 10), labels=np.array([1, 3])),
    Case("network ds-nin", _tiny_network("ds-nin"), normal(2, 3, 10, 10), labels=np.array([2, 0])),
]


def run(xp=np, seed=0, only=None):
    """Check every case (or those whose name starts with ``only``); return all results."""
    cases = [c for c in CASES if only is None or c.name.startswith(only)]
    if not cases:
        names = ", ".join(c.name for c in CASES)
        raise ValueError(f"no gradient-check case named {only!r}; known: {names}")
    return [result for case in cases for result in check_case(case, xp, seed)]
