"""Dropout masks from the splitmix64 stream: hand-computed values, the same on NumPy and CuPy."""

import numpy as np
import pytest

from helpers import hand_splitmix64
from minids.backend import gpu_available
from minids.hashing import hashed_uniform
from minids.layers import Dropout
from minids.models import build_model


def test_hashed_uniform_by_hand_near_the_wrap_around():
    key = 2**64 - 3  # key + i wraps past 2**64 at i = 3
    values32 = hashed_uniform(key, (2, 3), np, np.float32)
    values64 = hashed_uniform(key, (6,), np, np.float64)
    for i in range(6):
        z = hand_splitmix64((key + i) % 2**64)
        assert values32.reshape(-1)[i] == np.float32((z >> 40) / 2**24)
        assert values64[i] == (z >> 11) / 2**53
    assert values32.dtype == np.float32 and values32.shape == (2, 3)


def test_hashed_uniform_is_uniform_and_keys_differ():
    u = hashed_uniform(12345, (200_000,), np, np.float32)
    assert 0.0 <= u.min() and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.abs(counts - 20_000).max() < 5 * np.sqrt(20_000)  # ~5 sigma
    assert not np.array_equal(u[:1000], hashed_uniform(12346, (1000,), np, np.float32))


def test_dropout_draws_one_key_per_mask_from_the_run_generator():
    rng = np.random.default_rng(7)
    layer = Dropout(0.4, np.random.default_rng(7))
    x = np.ones((3, 4, 5, 5), np.float32)
    y = layer.forward(x)
    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    keep = hashed_uniform(key, (4, 3, 5, 5), np, np.float32) >= 0.4  # drawn channel-major
    np.testing.assert_array_equal(y, keep.transpose(1, 0, 2, 3) * np.float32(1 / 0.6))
    assert build_model("nin", in_channels=1).mask_stream == "splitmix64"


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
def test_cupy_draws_the_same_masks_as_numpy():
    import cupy
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(cupy.asnumpy(hashed_uniform(2**63 + 5, (97, 31), cupy, dtype)),
                                      hashed_uniform(2**63 + 5, (97, 31), np, dtype))
    x = np.random.default_rng(0).standard_normal((4, 6, 7, 7)).astype(np.float32)
    a, b = Dropout(0.5, np.random.default_rng(3)), Dropout(0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(cupy.asnumpy(b.forward(cupy.asarray(x))), a.forward(x))
