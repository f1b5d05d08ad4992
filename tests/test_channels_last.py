"""Channels-last activations, (N, H, W, C) in memory, against direct references:
each layer that reads or writes them gives the textbook result and hands its
output and input gradient back in the layout the module docstring of
minids.layers.base promises."""

import numpy as np
import pytest

from minids.backend import threads
from minids.layers import AvgPool2d, Conv2d, FixedConv2d, MaxPool2d, ReLU, Sequential
from minids.layers.base import is_channels_last
from minids.models import build_model, dictionary_factors
from test_layers import direct_conv, direct_pool, direct_pool_grad


def channels_last(x):
    """A copy of the (N, C, H, W) array ``x`` stored channels-last."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def channel_major(x):
    """A copy of ``x`` stored channel-major, (C, N, H, W)."""
    return np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def test_layouts_are_told_apart():
    x = np.zeros((2, 3, 4, 5))
    assert is_channels_last(channels_last(x)) and not is_channels_last(channel_major(x))
    assert not is_channels_last(x)  # plain NCHW
    # one channel lies in both orders: it counts as channel-major
    assert not is_channels_last(channels_last(np.zeros((2, 1, 4, 5))))


def test_pointwise_conv_keeps_a_channels_last_layout(rng, split_everything):
    conv = Conv2d(5, 4, 1, dtype=np.float64, rng=rng)
    conv.params["bias"][...] = rng.standard_normal(4)
    w, b = conv.weight[:, :, 0, 0], conv.bias
    x = channels_last(rng.standard_normal((3, 5, 4, 6)))
    y = conv.forward(x)
    assert is_channels_last(y)
    np.testing.assert_allclose(y, np.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None], atol=1e-12)
    dy = channels_last(rng.standard_normal(y.shape))
    dx = conv.backward(dy)
    assert is_channels_last(dx)
    np.testing.assert_allclose(dx, np.einsum("oc,nohw->nchw", w, dy), atol=1e-12)
    np.testing.assert_allclose(conv.grads["weight"][:, :, 0, 0], np.einsum("nohw,nchw->oc", dy, x), atol=1e-12)
    np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)), atol=1e-12)


@pytest.mark.parametrize("train", [True, False])
def test_short_kxk_conv_writes_channels_last_when_asked(rng, split_everything, train):
    conv = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng)
    conv.params["bias"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 5, 6))
    y = conv.forward(x, train=train, channels_last=True)
    assert is_channels_last(y)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, 1, 1), atol=1e-12)
    if not train:
        return
    dy = channels_last(rng.standard_normal(y.shape))
    dx = conv.backward(dy)
    # the adjoint identities: <conv(x) - b, dy> = <x, dx> = <w, dw>
    inner = np.sum((y - conv.bias[None, :, None, None]) * dy)
    assert np.isclose(inner, np.sum(x * dx), rtol=1e-12)
    assert np.isclose(inner, np.sum(conv.weight * conv.grads["weight"]), rtol=1e-12)
    np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)), atol=1e-12)


def test_long_kxk_conv_stays_channel_major_when_asked(rng):
    k = 3
    c_in = Conv2d.SHORT_GEMM_K // (k * k) + 1  # K = c_in·k·k just past the limit
    conv = Conv2d(c_in, 2, k, padding=1, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, c_in, 4, 4))
    y = conv.forward(x, channels_last=True)
    assert not is_channels_last(y)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, 1, 1), atol=1e-12)


def test_fixed_conv_asked_for_channels_last_takes_the_dense_gemm(rng, split_everything):
    factors = dictionary_factors("odct3", 60, 3, 5, 1.5)
    conv = FixedConv2d(factors.dense(), padding=2, dtype=np.float64, factors=factors)
    conv.params["bias"][...] = rng.standard_normal(60)
    assert conv.path(8, 8) == "channel" and conv.path(8, 8, channels_last=True) == "dense"
    x = rng.standard_normal((2, 3, 8, 8))
    expected = direct_conv(x, factors.dense(), conv.bias, 1, 2)
    for asked in (False, True):
        y = conv.forward(x, channels_last=asked)
        assert is_channels_last(y) == asked
        np.testing.assert_allclose(y, expected, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        dx = conv.backward(channels_last(dy) if asked else dy)
        assert np.isclose(np.sum((expected - conv.bias[None, :, None, None]) * dy), np.sum(x * dx), rtol=1e-12)
        np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)), atol=1e-12)


@pytest.mark.parametrize("fixed", [False, True])
def test_dense_kxk_conv_of_a_channels_last_input_answers_in_kind(rng, split_everything, fixed):
    if fixed:
        conv = FixedConv2d(rng.standard_normal((4, 3, 3, 3)), padding=1, dtype=np.float64)
    else:
        conv = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng)
    conv.params["bias"][...] = rng.standard_normal(4)
    x = channels_last(rng.standard_normal((2, 3, 5, 6)))
    y = conv.forward(x)
    assert not is_channels_last(y)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, 1, 1), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    assert is_channels_last(dx)  # the input's layout
    assert np.isclose(np.sum((y - conv.bias[None, :, None, None]) * dy), np.sum(x * dx), rtol=1e-12)


def test_pointwise_input_gradient_takes_the_inputs_layout(rng):
    conv = Conv2d(5, 4, 1, dtype=np.float64, rng=rng)
    x = channels_last(rng.standard_normal((2, 5, 3, 3)))
    y = conv.forward(x)
    dy = channel_major(rng.standard_normal(y.shape))  # a gradient in the other layout
    dx = conv.backward(dy)
    assert is_channels_last(dx)
    np.testing.assert_allclose(dx, np.einsum("oc,nohw->nchw", conv.weight[:, :, 0, 0], dy), atol=1e-12)


@pytest.mark.parametrize("path", ["factored", "channel"])
def test_factored_conv_reads_channels_last_and_answers_in_kind(rng, split_everything, monkeypatch, path):
    monkeypatch.setattr(threads, "GEMM_CHUNK_BYTES", 1)  # the factored path one image a chunk
    factors = dictionary_factors("odct3", 9, 4, 5, 1.5)
    conv = FixedConv2d(factors.dense(), padding=2, dtype=np.float64, factors=factors, force_path=path)
    x = channels_last(rng.standard_normal((3, 4, 7, 6)))
    y = conv.forward(x)
    assert not is_channels_last(y)  # the factored paths write channel-major
    np.testing.assert_allclose(y, direct_conv(x, factors.dense(), conv.bias, 1, 2), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(channels_last(dy))
    assert is_channels_last(dx)  # the input's layout
    assert np.isclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-12)


@pytest.mark.parametrize("cls,k,stride,ceil_mode,shape", [
    (MaxPool2d, 3, 2, True, (2, 3, 8, 8)), (MaxPool2d, 3, 2, True, (2, 4, 7, 9)),
    (MaxPool2d, 2, 2, False, (3, 2, 6, 7)), (AvgPool2d, 3, 2, True, (2, 3, 8, 8)),
    (AvgPool2d, 3, 2, True, (2, 4, 7, 9))])
def test_pooling_keeps_a_channels_last_layout(rng, split_everything, cls, k, stride, ceil_mode, shape):
    size = int(np.prod(shape))
    x = channels_last((rng.permutation(size) * 0.01).reshape(shape))  # distinct values: one maximum
    kind, reduce = ("max", np.max) if cls is MaxPool2d else ("avg", np.mean)
    pool = cls(k, stride, ceil_mode=ceil_mode)
    expected = direct_pool(x, k, stride, ceil_mode, reduce)
    evaluated = pool.forward(x, train=False)
    assert is_channels_last(evaluated)
    np.testing.assert_allclose(evaluated, expected, atol=1e-12)
    y = pool.forward(x)
    assert is_channels_last(y)
    np.testing.assert_allclose(y, expected, atol=1e-12)
    dy = channels_last(rng.standard_normal(y.shape))
    dx = pool.backward(dy)
    assert is_channels_last(dx)
    np.testing.assert_allclose(dx, direct_pool_grad(x, dy, k, stride, kind), atol=1e-12)


def test_in_place_relu_on_channels_last(rng, split_everything):
    x_values = rng.standard_normal((2, 3, 4, 5))
    x = channels_last(x_values)
    relu = ReLU()
    assert relu.forward(x, inplace=True) is x
    np.testing.assert_array_equal(x, np.maximum(x_values, 0))
    dy_values = rng.standard_normal(x.shape)
    dy = channels_last(dy_values)
    assert relu.backward(dy, inplace=True) is dy
    np.testing.assert_array_equal(dy, dy_values * (x_values > 0))
    # a gradient in the other layout gets the same values
    relu.forward(channels_last(x_values), inplace=True)
    np.testing.assert_array_equal(relu.backward(channel_major(dy_values), inplace=True),
                                  dy_values * (x_values > 0))


def test_ds_nin_runs_its_first_block_channels_last(rng):
    """In the network, conv1 writes channels-last through the dense GEMM and
    cccp1, cccp2 and pool1 keep the layout; conv2 reads it and writes
    channel-major. The logits match the layers run one by one channel-major."""
    # DS-NiN's widths but conv1's (whose direct reference is slow): conv2 and conv3 stay factored
    model = build_model("ds-nin", in_channels=3, num_classes=4, dtype=np.float64, dropout=0.0,
                        widths=(60, 160, 96, 192, 192, 192, 192, 192), rng=rng)
    outputs = {}  # a copy of each output, in its layout, before a later layer works in place

    def recorded(forward, name):
        def call(*args, **kwargs):
            y = forward(*args, **kwargs)
            outputs[name] = y.copy(order="K")
            return y
        return call

    for name, layer in model.named_layers():
        layer.forward = recorded(layer.forward, name)
    x = rng.standard_normal((2, 3, 12, 12))
    logits = model.forward(x, train=False)
    layouts = {name: is_channels_last(y) for name, y in outputs.items() if y.ndim == 4}
    assert [name for name, last in layouts.items() if last] == ["conv1", "relu1", "cccp1", "relu2", "cccp2",
                                                               "pool1", "relu3", "drop1"]
    assert model["conv1"].path(12, 12) == "channel"  # on its own; in the network the dense GEMM:
    conv1 = model["conv1"]
    np.testing.assert_allclose(outputs["conv1"], direct_conv(x, conv1.weight, conv1.bias, 1, 2), atol=1e-12)
    h = channel_major(x)
    for name, layer in model.named_layers():
        h = type(layer).forward(layer, h, train=False)
        if h.ndim == 4:
            assert not is_channels_last(h)
    np.testing.assert_allclose(logits, h, atol=1e-12)


def test_sequential_asks_kxk_layers_that_feed_a_pointwise_one(rng):
    net = Sequential([("c1", Conv2d(2, 4, 3, rng=rng)), ("r1", ReLU()), ("c2", Conv2d(4, 3, 1, rng=rng)),
                      ("c3", Conv2d(3, 3, 3, rng=rng)), ("p", MaxPool2d(2, 2)),
                      ("c4", Conv2d(3, 2, 1, rng=rng))])
    assert net.channels_last_outputs() == {"c1"}  # c3 feeds a pooling
