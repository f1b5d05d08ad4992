import numpy as np
import pytest

from minids.errors import MinidsError
from minids.sparsity import (layer_sparsity, overall_sparsity, zero_filters, zero_fraction,
                             zero_inputs)


def test_zero_fraction_counts_exact_zeros_only():
    a = np.array([0.0, -0.0, 1e-30, np.nan, 2.0, 0.0, 0.0, 3.0], dtype=np.float32)
    f = zero_fraction(a)
    assert f == 4 / 8 and isinstance(f, float)
    assert zero_fraction(np.zeros((2, 3))) == 1.0
    assert zero_fraction(np.ones((2, 3))) == 0.0
    with pytest.raises(MinidsError):
        zero_fraction(np.zeros((0, 3)))


def test_layer_and_overall_sparsity_pool_entries():
    a = np.zeros((4, 10, 1, 1))          # 40 entries, 40 zeros
    b = np.ones((10, 6, 1, 1))           # 60 entries, 30 + 3 = 33 zeros
    b[:, :3] = 0
    b[1, 3:] = 0
    layers = layer_sparsity({"c1": a, "c2": b})
    assert layers == {"c1": 1.0, "c2": 33 / 60}
    overall = overall_sparsity({"c1": a, "c2": b})
    assert overall == (40 + 33) / 100 and isinstance(overall, float)
    assert overall != (layers["c1"] + layers["c2"]) / 2
    with pytest.raises(MinidsError):
        overall_sparsity({})


def test_zero_filters_and_inputs():
    w = np.arange(1, 5 * 4 * 3 * 3 + 1, dtype=np.float32).reshape(5, 4, 3, 3)
    w[1] = 0                 # output 1 is dead
    w[3] = 0                 # output 3 is dead
    w[:, 2] = 0              # input 2 unused by every output
    w[0, 0] = 0              # input 0 unused by output 0 only: does not count
    w[4, 1, 1, 1] = 0        # a single zero does not empty anything
    assert zero_filters(w) == 2 and isinstance(zero_filters(w), int)
    assert zero_inputs(w) == 1 and isinstance(zero_inputs(w), int)
    w[:, 3] = 0
    assert zero_inputs(w) == 2
    assert zero_filters(w[:, :, 0, 0]) == 2   # 2-D (O, I) weights work too
    assert zero_filters(np.zeros((7, 3, 1, 1))) == 7
    assert zero_inputs(np.zeros((7, 3, 1, 1))) == 3
    assert zero_filters(np.ones((7, 3, 1, 1))) == 0
    with pytest.raises(MinidsError):
        zero_filters(np.zeros(5))
