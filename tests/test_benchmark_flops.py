"""The GEMM count behind the benchmark's GEMM% and bound columns (benchmarks/train_step.py), and
the layers and products benchmarks/gemm_layout.py times."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_benchmark(name):
    """The script benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    path = os.path.join(HERE, os.pardir, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_step_script():
    return _load_benchmark("train_step")


def test_ds_nin_counts_only_its_coefficient_layers_three_times(train_step_script):
    # DS-NiN's trainable convolutions are its six 1x1 layers (c_in -> c_out at H x W);
    # none is the first layer, so each runs forward, weight gradient and input gradient
    layers = [(192, 160, 32), (160, 96, 32), (192, 192, 16), (192, 192, 16), (192, 192, 8), (192, 10, 8)]
    forward = sum(2 * c_in * c_out * size * size for c_in, c_out, size in layers)
    assert train_step_script.trainable_gemm_flops("ds-nin", (3, 32, 32)) == 3 * forward


def test_nin_first_layer_has_no_input_gradient(train_step_script):
    # NiN on 1x28x28 (pools 28 -> 14 -> 7): (c_in, c_out, k, output size) of its nine convolutions
    layers = [(1, 192, 5, 28), (192, 160, 1, 28), (160, 96, 1, 28),
              (96, 192, 5, 14), (192, 192, 1, 14), (192, 192, 1, 14),
              (192, 192, 3, 7), (192, 192, 1, 7), (192, 10, 1, 7)]
    forward = [2 * c_in * k * k * c_out * size * size for c_in, c_out, k, size in layers]
    # all trainable: forward and weight gradient each, input gradient for all but conv1
    assert train_step_script.trainable_gemm_flops("nin", (1, 28, 28)) == 3 * sum(forward) - forward[0]


def test_gemm_layout_times_the_coefficient_layers_and_the_same_products():
    import numpy as np
    module = _load_benchmark("gemm_layout")
    # DS-NiN on 1x28x28 (pools 28 -> 14 -> 7): (name, c_out, c_in, pixels of a batch of 2)
    assert module.coefficient_gemms((1, 28, 28), 2) == [
        ("cccp1", 160, 192, 2 * 28 * 28), ("cccp2", 96, 160, 2 * 28 * 28),
        ("cccp3", 192, 192, 2 * 14 * 14), ("cccp4", 192, 192, 2 * 14 * 14),
        ("cccp5", 192, 192, 2 * 7 * 7), ("cccp6", 10, 192, 2 * 7 * 7)]
    # the channels-last products are the channel-major ones transposed
    rng = np.random.default_rng(0)
    w, x, dy = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    products = module.layout_products(w, x, dy)
    for (channel_major, channels_last), expected in zip(products.values(), (w @ x, w.T @ dy, dy @ x.T)):
        np.testing.assert_allclose(channel_major(), expected)
        last = channels_last()
        np.testing.assert_allclose(last if last.shape == expected.shape else last.T, expected)


@pytest.mark.parametrize("block", [3, 64])
def test_fused_epilogue_variants_compute_the_layer_and_its_gradients(block):
    import numpy as np
    module = _load_benchmark("fused_epilogue")
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((4, 3)), rng.standard_normal(4)
    x, dy = rng.standard_normal((3, 10)), rng.standard_normal((4, 10))
    # y = relu(w x + b); its gradient passes where y > 0
    z = w @ x + b[:, None]
    y, dz = np.maximum(z, 0), dy * (z > 0)
    for forward, backward in (module.separate_passes(w, b, x, dy), module.fused_blocks(w, b, x, dy, block)):
        out, mask = forward()
        np.testing.assert_allclose(out, y)
        np.testing.assert_array_equal(mask, z > 0)
        dw, db, dx = backward()
        np.testing.assert_allclose(dw, dz @ x.T)
        np.testing.assert_allclose(db, dz.sum(axis=1))
        np.testing.assert_allclose(dx, w.T @ dz)
