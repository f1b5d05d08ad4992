"""Gradient-check cases: each layer class lists its own (``gradcheck_cases()``).

A :class:`Case` says how to build a float64 layer and draw its input; the
input makers below keep ±h clear of kinks (docs/framework.md). The check
itself is :mod:`minids.gradcheck`.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Case:
    """One gradient-check case: a float64 layer and how to draw its input.

    ``build(rng)`` → layer; ``make_input(rng)`` → float64 NumPy input;
    ``labels`` (for a loss: the class of each row) or None.
    """
    name: str
    build: Callable
    make_input: Callable
    labels: np.ndarray = None


def normal(*shape):
    """Input maker: standard normal values of ``shape``."""
    return lambda rng: rng.standard_normal(shape)


def away_from_zero(*shape):
    """Input maker: normal values pushed to |x| ≥ 0.1 (clear of ReLU's kink)."""
    def make(rng):
        x = rng.standard_normal(shape)
        return np.sign(x) * (np.abs(x) + 0.1)
    return make


def distinct(*shape):
    """Input maker: a random permutation of values spaced 0.01 apart (no near ties)."""
    def make(rng):
        size = int(np.prod(shape))
        return (rng.permutation(size) * 0.01 - size * 0.005).reshape(shape)
    return make
