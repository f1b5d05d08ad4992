"""Layer forward passes against direct nested-loop computations, and the
behaviour the gradient check cannot see (ties, masks, dtypes, errors)."""

import math
import re

import numpy as np
import pytest
from scipy.special import logsumexp

from minids.layers import (AvgPool2d, Conv2d, Dropout, FixedConv2d, GlobalAvgPool, MaxPool2d,
                           ReLU, Sequential, SoftmaxNLL)


def direct_conv(x, w, b, stride, padding):
    """Textbook cross-correlation with explicit loops over every index."""
    n, c, h, wd = x.shape
    co, _, k, _ = w.shape
    xp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    y = np.zeros((n, co, ho, wo))
    for a in range(n):
        for o in range(co):
            for i in range(ho):
                for j in range(wo):
                    total = b[o]
                    for ci in range(c):
                        for di in range(k):
                            for dj in range(k):
                                total += w[o, ci, di, dj] * xp[a, ci, i * stride + di, j * stride + dj]
                    y[a, o, i, j] = total
    return y


def direct_pool(x, k, stride, ceil_mode, reduce):
    """Pooling with explicit loops; windows are clipped to the input."""
    n, c, h, w = x.shape

    def size(s):
        out = (math.ceil if ceil_mode else math.floor)((s - k) / stride) + 1
        return out - 1 if (out - 1) * stride >= s else out
    ho, wo = size(h), size(w)
    y = np.zeros((n, c, ho, wo))
    for a in range(n):
        for ci in range(c):
            for i in range(ho):
                for j in range(wo):
                    window = x[a, ci, i * stride:min(i * stride + k, h), j * stride:min(j * stride + k, w)]
                    y[a, ci, i, j] = reduce(window)
    return y


def direct_pool_grad(x, dy, k, stride, kind):
    """Input gradient of a pooling with explicit loops: max sends each output's
    gradient to the first maximum of its window (row-major), average shares it
    equally among the window's elements inside the input."""
    dx = np.zeros_like(x)
    n, c, h, w = x.shape
    for a in range(n):
        for ci in range(c):
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    rows = slice(i * stride, min(i * stride + k, h))
                    cols = slice(j * stride, min(j * stride + k, w))
                    window = x[a, ci, rows, cols]
                    if kind == "max":
                        r, q = np.unravel_index(np.argmax(window), window.shape)
                        dx[a, ci, rows.start + r, cols.start + q] += dy[a, ci, i, j]
                    else:
                        dx[a, ci, rows, cols] += dy[a, ci, i, j] / window.size
    return dx


@pytest.mark.parametrize("c_in,c_out,k,stride,padding,shape", [
    (3, 4, 3, 1, 1, (2, 7, 7)),
    (2, 5, 5, 2, 2, (2, 9, 6)),
    (3, 2, 3, 2, 0, (1, 8, 9)),
    (4, 3, 1, 1, 0, (3, 5, 5)),
])
def test_conv_forward_matches_direct_loops(rng, c_in, c_out, k, stride, padding, shape):
    conv = Conv2d(c_in, c_out, k, stride, padding, dtype=np.float64, rng=rng)
    conv.params["bias"][:] = rng.standard_normal(c_out)
    x = rng.standard_normal((shape[0], c_in) + shape[1:])
    y = conv.forward(x)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, stride, padding), atol=1e-12)


def test_conv_accepts_channel_major_and_contiguous_inputs_alike(rng):
    conv = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng)
    x = rng.standard_normal((2, 3, 6, 6))
    x_channel_major = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    np.testing.assert_array_equal(conv.forward(x), conv.forward(x_channel_major))


def test_fixed_conv_has_no_weight_gradient_and_keeps_weight(rng):
    weight = rng.standard_normal((4, 3, 5, 5))
    conv = FixedConv2d(weight, padding=2, dtype=np.float64)
    before = conv.weight.copy()
    x = rng.standard_normal((2, 3, 6, 6))
    y = conv.forward(x)
    np.testing.assert_allclose(y, direct_conv(x, weight, np.zeros(4), 1, 2), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    conv.backward(dy)
    assert list(conv.params) == ["bias"] and list(conv.grads) == ["bias"]
    assert "weight" in conv.buffers
    np.testing.assert_array_equal(conv.weight, before)
    np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("k,stride,ceil_mode,shape,out", [
    (3, 2, True, (8, 8), (4, 4)),     # last window runs past the edge
    (3, 2, False, (8, 8), (3, 3)),
    (3, 2, True, (7, 9), (3, 4)),
    (3, 2, True, (32, 32), (16, 16)),  # NiN: 32 -> 16 -> 8
    (2, 2, False, (6, 5), (3, 2)),
    (3, 2, True, (28, 28), (14, 14)),  # NiN on 28x28: 28 -> 14 -> 7
    (2, 3, False, (8, 7), (3, 2)),     # kernel smaller than the stride: pixels no window reads
    (3, 1, False, (5, 6), (3, 4)),     # stride 1: a single phase
    (3, 3, True, (8, 8), (3, 3)),
    (5, 2, True, (9, 6), (3, 2)),      # taps two phase steps away
])
def test_pools_match_direct_loops(rng, k, stride, ceil_mode, shape, out):
    x = rng.standard_normal((2, 3) + shape)
    for layer, kind, reduce in ((MaxPool2d(k, stride, ceil_mode), "max", np.max),
                                (AvgPool2d(k, stride, ceil_mode), "avg", np.mean)):
        expected = direct_pool(x, k, stride, ceil_mode, reduce)
        # evaluation first: it must not leave a state that the training pass relies on
        np.testing.assert_allclose(layer.forward(x, train=False), expected, atol=1e-12)
        y = layer.forward(x)
        assert y.shape[2:] == out
        np.testing.assert_allclose(y, expected, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(layer.backward(dy), direct_pool_grad(x, dy, k, stride, kind), atol=1e-12)


def test_maxpool_ties_and_minus_infinity_follow_the_first_maximum():
    # ReLU output: whole windows of zeros, and inputs at -inf (the planes' padding value)
    x = np.zeros((1, 2, 7, 7))
    x[0, 1] = -np.inf
    x[0, 1, 6, 6] = -1.0
    pool = MaxPool2d(3, 2, ceil_mode=True)
    np.testing.assert_array_equal(pool.forward(x, train=False), direct_pool(x, 3, 2, True, np.max))
    y = pool.forward(x)
    dy = np.arange(1.0, 1.0 + y.size).reshape(y.shape)
    np.testing.assert_array_equal(y, direct_pool(x, 3, 2, True, np.max))
    np.testing.assert_array_equal(pool.backward(dy), direct_pool_grad(x, dy, 3, 2, "max"))


def test_nin_pools_halve_16_to_8():
    x = np.zeros((1, 1, 16, 16))
    assert MaxPool2d(3, 2, True).forward(x).shape == (1, 1, 8, 8)


def test_avgpool_edge_window_averages_inside_elements_by_hand():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    y = AvgPool2d(3, 2, ceil_mode=True).forward(x)
    # windows rows 0-2 / 2-3, columns 0-2 / 2-3
    expected = [[np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]), np.mean([2, 3, 6, 7, 10, 11])],
                [np.mean([8, 9, 10, 12, 13, 14]), np.mean([10, 11, 14, 15])]]
    np.testing.assert_allclose(y[0, 0], expected)
    dx = AvgPool2d(3, 2, ceil_mode=True)
    dx.forward(x)
    grad = dx.backward(np.ones((1, 1, 2, 2)))
    # element (3, 3) lies only in the 2x2 corner window: 1/4
    assert grad[0, 0, 3, 3] == pytest.approx(0.25)
    # element (2, 2) lies in all four windows: 1/9 + 1/6 + 1/6 + 1/4
    assert grad[0, 0, 2, 2] == pytest.approx(1 / 9 + 1 / 6 + 1 / 6 + 1 / 4)


def test_maxpool_tie_sends_gradient_to_first_element_only():
    x = np.ones((1, 1, 2, 2))
    pool = MaxPool2d(2, 2)
    assert pool.forward(x)[0, 0, 0, 0] == 1.0
    grad = pool.backward(np.full((1, 1, 1, 1), 3.0))
    np.testing.assert_array_equal(grad[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_maxpool_overlapping_windows_accumulate_gradient():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 10.0  # inside all four 3x3/2 windows
    pool = MaxPool2d(3, 2)
    pool.forward(x)
    grad = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert grad[0, 0, 2, 2] == 10.0 and grad.sum() == 10.0


def test_global_avg_pool():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2)
    layer = GlobalAvgPool()
    np.testing.assert_allclose(layer.forward(x), [[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]])
    np.testing.assert_allclose(layer.backward(np.ones((2, 3))), np.full((2, 3, 2, 2), 0.25))


def test_relu_forward_backward():
    x = np.array([[-2.0, -0.0, 0.0, 3.0]])
    relu = ReLU()
    np.testing.assert_array_equal(relu.forward(x), [[0, 0, 0, 3]])
    np.testing.assert_array_equal(relu.backward(np.ones_like(x)), [[0, 0, 0, 1]])


def test_dropout_mask_scale_and_determinism():
    x = np.ones((4, 8, 16, 16), dtype=np.float32)
    a = Dropout(0.5, np.random.default_rng(7)).forward(x)
    b = Dropout(0.5, np.random.default_rng(7)).forward(x)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 2.0}
    assert abs((a == 0).mean() - 0.5) < 0.02
    layer = Dropout(0.5, np.random.default_rng(3))
    y = layer.forward(x)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)  # d(x*m)/dx = m
    assert Dropout(0.5).forward(x, train=False) is x
    with pytest.raises(ValueError, match="Dropout"):
        Dropout(1.0)


def test_softmax_nll_matches_formula_and_is_stable():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, -1000.0, 999.0]])
    labels = np.array([2, 0])
    loss = SoftmaxNLL()
    value = loss.forward(logits, labels)
    expected = np.mean([logsumexp(logits[0]) - 3.0, logsumexp(logits[1]) - 1000.0])
    assert float(value) == pytest.approx(expected, rel=1e-12)
    d = loss.backward()
    p = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    p[[0, 1], labels] -= 1
    np.testing.assert_allclose(d, p / 2, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_preserve_dtype(rng, dtype):
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    layers = [Conv2d(3, 4, 3, padding=1, dtype=dtype, rng=rng), ReLU(), MaxPool2d(3, 2, True),
              Dropout(0.5, rng), Conv2d(4, 4, 1, dtype=dtype, rng=rng), AvgPool2d(3, 2, True),
              GlobalAvgPool()]
    net = Sequential(layers)
    y = net.forward(x)
    assert y.dtype == dtype
    assert net.backward(np.ones_like(y)).dtype == dtype
    assert all(g.dtype == dtype for g in net.grads.values())


def test_wrong_rank_and_channels_name_the_layer(rng):
    conv = Conv2d(3, 4, 3, rng=rng)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4, k=3.*3 input channels.*\(2, 5, 8, 8\)"):
        conv.forward(np.zeros((2, 5, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*NCHW.*\(8, 8\)"):
        MaxPool2d(2).forward(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="SoftmaxNLL"):
        SoftmaxNLL().forward(np.zeros((2, 3)), np.zeros(3, dtype=np.int64))


def test_sequential_names_params_and_updates_in_place(rng):
    net = Sequential([("conv", Conv2d(1, 2, 3, rng=rng)), ("relu", ReLU()),
                      ("fixed", FixedConv2d(np.ones((2, 2, 1, 1))))])
    assert sorted(net.params) == ["conv.bias", "conv.weight", "fixed.bias"]
    assert list(net.buffers) == ["fixed.weight"]
    net.params["conv.weight"][...] = 0.0
    assert not net["conv"].weight.any()
    y = net.forward(np.ones((1, 1, 4, 4), np.float32))
    net.backward(np.ones_like(y))
    assert sorted(net.grads) == ["conv.bias", "conv.weight", "fixed.bias"]
    with pytest.raises(ValueError, match="unique"):
        Sequential([("a", ReLU()), ("a", ReLU())])


def test_softmax_nll_backward_takes_the_gradient_of_its_output():
    """Like any layer: backward(dy) is dy times the gradient of the loss, by hand
    (softmax - one_hot) / N for two rows."""
    from minids.layers import SoftmaxNLL
    logits = np.array([[0.0, np.log(3.0)], [np.log(2.0), np.log(2.0)]])
    loss = SoftmaxNLL()
    loss.forward(logits, np.array([1, 0]))
    by_hand = np.array([[0.25, -0.25], [-0.5, 0.5]]) / 2
    np.testing.assert_allclose(loss.backward(), by_hand, rtol=1e-12)
    loss.forward(logits, np.array([1, 0]))
    np.testing.assert_allclose(loss.backward(np.float64(3.0)), 3 * by_hand, rtol=1e-12)


def _layer_and_input(case):
    rng = np.random.default_rng(0)
    layer, x = case.build(rng), case.make_input(rng)
    forward = ((lambda train: layer.forward(x, case.labels, train=train)) if case.labels is not None
               else (lambda train: layer.forward(x, train=train)))
    return layer, forward


@pytest.mark.parametrize("case", [case for cls in (AvgPool2d, Conv2d, Dropout, FixedConv2d, GlobalAvgPool,
                                                   MaxPool2d, ReLU, SoftmaxNLL)
                                  for case in cls.gradcheck_cases()],
                         ids=lambda case: case.name)
def test_backward_without_a_training_forward_names_the_layer(case):
    layer, forward = _layer_and_input(case)
    message = rf"^{re.escape(repr(layer))}: backward needs a forward pass with train=True first$"
    with pytest.raises(ValueError, match=message):  # no forward at all
        layer.backward(np.ones(1))
    y = forward(True)
    dy = np.ones_like(y)
    layer.backward(dy)  # one backward per training forward
    with pytest.raises(ValueError, match=message):
        layer.backward(dy)
    forward(False)  # evaluation keeps nothing for backward
    with pytest.raises(ValueError, match=message):
        layer.backward(dy)
