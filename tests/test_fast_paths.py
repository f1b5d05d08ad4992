"""The fast paths of the layers against plain references: chunked columns, reused
blocks, in-place ReLUs in a Sequential, the skipped input gradient, im2col
without a padded copy."""

import os
import subprocess
import sys

import numpy as np
import pytest

import minids.layers.conv as conv_module
from minids.backend import threads
from minids.layers import AvgPool2d, Conv2d, FixedConv2d, MaxPool2d, ReLU, Sequential
from minids.layers.base import is_channels_last
from minids.layers.im2col import col2im, im2col


def direct_conv(x, w, b, padding):
    """Stride-1 cross-correlation with loops over output pixels and kernel taps."""
    n, c, h, wd = x.shape
    co, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    y = np.zeros((n, co, ho, wo)) + b[None, :, None, None]
    for i in range(ho):
        for j in range(wo):
            for di in range(k):
                for dj in range(k):
                    y[:, :, i, j] += xp[:, :, i + di, j + dj] @ w[:, :, di, dj].T
    return y


def padded_im2col(x, k, stride, padding):
    """im2col from an explicitly padded copy, one column per output pixel."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    cols = np.zeros((c * k * k, n * ho * wo))
    for a in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xp[a, :, i * stride:i * stride + k, j * stride:j * stride + k]
                cols[:, a * ho * wo + i * wo + j] = patch.reshape(-1)
    return cols


@pytest.mark.parametrize("k,stride,padding,shape", [
    (5, 1, 2, (2, 3, 6, 7)), (3, 2, 1, (3, 2, 7, 8)), (5, 2, 4, (1, 2, 3, 4)), (3, 1, 0, (2, 1, 5, 3))])
def test_im2col_matches_a_padded_copy_and_col2im_is_its_adjoint(rng, k, stride, padding, shape):
    x = rng.standard_normal(shape)
    cols = im2col(x, k, stride, padding)
    np.testing.assert_array_equal(cols, padded_im2col(x, k, stride, padding))
    out = np.full(cols.shape, np.nan)
    np.testing.assert_array_equal(im2col(x, k, stride, padding, out=out), cols)
    d = rng.standard_normal(cols.shape)
    dx = col2im(d, shape, k, stride, padding)
    assert np.isclose(np.sum(cols * d), np.sum(x * dx), rtol=1e-12)


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Columns of at most ~2 images per chunk, so 5 images take 3 uneven chunks."""
    monkeypatch.setattr(threads, "GEMM_CHUNK_BYTES", 2 * 3 * 25 * 7 * 6 * 8 + 1)


@pytest.mark.parametrize("split", [False, True], ids=["one thread", "3 threads"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["channel-major", "channels-last"])
def test_chunked_fixed_conv_matches_direct_loops_and_its_adjoint(rng, tiny_chunks, request, monkeypatch,
                                                                  split, channels_last):
    if split:  # 5 images over 3 threads: blocks of 1, 2 and 2 images, each its own chunks
        request.getfixturevalue("split_everything")
    unfolded = []

    def recording_im2col(x, *args, **kwargs):
        unfolded.append(x.shape[0])
        return im2col(x, *args, **kwargs)
    monkeypatch.setattr(conv_module, "im2col", recording_im2col)
    w = rng.standard_normal((4, 3, 5, 5))
    conv = FixedConv2d(w, padding=2, dtype=np.float64)
    conv.params["bias"][:] = rng.standard_normal(4)
    x = rng.standard_normal((5, 3, 7, 6))
    y = conv.forward(x, channels_last=channels_last)
    assert sorted(unfolded) == [1, 2, 2]  # chunks of ≤ 2 images, within each thread's block
    assert is_channels_last(y) == channels_last
    np.testing.assert_allclose(y, direct_conv(x, w, conv.bias, 2), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    # <conv(x) - b, dy> = <x, dx> for the linear map and its adjoint
    lhs = np.sum((y - conv.bias[None, :, None, None]) * dy)
    assert np.isclose(lhs, np.sum(x * dx), rtol=1e-12)
    np.testing.assert_allclose(conv.grads["bias"], dy.sum(axis=(0, 2, 3)), atol=1e-12)


@pytest.mark.parametrize("c_in, module, limit", [(3, threads, "GEMM_CHUNK_BYTES"),
                                                 (30, conv_module, "CHUNK_BYTES")],
                         ids=["short GEMM, K = 27", "long GEMM, K = 270"])
def test_chunked_and_whole_input_gradients_agree(rng, monkeypatch, c_in, module, limit):
    w = rng.standard_normal((4, c_in, 3, 3))
    x = rng.standard_normal((5, c_in, 6, 6))
    dy = rng.standard_normal((5, 4, 6, 6))
    results = []
    for chunk in (10**9, c_in * 9 * 36 * 8):   # one chunk, then one image per chunk
        monkeypatch.setattr(module, limit, chunk)
        conv = FixedConv2d(w, padding=1, dtype=np.float64)
        results.append((conv.forward(x), conv.backward(dy)))
    np.testing.assert_allclose(results[0][0], direct_conv(x, w, conv.bias, 1), atol=1e-12)
    for whole, chunked in zip(*results):
        np.testing.assert_allclose(whole, chunked, atol=1e-12)


def test_reused_blocks_follow_batch_size_changes(rng):
    conv = Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=rng)
    for n in (4, 2, 5):
        x = rng.standard_normal((n, 3, 5, 5))
        np.testing.assert_allclose(conv.forward(x), direct_conv(x, conv.weight, conv.bias, 1),
                                   atol=1e-12)
        dy = rng.standard_normal((n, 4, 5, 5))
        conv.backward(dy)
        # dW[o, c, i, j] = Σ dy[:, o] · x_padded[:, c] shifted by (i, j)
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        expected = np.array([[[[np.sum(dy[:, o] * xp[:, c, i:i + 5, j:j + 5]) for j in range(3)]
                               for i in range(3)] for c in range(3)] for o in range(4)])
        np.testing.assert_allclose(conv.grads["weight"], expected, atol=1e-12)


def test_first_layer_without_input_gradient(rng):
    net = Sequential([("conv", Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=rng)), ("relu", ReLU())])
    x = rng.standard_normal((2, 2, 5, 5))
    dy = rng.standard_normal((2, 3, 5, 5))
    net.forward(x)
    dx = net.backward(dy)
    grads = {k: v.copy() for k, v in net.grads.items()}
    assert net.needs_input_grad and dx is not None
    net.needs_input_grad = False
    assert not net["conv"].needs_input_grad
    net.forward(x)
    assert net.backward(dy) is None
    for key, value in net.grads.items():
        np.testing.assert_array_equal(value, grads[key])


def test_sequential_in_place_relus_match_standalone_layers(rng):
    layers = [("c1", Conv2d(2, 4, 3, padding=1, dtype=np.float64, rng=rng)), ("r1", ReLU()),
              ("c2", Conv2d(4, 3, 1, dtype=np.float64, rng=rng)), ("r2", ReLU()),
              ("pool", MaxPool2d(2, 2))]
    net = Sequential(layers)
    # r2 runs after the pooling, last: the caller's gradient reaches it, so not in place
    assert net._schedule() == ([0, 1, 2, 4, 3], {1}, {0})  # c1 feeds the 1x1 c2: channels-last
    x = rng.standard_normal((2, 2, 6, 6))
    x_before = x.copy()
    y = net.forward(x)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    dx = net.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)
    # the same layers one by one, nothing in place
    h = x
    for _, layer in layers:
        h = layer.forward(h)
    np.testing.assert_array_equal(h, y)
    g = dy
    for _, layer in reversed(layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(g, dx)


def test_relu_before_max_pooling_runs_after_it_with_the_same_results(rng):
    """Integer inputs and weights give tied and all-negative pooling windows,
    where the gradient's way through the pooling could differ: outputs,
    gradients and the input gradient equal those of the layers run one by one
    in their order."""
    def integers(*shape):
        return rng.integers(-2, 3, shape).astype(np.float64)

    layers = [("c1", Conv2d(2, 4, 3, padding=1, dtype=np.float64, rng=rng)), ("r1", ReLU()),
              ("p1", MaxPool2d(3, 2, ceil_mode=True)), ("c2", Conv2d(4, 3, 1, dtype=np.float64, rng=rng)),
              ("r2", ReLU()), ("p2", MaxPool2d(2, 2)), ("c3", Conv2d(3, 2, 1, dtype=np.float64, rng=rng))]
    for _, layer in layers:
        for array in layer.params.values():
            array[...] = integers(*array.shape)
    layers[0][1].params["bias"][...] = [-12, -6, 0, 3]  # channels mostly negative to mostly positive
    net = Sequential(layers)
    assert net._schedule() == ([0, 2, 1, 3, 5, 4, 6], {1, 4}, set())
    x = integers(2, 2, 7, 7)

    def one_by_one(train):
        h, inputs = x, {}
        for name, layer in layers:
            inputs[name] = h
            h = layer.forward(h, train=train)
        return h, inputs

    expected, inputs = one_by_one(train=False)
    np.testing.assert_array_equal(net.forward(x, train=False), expected)
    # p1's 3x3 windows (ceil mode) of c1's output: some all <= 0, some tied at a positive max
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(inputs["r1"], ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf), (3, 3), axis=(2, 3))
    windows = windows[:, :, ::2, ::2].reshape(-1, 9)
    top = windows.max(axis=1)
    assert (top <= 0).any() and ((top > 0) & ((windows == top[:, None]).sum(axis=1) > 1)).any()

    y = net.forward(x)
    dy = integers(*y.shape)
    dx, grads = net.backward(dy), {k: v.copy() for k, v in net.grads.items()}
    expected, _ = one_by_one(train=True)
    np.testing.assert_array_equal(y, expected)
    g = dy
    for _, layer in reversed(layers):
        g = layer.backward(g)
    np.testing.assert_array_equal(dx, g)
    for key, value in net.grads.items():
        np.testing.assert_array_equal(grads[key], value)


@pytest.mark.parametrize("chunk_bytes", [7 * 9, 64 * 9, 1 << 20])
def test_in_place_relu_in_cache_chunks(rng, monkeypatch, chunk_bytes):
    """The in-place forward walks the array in chunks that need not divide it
    or the threads' blocks: values and mask match max(x, 0) and x > 0, for x
    and −x (so an element left out shows, whatever its sign)."""
    monkeypatch.setattr(threads, "CACHE_CHUNK_BYTES", chunk_bytes)  # float64 + mask: 9 bytes
    monkeypatch.setattr(threads, "MIN_BLOCK_ELEMENTS", 16)  # several threads' blocks, where cores allow
    base = rng.standard_normal((3, 5, 4, 3))  # (N, C, H, W)
    for x_nc in (base, -base):
        x = x_nc.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)  # channel-major storage
        relu = ReLU()
        y = relu.forward(x, inplace=True)
        assert y is x
        np.testing.assert_array_equal(y, np.where(x_nc > 0, x_nc, 0.0))
        dy = rng.standard_normal(x.shape)
        np.testing.assert_array_equal(relu.backward(dy), dy * (x_nc > 0))


@pytest.mark.parametrize("inplace", [True, False])
def test_relu_evaluation_keeps_no_mask(rng, inplace):
    x_nc = rng.standard_normal((3, 5, 4, 3))
    x = x_nc.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)
    relu = ReLU()
    y = relu.forward(x, train=False, inplace=inplace)
    np.testing.assert_array_equal(y, np.where(x_nc > 0, x_nc, 0.0))
    assert (y is x) == inplace
    with pytest.raises(ValueError, match="train=True"):
        relu.backward(np.ones_like(x))


def test_trailing_relu_leaves_the_callers_gradient_alone(rng):
    net = Sequential([Conv2d(2, 3, 1, dtype=np.float64, rng=rng), ReLU()])
    assert net._schedule() == ([0, 1], set(), set())
    x = rng.standard_normal((2, 2, 3, 3))
    y = net.forward(x)
    dy = rng.standard_normal(y.shape)
    before = dy.copy()
    dx = net.backward(dy)
    np.testing.assert_array_equal(dy, before)
    np.testing.assert_allclose(dx, np.einsum("nohw,oc->nchw", before * (y > 0),
                                             net.layers[0].weight[:, :, 0, 0]), atol=1e-12)


def test_backward_without_training_forward_is_an_error(rng):
    conv = Conv2d(2, 3, 3, dtype=np.float64, rng=rng)
    conv.forward(rng.standard_normal((1, 2, 4, 4)), train=False)
    with pytest.raises(ValueError, match="train=True"):
        conv.backward(np.ones((1, 3, 2, 2)))


def test_split_gemms_match_numpy(rng, split_everything):
    a, b, c = rng.standard_normal((4, 7)), rng.standard_normal((7, 11)), rng.standard_normal((5, 7))
    np.testing.assert_allclose(threads.matmul(a, b), a @ b, atol=1e-12)
    out = np.zeros((4, 11))
    assert threads.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, atol=1e-12)
    np.testing.assert_allclose(threads.matmul_nt(a, c), a @ c.T, atol=1e-12)
    tall = rng.standard_normal((13, 7))
    np.testing.assert_allclose(threads.matmul_rows(tall, b), tall @ b, atol=1e-12)
    out = np.zeros((13, 11))
    assert threads.matmul_rows(tall, b, out=out) is out
    np.testing.assert_allclose(out, tall @ b, atol=1e-12)
    if threads._BLAS:
        setter, getter = threads._BLAS
        before = getter()
        threads.matmul(a, b)
        assert getter() == before  # the BLAS thread count is restored


def test_for_blocks_covers_the_range_once(split_everything):
    seen = np.zeros(10, dtype=int)

    def mark(lo, hi):
        seen[lo:hi] += 1
    threads.for_blocks(np, 10, 10, mark)
    np.testing.assert_array_equal(seen, 1)


def test_gemm_blocks_cover_the_range_and_run_gemms_keeps_their_order(split_everything):
    blocks = threads.gemm_blocks(np, 10)
    if threads._BLAS:  # minids splits GEMMs only where it controls OpenBLAS's threads
        assert len(blocks) == 3
    assert blocks[0][0] == 0 and blocks[-1][1] == 10
    assert all(hi == lo for (_, hi), (lo, _) in zip(blocks, blocks[1:]))
    results = threads.run_gemms([lambda lo=lo, hi=hi: list(range(lo, hi)) for lo, hi in blocks])
    assert sum(results, []) == list(range(10))


def test_gemm_chunks_cover_the_range_once_and_run_nested_splits_inline(rng, split_everything,
                                                                       monkeypatch):
    """Work that a chunk runs may split again (a GEMM, an im2col); inside a block of
    minids' threads it runs inline in that block's thread, where the pool's
    threads are all busy, instead of waiting on them."""
    monkeypatch.setattr(threads, "GEMM_CHUNK_BYTES", 2 * 8)  # 2 items of 8 bytes a chunk
    seen = np.zeros(12, dtype=int)
    chunks = []
    a, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 12))
    out = np.zeros((4, 12))

    def chunk(start, stop, block):
        inner = []
        threads.for_blocks(np, stop - start, 10**6, lambda i, j: inner.append((i, j)))
        assert inner == [(0, stop - start)]
        assert threads.gemm_blocks(np, 10**6) == [(0, 10**6)]
        threads.matmul(a, b[:, start:stop], out=out[:, start:stop])
        seen[start:stop] += 1
        chunks.append((block, stop - start))
    threads.gemm_chunks(np, 12, 8, chunk)
    np.testing.assert_array_equal(seen, 1)
    np.testing.assert_allclose(out, a @ b, atol=1e-12)
    assert all(size <= 2 for _, size in chunks)
    if threads._BLAS:  # three blocks of 4 items, two chunks each
        assert sorted(chunks) == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (2, 2)]
        assert len(threads.gemm_blocks(np, 12)) == 3  # outside a block, work splits again


def test_threaded_layers_match_direct_references(rng, split_everything):
    x = rng.standard_normal((3, 5, 7, 6))
    conv = Conv2d(5, 4, 3, padding=1, dtype=np.float64, rng=rng)
    conv.params["bias"][:] = rng.standard_normal(4)
    y = conv.forward(x)
    np.testing.assert_allclose(y, direct_conv(x, conv.weight, conv.bias, 1), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(dy)
    assert np.isclose(np.sum((y - conv.bias[None, :, None, None]) * dy), np.sum(x * dx), rtol=1e-12)
    np.testing.assert_array_equal(im2col(x, 3, 2, 1), padded_im2col(x, 3, 2, 1))
    pool = MaxPool2d(3, 2, ceil_mode=True)
    pooled = pool.forward(x)
    expected, mean = np.full(pooled.shape, -np.inf), np.zeros(pooled.shape)
    for i in range(pooled.shape[2]):
        for j in range(pooled.shape[3]):
            window = x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]  # clipped at the edge, as ceil mode pools
            expected[:, :, i, j], mean[:, :, i, j] = window.max(axis=(2, 3)), window.mean(axis=(2, 3))
    np.testing.assert_array_equal(pooled, expected)
    np.testing.assert_array_equal(pool.forward(x, train=False), expected)  # the max alone, in 1-D passes
    np.testing.assert_allclose(AvgPool2d(3, 2, ceil_mode=True).forward(x, train=False), mean, atol=1e-12)
    with pytest.raises(ValueError, match="train=True"):
        pool.backward(np.ones(expected.shape))
    net = Sequential([Conv2d(5, 4, 1, dtype=np.float64, rng=rng), ReLU(), MaxPool2d(2, 2)])
    out = net.forward(x)
    h = np.maximum(np.einsum("nchw,oc->nohw", x, net.layers[0].weight[:, :, 0, 0]), 0)
    np.testing.assert_allclose(out, h[:, :, :6].reshape(3, 4, 3, 2, 3, 2).max(axis=(3, 5)), atol=1e-12)


def _openblas_threads(minids_threads):
    """OpenBLAS's thread count in a fresh process after importing minids's thread module."""
    code = ("import minids.backend.threads as p\n"
            "blas = p._find_openblas()\n"
            "print(-1 if blas is None else blas[1]())\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS") and k != "MINIDS_THREADS"}
    if minids_threads is not None:
        env["MINIDS_THREADS"] = str(minids_threads)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=True)
    return int(result.stdout.strip())


def test_minids_threads_caps_openblas_threads():
    """MINIDS_THREADS=1 must also keep OpenBLAS on one thread (two runs side by side)."""
    default = _openblas_threads(None)
    if default == -1:
        pytest.skip("NumPy is not linked to OpenBLAS here")
    if default == 1:
        pytest.skip("OpenBLAS already runs one thread on this machine: nothing to cap")
    assert _openblas_threads(1) == 1
    assert _openblas_threads(None) == default  # without the variable OpenBLAS keeps its threads
