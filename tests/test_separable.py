"""The odct3 fixed convolution computed through its Kronecker factors.

References are written in the test: a direct convolution by nested sums over
the taps, and its adjoint checked by the inner-product identity; never the
layer's own dense path.
"""

import h5py
import numpy as np
import pytest

from minids.backend import gpu_available, threads
from minids.flops import model_flops
from minids.io import layer_arrays, model_from_weights, read_weights
from minids.layers import FixedConv2d
from minids.layers import conv as conv_module
from minids.models import build_model, dictionary_factors
from minids.prune import prune_model


def direct_conv(x, w, stride, padding):
    """y[n, o, r, c] = sum_{i, t, s} w[o, i, t, s] x_pad[n, i, r*stride + t, c*stride + s]."""
    n, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    y = np.zeros((n, c_out, h_out, w_out))
    for t in range(k):
        for s in range(k):
            patch = xp[:, :, t:t + stride * (h_out - 1) + 1:stride, s:s + stride * (w_out - 1) + 1:stride]
            y += np.einsum("nirc,oi->norc", patch, w[:, :, t, s])
    return y


def factored_layer(c_out, c_in, k, stride, padding, dtype, gain=1.3, path="factored"):
    """An odct3 fixed convolution that always takes ``path`` ('factored' or 'channel')."""
    factors = dictionary_factors("odct3", c_out, c_in, k, gain)
    return FixedConv2d(factors.dense(), stride=stride, padding=padding, dtype=dtype, factors=factors,
                       force_path=path)


SHAPES = [(192, 96, 5, 1, 2, 9), (192, 192, 3, 1, 1, 6), (192, 3, 5, 1, 2, 10),
          (40, 1, 5, 1, 2, 9), (13, 4, 3, 2, 1, 7), (10, 3, 3, 1, 0, 6)]


@pytest.mark.parametrize("threaded", ["one thread", "3 threads", "3 threads, an image a chunk"])
@pytest.mark.parametrize("path", ["factored", "channel"])
@pytest.mark.parametrize("c_out,c_in,k,stride,padding,size", SHAPES)
def test_factored_forward_and_input_gradient_equal_the_direct_convolution(c_out, c_in, k, stride,
                                                                         padding, size, path,
                                                                         threaded, request,
                                                                         monkeypatch):
    if threaded != "one thread":  # every block loop and GEMM split over 3 threads
        request.getfixturevalue("split_everything")
    if threaded.endswith("a chunk"):  # the factored path's chunks of images: one image each
        monkeypatch.setattr(threads, "GEMM_CHUNK_BYTES", 1)
    rng = np.random.default_rng(0)
    layer = factored_layer(c_out, c_in, k, stride, padding, np.float64, path=path)
    weight = np.asarray(layer.weight)
    x = rng.standard_normal((3, c_in, size, size + 1))
    assert layer.path(size, size + 1) == path
    y = layer.forward(x)
    reference = direct_conv(x, weight, stride, padding) + np.asarray(layer.bias)[:, None, None]
    assert np.abs(y - reference).max() <= 1e-12 * np.abs(reference).max()
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    # the adjoint: <conv(v), dy> = <v, conv^T(dy)> for every v, so dx is the input gradient
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        lhs, rhs = (direct_conv(v, weight, stride, padding) * dy).sum(), (v * dx).sum()
        assert abs(lhs - rhs) <= 1e-12 * np.abs(dy).sum() * np.abs(weight).max() * k * k
    np.testing.assert_allclose(layer.grads["bias"], dy.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("path,c_in,size", [("factored", 96, 16), ("channel", 3, 32)])
def test_factored_float32_within_1e5_of_float64(path, c_in, size):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, c_in, size, size))
    exact = factored_layer(192, c_in, 5, 1, 2, np.float64, path=path)
    single = factored_layer(192, c_in, 5, 1, 2, np.float32, path=path)
    reference = direct_conv(x, np.asarray(exact.weight), 1, 2)
    y = single.forward(x.astype(np.float32))
    assert y.dtype == np.float32
    assert np.abs(y - reference).max() <= 1e-5 * np.abs(reference).max()
    dy = rng.standard_normal(y.shape)
    dx64 = exact.forward(x) is not None and exact.backward(dy)
    dx32 = single.backward(dy.astype(np.float32))
    assert np.abs(dx32 - dx64).max() <= 1e-5 * np.abs(dx64).max()


def test_ds_nin_odct3_takes_the_factored_path_where_it_pays(monkeypatch):
    calls = []
    for function in ("factored_forward", "channel_factored_forward"):
        real = getattr(conv_module, function)
        monkeypatch.setattr(conv_module, function, lambda factors, *args, real=real, function=function, **kw:
                            calls.append((function, factors)) or real(factors, *args, **kw))
    model = build_model("ds-nin", in_channels=3)
    sizes = {"conv1": 32, "conv2": 16, "conv3": 8}
    for name, size in sizes.items():
        assert model[name].factors is not None
    # conv2 and conv3 save >= 20x the multiply-adds fully factored; conv1 on 3 channels
    # saves ~12x that way but ~3x through the channel DCT alone (>= 2x); on 1 channel
    # neither pays
    assert [model[name].path(size, size) for name, size in sizes.items()] == ["channel", "factored",
                                                                             "factored"]
    assert build_model("ds-nin", in_channels=1)["conv1"].path(28, 28) == "dense"
    # the factors are the stored dense weight
    for name in sizes:
        np.testing.assert_allclose(model[name].factors.dense(), model[name].weight, rtol=0, atol=1e-6)
    x = np.random.default_rng(2).standard_normal((2, 96, 16, 16)).astype(np.float32)
    model["conv2"].forward(x)
    model["conv1"].forward(np.zeros((2, 3, 32, 32), dtype=np.float32))
    assert calls == [("factored_forward", model["conv2"].factors),
                     ("channel_factored_forward", model["conv1"].factors)]
    assert build_model("ds-nin", dictionary="odct2-dc")["conv2"].factors is None
    assert build_model("ds-nin", dictionary="odct2-dc")["conv1"].path(32, 32) == "dense"


def test_force_path_overrides_the_cost_choice_and_is_checked():
    factors = dictionary_factors("odct3", 12, 3, 3, 1.0)
    weight = factors.dense()
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 5))
    for path in FixedConv2d.PATHS:
        layer = FixedConv2d(weight, padding=1, dtype=np.float64, factors=factors, force_path=path)
        assert layer.path(6, 5) == path
        np.testing.assert_allclose(layer.forward(x), direct_conv(x, weight, 1, 1), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="force_path must be one of"):
        FixedConv2d(weight, factors=factors, force_path="fast")
    with pytest.raises(ValueError, match="needs the weight's factors"):
        FixedConv2d(weight, force_path="channel")


def test_pruned_factors_keep_only_the_frequencies_the_kept_atoms_use():
    factors = dictionary_factors("odct3", 192, 96, 5, 1.0)  # (16, 4, 4) per axis, 12 used channels
    assert factors.a_c.shape == (96, 12)
    kept = np.array([0, 5, 17, 18, 100])  # channel frequencies 0, 1, 6; vertical 0, 1, 0, 0, 1
    sub = factors.subset(kept)
    np.testing.assert_array_equal(sub.dense(), factors.dense()[kept])
    assert sub.a_c.shape[1] == 3 and sub.a_v.shape[1] == 2
    np.testing.assert_array_equal(sub.atoms, kept)
    h, w = 16, 16
    assert sub.multiply_adds(h, w, 1, 2) < factors.multiply_adds(h, w, 1, 2) / 3


def test_prune_carries_factors_and_a_reload_rebuilds_them(tmp_path):
    model = build_model("ds-nin", in_channels=1, num_classes=10, seed=0)
    cccp3 = model["cccp3"].params["weight"]
    cccp3[:, 10:150] = 0  # fixed channels 10..149 of conv2 feed nothing: dead
    pruned = prune_model(model)
    factors = pruned["conv2"].factors
    np.testing.assert_array_equal(factors.atoms, np.r_[0:10, 150:192])
    np.testing.assert_allclose(factors.dense(), pruned["conv2"].weight, rtol=0, atol=1e-6)
    assert factors.a_c.shape[1] < model["conv2"].factors.a_c.shape[1]
    x = np.random.default_rng(3).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(pruned.forward(x, train=False), model.forward(x, train=False),
                               rtol=1e-4, atol=1e-4)
    # the factored conv2 of the pruned net by hand: atoms 0-9 and 150-191 of the (16, 4, 4)
    # grid use channel frequencies 0, 9, 10, 11 and all 4 vertical and 4 horizontal atoms;
    # conv2 reads 96 maps of 14x14 (pad 2)
    by_hand = 96 * 4 * 196 + 4 * 4 * 5 * 14 * 18 + 4 * 4 * 4 * 5 * 196
    assert model_flops(pruned, (1, 28, 28))["factored_layers"]["conv2"] == 2 * by_hand

    # written and read back: the layer group names its atoms, the loader rebuilds the factors
    from minids.io import WeightsFile, write_weights
    attrs = {"model": "ds-nin", "input_shape": [1, 28, 28], "num_classes": 10,
             "dictionary": "odct3", "widths": list(pruned.widths), "seed": 0}
    path = tmp_path / "pruned.h5"
    stats = {"kind": "standard", "mean": np.zeros(1, np.float32), "std": np.ones(1, np.float32)}
    write_weights(path, WeightsFile(attrs, layer_arrays(pruned), stats))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["layers/conv2"].attrs["atoms"], np.r_[0:10, 150:192])
        assert f["layers/conv2"].attrs["dictionary_outputs"] == 192
        # every output's atom has norm gain
        weight = f["layers/conv2/weight"][()]
        assert np.linalg.norm(weight[3]) == pytest.approx(f["layers/conv2"].attrs["gain"], rel=1e-6)
    loaded = model_from_weights(read_weights(path))
    np.testing.assert_array_equal(loaded["conv2"].factors.atoms, np.r_[0:10, 150:192])
    # the same factors as the model's, so the same predictions to the bit
    np.testing.assert_array_equal(loaded.forward(x, train=False), pruned.forward(x, train=False))

    # a file written before the gain was stored: the atoms' norm stands in for it
    with h5py.File(path, "r+") as f:
        del f["layers/conv2"].attrs["gain"]
    older = model_from_weights(read_weights(path))
    assert older["conv2"].factors is not None
    np.testing.assert_allclose(older.forward(x, train=False), pruned.forward(x, train=False),
                               rtol=1e-5, atol=1e-5)

    # a weight that is not the dictionary's loses its factors: the dense path runs
    with h5py.File(path, "r+") as f:
        f["layers/conv2/weight"][0, 0, 0, 0] += 0.5
    assert model_from_weights(read_weights(path))["conv2"].factors is None


def test_channel_path_with_outputs_out_of_frequency_order():
    # conv1's (5, 7, 7) grid on 3 channels: atoms 0-48 use channel frequency 0, 49-97 frequency 1;
    # the kept outputs 3, 60, 7, 52 alternate, so frequency 0 is two runs that both feed its columns
    factors = dictionary_factors("odct3", 192, 3, 5, 1.0).subset([3, 60, 7, 52])
    assert factors.channel_runs() == [(0, 0, 1), (1, 1, 2), (0, 2, 3), (1, 3, 4)]
    weight = factors.dense()
    layer = FixedConv2d(weight, padding=2, dtype=np.float64, factors=factors, force_path="channel")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 7))
    y = layer.forward(x)
    np.testing.assert_allclose(y, direct_conv(x, weight, 1, 2), rtol=0, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    v = rng.standard_normal(x.shape)
    assert np.isclose((direct_conv(v, weight, 1, 2) * dy).sum(), (v * layer.backward(dy)).sum(), rtol=1e-12)
    # channel DCT 3 -> 2 frequencies on 6x7 pixels, then 25 taps per output on 6x7
    assert layer.factored_flops((3, 6, 7)) == 2 * (3 * 2 * 42 + 4 * 25 * 42)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("path,c_in,size", [("factored", 96, 16), ("channel", 3, 32)])
def test_factored_cupy_equals_numpy(path, c_in, size):
    import cupy
    rng = np.random.default_rng(4)
    layer = factored_layer(192, c_in, 5, 1, 2, np.float32, path=path)
    x = rng.standard_normal((4, c_in, size, size)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    layer.to(cupy)
    y_gpu = layer.forward(cupy.asarray(x))
    dx_gpu = layer.backward(cupy.ones_like(y_gpu))
    np.testing.assert_allclose(cupy.asnumpy(y_gpu), y, rtol=1e-5, atol=1e-5 * np.abs(y).max())
    np.testing.assert_allclose(cupy.asnumpy(dx_gpu), dx, rtol=1e-5, atol=1e-5 * np.abs(dx).max())
