"""The same network in PyTorch, for the benchmarks only (never a minids dependency).

:func:`to_torch` converts a minids :class:`~minids.models.Network` layer by
layer, weights included, so both frameworks run the identical model, pruned
widths included. To compare like with like, a fixed
(dictionary) convolution becomes a frozen ``nn.Conv2d`` built *without* a
bias, followed by a separate trainable :class:`Bias`: with the bias inside the
conv, PyTorch's CPU backward would compute the frozen weight's gradient anyway.
ReLUs run in place, as minids' do inside a network.
"""

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from minids.layers import (AvgPool2d, Conv2d, Dropout, GlobalAvgPool, MaxPool2d, ReLU)


class Bias(nn.Module):
    """Adds a trainable per-channel bias to an (N, C, H, W) input."""

    def __init__(self, bias):
        super().__init__()
        self.bias = nn.Parameter(torch.from_numpy(np.array(bias, dtype=np.float32)))

    def forward(self, x):
        return x + self.bias[:, None, None]


def to_torch(model):
    """An ``nn.Sequential`` equal to the minids network ``model`` (host, float32)."""
    modules = []
    for name, layer in model.named_layers():
        if isinstance(layer, Conv2d):
            conv = nn.Conv2d(layer.c_in, layer.c_out, layer.k, layer.stride, layer.padding,
                             bias=not layer.fixed)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.asarray(layer.weight, dtype=np.float32)))
                if not layer.fixed:
                    conv.bias.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float32)))
            if layer.fixed:
                conv.weight.requires_grad_(False)
                modules += [(name, conv), (name + "_bias", Bias(layer.bias))]
            else:
                modules.append((name, conv))
        elif isinstance(layer, ReLU):
            modules.append((name, nn.ReLU(inplace=True)))
        elif isinstance(layer, MaxPool2d):
            modules.append((name, nn.MaxPool2d(layer.k, layer.stride, ceil_mode=layer.ceil_mode)))
        elif isinstance(layer, AvgPool2d):
            modules.append((name, nn.AvgPool2d(layer.k, layer.stride, ceil_mode=layer.ceil_mode,
                                               count_include_pad=False)))
        elif isinstance(layer, Dropout):
            modules.append((name, nn.Dropout(layer.p)))
        elif isinstance(layer, GlobalAvgPool):
            modules += [(name, nn.AdaptiveAvgPool2d(1)), (name + "_flat", nn.Flatten())]
        else:
            raise TypeError(f"no PyTorch equivalent for layer {name}: {layer!r}")
    return nn.Sequential(OrderedDict(modules))


class TorchMomentumShrink:
    """MomentumShrink's update in PyTorch, in place:

    u = w + eta·(w − w_prev) − (1 − eta)·lr·g;  w ← sign(u)·max(|u| − zeta, 0).
    """

    def __init__(self, params, lr, momentum=0.9, zeta=0.0):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.zeta = lr, momentum, zeta
        self.prev = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, prev in zip(self.params, self.prev):
            u = p + self.momentum * (p - prev) - (1 - self.momentum) * self.lr * p.grad
            if self.zeta:
                u = torch.sign(u) * torch.clamp(u.abs() - self.zeta, min=0)
            prev.copy_(p)
            p.copy_(u)
