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


def test_gemm_layout_times_the_coefficient_layers_and_the_same_products(split_everything):
    import numpy as np
    module = _load_benchmark("gemm_layout")
    # DS-NiN on 1x28x28 (pools 28 -> 14 -> 7): (name, c_out, c_in, pixels of a batch of 2)
    assert module.coefficient_gemms((1, 28, 28), 2) == [
        ("cccp1", 160, 192, 2 * 28 * 28), ("cccp2", 96, 160, 2 * 28 * 28),
        ("cccp3", 192, 192, 2 * 14 * 14), ("cccp4", 192, 192, 2 * 14 * 14),
        ("cccp5", 192, 192, 2 * 7 * 7), ("cccp6", 10, 192, 2 * 7 * 7)]
    # the channels-last products are the channel-major ones transposed (split over threads as minids does)
    rng = np.random.default_rng(0)
    w, x, dy = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    for row_pad in (0, 3):
        products = module.layout_products(w, x, dy, row_pad)
        for (channel_major, channels_last), expected in zip(products.values(), (w @ x, w.T @ dy, dy @ x.T)):
            np.testing.assert_allclose(channel_major(), expected)
            last = channels_last()
            np.testing.assert_allclose(last if last.shape == expected.shape else last.T, expected)
    # the padded operands' rows lie row_pad floats further apart
    assert module.padded_rows(4, 5, 3, np.float32).strides == (4 * 8, 4)


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
    for forward, backward in (module.separate_passes(w, b, x, dy), module.fused_blocks(w, b, x, dy, block),
                              module.ones_row(w, b, x, dy)):
        out, mask = forward()
        np.testing.assert_allclose(out, y)
        np.testing.assert_array_equal(mask, z > 0)
        dw, db, dx = backward()
        np.testing.assert_allclose(dw, dz @ x.T)
        np.testing.assert_allclose(db, dz.sum(axis=1))
        np.testing.assert_allclose(dx, w.T @ dz)


def test_fixed_paths_runs_each_fixed_layer_on_every_path_with_its_network_input():
    import numpy as np
    from minids.models import build_model
    module = _load_benchmark("fixed_paths")
    model = build_model("ds-nin", in_channels=3, widths=(12, 10, 6, 12, 12, 12, 12, 12), dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12))
    found = module.fixed_inputs(model, x)
    # 12x12 -> pool 3/2 ceil -> 6x6 -> 3x3; conv2 sees cccp2's 6 maps, conv3 cccp4's 12
    assert [(name, inp.shape) for name, _, inp in found] == [
        ("conv1", (2, 3, 12, 12)), ("conv2", (2, 6, 6, 6)), ("conv3", (2, 12, 3, 3))]
    assert found[0][2] is x
    for name, layer, inp in found:
        weight, bias = layer.buffers["weight"], layer.params["bias"]
        bias[...] = np.arange(bias.size) / 10
        k, pad = weight.shape[2], layer.padding
        # the direct convolution, written here: sums over the taps of the zero-padded input
        padded = np.pad(inp, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        size = inp.shape[2] + 2 * pad - k + 1
        expected = bias[None, :, None, None] + sum(
            np.einsum("nirc,oi->norc", padded[:, :, t:t + size, s:s + size], weight[:, :, t, s])
            for t in range(k) for s in range(k))
        outputs = module.path_outputs(layer, inp)
        assert sorted(outputs) == ["channel", "dense", "factored"]
        for out in outputs.values():
            np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
        assert layer.force_path is None  # the layer's own choice is back
        times = module.time_paths(layer, inp, first=name == "conv1", repeats=1)
        assert sorted(times) == ["channel", "dense", "factored"]
        assert all(eval_s > 0 and train_s > 0 for eval_s, train_s in times.values())
        assert layer.force_path is None and layer.needs_input_grad


def test_fixed_paths_differences_are_relative_to_the_dense_output():
    import numpy as np
    module = _load_benchmark("fixed_paths")
    dense = np.array([[-4.0, 2.0]])
    diffs = module.relative_differences({"dense": dense, "factored": np.array([[-4.0, 2.5]])})
    assert diffs == {"dense": 0.0, "factored": 0.5 / 4.0}
